//! The metrics path (`--metrics-path`): the Prometheus text exposition format,
//! version 0.0.4, rendered from what the logger/stats thread owns ([`stats::Metrics`])
//! plus the standard `process_*` metrics read from `/proc/self`.
//!
//! Names follow Prometheus' conventions: a `threadserve_` prefix, base units in the
//! name (`_seconds`, `_bytes`), `_total` on counters and only on counters. Every
//! label set is fixed (method × status class), so the number of series does not grow
//! with what clients send.

use crate::limits::DURATION_BUCKETS;
use crate::stats::{self, Method};
use std::fmt::{Display, Write as _};
use std::sync::OnceLock;

/// What the engine adds to the stats thread's counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Engine {
    /// Worker threads in the pool.
    pub workers: usize,
    /// A drain is under way (SIGTERM with `--health-path`) or the server shuts down.
    pub draining: bool,
    /// The compression store's counters.
    pub compression: stats::CompressionStats,
}

/// The whole exposition: threadserve's metrics, then the process metrics.
pub fn render(m: &stats::Metrics, engine: Engine) -> String {
    let mut out = Text(String::with_capacity(8 * 1024));
    requests(&mut out, m);
    connections(&mut out, m, engine);
    compression(&mut out, &engine.compression);
    process(&mut out, &Process::read());
    out.0
}

/// Appends metric families in the text format.
struct Text(String);

impl Text {
    /// `# HELP` and `# TYPE` lines of a family.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample; label values here are fixed strings that need no escaping.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        for (i, (k, v)) in labels.iter().enumerate() {
            self.0.push(if i == 0 { '{' } else { ',' });
            let _ = write!(self.0, "{k}=\"{v}\"");
        }
        if !labels.is_empty() {
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Requests, body bytes and the duration histogram.
fn requests(out: &mut Text, m: &stats::Metrics) {
    let name = "threadserve_build_info";
    out.family(name, "gauge", "A constant 1, labelled with the version of threadserve.");
    out.sample(name, &[("version", env!("CARGO_PKG_VERSION"))], 1);
    let name = "threadserve_requests_total";
    out.family(name, "counter", "Requests answered, by method and status class.");
    for method in Method::ALL {
        for (class, count) in CLASSES.iter().zip(m.requests[method as usize]) {
            out.sample(name, &[("method", method.label()), ("code", class)], count);
        }
    }
    out.single(
        "threadserve_response_body_bytes_total",
        "counter",
        "Response body bytes sent (heads not included).",
        m.snapshot.bytes_sent,
    );
    let name = "threadserve_request_duration_seconds";
    out.family(
        name,
        "histogram",
        "Time from a request's complete head to the last byte of its response written.",
    );
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound, count) in DURATION_BUCKETS.iter().zip(m.duration.buckets) {
        cumulative += count;
        out.sample(&bucket, &[("le", &bound.to_string())], cumulative);
    }
    out.sample(&bucket, &[("le", "+Inf")], m.duration.count);
    out.sample(&format!("{name}_sum"), &[], m.duration.sum_nanos as f64 / 1e9);
    out.sample(&format!("{name}_count"), &[], m.duration.count);
}

/// The compression store: hits, compressions made, resident bytes, evictions.
fn compression(out: &mut Text, c: &stats::CompressionStats) {
    let families: [(&str, &str, &str, u64); 5] = [
        (
            "threadserve_compression_cache_hits_total",
            "counter",
            "Responses sent from a kept compressed representation.",
            c.hits,
        ),
        (
            "threadserve_compression_cache_misses_total",
            "counter",
            "Representations compressed (each is then kept).",
            c.compressions,
        ),
        (
            "threadserve_compression_cache_bytes",
            "gauge",
            "Bytes of compressed representations in memory now (those still being sent included).",
            c.resident_bytes,
        ),
        (
            "threadserve_compression_cache_evictions_total",
            "counter",
            "Compressed representations dropped to stay under --compress-cache.",
            c.evictions,
        ),
        (
            "threadserve_compression_refused_total",
            "counter",
            "Responses sent uncompressed because the byte bound or the compression slots were taken.",
            c.refused,
        ),
    ];
    for (name, kind, help, value) in families {
        out.single(name, kind, help, value);
    }
}

/// Connections, workers, the access log and the drain.
fn connections(out: &mut Text, m: &stats::Metrics, engine: Engine) {
    let s = &m.snapshot;
    let families: [(&str, &str, &str, u64); 9] = [
        (
            "threadserve_connections_accepted_total",
            "counter",
            "Connections accepted from the listener, shed ones included.",
            m.accepted,
        ),
        (
            "threadserve_connections_shed_total",
            "counter",
            "Connections answered 503 and closed before a request was read (connection limit or full queue).",
            s.shed_connections as u64,
        ),
        ("threadserve_connections_open", "gauge", "Connections open now.", s.open_connections as u64),
        (
            "threadserve_connections_parked",
            "gauge",
            "Open connections held by the idle watcher now (keep-alive between requests, a head arriving slowly, a response waiting for a slow reader).",
            m.parked as u64,
        ),
        ("threadserve_workers", "gauge", "Worker threads in the fixed pool.", engine.workers as u64),
        ("threadserve_workers_busy", "gauge", "Worker threads serving a connection now.", s.busy_workers as u64),
        (
            "threadserve_access_log_records_dropped_total",
            "counter",
            "Access-log records dropped because stdout was not keeping up (the requests are counted).",
            s.log_records_dropped,
        ),
        (
            "threadserve_access_log_records_lost_total",
            "counter",
            "Access-log records lost because writing them to stdout failed.",
            s.log_records_lost,
        ),
        (
            "threadserve_draining",
            "gauge",
            "1 while the server drains or shuts down (the health path answers 503), else 0.",
            u64::from(engine.draining),
        ),
    ];
    for (name, kind, help, value) in families {
        out.single(name, kind, help, value);
    }
}

/// The standard process metrics (the names every Prometheus client library uses).
/// One that cannot be read is left out rather than reported as 0.
fn process(out: &mut Text, p: &Process) {
    if let Some(stat) = &p.stat {
        out.single(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            stat.cpu_seconds,
        );
        out.single(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            stat.resident_bytes,
        );
        out.single(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            stat.virtual_bytes,
        );
        out.single(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            stat.threads,
        );
    }
    if let Some(start) = p.start_time {
        out.single(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            start,
        );
    }
    if let Some(fds) = p.open_fds {
        out.single("process_open_fds", "gauge", "Number of open file descriptors.", fds);
    }
    if let Some(max) = p.max_fds {
        out.single(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
}

/// What `/proc/self` says about the process.
#[derive(Debug, Clone, Default, PartialEq)]
struct Process {
    stat: Option<Stat>,
    start_time: Option<f64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Process {
    fn read() -> Process {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as u64;
        let stat_text = std::fs::read_to_string("/proc/self/stat").ok();
        let stat = stat_text.as_deref().and_then(|t| parse_stat(t, ticks, page));
        Process {
            stat,
            start_time: start_time(stat_text.as_deref(), ticks),
            open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|t| parse_max_fds(&t)),
        }
    }
}

/// The fields of `/proc/self/stat` the metrics show.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: u64,
    /// Clock ticks after boot at which the process started.
    start_ticks: u64,
}

/// Parses `/proc/self/stat` (proc(5)): the fields after the command name, which is in
/// parentheses and may itself hold spaces and parentheses, hence the last `)`.
fn parse_stat(text: &str, ticks_per_sec: f64, page_size: u64) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is index 0 here: utime is field 14, stime 15, num_threads 20,
    // starttime 22, vsize 23, rss 24.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks_per_sec,
        threads: num(20)?,
        start_ticks: num(22)?,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * page_size,
    })
}

/// Seconds since the epoch at which the process started: the boot time (`btime` in
/// `/proc/stat`) plus the start in ticks after boot. Read once: it does not change.
fn start_time(stat: Option<&str>, ticks_per_sec: f64) -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let start_ticks = parse_stat(stat?, ticks_per_sec, 1)?.start_ticks;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: u64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(btime as f64 + start_ticks as f64 / ticks_per_sec)
    })
}

/// The soft limit on open files from `/proc/self/limits`; `None` when unlimited.
fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_an_odd_command_name() {
        let text = "4242 (ts (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 \
                    12 0 9000 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let stat = parse_stat(text, 100.0, 4096).unwrap();
        assert_eq!(stat.cpu_seconds, 3.0, "(250 + 50) ticks at 100 Hz");
        assert_eq!(stat.threads, 12);
        assert_eq!(stat.start_ticks, 9000);
        assert_eq!(stat.virtual_bytes, 104_857_600);
        assert_eq!(stat.resident_bytes, 2560 * 4096);
        assert_eq!(parse_stat("garbage", 100.0, 4096), None);
    }

    #[test]
    fn max_fds_is_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63704                63704                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(text), Some(1024));
        assert_eq!(parse_max_fds("Max open files  unlimited  unlimited  files"), None);
    }

    #[test]
    fn this_process_reads_itself() {
        let p = Process::read();
        let stat = p.stat.expect("/proc/self/stat");
        assert!(stat.resident_bytes > 0 && stat.threads >= 1, "{stat:?}");
        assert!(p.open_fds.unwrap() >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time.unwrap();
        assert!(start <= now + 1.0 && start > now - 24.0 * 3600.0, "{start} vs {now}");
    }

    /// Every family has HELP and TYPE before its samples, counters and only counters
    /// end in `_total`, and the histogram's buckets are cumulative up to `_count`.
    #[test]
    fn exposition_is_well_formed() {
        let mut m = stats::Metrics::default();
        m.requests[0][1] = 3;
        m.requests[0][3] = 1;
        for ms in [0, 1, 2, 30_000] {
            m.duration.observe(std::time::Duration::from_millis(ms));
        }
        let text = render(
            &m,
            Engine {
                workers: 8,
                draining: false,
                compression: stats::CompressionStats {
                    hits: 5,
                    ..Default::default()
                },
            },
        );
        let mut kinds = std::collections::HashMap::new();
        let mut helped = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "HELP before TYPE for {name}");
                assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
                kinds.insert(name.to_string(), kind.to_string());
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| kinds.get(*f).is_some_and(|k| k == "histogram"))
                    })
                    .unwrap_or(name);
                assert!(kinds.contains_key(family), "sample before its TYPE: {line}");
            }
        }
        assert!(
            text.contains("threadserve_requests_total{method=\"GET\",code=\"2xx\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("threadserve_build_info{version=\""), "{text}");
        assert!(text.contains("threadserve_workers 8\n"));
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("threadserve_request_duration_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(buckets.len(), DURATION_BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets.last(), Some(&4));
        assert!(text.contains("threadserve_request_duration_seconds_count 4\n"));
        assert!(
            text.contains("threadserve_request_duration_seconds_sum 30.003\n"),
            "{text}"
        );
    }
}
