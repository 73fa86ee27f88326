//! The engine: a blocking accept loop hands connections over a bounded channel to a
//! fixed pool of worker threads; idle connections wait in the idle watcher; finished
//! requests go to the logger/stats thread as records. Every socket system call is
//! in `transport` (plain TCP with sendfile, or copying through a buffer).
//!
//! ```text
//! accept loop ──Conn──▶ jobs channel ──▶ N workers ──Record──▶ logger/stats
//!                            ▲                │
//!                            └── readable ────┴── idle ──▶ idle watcher (epoll)
//! ```

mod conn;
mod date;
mod drain;
mod execute;
mod idle;
mod output;
mod poll;
mod reload;
mod sched;
mod site;
mod transport;
mod worker;

pub use transport::Transport;

use crate::auth::throttle::Throttle;
use crate::auth::Authenticator;
use crate::clock;
use crate::config::Config;
use crate::files::compress::Store;
use crate::files::Root;
use crate::http::status::Status;
use crate::http::wire;
use crate::log_writer;
use crate::stats::{self, Gauges, Msg, Snapshot};
use conn::{Conn, OpenGuard};
use crossbeam_channel::{Receiver, Sender};
use poll::Poller;
use reload::Reloadable;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use transport::Stream;

/// State every engine thread reads; the only mutable parts are atomics.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub gauges: Arc<Gauges>,
    pub log: Sender<Msg>,
    /// How connections send (read once at bind).
    transport: Transport,
    shutdown: AtomicBool,
    poller: Arc<Poller>,
    parked_tx: Sender<Conn>,
    /// The root being served, replaced by a reload (SIGHUP).
    root: Reloadable<Root>,
    /// The `--auth-file` users, read again by a reload.
    pub auth: Reloadable<Option<Arc<Authenticator>>>,
    /// Failed logins by address (kept across reloads).
    pub throttle: Throttle,
    /// Compressed representations, shared by the workers (see `files::compress`).
    pub compressed: Store,
    /// Small files' bytes, one copy per version for all the workers' caches (see
    /// `files::bodies`); kept across reloads, as it is keyed by inode, not by path.
    pub bodies: Arc<crate::files::Bodies>,
    /// Draining or shutting down (see the `drain` module).
    drain: drain::Drain,
}

impl Shared {
    /// The root to serve from if it changed since `generation` (which is updated).
    pub fn root_if_changed(&self, generation: &mut u64) -> Option<Root> {
        self.root.if_changed(generation)
    }

    /// Opens the configured ROOT path again (a `current -> releases/42` switch is
    /// picked up) and makes workers serve from it from their next request.
    fn reopen_root(&self) {
        let old = self.root.current();
        match Root::new(old.path()) {
            Ok(root) => {
                log::info!("SIGHUP: root {} re-opened: {}", old.path().display(), root.describe());
                self.root.replace(root);
            }
            Err(e) => log::error!(
                "SIGHUP: cannot re-open root {}: {e}; still serving the previous one",
                old.path().display()
            ),
        }
    }

    /// Reads the `--auth-file` again: workers check against the users it lists now
    /// (with an empty credential cache) from their next request. A file that no
    /// longer loads leaves the previous users in place.
    fn reload_auth(&self) {
        let Some(old) = self.auth.current() else { return };
        match old.reload() {
            Ok(auth) => {
                log::info!("SIGHUP: --auth-file re-read: {}", auth.describe());
                self.auth.replace(Some(Arc::new(auth)));
            }
            Err(e) => log::error!("SIGHUP: {e}; still using the previous users"),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Draining or shutting down: every response closes its connection.
    pub fn is_closing(&self) -> bool {
        self.drain.is_closing()
    }

    /// Asks the logger/stats thread for the current counters (`None` if it has
    /// stopped or does not answer within 2 s).
    pub fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.log.send(Msg::Snapshot(tx)).ok()?;
        let mut snapshot: Snapshot = rx.recv_timeout(Duration::from_secs(2)).ok()?;
        snapshot.compression = self.compression_stats();
        Some(snapshot)
    }

    pub fn compression_stats(&self) -> stats::CompressionStats {
        let c = &self.compressed.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        stats::CompressionStats {
            hits: load(&c.hits),
            compressions: load(&c.misses),
            resident_bytes: load(&c.resident),
            evictions: load(&c.evictions),
            refused: load(&c.refused),
        }
    }

    /// Hands a connection that waits for its client to the idle watcher (or closes it
    /// during shutdown, unless a response is still going out). The worker arms the
    /// poller itself (an `epoll_ctl` only where `Stream::arm` needs one); the
    /// notification that makes the watcher take the connection is coalesced, so a busy
    /// watcher costs no extra system call.
    pub fn park(&self, mut conn: Conn) {
        let sending = conn.is_sending();
        if self.is_shutting_down() && !sending {
            return;
        }
        conn.shrink_if_empty();
        if sending {
            conn.stream.set_nonblocking();
        }
        match conn.arm(&self.poller) {
            Ok(()) => {
                if self.parked_tx.send(conn).is_ok() {
                    let _ = self.poller.notify();
                }
            }
            Err(e) => log::warn!("cannot park {}: {e}", conn.peer),
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub struct BindError {
    addr: SocketAddr,
    source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source.kind() {
            io::ErrorKind::AddrInUse => write!(
                f,
                "cannot listen on {}: the address is already in use (try another --port)",
                self.addr
            ),
            io::ErrorKind::AddrNotAvailable => {
                write!(f, "cannot listen on {}: no local interface has that address", self.addr)
            }
            io::ErrorKind::PermissionDenied => write!(
                f,
                "cannot listen on {}: permission denied (ports below 1024 need privileges)",
                self.addr
            ),
            _ => write!(f, "cannot listen on {}: {}", self.addr, self.source),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    jobs: (Sender<Conn>, Receiver<Conn>),
    parked_rx: Receiver<Conn>,
    log_rx: Receiver<Msg>,
}

/// Stops a running server from another thread (signal handler, test).
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    listener: Arc<TcpListener>,
}

impl Handle {
    /// Starts a graceful shutdown: stop accepting, let in-flight responses finish
    /// (within the grace period), close idle connections. Returns at once.
    pub fn shutdown(&self) {
        self.shared.drain.close();
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Shutting a listening socket down wakes a thread blocked in accept (Linux).
        transport::stop_accepting(&self.listener);
        let _ = self.shared.poller.notify();
    }

    /// What SIGTERM and SIGINT ask for: with `--health-path`, a drain the load
    /// balancer can see (see the `drain` module); without, [`Handle::shutdown`]. A
    /// second call during a drain shuts down at once. Returns at once.
    pub fn terminate(&self) {
        drain::terminate(self);
    }

    /// What SIGHUP asks for: the root path is opened again, so a deploy that switches
    /// a `current` symlink is served from the next request on (in-flight responses
    /// finish from the files they opened); the `--auth-file` and the TLS certificate
    /// are read again. Logs what it did.
    pub fn reload(&self) {
        self.shared.reopen_root();
        self.shared.reload_auth();
        if let Some(tls) = &self.shared.config.tls {
            tls.reload();
        }
    }

    /// The current counters, or `None` if the logger has stopped.
    pub fn stats(&self) -> Option<Snapshot> {
        self.shared.snapshot()
    }
}

impl Server {
    /// Binds the listening socket; connections use the transport the environment
    /// selects ([`Transport::from_env`]: `THREADSERVE_TRANSPORT=copy`, or plain TCP).
    pub fn bind(config: Config) -> Result<Server, BindError> {
        Server::bind_over(config, Transport::from_env())
    }

    /// Binds the listening socket; connections use `transport`.
    pub fn bind_over(config: Config, transport: Transport) -> Result<Server, BindError> {
        let addr = config.bind;
        let listener = transport::listen(addr).map_err(|source| BindError { addr, source })?;
        let poller = Arc::new(Poller::new().map_err(|source| BindError { addr, source })?);
        // Room for every open connection plus the queue, so the idle watcher never
        // blocks handing one back; the accept loop sheds load at `queue_depth`.
        let jobs = crossbeam_channel::bounded(config.limits.max_connections + config.limits.queue_depth);
        let (parked_tx, parked_rx) = crossbeam_channel::unbounded();
        let (log_tx, log_rx) = crossbeam_channel::bounded(crate::limits::LOG_QUEUE);
        let root = config.root.clone();
        // More compressions at once than cores would only queue for the CPU.
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let compressed = Store::new(config.compress_cache, cores.min(config.threads));
        let shared = Arc::new(Shared {
            compressed,
            bodies: Arc::default(),
            root: Reloadable::new(root),
            auth: Reloadable::new(config.auth.clone()),
            throttle: Throttle::default(),
            config,
            gauges: Arc::new(Gauges::default()),
            log: log_tx,
            transport,
            shutdown: AtomicBool::new(false),
            poller,
            parked_tx,
            drain: drain::Drain::default(),
        });
        Ok(Server {
            listener,
            shared,
            jobs,
            parked_rx,
            log_rx,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The transport connections use.
    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> Handle {
        let listener = self.listener.try_clone().expect("dup of the listening socket");
        Handle {
            shared: Arc::clone(&self.shared),
            listener: Arc::new(listener),
        }
    }

    /// Serves until [`Handle::shutdown`], then drains: returns the final counters once
    /// in-flight responses have finished or the grace period has run out.
    pub fn run(self) -> io::Result<Snapshot> {
        let Server {
            listener,
            shared,
            jobs: (jobs_tx, jobs_rx),
            parked_rx,
            log_rx,
        } = self;
        let config = &shared.config;
        let (log_queue, log_writer) = log_writer::start(io::stdout(), crate::limits::LOG_BUFFER_BYTES)?;
        let log_thread = {
            let gauges = Arc::clone(&shared.gauges);
            let opts = stats::Options::of(config);
            spawn("ts-log", move || stats::run(opts, log_rx, gauges, log_queue))?
        };
        let idle_thread = {
            let (shared, poller, jobs) = (Arc::clone(&shared), Arc::clone(&shared.poller), jobs_tx.clone());
            spawn("ts-idle", move || idle::run(shared, poller, parked_rx, jobs))?
        };
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        for i in 0..config.threads {
            let (shared, jobs, done) = (Arc::clone(&shared), jobs_rx.clone(), done_tx.clone());
            spawn(&format!("ts-worker-{i}"), move || {
                worker::run(&shared, &jobs);
                drop(done);
            })?;
        }
        drop((done_tx, jobs_rx));
        accept_loop(&listener, &shared, &jobs_tx);
        drop(jobs_tx);
        drop(listener);

        // The grace period counts from the signal, also when a drain came first.
        let since = shared.drain.since().unwrap_or_else(Instant::now);
        let grace_end = clock::deadline(since, config.limits.grace_period);
        drain(&shared, &done_rx, idle_thread, grace_end);
        // The logger thread never waits on stdout, so it stops at once; the writer
        // gets what is left of the grace period (and a little more) to catch up.
        let _ = shared.log.send(Msg::Stop);
        let mut snapshot = log_thread.join().unwrap_or_default();
        snapshot.compression = shared.compression_stats();
        let unwritten = log_writer.finish(grace_end);
        report_log_losses(&snapshot, unwritten);
        snapshot.log_records_lost += unwritten;
        log::info!("stopped: {}", serde_json::to_string(&snapshot).unwrap_or_default());
        Ok(snapshot)
    }
}

/// Waits until the workers have finished every in-flight response, or the grace period
/// ends (`grace_end`).
fn drain(shared: &Shared, workers_done: &Receiver<()>, idle_thread: thread::JoinHandle<()>, grace_end: Instant) {
    match workers_done.recv_deadline(grace_end) {
        // Workers end once the idle watcher has finished the last parked response.
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            let _ = idle_thread.join();
        }
        // Past the grace period nothing more is waited for: responses still going
        // out (in a worker, or parked for a slow reader) are cut when we return.
        _ => log::warn!(
            "grace period of {:?} over with {} connection(s) still open; exiting anyway",
            shared.config.limits.grace_period,
            shared.gauges.open.load(Ordering::Relaxed)
        ),
    }
}

/// One line on stderr at exit if any access-log record did not reach stdout.
fn report_log_losses(s: &Snapshot, unwritten: u64) {
    let total = s.log_records_dropped + s.log_records_lost + unwritten;
    if total > 0 {
        log::warn!(
            "access log: {total} record(s) not written: {} dropped while stdout was not keeping up, \
             {} lost to write errors, {unwritten} still queued at exit",
            s.log_records_dropped,
            s.log_records_lost
        );
    }
}

/// A complete error response that closes the connection, dated now (see
/// [`wire::error_response`]).
pub(crate) fn error_response(status: Status, message: &str) -> Vec<u8> {
    wire::error_response(status, message, &date::now())
}

fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<thread::JoinHandle<T>> {
    thread::Builder::new().name(name.to_string()).spawn(f)
}

/// Accepts until shutdown. Errors never end the loop: running out of file descriptors
/// backs off (and is logged at most once a second) instead of spinning.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, jobs: &Sender<Conn>) {
    let limits = &shared.config.limits;
    let mut last_complaint: Option<Instant> = None;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(_) if shared.is_shutting_down() => return,
            Err(e) => {
                if is_resource_exhaustion(&e) {
                    if last_complaint.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        log::error!("accept: {e}; backing off (raise `ulimit -n` or lower --max-connections)");
                        last_complaint = Some(Instant::now());
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        shared.gauges.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.is_shutting_down() {
            return;
        }
        let tls = shared.config.tls.as_ref().map(|t| t.config());
        let mut stream = Stream::new(stream, shared.transport, tls);
        if shared.gauges.open.load(Ordering::Relaxed) >= limits.max_connections {
            shed(shared, &mut stream, "The server is at its connection limit.");
            continue;
        }
        if jobs.len() >= limits.queue_depth {
            shed(shared, &mut stream, "All workers are busy.");
            continue;
        }
        if let Err(e) = stream.set_linger(limits.linger) {
            log::debug!("accept: cannot configure {peer}: {e}");
            continue;
        }
        let conn = Conn::new(
            stream,
            peer,
            OpenGuard::new(&shared.gauges),
            clock::deadline(Instant::now(), limits.head_timeout),
        );
        if let Err(e) = jobs.try_send(conn) {
            shed(shared, &mut e.into_inner().stream, "All workers are busy.");
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Answers 503 with `Retry-After` without reading the request, then closes.
fn shed(shared: &Shared, stream: &mut Stream, message: &str) {
    shared.gauges.shed.fetch_add(1, Ordering::Relaxed);
    stream.refuse(&error_response(Status::ServiceUnavailable, message));
}
