//! Answers one request: decode the path, open what it names, plan, and queue the
//! response as segments for the worker to send. The decisions come from `respond`;
//! this file only does the filesystem I/O they need. File responses (validators,
//! ranges, precompressed variants) are in `represent`.

use super::output::{Segment, Segments};
use super::represent::content_type_header;
use super::Shared;
use crate::files::{dir, Body, FileCache, Found, Listing, Meta, OpenError};
use crate::http::conditional;
use crate::http::head::{self, Head};
use crate::http::listing;
use crate::http::plan::{self, FileRequest, Plan, Refusal, FORBIDDEN, NOT_FOUND};
use crate::http::resolve::{self, UrlPath};
use crate::http::status::Status;
use crate::http::wire::{self, Connection};
use rustix::fd::OwnedFd;
use std::io;
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

/// A worker's reusable state: the response being built and its file cache.
#[derive(Debug)]
pub struct Scratch {
    out: Vec<u8>,
    /// The response to send, in order; filled by [`respond`], drained by the worker.
    pub segs: Segments,
    cache: FileCache,
    /// Which reload of the root `cache` serves from.
    root_generation: u64,
}

impl Scratch {
    /// Empty buffers and an empty cache over the configured root.
    pub fn new(shared: &Shared) -> Scratch {
        let config = &shared.config;
        Scratch {
            out: Vec::new(),
            segs: Segments::new(),
            cache: FileCache::new(config.root.clone(), config.follow_symlinks),
            root_generation: 0,
        }
    }

    /// Closes cached files not used lately.
    pub fn purge_cache(&mut self) {
        self.cache.purge();
    }
}

/// Plans the response to `head` and queues it in `scratch.segs`; nothing is written
/// here (the worker sends the segments, so a slow reader can be parked mid-response).
pub fn respond(shared: &Shared, head: &Head, scratch: &mut Scratch) -> io::Result<Outcome> {
    scratch.segs.clear();
    if let Some(root) = shared.root_if_changed(&mut scratch.root_generation) {
        scratch.cache.set_root(root);
    }
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
    if let Err(refusal) = plan::check_request(head) {
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
        .is_some_and(|s| plan::is_stats_path(&url, s))
    {
        return res.stats();
    }
    if url.hidden && !config.dotfiles {
        return res.not_found(head);
    }
    match res.cache.lookup(&url.rel) {
        Ok(Found::File(meta, body)) => match plan::plan_file(&url, &meta) {
            Plan::Full { .. } => res.representation(head, &url.rel, meta, body),
            Plan::Error(r) if r.status == Status::NotFound => res.not_found(head),
            Plan::Error(r) => res.refuse(r),
            other => unreachable!("plan_file never plans {other:?}"),
        },
        Ok(Found::Dir(_, fd)) => res.directory(head, &url, target.query, &fd),
        Ok(Found::Other) => res.refuse(FORBIDDEN),
        Err(OpenError::NotFound | OpenError::Hidden) => res.not_found(head),
        Err(e) => res.refuse(open_refusal(e)),
    }
}

/// The answer to a path that exists but cannot be served.
fn open_refusal(e: OpenError) -> Refusal {
    match e {
        OpenError::Exhausted => EXHAUSTED,
        OpenError::NotFound => NOT_FOUND,
        OpenError::Forbidden | OpenError::Hidden => FORBIDDEN,
    }
}

const EXHAUSTED: Refusal = Refusal::close(Status::ServiceUnavailable, "The server is out of file descriptors.");

/// Builds the response to one request.
pub(super) struct Responder<'a> {
    pub(super) shared: &'a Shared,
    pub(super) out: &'a mut Vec<u8>,
    pub(super) segs: &'a mut Segments,
    pub(super) cache: &'a mut FileCache,
    pub(super) head_only: bool,
    pub(super) http10: bool,
    pub(super) close: bool,
}

impl Responder<'_> {
    /// A request that named a directory: redirect to the slash form, its
    /// `index.html` (opened relative to the directory's descriptor), a listing, or
    /// not found. Only a missing `index.html` leads to a listing: one that exists but
    /// cannot be served (unreadable, not a regular file, a symlink leaving the root)
    /// is 403.
    fn directory(&mut self, head: &Head, url: &UrlPath, query: Option<&str>, fd: &Rc<OwnedFd>) -> io::Result<Outcome> {
        let index_rel = resolve::join(&url.rel, "index.html");
        let index = if url.trailing_slash {
            match self.cache.lookup_in(fd, &url.rel, "index.html") {
                Ok(Found::File(meta, body)) => Some((meta, body)),
                Ok(_) => return self.refuse(FORBIDDEN),
                Err(OpenError::NotFound) => None,
                Err(e) => return self.refuse(open_refusal(e)),
            }
        } else {
            None
        };
        let listing = self.shared.config.listing;
        match plan::plan_directory(url, query, index.as_ref().map(|(m, _)| m), listing) {
            Plan::Full { .. } => {
                let (meta, body) = index.expect("plan_directory plans Full only with an index");
                self.representation(head, &index_rel, meta, body)
            }
            Plan::Redirect { location } => self.redirect(&location),
            Plan::Listing => self.listing(head, url, fd, listing::wants_json(head.accept, query)),
            Plan::Error(r) if r.status == Status::NotFound => self.not_found(head),
            Plan::Error(r) => self.refuse(r),
            other => unreachable!("plan_directory never plans {other:?}"),
        }
    }

    /// Starts a head in `out`.
    pub(super) fn begin(&mut self, status: Status) {
        self.out.clear();
        wire::start(self.out, status, &super::date::now());
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

    /// Queues what `out` holds (the head, inline bodies, multipart part heads).
    pub(super) fn write_out(&mut self) {
        if !self.out.is_empty() {
            let bytes = std::mem::replace(self.out, Vec::with_capacity(512));
            self.segs.push_back(Segment::Bytes(bytes, 0));
        }
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
        self.write_out();
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
        self.write_out();
        self.outcome(Status::NoContent, 0)
    }

    /// Nothing matched: the `--fallback` file (200), the `--404` page, or the default.
    pub(super) fn not_found(&mut self, head: &Head) -> io::Result<Outcome> {
        let config = &self.shared.config;
        if let Some(rel) = &config.fallback {
            if let Ok(Found::File(meta, body)) = self.cache.lookup(rel) {
                return self.representation(head, rel, meta, body);
            }
        }
        if let Some(rel) = &config.not_found_page {
            if let Ok(Found::File(meta, body)) = self.cache.lookup(rel) {
                return self.page(Status::NotFound, rel, meta, &body);
            }
        }
        self.refuse(NOT_FOUND)
    }

    /// A file sent whole with a fixed status (custom error pages): no validators.
    pub(super) fn page(&mut self, status: Status, rel: &str, meta: Meta, body: &Body) -> io::Result<Outcome> {
        self.begin(status);
        content_type_header(self.out, rel);
        wire::header_num(self.out, "Content-Length", meta.len);
        self.end_head();
        let sent = if self.head_only {
            0
        } else {
            self.body(body, 0, meta.len)
        };
        self.write_out();
        self.outcome(status, sent)
    }

    fn stats(&mut self) -> io::Result<Outcome> {
        match self.shared.snapshot().and_then(|s| serde_json::to_vec_pretty(&s).ok()) {
            Some(body) => self.small(Status::Ok, "application/json", &body, &[("Cache-Control", "no-store")]),
            None => self.refuse(Refusal::keep(Status::ServiceUnavailable, "Counters are not available.")),
        }
    }

    /// A listing of the directory `fd`, rendered once and kept while the directory
    /// is unchanged (see `files::dir`); its ETag comes from its bytes, so
    /// `If-None-Match` and `If-Match` apply to it (RFC 9110 §13.1.1, §13.1.2).
    fn listing(&mut self, head: &Head, url: &UrlPath, fd: &OwnedFd, json: bool) -> io::Result<Outcome> {
        let page = match self.cache.listing(&url.rel, json) {
            Some(page) => page.clone(),
            None => match self.render_listing(url, fd, json) {
                Ok(page) => page,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return self.refuse(FORBIDDEN),
                Err(e) => return self.refuse(open_refusal(OpenError::from(e))),
            },
        };
        let status = match plan::listing_outcome(&FileRequest::from_head(head), &page.etag) {
            conditional::Outcome::Proceed => Status::Ok,
            conditional::Outcome::NotModified => Status::NotModified,
            conditional::Outcome::PreconditionFailed => {
                return self.refuse(Refusal::keep(Status::PreconditionFailed, "A precondition failed."))
            }
        };
        self.begin(status);
        if status == Status::Ok {
            let content_type = if json {
                "application/json"
            } else {
                "text/html; charset=utf-8"
            };
            wire::header(self.out, "Content-Type", content_type);
            wire::header_num(self.out, "Content-Length", page.len);
        }
        wire::header(self.out, "ETag", &page.etag);
        wire::header(self.out, "Vary", "Accept");
        self.end_head();
        let sent = if self.head_only || status != Status::Ok {
            0
        } else {
            self.body(&page.body, 0, page.len)
        };
        self.write_out();
        self.outcome(status, sent)
    }

    fn render_listing(&mut self, url: &UrlPath, fd: &OwnedFd, json: bool) -> io::Result<Listing> {
        let config = &self.shared.config;
        let root = self.cache.root();
        let (mut entries, omitted) = dir::read_entries(root, fd, &url.rel, config.dotfiles, config.follow_symlinks)?;
        listing::sort(&mut entries);
        let page = if json {
            listing::render_json(&entries)
        } else {
            let display = if url.rel.is_empty() {
                "/".to_string()
            } else {
                format!("/{}/", url.rel)
            };
            listing::render_html(&display, &entries, omitted)
        };
        let page = Listing::new(page.into_bytes())?;
        self.cache.keep_listing(&url.rel, json, page.clone());
        Ok(page)
    }
}
