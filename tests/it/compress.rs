//! On-the-fly compression over real sockets: every coding decodes back to the file,
//! the type and size rules, precompressed files first, a validator per
//! representation, 304, ranges, HEAD, changes seen at once, the byte bound, and one
//! compression for many clients at once.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;

/// Text that compresses like source code: a few KiB of varied lines per KiB.
fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = seed;
    while out.len() < len {
        i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let line = format!(
            "function f{}(a, b) {{ return a * {} + b; }} // {}\n",
            i % 997,
            i % 13,
            i >> 40
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096).read_to_end(&mut out).unwrap();
        }
        Some("zstd") => out = zstd::stream::decode_all(body).unwrap(),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

fn get_ae(server: &TestServer, path: &str, extra: &str) -> Response {
    server.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n"
    ))
}

#[test]
fn every_coding_decodes_back_to_the_file_with_its_own_validator() {
    let _turn = crate::support::heavy();
    let server = TestServer::start(|_| {});
    let js = text(64 * 1024, 1);
    let html = text(200 * 1024, 2);
    write(&server.root(), "app.js", &js);
    write(&server.root(), "page.html", &html);
    let mut tags = std::collections::HashSet::new();
    for (path, original) in [("/app.js", &js), ("/page.html", &html)] {
        for coding in ["gzip", "br", "zstd"] {
            let res = get_ae(&server, path, &format!("Accept-Encoding: {coding}\r\n"));
            assert_eq!(res.status, 200);
            assert_eq!(res.header("content-encoding"), Some(coding), "{path}");
            assert_eq!(res.header("vary"), Some("Accept-Encoding"));
            assert_eq!(res.header("content-length").unwrap(), res.body.len().to_string());
            assert!(
                res.body.len() < original.len() / 2,
                "{path} {coding}: {} bytes",
                res.body.len()
            );
            assert!(
                decode(Some(coding), &res.body) == *original,
                "{path} {coding} decodes to the file"
            );
            let etag = res.header("etag").unwrap();
            assert!(etag.ends_with(&format!("-{coding}-{}\"", level(coding))), "{etag}");
            assert!(tags.insert(etag.to_string()), "one tag per representation: {etag}");
        }
        let identity = get_ae(&server, path, "");
        assert_eq!(
            (identity.header("content-encoding"), identity.header("vary")),
            (None, Some("Accept-Encoding"))
        );
        assert!(identity.body == *original);
        assert!(tags.insert(identity.header("etag").unwrap().to_string()));
    }
}

fn level(coding: &str) -> i32 {
    use threadserve::limits::*;
    match coding {
        "gzip" => GZIP_LEVEL as i32,
        "br" => BROTLI_QUALITY as i32,
        _ => ZSTD_LEVEL,
    }
}

#[test]
fn the_highest_q_value_wins_then_br_zstd_gzip() {
    let server = TestServer::start(|_| {});
    write(&server.root(), "app.js", &text(8 * 1024, 3));
    let cases = [
        ("gzip, deflate, br, zstd", Some("br")),
        ("gzip", Some("gzip")),
        ("gzip;q=1, br;q=0.5", Some("gzip")),
        ("zstd;q=0.9, gzip;q=0.9, br;q=0.1", Some("zstd")),
        ("deflate", None),
        ("br;q=0, gzip;q=0", None),
        ("*", Some("br")),
    ];
    for (ae, want) in cases {
        let res = get_ae(&server, "/app.js", &format!("Accept-Encoding: {ae}\r\n"));
        assert_eq!(res.header("content-encoding"), want, "{ae}");
    }
}

#[test]
fn only_compressible_types_between_the_size_limits_are_compressed() {
    let _turn = crate::support::heavy();
    let server = TestServer::start(|_| {});
    let root = server.root();
    write(&root, "image.png", &text(4096, 4));
    write(&root, "font.woff2", &text(4096, 4));
    write(&root, "archive.zip", &text(4096, 4));
    write(&root, "small.css", &text(1000, 5));
    write(&root, "edge.css", &text(1024, 5));
    write(&root, "data.json", &text(4096, 6));
    write(&root, "pic.svg", &text(4096, 6));
    write(&root, "mod.wasm", &text(4096, 6));
    let max = threadserve::limits::COMPRESS_MAX_BYTES as usize;
    write(&root, "max.txt", &text(max, 7));
    write(&root, "over.txt", &text(max + 1, 7));
    let cases = [
        ("/image.png", None, None),
        ("/font.woff2", None, None),
        ("/archive.zip", None, None),
        ("/small.css", None, Some("Accept-Encoding")),
        ("/edge.css", Some("zstd"), Some("Accept-Encoding")),
        ("/data.json", Some("zstd"), Some("Accept-Encoding")),
        ("/pic.svg", Some("zstd"), Some("Accept-Encoding")),
        ("/mod.wasm", Some("zstd"), Some("Accept-Encoding")),
        ("/max.txt", Some("zstd"), Some("Accept-Encoding")),
        ("/over.txt", None, None),
    ];
    for (path, coding, vary) in cases {
        let res = get_ae(&server, path, "Accept-Encoding: zstd\r\n");
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(
            (res.header("content-encoding"), res.header("vary")),
            (coding, vary),
            "{path}"
        );
    }
    // Below the minimum, a client refusing identity is still served: compressed.
    let res = get_ae(&server, "/small.css", "Accept-Encoding: zstd, identity;q=0\r\n");
    assert_eq!((res.status, res.header("content-encoding")), (200, Some("zstd")));
    assert!(decode(Some("zstd"), &res.body) == text(1000, 5));
    let res = get_ae(&server, "/image.png", "Accept-Encoding: zstd, identity;q=0\r\n");
    assert_eq!(res.status, 200, "not negotiable at all: identity, as before");
}

#[test]
fn a_precompressed_file_wins_whenever_its_coding_is_accepted() {
    let server = TestServer::start(|_| {});
    let root = server.root();
    write(&root, "app.js", &text(16 * 1024, 8));
    write(&root, "app.js.gz", b"precompressed gzip");
    let res = get_ae(&server, "/app.js", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(
        (res.header("content-encoding"), res.text().as_str()),
        (Some("gzip"), "precompressed gzip")
    );
    let res = get_ae(&server, "/app.js", "Accept-Encoding: br\r\n");
    assert_eq!(
        res.header("content-encoding"),
        Some("br"),
        "no app.js.br: compressed on the fly"
    );
    assert!(decode(Some("br"), &res.body) == text(16 * 1024, 8));
}

#[test]
fn compressed_validators_revalidate_and_ranges_get_identity_bytes() {
    let server = TestServer::start(|_| {});
    let js = text(32 * 1024, 9);
    write(&server.root(), "app.js", &js);
    let first = get_ae(&server, "/app.js", "Accept-Encoding: br\r\n");
    let etag = first.header("etag").unwrap().to_string();
    let res = get_ae(
        &server,
        "/app.js",
        &format!("Accept-Encoding: br\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(res.status, 304);
    assert_eq!(
        (res.header("etag"), res.header("vary")),
        (Some(etag.as_str()), Some("Accept-Encoding"))
    );
    let res = get_ae(
        &server,
        "/app.js",
        &format!("Accept-Encoding: gzip\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(res.status, 200, "a br tag does not validate the gzip representation");
    let res = get_ae(
        &server,
        "/app.js",
        &format!("Accept-Encoding: br\r\nIf-Match: {etag}\r\n"),
    );
    assert_eq!(res.status, 200);
    let res = get_ae(&server, "/app.js", "Accept-Encoding: br\r\nIf-Match: \"other\"\r\n");
    assert_eq!(res.status, 412);
    // A range applies to the identity bytes; a compressed tag in If-Range never
    // matches them, so a resumed download cannot mix representations.
    let res = get_ae(&server, "/app.js", "Accept-Encoding: br\r\nRange: bytes=10-19\r\n");
    assert_eq!((res.status, res.header("content-encoding")), (206, None));
    assert_eq!(res.body, &js[10..20]);
    assert_eq!(res.header("vary"), Some("Accept-Encoding"));
    let res = get_ae(
        &server,
        "/app.js",
        &format!("Accept-Encoding: br\r\nRange: bytes=10-19\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!((res.status, res.header("content-encoding")), (200, None));
    assert!(res.body == js);
}

#[test]
fn head_sends_exactly_the_headers_of_get() {
    let server = TestServer::start(|_| {});
    write(&server.root(), "page.html", &text(50 * 1024, 10));
    let get = get_ae(&server, "/page.html", "Accept-Encoding: gzip\r\n");
    let head =
        server.request("HEAD /page.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAccept-Encoding: gzip\r\n\r\n");
    let mut a = get.headers.clone();
    let mut b = head.headers.clone();
    a.remove("date");
    b.remove("date");
    assert_eq!(a, b);
    assert_eq!(head.header("content-length").unwrap(), get.body.len().to_string());
}

#[test]
fn a_change_to_the_file_is_seen_by_the_next_request() {
    let server = TestServer::start(|_| {});
    let path = server.root().join("app.js");
    let v1 = text(20 * 1024, 11);
    std::fs::write(&path, &v1).unwrap();
    let res = get_ae(&server, "/app.js", "Accept-Encoding: gzip\r\n");
    assert!(decode(Some("gzip"), &res.body) == v1);
    // Same size, same mtime (set back): only the ctime and the bytes change.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let v2 = text(20 * 1024, 12);
    std::fs::write(&path, &v2).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let res = get_ae(&server, "/app.js", "Accept-Encoding: gzip\r\n");
    assert!(decode(Some("gzip"), &res.body) == v2, "new bytes at once");
    // Replaced by rename, and deleted.
    let v3 = text(21 * 1024, 13);
    std::fs::write(server.root().join("next.js"), &v3).unwrap();
    std::fs::rename(server.root().join("next.js"), &path).unwrap();
    let res = get_ae(&server, "/app.js", "Accept-Encoding: gzip\r\n");
    assert!(decode(Some("gzip"), &res.body) == v3);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(get_ae(&server, "/app.js", "Accept-Encoding: gzip\r\n").status, 404);
}

#[test]
fn listings_are_compressed_too() {
    let server = TestServer::start(|_| {});
    for i in 0..60 {
        write(&server.root().join("list"), &format!("file-{i:03}.txt"), b"x");
    }
    let plain = server.get("/list/");
    let res = get_ae(&server, "/list/", "Accept-Encoding: gzip\r\n");
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(res.header("vary"), Some("Accept, Accept-Encoding"));
    assert!(decode(Some("gzip"), &res.body) == plain.body);
    assert_ne!(res.header("etag"), plain.header("etag"));
    let etag = res.header("etag").unwrap();
    let again = get_ae(
        &server,
        "/list/",
        &format!("Accept-Encoding: gzip\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(again.status, 304);
}

#[test]
fn the_byte_bound_holds_while_many_clients_fetch_many_files() {
    let _turn = crate::support::heavy();
    // Room for brotli's working memory while it runs (3 MiB) and 2 MiB of kept bodies,
    // against about 3 MB of brotli output for these files.
    let bound = 5 * 1024 * 1024;
    let server = TestServer::start(|c| c.compress_cache = bound);
    let files: Vec<Vec<u8>> = (0..96).map(|i| text(128 * 1024, 100 + i)).collect();
    for (i, f) in files.iter().enumerate() {
        write(&server.root(), &format!("f{i}.js"), f);
    }
    let files = Arc::new(files);
    let addr = server.addr;
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let files = Arc::clone(&files);
            thread::spawn(move || {
                for round in 0..3 {
                    for i in 0..files.len() {
                        let i = (i + c * 7 + round) % files.len();
                        let mut s = TcpStream::connect(addr).unwrap();
                        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                        write!(s, "GET /f{i}.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAccept-Encoding: br, gzip\r\n\r\n").unwrap();
                        let res = read_response(&mut std::io::BufReader::new(s), false).unwrap();
                        assert_eq!(res.status, 200);
                        assert!(decode(res.header("content-encoding"), &res.body) == files[i], "f{i}.js");
                    }
                }
            })
        })
        .collect();
    let mut peak = 0;
    while !clients.iter().all(|c| c.is_finished()) {
        peak = peak.max(server.stats().compression.resident_bytes);
        thread::sleep(std::time::Duration::from_millis(5));
    }
    for c in clients {
        c.join().unwrap();
    }
    let stats = server.stats().compression;
    assert!(
        peak <= bound && stats.resident_bytes <= bound,
        "peak {peak}, now {}",
        stats.resident_bytes
    );
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.hits > 0, "{stats:?}");
}

#[test]
fn many_clients_asking_for_one_uncached_file_cost_one_compression() {
    let _turn = crate::support::heavy();
    let server = TestServer::start(|c| c.threads = 8);
    let big = Arc::new(text(2 * 1024 * 1024, 14));
    write(&server.root(), "bundle.js", &big);
    let barrier = Arc::new(Barrier::new(16));
    let addr = server.addr;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (barrier, big) = (Arc::clone(&barrier), Arc::clone(&big));
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                barrier.wait();
                write!(
                    s,
                    "GET /bundle.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAccept-Encoding: gzip\r\n\r\n"
                )
                .unwrap();
                let res = read_response(&mut std::io::BufReader::new(s), false).unwrap();
                assert_eq!(res.header("content-encoding"), Some("gzip"));
                assert!(decode(Some("gzip"), &res.body) == *big);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let stats = server.stats().compression;
    assert_eq!(stats.compressions, 1, "{stats:?}");
    assert_eq!(stats.hits + stats.compressions, 16, "{stats:?}");
}

#[test]
fn compress_flags_parse_and_refuse_absurd_values() {
    let ok = std::process::Command::new(BIN)
        .args(["--compress-cache", "64M", "--compress", "false", "--help"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    for bad in ["5X", "-1", "99999999999999999999", "2000G"] {
        let out = std::process::Command::new(BIN)
            .arg(format!("--compress-cache={bad}"))
            .arg(".")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--compress-cache"), "{bad}: {err}");
    }
}
