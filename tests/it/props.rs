//! Property tests for the pure entry points: a decoded path never leaves the root, the
//! head parser never panics and never claims more bytes than it was given, and a
//! planned byte range satisfies `start <= end < len`, and every plan says what it
//! sends.

use proptest::prelude::*;
use std::mem::MaybeUninit;
use std::path::{Component, Path};
use threadserve::http::head::{self, Parsed};
use threadserve::http::plan::{self, memory::MemorySite};
use threadserve::http::range::{self, RangeDecision};
use threadserve::http::resolve;

/// Pieces that traversal attacks are made of: dots (plain, encoded, double-encoded,
/// overlong UTF-8), slashes and backslashes (plain and encoded), NUL, stray `%`.
const PATH_TOKENS: &[&str] = &[
    "/",
    "/",
    "/",
    ".",
    "..",
    "...",
    "a",
    "b.txt",
    "%2e",
    "%2E",
    "%2e%2e",
    "%252e",
    "%25",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%c0%ae",
    "%c0%af",
    "%e0%80%ae",
    "%00",
    "\0",
    "%",
    "%2",
    "%zz",
    "%ff",
    ".%2e",
    "%2e.",
    "..;",
    "é",
    "%C3%A9",
];

/// Characters from which short paths are drawn one at a time, rich in the ones that
/// make escapes: `.`, `/`, `%`, hex digits of `%2e`/`%2f`/`%5c`/`%c0`, `\`, NUL.
const PATH_CHARS: &[char] = &[
    '.', '/', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', 'C', '0', 'a', '\\', '\0',
];

fn tokens(from: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(from), 0..max).prop_map(|v| v.concat())
}

fn chars(from: &'static [char], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(from), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Any input is refused, or yields a relative path that stays under the root when
/// joined onto it, and that a redirect built from it decodes back to the same path.
fn check_decode(raw: &str) -> Result<(), TestCaseError> {
    let Ok(url) = resolve::decode(raw) else {
        return Ok(());
    };
    let rel: &str = &url.rel;
    prop_assert!(!rel.starts_with('/'), "{raw:?} -> {rel:?} is absolute");
    prop_assert!(!rel.contains('\0') && !rel.contains('\\'), "{raw:?} -> {rel:?}");
    let root = Path::new("/srv/root");
    let joined = root.join(rel);
    prop_assert!(joined.starts_with(root), "{raw:?} -> {rel:?} -> {joined:?}");
    prop_assert!(
        Path::new(rel).components().all(|c| matches!(c, Component::Normal(_))),
        "{raw:?} -> {rel:?} has a non-normal component"
    );
    prop_assert!(
        rel.is_empty() || rel.split('/').all(|s| !matches!(s, "" | "." | "..")),
        "{raw:?} -> {rel:?}"
    );
    let encoded = resolve::encode(rel);
    let again = resolve::decode(&encoded);
    prop_assert_eq!(
        again.map(|u| u.rel.into_owned()),
        Ok(rel.to_string()),
        "round trip of {:?}",
        raw
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn decoded_path_of_any_string_stays_under_the_root(raw in any::<String>()) {
        check_decode(&raw)?;
        check_decode(&format!("/{raw}"))?;
    }

    #[test]
    fn decoded_path_of_traversal_tokens_stays_under_the_root(raw in tokens(PATH_TOKENS, 24)) {
        check_decode(&raw)?;
        check_decode(&format!("/{raw}"))?;
    }

    #[test]
    fn decoded_path_of_traversal_characters_stays_under_the_root(raw in chars(PATH_CHARS, 40)) {
        check_decode(&raw)?;
        check_decode(&format!("/{raw}"))?;
    }
}

/// Pieces of request heads: tokens, separators, line ends of every kind, framing
/// headers, bytes httparse must refuse.
const HEAD_TOKENS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"CONNECT",
    b" ",
    b"  ",
    b"\t",
    b"/",
    b"/a.txt",
    b"http://h/x",
    b"*",
    b"h:443",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/1.",
    b"\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"Host: a",
    b"Host:",
    b"Content-Length: ",
    b"0",
    b"5",
    b"18446744073709551616",
    b"-1",
    b"+5",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"Range: bytes=0-1,2-3",
    b":",
    b"\0",
    b"\x7f",
    b"\xff",
    b"\xc0\xae",
    b"%2e",
];

fn head_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(prop::sample::select(HEAD_TOKENS), 0..48).prop_map(|v| v.concat()),
        prop::collection::vec(prop::sample::select(HEAD_TOKENS), 0..40).prop_map(|v| [
            &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
            &v.concat()
        ]
        .concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn head_parse_never_panics_and_uses_at_most_what_it_was_given(
        bytes in head_bytes(),
        max_head in prop_oneof![Just(16 * 1024), 64usize..1024],
        slots in 1usize..32,
    ) {
        let mut headers = vec![MaybeUninit::uninit(); slots];
        if let Ok(Parsed::Complete(h, used)) = head::parse(&bytes, &mut headers, max_head) {
            prop_assert!(used <= bytes.len(), "used {} of {}", used, bytes.len());
            prop_assert!(used <= max_head, "used {} over the limit {}", used, max_head);
            if let Ok(t) = head::split_target(h.target) {
                prop_assert!(t.path.starts_with('/'), "{:?} -> {:?}", h.target, t.path);
                prop_assert!(!t.path.contains('?') && !t.path.contains('#'), "{:?} -> {:?}", h.target, t.path);
            }
        }
    }
}

/// Pieces of `Range` values: units, separators, numbers small, at file-size boundaries
/// and past `u64`.
const RANGE_TOKENS: &[&str] = &[
    "bytes=",
    "bytes=",
    "BYTES=",
    "items=",
    "-",
    "-",
    ",",
    ", ",
    " ",
    "0",
    "1",
    "5",
    "9",
    "10",
    "99",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "=",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn satisfiable_ranges_lie_inside_the_file_sorted_and_disjoint(
        header in prop_oneof![
            tokens(RANGE_TOKENS, 16),
            tokens(RANGE_TOKENS, 12).prop_map(|s| format!("bytes={s}")),
            any::<String>(),
        ],
        len in prop_oneof![0u64..20, any::<u64>(), Just(u64::MAX)],
    ) {
        if let RangeDecision::Satisfiable(ranges) = range::parse_range(&header, len) {
            prop_assert!(!ranges.is_empty() && ranges.len() <= range::MAX_RANGES, "{header:?} {len}: {ranges:?}");
            for r in &ranges {
                prop_assert!(r.start <= r.end && r.end < len, "{header:?} {len}: {ranges:?}");
            }
            for w in ranges.windows(2) {
                prop_assert!(w[0].end < w[1].start, "{header:?} {len}: {ranges:?} overlap or are unsorted");
            }
        }
    }
}

/// The site the planner property runs over: files (one with a precompressed
/// variant), a directory with an index, one without, and a FIFO.
fn site() -> MemorySite {
    MemorySite::new(
        &[
            ("a.txt", "0123456789"),
            ("a.txt.gz", "gz"),
            ("d/index.html", "<p>d</p>"),
            ("empty", ""),
        ],
        &["", "d", "list"],
    )
}

/// More pieces for planner inputs: paths of the site, validators, codings, ranges.
const PLAN_TOKENS: &[&[u8]] = &[
    b"GET /a.txt HTTP/1.1\r\nHost: a\r\n",
    b"HEAD /a.txt HTTP/1.1\r\nHost: a\r\n",
    b"GET /d HTTP/1.1\r\nHost: a\r\n",
    b"GET /d/ HTTP/1.0\r\n",
    b"GET /list/?format=json HTTP/1.1\r\nHost: a\r\n",
    b"OPTIONS /a.txt HTTP/1.1\r\nHost: a\r\n",
    b"GET /fifo HTTP/1.1\r\nHost: a\r\n",
    b"GET /empty HTTP/1.1\r\nHost: a\r\n",
    b"GET /%2e%2e/x HTTP/1.1\r\nHost: a\r\n",
    b"Range: bytes=0-3\r\n",
    b"Range: bytes=0-0,5-\r\n",
    b"Range: bytes=-3\r\n",
    b"Range: bytes=20-\r\n",
    b"If-Range: \"x\"\r\n",
    b"If-None-Match: *\r\n",
    b"If-Match: \"x\"\r\n",
    b"If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n",
    b"If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
    b"Accept-Encoding: gzip\r\n",
    b"Accept-Encoding: identity;q=0\r\n",
    b"Accept: application/json\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
];

fn plan_input() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&PLAN_TOKENS[..9]),
        prop::collection::vec(prop::sample::select(&PLAN_TOKENS[9..]), 0..6),
    )
        .prop_map(|(first, rest)| [first, &rest.concat(), &b"\r\n"[..]].concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    /// Whatever the request, the plan is consistent: `Content-Length` is the body
    /// the plan sends (HEAD: the one GET would send), bodiless statuses send none,
    /// no header value can break the head, and a request whose body was not read
    /// closes the connection.
    #[test]
    fn every_plan_says_what_it_sends(bytes in prop_oneof![plan_input(), head_bytes()], cors in any::<bool>(), closing in any::<bool>()) {
        let mut slots = vec![MaybeUninit::uninit(); 32];
        let Ok(Parsed::Complete(h, _)) = head::parse(&bytes, &mut slots, 16 * 1024) else {
            return Ok(());
        };
        let policy = plan::Policy { cors, ..plan::Policy::default() };
        let p = plan::plan(&h, &mut site(), &policy, closing);
        for (name, _) in &p.headers {
            let v = p.header(name).unwrap();
            prop_assert!(!v.contains(['\r', '\n']), "{name}: {v:?}");
        }
        let length = p.header("content-length").map(|v| v.parse::<u64>().unwrap());
        if !p.status.has_body() {
            prop_assert_eq!(p.body_len(), 0, "{} has no body", p.status.code());
        } else if h.method == "HEAD" {
            prop_assert_eq!(p.body_len(), 0);
            let get = head::Head { method: "GET", range: None, ..h.clone() };
            let g = plan::plan(&get, &mut site(), &policy, closing);
            prop_assert_eq!(length, g.header("content-length").map(|v| v.parse::<u64>().unwrap()));
        } else {
            prop_assert_eq!(length, Some(p.body_len()), "{:?}", String::from_utf8_lossy(&bytes));
        }
        if closing || h.body() != head::Body::None || !h.wants_keep_alive() {
            prop_assert!(p.close(), "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
}
