//! A worker thread: takes a connection from the queue, serves every request that is
//! ready on it, and hands it to the idle watcher when the client goes quiet.

use super::conn::{Conn, Pending, Wait};
use super::execute::Executor;
use super::output::{self, Flush, Segment};
use super::Shared;
use crate::clock;
use crate::config::LogFormat;
use crate::http::head::{self, Head, Parsed};
use crate::http::status::Status;
use crate::limits::{CACHE_IDLE, LOG_BATCH, LOG_BATCH_AGE};
use crate::stats::{Msg, Record};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
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
        executor: Executor::new(shared),
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
    executor: Executor,
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
    /// The next connection to serve; flushes the log batch before waiting for one, and
    /// while waiting closes cached files not used lately (so a deleted file's space is
    /// freed even when this worker sits idle).
    fn next_job(&mut self) -> Option<Conn> {
        match self.jobs.try_recv() {
            Ok(conn) => return Some(conn),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => self.log.flush(self.shared),
        }
        loop {
            self.executor.purge_cache(self.shared);
            match self.jobs.recv_timeout(CACHE_IDLE) {
                Ok(conn) => return Some(conn),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
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

    /// One step: finish a pending response, answer a buffered request, or read more.
    fn step(&mut self, conn: &mut Conn) -> Next {
        if conn.pending.is_some() {
            return self.resume(conn);
        }
        let limits = &self.shared.config.limits;
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; HEADER_SLOTS];
        let slots = &mut slots[..limits.max_headers.min(HEADER_SLOTS)];
        let Conn {
            stream,
            data,
            start,
            end,
            peer,
            pending,
            ..
        } = conn;
        match head::parse(&data[*start..*end], slots, limits.max_head_bytes) {
            Ok(Parsed::Complete(head, used)) => {
                let next = self.answer(stream, pending, *peer, &head);
                conn.consume(used);
                conn.idle_since = Instant::now();
                // Bytes of the next head already here start its deadline; none, and the
                // connection is idle (the idle timeout applies, closing silently).
                conn.head_deadline = conn
                    .mid_head()
                    .then(|| crate::clock::deadline(conn.idle_since, limits.head_timeout));
                match next {
                    Next::Continue if self.shared.is_shutting_down() => Next::Close,
                    // Without a linger, a connection just answered is parked at once: its
                    // client is still reading the response, and epoll reports the next
                    // request (or one already sent) as soon as it is there.
                    Next::Continue if conn.start == conn.end && self.no_linger() => Next::Park,
                    next => next,
                }
            }
            Ok(Parsed::Partial) => self.read_more(conn),
            Err(e) => {
                let page = super::error_response(e.status(), e.message());
                let _ = conn.stream.write_all(&page);
                let head = Head {
                    method: "-",
                    target: "-",
                    version: 1,
                    ..Head::default()
                };
                let rec = self.make_record(conn.peer, &head, e.status(), page.len() as u64, Instant::now());
                self.log.push(self.shared, rec);
                Next::Close
            }
        }
    }

    /// Whether to skip waiting on a quiet connection: no linger configured, or other
    /// connections are queued for a worker.
    fn no_linger(&self) -> bool {
        self.shared.config.limits.linger.is_zero() || !self.jobs.is_empty()
    }

    /// Sends more of a response that had to wait for its client.
    fn resume(&mut self, conn: &mut Conn) -> Next {
        let Some(p) = conn.pending.as_mut() else {
            return Next::Continue;
        };
        let before = p.sent;
        let result = output::flush(&mut conn.stream, &mut p.segs, &mut p.sent);
        if matches!(result, Ok(Flush::Blocked)) {
            if p.sent > before {
                p.deadline = clock::deadline(Instant::now(), self.shared.config.limits.write_timeout);
            }
            return Next::Park;
        }
        let Some(mut p) = conn.pending.take() else {
            return Next::Close;
        };
        p.record.bytes = p.sent.saturating_sub(p.head_len);
        p.record.duration = p.record.duration.max(conn.idle_since.elapsed());
        self.log.push(self.shared, p.record);
        conn.idle_since = Instant::now();
        match result {
            Ok(Flush::Done) if !p.close && !self.shared.is_shutting_down() => Next::Continue,
            _ => Next::Close,
        }
    }

    /// Waits briefly for more input; parks the connection if none comes.
    fn read_more(&mut self, conn: &mut Conn) -> Next {
        let limits = &self.shared.config.limits;
        let now = Instant::now();
        // Past the deadline, bytes the client sent in time (while the connection sat in
        // the queue) still count: take what is there, and answer 408 only if the head
        // is still incomplete after that — and was started: a client that sent nothing
        // is closed silently (see `Conn::mid_head`).
        let late = conn.head_deadline.is_some_and(|d| now >= d);
        if self.shared.is_shutting_down() && conn.start == conn.end {
            return Next::Close;
        }
        // Linger only when no other connection is waiting for a worker.
        let wait = if late || self.no_linger() {
            Wait::No
        } else {
            Wait::Linger
        };
        let filled = conn.fill(wait, limits.max_head_bytes);
        if late && !matches!(filled, Ok(n) if n > 0) {
            if conn.mid_head() {
                let page = super::error_response(Status::RequestTimeout, "The request head did not arrive in time.");
                let _ = conn.stream.write_all(&page);
            }
            return Next::Close;
        }
        match filled {
            Ok(0) => Next::Close,
            Ok(_) => {
                if conn.head_deadline.is_none() {
                    conn.head_deadline = Some(clock::deadline(now, limits.head_timeout));
                }
                Next::Continue
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Next::Park,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Continue,
            Err(_) => Next::Close,
        }
    }

    /// Answers one request: plans it (catching a panic: a 500, then close — the worker
    /// lives on) and sends it. If the client stops taking bytes, the rest is stored on
    /// the connection and it is parked.
    fn answer(&mut self, stream: &mut TcpStream, pending: &mut Option<Pending>, peer: SocketAddr, head: &Head) -> Next {
        let started = Instant::now();
        let (shared, executor) = (self.shared, &mut self.executor);
        let planned = match catch_unwind(AssertUnwindSafe(|| executor.answer(shared, head))) {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                log::debug!("{peer}: {} {}: {e}", head.method, head.target);
                return Next::Close;
            }
            Err(_) => {
                log::error!(
                    "{peer}: {} {}: handler panicked; connection closed",
                    head.method,
                    head.target
                );
                // The executor's buffers may hold a half-built response; start clean.
                self.executor = Executor::new(self.shared);
                let page = super::error_response(Status::InternalServerError, "The server hit an internal error.");
                let _ = stream.write_all(&page);
                let rec = self.make_record(peer, head, Status::InternalServerError, page.len() as u64, started);
                self.log.push(self.shared, rec);
                return Next::Close;
            }
        };
        let total: u64 = (self.executor.segs.iter())
            .map(|seg| match seg {
                Segment::Bytes(b, pos) => (b.len() - pos) as u64,
                Segment::File { len, .. } => *len,
            })
            .sum();
        let head_len = total.saturating_sub(planned.bytes);
        let mut sent = 0;
        let result = output::flush(stream, &mut self.executor.segs, &mut sent);
        let mut rec = self.make_record(peer, head, planned.status, planned.bytes, started);
        match result {
            Ok(Flush::Done) => {
                self.log.push(self.shared, rec);
                if planned.close {
                    Next::Close
                } else {
                    Next::Continue
                }
            }
            Ok(Flush::Blocked) => match output::into_owned(&mut self.executor.segs) {
                Ok(segs) => {
                    let deadline = clock::deadline(Instant::now(), self.shared.config.limits.write_timeout);
                    *pending = Some(Pending {
                        segs,
                        record: rec,
                        head_len,
                        sent,
                        close: planned.close,
                        deadline,
                    });
                    Next::Park
                }
                Err(e) => {
                    log::warn!("{peer}: cannot keep a response for a slow reader: {e}");
                    Next::Close
                }
            },
            Ok(Flush::Short) | Err(_) => {
                if matches!(result, Ok(Flush::Short)) {
                    log::warn!("{peer}: {}: file shrank while being sent; closing", head.target);
                }
                rec.bytes = sent.saturating_sub(head_len);
                self.log.push(self.shared, rec);
                Next::Close
            }
        }
    }

    fn make_record(&self, peer: SocketAddr, head: &Head, status: Status, bytes: u64, started: Instant) -> Record {
        let full = self.shared.config.log_format != LogFormat::Off;
        let owned = |s: &str| if full { s.to_string() } else { String::new() };
        Record {
            time: SystemTime::now(),
            peer: peer.ip(),
            method: owned(head.method),
            method_label: crate::stats::Method::of(head.method),
            target: owned(head.target),
            version: head.version,
            status: status.code(),
            bytes,
            duration: started.elapsed(),
            referer: head.referer.filter(|_| full).map(str::to_string),
            user_agent: head.user_agent.filter(|_| full).map(str::to_string),
        }
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
