//! HTTP semantics over sockets: validators, conditional requests, ranges,
//! precompressed variants, caching headers, JSON listings and site flags.

use crate::support::{read_response, write, Response, TestServer};
use std::io::{BufReader, Write};

fn get_with(server: &TestServer, path: &str, headers: &str) -> Response {
    server.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
    ))
}

fn digits_file(server: &TestServer) {
    write(&server.root(), "d.txt", b"0123456789");
}

#[test]
fn browser_style_revalidation_gets_304_without_body_on_a_kept_connection() {
    let server = TestServer::start(|c| c.cache_control = Some("max-age=60".into()));
    let first = server.get("/hello.txt");
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    let mut s = server.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    write!(
        s,
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nIf-Modified-Since: {lm}\r\n\r\n"
    )
    .unwrap();
    let res = read_response(&mut r, false).unwrap();
    assert_eq!(res.status, 304);
    assert_eq!(res.header("etag"), Some(etag.as_str()));
    assert_eq!(res.header("last-modified"), Some(lm.as_str()));
    assert_eq!(res.header("cache-control"), Some("max-age=60"));
    assert!(res.header("date").is_some());
    assert_eq!(
        res.header("content-length"),
        None,
        "a 304 never carries a differing Content-Length"
    );
    // The connection is still in sync: the next response starts right after the head.
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().body, b"A");
}

#[test]
fn if_modified_since_accepts_all_three_date_formats_and_ignores_junk() {
    let server = TestServer::start(|_| {});
    let lm = server.get("/hello.txt").header("last-modified").unwrap().to_string();
    let t = httpdate::parse_http_date(&lm).unwrap();
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let c = threadserve::clock::Civil::from_unix(secs);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mon = months[(c.month - 1) as usize];
    let weekday_long = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ][(secs / 86400 % 7) as usize];
    let weekday = &weekday_long[..3];
    let rfc850 = format!(
        "{weekday_long}, {:02}-{mon}-{:02} {:02}:{:02}:{:02} GMT",
        c.day,
        c.year % 100,
        c.hour,
        c.minute,
        c.second
    );
    let asctime = format!(
        "{weekday} {mon} {:>2} {:02}:{:02}:{:02} {}",
        c.day, c.hour, c.minute, c.second, c.year
    );
    for date in [lm.as_str(), &rfc850, &asctime] {
        let res = get_with(&server, "/hello.txt", &format!("If-Modified-Since: {date}\r\n"));
        assert_eq!(res.status, 304, "{date}");
    }
    assert_eq!(
        get_with(&server, "/hello.txt", "If-Modified-Since: not a date\r\n").status,
        200
    );
    assert_eq!(
        get_with(
            &server,
            "/hello.txt",
            "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n"
        )
        .status,
        200
    );
}

#[test]
fn failed_preconditions_are_412() {
    let server = TestServer::start(|_| {});
    assert_eq!(get_with(&server, "/hello.txt", "If-Match: \"nope\"\r\n").status, 412);
    assert_eq!(get_with(&server, "/hello.txt", "If-Match: *\r\n").status, 200);
    let res = get_with(
        &server,
        "/hello.txt",
        "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
    );
    assert_eq!(res.status, 412);
}

#[test]
fn single_ranges_suffixes_and_clipping() {
    let server = TestServer::start(|_| {});
    digits_file(&server);
    let cases = [
        ("bytes=0-0", 206, "0", Some("bytes 0-0/10")),
        ("bytes=2-4", 206, "234", Some("bytes 2-4/10")),
        ("bytes=7-", 206, "789", Some("bytes 7-9/10")),
        ("bytes=-3", 206, "789", Some("bytes 7-9/10")),
        ("bytes=5-100", 206, "56789", Some("bytes 5-9/10")),
        ("BYTES = 1-1", 206, "1", Some("bytes 1-1/10")),
        ("bytes=5-4", 200, "0123456789", None),
        ("items=0-1", 200, "0123456789", None),
        ("bytes=abc", 200, "0123456789", None),
    ];
    for (range, status, body, content_range) in cases {
        let res = get_with(&server, "/d.txt", &format!("Range: {range}\r\n"));
        assert_eq!((res.status, res.text().as_str()), (status, body), "{range}");
        assert_eq!(res.header("content-range"), content_range, "{range}");
    }
    for range in ["bytes=10-", "bytes=-0", "bytes=20-30"] {
        let res = get_with(&server, "/d.txt", &format!("Range: {range}\r\n"));
        assert_eq!(res.status, 416, "{range}");
        assert_eq!(res.header("content-range"), Some("bytes */10"), "{range}");
    }
    write(&server.root(), "empty.txt", b"");
    assert_eq!(get_with(&server, "/empty.txt", "Range: bytes=0-\r\n").status, 416);
    let head = server.request("HEAD /d.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200, "HEAD ignores Range");
}

#[test]
fn several_ranges_are_multipart_with_exact_length() {
    let server = TestServer::start(|_| {});
    digits_file(&server);
    let res = get_with(&server, "/d.txt", "Range: bytes=0-1,5-6,-1\r\n");
    assert_eq!(res.status, 206);
    let ct = res.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").expect(ct);
    let body = res.text(); // read_response already read exactly Content-Length bytes
    assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")), "{body:?}");
    let parts: Vec<&str> = body.split(&format!("--{boundary}")).collect();
    assert_eq!(parts.len(), 5, "preamble, three parts, closing: {body:?}");
    for (part, (cr, bytes)) in
        parts[1..4]
            .iter()
            .zip([("bytes 0-1/10", "01"), ("bytes 5-6/10", "56"), ("bytes 9-9/10", "9")])
    {
        assert!(part.contains(&format!("Content-Range: {cr}\r\n")), "{part:?}");
        assert!(part.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(part.ends_with(&format!("\r\n\r\n{bytes}\r\n")), "{part:?}");
    }
    // Adjacent ranges coalesce into one 206.
    let res = get_with(&server, "/d.txt", "Range: bytes=1-2,3-4\r\n");
    assert_eq!((res.status, res.text().as_str()), (206, "1234"));
    // Too many parts: the header is ignored.
    let many: Vec<String> = (0..50).map(|i| format!("{}-{}", i % 10, i % 10)).collect();
    let res = get_with(&server, "/d.txt", &format!("Range: bytes={}\r\n", many.join(",")));
    assert_eq!(res.status, 200);
}

#[test]
fn if_range_with_current_validators_gets_the_range_and_stale_ones_the_whole_file() {
    let server = TestServer::start(|_| {});
    digits_file(&server);
    let full = server.get("/d.txt");
    let etag = full.header("etag").unwrap();
    let lm = full.header("last-modified").unwrap();
    for (if_range, status) in [
        (etag, 206),
        (lm, 206),
        ("\"stale\"", 200),
        ("Sat, 01 Jan 2000 00:00:00 GMT", 200),
    ] {
        let res = get_with(
            &server,
            "/d.txt",
            &format!("Range: bytes=0-3\r\nIf-Range: {if_range}\r\n"),
        );
        assert_eq!(res.status, status, "{if_range}");
    }
}

#[test]
fn ranges_work_past_4_gib_in_a_sparse_file() {
    let server = TestServer::start(|_| {});
    let path = server.root().join("sparse.bin");
    let f = std::fs::File::create(&path).unwrap();
    let len: u64 = 5 << 30;
    f.set_len(len).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"past-4GiB", 4_294_967_296 + 10).unwrap();
    let res = get_with(&server, "/sparse.bin", "Range: bytes=4294967306-4294967314\r\n");
    assert_eq!(res.status, 206);
    assert_eq!(res.text(), "past-4GiB");
    assert_eq!(
        res.header("content-range"),
        Some("bytes 4294967306-4294967314/5368709120")
    );
    let head = server.request("HEAD /sparse.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(head.header("content-length"), Some("5368709120"));
}

#[test]
fn curl_resumes_a_20_mib_download() {
    let server = TestServer::start(|_| {});
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    write(&server.root(), "big.bin", &data);
    let out = server.tmp.path().join("download.bin");
    std::fs::write(&out, &data[..7_000_001]).unwrap();
    let status = std::process::Command::new("curl")
        .args(["-sS", "-f", "-C", "-", "-o"])
        .arg(&out)
        .arg(format!("http://{}/big.bin", server.addr))
        .status()
        .expect("curl is installed (.ci/run installs it)");
    assert!(status.success());
    assert!(std::fs::read(&out).unwrap() == data, "resumed download differs");
}

#[test]
fn precompressed_variants_follow_accept_encoding() {
    let server = TestServer::start(|_| {});
    let root = server.root();
    write(&root, "app.js", b"identity");
    write(&root, "app.js.gz", b"gzip-bytes");
    write(&root, "app.js.br", b"brotli-bytes");
    write(&root, "plain.js", b"only identity");
    let cases = [
        ("gzip", "gzip-bytes", Some("gzip")),
        ("gzip, deflate, br, zstd", "brotli-bytes", Some("br")),
        ("br;q=0, gzip;q=0.5", "gzip-bytes", Some("gzip")),
        ("x-gzip", "gzip-bytes", Some("gzip")),
        ("zstd", "identity", None),
        ("", "identity", None),
        ("*;q=0, identity", "identity", None),
    ];
    let mut etags = std::collections::HashSet::new();
    for (ae, body, encoding) in cases {
        let res = get_with(&server, "/app.js", &format!("Accept-Encoding: {ae}\r\n"));
        assert_eq!((res.status, res.text().as_str()), (200, body), "{ae}");
        assert_eq!(res.header("content-encoding"), encoding, "{ae}");
        assert_eq!(
            res.header("content-type"),
            Some("text/javascript; charset=utf-8"),
            "{ae}"
        );
        assert_eq!(res.header("vary"), Some("Accept-Encoding"), "{ae}");
        etags.insert(res.header("etag").unwrap().to_string());
    }
    assert_eq!(etags.len(), 3, "one strong ETag per encoding: {etags:?}");
    let res = get_with(&server, "/app.js", "Accept-Encoding: identity;q=0, zstd\r\n");
    assert_eq!(res.status, 406);
    // A compressible type may be compressed on the fly (here it is below the minimum
    // size), so its response varies by Accept-Encoding, identity included.
    let res = get_with(&server, "/plain.js", "Accept-Encoding: gzip\r\n");
    assert_eq!(
        (res.header("vary"), res.header("content-encoding")),
        (Some("Accept-Encoding"), None)
    );
    let server_off = TestServer::start(|c| c.compress = false);
    write(&server_off.root(), "plain.js", b"only identity");
    let res = get_with(&server_off, "/plain.js", "Accept-Encoding: gzip\r\n");
    assert_eq!((res.header("vary"), res.header("content-encoding")), (None, None));
    // Ranges apply to the encoded bytes.
    let res = get_with(&server, "/app.js", "Accept-Encoding: gzip\r\nRange: bytes=0-3\r\n");
    assert_eq!((res.status, res.text().as_str()), (206, "gzip"));
    let server = TestServer::start(|c| c.precompressed = false);
    write(&server.root(), "app.js", b"identity");
    write(&server.root(), "app.js.gz", b"gzip-bytes");
    assert_eq!(
        get_with(&server, "/app.js", "Accept-Encoding: gzip\r\n").text(),
        "identity"
    );
}

#[test]
fn cache_control_and_immutable_patterns_apply_to_200_206_and_304() {
    let server = TestServer::start(|c| {
        c.cache_control = Some("public, max-age=60".into());
        c.immutable = vec![glob::Pattern::new("assets/*").unwrap()];
    });
    std::fs::create_dir(server.root().join("assets")).unwrap();
    write(&server.root(), "assets/app.3f2a.js", b"x");
    let immutable = "public, max-age=31536000, immutable";
    let res = server.get("/assets/app.3f2a.js");
    assert_eq!(res.header("cache-control"), Some(immutable));
    let etag = res.header("etag").unwrap().to_string();
    let res = get_with(&server, "/assets/app.3f2a.js", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((res.status, res.header("cache-control")), (304, Some(immutable)));
    let res = get_with(&server, "/hello.txt", "Range: bytes=0-1\r\n");
    assert_eq!(
        (res.status, res.header("cache-control")),
        (206, Some("public, max-age=60"))
    );
    assert_eq!(
        TestServer::start(|_| {}).get("/hello.txt").header("cache-control"),
        None,
        "none by default"
    );
}

#[test]
fn directory_listing_as_json() {
    let server = TestServer::start(|_| {});
    std::fs::create_dir(server.root().join("list/zdir")).unwrap();
    for res in [
        server.get("/list/?format=json"),
        get_with(&server, "/list/", "Accept: application/json\r\n"),
    ] {
        assert_eq!(res.header("content-type"), Some("application/json"));
        assert_eq!(res.header("vary"), Some("Accept"));
        let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[0]["name"].as_str(), items[0]["type"].as_str()),
            (Some("zdir"), Some("dir"))
        );
        assert_eq!(
            (items[1]["name"].as_str(), items[1]["size"].as_u64()),
            (Some("one.bin"), Some(10))
        );
        assert!(items[1]["modified"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn custom_404_page_and_spa_fallback() {
    let server = TestServer::start(|c| c.not_found_page = Some("404.html".into()));
    write(&server.root(), "404.html", b"<h1>custom</h1>");
    let res = server.get("/missing");
    assert_eq!((res.status, res.text().as_str()), (404, "<h1>custom</h1>"));
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));

    let server = TestServer::start(|c| c.fallback = Some("sub/index.html".into()));
    for path in ["/app/route", "/deep/link/here?x=1", "/.env"] {
        let res = server.get(path);
        assert_eq!((res.status, res.text().as_str()), (200, "<h1>sub</h1>\n"), "{path}");
    }
    assert_eq!(server.get("/a.txt").text(), "A", "existing files win");
}

#[test]
fn cors_and_extra_headers() {
    let server = TestServer::start(|c| {
        c.cors = true;
        c.headers = vec![("X-Frame-Options".into(), "DENY".into())];
    });
    let res = server.request("OPTIONS /a.txt HTTP/1.1\r\nHost: t\r\nOrigin: http://x\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n");
    assert_eq!(res.status, 204);
    assert!(res.header("access-control-allow-methods").unwrap().contains("GET"));
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    for res in [server.get("/a.txt"), server.get("/missing")] {
        assert_eq!(res.header("access-control-allow-origin"), Some("*"));
        assert_eq!(res.header("x-frame-options"), Some("DENY"));
    }
    let plain = TestServer::start(|_| {});
    assert_eq!(plain.request("OPTIONS /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").status, 405);
}
