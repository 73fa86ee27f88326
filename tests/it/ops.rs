//! Running it like production (issue 14): the metrics path parsed after known
//! traffic, the health path, the drain a load balancer sees on SIGTERM, and the
//! healthcheck subcommand against it.

use crate::support::{eventually, exit_within, read_response, start_line_addr, write, Response, TestServer, BIN};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One sample of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: each family's TYPE and HELP, and the samples in order.
#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    helps: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format (labels without escapes, which is all threadserve writes).
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                e.helps.insert(name.into(), help.into());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(e.helps.contains_key(name), "TYPE before HELP for {name}");
                e.types.insert(name.into(), kind.into());
            } else {
                assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?}");
                e.samples.push(sample(line));
            }
        }
        e
    }

    /// The value of the one sample `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert_eq!(found.len(), 1, "one sample {name}{labels:?}, got {found:?}");
        found[0].value
    }

    /// The family a sample belongs to (a histogram's `_bucket`, `_sum`, `_count`).
    fn family<'a>(&self, name: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(f) = name.strip_suffix(suffix) {
                if self.types.get(f).is_some_and(|k| k == "histogram") {
                    return f;
                }
            }
        }
        name
    }
}

fn sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("name and value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("closing brace");
            let labels = body
                .split(',')
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (name, labels)
        }
    };
    Sample {
        name: name.into(),
        labels,
        value,
    }
}

/// 3 GETs answered 200, one 404 and one HEAD: the counters say exactly that, the
/// histogram is cumulative and counts the same requests, every family has HELP and
/// TYPE, and the process metrics are plausible.
#[test]
fn metrics_count_known_traffic() {
    let server = TestServer::start(|c| c.metrics_path = Some("/metrics".into()));
    for _ in 0..3 {
        assert_eq!(server.get("/hello.txt").status, 200);
    }
    let not_found = server.get("/nope");
    assert_eq!(not_found.status, 404);
    let head = server.request("HEAD /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    eventually("five requests counted", || server.stats().requests == 5);
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let m = Exposition::parse(&r.text());
    for s in &m.samples {
        let family = m.family(&s.name);
        assert!(
            m.types.contains_key(family) && m.helps.contains_key(family),
            "no TYPE/HELP for {}",
            s.name
        );
    }
    for (name, kind) in &m.types {
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
    }
    let requests = "threadserve_requests_total";
    assert_eq!(m.value(requests, &[("method", "GET"), ("code", "2xx")]), 3.0);
    assert_eq!(m.value(requests, &[("method", "GET"), ("code", "4xx")]), 1.0);
    assert_eq!(m.value(requests, &[("method", "HEAD"), ("code", "2xx")]), 1.0);
    let total: f64 = m.samples.iter().filter(|s| s.name == requests).map(|s| s.value).sum();
    assert_eq!(total, 5.0, "the metrics request itself is counted after it is answered");
    let bytes = 3 * "hello, world\n".len() + not_found.body.len();
    assert_eq!(m.value("threadserve_response_body_bytes_total", &[]), bytes as f64);
    check_histogram(&m, 5.0);
    check_engine(&m);
    check_process(&m);
}

/// Buckets in increasing `le`, cumulative, ending at `+Inf` == `_count` == `count`.
fn check_histogram(m: &Exposition, count: f64) {
    let name = "threadserve_request_duration_seconds";
    assert_eq!(m.types[name], "histogram");
    let buckets: Vec<(f64, f64)> = m
        .samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket"))
        .map(|s| {
            let le = &s.labels["le"];
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                s.value,
            )
        })
        .collect();
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{buckets:?}"
    );
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, count)));
    assert_eq!(m.value(&format!("{name}_count"), &[]), count);
    let sum = m.value(&format!("{name}_sum"), &[]);
    assert!(sum > 0.0 && sum < 10.0, "sum {sum}");
}

fn check_engine(m: &Exposition) {
    // Six connections: five requests and this scrape; none shed.
    assert_eq!(m.value("threadserve_connections_accepted_total", &[]), 6.0);
    assert_eq!(m.value("threadserve_connections_shed_total", &[]), 0.0);
    assert!(m.value("threadserve_connections_open", &[]) >= 1.0, "the scrape's own");
    assert!(m.value("threadserve_connections_parked", &[]) >= 0.0);
    assert_eq!(m.value("threadserve_workers", &[]), 4.0);
    assert!(m.value("threadserve_workers_busy", &[]) >= 1.0, "the worker answering");
    assert_eq!(m.value("threadserve_access_log_records_dropped_total", &[]), 0.0);
    assert_eq!(m.value("threadserve_access_log_records_lost_total", &[]), 0.0);
    assert_eq!(m.value("threadserve_draining", &[]), 0.0);
    assert_eq!(
        m.value("threadserve_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
}

fn check_process(m: &Exposition) {
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e5);
    assert!(m.value("process_virtual_memory_bytes", &[]) >= m.value("process_resident_memory_bytes", &[]));
    let (open, max) = (m.value("process_open_fds", &[]), m.value("process_max_fds", &[]));
    assert!(open >= 3.0 && open <= max, "{open} of {max}");
    assert!(m.value("process_cpu_seconds_total", &[]) >= 0.0);
    assert!(m.value("process_threads", &[]) >= 4.0, "4 workers and more");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let start = m.value("process_start_time_seconds", &[]);
    assert!(start <= now + 1.0 && start > now - 3600.0, "start {start}, now {now}");
}

/// The health path answers whatever the root holds there, also a dotfile's name.
#[test]
fn health_path_wins_over_files_and_dotfile_rules() {
    let server = TestServer::start(|c| c.health_path = Some("/.env".into()));
    write(&server.root(), "healthz", b"a file");
    let r = server.get("/.env");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(server.get("/healthz").text(), "a file", "other paths are files");
    assert_eq!(server.get("/metrics").status, 404, "no metrics path configured");
}

/// A server binary, killed on drop if it is still running.
struct Spawned {
    child: Child,
    addr: String,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Spawned {
    fn start(root: &std::path::Path, args: &[&str]) -> Spawned {
        let mut child = Command::new(BIN)
            .arg(root)
            .args(["--port", "0", "--log-format", "off"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = start_line_addr(&mut BufReader::new(child.stdout.take().unwrap()));
        Spawned { child, addr }
    }

    fn sigterm(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// `GET path` on a new connection that asks for keep-alive.
fn get_keep_alive(addr: &str, path: &str) -> Option<Response> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    read_response(&mut BufReader::new(s), false)
}

fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"A");
    dir
}

/// SIGTERM with --health-path: the listener stays open, health turns 503, other
/// requests are still answered with Connection: close (on new connections and on one
/// kept alive from before), and the server exits 0 once the drain delay has passed.
#[test]
fn sigterm_with_health_path_drains_then_exits_after_the_delay() {
    let dir = root();
    let delay = Duration::from_secs(2);
    let args = [
        "--health-path",
        "/healthz",
        "--drain-delay",
        "2s",
        "--metrics-path",
        "/metrics",
    ];
    let mut server = Spawned::start(dir.path(), &args);
    let ok = get_keep_alive(&server.addr, "/healthz").unwrap();
    assert_eq!((ok.status, ok.header("connection")), (200, None));
    let mut kept = TcpStream::connect(&server.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut kept_reader = BufReader::new(kept.try_clone().unwrap());
    kept.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(
        read_response(&mut kept_reader, false).unwrap().header("connection"),
        None
    );

    let signalled = Instant::now();
    server.sigterm();
    eventually("health answers 503", || {
        get_keep_alive(&server.addr, "/healthz").is_some_and(|r| r.status == 503)
    });
    let draining = get_keep_alive(&server.addr, "/healthz").unwrap();
    assert_eq!(
        (draining.text().as_str(), draining.header("connection")),
        ("draining\n", Some("close"))
    );
    let other = get_keep_alive(&server.addr, "/a.txt").expect("new connections are still served");
    assert_eq!((other.status, other.header("connection")), (200, Some("close")));
    let metrics = get_keep_alive(&server.addr, "/metrics").unwrap();
    assert_eq!(
        Exposition::parse(&metrics.text()).value("threadserve_draining", &[]),
        1.0
    );
    kept.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let last = read_response(&mut kept_reader, false).expect("the kept-alive connection is served");
    assert_eq!((last.status, last.header("connection")), (200, Some("close")));
    assert!(crate::support::closed(&mut kept), "and then closed");
    if signalled.elapsed() < delay - Duration::from_millis(300) {
        assert!(server.running(), "still serving within the drain delay");
    }
    let status = exit_within(&mut server.child, Duration::from_secs(8)).expect("exits after the drain");
    let exited = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        exited >= delay,
        "exited {exited:?} after SIGTERM, before the {delay:?} drain delay"
    );
    assert!(TcpStream::connect(&server.addr).is_err(), "the listener is gone");
}

/// With no drain delay, an idle keep-alive connection does not hold the drain back,
/// but a response in flight does, until the grace period (counted from SIGTERM) ends.
#[test]
fn drain_waits_for_responses_in_flight_not_for_idle_connections() {
    let dir = root();
    let mut server = Spawned::start(dir.path(), &["--health-path", "/healthz", "--grace-period", "2s"]);
    let idle = get_keep_alive(&server.addr, "/a.txt");
    let mut idle_conn = TcpStream::connect(&server.addr).unwrap();
    idle_conn.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(idle.is_some());
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    server.sigterm();
    exit_within(&mut server.child, Duration::from_secs(5)).expect("exits");
    let idle_exit = signalled.elapsed();
    assert!(
        idle_exit < Duration::from_millis(1500),
        "an idle connection held the drain: {idle_exit:?}"
    );

    // A 64 MiB download its client does not read: in flight until the grace period.
    write(dir.path(), "big.bin", &vec![7u8; 64 << 20]);
    let mut server = Spawned::start(dir.path(), &["--health-path", "/healthz", "--grace-period", "2s"]);
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    server.sigterm();
    exit_within(&mut server.child, Duration::from_secs(8)).expect("exits at the end of the grace period");
    let slow_exit = signalled.elapsed();
    assert!(
        slow_exit >= Duration::from_millis(1900),
        "did not wait for the download: {slow_exit:?}"
    );
    drop(slow);
}

/// A second SIGTERM ends a long drain at once.
#[test]
fn second_sigterm_ends_the_drain() {
    let dir = root();
    let args = [
        "--health-path",
        "/healthz",
        "--drain-delay",
        "20s",
        "--grace-period",
        "30s",
    ];
    let mut server = Spawned::start(dir.path(), &args);
    server.sigterm();
    eventually("draining", || {
        get_keep_alive(&server.addr, "/healthz").is_some_and(|r| r.status == 503)
    });
    let second = Instant::now();
    server.sigterm();
    let status = exit_within(&mut server.child, Duration::from_secs(5)).expect("exits after the second SIGTERM");
    assert!(
        status.success() && second.elapsed() < Duration::from_secs(3),
        "{:?}",
        second.elapsed()
    );
}

/// `threadserve healthcheck` asks the health path (from THREADSERVE_HEALTH_PATH,
/// --health-path, or the server's --config file) and fails once the server drains.
#[test]
fn healthcheck_subcommand_uses_the_health_path_and_fails_while_draining() {
    let dir = root();
    let args = [
        "--health-path",
        "/healthz",
        "--drain-delay",
        "20s",
        "--grace-period",
        "30s",
    ];
    let mut server = Spawned::start(dir.path(), &args);
    let check = |env: bool, flag: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["healthcheck", "--bind", &server.addr])
            .env_remove("THREADSERVE_HEALTH_PATH");
        if env {
            cmd.env("THREADSERVE_HEALTH_PATH", "/healthz");
        }
        if flag {
            cmd.args(["--health-path", "/healthz"]);
        }
        let out = cmd.stderr(Stdio::piped()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The server's own config file gives the address and the health path.
    let config = dir.path().join("threadserve.toml");
    std::fs::write(
        &config,
        format!("bind = \"{}\"\nhealth-path = \"/healthz\"\nthreads = 2\n", server.addr),
    )
    .unwrap();
    let check_config = || {
        let out = Command::new(BIN)
            .args(["healthcheck", "--config"])
            .arg(&config)
            .env_remove("THREADSERVE_HEALTH_PATH")
            .env_remove("THREADSERVE_BIND")
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(check(true, false), (true, String::new()));
    assert_eq!(check(false, true), (true, String::new()));
    assert_eq!(check_config(), (true, String::new()));
    server.sigterm();
    eventually("draining", || {
        get_keep_alive(&server.addr, "/healthz").is_some_and(|r| r.status == 503)
    });
    for (env, flag) in [(true, false), (false, true)] {
        let (ok, stderr) = check(env, flag);
        assert!(!ok && stderr.contains("status 503"), "env {env} flag {flag}: {stderr}");
    }
    let (ok, stderr) = check_config();
    assert!(!ok && stderr.contains("status 503"), "--config: {stderr}");
    let (ok, _) = check(false, false);
    assert!(ok, "without the health path it asks / (a listing: 200), as before");
    assert!(server.running(), "still draining");
}
