//! A file's representation: which bytes stand for it (the file, or a precompressed
//! variant the client accepts), its validators, and what the request's preconditions
//! and ranges make of it.

use super::{content_type, content_type_value, Found, Headers, Part, Payload, Plan, Planner, Refusal, Site, Value};
use super::{FileRequest, PRECONDITION_FAILED};
use crate::http::conditional::{self, Outcome, Validators};
use crate::http::encoding::{self, Encoding};
use crate::http::meta::Meta;
use crate::http::range::{self, ByteRange, RangeDecision};
use crate::http::status::Status;

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

/// The bytes chosen to stand for a file, and what the response says about them.
struct Representation<'r, B> {
    body: B,
    meta: Meta,
    /// Path relative to the root of the file the client asked for (for its type).
    rel: &'r str,
    /// The precompressed variant sent instead, if any.
    encoding: Option<Encoding>,
    /// The response varies by `Accept-Encoding` (see `negotiate`).
    vary: bool,
}

impl<'p, S: Site> Planner<'_, 'p, S> {
    /// Step 9 of the module doc: the representation of the file `rel`.
    pub(super) fn representation(&mut self, rel: &str, meta: Meta, body: S::Body) -> Plan<'p, S::Body> {
        let mut rep = Representation {
            body,
            meta,
            rel,
            encoding: None,
            vary: false,
        };
        if self.policy.precompressed {
            self.negotiate(&mut rep);
        }
        let accept_encoding = self.head.accept_encoding;
        if rep.encoding.is_none() && rep.vary && encoding::identity_refused(accept_encoding) {
            let msg = "No acceptable encoding of this file exists.";
            let vary = vec![("Vary", Value::Str("Accept-Encoding"))];
            return self.refuse_with(Refusal::keep(Status::NotAcceptable, msg), vary);
        }
        let mut etag = rep.meta.etag();
        if let Some(enc) = rep.encoding {
            // A distinct strong validator per encoding (RFC 9110 §8.8.3).
            etag.insert_str(etag.len() - 1, &format!("-{}", enc.token()));
        }
        let v = Validators {
            etag,
            last_modified: crate::clock::http_date_clamp(rep.meta.mtime),
        };
        match plan_representation(&FileRequest::from_head(self.head), rep.meta.len, &v) {
            Decision::Full { len } => self.full(rep, v, len),
            Decision::Partial { range, len } => self.partial(rep, v, range, len),
            Decision::Multipart { ranges, len } => self.multipart(rep, v, &ranges, len),
            Decision::NotModified => {
                let headers = self.validator_headers(&rep, v, 5);
                self.finish(Status::NotModified, headers, Payload::Empty)
            }
            Decision::PreconditionFailed => self.refuse(PRECONDITION_FAILED),
            Decision::RangeNotSatisfiable { len } => {
                let cr = vec![("Content-Range", Value::Text(range::content_range_unsatisfied(len)))];
                let msg = "The requested range is not satisfiable.";
                self.refuse_with(Refusal::keep(Status::RangeNotSatisfiable, msg), cr)
            }
        }
    }

    /// Picks `FILE.br`, `FILE.zst` or `FILE.gz`: the first in the server's order
    /// ([`encoding::Acceptable::first`]) that the client accepts and the site has.
    /// Each is looked up through the site, so a variant created or removed a moment
    /// ago is seen. A client that accepts none of them (and does not refuse identity)
    /// gets the file without a look: its response still says `Vary: Accept-Encoding`,
    /// since another client may be sent a variant (caddy does the same); when the
    /// variants were looked up, `Vary` says exactly whether one exists.
    fn negotiate(&mut self, rep: &mut Representation<'_, S::Body>) {
        let accept_encoding = self.head.accept_encoding;
        let accepted = encoding::acceptable(accept_encoding);
        let order = encoding::preference_order();
        if !order.iter().any(|&e| accepted.accepts(e)) && !encoding::identity_refused(accept_encoding) {
            rep.vary = true;
            return;
        }
        let mut variant = |enc: Encoding| match self.site.lookup(&format!("{}{}", rep.rel, enc.ext())) {
            Ok(Found::File(meta, body)) => Some((meta, body)),
            _ => None,
        };
        let mut chosen = None;
        let picked = accepted.first(|enc| {
            chosen = variant(enc);
            chosen.is_some()
        });
        if let (Some(enc), Some((meta, body))) = (picked, chosen) {
            rep.meta = meta;
            rep.body = body;
            rep.encoding = Some(enc);
            rep.vary = true;
        } else {
            // Vary says whether a variant exists for some other client.
            rep.vary = order.into_iter().any(|e| !accepted.accepts(e) && variant(e).is_some());
        }
    }

    /// Headers describing the representation, shared by 200, 206 and 304.
    fn validator_headers(&self, rep: &Representation<'_, S::Body>, v: Validators, room: usize) -> Headers<'p> {
        let mut headers = Headers::with_capacity(room + 4 + self.policy.headers.len());
        headers.push(("Last-Modified", Value::Date(v.last_modified)));
        headers.push(("ETag", Value::Text(v.etag)));
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
        headers
    }

    /// The head of a 200 or 206: type, length (and range), validators, ranges, coding.
    fn entity_headers(&self, rep: &Representation<'_, S::Body>, v: Validators, first: Headers<'p>) -> Headers<'p> {
        let mut headers = first;
        headers.extend(self.validator_headers(rep, v, 2));
        headers.push(("Accept-Ranges", Value::Str("bytes")));
        if let Some(enc) = rep.encoding {
            headers.push(("Content-Encoding", Value::Str(enc.token())));
        }
        headers
    }

    fn full(&mut self, rep: Representation<'_, S::Body>, v: Validators, len: u64) -> Plan<'p, S::Body> {
        let first = vec![
            ("Content-Type", content_type_value(rep.rel)),
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

    fn partial(
        &mut self,
        rep: Representation<'_, S::Body>,
        v: Validators,
        r: ByteRange,
        len: u64,
    ) -> Plan<'p, S::Body> {
        let first = vec![
            ("Content-Type", content_type_value(rep.rel)),
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
        v: Validators,
        ranges: &[ByteRange],
        len: u64,
    ) -> Plan<'p, S::Body> {
        let boundary = boundary();
        let part_type = match content_type(rep.rel) {
            (mime, true) => format!("{mime}; charset=utf-8"),
            (mime, false) => mime.to_string(),
        };
        let first = vec![
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
