//! Response planning: pure decisions from a parsed request (and file metadata) to a
//! [`Plan`]. No sockets, no file handles, no bodies: the engine executes plans.
//!
//! In scope: which methods and framings are accepted, what a directory request turns
//! into, and the headers of a file response. Out of scope: reading files and
//! directories, writing bytes (see `server`).

use crate::http::conditional::{self, Conditionals, Outcome, Validators};
use crate::http::head::{Body, Head};
use crate::http::meta::{Kind, Meta};
use crate::http::range::{self, ByteRange, RangeDecision};
use crate::http::resolve::{self, UrlPath};
use crate::http::status::Status;

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The whole file, 200.
    Full {
        /// Body length.
        len: u64,
    },
    /// One range of the file, 206 with `Content-Range`.
    Partial {
        /// The range.
        range: ByteRange,
        /// Length of the whole representation.
        len: u64,
    },
    /// Several ranges as `multipart/byteranges`, 206.
    Multipart {
        /// Sorted, non-overlapping ranges.
        ranges: Vec<ByteRange>,
        /// Length of the whole representation.
        len: u64,
    },
    /// 304: validators only, no body.
    NotModified,
    /// 412: a precondition (If-Match, If-Unmodified-Since) failed.
    PreconditionFailed,
    /// 416 with `Content-Range: bytes */len`.
    RangeNotSatisfiable {
        /// Length of the whole representation.
        len: u64,
    },
    /// 301 to the directory's slash form.
    Redirect {
        /// Target of the `Location` header (normalised path, slash, original query).
        location: String,
    },
    /// An HTML listing of the directory.
    Listing,
    /// An error page.
    Error(Refusal),
}

/// A refused request: status, message for the error page, and whether the connection
/// must close (any request whose body was not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Status to send.
    pub status: Status,
    /// One sentence for the error page.
    pub message: &'static str,
    /// Close the connection after the response.
    pub close: bool,
}

impl Refusal {
    /// A refusal that keeps the connection open.
    pub const fn keep(status: Status, message: &'static str) -> Refusal {
        Refusal {
            status,
            message,
            close: false,
        }
    }

    /// A refusal that closes the connection.
    pub const fn close(status: Status, message: &'static str) -> Refusal {
        Refusal {
            status,
            message,
            close: true,
        }
    }
}

/// 404 for anything that does not exist or is hidden by policy.
pub const NOT_FOUND: Refusal = Refusal::keep(Status::NotFound, "The requested resource was not found.");
/// 403 for files the OS will not let us read, and for non-regular files.
pub const FORBIDDEN: Refusal = Refusal::keep(Status::Forbidden, "The requested resource cannot be read.");

/// The methods RFC 9110 §9 and RFC 5789 define that threadserve knows but does not
/// allow (405 with `Allow`); any other method but GET and HEAD is not recognised (501).
/// Method names are case-sensitive (§9.1), so `get` is not recognised.
pub const KNOWN_METHODS: [&str; 7] = ["POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Checks method and body framing before anything else.
///
/// threadserve reads no request bodies, so a request announcing one is answered and the
/// connection closed: the unread body can never be parsed as a following request.
/// Order: a method other than GET/HEAD is a 405 if it is a standard method
/// ([`KNOWN_METHODS`]) and a 501 otherwise (RFC 9110 §9.1, §15.6.2), whatever its body
/// (the more useful message); `Transfer-Encoding` on GET/HEAD is 411 (we only accept
/// length-delimited requests, and only of length 0); a non-zero `Content-Length` on
/// GET/HEAD is 413.
pub fn check_request(head: &Head) -> Result<(), Refusal> {
    let has_body = head.body() != Body::None;
    if !head.is_get_or_head() {
        let (status, message) = if KNOWN_METHODS.contains(&head.method) {
            (Status::MethodNotAllowed, "Only GET and HEAD are allowed.")
        } else {
            (
                Status::NotImplemented,
                "This server does not recognise the request method.",
            )
        };
        return Err(Refusal {
            status,
            message,
            close: has_body,
        });
    }
    match head.body() {
        Body::None => Ok(()),
        Body::Encoded => Err(Refusal::close(
            Status::LengthRequired,
            "Request bodies are not accepted.",
        )),
        Body::Length(_) => Err(Refusal::close(
            Status::ContentTooLarge,
            "Request bodies are not accepted.",
        )),
    }
}

/// Whether the decoded request path `url` is the stats path (`--stats-path`, stored by
/// `config` as `/` + decoded segments, with a trailing `/` if it has one). Matching the
/// decoded path, not the raw target, keeps other spellings (`/status%2Ejson`,
/// `/x/../status.json`) from reaching a file the stats path shadows.
pub fn is_stats_path(url: &UrlPath, stats: &str) -> bool {
    let Some(rest) = stats.strip_prefix('/') else {
        return false;
    };
    let (rest, slash) = match rest.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    rest == url.rel && (slash == url.trailing_slash || rest.is_empty())
}

/// Decides what a path that resolved to a directory turns into.
///
/// `index` is the metadata of the directory's `index.html`, if it exists. Without a
/// trailing slash the answer is a 301 to the slash form (query kept), so relative links
/// in the page resolve; then `index.html`; then a listing, or 404 with `--no-listing`.
pub fn plan_directory(url: &UrlPath, query: Option<&str>, index: Option<&Meta>, listing: bool) -> Plan {
    if !url.trailing_slash {
        let mut location = resolve::encode(&url.rel);
        if !url.rel.is_empty() {
            location.push('/');
        }
        if let Some(q) = query {
            location.push('?');
            location.push_str(q);
        }
        return Plan::Redirect { location };
    }
    match index {
        Some(meta) if meta.kind == Kind::File => Plan::Full { len: meta.len },
        _ if listing => Plan::Listing,
        _ => Plan::Error(NOT_FOUND),
    }
}

/// Plans the response for a path that resolved to `meta`.
pub fn plan_file(url: &UrlPath, meta: &Meta) -> Plan {
    match meta.kind {
        // `/file.txt/` names no directory: 404 like nginx.
        Kind::File if url.trailing_slash => Plan::Error(NOT_FOUND),
        Kind::File => Plan::Full { len: meta.len },
        Kind::Other => Plan::Error(FORBIDDEN),
        Kind::Dir => Plan::Error(NOT_FOUND),
    }
}

/// The request fields that shape a file response.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileRequest<'a> {
    /// `GET` (ranges apply) rather than `HEAD`.
    pub is_get: bool,
    /// If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.
    pub conditionals: Conditionals<'a>,
    /// `Range`.
    pub range: Option<&'a str>,
    /// `If-Range`.
    pub if_range: Option<&'a str>,
}

impl<'a> FileRequest<'a> {
    /// Takes the fields from a parsed head.
    pub fn from_head(head: &Head<'a>) -> FileRequest<'a> {
        FileRequest {
            is_get: head.method == "GET",
            conditionals: Conditionals {
                if_match: head.if_match,
                if_none_match: head.if_none_match,
                if_modified_since: head.if_modified_since,
                if_unmodified_since: head.if_unmodified_since,
            },
            range: head.range,
            if_range: head.if_range,
        }
    }
}

/// Plans the response for an existing regular file (GET or HEAD) of length `len`
/// with validators `v`.
///
/// Order (RFC 9110 §13.2.2, then §14):
/// 1. Preconditions, in `conditional::evaluate`'s order — If-Match, If-Unmodified-Since,
///    If-None-Match, If-Modified-Since — may answer 412 or 304 before anything else.
/// 2. `Range` applies to GET only (§14.2: HEAD ignores it), and only if `If-Range` is
///    absent or matches (strong ETag, or the exact Last-Modified date).
/// 3. An invalid `Range` or another unit is ignored (200); no satisfiable range is a
///    416; one range a 206; several a `multipart/byteranges` 206.
pub fn plan_representation(req: &FileRequest, len: u64, v: &Validators) -> Plan {
    match conditional::evaluate(true, &req.conditionals, v) {
        Outcome::Proceed => {}
        Outcome::NotModified => return Plan::NotModified,
        Outcome::PreconditionFailed => return Plan::PreconditionFailed,
    }
    let Some(header) = req.range.filter(|_| req.is_get) else {
        return Plan::Full { len };
    };
    if req.if_range.is_some_and(|ir| !conditional::if_range_allows(ir, v)) {
        return Plan::Full { len };
    }
    match range::parse_range(header, len) {
        RangeDecision::Ignore => Plan::Full { len },
        RangeDecision::Unsatisfiable => Plan::RangeNotSatisfiable { len },
        RangeDecision::Satisfiable(ranges) if ranges.len() == 1 => Plan::Partial { range: ranges[0], len },
        RangeDecision::Satisfiable(ranges) => Plan::Multipart { ranges, len },
    }
}

/// Preconditions on a directory listing (RFC 9110 §13.1.1, §13.1.2, in §13.2.2's
/// order). A listing has a strong ETag computed from its bytes and no
/// `Last-Modified` (the sizes and times it shows change without the directory's
/// mtime), so only `If-Match` and `If-None-Match` apply; the date conditions are
/// ignored, as for any representation without a modification date.
pub fn listing_outcome(req: &FileRequest, etag: &str) -> Outcome {
    let conditionals = Conditionals {
        if_modified_since: None,
        if_unmodified_since: None,
        ..req.conditionals
    };
    let v = Validators {
        etag: etag.to_string(),
        last_modified: std::time::UNIX_EPOCH,
    };
    conditional::evaluate(true, &conditionals, &v)
}

/// The `Content-Type` of a file and whether it is text (gets `; charset=utf-8`).
pub fn content_type(rel: &str) -> (&'static str, bool) {
    let mime = mime_guess::from_path(rel)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let text = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    (mime, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn head(method: &'static str, body: Option<Body>) -> Head<'static> {
        Head {
            method,
            target: "/",
            version: 1,
            framing: body,
            ..Head::default()
        }
    }

    #[test]
    fn request_checks() {
        let cases = [
            ("get_is_served", head("GET", None), None),
            ("head_is_served", head("HEAD", None), None),
            ("zero_length_body_is_fine", head("GET", Some(Body::None)), None),
            (
                "post_is_405_and_keeps_the_connection_without_body",
                head("POST", None),
                Some((405, false)),
            ),
            (
                "post_with_body_is_405_and_closes",
                head("POST", Some(Body::Length(3))),
                Some((405, true)),
            ),
            (
                "get_with_chunked_body_is_411_and_closes",
                head("GET", Some(Body::Encoded)),
                Some((411, true)),
            ),
            (
                "get_with_length_body_is_413_and_closes",
                head("GET", Some(Body::Length(1))),
                Some((413, true)),
            ),
            ("trace_is_405", head("TRACE", None), Some((405, false))),
            ("patch_is_405", head("PATCH", None), Some((405, false))),
            ("connect_is_405", head("CONNECT", None), Some((405, false))),
            ("options_is_405_without_cors", head("OPTIONS", None), Some((405, false))),
            (
                "lowercase_get_is_not_get_and_is_501",
                head("get", None),
                Some((501, false)),
            ),
            ("unknown_method_is_501", head("BOGUS", None), Some((501, false))),
            (
                "unknown_method_with_body_is_501_and_closes",
                head("BREW", Some(Body::Length(2))),
                Some((501, true)),
            ),
        ];
        for (name, h, want) in cases {
            let got = check_request(&h).err().map(|r| (r.status.code(), r.close));
            assert_eq!(got, want, "{name}");
        }
    }

    fn url(rel: &str, trailing_slash: bool) -> UrlPath {
        UrlPath {
            rel: rel.into(),
            trailing_slash,
            hidden: false,
        }
    }

    /// `--stats-path /status.json` matched the raw target, so `/status%2Ejson` (or
    /// `/x/../status.json`) bypassed it and got the file it shadows.
    #[test]
    fn stats_path_matches_decoded_path() {
        let cases = [
            ("/status.json", "/status.json", true),
            ("/status.json", "/status%2Ejson", true),
            ("/status.json", "/%73tatus.json", true),
            ("/status.json", "/x/../status.json", true),
            ("/status.json", "//status.json", true),
            ("/status.json", "/status.json/", false),
            ("/status.json", "/status.jso", false),
            ("/status.json", "/x/status.json", false),
            ("/.stats", "/%2Estats", true),
            ("/a/b/", "/a/b/", true),
            ("/a/b/", "/a/b", false),
            ("/", "/", true),
            ("/", "/x", false),
        ];
        for (stats, request, want) in cases {
            let url = resolve::decode(request).unwrap();
            assert_eq!(
                is_stats_path(&url, stats),
                want,
                "--stats-path {stats}, request {request}"
            );
        }
    }

    fn meta(kind: Kind, len: u64) -> Meta {
        Meta::new(len, UNIX_EPOCH, 1, kind)
    }

    #[test]
    fn directory_plans() {
        let index = meta(Kind::File, 42);
        let redirect = |l: &str| Plan::Redirect { location: l.into() };
        let cases = [
            (
                "dir_without_slash_redirects",
                plan_directory(&url("a b", false), None, None, true),
                redirect("/a%20b/"),
            ),
            (
                "redirect_keeps_query",
                plan_directory(&url("a", false), Some("x=1"), None, true),
                redirect("/a/?x=1"),
            ),
            (
                "index_html_is_served",
                plan_directory(&url("a", true), None, Some(&index), true),
                Plan::Full { len: 42 },
            ),
            (
                "index_dir_is_not_served",
                plan_directory(&url("a", true), None, Some(&meta(Kind::Dir, 0)), true),
                Plan::Listing,
            ),
            (
                "no_index_lists",
                plan_directory(&url("a", true), None, None, true),
                Plan::Listing,
            ),
            (
                "no_listing_is_404",
                plan_directory(&url("a", true), None, None, false),
                Plan::Error(NOT_FOUND),
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn file_plans() {
        assert_eq!(plan_file(&url("f", false), &meta(Kind::File, 7)), Plan::Full { len: 7 });
        assert_eq!(plan_file(&url("f", true), &meta(Kind::File, 7)), Plan::Error(NOT_FOUND));
        assert_eq!(
            plan_file(&url("fifo", false), &meta(Kind::Other, 0)),
            Plan::Error(FORBIDDEN)
        );
    }

    fn validators() -> Validators {
        Validators {
            etag: "\"abc\"".into(),
            last_modified: UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000),
        }
    }

    const LM: &str = "Sun, 09 Sep 2001 01:46:40 GMT";
    const EARLIER: &str = "Sat, 08 Sep 2001 01:46:40 GMT";

    fn req(f: impl FnOnce(&mut FileRequest<'static>)) -> FileRequest<'static> {
        let mut r = FileRequest {
            is_get: true,
            ..FileRequest::default()
        };
        f(&mut r);
        r
    }

    /// The RFC 9110 §13.2.2 precedence, one row per rule.
    #[test]
    fn precedence_table() {
        let full = Plan::Full { len: 10 };
        let part = Plan::Partial {
            range: ByteRange { start: 0, end: 4 },
            len: 10,
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, FileRequest<'static>, Plan)> = vec![
            ("plain_get_is_full", req(|_| {}), full.clone()),
            ("if_match_mismatch_is_412", req(|r| r.conditionals.if_match = Some("\"x\"")), Plan::PreconditionFailed),
            ("if_match_star_passes", req(|r| r.conditionals.if_match = Some("*")), full.clone()),
            ("if_match_beats_if_none_match", req(|r| { r.conditionals.if_match = Some("\"x\""); r.conditionals.if_none_match = Some("\"abc\""); }), Plan::PreconditionFailed),
            ("if_unmodified_since_earlier_is_412", req(|r| r.conditionals.if_unmodified_since = Some(EARLIER)), Plan::PreconditionFailed),
            ("if_unmodified_since_ignored_when_if_match_present", req(|r| { r.conditionals.if_match = Some("\"abc\""); r.conditionals.if_unmodified_since = Some(EARLIER); }), full.clone()),
            ("if_none_match_hit_is_304", req(|r| r.conditionals.if_none_match = Some("W/\"abc\"")), Plan::NotModified),
            ("if_none_match_miss_is_full", req(|r| r.conditionals.if_none_match = Some("\"zzz\"")), full.clone()),
            ("if_none_match_beats_if_modified_since", req(|r| { r.conditionals.if_none_match = Some("\"zzz\""); r.conditionals.if_modified_since = Some(LM); }), full.clone()),
            ("if_modified_since_equal_is_304", req(|r| r.conditionals.if_modified_since = Some(LM)), Plan::NotModified),
            ("if_modified_since_earlier_is_full", req(|r| r.conditionals.if_modified_since = Some(EARLIER)), full.clone()),
            ("invalid_if_modified_since_is_ignored", req(|r| r.conditionals.if_modified_since = Some("yesterday")), full.clone()),
            ("304_beats_range", req(|r| { r.conditionals.if_none_match = Some("\"abc\""); r.range = Some("bytes=0-4"); }), Plan::NotModified),
            ("range_gives_206", req(|r| r.range = Some("bytes=0-4")), part.clone()),
            ("head_ignores_range", req(|r| { r.is_get = false; r.range = Some("bytes=0-4"); }), full.clone()),
            ("if_range_matching_etag_allows_range", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some("\"abc\""); }), part.clone()),
            ("if_range_other_etag_sends_full", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some("\"old\""); }), full.clone()),
            ("if_range_weak_etag_sends_full", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some("W/\"abc\""); }), full.clone()),
            ("if_range_exact_date_allows_range", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some(LM); }), part.clone()),
            ("if_range_other_date_sends_full", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some(EARLIER); }), full.clone()),
            ("invalid_range_is_ignored", req(|r| r.range = Some("bytes=5-4")), full.clone()),
            ("other_unit_is_ignored", req(|r| r.range = Some("items=0-4")), full.clone()),
            ("unsatisfiable_is_416", req(|r| r.range = Some("bytes=10-")), Plan::RangeNotSatisfiable { len: 10 }),
            ("two_ranges_are_multipart", req(|r| r.range = Some("bytes=0-0,5-6")), Plan::Multipart { ranges: vec![ByteRange { start: 0, end: 0 }, ByteRange { start: 5, end: 6 }], len: 10 }),
            ("adjacent_ranges_coalesce", req(|r| r.range = Some("bytes=1-2,3-4")), Plan::Partial { range: ByteRange { start: 1, end: 4 }, len: 10 }),
        ];
        for (name, r, want) in cases {
            assert_eq!(plan_representation(&r, 10, &validators()), want, "{name}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/index.html"), ("text/html", true));
        assert!(content_type("app.js").1);
        assert_eq!(content_type("img.png"), ("image/png", false));
        assert_eq!(content_type("noext"), ("application/octet-stream", false));
    }
}
