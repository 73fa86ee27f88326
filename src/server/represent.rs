//! File responses: choose the representation (a precompressed variant or the file
//! itself), evaluate validators, conditionals and ranges through
//! `plan::plan_representation`, and queue the head and byte ranges.

use super::output::Segment;
use super::serve::{Outcome, Responder};
use crate::files::{Body, Found, Meta};
use crate::http::conditional::Validators;
use crate::http::encoding::{self, Encoding};
use crate::http::head::Head;
use crate::http::plan::{self, FileRequest, Plan, Refusal};
use crate::http::range::{self, ByteRange};
use crate::http::status::Status;
use crate::http::wire;
use crate::limits::INLINE_BODY_MAX;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// An opened file ready to be sent, with what the response says about it.
struct Representation {
    body: Body,
    meta: Meta,
    /// Path relative to the root of the file the client asked for (for its type).
    rel: String,
    /// The precompressed variant being sent instead, if any.
    encoding: Option<Encoding>,
    /// The response varies by Accept-Encoding (see `negotiate`).
    vary: bool,
}

impl Responder<'_> {
    /// Picks the precompressed variant (if any) and sends the file as planned by
    /// `plan::plan_representation`.
    pub(super) fn representation(&mut self, head: &Head, rel: &str, meta: Meta, body: Body) -> io::Result<Outcome> {
        let mut rep = Representation {
            body,
            meta,
            rel: rel.to_string(),
            encoding: None,
            vary: false,
        };
        if self.shared.config.precompressed {
            self.negotiate(head, &mut rep);
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
            last_modified: crate::clock::http_date_clamp(rep.meta.mtime),
        };
        match plan::plan_representation(&FileRequest::from_head(head), rep.meta.len, &validators) {
            Plan::Full { len } => self.full(&rep, &validators, len),
            Plan::Partial { range, len } => self.partial(&rep, &validators, range, len),
            Plan::Multipart { ranges, len } => self.multipart(&rep, &validators, &ranges, len),
            Plan::NotModified => {
                self.begin(Status::NotModified);
                self.validator_headers(&rep, &validators);
                self.end_head();
                self.write_out();
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

    /// Looks for `FILE.br`, `FILE.zst`, `FILE.gz` in that order and takes the first
    /// the client accepts. Each is looked up through the cache, so a variant created
    /// or removed a moment ago is seen. A client that accepts none of them (and does
    /// not refuse identity) gets the file without a look: its response still says
    /// `Vary: Accept-Encoding`, since another client may be sent a variant (caddy does
    /// the same); when the variants were looked up, `Vary` says exactly whether one exists.
    fn negotiate(&mut self, head: &Head, rep: &mut Representation) {
        let accepted = encoding::acceptable(head.accept_encoding);
        let order = encoding::preference_order();
        if !order.iter().any(|&e| accepted.accepts(e)) && !encoding::identity_refused(head.accept_encoding) {
            rep.vary = true;
            return;
        }
        for enc in order {
            let key = format!("{}{}", rep.rel, enc.ext());
            let Ok(Found::File(meta, body)) = self.cache.lookup(&key) else {
                continue;
            };
            rep.vary = true;
            if rep.encoding.is_none() && accepted.accepts(enc) {
                rep.body = body;
                rep.meta = meta;
                rep.encoding = Some(enc);
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
            self.write_out();
            return self.outcome(Status::Ok, 0);
        }
        if let Body::Bytes(bytes) = &rep.body {
            self.out.extend_from_slice(bytes);
            self.write_out();
            return self.outcome(Status::Ok, len);
        }
        if let (Body::File(file), true) = (&rep.body, len <= INLINE_BODY_MAX) {
            let read = read_into(file, self.out, len as usize)? as u64;
            if read < len {
                log::warn!(
                    "{}: file shrank before it was sent ({read} of {len} bytes); closing",
                    rep.rel
                );
                self.close = true;
            }
            self.write_out();
            return self.outcome(Status::Ok, read);
        }
        let sent = self.body(&rep.body, 0, len);
        self.write_out();
        self.outcome(Status::Ok, sent)
    }

    fn partial(&mut self, rep: &Representation, v: &Validators, r: ByteRange, len: u64) -> io::Result<Outcome> {
        self.begin(Status::PartialContent);
        content_type_header(self.out, &rep.rel);
        wire::header_num(self.out, "Content-Length", r.len());
        wire::header(self.out, "Content-Range", &range::content_range(&r, len));
        self.entity_headers(rep, v);
        self.end_head();
        let sent = self.body(&rep.body, r.start, r.len());
        self.write_out();
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
        let (mime, text) = plan::content_type(&rep.rel);
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
        let mut sent = 0;
        for r in ranges {
            let part = range::multipart_part_head(r, len, &part_type, &boundary);
            sent += part.len() as u64;
            self.out.extend_from_slice(part.as_bytes());
            sent += self.body(&rep.body, r.start, r.len());
        }
        let tail = range::multipart_tail(&boundary);
        sent += tail.len() as u64;
        self.out.extend_from_slice(tail.as_bytes());
        self.write_out();
        self.outcome(Status::PartialContent, sent)
    }

    /// Queues `len` bytes of `body` from `start`: bytes kept in memory are appended
    /// to what `out` holds (so they go out in the same write as the head); a file's
    /// go out with sendfile after it. The caller has checked the range lies inside
    /// the body, and ends with [`Responder::write_out`].
    pub(super) fn body(&mut self, body: &Body, start: u64, len: u64) -> u64 {
        match body {
            Body::Bytes(bytes) => self
                .out
                .extend_from_slice(&bytes[start as usize..(start + len) as usize]),
            Body::File(file) => {
                self.write_out();
                self.segs.push_back(Segment::File {
                    file: std::rc::Rc::clone(file),
                    offset: start,
                    len,
                });
            }
        }
        len
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
pub(super) fn content_type_header(out: &mut Vec<u8>, rel: &str) {
    let (mime, text) = plan::content_type(rel);
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
