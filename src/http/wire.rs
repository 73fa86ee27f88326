//! Response heads as bytes: a pure serializer that appends to a caller-owned buffer,
//! so a whole head goes out in one `write`.

use crate::http::html;
use crate::http::status::Status;
use std::io::Write as _;
use std::time::SystemTime;

/// What the `Connection` header must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 keep-alive: no header needed.
    KeepAlive,
    /// HTTP/1.0 keep-alive: `Connection: keep-alive`.
    KeepAlive10,
    /// The server closes after this response: `Connection: close`.
    Close,
}

/// A `Date` header value, formatted once by the caller (the executor reads the clock
/// and formats at most once a second; tests pass a fixed time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpDate([u8; 29]);

impl HttpDate {
    /// Formats `t` (clamped to what an HTTP date can carry).
    pub fn new(t: SystemTime) -> HttpDate {
        let text = httpdate::fmt_http_date(crate::clock::http_date_clamp(t));
        let mut bytes = [b' '; 29];
        let n = text.len().min(29);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        HttpDate(bytes)
    }

    /// The formatted date.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Appends the status line, `Date` and `Server`.
pub fn start(buf: &mut Vec<u8>, status: Status, date: &HttpDate) {
    buf.extend_from_slice(b"HTTP/1.1 ");
    let _ = write!(buf, "{} {}", status.code(), status.reason());
    buf.extend_from_slice(b"\r\nDate: ");
    buf.extend_from_slice(date.as_bytes());
    buf.extend_from_slice(b"\r\nServer: ");
    buf.extend_from_slice(html::SERVER.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Appends `name: value`. Callers pass only values they built or validated, never raw
/// request bytes, so no CR/LF can reach the head.
pub fn header(buf: &mut Vec<u8>, name: &str, value: &str) {
    debug_assert!(!value.contains(['\r', '\n']), "header value with a line break");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Appends `name: n`.
pub fn header_num(buf: &mut Vec<u8>, name: &str, n: u64) {
    buf.extend_from_slice(name.as_bytes());
    let _ = write!(buf, ": {n}\r\n");
}

/// Appends `name: <HTTP-date>`.
pub fn header_date(buf: &mut Vec<u8>, name: &str, t: SystemTime) {
    header(buf, name, &httpdate::fmt_http_date(crate::clock::http_date_clamp(t)));
}

/// Appends `name: <HTTP-date>` formatted already.
pub fn header_stamp(buf: &mut Vec<u8>, name: &str, date: &HttpDate) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(date.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Appends the `Connection` header if one is needed and the blank line ending the head.
pub fn finish(buf: &mut Vec<u8>, conn: Connection) {
    match conn {
        Connection::KeepAlive => {}
        Connection::KeepAlive10 => buf.extend_from_slice(b"Connection: keep-alive\r\n"),
        Connection::Close => buf.extend_from_slice(b"Connection: close\r\n"),
    }
    buf.extend_from_slice(b"\r\n");
}

/// A complete error response (head and page) that closes the connection, for the
/// engine's answers without a plan: 400 for an unparsable head, 408 from the idle
/// watcher, 503 when shedding load (with `Retry-After`).
pub fn error_response(status: Status, message: &str, date: &HttpDate) -> Vec<u8> {
    let page = html::error_page(status, message);
    let mut out = Vec::with_capacity(256 + page.len());
    start(&mut out, status, date);
    header(&mut out, "Content-Type", "text/html; charset=utf-8");
    header_num(&mut out, "Content-Length", page.len() as u64);
    if status == Status::ServiceUnavailable {
        header_num(&mut out, "Retry-After", u64::from(crate::limits::RETRY_AFTER_SECS));
    }
    finish(&mut out, Connection::Close);
    out.extend_from_slice(page.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_status_date_server_and_blank_line() {
        let mut buf = Vec::new();
        let date = HttpDate::new(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
        start(&mut buf, Status::NotFound, &date);
        header_num(&mut buf, "Content-Length", 12);
        finish(&mut buf, Connection::Close);
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nServer: threadserve/"),
            "{text}"
        );
        assert!(
            text.ends_with("Content-Length: 12\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn keep_alive_on_http10_is_explicit_and_on_http11_implicit() {
        let mut buf = Vec::new();
        finish(&mut buf, Connection::KeepAlive10);
        assert_eq!(buf, b"Connection: keep-alive\r\n\r\n");
        buf.clear();
        finish(&mut buf, Connection::KeepAlive);
        assert_eq!(buf, b"\r\n");
    }

    #[test]
    fn far_future_dates_clamp_to_year_9999() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(300_000_000_000);
        assert_eq!(HttpDate::new(t).as_bytes(), b"Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
