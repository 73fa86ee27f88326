//! Response heads as bytes: a pure serializer that appends to a caller-owned buffer,
//! so a whole head goes out in one `write`.

use crate::http::status::Status;
use std::cell::RefCell;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Server` header value.
pub const SERVER: &str = concat!("threadserve/", env!("CARGO_PKG_VERSION"));

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

/// Appends the status line, `Date` and `Server`.
pub fn start(buf: &mut Vec<u8>, status: Status) {
    buf.extend_from_slice(b"HTTP/1.1 ");
    let _ = write!(buf, "{} {}", status.code(), status.reason());
    buf.extend_from_slice(b"\r\nDate: ");
    with_date(|d| buf.extend_from_slice(d));
    buf.extend_from_slice(b"\r\nServer: ");
    buf.extend_from_slice(SERVER.as_bytes());
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

/// Appends the `Connection` header if one is needed and the blank line ending the head.
pub fn finish(buf: &mut Vec<u8>, conn: Connection) {
    match conn {
        Connection::KeepAlive => {}
        Connection::KeepAlive10 => buf.extend_from_slice(b"Connection: keep-alive\r\n"),
        Connection::Close => buf.extend_from_slice(b"Connection: close\r\n"),
    }
    buf.extend_from_slice(b"\r\n");
}

/// The small HTML page sent with an error status.
pub fn error_page(status: Status, message: &str) -> String {
    let title = format!("{} {}", status.code(), status.reason());
    let mut page = String::with_capacity(200);
    page.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    page.push_str(&title);
    page.push_str("</title></head>\n<body><h1>");
    page.push_str(&title);
    page.push_str("</h1>\n<p>");
    crate::http::listing::escape_html(message, &mut page);
    page.push_str("</p>\n<hr><address>");
    page.push_str(SERVER);
    page.push_str("</address></body></html>\n");
    page
}

/// Calls `f` with the current time as an HTTP-date. Formatting happens at most once a
/// second per thread.
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(now);
            c.1.copy_from_slice(&text.as_bytes()[..29]);
            c.0 = secs;
        }
        f(&c.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_status_date_server_and_blank_line() {
        let mut buf = Vec::new();
        start(&mut buf, Status::NotFound);
        header_num(&mut buf, "Content-Length", 12);
        finish(&mut buf, Connection::Close);
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\nDate: "), "{text}");
        assert!(text.contains(" GMT\r\nServer: threadserve/"), "{text}");
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
    fn error_page_escapes_its_message() {
        let page = error_page(Status::BadRequest, "<script>");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("<title>400 Bad Request</title>"));
    }
}
