//! Request path → path relative to the root, as a pure function.
//!
//! In scope: percent-decoding (once), rejecting bytes that cannot name a file safely,
//! normalising `.` and `..` without ever leaving the root, and noting dot-segments.
//! Out of scope: the filesystem (symlinks are checked where files are opened, in
//! `files`).

use std::borrow::Cow;

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, CONTROLS};

/// A decoded request path, safe to join under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPath<'a> {
    /// Segments joined with `/`, no leading slash, no empty, `.` or `..` segments.
    /// Empty for the root itself. Borrowed from the request path when that is
    /// already normal (the common case), so decoding it allocates nothing.
    pub rel: Cow<'a, str>,
    /// The request path ended with `/` (a directory is wanted).
    pub trailing_slash: bool,
    /// Some segment starts with `.` (a dotfile or dot-directory).
    pub hidden: bool,
}

/// Why a path was refused; every case answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// A decoded NUL byte.
    Nul,
    /// `%2F` or a backslash inside a segment, which would change the path's meaning.
    EncodedSlash,
    /// `..` would climb above the root.
    EscapesRoot,
    /// The path does not start with `/`.
    NotAbsolute,
}

impl PathError {
    /// A short message for the 400 page.
    pub fn message(self) -> &'static str {
        match self {
            PathError::BadPercent => "The path has an invalid percent-escape.",
            PathError::NotUtf8 => "The path is not valid UTF-8.",
            PathError::Nul => "The path contains a NUL byte.",
            PathError::EncodedSlash => "The path contains an encoded slash or a backslash.",
            PathError::EscapesRoot => "The path climbs above the root.",
            PathError::NotAbsolute => "The path must start with '/'.",
        }
    }
}

/// Decodes a still-encoded request path (no query) into a [`UrlPath`].
///
/// The path is split on `/` first and each segment decoded once, so `%2e%2e` is `..`
/// (and normalised like it) while `%252e` stays the literal name `%2e`.
pub fn decode(raw: &str) -> Result<UrlPath<'_>, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    match decode_plain(rest) {
        Some(url) => Ok(url),
        None => decode_segments(rest),
    }
}

/// [`decode`] of any path (after its leading `/`), one segment at a time.
fn decode_segments(rest: &str) -> Result<UrlPath<'_>, PathError> {
    let mut rel = String::with_capacity(rest.len());
    let mut trailing_slash = false;
    for segment in rest.split('/') {
        let decoded = decode_segment(segment)?;
        // `/a/..` and `/a/.` name a directory, like `/a/`.
        trailing_slash |= decoded == "." || decoded == "..";
        match &*decoded {
            "" | "." => {}
            ".." => {
                let cut = rel.rfind('/').unwrap_or(0);
                if rel.is_empty() {
                    return Err(PathError::EscapesRoot);
                }
                rel.truncate(cut);
            }
            name => {
                if !rel.is_empty() {
                    rel.push('/');
                }
                rel.push_str(name);
                trailing_slash = false;
            }
        }
    }
    trailing_slash |= rest.is_empty() || rest.ends_with('/');
    let hidden = rel.split('/').any(|s| s.starts_with('.'));
    Ok(UrlPath {
        rel: Cow::Owned(rel),
        trailing_slash,
        hidden,
    })
}

/// The common case, without allocating: a path already normal (no
/// `%`, backslash or NUL; no empty, `.` or `..` segment, except the empty one a
/// trailing `/` leaves) decodes to itself without its slashes at the ends. `None`
/// for anything else, which [`decode`] handles segment by segment.
fn decode_plain(rest: &str) -> Option<UrlPath<'_>> {
    if rest.bytes().any(|b| matches!(b, b'%' | b'\\' | 0)) {
        return None;
    }
    let trailing_slash = rest.is_empty() || rest.ends_with('/');
    let rel = rest.strip_suffix('/').unwrap_or(rest);
    let mut hidden = false;
    if !rel.is_empty() {
        for segment in rel.split('/') {
            if matches!(segment, "" | "." | "..") {
                return None;
            }
            hidden |= segment.starts_with('.');
        }
    }
    Some(UrlPath {
        rel: Cow::Borrowed(rel),
        trailing_slash,
        hidden,
    })
}

fn decode_segment(segment: &str) -> Result<Cow<'_, str>, PathError> {
    if !segment.bytes().any(|b| matches!(b, b'%' | b'/' | b'\\' | 0)) {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadPercent)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(PathError::BadPercent);
            }
        }
    }
    let decoded: Vec<u8> = percent_decode(bytes).collect();
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    if decoded.iter().any(|&b| b == b'/' || b == b'\\') {
        return Err(PathError::EncodedSlash);
    }
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| PathError::NotUtf8)
}

/// Characters escaped in one path segment of a URL threadserve writes (Location,
/// listing links): controls, space and everything with meaning in a URL or in HTML.
pub const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The relative path of `name` inside the relative directory `dir` (`""`: the root).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Encodes a relative path (segments joined by `/`) back into a URL path with a
/// leading `/`. Used to build redirects from the *normalised* path, so a request for
/// `//evil.example` can never produce an off-site `Location`.
pub fn encode(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len() + 1);
    for segment in rel.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.extend(utf8_percent_encode(segment, SEGMENT));
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rel: &str, trailing_slash: bool, hidden: bool) -> Result<UrlPath<'_>, PathError> {
        Ok(UrlPath {
            rel: rel.into(),
            trailing_slash,
            hidden,
        })
    }

    #[test]
    fn table() {
        use PathError::*;
        let cases = [
            ("root_is_empty_rel_with_slash", "/", ok("", true, false)),
            ("plain_file", "/a/b.txt", ok("a/b.txt", false, false)),
            ("directory_keeps_trailing_slash", "/a/", ok("a", true, false)),
            ("percent_decodes_once", "/a%20b", ok("a b", false, false)),
            (
                "double_encoding_stays_literal",
                "/%252e%252e/x",
                ok("%2e%2e/x", false, false),
            ),
            ("utf8_names_decode", "/%C3%A9t%C3%A9", ok("été", false, false)),
            ("dot_segments_vanish", "/a/./b", ok("a/b", false, false)),
            ("dotdot_inside_root_normalises", "/a/b/../c", ok("a/c", false, false)),
            ("dotdot_last_means_directory", "/a/b/..", ok("a", true, false)),
            ("empty_segments_collapse", "//a///b", ok("a/b", false, false)),
            ("dotfile_is_marked_hidden", "/a/.env", ok("a/.env", false, true)),
            (
                "dot_directory_is_marked_hidden",
                "/.git/config",
                ok(".git/config", false, true),
            ),
            ("dotdot_past_root_is_refused", "/../etc/passwd", Err(EscapesRoot)),
            (
                "encoded_dotdot_past_root_is_refused",
                "/%2e%2e/etc/passwd",
                Err(EscapesRoot),
            ),
            (
                "mixed_case_encoded_dotdot_is_refused",
                "/a/%2E%2e/../x",
                Err(EscapesRoot),
            ),
            ("encoded_slash_is_refused", "/..%2fetc", Err(EncodedSlash)),
            ("encoded_backslash_is_refused", "/a%5cb", Err(EncodedSlash)),
            ("raw_backslash_is_refused", "/a\\..\\b", Err(EncodedSlash)),
            ("encoded_nul_is_refused", "/a%00.txt", Err(Nul)),
            ("invalid_utf8_is_refused", "/%ff%fe", Err(NotUtf8)),
            ("truncated_percent_is_refused", "/a%2", Err(BadPercent)),
            ("non_hex_percent_is_refused", "/a%zz", Err(BadPercent)),
            ("relative_path_is_refused", "a/b", Err(NotAbsolute)),
        ];
        for (name, input, want) in cases {
            assert_eq!(decode(input), want, "{name}");
        }
    }

    #[test]
    fn plain_paths_decode_as_the_general_way_does() {
        let paths = [
            "",
            "a",
            "a/",
            "a/b.txt",
            "a/b/",
            ".env",
            "a/.git/config",
            "a/b/.",
            "a/./b",
            "a/../b",
            "..",
            "a//b",
            "a//",
            "/",
            "//",
            "été/x",
            "a b",
            "a\\b",
            "a%20b",
            "~x/y-z_1.tar.gz",
        ];
        for rest in paths {
            if let Some(plain) = decode_plain(rest) {
                assert!(matches!(plain.rel, Cow::Borrowed(_)), "{rest:?}");
                assert_eq!(Ok(plain), decode_segments(rest), "{rest:?}");
            }
        }
        assert!(decode_plain("a/b.txt").is_some() && decode_plain("a/").is_some() && decode_plain("").is_some());
        assert!(decode_plain("a/../b").is_none() && decode_plain("a%20b").is_none() && decode_plain("a//b").is_none());
    }

    #[test]
    fn encode_escapes_and_normalises() {
        assert_eq!(encode(""), "/");
        assert_eq!(encode("a b/<c>"), "/a%20b/%3Cc%3E");
        assert_eq!(encode("été?#"), "/%C3%A9t%C3%A9%3F%23");
        // A normalised path never starts with two slashes, so no protocol-relative URL.
        assert_eq!(encode(&decode("//evil.example/").unwrap().rel), "/evil.example");
    }

    #[test]
    fn decode_then_encode_round_trips() {
        for name in ["a b", "%2e", "été", "x?y#z", "q&a'\"<>"] {
            let encoded = encode(name);
            assert_eq!(decode(&encoded).unwrap().rel, name);
        }
    }
}
