//! The served directory as one open descriptor, and the only ways to reach a path
//! under it: `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so the
//! kernel refuses any resolution that leaves the root whatever is swapped in
//! meanwhile, or, where `openat2` is missing, a walk component by component with
//! `O_NOFOLLOW` that resolves symlinks itself under the same rule.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Statx, StatxFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Symlinks followed while resolving one path, as the kernel's own limit (`MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: usize = 40;

/// Times an `openat2` is retried when the kernel reports `EAGAIN` (a rename or mount
/// raced with the resolution and it could not vouch for the result).
const BENEATH_RETRIES: usize = 8;

/// How paths under the root are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` (Linux 5.6+).
    Beneath,
    /// One `openat(O_NOFOLLOW)` per component, symlinks resolved here (old kernels,
    /// or seccomp profiles that refuse `openat2` with `EPERM`/`ENOSYS`).
    Walk,
}

impl Resolver {
    /// One line for the start-up log.
    pub fn describe(self) -> &'static str {
        match self {
            Resolver::Beneath => "openat2 with RESOLVE_BENEATH (containment enforced by the kernel)",
            Resolver::Walk => "openat2 unavailable: component-by-component walk with O_NOFOLLOW",
        }
    }
}

/// The served directory, opened once.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
    /// The root's real path, only to read absolute symlink targets that point inside
    /// the root as paths relative to it (the kernel still checks every step).
    real: PathBuf,
    fd: Arc<OwnedFd>,
    resolver: Resolver,
}

impl Root {
    /// Opens `path` as the root, choosing [`Resolver::Beneath`] where the kernel has
    /// it. `THREADSERVE_RESOLVER=walk` forces the fallback (CI runs the integration
    /// suite with both).
    pub fn new(path: &Path) -> io::Result<Root> {
        let fd = open_dir(path)?;
        let forced_walk = std::env::var_os("THREADSERVE_RESOLVER").is_some_and(|v| v == "walk");
        let probe = rustix::fs::openat2(&fd, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), beneath());
        let resolver = match probe {
            Ok(_) if !forced_walk => Resolver::Beneath,
            _ => Resolver::Walk,
        };
        Root::with_fd(path, fd, resolver)
    }

    /// Opens `path` as the root with a given resolver (tests run both).
    pub fn with_resolver(path: &Path, resolver: Resolver) -> io::Result<Root> {
        Root::with_fd(path, open_dir(path)?, resolver)
    }

    fn with_fd(path: &Path, fd: OwnedFd, resolver: Resolver) -> io::Result<Root> {
        Ok(Root {
            path: std::path::absolute(path)?,
            // Naming only, never a containment check (that is openat2's or the walk's).
            real: std::fs::canonicalize(path)?,
            fd: Arc::new(fd),
            resolver,
        })
    }

    /// The root as it was given (made absolute), for messages and re-opening.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path, its real path and the resolver, for the log.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.real.display(), self.resolver.describe())
    }

    /// The root's real path (symlinks resolved), for naming files inside it.
    pub fn real_path(&self) -> &Path {
        &self.real
    }

    /// Which resolution runs.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Opens `rel` (a normalised relative path, `""` for the root itself) read-only and
    /// non-blocking (a FIFO swapped in cannot block a worker). Without `follow`, no
    /// resolution may leave the root (`EXDEV`); with it, symlinks go anywhere.
    pub fn open(&self, rel: &str, follow: bool) -> io::Result<OwnedFd> {
        self.open_from(self.fd.as_fd(), rel, follow, READ)
    }

    /// Opens `name` inside the directory `dir` (opened from `dir_rel`): relative to that
    /// descriptor, so it is the directory that was checked; a symlink climbing out of
    /// it is resolved again from the root under the same rule.
    pub fn open_in(&self, dir: BorrowedFd<'_>, dir_rel: &str, name: &str, follow: bool) -> io::Result<OwnedFd> {
        self.open_in_with(dir, dir_rel, name, follow, READ)
    }

    /// [`Root::open_in`] for metadata only (`O_PATH`: opens nothing that has effects).
    pub fn locate_in(&self, dir: BorrowedFd<'_>, dir_rel: &str, name: &str, follow: bool) -> io::Result<OwnedFd> {
        self.open_in_with(dir, dir_rel, name, follow, OFlags::PATH | OFlags::CLOEXEC)
    }

    fn open_in_with(
        &self,
        dir: BorrowedFd<'_>,
        dir_rel: &str,
        name: &str,
        follow: bool,
        flags: OFlags,
    ) -> io::Result<OwnedFd> {
        match self.open_from(dir, name, follow, flags) {
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => self.open_from(
                self.fd.as_fd(),
                &crate::http::resolve::join(dir_rel, name),
                follow,
                flags,
            ),
            other => other,
        }
    }

    /// Metadata of `rel` by path, following symlinks wherever they lead. Only a hint:
    /// the cache compares it with the identity of a handle opened under the rule, and
    /// opens afresh on any difference.
    pub fn stat(&self, rel: &str) -> io::Result<Statx> {
        let path = if rel.is_empty() { "." } else { rel };
        Ok(rustix::fs::statx(
            self.fd.as_fd(),
            path,
            AtFlags::empty(),
            StatxFlags::BASIC_STATS,
        )?)
    }

    /// Metadata of `rel` itself, not following a final symlink: whether the directory
    /// holds an entry by that name at all.
    pub fn lstat(&self, rel: &str) -> io::Result<Statx> {
        Ok(rustix::fs::statx(
            self.fd.as_fd(),
            rel,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS,
        )?)
    }

    fn open_from(&self, start: BorrowedFd<'_>, rel: &str, follow: bool, flags: OFlags) -> io::Result<OwnedFd> {
        let path = if rel.is_empty() { "." } else { rel };
        if follow {
            return Ok(rustix::fs::openat(start, path, flags, Mode::empty())?);
        }
        // Absolute symlink targets inside the root are followed from the root; from
        // another directory (open_in) they are refused and the caller retries from the root.
        let from_root = (start.as_raw_fd() == self.fd.as_raw_fd()).then_some(self.real.as_path());
        match self.resolver {
            Resolver::Beneath => {
                for _ in 0..BENEATH_RETRIES {
                    match rustix::fs::openat2(start, path, flags, Mode::empty(), beneath()) {
                        Err(Errno::AGAIN) => continue,
                        // RESOLVE_BENEATH refuses every absolute symlink; walk to see
                        // whether one points back inside the root.
                        Err(Errno::XDEV) if from_root.is_some() => return walk(start, path, flags, from_root),
                        other => return Ok(other?),
                    }
                }
                Err(Errno::AGAIN.into())
            }
            Resolver::Walk => walk(start, path, flags, from_root),
        }
    }
}

/// Flags of every file opened to be served.
const READ: OFlags = OFlags::RDONLY
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY);

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::open(path, flags, Mode::empty()).map_err(|e| {
        if e == Errno::NOTDIR {
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory")
        } else {
            e.into()
        }
    })
}

/// Resolves `path` under `start` one component at a time, never letting the kernel
/// follow a symlink: each is read with `readlinkat` and its target walked here, `..`
/// pops back to the directory it came from, and climbing above `start` or an absolute
/// target is refused with `EXDEV`, as `RESOLVE_BENEATH` does — except, when `start`
/// is the root whose real path is `root_real`, an absolute target under that path,
/// which is walked from the root again.
fn walk(start: BorrowedFd<'_>, path: &str, flags: OFlags, root_real: Option<&Path>) -> io::Result<OwnedFd> {
    let mut todo: VecDeque<String> = path.split('/').map(str::to_string).collect();
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = todo.pop_front() {
        match comp.as_str() {
            "" | "." if !todo.is_empty() => continue,
            ".." => {
                if stack.pop().is_none() {
                    return Err(Errno::XDEV.into());
                }
                if todo.is_empty() {
                    todo.push_back(".".into());
                }
                continue;
            }
            _ => {}
        }
        let comp = if comp.is_empty() { ".".to_string() } else { comp };
        let dir = stack.last().map_or(start, |fd| fd.as_fd());
        let last = todo.is_empty();
        let step_flags = if last {
            flags | OFlags::NOFOLLOW
        } else {
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
        };
        let opened = rustix::fs::openat(dir, comp.as_str(), step_flags, Mode::empty());
        // O_PATH | O_NOFOLLOW opens a symlink itself instead of failing: treat it as one.
        let opened = match opened {
            Ok(fd) if last && flags.contains(OFlags::PATH) && is_symlink(&fd) => Err(Errno::LOOP),
            other => other,
        };
        match opened {
            Ok(fd) if last => return Ok(fd),
            Ok(fd) => stack.push(fd),
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                hops += 1;
                let target = symlink_target(dir, &comp, e, hops, root_real)?;
                if target.starts_with('/') {
                    // An absolute target inside the root: walked from the root again.
                    stack.clear();
                }
                for part in target.trim_start_matches('/').rsplit('/') {
                    todo.push_front(part.to_string());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno::NOENT.into())
}

/// What the symlink `comp` in `dir` points to, as a path for the walk to continue
/// with: relative, or (when `root_real` allows it) absolute from the root, marked by a
/// leading `/`. `e` is returned when `comp` is not a symlink after all; `EXDEV` when
/// the target leaves the root; `ELOOP` after too many `hops`.
fn symlink_target(
    dir: BorrowedFd<'_>,
    comp: &str,
    e: Errno,
    hops: usize,
    root_real: Option<&Path>,
) -> io::Result<String> {
    let Ok(target) = rustix::fs::readlinkat(dir, comp, Vec::new()) else {
        return Err(e.into());
    };
    if hops > MAX_SYMLINK_HOPS {
        return Err(Errno::LOOP.into());
    }
    let target = target.to_string_lossy().into_owned();
    match (target.strip_prefix('/'), root_real) {
        (None, _) => Ok(target),
        (Some(_), Some(real)) => match Path::new(&target).strip_prefix(real) {
            Ok(inside) => Ok(format!("/{}", inside.to_string_lossy())),
            Err(_) => Err(Errno::XDEV.into()),
        },
        (Some(_), None) => Err(Errno::XDEV.into()),
    }
}

fn is_symlink(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f.txt"), b"f").unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        symlink("b/f.txt", root.join("a/rel")).unwrap();
        symlink("../a/b", root.join("a/up")).unwrap();
        symlink("../../secret", root.join("a/out")).unwrap();
        symlink(root.canonicalize().unwrap().join("a/b/f.txt"), root.join("a/absin")).unwrap();
        symlink(tmp.path().join("secret"), root.join("abs")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("../..", root.join("a/b/top")).unwrap();
        (tmp, root)
    }

    fn errno(r: io::Result<OwnedFd>) -> Option<i32> {
        r.err().and_then(|e| e.raw_os_error())
    }

    #[test]
    fn both_resolvers_follow_inside_links_and_refuse_escapes_alike() {
        let (_tmp, root) = fixture();
        for resolver in [Resolver::Beneath, Resolver::Walk] {
            let r = Root::with_resolver(&root, resolver).unwrap();
            for ok in ["a/b/f.txt", "a/rel", "a/up/f.txt", "a/b/top/a/rel", "", "a", "a/absin"] {
                assert!(r.open(ok, false).is_ok(), "{resolver:?} refused {ok}");
            }
            for (bad, code) in [
                ("a/out", libc::EXDEV),
                ("abs", libc::EXDEV),
                ("a/b/top/..", libc::EXDEV),
                ("loop", libc::ELOOP),
                ("missing", libc::ENOENT),
                ("a/b/f.txt/x", libc::ENOTDIR),
            ] {
                assert_eq!(errno(r.open(bad, false)), Some(code), "{resolver:?} on {bad}");
            }
            assert!(r.open("a/out", true).is_ok(), "follow lets links leave the root");
            let a = r.open("a", false).unwrap();
            for (name, ok) in [("out", false), ("absin", true), ("rel", true)] {
                assert_eq!(
                    r.locate_in(a.as_fd(), "a", name, false).is_ok(),
                    ok,
                    "{resolver:?} locates {name}"
                );
            }
        }
    }

    #[test]
    fn open_in_resolves_relative_to_the_directory_and_climbs_only_within_the_root() {
        let (_tmp, root) = fixture();
        for resolver in [Resolver::Beneath, Resolver::Walk] {
            let r = Root::with_resolver(&root, resolver).unwrap();
            let a = r.open("a", false).unwrap();
            assert!(r.open_in(a.as_fd(), "a", "rel", false).is_ok());
            assert!(r.open_in(a.as_fd(), "a", "up", false).is_ok(), "../a/b stays inside");
            assert_eq!(errno(r.open_in(a.as_fd(), "a", "out", false)), Some(libc::EXDEV));
        }
    }
}
