//! Command line (clap, every flag also read from a `THREADSERVE_*` variable) and the
//! validated [`Config`] the server runs with.

use crate::auth::Authenticator;
use crate::files::Root;
use crate::http::rules::Rule;
use crate::limits;
use crate::tls::{Tls, TlsFiles};
use clap::{Parser, Subcommand, ValueEnum};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Worker threads per CPU when `--threads` is not given. Measured with wrk on 2 cores
/// (README "Choosing --threads"): idle connections cost no thread, so a small pool
/// wins — every extra sleeping worker is one more wake-up per batch of ready
/// connections (64 threads served 1 KiB at 64 connections 2-5x slower than 8 or 16).
pub const THREADS_PER_CPU: usize = 4;

/// The default pool size: [`THREADS_PER_CPU`] per available CPU, at least 4.
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus * THREADS_PER_CPU).max(4)
}

/// Access-log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Combined Log Format (Apache/nginx "combined").
    Combined,
    /// One JSON object per line.
    Json,
    /// No access log.
    Off,
}

/// Serve a directory over HTTP/1.1 with a fixed pool of OS threads.
///
/// Every option can also be set with an environment variable, shown in brackets.
#[derive(Debug, Parser)]
#[command(name = "threadserve", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Directory to serve.
    #[arg(env = "THREADSERVE_ROOT", default_value = ".")]
    pub root: PathBuf,

    /// Address to listen on (IP:PORT; host names must resolve).
    #[arg(short, long, env = "THREADSERVE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Port to listen on, replacing the port of --bind (0 picks a free one).
    #[arg(short, long, env = "THREADSERVE_PORT")]
    pub port: Option<u16>,

    /// Worker threads: a fixed pool, never grown. [default: 4 per CPU, at least 4]
    #[arg(short, long, env = "THREADSERVE_THREADS", value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub threads: Option<u16>,

    /// Access log format on stdout.
    #[arg(long, env = "THREADSERVE_LOG_FORMAT", value_enum, default_value = "combined")]
    pub log_format: LogFormat,

    /// Serve files and directories whose names start with a dot.
    #[arg(long, env = "THREADSERVE_DOTFILES")]
    pub dotfiles: bool,

    /// Follow symlinks that lead outside the root (inside ones are always followed).
    #[arg(long, env = "THREADSERVE_FOLLOW_SYMLINKS")]
    pub follow_symlinks: bool,

    /// Answer 404 for directories without index.html instead of listing them.
    #[arg(long, env = "THREADSERVE_NO_LISTING")]
    pub no_listing: bool,

    /// Serve FILE.br, FILE.zst or FILE.gz in place of FILE when the client accepts it.
    #[arg(long, env = "THREADSERVE_PRECOMPRESSED", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub precompressed: bool,

    /// Compress text, JavaScript, JSON, XML, SVG, WebAssembly and fonts (1 KiB to 8 MiB)
    /// with br, zstd or gzip when the client accepts it; each representation is made once
    /// and kept (see --compress-cache).
    #[arg(long, env = "THREADSERVE_COMPRESS", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub compress: bool,

    /// Memory for compressed representations, shared by all workers: bytes, or with a
    /// K, M or G suffix (powers of 1024). Least recently used ones are dropped to stay
    /// under it; 0 keeps nothing, so nothing is compressed on the fly.
    #[arg(long, env = "THREADSERVE_COMPRESS_CACHE", value_name = "BYTES", value_parser = parse_bytes, default_value_t = FlagBytes(limits::COMPRESS_CACHE_BYTES))]
    pub compress_cache: FlagBytes,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, env = "THREADSERVE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1; not encrypted).
    #[arg(long, env = "THREADSERVE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Cache-Control value sent with every file (e.g. "public, max-age=3600").
    #[arg(long, env = "THREADSERVE_CACHE_CONTROL", value_name = "VALUE")]
    pub cache_control: Option<String>,

    /// Files whose path (relative to ROOT) matches this glob get
    /// "public, max-age=31536000, immutable" (e.g. 'assets/*', '*.woff2'). Repeatable.
    #[arg(
        long,
        env = "THREADSERVE_IMMUTABLE_PATTERN",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub immutable_pattern: Vec<String>,

    /// Page (path under ROOT) sent with status 404 for anything not found.
    #[arg(long = "404", env = "THREADSERVE_404", value_name = "PATH")]
    pub not_found_page: Option<String>,

    /// File (path under ROOT) served with 200 for any path that matches nothing
    /// (single-page apps).
    #[arg(long, env = "THREADSERVE_FALLBACK", value_name = "PATH")]
    pub fallback: Option<String>,

    /// Send Access-Control-Allow-Origin: * and answer CORS preflight OPTIONS with 204.
    #[arg(long, env = "THREADSERVE_CORS")]
    pub cors: bool,

    /// Extra response header 'Name: value' on every response. Repeatable (the variable
    /// holds one). Framing, hop-by-hop and server-computed headers are refused.
    // No value delimiter: a line break inside a value must be refused, never split
    // into a second header.
    #[arg(
        long = "header",
        short = 'H',
        env = "THREADSERVE_HEADER",
        value_name = "'NAME: VALUE'"
    )]
    pub headers: Vec<String>,

    /// Serve server counters as JSON at this path (e.g. /.stats); off by default.
    #[arg(long, env = "THREADSERVE_STATS_PATH", value_name = "PATH")]
    pub stats_path: Option<String>,

    /// Serve Prometheus metrics (text format 0.0.4) at this path (e.g. /metrics); off by
    /// default.
    #[arg(long, env = "THREADSERVE_METRICS_PATH", value_name = "PATH")]
    pub metrics_path: Option<String>,

    /// Answer 200 at this path while serving and 503 while draining (e.g. /healthz).
    /// With it, SIGTERM starts a drain: the server keeps serving, every response closes
    /// its connection, and it exits once nothing is in flight and --drain-delay has
    /// passed (at the latest when --grace-period ends).
    #[arg(long, env = "THREADSERVE_HEALTH_PATH", value_name = "PATH")]
    pub health_path: Option<String>,

    /// With --health-path: after SIGTERM, keep serving (the health path answering 503)
    /// at least this long, so a load balancer sees the 503 and stops sending.
    #[arg(long, env = "THREADSERVE_DRAIN_DELAY", value_parser = parse_timeout, default_value_t = FlagDuration(limits::DRAIN_DELAY))]
    pub drain_delay: FlagDuration,

    /// Open connections at once; more get 503.
    #[arg(long, env = "THREADSERVE_MAX_CONNECTIONS", default_value_t = limits::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Connections waiting for a worker before new ones get 503.
    #[arg(long, env = "THREADSERVE_QUEUE_DEPTH", default_value_t = limits::QUEUE_DEPTH)]
    pub queue_depth: usize,

    /// Time to send a whole request head (e.g. 10s, 500ms).
    #[arg(long, env = "THREADSERVE_HEAD_TIMEOUT", value_parser = parse_timeout, default_value_t = FlagDuration(limits::HEAD_TIMEOUT))]
    pub head_timeout: FlagDuration,

    /// Idle keep-alive connections are closed after this long.
    #[arg(long, env = "THREADSERVE_IDLE_TIMEOUT", value_parser = parse_timeout, default_value_t = FlagDuration(limits::IDLE_TIMEOUT))]
    pub idle_timeout: FlagDuration,

    /// A single blocked write longer than this drops the client.
    #[arg(long, env = "THREADSERVE_WRITE_TIMEOUT", value_parser = parse_timeout, default_value_t = FlagDuration(limits::WRITE_TIMEOUT))]
    pub write_timeout: FlagDuration,

    /// Largest request head in bytes (larger: 431).
    #[arg(long, env = "THREADSERVE_MAX_HEAD_BYTES", default_value_t = limits::MAX_HEAD_BYTES)]
    pub max_head_bytes: usize,

    /// Most header lines in a request (more: 431).
    #[arg(long, env = "THREADSERVE_MAX_HEADERS", default_value_t = limits::MAX_HEADERS)]
    pub max_headers: usize,

    /// How long a worker waits on a quiet keep-alive connection (when no other is
    /// queued) before handing it to the idle watcher; 0 hands it over at once.
    #[arg(long, env = "THREADSERVE_LINGER", value_parser = parse_linger, default_value_t = FlagDuration(limits::LINGER))]
    pub linger: FlagDuration,

    /// Time in-flight responses get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "THREADSERVE_GRACE_PERIOD", value_parser = parse_timeout, default_value_t = FlagDuration(limits::GRACE_PERIOD))]
    pub grace_period: FlagDuration,

    /// Read settings from this TOML file: each key is a flag's long name
    /// (threads = 8, header = ["X-A: b"]), plus [[rule]] tables. Precedence: default <
    /// file < environment < command line.
    #[arg(long, env = "THREADSERVE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the flags, environment and --config file, print the effective settings
    /// and exit without serving.
    #[arg(long)]
    pub check_config: bool,

    /// Require HTTP basic auth: an htpasswd file of bcrypt hashes (htpasswd -B). Every
    /// path needs it, or only the paths the config file's rules name (auth = true).
    #[arg(long, env = "THREADSERVE_AUTH_FILE", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,

    /// Realm named in the 401 challenge.
    #[arg(long, env = "THREADSERVE_AUTH_REALM", value_name = "TEXT", default_value = limits::AUTH_REALM)]
    pub auth_realm: String,

    /// The config file's [[rule]] tables (none come from the command line).
    #[arg(skip)]
    pub rules: Vec<Rule>,

    /// A subcommand instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one request to a running server and exit 0 if it answers below 500
    /// (for container HEALTHCHECKs; scratch images have no curl).
    Healthcheck {
        /// Address of the server (defaults to --bind / THREADSERVE_BIND, with 0.0.0.0 → 127.0.0.1).
        #[arg(long, env = "THREADSERVE_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        /// Port, replacing the port of --bind.
        #[arg(short, long, env = "THREADSERVE_PORT")]
        port: Option<u16>,
        /// Path to request: the server's --health-path when THREADSERVE_HEALTH_PATH
        /// holds it (the check then fails while the server drains), else /.
        #[arg(
            long,
            visible_alias = "health-path",
            env = "THREADSERVE_HEALTH_PATH",
            default_value = "/"
        )]
        path: String,
        /// The server's config file: its bind, port and health-path keys are used
        /// where neither a flag nor the environment gives them.
        #[arg(long, env = "THREADSERVE_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 10s or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit '{unit}' in '{s}' (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is out of range"))
}

/// The value of a duration flag: read as `10s`, `500ms`, `2m` (see [`parse_duration`])
/// and shown the same way, so `--help` prints defaults taken from [`limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagDuration(pub Duration);

impl fmt::Display for FlagDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.0.as_secs(), self.0.subsec_nanos());
        match (secs, nanos) {
            (0, 0) => f.write_str("0s"),
            (s, 0) if s % 60 == 0 => write!(f, "{}m", s / 60),
            (s, 0) => write!(f, "{s}s"),
            (_, n) if n % 1_000_000 == 0 => write!(f, "{}ms", self.0.as_millis()),
            _ => write!(f, "{}s", self.0.as_secs_f64()),
        }
    }
}

/// Parses a timeout flag (`--head-timeout`, `--idle-timeout`, `--write-timeout`,
/// `--grace-period`): a duration up to [`limits::MAX_TIMEOUT`].
pub fn parse_timeout(s: &str) -> Result<FlagDuration, String> {
    parse_at_most(s, limits::MAX_TIMEOUT, "a day")
}

/// Parses `--linger`: a duration up to [`limits::MAX_LINGER`].
pub fn parse_linger(s: &str) -> Result<FlagDuration, String> {
    parse_at_most(s, limits::MAX_LINGER, "a lingering worker keeps new clients waiting")
}

fn parse_at_most(s: &str, max: Duration, why: &str) -> Result<FlagDuration, String> {
    let d = parse_duration(s)?;
    if d > max {
        return Err(format!("above the maximum of {} ({why})", FlagDuration(max)));
    }
    Ok(FlagDuration(d))
}

/// The HTTPS set-up from `--tls-cert` and `--tls-key`: both or neither.
fn tls(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<Arc<Tls>>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Tls::new(TlsFiles { cert, key })
            .map(|t| Some(Arc::new(t)))
            .map_err(|e| ConfigError(e.0)),
        (Some(_), None) => Err(ConfigError(
            "--tls-cert needs --tls-key (the certificate's private key)".into(),
        )),
        (None, Some(_)) => Err(ConfigError("--tls-key needs --tls-cert (the certificate chain)".into())),
    }
}

/// A size flag: bytes, or a number with a `K`, `M` or `G` suffix (powers of 1024),
/// shown the same way so `--help` prints defaults taken from [`limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagBytes(pub u64);

impl fmt::Display for FlagBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
            if n >= size && n % size == 0 {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

/// Parses `--compress-cache`: `65536`, `64K`, `64M`, `1G` (at most 1 TiB).
pub fn parse_bytes(s: &str) -> Result<FlagBytes, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = (num.trim().parse()).map_err(|_| format!("'{s}' is not a size like 65536, 64K, 64M or 1G"))?;
    match n.checked_mul(1 << shift) {
        Some(bytes) if bytes <= 1 << 40 => Ok(FlagBytes(bytes)),
        _ => Err(format!("'{s}' is above the maximum of 1024G")),
    }
}

/// Limits and timeouts, defaulting to the constants in [`limits`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`limits::HEAD_TIMEOUT`].
    pub head_timeout: Duration,
    /// See [`limits::IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`limits::WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// See [`limits::LINGER`].
    pub linger: Duration,
    /// See [`limits::MAX_HEAD_BYTES`].
    pub max_head_bytes: usize,
    /// See [`limits::MAX_HEADERS`].
    pub max_headers: usize,
    /// See [`limits::MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`limits::QUEUE_DEPTH`].
    pub queue_depth: usize,
    /// See [`limits::GRACE_PERIOD`].
    pub grace_period: Duration,
    /// See [`limits::DRAIN_DELAY`].
    pub drain_delay: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head_timeout: limits::HEAD_TIMEOUT,
            idle_timeout: limits::IDLE_TIMEOUT,
            write_timeout: limits::WRITE_TIMEOUT,
            linger: limits::LINGER,
            max_head_bytes: limits::MAX_HEAD_BYTES,
            max_headers: limits::MAX_HEADERS,
            max_connections: limits::MAX_CONNECTIONS,
            queue_depth: limits::QUEUE_DEPTH,
            grace_period: limits::GRACE_PERIOD,
            drain_delay: limits::DRAIN_DELAY,
        }
    }
}

/// Everything the server needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The served directory.
    pub root: Root,
    /// Listening address.
    pub bind: SocketAddr,
    /// Worker threads.
    pub threads: usize,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Serve dotfiles.
    pub dotfiles: bool,
    /// Follow symlinks leaving the root.
    pub follow_symlinks: bool,
    /// List directories without index.html.
    pub listing: bool,
    /// Access-log format.
    pub log_format: LogFormat,
    /// Path of the JSON counters, if enabled: a URL path normalised as requests are
    /// (decoded, no dot-segments), matched against each request's decoded path.
    pub stats_path: Option<String>,
    /// Path of the Prometheus metrics, normalised as `stats_path` is.
    pub metrics_path: Option<String>,
    /// Path of the health endpoint, normalised as `stats_path` is. Set, SIGTERM drains
    /// (see `server::drain`).
    pub health_path: Option<String>,
    /// Serve precompressed variants.
    pub precompressed: bool,
    /// Compress on the fly.
    pub compress: bool,
    /// HTTPS: the certificate and rustls configuration (`None`: plain HTTP).
    pub tls: Option<Arc<Tls>>,
    /// Bytes of compressed representations kept across workers.
    pub compress_cache: u64,
    /// Cache-Control for files not matching an immutable pattern.
    pub cache_control: Option<String>,
    /// Globs (over the path relative to the root) of immutable files.
    pub immutable: Vec<glob::Pattern>,
    /// Relative path of the custom 404 page.
    pub not_found_page: Option<String>,
    /// Relative path of the single-page-app fallback.
    pub fallback: Option<String>,
    /// CORS headers and preflight answers.
    pub cors: bool,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Per-path rules, in file order.
    pub rules: Vec<Rule>,
    /// The users of `--auth-file`, if set.
    pub auth: Option<Arc<Authenticator>>,
    /// The `WWW-Authenticate` value (from `--auth-realm`).
    pub auth_challenge: String,
    /// Test hook: a request for exactly this path panics inside the worker.
    #[doc(hidden)]
    pub panic_path: Option<String>,
}

impl Config {
    /// Warnings about a configuration that works, but probably not as meant; the
    /// binary logs them at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (flag, path) in self.endpoint_paths() {
            let rel = path.trim_matches('/');
            if self.root.stat(rel).is_ok() {
                warnings.push(format!(
                    "{flag} {path} shadows {}, which will not be served",
                    self.root.path().join(rel).display()
                ));
            }
        }
        if self.health_path.is_none() && !self.limits.drain_delay.is_zero() {
            warnings.push("--drain-delay has no effect without --health-path".into());
        }
        warnings
    }

    /// The server's own paths that are set, with their flags.
    fn endpoint_paths(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("--stats-path", &self.stats_path),
            ("--metrics-path", &self.metrics_path),
            ("--health-path", &self.health_path),
        ]
        .into_iter()
        .filter_map(|(flag, p)| Some((flag, p.as_deref()?)))
    }

    /// A config with every default, serving `root` on 127.0.0.1 with an OS-chosen port.
    pub fn new(root: Root) -> Config {
        Config {
            root,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: default_threads(),
            limits: Limits::default(),
            dotfiles: false,
            follow_symlinks: false,
            listing: true,
            log_format: LogFormat::Off,
            stats_path: None,
            metrics_path: None,
            health_path: None,
            precompressed: true,
            compress: true,
            compress_cache: limits::COMPRESS_CACHE_BYTES,
            tls: None,
            cache_control: None,
            immutable: Vec::new(),
            not_found_page: None,
            fallback: None,
            cors: false,
            headers: Vec::new(),
            rules: Vec::new(),
            auth: None,
            auth_challenge: crate::http::auth::challenge(limits::AUTH_REALM),
            panic_path: None,
        }
    }
}

/// A command-line value that cannot be used; the message names it and the fix.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Resolves `ADDR` (and an optional port override) to one socket address.
pub fn resolve_bind(bind: &str, port: Option<u16>) -> Result<SocketAddr, ConfigError> {
    let mut addr = match bind.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => bind
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .ok_or_else(|| {
                ConfigError(format!(
                    "invalid --bind address '{bind}': expected IP:PORT such as 127.0.0.1:8080"
                ))
            })?,
    };
    if let Some(p) = port {
        addr.set_port(p);
    }
    Ok(addr)
}

impl Cli {
    /// Validates the flags into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let root = match Root::new(&self.root) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(ConfigError(format!(
                    "root '{}' is not a directory",
                    self.root.display()
                )))
            }
            Err(e) => return Err(ConfigError(format!("cannot serve root '{}': {e}", self.root.display()))),
        };
        if self.max_headers == 0 || self.max_head_bytes < 64 {
            return Err(ConfigError(
                "--max-headers must be at least 1 and --max-head-bytes at least 64".into(),
            ));
        }
        if self.max_connections == 0 || self.queue_depth == 0 {
            return Err(ConfigError(
                "--max-connections and --queue-depth must be at least 1".into(),
            ));
        }
        let mut config = Config::new(root);
        config.bind = resolve_bind(&self.bind, self.port)?;
        config.threads = self.threads.map_or_else(default_threads, usize::from);
        config.limits = self.limits();
        config.dotfiles = self.dotfiles;
        config.follow_symlinks = self.follow_symlinks;
        config.listing = !self.no_listing;
        config.log_format = self.log_format;
        self.endpoints(&mut config)?;
        config.precompressed = self.precompressed;
        config.compress = self.compress && self.compress_cache.0 > 0;
        config.compress_cache = self.compress_cache.0;
        config.cache_control = (self.cache_control.as_deref())
            .map(|v| header_value(v, "--cache-control"))
            .transpose()?;
        config.immutable = self
            .immutable_pattern
            .iter()
            .map(|g| glob::Pattern::new(g).map_err(|e| ConfigError(format!("invalid --immutable-pattern '{g}': {e}"))))
            .collect::<Result<_, _>>()?;
        let site_file = |p: &String, flag| site_file(p, flag, &config.root, self.follow_symlinks);
        config.not_found_page = self
            .not_found_page
            .as_ref()
            .map(|p| site_file(p, "--404"))
            .transpose()?;
        config.fallback = self.fallback.as_ref().map(|p| site_file(p, "--fallback")).transpose()?;
        config.cors = self.cors;
        config.headers = self.headers.iter().map(|h| parse_header(h)).collect::<Result<_, _>>()?;
        cors_conflict(&config.headers, self.cors)?;
        self.auth_and_rules(&mut config)?;
        config.tls = tls(self.tls_cert, self.tls_key)?;
        Ok(config)
    }

    /// `--auth-file`, `--auth-realm` and the rules (their headers checked against
    /// `--cors` like `-H`; `auth` in a rule needs an `--auth-file`).
    fn auth_and_rules(&self, config: &mut Config) -> Result<(), ConfigError> {
        for rule in &self.rules {
            cors_conflict(&rule.headers, self.cors)?;
        }
        if let Some(path) = &self.auth_file {
            config.auth = Some(Arc::new(Authenticator::load(path).map_err(ConfigError)?));
        } else if self.rules.iter().any(|r| r.auth.is_some()) {
            return Err(ConfigError(
                "a [[rule]] sets auth, but no --auth-file gives the users".into(),
            ));
        }
        let realm = header_value(&self.auth_realm, "--auth-realm")?;
        config.auth_challenge = crate::http::auth::challenge(&realm);
        config.rules = self.rules.clone();
        Ok(())
    }
}

/// Checks a header value has no line breaks or other control characters (HTAB is
/// allowed, RFC 9110 §5.5).
pub(crate) fn header_value(v: &str, flag: &str) -> Result<String, ConfigError> {
    if v.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ConfigError(format!(
            "{flag} value {v:?} must not contain a line break or other control character"
        )));
    }
    Ok(v.trim().to_string())
}

/// Response headers `--header` may not set, and why. threadserve writes each of them
/// itself where it applies; a second copy would contradict it, and for the framing and
/// hop-by-hop ones (RFC 9112 §6, RFC 9110 §7.6.1) let a proxy in front read the
/// response differently from the client (request smuggling).
pub const RESERVED_HEADERS: &[(&str, &str)] = &[
    ("Content-Length", "it frames every response body"),
    ("Transfer-Encoding", "it frames every response body"),
    ("Connection", "threadserve decides keep-alive per response"),
    ("Keep-Alive", "it is a hop-by-hop header"),
    ("Upgrade", "threadserve speaks only HTTP/1.1"),
    ("TE", "it is a hop-by-hop request header"),
    ("Trailer", "threadserve sends no trailers"),
    ("Proxy-Connection", "it is a hop-by-hop header"),
    ("Date", "threadserve sends it on every response"),
    (
        "Server",
        "threadserve sends it on every response, also on those written before a request is read",
    ),
    ("Content-Type", "it is computed per file"),
    (
        "Content-Encoding",
        "it is computed per response (precompressed variants, --compress)",
    ),
    ("Content-Range", "it is computed per range response"),
    ("ETag", "it is computed per file"),
    ("Last-Modified", "it is computed per file"),
    ("Vary", "it is computed per response"),
    ("Accept-Ranges", "it is computed per file"),
    ("Location", "it is computed per redirect"),
    ("Allow", "it is computed per 405 and preflight answer"),
    (
        "Cache-Control",
        "it is set per file: use --cache-control or --immutable-pattern",
    ),
    ("WWW-Authenticate", "it is computed per 401 (--auth-realm)"),
    ("Retry-After", "it is computed per 503 and 429"),
];

/// Parses `Name: value` from `--header`: the name an RFC 9110 token not in
/// [`RESERVED_HEADERS`] (case-insensitively), the value free of control characters.
pub fn parse_header(h: &str) -> Result<(String, String), ConfigError> {
    let bad = || ConfigError(format!("invalid --header {h:?}: expected 'Name: value'"));
    let (name, value) = h.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(bad());
    }
    if let Some((_, why)) = RESERVED_HEADERS.iter().find(|(r, _)| r.eq_ignore_ascii_case(name)) {
        return Err(ConfigError(format!("{name} cannot be set with --header: {why}")));
    }
    Ok((name.to_string(), header_value(value, "--header")?))
}

/// With `--cors`, the `Access-Control-*` headers are the server's: `--header` may not
/// send a second, contradicting copy.
fn cors_conflict(headers: &[(String, String)], cors: bool) -> Result<(), ConfigError> {
    let is_cors = |name: &str| {
        name.get(..15)
            .is_some_and(|p| p.eq_ignore_ascii_case("access-control-"))
    };
    match headers.iter().find(|(name, _)| cors && is_cors(name)) {
        Some((name, _)) => Err(ConfigError(format!(
            "--header '{name}' conflicts with --cors, which sends the Access-Control-* headers: drop one"
        ))),
        None => Ok(()),
    }
}

/// Resolves `--404` / `--fallback` to a path relative to the root. Accepted, in this
/// order: a URL path under the root (`/404.html`, `404.html`, percent-decoded like a
/// request path), or a filesystem path inside the root, absolute or relative to the
/// working directory (`/srv/www/404.html`, `public/404.html`). Either must name a
/// readable regular file under the root: anything else is a start-up error, never a
/// silent fall-back to the built-in page.
fn site_file(p: &str, flag: &str, root: &Root, follow_symlinks: bool) -> Result<String, ConfigError> {
    let usable = |rel: &String| readable_file(root, rel, follow_symlinks);
    site_path(p)
        .filter(usable)
        .or_else(|| rel_inside_root(Path::new(p), root).filter(usable))
        .ok_or_else(|| {
            ConfigError(format!(
                "{flag} '{p}' names no readable regular file under the root {}: give a URL path \
                 such as /404.html or the path of a file inside the root",
                root.path().display()
            ))
        })
}

/// A URL path like `/404.html` or `index.html`, decoded and normalised to a path
/// relative to the root; `None` if it is not one or names the root itself.
fn site_path(p: &str) -> Option<String> {
    let with_slash = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    };
    crate::http::resolve::decode(&with_slash)
        .ok()
        .map(|u| u.rel.into_owned())
        .filter(|rel| !rel.is_empty())
}

/// The path of `path` (a filesystem path) relative to the root, if it lies inside it.
/// Its directory is canonicalised (`..`, symlinked directories, the working directory);
/// the file itself is checked where it is opened.
fn rel_inside_root(path: &Path, root: &Root) -> Option<String> {
    let name = path.file_name()?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let real = std::fs::canonicalize(dir).ok()?.join(name);
    let rel = real.strip_prefix(root.real_path()).ok()?.to_str()?;
    (!rel.is_empty()).then(|| rel.to_string())
}

/// Whether `rel` names a regular file under the root that can be opened for reading,
/// by the same symlink policy as requests.
fn readable_file(root: &Root, rel: &str, follow_symlinks: bool) -> bool {
    let mut files = crate::files::FileCache::new(root.clone(), follow_symlinks);
    matches!(files.lookup(rel), Ok(crate::files::Found::File(..)))
}

impl Cli {
    /// The limits and timeouts the flags set.
    fn limits(&self) -> Limits {
        Limits {
            head_timeout: self.head_timeout.0,
            idle_timeout: self.idle_timeout.0,
            write_timeout: self.write_timeout.0,
            linger: self.linger.0,
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            max_connections: self.max_connections,
            queue_depth: self.queue_depth,
            grace_period: self.grace_period.0,
            drain_delay: self.drain_delay.0,
        }
    }

    /// The stats, metrics and health paths, normalised ([`endpoint_path`]), no two
    /// alike; and a drain delay that fits in the grace period.
    fn endpoints(&self, config: &mut Config) -> Result<(), ConfigError> {
        let path =
            |p: &Option<String>, flag, example| p.as_deref().map(|p| endpoint_path(p, flag, example)).transpose();
        config.stats_path = path(&self.stats_path, "--stats-path", "/.stats")?;
        config.metrics_path = path(&self.metrics_path, "--metrics-path", "/metrics")?;
        config.health_path = path(&self.health_path, "--health-path", "/healthz")?;
        let set: Vec<_> = config.endpoint_paths().collect();
        for (i, (flag, p)) in set.iter().enumerate() {
            if let Some((other, _)) = set[..i].iter().find(|(_, q)| q == p) {
                return Err(ConfigError(format!(
                    "{other} and {flag} are both {p}: each of the server's paths needs its own"
                )));
            }
        }
        if config.limits.drain_delay > config.limits.grace_period {
            return Err(ConfigError(format!(
                "--drain-delay {} is longer than --grace-period {}: the server exits at the end of the grace period",
                FlagDuration(config.limits.drain_delay),
                FlagDuration(config.limits.grace_period)
            )));
        }
        Ok(())
    }
}

/// Checks the path of one of the server's endpoints (`flag`: `--stats-path`,
/// `--metrics-path`, `--health-path`) is a URL path and normalises it as requests are
/// (decoded segments, no dot-segments, one leading slash), so that a request matches
/// it on its decoded path: no other spelling of it reaches a file it shadows.
fn endpoint_path(p: &str, flag: &str, example: &str) -> Result<String, ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError(format!(
            "{flag} '{p}' must start with '/' (a URL path such as {example})"
        )));
    }
    let url = crate::http::resolve::decode(p).map_err(|e| ConfigError(format!("{flag} '{p}': {}", e.message())))?;
    let mut normal = format!("/{}", url.rel);
    if url.trailing_slash && !url.rel.is_empty() {
        normal.push('/');
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn duration_flags_stop_at_their_maximum() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_timeout("1440m"), Ok(FlagDuration(day)));
        assert_eq!(parse_timeout("86400"), Ok(FlagDuration(day)));
        let err = parse_timeout("10000000000000000000").unwrap_err();
        assert!(err.contains("maximum of 1440m"), "{err}");
        assert!(parse_timeout("86400.001s").is_err());
        assert_eq!(parse_linger("1s"), Ok(FlagDuration(Duration::from_secs(1))));
        assert!(parse_linger("1001ms").unwrap_err().contains("maximum of 1s"));
    }

    #[test]
    fn duration_defaults_show_as_they_are_typed() {
        let cases = [
            (limits::HEAD_TIMEOUT, "10s"),
            (Duration::from_millis(10), "10ms"),
            (limits::MAX_TIMEOUT, "1440m"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_micros(1500), "0.0015s"),
        ];
        for (d, shown) in cases {
            assert_eq!(FlagDuration(d).to_string(), shown);
            assert_eq!(parse_duration(shown), Ok(d), "{shown} reads back");
        }
    }

    #[test]
    fn header_flags_parse_and_refuse_injection() {
        assert_eq!(
            parse_header("X-Frame-Options: DENY").unwrap(),
            ("X-Frame-Options".into(), "DENY".into())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: v").is_err());
        assert!(parse_header("X: a\r\nSet-Cookie: b").is_err());
    }

    /// A docroot `<tmp>/www` with `404.html`, `sub/page.html` and a directory `d`,
    /// and `<tmp>/out.html` outside it.
    fn site() -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let www = tmp.path().join("www");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::create_dir_all(www.join("d")).unwrap();
        std::fs::write(www.join("404.html"), "nf").unwrap();
        std::fs::write(www.join("sub/page.html"), "p").unwrap();
        std::fs::write(tmp.path().join("out.html"), "o").unwrap();
        let root = Root::new(&www).unwrap();
        (tmp, root)
    }

    /// `--404 /srv/www/404.html` was taken as the URL path `/srv/www/404.html`, not
    /// found, and the built-in page used without a word.
    #[test]
    fn not_found_page_accepts_filesystem_path() {
        let (tmp, root) = site();
        let www = root.path().display().to_string();
        let out = tmp.path().join("out.html").display().to_string();
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            ("url_path", "/404.html".into(), Some("404.html")),
            ("url_path_without_slash", "404.html".into(), Some("404.html")),
            (
                "url_path_percent_encoded",
                "/sub/p%61ge.html".into(),
                Some("sub/page.html"),
            ),
            ("filesystem_path", format!("{www}/404.html"), Some("404.html")),
            (
                "filesystem_path_in_a_subdirectory",
                format!("{www}/sub/page.html"),
                Some("sub/page.html"),
            ),
            (
                "filesystem_path_with_dotdot",
                format!("{www}/sub/../404.html"),
                Some("404.html"),
            ),
            ("missing_file", "/missing.html".into(), None),
            ("directory_url_path", "/d".into(), None),
            ("directory_filesystem_path", format!("{www}/d"), None),
            ("file_outside_the_root", out.clone(), None),
            ("url_path_above_the_root", "/../out.html".into(), None),
            ("the_root_itself", "/".into(), None),
        ];
        for (name, value, want) in cases {
            let got = site_file(&value, "--404", &root, false);
            match want {
                Some(rel) => assert_eq!(got.unwrap(), rel, "{name}"),
                None => {
                    let err = got.expect_err(name).to_string();
                    assert!(
                        err.contains("--404") && err.contains("no readable regular file under the root"),
                        "{name}: {err}"
                    );
                }
            }
        }
    }

    fn stats_path(p: &str) -> Result<String, ConfigError> {
        endpoint_path(p, "--stats-path", "/.stats")
    }

    fn config_of(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from([&["threadserve", "."], args].concat()).map_err(|e| e.to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn metrics_and_health_paths_are_normalised_like_the_stats_path() {
        let c = config_of(&["--metrics-path", "/m%65trics", "--health-path", "/x/../healthz/"]).unwrap();
        assert_eq!(c.metrics_path.as_deref(), Some("/metrics"));
        assert_eq!(c.health_path.as_deref(), Some("/healthz/"));
        assert_eq!(c.limits.drain_delay, Duration::ZERO, "drain delay defaults to 0");
        let err = config_of(&["--health-path", "healthz"]).unwrap_err();
        assert!(err.contains("--health-path 'healthz' must start with '/'"), "{err}");
        let err = config_of(&["--metrics-path", "/%zz"]).unwrap_err();
        assert!(err.contains("--metrics-path '/%zz'"), "{err}");
    }

    #[test]
    fn the_servers_paths_must_differ() {
        let cases = [
            (
                ["--stats-path", "/ops", "--metrics-path", "/ops"],
                "--stats-path and --metrics-path",
            ),
            (
                ["--metrics-path", "/ops", "--health-path", "/o%70s"],
                "--metrics-path and --health-path",
            ),
            (
                ["--stats-path", "/a/../ops", "--health-path", "/ops"],
                "--stats-path and --health-path",
            ),
        ];
        for (args, names) in cases {
            let err = config_of(&args).unwrap_err();
            assert!(err.contains(names) && err.contains("are both /ops"), "{args:?}: {err}");
        }
        assert!(config_of(&["--stats-path", "/s", "--metrics-path", "/m", "--health-path", "/h"]).is_ok());
    }

    #[test]
    fn drain_delay_fits_in_the_grace_period_and_warns_without_health() {
        let err = config_of(&["--health-path", "/h", "--drain-delay", "11s"]).unwrap_err();
        assert!(
            err.contains("--drain-delay 11s is longer than --grace-period 10s"),
            "{err}"
        );
        let c = config_of(&["--health-path", "/h", "--drain-delay", "5s", "--grace-period", "20s"]).unwrap();
        assert_eq!(c.limits.drain_delay, Duration::from_secs(5));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let c = config_of(&["--drain-delay", "5s"]).unwrap();
        assert_eq!(c.warnings(), ["--drain-delay has no effect without --health-path"]);
    }

    /// `--stats-path status` never matched anything; it must be a URL path. It is
    /// stored decoded, so requests are matched on their decoded path.
    #[test]
    fn stats_path_needs_a_leading_slash_and_is_normalised() {
        assert!(stats_path("stats")
            .unwrap_err()
            .to_string()
            .contains("must start with '/'"));
        assert!(stats_path("").is_err());
        assert!(stats_path("/a/%zz").is_err());
        assert_eq!(stats_path("/.stats").unwrap(), "/.stats");
        assert_eq!(stats_path("/st%61tus.json").unwrap(), "/status.json");
        assert_eq!(stats_path("/a/./b/").unwrap(), "/a/b/");
    }

    #[test]
    fn stats_path_shadowing_a_file_is_warned_about() {
        let (_tmp, root) = site();
        let mut config = Config::new(root);
        assert!(config.warnings().is_empty());
        config.stats_path = Some("/404.html".into());
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("--stats-path /404.html") && warnings[0].contains("shadows"),
            "{warnings:?}"
        );
        config.stats_path = Some("/.stats".into());
        assert!(config.warnings().is_empty());
        config.health_path = Some("/sub/page.html".into());
        config.metrics_path = Some("/d/".into());
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("--metrics-path /d/ shadows"), "{warnings:?}");
        assert!(
            warnings[1].starts_with("--health-path /sub/page.html shadows"),
            "{warnings:?}"
        );
    }

    /// `-H 'Content-Length: 0'` sent two Content-Lengths on every response (request
    /// smuggling through any proxy in front); the same for the other framing and
    /// hop-by-hop headers and the ones threadserve computes per response. Names match
    /// case-insensitively.
    #[test]
    fn header_flag_refuses_framing_headers() {
        let refused = [
            "Content-Length: 0",
            "content-length: 0",
            "Transfer-Encoding: chunked",
            "Connection: close",
            "Keep-Alive: timeout=5",
            "Upgrade: h2c",
            "TE: trailers",
            "Trailer: X",
            "Proxy-Connection: keep-alive",
            "Date: Thu, 01 Jan 1970 00:00:00 GMT",
            "ETAG: \"x\"",
            "Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT",
            "Content-Range: bytes 0-1/2",
            "Content-Type: text/plain",
            "Content-Encoding: gzip",
            "Vary: *",
            "Accept-Ranges: none",
            "Location: /",
            "Allow: GET",
            "Server: nginx",
            "Cache-Control: no-store",
        ];
        for h in refused {
            let err = parse_header(h).expect_err(h).to_string();
            let name = h.split(':').next().unwrap();
            assert!(
                err.contains(name) && err.contains("cannot be set with --header"),
                "{h}: {err}"
            );
        }
        for h in [
            "X-Frame-Options: DENY",
            "Content-Security-Policy: default-src 'self'",
            "Set-Cookie: a=b",
            "X-Content-Length: 1",
        ] {
            assert!(parse_header(h).is_ok(), "{h}");
        }
    }

    /// A line break inside one -H value (or THREADSERVE_HEADER) was split into two
    /// headers, so a value could smuggle a second header; it is refused like CR.
    #[test]
    fn header_flag_refuses_bare_lf() {
        for value in [
            "X-A: 1\nX-B: 2",
            "X-A: 1\rX-B: 2",
            "X-A: 1\r\nX-B: 2",
            "X-A: a\u{1}b",
            "X-A: a\u{7f}",
            "X-A: a\u{85}b",
        ] {
            let cli = Cli::try_parse_from(["threadserve", ".", "-H", value]).expect("clap accepts the value");
            let err = cli.into_config().expect_err(value).to_string();
            assert!(err.contains("control character"), "{value:?}: {err}");
        }
        let cli = Cli::try_parse_from(["threadserve", ".", "-H", "X-A: a\tb"]).unwrap();
        assert_eq!(
            cli.into_config().unwrap().headers,
            [("X-A".to_string(), "a\tb".to_string())]
        );
    }

    #[test]
    fn header_names_must_be_tokens() {
        for h in ["Bad Name: v", "X(y): v", ": v", "X\u{e9}: v", "X-\u{0}: v"] {
            assert!(parse_header(h).is_err(), "{h:?}");
        }
    }

    #[test]
    fn cors_and_header_flag_cannot_both_set_access_control() {
        let cli = Cli::try_parse_from([
            "threadserve",
            ".",
            "--cors",
            "-H",
            "Access-Control-Allow-Origin: https://a",
        ])
        .unwrap();
        let err = cli.into_config().unwrap_err().to_string();
        assert!(err.contains("--cors"), "{err}");
        let cli = Cli::try_parse_from(["threadserve", ".", "-H", "Access-Control-Allow-Origin: https://a"]).unwrap();
        assert!(cli.into_config().is_ok(), "without --cors the operator owns it");
    }

    #[test]
    fn port_overrides_bind() {
        assert_eq!(resolve_bind("0.0.0.0:80", Some(9)).unwrap().to_string(), "0.0.0.0:9");
        assert!(resolve_bind("not an address", None).is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
