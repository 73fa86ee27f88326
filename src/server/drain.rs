//! The drain a load balancer can see (`--health-path`): on SIGTERM the server keeps
//! accepting and answering, but the health path answers 503 and every response
//! closes its connection (the planner's `closing` flag). A drain thread ends it by
//! starting the ordinary shutdown ([`Handle::shutdown`]) once `--drain-delay` has
//! passed since the signal and nothing is in flight, or when the grace period
//! (counted from the signal too) ends. Without `--health-path`, SIGTERM is the
//! ordinary shutdown at once.
//!
//! "In flight" is every open connection except keep-alive connections parked idle
//! between requests: requests queued or in a worker, heads arriving, responses
//! waiting for slow readers. An idle keep-alive connection does not hold the drain
//! back: if its client sends a request it is answered (with `Connection: close`); if
//! not, the shutdown closes it.

use super::{spawn, Handle};
use crate::clock;
use crate::stats::Gauges;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often the drain thread looks whether anything is still in flight once the
/// drain delay is over: the server exits at most this long after the last response.
const POLL: Duration = Duration::from_millis(10);

/// Whether the server drains or shuts down, and since when.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// Set by a drain and by a shutdown: responses close their connections, the
    /// health path answers 503.
    closing: AtomicBool,
    /// When the first SIGTERM (or shutdown) arrived; the grace period counts from it.
    since: OnceLock<Instant>,
}

impl Drain {
    /// A drain or a shutdown is under way.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Marks the server as closing; returns when that started (now, or earlier).
    pub fn close(&self) -> Instant {
        self.closing.store(true, Ordering::SeqCst);
        *self.since.get_or_init(Instant::now)
    }

    /// When the server started closing, if it has.
    pub fn since(&self) -> Option<Instant> {
        self.since.get().copied()
    }
}

/// What SIGTERM (or SIGINT) does: with a health path, the first one starts a drain
/// and a second one ends it early (the ordinary shutdown, still within the grace
/// period counted from the first); without one, the ordinary shutdown.
pub(crate) fn terminate(handle: &Handle) {
    let shared = &handle.shared;
    if shared.config.health_path.is_none() || shared.drain.is_closing() {
        handle.shutdown();
        return;
    }
    let since = shared.drain.close();
    let limits = &shared.config.limits;
    log::info!(
        "draining: the health path answers 503, every response closes its connection; exiting when \
         nothing is in flight after {:?} (at the latest after {:?})",
        limits.drain_delay,
        limits.grace_period
    );
    let drainer = handle.clone();
    if let Err(e) = spawn("ts-drain", move || wait_then_shut_down(&drainer, since)) {
        log::error!("cannot start the drain thread ({e}); shutting down now");
        handle.shutdown();
    }
}

/// Sleeps out the drain delay, waits for nothing to be in flight (or the grace period
/// to end), then starts the shutdown. Returns early if a shutdown started meanwhile.
fn wait_then_shut_down(handle: &Handle, since: Instant) {
    let shared = &handle.shared;
    let limits = &shared.config.limits;
    let delay_end = clock::deadline(since, limits.drain_delay);
    let grace_end = clock::deadline(since, limits.grace_period);
    std::thread::sleep(delay_end.saturating_duration_since(Instant::now()));
    // Nothing in flight on two looks in a row: a connection moving between the idle
    // watcher and a worker can escape one look (see [`in_flight`]), not two.
    let mut quiet = 0;
    while !shared.is_shutting_down() && quiet < 2 && Instant::now() < grace_end {
        quiet = if in_flight(&shared.gauges) == 0 { quiet + 1 } else { 0 };
        if quiet < 2 {
            std::thread::sleep(POLL);
        }
    }
    if !shared.is_shutting_down() {
        log::info!(
            "drain over after {:?}: {} connection(s) in flight",
            since.elapsed(),
            in_flight(&shared.gauges)
        );
        handle.shutdown();
    }
}

/// Open connections other than idle keep-alive ones parked between requests. The two
/// gauges are read apart, so the count can be off for an instant while a connection
/// moves; the shutdown that follows still finishes every response under way.
fn in_flight(gauges: &Gauges) -> usize {
    let open = gauges.open.load(Ordering::SeqCst);
    open.saturating_sub(gauges.parked_idle.load(Ordering::SeqCst))
}
