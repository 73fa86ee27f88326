//! HTTP Basic authentication (RFC 7617), the pure half: reading the credentials of
//! an `Authorization` header and writing the challenge. Checking them against the
//! password file is the site's job (`Site::authorize`), since it is slow and keeps a
//! cache.

/// What the site says about a user and password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are valid.
    Granted,
    /// They are not (unknown user and wrong password look the same).
    Denied,
    /// They were not checked: as many checks as the server allows are running. The
    /// client is told to retry (429); valid cached credentials never get this.
    Busy,
}

/// The user and password of `Authorization: Basic <base64(user:password)>`, or
/// `None` for another scheme, bad base64, no colon, or text that is not UTF-8. The
/// scheme name is case-insensitive (RFC 9110 §11.1); the user ends at the first colon
/// (RFC 7617 §2), so the password may contain colons.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = decode_base64(token.trim())?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The value of `WWW-Authenticate` for `realm`: `Basic realm="..."` with `"` and `\`
/// escaped (a quoted-string, RFC 9110 §5.6.4), and `charset="UTF-8"` (RFC 7617 §2.1).
pub fn challenge(realm: &str) -> String {
    let mut out = String::with_capacity(realm.len() + 32);
    out.push_str("Basic realm=\"");
    for c in realm.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\", charset=\"UTF-8\"");
    out
}

/// Decodes standard base64 (RFC 4648 §4) with or without `=` padding; `None` on any
/// other byte or a length no encoding produces.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_parse() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("Basic YWxpY2U6c2VjcmV0", Some(("alice", "secret"))),
            ("basic YWxpY2U6c2VjcmV0", Some(("alice", "secret"))),
            ("BASIC   YWxpY2U6c2VjcmV0  ", Some(("alice", "secret"))),
            ("Basic YWxpY2U6YTpiOmM=", Some(("alice", "a:b:c"))),
            ("Basic OnB3", Some(("", "pw"))),
            ("Basic YWxpY2U6", Some(("alice", ""))),
            ("Basic YWxpY2U", None),
            ("Basic !!!!", None),
            ("Basic", None),
            ("Bearer YWxpY2U6c2VjcmV0", None),
            ("Basic /w==", None),
            ("Basic YWxpY2U6c2VjcmV0=A", None),
        ];
        for (value, want) in cases {
            let got = parse_basic(value);
            let want = want.map(|(u, p)| (u.to_string(), p.to_string()));
            assert_eq!(got, want, "{value}");
        }
    }

    #[test]
    fn base64_round_trips_every_length() {
        let cases = [
            ("", ""),
            ("Zg", "f"),
            ("Zm8", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
        ];
        for (enc, dec) in cases {
            assert_eq!(decode_base64(enc).as_deref(), Some(dec.as_bytes()), "{enc}");
        }
        assert_eq!(decode_base64("Z"), None);
    }

    #[test]
    fn challenge_quotes_the_realm() {
        assert_eq!(challenge("files"), "Basic realm=\"files\", charset=\"UTF-8\"");
        assert_eq!(challenge("a\"b\\c"), "Basic realm=\"a\\\"b\\\\c\", charset=\"UTF-8\"");
    }
}
