//! The core's view of the site: what a path names ([`Kind`]), its metadata
//! ([`Meta`]), a directory entry ([`Entry`]) and why a lookup found nothing
//! ([`Missing`]). The file layer fills these in; the planner decides with them.

use crate::http::wire::HttpDate;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Size in bytes.
    pub len: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// Inode number (not part of the ETag: see [`Meta::etag`]).
    pub ino: u64,
    /// File, directory or other.
    pub kind: Kind,
    /// What a response says of this version of the file, computed once by the file
    /// layer when it found this version ([`Meta::described`]); `None` for metadata
    /// built without it (the planner then computes the same per request).
    pub described: Option<Rc<Described>>,
}

/// The header values a file's response carries that depend only on its name and
/// its version: computed once per version (the file cache builds them with each
/// new entry, so they change whenever the file does) instead of per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Its type and whether it is text (`plan::content_type` of its path).
    pub mime: (&'static str, bool),
    /// The `Content-Type` value of a text type (with `; charset=utf-8`); for any
    /// other, the value is the type itself.
    pub text_type: Option<Rc<str>>,
    /// Its strong ETag ([`Meta::etag`]), for the identity representation.
    pub etag: Rc<str>,
    /// Its `Last-Modified` value.
    pub last_modified: HttpDate,
}

impl Meta {
    /// Builds metadata directly (tests use this).
    pub fn new(len: u64, mtime: SystemTime, ino: u64, kind: Kind) -> Meta {
        Meta {
            len,
            mtime,
            ino,
            kind,
            described: None,
        }
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
        match self.mtime.duration_since(UNIX_EPOCH) {
            Ok(d) => format!("\"{:x}-{:x}\"", self.len, d.as_nanos()),
            // Before 1970: still distinct per mtime.
            Err(e) => format!("\"{:x}-m{:x}\"", self.len, e.duration().as_nanos()),
        }
    }
}

/// Why a lookup found nothing to serve; the planner maps each to its status
/// (see `plan::missing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Missing (`ENOENT`, `ENOTDIR`).
    NotFound,
    /// It exists but its resolution leaves the root (`EXDEV`) or loops (`ELOOP`):
    /// hidden by the symlink policy.
    Hidden,
    /// The OS refused access.
    Forbidden,
    /// Out of file descriptors or memory: a 503, not the client's fault.
    Exhausted,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn etag_changes_with_size_and_mtime_but_not_inode() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let base = Meta::new(10, t, 7, Kind::File);
        let tags = [
            base.etag(),
            Meta {
                len: 11,
                ..base.clone()
            }
            .etag(),
            Meta {
                mtime: t + Duration::from_nanos(1),
                ..base.clone()
            }
            .etag(),
        ];
        assert_eq!(
            base.etag(),
            Meta { ino: 8, ..base.clone() }.etag(),
            "replicas agree on ETags"
        );
        for (i, a) in tags.iter().enumerate() {
            assert!(a.starts_with('"') && a.ends_with('"'), "strong tags are quoted: {a}");
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn mtime_secs_truncates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(Meta::new(0, t, 0, Kind::File).mtime_secs(), 1);
    }
}
