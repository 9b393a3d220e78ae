//! The CardDAV URL space: parsing request paths and hrefs into [`Resource`]s and building hrefs
//! (percent-encoded segments, RFC 3986 §2.1).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The root of the DAV tree.
pub const DAV_ROOT: &str = "/dav/";
/// Principals live under here.
pub const PRINCIPALS: &str = "principals";
/// Address book homes live under here.
pub const ADDRESSBOOKS: &str = "addressbooks";

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `/` or `/dav/` (or `/dav/principals/`, `/dav/addressbooks/`).
    Root,
    /// `/.well-known/carddav` (RFC 6764 §5).
    WellKnown,
    /// `/dav/principals/{user}/`.
    Principal(String),
    /// `/dav/addressbooks/{user}/`.
    Home(String),
    /// `/dav/addressbooks/{user}/{collection}/`.
    Collection(String, String),
    /// `/dav/addressbooks/{user}/{collection}/{card}`.
    Card(String, String, String),
}

/// The longest path segment (user, collection or card name) accepted, in bytes after
/// percent-decoding: POSIX `NAME_MAX`, which every client's file-based storage can hold.
pub const MAX_SEGMENT_LEN: usize = 255;

/// Segments that must be escaped in an href segment: everything but unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@')
    .remove(b'+');

/// Escapes one path segment.
pub fn enc(seg: &str) -> String {
    utf8_percent_encode(seg, SEGMENT).to_string()
}

/// Control characters a name may not hold. CR, LF and TAB are allowed: vdirsyncer names a card
/// after its UID, which may hold a newline (its storage suite's `test_newline_in_uid`), and
/// every href we write is percent-encoded, so they never reach a header or the XML raw.
fn is_refused_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\r' | '\n' | '\t')
}

/// Parses a request path or an href (absolute URL or absolute path).
///
/// `None` (answered 404) for anything that is not a clean name: `.`/`..`, an encoded `/`, a
/// control character other than CR, LF and TAB (NUL, DEL, …), percent-escapes that are not UTF-8, or a segment longer
/// than [`MAX_SEGMENT_LEN`].
pub fn parse(href: &str) -> Option<Resource> {
    let path = match href.find("://") {
        Some(i) => {
            let rest = href.get(i + 3..)?;
            rest.find('/').and_then(|j| rest.get(j..)).unwrap_or("/")
        }
        None => href,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.trim_end_matches('/') == crate::dav::names::WELL_KNOWN_CARDDAV {
        return Some(Resource::WellKnown);
    }
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8().map(|c| c.into_owned()))
        .collect::<Result<_, _>>()
        .ok()?;
    if segs.iter().any(|s| {
        s == "."
            || s == ".."
            || s.contains('/')
            || s.len() > MAX_SEGMENT_LEN
            || s.chars().any(is_refused_control)
    }) {
        return None;
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    Some(match s.as_slice() {
        [] | ["dav"] | ["dav", PRINCIPALS] | ["dav", ADDRESSBOOKS] => Resource::Root,
        ["dav", PRINCIPALS, u] => Resource::Principal(u.to_string()),
        ["dav", ADDRESSBOOKS, u] => Resource::Home(u.to_string()),
        ["dav", ADDRESSBOOKS, u, c] => Resource::Collection(u.to_string(), c.to_string()),
        ["dav", ADDRESSBOOKS, u, c, n] => {
            Resource::Card(u.to_string(), c.to_string(), n.to_string())
        }
        _ => return None,
    })
}

/// `/dav/principals/{user}/`.
pub fn principal(user: &str) -> String {
    format!("{DAV_ROOT}{PRINCIPALS}/{}/", enc(user))
}

/// `/dav/addressbooks/{user}/`.
pub fn home(user: &str) -> String {
    format!("{DAV_ROOT}{ADDRESSBOOKS}/{}/", enc(user))
}

/// `/dav/addressbooks/{user}/{collection}/`.
pub fn collection(user: &str, coll: &str) -> String {
    format!("{}{}/", home(user), enc(coll))
}

/// `/dav/addressbooks/{user}/{collection}/{name}`.
pub fn card(user: &str, coll: &str, name: &str) -> String {
    format!("{}{}", collection(user, coll), enc(name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_builds_round_trip() {
        let h = card("al ice", "persons", "град сатану.vcf");
        assert_eq!(
            parse(&h),
            Some(Resource::Card(
                "al ice".into(),
                "persons".into(),
                "град сатану.vcf".into()
            ))
        );
        assert_eq!(parse(&format!("http://127.0.0.1:8080{h}")), parse(&h));
        assert_eq!(
            parse("/dav/addressbooks/a/b"),
            Some(Resource::Collection("a".into(), "b".into()))
        );
        assert_eq!(parse("/.well-known/carddav/"), Some(Resource::WellKnown));
        assert_eq!(parse("/"), Some(Resource::Root));
        assert_eq!(parse("/dav/addressbooks/a/b/../c"), None);
        assert_eq!(parse("/dav/addressbooks/a/b/c%2Fd"), None);
        assert_eq!(parse("/elsewhere"), None);
    }

    #[test]
    fn control_characters_bad_utf8_and_overlong_names_are_refused() {
        // Regression (issue #8 security_input): `sec%00ret.vcf` was stored as a card name.
        for bad in [
            "/dav/addressbooks/a/b/sec%00ret.vcf",
            "/dav/addressbooks/a%7f/b/",
            "/dav/addressbooks/a/b/%ff%fe.vcf",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let ok = "n".repeat(MAX_SEGMENT_LEN);
        assert!(parse(&format!("/dav/addressbooks/a/b/{ok}")).is_some());
        let long = "n".repeat(MAX_SEGMENT_LEN + 1);
        assert_eq!(parse(&format!("/dav/addressbooks/a/b/{long}")), None);
        assert_eq!(parse(&format!("/dav/addressbooks/{long}/b/")), None);
    }
}
