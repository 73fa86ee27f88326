//! A file's representation: which bytes stand for it (the file, or a precompressed
//! variant the client accepts), its validators, and what the request's preconditions
//! and ranges make of it.

use super::{content_type, mime_value, Found, Headers, Part, Payload, Plan, Planner, Refusal, Site, Value};
use super::{FileRequest, Source, PRECONDITION_FAILED};
use crate::http::conditional::{self, Outcome, Validators};
use crate::http::encoding::{self, Encoding};
use crate::http::meta::Meta;
use crate::http::range::{self, ByteRange, RangeDecision};
use crate::http::status::Status;
use crate::http::wire::HttpDate;
use crate::limits::{COMPRESS_MAX_BYTES, COMPRESS_MIN_BYTES};
use std::time::SystemTime;

/// What the conditionals and the range make of a representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The whole representation, 200.
    Full {
        /// Body length.
        len: u64,
    },
    /// One range, 206 with `Content-Range`.
    Partial {
        /// The range.
        range: ByteRange,
        /// Length of the whole representation.
        len: u64,
    },
    /// Several ranges as `multipart/byteranges`, 206.
    Multipart {
        /// Sorted, non-overlapping ranges.
        ranges: Vec<ByteRange>,
        /// Length of the whole representation.
        len: u64,
    },
    /// 304: validators only, no body.
    NotModified,
    /// 412: a precondition (If-Match, If-Unmodified-Since) failed.
    PreconditionFailed,
    /// 416 with `Content-Range: bytes */len`.
    RangeNotSatisfiable {
        /// Length of the whole representation.
        len: u64,
    },
}

/// `CODING-LEVEL` of what the site's compression makes (`br-5`): part of the ETag
/// of a compressed representation.
pub fn compressed_tag(enc: Encoding) -> String {
    format!("{}-{}", enc.token(), enc.level())
}

/// The bytes chosen to stand for a file, and what the response says about them.
struct Representation<'r, B> {
    body: B,
    meta: Meta,
    /// Path relative to the root of the file the client asked for.
    rel: &'r str,
    /// Its type, from `rel` ([`content_type`]): the site's precomputed one (see
    /// `meta::Described`), or looked up once per request.
    mime: (&'static str, bool),
    /// Its `Content-Type` value, if the site precomputed it.
    content_type: Option<Value<'static>>,
    /// The precompressed variant sent instead, if any.
    encoding: Option<Encoding>,
    /// The response varies by `Accept-Encoding` (see `negotiate`).
    vary: bool,
}

impl<'p, S: Site> Planner<'_, 'p, S> {
    /// Step 9 of the module doc: the representation of the file `rel`.
    ///
    /// Which bytes stand for it, in order: a precompressed variant the client accepts
    /// (`FILE.br`, `FILE.zst`, `FILE.gz`, best first by [`encoding::ranked`]); else,
    /// for a compressible type between [`COMPRESS_MIN_BYTES`] and
    /// [`COMPRESS_MAX_BYTES`], the file compressed by the site with the client's best
    /// coding — except for a `Range` request, which gets the identity bytes (see
    /// [`Planner::compressed`]); else the file itself.
    pub(super) fn representation(&mut self, rel: &str, meta: Meta, body: S::Body) -> Plan<'p, S::Body> {
        let (mime, content_type) = match &meta.described {
            Some(d) => (d.mime, Some(d.content_type())),
            None => (content_type(rel), None),
        };
        let mut rep = Representation {
            body,
            meta,
            rel,
            mime,
            content_type,
            encoding: None,
            vary: false,
        };
        let accepted = encoding::Accepted::read(self.head.accept_encoding);
        let (ranked, identity_refused) = (accepted.ranked(), accepted.identity_refused());
        if self.policy.precompressed {
            self.negotiate(&mut rep, &ranked, identity_refused);
        }
        if rep.encoding.is_none() && self.may_compress(rep.mime.0, rep.meta.len) {
            // The bytes sent depend on Accept-Encoding, identity included.
            rep.vary = true;
            let wanted = rep.meta.len >= COMPRESS_MIN_BYTES || identity_refused;
            let ranged = self.head.method == "GET" && self.head.range.is_some();
            if let (true, false, Some(&enc)) = (wanted, ranged, ranked.first()) {
                rep = match self.compressed(rep, enc) {
                    Ok(plan) => return plan,
                    Err(identity) => identity,
                };
            }
        }
        if rep.encoding.is_none() && rep.vary && identity_refused {
            let msg = "No acceptable encoding of this file exists.";
            let vary = vec![("Vary", Value::Str("Accept-Encoding"))];
            return self.refuse_with(Refusal::keep(Status::NotAcceptable, msg), vary);
        }
        // A distinct strong validator per encoding (RFC 9110 §8.8.3).
        let suffix = rep.encoding.map(|enc| format!("-{}", enc.token()));
        let v = Tags::of(&rep.meta, suffix.as_deref());
        let decision = plan_representation(&FileRequest::from_head(self.head), rep.meta.len, &v.validators());
        match decision {
            Decision::Full { len } => self.full(rep, v, len),
            Decision::Partial { range, len } => self.partial(rep, v, range, len),
            Decision::Multipart { ranges, len } => self.multipart(rep, v, &ranges, len),
            Decision::NotModified => self.not_modified(&rep, v),
            Decision::PreconditionFailed => self.refuse(PRECONDITION_FAILED),
            Decision::RangeNotSatisfiable { len } => {
                let cr = vec![("Content-Range", Value::Text(range::content_range_unsatisfied(len)))];
                let msg = "The requested range is not satisfiable.";
                self.refuse_with(Refusal::keep(Status::RangeNotSatisfiable, msg), cr)
            }
        }
    }

    /// Whether the site may compress `len` bytes of type `mime`: compression is on,
    /// the type is [`encoding::compressible`], and it is not over the maximum.
    pub(super) fn may_compress(&self, mime: &str, len: u64) -> bool {
        self.policy.compress && len <= COMPRESS_MAX_BYTES && encoding::compressible(mime)
    }

    /// The file compressed with `enc`, as a whole (200, or 304/412 by its own
    /// validators); `Err(rep)` when the site cannot compress it now (the caller sends
    /// identity, still with `Vary`).
    ///
    /// Its ETag is the file's with `-CODING-LEVEL` added (RFC 9110 §8.8.3: a strong
    /// validator per representation; the level is part of it, so servers compressing
    /// differently never share a tag). Ranges are not applied to compressed bytes: a
    /// `Range` request gets the identity representation (RFC 9110 §14 lets the
    /// server pick the representation a range applies to; ranges of identity bytes
    /// are what resuming clients such as curl `-C -` and browsers' media requests
    /// expect, and a compressed body's ETag never matches an identity `If-Range`,
    /// so a resumed download can never mix the two).
    #[allow(clippy::result_large_err)]
    fn compressed<'r>(
        &mut self,
        mut rep: Representation<'r, S::Body>,
        enc: Encoding,
    ) -> Result<Plan<'p, S::Body>, Representation<'r, S::Body>> {
        let v = Tags::of(&rep.meta, Some(&format!("-{}", compressed_tag(enc))));
        let req = FileRequest::from_head(self.head);
        match conditional::evaluate(true, &req.conditionals, &v.validators()) {
            Outcome::NotModified => {
                rep.encoding = Some(enc);
                return Ok(self.not_modified(&rep, v));
            }
            Outcome::PreconditionFailed => return Ok(self.refuse(PRECONDITION_FAILED)),
            Outcome::Proceed => {}
        }
        let source = Source::File(rep.rel);
        let Some((len, body)) = self.site.compress(&source, &rep.body, rep.meta.len, enc) else {
            return Err(rep);
        };
        rep.body = body;
        rep.encoding = Some(enc);
        Ok(self.full(rep, v, len))
    }

    fn not_modified(&self, rep: &Representation<'_, S::Body>, v: Tags) -> Plan<'p, S::Body> {
        let mut headers = self.file_headers(0);
        self.push_validators(&mut headers, rep, v);
        self.finish(Status::NotModified, headers, Payload::Empty)
    }

    /// Picks the precompressed variant: the first coding of `ranked` (the client's
    /// best first) whose `FILE.br`, `FILE.zst` or `FILE.gz` the site has. Each is
    /// looked up through the site, so a variant created or removed a moment ago is
    /// seen. A client that accepts none of them (and does not refuse identity) gets
    /// the file without a look: its response still says `Vary: Accept-Encoding`,
    /// since another client may be sent a variant (caddy does the same); when the
    /// variants were looked up, `Vary` says exactly whether one exists.
    fn negotiate(&mut self, rep: &mut Representation<'_, S::Body>, ranked: &[Encoding], identity_refused: bool) {
        if ranked.is_empty() && !identity_refused {
            rep.vary = true;
            return;
        }
        // Every coding is looked up below when none is found, so a site that knows
        // them all absent answers the same: no variant, and no Vary for one.
        if self.site.variants_absent(rep.rel, &encoding::preference_order()) {
            rep.vary = false;
            return;
        }
        let mut variant = |enc: Encoding| match self.site.lookup(&format!("{}{}", rep.rel, enc.ext())) {
            Ok(Found::File(meta, body)) => Some((meta, body)),
            _ => None,
        };
        for &enc in ranked {
            if let Some((meta, body)) = variant(enc) {
                rep.meta = meta;
                rep.body = body;
                rep.encoding = Some(enc);
                rep.vary = true;
                return;
            }
        }
        // Vary says whether a variant exists for some other client.
        let others = encoding::preference_order().into_iter().filter(|e| !ranked.contains(e));
        rep.vary = others.into_iter().any(|e| variant(e).is_some());
    }

    /// An empty header list with room for `first` headers and all a file's response
    /// may add after them (validators, `Accept-Ranges`, `Content-Encoding`, and what
    /// [`Planner::finish`] adds): the plan's one allocation for its headers, never
    /// grown.
    fn file_headers(&self, first: usize) -> Headers<'p> {
        let added = usize::from(self.policy.cors) + self.policy.headers.len() + self.rule.headers.len();
        Headers::with_capacity(first + 6 + added)
    }

    /// Headers describing the representation, shared by 200, 206 and 304.
    fn push_validators(&self, headers: &mut Headers<'p>, rep: &Representation<'_, S::Body>, v: Tags) {
        headers.push(("Last-Modified", v.last_modified));
        headers.push(("ETag", v.etag));
        let immutable = || self.policy.immutable.iter().any(|p| p.matches(rep.rel));
        let cache = match self.rule.cache_control {
            Some(cc) => Some(cc),
            None if immutable() => Some("public, max-age=31536000, immutable"),
            None => self.policy.cache_control,
        };
        if let Some(cc) = cache {
            headers.push(("Cache-Control", Value::Str(cc)));
        }
        if rep.vary {
            headers.push(("Vary", Value::Str("Accept-Encoding")));
        }
    }

    /// The head of a 200 or 206: type, length (and range), validators, ranges, coding.
    fn entity_headers<const N: usize>(
        &self,
        rep: &Representation<'_, S::Body>,
        v: Tags,
        first: [(&'p str, Value<'p>); N],
    ) -> Headers<'p> {
        let mut headers = self.file_headers(N);
        headers.extend(first);
        self.push_validators(&mut headers, rep, v);
        headers.push(("Accept-Ranges", Value::Str("bytes")));
        if let Some(enc) = rep.encoding {
            headers.push(("Content-Encoding", Value::Str(enc.token())));
        }
        headers
    }

    fn full(&mut self, mut rep: Representation<'_, S::Body>, v: Tags, len: u64) -> Plan<'p, S::Body> {
        let first = [
            ("Content-Type", rep.content_type_value()),
            ("Content-Length", Value::Num(len)),
        ];
        let headers = self.entity_headers(&rep, v, first);
        let body = if self.head_only() {
            Payload::Empty
        } else {
            Payload::Slice {
                body: rep.body,
                start: 0,
                len,
            }
        };
        self.finish(Status::Ok, headers, body)
    }

    fn partial(&mut self, mut rep: Representation<'_, S::Body>, v: Tags, r: ByteRange, len: u64) -> Plan<'p, S::Body> {
        let first = [
            ("Content-Type", rep.content_type_value()),
            ("Content-Length", Value::Num(r.len())),
            ("Content-Range", Value::Text(range::content_range(&r, len))),
        ];
        let headers = self.entity_headers(&rep, v, first);
        let body = Payload::Slice {
            body: rep.body,
            start: r.start,
            len: r.len(),
        };
        self.finish(Status::PartialContent, headers, body)
    }

    fn multipart(
        &mut self,
        rep: Representation<'_, S::Body>,
        v: Tags,
        ranges: &[ByteRange],
        len: u64,
    ) -> Plan<'p, S::Body> {
        let boundary = boundary();
        let part_type = match rep.mime {
            (mime, true) => format!("{mime}; charset=utf-8"),
            (mime, false) => mime.to_string(),
        };
        let first = [
            (
                "Content-Type",
                Value::Text(format!("multipart/byteranges; boundary={boundary}")),
            ),
            (
                "Content-Length",
                Value::Num(range::multipart_len(ranges, len, &part_type, &boundary)),
            ),
        ];
        let headers = self.entity_headers(&rep, v, first);
        let parts = (ranges.iter())
            .map(|r| Part {
                head: range::multipart_part_head(r, len, &part_type, &boundary),
                start: r.start,
                len: r.len(),
            })
            .collect();
        let body = Payload::Multipart {
            body: rep.body,
            parts,
            tail: range::multipart_tail(&boundary),
        };
        self.finish(Status::PartialContent, headers, body)
    }
}

impl<B> Representation<'_, B> {
    /// Its `Content-Type` value: the precomputed one, taken, or built now.
    fn content_type_value(&mut self) -> Value<'static> {
        self.content_type.take().unwrap_or_else(|| mime_value(self.mime))
    }
}

/// A representation's validators as its response sends them.
struct Tags {
    /// `ETag`.
    etag: Value<'static>,
    /// `Last-Modified`.
    last_modified: Value<'static>,
    /// The time `Last-Modified` carries, for the date preconditions.
    modified: SystemTime,
}

impl Tags {
    /// The validators of the file version `meta`, with `suffix` (`-br`, `-br-5`) in
    /// the ETag of an encoded representation: the site's precomputed values where
    /// they fit (see `meta::Described`), else formatted now.
    fn of(meta: &Meta, suffix: Option<&str>) -> Tags {
        let d = meta.described.as_deref();
        let etag = match (d, suffix) {
            (Some(d), None) => Value::Shared(d.etag.clone()),
            (d, suffix) => {
                let mut etag = d.map_or_else(|| meta.etag(), |d| d.etag.to_string());
                if let Some(suffix) = suffix {
                    etag.insert_str(etag.len() - 1, suffix);
                }
                Value::Text(etag)
            }
        };
        let stamp = d.map_or_else(|| HttpDate::new(meta.mtime), |d| d.last_modified);
        Tags {
            etag,
            last_modified: Value::Stamp(stamp),
            modified: crate::clock::http_date_clamp(meta.mtime),
        }
    }

    /// What the preconditions compare.
    fn validators(&self) -> Validators<'_> {
        Validators {
            etag: self.etag.as_text().unwrap_or_default(),
            last_modified: self.modified,
        }
    }
}

/// Plans the response for an existing regular file (GET or HEAD) of length `len`
/// with validators `v`.
///
/// Order (RFC 9110 §13.2.2, then §14):
/// 1. Preconditions, in `conditional::evaluate`'s order — If-Match, If-Unmodified-Since,
///    If-None-Match, If-Modified-Since — may answer 412 or 304 before anything else.
/// 2. `Range` applies to GET only (§14.2: HEAD ignores it), and only if `If-Range` is
///    absent or matches (strong ETag, or the exact Last-Modified date).
/// 3. An invalid `Range` or another unit is ignored (200); no satisfiable range is a
///    416; one range a 206; several a `multipart/byteranges` 206.
pub fn plan_representation(req: &FileRequest, len: u64, v: &Validators) -> Decision {
    match conditional::evaluate(true, &req.conditionals, v) {
        Outcome::Proceed => {}
        Outcome::NotModified => return Decision::NotModified,
        Outcome::PreconditionFailed => return Decision::PreconditionFailed,
    }
    let Some(header) = req.range.filter(|_| req.is_get) else {
        return Decision::Full { len };
    };
    if req.if_range.is_some_and(|ir| !conditional::if_range_allows(ir, v)) {
        return Decision::Full { len };
    }
    match range::parse_range(header, len) {
        RangeDecision::Ignore => Decision::Full { len },
        RangeDecision::Unsatisfiable => Decision::RangeNotSatisfiable { len },
        RangeDecision::Satisfiable(ranges) if ranges.len() == 1 => Decision::Partial { range: ranges[0], len },
        RangeDecision::Satisfiable(ranges) => Decision::Multipart { ranges, len },
    }
}

/// A multipart boundary from std's per-thread random hash keys plus a counter (no
/// I/O: the keys are seeded once per thread).
fn boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("threadserve-{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::meta::Kind;
    use crate::http::plan::{content_type_of, content_type_value};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn precomputed_values_equal_those_computed_per_request() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        for rel in ["a/index.html", "b.bin", "c.js", "noext"] {
            let plain = Meta::new(1024, t, 1, Kind::File);
            let described = plain.clone().described(rel);
            for suffix in [None, Some("-br"), Some("-br-5")] {
                let (a, b) = (Tags::of(&plain, suffix), Tags::of(&described, suffix));
                assert_eq!(a.etag.as_text(), b.etag.as_text(), "{rel} {suffix:?}");
                assert_eq!(a.last_modified, b.last_modified);
                assert_eq!(a.validators(), b.validators());
            }
            let ct = (content_type_of(rel, &described), content_type_value(rel));
            assert_eq!(ct.0.as_text(), ct.1.as_text(), "{rel}");
            let Value::Stamp(stamp) = Tags::of(&described, None).last_modified else {
                panic!("Last-Modified is a formatted date");
            };
            assert_eq!(stamp.as_bytes(), httpdate::fmt_http_date(t).as_bytes());
        }
    }
}
