//! Conditional requests (RFC 9110 §13): `If-Match`, `If-None-Match`,
//! `If-Modified-Since`, `If-Unmodified-Since` and `If-Range`.
//!
//! In scope: parsing those header values (entity-tag lists and HTTP-dates) and
//! deciding, from a file's validators, whether the request proceeds, gets
//! `304 Not Modified` or gets `412 Precondition Failed`.
//!
//! Out of scope: reading headers off the wire, finding or stat-ing the file,
//! building the validators, and writing the response. This module does no I/O:
//! it takes borrowed header values and [`Validators`] and returns data.
//!
//! Every function here assumes the target representation **exists**. A request
//! for a missing file never reaches [`evaluate`]; the caller answers it first
//! (for a missing file `If-Match: *` would be false, RFC 9110 §13.1.1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The validators of one selected representation (one file on disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validators<'a> {
    /// The strong entity tag sent in `ETag`, quotes included, e.g. `"1a-2b-3c"`.
    ///
    /// If this is not a well-formed entity tag, no listed tag ever matches it
    /// (only `*` does); a weak tag (`W/"..."`) matches only weak comparisons.
    pub etag: &'a str,
    /// The time sent in `Last-Modified`. Only whole seconds count: any
    /// sub-second part is dropped before comparing, because an HTTP-date has
    /// one-second resolution.
    pub last_modified: SystemTime,
}

/// The raw conditional header values of one request, borrowed from it.
///
/// `None` means the header is absent. A value that is empty or only
/// whitespace is treated as absent too (as Go's `net/http` does), so an empty
/// `If-Match:` never turns a request into a 412. If a header was repeated, the
/// caller joins the values with `", "`; for the entity-tag lists that is the
/// same list, and for the dates it makes the value invalid, so it is ignored
/// as RFC 9110 §13.1.3 and §13.1.4 require for more than one member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conditionals<'a> {
    /// `If-Match`: `*` or a list of entity tags.
    pub if_match: Option<&'a str>,
    /// `If-None-Match`: `*` or a list of entity tags.
    pub if_none_match: Option<&'a str>,
    /// `If-Modified-Since`: one HTTP-date.
    pub if_modified_since: Option<&'a str>,
    /// `If-Unmodified-Since`: one HTTP-date.
    pub if_unmodified_since: Option<&'a str>,
}

/// What the preconditions decide for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No precondition stops the request: go on (to `If-Range`/`Range`, then 200/206).
    Proceed,
    /// Answer `304 Not Modified` (only ever for GET or HEAD).
    NotModified,
    /// Answer `412 Precondition Failed`.
    PreconditionFailed,
}

/// Evaluates the preconditions of a request against the file's validators.
///
/// The order is exactly RFC 9110 §13.2.2 (steps 1–4; step 5, `If-Range`, is
/// [`if_range_allows`] and only matters when a `Range` is present):
///
/// 1. If `If-Match` is present: it is true if it is `*` or lists an entity
///    tag that matches the current ETag by **strong** comparison. If false →
///    [`Outcome::PreconditionFailed`]. A malformed list is false.
/// 2. Otherwise (no `If-Match`), if `If-Unmodified-Since` is present and a
///    valid HTTP-date: if the file was modified after that date →
///    [`Outcome::PreconditionFailed`]. An invalid date is ignored.
/// 3. If `If-None-Match` is present: it is false if it is `*` or lists a tag
///    that matches by **weak** comparison. If false → [`Outcome::NotModified`]
///    for GET/HEAD, [`Outcome::PreconditionFailed`] for any other method.
///    A malformed list matches nothing, so the request proceeds.
/// 4. Otherwise (no `If-None-Match`), only for GET/HEAD, if
///    `If-Modified-Since` is a valid HTTP-date and the file was not modified
///    after it (`last_modified <= date`) → [`Outcome::NotModified`]. An
///    invalid date is ignored.
/// 5. Otherwise → [`Outcome::Proceed`].
pub fn evaluate(is_get_or_head: bool, c: &Conditionals, v: &Validators) -> Outcome {
    let last_modified = whole_seconds(v.last_modified);

    if let Some(if_match) = present(c.if_match) {
        if !tag_list_matches(if_match, v.etag, Comparison::Strong) {
            return Outcome::PreconditionFailed;
        }
    } else if let Some(date) = present(c.if_unmodified_since).and_then(parse_date) {
        if last_modified > date {
            return Outcome::PreconditionFailed;
        }
    }

    if let Some(if_none_match) = present(c.if_none_match) {
        if tag_list_matches(if_none_match, v.etag, Comparison::Weak) {
            return if is_get_or_head {
                Outcome::NotModified
            } else {
                Outcome::PreconditionFailed
            };
        }
    } else if is_get_or_head {
        if let Some(date) = present(c.if_modified_since).and_then(parse_date) {
            if last_modified <= date {
                return Outcome::NotModified;
            }
        }
    }

    Outcome::Proceed
}

/// Tells whether an `If-Range` value lets a `Range` request be honoured
/// (RFC 9110 §13.1.5).
///
/// True if the value is one strong entity tag equal to `v.etag` by strong
/// comparison (a weak `W/"..."` tag never matches), or an HTTP-date exactly
/// equal to `v.last_modified` in whole seconds. Anything else — another tag,
/// another date, a list, garbage — is false, which means "ignore `Range` and
/// send the full representation with 200".
///
/// Not checked here: RFC 9110 §8.8.2.2 calls a `Last-Modified` weak when it
/// is less than one second before the response `Date`. Applying that needs
/// the clock, so it is the caller's decision.
pub fn if_range_allows(if_range: &str, v: &Validators) -> bool {
    let value = trim_ows(if_range);
    // §13.1.5: an entity-tag starts with DQUOTE or `W/"`; a date never does.
    if value.starts_with('"') || value.starts_with("W/") {
        return match (parse_single_tag(value), parse_single_tag(v.etag)) {
            (Some(theirs), Some(ours)) => Comparison::Strong.matches(theirs, ours),
            _ => false,
        };
    }
    parse_date(value) == Some(whole_seconds(v.last_modified))
}

/// One parsed entity tag, borrowed from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EntityTag<'a> {
    /// Whether it carried the `W/` prefix.
    weak: bool,
    /// The opaque tag without its quotes.
    opaque: &'a str,
}

/// The two entity-tag comparison functions of RFC 9110 §8.8.3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    /// Both tags strong and their opaque parts equal (`If-Match`, `If-Range`).
    Strong,
    /// Opaque parts equal, weakness ignored (`If-None-Match`).
    Weak,
}

impl Comparison {
    fn matches(self, a: EntityTag, b: EntityTag) -> bool {
        let weakness_ok = match self {
            Comparison::Strong => !a.weak && !b.weak,
            Comparison::Weak => true,
        };
        weakness_ok && a.opaque == b.opaque
    }
}

/// Whether `If-Match`/`If-None-Match` value `list` (`*` or `#entity-tag`)
/// matches `current`. A malformed list matches nothing, even if a well-formed
/// element before the fault would have matched: a half-understood header is
/// treated as not understood.
fn tag_list_matches(list: &str, current: &str, cmp: Comparison) -> bool {
    if trim_ows(list) == "*" {
        return true;
    }
    let Some(ours) = parse_single_tag(current) else {
        return false;
    };
    let mut matched = false;
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches(OWS);
        // Recipients must accept empty list elements (RFC 9110 §5.6.1.2).
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
            continue;
        }
        if rest.is_empty() {
            return matched;
        }
        let Some((theirs, after_tag)) = parse_tag(rest) else {
            return false;
        };
        matched |= cmp.matches(theirs, ours);
        rest = after_tag.trim_start_matches(OWS);
        match rest.strip_prefix(',') {
            Some(after_comma) => rest = after_comma,
            None if rest.is_empty() => return matched,
            None => return false,
        }
    }
}

/// Parses a value that must be exactly one entity tag (surrounding OWS allowed).
fn parse_single_tag(s: &str) -> Option<EntityTag<'_>> {
    match parse_tag(trim_ows(s)) {
        Some((tag, "")) => Some(tag),
        _ => None,
    }
}

/// Parses one `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE` at the start of
/// `s`, returning it and the unparsed rest. `W/` is case-sensitive; `etagc`
/// is `%x21 / %x23-7E / obs-text`, so commas are allowed inside the quotes
/// but spaces, controls and `"` are not.
fn parse_tag(s: &str) -> Option<(EntityTag<'_>, &str)> {
    let (weak, quoted) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let body = quoted.strip_prefix('"')?;
    let close = body.find('"')?;
    let opaque = &body[..close];
    let etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80;
    if !opaque.bytes().all(etagc) {
        return None;
    }
    Some((EntityTag { weak, opaque }, &body[close + 1..]))
}

/// Optional whitespace (RFC 9110 §5.6.3): spaces and horizontal tabs.
const OWS: [char; 2] = [' ', '\t'];

fn trim_ows(s: &str) -> &str {
    s.trim_matches(OWS)
}

/// `Some(value)` unless the header is absent or blank.
fn present(header: Option<&str>) -> Option<&str> {
    header.map(trim_ows).filter(|v| !v.is_empty())
}

/// Parses an HTTP-date in any of the three forms RFC 9110 §5.6.7 requires
/// recipients to accept (IMF-fixdate, RFC 850, asctime).
fn parse_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(trim_ows(s)).ok()
}

/// Drops the sub-second part of a time at or after the epoch; an HTTP-date
/// cannot carry it, so comparisons must not see it.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Sun, 06 Nov 1994 08:49:37 GMT`, the RFC's example date, in seconds.
    const T: u64 = 784_111_777;
    const IMF: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const IMF_BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const IMF_AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";
    const RFC850: &str = "Sunday, 06-Nov-94 08:49:37 GMT";
    const ASCTIME: &str = "Sun Nov  6 08:49:37 1994";
    const TAG: &str = "\"1a-2b-3c\"";
    const WEAK_TAG: &str = "W/\"1a-2b-3c\"";
    const GET: bool = true;
    const PUT: bool = false;

    fn validators() -> Validators<'static> {
        Validators {
            etag: TAG,
            last_modified: UNIX_EPOCH + Duration::from_secs(T),
        }
    }

    /// Request headers as `(name, value)` pairs.
    type Headers<'a> = &'a [(&'a str, &'a str)];

    /// Builds [`Conditionals`] from `(header name, value)` pairs.
    fn request<'a>(headers: &[(&str, &'a str)]) -> Conditionals<'a> {
        let mut c = Conditionals::default();
        for &(name, value) in headers {
            match name {
                "If-Match" => c.if_match = Some(value),
                "If-None-Match" => c.if_none_match = Some(value),
                "If-Modified-Since" => c.if_modified_since = Some(value),
                "If-Unmodified-Since" => c.if_unmodified_since = Some(value),
                other => panic!("not a conditional header: {other}"),
            }
        }
        c
    }

    #[test]
    fn evaluate_follows_rfc9110_precedence() {
        use Outcome::*;
        #[rustfmt::skip]
        let cases: &[(&str, bool, Headers, Outcome)] = &[
            ("no_conditionals_proceeds", GET, &[], Proceed),
            // Step 1: If-Match, strong comparison.
            ("if_match_same_tag_proceeds", GET, &[("If-Match", TAG)], Proceed),
            ("if_match_star_proceeds_for_existing_file", PUT, &[("If-Match", "*")], Proceed),
            ("if_match_other_tag_fails", GET, &[("If-Match", "\"zzz\"")], PreconditionFailed),
            ("if_match_weak_tag_fails_strong_comparison", GET, &[("If-Match", WEAK_TAG)], PreconditionFailed),
            ("if_match_list_containing_tag_proceeds", PUT, &[("If-Match", "\"a\", \"1a-2b-3c\"")], Proceed),
            ("if_match_malformed_list_fails", PUT, &[("If-Match", "\"1a-2b-3c\", garbage")], PreconditionFailed),
            ("if_match_blank_is_absent", PUT, &[("If-Match", "  ")], Proceed),
            // Step 2: If-Unmodified-Since, only without If-Match.
            ("ius_modified_after_date_fails", PUT, &[("If-Unmodified-Since", IMF_BEFORE)], PreconditionFailed),
            ("ius_equal_date_proceeds", PUT, &[("If-Unmodified-Since", IMF)], Proceed),
            ("ius_later_date_proceeds", GET, &[("If-Unmodified-Since", IMF_AFTER)], Proceed),
            ("ius_invalid_date_is_ignored", PUT, &[("If-Unmodified-Since", "yesterday")], Proceed),
            ("ius_repeated_dates_are_ignored", PUT, &[("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT, Sun, 06 Nov 1994 08:49:36 GMT")], Proceed),
            ("ius_skipped_when_if_match_true", PUT, &[("If-Match", "*"), ("If-Unmodified-Since", IMF_BEFORE)], Proceed),
            // Step 3: If-None-Match, weak comparison.
            ("inm_same_tag_get_is_not_modified", GET, &[("If-None-Match", TAG)], NotModified),
            ("inm_weak_tag_matches_weakly", GET, &[("If-None-Match", WEAK_TAG)], NotModified),
            ("inm_star_get_is_not_modified", GET, &[("If-None-Match", "*")], NotModified),
            ("inm_match_on_other_method_fails", PUT, &[("If-None-Match", TAG)], PreconditionFailed),
            ("inm_star_on_other_method_fails", PUT, &[("If-None-Match", "*")], PreconditionFailed),
            ("inm_other_tags_proceed", GET, &[("If-None-Match", "\"x\", W/\"y\"")], Proceed),
            ("inm_malformed_list_proceeds", GET, &[("If-None-Match", "\"1a-2b-3c")], Proceed),
            ("inm_checked_after_if_match_passes", GET, &[("If-Match", "*"), ("If-None-Match", "*")], NotModified),
            ("if_match_failure_beats_inm", GET, &[("If-Match", "\"x\""), ("If-None-Match", "*")], PreconditionFailed),
            ("ius_failure_beats_inm", GET, &[("If-Unmodified-Since", IMF_BEFORE), ("If-None-Match", "*")], PreconditionFailed),
            // Step 4: If-Modified-Since, only for GET/HEAD and without If-None-Match.
            ("ims_equal_date_is_not_modified", GET, &[("If-Modified-Since", IMF)], NotModified),
            ("ims_later_date_is_not_modified", GET, &[("If-Modified-Since", IMF_AFTER)], NotModified),
            ("ims_earlier_date_proceeds", GET, &[("If-Modified-Since", IMF_BEFORE)], Proceed),
            ("ims_rfc850_date_is_understood", GET, &[("If-Modified-Since", RFC850)], NotModified),
            ("ims_asctime_date_is_understood", GET, &[("If-Modified-Since", ASCTIME)], NotModified),
            ("ims_invalid_date_is_ignored", GET, &[("If-Modified-Since", "Sun, 06 Nov 1994")], Proceed),
            ("ims_ignored_for_other_methods", PUT, &[("If-Modified-Since", IMF)], Proceed),
            ("ims_ignored_when_inm_present", GET, &[("If-None-Match", "\"other\""), ("If-Modified-Since", IMF)], Proceed),
            ("ims_used_when_inm_blank", GET, &[("If-None-Match", ""), ("If-Modified-Since", IMF)], NotModified),
        ];
        for (name, is_get_or_head, headers, want) in cases {
            assert_eq!(
                evaluate(*is_get_or_head, &request(headers), &validators()),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn subsecond_mtime_compares_as_whole_seconds() {
        let v = Validators {
            last_modified: UNIX_EPOCH + Duration::from_millis(T * 1000 + 999),
            ..validators()
        };
        let ims = request(&[("If-Modified-Since", IMF)]);
        let ius = request(&[("If-Unmodified-Since", IMF)]);
        assert_eq!(evaluate(GET, &ims, &v), Outcome::NotModified);
        assert_eq!(evaluate(PUT, &ius, &v), Outcome::Proceed);
        assert!(if_range_allows(IMF, &v));
    }

    #[test]
    fn tag_lists_parse_as_rfc9110_describes() {
        use Comparison::*;
        #[rustfmt::skip]
        let cases: &[(&str, &str, Comparison, bool)] = &[
            ("single_strong_tag_matches", TAG, Strong, true),
            ("surrounding_whitespace_is_allowed", " \t\"1a-2b-3c\"\t ", Strong, true),
            ("tag_later_in_list_matches", "\"a\",\"b\" ,\t\"1a-2b-3c\"", Strong, true),
            ("empty_list_elements_are_skipped", ",, \"1a-2b-3c\" ,,", Strong, true),
            ("weak_tag_matches_weakly", WEAK_TAG, Weak, true),
            ("weak_tag_never_matches_strongly", WEAK_TAG, Strong, false),
            ("lowercase_weak_prefix_is_malformed", "w/\"1a-2b-3c\"", Weak, false),
            ("comma_inside_quotes_is_part_of_tag", "\"1a,2b\", \"1a-2b-3c\"", Strong, true),
            ("comma_inside_quotes_does_not_split", "\"1a-2b-3c,x\"", Weak, false),
            ("unquoted_tag_is_malformed", "1a-2b-3c", Weak, false),
            ("unterminated_quote_is_malformed", "\"1a-2b-3c", Weak, false),
            ("missing_comma_is_malformed", "\"x\" \"1a-2b-3c\"", Weak, false),
            ("garbage_after_match_spoils_list", "\"1a-2b-3c\" junk", Weak, false),
            ("space_inside_quotes_is_malformed", "\"1a 2b\", \"1a-2b-3c\"", Weak, false),
            ("star_alone_matches_any_tag", " * ", Strong, true),
            ("star_inside_list_is_malformed", "*, \"1a-2b-3c\"", Weak, false),
            ("bare_weak_prefix_is_malformed", "W/", Weak, false),
            ("lone_quote_is_malformed", "\"", Weak, false),
            ("tag_is_case_sensitive", "\"1A-2B-3C\"", Weak, false),
            ("non_ascii_obs_text_is_allowed", "\"é\", \"1a-2b-3c\"", Strong, true),
        ];
        for (name, list, cmp, want) in cases {
            assert_eq!(tag_list_matches(list, TAG, *cmp), *want, "{name}");
        }
    }

    #[test]
    fn malformed_current_etag_matches_only_star() {
        let v = Validators {
            etag: "no-quotes",
            ..validators()
        };
        let inm = |value| request(&[("If-None-Match", value)]);
        assert_eq!(evaluate(GET, &inm("\"no-quotes\""), &v), Outcome::Proceed);
        assert_eq!(evaluate(GET, &inm("no-quotes"), &v), Outcome::Proceed);
        assert_eq!(evaluate(GET, &inm("*"), &v), Outcome::NotModified);
        assert!(!if_range_allows("\"no-quotes\"", &v));
    }

    #[test]
    fn if_range_allows_only_exact_strong_validators() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            ("same_strong_tag_allows", TAG, true),
            ("same_tag_with_whitespace_allows", "  \"1a-2b-3c\" ", true),
            ("weak_tag_never_allows", WEAK_TAG, false),
            ("other_tag_refuses", "\"1a-2b-3d\"", false),
            ("tag_list_refuses", "\"1a-2b-3c\", \"x\"", false),
            ("exact_date_allows", IMF, true),
            ("exact_rfc850_date_allows", RFC850, true),
            ("exact_asctime_date_allows", ASCTIME, true),
            ("earlier_date_refuses", IMF_BEFORE, false),
            ("later_date_refuses", IMF_AFTER, false),
            ("invalid_date_refuses", "Sun, 32 Nov 1994 08:49:37 GMT", false),
            ("empty_refuses", "", false),
            ("star_refuses", "*", false),
            ("garbage_refuses", "W/junk", false),
        ];
        for (name, value, want) in cases {
            assert_eq!(if_range_allows(value, &validators()), *want, "{name}");
        }
    }

    #[test]
    fn no_input_panics() {
        let inputs = [
            "",
            "\"",
            "W",
            "W/",
            "W/\"",
            "\"\"",
            ",",
            "*",
            "**",
            "\u{0}",
            "é\"",
            "\"é",
            "W/\"a\"W/\"b\"",
            "Sun, 06 Nov 1994 08:49:37 GMTX",
            "Sun Nov 31 99:99:99 9999",
        ];
        for a in inputs {
            for b in inputs {
                let c = Conditionals {
                    if_match: Some(a),
                    if_none_match: Some(b),
                    if_modified_since: Some(a),
                    if_unmodified_since: Some(b),
                };
                let _ = evaluate(GET, &c, &validators());
                let _ = evaluate(PUT, &Conditionals { if_match: None, ..c }, &validators());
                let _ = if_range_allows(
                    a,
                    &Validators {
                        etag: b,
                        ..validators()
                    },
                );
            }
        }
    }
}
