//! File responses: choose the representation (a precompressed variant or the file
//! itself), evaluate validators, conditionals and ranges through
//! `respond::plan_representation`, and queue the head and byte ranges.

use super::output::Segment;
use super::serve::{Outcome, Responder};
use crate::conditional::Validators;
use crate::encoding::{self, Encoding};
use crate::files::{Kind, Meta};
use crate::head::Head;
use crate::limits::INLINE_BODY_MAX;
use crate::range::{self, ByteRange};
use crate::respond::{self, FileRequest, Plan, Refusal};
use crate::status::Status;
use crate::wire;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

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

impl Responder<'_> {
    /// Picks the precompressed variant (if any) and sends the file as planned by
    /// `respond::plan_representation`.
    pub(super) fn representation(
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
    pub(super) fn body(&mut self, file: &Rc<File>, start: u64, len: u64) -> io::Result<u64> {
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
pub(super) fn content_type_header(out: &mut Vec<u8>, rel: &str) {
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
