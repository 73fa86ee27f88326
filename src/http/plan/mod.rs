//! The one planner: from a parsed request, a [`Site`] (what the root holds) and the
//! [`Policy`] (the configuration's HTTP settings) to a [`Plan`] that says everything
//! the executor does: the status, every header, which bytes follow (none, a generated
//! page, a range of a file, multipart ranges) and whether the connection closes. No
//! I/O happens here: the site is a trait, implemented by the file layer in production
//! and by a map in the tests.
//!
//! Decisions, in order (each step answers or passes on):
//! 1. A CORS preflight (`OPTIONS` with `--cors` and no body) is a 204.
//! 2. Method and framing ([`check_request`]): 405, 501, 411 or 413.
//! 3. A target that is not origin-form is a 400 and closes; a path that does not
//!    decode (`resolve::decode`) is a 400.
//! 4. The config file's rules ([`rules`]) are resolved for the path, when there are
//!    any (no rules, no cost): a rule's redirect answers now (301, 302, 307 or 308
//!    with its `Location`), before credentials and before anything is looked up.
//! 5. Credentials, if `--auth-file` is set and the path needs them: a rule's `auth`
//!    decides; without one, every path needs them unless some rule says
//!    `auth = true` (then only the paths rules name do). The server's own endpoints
//!    ([`Planner::own_endpoint`]: the health, metrics and stats paths) need them
//!    only if a rule says so. Missing, malformed or wrong credentials are a 401 with
//!    `WWW-Authenticate` (the same answer whether the user exists or not);
//!    credentials the site could not check now (too many checks running) a 429 with
//!    `Retry-After`. Nothing has been looked up yet, so a 401 says nothing about
//!    what exists.
//! 6. The server's own endpoints, whatever ROOT holds under their paths and whatever
//!    the dotfile rule says ([`Endpoints`]): the health path answers 200, or 503
//!    while the server drains or shuts down; the metrics path answers the Prometheus
//!    text; the stats path the JSON counters (both 503 if they are not available).
//! 7. A hidden path (a dotfile) without `--dotfiles` is not found.
//! 8. What the path names: a file (`/file/` is not found), a directory (step 9),
//!    anything else 403; a miss is not found (step 10); see [`missing`] for the rest.
//! 9. A directory without its trailing slash is a 301 to the slash form (query kept);
//!    with it, its `index.html`, looked up inside the directory that was checked.
//!    Only an `index.html` that does not exist leads to a listing (or, with
//!    `--no-listing`, to not found); one that exists and cannot be served is 403.
//! 10. Not found: the `--fallback` file (served as a file, 200), the `--404` page (its
//!     bytes with status 404, no validators), or the default page.
//! 11. A file's representation ([`file`]): the precompressed variant, 406, the
//!     validators, preconditions (RFC 9110 §13.2.2) and ranges (§14). A rule's
//!     `cache-control` replaces `--cache-control` and `--immutable-pattern` on
//!     files, and is sent on listings too.
//!
//! Every response then carries the CORS origin (`--cors`), the `-H` headers and the
//! matching rules' headers (a rule's header replaces a `-H` header of its name), and
//! one `Connection` decision ([`Plan::connection`]): close when the client asked to,
//! when the server drains or shuts down, or when the request announced a body that was
//! not read.

pub mod file;
pub mod memory;
#[cfg(test)]
mod tests;

use crate::http::auth::{self, Verdict};
use crate::http::conditional::{self, Conditionals, Outcome, Validators};
use crate::http::encoding::{self, Encoding};
use crate::http::head::{self, Body as Framing, Head};
use crate::http::html;
use crate::http::listing::{self, Format};
use crate::http::meta::{Described, Meta, Missing};
use crate::http::resolve::{self, UrlPath};
use crate::http::rules::{self, Effective, Redirect, Rule};
use crate::http::status::Status;
use crate::http::wire::{self, Connection};
use crate::limits::{COMPRESS_MAX_BYTES, COMPRESS_MIN_BYTES};
use std::time::SystemTime;

pub use file::plan_representation;

/// What a path names, as the site found it.
#[derive(Debug, Clone)]
pub enum Found<B, D> {
    /// A regular file and a handle to the bytes its metadata describes.
    File(Meta, B),
    /// A directory, with the handle it was checked through.
    Dir(Meta, D),
    /// A FIFO, socket or device: never served.
    Other,
}

/// A generated page the site keeps (a rendered listing): its bytes, length and a
/// strong validator computed from them.
#[derive(Debug, Clone)]
pub struct Page<B> {
    /// The bytes.
    pub body: B,
    /// Their length.
    pub len: u64,
    /// A strong ETag that changes whenever the bytes do.
    pub etag: String,
}

/// What the planner may ask of the site. Each call says what is there now: a site
/// may cache, but never answer from a cache that a completed change has outdated.
pub trait Site {
    /// A handle to bytes the executor sends (a file, or bytes in memory).
    type Body: Clone;
    /// A directory as it was checked (its descriptor, in production).
    type Dir;
    /// What `rel` (relative to the root, no dot-segments) names.
    fn lookup(&mut self, rel: &str) -> Result<Found<Self::Body, Self::Dir>, Missing>;
    /// What `name` inside `dir` (just found as `dir_rel`) names, looked up through
    /// `dir` itself, so it is the directory that was checked.
    fn lookup_in(
        &mut self,
        dir: &Self::Dir,
        dir_rel: &str,
        name: &str,
    ) -> Result<Found<Self::Body, Self::Dir>, Missing>;
    /// The listing of `dir` (found as `rel`), rendered with [`listing::render`].
    fn listing(&mut self, dir: &Self::Dir, rel: &str, format: Format) -> Result<Page<Self::Body>, Missing>;
    /// The server's counters as JSON, if available.
    fn counters(&mut self) -> Option<Vec<u8>>;
    /// `body` (the `len` bytes of what `source` names, as just found) compressed with
    /// `encoding`: its length and bytes, kept so later requests do not compress again.
    /// `None` when that is not possible now (the output would not be smaller, the
    /// cache's byte bound is taken by responses in flight, or compression is busy):
    /// the planner then sends the identity bytes.
    fn compress(
        &mut self,
        source: &Source<'_>,
        body: &Self::Body,
        len: u64,
        encoding: Encoding,
    ) -> Option<(u64, Self::Body)>;
    /// Whether `user` and `password` are valid (`--auth-file`). Slow (bcrypt) unless
    /// the site has seen them lately; an unknown user must take as long as a known one.
    fn authorize(&mut self, user: &str, password: &str) -> Verdict;
    /// The server's metrics in the Prometheus text format 0.0.4, if available.
    fn metrics(&mut self) -> Option<Vec<u8>>;
    /// Whether none of the precompressed variants of `rel` (just found) for
    /// `encodings` exists now, when the site can tell without looking each up (a cache
    /// that found them all absent while their directory is as it is now). `false`
    /// says only "look them up".
    fn variants_absent(&mut self, rel: &str, encodings: &[Encoding]) -> bool {
        let _ = (rel, encodings);
        false
    }
}

/// What a body to compress is, so the site can key what it keeps: a file by its path
/// (the site knows the identity of the version it just found), a generated page by
/// its strong ETag (computed from its bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// The file at this path relative to the root.
    File(&'a str),
    /// A generated page with this ETag.
    Page(&'a str),
}

/// Basic auth settings.
#[derive(Debug, Clone, Copy)]
pub struct AuthPolicy<'c> {
    /// The `WWW-Authenticate` value of a 401 ([`auth::challenge`]).
    pub challenge: &'c str,
    /// Whether a path no rule decides needs credentials (step 5).
    pub by_default: bool,
}

/// The health and metrics paths (`--health-path`, `--metrics-path`), each stored as
/// the stats path is (see [`is_stats_path`]). The policy holds `None` when neither is
/// configured, so a request pays one check for both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Endpoints<'c> {
    /// Answers 200 while serving, 503 while the server drains or shuts down.
    pub health: Option<&'c str>,
    /// Answers the Prometheus text.
    pub metrics: Option<&'c str>,
}

/// `Content-Type` of the metrics path: the Prometheus text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The configuration's HTTP settings (built from `Config` by the server).
#[derive(Debug, Clone, Copy)]
pub struct Policy<'c> {
    /// Serve dotfiles.
    pub dotfiles: bool,
    /// List directories without `index.html`.
    pub listing: bool,
    /// Serve precompressed variants (`FILE.br`, `FILE.zst`, `FILE.gz`).
    pub precompressed: bool,
    /// Compress compressible types on the fly (see [`file`]).
    pub compress: bool,
    /// CORS headers and preflight answers.
    pub cors: bool,
    /// `Cache-Control` for files that match no immutable pattern.
    pub cache_control: Option<&'c str>,
    /// Globs (over the path relative to the root) of immutable files.
    pub immutable: &'c [glob::Pattern],
    /// Extra headers on every response (`-H`).
    pub headers: &'c [(String, String)],
    /// Relative path of the single-page-app fallback.
    pub fallback: Option<&'c str>,
    /// Relative path of the custom 404 page.
    pub not_found_page: Option<&'c str>,
    /// The stats path (see [`is_stats_path`]).
    pub stats_path: Option<&'c str>,
    /// Per-path rules, in file order (step 4); empty: none checked.
    pub rules: &'c [Rule],
    /// Basic auth, with `--auth-file` (step 5).
    pub auth: Option<AuthPolicy<'c>>,
    /// The health and metrics paths; `None` when neither is set.
    pub endpoints: Option<Endpoints<'c>>,
}

impl Default for Policy<'_> {
    /// The defaults of the command line: listings and precompressed variants on.
    fn default() -> Self {
        Policy {
            dotfiles: false,
            listing: true,
            precompressed: true,
            compress: true,
            cors: false,
            cache_control: None,
            immutable: &[],
            headers: &[],
            fallback: None,
            not_found_page: None,
            stats_path: None,
            rules: &[],
            auth: None,
            endpoints: None,
        }
    }
}

/// A header value in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'p> {
    /// Text that outlives the plan (a constant, or a configured value).
    Str(&'p str),
    /// Text built for this response.
    Text(String),
    /// Text built once and shared by responses (a file's ETag, see `meta::Described`).
    Shared(std::rc::Rc<str>),
    /// A number.
    Num(u64),
    /// An HTTP date.
    Date(SystemTime),
    /// An HTTP date formatted already.
    Stamp(wire::HttpDate),
}

impl Value<'_> {
    /// The value as text, if it is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Text(s) => Some(s),
            Value::Shared(s) => Some(s),
            Value::Num(_) | Value::Date(_) | Value::Stamp(_) => None,
        }
    }
}

/// Which bytes follow the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<B> {
    /// None (HEAD, 204, 304).
    Empty,
    /// A page built for this response (error pages, redirects, counters).
    Bytes(Vec<u8>),
    /// `len` bytes of `body` from `start` (a whole file, or one range).
    Slice {
        /// The bytes' handle.
        body: B,
        /// First byte.
        start: u64,
        /// How many.
        len: u64,
    },
    /// `multipart/byteranges`: each part's head, then its range of `body`; then `tail`.
    Multipart {
        /// The bytes' handle.
        body: B,
        /// The parts, in order.
        parts: Vec<Part>,
        /// The closing boundary.
        tail: String,
    },
}

/// One part of a multipart response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part's boundary line and headers.
    pub head: String,
    /// First byte of its range.
    pub start: u64,
    /// Length of its range.
    pub len: u64,
}

/// Everything the executor needs to answer one request.
#[derive(Debug, Clone)]
pub struct Plan<'p, B> {
    /// The status.
    pub status: Status,
    /// Headers after `Date` and `Server`, in order (`Connection` is not among them).
    pub headers: Vec<(&'p str, Value<'p>)>,
    /// The bytes after the head.
    pub body: Payload<B>,
    /// The `Connection` header, and whether the server closes after this response.
    pub connection: Connection,
}

impl<B> Plan<'_, B> {
    /// The connection closes after this response.
    pub fn close(&self) -> bool {
        self.connection == Connection::Close
    }

    /// Bytes after the head (what the access log counts).
    pub fn body_len(&self) -> u64 {
        match &self.body {
            Payload::Empty => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::Slice { len, .. } => *len,
            Payload::Multipart { parts, tail, .. } => {
                let parts: u64 = parts.iter().map(|p| p.head.len() as u64 + p.len).sum();
                parts + tail.len() as u64
            }
        }
    }

    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        let (_, v) = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(match v {
            Value::Str(s) => s.to_string(),
            Value::Text(s) => s.clone(),
            Value::Shared(s) => s.to_string(),
            Value::Num(n) => n.to_string(),
            Value::Date(t) => httpdate::fmt_http_date(*t),
            Value::Stamp(d) => String::from_utf8_lossy(d.as_bytes()).into_owned(),
        })
    }

    /// Serialises the head: status line, `Date` (`date`), `Server`, the headers,
    /// `Connection` and the blank line.
    pub fn write_head(&self, out: &mut Vec<u8>, date: &wire::HttpDate) {
        wire::start(out, self.status, date);
        for (name, value) in &self.headers {
            match value {
                Value::Str(s) => wire::header(out, name, s),
                Value::Text(s) => wire::header(out, name, s),
                Value::Shared(s) => wire::header(out, name, s),
                Value::Num(n) => wire::header_num(out, name, *n),
                Value::Date(t) => wire::header_date(out, name, *t),
                Value::Stamp(d) => wire::header_stamp(out, name, d),
            }
        }
        wire::finish(out, self.connection);
    }
}

/// Plans the answer to `head`. `closing` is true while the server drains or shuts
/// down: every response then closes its connection, and the health path answers 503.
pub fn plan<'p, S: Site>(head: &Head, site: &mut S, policy: &Policy<'p>, closing: bool) -> Plan<'p, S::Body> {
    let mut p = Planner {
        head,
        site,
        policy: *policy,
        close: !head.wants_keep_alive() || closing,
        rule: Effective::default(),
        closing,
    };
    p.request()
}

/// One request being planned.
struct Planner<'a, 'p, S: Site> {
    head: &'a Head<'a>,
    site: &'a mut S,
    policy: Policy<'p>,
    /// The connection closes after the response (see [`Plan::connection`]).
    close: bool,
    /// What the rules set for this request's path (step 4).
    rule: Effective<'p>,
    /// The server drains or shuts down.
    closing: bool,
}

type Headers<'p> = Vec<(&'p str, Value<'p>)>;

impl<'p, S: Site> Planner<'_, 'p, S> {
    /// Steps 1–8 of the module doc.
    fn request(&mut self) -> Plan<'p, S::Body> {
        let head = self.head;
        if head.method == "OPTIONS" && self.policy.cors && head.body() == Framing::None {
            return self.preflight();
        }
        if let Err(refusal) = check_request(head) {
            return self.refuse(refusal);
        }
        let target = match head::split_target(head.target) {
            Ok(t) => t,
            Err(e) => return self.refuse(Refusal::close(e.status(), e.message())),
        };
        let url = match resolve::decode(target.path) {
            Ok(u) => u,
            Err(e) => return self.refuse(Refusal::keep(Status::BadRequest, e.message())),
        };
        if !self.policy.rules.is_empty() {
            self.rule = rules::resolve(self.policy.rules, &url);
            if let Some(r) = self.rule.redirect {
                return self.rule_redirect(r);
            }
        }
        if let Some(refused) = self.check_auth(&url) {
            return refused;
        }
        if let Some(endpoints) = self.policy.endpoints {
            if let Some(plan) = self.endpoint(endpoints, &url) {
                return plan;
            }
        }
        if self.policy.stats_path.is_some_and(|s| is_stats_path(&url, s)) {
            return self.counters();
        }
        if url.hidden && !self.policy.dotfiles {
            return self.not_found();
        }
        match self.site.lookup(&url.rel) {
            Ok(Found::File(..)) if url.trailing_slash => self.not_found(),
            Ok(Found::File(meta, body)) => self.representation(&url.rel, meta, body),
            Ok(Found::Dir(_, dir)) => self.directory(&url, target.query, &dir),
            Ok(Found::Other) => self.refuse(FORBIDDEN),
            Err(m) => self.missing(m),
        }
    }

    /// Step 5: `None` if the request may go on, else the 401 or 429.
    fn check_auth(&mut self, url: &UrlPath) -> Option<Plan<'p, S::Body>> {
        let auth = self.policy.auth?;
        let needed = self.rule.auth.unwrap_or(auth.by_default && !self.own_endpoint(url));
        if !needed {
            return None;
        }
        let verdict = match self.head.authorization.and_then(auth::parse_basic) {
            Some((user, password)) => self.site.authorize(&user, &password),
            None => Verdict::Denied,
        };
        match verdict {
            Verdict::Granted => None,
            Verdict::Denied => {
                let challenge = vec![("WWW-Authenticate", Value::Str(auth.challenge))];
                Some(self.refuse_with(UNAUTHORIZED, challenge))
            }
            Verdict::Busy => {
                let retry = vec![("Retry-After", Value::Str("1"))];
                Some(self.refuse_with(AUTH_BUSY, retry))
            }
        }
    }

    /// The server's own endpoints, which need credentials only if a rule says so:
    /// the stats path. The hook for any other endpoint the server answers itself
    /// (health, metrics): add its path here.
    fn own_endpoint(&self, url: &UrlPath) -> bool {
        let endpoints = self.policy.endpoints.map_or([None, None], |e| [e.health, e.metrics]);
        (endpoints.into_iter().chain([self.policy.stats_path]))
            .flatten()
            .any(|path| is_stats_path(url, path))
    }

    /// Step 4: a rule's redirect.
    fn rule_redirect(&mut self, r: &'p Redirect) -> Plan<'p, S::Body> {
        let page = html::error_page(r.status, "This resource has moved.");
        let headers = vec![("Location", Value::Str(r.to.as_str()))];
        self.small(r.status, HTML, page.into_bytes(), headers)
    }

    /// Step 9: a directory.
    fn directory(&mut self, url: &UrlPath, query: Option<&str>, dir: &S::Dir) -> Plan<'p, S::Body> {
        if !url.trailing_slash {
            return self.redirect(slash_location(&url.rel, query));
        }
        match self.site.lookup_in(dir, &url.rel, "index.html") {
            Ok(Found::File(meta, body)) => self.representation(&resolve::join(&url.rel, "index.html"), meta, body),
            Ok(_) => self.refuse(FORBIDDEN),
            Err(Missing::NotFound) if self.policy.listing => {
                let format = listing::format(self.head.accept, query);
                self.listing(dir, &url.rel, format)
            }
            Err(Missing::NotFound) => self.not_found(),
            Err(m) => self.refuse(refusal_for(m)),
        }
    }

    /// A listing, with its ETag from its bytes: `If-None-Match` and `If-Match` apply
    /// (RFC 9110 §13.1.1, §13.1.2; see [`listing_outcome`]). Listings are compressed
    /// like files (a tag per coding, `Vary: Accept, Accept-Encoding`).
    fn listing(&mut self, dir: &S::Dir, rel: &str, format: Format) -> Plan<'p, S::Body> {
        let page = match self.site.listing(dir, rel, format) {
            Ok(page) => page,
            Err(m) => return self.refuse(refusal_for(m)),
        };
        let compressible = self.policy.compress && (COMPRESS_MIN_BYTES..=COMPRESS_MAX_BYTES).contains(&page.len);
        let chosen = match encoding::ranked(self.head.accept_encoding).first() {
            Some(&enc) if compressible => self.compressed_page(&page, enc),
            _ => None,
        };
        let (etag, len, body, coding) = match chosen {
            Some((etag, len, body, enc)) => (etag, len, body, Some(enc)),
            None => (page.etag, page.len, page.body, None),
        };
        let status = match listing_outcome(&FileRequest::from_head(self.head), &etag) {
            Outcome::Proceed => Status::Ok,
            Outcome::NotModified => Status::NotModified,
            Outcome::PreconditionFailed => return self.refuse(PRECONDITION_FAILED),
        };
        let mut headers = Headers::with_capacity(8);
        if status == Status::Ok {
            headers.push(("Content-Type", Value::Str(format.content_type())));
            headers.push(("Content-Length", Value::Num(len)));
        }
        headers.push(("ETag", Value::Text(etag)));
        let vary = if compressible {
            "Accept, Accept-Encoding"
        } else {
            "Accept"
        };
        headers.push(("Vary", Value::Str(vary)));
        if let (Some(enc), Status::Ok) = (coding, status) {
            headers.push(("Content-Encoding", Value::Str(enc.token())));
        }
        if let Some(cc) = self.rule.cache_control {
            headers.push(("Cache-Control", Value::Str(cc)));
        }
        let body = if status == Status::Ok && !self.head_only() {
            Payload::Slice { body, start: 0, len }
        } else {
            Payload::Empty
        };
        self.finish(status, headers, body)
    }

    /// `page` compressed with `enc`: its tag, length and bytes. A request whose
    /// `If-None-Match` already names that tag needs no bytes (the 304 is planned by
    /// the caller), so nothing is compressed for it.
    fn compressed_page(&mut self, page: &Page<S::Body>, enc: Encoding) -> Option<(String, u64, S::Body, Encoding)> {
        let mut etag = page.etag.clone();
        etag.insert_str(etag.len() - 1, &format!("-{}", file::compressed_tag(enc)));
        if listing_outcome(&FileRequest::from_head(self.head), &etag) == Outcome::NotModified {
            return Some((etag, 0, page.body.clone(), enc));
        }
        let (len, body) = self
            .site
            .compress(&Source::Page(&page.etag), &page.body, page.len, enc)?;
        Some((etag, len, body, enc))
    }

    /// A miss (step 6): not found, or the status of why the site could not look.
    fn missing(&mut self, m: Missing) -> Plan<'p, S::Body> {
        match m {
            Missing::NotFound | Missing::Hidden => self.not_found(),
            m => self.refuse(refusal_for(m)),
        }
    }

    /// Step 10: the fallback file, the custom 404 page, or the default page.
    fn not_found(&mut self) -> Plan<'p, S::Body> {
        if let Some(rel) = self.policy.fallback {
            if let Ok(Found::File(meta, body)) = self.site.lookup(rel) {
                return self.representation(rel, meta, body);
            }
        }
        if let Some(rel) = self.policy.not_found_page {
            if let Ok(Found::File(meta, body)) = self.site.lookup(rel) {
                return self.page(Status::NotFound, rel, meta, body);
            }
        }
        self.refuse(NOT_FOUND)
    }

    /// A file sent whole with a fixed status (the custom 404 page): no validators.
    fn page(&mut self, status: Status, rel: &str, meta: Meta, body: S::Body) -> Plan<'p, S::Body> {
        let headers = vec![
            ("Content-Type", content_type_of(rel, &meta)),
            ("Content-Length", Value::Num(meta.len)),
        ];
        let body = if self.head_only() {
            Payload::Empty
        } else {
            Payload::Slice {
                body,
                start: 0,
                len: meta.len,
            }
        };
        self.finish(status, headers, body)
    }

    /// Step 4 for the health and metrics paths; `None` if `url` is neither.
    fn endpoint(&mut self, endpoints: Endpoints<'p>, url: &UrlPath) -> Option<Plan<'p, S::Body>> {
        let no_store = || vec![("Cache-Control", Value::Str("no-store"))];
        if endpoints.health.is_some_and(|h| is_stats_path(url, h)) {
            let (status, body) = if self.closing {
                (Status::ServiceUnavailable, "draining\n")
            } else {
                (Status::Ok, "ok\n")
            };
            return Some(self.small(status, TEXT, body.as_bytes().to_vec(), no_store()));
        }
        if endpoints.metrics.is_some_and(|m| is_stats_path(url, m)) {
            return Some(match self.site.metrics() {
                Some(text) => self.small(Status::Ok, METRICS_CONTENT_TYPE, text, no_store()),
                None => self.refuse(Refusal::keep(Status::ServiceUnavailable, "Metrics are not available.")),
            });
        }
        None
    }

    fn counters(&mut self) -> Plan<'p, S::Body> {
        match self.site.counters() {
            Some(json) => self.small(
                Status::Ok,
                "application/json",
                json,
                vec![("Cache-Control", Value::Str("no-store"))],
            ),
            None => self.refuse(Refusal::keep(Status::ServiceUnavailable, "Counters are not available.")),
        }
    }

    /// 204 answer to a CORS preflight.
    fn preflight(&mut self) -> Plan<'p, S::Body> {
        let headers = vec![
            ("Allow", Value::Str("GET, HEAD, OPTIONS")),
            ("Access-Control-Allow-Methods", Value::Str("GET, HEAD, OPTIONS")),
            ("Access-Control-Allow-Headers", Value::Str(PREFLIGHT_HEADERS)),
            ("Access-Control-Max-Age", Value::Str("86400")),
        ];
        self.finish(Status::NoContent, headers, Payload::Empty)
    }

    fn redirect(&mut self, location: String) -> Plan<'p, S::Body> {
        let page = html::error_page(Status::MovedPermanently, "This directory's address ends with a slash.");
        let headers = vec![("Location", Value::Text(location))];
        self.small(Status::MovedPermanently, HTML, page.into_bytes(), headers)
    }

    /// An error page; closes the connection if the refusal says so.
    fn refuse(&mut self, r: Refusal) -> Plan<'p, S::Body> {
        self.refuse_with(r, Vec::new())
    }

    fn refuse_with(&mut self, r: Refusal, extra: Headers<'p>) -> Plan<'p, S::Body> {
        self.close |= r.close;
        let mut headers = Headers::with_capacity(4 + extra.len());
        if r.status == Status::MethodNotAllowed {
            let allow = if self.policy.cors {
                "GET, HEAD, OPTIONS"
            } else {
                "GET, HEAD"
            };
            headers.push(("Allow", Value::Str(allow)));
        }
        headers.extend(extra);
        let page = html::error_page(r.status, r.message);
        self.small(r.status, HTML, page.into_bytes(), headers)
    }

    /// A response whose body is built here; HEAD and bodiless statuses send none.
    fn small(&mut self, status: Status, content_type: &'p str, body: Vec<u8>, extra: Headers<'p>) -> Plan<'p, S::Body> {
        let mut headers = Headers::with_capacity(2 + extra.len());
        headers.push(("Content-Type", Value::Str(content_type)));
        headers.push(("Content-Length", Value::Num(body.len() as u64)));
        headers.extend(extra);
        let body = if self.head_only() || !status.has_body() {
            Payload::Empty
        } else {
            Payload::Bytes(body)
        };
        self.finish(status, headers, body)
    }

    /// Adds what every response carries (CORS origin, `-H` headers, the rules'
    /// headers) and decides the
    /// `Connection` header.
    fn finish(&self, status: Status, mut headers: Headers<'p>, body: Payload<S::Body>) -> Plan<'p, S::Body> {
        if self.policy.cors {
            headers.push(("Access-Control-Allow-Origin", Value::Str("*")));
        }
        let rule_headers = &self.rule.headers;
        for (name, value) in self.policy.headers {
            if !rule_headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                headers.push((name, Value::Str(value)));
            }
        }
        for &(name, value) in rule_headers {
            headers.push((name, Value::Str(value)));
        }
        let connection = match (self.close, self.head.version == 0) {
            (true, _) => Connection::Close,
            (false, true) => Connection::KeepAlive10,
            (false, false) => Connection::KeepAlive,
        };
        Plan {
            status,
            headers,
            body,
            connection,
        }
    }

    fn head_only(&self) -> bool {
        self.head.method == "HEAD"
    }
}

const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The request headers a CORS preflight allows.
const PREFLIGHT_HEADERS: &str =
    "Range, If-Range, If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since, Accept, Accept-Encoding";

/// The `Location` of a directory's slash form: its encoded path, a slash, the query.
fn slash_location(rel: &str, query: Option<&str>) -> String {
    let mut location = resolve::encode(rel);
    if !rel.is_empty() {
        location.push('/');
    }
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    location
}

/// The one mapping from "the site could not look" to a status.
pub fn refusal_for(m: Missing) -> Refusal {
    match m {
        Missing::NotFound => NOT_FOUND,
        Missing::Hidden | Missing::Forbidden => FORBIDDEN,
        Missing::Exhausted => EXHAUSTED,
    }
}

/// A refused request: status, message for the error page, and whether the connection
/// must close (any request whose body was not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Status to send.
    pub status: Status,
    /// One sentence for the error page.
    pub message: &'static str,
    /// Close the connection after the response.
    pub close: bool,
}

impl Refusal {
    /// A refusal that keeps the connection open.
    pub const fn keep(status: Status, message: &'static str) -> Refusal {
        Refusal {
            status,
            message,
            close: false,
        }
    }

    /// A refusal that closes the connection.
    pub const fn close(status: Status, message: &'static str) -> Refusal {
        Refusal {
            status,
            message,
            close: true,
        }
    }
}

/// 404 for anything that does not exist or is hidden by policy.
pub const NOT_FOUND: Refusal = Refusal::keep(Status::NotFound, "The requested resource was not found.");
/// 403 for files the OS will not let us read, and for non-regular files.
pub const FORBIDDEN: Refusal = Refusal::keep(Status::Forbidden, "The requested resource cannot be read.");

/// 401 for missing, malformed or wrong credentials (with `WWW-Authenticate`).
pub const UNAUTHORIZED: Refusal = Refusal::keep(Status::Unauthorized, "This resource needs a user name and password.");
/// 429 when the credentials could not be checked now (with `Retry-After`).
pub const AUTH_BUSY: Refusal = Refusal::keep(
    Status::TooManyRequests,
    "Too many password checks are running; try again in a moment.",
);

/// 412 when If-Match or If-Unmodified-Since fails.
pub const PRECONDITION_FAILED: Refusal = Refusal::keep(Status::PreconditionFailed, "A precondition failed.");
/// 503 when the server is out of descriptors or memory (closes: shed load).
pub const EXHAUSTED: Refusal = Refusal::close(Status::ServiceUnavailable, "The server is out of file descriptors.");

/// The methods RFC 9110 §9 and RFC 5789 define that threadserve knows but does not
/// allow (405 with `Allow`); any other method but GET and HEAD is not recognised (501).
/// Method names are case-sensitive (§9.1), so `get` is not recognised.
pub const KNOWN_METHODS: [&str; 7] = ["POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Checks method and body framing before anything else.
///
/// threadserve reads no request bodies, so a request announcing one is answered and the
/// connection closed: the unread body can never be parsed as a following request.
/// Order: a method other than GET/HEAD is a 405 if it is a standard method
/// ([`KNOWN_METHODS`]) and a 501 otherwise (RFC 9110 §9.1, §15.6.2), whatever its body
/// (the more useful message); `Transfer-Encoding` on GET/HEAD is 411 (we only accept
/// length-delimited requests, and only of length 0); a non-zero `Content-Length` on
/// GET/HEAD is 413.
pub fn check_request(head: &Head) -> Result<(), Refusal> {
    let has_body = head.body() != Framing::None;
    if !head.is_get_or_head() {
        let (status, message) = if KNOWN_METHODS.contains(&head.method) {
            (Status::MethodNotAllowed, "Only GET and HEAD are allowed.")
        } else {
            (
                Status::NotImplemented,
                "This server does not recognise the request method.",
            )
        };
        return Err(Refusal {
            status,
            message,
            close: has_body,
        });
    }
    match head.body() {
        Framing::None => Ok(()),
        Framing::Encoded => Err(Refusal::close(
            Status::LengthRequired,
            "Request bodies are not accepted.",
        )),
        Framing::Length(_) => Err(Refusal::close(
            Status::ContentTooLarge,
            "Request bodies are not accepted.",
        )),
    }
}

/// Whether the decoded request path `url` is the stats path (`--stats-path`, stored by
/// `config` as `/` + decoded segments, with a trailing `/` if it has one). Matching the
/// decoded path, not the raw target, keeps other spellings (`/status%2Ejson`,
/// `/x/../status.json`) from reaching a file the stats path shadows. The health and
/// metrics paths are matched the same way.
pub fn is_stats_path(url: &UrlPath, stats: &str) -> bool {
    let Some(rest) = stats.strip_prefix('/') else {
        return false;
    };
    let (rest, slash) = match rest.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    rest == url.rel && (slash == url.trailing_slash || rest.is_empty())
}

/// The request fields that shape a file response.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileRequest<'a> {
    /// `GET` (ranges apply) rather than `HEAD`.
    pub is_get: bool,
    /// If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.
    pub conditionals: Conditionals<'a>,
    /// `Range`.
    pub range: Option<&'a str>,
    /// `If-Range`.
    pub if_range: Option<&'a str>,
}

impl<'a> FileRequest<'a> {
    /// Takes the fields from a parsed head.
    pub fn from_head(head: &Head<'a>) -> FileRequest<'a> {
        FileRequest {
            is_get: head.method == "GET",
            conditionals: Conditionals {
                if_match: head.if_match,
                if_none_match: head.if_none_match,
                if_modified_since: head.if_modified_since,
                if_unmodified_since: head.if_unmodified_since,
            },
            range: head.range,
            if_range: head.if_range,
        }
    }
}

/// Preconditions on a directory listing (RFC 9110 §13.1.1, §13.1.2, in §13.2.2's
/// order). A listing has a strong ETag computed from its bytes and no
/// `Last-Modified` (the sizes and times it shows change without the directory's
/// mtime), so only `If-Match` and `If-None-Match` apply; the date conditions are
/// ignored, as for any representation without a modification date.
pub fn listing_outcome(req: &FileRequest, etag: &str) -> Outcome {
    let conditionals = Conditionals {
        if_modified_since: None,
        if_unmodified_since: None,
        ..req.conditionals
    };
    let v = Validators {
        etag,
        last_modified: std::time::UNIX_EPOCH,
    };
    conditional::evaluate(true, &conditionals, &v)
}

/// The `Content-Type` of a file and whether it is text (gets `; charset=utf-8`).
pub fn content_type(rel: &str) -> (&'static str, bool) {
    let mime = mime_guess::from_path(rel)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let text = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    (mime, text)
}

/// `Content-Type` for a path, with `charset=utf-8` on text types.
pub fn content_type_value(rel: &str) -> Value<'static> {
    mime_value(content_type(rel))
}

/// `Content-Type` for the file `rel` with metadata `meta`: its [`Described`] value
/// if the site computed it, else [`content_type_value`].
///
/// [`Described`]: crate::http::meta::Described
pub fn content_type_of(rel: &str, meta: &Meta) -> Value<'static> {
    match &meta.described {
        Some(d) => d.content_type(),
        None => content_type_value(rel),
    }
}

impl Described {
    /// What the planner would compute for the file at `rel` with metadata `meta`.
    pub fn new(rel: &str, meta: &Meta) -> Described {
        let mime = content_type(rel);
        let text_type = match mime_value(mime) {
            Value::Text(text) => Some(text.into()),
            _ => None,
        };
        Described {
            mime,
            text_type,
            etag: meta.etag().into(),
            last_modified: wire::HttpDate::new(meta.mtime),
        }
    }

    /// The `Content-Type` value.
    pub fn content_type(&self) -> Value<'static> {
        match &self.text_type {
            Some(text) => Value::Shared(text.clone()),
            None => Value::Str(self.mime.0),
        }
    }
}

impl Meta {
    /// This metadata with its [`Described`] values for the file at `rel` (the file
    /// layer calls this once per version it finds).
    pub fn described(mut self, rel: &str) -> Meta {
        self.described = Some(std::rc::Rc::new(Described::new(rel, &self)));
        self
    }
}

/// `Content-Type` for what [`content_type`] returned, with `charset=utf-8` on text types.
pub fn mime_value((mime, text): (&'static str, bool)) -> Value<'static> {
    if text {
        Value::Text(format!("{mime}; charset=utf-8"))
    } else {
        Value::Str(mime)
    }
}
