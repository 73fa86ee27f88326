//! One client connection: its transport stream, the bytes received but not yet
//! parsed, and its state — which phase it is in and, so, which timeout governs it. No
//! HTTP decisions here.

use super::output::Owned;
use super::poll::Poller;
use super::transport::Stream;
use crate::clock;
use crate::http::status::Status;
use crate::limits::READ_BUF_BYTES;
use crate::stats::{Gauges, Record};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts a connection as open for as long as it lives.
#[derive(Debug)]
pub struct OpenGuard(Arc<Gauges>);

impl OpenGuard {
    /// Counts one more open connection.
    pub fn new(gauges: &Arc<Gauges>) -> OpenGuard {
        gauges.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(Arc::clone(gauges))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client connection with the bytes received but not yet parsed.
#[derive(Debug)]
pub struct Conn {
    /// Declared first so it drops first: the count falls before the peer sees the close.
    _open: OpenGuard,
    /// The socket and its transport (it leaves the poller when it drops).
    pub stream: Stream,
    /// Client address.
    pub peer: SocketAddr,
    /// Read buffer; `data[start..end]` is unparsed input. Empty while parked idle.
    pub data: Vec<u8>,
    /// Start of unparsed input.
    pub start: usize,
    /// End of received input.
    pub end: usize,
    /// The phase the connection is in.
    pub state: State,
}

/// Where a connection is between two steps; each phase has its own timeout.
#[derive(Debug)]
pub enum State {
    /// Between requests, nothing of the next one received: the idle timeout runs from
    /// `since` (when the last response ended).
    Idle {
        /// When the connection went idle.
        since: Instant,
    },
    /// Reading a request head: since accept for a new connection, since its first byte
    /// for a later one. Past the deadline, a client that sent part of a head gets a
    /// 408; one that sent nothing is closed silently (see [`Conn::mid_head`]).
    Head {
        /// When the head timeout runs out.
        deadline: Instant,
    },
    /// A response the client has not taken yet: the write timeout.
    Sending(Box<Pending>),
    /// A request (still unparsed in the buffer) held back until `until`, when it is
    /// planned again: a login attempt from an address that keeps failing (see
    /// `auth::throttle`). Not armed in the poller; `until` is its bound.
    Held {
        /// When it goes back to the workers.
        until: Instant,
    },
}

/// A phase whose time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The head timeout, while a head was awaited or being read.
    Head,
    /// The idle timeout, between requests.
    Idle,
    /// The write timeout: the client took no bytes of a response for that long.
    Write,
}

/// A response waiting for a slow reader.
#[derive(Debug)]
pub struct Pending {
    /// What is left to send.
    pub segs: Owned,
    /// The access-log record, written once the response ends.
    pub record: Record,
    /// When the request was read (the record's duration ends when the response does).
    pub started: Instant,
    /// Bytes of the head, to count only body bytes in the log.
    pub head_len: u64,
    /// Bytes sent so far.
    pub sent: u64,
    /// Close the connection after this response.
    pub close: bool,
    /// The client must take more within this time (the write timeout).
    pub deadline: Instant,
    /// It stopped because its turn was over, not because the client was slow: it
    /// goes back to the queue at once, without waiting for the socket.
    pub turn: bool,
}

/// How to wait for bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block up to the socket's read timeout (the linger).
    Linger,
    /// Take only what is already there.
    No,
}

impl Conn {
    /// Wraps an accepted stream, reading its first head until `head_deadline`.
    pub fn new(stream: Stream, peer: SocketAddr, open: OpenGuard, head_deadline: Instant) -> Conn {
        Conn {
            _open: open,
            stream,
            peer,
            data: Vec::new(),
            start: 0,
            end: 0,
            state: State::Head {
                deadline: head_deadline,
            },
        }
    }

    /// The key this connection has in the poller.
    pub fn key(&self) -> usize {
        self.stream.key()
    }

    /// Whether a response is waiting for the client.
    pub fn is_sending(&self) -> bool {
        matches!(self.state, State::Sending(_))
    }

    /// When it went idle, if it is idle between requests.
    pub fn idle_since(&self) -> Option<Instant> {
        match self.state {
            State::Idle { since } => Some(since),
            _ => None,
        }
    }

    /// Whether it waits for its turn in the queue rather than for the socket (a
    /// response that gave up its turn, see [`Pending::turn`]; the mark is set afresh
    /// each time the response parks).
    pub fn wants_turn(&self) -> bool {
        matches!(&self.state, State::Sending(p) if p.turn)
    }

    /// When a held request goes back to the workers, if this one is held.
    pub fn held_until(&self) -> Option<Instant> {
        match self.state {
            State::Held { until } => Some(until),
            _ => None,
        }
    }

    /// Arms the poller for this connection: writable while a response is pending,
    /// readable otherwise; a held request waits for its time, and a response that
    /// gave up its turn for the queue, not for the socket.
    pub fn arm(&mut self, poller: &Arc<Poller>) -> io::Result<()> {
        if self.held_until().is_some() || self.wants_turn() {
            return Ok(());
        }
        let writable = self.is_sending();
        self.stream.arm(poller, writable)
    }

    /// A held request whose time has come: its head is read again from the buffer,
    /// within a fresh head timeout.
    pub fn release(&mut self, now: Instant, head_timeout: Duration) {
        self.state = State::Head {
            deadline: clock::deadline(now, head_timeout),
        };
    }

    /// Whether part of a request head has been received. Only then does a timeout
    /// answer 408: a connection that sent nothing since its last response (or since
    /// it opened) is closed without a word, as nginx and darkhttpd do, because a 408
    /// nobody asked for reaches a browser's speculative preconnect, or is read as the
    /// answer to the next request sent on that connection.
    pub fn mid_head(&self) -> bool {
        self.start < self.end
    }

    /// Whether input is here that no step has looked at: unparsed bytes, or bytes the
    /// transport holds in its own buffer (a parked connection would wait on the socket
    /// for them in vain).
    pub fn has_unread_input(&self) -> bool {
        self.mid_head() || self.stream.buffered_input()
    }

    /// The phase after a response ended at `now`: bytes of the next head already here
    /// start its deadline; none, and the connection is idle.
    pub fn answered(&mut self, now: Instant, head_timeout: Duration) {
        self.state = if self.mid_head() {
            State::Head {
                deadline: clock::deadline(now, head_timeout),
            }
        } else {
            State::Idle { since: now }
        };
    }

    /// Bytes arrived at `now`: an idle connection starts reading a head.
    pub fn received(&mut self, now: Instant, head_timeout: Duration) {
        if let State::Idle { .. } = self.state {
            self.state = State::Head {
                deadline: clock::deadline(now, head_timeout),
            };
        }
    }

    /// The phase whose timeout has passed at `now`, if any.
    pub fn timed_out(&self, now: Instant, idle_timeout: Duration) -> Option<Timeout> {
        match &self.state {
            State::Idle { since } => (now.duration_since(*since) >= idle_timeout).then_some(Timeout::Idle),
            State::Head { deadline } => (now >= *deadline).then_some(Timeout::Head),
            State::Sending(p) => (now >= p.deadline).then_some(Timeout::Write),
            State::Held { .. } => None,
        }
    }

    /// What a timeout says to the client, in one place: a head that was started gets a
    /// 408 (best effort, never waiting); a connection that sent nothing, an idle one,
    /// and one whose client stopped reading are closed without a word. The caller
    /// closes the connection.
    pub fn expire(&mut self, timeout: Timeout) {
        if timeout == Timeout::Head && self.mid_head() {
            let msg = "The request head did not arrive in time.";
            self.stream
                .send_now(&super::error_response(Status::RequestTimeout, msg));
        }
    }

    /// Marks `n` bytes of input as used.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Frees the read buffer if nothing is pending (an idle connection keeps only its fd).
    pub fn shrink_if_empty(&mut self) {
        drop(self.take_buffer_if_empty());
    }

    /// Takes the read buffer if nothing is pending in it (for another connection to
    /// use: see [`SPARE_READ_BUFFERS`](crate::limits::SPARE_READ_BUFFERS)).
    pub fn take_buffer_if_empty(&mut self) -> Option<Vec<u8>> {
        if self.start != self.end || self.data.is_empty() {
            return None;
        }
        self.start = 0;
        self.end = 0;
        Some(std::mem::take(&mut self.data))
    }

    /// Gives a connection without a read buffer an emptied one.
    pub fn give_buffer(&mut self, buf: Vec<u8>) {
        if self.data.is_empty() {
            self.data = buf;
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more input, growing the buffer up to `max` bytes of pending input.
    /// Returns the number of bytes read: 0 means the peer closed.
    pub fn fill(&mut self, wait: Wait, max: usize) -> io::Result<usize> {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.data.len() {
                let grown = (self.data.len() * 2).clamp(READ_BUF_BYTES, max.max(READ_BUF_BYTES));
                if grown <= self.data.len() {
                    return Err(io::Error::new(io::ErrorKind::OutOfMemory, "request head buffer full"));
                }
                self.data.resize(grown, 0);
            }
        }
        let buf = &mut self.data[self.end..];
        let n = match wait {
            Wait::Linger => self.stream.read(buf)?,
            Wait::No => self.stream.read_now(buf)?,
        };
        self.end += n;
        Ok(n)
    }
}
