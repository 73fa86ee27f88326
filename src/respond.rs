//! Response planning: pure decisions from a parsed request (and file metadata) to a
//! [`Plan`]. No sockets, no file handles, no bodies: the engine executes plans.
//!
//! In scope: which methods and framings are accepted, what a directory request turns
//! into, and the headers of a file response. Out of scope: reading files and
//! directories, writing bytes (see `server`).

use crate::files::{Kind, Meta};
use crate::head::{Body, Head};
use crate::resolve::{self, UrlPath};
use crate::status::Status;

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The whole file, 200.
    Full {
        /// Body length.
        len: u64,
    },
    /// 301 to the directory's slash form.
    Redirect {
        /// Target of the `Location` header (normalised path, slash, original query).
        location: String,
    },
    /// An HTML listing of the directory.
    Listing,
    /// An error page.
    Error(Refusal),
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

/// Checks method and body framing before anything else.
///
/// threadserve reads no request bodies, so a request announcing one is answered and the
/// connection closed: the unread body can never be parsed as a following request.
/// Order: a body on a method we do not serve is a 405 (the more useful message);
/// `Transfer-Encoding` on GET/HEAD is 411 (we only accept length-delimited requests,
/// and only of length 0); a non-zero `Content-Length` on GET/HEAD is 413.
pub fn check_request(head: &Head) -> Result<(), Refusal> {
    let has_body = head.body() != Body::None;
    if !head.is_get_or_head() {
        let message = "Only GET and HEAD are allowed.";
        return Err(Refusal {
            status: Status::MethodNotAllowed,
            message,
            close: has_body,
        });
    }
    match head.body() {
        Body::None => Ok(()),
        Body::Encoded => Err(Refusal::close(
            Status::LengthRequired,
            "Request bodies are not accepted.",
        )),
        Body::Length(_) => Err(Refusal::close(
            Status::ContentTooLarge,
            "Request bodies are not accepted.",
        )),
    }
}

/// Decides what a path that resolved to a directory turns into.
///
/// `index` is the metadata of the directory's `index.html`, if it exists. Without a
/// trailing slash the answer is a 301 to the slash form (query kept), so relative links
/// in the page resolve; then `index.html`; then a listing, or 404 with `--no-listing`.
pub fn plan_directory(url: &UrlPath, query: Option<&str>, index: Option<&Meta>, listing: bool) -> Plan {
    if !url.trailing_slash {
        let mut location = resolve::encode(&url.rel);
        if !url.rel.is_empty() {
            location.push('/');
        }
        if let Some(q) = query {
            location.push('?');
            location.push_str(q);
        }
        return Plan::Redirect { location };
    }
    match index {
        Some(meta) if meta.kind == Kind::File => Plan::Full { len: meta.len },
        _ if listing => Plan::Listing,
        _ => Plan::Error(NOT_FOUND),
    }
}

/// Plans the response for a path that resolved to `meta`.
pub fn plan_file(url: &UrlPath, meta: &Meta) -> Plan {
    match meta.kind {
        // `/file.txt/` names no directory: 404 like nginx.
        Kind::File if url.trailing_slash => Plan::Error(NOT_FOUND),
        Kind::File => Plan::Full { len: meta.len },
        Kind::Other => Plan::Error(FORBIDDEN),
        Kind::Dir => Plan::Error(NOT_FOUND),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn head(method: &'static str, body: Option<Body>) -> Head<'static> {
        Head {
            method,
            target: "/",
            version: 1,
            framing: body,
            ..Head::default()
        }
    }

    #[test]
    fn request_checks() {
        let cases = [
            ("get_is_served", head("GET", None), None),
            ("head_is_served", head("HEAD", None), None),
            ("zero_length_body_is_fine", head("GET", Some(Body::None)), None),
            (
                "post_is_405_and_keeps_the_connection_without_body",
                head("POST", None),
                Some((405, false)),
            ),
            (
                "post_with_body_is_405_and_closes",
                head("POST", Some(Body::Length(3))),
                Some((405, true)),
            ),
            (
                "get_with_chunked_body_is_411_and_closes",
                head("GET", Some(Body::Encoded)),
                Some((411, true)),
            ),
            (
                "get_with_length_body_is_413_and_closes",
                head("GET", Some(Body::Length(1))),
                Some((413, true)),
            ),
            ("trace_is_405", head("TRACE", None), Some((405, false))),
            ("lowercase_get_is_not_get", head("get", None), Some((405, false))),
        ];
        for (name, h, want) in cases {
            let got = check_request(&h).err().map(|r| (r.status.code(), r.close));
            assert_eq!(got, want, "{name}");
        }
    }

    fn url(rel: &str, trailing_slash: bool) -> UrlPath {
        UrlPath {
            rel: rel.into(),
            trailing_slash,
            hidden: false,
        }
    }

    fn meta(kind: Kind, len: u64) -> Meta {
        Meta::new(len, UNIX_EPOCH, 1, kind)
    }

    #[test]
    fn directory_plans() {
        let index = meta(Kind::File, 42);
        let redirect = |l: &str| Plan::Redirect { location: l.into() };
        let cases = [
            (
                "dir_without_slash_redirects",
                plan_directory(&url("a b", false), None, None, true),
                redirect("/a%20b/"),
            ),
            (
                "redirect_keeps_query",
                plan_directory(&url("a", false), Some("x=1"), None, true),
                redirect("/a/?x=1"),
            ),
            (
                "index_html_is_served",
                plan_directory(&url("a", true), None, Some(&index), true),
                Plan::Full { len: 42 },
            ),
            (
                "index_dir_is_not_served",
                plan_directory(&url("a", true), None, Some(&meta(Kind::Dir, 0)), true),
                Plan::Listing,
            ),
            (
                "no_index_lists",
                plan_directory(&url("a", true), None, None, true),
                Plan::Listing,
            ),
            (
                "no_listing_is_404",
                plan_directory(&url("a", true), None, None, false),
                Plan::Error(NOT_FOUND),
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn file_plans() {
        assert_eq!(plan_file(&url("f", false), &meta(Kind::File, 7)), Plan::Full { len: 7 });
        assert_eq!(plan_file(&url("f", true), &meta(Kind::File, 7)), Plan::Error(NOT_FOUND));
        assert_eq!(
            plan_file(&url("fifo", false), &meta(Kind::Other, 0)),
            Plan::Error(FORBIDDEN)
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/index.html"), ("text/html", true));
        assert!(content_type("app.js").1);
        assert_eq!(content_type("img.png"), ("image/png", false));
        assert_eq!(content_type("noext"), ("application/octet-stream", false));
    }
}
