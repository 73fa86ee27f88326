//! Calendar formatting of UTC timestamps for listings and access logs (HTTP dates use
//! `httpdate`), and deadline arithmetic that cannot overflow. Pure: callers pass the
//! time in.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `now + timeout`, never panicking: when the sum does not fit in an `Instant` (a
/// timeout of `Duration::MAX` set in code), the farthest instant that does, which is
/// centuries away. Every deadline in the engine is computed with this.
pub fn deadline(now: Instant, timeout: Duration) -> Instant {
    let mut step = timeout;
    loop {
        if let Some(t) = now.checked_add(step) {
            return t;
        }
        step /= 2;
        if step.is_zero() {
            return now;
        }
    }
}

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
}

/// 9999-12-31T23:59:59Z, the last instant an HTTP date (four-digit year) can carry.
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// A time as an HTTP date can carry it: clamped to 1970–9999 (RFC 9110 §5.6.7), so a
/// file with a far-future or pre-epoch mtime still gets a `Last-Modified`, and date
/// formatting never panics. (The ETag keeps the real mtime, so it still changes.)
pub fn http_date_clamp(t: SystemTime) -> SystemTime {
    t.clamp(UNIX_EPOCH, UNIX_EPOCH + std::time::Duration::from_secs(LAST_HTTP_DATE))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Civil {
    /// Converts a time (times before 1970 clamp to the epoch).
    pub fn from_time(t: SystemTime) -> Civil {
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
        Civil::from_unix(secs)
    }

    /// Converts seconds since the Unix epoch (Howard Hinnant's days-to-civil algorithm).
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// `2026-11-26T07:57:29Z` (RFC 3339).
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2026-11-26 07:57` (directory listings).
    pub fn short(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }

    /// `26/Nov/2026:07:57:29 +0000` (Common Log Format).
    pub fn clf(&self) -> String {
        format!(
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_never_overflows() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::from_secs(10)), now + Duration::from_secs(10));
        assert_eq!(deadline(now, Duration::ZERO), now);
        let far = deadline(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(100 * 365 * 86_400), "{far:?}");
    }

    #[test]
    fn known_instants_format_correctly() {
        let cases = [
            (0, "1970-01-01T00:00:00Z", "01/Jan/1970:00:00:00 +0000"),
            (951_782_400, "2000-02-29T00:00:00Z", "29/Feb/2000:00:00:00 +0000"),
            (1_795_679_849, "2026-11-26T07:57:29Z", "26/Nov/2026:07:57:29 +0000"),
            (4_102_444_799, "2099-12-31T23:59:59Z", "31/Dec/2099:23:59:59 +0000"),
        ];
        for (secs, rfc, clf) in cases {
            let c = Civil::from_unix(secs);
            assert_eq!(c.rfc3339(), rfc);
            assert_eq!(c.clf(), clf);
        }
        assert_eq!(Civil::from_unix(1_795_679_849).short(), "2026-11-26 07:57");
    }

    #[test]
    fn agrees_with_httpdate_for_many_days() {
        for day in (0..60_000).step_by(37) {
            let secs = day * 86_400 + 3_723;
            let t = UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
            let http = httpdate::fmt_http_date(t); // "Sun, 06 Nov 1994 08:49:37 GMT"
            let c = Civil::from_unix(secs);
            let expect = format!(
                "{:02} {} {:04} 01:02:03 GMT",
                c.day,
                MONTHS[(c.month - 1) as usize],
                c.year
            );
            assert!(http.ends_with(&expect), "{http} vs {expect}");
        }
    }
}
