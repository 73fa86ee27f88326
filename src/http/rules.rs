//! Per-path rules (the config file's `[[rule]]` tables), compiled, and the settings
//! they give one request.
//!
//! A rule's glob (the syntax of `--immutable-pattern`, `*` crossing `/`) is matched
//! against the request path relative to the root, without its leading slash, and
//! against the forms that name the same resource, so that a rule reaches a directory,
//! its `index.html` and its listing whichever URL asks for them:
//!
//! | request             | forms matched                             |
//! |---------------------|-------------------------------------------|
//! | `/docs/a.txt`       | `docs/a.txt`, `docs/a.txt/`               |
//! | `/docs`             | `docs`, `docs/`                           |
//! | `/docs/`            | `docs`, `docs/`, `docs/index.html`        |
//! | `/docs/index.html`  | `docs/index.html`, `docs`, `docs/`        |
//! | `/`                 | `` (empty), `index.html`                  |
//!
//! So `docs/*` covers everything under `docs` and `/docs/` itself (`*` matches the
//! empty name), `docs` covers the directory (its redirect, index and listing) but not
//! the files in it, and `*.html` covers `/docs/` when it serves `docs/index.html`.
//! Rules are matched on the path alone, before anything is looked up: whether a path
//! needs a password must not depend on whether it exists (a 401 that only existing
//! files get would tell a stranger which ones exist).

use crate::http::resolve::{self, UrlPath};
use crate::http::status::Status;

/// A redirect a rule answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The `Location`, as written in the config.
    pub to: String,
    /// 301, 302, 307 or 308.
    pub status: Status,
}

/// One compiled `[[rule]]`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The glob, over the forms of the request path (module doc).
    pub pattern: glob::Pattern,
    /// Response headers (validated like `--header`).
    pub headers: Vec<(String, String)>,
    /// `Cache-Control` for files and listings.
    pub cache_control: Option<String>,
    /// Whether the path needs credentials.
    pub auth: Option<bool>,
    /// Answer with a redirect instead.
    pub redirect: Option<Redirect>,
}

/// What the rules matching one request set: later rules override earlier ones key by
/// key, and within `headers` name by name (case-insensitively).
#[derive(Debug, Clone, Default)]
pub struct Effective<'r> {
    /// Headers to send, replacing `-H` headers of the same name.
    pub headers: Vec<(&'r str, &'r str)>,
    /// `Cache-Control`, replacing `--cache-control` and `--immutable-pattern`.
    pub cache_control: Option<&'r str>,
    /// Credentials needed (`Some`) or the default applies (`None`).
    pub auth: Option<bool>,
    /// Redirect instead of serving.
    pub redirect: Option<&'r Redirect>,
}

/// The settings `rules` give the request path `url`.
pub fn resolve<'r>(rules: &'r [Rule], url: &UrlPath) -> Effective<'r> {
    let forms = forms(url);
    let mut eff = Effective::default();
    for rule in rules {
        if !forms.iter().any(|f| rule.pattern.matches(f)) {
            continue;
        }
        for (name, value) in &rule.headers {
            eff.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            eff.headers.push((name, value));
        }
        if let Some(cc) = &rule.cache_control {
            eff.cache_control = Some(cc);
        }
        if rule.auth.is_some() {
            eff.auth = rule.auth;
        }
        if let Some(r) = &rule.redirect {
            eff.redirect = Some(r);
        }
    }
    eff
}

/// The forms of `url` a rule may match (the table in the module doc).
pub fn forms(url: &UrlPath) -> Vec<String> {
    let rel: &str = &url.rel;
    let dir = if url.trailing_slash {
        Some(rel)
    } else if rel == "index.html" {
        Some("")
    } else {
        rel.strip_suffix("/index.html")
    };
    match dir {
        Some("") => vec![String::new(), "index.html".into()],
        Some(d) => vec![d.to_string(), format!("{d}/"), resolve::join(d, "index.html")],
        None => vec![rel.to_string(), format!("{rel}/")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(glob: &str, f: impl FnOnce(&mut Rule)) -> Rule {
        let mut r = Rule {
            pattern: glob::Pattern::new(glob).unwrap(),
            headers: Vec::new(),
            cache_control: None,
            auth: None,
            redirect: None,
        };
        f(&mut r);
        r
    }

    fn url(path: &str) -> UrlPath<'_> {
        resolve::decode(path).unwrap()
    }

    #[test]
    fn forms_name_the_directory_its_index_and_the_path() {
        let cases: &[(&str, &[&str])] = &[
            ("/docs/a.txt", &["docs/a.txt", "docs/a.txt/"]),
            ("/docs", &["docs", "docs/"]),
            ("/docs/", &["docs", "docs/", "docs/index.html"]),
            ("/docs/index.html", &["docs", "docs/", "docs/index.html"]),
            ("/", &["", "index.html"]),
            ("/index.html", &["", "index.html"]),
            ("/a/b/", &["a/b", "a/b/", "a/b/index.html"]),
            ("/docs/xindex.html", &["docs/xindex.html", "docs/xindex.html/"]),
        ];
        for (path, want) in cases {
            assert_eq!(forms(&url(path)), *want, "{path}");
        }
    }

    /// Which requests each glob reaches: the index.html and listing cases included.
    #[test]
    fn globs_reach_directories_their_index_and_listing() {
        let cases: &[(&str, &str, bool)] = &[
            ("docs/*", "/docs/a.txt", true),
            ("docs/*", "/docs/deep/b.txt", true),
            ("docs/*", "/docs/", true),
            ("docs/*", "/docs", true),
            ("docs/*", "/docs/index.html", true),
            ("docs/*", "/docsx/a.txt", false),
            ("docs", "/docs/", true),
            ("docs", "/docs/index.html", true),
            ("docs", "/docs/a.txt", false),
            ("*.html", "/docs/", true),
            ("*.html", "/", true),
            ("*.html", "/a.txt", false),
            ("docs/index.html", "/docs/", true),
            ("*", "/", true),
            ("*", "/x/y", true),
            ("*.txt", "/a.txt", true),
        ];
        for (glob, path, want) in cases {
            let rules = [rule(glob, |r| r.auth = Some(true))];
            let got = resolve(&rules, &url(path)).auth == Some(true);
            assert_eq!(got, *want, "rule {glob} on {path}");
        }
    }

    #[test]
    fn later_rules_override_key_by_key_and_header_by_header() {
        let rules = [
            rule("*", |r| {
                r.headers = vec![("X-A".into(), "1".into()), ("X-B".into(), "1".into())];
                r.cache_control = Some("max-age=60".into());
                r.auth = Some(true);
            }),
            rule("docs/*", |r| {
                r.headers = vec![("x-b".into(), "2".into())];
                r.auth = Some(false);
            }),
            rule("nomatch", |r| r.cache_control = Some("no-store".into())),
        ];
        let eff = resolve(&rules, &url("/docs/a.txt"));
        assert_eq!(eff.headers, [("X-A", "1"), ("x-b", "2")]);
        assert_eq!(eff.cache_control, Some("max-age=60"));
        assert_eq!(eff.auth, Some(false));
        assert!(eff.redirect.is_none());
        let eff = resolve(&rules, &url("/other"));
        assert_eq!(eff.auth, Some(true));
        assert_eq!(resolve(&[], &url("/x")).headers, []);
    }
}
