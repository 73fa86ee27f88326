//! Executes plans: asks the planner what to answer (over the worker's [`FileSite`])
//! and turns the [`Plan`] into the segments the worker sends — the head and small
//! bodies in one buffer, file ranges as `sendfile` segments. No HTTP decision is
//! made here: statuses, headers and whether to close all come from the plan; the
//! only thing this file adds is what the files did (one that shrank before it was
//! read ends the connection).

use super::date;
use super::output::{Segment, Segments};
use super::site::FileSite;
use super::Shared;
use crate::auth::Authenticator;
use crate::files::compress::Front;
use crate::files::{Body, FileCache};
use crate::http::head::Head;
use crate::http::plan::{self, AuthPolicy, Payload, Plan, Policy};
use crate::http::status::Status;
use crate::limits::{CACHE_IDLE, INLINE_BODY_MAX};
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

/// What was queued, for the access log and the connection loop.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Status of the response.
    pub status: Status,
    /// Body bytes queued.
    pub bytes: u64,
    /// The connection closes after this response.
    pub close: bool,
    /// Nothing was queued: the request is to be planned again at this time (a login
    /// from an address that keeps failing, see `auth::throttle`).
    pub held: Option<Instant>,
}

/// A worker's reusable state for answering: the head buffer, the segments of the
/// response being sent, and the worker's file cache.
#[derive(Debug)]
pub struct Executor {
    out: Vec<u8>,
    /// The response to send, in order; filled by [`Executor::answer`], drained by
    /// the worker.
    pub segs: Segments,
    cache: FileCache,
    /// This worker's handles to compressed representations.
    front: Front,
    /// Which reload of the root `cache` serves from.
    root_generation: u64,
    /// The `--auth-file` users, and which reload they come from.
    auth: Option<Arc<Authenticator>>,
    auth_generation: u64,
    /// When a busy worker may purge its cache next.
    next_purge: Instant,
}

/// Room reserved for a response head (a typical one is 200-300 bytes).
const HEAD_BYTES: usize = 512;

/// How often a busy worker looks for cache entries to drop: a quarter of the idle
/// time after which they go, so they go within 1.25 × [`CACHE_IDLE`].
const PURGE_EVERY: std::time::Duration = CACHE_IDLE.checked_div(4).expect("4 is not 0");

/// The configuration's HTTP settings, as the planner takes them.
pub fn policy(config: &crate::config::Config) -> Policy<'_> {
    Policy {
        dotfiles: config.dotfiles,
        listing: config.listing,
        precompressed: config.precompressed,
        compress: config.compress,
        cors: config.cors,
        cache_control: config.cache_control.as_deref(),
        immutable: &config.immutable,
        headers: &config.headers,
        fallback: config.fallback.as_deref(),
        not_found_page: config.not_found_page.as_deref(),
        stats_path: config.stats_path.as_deref(),
        rules: &config.rules,
        auth: config.auth.as_ref().map(|_| AuthPolicy {
            challenge: &config.auth_challenge,
            by_default: !config.rules.iter().any(|r| r.auth == Some(true)),
        }),
        // Both unset (the default), the planner pays one check for the two paths.
        endpoints: (config.metrics_path.is_some() | config.health_path.is_some()).then_some(plan::Endpoints {
            health: config.health_path.as_deref(),
            metrics: config.metrics_path.as_deref(),
        }),
    }
}

impl Executor {
    /// Empty buffers and an empty cache over the configured root.
    pub fn new(shared: &Shared) -> Executor {
        let config = &shared.config;
        Executor {
            out: Vec::new(),
            segs: Segments::new(),
            cache: FileCache::sharing(config.root.clone(), config.follow_symlinks, Arc::clone(&shared.bodies)),
            front: Front::default(),
            root_generation: 0,
            auth: shared.auth.current(),
            auth_generation: 0,
            next_purge: Instant::now(),
        }
    }

    /// Closes cached files not used lately, and drops handles to compressed
    /// representations the shared store evicted. A busy worker finds its queue
    /// empty many times a second, and a purge costs a clock read and a look at each
    /// entry holding a descriptor (and now and then at every entry: see
    /// `FileCache::purge`), so unless `idle` (the worker waited a whole
    /// [`CACHE_IDLE`] for work) it runs at most every [`PURGE_EVERY`].
    pub fn purge_cache(&mut self, shared: &Shared, idle: bool) {
        let now = Instant::now();
        if !idle && now < self.next_purge {
            return;
        }
        self.next_purge = now + PURGE_EVERY;
        self.cache.purge(now);
        self.front.sweep(&shared.compressed);
    }

    /// Plans the answer to `head` and queues it in `segs`; nothing is written here
    /// (the worker sends the segments, so a slow reader can be parked mid-response).
    pub fn answer(&mut self, shared: &Shared, head: &Head, peer: IpAddr, started: Instant) -> io::Result<Answer> {
        self.segs.clear();
        if let Some(root) = shared.root_if_changed(&mut self.root_generation) {
            self.cache.set_root(root);
        }
        if let Some(auth) = shared.auth.if_changed(&mut self.auth_generation) {
            self.auth = auth;
        }
        test_hook(shared, head);
        self.cache.begin_request(started);
        self.front.sweep(&shared.compressed);
        let policy = policy(&shared.config);
        let mut site = FileSite {
            cache: &mut self.cache,
            front: &mut self.front,
            shared,
            auth: self.auth.as_deref(),
            peer,
            hold: None,
        };
        let plan = plan::plan(head, &mut site, &policy, shared.is_closing());
        if let Some(until) = site.hold {
            return Ok(Answer {
                status: plan.status,
                bytes: 0,
                close: false,
                held: Some(until),
            });
        }
        self.queue(plan)
    }

    /// Queues the head and the bytes `plan` names.
    fn queue(&mut self, plan: Plan<'_, Body>) -> io::Result<Answer> {
        self.out.clear();
        // One allocation for the head and an inline body (growing from a small
        // buffer took two reallocs per 1 KiB response).
        let inline = plan.body_len().min(INLINE_BODY_MAX) as usize;
        self.out.reserve(HEAD_BYTES + inline);
        plan.write_head(&mut self.out, &date::now());
        let mut answer = Answer {
            status: plan.status,
            bytes: plan.body_len(),
            close: plan.close(),
            held: None,
        };
        let short = match plan.body {
            Payload::Empty => 0,
            Payload::Bytes(bytes) => {
                self.out.extend_from_slice(&bytes);
                0
            }
            Payload::Slice { body, start, len } => self.slice(&body, start, len)?,
            Payload::Multipart { body, parts, tail } => {
                let mut short = 0;
                for part in parts {
                    self.out.extend_from_slice(part.head.as_bytes());
                    short += self.slice(&body, part.start, part.len)?;
                }
                self.out.extend_from_slice(tail.as_bytes());
                short
            }
        };
        if short > 0 {
            // The file shrank after its length went into the head: send what there
            // is, then close, so the client sees a short body, never a wrong one.
            log::warn!("a file shrank before it was sent ({short} bytes missing); closing");
            answer.bytes -= short;
            answer.close = true;
        }
        self.write_out();
        Ok(answer)
    }

    /// Queues `len` bytes of `body` from `start` (the plan keeps ranges inside it):
    /// bytes in memory, and small ranges of files (read now), join the head's buffer
    /// so they go out in the same write; larger file ranges become a sendfile
    /// segment. Returns how many bytes were missing (a file that shrank).
    fn slice(&mut self, body: &Body, start: u64, len: u64) -> io::Result<u64> {
        match body {
            Body::Bytes(bytes) => {
                let (from, to) = (start as usize, (start + len) as usize);
                let got = bytes.get(from..to.min(bytes.len())).unwrap_or_default();
                self.out.extend_from_slice(got);
                Ok(len - got.len() as u64)
            }
            Body::Shared(blob) if len <= INLINE_BODY_MAX => {
                self.out
                    .extend_from_slice(&blob[start as usize..(start + len) as usize]);
                Ok(0)
            }
            Body::Shared(blob) => {
                self.write_out();
                self.segs.push_back(Segment::Shared {
                    blob: std::sync::Arc::clone(blob),
                    pos: start as usize,
                    end: (start + len) as usize,
                });
                Ok(0)
            }
            Body::File(file) if len <= INLINE_BODY_MAX => {
                let read = read_into(file, &mut self.out, start, len as usize)?;
                Ok(len - read as u64)
            }
            Body::File(file) => {
                self.write_out();
                self.segs.push_back(Segment::File {
                    file: std::rc::Rc::clone(file),
                    offset: start,
                    len,
                });
                Ok(0)
            }
        }
    }

    /// Queues what `out` holds (the head, inline bodies, multipart part heads).
    fn write_out(&mut self) {
        if !self.out.is_empty() {
            let bytes = std::mem::take(&mut self.out);
            self.segs.push_back(Segment::Bytes(bytes, 0));
        }
    }
}

/// Appends up to `len` bytes of `file` from `offset` to `out`; returns how many
/// arrived (fewer if the file shrank).
fn read_into(file: &File, out: &mut Vec<u8>, offset: u64, len: usize) -> io::Result<usize> {
    let start = out.len();
    out.resize(start + len, 0);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut out[start + filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    out.truncate(start + filled);
    Ok(filled)
}

/// Debug builds only (the tests): a request for exactly `Config::panic_path` panics
/// here, to prove a panic costs one connection and never a worker. Release builds
/// have no such path.
fn test_hook(shared: &Shared, head: &Head) {
    #[cfg(debug_assertions)]
    if shared.config.panic_path.as_deref() == Some(head.target) {
        panic!("test hook: panic_path {} requested", head.target);
    }
    let _ = (shared, head);
}
