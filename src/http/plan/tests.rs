//! The planner over an in-memory site: every decision of the module doc, one table.

use super::file::Decision;
use super::*;
use crate::http::meta::Kind;
use crate::http::range::ByteRange;
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

fn head(method: &'static str, body: Option<Framing>) -> Head<'static> {
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
        ("zero_length_body_is_fine", head("GET", Some(Framing::None)), None),
        (
            "post_is_405_and_keeps_the_connection_without_body",
            head("POST", None),
            Some((405, false)),
        ),
        (
            "post_with_body_is_405_and_closes",
            head("POST", Some(Framing::Length(3))),
            Some((405, true)),
        ),
        (
            "get_with_chunked_body_is_411_and_closes",
            head("GET", Some(Framing::Encoded)),
            Some((411, true)),
        ),
        (
            "get_with_length_body_is_413_and_closes",
            head("GET", Some(Framing::Length(1))),
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
            head("BREW", Some(Framing::Length(2))),
            Some((501, true)),
        ),
    ];
    for (name, h, want) in cases {
        let got = check_request(&h).err().map(|r| (r.status.code(), r.close));
        assert_eq!(got, want, "{name}");
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

fn validators() -> Validators<'static> {
    Validators {
        etag: "\"abc\"",
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
    let full = Decision::Full { len: 10 };
    let part = Decision::Partial {
        range: ByteRange { start: 0, end: 4 },
        len: 10,
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, FileRequest<'static>, Decision)> = vec![
        ("plain_get_is_full", req(|_| {}), full.clone()),
        ("if_match_mismatch_is_412", req(|r| r.conditionals.if_match = Some("\"x\"")), Decision::PreconditionFailed),
        ("if_match_star_passes", req(|r| r.conditionals.if_match = Some("*")), full.clone()),
        ("if_match_beats_if_none_match", req(|r| { r.conditionals.if_match = Some("\"x\""); r.conditionals.if_none_match = Some("\"abc\""); }), Decision::PreconditionFailed),
        ("if_unmodified_since_earlier_is_412", req(|r| r.conditionals.if_unmodified_since = Some(EARLIER)), Decision::PreconditionFailed),
        ("if_unmodified_since_ignored_when_if_match_present", req(|r| { r.conditionals.if_match = Some("\"abc\""); r.conditionals.if_unmodified_since = Some(EARLIER); }), full.clone()),
        ("if_none_match_hit_is_304", req(|r| r.conditionals.if_none_match = Some("W/\"abc\"")), Decision::NotModified),
        ("if_none_match_miss_is_full", req(|r| r.conditionals.if_none_match = Some("\"zzz\"")), full.clone()),
        ("if_none_match_beats_if_modified_since", req(|r| { r.conditionals.if_none_match = Some("\"zzz\""); r.conditionals.if_modified_since = Some(LM); }), full.clone()),
        ("if_modified_since_equal_is_304", req(|r| r.conditionals.if_modified_since = Some(LM)), Decision::NotModified),
        ("if_modified_since_earlier_is_full", req(|r| r.conditionals.if_modified_since = Some(EARLIER)), full.clone()),
        ("invalid_if_modified_since_is_ignored", req(|r| r.conditionals.if_modified_since = Some("yesterday")), full.clone()),
        ("304_beats_range", req(|r| { r.conditionals.if_none_match = Some("\"abc\""); r.range = Some("bytes=0-4"); }), Decision::NotModified),
        ("range_gives_206", req(|r| r.range = Some("bytes=0-4")), part.clone()),
        ("head_ignores_range", req(|r| { r.is_get = false; r.range = Some("bytes=0-4"); }), full.clone()),
        ("if_range_matching_etag_allows_range", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some("\"abc\""); }), part.clone()),
        ("if_range_other_etag_sends_full", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some("\"old\""); }), full.clone()),
        ("if_range_weak_etag_sends_full", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some("W/\"abc\""); }), full.clone()),
        ("if_range_exact_date_allows_range", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some(LM); }), part.clone()),
        ("if_range_other_date_sends_full", req(|r| { r.range = Some("bytes=0-4"); r.if_range = Some(EARLIER); }), full.clone()),
        ("invalid_range_is_ignored", req(|r| r.range = Some("bytes=5-4")), full.clone()),
        ("other_unit_is_ignored", req(|r| r.range = Some("items=0-4")), full.clone()),
        ("unsatisfiable_is_416", req(|r| r.range = Some("bytes=10-")), Decision::RangeNotSatisfiable { len: 10 }),
        ("two_ranges_are_multipart", req(|r| r.range = Some("bytes=0-0,5-6")), Decision::Multipart { ranges: vec![ByteRange { start: 0, end: 0 }, ByteRange { start: 5, end: 6 }], len: 10 }),
        ("adjacent_ranges_coalesce", req(|r| r.range = Some("bytes=1-2,3-4")), Decision::Partial { range: ByteRange { start: 1, end: 4 }, len: 10 }),
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

/// A site in memory: files with their bytes, directories, and one FIFO.
#[derive(Default)]
struct MapSite {
    files: HashMap<String, Vec<u8>>,
    dirs: Vec<String>,
    looked_up: Vec<String>,
    checked: Vec<String>,
    /// Answers `variants_absent` (true only where none of the variants exists).
    knows_absent: bool,
}

const MTIME: u64 = 1_700_000_000;

impl MapSite {
    fn new(files: &[(&str, &str)], dirs: &[&str]) -> MapSite {
        MapSite {
            files: files
                .iter()
                .map(|(p, b)| (p.to_string(), b.as_bytes().to_vec()))
                .collect(),
            dirs: dirs.iter().map(|d| d.to_string()).collect(),
            looked_up: Vec::new(),
            checked: Vec::new(),
            knows_absent: false,
        }
    }
}

impl Site for MapSite {
    type Body = Vec<u8>;
    type Dir = String;

    fn lookup(&mut self, rel: &str) -> Result<Found<Vec<u8>, String>, Missing> {
        self.looked_up.push(rel.to_string());
        let t = UNIX_EPOCH + Duration::from_secs(MTIME);
        if let Some(bytes) = self.files.get(rel) {
            return Ok(Found::File(
                Meta::new(bytes.len() as u64, t, 1, Kind::File),
                bytes.clone(),
            ));
        }
        if self.dirs.iter().any(|d| d == rel) {
            return Ok(Found::Dir(Meta::new(0, t, 2, Kind::Dir), rel.to_string()));
        }
        match rel {
            "fifo" => Ok(Found::Other),
            "secret" | "d/secret/index.html" => Err(Missing::Forbidden),
            "escape" => Err(Missing::Hidden),
            "busy" => Err(Missing::Exhausted),
            _ => Err(Missing::NotFound),
        }
    }

    fn lookup_in(&mut self, dir: &String, dir_rel: &str, name: &str) -> Result<Found<Vec<u8>, String>, Missing> {
        assert_eq!(dir, dir_rel, "looked up inside the directory that was found");
        self.lookup(&resolve::join(dir_rel, name))
    }

    fn listing(&mut self, _dir: &String, rel: &str, format: Format) -> Result<Page<Vec<u8>>, Missing> {
        let body = format!("{format:?} listing of /{rel}").into_bytes();
        Ok(Page {
            len: body.len() as u64,
            body,
            etag: "\"l-1\"".into(),
        })
    }

    /// "Compresses" by tagging the bytes with the coding: `br:` + body.
    fn compress(&mut self, _: &Source<'_>, body: &Vec<u8>, len: u64, encoding: Encoding) -> Option<(u64, Vec<u8>)> {
        assert_eq!(len, body.len() as u64);
        let mut out = format!("{}:", encoding.token()).into_bytes();
        out.extend_from_slice(body);
        Some((out.len() as u64, out))
    }

    fn counters(&mut self) -> Option<Vec<u8>> {
        Some(b"{\"requests\":1}".to_vec())
    }

    /// `alice:secret` is valid; user `busy` finds every check slot taken.
    fn authorize(&mut self, user: &str, password: &str) -> Verdict {
        self.checked.push(format!("{user}:{password}"));
        match (user, password) {
            ("alice", "secret") => Verdict::Granted,
            ("busy", _) => Verdict::Busy,
            _ => Verdict::Denied,
        }
    }

    fn metrics(&mut self) -> Option<Vec<u8>> {
        Some(b"# TYPE threadserve_requests_total counter\n".to_vec())
    }

    fn variants_absent(&mut self, rel: &str, encodings: &[Encoding]) -> bool {
        self.knows_absent
            && encodings
                .iter()
                .all(|e| !self.files.contains_key(&format!("{rel}{}", e.ext())))
    }
}

fn get(target: &'static str) -> Head<'static> {
    Head {
        target,
        ..head("GET", None)
    }
}

fn site() -> MapSite {
    MapSite::new(
        &[
            ("a.txt", "hello"),
            ("app.js", "let x = 1;"),
            ("app.js.br", "BR"),
            ("app.js.gz", "GZ"),
            ("d/index.html", "<h1>d</h1>"),
            ("spa.html", "<app>"),
            ("404.html", "gone"),
            (".env", "SECRET=1"),
        ],
        &["", "d", "list", "d/dirindex", "d/dirindex/index.html", "d/secret"],
    )
}

fn body(plan: &Plan<'_, Vec<u8>>) -> Vec<u8> {
    match &plan.body {
        Payload::Empty => Vec::new(),
        Payload::Bytes(b) => b.clone(),
        Payload::Slice { body, start, len } => body[*start as usize..(*start + *len) as usize].to_vec(),
        Payload::Multipart { body, parts, tail } => {
            let mut out = Vec::new();
            for p in parts {
                out.extend_from_slice(p.head.as_bytes());
                out.extend_from_slice(&body[p.start as usize..(p.start + p.len) as usize]);
            }
            out.extend_from_slice(tail.as_bytes());
            out
        }
    }
}

/// One request against [`site`] with `policy`: (status, body, close).
fn run<'p>(h: Head<'static>, policy: &Policy<'p>) -> (u16, String, bool, Plan<'p, Vec<u8>>) {
    let mut s = site();
    let plan = plan(&h, &mut s, policy, false);
    let text = String::from_utf8_lossy(&body(&plan)).into_owned();
    (plan.status.code(), text, plan.close(), plan)
}

/// Every step of the module doc, one row each: the request, the policy change, the
/// status, a piece of the body, whether the connection closes.
#[test]
fn planner_table() {
    let p = Policy::default();
    let cors = Policy { cors: true, ..p };
    let no_listing = Policy { listing: false, ..p };
    let spa = Policy {
        fallback: Some("spa.html"),
        ..p
    };
    let page404 = Policy {
        not_found_page: Some("404.html"),
        ..p
    };
    let stats = Policy {
        stats_path: Some("/status.json"),
        ..p
    };
    let dotfiles = Policy { dotfiles: true, ..p };
    let options = Head {
        target: "/a.txt",
        ..head("OPTIONS", None)
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Head<'static>, Policy, u16, &str, bool)> = vec![
        ("file_is_served", get("/a.txt"), p, 200, "hello", false),
        ("file_with_slash_is_404", get("/a.txt/"), p, 404, "404 Not Found", false),
        ("fifo_is_403", get("/fifo"), p, 403, "403 Forbidden", false),
        ("unreadable_is_403", get("/secret"), p, 403, "403", false),
        ("escaping_symlink_is_404", get("/escape"), p, 404, "404", false),
        ("out_of_descriptors_is_503_and_closes", get("/busy"), p, 503, "503", true),
        ("missing_is_404", get("/nope"), p, 404, "404", false),
        ("dir_without_slash_redirects", get("/d"), p, 301, "ends with a slash", false),
        ("dir_index_is_served", get("/d/"), p, 200, "<h1>d</h1>", false),
        ("index_that_is_a_directory_is_403", get("/d/dirindex/"), p, 403, "403", false),
        ("unreadable_index_is_403_not_a_listing", get("/d/secret/"), p, 403, "403", false),
        ("no_index_lists", get("/list/"), p, 200, "Html listing of /list", false),
        ("json_listing_by_query", get("/list/?format=json"), p, 200, "Json listing of /list", false),
        ("no_listing_is_404", get("/list/"), no_listing, 404, "404", false),
        ("root_lists", get("/"), p, 200, "Html listing of /", false),
        ("dotfile_is_hidden", get("/.env"), p, 404, "404", false),
        ("dotfile_with_dotfiles", get("/.env"), dotfiles, 200, "SECRET=1", false),
        ("fallback_serves_the_app", get("/deep/link"), spa, 200, "<app>", false),
        ("fallback_for_hidden_too", get("/.env"), spa, 200, "<app>", false),
        ("custom_404_page", get("/nope"), page404, 404, "gone", false),
        ("stats_path_answers_counters", get("/status.json"), stats, 200, "requests", false),
        ("post_is_405", Head { target: "/a.txt", ..head("POST", None) }, p, 405, "405", false),
        ("post_with_body_closes", Head { target: "/a.txt", ..head("POST", Some(Framing::Length(3))) }, p, 405, "405", true),
        ("options_without_cors_is_405", options.clone(), p, 405, "405", false),
        ("preflight_with_cors_is_204", options, cors, 204, "", false),
        ("absolute_form_target_is_served", get("http://x/a.txt"), p, 200, "hello", false),
        ("target_neither_origin_nor_absolute_is_400_and_closes", get("a.txt"), p, 400, "400", true),
        ("undecodable_path_is_400", get("/%zz"), p, 400, "400", false),
        ("head_has_no_body", Head { target: "/a.txt", ..head("HEAD", None) }, p, 200, "", false),
        ("http10_without_keep_alive_closes", Head { version: 0, ..get("/a.txt") }, p, 200, "hello", true),
        ("connection_close_closes", Head { conn_close: true, ..get("/a.txt") }, p, 200, "hello", true),
    ];
    for (name, h, policy, status, snippet, close) in cases {
        let (got_status, text, got_close, _) = run(h, &policy);
        assert_eq!(got_status, status, "{name}: status");
        assert!(text.contains(snippet), "{name}: body {text:?} lacks {snippet:?}");
        assert_eq!(got_close, close, "{name}: close");
    }
}

#[test]
fn headers_say_what_the_plan_sends() {
    let p = Policy::default();
    let (_, _, _, plan) = run(get("/a.txt"), &p);
    assert_eq!(plan.header("content-length").as_deref(), Some("5"));
    assert_eq!(
        plan.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        plan.header("etag"),
        Some(Meta::new(5, UNIX_EPOCH + Duration::from_secs(MTIME), 1, Kind::File).etag())
    );
    assert_eq!(
        plan.header("last-modified").as_deref(),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
    assert_eq!(plan.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(plan.connection, Connection::KeepAlive);

    let (_, _, _, plan) = run(
        Head {
            target: "/a.txt",
            ..head("HEAD", None)
        },
        &p,
    );
    assert_eq!(
        plan.header("content-length").as_deref(),
        Some("5"),
        "HEAD says GET's length"
    );

    let (_, _, _, plan) = run(get("/d"), &p);
    assert_eq!(plan.header("location").as_deref(), Some("/d/"));
    let (_, _, _, plan) = run(get("/d?x=1"), &p);
    assert_eq!(
        plan.header("location").as_deref(),
        Some("/d/?x=1"),
        "redirect keeps the query"
    );

    let (_, _, _, plan) = run(
        Head {
            target: "/a.txt",
            ..head("POST", None)
        },
        &Policy { cors: true, ..p },
    );
    assert_eq!(plan.header("allow").as_deref(), Some("GET, HEAD, OPTIONS"));
    assert_eq!(plan.header("access-control-allow-origin").as_deref(), Some("*"));

    let (_, _, _, plan) = run(
        Head {
            version: 0,
            conn_keep_alive: true,
            ..get("/a.txt")
        },
        &p,
    );
    assert_eq!(plan.connection, Connection::KeepAlive10);

    let mut s = site();
    let closing = super::plan(&get("/a.txt"), &mut s, &p, true);
    assert!(closing.close(), "a server shutting down closes every connection");
}

/// A site that knows a file's variants are all absent answers for the three lookups;
/// the response is the one the lookups give.
#[test]
fn variants_known_absent_are_not_looked_up_and_change_nothing() {
    let h = get_ae("/a.txt", "gzip, br, deflate, zstd");
    let answer = |knows_absent: bool| {
        let mut s = MapSite { knows_absent, ..site() };
        let plan = plan(&h, &mut s, &Policy::default(), false);
        (
            format!("{:?} {:?}", plan.status, plan.headers),
            body(&plan),
            s.looked_up,
        )
    };
    let (looked, known) = (answer(false), answer(true));
    assert_eq!(looked.2, ["a.txt", "a.txt.br", "a.txt.zst", "a.txt.gz"]);
    assert_eq!(known.2, ["a.txt"]);
    assert_eq!((looked.0, looked.1), (known.0, known.1));
    // With a variant on disk the site does not know them absent: it is found.
    let mut s = MapSite {
        knows_absent: true,
        ..site()
    };
    let plan = plan(&get_ae("/app.js", "gzip"), &mut s, &Policy::default(), false);
    assert_eq!(body(&plan), b"GZ");
}

fn get_ae(target: &'static str, ae: &'static str) -> Head<'static> {
    Head {
        accept_encoding: Some(ae),
        ..get(target)
    }
}

#[test]
fn precompressed_variants_and_their_validators() {
    let p = Policy::default();
    let ae = |v: &'static str| Head {
        accept_encoding: Some(v),
        ..get("/app.js")
    };
    let (status, text, _, plan) = run(ae("gzip, br"), &p);
    assert_eq!((status, text.as_str()), (200, "BR"), "br preferred");
    assert_eq!(plan.header("content-encoding").as_deref(), Some("br"));
    assert_eq!(plan.header("vary").as_deref(), Some("Accept-Encoding"));
    assert!(plan.header("etag").unwrap().ends_with("-br\""), "a tag per encoding");
    assert_eq!(
        plan.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );

    let (_, text, _, plan) = run(ae("gzip"), &p);
    assert_eq!(text, "GZ");
    assert_eq!(plan.header("content-encoding").as_deref(), Some("gzip"));

    let (_, text, _, plan) = run(ae("zstd"), &p);
    assert_eq!(text, "let x = 1;", "no zstd variant: identity");
    assert_eq!(
        plan.header("vary").as_deref(),
        Some("Accept-Encoding"),
        "other variants exist"
    );
    assert_eq!(plan.header("content-encoding"), None);

    let no_compression = Policy { compress: false, ..p };
    let (_, _, _, plan) = run(
        Head {
            accept_encoding: Some("zstd"),
            ..get("/a.txt")
        },
        &no_compression,
    );
    assert_eq!(plan.header("vary"), None, "looked up and no variant exists");
    let (_, _, _, plan) = run(
        Head {
            accept_encoding: Some("zstd"),
            ..get("/a.txt")
        },
        &p,
    );
    assert_eq!(
        plan.header("vary").as_deref(),
        Some("Accept-Encoding"),
        "text may be compressed on the fly: it varies"
    );

    let refuses_identity = Head {
        accept_encoding: Some("zstd, identity;q=0"),
        ..get("/app.js")
    };
    let (status, _, _, plan) = run(refuses_identity.clone(), &no_compression);
    assert_eq!(status, 406);
    assert_eq!(plan.header("vary").as_deref(), Some("Accept-Encoding"));
    let (status, text, _, _) = run(refuses_identity, &p);
    assert_eq!(
        (status, text.as_str()),
        (200, "zstd:let x = 1;"),
        "compressed on the fly instead"
    );

    let (_, text, _, _) = run(
        ae("br"),
        &Policy {
            precompressed: false,
            ..p
        },
    );
    assert_eq!(text, "let x = 1;", "--precompressed false");
}

#[test]
fn conditionals_and_ranges_on_files_and_listings() {
    let p = Policy::default();
    let (_, _, _, full) = run(get("/a.txt"), &p);
    let etag: &'static str = Box::leak(full.header("etag").unwrap().into_boxed_str());
    let (status, text, _, plan) = run(
        Head {
            if_none_match: Some(etag),
            ..get("/a.txt")
        },
        &p,
    );
    assert_eq!((status, text.as_str()), (304, ""));
    assert_eq!(plan.header("etag").as_deref(), Some(etag));
    assert_eq!(plan.header("content-length"), None);

    let (status, _, _, _) = run(
        Head {
            if_match: Some("\"other\""),
            ..get("/a.txt")
        },
        &p,
    );
    assert_eq!(status, 412);

    let (status, text, _, plan) = run(
        Head {
            range: Some("bytes=1-3"),
            ..get("/a.txt")
        },
        &p,
    );
    assert_eq!((status, text.as_str()), (206, "ell"));
    assert_eq!(plan.header("content-range").as_deref(), Some("bytes 1-3/5"));

    let (status, _, _, plan) = run(
        Head {
            range: Some("bytes=9-"),
            ..get("/a.txt")
        },
        &p,
    );
    assert_eq!(status, 416);
    assert_eq!(plan.header("content-range").as_deref(), Some("bytes */5"));

    let (status, text, _, plan) = run(
        Head {
            range: Some("bytes=0-0,4-4"),
            ..get("/a.txt")
        },
        &p,
    );
    assert_eq!(status, 206);
    assert!(plan
        .header("content-type")
        .unwrap()
        .starts_with("multipart/byteranges; boundary="));
    assert_eq!(plan.header("content-length"), Some(plan.body_len().to_string()));
    assert!(text.contains("Content-Range: bytes 0-0/5\r\n\r\nh\r\n") && text.contains("bytes 4-4/5\r\n\r\no\r\n"));

    let (status, _, _, plan) = run(
        Head {
            if_none_match: Some("\"l-1\""),
            ..get("/list/")
        },
        &p,
    );
    assert_eq!(status, 304, "a listing's ETag revalidates");
    assert_eq!(plan.header("vary").as_deref(), Some("Accept"));
    let (status, _, _, _) = run(
        Head {
            if_match: Some("\"l-2\""),
            ..get("/list/")
        },
        &p,
    );
    assert_eq!(status, 412);
}

#[test]
fn index_is_looked_up_inside_the_checked_directory_and_hidden_paths_never_reach_the_site() {
    let mut s = site();
    let _ = plan(&get("/d/"), &mut s, &Policy::default(), false);
    assert_eq!(s.looked_up, ["d", "d/index.html"]);
    let mut s = site();
    let _ = plan(&get("/.env"), &mut s, &Policy::default(), false);
    assert!(s.looked_up.is_empty(), "{:?}", s.looked_up);
}

#[test]
fn cache_control_and_immutable_patterns() {
    let immutable = [glob::Pattern::new("*.js").unwrap()];
    let policy = Policy {
        cache_control: Some("max-age=60"),
        immutable: &immutable,
        ..Policy::default()
    };
    let extra = [("X-Frame-Options".to_string(), "DENY".to_string())];
    let policy = Policy {
        headers: &extra,
        ..policy
    };
    let mut s = site();
    let js = plan(&get("/app.js"), &mut s, &policy, false);
    assert_eq!(
        js.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let txt = plan(&get("/a.txt"), &mut s, &policy, false);
    assert_eq!(txt.header("cache-control").as_deref(), Some("max-age=60"));
    assert_eq!(txt.header("x-frame-options").as_deref(), Some("DENY"));
    let missing = plan(&get("/nope"), &mut s, &policy, false);
    assert_eq!(
        missing.header("x-frame-options").as_deref(),
        Some("DENY"),
        "-H on errors too"
    );
    assert_eq!(missing.header("cache-control"), None);
}

#[test]
fn write_head_serialises_in_order_with_the_given_date() {
    let mut s = site();
    let plan = plan(&get("/nope"), &mut s, &Policy::default(), true);
    let mut out = Vec::new();
    plan.write_head(&mut out, &wire::HttpDate::new(UNIX_EPOCH + Duration::from_secs(MTIME)));
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nServer: "));
    assert!(
        text.contains("\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "),
        "{text}"
    );
    assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
}

#[test]
fn on_the_fly_compression_is_planned_with_its_own_validator() {
    let css = "a { color: red }\n".repeat(100);
    let mut s = MapSite::new(&[("big.css", css.as_str()), ("big.png", css.as_str())], &[]);
    let p = Policy::default();
    let ae = |v: &'static str, t: &'static str| Head {
        accept_encoding: Some(v),
        ..get(t)
    };
    let plan_of = |s: &mut MapSite, h: Head<'static>, p: &Policy<'static>| {
        let plan = super::plan(&h, s, p, false);
        (
            plan.status.code(),
            String::from_utf8_lossy(&body(&plan)).into_owned(),
            plan,
        )
    };
    let (status, text, plan) = plan_of(&mut s, ae("gzip;q=0.5, zstd", "/big.css"), &p);
    assert_eq!((status, &text[..5]), (200, "zstd:"), "the highest q wins");
    assert_eq!(plan.header("content-encoding").as_deref(), Some("zstd"));
    assert_eq!(plan.header("content-length"), Some(text.len().to_string()));
    let etag = plan.header("etag").unwrap();
    assert!(
        etag.ends_with(&format!("-zstd-{}\"", crate::limits::ZSTD_LEVEL)),
        "{etag}"
    );
    let etag: &'static str = Box::leak(etag.into_boxed_str());
    let (status, _, plan) = plan_of(
        &mut s,
        Head {
            if_none_match: Some(etag),
            ..ae("zstd", "/big.css")
        },
        &p,
    );
    assert_eq!(status, 304);
    assert_eq!(plan.header("vary").as_deref(), Some("Accept-Encoding"));
    let (status, text, plan) = plan_of(
        &mut s,
        Head {
            range: Some("bytes=0-1"),
            ..ae("zstd", "/big.css")
        },
        &p,
    );
    assert_eq!((status, text.as_str()), (206, "a "), "ranges apply to identity bytes");
    assert_eq!(plan.header("content-encoding"), None);
    let (_, text, plan) = plan_of(&mut s, ae("zstd", "/big.png"), &p);
    assert_eq!(
        (plan.header("vary"), text.len()),
        (None, css.len()),
        "images are never compressed"
    );
    let off = Policy { compress: false, ..p };
    let (_, _, plan) = plan_of(&mut s, ae("zstd", "/big.css"), &off);
    assert_eq!((plan.header("vary"), plan.header("content-encoding")), (None, None));
}

fn rule(glob: &str, f: impl FnOnce(&mut Rule)) -> Rule {
    let mut r = Rule {
        pattern: glob::Pattern::new(glob).unwrap(),
        headers: Vec::new(),
        cache_control: None,
        auth: None,
        redirect: None,
    };
    f(&mut r);
    r
}

fn with_auth(h: Head<'static>, value: &'static str) -> Head<'static> {
    Head {
        authorization: Some(value),
        ..h
    }
}

/// Rules over the in-memory site: which responses each rule type reaches, the
/// directory's index.html and listing included. (request, status, header, value)
#[test]
fn rules_table() {
    let rules = [
        rule("*", |r| r.headers = vec![("X-All".into(), "1".into())]),
        rule("d/*", |r| {
            r.headers = vec![("X-Robots-Tag".into(), "noindex".into())];
            r.cache_control = Some("no-cache".into());
        }),
        rule("list", |r| r.cache_control = Some("max-age=5".into())),
        rule("*.js", |r| r.cache_control = Some("max-age=1".into())),
        rule("old/*", |r| {
            r.redirect = Some(Redirect {
                to: "/d/".into(),
                status: Status::PermanentRedirect,
            })
        }),
        rule("a.txt", |r| {
            r.headers = vec![("X-Frame-Options".into(), "SAMEORIGIN".into())]
        }),
    ];
    let immutable = [glob::Pattern::new("*.js").unwrap()];
    let global = [("X-Frame-Options".to_string(), "DENY".to_string())];
    let p = Policy {
        rules: &rules,
        immutable: &immutable,
        headers: &global,
        cache_control: Some("max-age=60"),
        ..Policy::default()
    };
    #[rustfmt::skip]
    let cases: &[(&str, u16, &str, Option<&str>)] = &[
        ("/d/", 200, "x-robots-tag", Some("noindex")),
        ("/d/", 200, "cache-control", Some("no-cache")),
        ("/d/index.html", 200, "x-robots-tag", Some("noindex")),
        ("/d/index.html", 200, "cache-control", Some("no-cache")),
        ("/d", 301, "x-robots-tag", Some("noindex")),
        ("/d/nope", 404, "x-robots-tag", Some("noindex")),
        ("/list/", 200, "cache-control", Some("max-age=5")),
        ("/list/?format=json", 200, "cache-control", Some("max-age=5")),
        ("/list/", 200, "x-robots-tag", None),
        ("/", 200, "cache-control", None),
        ("/", 200, "x-all", Some("1")),
        ("/app.js", 200, "cache-control", Some("max-age=1")),
        ("/a.txt", 200, "cache-control", Some("max-age=60")),
        ("/a.txt", 200, "x-frame-options", Some("SAMEORIGIN")),
        ("/spa.html", 200, "x-frame-options", Some("DENY")),
        ("/old/page", 308, "location", Some("/d/")),
        ("/old/", 308, "location", Some("/d/")),
    ];
    for &(target, status, name, want) in cases {
        let (got, _, _, plan) = run(get(target), &p);
        assert_eq!(got, status, "{target}: status");
        assert_eq!(plan.header(name).as_deref(), want, "{target}: {name}");
        let count = plan
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count();
        assert!(count <= 1, "{target}: {name} sent {count} times");
    }
    let mut s = site();
    let _ = plan(&get("/old/page"), &mut s, &p, false);
    assert!(s.looked_up.is_empty(), "a redirect is decided before any lookup");
}

const GOOD: &str = "Basic YWxpY2U6c2VjcmV0"; // alice:secret
const WRONG: &str = "Basic YWxpY2U6d3Jvbmc="; // alice:wrong
const UNKNOWN: &str = "Basic Ym9iOnNlY3JldA=="; // bob:secret
const BUSY: &str = "Basic YnVzeTp4"; // busy:x

/// Basic auth over the in-memory site: right, wrong, missing, malformed, unknown
/// user, busy; auth by default or only where rules say; the stats path.
#[test]
fn auth_table() {
    let everywhere = AuthPolicy {
        challenge: "Basic realm=\"r\"",
        by_default: true,
    };
    let named = AuthPolicy {
        by_default: false,
        ..everywhere
    };
    let rules = [
        rule("d/*", |r| r.auth = Some(true)),
        rule("d/open/*", |r| r.auth = Some(false)),
    ];
    let stats_rule = [rule("status.json", |r| r.auth = Some(true))];
    let all = Policy {
        auth: Some(everywhere),
        stats_path: Some("/status.json"),
        ..Policy::default()
    };
    let by_rule = Policy {
        auth: Some(named),
        rules: &rules,
        ..all
    };
    let stats_locked = Policy {
        rules: &stats_rule,
        ..all
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Head<'static>, Policy, u16)> = vec![
        ("missing", get("/a.txt"), all, 401),
        ("right", with_auth(get("/a.txt"), GOOD), all, 200),
        ("wrong", with_auth(get("/a.txt"), WRONG), all, 401),
        ("unknown_user", with_auth(get("/a.txt"), UNKNOWN), all, 401),
        ("malformed_base64", with_auth(get("/a.txt"), "Basic %%%"), all, 401),
        ("no_colon", with_auth(get("/a.txt"), "Basic YWxpY2U="), all, 401),
        ("other_scheme", with_auth(get("/a.txt"), "Bearer YWxpY2U6c2VjcmV0"), all, 401),
        ("busy_is_429", with_auth(get("/a.txt"), BUSY), all, 429),
        ("missing_file_is_401_not_404", get("/nope"), all, 401),
        ("dotfile_is_401", get("/.env"), all, 401),
        ("stats_path_is_open", get("/status.json"), all, 200),
        ("stats_path_locked_by_rule", get("/status.json"), stats_locked, 401),
        ("rule_names_dir", get("/d/"), by_rule, 401),
        ("rule_names_dir_index", get("/d/index.html"), by_rule, 401),
        ("rule_names_dir_redirect", get("/d"), by_rule, 401),
        ("rule_names_dir_right", with_auth(get("/d/"), GOOD), by_rule, 200),
        ("later_rule_opens", get("/d/open/x"), by_rule, 404),
        ("unnamed_path_is_open", get("/a.txt"), by_rule, 200),
        ("listing_open", get("/list/"), by_rule, 200),
    ];
    for (name, h, policy, want) in cases {
        let (status, _, close, plan) = run(h, &policy);
        assert_eq!(status, want, "{name}");
        assert!(!close, "{name}: a 401 keeps the connection");
        let challenge = plan.header("www-authenticate");
        assert_eq!(challenge.is_some(), want == 401, "{name}: challenge {challenge:?}");
        if want == 429 {
            assert_eq!(plan.header("retry-after").as_deref(), Some("1"));
        }
    }
}

/// A wrong password and an unknown user get the same page; without credentials
/// nothing is checked and nothing looked up.
#[test]
fn auth_gives_no_hint_and_checks_nothing_without_credentials() {
    let all = Policy {
        auth: Some(AuthPolicy {
            challenge: "Basic realm=\"r\"",
            by_default: true,
        }),
        ..Policy::default()
    };
    let (_, wrong, _, _) = run(with_auth(get("/a.txt"), WRONG), &all);
    let (_, unknown, _, _) = run(with_auth(get("/a.txt"), UNKNOWN), &all);
    assert_eq!(wrong, unknown, "no hint whether the user exists");
    let mut s = site();
    let _ = plan(&get("/a.txt"), &mut s, &all, false);
    let _ = plan(&with_auth(get("/a.txt"), "Basic %%%"), &mut s, &all, false);
    assert!(
        s.checked.is_empty() && s.looked_up.is_empty(),
        "nothing checked, nothing looked up"
    );
}

/// The health and metrics paths (step 6): they answer whatever the site holds under
/// them and whatever the dotfile rule says, never reach the site's files, match the
/// decoded path, and the health path turns 503 while the server is closing.
#[test]
fn health_and_metrics_paths() {
    let p = Policy::default();
    let ops = |health, metrics| Policy {
        endpoints: Some(Endpoints { health, metrics }),
        ..p
    };
    let health = ops(Some("/healthz"), Some("/metrics"));
    let over_file = ops(Some("/a.txt"), None);
    let over_dotfile = ops(Some("/.env"), Some("/.metrics"));
    let over_dir = ops(Some("/d/"), None);
    let with_stats = Policy {
        stats_path: Some("/status.json"),
        ..health
    };
    let head_req = Head {
        target: "/healthz",
        ..head("HEAD", None)
    };
    let post = Head {
        target: "/healthz",
        ..head("POST", None)
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Head<'static>, Policy, bool, u16, &str, bool)> = vec![
        ("health_is_200", get("/healthz"), health, false, 200, "ok\n", false),
        ("health_is_503_while_closing_and_closes", get("/healthz"), health, true, 503, "draining\n", true),
        ("other_requests_are_served_while_closing_and_close", get("/a.txt"), health, true, 200, "hello", true),
        ("health_with_a_query", get("/healthz?probe=1"), health, false, 200, "ok", false),
        ("health_encoded", get("/heal%74hz"), health, false, 200, "ok", false),
        ("health_through_dot_segments", get("/x/../healthz"), health, false, 200, "ok", false),
        ("health_with_a_slash_is_not_it", get("/healthz/"), health, false, 404, "404", false),
        ("health_head_has_no_body", head_req, health, false, 200, "", false),
        ("health_post_is_405", post, health, false, 405, "405", false),
        ("health_wins_over_a_file", get("/a.txt"), over_file, false, 200, "ok\n", false),
        ("health_wins_over_a_directory", get("/d/"), over_dir, false, 200, "ok\n", false),
        ("health_at_a_dotfile_without_dotfiles", get("/.env"), over_dotfile, false, 200, "ok\n", false),
        ("metrics_at_a_dotfile_without_dotfiles", get("/.metrics"), over_dotfile, false, 200, "threadserve_requests_total", false),
        ("other_dotfiles_stay_hidden", get("/.other"), over_dotfile, false, 404, "404", false),
        ("metrics_are_served", get("/metrics"), health, false, 200, "# TYPE threadserve_requests_total counter", false),
        ("metrics_while_closing", get("/metrics"), health, true, 200, "threadserve_requests_total", true),
        ("stats_path_next_to_them", get("/status.json"), with_stats, false, 200, "requests", false),
        ("without_endpoints_it_is_a_path", get("/healthz"), p, false, 404, "404", false),
        ("health_only_leaves_metrics_a_path", get("/metrics"), ops(Some("/healthz"), None), false, 404, "404", false),
    ];
    for (name, h, policy, closing, status, snippet, close) in cases {
        let mut s = site();
        let plan = plan(&h, &mut s, &policy, closing);
        let text = String::from_utf8_lossy(&body(&plan)).into_owned();
        assert_eq!(plan.status.code(), status, "{name}: status");
        assert!(text.contains(snippet), "{name}: body {text:?} lacks {snippet:?}");
        assert_eq!(plan.close(), close, "{name}: close");
        if status != 404 && name != "other_requests_are_served_while_closing_and_close" {
            assert!(s.looked_up.is_empty(), "{name}: reached the site: {:?}", s.looked_up);
        }
    }
}

#[test]
fn health_and_metrics_headers() {
    let policy = Policy {
        endpoints: Some(Endpoints {
            health: Some("/healthz"),
            metrics: Some("/metrics"),
        }),
        ..Policy::default()
    };
    let (_, _, _, health) = run(get("/healthz"), &policy);
    assert_eq!(
        health.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(health.header("content-length").as_deref(), Some("3"));
    assert_eq!(health.header("cache-control").as_deref(), Some("no-store"));
    let (_, _, _, metrics) = run(get("/metrics"), &policy);
    assert_eq!(metrics.header("content-type").as_deref(), Some(METRICS_CONTENT_TYPE));
    assert_eq!(METRICS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(metrics.header("cache-control").as_deref(), Some("no-store"));
    // A site that cannot produce metrics (the stats thread is gone): 503, kept open.
    let mut gone = memory::MemorySite::default();
    let plan = plan(&get("/metrics"), &mut gone, &policy, false);
    assert_eq!((plan.status.code(), plan.close()), (503, false));
}
