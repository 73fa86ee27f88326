//! Basic auth over real sockets: right, wrong, missing and malformed credentials,
//! unknown users answered like wrong passwords, `$2y$` hashes, the access log, and
//! the flood bound.

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
    let time = |auth: &str| {
        let mut samples: Vec<Duration> = (0..7)
            .map(|_| {
                let t = Instant::now();
                get_with(&s, "/hello.txt", Some(auth));
                t.elapsed()
            })
            .collect();
        samples.sort();
        samples[3]
    };
    let (known, unknown) = (time(&wrong), time(&unknown));
    assert!(
        unknown * 2 > known && known * 2 > unknown,
        "median wrong password {known:?} vs unknown user {unknown:?}: a bcrypt check both ways"
    );
}

/// 8 clients sending wrong passwords as fast as they can for 2 s, on a pool of 4
/// workers with one check slot: a client with valid (cached) credentials keeps being
/// answered. Without the bound the 8 would hold every worker in bcrypt.
#[test]
fn wrong_password_flood_leaves_room_for_valid_clients() {
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
    let flood: Vec<_> = (0..8)
        .map(|i| {
            let (stop, denied, busy) = (stop.clone(), denied.clone(), busy.clone());
            let wrong = format!("Basic {}", basic("alice", &format!("guess{i}")));
            std::thread::spawn(move || {
                let mut c = BufReader::new(TcpStream::connect(addr).unwrap());
                while !stop.load(Ordering::Relaxed) {
                    c.get_mut().write_all(request(&wrong).as_bytes()).unwrap();
                    match read_response(&mut c, false).unwrap().status {
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
    for t in flood {
        t.join().unwrap();
    }
    let (denied, busy) = (denied.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    eprintln!("valid client: {alone:.0} req/s alone, {flooded:.0} req/s under the flood ({denied} checked and denied, {busy} refused with 429)");
    assert!(busy > denied, "most of the flood was refused without a check");
    assert!(
        flooded >= 50.0 && flooded >= alone * 0.05,
        "{flooded:.0} req/s under the flood"
    );
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
