//! Answers one request: decode the path, open what it names, plan, and queue the
//! response as segments for the worker to send. The decisions come from `respond`;
//! this file only does the filesystem I/O they need. File responses (validators,
//! ranges, precompressed variants) are in `represent`.

use super::output::{Segment, Segments};
use super::represent::content_type_header;
use super::Shared;
use crate::files::{self, Kind, Meta, MetaCache, OpenError};
use crate::head::{self, Head};
use crate::listing;
use crate::resolve::{self, UrlPath};
use crate::respond::{self, Plan, Refusal, FORBIDDEN, NOT_FOUND};
use crate::status::Status;
use crate::wire::{self, Connection};
use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// What happened, for the access log and the connection loop.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Status sent.
    pub status: Status,
    /// Body bytes sent.
    pub bytes: u64,
    /// The connection must close after this response.
    pub close: bool,
}

/// A worker's reusable state: the response being built and its open-file cache.
#[derive(Debug, Default)]
pub struct Scratch {
    out: Vec<u8>,
    /// The response to send, in order; filled by [`respond`], drained by the worker.
    pub segs: Segments,
    cache: MetaCache,
}

impl Scratch {
    /// Closes cached files not used within their TTL.
    pub fn purge_cache(&mut self) {
        self.cache.purge();
    }
}

/// Plans the response to `head` and queues it in `scratch.segs`; nothing is written
/// here (the worker sends the segments, so a slow reader can be parked mid-response).
pub fn respond(shared: &Shared, head: &Head, scratch: &mut Scratch) -> io::Result<Outcome> {
    scratch.segs.clear();
    let mut res = Responder {
        shared,
        out: &mut scratch.out,
        segs: &mut scratch.segs,
        cache: &mut scratch.cache,
        head_only: head.method == "HEAD",
        http10: head.version == 0,
        close: !head.wants_keep_alive() || shared.is_shutting_down(),
    };
    if head.method == "OPTIONS" && shared.config.cors && head.body() == head::Body::None {
        return res.preflight();
    }
    if let Err(refusal) = respond::check_request(head) {
        return res.refuse(refusal);
    }
    let target = match head::split_target(head.target) {
        Ok(t) => t,
        Err(e) => return res.refuse(Refusal::close(e.status(), e.message())),
    };
    let config = &shared.config;
    if config.panic_path.as_deref() == Some(target.path) {
        panic!("test hook: panic_path {} requested", target.path);
    }
    let url = match resolve::decode(target.path) {
        Ok(u) => u,
        Err(e) => return res.refuse(Refusal::keep(Status::BadRequest, e.message())),
    };
    if config
        .stats_path
        .as_deref()
        .is_some_and(|s| respond::is_stats_path(&url, s))
    {
        return res.stats();
    }
    if url.hidden && !config.dotfiles {
        return res.not_found(head);
    }
    let path = config.root.join(&url.rel);
    let (file, meta) = match res.open(&path, &url.rel) {
        Ok(pair) => pair,
        Err(OpenError::NotFound) => return res.not_found(head),
        Err(OpenError::Forbidden) => return res.refuse(FORBIDDEN),
        Err(OpenError::Exhausted) => return res.refuse(EXHAUSTED),
    };
    if meta.kind != Kind::Dir {
        return match respond::plan_file(&url, &meta) {
            Plan::Full { .. } => res.representation(head, &path, file, meta, &url.rel),
            Plan::Error(r) if r.status == Status::NotFound => res.not_found(head),
            Plan::Error(r) => res.refuse(r),
            other => unreachable!("plan_file never plans {other:?}"),
        };
    }
    drop(file);
    res.directory(head, &url, target.query, &path)
}

const EXHAUSTED: Refusal = Refusal::close(Status::ServiceUnavailable, "The server is out of file descriptors.");

/// Builds the response to one request.
pub(super) struct Responder<'a> {
    pub(super) shared: &'a Shared,
    pub(super) out: &'a mut Vec<u8>,
    pub(super) segs: &'a mut Segments,
    pub(super) cache: &'a mut MetaCache,
    pub(super) head_only: bool,
    pub(super) http10: bool,
    pub(super) close: bool,
}

impl Responder<'_> {
    /// Opens a path under the root through the worker's metadata cache.
    pub(super) fn open(&mut self, path: &Path, rel: &str) -> Result<(Rc<File>, Meta), OpenError> {
        let config = &self.shared.config;
        files::open_cached(&config.root, path, rel, config.follow_symlinks, self.cache)
    }

    /// A request that named a directory: redirect to the slash form, its
    /// `index.html`, a listing, or not found.
    fn directory(&mut self, head: &Head, url: &UrlPath, query: Option<&str>, path: &Path) -> io::Result<Outcome> {
        let index_path = path.join("index.html");
        let index_rel = if url.rel.is_empty() {
            "index.html".to_string()
        } else {
            format!("{}/index.html", url.rel)
        };
        let index = if url.trailing_slash {
            self.open(&index_path, &index_rel).ok()
        } else {
            None
        };
        let listing = self.shared.config.listing;
        match respond::plan_directory(url, query, index.as_ref().map(|(_, m)| m), listing) {
            Plan::Full { .. } => {
                let (file, meta) = index.expect("plan_directory plans Full only with an index");
                self.representation(head, &index_path, file, meta, &index_rel)
            }
            Plan::Redirect { location } => self.redirect(&location),
            Plan::Listing => self.listing(url, path, listing::wants_json(head.accept, query)),
            Plan::Error(r) if r.status == Status::NotFound => self.not_found(head),
            Plan::Error(r) => self.refuse(r),
            other => unreachable!("plan_directory never plans {other:?}"),
        }
    }

    /// Starts a head in `out`.
    pub(super) fn begin(&mut self, status: Status) {
        self.out.clear();
        wire::start(self.out, status);
    }

    /// Ends the head: configured extra headers, CORS, `Connection`, blank line.
    pub(super) fn end_head(&mut self) {
        let config = &self.shared.config;
        if config.cors {
            wire::header(self.out, "Access-Control-Allow-Origin", "*");
        }
        for (name, value) in &config.headers {
            wire::header(self.out, name, value);
        }
        let conn = match (self.close, self.http10) {
            (true, _) => Connection::Close,
            (false, true) => Connection::KeepAlive10,
            (false, false) => Connection::KeepAlive,
        };
        wire::finish(self.out, conn);
    }

    /// Queues the head (and any inline body) built in `out`.
    pub(super) fn write_out(&mut self) -> io::Result<()> {
        let bytes = std::mem::replace(self.out, Vec::with_capacity(512));
        self.segs.push_back(Segment::Bytes(bytes, 0));
        Ok(())
    }

    pub(super) fn outcome(&self, status: Status, bytes: u64) -> io::Result<Outcome> {
        Ok(Outcome {
            status,
            bytes,
            close: self.close,
        })
    }

    /// A response whose body is already in memory.
    fn small(
        &mut self,
        status: Status,
        content_type: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> io::Result<Outcome> {
        self.begin(status);
        wire::header(self.out, "Content-Type", content_type);
        wire::header_num(self.out, "Content-Length", body.len() as u64);
        for (name, value) in extra {
            wire::header(self.out, name, value);
        }
        self.end_head();
        let sent = if self.head_only || !status.has_body() {
            0
        } else {
            body.len()
        };
        self.out.extend_from_slice(&body[..sent]);
        self.write_out()?;
        self.outcome(status, sent as u64)
    }

    pub(super) fn refuse(&mut self, r: Refusal) -> io::Result<Outcome> {
        self.refuse_with(r, &[])
    }

    pub(super) fn refuse_with(&mut self, r: Refusal, extra: &[(&str, &str)]) -> io::Result<Outcome> {
        self.close |= r.close;
        let page = wire::error_page(r.status, r.message);
        let allow: &[(&str, &str)] = match (r.status, self.shared.config.cors) {
            (Status::MethodNotAllowed, false) => &[("Allow", "GET, HEAD")],
            (Status::MethodNotAllowed, true) => &[("Allow", "GET, HEAD, OPTIONS")],
            _ => &[],
        };
        let headers: Vec<(&str, &str)> = allow.iter().chain(extra).copied().collect();
        self.small(r.status, "text/html; charset=utf-8", page.as_bytes(), &headers)
    }

    fn redirect(&mut self, location: &str) -> io::Result<Outcome> {
        let page = wire::error_page(Status::MovedPermanently, "This directory's address ends with a slash.");
        self.small(
            Status::MovedPermanently,
            "text/html; charset=utf-8",
            page.as_bytes(),
            &[("Location", location)],
        )
    }

    /// 204 answer to a CORS preflight.
    fn preflight(&mut self) -> io::Result<Outcome> {
        self.begin(Status::NoContent);
        wire::header(self.out, "Allow", "GET, HEAD, OPTIONS");
        wire::header(self.out, "Access-Control-Allow-Methods", "GET, HEAD, OPTIONS");
        wire::header(
            self.out,
            "Access-Control-Allow-Headers",
            "Range, If-Range, If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since, Accept, Accept-Encoding",
        );
        wire::header(self.out, "Access-Control-Max-Age", "86400");
        self.end_head();
        self.write_out()?;
        self.outcome(Status::NoContent, 0)
    }

    /// Nothing matched: the `--fallback` file (200), the `--404` page, or the default.
    pub(super) fn not_found(&mut self, head: &Head) -> io::Result<Outcome> {
        let config = &self.shared.config;
        if let Some(rel) = &config.fallback {
            let path = config.root.join(rel);
            if let Ok((file, meta)) = self.open(&path, rel) {
                if meta.kind == Kind::File {
                    return self.representation(head, &path, file, meta, rel);
                }
            }
        }
        if let Some(rel) = &config.not_found_page {
            if let Ok((file, meta)) = self.open(&config.root.join(rel), rel) {
                if meta.kind == Kind::File {
                    return self.page(Status::NotFound, rel, file, meta.len);
                }
            }
        }
        self.refuse(NOT_FOUND)
    }

    /// A file sent whole with a fixed status (custom error pages): no validators.
    pub(super) fn page(&mut self, status: Status, rel: &str, file: Rc<File>, len: u64) -> io::Result<Outcome> {
        self.begin(status);
        content_type_header(self.out, rel);
        wire::header_num(self.out, "Content-Length", len);
        self.end_head();
        self.write_out()?;
        let sent = if self.head_only { 0 } else { self.body(&file, 0, len)? };
        self.outcome(status, sent)
    }

    fn stats(&mut self) -> io::Result<Outcome> {
        match self.shared.snapshot().and_then(|s| serde_json::to_vec_pretty(&s).ok()) {
            Some(body) => self.small(Status::Ok, "application/json", &body, &[("Cache-Control", "no-store")]),
            None => self.refuse(Refusal::keep(Status::ServiceUnavailable, "Counters are not available.")),
        }
    }

    fn listing(&mut self, url: &UrlPath, dir: &Path, json: bool) -> io::Result<Outcome> {
        let config = &self.shared.config;
        let mut entries = match files::read_dir(&config.root, dir, config.dotfiles, config.follow_symlinks) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return self.refuse(FORBIDDEN),
            Err(_) => return self.refuse(NOT_FOUND),
        };
        listing::sort(&mut entries);
        let vary = [("Vary", "Accept")];
        if json {
            return self.small(
                Status::Ok,
                "application/json",
                listing::render_json(&entries).as_bytes(),
                &vary,
            );
        }
        let display = if url.rel.is_empty() {
            "/".to_string()
        } else {
            format!("/{}/", url.rel)
        };
        let body = listing::render_html(&display, &entries);
        self.small(Status::Ok, "text/html; charset=utf-8", body.as_bytes(), &vary)
    }
}

/// A complete error response (head and page) that closes the connection, for threads
/// that answer without a request (408 from the idle watcher).
pub fn error_response(status: Status, message: &str) -> Vec<u8> {
    let page = wire::error_page(status, message);
    let mut out = Vec::with_capacity(256 + page.len());
    wire::start(&mut out, status);
    wire::header(&mut out, "Content-Type", "text/html; charset=utf-8");
    wire::header_num(&mut out, "Content-Length", page.len() as u64);
    if status == Status::ServiceUnavailable {
        wire::header_num(&mut out, "Retry-After", u64::from(crate::limits::RETRY_AFTER_SECS));
    }
    wire::finish(&mut out, Connection::Close);
    out.extend_from_slice(page.as_bytes());
    out
}

/// The 503 sent when shedding load.
pub fn unavailable(message: &str) -> Vec<u8> {
    error_response(Status::ServiceUnavailable, message)
}
