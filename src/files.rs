//! The filesystem edge: opening a decoded path under the root, enforcing the symlink
//! policy, and turning `fs::Metadata` into the plain [`Meta`] the HTTP core plans with.

use crate::limits::{META_CACHE_ENTRIES, META_CACHE_TTL};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else (FIFO, socket, device): never served.
    Other,
}

/// File metadata as the HTTP core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Size in bytes.
    pub len: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// Inode number (part of the ETag, so a replaced file gets a new one).
    pub ino: u64,
    /// File, directory or other.
    pub kind: Kind,
}

impl Meta {
    /// Builds metadata directly (tests use this).
    pub fn new(len: u64, mtime: SystemTime, ino: u64, kind: Kind) -> Meta {
        Meta { len, mtime, ino, kind }
    }

    /// Adapts `fs::Metadata`.
    pub fn from_fs(m: &fs::Metadata) -> Meta {
        let kind = if m.is_file() {
            Kind::File
        } else if m.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        };
        let mtime = UNIX_EPOCH + Duration::new(m.mtime().max(0) as u64, m.mtime_nsec() as u32);
        Meta::new(m.len(), mtime, m.ino(), kind)
    }

    /// Modification time truncated to whole seconds, as HTTP dates carry it.
    pub fn mtime_secs(&self) -> u64 {
        self.mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    /// A strong validator from size and nanosecond mtime (RFC 9110 §8.8.3).
    ///
    /// The inode is left out on purpose (as nginx does, and Apache since 2.4): replicas
    /// behind a load balancer serving the same files then agree on ETags, so a
    /// revalidation that lands on another replica still gets its 304.
    pub fn etag(&self) -> String {
        let nanos = self.mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("\"{:x}-{:x}\"", self.len, nanos)
    }
}

/// The served directory, canonicalised once at start-up.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// Canonicalises `path` and checks that it is a directory.
    pub fn new(path: &Path) -> io::Result<Root> {
        let path = fs::canonicalize(path)?;
        if !fs::metadata(&path)?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory"));
        }
        Ok(Root { path })
    }

    /// The canonical root path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The filesystem path of a normalised relative path (see `resolve`).
    pub fn join(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// Whether `real` (a fully resolved path) lies inside the root.
    pub fn contains(&self, real: &Path) -> bool {
        real.starts_with(&self.path)
    }
}

/// Why a path could not be opened, mapped to 404 or 403 by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Missing, or hidden by the symlink policy.
    NotFound,
    /// The OS refused access.
    Forbidden,
    /// Out of file descriptors or memory: a 503, not the client's fault.
    Exhausted,
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        match (e.kind(), e.raw_os_error()) {
            (io::ErrorKind::PermissionDenied, _) => OpenError::Forbidden,
            (_, Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) => OpenError::Exhausted,
            _ => OpenError::NotFound,
        }
    }
}

/// What a worker remembers about the paths it served recently, like nginx's
/// `open_file_cache`: the open file (checked to lie inside the root), its metadata
/// and, once looked up, which precompressed variants exist. Owned by one worker, so
/// workers share nothing; entries are trusted for [`META_CACHE_TTL`], then re-opened.
#[derive(Debug, Default)]
pub struct MetaCache {
    entries: HashMap<String, Cached>,
}

#[derive(Debug)]
struct Cached {
    file: Rc<File>,
    meta: Meta,
    checked: Instant,
    variants: Option<[bool; 3]>,
}

impl MetaCache {
    /// An empty cache.
    pub fn new() -> MetaCache {
        MetaCache::default()
    }

    /// The entry for `key` if it was checked less than [`META_CACHE_TTL`] ago.
    fn fresh(&mut self, key: &str) -> Option<&mut Cached> {
        self.entries
            .get_mut(key)
            .filter(|c| c.checked.elapsed() < META_CACHE_TTL)
    }

    fn insert(&mut self, key: &str, file: Rc<File>, meta: Meta) {
        if self.entries.len() >= META_CACHE_ENTRIES && !self.entries.contains_key(key) {
            self.purge();
            if self.entries.len() >= META_CACHE_ENTRIES {
                self.entries.clear();
            }
        }
        let entry = Cached {
            file,
            meta,
            checked: Instant::now(),
            variants: None,
        };
        self.entries.insert(key.to_string(), entry);
    }

    /// Drops (and so closes) every entry past its TTL.
    pub fn purge(&mut self) {
        self.entries.retain(|_, c| c.checked.elapsed() < META_CACHE_TTL);
    }

    /// Which variants (in `encoding::preference_order`) exist for `key`, if known.
    pub fn variants(&mut self, key: &str) -> Option<[bool; 3]> {
        self.fresh(key)?.variants
    }

    /// Records which variants exist for `key`.
    pub fn set_variants(&mut self, key: &str, variants: [bool; 3]) {
        if let Some(c) = self.fresh(key) {
            c.variants = Some(variants);
        }
    }
}

/// [`open`] through a worker's [`MetaCache`]. Within the TTL a hit costs no system
/// call at all. After it, the path is opened again; if it still names the same file
/// (inode, size, mtime) the real-path check is skipped, since the file opened is the
/// very file that was checked — so the cache cannot let anything outside the root in.
/// Bodies must then be read with explicit offsets (`read_at`, or a seek first): the
/// handle is shared by every request the worker serves from it.
pub fn open_cached(
    root: &Root,
    path: &Path,
    key: &str,
    follow_symlinks: bool,
    cache: &mut MetaCache,
) -> Result<(Rc<File>, Meta), OpenError> {
    if let Some(c) = cache.fresh(key) {
        return Ok((Rc::clone(&c.file), c.meta));
    }
    let (file, meta) = open(root, path, true)?;
    let same_file = cache.entries.get(key).is_some_and(|c| c.meta == meta);
    if !follow_symlinks && !same_file && !root.contains(&real_path(&file, path)?) {
        return Err(OpenError::NotFound);
    }
    let file = Rc::new(file);
    // Variants are looked up again each TTL, so a newly added FILE.gz is noticed.
    cache.insert(key, Rc::clone(&file), meta);
    Ok((file, meta))
}

/// Opens `path` (under `root`) read-only and returns the handle with its metadata.
///
/// `O_NONBLOCK` keeps a FIFO swapped in for a file from blocking the worker (it has no
/// effect on regular files). Without `follow_symlinks`, the *opened* file's real path
/// is read back from `/proc/self/fd` and must lie inside the root; this checks the
/// file actually opened, so a symlink swapped in between checks cannot slip through.
pub fn open(root: &Root, path: &Path, follow_symlinks: bool) -> Result<(File, Meta), OpenError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !follow_symlinks && !root.contains(&real_path(&file, path)?) {
        return Err(OpenError::NotFound);
    }
    let meta = Meta::from_fs(&file.metadata()?);
    Ok((file, meta))
}

fn real_path(file: &File, path: &Path) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    fs::read_link(link).or_else(|_| fs::canonicalize(path))
}

/// One directory entry for a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name (UTF-8; entries whose names are not are skipped).
    pub name: String,
    /// What the entry is (after following a symlink).
    pub kind: Kind,
    /// The entry itself is a symlink.
    pub symlink: bool,
    /// Size in bytes (0 for directories).
    pub len: u64,
    /// Modification time.
    pub mtime: SystemTime,
}

/// Reads a directory for a listing, applying the dotfile and symlink policies: hidden
/// names are skipped unless `dotfiles`, and symlinks leaving the root (or broken ones)
/// are skipped unless `follow_symlinks`. Unsorted; the listing sorts.
pub fn read_dir(root: &Root, dir: &Path, dotfiles: bool, follow_symlinks: bool) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') && !dotfiles {
            continue;
        }
        let symlink = entry.file_type().is_ok_and(|t| t.is_symlink());
        let path = entry.path();
        if symlink && !follow_symlinks && !fs::canonicalize(&path).is_ok_and(|p| root.contains(&p)) {
            continue;
        }
        let Ok(meta) = fs::metadata(&path) else { continue };
        let meta = Meta::from_fs(&meta);
        let len = if meta.kind == Kind::Dir { 0 } else { meta.len };
        out.push(Entry {
            name,
            kind: meta.kind,
            symlink,
            len,
            mtime: meta.mtime,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_changes_with_size_and_mtime_but_not_inode() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let base = Meta::new(10, t, 7, Kind::File);
        let tags = [
            base.etag(),
            Meta { len: 11, ..base }.etag(),
            Meta {
                mtime: t + Duration::from_nanos(1),
                ..base
            }
            .etag(),
        ];
        assert_eq!(base.etag(), Meta { ino: 8, ..base }.etag(), "replicas agree on ETags");
        for (i, a) in tags.iter().enumerate() {
            assert!(a.starts_with('"') && a.ends_with('"'), "strong tags are quoted: {a}");
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn cache_serves_hits_without_reopening_and_rechecks_after_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let path = root.join("a.txt");
        fs::write(&path, b"one").unwrap();
        let mut cache = MetaCache::new();
        let (f1, m1) = open_cached(&root, &path, "a.txt", false, &mut cache).unwrap();
        let (f2, _) = open_cached(&root, &path, "a.txt", false, &mut cache).unwrap();
        assert!(Rc::ptr_eq(&f1, &f2), "a hit reuses the open file");
        cache.set_variants("a.txt", [false, true, false]);
        assert_eq!(cache.variants("a.txt"), Some([false, true, false]));
        // After the TTL the path is opened again.
        cache.entries.get_mut("a.txt").unwrap().checked -= META_CACHE_TTL;
        let (f3, m3) = open_cached(&root, &path, "a.txt", false, &mut cache).unwrap();
        assert!(!Rc::ptr_eq(&f1, &f3));
        assert_eq!(
            (m1, cache.variants("a.txt")),
            (m3, None),
            "variants are looked up again"
        );
        // A replaced file is checked afresh.
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"second").unwrap();
        cache.entries.get_mut("a.txt").unwrap().checked -= META_CACHE_TTL;
        let (_, m4) = open_cached(&root, &path, "a.txt", false, &mut cache).unwrap();
        assert_eq!((m4.len, cache.variants("a.txt")), (6, None));
    }

    #[test]
    fn mtime_secs_truncates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(Meta::new(0, t, 0, Kind::File).mtime_secs(), 1);
    }
}
