//! Issue "files you can trust": one handle from path to bytes, a cache that never
//! lies, listings with bounds. Each test is named for the finding it pins.

use crate::support::{start_line_addr, write, TestServer, BIN};
use std::io::{BufReader, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// One worker, so every request meets the same per-worker cache.
fn one_worker(c: &mut threadserve::config::Config) {
    c.threads = 1;
}

/// Replaces `path` (a directory or file) with a symlink to `target`, keeping the old
/// entry beside it under `.old` so nothing inside the root is lost.
fn swap_for_symlink(path: &std::path::Path, target: &std::path::Path) {
    let old = path.with_extension("old");
    std::fs::rename(path, &old).unwrap();
    symlink(target, path).unwrap();
}

#[test]
fn swapped_symlink_directory_outside_the_root_is_never_listed() {
    let s = TestServer::start(one_worker);
    std::fs::create_dir(s.root().join("d")).unwrap();
    write(&s.root().join("d"), "inside.txt", b"in");
    let first = s.get("/d/");
    assert_eq!(first.status, 200);
    assert!(first.text().contains("inside.txt"));
    // Within the old cache's one-second trust window, swap `d` for a symlink out.
    swap_for_symlink(&s.root().join("d"), &s.tmp.path().join("outside"));
    let second = s.get("/d/");
    assert!(
        !second.text().contains("secret.txt"),
        "outside names listed: {}",
        second.text()
    );
    assert_eq!(second.status, 404);
    // The JSON form too.
    let json = s.get("/d/?format=json");
    assert!(!json.text().contains("secret.txt"));
}

#[test]
fn swapped_symlink_file_outside_the_root_is_never_served() {
    let s = TestServer::start(one_worker);
    assert_eq!(s.get("/hello.txt").status, 200);
    swap_for_symlink(&s.root().join("hello.txt"), &s.tmp.path().join("outside/secret.txt"));
    let r = s.get("/hello.txt");
    assert!(!r.text().contains("SECRET"));
    assert_eq!(r.status, 404);
}

#[test]
fn index_symlink_leaving_the_root_is_not_a_listing() {
    let s = TestServer::start(|_| {});
    std::fs::create_dir(s.root().join("site")).unwrap();
    write(&s.root().join("site"), "private.txt", b"p");
    symlink(
        s.tmp.path().join("outside/secret.txt"),
        s.root().join("site/index.html"),
    )
    .unwrap();
    let r = s.get("/site/");
    assert!(!r.text().contains("private.txt"), "listed: {}", r.text());
    assert!(!r.text().contains("SECRET"));
    assert_eq!(r.status, 403);
}

#[test]
fn index_that_is_not_a_regular_file_is_not_a_listing() {
    let s = TestServer::start(|_| {});
    std::fs::create_dir_all(s.root().join("site/index.html")).unwrap();
    write(&s.root().join("site"), "private.txt", b"p");
    let r = s.get("/site/");
    assert!(!r.text().contains("private.txt"), "listed: {}", r.text());
    assert_eq!(r.status, 403);
}

/// Runs the binary as an unprivileged user (root reads mode-000 files), on `root`.
fn spawn_unprivileged(root: &std::path::Path) -> (std::process::Child, String) {
    spawn_bin(root, true)
}

fn spawn_bin(root: &std::path::Path, unprivileged: bool) -> (std::process::Child, String) {
    let mut cmd = if unprivileged && unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let mut child = cmd
        .arg(root)
        .args(["--port", "0", "--log-format", "off"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = start_line_addr(&mut BufReader::new(child.stdout.take().unwrap()));
    (child, addr)
}

fn get_at(addr: &str, path: &str) -> crate::support::Response {
    crate::support::get_at(addr, path).expect("a response")
}

#[test]
fn unreadable_index_is_403_not_a_listing_and_chmod_shows_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("site")).unwrap();
    write(&root.join("site"), "index.html", b"<h1>site</h1>");
    write(&root.join("site"), "private.txt", b"p");
    write(&root, "f.txt", b"readable");
    for p in [tmp.path(), &root, &root.join("site")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for p in [
        root.join("site/index.html"),
        root.join("site/private.txt"),
        root.join("f.txt"),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (mut child, addr) = spawn_unprivileged(&root);
    assert_eq!(get_at(&addr, "/site/").status, 200);
    assert_eq!(get_at(&addr, "/f.txt").status, 200);
    std::fs::set_permissions(root.join("site/index.html"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(root.join("f.txt"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let r = get_at(&addr, "/site/");
    assert!(!r.text().contains("private.txt"), "listed: {}", r.text());
    assert_eq!(r.status, 403);
    assert_eq!(
        get_at(&addr, "/f.txt").status,
        403,
        "chmod 000 is seen by the next request"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// GETs `path` and returns (status, ETag, Last-Modified, body).
fn fetch(s: &TestServer, raw_extra: &str, path: &str) -> (u16, String, String, Vec<u8>) {
    let r = s.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{raw_extra}Connection: close\r\n\r\n"
    ));
    let etag = r.header("etag").unwrap_or("").to_string();
    let lm = r.header("last-modified").unwrap_or("").to_string();
    (r.status, etag, lm, r.body)
}

fn set_mtime(path: &std::path::Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn rewritten_file_gets_new_validators_at_once() {
    let s = TestServer::start(one_worker);
    let p = s.root().join("v.txt");
    std::fs::write(&p, b"version one").unwrap();
    set_mtime(&p, SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000));
    let (_, etag1, lm1, _) = fetch(&s, "", "/v.txt");
    // Rewrite in place with the same size and a new mtime, within the old 1 s window.
    std::fs::write(&p, b"version two").unwrap();
    set_mtime(&p, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let (status, etag2, lm2, body) = fetch(&s, "", "/v.txt");
    assert_eq!((status, body.as_slice()), (200, &b"version two"[..]));
    assert_ne!(etag1, etag2, "a new ETag with the new bytes");
    assert_ne!(lm1, lm2, "a new Last-Modified with the new bytes");
    // The old validator no longer gets 304.
    let (status, ..) = fetch(&s, &format!("If-None-Match: {etag1}\r\n"), "/v.txt");
    assert_eq!(status, 200, "304 for the old validator");
    // If-Range with the old ETag gets the whole new file, not a stitched range.
    let (status, _, _, body) = fetch(&s, &format!("If-Range: {etag1}\r\nRange: bytes=8-\r\n"), "/v.txt");
    assert_eq!((status, body.as_slice()), (200, &b"version two"[..]));
}

#[test]
fn file_replaced_by_rename_is_served_at_once() {
    let s = TestServer::start(one_worker);
    let p = s.root().join("r.txt");
    std::fs::write(&p, b"old contents").unwrap();
    let (_, etag1, ..) = fetch(&s, "", "/r.txt");
    let tmp = s.root().join("r.tmp");
    std::fs::write(&tmp, b"new contents, longer").unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    let (status, etag2, _, body) = fetch(&s, "", "/r.txt");
    assert_eq!((status, body.as_slice()), (200, &b"new contents, longer"[..]));
    assert_ne!(etag1, etag2);
}

#[test]
fn shrunk_file_gets_its_new_length_at_once() {
    // An inline-cached small file, and a large one sent from its descriptor.
    for (name, before, after) in [("big.bin", 2345, 100), ("large.bin", 200_000, 100_000)] {
        let s = TestServer::start(one_worker);
        let p = s.root().join(name);
        std::fs::write(&p, vec![7u8; before]).unwrap();
        assert_eq!(fetch(&s, "", &format!("/{name}")).3.len(), before);
        std::fs::write(&p, vec![8u8; after]).unwrap();
        let r = s.get(&format!("/{name}"));
        assert_eq!(r.header("content-length"), Some(after.to_string().as_str()));
        assert_eq!(r.body, vec![8u8; after]);
    }
}

#[test]
fn deleted_file_is_404_at_once() {
    let s = TestServer::start(one_worker);
    assert_eq!(s.get("/a.txt").status, 200);
    std::fs::remove_file(s.root().join("a.txt")).unwrap();
    assert_eq!(s.get("/a.txt").status, 404);
}

#[test]
fn range_past_the_old_size_is_served_after_the_file_grew() {
    let s = TestServer::start(one_worker);
    let p = s.root().join("grow.txt");
    std::fs::write(&p, b"0123").unwrap();
    assert_eq!(s.get("/grow.txt").status, 200);
    std::fs::write(&p, b"0123456789").unwrap();
    let (status, _, _, body) = fetch(&s, "Range: bytes=6-8\r\n", "/grow.txt");
    assert_eq!((status, body.as_slice()), (206, &b"678"[..]));
}

#[test]
fn new_precompressed_variant_and_new_index_are_seen_at_once() {
    let s = TestServer::start(one_worker);
    write(&s.root(), "app.js", b"console.log(1)");
    let r = s.request("GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("content-encoding"), None);
    write(&s.root(), "app.js.gz", b"GZ");
    let r = s.request("GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "a new FILE.gz is used at once"
    );
    assert_eq!(s.get("/list/").status, 200);
    write(&s.root().join("list"), "index.html", b"<h1>now an index</h1>");
    assert_eq!(s.get("/list/").body, b"<h1>now an index</h1>");
    std::fs::remove_file(s.root().join("list/index.html")).unwrap();
    assert!(
        s.get("/list/").text().contains("one.bin"),
        "a removed index shows the listing again"
    );
}

/// The `Content-Encoding` a gzip-accepting client gets for `path`, or "".
fn encoding_for_gzip(s: &TestServer, path: &str) -> String {
    let r = s.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(r.status, 200, "{path}");
    r.header("content-encoding").unwrap_or("").to_string()
}

/// Absence is remembered against the directory's version (one `statx` instead of an
/// `openat2` per missing variant): each request made after a variant appears or goes
/// away sees it, however quickly the changes follow each other, and whether it came
/// by a new file, a rename over or a hard link, on this file system and on tmpfs.
#[test]
fn variants_that_come_and_go_between_requests_are_seen_by_each_next_request() {
    let check = |s: &TestServer, dir: &std::path::Path, url: &str| {
        write(dir, "app.js", b"console.log(1)");
        for round in 0..100 {
            assert_eq!(encoding_for_gzip(s, url), "", "round {round}: no variant yet");
            match round % 3 {
                0 => write(dir, "app.js.gz", b"GZ"),
                1 => {
                    write(dir, "tmp", b"GZ");
                    std::fs::rename(dir.join("tmp"), dir.join("app.js.gz")).unwrap();
                }
                _ => {
                    write(dir, "tmp", b"GZ");
                    std::fs::hard_link(dir.join("tmp"), dir.join("app.js.gz")).unwrap();
                    std::fs::remove_file(dir.join("tmp")).unwrap();
                }
            }
            assert_eq!(encoding_for_gzip(s, url), "gzip", "round {round}: the variant appeared");
            std::fs::remove_file(dir.join("app.js.gz")).unwrap();
        }
    };
    let s = TestServer::start(one_worker);
    std::fs::create_dir(s.root().join("v")).unwrap();
    check(&s, &s.root().join("v"), "/v/app.js");
    if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
        let s = TestServer::start(|c| {
            c.threads = 1;
            c.follow_symlinks = true;
        });
        symlink(shm.path(), s.root().join("shm")).unwrap();
        check(&s, shm.path(), "/shm/app.js");
    }
}

/// A name that is a dangling symlink is not absent: once its target appears, the
/// next request is served through it.
#[test]
fn a_variant_behind_a_dangling_symlink_is_used_once_its_target_appears() {
    let s = TestServer::start(one_worker);
    write(&s.root(), "app.js", b"console.log(1)");
    std::fs::create_dir(s.root().join("gz")).unwrap();
    symlink("gz/app.js.gz", s.root().join("app.js.gz")).unwrap();
    assert_eq!(encoding_for_gzip(&s, "/app.js"), "");
    assert_eq!(encoding_for_gzip(&s, "/app.js"), "");
    write(&s.root().join("gz"), "app.js.gz", b"GZ");
    assert_eq!(encoding_for_gzip(&s, "/app.js"), "gzip");
}

#[test]
fn far_future_mtime_is_served_with_a_clamped_last_modified() {
    let s = TestServer::start(|_| {});
    let p = s.root().join("future.txt");
    std::fs::write(&p, b"from the future").unwrap();
    // Year 10001 (ext4 may clamp it; tmpfs, btrfs and xfs keep it).
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(253_433_923_200);
    set_mtime(&p, far);
    let r = s.get("/future.txt");
    assert_eq!(r.status, 200);
    assert!(r.header("last-modified").is_some());
    std::fs::create_dir(s.root().join("fut")).unwrap();
    write(&s.root().join("fut"), "index.html", b"i");
    set_mtime(&s.root().join("fut/index.html"), far);
    assert_eq!(s.get("/fut/").status, 200);
    set_mtime(&p, SystemTime::UNIX_EPOCH + Duration::from_secs(1));
    assert_eq!(s.get("/").status, 200, "a listing with such entries renders");
}

#[test]
fn far_future_mtime_on_tmpfs_is_served_with_a_clamped_last_modified() {
    let Ok(tmp) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    write(tmp.path(), "future.txt", b"x");
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(253_433_923_200);
    set_mtime(&tmp.path().join("future.txt"), far);
    let mut config = threadserve::config::Config::new(threadserve::files::Root::new(tmp.path()).unwrap());
    config.threads = 1;
    let server = threadserve::server::Server::bind(config).unwrap();
    let addr = server.local_addr().to_string();
    let handle = server.handle();
    let join = std::thread::spawn(move || server.run());
    let r = get_at(&addr, "/future.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("last-modified"), Some("Fri, 31 Dec 9999 23:59:59 GMT"));
    let listing = get_at(&addr, "/");
    assert_eq!(listing.status, 200);
    assert!(listing.text().contains("future.txt"));
    handle.shutdown();
    join.join().unwrap().unwrap();
}

/// Descriptors of this process open on `file`.
fn fds_on(file: &std::path::Path) -> usize {
    let dir = std::fs::read_dir("/proc/self/fd").unwrap();
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == file)
        .count()
}

#[test]
fn parked_multipart_response_holds_one_file_descriptor() {
    let s = TestServer::start(|_| {});
    write(&s.root(), "m.bin", &vec![b'm'; 16 << 20]);
    let file = s.root().join("m.bin").canonicalize().unwrap();
    let ranges: Vec<String> = (0..14)
        .map(|i| format!("{}-{}", i << 20, (i << 20) + 1_000_000))
        .collect();
    let raw = format!(
        "GET /m.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={}\r\n\r\n",
        ranges.join(",")
    );
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(raw.as_bytes()).unwrap();
            c
        })
        .collect();
    // Let every response fill its socket buffer and park.
    crate::support::eventually("responses parked", || {
        s.stats().busy_workers == 0 && fds_on(&file) >= 20
    });
    std::thread::sleep(Duration::from_millis(300));
    let held = fds_on(&file);
    // One per parked response, plus at most one per worker's cache (4 workers).
    assert!(
        held <= 20 + 4,
        "{held} descriptors on the file for 20 parked multipart responses"
    );
    drop(clients);
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn slow_readers_of_a_big_listing_do_not_each_hold_its_body() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("huge");
    std::fs::create_dir(&dir).unwrap();
    write(tmp.path(), "a.txt", b"A");
    for i in 0..20_000 {
        std::fs::write(dir.join(format!("entry-with-a-longish-name-{i:06}.txt")), b"").unwrap();
    }
    let (mut child, addr) = spawn_bin(tmp.path(), false);
    let first = get_at(&addr, "/huge/");
    assert!(
        first.body.len() > 3_000_000,
        "a big listing: {} bytes",
        first.body.len()
    );
    let before = rss_kib(child.id());
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /huge/ HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // Meanwhile a small file is answered quickly.
    let t = std::time::Instant::now();
    assert_eq!(get_at(&addr, "/a.txt").status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "small file took {:?}",
        t.elapsed()
    );
    let grown_mib = rss_kib(child.id()).saturating_sub(before) / 1024;
    // 100 copies of a 3+ MB body would be 300+ MiB.
    assert!(grown_mib < 64, "RSS grew {grown_mib} MiB for 100 parked listings");
    drop(clients);
    let _ = child.kill();
    let _ = child.wait();
}

/// Requests while another thread swaps files, directories and symlinks (inside and
/// outside the root) as fast as it can: nothing outside the root is ever served or
/// listed, and no ETag is ever seen with two different bodies.
fn racing_swaps(resolver: threadserve::files::Resolver) {
    let _turn = crate::support::heavy();
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::create_dir_all(outside.join("odir")).unwrap();
    write(&root.join("d"), "in.txt", b"inside");
    write(&outside.join("odir"), "outside-name.txt", b"OUTSIDE BYTES");
    write(&outside, "secret.txt", b"OUTSIDE SECRET");
    write(&root, "f.txt", b"version 0");
    let mut config =
        threadserve::config::Config::new(threadserve::files::Root::with_resolver(&root, resolver).unwrap());
    config.threads = 2;
    let server = threadserve::server::Server::bind(config).unwrap();
    let addr = server.local_addr().to_string();
    let handle = server.handle();
    let join = std::thread::spawn(move || server.run());
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, root, outside) = (Arc::clone(&stop), root.clone(), outside.clone());
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let _ = std::fs::rename(root.join("d"), root.join("d.real"));
                let _ = symlink(outside.join("odir"), root.join("d"));
                let _ = std::fs::remove_file(root.join("d"));
                let _ = std::fs::rename(root.join("d.real"), root.join("d"));
                // A new version of f.txt by rename, with its own length and mtime.
                let tmp_file = root.join("f.tmp");
                std::fs::write(&tmp_file, format!("version {n}{}", "+".repeat((n % 7) as usize))).unwrap();
                set_mtime(
                    &tmp_file,
                    SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + n),
                );
                std::fs::rename(&tmp_file, root.join("f.txt")).unwrap();
                if n % 3 == 0 {
                    let _ = std::fs::remove_file(root.join("f.txt"));
                    let _ = symlink(outside.join("secret.txt"), root.join("f.txt"));
                }
            }
            n
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    let mut requests = 0;
    while std::time::Instant::now() < deadline {
        for path in ["/d/", "/d/?format=json", "/d/in.txt", "/f.txt"] {
            let r = get_at(&addr, path);
            requests += 1;
            let text = r.text();
            assert!(
                !text.contains("OUTSIDE") && !text.contains("outside-name"),
                "{path} leaked: {text}"
            );
            if path == "/f.txt" && r.status == 200 {
                assert!(text.starts_with("version "), "{text}");
                let etag = r.header("etag").unwrap().to_string();
                let prev = seen.entry(etag.clone()).or_insert_with(|| r.body.clone());
                assert_eq!(prev, &r.body, "ETag {etag} seen with two bodies");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100 && requests > 100, "{swaps} swaps, {requests} requests");
    handle.shutdown();
    join.join().unwrap().unwrap();
}

#[test]
fn racing_swaps_never_serve_outside_the_root_nor_mix_versions() {
    racing_swaps(threadserve::files::Resolver::Beneath);
}

#[test]
fn racing_swaps_never_serve_outside_the_root_nor_mix_versions_with_the_walk() {
    racing_swaps(threadserve::files::Resolver::Walk);
}

#[test]
fn sighup_reopens_a_switched_root_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    for (release, text) in [("releases/41", "old release"), ("releases/42", "new release")] {
        std::fs::create_dir_all(tmp.path().join(release)).unwrap();
        write(&tmp.path().join(release), "v.txt", text.as_bytes());
    }
    let current = tmp.path().join("current");
    symlink("releases/41", &current).unwrap();
    let (mut child, addr) = spawn_bin(&current, false);
    assert_eq!(get_at(&addr, "/v.txt").body, b"old release");
    // The usual deploy: a new symlink renamed over `current`.
    symlink("releases/42", tmp.path().join("current.new")).unwrap();
    std::fs::rename(tmp.path().join("current.new"), &current).unwrap();
    std::fs::remove_dir_all(tmp.path().join("releases/41")).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    crate::support::eventually("the new release is served", || {
        get_at(&addr, "/v.txt").body == b"new release"
    });
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP does not stop the server");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn directory_listings_honour_if_none_match_and_if_match() {
    let s = TestServer::start(one_worker);
    let first = s.get("/list/");
    let etag = first.header("etag").expect("a listing has an ETag").to_string();
    for (extra, want) in [
        ("If-None-Match: *\r\n", 304),
        (&*format!("If-None-Match: {etag}\r\n"), 304),
        ("If-None-Match: \"other\"\r\n", 200),
        ("If-Match: \"x\"\r\n", 412),
        (&*format!("If-Match: {etag}\r\n"), 200),
    ] {
        assert_eq!(fetch(&s, extra, "/list/").0, want, "{extra}");
    }
    // A new entry makes a new page with a new tag.
    write(&s.root().join("list"), "two.bin", b"2");
    let second = s.get("/list/");
    assert!(second.text().contains("two.bin"));
    assert_ne!(second.header("etag"), Some(etag.as_str()));
}
