//! Test fixture: a temp-dir docroot, an in-process server on 127.0.0.1:0, and a raw
//! HTTP/1.1 client for exact bytes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;
use threadserve::config::Config;
use threadserve::files::Root;
use threadserve::server::{Handle, Server, Transport};
use threadserve::stats::Snapshot;

/// Longest any test read waits; a hang fails the test instead of blocking the suite.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The server binary, for tests of the process (flags, signals, stdout).
pub const BIN: &str = env!("CARGO_BIN_EXE_threadserve");

/// Reads a spawned server's start line from its stdout and returns the address it
/// shows (`threadserve serving ROOT at http://ADDR with N worker threads`).
pub fn start_line_addr(stdout: &mut impl BufRead) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split(' ').next());
    let addr = addr.unwrap_or_else(|| panic!("no start line with a URL, got {line:?}"));
    addr.trim_end_matches('/').to_string()
}

/// Waits up to `within` for `child` to exit; kills it and returns `None` if it is
/// still running then.
pub fn exit_within(child: &mut std::process::Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` with `Connection: close` on a new connection to `addr`; `None` if the
/// connection fails or closes without a response.
pub fn get_at(addr: &str, path: &str) -> Option<Response> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
    read_response(&mut BufReader::new(s), false)
}

/// A server on a temp-dir root `<tmp>/root`; `<tmp>/outside` holds files outside it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: Handle,
    /// The transport it runs (`THREADSERVE_TRANSPORT` unless started over another).
    pub transport: Transport,
    pub tmp: tempfile::TempDir,
    join: Option<JoinHandle<std::io::Result<Snapshot>>>,
}

impl TestServer {
    /// Starts a server with the standard fixture files and `tweak` applied to its
    /// config, over the transport the environment selects.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_over(None, tweak)
    }

    /// As [`TestServer::start`], over `transport` if given.
    pub fn start_over(transport: Option<Transport>, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("list")).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
        write(&root, "hello.txt", b"hello, world\n");
        write(&root, "a.txt", b"A");
        write(&root, "b.txt", b"BB");
        write(&root, "c.txt", b"CCC");
        write(&root, "sub/index.html", b"<h1>sub</h1>\n");
        write(&root, "list/one.bin", &[1; 10]);
        write(&root, ".env", b"SECRET=1\n");
        write(&tmp.path().join("outside"), "secret.txt", b"TOP SECRET OUTSIDE ROOT\n");
        let mut config = Config::new(Root::new(&root).unwrap());
        config.threads = 4;
        tweak(&mut config);
        let server = match transport {
            Some(t) => Server::bind_over(config, t),
            None => Server::bind(config),
        }
        .unwrap();
        let transport = server.transport();
        let addr = server.local_addr();
        let handle = server.handle();
        let join = std::thread::spawn(move || server.run());
        TestServer {
            addr,
            handle,
            transport,
            tmp,
            join: Some(join),
        }
    }

    /// The served root.
    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    /// Connects a raw client.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s
    }

    /// Connects from the loopback address `source` (any of 127.0.0.0/8), so a test
    /// can play several clients the server tells apart by address.
    pub fn connect_from(&self, source: std::net::Ipv4Addr) -> TcpStream {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&std::net::SocketAddr::from((source, 0)).into()).unwrap();
        socket.connect(&self.addr.into()).unwrap();
        let s: TcpStream = socket.into();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s
    }

    /// Sends `GET path` with `Connection: close` and reads the response.
    pub fn get(&self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    }

    /// Sends raw request bytes on a new connection and reads one response.
    pub fn request(&self, raw: &str) -> Response {
        let mut s = self.connect();
        s.write_all(raw.as_bytes()).unwrap();
        let head_only = raw.starts_with("HEAD ");
        read_response(&mut BufReader::new(s), head_only).expect("a response")
    }

    /// Current counters.
    pub fn stats(&self) -> Snapshot {
        self.handle.stats().expect("stats")
    }

    /// Stops the server and returns its final counters.
    pub fn stop(mut self) -> Snapshot {
        self.handle.shutdown();
        self.join.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            self.handle.shutdown();
            let _ = join.join();
        }
    }
}

/// Polls `cond` until it holds (records reach the stats thread just after the
/// response, so counters are eventually consistent).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes a file under `dir`.
pub fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    std::fs::write(dir.join(rel), bytes).unwrap();
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (head, then a Content-Length body unless `head_only`).
/// `None` on a clean EOF before any byte.
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    if r.read_line(&mut line).unwrap() == 0 {
        return None;
    }
    assert!(line.starts_with("HTTP/1.1 "), "status line: {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').expect("header line");
        let prev = headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
        assert!(prev.is_none(), "duplicate header {name}");
    }
    let len: usize = headers.get("content-length").map_or(0, |v: &String| v.parse().unwrap());
    let mut body = vec![0; if head_only || status == 304 { 0 } else { len }];
    r.read_exact(&mut body).unwrap();
    Some(Response { status, headers, body })
}

/// Reads until EOF; true if the peer closed (EOF or reset) within the read timeout.
pub fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// The tests that load the machine (the abuse tests, and the CPU-heavy compression,
/// auth and racing tests) take turns, so that one's measurements are not another's
/// noise (the rest of the suite is light).
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the heavy tests' turn (see [`HEAVY`]).
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
