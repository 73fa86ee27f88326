//! Directory listings from the descriptor that was checked: entries are read through
//! it and stat-ed relative to it, a symlink entry is resolved under the root's rule,
//! and the rendered page is kept (a large one in a memory file, sent with `sendfile`)
//! so an unchanged directory is not read and rendered for every request, and a slow
//! reader of a large listing holds one descriptor, not a copy of the page.

use super::identity::{identity_of, Identity};
use super::{Body, Entry, Kind, Root};
use crate::limits::{LISTING_INLINE_MAX, LISTING_MAX_ENTRIES, LISTING_TTL};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, StatxFlags};
use std::fs::File;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Instant;

/// A rendered listing, with a strong validator computed from its bytes.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The page.
    pub body: Body,
    /// Its length in bytes.
    pub len: u64,
    /// `"l-LEN-HASH"` of the bytes: the page changes, the tag changes.
    pub etag: String,
    made: Instant,
}

impl Listing {
    /// Keeps `page`: in memory up to [`LISTING_INLINE_MAX`], else in a memory file.
    pub fn new(page: Vec<u8>) -> io::Result<Listing> {
        use std::hash::{DefaultHasher, Hasher};
        let mut h = DefaultHasher::new();
        h.write(&page);
        let etag = format!("\"l-{:x}-{:x}\"", page.len(), h.finish());
        let len = page.len() as u64;
        let body = if page.len() <= LISTING_INLINE_MAX {
            Body::Bytes(Rc::new(page.into()))
        } else {
            let fd = rustix::fs::memfd_create("threadserve-listing", rustix::fs::MemfdFlags::CLOEXEC)?;
            let mut file = File::from(fd);
            file.write_all(&page)?;
            Body::File(Rc::new(file))
        };
        Ok(Listing {
            body,
            len,
            etag,
            made: Instant::now(),
        })
    }

    /// Whether this rendering may still be served. The cache drops it as soon as the
    /// directory itself changes (an entry created, removed or renamed changes its
    /// mtime and ctime), so names are always current; sizes and times of entries
    /// shown are at most [`LISTING_TTL`] old.
    pub fn fresh(&self) -> bool {
        self.made.elapsed() < LISTING_TTL
    }
}

/// Reads the entries of `dir` (opened as `dir_rel`), applying the dotfile and symlink
/// policies: hidden names are skipped unless `dotfiles`; without `follow`, symlinks
/// that leave the root (or are broken) are skipped. At most [`LISTING_MAX_ENTRIES`]
/// are returned, with the count of those left out. Unsorted; the listing sorts.
pub fn read_entries(
    root: &Root,
    dir: &OwnedFd,
    dir_rel: &str,
    dotfiles: bool,
    follow: bool,
) -> io::Result<(Vec<Entry>, usize)> {
    let mut out = Vec::new();
    let mut omitted = 0;
    let mut reader = Dir::read_from(dir)?;
    while let Some(item) = reader.read() {
        let Ok(item) = item else { continue };
        let Ok(name) = item.file_name().to_str() else { continue };
        if name == "." || name == ".." || (name.starts_with('.') && !dotfiles) {
            continue;
        }
        let Some(entry) = entry(root, dir, dir_rel, name, follow) else {
            continue;
        };
        if out.len() >= LISTING_MAX_ENTRIES {
            omitted += 1;
            continue;
        }
        out.push(entry);
    }
    Ok((out, omitted))
}

fn entry(root: &Root, dir: &OwnedFd, dir_rel: &str, name: &str, follow: bool) -> Option<Entry> {
    let own = rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS).ok()?;
    let symlink = FileType::from_raw_mode(u32::from(own.stx_mode)) == FileType::Symlink;
    let id = if symlink {
        let target = root.locate_in(dir.as_fd(), dir_rel, name, follow).ok()?;
        identity_of(&target).ok()?
    } else {
        Identity::of(&own)
    };
    let meta = id.meta();
    Some(Entry {
        name: name.to_string(),
        kind: meta.kind,
        symlink,
        len: if meta.kind == Kind::Dir { 0 } else { meta.len },
        mtime: meta.mtime,
    })
}
