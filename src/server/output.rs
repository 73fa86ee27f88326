//! A response as a queue of segments (bytes, or a range of a file) and the one loop
//! that sends them through the connection's transport (which sends a file range with
//! `sendfile(2)` or copies it, see `transport`). When the client stops reading, sending
//! stops with `Blocked` instead of waiting: the connection is parked with what is
//! left, and no worker is pinned by a slow reader.

use super::transport::{classify, Failure, Stream};
use crate::files::compress::Blob;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::rc::Rc;
use std::sync::Arc;

/// One piece of a response.
#[derive(Debug)]
pub enum Segment<F> {
    /// Bytes, of which the first `.1` are sent.
    Bytes(Vec<u8>, usize),
    /// `blob[pos..end]`: a compressed body kept by the compression store, sent from
    /// there (no copy per response; a parked one holds a handle, counted by the store).
    Shared {
        /// The kept bytes.
        blob: Arc<Blob>,
        /// Next byte to send.
        pos: usize,
        /// End of the range to send.
        end: usize,
    },
    /// `len` bytes of `file` from `offset`, sent by the transport (`sendfile(2)` or a copy).
    File {
        /// The file (a shared handle from the worker's cache, or an owned one).
        file: F,
        /// Next byte to send.
        offset: u64,
        /// Bytes still to send.
        len: u64,
    },
}

/// Segments as the worker builds them (file handles shared with its cache).
pub type Segments = VecDeque<Segment<Rc<File>>>;

/// Segments that outlive the worker turn (owned, `Send`), kept on a parked connection.
/// The parts of one file (a multipart response) share one descriptor.
pub type Owned = VecDeque<Segment<Arc<File>>>;

/// How far sending got.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything was sent.
    Done,
    /// The socket would block: the rest waits for the client.
    Blocked,
    /// A file ended before its range did (it shrank): the response cannot be completed.
    Short,
    /// `quantum` bytes went out and there is more: the caller may let other
    /// connections have a turn first.
    Turn,
}

/// Sends segments in order until done, blocked or short, or until `quantum` bytes
/// went out in this call (`Turn`); `sent` counts bytes written. `closing`: the
/// connection is shut down right after these segments.
pub fn flush<F: AsRef<File>>(
    stream: &mut Stream,
    segs: &mut VecDeque<Segment<F>>,
    sent: &mut u64,
    quantum: u64,
    closing: bool,
) -> io::Result<Flush> {
    let start = *sent;
    loop {
        // Bytes are held back (see `Stream::write_held`) only where something ends the
        // hold at once: a range that will send something, or the shutdown that closes
        // the connection after its last response (its FIN then rides on the response's
        // last segment, as nginx's corked close does: one packet and one client wake-up
        // less per connection).
        let held = match segs.get(1) {
            Some(Segment::File { len, .. }) => *len > 0,
            Some(_) => false,
            None => closing,
        };
        let Some(seg) = segs.front_mut() else { break };
        let left = quantum.saturating_sub(*sent - start);
        if left == 0 {
            return Ok(Flush::Turn);
        }
        let step = match seg {
            Segment::Bytes(buf, pos) => send_bytes(stream, buf, pos, sent, left, held),
            Segment::Shared { blob, pos, end } => send_bytes(stream, &blob[..*end], pos, sent, left, held),
            Segment::File { file, offset, len } => send_range(stream, file.as_ref(), offset, len, sent, left),
        };
        match step? {
            Flush::Done => segs.pop_front(),
            Flush::Turn => continue,
            other => return Ok(other),
        };
    }
    // What the transport still holds (TLS records the socket did not take yet).
    loop {
        match stream.flush() {
            Ok(()) => return Ok(Flush::Done),
            Err(e) => match classify(&e) {
                Failure::Wait => return Ok(Flush::Blocked),
                Failure::Retry => {}
                Failure::Fatal => return Err(e),
            },
        }
    }
}

/// Writes `bytes[*pos..]` (held back if `held`: see `Stream::write_held`),
/// advancing `pos` and `sent`: `Done`, `Blocked`, or `Turn` once `left` bytes went out.
fn send_bytes(
    stream: &mut Stream,
    bytes: &[u8],
    pos: &mut usize,
    sent: &mut u64,
    left: u64,
    held: bool,
) -> io::Result<Flush> {
    let stop = pos.saturating_add(usize::try_from(left).unwrap_or(usize::MAX));
    while *pos < bytes.len() {
        if *pos >= stop {
            return Ok(Flush::Turn);
        }
        let chunk = &bytes[*pos..bytes.len().min(stop)];
        let wrote = if held {
            stream.write_held(chunk)
        } else {
            stream.write(chunk)
        };
        match wrote {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *pos += n;
                *sent += n as u64;
            }
            Err(e) => match classify(&e) {
                Failure::Wait => return Ok(Flush::Blocked),
                Failure::Retry => {}
                Failure::Fatal => return Err(e),
            },
        }
    }
    Ok(Flush::Done)
}

/// Sends `*len` bytes of `file` from `*offset` through the transport: `Done`,
/// `Blocked`, `Short` if the file ended first, or `Turn` once `left` bytes went out.
fn send_range(
    stream: &mut Stream,
    file: &File,
    offset: &mut u64,
    len: &mut u64,
    sent: &mut u64,
    mut left: u64,
) -> io::Result<Flush> {
    while *len > 0 {
        if left == 0 {
            return Ok(Flush::Turn);
        }
        match stream.send_file(file, offset, (*len).min(left)) {
            Ok(0) => return Ok(Flush::Short),
            Ok(n) => {
                *len -= n;
                *sent += n;
                left -= n;
            }
            Err(e) => match classify(&e) {
                Failure::Wait => return Ok(Flush::Blocked),
                Failure::Retry => {}
                Failure::Fatal => return Err(e),
            },
        }
    }
    Ok(Flush::Done)
}

/// Turns what is left into owned segments, duplicating each shared file handle once
/// (the only extra system call, and only for responses that had to wait for the
/// client): a parked response holds one descriptor per file, whatever its ranges.
pub fn into_owned(segs: &mut Segments) -> io::Result<Owned> {
    let mut dups: Vec<(Rc<File>, Arc<File>)> = Vec::new();
    segs.drain(..)
        .map(|seg| {
            Ok(match seg {
                Segment::Bytes(buf, pos) => Segment::Bytes(buf, pos),
                Segment::Shared { blob, pos, end } => Segment::Shared { blob, pos, end },
                Segment::File { file, offset, len } => {
                    let owned = match dups.iter().find(|(rc, _)| Rc::ptr_eq(rc, &file)) {
                        Some((_, arc)) => Arc::clone(arc),
                        None => {
                            let arc = Arc::new(file.try_clone()?);
                            dups.push((file, Arc::clone(&arc)));
                            arc
                        }
                    };
                    Segment::File {
                        file: owned,
                        offset,
                        len,
                    }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::transport::Transport;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn segments_go_out_in_order_and_short_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        for transport in [Transport::Plain, Transport::Copy] {
            let file = Rc::new(File::open(&path).unwrap());
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let mut server = Stream::new(listener.accept().unwrap().0, transport, None);
            let mut segs: Segments = VecDeque::new();
            segs.push_back(Segment::Bytes(b"head|".to_vec(), 0));
            segs.push_back(Segment::File {
                file: Rc::clone(&file),
                offset: 2,
                len: 3,
            });
            segs.push_back(Segment::Bytes(b"|".to_vec(), 0));
            segs.push_back(Segment::File {
                file: Rc::clone(&file),
                offset: 0,
                len: 2,
            });
            let mut sent = 0;
            assert_eq!(flush(&mut server, &mut segs, &mut sent, 4, false).unwrap(), Flush::Turn);
            assert_eq!(sent, 4, "a turn ends after the quantum");
            assert_eq!(
                flush(&mut server, &mut segs, &mut sent, u64::MAX, false).unwrap(),
                Flush::Done
            );
            assert_eq!(sent, 11);
            let mut segs: Segments = VecDeque::new();
            segs.push_back(Segment::File {
                file,
                offset: 8,
                len: 5,
            });
            assert_eq!(
                flush(&mut server, &mut segs, &mut sent, u64::MAX, false).unwrap(),
                Flush::Short
            );
            drop(server);
            let mut got = String::new();
            client.read_to_string(&mut got).unwrap();
            assert_eq!(got, "head|234|0189", "{transport:?}");
        }
    }

    #[test]
    fn bytes_held_for_the_closing_shutdown_all_arrive_before_the_end() {
        for transport in [Transport::Plain, Transport::Copy] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let mut server = Stream::new(listener.accept().unwrap().0, transport, None);
            let mut segs: Segments = VecDeque::new();
            segs.push_back(Segment::Bytes(b"head|".to_vec(), 0));
            segs.push_back(Segment::Bytes(b"last".to_vec(), 0));
            let mut sent = 0;
            assert_eq!(
                flush(&mut server, &mut segs, &mut sent, u64::MAX, true).unwrap(),
                Flush::Done
            );
            server.close();
            let mut got = String::new();
            client.read_to_string(&mut got).unwrap();
            assert_eq!(got, "head|last", "{transport:?}");
            drop(server);
        }
    }
}
