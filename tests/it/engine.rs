//! The engine: timeouts, idle connections, load shedding, panics, shrinking files.

use crate::support::{closed, eventually, read_response, write, TestServer};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn trickling_client_is_cut_off_by_the_head_deadline_without_pinning_a_worker() {
    let server = TestServer::start(|c| {
        c.threads = 1;
        c.limits.head_timeout = Duration::from_secs(2);
    });
    let mut slow = server.connect();
    let started = Instant::now();
    let request = b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for (i, byte) in request.iter().enumerate() {
        if slow.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        if i == 1 {
            // Meanwhile the only worker is free for others.
            let t = Instant::now();
            assert_eq!(server.get("/a.txt").status, 200);
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "worker pinned by a slow client"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        cut || text.starts_with("HTTP/1.1 408 "),
        "expected a 408 and close, got {text:?}"
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "cut off after {elapsed:?}");
}

#[test]
fn idle_keep_alive_connections_do_not_pin_workers_and_time_out() {
    let server = TestServer::start(|c| {
        c.threads = 1;
        c.limits.idle_timeout = Duration::from_millis(800);
    });
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = server.connect();
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let res = read_response(&mut BufReader::new(s.try_clone().unwrap()), false).unwrap();
        assert_eq!(res.status, 200);
        idle.push(s);
    }
    let t = Instant::now();
    assert_eq!(server.get("/b.txt").status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "one worker, 20 idle connections: {:?}",
        t.elapsed()
    );
    eventually("20 open", || server.stats().open_connections == 20);
    for s in &mut idle {
        assert!(closed(s), "idle connection not closed after the idle timeout");
    }
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(server.stats().open_connections, 0);
}

/// A client that has begun a head, holding its connection (and a slot) open.
fn partial_head(server: &TestServer) -> TcpStream {
    let mut s = server.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\n").unwrap();
    s
}

/// Until it sends its first byte a connection waits in the kernel (`TCP_DEFER_ACCEPT`),
/// not in the server: it takes no slot, so silent connections cannot fill the server.
#[test]
fn silent_connections_take_no_connection_slot() {
    let server = TestServer::start(|c| c.limits.max_connections = 2);
    let _silent: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.get("/a.txt").status, 200, "silent connections took the slots");
    assert_eq!(server.stats().open_connections, 0);
}

/// A connection that never sends a byte got a 408 at the head deadline; a browser's
/// speculative preconnect would then read an answer to a request it never made (or
/// take it for the answer to its next one). It is closed silently, as nginx and
/// darkhttpd do, at the same deadline, counted from when the kernel hands it over
/// (`DEFER_ACCEPT`, one second after the handshake).
#[test]
fn silent_connection_is_closed_without_408() {
    let server = TestServer::start(|c| c.limits.head_timeout = Duration::from_millis(500));
    let t = Instant::now();
    let mut s = server.connect();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "",
        "nothing may be sent to a silent client"
    );
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}, not at the head deadline (1 s deferred + 500 ms)"
    );
    eventually("connection closed", || server.stats().open_connections == 0);
}

/// The 408 is for a client that started a head and did not finish it in time.
#[test]
fn partial_head_gets_408_at_the_head_deadline() {
    let server = TestServer::start(|c| c.limits.head_timeout = Duration::from_millis(500));
    for partial in ["GET /a.txt HTTP/1.1\r\nHost: t\r\n", "\r\n"] {
        let mut s = server.connect();
        s.write_all(partial.as_bytes()).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout"),
            "{partial:?}: {text:?}"
        );
    }
}

/// Between requests a keep-alive connection times out silently; a next head left
/// unfinished after a pipelined request is mid-head, so it gets the head deadline and
/// a 408, not the idle timeout.
#[test]
fn keep_alive_connections_close_silently_unless_mid_head() {
    let server = TestServer::start(|c| {
        c.limits.head_timeout = Duration::from_millis(500);
        c.limits.idle_timeout = Duration::from_millis(800);
    });
    let mut s = server.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "",
        "an idle keep-alive connection closes silently"
    );

    let t = Instant::now();
    let mut s = server.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /b.txt HTTP/1.1\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
    assert!(rest.starts_with("HTTP/1.1 408 "), "{rest:?}");
    assert!(
        t.elapsed() < Duration::from_millis(790),
        "head deadline, not idle timeout: {:?}",
        t.elapsed()
    );
}

/// A file large enough that a client that does not read keeps a worker writing.
fn big_file(server: &TestServer, name: &str, len: usize) {
    write(&server.root(), name, &vec![b'x'; len]);
}

#[test]
fn full_queue_sheds_load_with_503_and_retry_after() {
    // The only worker lingers (up to 5 s) on a keep-alive client that went quiet, so
    // the next connection waits in the queue and the one after that is shed.
    let server = TestServer::start(|c| {
        c.threads = 1;
        c.limits.queue_depth = 1;
        c.limits.linger = Duration::from_secs(5);
    });
    let mut quiet = server.connect();
    quiet.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut BufReader::new(quiet.try_clone().unwrap()), false).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Started a head: a connection that has sent nothing is not accepted yet.
    let _queued = partial_head(&server);
    std::thread::sleep(Duration::from_millis(100));
    let res = server.get("/a.txt");
    assert_eq!(res.status, 503);
    assert_eq!(res.header("retry-after"), Some("1"));
    assert_eq!(res.header("connection"), Some("close"));
    assert!(server.stats().shed_connections >= 1);
}

#[test]
fn a_client_that_stops_reading_a_download_does_not_pin_the_only_worker() {
    let server = TestServer::start(|c| c.threads = 1);
    big_file(&server, "big.bin", 64 << 20);
    let mut hog = server.connect();
    hog.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert_eq!(server.get("/a.txt").status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "worker pinned by a reader that stopped"
    );
    // The parked download resumes when its client reads again, byte-exact.
    let mut r = BufReader::new(hog);
    let res = read_response(&mut r, false).unwrap();
    assert_eq!(res.body.len(), 64 << 20);
    assert!(res.body.iter().all(|&b| b == b'x'));
}

#[test]
fn connection_limit_answers_503_fast() {
    let server = TestServer::start(|c| c.limits.max_connections = 2);
    let _a = partial_head(&server);
    let _b = partial_head(&server);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let res = server.get("/a.txt");
    assert_eq!(res.status, 503);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
// The panic hook exists in debug builds only (see server::execute::test_hook).
#[cfg_attr(not(debug_assertions), ignore)]
fn a_panic_in_a_request_is_a_500_and_the_worker_keeps_serving() {
    let server = TestServer::start(|c| {
        c.threads = 1;
        c.panic_path = Some("/boom".into());
    });
    let mut s = server.connect();
    s.write_all(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let res = read_response(&mut r, false).unwrap();
    assert_eq!(res.status, 500);
    assert_eq!(res.header("connection"), Some("close"));
    assert!(closed(&mut s));
    for _ in 0..3 {
        assert_eq!(server.get("/a.txt").status, 200, "the one worker survived");
    }
    eventually("one 5xx counted", || server.stats().status.c5 == 1);
}

#[test]
fn a_file_that_shrinks_while_sent_ends_the_connection_cleanly() {
    let server = TestServer::start(|_| {});
    big_file(&server, "shrink.bin", 32 << 20);
    let mut s = server.connect();
    s.write_all(b"GET /shrink.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut first = [0u8; 4096];
    s.read_exact(&mut first).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(server.root().join("shrink.bin"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let t = Instant::now();
    let mut total = first.len();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < (32 << 20) + 4096, "got {total} bytes");
    assert!(t.elapsed() < Duration::from_secs(5), "hung after the file shrank");
    assert_eq!(server.get("/a.txt").status, 200);
}

#[test]
fn shutdown_ends_at_the_grace_period_even_with_a_parked_slow_reader() {
    let server = TestServer::start(|c| c.limits.grace_period = Duration::from_secs(1));
    big_file(&server, "big.bin", 64 << 20);
    let mut slow = server.connect();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200)); // the response is parked by now
    let t = Instant::now();
    server.stop();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "did not wait for the in-flight response: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "waited past the grace period: {took:?}");
}

#[test]
fn shutdown_closes_idle_connections_and_returns_counters() {
    let server = TestServer::start(|_| {});
    let mut s = server.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut BufReader::new(s.try_clone().unwrap()), false).unwrap();
    let t = Instant::now();
    let snapshot = server.stop();
    assert!(t.elapsed() < Duration::from_secs(2), "shutdown took {:?}", t.elapsed());
    assert_eq!(snapshot.requests, 1);
    assert!(closed(&mut s));
}

#[test]
fn stats_path_reports_counters_as_json() {
    let server = TestServer::start(|c| c.stats_path = Some("/.stats".into()));
    server.get("/a.txt");
    server.get("/missing");
    eventually("two requests counted", || server.stats().requests == 2);
    let res = server.get("/.stats");
    assert_eq!(res.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(v["requests"], 2);
    assert_eq!(v["status"]["2xx"], 1);
    assert_eq!(v["status"]["4xx"], 1);
    assert_eq!(v["busy_workers"], 1, "the worker answering counts itself");
}

#[test]
fn huge_timeouts_in_a_config_never_overflow_an_instant() {
    // The flags refuse such values; a Config built in code must still not panic the
    // accept loop or a worker when a deadline is computed from them.
    let server = TestServer::start(|c| {
        c.limits.head_timeout = Duration::MAX;
        c.limits.idle_timeout = Duration::MAX;
        c.limits.write_timeout = Duration::MAX;
        c.limits.grace_period = Duration::MAX;
    });
    big_file(&server, "big.bin", 8 << 20);
    let mut s = server.connect();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Not reading for a while makes the big response block and wait with a deadline.
    std::thread::sleep(Duration::from_millis(300));
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    assert_eq!(read_response(&mut r, false).unwrap().body.len(), 8 << 20);
    assert_eq!(server.get("/a.txt").status, 200);
    let t = Instant::now();
    drop(r);
    server.stop();
    assert!(t.elapsed() < Duration::from_secs(3), "shutdown took {:?}", t.elapsed());
}
