//! A worker thread: takes a connection from the queue, serves every request that is
//! ready on it, and hands it to the idle watcher when the client goes quiet.

use super::conn::{Conn, Wait};
use super::serve::{self, Outcome, Scratch};
use super::Shared;
use crate::config::LogFormat;
use crate::head::{self, Head, Parsed};
use crate::limits::{LOG_BATCH, LOG_BATCH_AGE};
use crate::stats::{Msg, Record};
use crate::status::Status;
use crossbeam_channel::{Receiver, TryRecvError};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

/// Header slots on each worker's stack; `--max-headers` may use up to this many.
pub const HEADER_SLOTS: usize = 1024;

/// Serves connections until the queue is closed (shutdown).
pub fn run(shared: &Shared, jobs: &Receiver<Conn>) {
    let mut w = Worker {
        shared,
        jobs,
        scratch: Scratch::default(),
        log: LogBatch::default(),
    };
    while let Some(conn) = w.next_job() {
        shared.gauges.busy.fetch_add(1, Ordering::Relaxed);
        // A panic outside a request (there should be none) drops this connection only.
        let parked = catch_unwind(AssertUnwindSafe(|| w.drive(conn))).unwrap_or(None);
        shared.gauges.busy.fetch_sub(1, Ordering::Relaxed);
        if let Some(conn) = parked {
            shared.park(conn);
        }
    }
    w.log.flush(shared);
}

/// One worker's state, owned by its thread.
struct Worker<'a> {
    shared: &'a Shared,
    jobs: &'a Receiver<Conn>,
    scratch: Scratch,
    log: LogBatch,
}

/// Access-log records not yet handed to the logger thread.
#[derive(Default)]
struct LogBatch {
    records: Vec<Record>,
    oldest: Option<Instant>,
}

impl LogBatch {
    fn push(&mut self, shared: &Shared, record: Record) {
        self.oldest.get_or_insert_with(Instant::now);
        self.records.push(record);
        if self.records.len() >= LOG_BATCH || self.oldest.is_some_and(|t| t.elapsed() >= LOG_BATCH_AGE) {
            self.flush(shared);
        }
    }

    fn flush(&mut self, shared: &Shared) {
        if !self.records.is_empty() {
            let batch = std::mem::replace(&mut self.records, Vec::with_capacity(LOG_BATCH));
            let _ = shared.log.send(Msg::Records(batch));
        }
        self.oldest = None;
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

impl Worker<'_> {
    /// The next connection to serve; flushes the log batch before waiting for one.
    fn next_job(&mut self) -> Option<Conn> {
        match self.jobs.try_recv() {
            Ok(conn) => Some(conn),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                self.log.flush(self.shared);
                self.jobs.recv().ok()
            }
        }
    }

    /// Serves requests on `conn` while they keep coming; returns it if it should be parked.
    fn drive(&mut self, mut conn: Conn) -> Option<Conn> {
        loop {
            match self.step(&mut conn) {
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
    fn step(&mut self, conn: &mut Conn) -> Next {
        let limits = &self.shared.config.limits;
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
                let outcome = self.answer(stream, *peer, &head);
                conn.consume(used);
                conn.head_deadline = None;
                conn.idle_since = Instant::now();
                match outcome {
                    Some(o) if !o.close && !self.shared.is_shutting_down() => Next::Continue,
                    _ => Next::Close,
                }
            }
            Ok(Parsed::Partial) => self.read_more(conn),
            Err(e) => {
                let page = serve::error_response(e.status(), e.message());
                let _ = conn.stream.write_all(&page);
                let head = Head {
                    method: "-",
                    target: "-",
                    version: 1,
                    ..Head::default()
                };
                self.record(conn.peer, &head, e.status(), page.len() as u64, Instant::now());
                Next::Close
            }
        }
    }

    /// Waits briefly for more input; parks the connection if none comes.
    fn read_more(&mut self, conn: &mut Conn) -> Next {
        let limits = &self.shared.config.limits;
        let now = Instant::now();
        if conn.head_deadline.is_some_and(|d| now >= d) {
            let page = serve::error_response(Status::RequestTimeout, "The request head did not arrive in time.");
            let _ = conn.stream.write_all(&page);
            return Next::Close;
        }
        if self.shared.is_shutting_down() && conn.start == conn.end {
            return Next::Close;
        }
        // Linger only when no other connection is waiting for a worker.
        let wait = if self.jobs.is_empty() { Wait::Linger } else { Wait::No };
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

    /// Answers one request, catching a panic inside it: a panic before any byte was
    /// sent becomes a 500; either way the connection closes and the worker lives on.
    fn answer(&mut self, stream: &mut TcpStream, peer: SocketAddr, head: &Head) -> Option<Outcome> {
        let started = Instant::now();
        let mut sent = false;
        let (shared, scratch) = (self.shared, &mut self.scratch);
        let result = catch_unwind(AssertUnwindSafe(|| {
            serve::respond(shared, stream, head, scratch, &mut sent)
        }));
        match result {
            Ok(Ok(o)) => {
                self.record(peer, head, o.status, o.bytes, started);
                Some(o)
            }
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
                // The scratch buffers may hold a half-built response; start clean.
                self.scratch = Scratch::default();
                if !sent {
                    let page = serve::error_response(Status::InternalServerError, "The server hit an internal error.");
                    let _ = stream.write_all(&page);
                    self.record(peer, head, Status::InternalServerError, page.len() as u64, started);
                }
                None
            }
        }
    }

    fn record(&mut self, peer: SocketAddr, head: &Head, status: Status, bytes: u64, started: Instant) {
        let full = self.shared.config.log_format != LogFormat::Off;
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
        self.log.push(self.shared, rec);
    }
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
