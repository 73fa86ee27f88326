//! Compressed representations, made once and kept in memory under one byte bound
//! shared by all workers.
//!
//! Two levels. The shared [`Store`] holds every kept representation, knows which are
//! being made, and enforces the bound; it is behind a mutex, taken only when a
//! worker does not find an entry in its own [`Front`]: a map of handles to entries
//! it used before, read without any lock. A hit costs a hash lookup and one atomic
//! load (is the entry still kept?).
//!
//! The bound counts bytes that are resident, not bytes in the map: every compressed
//! body is a [`Blob`] that adds its length to the store's count when made and takes
//! it off when its last handle drops, so a response still sending an evicted body is
//! counted until it ends. A compression reserves the source's length (the most its
//! output may take) before it starts; if evicting every kept entry cannot make room,
//! it does not start and the client gets the identity bytes. Eviction takes the
//! entry used least recently. Fronts drop handles to evicted entries at their next
//! use and whenever the store's eviction count moves (checked once per request).
//!
//! Coherence: a file's entry is keyed by the [`Identity`] (device, inode, size,
//! mtime, ctime, mode) of the version just found, and the source is checked again
//! after it was read: a change makes a new key, never an old answer.
//!
//! One compression per key: a worker that finds the key being made waits for it (up
//! to [`COMPRESS_WAIT`]); at most `parallel` compressions run at once (the CPU is
//! the limit), others wait the same way. After the wait, identity.

use super::identity::{identity_of, Identity};
use super::Body;
use crate::http::encoding::Encoding;
use crate::limits::COMPRESS_WAIT;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// What a kept representation is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// One version of a file, in one coding.
    File(Identity, Encoding),
    /// A generated page (by its ETag), in one coding.
    Page(String, Encoding),
}

/// Compressed bytes, counted as resident while any handle to them lives.
#[derive(Debug)]
pub struct Blob {
    bytes: Box<[u8]>,
    counters: Arc<Counters>,
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        self.counters
            .resident
            .fetch_sub(self.bytes.len() as u64, Ordering::Relaxed);
    }
}

/// The store's counters (for stats and metrics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes of compressed bodies alive now.
    pub resident: AtomicU64,
    /// Requests answered from a kept representation.
    pub hits: AtomicU64,
    /// Compressions made.
    pub misses: AtomicU64,
    /// Entries evicted to make room.
    pub evictions: AtomicU64,
    /// Requests sent identity because the bound or the CPU was taken.
    pub refused: AtomicU64,
}

/// A kept representation: its bytes, or `None` when compressing did not pay (the
/// output was not at least 5% smaller), remembered so it is not tried again.
#[derive(Debug)]
struct Entry {
    blob: Option<Arc<Blob>>,
    kept: AtomicBool,
    used: AtomicU64,
}

/// The shared cache (see the module doc).
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    changed: Condvar,
    limit: u64,
    parallel: usize,
    epoch: Instant,
    /// Counters; `evictions` also tells fronts to sweep.
    pub counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Arc<Entry>>,
    making: HashSet<Key>,
    reserved: u64,
}

impl Store {
    /// A store keeping at most `limit` bytes, running at most `parallel`
    /// compressions at once.
    pub fn new(limit: u64, parallel: usize) -> Store {
        Store {
            inner: Mutex::default(),
            changed: Condvar::new(),
            limit,
            parallel: parallel.max(1),
            epoch: Instant::now(),
            counters: Arc::default(),
        }
    }

    fn tick(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key`, made with `make` if it is not kept (see the module doc);
    /// `None` if it could not be had within [`COMPRESS_WAIT`].
    fn get(&self, key: &Key, len: u64, make: impl FnOnce() -> io::Result<Option<Vec<u8>>>) -> Option<Arc<Entry>> {
        let deadline = Instant::now() + COMPRESS_WAIT;
        let mut inner = self.lock();
        loop {
            if let Some(entry) = inner.map.get(key) {
                entry.used.store(self.tick(), Ordering::Relaxed);
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Some(Arc::clone(entry));
            }
            let busy = inner.making.contains(key) || inner.making.len() >= self.parallel;
            if !busy {
                break;
            }
            let wait = deadline.checked_duration_since(Instant::now())?;
            inner = self
                .changed
                .wait_timeout(inner, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // The output takes at most the source's length; the encoder's own tables are
        // counted too while it runs, so the bound covers compressions in progress.
        let reserve = len + working_memory(key);
        if !self.make_room(&mut inner, reserve) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        inner.reserved += reserve;
        inner.making.insert(key.clone());
        drop(inner);
        let made = make();
        let mut inner = self.lock();
        inner.reserved -= reserve;
        inner.making.remove(key);
        self.changed.notify_all();
        let bytes = match made {
            Ok(bytes) => bytes,
            Err(e) => {
                log::debug!("compression failed: {e}");
                return None;
            }
        };
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let blob = bytes.map(|b| {
            self.counters.resident.fetch_add(b.len() as u64, Ordering::Relaxed);
            Arc::new(Blob {
                bytes: b.into_boxed_slice(),
                counters: Arc::clone(&self.counters),
            })
        });
        let entry = Arc::new(Entry {
            blob,
            kept: AtomicBool::new(true),
            used: AtomicU64::new(self.tick()),
        });
        inner.map.insert(key.clone(), Arc::clone(&entry));
        Some(entry)
    }

    /// Evicts least recently used entries until `need` more bytes fit under the
    /// limit; false if even an empty map leaves no room (responses in flight hold it).
    fn make_room(&self, inner: &mut Inner, need: u64) -> bool {
        loop {
            let resident = self.counters.resident.load(Ordering::Relaxed);
            if resident + inner.reserved + need <= self.limit {
                return true;
            }
            let oldest = (inner.map.iter())
                .filter(|(_, e)| e.blob.is_some())
                .min_by_key(|(_, e)| e.used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            let Some(key) = oldest else { return false };
            if let Some(entry) = inner.map.remove(&key) {
                entry.kept.store(false, Ordering::Relaxed);
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Memory an encoder takes while it runs (measured peak, VmHWM, for a 64 KiB script at
/// the levels in `limits`, rounded up): brotli 2.6 MiB, zstd 9 and gzip 6 less.
fn working_memory(key: &Key) -> u64 {
    let enc = match key {
        Key::File(_, enc) | Key::Page(_, enc) => enc,
    };
    match enc {
        Encoding::Brotli => 3 << 20,
        Encoding::Zstd => 2 << 20,
        Encoding::Gzip => 1 << 20,
    }
}

/// A worker's handles to entries it used (see the module doc).
#[derive(Debug, Default)]
pub struct Front {
    entries: HashMap<Key, Arc<Entry>>,
    evictions_seen: u64,
}

impl Front {
    /// The compressed bytes for `key`, from this front, the store, or made now by
    /// `make`; `None` means send identity.
    pub fn get(
        &mut self,
        store: &Store,
        key: Key,
        len: u64,
        make: impl FnOnce() -> io::Result<Option<Vec<u8>>>,
    ) -> Option<Arc<Blob>> {
        if let Some(entry) = self.entries.get(&key) {
            if entry.kept.load(Ordering::Relaxed) {
                let now = store.tick();
                if entry.used.load(Ordering::Relaxed) != now {
                    entry.used.store(now, Ordering::Relaxed);
                }
                store.counters.hits.fetch_add(1, Ordering::Relaxed);
                return entry.blob.clone();
            }
            self.entries.remove(&key);
        }
        let entry = store.get(&key, len, make)?;
        if self.entries.len() >= crate::limits::COMPRESS_FRONT_ENTRIES {
            self.entries.clear();
        }
        let blob = entry.blob.clone();
        self.entries.insert(key, entry);
        blob
    }

    /// Drops handles to entries the store evicted, if it evicted any since the last
    /// sweep (one atomic load otherwise).
    pub fn sweep(&mut self, store: &Store) {
        let evictions = store.counters.evictions.load(Ordering::Relaxed);
        if evictions != self.evictions_seen {
            self.evictions_seen = evictions;
            self.entries.retain(|_, e| e.kept.load(Ordering::Relaxed));
        }
    }
}

/// Compresses the `len` bytes of `body` with `enc`; `Ok(None)` when the output is
/// not at least 5% smaller. A file is checked after it was read: if it is no longer
/// the version `expected`, the read may mix two versions and is refused.
pub fn encode(body: &Body, len: u64, enc: Encoding, expected: Option<&Identity>) -> io::Result<Option<Vec<u8>>> {
    let owned;
    let data: &[u8] = match body {
        Body::Bytes(bytes) => bytes,
        Body::Shared(blob) => blob,
        Body::File(file) => {
            let mut buf = vec![0; len as usize];
            file.read_exact_at(&mut buf, 0)?;
            if expected.is_some_and(|id| identity_of(&**file).ok().as_ref() != Some(id)) {
                return Err(io::Error::other("the file changed while it was read"));
            }
            owned = buf;
            &owned
        }
    };
    let out = match enc {
        Encoding::Gzip => {
            let level = flate2::Compression::new(crate::limits::GZIP_LEVEL);
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 3), level);
            e.write_all(data)?;
            e.finish()?
        }
        Encoding::Brotli => {
            let mut out = Vec::with_capacity(data.len() / 3);
            // The default 4 MiB window: with a window fitted to a small input, the brotli
            // crate takes another path at quality 5 that needed 31 MiB and 30 ms for a
            // 64 KiB script (2.6 MiB and 5.6 ms with this one; measured, VmHWM).
            let lgwin = crate::limits::BROTLI_WINDOW_BITS;
            let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, crate::limits::BROTLI_QUALITY, lgwin);
            w.write_all(data)?;
            drop(w);
            out
        }
        Encoding::Zstd => zstd::bulk::compress(data, crate::limits::ZSTD_LEVEL)?,
    };
    Ok((out.len() < data.len() - data.len() / 20).then_some(out))
}
