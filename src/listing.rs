//! Directory listings rendered from a list of entries: pure, no filesystem access
//! (entries come from `files::read_dir`).

use crate::clock::Civil;
use crate::files::{Entry, Kind};
use crate::resolve::SEGMENT;
use percent_encoding::utf8_percent_encode;

/// Sorts entries the way nginx's autoindex does: directories first, then by name.
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| (a.kind != Kind::Dir, &a.name).cmp(&(b.kind != Kind::Dir, &b.name)));
}

/// Appends `s` to `out` with HTML's special characters escaped.
pub fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Renders a sorted listing as HTML. `display_path` is the decoded directory path
/// (`/a/b/`), shown as the title; links are relative and percent-encoded.
pub fn render_html(display_path: &str, entries: &[Entry]) -> String {
    let mut out = String::with_capacity(512 + entries.len() * 160);
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width\"><title>Index of ");
    escape_html(display_path, &mut out);
    out.push_str("</title>\n<style>body{font-family:sans-serif}td{padding:0 1em 0 0}");
    out.push_str("td.n{text-align:right;font-variant-numeric:tabular-nums}</style></head>\n<body><h1>Index of ");
    escape_html(display_path, &mut out);
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
        escape_html(&e.name, &mut out);
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
    out.push_str("</table>\n<hr><address>");
    out.push_str(crate::wire::SERVER);
    out.push_str("</address></body></html>\n");
    out
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
        let html = render_html("/d/", &[entry("<script>alert(1)</script>", Kind::File, 5)]);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(
            html.contains("href=\"./%3Cscript%3Ealert(1)%3C%2Fscript%3E\""),
            "{html}"
        );
    }

    #[test]
    fn quotes_and_ampersands_cannot_break_out_of_attributes() {
        let html = render_html("/", &[entry("a\"b'c&d e", Kind::Dir, 0)]);
        assert!(html.contains("href=\"./a%22b%27c%26d%20e/\""), "{html}");
        assert!(html.contains(">a&quot;b&#39;c&amp;d e/<"), "{html}");
    }

    #[test]
    fn rows_show_size_and_mtime_and_parent_link_below_root() {
        let html = render_html("/sub/", &[entry("f.txt", Kind::File, 1234)]);
        assert!(html.contains("<a href=\"../\">../</a>"));
        assert!(
            html.contains("<td class=\"n\">1234</td><td>2026-11-26 07:57</td>"),
            "{html}"
        );
        assert!(!render_html("/", &[]).contains("../"));
    }

    #[test]
    fn title_is_escaped() {
        let html = render_html("/<b>/", &[]);
        assert!(html.contains("<title>Index of /&lt;b&gt;/</title>"));
    }
}
