//! The bound on failed logins per client address. An address that keeps failing
//! has its next attempts held: the request waits in the idle watcher (not on a
//! worker) until the address may be checked again, then is planned as if it had just
//! arrived. One check per address per wait, however many connections it opens; the
//! wait doubles with each failure, from [`AUTH_FIRST_DELAY`] to [`AUTH_MAX_DELAY`].
//!
//! - The first [`AUTH_FREE_FAILURES`] failures in a row cost nothing (typing
//!   mistakes), and a success forgets the address.
//! - Credentials already in the cache never come here: a logged-in client passes at
//!   once from any address, even one that is being held.
//! - An IPv6 client is its /64 (what one host usually has); an IPv4 one its address.
//! - The table is bounded ([`AUTH_FAILURE_SOURCES`]); under a flood from more
//!   addresses than that, the check slots (`crate::auth::max_checks`) still bound the
//!   CPU bcrypt takes.
//!
//! A lock guards the table; only credentials that are not cached take it (a first
//! login, or a failure), never the hot path. An owner thread fed by a channel was
//! the alternative: the worker needs the answer before it can plan, so each attempt
//! would become a request, a wake-up and a reply instead of an uncontended lock.

use crate::limits::{AUTH_FAILURE_MEMORY, AUTH_FAILURE_SOURCES, AUTH_FIRST_DELAY, AUTH_FREE_FAILURES, AUTH_MAX_DELAY};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where attempts come from: an IPv4 address, or the /64 of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl Source {
    /// The source `ip` counts as (an IPv4-mapped IPv6 address is its IPv4 one).
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One address's recent failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Failures in a row.
    count: u32,
    /// Its next attempt is not checked before this.
    next: Instant,
    /// The last failure.
    last: Instant,
}

/// Failed attempts by address (see the module doc).
#[derive(Debug, Default)]
pub struct Throttle {
    table: Mutex<HashMap<Source, Failures>>,
}

/// The wait after `count` failures in a row.
pub fn delay(count: u32) -> Duration {
    if count <= AUTH_FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - AUTH_FREE_FAILURES - 1).min(16);
    AUTH_FIRST_DELAY.saturating_mul(1 << doublings).min(AUTH_MAX_DELAY)
}

impl Throttle {
    /// Whether `source` may be checked at `now`; if not, until when its attempt is held.
    /// An address past its free failures that is let in claims the next slot at once,
    /// so its other connections wait instead of racing to a check.
    pub fn admit(&self, source: Source, now: Instant) -> Result<(), Instant> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = table.get_mut(&source) else {
            return Ok(());
        };
        if forgotten(f, now) {
            table.remove(&source);
            return Ok(());
        }
        if f.next > now {
            return Err(f.next);
        }
        if f.count >= AUTH_FREE_FAILURES {
            f.next = now + delay(f.count.saturating_add(1));
        }
        Ok(())
    }

    /// An attempt from `source` failed (or found no check slot) at `now`.
    pub fn failed(&self, source: Source, now: Instant) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= AUTH_FAILURE_SOURCES && !table.contains_key(&source) {
            make_room(&mut table, now);
        }
        let f = table.entry(source).or_insert(Failures {
            count: 0,
            next: now,
            last: now,
        });
        if forgotten(f, now) {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        f.next = f.next.max(now + delay(f.count));
    }

    /// An attempt from `source` passed: its failures are forgotten.
    pub fn succeeded(&self, source: Source) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(&source);
    }
}

/// Whether an address's failures are old enough to start it over.
fn forgotten(f: &Failures, now: Instant) -> bool {
    now.saturating_duration_since(f.last) >= AUTH_FAILURE_MEMORY && f.next <= now
}

/// Drops forgotten addresses; if none were, the one that failed longest ago.
fn make_room(table: &mut HashMap<Source, Failures>, now: Instant) {
    table.retain(|_, f| !forgotten(f, now));
    if table.len() >= AUTH_FAILURE_SOURCES {
        if let Some(oldest) = table.iter().min_by_key(|(_, f)| f.last).map(|(s, _)| *s) {
            table.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn delays_start_after_the_free_failures_double_and_stop_at_the_cap() {
        let table: Vec<(u32, u64)> = vec![
            (0, 0),
            (1, 0),
            (3, 0),
            (4, 250),
            (5, 500),
            (6, 1000),
            (7, 2000),
            (8, 2000),
        ];
        for (count, ms) in table {
            assert_eq!(delay(count), Duration::from_millis(ms), "{count} failures");
        }
        assert_eq!(delay(u32::MAX), AUTH_MAX_DELAY);
    }

    #[test]
    fn an_address_is_held_after_its_free_failures_and_forgotten_on_success() {
        let t = Throttle::default();
        let a = Source::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let b = Source::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        let now = Instant::now();
        for _ in 0..AUTH_FREE_FAILURES {
            assert_eq!(t.admit(a, now), Ok(()));
            t.failed(a, now);
        }
        assert_eq!(t.admit(a, now), Ok(()), "the free failures are free");
        t.failed(a, now);
        let until = now + AUTH_FIRST_DELAY;
        assert_eq!(t.admit(a, now), Err(until), "held after one more");
        assert_eq!(t.admit(b, now), Ok(()), "other addresses are not");
        assert_eq!(t.admit(a, until), Ok(()), "let in when the wait is over");
        assert_eq!(
            t.admit(a, until),
            Err(until + delay(AUTH_FREE_FAILURES + 2)),
            "and the one let in claims the next slot: its other connections wait"
        );
        t.succeeded(a);
        assert_eq!(t.admit(a, until), Ok(()));
        let later = until + AUTH_FAILURE_MEMORY + AUTH_MAX_DELAY;
        for _ in 0..10 {
            t.failed(b, now);
        }
        assert_eq!(t.admit(b, later), Ok(()), "a minute without failure starts over");
        assert_eq!(t.admit(b, later), Ok(()));
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_by_its_address() {
        let v6 = |s: &str| Source::of(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()));
        assert_eq!(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(
            v6("::ffff:10.0.0.1"),
            Source::of(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(AUTH_FAILURE_SOURCES as u32 + 100) {
            t.failed(Source::V4(i), now + Duration::from_micros(u64::from(i)));
        }
        let table = t.table.lock().unwrap();
        assert_eq!(table.len(), AUTH_FAILURE_SOURCES);
        assert!(!table.contains_key(&Source::V4(0)), "the oldest went first");
    }
}
