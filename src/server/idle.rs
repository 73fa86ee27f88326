//! The idle watcher: one thread that holds connections no worker needs right now
//! (keep-alive between requests, or a head arriving slowly) in an epoll set. A readable
//! connection goes back to the worker queue; one past its deadline is closed.
//!
//! This is what lets a fixed pool of workers hold thousands of open connections: a
//! worker never waits on a silent client for longer than the linger.

use super::conn::Conn;
use super::Shared;
use crate::status::Status;
use crossbeam_channel::{Receiver, Sender};
use polling::{Event, Events, Poller};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often parked connections are checked against their deadlines. Timeouts are in
/// seconds, so a quarter second of slack is invisible; a sweep is O(parked).
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Runs until shutdown; closes every parked connection on the way out.
pub fn run(shared: Arc<Shared>, poller: Arc<Poller>, parked_rx: Receiver<Conn>, jobs: Sender<Conn>) {
    let mut parked: HashMap<usize, Conn> = HashMap::new();
    let mut events = Events::new();
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    loop {
        events.clear();
        let timeout = next_sweep.saturating_duration_since(Instant::now());
        if let Err(e) = poller.wait(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("idle watcher: epoll_wait failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if shared.is_shutting_down() {
            break;
        }
        for ev in events.iter() {
            if let Some(conn) = parked.remove(&ev.key) {
                let _ = poller.delete(&conn.stream);
                // The channel's capacity covers every open connection, so this never
                // blocks; it fails only when the workers are gone (shutdown).
                let _ = jobs.send(conn);
            }
        }
        while let Ok(conn) = parked_rx.try_recv() {
            let key = conn.stream.as_raw_fd() as usize;
            // SAFETY: the stream stays registered only while it is in `parked`, and is
            // deleted from the poller before it leaves the map (and so before it drops).
            match unsafe { poller.add(&conn.stream, Event::readable(key)) } {
                Ok(()) => {
                    parked.insert(key, conn);
                }
                Err(e) => log::warn!("idle watcher: cannot watch {}: {e}", conn.peer),
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            sweep(&shared, &poller, &mut parked, now);
            next_sweep = now + SWEEP_EVERY;
        }
    }
    for (_, conn) in parked.drain() {
        let _ = poller.delete(&conn.stream);
    }
}

/// Closes connections whose head deadline or idle timeout has passed. A client that
/// started a head and stalled gets a 408 first (best effort, never blocking).
fn sweep(shared: &Shared, poller: &Poller, parked: &mut HashMap<usize, Conn>, now: Instant) {
    let idle_timeout = shared.config.limits.idle_timeout;
    let expired: Vec<usize> = parked
        .iter()
        .filter(|(_, c)| match c.head_deadline {
            Some(d) => now >= d,
            None => now.duration_since(c.idle_since) >= idle_timeout,
        })
        .map(|(&k, _)| k)
        .collect();
    for key in expired {
        if let Some(conn) = parked.remove(&key) {
            let _ = poller.delete(&conn.stream);
            if conn.head_deadline.is_some() {
                let msg = "The request head did not arrive in time.";
                let page = super::serve::error_response(Status::RequestTimeout, msg);
                Conn::send_now(&conn.stream, &page);
            }
        }
    }
}
