//! The filesystem edge. [`Root`] holds the served directory as a descriptor and
//! opens everything beneath it with kernel-enforced containment; [`FileCache`] is a
//! worker's cache that revalidates every hit; [`dir`] lists a directory through the
//! descriptor that was checked. Out come the plain [`Meta`] and [`Entry`] the HTTP
//! core plans with.

pub mod bodies;
pub mod cache;
pub mod compress;
pub mod dir;
mod identity;
pub mod root;

pub use bodies::Bodies;
pub use cache::{FileCache, Found};
pub use dir::Listing;
pub use identity::Identity;
pub use root::{Resolver, Root};

use std::fs::File;
use std::io;
use std::rc::Rc;

/// Why a path could not be opened (the core's [`Missing`]).
pub use crate::http::meta::Missing as OpenError;
pub use crate::http::meta::{Entry, Kind, Meta};

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        match (e.kind(), e.raw_os_error()) {
            (io::ErrorKind::PermissionDenied, _) => OpenError::Forbidden,
            (_, Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) => OpenError::Exhausted,
            (_, Some(libc::EXDEV | libc::ELOOP)) => OpenError::Hidden,
            _ => OpenError::NotFound,
        }
    }
}

/// The bytes of a file: kept in memory (small files), or its open handle.
#[derive(Debug, Clone)]
pub enum Body {
    /// The whole file, read once: bytes shared by the workers ([`Bodies`]), each
    /// holding them through its own `Rc` so a response touches no shared count.
    Bytes(Rc<std::sync::Arc<[u8]>>),
    /// An open handle, read with explicit offsets (`pread`, `sendfile`): it is shared.
    File(Rc<File>),
    /// A compressed representation kept by the compression store.
    Shared(std::sync::Arc<compress::Blob>),
}
