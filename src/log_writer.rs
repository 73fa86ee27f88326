//! The access-log writer: the one thread that writes access-log lines to stdout, behind
//! a queue bounded in bytes.
//!
//! Writing to stdout can block for ever (a pipe nobody reads: a stuck log shipper) or
//! fail on every line (the reader went away: EPIPE). So the logger/stats thread
//! ([`crate::stats`]) never writes: it counts every request, formats its line and
//! pushes it on a [`Queue`]; this writer thread takes the lines off and writes them.
//!
//! - The queue holds at most [`LOG_BUFFER_BYTES`] of lines. When it is full a line is
//!   dropped and counted (`log_records_dropped` in the stats): a stuck log reader must
//!   not stop the site, and memory stays bounded whatever stdout does.
//! - A failed write loses the lines it held; they are counted (`log_records_lost`).
//! - Both are reported on stderr at most once per [`LOG_WARN_EVERY`], with a count.
//! - At shutdown [`Writer::finish`] waits for the writer only while it makes progress
//!   and never past its deadline; lines still queued are counted, and the process
//!   exits anyway (a thread blocked in `write` dies with it).
//!
//! [`LOG_BUFFER_BYTES`]: crate::limits::LOG_BUFFER_BYTES

use crate::limits::{LOG_FLUSH_TIMEOUT, LOG_WARN_EVERY, LOG_WRITE_BYTES};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

/// Counters the logger thread, the writer thread and the thread that stops them share.
#[derive(Debug, Default)]
struct Tally {
    /// Bytes allocated for lines handed to the writer and not yet written.
    queued_bytes: AtomicUsize,
    /// Records handed to the writer.
    handed: AtomicU64,
    /// Records written.
    written: AtomicU64,
    /// Records a failed write lost.
    lost: AtomicU64,
}

impl Tally {
    fn done(&self) -> u64 {
        self.written.load(Relaxed) + self.lost.load(Relaxed)
    }
}

/// Lines handed to the writer in one piece: one `write` when stdout keeps up.
#[derive(Debug)]
struct Chunk {
    bytes: Vec<u8>,
    records: u64,
}

/// At most one report per [`LOG_WARN_EVERY`]: counts what happened between reports.
#[derive(Debug, Default)]
pub struct RateLimit {
    last: Option<Instant>,
    pending: u64,
}

impl RateLimit {
    /// Counts `n` more events at `now`; returns the count to report if a report is due
    /// (the first event, then at most once per [`LOG_WARN_EVERY`]).
    pub fn note(&mut self, now: Instant, n: u64) -> Option<u64> {
        self.pending += n;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_WARN_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

/// The logger thread's end: lines go in, bounded in bytes.
#[derive(Debug)]
pub struct Queue {
    tx: Sender<Chunk>,
    tally: Arc<Tally>,
    budget: usize,
    chunk: Vec<u8>,
    records: u64,
    dropped: u64,
    warn: RateLimit,
}

impl Queue {
    /// Adds one line (ending in `\n`). Returns false, and counts the record as dropped,
    /// if the queue has no room for it.
    pub fn push(&mut self, line: &[u8]) -> bool {
        let queued = self.tally.queued_bytes.load(Relaxed);
        if queued.saturating_add(self.chunk.len() + line.len()) > self.budget {
            self.dropped += 1;
            if let Some(n) = self.warn.note(Instant::now(), 1) {
                log::warn!(
                    "access log: stdout is not keeping up ({queued} bytes queued); \
                     {n} record(s) dropped since the last report"
                );
            }
            return false;
        }
        self.chunk.extend_from_slice(line);
        self.records += 1;
        if self.chunk.len() >= LOG_WRITE_BYTES {
            self.flush();
        }
        true
    }

    /// Hands the lines pushed so far to the writer.
    pub fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let chunk = Chunk {
            bytes: std::mem::take(&mut self.chunk),
            records: std::mem::take(&mut self.records),
        };
        // Capacity, not length: the bound is on memory.
        self.tally.queued_bytes.fetch_add(chunk.bytes.capacity(), Relaxed);
        self.tally.handed.fetch_add(chunk.records, Relaxed);
        if let Err(e) = self.tx.send(chunk) {
            // The writer thread is gone (it panicked): these lines are lost.
            let chunk = e.into_inner();
            self.tally.queued_bytes.fetch_sub(chunk.bytes.capacity(), Relaxed);
            self.tally.lost.fetch_add(chunk.records, Relaxed);
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records lost to failed writes so far.
    pub fn lost(&self) -> u64 {
        self.tally.lost.load(Relaxed)
    }

    /// Bytes handed to the writer and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.tally.queued_bytes.load(Relaxed)
    }
}

/// The writer thread, seen from the thread that started it.
#[derive(Debug)]
pub struct Writer {
    done: Receiver<()>,
    tally: Arc<Tally>,
    thread: thread::JoinHandle<()>,
}

/// Starts the writer thread on `out`, with a queue of at most `budget` bytes.
pub fn start(out: impl Write + Send + 'static, budget: usize) -> io::Result<(Queue, Writer)> {
    let (tx, rx) = crossbeam_channel::unbounded(); // bounded by `budget` bytes
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    let tally = Arc::new(Tally::default());
    let thread = {
        let tally = Arc::clone(&tally);
        thread::Builder::new().name("ts-logout".into()).spawn(move || {
            write_chunks(&rx, out, &tally);
            drop(done_tx);
        })?
    };
    let queue = Queue {
        tx,
        tally: Arc::clone(&tally),
        budget,
        chunk: Vec::new(),
        records: 0,
        dropped: 0,
        warn: RateLimit::default(),
    };
    Ok((queue, Writer { done, tally, thread }))
}

impl Writer {
    /// Waits for the writer to write everything handed to it (its [`Queue`] must be
    /// dropped first, or it never ends). Gives up once it makes no progress for
    /// [`LOG_FLUSH_TIMEOUT`], or at `deadline` (but waits at least that long past now).
    /// Returns the number of records left unwritten.
    pub fn finish(self, deadline: Instant) -> u64 {
        let now = Instant::now();
        let hard = deadline.max(crate::clock::deadline(now, LOG_FLUSH_TIMEOUT));
        loop {
            let before = self.tally.done();
            let wait = crate::clock::deadline(Instant::now(), LOG_FLUSH_TIMEOUT).min(hard);
            match self.done.recv_deadline(wait) {
                Err(RecvTimeoutError::Timeout) if Instant::now() < hard && self.tally.done() > before => {}
                Err(RecvTimeoutError::Timeout) => break,
                _ => {
                    let _ = self.thread.join();
                    break;
                }
            }
        }
        // The thread, if still blocked in `write`, is left to end with the process.
        let handed = self.tally.handed.load(Relaxed);
        handed.saturating_sub(self.tally.done())
    }
}

/// The writer loop: writes chunks until the queue is closed and empty.
fn write_chunks(rx: &Receiver<Chunk>, mut out: impl Write, tally: &Tally) {
    let mut warn = RateLimit::default();
    for chunk in rx {
        let result = write_lines(&mut out, &chunk.bytes);
        tally.queued_bytes.fetch_sub(chunk.bytes.capacity(), Relaxed);
        match result {
            Ok(()) => {
                tally.written.fetch_add(chunk.records, Relaxed);
            }
            Err((e, at)) => {
                // A line is written once its newline is; lines escape every newline.
                let unwritten = chunk.bytes[at..].iter().filter(|&&b| b == b'\n').count() as u64;
                let lost = unwritten.min(chunk.records);
                tally.written.fetch_add(chunk.records - lost, Relaxed);
                tally.lost.fetch_add(lost, Relaxed);
                if let Some(n) = warn.note(Instant::now(), lost) {
                    log::warn!("access log: cannot write to stdout ({e}); {n} record(s) lost since the last report");
                }
            }
        }
    }
    let _ = out.flush();
}

/// Writes all of `bytes`, or says how far it got before the error.
fn write_lines(out: &mut impl Write, bytes: &[u8]) -> Result<(), (io::Error, usize)> {
    let mut at = 0;
    while at < bytes.len() {
        match out.write(&bytes[at..]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), at)),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A non-blocking stdout (inherited O_NONBLOCK): wait instead of losing lines.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err((e, at)),
        }
    }
    if let Err(e) = out.flush() {
        return Err((e, bytes.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A `Write` that hands every write to a channel, after waiting for a permit if gated.
    struct Probe {
        gate: Option<Receiver<()>>,
        out: Sender<Vec<u8>>,
        fail_after: Option<usize>,
    }

    impl Write for Probe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(gate) = &self.gate {
                gate.recv().map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            }
            let n = match &mut self.fail_after {
                Some(0) => return Err(io::ErrorKind::BrokenPipe.into()),
                Some(left) => {
                    let n = buf.len().min(*left);
                    *left -= n;
                    n
                }
                None => buf.len(),
            };
            let _ = self.out.send(buf[..n].to_vec());
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn probe(gated: bool, fail_after: Option<usize>) -> (Probe, Option<Sender<()>>, Receiver<Vec<u8>>) {
        let (permit, gate) = crossbeam_channel::unbounded();
        let (out, written) = crossbeam_channel::unbounded();
        let p = Probe {
            gate: gated.then_some(gate),
            out,
            fail_after,
        };
        (p, gated.then_some(permit), written)
    }

    fn line(i: usize) -> Vec<u8> {
        format!("{i:099}\n").into_bytes() // 100 bytes
    }

    fn later(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn lines_reach_the_output_in_order() {
        let (p, _, written) = probe(false, None);
        let (mut q, w) = start(p, 1 << 20).unwrap();
        for i in 0..1000 {
            assert!(q.push(&line(i)));
            if i % 7 == 0 {
                q.flush();
            }
        }
        q.flush();
        drop(q);
        assert_eq!(w.finish(later(1000)), 0);
        let all: Vec<u8> = written.try_iter().flatten().collect();
        let expected: Vec<u8> = (0..1000).flat_map(line).collect();
        assert!(all == expected);
    }

    #[test]
    fn full_queue_drops_and_counts_instead_of_growing() {
        let (p, permit, written) = probe(true, None);
        let (mut q, w) = start(p, 1000).unwrap();
        let mut kept = 0;
        for i in 0..100 {
            kept += usize::from(q.push(&line(i)));
            q.flush();
            assert!(q.queued_bytes() <= 1000 + 128, "{} bytes queued", q.queued_bytes());
        }
        assert!(kept < 20, "{kept} kept with a stalled writer");
        assert_eq!(q.dropped(), 100 - kept as u64);
        // The output comes back: what was kept is written, and there is room again.
        let permit = permit.unwrap();
        for _ in 0..200 {
            let _ = permit.send(());
        }
        let t = Instant::now();
        while q.queued_bytes() > 0 {
            assert!(t.elapsed() < Duration::from_secs(5), "writer never drained");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(q.push(&line(100)));
        q.flush();
        drop(q);
        assert_eq!(w.finish(later(1000)), 0);
        assert_eq!(written.try_iter().flatten().filter(|&b| b == b'\n').count(), kept + 1);
    }

    #[test]
    fn failed_writes_count_the_lines_they_lost() {
        // The output takes 250 bytes (two and a half lines), then fails like EPIPE.
        let (p, _, written) = probe(false, Some(250));
        let (mut q, w) = start(p, 1 << 20).unwrap();
        for i in 0..10 {
            q.push(&line(i));
        }
        q.flush();
        for i in 10..15 {
            q.push(&line(i));
        }
        q.flush();
        let tally = Arc::clone(&w.tally);
        drop(q);
        assert_eq!(w.finish(later(1000)), 0);
        assert_eq!(tally.written.load(Relaxed), 2);
        assert_eq!(tally.lost.load(Relaxed), 13);
        assert_eq!(written.try_iter().flatten().count(), 250);
    }

    #[test]
    fn finish_gives_up_on_a_stalled_writer_and_counts_what_is_left() {
        let (p, _permit, _) = probe(true, None);
        let (mut q, w) = start(p, 1 << 20).unwrap();
        for i in 0..30 {
            q.push(&line(i));
            if i % 10 == 9 {
                q.flush();
            }
        }
        drop(q);
        let t = Instant::now();
        // A deadline far away: the writer makes no progress, so finish stops early.
        assert_eq!(w.finish(later(60_000)), 30);
        let took = t.elapsed();
        assert!(took >= LOG_FLUSH_TIMEOUT && took < LOG_FLUSH_TIMEOUT * 3, "{took:?}");
    }

    #[test]
    fn rate_limit_reports_at_most_once_a_second_with_the_count() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut r = RateLimit::default();
        assert_eq!(r.note(at(0), 1), Some(1), "the first event is reported at once");
        assert_eq!(r.note(at(10), 5), None);
        assert_eq!(r.note(at(999), 1), None);
        assert_eq!(r.note(at(1000), 2), Some(8), "everything since the last report");
        assert_eq!(r.note(at(1500), 1), None);
        assert_eq!(r.note(at(5000), 0), Some(1));
    }
}
