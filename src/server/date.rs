//! The `Date` header's value for the current second: the executor reads the clock
//! here, so the HTTP core can be tested with any date.

use crate::http::wire::HttpDate;
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as an HTTP date, formatted at most once a second per thread.
pub fn now() -> HttpDate {
    thread_local! {
        static CACHE: Cell<(u64, Option<HttpDate>)> = const { Cell::new((u64::MAX, None)) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| match c.get() {
        (s, Some(date)) if s == secs => date,
        _ => {
            let date = HttpDate::new(now);
            c.set((secs, Some(date)));
            date
        }
    })
}
