//! The logger/stats thread: the one place that owns the access log and the counters.
//!
//! Workers share no mutable state with it: each finished request is a [`Record`] sent
//! over a channel. Gauges that the accept loop and workers change (open connections,
//! busy workers) are atomics read when a snapshot is taken.
//!
//! This thread never writes to stdout, so it never waits on it: it counts every record
//! (counters stay exact even when log lines are dropped), formats its line and pushes it
//! on the [`log_writer`](crate::log_writer) queue, which is bounded in bytes.

use crate::clock::Civil;
use crate::config::LogFormat;
use crate::log_writer::Queue;
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// One finished request.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request head was complete.
    pub time: SystemTime,
    /// Client address.
    pub peer: IpAddr,
    /// Method (empty when the log is off, to save an allocation).
    pub method: String,
    /// The method as the metrics label it (no allocation, set whatever the log does).
    pub method_label: Method,
    /// Request target as sent (empty when the log is off).
    pub target: String,
    /// Minor HTTP version.
    pub version: u8,
    /// Status sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// Time from complete head to last byte written.
    pub duration: Duration,
    /// `Referer`.
    pub referer: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
}

/// Messages to the logger/stats thread.
#[derive(Debug)]
pub enum Msg {
    /// Finished requests, batched by a worker.
    Records(Vec<Record>),
    /// Reply with a snapshot of the counters.
    Snapshot(Sender<Snapshot>),
    /// Reply with the counters and the histogram the metrics endpoint shows.
    Metrics(Sender<Metrics>),
    /// Flush and exit.
    Stop,
}

/// Gauges owned by the engine, read by snapshots.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Connections open now (accepted, not yet closed).
    pub open: AtomicUsize,
    /// Workers handling a connection now.
    pub busy: AtomicUsize,
    /// Connections refused with 503 (queue full or connection limit).
    pub shed: AtomicUsize,
    /// Connections accepted from the listener (shed ones included).
    pub accepted: AtomicU64,
    /// Connections the idle watcher holds now (published by it, see `server::idle`).
    pub parked: AtomicUsize,
    /// Of those, the keep-alive connections idle between requests: no head begun, no
    /// response pending.
    pub parked_idle: AtomicUsize,
}

/// The request methods the metrics tell apart: threadserve serves GET and HEAD (and
/// OPTIONS with `--cors`); every other method is refused, so one label value covers
/// them and the number of series stays fixed whatever clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// `GET`.
    #[default]
    Get,
    /// `HEAD`.
    Head,
    /// `OPTIONS`.
    Options,
    /// Anything else (also a request whose head did not parse).
    Other,
}

impl Method {
    /// Every label value, in the order of [`Metrics::requests`].
    pub const ALL: [Method; 4] = [Method::Get, Method::Head, Method::Options, Method::Other];

    /// The label of `method` (case-sensitive, as methods are).
    pub fn of(method: &str) -> Method {
        match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Other => "other",
        }
    }
}

/// What the stats thread does besides counting (from the configuration).
#[derive(Debug, Clone)]
pub struct Options {
    /// The access-log format.
    pub format: LogFormat,
    /// Keep the per-method counts and the duration histogram (`--metrics-path`); off,
    /// the thread does no more per record than before metrics existed.
    pub metrics: bool,
    /// Requests for this target (the health path, with or without a query) answered
    /// 200 are counted but not logged: a load balancer probing every few seconds
    /// would otherwise fill the log. Any other answer there (a 503 while draining, a
    /// 405) is logged.
    pub quiet_target: Option<String>,
}

impl Options {
    /// What `config` asks of the stats thread.
    pub fn of(config: &crate::config::Config) -> Options {
        Options {
            format: config.log_format,
            metrics: config.metrics_path.is_some(),
            quiet_target: config.health_path.clone(),
        }
    }
}

/// Request durations, as a Prometheus histogram: a count per bucket of
/// [`DURATION_BUCKETS`](crate::limits::DURATION_BUCKETS) (not cumulative; the last
/// counts what is above every bound), their sum and their count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Requests per bucket; `buckets[i]` counts durations in `(bound[i-1], bound[i]]`.
    pub buckets: [u64; crate::limits::DURATION_BUCKETS.len() + 1],
    /// Sum of every duration, in nanoseconds.
    pub sum_nanos: u128,
    /// Requests observed.
    pub count: u64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = crate::limits::DURATION_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(crate::limits::DURATION_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum_nanos += d.as_nanos();
        self.count += 1;
    }
}

/// Everything the metrics endpoint renders from this thread: the snapshot, plus the
/// counts only metrics show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// The counters and gauges of the stats path.
    pub snapshot: Snapshot,
    /// Requests by method ([`Method::ALL`] order) and status class (1xx..5xx).
    pub requests: [[u64; 5]; 4],
    /// Time from complete head to last byte written.
    pub duration: Histogram,
    /// Connections accepted (see [`Gauges::accepted`]).
    pub accepted: u64,
    /// Connections parked with the idle watcher now.
    pub parked: usize,
}

impl Metrics {
    fn count(&mut self, r: &Record) {
        let class = match r.status / 100 {
            c @ 1..=4 => usize::from(c) - 1,
            _ => 4,
        };
        self.requests[r.method_label as usize][class] += 1;
        self.duration.observe(r.duration);
    }
}

/// The counters, as the stats endpoint reports them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests answered.
    pub requests: u64,
    /// Requests by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub status: StatusClasses,
    /// Body bytes sent.
    pub bytes_sent: u64,
    /// Connections open now.
    pub open_connections: usize,
    /// Workers busy now.
    pub busy_workers: usize,
    /// Connections refused with 503 before a request was read.
    pub shed_connections: usize,
    /// Access-log records dropped because stdout was not keeping up (the log queue
    /// was full); the requests are still counted above.
    pub log_records_dropped: u64,
    /// Access-log records lost because writing them to stdout failed (e.g. EPIPE).
    pub log_records_lost: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// On-the-fly compression (filled from the compression store, not the records).
    pub compression: CompressionStats,
}

/// The compression store's counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct CompressionStats {
    /// Responses sent from a kept compressed representation.
    pub hits: u64,
    /// Compressions made.
    pub compressions: u64,
    /// Bytes of compressed representations alive now.
    pub resident_bytes: u64,
    /// Representations evicted to stay under `--compress-cache`.
    pub evictions: u64,
    /// Requests sent identity because the byte bound or the CPU was taken.
    pub refused: u64,
}

/// Requests by status class.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatusClasses {
    #[serde(rename = "1xx")]
    pub c1: u64,
    #[serde(rename = "2xx")]
    pub c2: u64,
    #[serde(rename = "3xx")]
    pub c3: u64,
    #[serde(rename = "4xx")]
    pub c4: u64,
    #[serde(rename = "5xx")]
    pub c5: u64,
}

impl Snapshot {
    fn count(&mut self, r: &Record) {
        self.requests += 1;
        self.bytes_sent += r.bytes;
        match r.status / 100 {
            1 => self.status.c1 += 1,
            2 => self.status.c2 += 1,
            3 => self.status.c3 += 1,
            4 => self.status.c4 += 1,
            _ => self.status.c5 += 1,
        }
    }
}

/// Runs the logger loop until [`Msg::Stop`] or every sender is gone; returns the final
/// counters. Lines go to the writer whenever the queue of records runs empty.
pub fn run(opts: Options, rx: Receiver<Msg>, gauges: Arc<Gauges>, mut log: Queue) -> Snapshot {
    let started = Instant::now();
    let mut counters = Snapshot::default();
    let mut metrics = Metrics::default();
    let mut line = String::with_capacity(256);
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(_) => {
                log.flush();
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
        };
        match msg {
            Msg::Records(batch) => {
                for r in &batch {
                    counters.count(r);
                    if opts.metrics {
                        metrics.count(r);
                    }
                    if opts.format == LogFormat::Off || is_quiet(&opts, r) {
                        continue;
                    }
                    line.clear();
                    match opts.format {
                        LogFormat::Combined => combined(r, &mut line),
                        _ => json(r, &mut line),
                    }
                    log.push(line.as_bytes());
                }
            }
            Msg::Snapshot(reply) => {
                let _ = reply.send(snapshot(&counters, &gauges, &log, started));
            }
            Msg::Metrics(reply) => {
                let _ = reply.send(Metrics {
                    snapshot: snapshot(&counters, &gauges, &log, started),
                    accepted: gauges.accepted.load(Ordering::Relaxed),
                    parked: gauges.parked.load(Ordering::Relaxed),
                    ..metrics.clone()
                });
            }
            Msg::Stop => break,
        }
    }
    log.flush();
    snapshot(&counters, &gauges, &log, started)
}

/// A successful health probe, kept out of the log (see [`Options::quiet_target`]).
fn is_quiet(opts: &Options, r: &Record) -> bool {
    let Some(quiet) = &opts.quiet_target else {
        return false;
    };
    let path = r.target.split_once('?').map_or(r.target.as_str(), |(p, _)| p);
    r.status == 200 && path == quiet
}

fn snapshot(counters: &Snapshot, gauges: &Gauges, log: &Queue, started: Instant) -> Snapshot {
    Snapshot {
        open_connections: gauges.open.load(Ordering::Relaxed),
        busy_workers: gauges.busy.load(Ordering::Relaxed),
        shed_connections: gauges.shed.load(Ordering::Relaxed),
        log_records_dropped: log.dropped(),
        log_records_lost: log.lost(),
        uptime_secs: started.elapsed().as_secs(),
        ..counters.clone()
    }
}

/// Appends a Combined Log Format line:
/// `ip - - [time] "METHOD target HTTP/1.x" status bytes "referer" "user-agent"`.
pub fn combined(r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "{} - - [{}] \"{} {} HTTP/1.{}\" {} {} \"",
        r.peer,
        Civil::from_time(r.time).clf(),
        escape_clf(&r.method),
        escape_clf(&r.target),
        r.version,
        r.status,
        r.bytes
    );
    out.push_str(&escape_clf(r.referer.as_deref().unwrap_or("-")));
    out.push_str("\" \"");
    out.push_str(&escape_clf(r.user_agent.as_deref().unwrap_or("-")));
    out.push_str("\"\n");
}

/// Escapes `"`, `\`, control bytes and every byte outside ASCII as `\xHH`, the way
/// nginx does, so a request cannot forge log lines: not with CR/LF, and not with the
/// Unicode line breaks (U+0085, U+2028, U+2029) that Unicode-aware tools split on. The
/// line is pure ASCII; a UTF-8 character shows as its bytes (`é` → `\xC3\xA9`).
fn escape_clf(s: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii() && !b.is_ascii_control() && b != b'"' && b != b'\\';
    if s.bytes().all(plain) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            use std::fmt::Write as _;
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out.into()
}

/// Appends one JSON object and a newline.
pub fn json(r: &Record, out: &mut String) {
    #[derive(Serialize)]
    struct Line<'a> {
        time: String,
        remote_addr: String,
        method: &'a str,
        target: &'a str,
        protocol: String,
        status: u16,
        bytes: u64,
        duration_ms: f64,
        referer: Option<&'a str>,
        user_agent: Option<&'a str>,
    }
    let line = Line {
        time: Civil::from_time(r.time).rfc3339(),
        remote_addr: r.peer.to_string(),
        method: &r.method,
        target: &r.target,
        protocol: format!("HTTP/1.{}", r.version),
        status: r.status,
        bytes: r.bytes,
        duration_ms: r.duration.as_secs_f64() * 1000.0,
        referer: r.referer.as_deref(),
        user_agent: r.user_agent.as_deref(),
    };
    if let Ok(s) = serde_json::to_string(&line) {
        push_json_line_safe(out, &s);
        out.push('\n');
    }
}

/// Appends serialised JSON with U+0085, U+2028 and U+2029 escaped as `\uXXXX`: valid
/// JSON either way, but raw they are line breaks to Unicode-aware log tools (and
/// U+2028/U+2029 end a line in JavaScript before ES2019). serde_json leaves them raw.
/// They can only occur inside strings, so escaping them in place keeps the JSON valid.
fn push_json_line_safe(out: &mut String, json: &str) {
    let mut rest = json;
    while let Some(i) = rest.find(['\u{0085}', '\u{2028}', '\u{2029}']) {
        out.push_str(&rest[..i]);
        let c = rest[i..].chars().next().unwrap_or_default();
        use std::fmt::Write as _;
        let _ = write!(out, "\\u{:04x}", u32::from(c));
        rest = &rest[i + c.len_utf8()..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn record() -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_secs(1_795_679_849),
            peer: "127.0.0.1".parse().unwrap(),
            method: "GET".into(),
            method_label: Method::Get,
            target: "/a b\"c".into(),
            version: 1,
            status: 200,
            bytes: 1024,
            duration: Duration::from_micros(1500),
            referer: None,
            user_agent: Some("curl/8".into()),
        }
    }

    #[test]
    fn combined_line_matches_the_format_and_escapes_quotes() {
        let mut s = String::new();
        combined(&record(), &mut s);
        assert_eq!(
            s,
            "127.0.0.1 - - [26/Nov/2026:07:57:29 +0000] \"GET /a b\\x22c HTTP/1.1\" 200 1024 \"-\" \"curl/8\"\n"
        );
    }

    #[test]
    fn json_line_is_one_valid_object() {
        let mut s = String::new();
        json(&record(), &mut s);
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["target"], "/a b\"c");
        assert_eq!(v["time"], "2026-11-26T07:57:29Z");
        assert_eq!(v["duration_ms"], 1.5);
    }

    #[test]
    fn combined_log_escapes_unicode_line_breaks() {
        let r = Record {
            target: "/a\u{2028}b".into(),
            referer: Some("x\u{0085}y".into()),
            user_agent: Some("ua\u{2029}é\u{7f}\t".into()),
            ..record()
        };
        let mut s = String::new();
        combined(&r, &mut s);
        assert!(s.is_ascii(), "{s:?}");
        assert!(s.contains("\"GET /a\\xE2\\x80\\xA8b HTTP/1.1\""), "{s}");
        assert!(s.contains("\"x\\xC2\\x85y\""), "{s}");
        assert!(s.ends_with("\"ua\\xE2\\x80\\xA9\\xC3\\xA9\\x7F\\x09\"\n"), "{s}");
    }

    #[test]
    fn json_log_escapes_unicode_line_breaks() {
        let r = Record {
            target: "/a\u{2028}b".into(),
            referer: Some("x\u{0085}y".into()),
            user_agent: Some("ua\u{2029}é".into()),
            ..record()
        };
        let mut s = String::new();
        json(&r, &mut s);
        for raw in ['\u{2028}', '\u{2029}', '\u{0085}'] {
            assert!(!s.contains(raw), "{raw:?} written raw: {s}");
        }
        assert!(s.contains(r#""/a\u2028b""#) && s.contains(r#""x\u0085y""#), "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["target"], "/a\u{2028}b");
        assert_eq!(v["user_agent"], "ua\u{2029}é");
    }

    #[test]
    fn logger_counts_by_class_and_answers_snapshots() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let gauges = Arc::new(Gauges::default());
        gauges.open.store(3, Ordering::Relaxed);
        let batch = [200, 206, 304, 404, 500].map(|status| Record { status, ..record() });
        tx.send(Msg::Records(batch.to_vec())).unwrap();
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        tx.send(Msg::Snapshot(reply_tx)).unwrap();
        tx.send(Msg::Stop).unwrap();
        let (out, lines) = crossbeam_channel::unbounded();
        let (queue, writer) = crate::log_writer::start(Lines(out), 1 << 20).unwrap();
        let last = run(options(LogFormat::Combined), rx, gauges, queue);
        assert_eq!(writer.finish(Instant::now() + Duration::from_secs(1)), 0);
        let snap = reply_rx.recv().unwrap();
        assert_eq!(snap.requests, 5);
        assert_eq!(
            (snap.status.c2, snap.status.c3, snap.status.c4, snap.status.c5),
            (2, 1, 1, 1)
        );
        assert_eq!(snap.open_connections, 3);
        assert_eq!(last.bytes_sent, 5 * 1024);
        let out: Vec<u8> = lines.try_iter().flatten().collect();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 5);
    }

    fn options(format: LogFormat) -> Options {
        Options {
            format,
            metrics: true,
            quiet_target: None,
        }
    }

    #[test]
    fn histogram_buckets_are_upper_bounds_inclusive() {
        let bounds = crate::limits::DURATION_BUCKETS;
        let mut h = Histogram::default();
        h.observe(Duration::ZERO);
        h.observe(Duration::from_secs_f64(bounds[0]));
        h.observe(Duration::from_secs_f64(bounds[1]));
        h.observe(Duration::from_secs(3600));
        assert_eq!(h.buckets[0], 2, "zero and the first bound itself");
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[bounds.len()], 1, "above every bound: +Inf only");
        assert_eq!(h.count, 4);
        assert_eq!(h.buckets.iter().sum::<u64>(), h.count);
    }

    #[test]
    fn logger_keeps_metrics_by_method_and_class_and_skips_quiet_probes() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let gauges = Arc::new(Gauges::default());
        gauges.accepted.store(7, Ordering::Relaxed);
        let rec = |method: &str, target: &str, status| Record {
            method: method.into(),
            method_label: Method::of(method),
            target: target.into(),
            status,
            ..record()
        };
        let batch = vec![
            rec("GET", "/a", 200),
            rec("GET", "/healthz", 200),
            rec("GET", "/healthz?probe=1", 200),
            rec("GET", "/healthz", 503),
            rec("HEAD", "/a", 304),
            rec("POST", "/a", 405),
            rec("-", "-", 400),
        ];
        tx.send(Msg::Records(batch)).unwrap();
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        tx.send(Msg::Metrics(reply_tx)).unwrap();
        tx.send(Msg::Stop).unwrap();
        let (out, lines) = crossbeam_channel::unbounded();
        let (queue, writer) = crate::log_writer::start(Lines(out), 1 << 20).unwrap();
        let opts = Options {
            quiet_target: Some("/healthz".into()),
            ..options(LogFormat::Combined)
        };
        run(opts, rx, gauges, queue);
        assert_eq!(writer.finish(Instant::now() + Duration::from_secs(1)), 0);
        let m = reply_rx.recv().unwrap();
        assert_eq!(m.snapshot.requests, 7, "quiet probes are still counted");
        assert_eq!(m.requests[0], [0, 3, 0, 0, 1], "GET: three 200s, one 503");
        assert_eq!(m.requests[1], [0, 0, 1, 0, 0], "HEAD: one 304");
        assert_eq!(m.requests[3], [0, 0, 0, 2, 0], "POST and the unparsed head are other");
        assert_eq!((m.duration.count, m.accepted), (7, 7));
        let out = String::from_utf8(lines.try_iter().flatten().collect()).unwrap();
        assert_eq!(out.lines().count(), 5, "the two 200 probes are not logged: {out}");
        assert!(out.contains("\"GET /healthz HTTP/1.1\" 503"), "{out}");
    }

    /// Collects what the log writer writes.
    struct Lines(crossbeam_channel::Sender<Vec<u8>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
