//! One client connection and its I/O steps: fill the read buffer, write bytes. No HTTP
//! decisions here.

use super::output::Owned;
use crate::limits::READ_BUF_BYTES;
use crate::stats::{Gauges, Record};
use polling::{Event, Poller};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

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
    /// The socket. Reads time out after the linger (set once at accept).
    pub stream: TcpStream,
    /// Client address.
    pub peer: SocketAddr,
    /// Read buffer; `data[start..end]` is unparsed input. Empty while parked idle.
    pub data: Vec<u8>,
    /// Start of unparsed input.
    pub start: usize,
    /// End of received input.
    pub end: usize,
    /// Deadline for the head being read: from accept for a new connection, and from
    /// its first byte for a later head. Past it, a client that sent part of a head gets
    /// a 408; one that sent nothing is closed silently (see [`Conn::mid_head`]).
    pub head_deadline: Option<Instant>,
    /// When the connection last finished a response (or was accepted).
    pub idle_since: Instant,
    /// The rest of a response the client has not taken yet.
    pub pending: Option<Pending>,
    /// The socket was made non-blocking (after its first parked response).
    nonblocking: bool,
    /// The poller this connection is registered with (from its first park until it
    /// drops; one-shot, so a worker re-arms it each time it parks).
    watch: Option<Arc<Poller>>,
}

/// A response waiting for a slow reader.
#[derive(Debug)]
pub struct Pending {
    /// What is left to send.
    pub segs: Owned,
    /// The access-log record, written once the response ends.
    pub record: Record,
    /// Bytes of the head, to count only body bytes in the log.
    pub head_len: u64,
    /// Bytes sent so far.
    pub sent: u64,
    /// Close the connection after this response.
    pub close: bool,
    /// The client must take more within this time (the write timeout).
    pub deadline: Instant,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(poller) = self.watch.take() {
            let _ = poller.delete(&self.stream);
        }
    }
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
    /// Wraps an accepted stream; its head deadline starts now.
    pub fn new(stream: TcpStream, peer: SocketAddr, open: OpenGuard, head_deadline: Instant) -> Conn {
        Conn {
            _open: open,
            stream,
            peer,
            data: Vec::new(),
            start: 0,
            end: 0,
            head_deadline: Some(head_deadline),
            idle_since: Instant::now(),
            pending: None,
            nonblocking: false,
            watch: None,
        }
    }

    /// The key this connection has in the poller.
    pub fn key(&self) -> usize {
        self.stream.as_raw_fd() as usize
    }

    /// Makes the socket non-blocking, once: a client that could not keep up with a
    /// response is served without waiting from then on (a full buffer parks the rest
    /// at once instead of holding a worker for another `WRITE_LINGER`; its reads no
    /// longer linger either).
    pub fn set_nonblocking(&mut self) {
        if !self.nonblocking {
            self.nonblocking = self.stream.set_nonblocking(true).is_ok();
        }
    }

    /// Arms the one-shot poller registration: readable, or writable while a response
    /// is pending. Registers the connection on its first park.
    pub fn arm(&mut self, poller: &Arc<Poller>) -> io::Result<()> {
        let key = self.key();
        let interest = if self.pending.is_some() {
            Event::writable(key)
        } else {
            Event::readable(key)
        };
        match &self.watch {
            Some(p) => p.modify(&self.stream, interest),
            None => {
                // SAFETY: `Drop for Conn` deletes the stream from the poller before the
                // stream (a field of the same struct) is closed.
                unsafe { poller.add(&self.stream, interest)? };
                self.watch = Some(Arc::clone(poller));
                Ok(())
            }
        }
    }

    /// Whether part of a request head has been received. Only then does a timeout
    /// answer 408: a connection that sent nothing since its last response (or since
    /// it opened) is closed without a word, as nginx and darkhttpd do, because a 408
    /// nobody asked for reaches a browser's speculative preconnect, or is read as the
    /// answer to the next request sent on that connection.
    pub fn mid_head(&self) -> bool {
        self.start < self.end
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
        if self.start == self.end {
            self.data = Vec::new();
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
            Wait::No => recv_now_impl(&self.stream, buf)?,
        };
        self.end += n;
        Ok(n)
    }

    /// Reads what is already buffered without blocking.
    pub fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        recv_now_impl(stream, buf)
    }

    /// Sends `bytes` without blocking, best effort (for 408/503 from threads that must
    /// never wait on a client).
    pub fn send_now(stream: &TcpStream, bytes: &[u8]) {
        // SAFETY: a valid fd and a valid buffer of the given length.
        unsafe {
            libc::send(
                stream.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            );
        }
    }
}

/// `recv` with `MSG_DONTWAIT`: whatever is already buffered, or `WouldBlock`.
pub(super) fn recv_now_impl(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: a valid fd and a writable buffer of the given length.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
