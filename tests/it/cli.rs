//! The binary: flags, errors, start-up line, access log and SIGTERM.

use crate::support::{exit_within, get_at as get, read_response, start_line_addr, write, BIN};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A spawned server; its stdout (start line, access log) is read line by line.
struct Spawned {
    child: Reaped,
    addr: String,
    stdout: BufReader<std::process::ChildStdout>,
}

/// A child process killed on drop, so a test that fails leaves no server running.
struct Reaped(Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Everything the server wrote to stderr (call after it exited).
fn stderr_of(server: &mut Spawned) -> String {
    let mut err = String::new();
    if let Some(mut e) = server.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

fn spawn(root: &std::path::Path, args: &[&str]) -> Spawned {
    let mut child = Command::new(BIN)
        .arg(root)
        .args(["--port", "0"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let addr = start_line_addr(&mut stdout);
    assert!(!addr.ends_with(":0"), "the start line shows the real port: {addr}");
    Spawned {
        addr,
        child: Reaped(child),
        stdout,
    }
}

fn sigterm(child: &Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running {within:?} after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_an_in_flight_download_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..(24u32 << 20)).map(|i| (i % 251) as u8).collect();
    write(dir.path(), "big.bin", &data);
    let mut server = spawn(dir.path(), &["--log-format", "off"]);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut r = BufReader::with_capacity(64 * 1024, s);
    let mut first = [0u8; 1];
    r.read_exact(&mut first).unwrap();
    sigterm(&server.child);
    // Read slowly enough that the download is still running after the signal.
    let mut head = String::from("H");
    loop {
        let len = head.len();
        r.read_line(&mut head).unwrap();
        if head.len() - len <= 2 {
            break;
        }
    }
    assert!(head.contains("Content-Length: 25165824"), "{head}");
    let mut body = Vec::with_capacity(data.len());
    let mut chunk = vec![0u8; 1 << 20];
    while body.len() < data.len() {
        let n = r.read(&mut chunk).unwrap();
        assert!(n > 0, "download cut at {} bytes", body.len());
        body.extend_from_slice(&chunk[..n]);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(body == data, "downloaded bytes differ");
    let status = wait_exit(&mut server.child, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(&server.addr).is_err(), "still accepting after exit");
}

#[test]
fn access_log_has_one_combined_line_per_request_and_none_lost_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"A");
    let mut server = spawn(dir.path(), &[]);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for i in 0..50 {
        let path = if i % 5 == 0 { "/missing" } else { "/a.txt" };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nUser-Agent: test \"agent\"\r\nReferer: http://r/\r\n\r\n"
        )
        .unwrap();
        read_response(&mut r, false).unwrap();
    }
    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(5)).success());
    let lines: Vec<String> = server.stdout.lines().map(Result::unwrap).collect();
    assert_eq!(lines.len(), 50, "{lines:?}");
    let re_ok = |l: &str| {
        l.starts_with("127.0.0.1 - - [")
            && l.contains(" +0000] \"GET /")
            && l.ends_with(" \"http://r/\" \"test \\x22agent\\x22\"")
    };
    assert!(lines.iter().all(|l| re_ok(l)), "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.contains("\" 404 ")).count(), 10);
    assert!(lines[1].contains("\"GET /a.txt HTTP/1.1\" 200 1 "), "{}", lines[1]);
}

#[test]
fn json_access_log_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"A");
    let mut server = spawn(dir.path(), &["--log-format", "json"]);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    s.read_to_end(&mut sink).unwrap();
    let mut line = String::new();
    server.stdout.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (v["method"].as_str(), v["status"].as_u64(), v["bytes"].as_u64()),
        (Some("GET"), Some(200), Some(1))
    );
    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(5)).success());
}

#[test]
fn bad_command_lines_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "file.txt", b"x");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let missing = dir.path().join("missing");
    let file = dir.path().join("file.txt");
    let cases: [(&str, Vec<&str>, &str); 5] = [
        ("missing_root", vec![missing.to_str().unwrap()], "cannot serve root"),
        ("root_is_a_file", vec![file.to_str().unwrap()], "is not a directory"),
        (
            "port_taken",
            vec![dir.path().to_str().unwrap(), "--port", &taken_port],
            "already in use",
        ),
        (
            "bad_address",
            vec![dir.path().to_str().unwrap(), "--bind", "999.1.1.1:80"],
            "invalid --bind address",
        ),
        (
            "bad_threads",
            vec![dir.path().to_str().unwrap(), "--threads", "0"],
            "--threads",
        ),
    ];
    for (name, args, want) in cases {
        let out = Command::new(BIN).args(&args).env_remove("RUST_LOG").output().unwrap();
        assert!(!out.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{name}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{name}: {stderr}"
        );
        if name != "bad_threads" {
            assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        }
    }
}

#[test]
fn flags_read_environment_variables_and_help_reads_well() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for flag in [
        "--bind",
        "--port",
        "--threads",
        "--log-format",
        "--dotfiles",
        "--follow-symlinks",
        "--no-listing",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("THREADSERVE_BIND") && help.contains("THREADSERVE_THREADS"));

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"A");
    let mut child = Command::new(BIN)
        .env("THREADSERVE_ROOT", dir.path())
        .env("THREADSERVE_BIND", "127.0.0.1:0")
        .env("THREADSERVE_THREADS", "3")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("with 3 worker threads"), "{line}");
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let status = Command::new(BIN)
        .args(["healthcheck", "--bind", &addr])
        .status()
        .unwrap();
    assert!(status.success(), "healthcheck against a live server");
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    let status = Command::new(BIN)
        .args(["healthcheck", "--bind", &addr])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "healthcheck against a stopped server");
}

/// Runs the binary with `args`; kills it (and fails) if it is still running after
/// `within`. Returns its exit status and stderr.
fn run_bounded(args: &[&str], within: Duration) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exit_within(&mut child, within)
        .unwrap_or_else(|| panic!("threadserve {args:?} still running after {within:?}: the value was accepted"));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn huge_head_timeout_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let cases = [
        ("--head-timeout", "10000000000000000000", "maximum of 1440m"),
        ("--idle-timeout", "1441m", "maximum of 1440m"),
        ("--write-timeout", "86401", "maximum of 1440m"),
        ("--grace-period", "90000s", "maximum of 1440m"),
        ("--linger", "2s", "maximum of 1s"),
    ];
    for (flag, value, max) in cases {
        let (status, stderr) = run_bounded(&[root, "--port", "0", flag, value], Duration::from_secs(3));
        assert!(!status.success(), "{flag} {value}");
        // clap's format: the first line names the flag, the value and the maximum.
        let first = stderr.lines().next().unwrap_or_default();
        for want in [flag, value, max] {
            assert!(first.contains(want), "{flag} {value}: '{want}' missing from {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // The maxima themselves are accepted.
    let mut server = spawn(
        dir.path(),
        &["--head-timeout", "1440m", "--grace-period", "86400s", "--linger", "1s"],
    );
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s);
    assert!(read_response(&mut r, false).is_some());
    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(5)).success());
}

#[test]
fn sighup_sigusr1_and_sigusr2_do_not_kill_the_server() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"A");
    let mut server = spawn(dir.path(), &["--log-format", "off"]);
    for (name, sig) in [
        ("SIGHUP", libc::SIGHUP),
        ("SIGUSR1", libc::SIGUSR1),
        ("SIGUSR2", libc::SIGUSR2),
    ] {
        unsafe { libc::kill(server.child.id() as i32, sig) };
        std::thread::sleep(Duration::from_millis(200));
        let exited = server.child.try_wait().unwrap();
        assert!(exited.is_none(), "{name} ended the server: {exited:?}");
        let res = get(&server.addr, "/a.txt").unwrap_or_else(|| panic!("no answer after {name}"));
        assert_eq!((res.status, res.body.as_slice()), (200, &b"A"[..]), "after {name}");
    }
    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(5)).success());
    let stderr = stderr_of(&mut server);
    assert_eq!(stderr.matches("SIGHUP: root").count(), 1, "{stderr}");
}

/// Sends `n` keep-alive requests for `/a.txt` with a User-Agent of `ua_len` bytes on one
/// connection, reading every response.
fn send_requests(addr: &str, n: usize, ua_len: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let request = format!(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: {}\r\n\r\n",
        "u".repeat(ua_len)
    );
    for _ in 0..n {
        s.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    }
}

#[test]
fn sigterm_exits_within_grace_when_stdout_is_stalled() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"A");
    // `server.stdout` keeps the pipe's read end open, and nobody reads it any more.
    let mut server = spawn(dir.path(), &["--grace-period", "1s"]);
    // 300 lines of over 1 KiB: far more than a 64 KiB pipe holds.
    send_requests(&server.addr, 300, 1024);
    std::thread::sleep(Duration::from_millis(300)); // the writer is stuck in write(1) now
    let t = Instant::now();
    sigterm(&server.child);
    let status = wait_exit(&mut server.child, Duration::from_secs(2));
    assert!(status.success(), "{status:?} after {:?}", t.elapsed());
    let stderr = stderr_of(&mut server);
    let report: Vec<&str> = stderr.lines().filter(|l| l.contains("not written")).collect();
    assert_eq!(report.len(), 1, "one line counts the records not written: {stderr}");
    assert!(report[0].contains("still queued at exit"), "{stderr}");
}

#[test]
fn stalled_stdout_drops_log_records_but_counts_every_request() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"A");
    let mut server = spawn(dir.path(), &["--stats-path", "/.stats", "--grace-period", "1s"]);
    // 800 lines of 8 KiB (6.4 MB) do not fit the log buffer (and a stalled pipe).
    send_requests(&server.addr, 800, 8 * 1024);
    // Records reach the counters just after their response; earlier stats requests
    // count too (they are 200s as well).
    let mut polls = 0;
    let v = loop {
        polls += 1;
        let stats = get(&server.addr, "/.stats").expect("stats answer");
        assert_eq!(stats.status, 200, "{}", stats.text());
        let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
        if v["requests"].as_u64() >= Some(800) || polls == 50 {
            break v;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let requests = v["requests"].as_u64().unwrap();
    assert!((800..800 + polls).contains(&requests), "{v}");
    assert_eq!(v["status"]["2xx"].as_u64(), Some(requests), "{v}");
    let dropped = v["log_records_dropped"]
        .as_u64()
        .expect("log_records_dropped in the stats");
    assert!((100..800).contains(&dropped), "{v}");
    // The process stays small: 6.4 MB of log lines were not all kept.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    assert!(rss_kb < 40 * 1024, "RSS {rss_kb} kB");
    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(3)).success());
}

#[test]
fn closed_log_reader_warns_at_most_once_a_second() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"A");
    let Spawned {
        mut child,
        addr,
        stdout,
    } = spawn(dir.path(), &[]);
    drop(stdout); // the log reader goes away: every write now fails with EPIPE
    let t = Instant::now();
    send_requests(&addr, 500, 1024);
    std::thread::sleep(Duration::from_millis(200));
    let secs = t.elapsed().as_secs();
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("access log")).collect();
    // One warning per second at most, plus the report at exit.
    assert!(
        !lines.is_empty() && lines.len() as u64 <= secs + 2,
        "{} lines in {secs} s: {stderr}",
        lines.len()
    );
    let exit_report = lines.last().unwrap();
    assert!(exit_report.contains("500 record(s) not written"), "{stderr}");
}
