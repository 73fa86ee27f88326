//! Basic auth over real sockets: right, wrong, missing and malformed credentials,
//! unknown users answered like wrong passwords, `$2y$` hashes, the access log, the
//! flood bound (check slots and the per-address wait), and reload.

use crate::support::{read_response, start_line_addr, Response, TestServer, BIN};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threadserve::auth::Authenticator;

/// `user:password` in base64 (what a client puts after `Basic `).
fn basic(user: &str, password: &str) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An htpasswd file: alice (`$2y$`, as htpasswd -B writes) and bob (`$2b$`).
fn htpasswd(cost: u32) -> String {
    let alice = bcrypt::hash("secret", cost).unwrap().replacen("$2b$", "$2y$", 1);
    let bob = bcrypt::hash("hunter2", cost).unwrap();
    format!("# users\nalice:{alice}\nbob:{bob}\n")
}

fn server(cost: u32, max_checks: usize) -> TestServer {
    let auth = Authenticator::parse(&htpasswd(cost), "test")
        .unwrap()
        .with_max_checks(max_checks);
    TestServer::start(|c| {
        c.auth = Some(Arc::new(auth));
        c.auth_challenge = threadserve::http::auth::challenge("files");
        c.stats_path = Some("/.stats".into());
    })
}

fn get_with(s: &TestServer, path: &str, authorization: Option<&str>) -> Response {
    let header = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    s.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{header}Connection: close\r\n\r\n"
    ))
}

#[test]
fn right_wrong_missing_and_malformed_credentials() {
    let s = server(4, 2);
    let right = format!("Basic {}", basic("alice", "secret"));
    let cases = [
        ("right_2y", Some(right.clone()), 200),
        ("right_2b", Some(format!("Basic {}", basic("bob", "hunter2"))), 200),
        (
            "scheme_case_insensitive",
            Some(format!("basic {}", basic("alice", "secret"))),
            200,
        ),
        ("wrong_password", Some(format!("Basic {}", basic("alice", "nope"))), 401),
        (
            "other_users_password",
            Some(format!("Basic {}", basic("alice", "hunter2"))),
            401,
        ),
        (
            "unknown_user",
            Some(format!("Basic {}", basic("mallory", "secret"))),
            401,
        ),
        ("missing", None, 401),
        ("bad_base64", Some("Basic ***".into()), 401),
        ("no_colon", Some("Basic YWxpY2U=".into()), 401),
        ("bearer", Some("Bearer abc".into()), 401),
        ("empty", Some(String::new()), 401),
    ];
    for (name, auth, want) in cases {
        let r = get_with(&s, "/hello.txt", auth.as_deref());
        assert_eq!(r.status, want, "{name}");
        if want == 401 {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Basic realm=\"files\", charset=\"UTF-8\""),
                "{name}"
            );
        } else {
            assert_eq!(r.text(), "hello, world\n", "{name}");
        }
    }
    assert_eq!(
        get_with(&s, "/nope", None).status,
        401,
        "a missing file is not revealed"
    );
    assert_eq!(get_with(&s, "/nope", Some(&right)).status, 404);
    assert_eq!(
        get_with(&s, "/.stats", None).status,
        200,
        "the stats path needs no password"
    );
}

/// The same answer, byte for byte but the date, and about the same time, whether the
/// user exists or not.
#[test]
fn unknown_user_is_indistinguishable_from_a_wrong_password() {
    // It times requests: not while the heavy tests load the machine.
    let _turn = crate::support::heavy();
    let s = server(8, 4);
    let wrong = format!("Basic {}", basic("alice", "guess"));
    let unknown = format!("Basic {}", basic("nobody", "guess"));
    let strip = |mut r: Response| {
        r.headers.remove("date");
        (r.status, r.headers, r.body)
    };
    assert_eq!(
        strip(get_with(&s, "/hello.txt", Some(&wrong))),
        strip(get_with(&s, "/hello.txt", Some(&unknown)))
    );
    // Each sample from its own address, so the per-address bound never holds one.
    let time = |auth: &str, first: u8| {
        let mut samples: Vec<Duration> = (first..first + 7)
            .map(|source| {
                let t = Instant::now();
                get_from(&s, source, auth);
                t.elapsed()
            })
            .collect();
        samples.sort();
        samples[3]
    };
    let (known, unknown) = (time(&wrong, 30), time(&unknown, 40));
    assert!(
        unknown * 2 > known && known * 2 > unknown,
        "median wrong password {known:?} vs unknown user {unknown:?}: a bcrypt check both ways"
    );
}

/// 64 connections sending wrong passwords as fast as they can for 2 s, from the
/// address a client with valid (cached) credentials also uses, on a pool of 4
/// workers: that client keeps at least half its rate. The flood's attempts wait in
/// the idle watcher between checks instead of taking turns on the workers, and pay
/// a handful of bcrypt checks. (Before the per-address bound, the flood's instant
/// 429s took 64 of every 65 turns.)
#[test]
fn wrong_password_flood_leaves_half_the_rate_to_valid_clients() {
    let _turn = crate::support::heavy();
    let s = server(10, 1);
    let addr = s.addr;
    let good = format!("Basic {}", basic("alice", "secret"));
    let request = |auth: &str| format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\n\r\n");
    let rate = |secs: f64| {
        let mut c = BufReader::new(s.connect());
        let (start, mut n) = (Instant::now(), 0u64);
        while start.elapsed().as_secs_f64() < secs {
            c.get_mut().write_all(request(&good).as_bytes()).unwrap();
            assert_eq!(read_response(&mut c, false).unwrap().status, 200);
            n += 1;
        }
        n as f64 / secs
    };
    rate(0.2); // the one bcrypt check, then cached
    let alone = rate(1.0);
    let stop = Arc::new(AtomicBool::new(false));
    let (denied, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let conns: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let flood: Vec<_> = (conns.iter().enumerate())
        .map(|(i, c)| {
            let (stop, denied, busy) = (stop.clone(), denied.clone(), busy.clone());
            let wrong = format!("Basic {}", basic("alice", &format!("guess{i}")));
            let mut c = BufReader::new(c.try_clone().unwrap());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if c.get_mut().write_all(request(&wrong).as_bytes()).is_err() {
                        break;
                    }
                    // None: the test shut the connection down while it was held.
                    let Some(r) = read_response(&mut c, false) else { break };
                    match r.status {
                        401 => denied.fetch_add(1, Ordering::Relaxed),
                        429 => busy.fetch_add(1, Ordering::Relaxed),
                        s => panic!("flood got {s}"),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let flooded = rate(2.0);
    stop.store(true, Ordering::Relaxed);
    let (denied, busy) = (denied.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    for c in &conns {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
    for t in flood {
        t.join().unwrap();
    }
    eprintln!("valid client: {alone:.0} req/s alone, {flooded:.0} req/s under the flood ({denied} checked and denied, {busy} refused with 429)");
    assert!(
        flooded >= alone * 0.5,
        "{flooded:.0} req/s under the flood, {alone:.0} alone"
    );
    assert!(
        denied + busy <= 32,
        "the flood's address was checked {denied} times, refused {busy}"
    );
}

/// A request with these credentials from `127.0.0.source`, on its own connection.
fn get_from(s: &TestServer, source: u8, authorization: &str) -> Response {
    let mut c = s.connect_from(std::net::Ipv4Addr::new(127, 0, 0, source));
    write!(
        c,
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut BufReader::new(c), false).unwrap()
}

/// alice's `Authorization` values with a wrong password and with the right one.
fn wrong_and_right() -> (String, String) {
    (
        format!("Basic {}", basic("alice", "nope")),
        format!("Basic {}", basic("alice", "secret")),
    )
}

/// An address gets its first failures answered at once; past them, its next attempt
/// waits (in the idle watcher: the workers go on serving others), and is then checked
/// for real: the right password after a few wrong ones gets in, and is forgiven.
#[test]
fn an_address_that_keeps_failing_waits_then_is_checked() {
    let s = server(4, 2);
    let (wrong, right) = wrong_and_right();
    let timed = |source: u8, auth: &str| {
        let t = Instant::now();
        let status = get_from(&s, source, auth).status;
        (status, t.elapsed())
    };
    let fail_freely = |source: u8| {
        for i in 0..4 {
            let (status, took) = timed(source, &wrong);
            assert_eq!(status, 401);
            assert!(
                took < Duration::from_millis(200),
                "failure {i} answered at once: {took:?}"
            );
        }
    };
    fail_freely(20);
    let (status, took) = timed(20, &wrong);
    assert_eq!(status, 401);
    assert!(took >= Duration::from_millis(200), "the next waits: {took:?}");
    // 5 failures: the next check comes 0.5 s after the last.
    std::thread::sleep(Duration::from_millis(600));
    let (status, took) = timed(20, &right);
    assert_eq!(status, 200, "the right password, checked after the wait");
    assert!(took < Duration::from_millis(200), "{took:?}");
    let (status, took) = timed(20, &wrong);
    assert_eq!(status, 401);
    assert!(took < Duration::from_millis(200), "forgiven after a success: {took:?}");
    // Held attempts wait in the watcher, not on the 4 workers: with 12 of them
    // waiting, another client is still answered at once.
    fail_freely(22);
    let _held: Vec<_> = (0..12)
        .map(|_| {
            let mut c = s.connect_from(std::net::Ipv4Addr::new(127, 0, 0, 22));
            write!(
                c,
                "GET /hello.txt HTTP/1.1\r\nHost: t\r\nAuthorization: {wrong}\r\n\r\n"
            )
            .unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        let (status, took) = timed(21, &right);
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(200),
            "others are served meanwhile: {took:?}"
        );
    }
}

/// Parked connections are registered with the idle watcher once, edge-triggered, so
/// input that arrives while a request is held raises an event too: the held request
/// still waits its time, and the input that came is answered after it.
#[test]
fn a_held_request_waits_its_time_even_when_its_client_sends_more() {
    let auth = Authenticator::parse(&htpasswd(4), "test").unwrap().with_max_checks(2);
    let s = TestServer::start(|c| {
        c.auth = Some(Arc::new(auth));
        c.auth_challenge = threadserve::http::auth::challenge("files");
        // No linger: every connection is parked (and so registered) between requests.
        c.limits.linger = Duration::ZERO;
    });
    let (wrong, right) = wrong_and_right();
    let mut c = s.connect_from(std::net::Ipv4Addr::new(127, 0, 0, 30));
    let mut r = BufReader::new(c.try_clone().unwrap());
    let request = |auth: &str| format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\n\r\n");
    for _ in 0..4 {
        c.write_all(request(&wrong).as_bytes()).unwrap();
        assert_eq!(read_response(&mut r, false).unwrap().status, 401);
        // Long enough for the connection to reach the idle watcher.
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    c.write_all(request(&wrong).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.write_all(request(&right).as_bytes()).unwrap();
    let held = read_response(&mut r, false).unwrap();
    let took = t.elapsed();
    assert_eq!(held.status, 401);
    assert!(
        took >= Duration::from_millis(200),
        "the held request was answered early: {took:?}"
    );
    assert_eq!(
        read_response(&mut r, false).unwrap().status,
        200,
        "then the one sent meanwhile"
    );
}

/// Credentials that passed before pass at once from an address that is held.
#[test]
fn cached_credentials_pass_at_once_from_an_address_being_held() {
    let s = server(4, 2);
    let (wrong, right) = wrong_and_right();
    assert_eq!(get_from(&s, 25, &right).status, 200);
    for _ in 0..5 {
        assert_eq!(get_from(&s, 25, &wrong).status, 401);
    }
    let t = Instant::now();
    assert_eq!(get_from(&s, 25, &right).status, 200);
    assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
}

/// SIGHUP reads the auth file again: a changed password works and the old one stops
/// (the credential cache starts over); a file that no longer loads keeps the users
/// the server had.
#[test]
fn sighup_rereads_the_auth_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("htpasswd");
    let write = |password: &str| {
        let hash = bcrypt::hash(password, 4).unwrap();
        std::fs::write(&file, format!("alice:{hash}\n")).unwrap();
    };
    write("old");
    let auth = Authenticator::load(&file).unwrap();
    let s = TestServer::start(|c| c.auth = Some(Arc::new(auth)));
    let (old, new) = (
        format!("Basic {}", basic("alice", "old")),
        format!("Basic {}", basic("alice", "new")),
    );
    assert_eq!(get_from(&s, 26, &old).status, 200);
    write("new");
    s.handle.reload();
    assert_eq!(get_from(&s, 27, &old).status, 401, "the cached old password is gone");
    assert_eq!(get_from(&s, 27, &new).status, 200);
    std::fs::write(&file, "alice:plaintext\n").unwrap();
    s.handle.reload();
    assert_eq!(get_from(&s, 27, &new).status, 200, "a broken file keeps the old users");
}

/// Neither the password nor the header's base64 reaches the access log.
#[test]
fn credentials_never_reach_the_access_log() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("htpasswd");
    std::fs::write(&file, htpasswd(4)).unwrap();
    std::fs::write(tmp.path().join("f.txt"), "f").unwrap();
    for format in ["json", "combined"] {
        let mut child = Command::new(BIN)
            .arg(tmp.path())
            .args(["--port", "0", "--log-format", format, "--auth-file"])
            .arg(&file)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let addr = start_line_addr(&mut stdout);
        let mut lines = Vec::new();
        for (user, pass) in [("alice", "secret"), ("alice", "wrongpass")] {
            let token = basic(user, pass);
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "GET /f.txt HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            read_response(&mut BufReader::new(s), false).unwrap();
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            assert!(!line.contains(&token) && !line.contains(pass), "{format}: {line}");
            lines.push(line);
        }
        assert!(lines[0].contains(" 200 ") || lines[0].contains("200"), "{lines:?}");
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn auth_file_errors_name_the_line_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("htpasswd");
    let good = bcrypt::hash("x", 4).unwrap();
    for (content, want) in [
        (
            format!("a:{good}\nb:plaintext\n"),
            "line 2: user 'b': a plaintext password",
        ),
        (
            format!("\na:$apr1$x$y\nb:{good}\n"),
            "line 2: user 'a': an MD5 (apr1) hash",
        ),
        ("".to_string(), "lists no users"),
    ] {
        std::fs::write(&file, &content).unwrap();
        let out = Command::new(BIN)
            .arg(tmp.path())
            .arg("--auth-file")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{content:?}: {err}");
        assert!(
            !err.contains("plaintext\n") && !err.contains("$apr1$"),
            "never echoes the entry: {err}"
        );
    }
}
