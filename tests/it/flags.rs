//! The flags that name response headers, files and paths: a value that cannot work is
//! refused at start-up with one clear line on stderr, before anything is served; one
//! that works is served as documented.

use crate::support::{exit_within, get_at, start_line_addr, write, TestServer, BIN};
use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs the binary on `root` and returns its stderr if it exits non-zero within 5 s;
/// panics if it starts serving instead (the child is killed first).
fn refused(root: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(BIN)
        .arg(root)
        .args(["--port", "0", "--log-format", "off"])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{args:?} {env:?}: the server started instead of refusing"));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success(), "{args:?}: exit status {status:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line: {stderr}");
    stderr
}

#[test]
fn header_flag_refuses_framing_headers() {
    let dir = tempfile::tempdir().unwrap();
    for header in [
        "Content-Length: 0",
        "transfer-encoding: chunked",
        "Connection: close",
        "Server: x",
        "ETag: \"x\"",
    ] {
        let stderr = refused(dir.path(), &["-H", header], &[]);
        let name = header.split(':').next().unwrap();
        assert!(
            stderr.contains(&format!("{name} cannot be set with --header")),
            "{stderr}"
        );
    }
}

#[test]
fn header_flag_refuses_bare_lf() {
    let dir = tempfile::tempdir().unwrap();
    let smuggle = "X-A: 1\nSet-Cookie: admin=1";
    let stderr = refused(dir.path(), &["-H", smuggle], &[]);
    assert!(stderr.contains("line break"), "{stderr}");
    let stderr = refused(dir.path(), &[], &[("THREADSERVE_HEADER", smuggle)]);
    assert!(stderr.contains("line break"), "{stderr}");
}

/// A server binary started in `cwd`; killed when dropped.
struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(cwd: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .current_dir(cwd)
            .args(args)
            .args(["--port", "0", "--log-format", "off"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = start_line_addr(&mut BufReader::new(child.stdout.take().unwrap()));
        Running { child, addr }
    }

    fn get(&self, path: &str) -> crate::support::Response {
        get_at(&self.addr, path).expect("a response")
    }

    /// Stops the server and returns what it wrote to stderr.
    fn stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        stderr
    }
}

/// `<tmp>/public` with `404.html` and `app/index.html`.
fn public() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("public/app")).unwrap();
    write(&tmp.path().join("public"), "404.html", b"custom not found");
    write(&tmp.path().join("public"), "app/index.html", b"spa shell");
    tmp
}

/// `--404 /srv/www/404.html` (or `public/404.html`) was taken as a URL path, not
/// found, and the built-in page sent without a word.
#[test]
fn not_found_page_accepts_filesystem_path() {
    let tmp = public();
    let abs = tmp.path().join("public/404.html");
    for page in [abs.to_str().unwrap(), "public/404.html", "/404.html"] {
        let server = Running::start(tmp.path(), &["public", "--404", page]);
        let res = server.get("/missing");
        assert_eq!(
            (res.status, res.text().as_str()),
            (404, "custom not found"),
            "--404 {page}"
        );
    }
    let server = Running::start(tmp.path(), &["public", "--fallback", "public/app/index.html"]);
    let res = server.get("/some/route");
    assert_eq!((res.status, res.text().as_str()), (200, "spa shell"));
}

#[test]
fn pages_that_name_no_file_under_the_root_are_refused() {
    let tmp = public();
    write(tmp.path(), "outside.html", b"x");
    let outside = tmp.path().join("outside.html");
    let root = tmp.path().join("public");
    for (flag, value) in [
        ("--404", "/missing.html"),
        ("--404", outside.to_str().unwrap()),
        ("--404", "/app"),
        ("--fallback", "/srv/www/index.html"),
    ] {
        let stderr = refused(&root, &[flag, value], &[]);
        assert!(
            stderr.contains(flag) && stderr.contains("no readable regular file under the root"),
            "{stderr}"
        );
    }
}

#[test]
fn stats_path_without_a_leading_slash_is_refused() {
    let tmp = public();
    let stderr = refused(&tmp.path().join("public"), &["--stats-path", "stats"], &[]);
    assert!(stderr.contains("--stats-path 'stats' must start with '/'"), "{stderr}");
}

#[test]
fn stats_path_that_shadows_a_file_is_warned_about_at_start() {
    let tmp = public();
    let server = Running::start(tmp.path(), &["public", "--stats-path", "/404.html"]);
    assert_eq!(server.get("/404.html").header("content-type"), Some("application/json"));
    let stderr = server.stderr();
    assert!(
        stderr.contains("--stats-path /404.html shadows") && stderr.contains("WARN"),
        "{stderr}"
    );
}

/// The stats match was on the raw target: `/status%2Ejson` bypassed
/// `--stats-path /status.json` and returned the real file it shadows.
#[test]
fn stats_path_matches_decoded_path() {
    let server = TestServer::start(|c| c.stats_path = Some("/status.json".into()));
    write(&server.root(), "status.json", b"the real file");
    for path in [
        "/status.json",
        "/status%2Ejson",
        "/%73tatus.json",
        "/sub/../status.json",
        "//status.json",
    ] {
        let res = server.get(path);
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(
            res.header("content-type"),
            Some("application/json"),
            "{path}: {}",
            res.text()
        );
        assert!(!res.text().contains("the real file"), "{path}");
    }
}
