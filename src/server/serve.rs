//! Executes one request: decode the path, open what it names, plan, and write the
//! response. The decisions come from `respond`; this file only does the I/O they need.

use super::output::{Segment, Segments};
use super::Shared;
use crate::conditional::Validators;
use crate::encoding::{self, Encoding};
use crate::files::{self, Kind, Meta, MetaCache, OpenError};
use crate::head::{self, Head};
use crate::limits::INLINE_BODY_MAX;
use crate::listing;
use crate::range::{self, ByteRange};
use crate::resolve::{self, UrlPath};
use crate::respond::{self, FileRequest, Plan, Refusal, FORBIDDEN, NOT_FOUND};
use crate::status::Status;
use crate::wire::{self, Connection};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
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

/// An opened file ready to be sent, with what the response says about it.
struct Representation {
    file: Rc<File>,
    meta: Meta,
    /// Path relative to the root of the file the client asked for (for its type).
    rel: String,
    /// The precompressed variant being sent instead, if any.
    encoding: Option<Encoding>,
    /// A precompressed variant exists, so the response varies by Accept-Encoding.
    vary: bool,
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
    if config.stats_path.as_deref() == Some(target.path) {
        return res.stats();
    }
    if config.panic_path.as_deref() == Some(target.path) {
        panic!("test hook: panic_path {} requested", target.path);
    }
    let url = match resolve::decode(target.path) {
        Ok(u) => u,
        Err(e) => return res.refuse(Refusal::keep(Status::BadRequest, e.message())),
    };
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
    let index_path = path.join("index.html");
    let index_rel = if url.rel.is_empty() {
        "index.html".to_string()
    } else {
        format!("{}/index.html", url.rel)
    };
    let index = match url.trailing_slash {
        true => res.open(&index_path, &index_rel).ok(),
        false => None,
    };
    match respond::plan_directory(&url, target.query, index.as_ref().map(|(_, m)| m), config.listing) {
        Plan::Full { .. } => {
            let (file, meta) = index.expect("plan_directory plans Full only with an index");
            let rel = if url.rel.is_empty() {
                "index.html".to_string()
            } else {
                format!("{}/index.html", url.rel)
            };
            res.representation(head, &index_path, file, meta, &rel)
        }
        Plan::Redirect { location } => res.redirect(&location),
        Plan::Listing => res.listing(&url, &path, listing::wants_json(head.accept, target.query)),
        Plan::Error(r) if r.status == Status::NotFound => res.not_found(head),
        Plan::Error(r) => res.refuse(r),
        other => unreachable!("plan_directory never plans {other:?}"),
    }
}

const EXHAUSTED: Refusal = Refusal::close(Status::ServiceUnavailable, "The server is out of file descriptors.");

/// Writes responses for one request.
struct Responder<'a> {
    shared: &'a Shared,
    out: &'a mut Vec<u8>,
    segs: &'a mut Segments,
    cache: &'a mut MetaCache,
    head_only: bool,
    http10: bool,
    close: bool,
}

impl Responder<'_> {
    /// Opens a path under the root through the worker's metadata cache.
    fn open(&mut self, path: &Path, rel: &str) -> Result<(Rc<File>, Meta), OpenError> {
        let config = &self.shared.config;
        files::open_cached(&config.root, path, rel, config.follow_symlinks, self.cache)
    }

    /// Starts a head in `out`.
    fn begin(&mut self, status: Status) {
        self.out.clear();
        wire::start(self.out, status);
    }

    /// Ends the head: configured extra headers, CORS, `Connection`, blank line.
    fn end_head(&mut self) {
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
    fn write_out(&mut self) -> io::Result<()> {
        let bytes = std::mem::replace(self.out, Vec::with_capacity(512));
        self.segs.push_back(Segment::Bytes(bytes, 0));
        Ok(())
    }

    fn outcome(&self, status: Status, bytes: u64) -> io::Result<Outcome> {
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

    fn refuse(&mut self, r: Refusal) -> io::Result<Outcome> {
        self.refuse_with(r, &[])
    }

    fn refuse_with(&mut self, r: Refusal, extra: &[(&str, &str)]) -> io::Result<Outcome> {
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
    fn not_found(&mut self, head: &Head) -> io::Result<Outcome> {
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
    fn page(&mut self, status: Status, rel: &str, file: Rc<File>, len: u64) -> io::Result<Outcome> {
        self.begin(status);
        content_type_header(self.out, rel);
        wire::header_num(self.out, "Content-Length", len);
        self.end_head();
        self.write_out()?;
        let sent = if self.head_only { 0 } else { self.body(&file, 0, len)? };
        self.outcome(status, sent)
    }

    fn stats(&mut self) -> io::Result<Outcome> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let snapshot = (self.shared.log)
            .send(crate::stats::Msg::Snapshot(tx))
            .ok()
            .and_then(|()| rx.recv_timeout(std::time::Duration::from_secs(2)).ok());
        match snapshot.and_then(|s| serde_json::to_vec_pretty(&s).ok()) {
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

    /// Picks the precompressed variant (if any) and sends the file as planned by
    /// `respond::plan_representation`.
    fn representation(
        &mut self,
        head: &Head,
        path: &Path,
        file: Rc<File>,
        meta: Meta,
        rel: &str,
    ) -> io::Result<Outcome> {
        let mut rep = Representation {
            file,
            meta,
            rel: rel.to_string(),
            encoding: None,
            vary: false,
        };
        if self.shared.config.precompressed {
            self.negotiate(head, path, &mut rep);
        }
        if rep.encoding.is_none() && rep.vary && encoding::identity_refused(head.accept_encoding) {
            let msg = "No acceptable encoding of this file exists.";
            return self.refuse_with(
                Refusal::keep(Status::NotAcceptable, msg),
                &[("Vary", "Accept-Encoding")],
            );
        }
        let mut etag = rep.meta.etag();
        if let Some(enc) = rep.encoding {
            // A distinct strong validator per encoding (RFC 9110 §8.8.3).
            etag.insert_str(etag.len() - 1, &format!("-{}", enc.token()));
        }
        let validators = Validators {
            etag,
            last_modified: rep.meta.mtime,
        };
        match respond::plan_representation(&FileRequest::from_head(head), rep.meta.len, &validators) {
            Plan::Full { len } => self.full(&rep, &validators, len),
            Plan::Partial { range, len } => self.partial(&rep, &validators, range, len),
            Plan::Multipart { ranges, len } => self.multipart(&rep, &validators, &ranges, len),
            Plan::NotModified => {
                self.begin(Status::NotModified);
                self.validator_headers(&rep, &validators);
                self.end_head();
                self.write_out()?;
                self.outcome(Status::NotModified, 0)
            }
            Plan::PreconditionFailed => {
                self.refuse(Refusal::keep(Status::PreconditionFailed, "A precondition failed."))
            }
            Plan::RangeNotSatisfiable { len } => {
                let cr = range::content_range_unsatisfied(len);
                let msg = "The requested range is not satisfiable.";
                self.refuse_with(
                    Refusal::keep(Status::RangeNotSatisfiable, msg),
                    &[("Content-Range", &cr)],
                )
            }
            other => unreachable!("plan_representation never plans {other:?}"),
        }
    }

    /// Looks for `FILE.br`, `FILE.zst`, `FILE.gz` in that order; takes the first the
    /// client accepts, and notes whether any exists (for `Vary`). What exists is
    /// remembered in the worker's metadata cache, so most requests stat nothing here.
    fn negotiate(&mut self, head: &Head, path: &Path, rep: &mut Representation) {
        let variant_path = |enc: Encoding| {
            let mut v = path.as_os_str().to_owned();
            v.push(enc.ext());
            std::path::PathBuf::from(v)
        };
        let order = encoding::preference_order();
        let exists = match self.cache.variants(&rep.rel) {
            Some(known) => known,
            None => {
                let found = order.map(|enc| std::fs::metadata(variant_path(enc)).is_ok_and(|m| m.is_file()));
                self.cache.set_variants(&rep.rel, found);
                found
            }
        };
        rep.vary = exists.contains(&true);
        let accepted = encoding::acceptable(head.accept_encoding);
        for (enc, _) in order
            .into_iter()
            .zip(exists)
            .filter(|&(enc, e)| e && accepted.accepts(enc))
        {
            let key = format!("{}{}", rep.rel, enc.ext());
            if let Ok((file, meta)) = self.open(&variant_path(enc), &key) {
                if meta.kind == Kind::File {
                    rep.file = file;
                    rep.meta = meta;
                    rep.encoding = Some(enc);
                    return;
                }
            }
        }
    }

    /// Headers describing the representation, shared by 200, 206 and 304.
    fn validator_headers(&mut self, rep: &Representation, v: &Validators) {
        wire::header_date(self.out, "Last-Modified", v.last_modified);
        wire::header(self.out, "ETag", &v.etag);
        let config = &self.shared.config;
        let cache = if config.immutable.iter().any(|p| p.matches(&rep.rel)) {
            Some("public, max-age=31536000, immutable")
        } else {
            config.cache_control.as_deref()
        };
        if let Some(cc) = cache {
            wire::header(self.out, "Cache-Control", cc);
        }
        if rep.vary {
            wire::header(self.out, "Vary", "Accept-Encoding");
        }
    }

    fn entity_headers(&mut self, rep: &Representation, v: &Validators) {
        self.validator_headers(rep, v);
        wire::header(self.out, "Accept-Ranges", "bytes");
        if let Some(enc) = rep.encoding {
            wire::header(self.out, "Content-Encoding", enc.token());
        }
    }

    /// 200: head in one write, then the body with sendfile; a small body
    /// rides in the same write as the head.
    fn full(&mut self, rep: &Representation, v: &Validators, len: u64) -> io::Result<Outcome> {
        self.begin(Status::Ok);
        content_type_header(self.out, &rep.rel);
        wire::header_num(self.out, "Content-Length", len);
        self.entity_headers(rep, v);
        self.end_head();
        if self.head_only {
            self.write_out()?;
            return self.outcome(Status::Ok, 0);
        }
        if len <= INLINE_BODY_MAX {
            let read = read_into(&rep.file, self.out, len as usize)? as u64;
            if read < len {
                log::warn!(
                    "{}: file shrank before it was sent ({read} of {len} bytes); closing",
                    rep.rel
                );
                self.close = true;
            }
            self.write_out()?;
            return self.outcome(Status::Ok, read);
        }
        self.write_out()?;
        let sent = self.body(&rep.file, 0, len)?;
        self.outcome(Status::Ok, sent)
    }

    fn partial(&mut self, rep: &Representation, v: &Validators, r: ByteRange, len: u64) -> io::Result<Outcome> {
        self.begin(Status::PartialContent);
        content_type_header(self.out, &rep.rel);
        wire::header_num(self.out, "Content-Length", r.len());
        wire::header(self.out, "Content-Range", &range::content_range(&r, len));
        self.entity_headers(rep, v);
        self.end_head();
        self.write_out()?;
        let sent = self.body(&rep.file, r.start, r.len())?;
        self.outcome(Status::PartialContent, sent)
    }

    fn multipart(
        &mut self,
        rep: &Representation,
        v: &Validators,
        ranges: &[ByteRange],
        len: u64,
    ) -> io::Result<Outcome> {
        let boundary = boundary();
        let (mime, text) = respond::content_type(&rep.rel);
        let part_type = if text {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        };
        self.begin(Status::PartialContent);
        wire::header(
            self.out,
            "Content-Type",
            &format!("multipart/byteranges; boundary={boundary}"),
        );
        wire::header_num(
            self.out,
            "Content-Length",
            range::multipart_len(ranges, len, &part_type, &boundary),
        );
        self.entity_headers(rep, v);
        self.end_head();
        self.write_out()?;
        let mut sent = 0;
        for r in ranges {
            let part = range::multipart_part_head(r, len, &part_type, &boundary);
            sent += part.len() as u64;
            self.segs.push_back(Segment::Bytes(part.into_bytes(), 0));
            sent += self.body(&rep.file, r.start, r.len())?;
        }
        let tail = range::multipart_tail(&boundary);
        sent += tail.len() as u64;
        self.segs.push_back(Segment::Bytes(tail.into_bytes(), 0));
        self.outcome(Status::PartialContent, sent)
    }

    /// Queues `len` bytes of `file` from `start`, to go out with sendfile.
    fn body(&mut self, file: &Rc<File>, start: u64, len: u64) -> io::Result<u64> {
        self.segs.push_back(Segment::File {
            file: Rc::clone(file),
            offset: start,
            len,
        });
        Ok(len)
    }
}

/// Appends up to `len` bytes of `file` to `out` (one `read` for a regular file);
/// returns how many arrived (fewer if the file shrank).
fn read_into(file: &File, out: &mut Vec<u8>, len: usize) -> io::Result<usize> {
    let start = out.len();
    out.resize(start + len, 0);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut out[start + filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.truncate(start + filled);
    Ok(filled)
}

/// `Content-Type` for a path, with `charset=utf-8` on text types.
fn content_type_header(out: &mut Vec<u8>, rel: &str) {
    let (mime, text) = respond::content_type(rel);
    if text {
        wire::header(out, "Content-Type", &format!("{mime}; charset=utf-8"));
    } else {
        wire::header(out, "Content-Type", mime);
    }
}

/// A multipart boundary from std's per-process random hash keys plus a counter.
fn boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("threadserve-{:016x}", h.finish())
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
