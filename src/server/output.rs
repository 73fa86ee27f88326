//! A response as a queue of segments (bytes, or a range of a file sent with
//! `sendfile(2)`) and the one loop that sends them. When the client stops reading, sending stops with `Blocked` instead of
//! waiting: the connection is parked with what is left, and no worker is pinned by a
//! slow reader.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;

/// One piece of a response.
#[derive(Debug)]
pub enum Segment<F> {
    /// Bytes, of which the first `.1` are sent.
    Bytes(Vec<u8>, usize),
    /// `len` bytes of `file` from `offset`, sent with `sendfile(2)`.
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
}

/// Sends segments in order until done, blocked or short; `sent` counts bytes written.
pub fn flush<F: AsRef<File>>(
    stream: &mut TcpStream,
    segs: &mut VecDeque<Segment<F>>,
    sent: &mut u64,
) -> io::Result<Flush> {
    while let Some(seg) = segs.front_mut() {
        match seg {
            Segment::Bytes(buf, pos) => {
                while *pos < buf.len() {
                    match stream.write(&buf[*pos..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            *pos += n;
                            *sent += n as u64;
                        }
                        Err(e) if would_block(&e) => return Ok(Flush::Blocked),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Segment::File { file, offset, len } => {
                while *len > 0 {
                    match sendfile(stream, file.as_ref(), offset, *len) {
                        Ok(0) => return Ok(Flush::Short),
                        Ok(n) => {
                            *len -= n;
                            *sent += n;
                        }
                        Err(e) if would_block(&e) => return Ok(Flush::Blocked),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        segs.pop_front();
    }
    Ok(Flush::Done)
}

/// One `sendfile(2)` call from `*offset` (advanced by what was sent). The explicit
/// offset leaves the handle's own position alone, so handles shared through the
/// worker's cache need no seek. (`std::io::copy` from a `File` to a `TcpStream` does
/// not use sendfile in Rust 1.95: strace shows 8 KiB read/sendto pairs.)
fn sendfile(stream: &TcpStream, file: &File, offset: &mut u64, len: u64) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    // One call sends at most this much (the kernel's own cap on a single transfer).
    const MAX_CHUNK: u64 = 0x7fff_f000;
    let mut off = libc::off_t::try_from(*offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let count = len.min(MAX_CHUNK) as usize;
    // SAFETY: two valid descriptors and a valid offset pointer for the call's duration.
    let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off as u64;
    Ok(n as u64)
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
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
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn segments_go_out_in_order_and_short_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = Rc::new(File::open(&path).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
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
        assert_eq!(flush(&mut server, &mut segs, &mut sent).unwrap(), Flush::Done);
        assert_eq!(sent, 11);
        let mut segs: Segments = VecDeque::new();
        segs.push_back(Segment::File {
            file,
            offset: 8,
            len: 5,
        });
        assert_eq!(flush(&mut server, &mut segs, &mut sent).unwrap(), Flush::Short);
        drop(server);
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "head|234|0189");
    }
}
