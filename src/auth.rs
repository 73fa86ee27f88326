//! Basic auth's slow half: the `--auth-file` (htpasswd with bcrypt hashes), the check
//! of a user and password, a cache of credentials that passed, and the bound on the
//! CPU that failed attempts can take.
//!
//! - **Constant time.** bcrypt compares the hashes in constant time; a user who is not
//!   in the file is checked against a real hash of the file (the costliest), and the
//!   answer is denied whatever it says, so an unknown user takes as long as a known
//!   one with a wrong password.
//! - **Cache.** Credentials that passed are remembered, as a 128-bit keyed hash of
//!   user and password (two SipHash keys drawn at start; never the plaintext), up to
//!   [`limits::AUTH_CACHE_ENTRIES`] (then the cache starts over). A logged-in client
//!   pays bcrypt once, not per request.
//! - **Flood bound.** At most [`max_checks`] bcrypt checks run at once (one per
//!   [`limits::AUTH_CHECK_CPUS`] CPUs, at least one). Credentials that are not cached
//!   and find every slot taken are not checked: the client gets 429 with
//!   `Retry-After`. So wrong passwords, however many, keep at most that many
//!   workers (and CPUs) busy; cached credentials pass without a slot.
//! - **Per address** ([`throttle`]): an address that keeps failing gets its next
//!   attempts only after a wait, spent in the idle watcher rather than on a worker,
//!   so its connections cannot crowd other clients out of the pool either.

pub mod throttle;

use crate::http::auth::Verdict;
use crate::limits;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Instant;
use throttle::{Source, Throttle};

/// The users of an `--auth-file` and the state of their checks.
pub struct Authenticator {
    /// The file it was read from (read again on reload), if any.
    path: Option<PathBuf>,
    users: HashMap<String, String>,
    /// The hash an unknown user is checked against.
    dummy: String,
    keys: (std::hash::RandomState, std::hash::RandomState),
    cache: RwLock<HashSet<u128>>,
    running: AtomicUsize,
    max_checks: usize,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authenticator({} users)", self.users.len())
    }
}

/// bcrypt checks that may run at once: one per [`limits::AUTH_CHECK_CPUS`] CPUs, at
/// least one.
pub fn max_checks() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / limits::AUTH_CHECK_CPUS).max(1)
}

impl Authenticator {
    /// Reads and checks an htpasswd file (see [`Authenticator::parse`]).
    pub fn load(path: &Path) -> Result<Authenticator, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read --auth-file {}: {e}", path.display()))?;
        let mut auth = Authenticator::parse(&text, &path.display().to_string())?;
        auth.path = Some(path.to_path_buf());
        Ok(auth)
    }

    /// Reads the file this was loaded from again (SIGHUP): the users it lists now,
    /// with an empty credential cache, so a removed user or a changed password stops
    /// working at once.
    pub fn reload(&self) -> Result<Authenticator, String> {
        let path = self.path.as_deref().ok_or("it was not read from a file")?;
        Ok(Authenticator::load(path)?.with_max_checks(self.max_checks))
    }

    /// The file it was read from, for messages.
    pub fn describe(&self) -> String {
        let from = self
            .path
            .as_ref()
            .map_or_else(String::new, |p| format!(" from {}", p.display()));
        format!("{} users{from}", self.users.len())
    }

    /// Parses `user:hash` lines (blank lines and `#` comments skipped). Every hash must
    /// be bcrypt (`$2y$`, `$2b$`, `$2a$`, as `htpasswd -B` writes): any other format,
    /// and a plaintext password, is an error naming the line (never its content).
    pub fn parse(text: &str, name: &str) -> Result<Authenticator, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |why: String| format!("--auth-file {name} line {}: {why}", i + 1);
            let (user, hash) = line.split_once(':').ok_or_else(|| at("expected 'user:hash'".into()))?;
            if user.is_empty() {
                return Err(at("the user name is empty".into()));
            }
            check_hash(hash).map_err(|why| at(format!("user '{user}': {why}")))?;
            if users.insert(user.to_string(), hash.to_string()).is_some() {
                return Err(at(format!("user '{user}' is listed twice")));
            }
        }
        let dummy = users
            .values()
            .max_by_key(|h| cost(h))
            .cloned()
            .ok_or_else(|| format!("--auth-file {name} lists no users"))?;
        Ok(Authenticator {
            path: None,
            users,
            dummy,
            keys: Default::default(),
            cache: RwLock::new(HashSet::new()),
            running: AtomicUsize::new(0),
            max_checks: max_checks(),
        })
    }

    /// Sets how many checks may run at once (tests).
    pub fn with_max_checks(mut self, n: usize) -> Authenticator {
        self.max_checks = n.max(1);
        self
    }

    /// Checks `user` and `password`: at once if they passed lately, else with bcrypt
    /// if a check slot is free, else [`Verdict::Busy`] (the unit tests' view; the
    /// server goes through [`Authenticator::verify_from`]).
    #[cfg(test)]
    fn verify(&self, user: &str, password: &str) -> Verdict {
        if self.cached(user, password) {
            return Verdict::Granted;
        }
        self.check(user, password)
    }

    /// [`Authenticator::verify`] for a client at `peer`, under the per-address bound:
    /// cached credentials pass at once; others from an address that keeps failing are
    /// held (`Err`: until when) before they are checked.
    pub fn verify_from(
        &self,
        throttle: &Throttle,
        peer: std::net::IpAddr,
        user: &str,
        password: &str,
    ) -> Result<Verdict, Instant> {
        if self.cached(user, password) {
            return Ok(Verdict::Granted);
        }
        let source = Source::of(peer);
        throttle.admit(source, Instant::now())?;
        let verdict = self.check(user, password);
        match verdict {
            Verdict::Granted => throttle.succeeded(source),
            Verdict::Denied | Verdict::Busy => throttle.failed(source, Instant::now()),
        }
        Ok(verdict)
    }

    /// Whether these credentials passed lately.
    fn cached(&self, user: &str, password: &str) -> bool {
        let key = self.key(user, password);
        self.cache.read().unwrap_or_else(|e| e.into_inner()).contains(&key)
    }

    /// The bcrypt check, if a slot is free; remembers credentials that pass.
    fn check(&self, user: &str, password: &str) -> Verdict {
        let Some(_slot) = Slot::take(&self.running, self.max_checks) else {
            return Verdict::Busy;
        };
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash, true),
            None => (&self.dummy, false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) & known;
        if !ok {
            return Verdict::Denied;
        }
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= limits::AUTH_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(self.key(user, password));
        Verdict::Granted
    }

    /// The cache key: user and password under two secret SipHash keys.
    fn key(&self, user: &str, password: &str) -> u128 {
        let half = |keys: &std::hash::RandomState| {
            let mut h = keys.build_hasher();
            h.write_usize(user.len());
            h.write(user.as_bytes());
            h.write(password.as_bytes());
            h.finish()
        };
        (u128::from(half(&self.keys.0)) << 64) | u128::from(half(&self.keys.1))
    }
}

/// A taken check slot, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(running: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Slot(running))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bcrypt cost of a checked hash.
fn cost(hash: &str) -> u32 {
    hash.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Why `hash` is not a bcrypt hash threadserve accepts, naming the format it looks
/// like.
fn check_hash(hash: &str) -> Result<(), String> {
    let bcrypt_prefix = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p));
    if bcrypt_prefix {
        return hash
            .parse::<bcrypt::HashParts>()
            .map(|_| ())
            .map_err(|e| format!("malformed bcrypt hash ({e})"));
    }
    let kind = if hash.starts_with("$apr1$") {
        "an MD5 (apr1) hash"
    } else if hash.starts_with("{SHA}") {
        "a SHA-1 hash"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "a SHA-crypt hash"
    } else if hash.starts_with('$') {
        "a hash of an unsupported format"
    } else {
        "a plaintext password or crypt() hash"
    };
    Err(format!(
        "{kind} is not supported: only bcrypt ($2y$, $2b$, $2a$); re-create the entry with `htpasswd -B`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(lines: &[String]) -> String {
        lines.join("\n")
    }

    #[test]
    fn accepts_bcrypt_and_refuses_everything_else_by_line() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let y = hash.replacen("$2b$", "$2y$", 1);
        let a = hash.replacen("$2b$", "$2a$", 1);
        let good = file(&[
            "# users".into(),
            String::new(),
            format!("b:{hash}"),
            format!("y:{y}"),
            format!("a:{a}"),
        ]);
        let auth = Authenticator::parse(&good, "f").unwrap();
        for user in ["b", "y", "a"] {
            assert_eq!(auth.verify(user, "pw"), Verdict::Granted, "{user}");
        }
        let refused = [
            ("alice:secret", "plaintext"),
            ("alice:$apr1$abc$def", "MD5"),
            ("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("alice:$6$salt$x", "SHA-crypt"),
            ("alice:$2y$04$short", "malformed bcrypt"),
            ("alice", "expected 'user:hash'"),
            (":x", "empty"),
        ];
        for (line, why) in refused {
            let text = file(&[format!("ok:{hash}"), "# c".into(), line.into()]);
            let err = Authenticator::parse(&text, "f").unwrap_err();
            assert!(err.contains("line 3") && err.contains(why), "{line}: {err}");
            assert!(!err.contains("secret"), "the line's content is never echoed: {err}");
        }
        let twice = file(&[format!("b:{hash}"), format!("b:{hash}")]);
        assert!(Authenticator::parse(&twice, "f")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(Authenticator::parse("# none\n", "f")
            .unwrap_err()
            .to_string()
            .contains("no users"));
    }

    #[test]
    fn verdicts_cache_and_slots() {
        let text = format!("alice:{}", bcrypt::hash("secret", 4).unwrap());
        let auth = Authenticator::parse(&text, "f").unwrap().with_max_checks(1);
        assert_eq!(auth.verify("alice", "wrong"), Verdict::Denied);
        assert_eq!(auth.verify("bob", "secret"), Verdict::Denied, "unknown user");
        assert_eq!(auth.verify("alice", "secret"), Verdict::Granted);
        assert_eq!(auth.cache.read().unwrap().len(), 1, "only what passed is cached");
        let slot = Slot::take(&auth.running, 1).unwrap();
        assert_eq!(
            auth.verify("alice", "secret"),
            Verdict::Granted,
            "cached: no slot needed"
        );
        assert_eq!(auth.verify("alice", "wrong"), Verdict::Busy, "no slot: not checked");
        drop(slot);
        assert_eq!(auth.verify("alice", "wrong"), Verdict::Denied);
        assert_ne!(auth.key("ab", "c"), auth.key("a", "bc"), "user and password stay apart");
    }
}
