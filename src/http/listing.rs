//! Directory listings rendered from a list of entries: pure, no filesystem access
//! (entries come from `files::dir::read_entries`).

use crate::clock::Civil;
use crate::http::html;
use crate::http::meta::{Entry, Kind};
use crate::http::resolve::SEGMENT;
use percent_encoding::utf8_percent_encode;

/// Sorts entries the way nginx's autoindex does: directories first, then by name.
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| (a.kind != Kind::Dir, &a.name).cmp(&(b.kind != Kind::Dir, &b.name)));
}

/// Renders a sorted listing as HTML. `display_path` is the decoded directory path
/// (`/a/b/`), shown as the title; links are relative and percent-encoded. `omitted`
/// entries past the listing limit are left out, and the page says so.
pub fn render_html(display_path: &str, entries: &[Entry], omitted: usize) -> String {
    let mut out = String::with_capacity(512 + entries.len() * 160);
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width\"><title>Index of ");
    html::escape(display_path, &mut out);
    out.push_str("</title>\n<style>body{font-family:sans-serif}td{padding:0 1em 0 0}");
    out.push_str("td.n{text-align:right;font-variant-numeric:tabular-nums}</style></head>\n<body><h1>Index of ");
    html::escape(display_path, &mut out);
    out.push_str("</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n");
    if display_path != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        let slash = if e.kind == Kind::Dir { "/" } else { "" };
        out.push_str("<tr><td><a href=\"./");
        out.extend(utf8_percent_encode(&e.name, SEGMENT));
        out.push_str(slash);
        out.push_str("\">");
        html::escape(&e.name, &mut out);
        out.push_str(slash);
        out.push_str("</a></td><td class=\"n\">");
        if e.kind == Kind::Dir {
            out.push('-');
        } else {
            out.push_str(&e.len.to_string());
        }
        out.push_str("</td><td>");
        out.push_str(&Civil::from_time(e.mtime).short());
        out.push_str("</td></tr>\n");
    }
    out.push_str("</table>\n");
    if omitted > 0 {
        out.push_str(&format!("<p>{omitted} more entries are not shown.</p>\n"));
    }
    out.push_str("<hr><address>");
    out.push_str(crate::http::html::SERVER);
    out.push_str("</address></body></html>\n");
    out
}

/// A listing's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// An HTML page.
    Html,
    /// A JSON array (see [`render_json`]).
    Json,
}

impl Format {
    /// The `Content-Type` of a listing in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// The format a directory request asks for (see [`wants_json`]).
pub fn format(accept: Option<&str>, query: Option<&str>) -> Format {
    if wants_json(accept, query) {
        Format::Json
    } else {
        Format::Html
    }
}

/// Sorts `entries` and renders the listing of the directory `rel` (relative to the
/// root) in `format`; `omitted` entries past the cap are mentioned in HTML.
pub fn render(format: Format, rel: &str, entries: &mut [Entry], omitted: usize) -> String {
    sort(entries);
    match format {
        Format::Json => render_json(entries),
        Format::Html if rel.is_empty() => render_html("/", entries, omitted),
        Format::Html => render_html(&format!("/{rel}/"), entries, omitted),
    }
}

/// Whether a directory request asks for JSON: `?format=json`, or an `Accept` header
/// that names `application/json` (with a non-zero q) and does not prefer HTML.
pub fn wants_json(accept: Option<&str>, query: Option<&str>) -> bool {
    if let Some(q) = query {
        if let Some(v) = q.split('&').find_map(|kv| kv.strip_prefix("format=")) {
            return v == "json";
        }
    }
    let Some(accept) = accept else { return false };
    let q_of = |media: &str| {
        accept.split(',').find_map(|item| {
            let mut parts = item.split(';').map(str::trim);
            if !parts.next()?.eq_ignore_ascii_case(media) {
                return None;
            }
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .map_or(Some(1.0), |q| q.parse::<f32>().ok());
            Some(q.unwrap_or(0.0))
        })
    };
    let json = q_of("application/json").unwrap_or(0.0);
    json > 0.0 && json >= q_of("text/html").unwrap_or(0.0)
}

/// Renders a sorted listing as a JSON array of `{name, type, size, modified}`, where
/// `type` is `file`, `dir` or `symlink` and `modified` is RFC 3339 UTC.
pub fn render_json(entries: &[Entry]) -> String {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        name: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        size: u64,
        modified: String,
    }
    let items: Vec<Item> = entries
        .iter()
        .map(|e| Item {
            name: &e.name,
            kind: match (e.symlink, e.kind) {
                (true, _) => "symlink",
                (false, Kind::Dir) => "dir",
                (false, _) => "file",
            },
            size: e.len,
            modified: Civil::from_time(e.mtime).rfc3339(),
        })
        .collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn entry(name: &str, kind: Kind, len: u64) -> Entry {
        let mtime = UNIX_EPOCH + Duration::from_secs(1_795_679_849);
        Entry {
            name: name.into(),
            kind,
            symlink: false,
            len,
            mtime,
        }
    }

    #[test]
    fn directories_sort_first_then_names() {
        let mut v = vec![
            entry("b", Kind::File, 1),
            entry("z", Kind::Dir, 0),
            entry("a", Kind::File, 1),
            entry("c", Kind::Dir, 0),
        ];
        sort(&mut v);
        let names: Vec<_> = v.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c", "z", "a", "b"]);
    }

    #[test]
    fn script_in_a_filename_is_escaped_in_text_and_encoded_in_links() {
        let html = render_html("/d/", &[entry("<script>alert(1)</script>", Kind::File, 5)], 0);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(
            html.contains("href=\"./%3Cscript%3Ealert(1)%3C%2Fscript%3E\""),
            "{html}"
        );
    }

    #[test]
    fn quotes_and_ampersands_cannot_break_out_of_attributes() {
        let html = render_html("/", &[entry("a\"b'c&d e", Kind::Dir, 0)], 0);
        assert!(html.contains("href=\"./a%22b%27c%26d%20e/\""), "{html}");
        assert!(html.contains(">a&quot;b&#39;c&amp;d e/<"), "{html}");
    }

    #[test]
    fn rows_show_size_and_mtime_and_parent_link_below_root() {
        let html = render_html("/sub/", &[entry("f.txt", Kind::File, 1234)], 0);
        assert!(html.contains("<a href=\"../\">../</a>"));
        assert!(
            html.contains("<td class=\"n\">1234</td><td>2026-11-26 07:57</td>"),
            "{html}"
        );
        assert!(!render_html("/", &[], 0).contains("../"));
    }

    #[test]
    fn json_listing_has_names_types_sizes_and_rfc3339_times() {
        let mut link = entry("l", Kind::File, 3);
        link.symlink = true;
        let json = render_json(&[entry("d", Kind::Dir, 0), entry("f\"<", Kind::File, 7), link]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[0]["type"], "dir");
        assert_eq!(v[1]["name"], "f\"<");
        assert_eq!(v[1]["size"], 7);
        assert_eq!(v[1]["modified"], "2026-11-26T07:57:29Z");
        assert_eq!(v[2]["type"], "symlink");
    }

    #[test]
    fn json_is_chosen_by_query_or_accept() {
        let cases = [
            (None, Some("format=json"), true),
            (None, Some("a=1&format=json"), true),
            (Some("application/json"), Some("format=html"), false),
            (Some("application/json"), None, true),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                None,
                false,
            ),
            (Some("application/json;q=0.5, text/html"), None, false),
            (Some("application/json;q=0"), None, false),
            (None, None, false),
        ];
        for (accept, query, want) in cases {
            assert_eq!(wants_json(accept, query), want, "{accept:?} {query:?}");
        }
    }

    #[test]
    fn title_is_escaped() {
        let html = render_html("/<b>/", &[], 0);
        assert!(html.contains("<title>Index of /&lt;b&gt;/</title>"));
    }
}
