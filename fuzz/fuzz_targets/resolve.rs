//! `resolve::decode` on arbitrary strings. Invariant: an accepted path is safe to join
//! under the root: no `..`, `.` or empty segment, no leading `/`, no NUL, no backslash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use threadserve::http::resolve;

fuzz_target!(|raw: &str| {
    if let Ok(url) = resolve::decode(raw) {
        let rel = &url.rel;
        assert!(!rel.starts_with('/'), "{raw:?} -> {rel:?}");
        assert!(!rel.contains('\0') && !rel.contains('\\'), "{raw:?} -> {rel:?}");
        // `a..b` is a legal file name; only a whole `..` (or `.`, or empty) segment is not.
        if !rel.is_empty() {
            assert!(
                rel.split('/').all(|s| !matches!(s, "" | "." | "..")),
                "{raw:?} -> {rel:?}"
            );
        }
    }
});
