//! Request-head parsing and validation: bytes in, a borrowed [`Head`] or a typed error out.
//!
//! In scope: the request line, the headers threadserve reads, message framing checks
//! (RFC 9112 §6) and the request target's form. Out of scope: sockets, timeouts, files.
//! Like httparse, parsing distinguishes "complete" from "need more bytes".

use crate::http::status::Status;
use std::mem::MaybeUninit;

/// Outcome of parsing a buffer that may hold a partial head.
// Returned by value straight to the caller and never stored, so its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed<'b> {
    /// A whole head, with the number of bytes it used.
    Complete(Head<'b>, usize),
    /// More bytes are needed.
    Partial,
}

/// How the request frames a body. threadserve accepts no request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body (no Content-Length, or Content-Length: 0).
    None,
    /// `Content-Length: n` with n > 0.
    Length(u64),
    /// A `Transfer-Encoding` header.
    Encoded,
}

/// The parts of a request head that threadserve acts on, borrowed from the read buffer.
#[derive(Debug, Default, Clone)]
pub struct Head<'b> {
    /// Method token as sent (case-sensitive, RFC 9110 §9.1).
    pub method: &'b str,
    /// Request target as sent.
    pub target: &'b str,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// `Host`, validated by [`parse`] (one on HTTP/1.1, a valid authority).
    pub host: Option<&'b str>,
    /// `Connection: close` was sent.
    pub conn_close: bool,
    /// `Connection: keep-alive` was sent.
    pub conn_keep_alive: bool,
    /// Body framing, if any framing header was sent.
    pub framing: Option<Body>,
    /// `If-Match`.
    pub if_match: Option<&'b str>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'b str>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'b str>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<&'b str>,
    /// `Range`.
    pub range: Option<&'b str>,
    /// `If-Range`.
    pub if_range: Option<&'b str>,
    /// `Accept-Encoding`.
    pub accept_encoding: Option<&'b str>,
    /// `Accept`.
    pub accept: Option<&'b str>,
    /// `Referer`, for the access log.
    pub referer: Option<&'b str>,
    /// `User-Agent`, for the access log.
    pub user_agent: Option<&'b str>,
    /// `Authorization` (basic auth). Never copied into the access-log record.
    pub authorization: Option<&'b str>,
}

impl Head<'_> {
    /// Body framing of this request.
    pub fn body(&self) -> Body {
        self.framing.unwrap_or(Body::None)
    }

    /// Whether the client wants the connection kept open after this response
    /// (HTTP/1.1 default on, HTTP/1.0 default off; RFC 9112 §9.3).
    pub fn wants_keep_alive(&self) -> bool {
        if self.version >= 1 {
            !self.conn_close
        } else {
            self.conn_keep_alive && !self.conn_close
        }
    }

    /// `GET` or `HEAD`.
    pub fn is_get_or_head(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }
}

/// Why a head was refused. Small and `Copy`, like httparse's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not a valid HTTP/1.x head (bad token, bad line ending, bad header).
    Malformed,
    /// The head exceeded the size limit.
    TooLarge,
    /// The request line alone exceeded the size limit.
    UriTooLong,
    /// More header lines than allowed.
    TooManyHeaders,
    /// A well-formed version other than HTTP/1.0 or HTTP/1.1 (e.g. HTTP/2.0).
    Version,
    /// Both Content-Length and Transfer-Encoding, differing or invalid Content-Length.
    BadFraming,
    /// HTTP/1.1 without `Host`, or more than one `Host`.
    BadHost,
    /// A `Host` that is not `host [ ":" port ]` (RFC 9112 §3.2).
    InvalidHost,
    /// A request target in none of the forms threadserve serves.
    BadTarget,
}

impl HeadError {
    /// The status that answers this error. Every one also closes the connection.
    pub fn status(self) -> Status {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => Status::HeaderFieldsTooLarge,
            HeadError::UriTooLong => Status::UriTooLong,
            HeadError::Version => Status::VersionNotSupported,
            HeadError::Malformed
            | HeadError::BadFraming
            | HeadError::BadHost
            | HeadError::InvalidHost
            | HeadError::BadTarget => Status::BadRequest,
        }
    }

    /// A short human message for the error page.
    pub fn message(self) -> &'static str {
        match self {
            HeadError::Malformed => "The request head is not valid HTTP/1.1.",
            HeadError::TooLarge => "The request head is larger than this server accepts.",
            HeadError::UriTooLong => "The request line is longer than this server accepts.",
            HeadError::TooManyHeaders => "The request has more header lines than this server accepts.",
            HeadError::Version => "Only HTTP/1.0 and HTTP/1.1 are supported.",
            HeadError::BadFraming => "Conflicting or invalid Content-Length / Transfer-Encoding.",
            HeadError::BadHost => "HTTP/1.1 requests need exactly one Host header.",
            HeadError::InvalidHost => "The Host header is not a valid host name or address with an optional port.",
            HeadError::BadTarget => "The request target is not an absolute path or an http(s) URL with a valid host.",
        }
    }
}

/// Parses one request head from the start of `buf`, using `headers` as scratch space
/// (its length is the header-count limit).
///
/// `max_head` is the size limit: a partial head at least that long is an error, so the
/// caller never needs to buffer more.
pub fn parse<'b>(
    buf: &'b [u8],
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
    max_head: usize,
) -> Result<Parsed<'b>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Complete(_)) => return Err(too_large(buf, max_head)),
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(too_large(buf, max_head)),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) => return parse_other_version(buf, headers.len(), max_head),
        Err(_) => return Err(HeadError::Malformed),
    };
    let line = RequestLine {
        method: req.method.unwrap_or(""),
        target: req.path.unwrap_or(""),
        version: req.version.unwrap_or(1),
    };
    complete(line, req.headers, n)
}

/// The request line as parsed, before the headers are applied.
struct RequestLine<'b> {
    method: &'b str,
    target: &'b str,
    version: u8,
}

/// Builds the [`Head`] from a parsed request line and its headers, checking the rules
/// that span headers (one valid `Host`).
fn complete<'b>(line: RequestLine<'b>, headers: &[httparse::Header<'b>], n: usize) -> Result<Parsed<'b>, HeadError> {
    let mut head = Head {
        method: line.method,
        target: line.target,
        version: line.version,
        ..Head::default()
    };
    let mut hosts = 0;
    for h in headers {
        apply_header(&mut head, h, &mut hosts)?;
    }
    if (head.version >= 1 && hosts != 1) || hosts > 1 {
        return Err(HeadError::BadHost);
    }
    // An empty Host is what a client sends for a target without an authority (§3.2).
    if head.host.is_some_and(|h| !h.is_empty() && !valid_authority(h)) {
        return Err(HeadError::InvalidHost);
    }
    Ok(Parsed::Complete(head, n))
}

/// What httparse could not parse: it knows only HTTP/1.0 and HTTP/1.1, and refuses any
/// other version the same way as a malformed request line. httparse had already
/// accepted `method SP target SP` when it refused, so only the rest of the line is
/// checked here:
/// - `HTTP/1.x` with x ≥ 2 is processed as HTTP/1.1 (RFC 9110 §2.5): the headers are
///   parsed on their own;
/// - another well-formed version (`HTTP/2.0`, `HTTP/3`) is 505;
/// - anything else (`G ET / HTTP/1.0`, `GET /a b HTTP/1.1`) is a malformed request
///   line, 400 (RFC 9112 §3).
///
/// Until the line ends, a version that may still become valid is partial.
fn parse_other_version(buf: &[u8], slots: usize, max_head: usize) -> Result<Parsed<'_>, HeadError> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line_end = buf[start..].iter().position(|&b| b == b'\n').map(|i| start + i);
    let line = &buf[start..line_end.unwrap_or(buf.len())];
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(HeadError::Malformed);
    };
    let Some(line_end) = line_end else {
        let version = version.strip_suffix(b"\r").unwrap_or(version);
        return match may_become_version(version) {
            _ if buf.len() >= max_head => Err(too_large(buf, max_head)),
            true => Ok(Parsed::Partial),
            false => Err(HeadError::Malformed),
        };
    };
    match version.strip_suffix(b"\r").unwrap_or(version) {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if (b'2'..=b'9').contains(minor) => {}
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'0' | b'1'] => return Err(HeadError::Malformed),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(HeadError::Version)
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => return Err(HeadError::Version),
        _ => return Err(HeadError::Malformed),
    }
    let text = |b| std::str::from_utf8(b).map_err(|_| HeadError::Malformed);
    let line = RequestLine {
        method: text(method)?,
        target: text(target)?,
        version: 1,
    };
    let rest = &buf[line_end + 1..];
    let mut headers = vec![httparse::EMPTY_HEADER; slots];
    match httparse::parse_headers(rest, &mut headers) {
        Ok(httparse::Status::Complete((n, _))) if line_end + 1 + n > max_head => Err(too_large(buf, max_head)),
        Ok(httparse::Status::Complete((n, parsed))) => complete(line, parsed, line_end + 1 + n),
        Ok(httparse::Status::Partial) if buf.len() >= max_head => Err(too_large(buf, max_head)),
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// Whether the start of a version seen so far can still become `HTTP/D.D`.
fn may_become_version(v: &[u8]) -> bool {
    let pattern = b"HTTP/0.0";
    v.len() <= pattern.len()
        && v.iter().zip(pattern).all(|(&b, &p)| match p {
            b'0' => b.is_ascii_digit(),
            _ => b == p,
        })
}

fn apply_header<'b>(head: &mut Head<'b>, h: &httparse::Header<'b>, hosts: &mut u32) -> Result<(), HeadError> {
    let name = h.name;
    // Header values are bytes; non-UTF-8 values of headers we read count as malformed.
    let value = |h: &httparse::Header<'b>| {
        std::str::from_utf8(h.value)
            .map(str::trim)
            .map_err(|_| HeadError::Malformed)
    };
    if name.eq_ignore_ascii_case("host") {
        *hosts += 1;
        head.host = Some(value(h)?);
    } else if name.eq_ignore_ascii_case("connection") {
        for token in value(h)?.split(',') {
            let token = token.trim();
            head.conn_close |= token.eq_ignore_ascii_case("close");
            head.conn_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
        }
    } else if name.eq_ignore_ascii_case("content-length") {
        let len = parse_content_length(value(h)?)?;
        head.framing = match head.framing {
            Some(Body::Encoded) => return Err(HeadError::BadFraming),
            Some(Body::Length(prev)) if prev != len => return Err(HeadError::BadFraming),
            Some(Body::None) if len != 0 => return Err(HeadError::BadFraming),
            _ if len == 0 => Some(Body::None),
            _ => Some(Body::Length(len)),
        };
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        if head.framing.is_some_and(|b| b != Body::Encoded) {
            return Err(HeadError::BadFraming);
        }
        head.framing = Some(Body::Encoded);
    } else {
        let slot = match_slot(head, name);
        if let Some(slot) = slot {
            // A repeated header keeps its first value; list headers (If-None-Match, …)
            // sent twice are rare and the first value is a safe reading.
            if slot.is_none() {
                *slot = Some(value(h)?);
            }
        }
    }
    Ok(())
}

fn match_slot<'h, 'b>(head: &'h mut Head<'b>, name: &str) -> Option<&'h mut Option<&'b str>> {
    let slot = match name.len() {
        5 if name.eq_ignore_ascii_case("range") => &mut head.range,
        6 if name.eq_ignore_ascii_case("accept") => &mut head.accept,
        7 if name.eq_ignore_ascii_case("referer") => &mut head.referer,
        8 if name.eq_ignore_ascii_case("if-match") => &mut head.if_match,
        8 if name.eq_ignore_ascii_case("if-range") => &mut head.if_range,
        10 if name.eq_ignore_ascii_case("user-agent") => &mut head.user_agent,
        13 if name.eq_ignore_ascii_case("if-none-match") => &mut head.if_none_match,
        13 if name.eq_ignore_ascii_case("authorization") => &mut head.authorization,
        15 if name.eq_ignore_ascii_case("accept-encoding") => &mut head.accept_encoding,
        17 if name.eq_ignore_ascii_case("if-modified-since") => &mut head.if_modified_since,
        19 if name.eq_ignore_ascii_case("if-unmodified-since") => &mut head.if_unmodified_since,
        _ => return None,
    };
    Some(slot)
}

/// Content-Length is 1*DIGIT (RFC 9110 §8.6); signs, spaces inside, and values that do
/// not fit in u64 are framing errors, never a wrapped or truncated number.
fn parse_content_length(v: &str) -> Result<u64, HeadError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::BadFraming);
    }
    v.parse().map_err(|_| HeadError::BadFraming)
}

fn too_large(buf: &[u8], max_head: usize) -> HeadError {
    let line_end = buf[..buf.len().min(max_head)].iter().position(|&b| b == b'\n');
    if line_end.is_none() {
        HeadError::UriTooLong
    } else {
        HeadError::TooLarge
    }
}

/// The path and query of a request target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Path, still percent-encoded, starting with `/`.
    pub path: &'a str,
    /// Query without the `?`, if any. It never affects which file is served.
    pub query: Option<&'a str>,
}

/// Splits origin-form (`/path?q`) and absolute-form (`http://host/path?q`) targets.
/// Asterisk-form and authority-form are refused here (their methods get 405 earlier),
/// and so is an absolute-form target whose authority is not a non-empty
/// `host [ ":" port ]`: userinfo (`http://u@h/`) is not allowed in an http(s) URI
/// (RFC 9110 §4.2.4), nor an empty host (§4.2.1).
pub fn split_target(target: &str) -> Result<Target<'_>, HeadError> {
    let rest = if target.starts_with('/') {
        target
    } else {
        let after_scheme = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(HeadError::BadTarget)?;
        let authority = &after_scheme[..after_scheme.find(['/', '?']).unwrap_or(after_scheme.len())];
        if !valid_authority(authority) {
            return Err(HeadError::BadTarget);
        }
        match after_scheme.find(['/', '?']) {
            Some(i) if after_scheme.as_bytes()[i] == b'/' => &after_scheme[i..],
            Some(i) => {
                return Ok(Target {
                    path: "/",
                    query: Some(&after_scheme[i + 1..]),
                })
            }
            None => "/",
        }
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    Ok(match rest.split_once('?') {
        Some((path, query)) => Target {
            path,
            query: Some(query),
        },
        None => Target {
            path: rest,
            query: None,
        },
    })
}

/// Whether `a` is `host [ ":" port ]` with a non-empty host (RFC 3986 §3.2.2-3.2.3,
/// as RFC 9112 §3.2 requires of `Host`): a bracketed IPv6 address or IPvFuture, or a
/// reg-name (which covers IPv4 addresses), then optionally `:` and digits.
pub fn valid_authority(a: &str) -> bool {
    let (host_ok, port) = match a.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((literal, port)) => (valid_ip_literal(literal), port),
            None => return false,
        },
        None => {
            let (host, port) = a.split_at(a.find(':').unwrap_or(a.len()));
            (!host.is_empty() && valid_reg_name(host), port)
        }
    };
    host_ok
        && (port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986 §3.2.2).
fn valid_reg_name(host: &str) -> bool {
    let b = host.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if is_unreserved_or_sub_delim(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// `IP-literal` without its brackets: an IPv6 address, or
/// `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn valid_ip_literal(literal: &str) -> bool {
    match literal.strip_prefix(['v', 'V']) {
        Some(future) => future.split_once('.').is_some_and(|(ver, rest)| {
            !ver.is_empty()
                && ver.bytes().all(|b| b.is_ascii_hexdigit())
                && !rest.is_empty()
                && rest.bytes().all(|b| b == b':' || is_unreserved_or_sub_delim(b))
        }),
        None => literal.parse::<core::net::Ipv6Addr>().is_ok(),
    }
}

fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_HEAD_BYTES;

    fn parse_str(s: &str) -> Result<Option<(String, usize)>, HeadError> {
        let mut headers = [const { MaybeUninit::uninit() }; 16];
        match parse(s.as_bytes(), &mut headers, MAX_HEAD_BYTES)? {
            Parsed::Complete(h, n) => Ok(Some((format!("{} {} {:?}", h.method, h.target, h.body()), n))),
            Parsed::Partial => Ok(None),
        }
    }

    #[test]
    fn table() {
        use HeadError::*;
        let cases: &[(&str, &str, Result<bool, HeadError>)] = &[
            ("simple_get_is_complete", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(true)),
            ("http10_needs_no_host", "GET / HTTP/1.0\r\n\r\n", Ok(true)),
            (
                "bare_lf_line_ends_are_tolerated",
                "GET / HTTP/1.1\nHost: a\n\n",
                Ok(true),
            ),
            (
                "unterminated_head_is_partial",
                "GET / HTTP/1.1\r\nHost: a\r\n",
                Ok(false),
            ),
            ("missing_host_on_11_is_400", "GET / HTTP/1.1\r\n\r\n", Err(BadHost)),
            (
                "two_hosts_are_400",
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                Err(BadHost),
            ),
            ("http2_is_505", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(Version)),
            ("h2_preface_is_505", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Err(Version)),
            ("garbage_version_is_400", "GET / HTXP/1.1\r\n\r\n", Err(Malformed)),
            (
                "space_in_header_name_is_400",
                "GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
                Err(Malformed),
            ),
            (
                "nul_in_target_is_400",
                "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n",
                Err(Malformed),
            ),
            (
                "cl_and_te_are_400",
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(BadFraming),
            ),
            (
                "te_then_cl_are_400",
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                Err(BadFraming),
            ),
            (
                "differing_cl_is_400",
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                Err(BadFraming),
            ),
            (
                "equal_duplicate_cl_is_accepted",
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                Ok(true),
            ),
            (
                "negative_cl_is_400",
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                Err(BadFraming),
            ),
            (
                "overflowing_cl_is_400",
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
                Err(BadFraming),
            ),
            (
                "cl_list_is_400",
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
                Err(BadFraming),
            ),
        ];
        for (name, input, want) in cases {
            let got = parse_str(input).map(|o| o.is_some());
            assert_eq!(&got, want, "{name}");
        }
    }

    /// RFC 9110 §2.5: a recipient processes HTTP/1.x with x ≥ 2 as HTTP/1.1 (nginx
    /// answers 200). httparse refuses those versions, so this pins the second path.
    #[test]
    fn http_1_2_is_served_as_1_1() {
        // Complete cases give (target, version): every one is processed as HTTP/1.1.
        type Want = Result<Option<(&'static str, u8)>, HeadError>;
        let cases: &[(&str, &str, Want)] = &[
            ("http_1_2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", Ok(Some(("/", 1)))),
            (
                "http_1_9",
                "GET /x HTTP/1.9\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n",
                Ok(Some(("/x", 1))),
            ),
            ("bare_lf", "GET / HTTP/1.2\nHost: a\n\n", Ok(Some(("/", 1)))),
            (
                "leading_crlf",
                "\r\nGET / HTTP/1.2\r\nHost: a\r\n\r\n",
                Ok(Some(("/", 1))),
            ),
            ("line_not_ended_yet", "GET / HTTP/1.2", Ok(None)),
            ("cr_not_followed_yet", "GET / HTTP/1.2\r", Ok(None)),
            ("headers_not_ended_yet", "GET / HTTP/1.2\r\nHost: a\r\n", Ok(None)),
            ("needs_host_like_1_1", "GET / HTTP/1.2\r\n\r\n", Err(HeadError::BadHost)),
            (
                "bad_header_is_400",
                "GET / HTTP/1.2\r\nHo st: a\r\n\r\n",
                Err(HeadError::Malformed),
            ),
            (
                "bad_framing_is_400",
                "GET / HTTP/1.2\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Err(HeadError::BadFraming),
            ),
        ];
        let mut headers = [const { MaybeUninit::uninit() }; 16];
        for (name, input, want) in cases {
            let got = parse(input.as_bytes(), &mut headers, MAX_HEAD_BYTES).map(|p| match p {
                Parsed::Complete(h, n) => {
                    assert_eq!((h.method, n), ("GET", input.len()), "{name}: method and bytes used");
                    Some((h.target, h.version))
                }
                Parsed::Partial => None,
            });
            assert_eq!(&got, want, "{name}");
        }
        let Ok(Parsed::Complete(h, _)) = parse(
            b"GET / HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n",
            &mut headers,
            4096,
        ) else {
            panic!("complete")
        };
        assert!(!h.wants_keep_alive(), "headers of a 1.2 request are read");
        let pipelined = b"GET /a HTTP/1.2\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        let Ok(Parsed::Complete(_, n)) = parse(pipelined, &mut headers, 4096) else {
            panic!("pipelined")
        };
        assert_eq!(&pipelined[n..n + 6], b"GET /b");
        let many = format!("GET / HTTP/1.2\r\nHost: a\r\n{}\r\n", "X: y\r\n".repeat(20));
        assert_eq!(
            parse(many.as_bytes(), &mut headers, 4096).unwrap_err(),
            HeadError::TooManyHeaders
        );
        let long = format!("GET / HTTP/1.2\r\nHost: a\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse(long.as_bytes(), &mut headers, 50).unwrap_err(),
            HeadError::TooLarge
        );
    }

    /// RFC 9112 §3: a request line that is not `method SP target SP version` is 400; only
    /// a well-formed version this server does not speak is 505.
    #[test]
    fn malformed_request_line_is_400() {
        use HeadError::*;
        let cases: &[(&str, &str, HeadError)] = &[
            ("space_in_method", "G ET / HTTP/1.0\r\n\r\n", Malformed),
            ("space_in_target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Malformed),
            (
                "two_spaces_before_version",
                "GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
                Malformed,
            ),
            ("space_after_version", "GET / HTTP/1.2 \r\nHost: a\r\n\r\n", Malformed),
            ("two_digit_minor", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", Malformed),
            ("two_digit_major", "GET / HTTP/01.1\r\nHost: a\r\n\r\n", Malformed),
            ("lowercase_http", "GET / http/1.1\r\nHost: a\r\n\r\n", Malformed),
            ("no_slash", "GET / HTTP1.1\r\nHost: a\r\n\r\n", Malformed),
            ("garbage_so_far", "GET / HTXP", Malformed),
            ("space_in_method_so_far", "G ET / HTTP/1.0", Malformed),
            ("http_2_0_is_505", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", Version),
            ("http_3_is_505", "GET / HTTP/3\r\nHost: a\r\n\r\n", Version),
            ("http_9_9_is_505", "GET / HTTP/9.9\r\nHost: a\r\n\r\n", Version),
            ("http_0_9_is_505", "GET / HTTP/0.9\r\n\r\n", Version),
        ];
        let mut headers = [const { MaybeUninit::uninit() }; 16];
        for (name, input, want) in cases {
            let got = parse(input.as_bytes(), &mut headers, MAX_HEAD_BYTES).map(|_| ());
            assert_eq!(got, Err(*want), "{name}");
            assert_eq!(want.status().code(), if *want == Version { 505 } else { 400 }, "{name}");
        }
    }

    /// RFC 9112 §3.2: a Host that is not `host [ ":" port ]` (RFC 3986 §3.2.2: a
    /// reg-name, an IPv4 address or a bracketed IP literal) is 400, as are a missing
    /// Host on HTTP/1.1 and more than one Host on any version.
    #[test]
    fn invalid_host_is_400() {
        let valid = [
            "a",
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::192.0.2.1]",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%41b",
            "sub-delims!$&'()*+,;=_~",
            "",
        ];
        let invalid = [
            "a b",
            "abc\\foo",
            "x/y",
            "::1",
            "::1:80",
            "[::1",
            "::1]",
            "[4712::abcd::]",
            "[127.0.0.1]",
            "[::1]x",
            "[::1]:x",
            "host:abc",
            "host:80:80",
            "localhost::80",
            "user@host",
            "a%4",
            "a%zz",
            "a?b",
            "a#b",
            "a\"b",
            "[v1.]",
            "[vx.a]",
        ];
        for host in valid.iter().chain(&invalid) {
            let mut headers = [const { MaybeUninit::uninit() }; 16];
            let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let got = parse(input.as_bytes(), &mut headers, MAX_HEAD_BYTES).map(|_| ());
            let want = if valid.contains(host) {
                Ok(())
            } else {
                Err(HeadError::InvalidHost)
            };
            assert_eq!(got, want, "Host: {host}");
        }
        let mut headers = [const { MaybeUninit::uninit() }; 16];
        let http10 = "GET / HTTP/1.0\r\nHost: a b\r\n\r\n";
        assert_eq!(
            parse(http10.as_bytes(), &mut headers, MAX_HEAD_BYTES).unwrap_err(),
            HeadError::InvalidHost
        );
        let two = "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n";
        assert_eq!(
            parse(two.as_bytes(), &mut headers, MAX_HEAD_BYTES).unwrap_err(),
            HeadError::BadHost
        );
        assert_eq!(HeadError::InvalidHost.status(), Status::BadRequest);
    }

    #[test]
    fn complete_reports_bytes_used_so_pipelined_requests_stay_separate() {
        let two = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        let (first, n) = parse_str(two).unwrap().unwrap();
        assert_eq!(first, "GET /a None");
        let (second, _) = parse_str(&two[n..]).unwrap().unwrap();
        assert_eq!(second, "GET /b None");
    }

    #[test]
    fn body_framing_is_reported() {
        let (h, _) = parse_str("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h, "POST / Length(5)");
        let (h, _) = parse_str("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h, "GET / Encoded");
        let (h, _) = parse_str("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h, "GET / None");
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..20 {
            s.push_str(&format!("X-{i}: y\r\n"));
        }
        s.push_str("\r\n");
        assert_eq!(parse_str(&s), Err(HeadError::TooManyHeaders));
        assert_eq!(HeadError::TooManyHeaders.status(), Status::HeaderFieldsTooLarge);
    }

    #[test]
    fn oversized_head_is_431_and_oversized_request_line_is_414() {
        let mut headers = [const { MaybeUninit::uninit() }; 16];
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100));
        assert_eq!(
            parse(long_line.as_bytes(), &mut headers, 50).unwrap_err(),
            HeadError::UriTooLong
        );
        let long_head = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(100));
        assert_eq!(
            parse(long_head.as_bytes(), &mut headers, 50).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn keep_alive_defaults_follow_the_version() {
        let mut headers = [const { MaybeUninit::uninit() }; 16];
        let cases = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n",
                false,
            ),
        ];
        for (input, want) in cases {
            let Ok(Parsed::Complete(h, _)) = parse(input.as_bytes(), &mut headers, 4096) else {
                panic!("{input}")
            };
            assert_eq!(h.wants_keep_alive(), want, "{input}");
        }
    }

    #[test]
    fn targets_split_into_path_and_query() {
        let ok = |path, query| Ok(Target { path, query });
        let cases = [
            ("/a/b", ok("/a/b", None)),
            ("/a?x=1?y", ok("/a", Some("x=1?y"))),
            ("http://example.com/a?q", ok("/a", Some("q"))),
            ("HTTP://example.com", ok("/", None)),
            ("https://example.com?q", ok("/", Some("q"))),
            ("http://[::1]:8080/a", ok("/a", None)),
            ("http://example.com:/a", ok("/a", None)),
            ("*", Err(HeadError::BadTarget)),
            ("example.com:443", Err(HeadError::BadTarget)),
            ("ftp://x/a", Err(HeadError::BadTarget)),
            // RFC 9112 §3.2.2 / RFC 9110 §4.2.4: absolute-form with userinfo or an
            // invalid or empty authority is refused.
            ("http://foo@localhost/", Err(HeadError::BadTarget)),
            ("http://u:p@t/a", Err(HeadError::BadTarget)),
            ("http:///", Err(HeadError::BadTarget)),
            ("http://", Err(HeadError::BadTarget)),
            ("http://?q", Err(HeadError::BadTarget)),
            ("http://:80/", Err(HeadError::BadTarget)),
            ("http://localhost::80/", Err(HeadError::BadTarget)),
            ("http://[4712::abcd::]/", Err(HeadError::BadTarget)),
            ("http://a\\b/", Err(HeadError::BadTarget)),
        ];
        for (input, want) in cases {
            assert_eq!(split_target(input), want, "{input}");
        }
    }
}
