//! Start-up checks of the flags that name response headers and files: a value that
//! cannot work is refused with one clear line on stderr, before anything is served.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_threadserve");

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
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} {env:?}: the server started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
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
