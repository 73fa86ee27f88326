//! `range::parse_range` on an arbitrary header and length. Invariant: satisfiable
//! ranges lie inside the file, are sorted, do not overlap, and are at most MAX_RANGES.
#![no_main]

use libfuzzer_sys::fuzz_target;
use threadserve::http::range::{self, RangeDecision, MAX_RANGES};

fuzz_target!(|input: (&str, u64)| {
    let (header, len) = input;
    if let RangeDecision::Satisfiable(ranges) = range::parse_range(header, len) {
        assert!(
            !ranges.is_empty() && ranges.len() <= MAX_RANGES,
            "{header:?} {len}: {ranges:?}"
        );
        for r in &ranges {
            assert!(r.start <= r.end && r.end < len, "{header:?} {len}: {ranges:?}");
        }
        for w in ranges.windows(2) {
            assert!(w[0].end < w[1].start, "{header:?} {len}: {ranges:?}");
        }
    }
});
