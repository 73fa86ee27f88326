//! Hostile clients and faults: slowloris and slow readers, idle crowds, thousands of
//! connections, running out of file descriptors, a corpus of malformed requests, and
//! files that change under the server. Each test ends by itself, in bounded time.
//!
//! The full-size versions are `#[ignore]`d; the `.ci/run` step "abuse (ignored)" runs
//! them one at a time, in about 20 s:
//! `cargo test --release --test it -- --ignored --test-threads=1 --nocapture abuse::full_size`
//! (`--nocapture` prints the measured figures). Other ignored tests here pin engine
//! bugs not fixed yet; each names the fix that lets it be un-ignored.
//!
//! Tests that load the machine take turns through [`heavy`]; the ones that count a
//! server's threads and descriptors use the `threadserve` binary in a child process, so
//! the counts are that server's alone.

use crate::corpus::{self, Case};
use crate::support::{closed, eventually, heavy, read_response, write, TestServer};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use threadserve::server::Handle;

const BIN: &str = env!("CARGO_BIN_EXE_threadserve");

// ---------------------------------------------------------------------------------
// Process measurements and a spawned server whose threads and fds are its own.
// ---------------------------------------------------------------------------------

/// Counts from `/proc/<pid>`.
mod procfs {
    pub fn tasks(pid: u32) -> usize {
        std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
    }

    pub fn fds(pid: u32) -> usize {
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
    }

    /// What each open descriptor is, for failure messages.
    pub fn fd_targets(pid: u32) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .map(|e| {
                format!(
                    "{}: {}",
                    e.file_name().to_string_lossy(),
                    std::fs::read_link(e.path()).map_or_else(|e| e.to_string(), |p| p.display().to_string())
                )
            })
            .collect()
    }

    /// Resident set size in KiB.
    pub fn rss_kib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// User + system CPU time.
    pub fn cpu(pid: u32) -> std::time::Duration {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        std::time::Duration::from_millis(ticks * 1000 / hz)
    }
}

/// Raises this process's open-file limit to at least `want` (root may raise the hard
/// limit too). Returns the soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return want;
    }
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) };
    lim.rlim_max
}

/// The `threadserve` binary in a child process: its threads, fds, RSS and CPU time are
/// its own, unaffected by other tests running in this process. Killed on drop.
struct Spawned {
    child: Child,
    addr: SocketAddr,
    /// Access-log lines (stdout after the start line).
    stdout: Arc<Mutex<Vec<String>>>,
    /// Log lines on stderr with the time each was read.
    stderr: Arc<Mutex<Vec<(Instant, String)>>>,
    drains: Vec<thread::JoinHandle<()>>,
}

impl Spawned {
    /// Starts `threadserve <root> --port 0 <args>`, with RLIMIT_NOFILE set to
    /// `(soft, hard)` before exec if given.
    fn start(root: &Path, args: &[&str], nofile: Option<(u64, u64)>) -> Spawned {
        let mut cmd = Command::new(BIN);
        cmd.arg(root)
            .args(["--port", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((soft, hard)) = nofile {
            // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or_else(|| panic!("no address in start line {line:?}"))
            .parse()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut drains = Vec::new();
        {
            let stdout = Arc::clone(&stdout);
            drains.push(thread::spawn(move || {
                for line in out.lines().map_while(Result::ok) {
                    stdout.lock().unwrap().push(line);
                }
            }));
        }
        {
            let stderr = Arc::clone(&stderr);
            let err = BufReader::new(child.stderr.take().unwrap());
            drains.push(thread::spawn(move || {
                for line in err.lines().map_while(Result::ok) {
                    stderr.lock().unwrap().push((Instant::now(), line));
                }
            }));
        }
        Spawned {
            child,
            addr,
            stdout,
            stderr,
            drains,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// `GET path` with `Connection: close`; the status, or `None` if the connection
    /// failed or closed without a response.
    fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    /// SIGTERM, then waits for exit (SIGKILL after `within`); the drained stdout.
    fn terminate(mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("still running {within:?} after SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        };
        for d in self.drains.drain(..) {
            let _ = d.join();
        }
        let lines = std::mem::take(&mut *self.stdout.lock().unwrap());
        (status, lines)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A temp dir with `root/` (served) and `outside/secret.txt` next to it, plus links
/// from inside the root to the outside.
fn hostile_root() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
    write(&tmp.path().join("outside"), "secret.txt", SECRET);
    write(&root, "hello.txt", b"hello, world\n");
    write(&root, "sub/index.html", b"<h1>sub</h1>\n");
    write(&root, ".env", DOTFILE_SECRET);
    write(&root, "big.bin", &vec![b'b'; BIG_LEN]);
    std::os::unix::fs::symlink("../outside/secret.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("dirlink")).unwrap();
    tmp
}

const SECRET: &[u8] = b"TOP SECRET OUTSIDE ROOT\n";
const DOTFILE_SECRET: &[u8] = b"DOTFILE SECRET=1\n";
const BIG_LEN: usize = 1 << 20;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------
// Hostile request corpus.
// ---------------------------------------------------------------------------------

/// One response as it came off the wire.
#[derive(Debug)]
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits what a server sent into well-formed HTTP/1.1 responses, or says what is wrong.
/// `head`: responses carry no body (answers to HEAD).
fn parse_wire(mut buf: &[u8], head: bool) -> Result<Vec<Wire>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| {
            format!(
                "response head never ends: {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            )
        })?;
        let text = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8".to_string())?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .filter(|rest| rest.len() >= 4 && rest.as_bytes()[3] == b' ')
            .and_then(|rest| rest[..3].parse().ok())
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("bad header name {name:?}"));
            }
            if value.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!("control byte in header {name}: {value:?}"));
            }
            headers.push((name.to_string(), value.to_string()));
        }
        let lengths: Vec<&String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v)
            .collect();
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")) {
            return Err("server sent Transfer-Encoding".into());
        }
        let bodiless = head || status < 200 || status == 204 || status == 304;
        let len = match lengths.as_slice() {
            [] if bodiless => 0,
            [v] => v.parse::<usize>().map_err(|_| format!("bad Content-Length {v:?}"))?,
            _ => return Err(format!("status {status}: Content-Length count {}", lengths.len())),
        };
        let len = if bodiless { 0 } else { len };
        let rest = &buf[end + 4..];
        if rest.len() < len {
            return Err(format!("status {status}: body cut at {} of {len} bytes", rest.len()));
        }
        out.push(Wire {
            status,
            headers,
            body: rest[..len].to_vec(),
        });
        buf = &rest[len..];
    }
    Ok(out)
}

/// What happened to one corpus case.
struct Outcome {
    responses: Result<Vec<Wire>, String>,
    /// The server closed (or reset) the connection before `limit`.
    closed: bool,
    elapsed: Duration,
}

/// Sends `bytes`, then reads until the server closes or `limit` runs out.
fn exchange(addr: SocketAddr, bytes: &[u8], head: bool, limit: Duration) -> Outcome {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    // The server may answer and close before reading everything: write errors are fine.
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let closed = loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break false,
            Err(_) => break true, // reset
        }
    };
    Outcome {
        responses: parse_wire(&got, head),
        closed,
        elapsed: started.elapsed(),
    }
}

/// Everything wrong with one outcome, as lines for the failure message.
fn judge(case: &Case, o: &Outcome, limit: Duration) -> Vec<String> {
    let mut wrong = Vec::new();
    let name = &case.name;
    if !o.closed {
        wrong.push(format!("{name}: not closed within {limit:?} (hang)"));
    }
    let responses = match &o.responses {
        Ok(r) => r,
        Err(e) => {
            wrong.push(format!("{name}: malformed response: {e}"));
            return wrong;
        }
    };
    if responses.len() > case.max_responses {
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        wrong.push(format!(
            "{name}: {statuses:?}: a request body was answered as a request (smuggling)"
        ));
    }
    for r in responses {
        for (what, secret) in [
            ("the secret outside the root", SECRET),
            ("a dotfile", DOTFILE_SECRET),
            ("/etc/passwd", b"root:x:0:0".as_slice()),
            ("the echoed request", b"TRACE-ECHO-MARKER".as_slice()),
        ] {
            if contains(&r.body, secret) || r.headers.iter().any(|(_, v)| contains(v.as_bytes(), secret)) {
                wrong.push(format!("{name}: status {} leaked {what}", r.status));
            }
        }
        if let Some(location) = r.header("location") {
            if !location.starts_with('/') || location.starts_with("//") || location.contains('\\') {
                wrong.push(format!("{name}: off-site or odd Location {location:?}"));
            }
        }
        // No amplification: a Range request never gets much more than the file.
        if r.body.len() > 2 * BIG_LEN + 64 * 1024 {
            wrong.push(format!("{name}: {} body bytes for a {BIG_LEN}-byte file", r.body.len()));
        }
    }
    wrong
}

/// Runs the corpus against a spawned server from `clients` threads; returns the
/// failures and the slowest case.
fn run_corpus(server: &Spawned, cases: Vec<Case>, clients: usize, limit: Duration) -> (Vec<String>, Duration, usize) {
    let cases = Arc::new(cases);
    let next = Arc::new(AtomicUsize::new(0));
    let addr = server.addr;
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (cases, next) = (Arc::clone(&cases), Arc::clone(&next));
            thread::spawn(move || {
                let mut wrong = Vec::new();
                let mut slowest = Duration::ZERO;
                let mut answered = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let o = exchange(addr, &case.bytes, case.head, limit);
                    slowest = slowest.max(o.elapsed);
                    answered += o.responses.as_ref().map_or(0, |r| usize::from(!r.is_empty()));
                    wrong.extend(judge(case, &o, limit));
                }
                (wrong, slowest, answered)
            })
        })
        .collect();
    let mut all = (Vec::new(), Duration::ZERO, 0);
    for w in workers {
        let (wrong, slowest, answered) = w.join().unwrap();
        all.0.extend(wrong);
        all.1 = all.1.max(slowest);
        all.2 += answered;
    }
    all
}

/// Polls `f` until it returns `want` or `within` passes; the last value.
fn settle<T: PartialEq + Copy>(want: T, within: Duration, mut f: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + within;
    loop {
        let v = f();
        if v == want || Instant::now() >= deadline {
            return v;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hostile_corpus_gets_errors_or_closes_never_hangs_or_leaks_and_leaves_no_residue() {
    let _turn = heavy();
    let tmp = hostile_root();
    let root = tmp.path().join("root");
    let secret_abs = tmp.path().join("outside/secret.txt");
    let fixture = corpus::Fixture {
        secret_abs: secret_abs.to_str().unwrap(),
        secret_rel: "outside/secret.txt",
    };
    let cases = corpus::cases(&fixture);
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let head_timeout = Duration::from_secs(2);
    let server = Spawned::start(
        &root,
        &[
            "--threads",
            "4",
            "--head-timeout",
            "2s",
            "--idle-timeout",
            "200ms",
            "--log-format",
            "off",
        ],
        None,
    );
    let pid = server.pid();
    assert_eq!(server.get_status("/hello.txt"), Some(200));
    // The probe's connection may not be closed on the server's side yet: the baseline
    // is the least seen over a short while.
    let steady = |f: &dyn Fn() -> usize| {
        (0..10)
            .map(|_| {
                thread::sleep(Duration::from_millis(30));
                f()
            })
            .min()
            .unwrap()
    };
    let (tasks, fds) = (steady(&|| procfs::tasks(pid)), steady(&|| other_fds(pid, &root)));

    let started = Instant::now();
    let total = cases.len();
    // A case may wait out the head deadline, then the idle watcher's sweep (250 ms).
    let limit = head_timeout + Duration::from_millis(1500);
    let (wrong, slowest, answered) = run_corpus(&server, cases, 64, limit);
    let took = started.elapsed();
    println!("corpus: {total} cases, {answered} answered, slowest {slowest:?}, all in {took:?}");
    assert!(
        wrong.is_empty(),
        "{} of {total} cases failed:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    assert_eq!(
        server.get_status("/hello.txt"),
        Some(200),
        "still serving after the corpus"
    );
    assert_eq!(server.get_status("/link"), Some(404), "symlink out of the root");
    let tasks_after = settle(tasks, Duration::from_secs(3), || procfs::tasks(pid));
    assert_eq!(tasks_after, tasks, "server threads before/after the corpus");
    let fds_after = settle(fds, Duration::from_secs(3), || other_fds(pid, &root));
    assert_eq!(
        fds_after,
        fds,
        "server sockets and other non-file fds before/after the corpus: {:?}",
        procfs::fd_targets(pid)
    );
    let cached = procfs::fds(pid) - fds_after;
    assert!(
        cached <= 4 * threadserve::limits::CACHE_DESCRIPTORS,
        "{cached} files under the root held open after the corpus"
    );
}

/// Open descriptors of `pid` other than files under `root` (which workers keep open in
/// their bounded open-file caches): sockets, pipes, epoll, and anything leaked.
fn other_fds(pid: u32, root: &Path) -> usize {
    let root = root.to_str().unwrap();
    procfs::fd_targets(pid)
        .iter()
        .filter(|t| !t.split_once(": ").is_some_and(|(_, target)| target.starts_with(root)))
        .count()
}

// ---------------------------------------------------------------------------------
// Slowloris and slow readers.
// ---------------------------------------------------------------------------------

/// Sizes and timeouts of one slow-client run.
#[derive(Clone)]
struct Slow {
    /// Connections sending one header byte every 2 s.
    heads: usize,
    /// Connections downloading a 10 MiB file at 1 KiB/s.
    readers: usize,
    threads: usize,
    head_timeout: Duration,
    write_timeout: Duration,
    /// How long the normal client measures, unloaded and then under attack.
    window: Duration,
}

/// What the attackers saw.
#[derive(Debug, Default)]
struct AttackReport {
    head_conns: usize,
    heads_closed: usize,
    /// Longest a slow-head connection stayed open (connect to close as seen by us).
    head_longest: Duration,
    heads_got_408: usize,
    reader_conns: usize,
    /// Readers whose response began `HTTP/1.1 200`.
    readers_got_200: usize,
    /// Readers answered 408: their request waited in the queue past the head deadline.
    readers_got_408: usize,
    /// Readers shed with 503.
    readers_got_503: usize,
    /// Slow heads shed with 503 (queue full) rather than cut off with 408.
    heads_got_503: usize,
    reader_bytes: u64,
    connect_errors: usize,
}

const SLOW_HEAD_BYTES: &[u8] =
    b"GET /one_k.bin HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

struct SlowHead {
    s: TcpStream,
    opened: Instant,
    next: Instant,
    sent: usize,
    got: Vec<u8>,
}

/// A client socket with a small receive buffer, so a slow reader stays slow (a
/// megabyte-sized loopback buffer would swallow much of the file at once).
fn slow_reader_socket(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(4096)?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// Runs slow readers (one download each) and then, once they occupy workers, slow heads
/// (reconnecting whenever the server cuts one, until `stop`), from one thread with
/// non-blocking sockets. Sets `ready` when both are in place.
fn attack(
    server: &Handle,
    addr: SocketAddr,
    plan: &Slow,
    ready: &AtomicBool,
    stop: &AtomicBool,
    give_up: Duration,
) -> AttackReport {
    let mut report = AttackReport::default();
    let started = Instant::now();
    let connect_head = |report: &mut AttackReport| -> Option<SlowHead> {
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                // The first byte at once: the kernel hands a connection to `accept`
                // only once it has sent something (`TCP_DEFER_ACCEPT`).
                s.write_all(&SLOW_HEAD_BYTES[..1]).unwrap();
                s.set_nonblocking(true).unwrap();
                report.head_conns += 1;
                let now = Instant::now();
                Some(SlowHead {
                    s,
                    opened: now,
                    next: now + Duration::from_secs(2),
                    sent: 1,
                    got: Vec::new(),
                })
            }
            Err(_) => {
                report.connect_errors += 1;
                None
            }
        }
    };
    // Readers first, so that they reach workers rather than being shed behind a queue
    // of slow heads.
    let mut readers: Vec<(TcpStream, Instant, Vec<u8>)> = Vec::new();
    for _ in 0..plan.readers {
        match slow_reader_socket(addr) {
            Ok(mut s) => {
                s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                s.set_nonblocking(true).unwrap();
                readers.push((s, Instant::now(), Vec::new()));
                report.reader_conns += 1;
            }
            Err(_) => report.connect_errors += 1,
        }
    }
    let pinned = plan.readers.min(plan.threads);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().is_some_and(|s| s.busy_workers < pinned) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let mut heads: Vec<Option<SlowHead>> = (0..plan.heads).map(|_| connect_head(&mut report)).collect();
    ready.store(true, Ordering::Relaxed);
    let mut buf = [0u8; 4096];
    while started.elapsed() < give_up {
        let now = Instant::now();
        let stopping = stop.load(Ordering::Relaxed);
        for slot in heads.iter_mut() {
            let Some(h) = slot else {
                if !stopping {
                    *slot = connect_head(&mut report);
                }
                continue;
            };
            let mut gone = false;
            loop {
                match h.s.read(&mut buf) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(n) => h.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            if !gone && now >= h.next {
                match h.s.write(&SLOW_HEAD_BYTES[h.sent % SLOW_HEAD_BYTES.len()..][..1]) {
                    Ok(_) => h.sent += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => gone = true,
                }
                h.next = now + Duration::from_secs(2);
            }
            if gone {
                report.heads_closed += 1;
                report.head_longest = report.head_longest.max(h.opened.elapsed());
                report.heads_got_408 += usize::from(h.got.starts_with(b"HTTP/1.1 408 "));
                report.heads_got_503 += usize::from(h.got.starts_with(b"HTTP/1.1 503 "));
                *slot = if stopping { None } else { connect_head(&mut report) };
            }
        }
        for (s, next, first) in readers.iter_mut() {
            if now >= *next {
                // 1 KiB a second, from whatever has arrived.
                if let Ok(n) = s.read(&mut buf[..1024]) {
                    report.reader_bytes += n as u64;
                    if first.len() < 12 {
                        first.extend_from_slice(&buf[..n.min(12)]);
                    }
                }
                *next = now + Duration::from_secs(1);
            }
        }
        if stopping && heads.iter().all(Option::is_none) {
            break;
        }
        // Coarse ticks keep the attacker's own CPU use (a syscall per socket per tick)
        // out of the normal client's way; the attack's timing is in seconds.
        thread::sleep(Duration::from_millis(100));
    }
    let status = |code: &[u8]| readers.iter().filter(|r| r.2.get(9..12) == Some(code)).count();
    report.readers_got_200 = status(b"200");
    report.readers_got_408 = status(b"408");
    report.readers_got_503 = status(b"503");
    report
}

const ONE_K_REQUEST: &[u8] = b"GET /one_k.bin HTTP/1.1\r\nHost: t\r\n\r\n";

/// One keep-alive request that must be answered 200 with a `body_len`-byte body, read
/// with a reused buffer (which must hold the whole response). Never panics: failures
/// are counted by the callers.
fn roundtrip(s: &mut TcpStream, request: &[u8], body_len: usize, buf: &mut [u8]) -> Result<(), String> {
    s.write_all(request).map_err(|e| format!("write: {e}"))?;
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed by the server".into());
        }
        have += n;
        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| "head not UTF-8")?;
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(head.lines().next().unwrap_or_default().to_string());
        }
        let whole = end + 4 + body_len;
        if have >= whole {
            return if have == whole {
                Ok(())
            } else {
                Err(format!("{} bytes after the body", have - whole))
            };
        }
    }
}

/// What keep-alive clients got for a 1 KiB file over a window.
#[derive(Debug)]
struct Rate {
    /// 200s per second.
    ok_per_sec: f64,
    /// Other statuses (503 when shed) and failed connections or reads.
    failures: usize,
    /// Why the first failure failed.
    #[allow(dead_code)]
    first_failure: Option<String>,
    /// Slowest single request (shown in the report line).
    #[allow(dead_code)]
    worst: Duration,
}

/// Requests per second one keep-alive client gets for a 1 KiB file over `window`
/// (reconnecting after a 503 or a failure).
fn throughput(addr: SocketAddr, window: Duration) -> Rate {
    let started = Instant::now();
    let (mut ok, mut failures, mut worst) = (0u32, 0, Duration::ZERO);
    let mut first_failure = None;
    while started.elapsed() < window {
        let mut s = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert(format!("connect: {e}"));
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        while started.elapsed() < window {
            let t = Instant::now();
            let res = roundtrip(&mut s, ONE_K_REQUEST, 1024, &mut buf);
            worst = worst.max(t.elapsed());
            match res {
                Ok(()) => ok += 1,
                Err(e) => {
                    failures += 1;
                    first_failure.get_or_insert(e);
                    break;
                }
            }
        }
    }
    Rate {
        ok_per_sec: f64::from(ok) / started.elapsed().as_secs_f64(),
        failures,
        first_failure,
        worst,
    }
}

/// Two keep-alive clients at once, their rates summed: one client's rate depends on
/// whether the scheduler puts it on the same core as its worker; two fill both cores.
fn two_clients(addr: SocketAddr, window: Duration) -> Rate {
    let other = thread::spawn(move || throughput(addr, window));
    let a = throughput(addr, window);
    let b = other.join().unwrap();
    Rate {
        ok_per_sec: a.ok_per_sec + b.ok_per_sec,
        failures: a.failures + b.failures,
        first_failure: a.first_failure.or(b.first_failure),
        worst: a.worst.max(b.worst),
    }
}

/// The best of five measurements over a fifth of `window` each. Work elsewhere on the
/// machine (other tests sharing the 2 cores) only ever lowers a measurement, so the
/// best one is the least disturbed estimate, loaded or not; an engine that starves
/// normal clients under attack loses every slice.
fn best_throughput(addr: SocketAddr, window: Duration) -> Rate {
    let mut rates: Vec<Rate> = (0..5).map(|_| two_clients(addr, window / 5)).collect();
    rates.sort_by(|a, b| a.ok_per_sec.total_cmp(&b.ok_per_sec));
    let failures = rates.iter().map(|r| r.failures).sum();
    let worst = rates.iter().map(|r| r.worst).max().unwrap_or_default();
    let first_failure = rates.iter().find_map(|r| r.first_failure.clone());
    Rate {
        failures,
        worst,
        first_failure,
        ..rates.pop().unwrap()
    }
}

/// Measurements of the scenario when only the throughput ratio misses.
const SLOW_CLIENT_ATTEMPTS: usize = 3;

/// Runs the scenario; if only the throughput ratio missed, again, up to
/// [`SLOW_CLIENT_ATTEMPTS`] in all. The ratio is the one check the machine can
/// spoil: the heavy tests take turns, but the light ones still share the 2 cores,
/// and one that runs during the loaded measurement and not the unloaded one lowers
/// the ratio (0.78 seen in a full-suite run where the test alone measured
/// 1.14-1.28). On the shared CI VM the full-size run alone missed on a first
/// measurement at 0.58, 0.79 and 0.77, each time with 0.9-1.0 in runs just before
/// or after. Every other check must hold the first time.
fn slow_clients(plan: Slow) {
    for attempt in 1..=SLOW_CLIENT_ATTEMPTS {
        let (wrong, only_throughput) = slow_clients_once(&plan);
        if wrong.is_empty() {
            return;
        }
        assert!(
            only_throughput && attempt < SLOW_CLIENT_ATTEMPTS,
            "{}",
            wrong.join("\n")
        );
        eprintln!(
            "throughput ratio missed ({}); measuring the scenario again",
            wrong.join("; ")
        );
    }
}

/// One run of the scenario: what went wrong, and whether that was only the
/// throughput ratio.
fn slow_clients_once(plan: &Slow) -> (Vec<String>, bool) {
    let _turn = heavy();
    raise_nofile(2 * (plan.heads + plan.readers) as u64 + 1024);
    let server = TestServer::start(|c| {
        c.threads = plan.threads;
        c.limits.head_timeout = plan.head_timeout;
        c.limits.write_timeout = plan.write_timeout;
        c.limits.max_connections = 4 * (plan.heads + plan.readers) + 100;
    });
    write(&server.root(), "one_k.bin", &[b'k'; 1024]);
    write(&server.root(), "big.bin", &vec![b'b'; 10 << 20]);
    let addr = server.addr;
    throughput(addr, Duration::from_millis(200)); // warm-up
    let unloaded = best_throughput(addr, plan.window);

    let (ready, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let give_up = plan.head_timeout + plan.write_timeout + plan.window * 2 + Duration::from_secs(30);
    let attacker = {
        let (ready, stop, handle) = (Arc::clone(&ready), Arc::clone(&stop), server.handle.clone());
        let plan = plan.clone();
        thread::spawn(move || attack(&handle, addr, &plan, &ready, &stop, give_up))
    };
    let ramp = Instant::now();
    while !ready.load(Ordering::Relaxed) && ramp.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(20));
    }
    let under_attack = server.stats();
    let loaded = best_throughput(addr, plan.window);
    stop.store(true, Ordering::Relaxed);
    let attack_ended = Instant::now();
    let report = attacker.join().unwrap();
    let ratio = loaded.ok_per_sec / unloaded.ok_per_sec;

    // Every slow connection is closed by the server; no worker stays pinned.
    let bound = plan.head_timeout.max(plan.write_timeout) + Duration::from_secs(10);
    let drained = Instant::now();
    let mut last = server.stats();
    while (last.open_connections > 0 || last.busy_workers > 0) && drained.elapsed() < bound {
        thread::sleep(Duration::from_millis(100));
        last = server.stats();
    }
    let drain_time = drained.elapsed();
    println!(
        "slow clients ({} heads + {} readers, {} workers): unloaded {unloaded:?}, under attack {loaded:?} \
         (ratio {ratio:.2}); during the attack {} open, {} busy; {report:?}; server drained {:?} after the attack \
         stopped ({drain_time:?} after the attackers' last connection closed): {} open, {} busy",
        plan.heads,
        plan.readers,
        plan.threads,
        under_attack.open_connections,
        under_attack.busy_workers,
        attack_ended.elapsed(),
        last.open_connections,
        last.busy_workers,
    );
    let mut wrong = Vec::new();
    if unloaded.failures > 0 {
        wrong.push(format!("the unloaded client failed: {unloaded:?}"));
    }
    // Shedding a normal client's new connection with 503 while a wave of slow heads
    // fills the queue is counted, and tolerated only as a rare event (1%).
    let loaded_ok = loaded.ok_per_sec * plan.window.as_secs_f64();
    let slow = ratio < 0.8 && loaded.failures as f64 <= 0.01 * loaded_ok;
    if ratio < 0.8 || loaded.failures as f64 > 0.01 * loaded_ok {
        wrong.push(format!(
            "normal throughput fell to {:.0}% of unloaded under attack, with {} failed requests ({:?})",
            ratio * 100.0,
            loaded.failures,
            loaded.first_failure
        ));
    }
    if report.connect_errors > 0 {
        wrong.push(format!("{} attacker connects failed", report.connect_errors));
    }
    if report.readers_got_200 < plan.readers {
        wrong.push(format!(
            "only {} of {} slow readers got a 200 ({} got 408 after queueing past the head deadline, {} got 503)",
            report.readers_got_200, plan.readers, report.readers_got_408, report.readers_got_503
        ));
    }
    if report.head_longest > plan.head_timeout + Duration::from_secs(2) {
        wrong.push(format!(
            "a slow head was open {:?}, past the head deadline",
            report.head_longest
        ));
    }
    if (last.open_connections, last.busy_workers) != (0, 0) {
        wrong.push(format!(
            "{bound:?} after the attack {} connections were still open and {} workers busy",
            last.open_connections, last.busy_workers
        ));
    }
    let only_throughput = slow && wrong.len() == 1;
    (wrong, only_throughput)
}

#[test]
fn slowloris_and_slow_readers_scaled_keep_throughput_and_are_cut_off() {
    slow_clients(Slow {
        heads: 200,
        readers: 50,
        // The shipped default (4 per CPU, 8 here) has too little slack for a stable
        // ratio while other tests share the 2 cores (0.45-0.98 measured); the
        // full-size run below uses the default.
        threads: 64,
        head_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        window: Duration::from_millis(1500),
    });
}

/// Full size. `.ci/run` step "abuse (ignored)".
#[test]
#[ignore = "full size: run in the .ci step for ignored tests"]
fn full_size_slowloris_and_slow_readers_keep_throughput_and_are_cut_off() {
    slow_clients(Slow {
        heads: 2000,
        readers: 500,
        threads: threadserve::config::default_threads(),
        head_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        window: Duration::from_secs(3),
    });
}

// ---------------------------------------------------------------------------------
// Idle connections beyond the cap, thousands of connections, running out of fds.
// ---------------------------------------------------------------------------------

#[test]
fn idle_connections_beyond_the_cap_are_closed_longest_idle_first() {
    // A connection limit of 10 allows 9 idle keep-alive connections (MAX_IDLE_PERCENT).
    let server = TestServer::start(|c| c.limits.max_connections = 10);
    let mut conns = Vec::new();
    for i in 0..12 {
        let mut s = server.connect();
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let res = read_response(&mut r, false).unwrap();
        assert_eq!(res.status, 200, "connection {i} (earlier idle ones make room)");
        conns.push((s, r));
        // Long enough for the worker's linger and the hand-over to the idle watcher,
        // so the connections go idle in order.
        thread::sleep(Duration::from_millis(60));
    }
    for (i, (s, _)) in conns.iter_mut().enumerate().take(3) {
        assert!(closed(s), "connection {i}, among the longest idle, was not closed");
    }
    eventually("9 connections open", || server.stats().open_connections == 9);
    for (i, (s, r)) in conns.iter_mut().enumerate().skip(3) {
        s.write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let res = read_response(r, false).unwrap_or_else(|| panic!("connection {i} was closed"));
        assert_eq!((res.status, res.body.as_slice()), (200, &b"BB"[..]), "connection {i}");
    }
    assert_eq!(server.stats().open_connections, 9);
}

/// Over a large cap the longest idle go in a batch (the excess and a 64th of the cap,
/// found in one pass), so a flood at the cap does not cost a pass per connection:
/// the count then stays between the cap less that slack and the cap, and the newest
/// connections keep working.
#[test]
fn idle_connections_over_a_large_cap_are_closed_in_one_batch() {
    // A limit of 100 allows 90 idle connections; a 64th of that is 1 more per batch.
    let server = TestServer::start(|c| c.limits.max_connections = 100);
    let ask = |s: &mut TcpStream, r: &mut BufReader<TcpStream>, path: &[u8]| {
        s.write_all(&[&b"GET "[..], path, b" HTTP/1.1\r\nHost: t\r\n\r\n"].concat())
            .unwrap();
        read_response(r, false)
    };
    let mut conns = Vec::new();
    for i in 0..92 {
        let mut s = server.connect();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let res = ask(&mut s, &mut r, b"/a.txt").unwrap_or_else(|| panic!("connection {i} was closed"));
        assert_eq!(res.status, 200, "connection {i}");
        conns.push((s, r));
        if i >= 88 {
            thread::sleep(Duration::from_millis(60));
        }
    }
    eventually("89 or 90 connections open", || {
        (89..=90).contains(&server.stats().open_connections)
    });
    for (i, (s, r)) in conns.iter_mut().enumerate().skip(89) {
        let res = ask(s, r, b"/b.txt").unwrap_or_else(|| panic!("connection {i}, among the newest, was closed"));
        assert_eq!((res.status, res.body.as_slice()), (200, &b"BB"[..]), "connection {i}");
    }
}

/// Sizes of one many-connections run.
struct Many {
    conns: usize,
    client_threads: usize,
    duration: Duration,
}

/// Opens `conns` keep-alive connections to a spawned server (started with a low soft
/// fd limit, so it must raise its own), then cycles requests over all of them for
/// `duration`, sampling the server's threads, fds and RSS.
fn many_connections(plan: Many) {
    let _turn = heavy();
    raise_nofile(plan.conns as u64 + 1024);
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "one_k.bin", &[b'k'; 1024]);
    let max = (plan.conns + plan.conns / 4 + 100).to_string();
    let hard = plan.conns as u64 + 4096;
    let server = Spawned::start(
        tmp.path(),
        &["--max-connections", &max, "--log-format", "off"],
        Some((1024, hard)),
    );
    let pid = server.pid();
    assert_eq!(server.get_status("/one_k.bin"), Some(200));
    let logged = format!("open-file limit: {hard}");
    eventually("the raised fd limit is logged", || {
        server.stderr.lock().unwrap().iter().any(|(_, l)| l.contains(&logged))
    });
    let (tasks, rss_before) = (procfs::tasks(pid), procfs::rss_kib(pid));

    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..plan.client_threads)
        .map(|t| {
            let n = plan.conns / plan.client_threads + usize::from(t < plan.conns % plan.client_threads);
            let (errors, requests, connected) = (Arc::clone(&errors), Arc::clone(&requests), Arc::clone(&connected));
            let (addr, duration) = (server.addr, plan.duration);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut buf = vec![0u8; 8192];
                    let mut socks = Vec::with_capacity(n);
                    let fail = |e: String| errors.lock().unwrap().push(e);
                    // Each connection makes its first request as it opens.
                    for _ in 0..n {
                        match TcpStream::connect(addr) {
                            Ok(mut s) => {
                                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                                match roundtrip(&mut s, ONE_K_REQUEST, 1024, &mut buf) {
                                    Ok(()) => requests.fetch_add(1, Ordering::Relaxed),
                                    Err(e) => return fail(format!("first request: {e}")),
                                };
                                socks.push(s);
                                connected.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => return fail(format!("connect: {e}")),
                        }
                    }
                    let until = Instant::now() + duration;
                    while Instant::now() < until {
                        for s in &mut socks {
                            if let Err(e) = roundtrip(s, ONE_K_REQUEST, 1024, &mut buf) {
                                return fail(e);
                            }
                            requests.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    let (mut max_tasks, mut min_tasks, mut max_rss, mut max_fds) = (tasks, tasks, rss_before, 0);
    while clients.iter().any(|c| !c.is_finished()) {
        let n = procfs::tasks(pid);
        if n > 0 {
            (max_tasks, min_tasks) = (max_tasks.max(n), min_tasks.min(n));
        }
        max_rss = max_rss.max(procfs::rss_kib(pid));
        max_fds = max_fds.max(procfs::fds(pid));
        thread::sleep(Duration::from_millis(100));
    }
    for c in clients {
        c.join().unwrap();
    }
    let took = started.elapsed();
    let errors = errors.lock().unwrap();
    let total = requests.load(Ordering::Relaxed);
    println!(
        "{} connections ({} connected), {} requests in {took:?}; server threads {tasks} (min {min_tasks}, max \
         {max_tasks}), fds max {max_fds}, RSS {} KiB idle -> {} KiB peak ({:.1} KiB per connection); {} errors{}",
        plan.conns,
        connected.load(Ordering::Relaxed),
        total,
        rss_before,
        max_rss,
        (max_rss.saturating_sub(rss_before)) as f64 / plan.conns as f64,
        errors.len(),
        errors.first().map_or(String::new(), |e| format!(", first: {e}")),
    );
    assert!(errors.is_empty(), "{} errors, first: {}", errors.len(), errors[0]);
    assert_eq!(connected.load(Ordering::Relaxed), plan.conns);
    assert!(
        max_fds >= plan.conns,
        "the server never held {} connections at once ({max_fds} fds)",
        plan.conns
    );
    assert_eq!(
        (min_tasks, max_tasks),
        (tasks, tasks),
        "the server's thread count changed under load"
    );
}

#[test]
fn a_thousand_keep_alive_connections_on_a_fixed_pool_scaled() {
    many_connections(Many {
        conns: 1_000,
        client_threads: 4,
        duration: Duration::from_secs(2),
    });
}

/// Full size. `.ci/run` step "abuse (ignored)".
#[test]
#[ignore = "full size: run in the .ci step for ignored tests"]
fn full_size_ten_thousand_keep_alive_connections_on_a_fixed_pool() {
    many_connections(Many {
        conns: 10_000,
        client_threads: 8,
        duration: Duration::from_secs(10),
    });
}

/// A connection to `server` that has sent `start` (the kernel hands a connection to
/// `accept` only once it has sent something: `TCP_DEFER_ACCEPT`).
fn begun(server: &Spawned, start: &str) -> TcpStream {
    let mut s = server.connect();
    s.write_all(start.as_bytes()).unwrap();
    s
}

#[test]
fn running_out_of_file_descriptors_backs_off_quietly_and_recovers() {
    let _turn = heavy();
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "hello.txt", b"hello");
    let server = Spawned::start(tmp.path(), &["--threads", "2", "--log-format", "off"], Some((64, 64)));
    let pid = server.pid();
    assert_eq!(server.get_status("/hello.txt"), Some(200));
    let cpu_before = procfs::cpu(pid);
    let started = Instant::now();
    // More connections (each with a head begun) than the server has descriptors: the
    // kernel completes them from the backlog, and accept fails with EMFILE.
    let conns: Vec<TcpStream> = (0..100)
        .map(|_| begun(&server, "GET /hello.txt HTTP/1.1\r\n"))
        .collect();
    thread::sleep(Duration::from_secs(2));
    let (cpu, wall) = (procfs::cpu(pid) - cpu_before, started.elapsed());
    let fds = procfs::fds(pid);
    let complaints: Vec<String> = server
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, l)| *t >= started && l.contains("accept"))
        .map(|(_, l)| l.clone())
        .collect();
    println!(
        "EMFILE: {fds} fds open, CPU {cpu:?} over {wall:?}, {} log lines: {complaints:?}",
        complaints.len()
    );
    assert!(fds >= 60, "the server should be at its fd limit, has {fds} open");
    assert!(!complaints.is_empty(), "running out of descriptors is logged");
    assert!(
        complaints.len() as u64 <= wall.as_secs() + 1,
        "logged more than once a second: {complaints:?}"
    );
    assert!(cpu < wall / 5, "the accept loop spins: {cpu:?} CPU in {wall:?}");
    drop(conns);
    // The backlog drains (those clients are gone) and new connections are served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get_status("/hello.txt") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "not serving again after descriptors were freed"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Running out of descriptors while opening a file is the server's trouble, not a
/// missing file: a 404 would be remembered by clients and caches. (It was a 404 until
/// `files::OpenError::Exhausted`.)
#[test]
fn out_of_descriptors_while_opening_a_file_is_503_not_404() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "hello.txt", b"hello");
    let server = Spawned::start(tmp.path(), &["--threads", "2", "--log-format", "off"], Some((64, 64)));
    let conns: Vec<TcpStream> = (0..100)
        .map(|_| begun(&server, "GET /hello.txt HTTP/1.1\r\n"))
        .collect();
    thread::sleep(Duration::from_millis(500));
    // The first connections were accepted before the descriptors ran out.
    let mut first = &conns[0];
    first.write_all(b"Host: t\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    first.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 503", "{:?}", String::from_utf8_lossy(&head));
}

// ---------------------------------------------------------------------------------
// Faults: files changing under the server, resets, panics, odd file types, SIGTERM.
// ---------------------------------------------------------------------------------

/// Bytes that differ at every offset, so a misplaced chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Requests `path` on a keep-alive connection, reads `first` body bytes, runs `change`,
/// then reads until the response ends or the connection closes. Returns the announced
/// length, the body bytes received, and the connection if it is still usable.
fn fetch_around(server: &TestServer, path: &str, first: usize, change: impl FnOnce()) -> (usize, Vec<u8>, TcpStream) {
    let mut s = server.connect();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut len = None;
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok();
        }
        if line == "\r\n" {
            break;
        }
    }
    let len: usize = len.expect("Content-Length");
    let mut body = vec![0u8; first];
    r.read_exact(&mut body).unwrap();
    change();
    let mut chunk = vec![0u8; 1 << 16];
    while body.len() < len {
        match r.read(&mut chunk[..(len - body.len()).min(1 << 16)]) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    (len, body, s)
}

#[test]
fn files_deleted_replaced_truncated_or_grown_while_sent_end_only_that_response() {
    let _turn = heavy();
    let server = TestServer::start(|_| {});
    let root = server.root();
    let len = 8 << 20;
    let original = pattern(len, 0);

    // Deleted: the open handle still reads the whole file.
    write(&root, "deleted.bin", &original);
    let (_, body, _) = fetch_around(&server, "/deleted.bin", 4096, || {
        std::fs::remove_file(root.join("deleted.bin")).unwrap()
    });
    assert!(
        body == original,
        "deleted while sent: got {} bytes, differing",
        body.len()
    );
    settles_to(&server, "/deleted.bin", 404, |_| {});

    // Replaced by rename: the old inode is sent whole; the next request sees the new one.
    write(&root, "replaced.bin", &original);
    let (_, body, _) = fetch_around(&server, "/replaced.bin", 4096, || {
        write(&root, "replaced.tmp", &pattern(len, 0x55));
        std::fs::rename(root.join("replaced.tmp"), root.join("replaced.bin")).unwrap();
    });
    assert!(
        body == original,
        "replaced while sent: got {} bytes, differing",
        body.len()
    );
    let (new, deadline) = (pattern(len, 0x55), Instant::now() + threadserve::limits::CACHE_IDLE * 3);
    loop {
        let body = server.get("/replaced.bin").body;
        if body == new {
            break;
        }
        assert!(body == original, "replaced: a mix of old and new bytes");
        assert!(Instant::now() < deadline, "replaced: the old file is still served");
        thread::sleep(Duration::from_millis(50));
    }

    // Truncated to nothing: fewer bytes than announced, then the connection closes.
    write(&root, "truncated.bin", &original);
    let (announced, body, mut s) = fetch_around(&server, "/truncated.bin", 4096, || {
        std::fs::File::options()
            .write(true)
            .open(root.join("truncated.bin"))
            .unwrap()
            .set_len(0)
            .unwrap()
    });
    assert!(body.len() < announced, "truncated: all {announced} bytes arrived");
    assert!(
        original.starts_with(&body),
        "truncated: the bytes that arrived are wrong"
    );
    assert!(
        closed(&mut s),
        "truncated: the connection stays open after a short body"
    );

    // Grown: exactly the announced length, and the connection stays usable.
    write(&root, "grown.bin", &original);
    let (announced, body, mut s) = fetch_around(&server, "/grown.bin", 4096, || {
        let mut f = std::fs::File::options()
            .append(true)
            .open(root.join("grown.bin"))
            .unwrap();
        f.write_all(&pattern(1 << 20, 0x77)).unwrap();
    });
    assert_eq!((announced, body.len()), (len, len));
    assert!(body == original);
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let res = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(res.body, b"A", "grown: the connection is usable after the response");

    assert_eq!(server.get("/hello.txt").status, 200);
    eventually("no worker busy", || server.stats().busy_workers == 0);
}

/// Requests `path` until it answers `want`, within the open-file cache's lifetime plus
/// slack (workers may serve what they opened before the change until then). Every
/// answer on the way must come fast and pass `check`.
fn settles_to(server: &TestServer, path: &str, want: u16, check: impl Fn(&crate::support::Response)) {
    let deadline = Instant::now() + threadserve::limits::CACHE_IDLE + Duration::from_secs(2);
    loop {
        let t = Instant::now();
        let res = server.get(path);
        assert!(t.elapsed() < Duration::from_secs(1), "{path} took {:?}", t.elapsed());
        check(&res);
        if res.status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {} instead of {want}",
            res.status
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_fifo_directory_or_outside_symlink_swapped_in_for_a_file_is_refused() {
    let server = TestServer::start(|_| {});
    let root = server.root();
    let path = root.join("swap.txt");
    write(&root, "swap.txt", b"file");
    assert_eq!(server.get("/swap.txt").status, 200);
    let old_or = |codes: &'static [u16]| {
        move |res: &crate::support::Response| {
            assert!(
                codes.contains(&res.status) || (res.status == 200 && res.body == b"file"),
                "{} {:?}",
                res.status,
                res.text()
            );
        }
    };

    // A FIFO opens without blocking (O_NONBLOCK) and is refused.
    std::fs::remove_file(&path).unwrap();
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    settles_to(&server, "/swap.txt", 403, old_or(&[403]));

    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    settles_to(&server, "/swap.txt", 301, old_or(&[301, 403]));
    // A worker may still hold the file or the FIFO: "/swap.txt/" is 404 or 403 then.
    settles_to(&server, "/swap.txt/", 200, |res| {
        assert!(matches!(res.status, 200 | 403 | 404), "{}", res.status)
    });

    std::fs::remove_dir(&path).unwrap();
    std::os::unix::fs::symlink(server.tmp.path().join("outside/secret.txt"), &path).unwrap();
    settles_to(&server, "/swap.txt", 404, |res| {
        assert!(!contains(&res.body, b"TOP SECRET"), "{} leaked the secret", res.status);
    });
    assert_eq!(server.get("/hello.txt").status, 200);
}

#[test]
fn an_unreadable_directory_is_refused_or_as_root_served_honestly() {
    let server = TestServer::start(|_| {});
    let dir = server.root().join("locked");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "f.txt", b"inside");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    let (listing, file) = (server.get("/locked/").status, server.get("/locked/f.txt").status);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root bypasses permission bits: the directory is as readable as any other.
        assert_eq!((listing, file), (200, 200), "as root");
    } else {
        assert_eq!((listing, file), (403, 403), "as a normal user");
    }
    assert_eq!(server.get("/hello.txt").status, 200);
}

#[test]
fn clients_resetting_mid_response_or_mid_head_free_their_workers() {
    let _turn = heavy();
    let server = TestServer::start(|c| c.threads = 4);
    write(&server.root(), "big.bin", &vec![b'x'; 32 << 20]);
    let addr = server.addr;
    let resetters: Vec<_> = (0..16)
        .map(|i| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                if i % 2 == 0 {
                    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                    let mut some = vec![0u8; 64 * 1024];
                    s.read_exact(&mut some).unwrap();
                } else {
                    s.write_all(b"GET /big.bin HTTP/1.1\r\nHo").unwrap();
                    thread::sleep(Duration::from_millis(50));
                }
                // SO_LINGER 0: close sends RST instead of FIN.
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
            })
        })
        .collect();
    for r in resetters {
        r.join().unwrap();
    }
    eventually("workers freed and connections closed after resets", || {
        let s = server.stats();
        s.busy_workers == 0 && s.open_connections == 0
    });
    for _ in 0..8 {
        assert_eq!(server.get("/hello.txt").status, 200);
    }
}

#[test]
// The panic hook exists in debug builds only (see server::execute::test_hook).
#[cfg_attr(not(debug_assertions), ignore)]
fn panicking_requests_from_many_clients_never_take_a_worker_down() {
    let _turn = heavy();
    let server = TestServer::start(|c| {
        c.threads = 2;
        c.panic_path = Some("/boom".into());
    });
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..10 {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let path = if i % 2 == 0 { "/boom" } else { "/hello.txt" };
                    // Pipelined: the request after a panic must not be answered on
                    // the same connection (it closes), the one before must be.
                    write!(
                        s,
                        "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET {path} HTTP/1.1\r\nHost: t\r\n\r\n\
                         GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    )
                    .unwrap();
                    let mut r = BufReader::new(s);
                    while let Some(res) = read_response(&mut r, false) {
                        statuses.push(res.status);
                    }
                }
                statuses
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.join().unwrap());
    }
    let count = |code| all.iter().filter(|&&s| s == code).count();
    // Per client: 5 × (200, 500) and 5 × (200, 200, 200).
    assert_eq!((count(500), count(200), all.len()), (40, 160, 200), "{all:?}");
    eventually("no worker busy", || server.stats().busy_workers == 0);
    for _ in 0..4 {
        assert_eq!(server.get("/hello.txt").status, 200, "both workers still serve");
    }
}

#[test]
fn sigterm_under_concurrent_load_loses_no_access_log_record() {
    let _turn = heavy();
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.txt", b"A");
    let server = Spawned::start(tmp.path(), &["--threads", "4", "--log-format", "combined"], None);
    let addr = server.addr;
    let go = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..6)
        .map(|t| {
            let go = Arc::clone(&go);
            thread::spawn(move || {
                let mut answered = 0usize;
                'connections: while go.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(addr) else { break };
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut buf = [0u8; 1024];
                    // Some clients use one connection per request, others keep alive.
                    for _ in 0..if t % 2 == 0 { 1 } else { 50 } {
                        match roundtrip(&mut s, b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", 1, &mut buf) {
                            Ok(()) => answered += 1,
                            Err(_) => break 'connections,
                        }
                    }
                }
                answered
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(400));
    let (status, lines) = {
        let stop = Arc::clone(&go);
        // Clients keep going while the server shuts down; they stop at its first refusal.
        let result = server.terminate(Duration::from_secs(10));
        stop.store(false, Ordering::Relaxed);
        result
    };
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(status.success(), "{status:?}");
    let logged = lines
        .iter()
        .filter(|l| l.contains("\"GET /a.txt HTTP/1.1\" 200 "))
        .count();
    println!(
        "SIGTERM under load: {answered} responses received, {logged} logged, {} lines",
        lines.len()
    );
    assert!(answered > 100, "only {answered} requests before SIGTERM");
    assert_eq!(logged, answered, "access-log records lost or invented on SIGTERM");
    assert_eq!(
        lines.len(),
        logged,
        "unexpected lines: {:?}",
        lines.iter().find(|l| !l.contains(" 200 "))
    );
}

/// Regression test for an engine bug: a worker's open-file cache keeps the descriptor
/// of a file it served until the same path is asked for again after the TTL or the
/// cache fills up, so a deleted file's disk space is never freed on a server whose
/// workers see few distinct paths (measured: a deleted 50 MB file still open in both
/// workers 5 s later, after requests for other paths). nginx closes open_file_cache
/// entries unused for `inactive` (60 s by default).
#[test]
fn a_deleted_file_is_not_held_open_long_after_the_cache_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "big.bin", &vec![b'b'; 1 << 20]);
    write(tmp.path(), "a.txt", b"A");
    let server = Spawned::start(tmp.path(), &["--threads", "2", "--log-format", "off"], None);
    for _ in 0..4 {
        assert_eq!(server.get_status("/big.bin"), Some(200));
    }
    std::fs::remove_file(tmp.path().join("big.bin")).unwrap();
    thread::sleep(threadserve::limits::CACHE_IDLE * 3);
    for _ in 0..4 {
        assert_eq!(server.get_status("/a.txt"), Some(200));
    }
    let held: Vec<String> = procfs::fd_targets(server.pid())
        .into_iter()
        .filter(|t| t.ends_with("(deleted)"))
        .collect();
    assert!(held.is_empty(), "deleted files still open: {held:?}");
}

/// Issue "files you can trust", target 3, at full size: 1,000 clients request a
/// 100,000-entry listing (about 9 MB) and never read. The server's RSS stays under
/// 256 MiB (each parked response holds one descriptor of the kept page, not a copy),
/// and a small file requested meanwhile is answered within 100 ms.
#[test]
#[ignore = "full size: run in the .ci step for ignored tests"]
fn full_size_thousand_slow_readers_of_a_hundred_thousand_entry_listing() {
    raise_nofile(8192);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("huge");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(tmp.path().join("a.txt"), b"A").unwrap();
    for i in 0..100_000 {
        std::fs::File::create(dir.join(format!("entry-{i:06}.txt"))).unwrap();
    }
    let server = Spawned::start(tmp.path(), &["--log-format", "off"], Some((8192, 8192)));
    let pid = server.child.id();
    let get = |path: &str| crate::support::get_at(&server.addr.to_string(), path).expect("a response");
    let first = get("/huge/");
    assert_eq!(first.status, 200);
    assert!(
        first.body.len() > 5_000_000,
        "a big listing: {} bytes",
        first.body.len()
    );
    let clients: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut c = TcpStream::connect(server.addr).unwrap();
            c.write_all(b"GET /huge/ HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let mut took = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(get("/a.txt").status, 200);
        took.push(t.elapsed());
    }
    eprintln!("small file: {took:?}");
    let slowest = took.iter().copied().max().unwrap_or_default();
    let rss_mib = procfs::rss_kib(pid) / 1024;
    eprintln!(
        "1000 parked readers of a {} byte listing: RSS {rss_mib} MiB, small file at most {slowest:?}",
        first.body.len()
    );
    assert!(rss_mib < 256, "RSS {rss_mib} MiB");
    assert!(slowest < Duration::from_millis(100), "a small file took {slowest:?}");
    drop(clients);
}
