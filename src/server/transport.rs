//! The transport: the only code that makes socket system calls. It listens, reads and
//! writes bytes, sends file ranges, reports whether input is waiting, registers with
//! the idle watcher's poller and closes. No HTTP here, and the executor above it
//! never sees a descriptor.
//!
//! Two transports exist, chosen once at bind ([`Transport::from_env`]):
//! - **plain** TCP sends file ranges with `sendfile(2)`: file bytes never enter user
//!   space;
//! - **copy** sends them through a user-space buffer (`pread` of a chunk, one `write`,
//!   advancing by what was written). It is the path every stream that transforms its
//!   bytes must take, and lets that path be tested without one.
//!
//! With `--tls-cert`, every connection is a third [`Layer`], a rustls
//! `ServerConnection` over the same socket: it reads and writes plaintext (the
//! handshake happens inside the first reads, so it counts against the head deadline
//! like any slow head), copies file ranges like `Copy` (this kernel has no kTLS, so
//! there is no sendfile under TLS), reports input already decrypted in its own buffer
//! ([`Stream::buffered_input`]) so such a connection is never parked waiting on a
//! quiet socket, holds ciphertext the socket did not take until [`Write::flush`]
//! sends it, and sends `close_notify` in [`Stream::close`]. Plain HTTP sent to it is
//! recognised by its first byte ([`Stream::plaintext_on_tls`]).

use super::poll::Poller;
use crate::limits::{COPY_CHUNK_BYTES, DEFER_ACCEPT, WRITE_LINGER};
use rustix::net::{RecvFlags, SendFlags};
use rustls::{ServerConfig, ServerConnection};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How connections send what they send; chosen once, when the server binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP; file ranges go out with `sendfile(2)`.
    Plain,
    /// Plain TCP; file ranges are copied through a user-space buffer of
    /// [`COPY_CHUNK_BYTES`] (the way a TLS stream will send them).
    Copy,
}

impl Transport {
    /// `THREADSERVE_TRANSPORT=copy` selects [`Transport::Copy`] (CI runs the integration
    /// suite over it); anything else, or nothing, is [`Transport::Plain`].
    pub fn from_env() -> Transport {
        match std::env::var_os("THREADSERVE_TRANSPORT") {
            Some(v) if v == "copy" => Transport::Copy,
            Some(v) if v != "plain" && !v.is_empty() => {
                log::warn!("THREADSERVE_TRANSPORT={v:?} is not `copy` or `plain`; using plain TCP");
                Transport::Plain
            }
            _ => Transport::Plain,
        }
    }

    /// One line for the start-up log.
    pub fn describe(self) -> &'static str {
        match self {
            Transport::Plain => "plain TCP: file ranges sent with sendfile",
            Transport::Copy => {
                "copy (THREADSERVE_TRANSPORT=copy): file ranges copied through a user-space buffer (pread + write)"
            }
        }
    }
}

/// Per-connection state of the transport in use.
#[derive(Debug)]
enum Layer {
    Plain,
    Copy,
    Tls(Box<Tls>),
}

/// A TLS session over the connection's socket.
#[derive(Debug)]
struct Tls {
    conn: ServerConnection,
    /// Decrypted bytes wait in rustls (as of the last read).
    plaintext: bool,
    /// No byte has been read yet (the first one tells TLS from plain HTTP).
    fresh: bool,
    /// The client spoke plain HTTP (its first byte was a letter, not a TLS record).
    plain_http: bool,
}

/// One client connection's socket and its transport. It owns its registration with
/// the poller, so the descriptor can never be closed while registered.
#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    layer: Layer,
    /// The socket was made non-blocking (after its first parked response).
    nonblocking: bool,
    /// The poller this socket is registered with, edge-triggered, from its first park
    /// until it drops (see [`Stream::arm`]).
    watch: Option<Arc<Poller>>,
    /// The interest registered: writable (a response waits for room) or readable.
    writable: bool,
    /// When the last read that left the socket empty began (it returned less than it
    /// asked for, or nothing was there); `None` after a read that filled its buffer
    /// and always under TLS (rustls reads records in its own sizes). Input that came
    /// after this instant raised a readiness edge; input from before was read.
    drained_at: Option<Instant>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(poller) = self.watch.take() {
            let _ = poller.delete(&self.tcp);
        }
    }
}

impl Stream {
    /// Wraps an accepted socket (no system call): a TLS session when `tls` is given,
    /// else plain TCP sent as `transport` says.
    pub fn new(tcp: TcpStream, transport: Transport, tls: Option<&Arc<ServerConfig>>) -> Stream {
        let layer = match (tls.map(|c| ServerConnection::new(Arc::clone(c))), transport) {
            (Some(Ok(conn)), _) => Layer::Tls(Box::new(Tls {
                conn,
                plaintext: false,
                fresh: true,
                plain_http: false,
            })),
            (Some(Err(e)), _) => {
                // Only a configuration error makes this fail; the reads will fail too.
                log::error!("TLS session: {e}");
                Layer::Copy
            }
            (None, Transport::Plain) => Layer::Plain,
            (None, Transport::Copy) => Layer::Copy,
        };
        Stream {
            tcp,
            layer,
            nonblocking: false,
            watch: None,
            writable: false,
            drained_at: None,
        }
    }

    /// Makes reads wait at most `linger` (none if zero); the other socket options
    /// come from the listener (see [`listen`]).
    pub fn set_linger(&self, linger: Duration) -> io::Result<()> {
        if linger.is_zero() {
            return Ok(());
        }
        self.tcp.set_read_timeout(Some(linger))
    }

    /// The key this connection has in the poller (its descriptor, unique while open).
    pub fn key(&self) -> usize {
        self.tcp.as_raw_fd() as usize
    }

    /// Makes the socket non-blocking, once: a client that could not keep up with a
    /// response is served without waiting from then on (a full buffer parks the rest
    /// at once instead of holding a worker for another `WRITE_LINGER`; its reads no
    /// longer linger either).
    pub fn set_nonblocking(&mut self) {
        if !self.nonblocking {
            self.nonblocking = self.tcp.set_nonblocking(true).is_ok();
        }
    }

    /// Reads input, waiting up to the read timeout (the linger); 0 means the peer closed.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_waiting(buf, true)
    }

    /// Reads only input already received (`recv` with `MSG_DONTWAIT`), or `WouldBlock`.
    pub fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_waiting(buf, false)
    }

    fn read_waiting(&mut self, buf: &mut [u8], wait: bool) -> io::Result<usize> {
        let began = Instant::now();
        let got = match &mut self.layer {
            Layer::Plain | Layer::Copy if wait => self.tcp.read(buf),
            Layer::Plain | Layer::Copy => recv_now(&self.tcp, buf),
            Layer::Tls(tls) => tls.read(&self.tcp, wait, buf),
        };
        self.note_read(began, buf.len(), &got);
        got
    }

    /// Records whether a read that began at `began` left the socket empty: a TCP
    /// `recv` takes everything queued up to its length, so a short read, the end of
    /// input, or nothing there (the linger ran out) all mean it did.
    fn note_read(&mut self, began: Instant, asked: usize, got: &io::Result<usize>) {
        let drained = match got {
            _ if matches!(self.layer, Layer::Tls(_)) => false,
            Ok(n) => *n < asked,
            Err(e) => matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        };
        self.drained_at = drained.then_some(began);
    }

    /// Whether a readiness event the watcher saw at `seen`, while this connection was
    /// not parked, may stand for input not read yet (the edge-triggered registration
    /// reports input wherever the connection is). Only an event from before the last
    /// read that emptied the socket is known to be spent.
    pub fn may_have_input_since(&self, seen: Instant) -> bool {
        self.drained_at.is_none_or(|drained| seen >= drained)
    }

    /// Forgets that the socket was emptied: its readiness event was taken without a
    /// read (the connection was held), so the next park must ask the kernel again.
    pub fn forget_drained(&mut self) {
        self.drained_at = None;
    }

    /// Whether input is waiting in the transport's own buffer (no system call). Plain
    /// TCP has none; a TLS session may hold decrypted bytes the socket no longer shows.
    pub fn buffered_input(&self) -> bool {
        match &self.layer {
            Layer::Plain | Layer::Copy => false,
            Layer::Tls(tls) => tls.plaintext,
        }
    }

    /// The client sent plain HTTP to this TLS connection (its first byte was not a
    /// TLS record): the caller answers in plaintext ([`Stream::send_plaintext`]) and
    /// closes.
    pub fn plaintext_on_tls(&self) -> bool {
        matches!(&self.layer, Layer::Tls(tls) if tls.plain_http)
    }

    /// Sends `bytes` on the socket itself, unencrypted, without waiting: only for the
    /// answer to plain HTTP on a TLS port.
    pub fn send_plaintext(&mut self, bytes: &[u8]) {
        let _ = rustix::net::send(&self.tcp, bytes, SendFlags::DONTWAIT | SendFlags::NOSIGNAL);
    }

    /// Whether input is waiting: in the transport's buffer, or on the socket (a
    /// one-byte `MSG_PEEK`, never blocking).
    pub fn input_waiting(&self) -> bool {
        if self.buffered_input() {
            return true;
        }
        let mut byte = [0u8; 1];
        matches!(
            rustix::net::recv(&self.tcp, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT),
            Ok((n, _)) if n > 0
        )
    }

    /// Sends up to `len` bytes of `file` from `*offset`, which advances by what was
    /// sent. Returns the bytes sent: 0 means the file ended first (it shrank). The
    /// explicit offset leaves the handle's own position alone, so handles shared
    /// through the worker's cache need no seek.
    pub fn send_file(&mut self, file: &File, offset: &mut u64, len: u64) -> io::Result<u64> {
        match &mut self.layer {
            Layer::Plain => sendfile(&self.tcp, file, offset, len),
            Layer::Copy => copy_file(&mut self.tcp, file, offset, len),
            Layer::Tls(tls) => copy_file(&mut TlsWriter(tls, &self.tcp), file, offset, len),
        }
    }

    /// Sends `bytes` without waiting, best effort (a 408 from the idle watcher, which
    /// must never wait on a client).
    pub fn send_now(&mut self, bytes: &[u8]) {
        match &mut self.layer {
            Layer::Plain | Layer::Copy => self.send_plaintext(bytes),
            Layer::Tls(tls) => {
                let _ = tls.conn.writer().write_all(bytes);
                let _ = tls.write_out(&mut NonBlocking(&self.tcp));
            }
        }
    }

    /// Answers a connection that will not be served (503 over the limits): drops what
    /// it sent, sends `page` without waiting, closes the write side.
    pub fn refuse(&mut self, page: &[u8]) {
        let mut sink = [0u8; 4096];
        let _ = self.read_now(&mut sink);
        self.send_now(page);
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
    }

    /// Half-closes, then drains what the client already sent, so the kernel ends the
    /// connection with FIN rather than RST and the client reads the last response.
    pub fn close(&mut self) {
        if let Layer::Tls(tls) = &mut self.layer {
            tls.conn.send_close_notify();
            let _ = tls.write_out(&mut NonBlocking(&self.tcp));
        }
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match recv_now(&self.tcp, &mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// Arms the poller registration: readable, or writable while a response waits for
    /// the client. The registration is edge-triggered and made once, on the first
    /// park: an edge is raised for every arrival of input, so a connection whose last
    /// read emptied the socket is parked readable again without a system call (this
    /// saved the `epoll_ctl` of every keep-alive request). A change of interest, or a
    /// socket that may still hold input (a read that filled its buffer, TLS, an edge
    /// taken while held), is re-registered: `epoll_ctl` checks readiness then, so
    /// input already there raises an event at once.
    pub fn arm(&mut self, poller: &Arc<Poller>, writable: bool) -> io::Result<()> {
        let key = self.key();
        match &self.watch {
            Some(_) if !writable && !self.writable && self.drained_at.is_some() => {}
            Some(p) => p.modify(&self.tcp, key, writable)?,
            None => {
                // `Drop for Stream` deletes it from `watch` (set here, never replaced)
                // before the `TcpStream` field closes it.
                poller.add(&self.tcp, key, writable)?;
                self.watch = Some(Arc::clone(poller));
            }
        }
        self.writable = writable;
        Ok(())
    }

    /// Writes bytes that something else follows at once like [`Write::write`], but on
    /// plain TCP with `MSG_MORE`: a response head before its `sendfile` body goes out
    /// in the body's first segment instead of a packet of its own, and the last bytes
    /// before the connection closes go out with its FIN. The range's `sendfile` (its
    /// last piece goes without the flag) or the shutdown in [`Stream::close`] ends the
    /// hold; so does the next push of the socket.
    pub fn write_held(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.layer {
            Layer::Plain => Ok(rustix::net::send(
                &self.tcp,
                buf,
                SendFlags::MORE | SendFlags::NOSIGNAL,
            )?),
            Layer::Copy | Layer::Tls(_) => self.write(buf),
        }
    }
}

impl Write for Stream {
    /// Writes bytes, waiting up to [`WRITE_LINGER`] for room (none once non-blocking).
    /// Under TLS the bytes are taken once rustls holds them encrypted; what the
    /// socket did not take yet goes out with [`Write::flush`].
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.layer {
            Layer::Plain | Layer::Copy => self.tcp.write(buf),
            Layer::Tls(tls) => TlsWriter(tls, &self.tcp).write(buf),
        }
    }

    /// Sends what the transport still holds (TLS records the socket did not take);
    /// `WouldBlock` if the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.layer {
            Layer::Plain | Layer::Copy => Ok(()),
            Layer::Tls(tls) => tls.write_out(&mut Blocking(&self.tcp)),
        }
    }
}

/// The socket as rustls reads and writes it: waiting up to its timeouts.
struct Blocking<'a>(&'a TcpStream);

/// The socket as rustls reads and writes it: never waiting.
struct NonBlocking<'a>(&'a TcpStream);

impl Read for Blocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&mut &*self.0).read(buf)
    }
}

impl Write for Blocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&mut &*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for NonBlocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv_now(self.0, buf)
    }
}

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(
            self.0,
            buf,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        )?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The first byte waiting on the socket, not consumed (`MSG_PEEK`); `None` at EOF.
fn first_byte(tcp: &TcpStream, blocking: bool) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    let flags = if blocking {
        RecvFlags::PEEK
    } else {
        RecvFlags::PEEK | RecvFlags::DONTWAIT
    };
    let (n, _) = rustix::net::recv(tcp, &mut byte, flags)?;
    Ok((n > 0).then_some(byte[0]))
}

fn recv_now(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(tcp, buf, RecvFlags::DONTWAIT)?.0)
}

/// Plaintext written into a TLS session, its records sent on the socket.
struct TlsWriter<'a>(&'a mut Tls, &'a TcpStream);

impl Write for TlsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let TlsWriter(tls, tcp) = self;
        // Records from earlier writes go first; then as much as rustls takes.
        tls.write_out(&mut Blocking(tcp))?;
        let n = tls.conn.writer().write(buf)?;
        match tls.write_out(&mut Blocking(tcp)) {
            // The bytes are taken (encrypted, held by rustls): a full socket now only
            // means the next write or the flush waits.
            Err(e) if n > 0 && classify(&e) == Failure::Wait => Ok(n),
            Err(e) => Err(e),
            Ok(()) if n == 0 && !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            Ok(()) => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.write_out(&mut Blocking(self.1))
    }
}

impl Tls {
    /// Reads plaintext: what rustls holds, else more records from the socket
    /// (waiting up to its read timeout if `blocking`), driving the handshake, whose
    /// replies are sent as they come. 0: the client closed.
    fn read(&mut self, tcp: &TcpStream, blocking: bool, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    self.refresh();
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.write_out(&mut Blocking(tcp))?;
            if self.fresh {
                match first_byte(tcp, blocking)? {
                    None => return Ok(0),
                    Some(b) if b.is_ascii_alphabetic() => {
                        self.plain_http = true;
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "plain HTTP on a TLS port"));
                    }
                    Some(_) => self.fresh = false,
                }
            }
            let got = if blocking {
                self.conn.read_tls(&mut Blocking(tcp))?
            } else {
                self.conn.read_tls(&mut NonBlocking(tcp))?
            };
            if got == 0 {
                return Ok(0);
            }
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert saying why; send it, then fail.
                let _ = self.write_out(&mut NonBlocking(tcp));
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Remembers whether decrypted bytes wait in rustls.
    fn refresh(&mut self) {
        self.plaintext = self
            .conn
            .process_new_packets()
            .is_ok_and(|s| s.plaintext_bytes_to_read() > 0);
    }

    /// Sends the records rustls holds, until done or the socket is full.
    fn write_out(&mut self, sock: &mut impl Write) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(sock)?;
        }
        Ok(())
    }
}

/// What an I/O error means for the step that met it: the one mapping the executor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Interrupted by a signal: try again.
    Retry,
    /// The client is not ready (a full or empty buffer, a timeout): wait for it.
    Wait,
    /// The connection is broken: close it.
    Fatal,
}

/// Classifies an I/O error (see [`Failure`]).
pub fn classify(e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Wait,
        io::ErrorKind::Interrupted => Failure::Retry,
        _ => Failure::Fatal,
    }
}

/// One `sendfile(2)` call, at most the kernel's own cap on a single transfer. (`std::io::copy`
/// from a `File` to a `TcpStream` does not use sendfile in Rust 1.95: strace shows
/// 8 KiB read/sendto pairs.)
fn sendfile(tcp: &TcpStream, file: &File, offset: &mut u64, len: u64) -> io::Result<u64> {
    const MAX_CHUNK: u64 = 0x7fff_f000;
    let n = rustix::fs::sendfile(tcp, file, Some(offset), len.min(MAX_CHUNK) as usize)?;
    Ok(n as u64)
}

thread_local! {
    /// The copy transport's buffer: one per worker thread, not per connection. Nothing
    /// stays in it between calls (a partial write re-reads the rest from the page cache
    /// next time), so a parked connection holds none.
    static COPY_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One chunk of a file range through user space: `pread` up to [`COPY_CHUNK_BYTES`],
/// one `write`, and `*offset` advances only by what the socket took, so a partial
/// write never loses bytes.
fn copy_file(out: &mut impl Write, file: &File, offset: &mut u64, len: u64) -> io::Result<u64> {
    COPY_BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(COPY_CHUNK_BYTES, 0);
        }
        let want = len.min(buf.len() as u64) as usize;
        let got = file.read_at(&mut buf[..want], *offset)?;
        if got == 0 {
            return Ok(0);
        }
        let n = out.write(&buf[..got])?;
        *offset += n as u64;
        Ok(n as u64)
    })
}

/// The listening socket: `SO_REUSEADDR`, dual-stack for `[::]`, [`LISTEN_BACKLOG`].
///
/// [`LISTEN_BACKLOG`]: crate::limits::LISTEN_BACKLOG
///
/// Two options every served connection needs are set here, once: Linux copies them
/// to each accepted socket (they live in the socket the kernel clones), which saves
/// two `setsockopt` calls per connection: no Nagle delay, and writes that wait at
/// most [`WRITE_LINGER`]. The read timeout cannot go here: on a listening socket it
/// also bounds `accept`, which would wake the accept loop every linger while idle
/// (see [`Stream::set_linger`]).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.set_nodelay(true)?;
    socket.set_write_timeout(Some(WRITE_LINGER))?;
    defer_accept(&socket, DEFER_ACCEPT);
    socket.bind(&addr.into())?;
    socket.listen(crate::limits::LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// `TCP_DEFER_ACCEPT`: the kernel completes a connection for `accept` only once its
/// first bytes have arrived (or after `wait`, rounded to SYN-ACK retransmissions), so
/// the worker that takes it finds its head already there. Without it, a worker's first
/// `recv` often found nothing yet and slept until the request came, holding the worker
/// and costing a sleep and a wake-up per connection. Best effort: without it (a kernel
/// that lacks the option) connections are accepted at once, as before.
fn defer_accept(socket: &Socket, wait: Duration) {
    let secs = libc::c_int::try_from(wait.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid descriptor borrowed for the call, and a pointer to a live c_int
    // with its exact size, as setsockopt(2) requires for TCP_DEFER_ACCEPT.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("TCP_DEFER_ACCEPT: {}", io::Error::last_os_error());
    }
}

/// Wakes a thread blocked in `accept` on `listener` (shutting a listening socket down
/// does that on Linux); its next `accept` fails.
pub fn stop_accepting(listener: &TcpListener) {
    let _ = SockRef::from(listener).shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let timeout = SockRef::from(&listener).read_timeout().unwrap();
        assert_eq!(timeout, None, "accept never times out (an idle accept loop sleeps)");
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(b"G").unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(server.nodelay().unwrap());
        let write = server.write_timeout().unwrap().expect("a write timeout");
        assert!(write >= WRITE_LINGER && write < WRITE_LINGER * 2, "{write:?}");
    }

    /// A worker's first `recv` used to find nothing yet: the accept loop handed over
    /// connections the moment the handshake completed, before the request arrived.
    #[test]
    fn a_connection_reaches_accept_with_its_first_bytes_not_before() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let early = listener.accept().map(|_| ()).map_err(|e| e.kind());
        assert_eq!(early, Err(io::ErrorKind::WouldBlock), "accepted before a byte came");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let deadline = Instant::now() + DEFER_ACCEPT / 2;
        let (mut server, _) = loop {
            match listener.accept() {
                Ok(pair) => break pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("not accepted once its bytes arrived: {e}"),
            }
        };
        server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.read(&mut buf).unwrap(), 18, "the head is there at accept");
    }

    /// A connected pair: (server side as a `Stream`, client side).
    fn pair(transport: Transport) -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Stream::new(server, transport, None), client)
    }

    fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn the_environment_selects_the_copy_transport_and_nothing_else_does() {
        // Read-only: the variable is whatever this test run was started with.
        let want = match std::env::var("THREADSERVE_TRANSPORT").as_deref() {
            Ok("copy") => Transport::Copy,
            _ => Transport::Plain,
        };
        assert_eq!(Transport::from_env(), want);
        assert!(Transport::Copy.describe().contains("copy"));
        assert!(Transport::Plain.describe().contains("sendfile"));
    }

    #[test]
    fn a_copied_range_larger_than_the_buffer_survives_partial_writes_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content = patterned(5 * COPY_CHUNK_BYTES + 123);
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        for transport in [Transport::Copy, Transport::Plain] {
            let (mut server, mut client) = pair(transport);
            // A small send buffer and no waiting: most writes are partial or refused.
            SockRef::from(&server.tcp).set_send_buffer_size(4096).unwrap();
            server.set_nonblocking();
            // The client never waits long: what the kernel still holds back (Nagle,
            // a delayed ACK) comes with a later read.
            client.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let (mut offset, end) = (7u64, content.len() as u64 - 5);
            let mut got = Vec::new();
            let mut blocked = 0;
            let started = std::time::Instant::now();
            while offset < end {
                assert!(started.elapsed() < Duration::from_secs(20), "{transport:?}: stuck");
                let left = end - offset;
                match server.send_file(&file, &mut offset, left) {
                    Ok(n) => assert!(n > 0, "{transport:?}: the file did not shrink"),
                    Err(e) => {
                        assert_eq!(classify(&e), Failure::Wait, "{transport:?}: {e}");
                        blocked += 1;
                        let mut buf = [0u8; 8192];
                        match client.read(&mut buf) {
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                            Err(e) => assert_eq!(classify(&e), Failure::Wait, "{e}"),
                        }
                    }
                }
            }
            client.set_read_timeout(None).unwrap();
            drop(server);
            client.read_to_end(&mut got).unwrap();
            assert!(blocked > 0, "{transport:?}: the socket never filled up");
            assert!(got == content[7..content.len() - 5], "{transport:?}: bytes differ");
        }
    }

    #[test]
    fn a_copied_range_past_the_end_of_the_file_reports_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = File::open(&path).unwrap();
        let (mut server, mut client) = pair(Transport::Copy);
        let mut offset = 8;
        assert_eq!(server.send_file(&file, &mut offset, 5).unwrap(), 2);
        assert_eq!(server.send_file(&file, &mut offset, 3).unwrap(), 0);
        assert_eq!(offset, 10);
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"89");
    }

    #[test]
    fn input_waiting_peeks_without_taking_the_bytes() {
        let (mut server, mut client) = pair(Transport::Plain);
        assert!(!server.input_waiting());
        client.write_all(b"GET").unwrap();
        let t = std::time::Instant::now();
        while !server.input_waiting() {
            assert!(t.elapsed() < Duration::from_secs(5), "bytes never arrived");
            std::thread::yield_now();
        }
        let mut buf = [0u8; 8];
        assert_eq!(server.read_now(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"GET");
        let e = server.read_now(&mut buf).unwrap_err();
        assert_eq!(classify(&e), Failure::Wait);
    }
}
