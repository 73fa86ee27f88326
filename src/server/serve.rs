//! Executes one request: decode the path, open what it names, plan, and write the
//! response. The decisions come from `respond`; this file only does the I/O they need.

use super::Shared;
use crate::files::{self, Kind, Meta, OpenError};
use crate::head::{self, Head};
use crate::listing;
use crate::resolve::{self, UrlPath};
use crate::respond::{self, Plan, Refusal, FORBIDDEN, NOT_FOUND};
use crate::status::Status;
use crate::wire::{self, Connection};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;

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

/// Writes the response to `head` on `stream`. `out` is the reusable head buffer;
/// `sent` turns true once the first byte has gone out (so a panic after that point
/// cannot be answered with a 500).
pub fn respond(
    shared: &Shared,
    stream: &mut TcpStream,
    head: &Head,
    out: &mut Vec<u8>,
    sent: &mut bool,
) -> io::Result<Outcome> {
    let config = &shared.config;
    let mut res = Responder {
        stream,
        out,
        sent,
        head_only: head.method == "HEAD",
        http10: head.version == 0,
        close: !head.wants_keep_alive(),
    };
    if shared.is_shutting_down() {
        res.close = true;
    }
    if let Err(refusal) = respond::check_request(head) {
        return res.refuse(refusal);
    }
    let target = match head::split_target(head.target) {
        Ok(t) => t,
        Err(e) => return res.refuse(Refusal::close(e.status(), e.message())),
    };
    if config.stats_path.as_deref() == Some(target.path) {
        return stats(shared, &mut res);
    }
    if config.panic_path.as_deref() == Some(target.path) {
        panic!("test hook: panic_path {} requested", target.path);
    }
    let url = match resolve::decode(target.path) {
        Ok(u) => u,
        Err(e) => return res.refuse(Refusal::keep(Status::BadRequest, e.message())),
    };
    if url.hidden && !config.dotfiles {
        return res.refuse(NOT_FOUND);
    }
    let path = config.root.join(&url.rel);
    let (file, meta) = match files::open(&config.root, &path, config.follow_symlinks) {
        Ok(pair) => pair,
        Err(OpenError::NotFound) => return res.refuse(NOT_FOUND),
        Err(OpenError::Forbidden) => return res.refuse(FORBIDDEN),
    };
    if meta.kind != Kind::Dir {
        return match respond::plan_file(&url, &meta) {
            Plan::Full { .. } => res.file(&url.rel, file, &meta),
            Plan::Error(r) => res.refuse(r),
            other => unreachable!("plan_file never plans {other:?}"),
        };
    }
    drop(file);
    let index_path = path.join("index.html");
    let index = if url.trailing_slash {
        files::open(&config.root, &index_path, config.follow_symlinks).ok()
    } else {
        None
    };
    match respond::plan_directory(&url, target.query, index.as_ref().map(|(_, m)| m), config.listing) {
        Plan::Full { .. } => {
            let (file, meta) = index.expect("plan_directory plans Full only with an index");
            res.file("index.html", file, &meta)
        }
        Plan::Redirect { location } => res.redirect(&location),
        Plan::Listing => listing_page(shared, &mut res, &url, &path),
        Plan::Error(r) => res.refuse(r),
    }
}

fn listing_page(shared: &Shared, res: &mut Responder, url: &UrlPath, dir: &std::path::Path) -> io::Result<Outcome> {
    let config = &shared.config;
    let mut entries = match files::read_dir(&config.root, dir, config.dotfiles, config.follow_symlinks) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return res.refuse(FORBIDDEN),
        Err(_) => return res.refuse(NOT_FOUND),
    };
    listing::sort(&mut entries);
    let display = if url.rel.is_empty() {
        "/".to_string()
    } else {
        format!("/{}/", url.rel)
    };
    let body = listing::render_html(&display, &entries);
    res.small(Status::Ok, "text/html; charset=utf-8", body.as_bytes(), &[])
}

fn stats(shared: &Shared, res: &mut Responder) -> io::Result<Outcome> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let snapshot = shared
        .log
        .send(crate::stats::Msg::Snapshot(tx))
        .ok()
        .and_then(|()| rx.recv_timeout(std::time::Duration::from_secs(2)).ok());
    match snapshot.and_then(|s| serde_json::to_vec_pretty(&s).ok()) {
        Some(body) => res.small(Status::Ok, "application/json", &body, &[("Cache-Control", "no-store")]),
        None => res.refuse(Refusal::keep(Status::ServiceUnavailable, "Counters are not available.")),
    }
}

/// Writes responses for one request.
struct Responder<'a> {
    stream: &'a mut TcpStream,
    out: &'a mut Vec<u8>,
    sent: &'a mut bool,
    head_only: bool,
    http10: bool,
    close: bool,
}

impl Responder<'_> {
    fn connection(&self) -> Connection {
        match (self.close, self.http10) {
            (true, _) => Connection::Close,
            (false, true) => Connection::KeepAlive10,
            (false, false) => Connection::KeepAlive,
        }
    }

    fn write_out(&mut self) -> io::Result<()> {
        *self.sent = true;
        self.stream.write_all(self.out)
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
        self.out.clear();
        wire::start(self.out, status);
        wire::header(self.out, "Content-Type", content_type);
        wire::header_num(self.out, "Content-Length", body.len() as u64);
        for (name, value) in extra {
            wire::header(self.out, name, value);
        }
        wire::finish(self.out, self.connection());
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
        self.close |= r.close;
        let page = wire::error_page(r.status, r.message);
        let allow: &[(&str, &str)] = if r.status == Status::MethodNotAllowed {
            &[("Allow", "GET, HEAD")]
        } else {
            &[]
        };
        self.small(r.status, "text/html; charset=utf-8", page.as_bytes(), allow)
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

    /// A whole file: head in one write, then the body with `io::copy` (sendfile).
    fn file(&mut self, rel: &str, file: File, meta: &Meta) -> io::Result<Outcome> {
        let (mime, text) = respond::content_type(rel);
        self.out.clear();
        wire::start(self.out, Status::Ok);
        if text {
            let mut ct = String::with_capacity(mime.len() + 15);
            ct.push_str(mime);
            ct.push_str("; charset=utf-8");
            wire::header(self.out, "Content-Type", &ct);
        } else {
            wire::header(self.out, "Content-Type", mime);
        }
        wire::header_num(self.out, "Content-Length", meta.len);
        wire::header_date(self.out, "Last-Modified", meta.mtime);
        wire::header(self.out, "ETag", &meta.etag());
        wire::header(self.out, "Accept-Ranges", "bytes");
        wire::finish(self.out, self.connection());
        self.write_out()?;
        if self.head_only {
            return self.outcome(Status::Ok, 0);
        }
        let copied = io::copy(&mut file.take(meta.len), self.stream)?;
        if copied < meta.len {
            // The file shrank while being sent: the promised length cannot be kept, so
            // the connection must end here.
            log::warn!("{rel}: file shrank while being sent ({copied} of {} bytes)", meta.len);
            self.close = true;
        }
        self.outcome(Status::Ok, copied)
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
