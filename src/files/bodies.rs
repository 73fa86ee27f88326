//! Small files' bytes, one copy per version of a file for all the workers.
//!
//! Each worker's [`FileCache`] keeps the whole bytes of small files so a hit reads
//! nothing. Kept per worker, a site of 10,000 1 KiB files was in memory once per
//! worker: 73 MiB of peak RSS with 4 workers in the random-path load test, where
//! nginx used 19.5 MiB. This store hands every worker the same bytes for the same
//! [`Identity`] (device, inode, size, mtime, ctime, mode), the key the caches already
//! trust to say "the same version of the same file": whoever read it first read it
//! as that identity, checked before and after the read.
//!
//! It is consulted only when a worker's cache misses (fills): a hit uses the bytes
//! its entry holds, through that worker's own `Rc`, so the hot path writes nothing
//! shared. A lock rather than an owner thread and a channel: a miss would then wait
//! for a reply from another thread (two context switches, microseconds) where an
//! uncontended lock costs nanoseconds, and the lock is never held across I/O (the
//! read happens between `get` and `share`). The store holds weak references; the bytes live as long as some worker's
//! entry holds them, so the workers' own budgets bound it ([`CACHE_INLINE_BYTES`]
//! each). A reference whose bytes nobody holds still keeps their allocation (a
//! `Weak` does) until it is swept, which happens whenever the table has doubled
//! since the last sweep: so the store holds at most twice the versions the workers
//! held at the last sweep, or `SWEEP_MIN` of up to 16 KiB (1 MiB) when that was
//! fewer.
//!
//! [`FileCache`]: super::FileCache
//! [`CACHE_INLINE_BYTES`]: crate::limits::CACHE_INLINE_BYTES

use super::Identity;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Table size below which dead references are not swept (at most 64 × 16 KiB of
/// allocations kept for nothing).
const SWEEP_MIN: usize = 64;

/// The shared store (see the module doc).
#[derive(Debug, Default)]
pub struct Bodies {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<Identity, Weak<[u8]>>,
    /// The table's length at which the next sweep runs.
    sweep_at: usize,
}

impl Bodies {
    /// The bytes some worker read as `id`, if any worker still holds them.
    pub fn get(&self, id: &Identity) -> Option<Arc<[u8]>> {
        self.table().by_id.get(id)?.upgrade()
    }

    /// Shares `bytes`, read as `id`; if another worker shared that version meanwhile,
    /// its copy is returned and `bytes` dropped.
    pub fn share(&self, id: Identity, bytes: Vec<u8>) -> Arc<[u8]> {
        let mut table = self.table();
        if let Some(kept) = table.by_id.get(&id).and_then(Weak::upgrade) {
            return kept;
        }
        let bytes: Arc<[u8]> = bytes.into();
        table.by_id.insert(id, Arc::downgrade(&bytes));
        if table.by_id.len() >= table.sweep_at {
            table.by_id.retain(|_, w| w.strong_count() > 0);
            table.sweep_at = (2 * table.by_id.len()).max(SWEEP_MIN);
        }
        bytes
    }

    /// Versions in the table, live or not yet swept.
    #[cfg(test)]
    fn versions(&self) -> usize {
        self.table().by_id.len()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic elsewhere cannot leave the table half-updated: every change is one
        // insert or one retain.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity of a scratch file after setting its length to `len` (a new
    /// version each time the length differs).
    fn version(f: &tempfile::NamedTempFile, len: u64) -> Identity {
        f.as_file().set_len(len).unwrap();
        super::super::identity::identity_of(f.as_file()).unwrap()
    }

    #[test]
    fn one_version_is_kept_once_and_the_first_copy_wins() {
        let bodies = Bodies::default();
        let f = tempfile::NamedTempFile::new().unwrap();
        let id = version(&f, 3);
        let first = bodies.share(id, b"abc".to_vec());
        let second = bodies.share(id, b"abc".to_vec());
        assert!(Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&bodies.get(&id).unwrap(), &first));
    }

    #[test]
    fn bytes_nobody_holds_are_gone_and_swept() {
        let bodies = Bodies::default();
        let f = tempfile::NamedTempFile::new().unwrap();
        let id = version(&f, 3);
        drop(bodies.share(id, b"abc".to_vec()));
        assert!(bodies.get(&id).is_none(), "kept alive by the store alone");
        for len in 0..2 * SWEEP_MIN as u64 {
            drop(bodies.share(version(&f, len), vec![0]));
        }
        assert!(
            bodies.versions() < SWEEP_MIN + 1,
            "{} dead references kept",
            bodies.versions()
        );
    }
}
