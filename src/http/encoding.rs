//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3) for precompressed files.
//!
//! Next to `style.css` the server may find `style.css.br`, `style.css.zst` or
//! `style.css.gz`, and sends one of those when the client accepts that coding;
//! otherwise it may compress a [`compressible`] type itself. This module decides
//! which codings the client accepts ([`ranked`]: highest q-value first, then the
//! server's order) and which types are worth compressing.
//!
//! In scope: parsing `Accept-Encoding`. Out of scope: checking which sibling
//! files exist (the planner asks its site),
//! `Vary`, and `Content-Encoding` headers. This module does no I/O.
//!
//! Parsing choices where the RFC leaves room:
//!
//! - No header: the client states no preference; we send identity, the only
//!   coding every client decodes. An empty header means "no coding" (RFC).
//! - A coding listed explicitly is judged by its own q-value and `*` does not
//!   apply to it; `x-gzip` counts as `gzip` (RFC 9110 §8.4.1.3).
//! - A coding listed more than once is refused if any listing has `q=0`:
//!   wrongly refusing costs bytes, wrongly accepting breaks the client.
//! - A malformed item (bad q-value such as `q=2` or `q=0.5555`, a parameter
//!   without `=`, a coding that is not a token) is skipped as if absent, so a
//!   broken header falls back to identity. Parameters other than `q` are
//!   ignored; quoted parameter values are not supported (none is defined).
//! - Coding names and the `q` name are case-insensitive; OWS is allowed
//!   around `,`, `;` and `=`.

/// A content coding the server may find precompressed on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Brotli (`br`, RFC 7932).
    Brotli,
    /// Zstandard (`zstd`, RFC 8878).
    Zstd,
    /// Gzip (`gzip`, RFC 1952).
    Gzip,
}

impl Encoding {
    /// Suffix of the precompressed sibling file: `.br`, `.zst` or `.gz`.
    pub fn ext(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }

    /// Content-coding token for `Content-Encoding`: `br`, `zstd` or `gzip`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The level the server compresses with on the fly (see `limits::GZIP_LEVEL`).
    pub fn level(self) -> i32 {
        match self {
            Encoding::Brotli => crate::limits::BROTLI_QUALITY as i32,
            Encoding::Zstd => crate::limits::ZSTD_LEVEL,
            Encoding::Gzip => crate::limits::GZIP_LEVEL as i32,
        }
    }

    /// Every name a client may use for this coding in `Accept-Encoding`.
    fn names(self) -> &'static [&'static str] {
        match self {
            Encoding::Brotli => &["br"],
            Encoding::Zstd => &["zstd"],
            Encoding::Gzip => &["gzip", "x-gzip"],
        }
    }
}

/// The server's preference: brotli, then zstd, then gzip (smallest output
/// first for typical web text). The engine sends the first coding in this
/// order that the client accepts and that exists on disk.
pub fn preference_order() -> [Encoding; 3] {
    [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip]
}

/// Which of the precompressed codings a client accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acceptable {
    /// `br` is acceptable.
    pub brotli: bool,
    /// `zstd` is acceptable.
    pub zstd: bool,
    /// `gzip` (or `x-gzip`) is acceptable.
    pub gzip: bool,
}

impl Acceptable {
    /// Whether `encoding` is acceptable.
    pub fn accepts(self, encoding: Encoding) -> bool {
        match encoding {
            Encoding::Brotli => self.brotli,
            Encoding::Zstd => self.zstd,
            Encoding::Gzip => self.gzip,
        }
    }
}

/// Which of br/zstd/gzip the client accepts, from its `Accept-Encoding`
/// value (`None` if the header is absent).
///
/// A coding is acceptable if it is listed (under any of its names) and no
/// listing gives it `q=0`; or, if it is not listed, when `*` is listed and no
/// listing of `*` has `q=0`. See the module docs for the other choices.
pub fn acceptable(accept_encoding: Option<&str>) -> Acceptable {
    Accepted::read(accept_encoding).acceptable()
}

/// Whether the client refuses an unencoded response (RFC 9110 §12.5.3):
/// `identity;q=0`, or `*;q=0` with no listing of `identity`. When this is
/// true and no acceptable precompressed file exists, RFC 9110 §12.5.3 lets
/// the engine answer `406 Not Acceptable` or send identity anyway; that
/// choice is the engine's.
pub fn identity_refused(accept_encoding: Option<&str>) -> bool {
    Accepted::read(accept_encoding).identity_refused()
}

/// The codings a client accepts, best first: highest q-value first, and among equal
/// q-values the server's [`preference_order`] (br, zstd, gzip). A coding's q-value
/// is the lowest of its listings, or `*`'s when it is not listed (the same rule as
/// [`acceptable`]); q=0 means refused, and refused codings are left out.
pub fn ranked(accept_encoding: Option<&str>) -> Vec<Encoding> {
    Accepted::read(accept_encoding).ranked()
}

/// Slots of [`Accepted`] after the three codings' ([`Accepted::slot`]).
const IDENTITY: usize = 3;
const ANY: usize = 4;

/// What one pass over an `Accept-Encoding` value finds: for br, zstd, gzip (under
/// any of its names), `identity` and `*`, the lowest q-value (thousandths) of their
/// well-formed listings, `None` if not listed (all of them when there is no header).
/// Every question the planner asks of the header is answered from this, read once
/// per request; asking each by its own passes over the header (two per coding) cost
/// 7% of the CPU of a 1 KiB request carrying a browser's `Accept-Encoding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted([Option<u16>; 5]);

impl Accepted {
    /// Reads an `Accept-Encoding` value (`None` if the header is absent).
    pub fn read(accept_encoding: Option<&str>) -> Accepted {
        let mut listed = Accepted::default();
        for (coding, q) in items(accept_encoding.unwrap_or_default()) {
            let slot = (preference_order().into_iter())
                .find(|e| e.names().iter().any(|n| coding.eq_ignore_ascii_case(n)))
                .map(Accepted::slot)
                .or_else(|| coding.eq_ignore_ascii_case("identity").then_some(IDENTITY))
                .or_else(|| (coding == "*").then_some(ANY));
            if let Some(slot) = slot {
                listed.0[slot] = Some(listed.0[slot].map_or(q, |lowest| lowest.min(q)));
            }
        }
        listed
    }

    fn slot(e: Encoding) -> usize {
        e as usize
    }

    /// See [`acceptable`].
    pub fn acceptable(self) -> Acceptable {
        let ok = |e: Encoding| self.judged(Accepted::slot(e)).is_some_and(|q| q > 0);
        Acceptable {
            brotli: ok(Encoding::Brotli),
            zstd: ok(Encoding::Zstd),
            gzip: ok(Encoding::Gzip),
        }
    }

    /// See [`identity_refused`].
    pub fn identity_refused(self) -> bool {
        self.judged(IDENTITY).is_some_and(|q| q == 0)
    }

    /// See [`ranked`].
    pub fn ranked(self) -> Vec<Encoding> {
        let mut ranked: Vec<(Encoding, u16)> = preference_order()
            .into_iter()
            .filter_map(|e| {
                let q = self.judged(Accepted::slot(e))?;
                (q > 0).then_some((e, q))
            })
            .collect();
        // A stable sort keeps the server's order among equal q-values.
        ranked.sort_by_key(|&(_, q)| std::cmp::Reverse(q));
        ranked.into_iter().map(|(e, _)| e).collect()
    }

    /// The q-value that judges the coding in `slot`: its own lowest listing, or `*`'s
    /// when it is not listed (the module doc's rule); `None` if neither is listed.
    fn judged(self, slot: usize) -> Option<u16> {
        self.0[slot].or(self.0[ANY])
    }
}

/// The lowest q-value (thousandths) of the well-formed items naming one of `names`
/// (the reference [`Accepted`] is checked against).
#[cfg(test)]
fn q_value(header: &str, names: &[&str]) -> Option<u16> {
    items(header)
        .filter(|(coding, _)| names.iter().any(|n| coding.eq_ignore_ascii_case(n)))
        .map(|(_, q)| q)
        .min()
}

/// Whether a media type is worth compressing: text, and the structured and font
/// types that are text or uncompressed binary (JavaScript, JSON, XML, SVG,
/// WebAssembly, TrueType/OpenType, ICO, ...). Never images, audio, video, archives,
/// WOFF/WOFF2 or other already-compressed types.
pub fn compressible(mime: &str) -> bool {
    let mime = mime.split(';').next().unwrap_or(mime).trim();
    if mime.starts_with("text/") {
        return true;
    }
    if mime.ends_with("+json") || mime.ends_with("+xml") {
        return true;
    }
    matches!(
        mime,
        "application/javascript"
            | "application/x-javascript"
            | "application/ecmascript"
            | "application/json"
            | "application/ld+json"
            | "application/manifest+json"
            | "application/xml"
            | "application/wasm"
            | "application/x-sh"
            | "application/x-tex"
            | "application/toml"
            | "application/yaml"
            | "application/x-yaml"
            | "application/vnd.ms-fontobject"
            | "application/x-font-ttf"
            | "application/x-font-opentype"
            | "font/ttf"
            | "font/otf"
            | "font/collection"
            | "image/svg+xml"
            | "image/x-icon"
            | "image/vnd.microsoft.icon"
            | "image/bmp"
    )
}

/// `None` if no well-formed item names one of `names`; otherwise whether all
/// such items have a q-value above zero (the reference [`Accepted`] is checked
/// against).
#[cfg(test)]
fn verdict(header: &str, names: &[&str]) -> Option<bool> {
    items(header)
        .filter(|(coding, _)| names.iter().any(|n| coding.eq_ignore_ascii_case(n)))
        .fold(None, |acc, (_, q)| Some(acc.unwrap_or(true) && q > 0))
}

/// The well-formed items of an `Accept-Encoding` value as (coding, q in
/// thousandths). Empty and malformed items are skipped.
fn items(header: &str) -> impl Iterator<Item = (&str, u16)> {
    header.split(',').filter_map(parse_item)
}

/// Optional whitespace (RFC 9110 §5.6.3): spaces and horizontal tabs.
const OWS: [char; 2] = [' ', '\t'];

/// Parses `codings *( OWS ";" OWS name "=" value )`; `None` if malformed or empty.
fn parse_item(item: &str) -> Option<(&str, u16)> {
    let mut parts = item.split(';');
    let coding = parts.next()?.trim_matches(OWS);
    if coding.is_empty() || !coding.bytes().all(is_tchar) {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let (name, value) = param.split_once('=')?;
        if name.trim_matches(OWS).eq_ignore_ascii_case("q") {
            q = parse_qvalue(value.trim_matches(OWS))?;
        }
    }
    Some((coding, q))
}

/// Parses `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`
/// (RFC 9110 §12.4.2) into thousandths.
fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The one-pass answers agree with asking the header item by item, for
        /// headers made of the names that matter, odd cases, q-values and junk.
        #[test]
        fn one_pass_agrees_with_the_item_by_item_reading(
            items in proptest::collection::vec(
                ("(br|BR|zstd|gzip|x-gzip|GZip|identity|\\*|deflate|compress|b r|)",
                 "(|;q=0|;q=1|;q=0.5|;q=0.001|;Q=0.0|;q=2|;q=1.000|;q|;level=1| ; q = 0.3)"),
                0..6),
            sep in "(,|, | ,|,,)",
        ) {
            let header: String = items.iter().map(|(c, q)| format!("{c}{q}")).collect::<Vec<_>>().join(&sep);
            let listed = super::Accepted::read(Some(&header));
            for e in super::preference_order() {
                let by_items = super::q_value(&header, e.names()).or_else(|| super::q_value(&header, &["*"]));
                prop_assert_eq!(listed.judged(super::Accepted::slot(e)), by_items, "{:?} in {:?}", e, header);
                let verdict = super::verdict(&header, e.names()).or_else(|| super::verdict(&header, &["*"]));
                prop_assert_eq!(super::acceptable(Some(&header)).accepts(e), verdict.unwrap_or(false));
            }
            let identity = super::verdict(&header, &["identity"]).or_else(|| super::verdict(&header, &["*"]));
            prop_assert_eq!(super::identity_refused(Some(&header)), identity == Some(false));
        }
    }

    #[test]
    fn ranked_by_q_then_server_preference() {
        use super::{ranked, Encoding::*};
        let cases: &[(Option<&str>, &[super::Encoding])] = &[
            (None, &[]),
            (Some(""), &[]),
            (Some("gzip, deflate, br, zstd"), &[Brotli, Zstd, Gzip]),
            (Some("gzip"), &[Gzip]),
            (Some("gzip;q=1, br;q=0.5"), &[Gzip, Brotli]),
            (Some("br;q=0.5, zstd;q=0.5, gzip;q=0.9"), &[Gzip, Brotli, Zstd]),
            (Some("*"), &[Brotli, Zstd, Gzip]),
            (Some("*;q=0.1, gzip"), &[Gzip, Brotli, Zstd]),
            (Some("br;q=0, *"), &[Zstd, Gzip]),
            (Some("gzip, gzip;q=0"), &[]),
            (Some("x-gzip"), &[Gzip]),
            (Some("identity"), &[]),
        ];
        for (header, want) in cases {
            assert_eq!(ranked(*header), *want, "{header:?}");
        }
    }

    #[test]
    fn compressible_types() {
        use super::compressible;
        for t in [
            "text/html",
            "text/css",
            "text/plain; charset=utf-8",
            "text/javascript",
            "application/javascript",
            "application/json",
            "application/geo+json",
            "application/xml",
            "application/atom+xml",
            "image/svg+xml",
            "application/wasm",
            "font/ttf",
            "font/otf",
            "application/vnd.ms-fontobject",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in [
            "image/png",
            "image/jpeg",
            "image/webp",
            "image/avif",
            "audio/mpeg",
            "video/mp4",
            "application/zip",
            "application/gzip",
            "application/x-bzip2",
            "application/zstd",
            "font/woff",
            "font/woff2",
            "application/octet-stream",
            "application/pdf",
        ] {
            assert!(!compressible(t), "{t}");
        }
    }

    use super::*;

    const fn accepts(brotli: bool, zstd: bool, gzip: bool) -> Acceptable {
        Acceptable { brotli, zstd, gzip }
    }

    const NONE: Acceptable = accepts(false, false, false);
    const ALL: Acceptable = accepts(true, true, true);
    const GZIP: Acceptable = accepts(false, false, true);
    const BR: Acceptable = accepts(true, false, false);
    const BR_GZIP: Acceptable = accepts(true, false, true);
    const ZSTD_GZIP: Acceptable = accepts(false, true, true);

    #[test]
    fn acceptable_follows_rfc9110() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>, Acceptable)] = &[
            ("absent_header_accepts_nothing", None, NONE),
            ("empty_header_accepts_nothing", Some(""), NONE),
            ("browser_default", Some("gzip, deflate, br, zstd"), ALL),
            ("single_coding", Some("gzip"), GZIP),
            ("x_gzip_is_gzip", Some("x-gzip"), GZIP),
            ("names_are_case_insensitive", Some("GZIP, Br"), BR_GZIP),
            ("whitespace_is_tolerated", Some(" \tgzip\t ;\tq = 0.5 , br "), BR_GZIP),
            ("q_zero_refuses", Some("br;q=0, gzip"), GZIP),
            ("q_zero_with_decimals_refuses", Some("br;q=0.000, gzip;q=0.001"), GZIP),
            ("q_one_accepts", Some("br;q=1, gzip;q=1.000"), BR_GZIP),
            ("uppercase_q_name_counts", Some("br;Q=0, gzip"), GZIP),
            ("star_covers_unlisted", Some("*"), ALL),
            ("star_with_q_zero_covers_nothing", Some("*;q=0"), NONE),
            ("explicit_refusal_beats_star", Some("br;q=0, *"), ZSTD_GZIP),
            ("explicit_accept_beats_star_refusal", Some("gzip, *;q=0"), GZIP),
            ("later_q_zero_listing_refuses", Some("gzip, gzip;q=0"), NONE),
            ("earlier_q_zero_listing_refuses", Some("gzip;q=0, gzip"), NONE),
            ("x_gzip_refusal_refuses_gzip", Some("gzip, x-gzip;q=0"), NONE),
            ("identity_alone_accepts_nothing", Some("identity"), NONE),
            ("unknown_codings_are_ignored", Some("deflate, compress"), NONE),
            ("q_above_one_skips_item", Some("br;q=2"), NONE),
            ("q_with_four_decimals_skips_item", Some("br;q=0.5555"), NONE),
            ("q_one_point_five_skips_item", Some("br;q=1.5"), NONE),
            ("non_numeric_q_skips_item", Some("br;q=abc, gzip"), GZIP),
            ("empty_q_skips_item", Some("br;q="), NONE),
            ("negative_q_skips_item", Some("br;q=-1"), NONE),
            ("q_without_leading_digit_skips_item", Some("br;q=.5"), NONE),
            ("param_without_equals_skips_item", Some("br;q, gzip"), GZIP),
            ("malformed_refusal_does_not_refuse", Some("*, br;q=x"), ALL),
            ("unknown_params_are_ignored", Some("br;level=5"), BR),
            ("non_token_coding_is_skipped", Some("b r, g\"zip\""), NONE),
            ("empty_elements_are_skipped", Some(",, br ,,"), BR),
            ("prefix_of_name_does_not_match", Some("gzipx, b"), NONE),
            ("trailing_dot_q_is_valid", Some("br;q=1., gzip;q=0."), BR),
        ];
        for (name, header, want) in cases {
            assert_eq!(acceptable(*header), *want, "{name}");
        }
    }

    #[test]
    fn identity_refused_only_when_excluded() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("absent_header_allows_identity", None, false),
            ("empty_header_allows_identity", Some(""), false),
            ("unlisted_identity_is_allowed", Some("gzip, br"), false),
            ("identity_q_zero_refuses", Some("identity;q=0"), true),
            ("identity_case_insensitive", Some("IDENTITY;Q=0"), true),
            ("star_q_zero_refuses", Some("gzip, *;q=0"), true),
            ("listed_identity_beats_star_refusal", Some("identity, *;q=0"), false),
            ("identity_refusal_beats_star", Some("*, identity;q=0"), true),
            ("star_accepts_identity", Some("*"), false),
            ("positive_identity_allows", Some("identity;q=0.5"), false),
            ("malformed_refusal_is_skipped", Some("identity;q=nope"), false),
        ];
        for (name, header, want) in cases {
            assert_eq!(identity_refused(*header), *want, "{name}");
        }
    }

    #[test]
    fn qvalue_grammar_is_exact() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<u16>)] = &[
            ("0", Some(0)), ("0.", Some(0)), ("0.5", Some(500)), ("0.05", Some(50)),
            ("0.001", Some(1)), ("0.999", Some(999)), ("1", Some(1000)), ("1.0", Some(1000)),
            ("1.000", Some(1000)), ("1.001", None), ("0.0000", None), ("00.5", None), ("2", None),
            ("", None), (".", None), ("0.5x", None), ("0..5", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_qvalue(value), *want, "qvalue {value:?}");
        }
    }

    #[test]
    fn preference_order_is_br_zstd_gzip() {
        let order = preference_order();
        assert_eq!(order, [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip]);
        assert_eq!(order.map(Encoding::ext), [".br", ".zst", ".gz"]);
        assert_eq!(order.map(Encoding::token), ["br", "zstd", "gzip"]);
    }

    #[test]
    fn no_input_panics() {
        let pieces = [
            "", ",", ";", "=", "q", "q=", "0", "1", ".", "*", "é", "\"", " ", "gzip", "identity",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let header = format!("{a}{b}{c}");
                    let _ = acceptable(Some(&header));
                    let _ = identity_refused(Some(&header));
                }
            }
        }
    }
}
