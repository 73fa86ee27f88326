//! The `--config` file through the binary: each error, precedence, the example, and
//! each rule type over real sockets (index.html and listing cases included).

use crate::support::{read_response, start_line_addr, write, Response, BIN};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// The binary without any THREADSERVE_* variable of the test's environment.
fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("THREADSERVE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// `--check-config` over a root and a config file holding `toml`.
fn check(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("site.toml");
    std::fs::write(&file, toml).unwrap();
    let mut cmd = bin();
    cmd.arg(tmp.path())
        .arg("--config")
        .arg(&file)
        .arg("--check-config")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_errors_name_the_key_and_the_line() {
    #[rustfmt::skip]
    let cases = [
        ("unknown_key", "threads = 2\n\ncolour = true\n", "line 3: unknown key 'colour'"),
        ("wrong_type", "\nthreads = \"many\"\n", "line 2: 'threads' must be an integer, not a string"),
        ("wrong_type_bool", "cors = 1\n", "line 1: 'cors' must be a boolean, not an integer"),
        ("not_an_array", "header = \"X-A: 1\"\n", "line 1: 'header' must be an array of strings"),
        ("bad_value", "\n\nthreads = 99999\n", "line 3: bad value for 'threads'"),
        ("bad_duration", "head-timeout = \"ten\"\n", "line 1: bad value for 'head-timeout'"),
        ("bad_enum", "log-format = \"xml\"\n", "line 1: bad value for 'log-format'"),
        ("bad_header", "\nheader = [\"Date: x\"]\n", "set by 'header' on line 2"),
        ("syntax", "threads = = 2\n", "line 1"),
        ("rule_unknown_field", "[[rule]]\npath = \"a\"\ncache = \"x\"\n", "line 3: unknown field `cache`"),
        ("rule_wrong_type", "[[rule]]\npath = \"a\"\nauth = \"yes\"\n", "line 3: invalid type"),
        ("rule_bad_status", "[[rule]]\npath = \"a\"\nredirect = { to = \"/b\", status = 303 }\n", "line 1: [[rule]]: redirect status 303"),
        ("rule_auth_without_file", "[[rule]]\npath = \"a\"\nauth = true\n", "no --auth-file"),
    ];
    for (name, toml, want) in cases {
        let out = check(toml, &[], &[]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{name}: accepted");
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
    }
}

/// default < config file < environment < command line, one key each way.
#[test]
fn precedence_is_default_file_env_flag() {
    let toml = "threads = 3\nqueue-depth = 7\n";
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&[&str], Env, &str); 4] = [
        (&[], &[], "threads = 3  # config file line 1"),
        (&[], &[("THREADSERVE_THREADS", "5")], "threads = 5  # environment"),
        (
            &["--threads", "9"],
            &[("THREADSERVE_THREADS", "5")],
            "threads = 9  # command line",
        ),
        (&["--threads", "9"], &[], "threads = 9  # command line"),
    ];
    for (args, env, want) in cases {
        let out = check(toml, args, env);
        let report = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(report.contains(want), "{args:?} {env:?}: {report}");
        assert!(report.contains("queue-depth = 7  # config file line 2"), "{report}");
        assert!(report.contains("max-connections = 10000  # default"), "{report}");
    }
    let out = check("", &[], &[("THREADSERVE_CONFIG", "/nonexistent.toml")]);
    assert!(
        out.status.success(),
        "--config on the command line wins over THREADSERVE_CONFIG"
    );
}

#[test]
fn shipped_example_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/threadserve.toml");
    let out = bin()
        .arg("--config")
        .arg(&example)
        .arg("--check-config")
        .output()
        .unwrap();
    let report = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(report.contains("bind = \"0.0.0.0:8080\"  # config file"), "{report}");
    assert!(report.contains("[[rule]] path = \"docs/*\""), "{report}");
    assert!(report.ends_with("# the configuration is valid\n"), "{report}");
}

/// A server started with `--config` holding `toml`, over a root with docs/ (an
/// index.html), list/ (no index), old/ and a.txt.
struct Served {
    child: Child,
    addr: String,
    _tmp: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(toml: &str) -> Served {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    for d in ["docs", "list", "old"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    write(&root, "docs/index.html", b"<h1>docs</h1>");
    write(&root, "docs/a.txt", b"doc a");
    write(&root, "list/x.txt", b"x");
    write(&root, "a.txt", b"A");
    write(&root, "app.js", b"js");
    let file = tmp.path().join("site.toml");
    std::fs::write(&file, toml).unwrap();
    let mut child = bin()
        .arg(&root)
        .args(["--port", "0", "--log-format", "off", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let addr = start_line_addr(&mut stdout);
    Served { child, addr, _tmp: tmp }
}

fn get(addr: &str, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    read_response(&mut BufReader::new(s), false).expect("a response")
}

const RULES: &str = r#"
cache-control = "max-age=60"
header = ["X-Frame-Options: DENY"]
immutable-pattern = ["*.js"]

[[rule]]
path = "docs/*"
headers = { "X-Robots-Tag" = "noindex", "X-Frame-Options" = "SAMEORIGIN" }
cache-control = "no-cache"

[[rule]]
path = "docs/a.txt"
headers = { "X-Robots-Tag" = "all" }

[[rule]]
path = "list"
cache-control = "max-age=5"

[[rule]]
path = "*.js"
cache-control = "no-store"

[[rule]]
path = "old/*"
redirect = { to = "/docs/", status = 301 }

[[rule]]
path = "moved"
redirect = { to = "https://example.com/", status = 302 }

[[rule]]
path = "tmp/*"
redirect = { to = "/a.txt" }
"#;

#[test]
fn each_rule_type_over_sockets() {
    let s = serve(RULES);
    #[rustfmt::skip]
    let cases: &[(&str, u16, &str, Option<&str>)] = &[
        ("/docs/", 200, "x-robots-tag", Some("noindex")),
        ("/docs/", 200, "cache-control", Some("no-cache")),
        ("/docs/", 200, "x-frame-options", Some("SAMEORIGIN")),
        ("/docs/index.html", 200, "x-robots-tag", Some("noindex")),
        ("/docs/index.html", 200, "cache-control", Some("no-cache")),
        ("/docs/a.txt", 200, "x-robots-tag", Some("all")),
        ("/docs/a.txt", 200, "cache-control", Some("no-cache")),
        ("/docs", 301, "x-robots-tag", Some("noindex")),
        ("/list/", 200, "cache-control", Some("max-age=5")),
        ("/list/x.txt", 200, "cache-control", Some("max-age=60")),
        ("/app.js", 200, "cache-control", Some("no-store")),
        ("/a.txt", 200, "cache-control", Some("max-age=60")),
        ("/a.txt", 200, "x-frame-options", Some("DENY")),
        ("/a.txt", 200, "x-robots-tag", None),
        ("/old/page.html", 301, "location", Some("/docs/")),
        ("/old/", 301, "location", Some("/docs/")),
        ("/moved", 302, "location", Some("https://example.com/")),
        ("/tmp/x", 307, "location", Some("/a.txt")),
    ];
    for &(path, status, name, want) in cases {
        let r = get(&s.addr, path);
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header(name), want, "{path}: {name}");
    }
    assert!(get(&s.addr, "/list/").text().contains("x.txt"), "the listing itself");
}
