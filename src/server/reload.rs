//! Values a reload (SIGHUP) may replace while workers serve: the root and the
//! `--auth-file` users. Each worker keeps its own copy and looks at the shared one
//! only when the generation moved: one atomic load per request, a lock once per
//! reload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// A value replaced by reloads, with a count of how many there were.
#[derive(Debug)]
pub struct Reloadable<T> {
    value: RwLock<T>,
    generation: AtomicU64,
}

impl<T: Clone> Reloadable<T> {
    /// Holds `value` as generation 0 (what workers start with).
    pub fn new(value: T) -> Reloadable<T> {
        Reloadable {
            value: RwLock::new(value),
            generation: AtomicU64::new(0),
        }
    }

    /// The value if it was replaced since `seen` (which is updated).
    pub fn if_changed(&self, seen: &mut u64) -> Option<T> {
        let now = self.generation.load(Ordering::Acquire);
        if now == *seen {
            return None;
        }
        *seen = now;
        Some(self.current())
    }

    /// The value now.
    pub fn current(&self) -> T {
        self.value.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the value; workers take it before their next request.
    pub fn replace(&self, value: T) {
        *self.value.write().unwrap_or_else(|e| e.into_inner()) = value;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::Reloadable;

    #[test]
    fn a_worker_sees_each_replacement_once() {
        let r = Reloadable::new(1);
        let mut seen = 0;
        assert_eq!(r.if_changed(&mut seen), None);
        r.replace(2);
        assert_eq!(r.if_changed(&mut seen), Some(2));
        assert_eq!(r.if_changed(&mut seen), None);
        assert_eq!(r.current(), 2);
    }
}
