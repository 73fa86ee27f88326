//! What identifies one version of one file, from `statx`: the file cache compares it
//! on every hit, and listings take their entries' metadata from it.

use super::{Kind, Meta};
use rustix::fd::AsFd;
use rustix::fs::{AtFlags, FileType, Statx, StatxFlags};
use std::io;
use std::time::{Duration, UNIX_EPOCH};

/// What identifies one version of one file: a change to any field is a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    dev: (u32, u32),
    ino: u64,
    pub(super) size: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
    mode: u32,
}

impl Identity {
    pub(super) fn of(s: &Statx) -> Identity {
        Identity {
            dev: (s.stx_dev_major, s.stx_dev_minor),
            ino: s.stx_ino,
            size: s.stx_size,
            mtime: (s.stx_mtime.tv_sec, s.stx_mtime.tv_nsec),
            ctime: (s.stx_ctime.tv_sec, s.stx_ctime.tv_nsec),
            mode: u32::from(s.stx_mode),
        }
    }

    pub(super) fn kind(&self) -> Kind {
        match FileType::from_raw_mode(self.mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            _ => Kind::Other,
        }
    }

    /// The plain metadata the HTTP core plans with.
    pub fn meta(&self) -> Meta {
        let (secs, nanos) = self.mtime;
        let mtime = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs.unsigned_abs()))
                .map(|t| t + Duration::from_nanos(u64::from(nanos)))
        };
        let len = if self.kind() == Kind::Dir { 0 } else { self.size };
        Meta::new(len, mtime.unwrap_or(UNIX_EPOCH), self.ino, self.kind())
    }
}

/// Metadata of an open descriptor.
pub(super) fn identity_of(fd: &impl AsFd) -> io::Result<Identity> {
    let s = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)?;
    Ok(Identity::of(&s))
}
