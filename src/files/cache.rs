//! Each worker's cache of what it served: a hint, never a truth.
//!
//! The rule it obeys: a request that begins after a change to a file has completed
//! (write and close, rename over, unlink, chmod) is answered from the new state. So
//! every lookup starts with one `statx` of the path, and a cached entry is used only
//! if the path still names the very same object, compared by device, inode, size,
//! mtime, ctime and mode (ctime catches chmod and link changes, and the kernel gives
//! it a fine-grained stamp once it has been queried). Anything else — a miss, a
//! difference, an error — opens the path afresh under the root's containment rule,
//! and that handle's own metadata becomes the entry.
//!
//! Absence is remembered the same way, against the directory: a path found to have
//! no entry at all (not even a dangling symlink) is absent while its directory is the
//! same version, by the same comparison, since adding, renaming or removing an entry
//! changes the directory's mtime and ctime. So the `FILE.br`, `FILE.zst` and
//! `FILE.gz` a browser's `Accept-Encoding` makes the planner look for cost one
//! `statx` of their directory per request (shared by the three within a request, and
//! taken after the request began) instead of three failing `openat2`s, and a new
//! `FILE.gz` is still seen by the first request after it appears. Measured with oha
//! (which sends `Accept-Encoding: gzip, br, deflate, zstd`), 1 KiB at 64 connections:
//! 6.1 system calls per request before, 4.1 after. A missing variant of a file the
//! cache holds is remembered on that file's entry (one identity and a bit per
//! coding), so it costs no room of its own: a site has as many missing variants as
//! files, three times over (30,000 in the random-path load test), and a table of
//! paths big enough for them would hold megabytes per worker.
//!
//! Measured (`strace -c`, `wrk`, 1 KiB file): a hit costs the one `statx` (about
//! 0.5 µs) plus the socket calls; small files are kept as bytes, so a hit reads
//! nothing, and larger ones keep their descriptor for `sendfile`.

use super::bodies::Bodies;
use super::dir::Listing;
use super::identity::{identity_of, Identity};
use super::{Body, Kind, OpenError, Root};
use crate::limits::{
    CACHE_ABSENT, CACHE_ABSENT_PATH_BYTES, CACHE_DESCRIPTORS, CACHE_ENTRIES, CACHE_IDLE, CACHE_IDLE_SMALL,
    CACHE_INLINE_BYTES, INLINE_BODY_MAX,
};
use rustix::fd::{AsFd, OwnedFd};

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often [`FileCache::purge`] looks at small files' entries too: they are
/// dropped between [`CACHE_IDLE_SMALL`] and 1.25 × that after their last use.
const SMALL_SWEEP_EVERY: Duration = CACHE_IDLE_SMALL.checked_div(4).expect("4 is not 0");

/// Reads of a small file retried when it changed while being read.
const READ_RETRIES: usize = 3;

/// What a path names now: a regular file and its bytes (the handle whose metadata
/// is given), a directory with the descriptor it was checked through, or a FIFO,
/// socket or device (never opened, never served).
pub type Found = crate::http::plan::Found<Body, Rc<OwnedFd>>;

#[derive(Debug)]
struct Entry {
    id: Identity,
    found: Found,
    used: Instant,
    /// Renderings of a directory, HTML and JSON; boxed so a file's entry stays small
    /// (a lookup touches fewer cache lines of its table).
    listings: Option<Box<[Option<Listing>; 2]>>,
    /// Which of this file's precompressed variants ([`VARIANTS`], one bit each) were
    /// found absent while its directory had this identity (see the module doc).
    /// Boxed: most entries never have one, and 64 bytes fewer per entry is 1 MiB
    /// less per worker with 16,384 entries.
    absent_variants: Option<Box<(Identity, u8)>>,
}

/// A directory checked in the current request and what it was (`id: None`: none
/// yet). The name's buffer is kept across requests, so remembering one allocates
/// nothing on the hot path.
#[derive(Debug, Default)]
struct DirSeen {
    dir: String,
    id: Option<Option<Identity>>,
}

impl DirSeen {
    fn get(&self, dir: &str) -> Option<Option<Identity>> {
        self.id.filter(|_| self.dir == dir)
    }

    fn set(&mut self, dir: &str, id: Option<Identity>) {
        self.dir.clear();
        self.dir.push_str(dir);
        self.id = Some(id);
    }
}

/// The suffixes of precompressed variants whose absence is kept on their file's entry.
const VARIANTS: [&str; 3] = [".br", ".zst", ".gz"];

/// One worker's cache (see the module doc). Owned by its worker: workers share nothing.
#[derive(Debug)]
pub struct FileCache {
    root: Root,
    follow: bool,
    /// Where small files' bytes are shared with the other workers.
    bodies: Arc<Bodies>,
    entries: HashMap<String, Entry>,
    inline_bytes: usize,
    /// The keys of the entries holding a descriptor (one each).
    descriptors: HashSet<String>,
    /// When [`FileCache::purge`] next looks at every entry, not only those.
    next_small_sweep: Instant,
    /// Paths with no entry, by the identity their directory had (see the module doc).
    absent: HashMap<String, Identity>,
    /// The directory last checked for an absent path in this request, and what it was.
    dir_seen: DirSeen,
    /// When the current request began: the use time of the entries it looks up.
    now: Instant,
}

impl FileCache {
    /// An empty cache over `root`; `follow` lets symlinks leave the root.
    pub fn new(root: Root, follow: bool) -> FileCache {
        FileCache::sharing(root, follow, Arc::default())
    }

    /// An empty cache over `root` that shares small files' bytes through `bodies`.
    pub fn sharing(root: Root, follow: bool, bodies: Arc<Bodies>) -> FileCache {
        FileCache {
            root,
            follow,
            bodies,
            entries: HashMap::new(),
            inline_bytes: 0,
            descriptors: HashSet::new(),
            next_small_sweep: Instant::now(),
            absent: HashMap::new(),
            dir_seen: DirSeen::default(),
            now: Instant::now(),
        }
    }

    /// A new request began at `now`: what its lookups learn of directories is taken
    /// from now.
    pub fn begin_request(&mut self, now: Instant) {
        self.dir_seen.id = None;
        self.now = now;
    }

    /// The root this cache opens under.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Serves from another root from now on (SIGHUP): every entry is dropped.
    pub fn set_root(&mut self, root: Root) {
        self.clear();
        self.root = root;
    }

    /// What `rel` names now (see the module doc for the rule).
    pub fn lookup(&mut self, rel: &str) -> Result<Found, OpenError> {
        if let Some(entry) = self.entries.get_mut(rel) {
            match self.root.stat(rel).map(|s| Identity::of(&s)) {
                Ok(id) if id == entry.id => {
                    entry.used = self.now;
                    return Ok(entry.found.clone());
                }
                Ok(id) if id.kind() == Kind::Other => {
                    self.remove(rel);
                    return Ok(Found::Other);
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    self.remove(rel);
                    return Err(OpenError::NotFound);
                }
                _ => self.remove(rel),
            }
        }
        if let Some((stem, bit)) = variant_of(rel) {
            if let Some(then) = self.recorded_absent(stem, bit) {
                if self.dir_now(parent(rel)) == Some(then) {
                    return Err(OpenError::NotFound);
                }
                if let Some(entry) = self.entries.get_mut(stem) {
                    entry.absent_variants = None;
                }
            }
        }
        if let Some(&then) = self.absent.get(rel) {
            if self.dir_now(parent(rel)) == Some(then) {
                return Err(OpenError::NotFound);
            }
            self.absent.remove(rel);
        }
        match self.root.open(rel, self.follow) {
            Ok(fd) => self.fill(rel, fd),
            Err(e) => {
                if e.raw_os_error() == Some(libc::ENOENT) {
                    self.note_absent(rel);
                }
                Err(OpenError::from(e))
            }
        }
    }

    /// Whether `stem` + each of `exts` (suffixes of [`VARIANTS`]) are all known to be
    /// absent now: found absent while `stem`'s directory had the identity it has now
    /// (one `statx` of it per request, shared with [`FileCache::lookup`]). It answers
    /// what looking up each variant would, with one search of the table for the file's
    /// entry and no path built: in the random-path load test with oha's
    /// `Accept-Encoding`, those lookups were 10% of the CPU (hashing and comparing
    /// paths in a table of 16,384).
    pub fn variants_absent<'e>(&mut self, stem: &str, exts: impl IntoIterator<Item = &'e str>) -> bool {
        let mut want = 0u8;
        for ext in exts {
            match VARIANTS.iter().position(|v| *v == ext) {
                Some(i) => want |= 1 << i,
                None => return false,
            }
        }
        self.recorded_absent(stem, want)
            .is_some_and(|then| self.dir_now(parent(stem)) == Some(then))
    }

    /// The identity `stem`'s directory had when all the variants in `want` (bits of
    /// [`VARIANTS`]) were found absent, if its entry records them so; whether that
    /// still holds is for the caller to check against the directory now.
    fn recorded_absent(&self, stem: &str, want: u8) -> Option<Identity> {
        let (then, mask) = *self.entries.get(stem)?.absent_variants.as_deref()?;
        (mask & want == want).then_some(then)
    }

    /// The identity of the directory `dir` now, checked once per request.
    fn dir_now(&mut self, dir: &str) -> Option<Identity> {
        if let Some(id) = self.dir_seen.get(dir) {
            return id;
        }
        let id = self.identity_now(dir);
        self.dir_seen.set(dir, id);
        id
    }

    /// What `rel` names now, by one `statx` (following symlinks), if anything.
    fn identity_now(&self, rel: &str) -> Option<Identity> {
        self.root.stat(rel).ok().map(|s| Identity::of(&s))
    }

    /// Remembers that `rel`, which just failed to open with ENOENT, has no entry in
    /// its directory: only if the directory is a directory, the name has no entry (a
    /// dangling symlink would one day lead somewhere), and the directory did not
    /// change around that check.
    fn note_absent(&mut self, rel: &str) {
        // A variant of a kept file is noted on its entry; anything else takes a place
        // in the table. Full: checking would cost two `statx` and an `lstat` for
        // nothing (the purge makes room).
        let on_entry = variant_of(rel).filter(|(stem, _)| self.entries.contains_key(*stem));
        if on_entry.is_none() && (rel.len() > CACHE_ABSENT_PATH_BYTES || self.absent.len() >= CACHE_ABSENT) {
            return;
        }
        let dir = parent(rel);
        let Some(before) = self.identity_now(dir).filter(|id| id.kind() == Kind::Dir) else {
            return;
        };
        let no_entry = matches!(self.root.lstat(rel), Err(e) if e.raw_os_error() == Some(libc::ENOENT));
        if !no_entry || self.identity_now(dir) != Some(before) {
            return;
        }
        self.dir_seen.set(dir, Some(before));
        match on_entry.and_then(|(stem, bit)| Some((self.entries.get_mut(stem)?, bit))) {
            Some((entry, bit)) => match entry.absent_variants.as_deref_mut() {
                Some((then, mask)) if *then == before => *mask |= bit,
                Some(kept) => *kept = (before, bit),
                None => entry.absent_variants = Some(Box::new((before, bit))),
            },
            None => {
                self.absent.insert(rel.to_string(), before);
            }
        }
    }

    /// What `name` inside the directory `dir` (just looked up as `dir_rel`) names
    /// now, opened relative to that directory's descriptor on a miss.
    pub fn lookup_in(&mut self, dir: &OwnedFd, dir_rel: &str, name: &str) -> Result<Found, OpenError> {
        let rel = crate::http::resolve::join(dir_rel, name);
        if self.entries.contains_key(&rel) {
            return self.lookup(&rel);
        }
        let fd = (self.root.open_in(dir.as_fd(), dir_rel, name, self.follow)).map_err(OpenError::from)?;
        self.fill(&rel, fd)
    }

    /// The identity of the version of `rel` the last lookup found, if it is kept.
    pub fn identity(&self, rel: &str) -> Option<Identity> {
        self.entries.get(rel).map(|e| e.id)
    }

    /// The cached rendering of the directory `rel` (just looked up), if it is still
    /// good for `json`; see [`Listing`].
    pub fn listing(&self, rel: &str, json: bool) -> Option<&Listing> {
        let slot = self.entries.get(rel)?.listings.as_ref()?[usize::from(json)].as_ref()?;
        slot.fresh().then_some(slot)
    }

    /// Keeps a rendering of the directory `rel` for later requests.
    pub fn keep_listing(&mut self, rel: &str, json: bool, listing: Listing) {
        if let Some(entry) = self.entries.get_mut(rel) {
            entry.listings.get_or_insert_with(Box::default)[usize::from(json)] = Some(listing);
        }
    }

    /// Drops entries not used lately at `now`: those holding a descriptor after
    /// [`CACHE_IDLE`] (so a deleted file's space is freed), small files kept in memory
    /// after [`CACHE_IDLE_SMALL`] (they hold no disk space, and dropping one sooner
    /// only turns its next request into a miss: in the random-path load test, one
    /// request in seven while busy, and every file again after a pause). The caller
    /// decides how often (see `Executor::purge_cache`); each call looks only at the
    /// entries holding descriptors (at most [`CACHE_DESCRIPTORS`]), and at all of them
    /// once per [`SMALL_SWEEP_EVERY`]: walking 10,000 small entries four times a second
    /// in each worker was 0.6-1.8% of the CPU in the random-path load test. Returns how
    /// many entries it looked at.
    pub fn purge(&mut self, now: Instant) -> usize {
        if self.absent.len() >= CACHE_ABSENT {
            self.absent.clear();
        }
        let idle = |e: &Entry, keep| now.saturating_duration_since(e.used) >= keep;
        let (looked, stale): (usize, Vec<String>) = if now >= self.next_small_sweep {
            self.next_small_sweep = now + SMALL_SWEEP_EVERY;
            let stale = (self.entries.iter())
                .filter(|(_, e)| idle(e, kept_unused(&e.found)))
                .map(|(k, _)| k.clone())
                .collect();
            (self.entries.len(), stale)
        } else {
            let stale = (self.descriptors.iter())
                .filter(|k| self.entries.get(*k).is_some_and(|e| idle(e, CACHE_IDLE)))
                .cloned()
                .collect();
            (self.descriptors.len(), stale)
        };
        for key in stale {
            self.remove(&key);
        }
        looked
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.absent.clear();
        self.dir_seen.id = None;
        self.inline_bytes = 0;
        self.descriptors.clear();
    }

    fn fill(&mut self, rel: &str, fd: OwnedFd) -> Result<Found, OpenError> {
        let id = identity_of(&fd).map_err(OpenError::from)?;
        let found = match id.kind() {
            Kind::Other => return Ok(Found::Other),
            Kind::Dir => Found::Dir(id.meta(), Rc::new(fd)),
            Kind::File if id.size <= INLINE_BODY_MAX => {
                // Another worker's copy of this very version, or the bytes read now.
                let (id, bytes) = match self.bodies.get(&id) {
                    Some(bytes) => (id, bytes),
                    None => {
                        let file = File::from(fd);
                        match read_whole(&file, id)? {
                            Some((id, bytes)) => (id, self.bodies.share(id, bytes)),
                            // It kept changing while read: serve the handle, do not keep it.
                            None => return Ok(Found::File(identity_of(&file)?.meta(), Body::File(Rc::new(file)))),
                        }
                    }
                };
                let found = Found::File(id.meta().described(rel), Body::Bytes(Rc::new(bytes)));
                return Ok(self.insert(rel, id, found));
            }
            Kind::File => Found::File(id.meta().described(rel), Body::File(Rc::new(File::from(fd)))),
        };
        Ok(self.insert(rel, id, found))
    }

    fn insert(&mut self, rel: &str, id: Identity, found: Found) -> Found {
        let (bytes, fds) = cost(&found);
        if bytes > CACHE_INLINE_BYTES {
            return found;
        }
        while self.entries.len() >= CACHE_ENTRIES
            || self.inline_bytes + bytes > CACHE_INLINE_BYTES
            || self.descriptors.len() + fds > CACHE_DESCRIPTORS
        {
            self.evict_some();
        }
        self.inline_bytes += bytes;
        if fds > 0 {
            self.descriptors.insert(rel.to_string());
        }
        let entry = Entry {
            id,
            found: found.clone(),
            used: self.now,
            listings: None,
            absent_variants: None,
        };
        self.entries.insert(rel.to_string(), entry);
        found
    }

    /// Drops about an eighth of the entries, in the map's (arbitrary) order.
    fn evict_some(&mut self) {
        let n = (self.entries.len() / 8).max(1);
        let keys: Vec<String> = self.entries.keys().take(n).cloned().collect();
        if keys.is_empty() {
            self.inline_bytes = 0;
            self.descriptors.clear();
        }
        for key in keys {
            self.remove(&key);
        }
    }

    fn remove(&mut self, rel: &str) {
        if let Some(entry) = self.entries.remove(rel) {
            let (bytes, fds) = cost(&entry.found);
            self.inline_bytes -= bytes;
            if fds > 0 {
                self.descriptors.remove(rel);
            }
        }
    }
}

/// The directory part of a path under the root (`""` for the root itself).
fn parent(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The file `rel` is a precompressed variant of, and its bit in `absent_variants`.
fn variant_of(rel: &str) -> Option<(&str, u8)> {
    (VARIANTS.iter().zip(0..)).find_map(|(suffix, i)| Some((rel.strip_suffix(suffix)?, 1 << i)))
}

/// How long an entry may stay unused: [`CACHE_IDLE`] if it holds a descriptor,
/// [`CACHE_IDLE_SMALL`] if not (see [`FileCache::purge`]).
fn kept_unused(found: &Found) -> Duration {
    if cost(found).1 > 0 {
        CACHE_IDLE
    } else {
        CACHE_IDLE_SMALL
    }
}

/// Memory and descriptors an entry holds.
fn cost(found: &Found) -> (usize, usize) {
    match found {
        Found::File(_, Body::Bytes(b)) => (b.len(), 0),
        Found::File(_, Body::File(_)) | Found::Dir(..) => (0, 1),
        // Never looked up: compressed bodies are kept by the compression store.
        Found::File(_, Body::Shared(_)) => (0, 0),
        Found::Other => (0, 0),
    }
}

/// Reads a whole small file and checks it did not change meanwhile (its identity
/// before and after the read agree), so the bytes kept are the bytes the validators
/// describe. `None` if it kept changing.
fn read_whole(file: &File, mut id: Identity) -> Result<Option<(Identity, Vec<u8>)>, OpenError> {
    for _ in 0..READ_RETRIES {
        let mut buf = vec![0; id.size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let after = identity_of(file)?;
        if after == id && filled == buf.len() {
            return Ok(Some((id, buf)));
        }
        id = after;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(found: Found) -> Rc<Arc<[u8]>> {
        match found {
            Found::File(_, Body::Bytes(b)) => b,
            other => panic!("not a small file kept in memory: {other:?}"),
        }
    }

    /// Each worker kept its own copy of every small file: a 10,000-file site was in
    /// memory once per worker (73 MiB peak RSS with 4 workers in the random-path
    /// load test).
    #[test]
    fn workers_keep_one_copy_of_a_small_file_and_each_sees_its_next_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.txt");
        std::fs::write(&path, b"version one").unwrap();
        let root = Root::new(dir.path()).unwrap();
        let bodies = Arc::new(Bodies::default());
        let mut a = FileCache::sharing(root.clone(), false, Arc::clone(&bodies));
        let mut b = FileCache::sharing(root, false, bodies);
        let (one_a, one_b) = (
            bytes_of(a.lookup("s.txt").unwrap()),
            bytes_of(b.lookup("s.txt").unwrap()),
        );
        assert!(Arc::ptr_eq(&one_a, &one_b), "two copies of one version");
        assert_eq!(&one_a[..], b"version one");
        // Same size, and the mtime put back: only the ctime tells the versions apart.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, b"version two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        for cache in [&mut a, &mut b] {
            assert_eq!(&bytes_of(cache.lookup("s.txt").unwrap())[..], b"version two");
        }
    }

    /// Each of the three variants of a file the client's `Accept-Encoding` named was
    /// a lookup of its own (a path built, two tables searched) even when all three
    /// were known absent: 10% of the CPU in the random-path load test with oha.
    #[test]
    fn variants_known_absent_are_answered_at_once_and_a_new_one_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/a.js"), b"a").unwrap();
        let mut cache = FileCache::new(Root::new(dir.path()).unwrap(), false);
        let all = [".br", ".zst", ".gz"];
        let request = |cache: &mut FileCache| {
            cache.begin_request(Instant::now());
            cache.lookup("d/a.js").unwrap();
        };
        request(&mut cache);
        assert!(!cache.variants_absent("d/a.js", all), "not looked up yet");
        for ext in all {
            assert!(cache.lookup(&format!("d/a.js{ext}")).is_err());
        }
        request(&mut cache);
        assert!(cache.variants_absent("d/a.js", all));
        assert!(cache.variants_absent("d/a.js", all[..1].iter().copied()));
        assert!(!cache.variants_absent("d/a.js", [".bz2"]), "not a variant suffix");
        assert!(!cache.variants_absent("d/other.js", all), "no entry");
        std::fs::write(dir.path().join("d/a.js.gz"), b"gz").unwrap();
        request(&mut cache);
        assert!(
            !cache.variants_absent("d/a.js", all),
            "a new variant is seen by the next request"
        );
        assert!(cache.lookup("d/a.js.gz").is_ok());
    }

    /// Every purge (each quarter second while a worker is busy) walked all the
    /// entries to find the few holding descriptors: 10,000 in the random-path load
    /// test, 0.6-1.8% of the CPU, for small files that may stay a minute.
    #[test]
    fn a_busy_purge_looks_only_at_entries_holding_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            std::fs::write(dir.path().join(format!("{i}.txt")), b"small").unwrap();
        }
        std::fs::write(dir.path().join("big.bin"), vec![7; INLINE_BODY_MAX as usize + 1]).unwrap();
        let mut cache = FileCache::new(Root::new(dir.path()).unwrap(), false);
        let t0 = Instant::now();
        cache.begin_request(t0);
        for i in 0..100 {
            cache.lookup(&format!("{i}.txt")).unwrap();
        }
        cache.lookup("big.bin").unwrap();
        assert_eq!(cache.descriptors.len(), 1);
        // The first purge sweeps everything once; later busy ones only the descriptors.
        cache.purge(t0);
        let looked = cache.purge(t0 + CACHE_IDLE / 4);
        assert!(looked <= 1, "looked at {looked} entries to find 1 descriptor");
        // The descriptor still goes once idle for CACHE_IDLE, the small files stay.
        cache.purge(t0 + CACHE_IDLE + CACHE_IDLE / 4);
        assert_eq!((cache.descriptors.len(), cache.entries.len()), (0, 100));
        // Small files unused for CACHE_IDLE_SMALL go at the next full sweep.
        cache.purge(t0 + CACHE_IDLE_SMALL + CACHE_IDLE_SMALL / 4);
        assert!(cache.entries.is_empty());
    }
}
