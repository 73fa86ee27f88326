//! The site the planner sees in production: a worker's [`FileCache`] over the root,
//! plus the server's own counters and metrics.

use super::Shared;
use crate::auth::Authenticator;
use crate::files::compress::{self, Front, Key};
use crate::files::{dir, Body, FileCache, Found, Listing};
use crate::http::auth::Verdict;
use crate::http::encoding::Encoding;
use crate::http::listing::{self, Format};
use crate::http::meta::Missing;
use crate::http::plan::{Page, Site, Source};
use crate::metrics;
use crate::stats::Msg;
use rustix::fd::OwnedFd;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A worker's view of the root for one request.
pub struct FileSite<'a> {
    pub cache: &'a mut FileCache,
    pub front: &'a mut Front,
    pub shared: &'a Shared,
    /// The `--auth-file` users this worker checks against.
    pub auth: Option<&'a Authenticator>,
    /// The client's address (the per-address bound on failed logins).
    pub peer: IpAddr,
    /// Set when the credentials could not be checked yet: the request is held
    /// until then (the plan made meanwhile is dropped).
    pub hold: Option<Instant>,
}

impl Site for FileSite<'_> {
    type Body = Body;
    type Dir = Rc<OwnedFd>;

    fn lookup(&mut self, rel: &str) -> Result<Found, Missing> {
        self.cache.lookup(rel)
    }

    fn lookup_in(&mut self, dir: &Rc<OwnedFd>, dir_rel: &str, name: &str) -> Result<Found, Missing> {
        self.cache.lookup_in(dir, dir_rel, name)
    }

    fn variants_absent(&mut self, rel: &str, encodings: &[Encoding]) -> bool {
        self.cache.variants_absent(rel, encodings.iter().map(|e| e.ext()))
    }

    /// The listing rendered once and kept while the directory is unchanged (see
    /// `files::dir`), or rendered now from the descriptor that was checked.
    fn listing(&mut self, dir: &Rc<OwnedFd>, rel: &str, format: Format) -> Result<Page<Body>, Missing> {
        let json = format == Format::Json;
        let page = match self.cache.listing(rel, json) {
            Some(page) => page.clone(),
            None => {
                let config = &self.shared.config;
                let root = self.cache.root();
                let (mut entries, omitted) =
                    dir::read_entries(root, dir, rel, config.dotfiles, config.follow_symlinks)?;
                let page = Listing::new(listing::render(format, rel, &mut entries, omitted).into_bytes())?;
                self.cache.keep_listing(rel, json, page.clone());
                page
            }
        };
        Ok(Page {
            body: page.body,
            len: page.len,
            etag: page.etag,
        })
    }

    /// Kept in the shared store (see `files::compress`), keyed by the identity of
    /// the file version just found, or by a page's ETag.
    fn compress(&mut self, source: &Source<'_>, body: &Body, len: u64, encoding: Encoding) -> Option<(u64, Body)> {
        let (key, expected) = match *source {
            Source::File(rel) => {
                let id = self.cache.identity(rel)?;
                (Key::File(id, encoding), Some(id))
            }
            Source::Page(etag) => (Key::Page(etag.to_string(), encoding), None),
        };
        let store = &self.shared.compressed;
        let blob = self.front.get(store, key, len, || {
            compress::encode(body, len, encoding, expected.as_ref())
        })?;
        Some((blob.len() as u64, Body::Shared(blob)))
    }

    /// Checks with the `--auth-file` users (cached, and bounded: see `crate::auth`).
    /// An address that keeps failing is held first: [`FileSite::hold`] says until
    /// when, and the `Busy` returned meanwhile is never sent.
    fn authorize(&mut self, user: &str, password: &str) -> Verdict {
        let Some(auth) = self.auth else {
            return Verdict::Denied;
        };
        match auth.verify_from(&self.shared.throttle, self.peer, user, password) {
            Ok(verdict) => verdict,
            Err(until) => {
                self.hold = Some(until);
                Verdict::Busy
            }
        }
    }

    fn counters(&mut self) -> Option<Vec<u8>> {
        self.shared.snapshot().and_then(|s| serde_json::to_vec_pretty(&s).ok())
    }

    /// Asks the logger/stats thread for its counts (as the stats path does: `None` if
    /// it does not answer within 2 s) and renders them with the process metrics.
    fn metrics(&mut self) -> Option<Vec<u8>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.shared.log.send(Msg::Metrics(tx)).ok()?;
        let counts = rx.recv_timeout(Duration::from_secs(2)).ok()?;
        let engine = metrics::Engine {
            workers: self.shared.config.threads,
            draining: self.shared.is_closing(),
            compression: self.shared.compression_stats(),
        };
        Some(metrics::render(&counts, engine).into_bytes())
    }
}
