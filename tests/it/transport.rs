//! The transports: `THREADSERVE_TRANSPORT=copy` selects the copying one, and it sends
//! the same bytes as sendfile does — ranges, multipart, files larger than its buffer,
//! and responses parked for a slow reader and resumed.

use crate::support::{read_response, start_line_addr, write, TestServer, BIN};
use std::io::{BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use threadserve::limits::COPY_CHUNK_BYTES;
use threadserve::server::Transport;

/// Bytes that differ from their neighbours, so an offset off by one shows.
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A server over the copy transport with `name` holding `content`.
fn copy_server(threads: usize, name: &str, content: &[u8]) -> TestServer {
    let server = TestServer::start_over(Some(Transport::Copy), |c| c.threads = threads);
    assert_eq!(server.transport, Transport::Copy);
    write(&server.root(), name, content);
    server
}

fn get_with(server: &TestServer, path: &str, extra: &str) -> crate::support::Response {
    server.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ))
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn the_suite_runs_over_the_transport_the_environment_selects() {
    let want = match std::env::var("THREADSERVE_TRANSPORT").as_deref() {
        Ok("copy") => Transport::Copy,
        _ => Transport::Plain,
    };
    let server = TestServer::start(|_| {});
    assert_eq!(server.transport, want, "THREADSERVE_TRANSPORT is read at bind");
    assert_eq!(server.get("/hello.txt").body, b"hello, world\n");
}

#[test]
fn the_binary_logs_the_copy_transport_when_the_environment_asks_for_it() {
    for (value, want) in [("copy", "transport copy"), ("", "transport plain TCP")] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .arg(dir.path())
            .args(["--port", "0"])
            .env_remove("RUST_LOG")
            .env("THREADSERVE_TRANSPORT", value)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let _addr = start_line_addr(&mut stdout);
        // SAFETY: signalling a child this test spawned and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(child.wait().unwrap().success(), "{stderr}");
        assert!(
            stderr.contains(want),
            "THREADSERVE_TRANSPORT={value:?}: no {want:?} in {stderr}"
        );
    }
}

#[test]
fn copy_transport_sends_a_file_larger_than_its_buffer_byte_exact() {
    let content = patterned(5 * COPY_CHUNK_BYTES + 123);
    let server = copy_server(2, "big.bin", &content);
    let res = server.get("/big.bin");
    assert_eq!(res.status, 200);
    assert_eq!(res.body.len(), content.len());
    assert!(res.body == content, "bytes differ");
}

#[test]
fn copy_transport_sends_ranges_across_buffer_boundaries() {
    let content = patterned(3 * COPY_CHUNK_BYTES);
    let server = copy_server(2, "r.bin", &content);
    let (a, b) = (COPY_CHUNK_BYTES - 3, 2 * COPY_CHUNK_BYTES + 4);
    let res = get_with(&server, "/r.bin", &format!("Range: bytes={a}-{b}\r\n"));
    assert_eq!(res.status, 206);
    let len = content.len();
    assert_eq!(
        res.header("content-range"),
        Some(format!("bytes {a}-{b}/{len}").as_str())
    );
    assert!(res.body == content[a..=b], "range bytes differ");
    let res = get_with(&server, "/r.bin", "Range: bytes=-7\r\n");
    assert_eq!((res.status, &res.body[..]), (206, &content[len - 7..]));
}

#[test]
fn copy_transport_sends_multipart_ranges_byte_exact() {
    let content = patterned(2 * COPY_CHUNK_BYTES + 10);
    let server = copy_server(2, "m.bin", &content);
    let len = content.len();
    let ranges = [
        (0, 9),
        (COPY_CHUNK_BYTES - 5, COPY_CHUNK_BYTES + 40_000),
        (len - 3, len - 1),
    ];
    let spec: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    let res = get_with(&server, "/m.bin", &format!("Range: bytes={}\r\n", spec.join(",")));
    assert_eq!(res.status, 206);
    let ct = res.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").expect(ct);
    let mut rest = &res.body[..];
    for (a, b) in ranges {
        let range = format!("Content-Range: bytes {a}-{b}/{len}\r\n");
        let at = find(rest, range.as_bytes()).unwrap_or_else(|| panic!("no part {range:?}"));
        let part_head = &rest[at..];
        let body_at = find(part_head, b"\r\n\r\n").expect("end of the part's head") + 4;
        let part = &part_head[body_at..];
        assert!(part[..=b - a] == content[a..=b], "part {a}-{b} differs");
        let after = &part[b - a + 1..];
        assert!(
            after.starts_with(format!("\r\n--{boundary}").as_bytes()),
            "part {a}-{b} overran"
        );
        rest = after;
    }
    assert_eq!(rest, format!("\r\n--{boundary}--\r\n").as_bytes());
}

/// A reader that takes at most 64 KiB at a time and pauses after every MiB, so the
/// server's socket buffer fills and the response parks and resumes many times.
struct Sipping<R> {
    inner: R,
    since_pause: usize,
}

impl<R: Read> Read for Sipping<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since_pause >= 1 << 20 {
            std::thread::sleep(Duration::from_millis(20));
            self.since_pause = 0;
        }
        let cap = buf.len().min(1 << 16);
        let n = self.inner.read(&mut buf[..cap])?;
        self.since_pause += n;
        Ok(n)
    }
}

#[test]
fn copy_transport_parks_a_slow_reader_and_resumes_it_byte_exact() {
    // Far more than the socket buffers hold, so the only worker must park the response.
    let content = patterned(24 << 20);
    let server = copy_server(1, "slow.bin", &content);
    let from = 1_000_001;
    let mut slow = server.connect();
    let req = format!(
        "GET /slow.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={from}-\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    slow.write_all(req.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(server.get("/a.txt").status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "worker pinned by a slow reader"
    );
    let mut r = BufReader::new(Sipping {
        inner: slow,
        since_pause: 0,
    });
    let res = read_response(&mut r, false).unwrap();
    assert_eq!(res.status, 206);
    assert_eq!(res.body.len(), content.len() - from);
    assert!(res.body == content[from..], "resumed bytes differ");
    // The pipelined request behind it is answered on the same connection.
    let next = read_response(&mut r, false).unwrap();
    assert_eq!((next.status, &next.body[..]), (200, &b"A"[..]));
    let stats = server.stop();
    assert_eq!(stats.requests, 3);
}
