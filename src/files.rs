//! The filesystem edge: opening a decoded path under the root, enforcing the symlink
//! policy, and turning `fs::Metadata` into the plain [`Meta`] the HTTP core plans with.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
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
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        match e.kind() {
            io::ErrorKind::PermissionDenied => OpenError::Forbidden,
            _ => OpenError::NotFound,
        }
    }
}

/// What a worker remembers about one path: the file it last checked there (inside the
/// root) and, once looked up, which precompressed variants exist. Owned by one worker.
#[derive(Debug, Default)]
pub struct MetaCache {
    entries: HashMap<String, Cached>,
}

#[derive(Debug)]
struct Cached {
    meta: Meta,
    checked: Instant,
    variants: Option<[bool; 3]>,
}

impl MetaCache {
    /// An empty cache.
    pub fn new() -> MetaCache {
        MetaCache::default()
    }

    /// The entry for `key` if it was checked less than [`crate::limits::META_CACHE_TTL`]
    /// ago and describes the same file (inode, size, mtime) as `meta`.
    fn fresh(&mut self, key: &str, meta: &Meta) -> Option<&mut Cached> {
        let c = self.entries.get_mut(key)?;
        let same = c.meta == *meta && c.checked.elapsed() < crate::limits::META_CACHE_TTL;
        same.then_some(c)
    }

    fn insert(&mut self, key: &str, meta: Meta) {
        if self.entries.len() >= crate::limits::META_CACHE_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(
            key.to_string(),
            Cached {
                meta,
                checked: Instant::now(),
                variants: None,
            },
        );
    }

    /// Which variants (in `encoding::preference_order`) exist for `key`, if known.
    pub fn variants(&mut self, key: &str, meta: &Meta) -> Option<[bool; 3]> {
        self.fresh(key, meta)?.variants
    }

    /// Records which variants exist for `key`.
    pub fn set_variants(&mut self, key: &str, meta: &Meta, variants: [bool; 3]) {
        if let Some(c) = self.fresh(key, meta) {
            c.variants = Some(variants);
        }
    }
}

/// [`open`] through a worker's [`MetaCache`]: a path checked recently and still naming
/// the same file (inode, size, mtime) skips the real-path check. The file opened is
/// then the very file that was checked, so this cannot serve anything outside the root.
pub fn open_cached(
    root: &Root,
    path: &Path,
    key: &str,
    follow_symlinks: bool,
    cache: &mut MetaCache,
) -> Result<(File, Meta), OpenError> {
    let (file, meta) = open(root, path, true)?;
    if follow_symlinks || cache.fresh(key, &meta).is_some() {
        return Ok((file, meta));
    }
    if !root.contains(&real_path(&file, path)?) {
        return Err(OpenError::NotFound);
    }
    cache.insert(key, meta);
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
    fn cache_trusts_only_the_same_file_within_the_ttl() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let meta = Meta::new(10, t, 7, Kind::File);
        let mut cache = MetaCache::new();
        assert!(cache.fresh("a", &meta).is_none());
        cache.insert("a", meta);
        assert!(cache.fresh("a", &meta).is_some());
        assert!(
            cache.fresh("a", &Meta { ino: 8, ..meta }).is_none(),
            "a replaced file is checked again"
        );
        assert!(cache.fresh("a", &Meta { len: 11, ..meta }).is_none());
        assert_eq!(cache.variants("a", &meta), None);
        cache.set_variants("a", &meta, [false, false, true]);
        assert_eq!(cache.variants("a", &meta), Some([false, false, true]));
        cache.entries.get_mut("a").unwrap().checked -= crate::limits::META_CACHE_TTL;
        assert!(cache.fresh("a", &meta).is_none(), "stale after the TTL");
    }

    #[test]
    fn mtime_secs_truncates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(Meta::new(0, t, 0, Kind::File).mtime_secs(), 1);
    }
}
