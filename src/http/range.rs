//! Byte-range requests (RFC 9110 §14): parsing `Range`, and the framing of
//! `206` responses (`Content-Range`, `multipart/byteranges`).
//!
//! In scope: turning a `Range` header value and a file length into a
//! [`RangeDecision`], and producing the exact header and delimiter text of a
//! partial response so the engine can announce an exact `Content-Length`.
//!
//! Out of scope: `If-Range` (see `conditional::if_range_allows`), choosing a
//! multipart boundary, and reading or sending file bytes. This module does no
//! I/O.
//!
//! Parsing choices where the RFC leaves room:
//!
//! - OWS is accepted around each `,` (the RFC's list rule) and also around
//!   `=`; none is accepted inside a range-spec (`0 - 1` is invalid).
//! - A header that is syntactically invalid anywhere, uses a unit other than
//!   `bytes`, or has more than [`MAX_RANGES`] range-specs is ignored as a
//!   whole ([`RangeDecision::Ignore`], full 200), as RFC 9110 §14.2 allows.
//! - Numbers too large for `u64` are still valid numbers (the grammar is
//!   `1*DIGIT`): such a first-pos is past any file, so that range is
//!   unsatisfiable; such a last-pos is clipped to the end of the file; such a
//!   suffix-length means the whole file. `first > last` is judged on the
//!   digits, so it is caught even when both overflow.
//! - Satisfiable ranges are sorted and overlapping or adjacent ones merged,
//!   which RFC 9110 §15.3.7.2 allows "regardless of the order" requested.

use std::cmp::Ordering;

pub use crate::limits::MAX_RANGES;

/// One satisfiable byte range of a representation, both ends inclusive.
///
/// Invariant for ranges from [`parse_range`]: `start <= end < len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// Offset of the first byte.
    pub start: u64,
    /// Offset of the last byte (inclusive).
    pub end: u64,
}

// An inclusive range always holds at least one byte, so `is_empty` would
// always be false.
#[allow(clippy::len_without_is_empty)]
impl ByteRange {
    /// Number of bytes in the range: `end - start + 1`.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// What to do with a request's `Range` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeDecision {
    /// Invalid syntax, a unit other than `bytes`, or more than [`MAX_RANGES`]
    /// range-specs: ignore the header and send the full representation (200).
    Ignore,
    /// Send `206` with these ranges: sorted, merged, none empty, each within
    /// the file, at most [`MAX_RANGES`]. One range → a single part with
    /// [`content_range`]; more → `multipart/byteranges`.
    Satisfiable(Vec<ByteRange>),
    /// Valid syntax but no range overlaps the file (this includes any range on
    /// an empty file): send `416` with [`content_range_unsatisfied`].
    Unsatisfiable,
}

/// Parses a `Range` header value for a representation of `len` bytes.
///
/// Grammar (RFC 9110 §14.1.1, §14.2): `bytes=` followed by a comma list of
/// `first-last`, `first-` or `-suffix`. The unit is case-insensitive. See the
/// module docs for the choices on whitespace, overflow and merging. Never
/// panics.
///
/// ```text
/// bytes=0-0      on 10 bytes → Satisfiable [0-0]
/// bytes=-3       on 10 bytes → Satisfiable [7-9]
/// bytes=5-100    on 10 bytes → Satisfiable [5-9]
/// bytes=1-2,3-4  on 10 bytes → Satisfiable [1-4]
/// bytes=10-      on 10 bytes → Unsatisfiable
/// bytes=5-4      on 10 bytes → Ignore
/// ```
pub fn parse_range(header: &str, len: u64) -> RangeDecision {
    let Some(specs) = parse_specs(header) else {
        return RangeDecision::Ignore;
    };
    let mut ranges: Vec<ByteRange> = specs.iter().filter_map(|s| s.resolve(len)).collect();
    if ranges.is_empty() {
        return RangeDecision::Unsatisfiable;
    }
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            // Cannot overflow: `last.end < len <= u64::MAX`.
            Some(last) if r.start <= last.end + 1 => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    RangeDecision::Satisfiable(merged)
}

/// The `Content-Range` value of a 206 part, e.g. `bytes 0-0/10`.
pub fn content_range(r: &ByteRange, len: u64) -> String {
    format!("bytes {}-{}/{}", r.start, r.end, len)
}

/// The `Content-Range` value of a 416 response, e.g. `bytes */10`.
pub fn content_range_unsatisfied(len: u64) -> String {
    format!("bytes */{len}")
}

/// The text written before the bytes of one part of a `multipart/byteranges`
/// body: delimiter line, `Content-Type` (omitted if `content_type` is empty),
/// `Content-Range`, blank line.
///
/// Every part head starts with CRLF, including the first: RFC 2046 §5.1.1
/// attaches that CRLF to the delimiter and reads what precedes it as an empty
/// preamble, so one shape serves every part. `boundary` must not occur in the
/// file; choosing it is the caller's job.
pub fn multipart_part_head(r: &ByteRange, len: u64, content_type: &str, boundary: &str) -> String {
    let content_range = content_range(r, len);
    if content_type.is_empty() {
        format!("\r\n--{boundary}\r\nContent-Range: {content_range}\r\n\r\n")
    } else {
        format!("\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {content_range}\r\n\r\n")
    }
}

/// The text written after the last part of a `multipart/byteranges` body:
/// the closing delimiter.
pub fn multipart_tail(boundary: &str) -> String {
    format!("\r\n--{boundary}--\r\n")
}

/// The exact `Content-Length` of a `multipart/byteranges` body made of, for
/// each range, [`multipart_part_head`] followed by the range's bytes, then
/// [`multipart_tail`]. Saturates at `u64::MAX` rather than overflowing.
pub fn multipart_len(ranges: &[ByteRange], len: u64, content_type: &str, boundary: &str) -> u64 {
    let tail = multipart_tail(boundary).len() as u64;
    ranges.iter().fold(tail, |total, r| {
        let head = multipart_part_head(r, len, content_type, boundary).len() as u64;
        total.saturating_add(head).saturating_add(r.len())
    })
}

/// One syntactically valid range-spec, before it meets the file length.
/// Numbers too large for `u64` are held as `u64::MAX`; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-` (`last` is `None`) or `first-last`, with `first <= last`.
    FromTo { first: u64, last: Option<u64> },
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

impl Spec {
    /// The part of the file this spec covers, or `None` if it is unsatisfiable.
    fn resolve(self, len: u64) -> Option<ByteRange> {
        match self {
            Spec::FromTo { first, .. } if first >= len => None,
            Spec::FromTo { first, last } => Some(ByteRange {
                start: first,
                end: last.map_or(len - 1, |last| last.min(len - 1)),
            }),
            Spec::Suffix(n) if n == 0 || len == 0 => None,
            Spec::Suffix(n) => Some(ByteRange {
                start: len - n.min(len),
                end: len - 1,
            }),
        }
    }
}

/// Optional whitespace (RFC 9110 §5.6.3): spaces and horizontal tabs.
const OWS: [char; 2] = [' ', '\t'];

/// Checks the whole header and returns its range-specs, or `None` if it must
/// be ignored (bad syntax, other unit, no specs, more than [`MAX_RANGES`]).
fn parse_specs(header: &str) -> Option<Vec<Spec>> {
    let (unit, set) = header.split_once('=')?;
    if !unit.trim_matches(OWS).eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // Empty list elements are allowed by RFC 9110 §5.6.1.2.
    for element in set.split(',').map(|e| e.trim_matches(OWS)).filter(|e| !e.is_empty()) {
        if specs.len() == MAX_RANGES {
            return None;
        }
        specs.push(parse_spec(element)?);
    }
    if specs.is_empty() {
        return None;
    }
    Some(specs)
}

/// Parses one `int-range` or `suffix-range`.
fn parse_spec(s: &str) -> Option<Spec> {
    let (first, last) = s.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(parse_number(last)?));
    }
    let first_value = parse_number(first)?;
    if last.is_empty() {
        return Some(Spec::FromTo {
            first: first_value,
            last: None,
        });
    }
    let last_value = parse_number(last)?;
    if compare_decimal(first, last) == Ordering::Greater {
        return None;
    }
    Some(Spec::FromTo {
        first: first_value,
        last: Some(last_value),
    })
}

/// Parses `1*DIGIT`, saturating at `u64::MAX`; `None` if empty or not digits.
fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        s.bytes()
            .fold(0u64, |n, b| n.saturating_mul(10).saturating_add(u64::from(b - b'0'))),
    )
}

/// Compares two strings of ASCII digits as numbers of any size.
fn compare_decimal(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeDecision::*;

    const GIB: u64 = 1 << 30;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn ranges(specs: impl Iterator<Item = String>) -> String {
        format!("bytes={}", specs.collect::<Vec<_>>().join(","))
    }

    #[test]
    fn parse_range_follows_rfc9110() {
        let at_limit = ranges((0..MAX_RANGES).map(|i| format!("{}-{}", i * 2, i * 2)));
        let over_limit = ranges((0..=MAX_RANGES).map(|_| "0-0".to_string()));
        let fifty = ranges((0..50).map(|i| format!("{}-{}", i * 2, i * 2)));
        let at_limit_parsed = (0..MAX_RANGES as u64).map(|i| r(i * 2, i * 2)).collect();
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, u64, RangeDecision)> = vec![
            // Single ranges.
            ("first_byte", "bytes=0-0", 10, Satisfiable(vec![r(0, 0)])),
            ("last_byte", "bytes=9-9", 10, Satisfiable(vec![r(9, 9)])),
            ("open_end_runs_to_eof", "bytes=3-", 10, Satisfiable(vec![r(3, 9)])),
            ("whole_file", "bytes=0-", 10, Satisfiable(vec![r(0, 9)])),
            ("end_past_eof_is_clipped", "bytes=5-100", 10, Satisfiable(vec![r(5, 9)])),
            ("suffix_takes_last_bytes", "bytes=-3", 10, Satisfiable(vec![r(7, 9)])),
            ("suffix_longer_than_file_is_whole_file", "bytes=-100", 10, Satisfiable(vec![r(0, 9)])),
            ("leading_zeros_are_numbers", "bytes=007-0008", 10, Satisfiable(vec![r(7, 8)])),
            // Unsatisfiable.
            ("suffix_zero_is_unsatisfiable", "bytes=-0", 10, Unsatisfiable),
            ("start_at_eof_is_unsatisfiable", "bytes=10-", 10, Unsatisfiable),
            ("start_past_eof_is_unsatisfiable", "bytes=11-20", 10, Unsatisfiable),
            ("open_range_on_empty_file_is_unsatisfiable", "bytes=0-", 0, Unsatisfiable),
            ("first_byte_of_empty_file_is_unsatisfiable", "bytes=0-0", 0, Unsatisfiable),
            ("suffix_on_empty_file_is_unsatisfiable", "bytes=-5", 0, Unsatisfiable),
            ("unsatisfiable_parts_are_dropped", "bytes=20-30,-0,2-3", 10, Satisfiable(vec![r(2, 3)])),
            // Ignored as a whole.
            ("first_after_last_is_invalid", "bytes=5-4", 10, Ignore),
            ("one_bad_spec_spoils_header", "bytes=0-1,5-4", 10, Ignore),
            ("other_unit_is_ignored", "items=0-1", 10, Ignore),
            ("missing_unit_is_ignored", "0-1", 10, Ignore),
            ("missing_equals_is_ignored", "bytes 0-1", 10, Ignore),
            ("empty_set_is_ignored", "bytes=", 10, Ignore),
            ("only_commas_is_ignored", "bytes= , ,", 10, Ignore),
            ("lone_dash_is_ignored", "bytes=-", 10, Ignore),
            ("missing_dash_is_ignored", "bytes=5", 10, Ignore),
            ("two_dashes_is_ignored", "bytes=1-2-3", 10, Ignore),
            ("negative_suffix_is_ignored", "bytes=--1", 10, Ignore),
            ("plus_sign_is_ignored", "bytes=+1-2", 10, Ignore),
            ("space_inside_spec_is_ignored", "bytes=0 -1", 10, Ignore),
            ("non_ascii_digit_is_ignored", "bytes=0-١", 10, Ignore),
            ("bad_syntax_on_empty_file_is_ignored", "bytes=5-4", 0, Ignore),
            // Whitespace, case and empty elements.
            ("unit_is_case_insensitive", "BYTES=0-1", 10, Satisfiable(vec![r(0, 1)])),
            ("mixed_case_unit", "ByTeS=0-1", 10, Satisfiable(vec![r(0, 1)])),
            ("ows_around_equals_and_commas", " bytes \t= 0-1 ,\t5-6 ", 10, Satisfiable(vec![r(0, 1), r(5, 6)])),
            ("empty_elements_are_skipped", "bytes=,0-1,,5-6,", 10, Satisfiable(vec![r(0, 1), r(5, 6)])),
            // Sorting and coalescing.
            ("adjacent_ranges_merge", "bytes=1-2,3-4", 10, Satisfiable(vec![r(1, 4)])),
            ("overlapping_ranges_merge", "bytes=0-5,3-7", 10, Satisfiable(vec![r(0, 7)])),
            ("contained_range_merges", "bytes=0-9,3-4", 10, Satisfiable(vec![r(0, 9)])),
            ("gap_of_one_byte_stays_split", "bytes=1-2,4-5", 10, Satisfiable(vec![r(1, 2), r(4, 5)])),
            ("ranges_are_sorted", "bytes=6-7,0-1", 10, Satisfiable(vec![r(0, 1), r(6, 7)])),
            ("suffix_merges_with_open_range", "bytes=-2,8-", 10, Satisfiable(vec![r(8, 9)])),
            ("repeats_merge_to_one", "bytes=0-,0-,0-", 10, Satisfiable(vec![r(0, 9)])),
            // Limit on the number of range-specs, counted before merging.
            ("max_ranges_is_allowed", &at_limit, 100, Satisfiable(at_limit_parsed)),
            ("over_max_ranges_is_ignored_even_if_mergeable", &over_limit, 10, Ignore),
            ("fifty_ranges_is_ignored", &fifty, 1000, Ignore),
            // Overflow and large files.
            ("overflowing_start_is_unsatisfiable", "bytes=18446744073709551616-", 10, Unsatisfiable),
            ("overflowing_end_is_clipped", "bytes=0-18446744073709551616", 10, Satisfiable(vec![r(0, 9)])),
            ("overflowing_suffix_is_whole_file", "bytes=-18446744073709551616", 10, Satisfiable(vec![r(0, 9)])),
            ("overflowing_first_after_last_is_invalid", "bytes=18446744073709551617-18446744073709551616", 10, Ignore),
            ("max_u64_end_is_clipped", "bytes=0-18446744073709551615", u64::MAX, Satisfiable(vec![r(0, u64::MAX - 1)])),
            ("max_u64_start_is_unsatisfiable", "bytes=18446744073709551615-", u64::MAX, Unsatisfiable),
            ("range_past_4gib_on_5gib_file", "bytes=4294967296-4294967305", 5 * GIB, Satisfiable(vec![r(4 * GIB, 4 * GIB + 9)])),
            ("open_range_past_4gib_on_5gib_file", "bytes=4294967296-", 5 * GIB, Satisfiable(vec![r(4 * GIB, 5 * GIB - 1)])),
            ("suffix_past_4gib_on_5gib_file", "bytes=-1073741824", 5 * GIB, Satisfiable(vec![r(4 * GIB, 5 * GIB - 1)])),
            ("start_at_5gib_is_unsatisfiable", "bytes=5368709120-", 5 * GIB, Unsatisfiable),
        ];
        for (name, header, len, want) in cases {
            assert_eq!(parse_range(header, len), want, "{name}");
        }
    }

    #[test]
    fn byte_range_len_counts_both_ends() {
        assert_eq!(r(0, 0).len(), 1);
        assert_eq!(r(3, 9).len(), 7);
        assert_eq!(r(0, u64::MAX - 1).len(), u64::MAX);
    }

    #[test]
    fn content_range_values_match_rfc9110_examples() {
        assert_eq!(content_range(&r(0, 0), 10), "bytes 0-0/10");
        assert_eq!(content_range(&r(42, 1233), 1234), "bytes 42-1233/1234");
        assert_eq!(content_range_unsatisfied(1234), "bytes */1234");
        assert_eq!(content_range_unsatisfied(0), "bytes */0");
    }

    #[test]
    fn multipart_pieces_have_exact_framing() {
        assert_eq!(
            multipart_part_head(&r(0, 4), 10, "text/plain", "B"),
            "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-4/10\r\n\r\n"
        );
        assert_eq!(
            multipart_part_head(&r(0, 4), 10, "", "B"),
            "\r\n--B\r\nContent-Range: bytes 0-4/10\r\n\r\n"
        );
        assert_eq!(multipart_tail("B"), "\r\n--B--\r\n");
    }

    #[test]
    fn multipart_len_equals_assembled_body() {
        let file: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let len = file.len() as u64;
        let boundary = "THREADSERVE0123456789";
        #[rustfmt::skip]
        let cases: &[(&str, &[ByteRange], &str)] = &[
            ("one_part", &[r(0, 0)], "text/html; charset=utf-8"),
            ("two_parts", &[r(0, 9), r(500, 999)], "application/octet-stream"),
            ("no_content_type", &[r(1, 1), r(3, 3), r(998, 999)], ""),
        ];
        for (name, parts, content_type) in cases {
            let mut body = Vec::new();
            for part in parts.iter() {
                body.extend_from_slice(multipart_part_head(part, len, content_type, boundary).as_bytes());
                body.extend_from_slice(&file[part.start as usize..=part.end as usize]);
            }
            body.extend_from_slice(multipart_tail(boundary).as_bytes());
            assert_eq!(
                multipart_len(parts, len, content_type, boundary),
                body.len() as u64,
                "{name}"
            );
        }
    }

    #[test]
    fn multipart_len_of_huge_ranges_saturates() {
        let parts = [r(0, u64::MAX - 1), r(0, u64::MAX - 1)];
        assert_eq!(multipart_len(&parts, u64::MAX, "x/y", "B"), u64::MAX);
    }

    #[test]
    fn compare_decimal_orders_numbers_of_any_size() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, Ordering)] = &[
            ("equal", "5", "5", Ordering::Equal),
            ("leading_zeros_ignored", "0005", "5", Ordering::Equal),
            ("all_zeros_equal_zero", "000", "0", Ordering::Equal),
            ("shorter_is_smaller", "9", "10", Ordering::Less),
            ("same_length_lexicographic", "19", "21", Ordering::Less),
            ("beyond_u64", "18446744073709551617", "18446744073709551616", Ordering::Greater),
        ];
        for (name, a, b, want) in cases {
            assert_eq!(compare_decimal(a, b), *want, "{name}");
        }
    }

    /// Small deterministic generator (xorshift64*) so the property test needs
    /// no extra crate and every failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    #[test]
    fn satisfiable_ranges_are_sorted_disjoint_and_inside_the_file() {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "9",
            "10",
            "99",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "-",
            "-",
            "-",
            ",",
            ",",
            " ",
            "\t",
            "=",
            "x",
            "é",
        ];
        const LENS: &[u64] = &[0, 1, 2, 10, 100, 5 << 30, u64::MAX];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seen = [0usize; 3];
        for _ in 0..20_000 {
            let mut header = String::from(rng.pick(&["bytes=", "bytes=", "bytes=", "items="]));
            for _ in 0..rng.below(24) {
                header.push_str(rng.pick(PIECES));
            }
            let len = rng.pick(LENS);
            match parse_range(&header, len) {
                Satisfiable(parts) => {
                    seen[0] += 1;
                    assert!(!parts.is_empty() && parts.len() <= MAX_RANGES, "{header:?} on {len}");
                    for pair in parts.windows(2) {
                        assert!(pair[0].end + 1 < pair[1].start, "{header:?} on {len}");
                    }
                    for part in &parts {
                        assert!(part.start <= part.end && part.end < len, "{header:?} on {len}");
                    }
                }
                Unsatisfiable => {
                    seen[1] += 1;
                    assert!(header.starts_with("bytes="), "{header:?}");
                }
                Ignore => seen[2] += 1,
            }
        }
        assert!(
            seen.iter().all(|&n| n > 100),
            "generator reaches every outcome: {seen:?}"
        );
    }
}
