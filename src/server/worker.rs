//! A worker thread: takes a connection from the queue, serves every request that is
//! ready on it, and hands it to the idle watcher when the client goes quiet.

use super::conn::{Conn, Wait};
use super::serve::{self, Outcome};
use super::Shared;
use crate::config::LogFormat;
use crate::head::{self, Head, HeadError, Parsed};
use crate::stats::{Msg, Record};
use crate::status::Status;
use crossbeam_channel::Receiver;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

/// Header slots on each worker's stack; `--max-headers` may use up to this many.
pub const HEADER_SLOTS: usize = 1024;

/// Serves connections until the queue is closed (shutdown).
pub fn run(shared: &Shared, jobs: &Receiver<Conn>) {
    let mut out = Vec::with_capacity(1024);
    while let Ok(conn) = jobs.recv() {
        shared.gauges.busy.fetch_add(1, Ordering::Relaxed);
        // A panic outside a request (there should be none) drops this connection only.
        let parked = catch_unwind(AssertUnwindSafe(|| drive(shared, conn, &mut out, jobs))).unwrap_or(None);
        shared.gauges.busy.fetch_sub(1, Ordering::Relaxed);
        if let Some(conn) = parked {
            shared.park(conn);
        }
    }
}

/// What to do with the connection after a step.
enum Next {
    /// Parse or read again.
    Continue,
    /// Give it to the idle watcher.
    Park,
    /// Close it.
    Close,
}

/// Serves requests on `conn` while they keep coming; returns it if it should be parked.
fn drive(shared: &Shared, mut conn: Conn, out: &mut Vec<u8>, jobs: &Receiver<Conn>) -> Option<Conn> {
    loop {
        match step(shared, &mut conn, out, jobs) {
            Next::Continue => {}
            Next::Park => return Some(conn),
            Next::Close => {
                close_gracefully(&conn);
                return None;
            }
        }
    }
}

/// One step: answer a buffered request, or read more bytes.
fn step(shared: &Shared, conn: &mut Conn, out: &mut Vec<u8>, jobs: &Receiver<Conn>) -> Next {
    let limits = &shared.config.limits;
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; HEADER_SLOTS];
    let slots = &mut slots[..limits.max_headers.min(HEADER_SLOTS)];
    let Conn {
        stream,
        data,
        start,
        end,
        peer,
        ..
    } = conn;
    match head::parse(&data[*start..*end], slots, limits.max_head_bytes) {
        Ok(Parsed::Complete(head, used)) => {
            let outcome = answer(shared, stream, *peer, &head, out);
            conn.consume(used);
            conn.head_deadline = None;
            conn.idle_since = Instant::now();
            match outcome {
                Some(o) if !o.close && !shared.is_shutting_down() => Next::Continue,
                _ => Next::Close,
            }
        }
        Ok(Parsed::Partial) => read_more(shared, conn, jobs),
        Err(e) => {
            reject(shared, conn, e);
            Next::Close
        }
    }
}

/// Waits briefly for more input; parks the connection if none comes.
fn read_more(shared: &Shared, conn: &mut Conn, jobs: &Receiver<Conn>) -> Next {
    let limits = &shared.config.limits;
    let now = Instant::now();
    if conn.head_deadline.is_some_and(|d| now >= d) {
        let page = serve::error_response(Status::RequestTimeout, "The request head did not arrive in time.");
        let _ = conn.stream.write_all(&page);
        return Next::Close;
    }
    if shared.is_shutting_down() && conn.start == conn.end {
        return Next::Close;
    }
    // Linger only when no other connection is waiting for a worker.
    let wait = if jobs.is_empty() { Wait::Linger } else { Wait::No };
    match conn.fill(wait, limits.max_head_bytes) {
        Ok(0) => Next::Close,
        Ok(_) => {
            if conn.head_deadline.is_none() {
                conn.head_deadline = Some(now + limits.head_timeout);
            }
            Next::Continue
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Next::Park,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Continue,
        Err(_) => Next::Close,
    }
}

/// Answers one request, catching a panic inside it: a panic before any byte was sent
/// becomes a 500; either way the connection closes and the worker lives on.
fn answer(
    shared: &Shared,
    stream: &mut std::net::TcpStream,
    peer: std::net::SocketAddr,
    head: &Head,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let started = Instant::now();
    let mut sent = false;
    let result = catch_unwind(AssertUnwindSafe(|| {
        serve::respond(shared, stream, head, out, &mut sent)
    }));
    let outcome = match result {
        Ok(Ok(o)) => Some(o),
        Ok(Err(e)) => {
            log::debug!("{peer}: {} {}: write failed: {e}", head.method, head.target);
            None
        }
        Err(_) => {
            log::error!(
                "{peer}: {} {}: handler panicked; connection closed",
                head.method,
                head.target
            );
            if !sent {
                let page = serve::error_response(Status::InternalServerError, "The server hit an internal error.");
                let _ = stream.write_all(&page);
                record(
                    shared,
                    peer,
                    head,
                    Status::InternalServerError,
                    page.len() as u64,
                    started,
                );
            }
            return None;
        }
    };
    if let Some(o) = outcome {
        record(shared, peer, head, o.status, o.bytes, started);
    }
    outcome
}

fn reject(shared: &Shared, conn: &mut Conn, e: HeadError) {
    let page = serve::error_response(e.status(), e.message());
    let _ = conn.stream.write_all(&page);
    let head = Head {
        method: "-",
        target: "-",
        version: 1,
        ..Head::default()
    };
    record(shared, conn.peer, &head, e.status(), page.len() as u64, Instant::now());
}

fn record(shared: &Shared, peer: std::net::SocketAddr, head: &Head, status: Status, bytes: u64, started: Instant) {
    let full = shared.config.log_format != LogFormat::Off;
    let owned = |s: &str| if full { s.to_string() } else { String::new() };
    let rec = Record {
        time: SystemTime::now(),
        peer: peer.ip(),
        method: owned(head.method),
        target: owned(head.target),
        version: head.version,
        status: status.code(),
        bytes,
        duration: started.elapsed(),
        referer: head.referer.filter(|_| full).map(str::to_string),
        user_agent: head.user_agent.filter(|_| full).map(str::to_string),
    };
    let _ = shared.log.send(Msg::Record(rec));
}

/// Half-closes, then drains what the client already sent, so the kernel ends the
/// connection with FIN rather than RST and the client reads the last response.
fn close_gracefully(conn: &Conn) {
    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match Conn::recv_now(&conn.stream, &mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}
