//! Protocol behaviour: methods, framing, versions, keep-alive, pipelining.

use crate::support::{closed, eventually, read_response, TestServer};
use std::io::{BufReader, Write};

#[test]
fn keep_alive_serves_100_sequential_requests_on_one_connection() {
    let server = TestServer::start(|_| {});
    let mut s = server.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for i in 0..100 {
        s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let res = read_response(&mut r, false).unwrap_or_else(|| panic!("response {i}"));
        assert_eq!(res.status, 200);
        assert_eq!(res.body, b"hello, world\n");
        assert_eq!(res.header("connection"), None, "HTTP/1.1 keep-alive needs no header");
    }
    eventually("100 requests counted", || server.stats().requests == 100);
}

#[test]
fn three_pipelined_requests_in_one_write_are_answered_in_order() {
    let server = TestServer::start(|_| {});
    let mut s = server.connect();
    s.write_all(
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /c.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(s);
    for want in [&b"A"[..], b"BB", b"CCC"] {
        assert_eq!(read_response(&mut r, false).unwrap().body, want);
    }
}

/// Without a linger a connection is parked as soon as its buffer is used up. When
/// its last read filled the buffer with whole requests, more may wait on the socket
/// with no new arrival to raise an edge: the park must ask the kernel again (the
/// registration is edge-triggered), or these would wait for the idle timeout.
#[test]
fn pipelined_requests_filling_whole_read_buffers_are_all_answered_without_a_linger() {
    let server = TestServer::start(|c| c.limits.linger = std::time::Duration::ZERO);
    // 64 bytes each: a read buffer holds a whole number of them.
    let one = format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "p".repeat(27));
    assert_eq!(one.len(), 64);
    assert_eq!(threadserve::limits::READ_BUF_BYTES % one.len(), 0);
    let mut s = server.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for round in 0..3 {
        s.write_all(one.repeat(200).as_bytes()).unwrap();
        for i in 0..200 {
            let res = read_response(&mut r, false).unwrap_or_else(|| panic!("round {round}, response {i}"));
            assert_eq!(res.body, b"A");
        }
    }
}

#[test]
fn connection_close_is_honoured_and_announced() {
    let server = TestServer::start(|_| {});
    let mut s = server.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let res = read_response(&mut BufReader::new(s.try_clone().unwrap()), false).unwrap();
    assert_eq!(res.header("connection"), Some("close"));
    assert!(closed(&mut s));
}

#[test]
fn http10_closes_by_default_and_keeps_alive_on_request() {
    let server = TestServer::start(|_| {});
    let mut s = server.connect();
    s.write_all(b"GET /a.txt HTTP/1.0\r\n\r\n").unwrap();
    let res = read_response(&mut BufReader::new(s.try_clone().unwrap()), false).unwrap();
    assert_eq!((res.status, res.header("connection")), (200, Some("close")));
    assert!(closed(&mut s));

    let mut s = server.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        s.write_all(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let res = read_response(&mut r, false).unwrap();
        assert_eq!(res.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn head_sends_the_same_headers_as_get_and_no_body() {
    let server = TestServer::start(|_| {});
    let get = server.get("/hello.txt");
    let mut s = server.connect();
    s.write_all(b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let head = read_response(&mut BufReader::new(s.try_clone().unwrap()), true).unwrap();
    assert!(closed(&mut s), "no body bytes may follow a HEAD response");
    let mut a = get.headers.clone();
    let mut b = head.headers.clone();
    a.remove("date");
    b.remove("date");
    assert_eq!(a, b);
    assert_eq!(head.header("content-length"), Some("13"));
}

#[test]
fn other_methods_get_405_with_allow() {
    let server = TestServer::start(|_| {});
    for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"] {
        let res = server.request(&format!("{method} /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(res.status, 405, "{method}");
        assert_eq!(res.header("allow"), Some("GET, HEAD"), "{method}");
        assert!(res.text().contains("405 Method Not Allowed"));
    }
}

/// RFC 9110 §9.1: a method the server does not recognise is 501, not 405 (405 says the
/// method is known but not allowed for this resource). Methods are case-sensitive, so
/// `get` is not GET.
#[test]
fn unknown_method_is_501() {
    let server = TestServer::start(|_| {});
    for method in ["BOGUS", "get", "BREW", "PROPFIND"] {
        let res = server.request(&format!(
            "{method} /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(res.status, 501, "{method}");
        assert_eq!(res.header("allow"), None, "{method}: Allow belongs to 405");
        assert!(res.text().contains("501 Not Implemented"), "{method}");
    }
}

/// RFC 9110 §2.5: HTTP/1.x with x ≥ 2 is processed as HTTP/1.1 — answered as 1.1 and
/// kept alive like 1.1 (nginx answers 200; this server answered 505).
#[test]
fn http_1_2_is_served_as_1_1() {
    let server = TestServer::start(|_| {});
    let mut s = server.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for (version, want) in [("1.2", &b"A"[..]), ("1.9", b"BB")] {
        let path = if version == "1.2" { "/a.txt" } else { "/b.txt" };
        write!(s, "GET {path} HTTP/{version}\r\nHost: t\r\n\r\n").unwrap();
        let res = read_response(&mut r, false).expect("a response");
        assert_eq!((res.status, res.body.as_slice()), (200, want), "HTTP/{version}");
        assert_eq!(res.header("connection"), None, "HTTP/{version} keeps alive like 1.1");
    }
    let res = server.request("GET / HTTP/2.0\r\nHost: t\r\n\r\n");
    assert_eq!(res.status, 505, "another major version is still 505");
}

/// RFC 9112 §3: a request line that is not `method SP target SP version` is 400, even
/// when it ends in a valid version (this server answered 505 to `G ET / HTTP/1.0`).
#[test]
fn malformed_request_line_is_400() {
    let server = TestServer::start(|_| {});
    for line in ["G ET / HTTP/1.0", "GET /a b HTTP/1.1", "GET / HTTP/1.10"] {
        let mut s = server.connect();
        write!(s, "{line}\r\nHost: t\r\n\r\n").unwrap();
        let res = read_response(&mut BufReader::new(s.try_clone().unwrap()), false).expect("a response");
        assert_eq!((res.status, res.header("connection")), (400, Some("close")), "{line}");
        assert!(closed(&mut s), "{line}: connection left open");
    }
}

/// RFC 9112 §3.2: a Host that is not `host [":" port]`, a missing Host on HTTP/1.1 and
/// two Hosts are 400 (invalid ones were served with 200). The connection closes.
#[test]
fn invalid_host_is_400() {
    let server = TestServer::start(|_| {});
    let heads = [
        "Host: a b\r\n",
        "Host: abc\\foo\r\n",
        "Host: x/y\r\n",
        "Host: ::1\r\n",
        "Host: [::1\r\n",
        "Host: t:http\r\n",
        "Host: u@t\r\n",
        "",
        "Host: t\r\nHost: t\r\n",
    ];
    for host in heads {
        let mut s = server.connect();
        write!(s, "GET /a.txt HTTP/1.1\r\n{host}\r\n").unwrap();
        let res = read_response(&mut BufReader::new(s.try_clone().unwrap()), false).expect("a response");
        assert_eq!((res.status, res.header("connection")), (400, Some("close")), "{host:?}");
        assert!(closed(&mut s), "{host:?}: connection left open");
    }
    for host in ["t", "t:8080", "127.0.0.1", "[::1]:80", ""] {
        let res = server.request(&format!(
            "GET /a.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(res.status, 200, "Host: {host}");
    }
}

/// RFC 9110 §4.2.1/§4.2.4: an http(s) URI with userinfo or an empty or invalid
/// authority is invalid; as a request target it is 400 (it was served).
#[test]
fn absolute_form_with_bad_authority_is_400() {
    let server = TestServer::start(|_| {});
    for target in [
        "http://foo@localhost/a.txt",
        "http:///a.txt",
        "http://localhost::80/a.txt",
        "http://[4712::abcd::]/a.txt",
    ] {
        let res = server.request(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!((res.status, res.header("connection")), (400, Some("close")), "{target}");
    }
    let res = server.request("GET http://[::1]:8080/a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!((res.status, res.body.as_slice()), (200, &b"A"[..]));
}

/// Requests answered with an error and a closed connection: nothing after them on the
/// same connection may be read as another request (smuggling).
#[test]
fn bad_framing_and_heads_are_answered_then_the_connection_closes() {
    let server = TestServer::start(|c| c.limits.max_head_bytes = 4096);
    let many_headers: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let smuggled = "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "post_with_body",
            format!("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello{smuggled}"),
            405,
        ),
        (
            "get_with_body",
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 34\r\n\r\n{smuggled}"),
            413,
        ),
        (
            "chunked",
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            411,
        ),
        (
            "cl_and_te",
            format!("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{smuggled}"),
            400,
        ),
        (
            "differing_cl",
            format!("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{smuggled}"),
            400,
        ),
        (
            "cl_overflow",
            format!("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551616\r\n\r\n{smuggled}"),
            400,
        ),
        (
            "http2_version",
            format!("GET / HTTP/2.0\r\nHost: t\r\n\r\n{smuggled}"),
            505,
        ),
        ("h2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(), 505),
        (
            "garbage",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03\r\n\r\n".to_string(),
            400,
        ),
        ("missing_host", format!("GET / HTTP/1.1\r\n\r\n{smuggled}"), 400),
        (
            "too_many_headers",
            format!("GET / HTTP/1.1\r\nHost: t\r\n{many_headers}\r\n"),
            431,
        ),
        (
            "huge_header",
            format!("GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "a".repeat(5000)),
            431,
        ),
        (
            "huge_request_line",
            format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000)),
            414,
        ),
        (
            "authority_form",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n".to_string(),
            405,
        ),
    ];
    for (name, raw, want) in cases {
        let mut s = server.connect();
        s.write_all(raw.as_bytes()).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let res = read_response(&mut r, false).unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(res.status, want, "{name}");
        if want != 405 || raw.contains("Content-Length") {
            assert_eq!(res.header("connection"), Some("close"), "{name}");
            assert!(
                read_response(&mut r, false).is_none(),
                "{name}: a second response was sent"
            );
        }
    }
    // The server is still fine.
    assert_eq!(server.get("/a.txt").status, 200);
}

#[test]
fn absolute_form_targets_are_accepted_and_queries_ignored() {
    let server = TestServer::start(|_| {});
    let res = server
        .request("GET http://example.com/a.txt?x=../../etc HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
    assert_eq!((res.status, res.text().as_str()), (200, "A"));
    assert_eq!(server.get("/b.txt?download=1#frag").body, b"BB");
}

#[test]
fn ureq_client_sees_standard_headers() {
    let server = TestServer::start(|_| {});
    let res = ureq::get(&format!("http://{}/hello.txt", server.addr)).call().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(res.header("content-length"), Some("13"));
    assert_eq!(res.header("accept-ranges"), Some("bytes"));
    assert!(res.header("server").unwrap().starts_with("threadserve/"));
    assert!(res.header("date").unwrap().ends_with(" GMT"));
    assert!(res.header("last-modified").unwrap().ends_with(" GMT"));
    let etag = res.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "strong ETag: {etag}"
    );
    assert_eq!(res.into_string().unwrap(), "hello, world\n");
}
