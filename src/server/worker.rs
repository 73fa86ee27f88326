//! A worker thread: takes a connection from the queue, serves every request that is
//! ready on it, and hands it to the idle watcher when the client goes quiet.

use super::conn::{Conn, Pending, State, Timeout, Wait};
use super::execute::{Answer, Executor};
use super::output::{self, Flush, Segment};
use super::transport::{classify, Failure, Stream};
use super::Shared;
use crate::clock;
use crate::config::LogFormat;
use crate::http::head::{self, Head, HeadError, Parsed};
use crate::http::status::Status;
use crate::limits::{CACHE_IDLE, LOG_BATCH, LOG_BATCH_AGE, READ_BUF_BYTES, SPARE_READ_BUFFERS, TURN_BYTES};
use crate::stats::{Msg, Record};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
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
        spare: Vec::with_capacity(SPARE_READ_BUFFERS),
    };
    while let Some(conn) = w.next_job() {
        shared.gauges.busy.fetch_add(1, Ordering::Relaxed);
        // A panic outside a request (there should be none) drops this connection only.
        let parked = catch_unwind(AssertUnwindSafe(|| w.drive(conn))).unwrap_or(None);
        // Handed to the idle watcher before this worker counts as free, so a watcher
        // deciding whether shutdown has drained never sees it nowhere.
        if let Some(mut conn) = parked {
            w.keep_buffer(&mut conn);
            shared.park(conn);
        }
        shared.gauges.busy.fetch_sub(1, Ordering::Relaxed);
    }
    w.log.flush(shared);
}

/// One worker's state, owned by its thread.
struct Worker<'a> {
    shared: &'a Shared,
    jobs: &'a Receiver<Conn>,
    executor: Executor,
    log: LogBatch,
    /// Emptied read buffers for the next connections read ([`SPARE_READ_BUFFERS`]).
    spare: Vec<Vec<u8>>,
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
        // The age is looked at every eighth record (a clock read each time cost more
        // than the rest of this function); a batch still goes within LOG_BATCH_AGE of
        // its eighth record, and at once when the worker finds its queue empty.
        let aged = || self.records.len() % 8 == 0 && self.oldest.is_some_and(|t| t.elapsed() >= LOG_BATCH_AGE);
        if self.records.len() >= LOG_BATCH || aged() {
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

/// How sending a response went.
enum Sent {
    /// All of it went out; `close` is the plan's word on keep-alive.
    Done {
        /// The plan (or the request) asked to close after this response.
        close: bool,
    },
    /// The client stopped taking bytes (or, with `turn` set in it, the response used
    /// its turn while others wait): the rest waits.
    Blocked(Box<Pending>),
    /// It could not be completed (an error page, a broken socket, a file that shrank).
    Failed,
    /// Nothing was sent: the request waits, unparsed, until this time (see
    /// `State::Held`).
    Held(Instant),
}

/// Sends what `segs` holds, in turns of [`TURN_BYTES`]: after each, if other
/// connections wait in the queue, it stops with `Turn` so the connection goes to the
/// back of the queue (a few clients fetching huge bodies never make everyone else
/// wait for all of theirs to be copied); if none wait, it goes on.
fn flush_turn<F: AsRef<std::fs::File>>(
    stream: &mut Stream,
    segs: &mut std::collections::VecDeque<Segment<F>>,
    sent: &mut u64,
    jobs: &Receiver<Conn>,
    closing: bool,
) -> io::Result<Flush> {
    loop {
        match output::flush(stream, segs, sent, TURN_BYTES, closing)? {
            Flush::Turn if jobs.is_empty() => {}
            other => return Ok(other),
        }
    }
}

/// The answer, in plaintext, to plain HTTP sent to the HTTPS port.
const PLAIN_HTTP_ON_TLS: &str = "This port speaks HTTPS: use an https:// URL.";

/// What an I/O error on a connection means for it (the one mapping, [`classify`]).
fn on_error(e: &io::Error) -> Next {
    match classify(e) {
        Failure::Retry => Next::Continue,
        Failure::Wait => Next::Park,
        Failure::Fatal => Next::Close,
    }
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
        let mut idle = false;
        loop {
            self.executor.purge_cache(self.shared, idle);
            match self.jobs.recv_timeout(CACHE_IDLE) {
                Ok(conn) => return Some(conn),
                Err(RecvTimeoutError::Timeout) => idle = true,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Serves requests on `conn` while they keep coming; returns it if it should be
    /// parked. The only place a served connection is closed.
    fn drive(&mut self, mut conn: Conn) -> Option<Conn> {
        loop {
            match self.step(&mut conn) {
                Next::Continue => {}
                Next::Park => return Some(conn),
                Next::Close => {
                    conn.stream.close();
                    return None;
                }
            }
        }
    }

    /// One step: finish a pending response, answer a buffered request, or read more.
    fn step(&mut self, conn: &mut Conn) -> Next {
        if conn.is_sending() {
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
            ..
        } = conn;
        let (sent, used) = match head::parse(&data[*start..*end], slots, limits.max_head_bytes) {
            Ok(Parsed::Complete(head, used)) => (self.answer(stream, *peer, &head), used),
            Ok(Parsed::Partial) => return self.read_more(conn),
            Err(e) => {
                self.refuse_head(stream, *peer, e);
                return Next::Close;
            }
        };
        if !matches!(sent, Sent::Held(_)) {
            conn.consume(used);
        }
        self.after_response(conn, sent)
    }

    /// The one place that decides what follows a response: close (the plan said so, it
    /// failed, or the server is shutting down), park (it is waiting for its client, its
    /// request is held, or nothing more has come and lingering would hold this worker
    /// for nothing), or go on with the next request.
    fn after_response(&self, conn: &mut Conn, sent: Sent) -> Next {
        if !matches!(sent, Sent::Held(_)) {
            conn.answered(Instant::now(), self.shared.config.limits.head_timeout);
        }
        match sent {
            Sent::Held(until) => {
                conn.state = State::Held { until };
                Next::Park
            }
            Sent::Blocked(pending) => {
                conn.state = State::Sending(pending);
                Next::Park
            }
            Sent::Failed | Sent::Done { close: true } => Next::Close,
            Sent::Done { .. } if self.shared.is_shutting_down() => Next::Close,
            // Without a linger, a connection just answered is parked at once: its client
            // is still reading the response, and epoll reports the next request (or one
            // already sent) as soon as it is there.
            Sent::Done { .. } if !conn.has_unread_input() && self.no_linger() => Next::Park,
            Sent::Done { .. } => Next::Continue,
        }
    }

    /// Whether to skip waiting on a quiet connection: no linger configured, or other
    /// connections are queued for a worker.
    fn no_linger(&self) -> bool {
        self.shared.config.limits.linger.is_zero() || !self.jobs.is_empty()
    }

    /// Sends more of a response that had to wait for its client.
    fn resume(&mut self, conn: &mut Conn) -> Next {
        let Conn { stream, state, .. } = conn;
        let State::Sending(p) = state else {
            return Next::Continue;
        };
        let before = p.sent;
        let result = flush_turn(stream, &mut p.segs, &mut p.sent, self.jobs, p.close);
        if let Ok(flush @ (Flush::Blocked | Flush::Turn)) = result {
            if p.sent > before {
                p.deadline = clock::deadline(Instant::now(), self.shared.config.limits.write_timeout);
            }
            p.turn = flush == Flush::Turn;
            return Next::Park;
        }
        let State::Sending(mut p) = std::mem::replace(state, State::Idle { since: Instant::now() }) else {
            unreachable!("the state was Sending just above");
        };
        p.record.bytes = p.sent.saturating_sub(p.head_len);
        p.record.duration = p.started.elapsed();
        self.log.push(self.shared, p.record);
        let sent = match result {
            Ok(Flush::Done) => Sent::Done { close: p.close },
            _ => Sent::Failed,
        };
        self.after_response(conn, sent)
    }

    /// Keeps the emptied read buffer of a connection about to park, if there is room.
    fn keep_buffer(&mut self, conn: &mut Conn) {
        if self.spare.len() < SPARE_READ_BUFFERS {
            self.spare
                .extend(conn.take_buffer_if_empty().filter(|b| b.len() == READ_BUF_BYTES));
        }
    }

    /// Waits briefly for more input; parks the connection if none comes.
    fn read_more(&mut self, conn: &mut Conn) -> Next {
        if conn.data.is_empty() {
            if let Some(buf) = self.spare.pop() {
                conn.give_buffer(buf);
            }
        }
        let limits = &self.shared.config.limits;
        let now = Instant::now();
        // Past the deadline, bytes the client sent in time (while the connection sat in
        // the queue) still count: take what is there, and time out only if the head is
        // still incomplete after that.
        let late = conn.timed_out(now, limits.idle_timeout) == Some(Timeout::Head);
        if self.shared.is_shutting_down() && !conn.mid_head() {
            return Next::Close;
        }
        // Linger only when no other connection is waiting for a worker.
        let wait = if late || self.no_linger() {
            Wait::No
        } else {
            Wait::Linger
        };
        match conn.fill(wait, limits.max_head_bytes) {
            Ok(n) if n > 0 => {
                conn.received(now, limits.head_timeout);
                Next::Continue
            }
            _ if late => {
                conn.expire(Timeout::Head);
                Next::Close
            }
            Ok(_) => Next::Close,
            Err(_) if conn.stream.plaintext_on_tls() => {
                let page = super::error_response(Status::BadRequest, PLAIN_HTTP_ON_TLS);
                conn.stream.send_plaintext(&page);
                Next::Close
            }
            Err(e) => on_error(&e),
        }
    }

    /// Answers a head that could not be parsed with its error page, and logs it.
    fn refuse_head(&mut self, stream: &mut Stream, peer: SocketAddr, e: HeadError) {
        let page = super::error_response(e.status(), e.message());
        let _ = stream.write_all(&page);
        let head = Head {
            method: "-",
            target: "-",
            version: 1,
            ..Head::default()
        };
        let rec = self.make_record(peer, &head, e.status(), page.len() as u64, Instant::now());
        self.log.push(self.shared, rec);
    }

    /// Answers one request: plans it, then sends what the plan queued.
    fn answer(&mut self, stream: &mut Stream, peer: SocketAddr, head: &Head) -> Sent {
        let started = Instant::now();
        match self.plan(stream, peer, head, started) {
            Some(Answer { held: Some(until), .. }) => Sent::Held(until),
            Some(planned) => self.send(stream, peer, head, planned, started),
            None => Sent::Failed,
        }
    }

    /// Plans the response into the executor's segments, catching a panic: the client gets
    /// a 500 and the connection closes, but the worker lives on. `None` if there is
    /// nothing to send.
    fn plan(&mut self, stream: &mut Stream, peer: SocketAddr, head: &Head, started: Instant) -> Option<Answer> {
        let (shared, executor) = (self.shared, &mut self.executor);
        match catch_unwind(AssertUnwindSafe(|| executor.answer(shared, head, peer.ip(), started))) {
            Ok(Ok(planned)) => Some(planned),
            Ok(Err(e)) => {
                log::debug!("{peer}: {} {}: {e}", head.method, head.target);
                None
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
                None
            }
        }
    }

    /// Sends the planned segments. If the client stops taking bytes, the rest becomes
    /// a [`Pending`] response (owned segments) for the connection to park with.
    fn send(&mut self, stream: &mut Stream, peer: SocketAddr, head: &Head, planned: Answer, started: Instant) -> Sent {
        let total: u64 = (self.executor.segs.iter())
            .map(|seg| match seg {
                Segment::Bytes(b, pos) => (b.len() - pos) as u64,
                Segment::Shared { pos, end, .. } => (end - pos) as u64,
                Segment::File { len, .. } => *len,
            })
            .sum();
        let head_len = total.saturating_sub(planned.bytes);
        let mut sent = 0;
        let result = flush_turn(stream, &mut self.executor.segs, &mut sent, self.jobs, planned.close);
        let mut record = self.make_record(peer, head, planned.status, planned.bytes, started);
        let segs = match result {
            Ok(Flush::Done) => {
                self.log.push(self.shared, record);
                return Sent::Done { close: planned.close };
            }
            Ok(Flush::Blocked | Flush::Turn) => output::into_owned(&mut self.executor.segs),
            Ok(Flush::Short) | Err(_) => {
                if matches!(result, Ok(Flush::Short)) {
                    log::warn!("{peer}: {}: file shrank while being sent; closing", head.target);
                }
                record.bytes = sent.saturating_sub(head_len);
                self.log.push(self.shared, record);
                return Sent::Failed;
            }
        };
        match segs {
            Ok(segs) => Sent::Blocked(Box::new(Pending {
                segs,
                record,
                started,
                head_len,
                sent,
                close: planned.close,
                deadline: clock::deadline(Instant::now(), self.shared.config.limits.write_timeout),
                turn: matches!(result, Ok(Flush::Turn)),
            })),
            Err(e) => {
                log::warn!("{peer}: cannot keep a response for a slow reader: {e}");
                Sent::Failed
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
            target: owned(head.target),
            version: head.version,
            status: status.code(),
            bytes,
            duration: started.elapsed(),
            referer: head.referer.filter(|_| full).map(str::to_string),
            user_agent: head.user_agent.filter(|_| full).map(str::to_string),
            method_label: crate::stats::Method::of(head.method),
        }
    }
}
