//! The idle watcher: one thread that holds connections no worker needs right now
//! (keep-alive between requests, or a head arriving slowly) in an epoll set. A readable
//! connection goes back to the worker queue; one past its deadline is closed. Idle
//! keep-alive connections beyond [`MAX_IDLE_PERCENT`] of the connection limit are closed
//! longest-idle first.
//!
//! This is what lets a fixed pool of workers hold thousands of open connections: a
//! worker never waits on a silent client for longer than the linger. The watcher is a
//! `SCHED_BATCH` thread, so it gathers readiness while workers run instead of
//! preempting them for each event (see `sched`).

use super::conn::{Conn, Timeout};
use super::poll::Poller;
use super::Shared;
use crate::clock;
use crate::limits::MAX_IDLE_PERCENT;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often parked connections are checked against their deadlines. Timeouts are in
/// seconds, so a quarter second of slack is invisible; a sweep is O(parked).
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Runs until shutdown; closes every parked connection on the way out.
///
/// Connections are registered edge-triggered, once (see `Stream::arm`), so readiness
/// is reported wherever a connection is: here, on its way here, queued, or in a
/// worker. Events for a connection not parked here are kept, with when they were
/// seen, and matched when it arrives: it goes straight back to the workers unless its
/// last read, which emptied the socket, began after the event (then that input was
/// read). One entry per descriptor at most, replaced by each newer event, so the table
/// is bounded by the open descriptors and needs no expiry: a stale entry left by a
/// closed connection is older than any read of the next connection on that
/// descriptor. Connections leave the epoll set only when they close.
pub fn run(shared: Arc<Shared>, poller: Arc<Poller>, parked_rx: Receiver<Conn>, jobs: Sender<Conn>) {
    super::sched::prefer_batch("idle watcher");
    let mut parked = Parked::default();
    let mut early: HashMap<usize, Instant> = HashMap::new();
    let idle_cap = idle_cap(shared.config.limits.max_connections);
    let (mut buf, mut ready) = (Vec::new(), Vec::new());
    let mut next_sweep = clock::deadline(Instant::now(), SWEEP_EVERY);
    loop {
        let timeout = next_sweep.saturating_duration_since(Instant::now());
        if let Err(e) = poller.wait(&mut buf, &mut ready, timeout) {
            log::error!("idle watcher: epoll_wait failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let seen = Instant::now();
        let mut added = false;
        while let Ok(mut conn) = parked_rx.try_recv() {
            let key = conn.key();
            let early_input = early
                .remove(&key)
                .is_some_and(|at| conn.stream.may_have_input_since(at));
            if conn.wants_turn() || (early_input && conn.held_until().is_none()) {
                // A response that used its turn goes to the back of the queue at once;
                // so does a connection whose input came while it was on its way. The
                // channel's capacity covers every open connection, so this never
                // blocks; it fails only when the workers are gone (shutdown).
                let _ = jobs.send(conn);
            } else {
                if early_input {
                    conn.stream.forget_drained();
                }
                parked.insert(key, conn);
                added = true;
            }
        }
        for &key in &ready {
            match parked.conns.get_mut(&key) {
                // A held request waits for its time whatever its client sends; the
                // edge is spent, so its next park asks the kernel again.
                Some(conn) if conn.held_until().is_some() => conn.stream.forget_drained(),
                Some(_) => {
                    if let Some(conn) = parked.remove(key) {
                        let _ = jobs.send(conn);
                    }
                }
                None => {
                    early.insert(key, seen);
                }
            }
        }
        if added {
            evict_longest_idle(&mut parked, idle_cap, &jobs);
        }
        let now = Instant::now();
        if now >= next_sweep {
            sweep(&shared, &mut parked, now, &jobs);
            poller.reset_wake();
            next_sweep = clock::deadline(now, SWEEP_EVERY);
        }
        parked.publish(&shared.gauges);
        if shared.is_shutting_down() && drained(&shared, &mut parked, &parked_rx, &jobs) {
            break;
        }
    }
    // Parked connections close here (dropping a Conn removes it from the poller);
    // responses still waiting for slow readers are cut, as the grace period allows.
    drop(parked);
}

/// During shutdown: closes every parked connection that is not in the middle of a
/// response, and says whether the watcher may stop — no connection open anywhere
/// (here, on its way here, queued for a worker or in a worker's hands). The count of
/// open connections is what decides: a connection moving between a worker and the
/// watcher is always counted, where the queues and the busy count can each miss it
/// for a moment (and a response parked after the watcher stopped would be cut).
fn drained(shared: &Shared, parked: &mut Parked, parked_rx: &Receiver<Conn>, jobs: &Sender<Conn>) -> bool {
    let idle: Vec<usize> = parked
        .conns
        .iter()
        .filter(|(_, c)| !c.is_sending())
        .map(|(&k, _)| k)
        .collect();
    for key in idle {
        parked.remove(key);
    }
    parked.conns.is_empty()
        && parked_rx.is_empty()
        && jobs.is_empty()
        && shared.gauges.busy.load(std::sync::atomic::Ordering::SeqCst) == 0
        && shared.gauges.open.load(std::sync::atomic::Ordering::SeqCst) == 0
}

/// Most idle keep-alive connections held for a connection limit of `max_connections`.
fn idle_cap(max_connections: usize) -> usize {
    (max_connections.saturating_mul(MAX_IDLE_PERCENT) / 100).max(1)
}

/// Parked connections by poller key (their fd), and how many of them are keep-alive
/// idle ([`State::Idle`](super::conn::State); the others are governed by their head or
/// write deadline). No index by idle time: ordering them cost a B-tree insert and
/// remove per keep-alive request, while the order is needed only over the cap (see
/// [`evict_longest_idle`]).
#[derive(Default)]
struct Parked {
    conns: HashMap<usize, Conn>,
    idle: usize,
}

impl Parked {
    fn insert(&mut self, key: usize, conn: Conn) {
        self.idle += usize::from(conn.idle_since().is_some());
        if let Some(old) = self.conns.insert(key, conn) {
            // Unreachable: a key is an open fd, unique while parked. Keep the count true.
            self.idle -= usize::from(old.idle_since().is_some());
        }
    }

    /// Shows how many connections are parked, and how many of them idle between
    /// requests, in the gauges (metrics, the drain); stores only what changed.
    fn publish(&self, gauges: &crate::stats::Gauges) {
        use std::sync::atomic::Ordering::Relaxed;
        if gauges.parked.load(Relaxed) != self.conns.len() {
            gauges.parked.store(self.conns.len(), Relaxed);
        }
        if gauges.parked_idle.load(Relaxed) != self.idle {
            gauges.parked_idle.store(self.idle, Relaxed);
        }
    }

    fn remove(&mut self, key: usize) -> Option<Conn> {
        let conn = self.conns.remove(&key)?;
        self.idle -= usize::from(conn.idle_since().is_some());
        Some(conn)
    }
}

/// Closes idle keep-alive connections, longest-idle first, once more than `cap` are
/// held: those over the cap and a 64th of the cap more, found in one pass over the
/// parked (so a flood of connections at the cap costs one pass per `cap / 64` new
/// idle ones, not one per connection; nginx likewise closes its idle keep-alive
/// connections in batches when it runs short). One that turns out to have a request
/// waiting goes to the workers instead: it is not idle, its readiness event just has
/// not been seen yet.
fn evict_longest_idle(parked: &mut Parked, cap: usize, jobs: &Sender<Conn>) {
    if parked.idle <= cap {
        return;
    }
    let excess = parked.idle - cap + cap / 64;
    let mut oldest: Vec<(Instant, usize)> = (parked.conns.iter())
        .filter_map(|(&key, conn)| Some((conn.idle_since()?, key)))
        .collect();
    if excess < oldest.len() {
        oldest.select_nth_unstable(excess);
        oldest.truncate(excess);
    }
    oldest.sort_unstable();
    for (_, key) in oldest {
        let Some(conn) = parked.remove(key) else { continue };
        if conn.stream.input_waiting() {
            let _ = jobs.send(conn);
        } else {
            log::debug!(
                "idle watcher: idle connections over the cap of {cap}; closing {}",
                conn.peer
            );
        }
    }
}

/// Closes connections whose phase timed out ([`Conn::expire`] says what the client
/// hears first: a 408 only to one that stalled mid-head), and sends held requests
/// whose time has come back to the workers.
fn sweep(shared: &Shared, parked: &mut Parked, now: Instant, jobs: &Sender<Conn>) {
    let limits = &shared.config.limits;
    // One pass: held requests whose time has come (`None`), phases that timed out.
    let ready: Vec<(usize, Option<Timeout>)> = (parked.conns.iter())
        .filter_map(|(&k, c)| match c.held_until() {
            Some(until) => (until <= now).then_some((k, None)),
            None => Some((k, Some(c.timed_out(now, limits.idle_timeout)?))),
        })
        .collect();
    for (key, timeout) in ready {
        let Some(mut conn) = parked.remove(key) else { continue };
        match timeout {
            None => {
                conn.release(now, limits.head_timeout);
                let _ = jobs.send(conn);
            }
            Some(timeout) => conn.expire(timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::idle_cap;

    #[test]
    fn idle_cap_is_a_share_of_the_connection_limit_and_never_zero() {
        assert_eq!(idle_cap(10_000), 9_000);
        assert_eq!(idle_cap(20), 18);
        assert_eq!(idle_cap(1), 1);
        assert_eq!(idle_cap(usize::MAX), usize::MAX / 100);
    }
}
