//! Path resolution, symlinks, dotfiles, directories and listings over real sockets.

use crate::support::{write, TestServer};
use std::os::unix::fs::symlink;

const SECRET: &str = "TOP SECRET";

#[test]
fn traversal_attempts_never_leave_the_root() {
    let server = TestServer::start(|_| {});
    let attempts = [
        ("/../outside/secret.txt", 400),
        ("/sub/../../outside/secret.txt", 400),
        ("/%2e%2e/outside/secret.txt", 400),
        ("/%2E%2E/outside/secret.txt", 400),
        ("/sub/%2e%2e/%2e%2e/outside/secret.txt", 400),
        ("/..%2foutside%2fsecret.txt", 400),
        ("/..%5coutside%5csecret.txt", 400),
        ("/hello.txt%00.html", 400),
        ("/%252e%252e/outside/secret.txt", 404),
        ("/%25252e%25252e/outside/secret.txt", 404),
        ("/%c0%ae%c0%ae/outside/secret.txt", 400),
        ("/.%2e/outside/secret.txt", 400),
        ("//outside/secret.txt", 404),
    ];
    for (path, want) in attempts {
        let res = server.get(path);
        assert_eq!(res.status, want, "{path}");
        assert!(!res.text().contains(SECRET), "{path} leaked the secret");
    }
}

#[test]
fn dotdot_inside_the_root_is_normalised() {
    let server = TestServer::start(|_| {});
    assert_eq!(server.get("/sub/../a.txt").body, b"A");
}

#[test]
fn symlink_leaving_the_root_is_404_unless_following_is_enabled() {
    for follow in [false, true] {
        let server = TestServer::start(|c| c.follow_symlinks = follow);
        let outside = server.tmp.path().join("outside");
        symlink(outside.join("secret.txt"), server.root().join("link.txt")).unwrap();
        symlink(&outside, server.root().join("linkdir")).unwrap();
        symlink(server.root().join("a.txt"), server.root().join("inside.txt")).unwrap();
        for path in ["/link.txt", "/linkdir/secret.txt"] {
            let res = server.get(path);
            if follow {
                assert_eq!(res.status, 200, "{path}");
                assert!(res.text().contains(SECRET));
            } else {
                assert_eq!(res.status, 404, "{path}");
                assert!(!res.text().contains(SECRET));
            }
        }
        assert_eq!(
            server.get("/inside.txt").body,
            b"A",
            "a symlink inside the root is served"
        );
        let listing = server.get("/").text();
        assert_eq!(
            listing.contains("link.txt"),
            follow,
            "listing shows escaping links only when followed"
        );
        assert!(listing.contains("inside.txt"));
    }
}

#[test]
fn dotfiles_are_404_unless_enabled() {
    let server = TestServer::start(|_| {});
    std::fs::create_dir(server.root().join(".git")).unwrap();
    write(&server.root(), ".git/config", b"x");
    assert_eq!(server.get("/.env").status, 404);
    assert_eq!(server.get("/.git/config").status, 404);
    assert!(!server.get("/").text().contains(".env"));
    let server = TestServer::start(|c| c.dotfiles = true);
    assert_eq!(server.get("/.env").body, b"SECRET=1\n");
    assert!(server.get("/").text().contains(".env"));
}

#[test]
fn directory_without_slash_redirects_keeping_the_query() {
    let server = TestServer::start(|_| {});
    let res = server.get("/sub?x=1&y=2");
    assert_eq!(res.status, 301);
    assert_eq!(res.header("location"), Some("/sub/?x=1&y=2"));
    std::fs::create_dir(server.root().join("a b")).unwrap();
    assert_eq!(server.get("/a%20b").header("location"), Some("/a%20b/"));
    // A protocol-relative path can never become an off-site redirect.
    std::fs::create_dir(server.root().join("evil.example")).unwrap();
    assert_eq!(server.get("//evil.example").header("location"), Some("/evil.example/"));
}

#[test]
fn directory_with_index_html_serves_it() {
    let server = TestServer::start(|_| {});
    let res = server.get("/sub/");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(res.body, b"<h1>sub</h1>\n");
}

#[test]
fn listing_escapes_names_and_sorts_directories_first() {
    let server = TestServer::start(|_| {});
    let list = server.root().join("list");
    write(&list, "<script>alert(1)", b"x");
    write(&list, "a&b.txt", b"x");
    std::fs::create_dir(list.join("zdir")).unwrap();
    let res = server.get("/list/");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    let html = res.text();
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains(">&lt;script&gt;alert(1)</a>"), "{html}");
    assert!(html.contains("href=\"./%3Cscript%3Ealert(1)\""));
    assert!(html.contains("href=\"./a%26b.txt\">a&amp;b.txt<"));
    let zdir = html.find("zdir/").unwrap();
    assert!(zdir < html.find("a&amp;b.txt").unwrap(), "directories first");
    assert!(html.contains("<td class=\"n\">10</td>"), "one.bin's size");
}

#[test]
fn no_listing_makes_directories_without_index_404() {
    let server = TestServer::start(|c| c.listing = false);
    assert_eq!(server.get("/list/").status, 404);
    assert_eq!(server.get("/sub/").status, 200);
}

#[test]
fn file_with_trailing_slash_is_404_and_missing_file_is_404_with_html() {
    let server = TestServer::start(|_| {});
    assert_eq!(server.get("/a.txt/").status, 404);
    let res = server.get("/nope");
    assert_eq!(res.status, 404);
    assert!(res.text().contains("<h1>404 Not Found</h1>"));
}

#[test]
fn unreadable_files_are_403() {
    let server = TestServer::start(|_| {});
    // A FIFO is never opened for reading (it could block a worker forever).
    let fifo = server.root().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    assert_eq!(server.get("/pipe").status, 403);
    // Permission bits only bind non-root users; root (CI) has CAP_DAC_OVERRIDE.
    let locked = server.root().join("locked.txt");
    write(&server.root(), "locked.txt", b"x");
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let want = if unsafe { libc::geteuid() } == 0 { 200 } else { 403 };
    assert_eq!(server.get("/locked.txt").status, want);
}

#[test]
fn utf8_and_space_names_are_served() {
    let server = TestServer::start(|_| {});
    write(&server.root(), "été 1.txt", b"summer");
    assert_eq!(server.get("/%C3%A9t%C3%A9%201.txt").body, b"summer");
    assert_eq!(server.get("/%ff.txt").status, 400);
}
