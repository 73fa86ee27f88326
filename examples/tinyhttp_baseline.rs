//! tiny_http 0.12 static-file server: the baseline that `loadtest/run` measures
//! threadserve against (see DESIGN.md, "Why not tiny_http as the engine").
//!
//! Usage: `tinyhttp_baseline ADDR DOCROOT [THREADS]`
//!
//! It is configured as well as tiny_http 0.12 allows from outside the crate:
//! - The listener is built with socket2 and handed to `Server::from_listener`
//!   (the only way to touch the socket: `Request` never exposes its stream).
//!   TCP_NODELAY is set on the *listening* socket; Linux copies it to every
//!   accepted socket, so responses are not held back by Nagle's algorithm
//!   (out of the box each response waits ~40 ms for a delayed ACK).
//!   The listen backlog is raised to 4096 (std uses 128) and SO_REUSEADDR is set.
//! - `Response::with_chunked_threshold(usize::MAX)`: files are sent with a
//!   Content-Length instead of being chunked from 32 KiB on.
//! - THREADS workers (default 8) call `server.recv()` in a loop. tiny_http itself
//!   still reads every connection on its own thread (one per connection, no cap)
//!   and copies bodies 8 KiB at a time; that cannot be changed from outside.
//!
//! Paths: percent-decoded once; a `..` segment, a NUL, a backslash or invalid
//! UTF-8 is rejected with 400, so nothing outside DOCROOT is reachable
//! (symlinks inside DOCROOT are followed; the load test does not create any).
//! Directories serve `index.html` if present, else 404. GET and HEAD only.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use socket2::{Domain, Protocol, Socket, Type};
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

const DEFAULT_THREADS: usize = 8;
const LISTEN_BACKLOG: i32 = 4096;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 || args.len() > 4 || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: {} ADDR DOCROOT [THREADS]", args[0]);
        std::process::exit(2);
    }
    let addr: SocketAddr = match args[1].to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => die(&format!("bad address {:?}", args[1])),
    };
    let root = match std::fs::canonicalize(&args[2]) {
        Ok(p) if p.is_dir() => p,
        _ => die(&format!("DOCROOT {:?} is not a directory", args[2])),
    };
    let threads = match args.get(3) {
        None => DEFAULT_THREADS,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => die(&format!("THREADS must be a positive integer, got {s:?}")),
        },
    };

    let listener = match bind_listener(addr) {
        Ok(l) => l,
        Err(e) => die(&format!("cannot listen on {addr}: {e}")),
    };
    let local = listener.local_addr().unwrap_or(addr);
    let server = match Server::from_listener(listener, None) {
        Ok(s) => Arc::new(s),
        Err(e) => die(&format!("tiny_http: {e}")),
    };
    println!("tinyhttp_baseline listening on http://{local}/ ({threads} workers)");

    let root = Arc::new(root);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let server = Arc::clone(&server);
            let root = Arc::clone(&root);
            thread::spawn(move || loop {
                match server.recv() {
                    Ok(rq) => handle(rq, &root),
                    // The accept thread has died (tiny_http stops on any accept error).
                    Err(e) => {
                        eprintln!("tinyhttp_baseline: recv: {e}");
                        std::process::exit(1);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

fn die(msg: &str) -> ! {
    eprintln!("tinyhttp_baseline: {msg}");
    std::process::exit(2);
}

fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // Inherited by accepted sockets on Linux: the whole point of this baseline.
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

fn handle(rq: Request, root: &Path) {
    let result = match rq.method() {
        Method::Get | Method::Head => serve(rq, root),
        _ => rq.respond(
            Response::from_string("method not allowed\n")
                .with_status_code(405)
                .with_header(header("Allow", "GET, HEAD")),
        ),
    };
    // Client-side resets are already filtered by tiny_http; anything else is noise
    // under load (e.g. a timeout), so it is not printed.
    let _ = result;
}

fn serve(rq: Request, root: &Path) -> std::io::Result<()> {
    let path = match resolve(root, rq.url()) {
        Ok(p) => p,
        Err(code) => return rq.respond(Response::empty(StatusCode(code))),
    };
    let path = if path.is_dir() { path.join("index.html") } else { path };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(_) => return rq.respond(Response::empty(StatusCode(404))),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        _ => return rq.respond(Response::empty(StatusCode(404))),
    }
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let response = Response::from_file(file)
        .with_chunked_threshold(usize::MAX)
        .with_header(header("Content-Type", mime.essence_str()));
    rq.respond(response)
}

/// Maps a request target to a path under `root`, or an HTTP status to reply with.
fn resolve(root: &Path, target: &str) -> Result<PathBuf, u16> {
    let raw_path = target.split(['?', '#']).next().unwrap_or("");
    if !raw_path.starts_with('/') {
        return Err(400);
    }
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| 400u16)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(400);
    }
    let mut path = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => continue,
            ".." => return Err(400),
            s => path.push(s),
        }
    }
    Ok(path)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}
