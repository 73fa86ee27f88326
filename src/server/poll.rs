//! The idle watcher's readiness set: one epoll instance, through `rustix`, holding
//! every parked socket edge-triggered under its descriptor as key, plus an eventfd
//! that workers write to hand the watcher a connection.
//!
//! It replaced the `polling` crate, which is made for a general event loop: each of
//! its waits set a timerfd for the timeout and re-armed both that timerfd and its
//! notification pipe (`timerfd_settime`, two `epoll_ctl` and a `read` around every
//! `epoll_wait`). Here a wait is one `epoll_wait` with the timeout in it, and the
//! eventfd is edge-triggered, so it is never read on the hot path: each write raises
//! an edge whatever its count, and the count is reset once per sweep (it would take
//! 2^64 writes to fill it). Measured at 64 keep-alive connections on one CPU: 5.2 of
//! the watcher's system calls per wake-up became 1.

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The key of the eventfd; socket keys are descriptors, which never reach it.
const WAKE_KEY: u64 = u64::MAX;

/// Events taken from the kernel per `epoll_wait`; more wait for the next call.
const EVENTS_PER_WAIT: usize = 1024;

/// An epoll set and the eventfd that wakes its waiter.
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
    wake: OwnedFd,
    /// A wake-up was written and the waiter has not returned since: later notifiers
    /// need not write again.
    notified: AtomicBool,
}

/// Interest in a socket: readable (input, or the peer's close), or writable.
fn interest(writable: bool) -> EventFlags {
    let base = if writable {
        EventFlags::OUT
    } else {
        EventFlags::IN | EventFlags::RDHUP
    };
    base | EventFlags::ET
}

impl Poller {
    /// A new, empty set.
    pub fn new() -> io::Result<Poller> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &wake,
            EventData::new_u64(WAKE_KEY),
            EventFlags::IN | EventFlags::ET,
        )?;
        Ok(Poller {
            epoll,
            wake,
            notified: AtomicBool::new(false),
        })
    }

    /// Registers `fd` under `key`, edge-triggered.
    pub fn add(&self, fd: impl AsFd, key: usize, writable: bool) -> io::Result<()> {
        Ok(epoll::add(
            &self.epoll,
            fd,
            EventData::new_u64(key as u64),
            interest(writable),
        )?)
    }

    /// Changes the interest of a registered `fd`. The kernel checks readiness then:
    /// a socket that is already ready raises an edge at once.
    pub fn modify(&self, fd: impl AsFd, key: usize, writable: bool) -> io::Result<()> {
        Ok(epoll::modify(
            &self.epoll,
            fd,
            EventData::new_u64(key as u64),
            interest(writable),
        )?)
    }

    /// Removes a registered `fd` (before it is closed).
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(epoll::delete(&self.epoll, fd)?)
    }

    /// Wakes the waiter, if it was not woken already since it last returned.
    pub fn notify(&self) -> io::Result<()> {
        if !self.notified.swap(true, Ordering::SeqCst) {
            rustix::io::write(&self.wake, &1u64.to_ne_bytes())?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for readiness (or a notification) and puts the keys of the
    /// ready sockets in `keys`. A notifier that came before this returns has been
    /// seen: what it handed over before notifying is there for the caller to take.
    pub fn wait(&self, buf: &mut Vec<epoll::Event>, keys: &mut Vec<usize>, timeout: Duration) -> io::Result<()> {
        buf.clear();
        keys.clear();
        buf.reserve(EVENTS_PER_WAIT);
        // Whole milliseconds, rounded up, so a wait never ends just before its deadline.
        let millis = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
        let ts = Timespec {
            tv_sec: millis / 1000,
            tv_nsec: (millis % 1000) * 1_000_000,
        };
        let got = epoll::wait(&self.epoll, rustix::buffer::spare_capacity(buf), Some(&ts));
        // Cleared before the caller drains its hand-over queue: a notifier that finds
        // it clear writes again, so nothing handed over after the drain goes unseen.
        self.notified.store(false, Ordering::SeqCst);
        match got {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        keys.extend(
            buf.iter()
                .map(|ev| ev.data.u64())
                .filter(|&k| k != WAKE_KEY)
                .map(|k| k as usize),
        );
        Ok(())
    }

    /// Resets the eventfd's count (see the module doc); once per sweep.
    pub fn reset_wake(&self) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut count);
    }
}

#[cfg(test)]
mod tests {
    use super::Poller;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// A poller with the server side of a fresh connection registered readable.
    fn registered() -> (Poller, TcpStream, TcpStream, usize) {
        let p = Poller::new().unwrap();
        let (client, server) = pair();
        let key = server.as_raw_fd() as usize;
        p.add(&server, key, false).unwrap();
        (p, client, server, key)
    }

    fn ready(p: &Poller, timeout_ms: u64) -> Vec<usize> {
        let (mut buf, mut keys) = (Vec::new(), Vec::new());
        p.wait(&mut buf, &mut keys, Duration::from_millis(timeout_ms)).unwrap();
        keys
    }

    #[test]
    fn an_edge_is_raised_for_each_arrival_and_once() {
        let (p, mut client, _server, key) = registered();
        assert!(ready(&p, 0).is_empty());
        client.write_all(b"a").unwrap();
        assert_eq!(ready(&p, 1000), vec![key]);
        // Not read, but the edge is spent.
        assert!(ready(&p, 20).is_empty());
        client.write_all(b"b").unwrap();
        assert_eq!(ready(&p, 1000), vec![key]);
    }

    #[test]
    fn modify_reports_input_already_there() {
        let (p, mut client, server, key) = registered();
        client.write_all(b"a").unwrap();
        assert_eq!(ready(&p, 1000), vec![key]);
        p.modify(&server, key, false).unwrap();
        assert_eq!(ready(&p, 1000), vec![key]);
    }

    #[test]
    fn a_notification_ends_the_wait_and_is_coalesced_until_then() {
        let p = Poller::new().unwrap();
        p.notify().unwrap();
        p.notify().unwrap();
        let started = std::time::Instant::now();
        assert!(ready(&p, 5000).is_empty());
        assert!(started.elapsed() < Duration::from_secs(2));
        // Spent: the next wait runs to its timeout.
        let started = std::time::Instant::now();
        assert!(ready(&p, 30).is_empty());
        assert!(started.elapsed() >= Duration::from_millis(30));
        // And a notification after the wait returned wakes the next one.
        p.notify().unwrap();
        assert!(ready(&p, 5000).is_empty());
        p.reset_wake();
    }
}
