//! The HTML the server writes itself: escaping, and the small page sent with an
//! error status. (Listings are in `listing`.)

use crate::http::status::Status;

/// `Server` header value, also signed at the foot of generated pages.
pub const SERVER: &str = concat!("threadserve/", env!("CARGO_PKG_VERSION"));

/// Appends `s` to `out` with HTML's special characters escaped.
pub fn escape(s: &str, out: &mut String) {
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

/// The small HTML page sent with an error status.
pub fn error_page(status: Status, message: &str) -> String {
    let title = format!("{} {}", status.code(), status.reason());
    let mut page = String::with_capacity(200);
    page.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    page.push_str(&title);
    page.push_str("</title></head>\n<body><h1>");
    page.push_str(&title);
    page.push_str("</h1>\n<p>");
    escape(message, &mut page);
    page.push_str("</p>\n<hr><address>");
    page.push_str(SERVER);
    page.push_str("</address></body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_page_escapes_its_message() {
        let page = error_page(Status::BadRequest, "<script>");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("<title>400 Bad Request</title>"));
    }
}
