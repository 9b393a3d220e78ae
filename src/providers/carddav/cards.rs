//! Card-level helpers of the CardDAV client: reading a fetched body into one normalized card,
//! serializing for the server's vCard version, hrefs as item ids, and iCloud group cards
//! (`X-ADDRESSBOOKSERVER-KIND:group`, normalized to `KIND:group` with `MEMBER:urn:uuid:…`).

use std::collections::BTreeSet;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::vcard::{self, VCard, VCardEntry, VCardKind, VCardProperty, VCardValue};

use super::profile::WriteVersion;

/// RFC 4122 §3 URN prefix Apple uses on `X-ADDRESSBOOKSERVER-MEMBER`.
pub const URN_UUID: &str = "urn:uuid:";
/// RFC 6352 §5.1: the media type sent on PUT.
pub const CONTENT_TYPE_VCARD_UTF8: &str = "text/vcard; charset=utf-8";
/// File extension of a new card's resource name.
pub const VCF_EXT: &str = ".vcf";

/// Reads one card; `Err` says why it is unreadable.
pub fn read_one(data: &str) -> Result<VCard, String> {
    let out = vcard::read_normalized(data);
    match out.cards.len() {
        1 => out
            .cards
            .into_iter()
            .next()
            .ok_or_else(|| "no card".to_string()),
        0 => Err(if out.diagnostics.is_empty() {
            "no vCard in the resource".to_string()
        } else {
            out.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        }),
        n => Err(format!("{n} vCards in one resource")),
    }
}

/// The card as the server gets it.
pub fn serialize(card: &VCard, version: WriteVersion) -> String {
    match version {
        WriteVersion::V3 => vcard::write_v3(card),
        WriteVersion::V4 => vcard::write_v4(card),
    }
}

/// What the server will hold after we PUT `body`: our own serialization read back, so a lossy
/// 3.0 round trip is not later taken for a remote change.
pub fn as_stored(body: &str, fallback: &VCard) -> VCard {
    read_one(body).unwrap_or_else(|_| fallback.clone())
}

/// The card with a UID (a new random one when it had none), and that UID.
pub fn ensure_uid(card: &VCard) -> (VCard, String) {
    if let Some(uid) = vcard::uid(card) {
        return (card.clone(), uid.to_string());
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let mut c = card.clone();
    c.entries
        .push(VCardEntry::new(VCardProperty::Uid).with_value(uid.clone()));
    (c, uid)
}

/// A resource name for a new card: its UID when that is a safe path segment, else a UUID.
pub fn resource_name(uid: &str) -> String {
    let safe = !uid.is_empty()
        && uid.len() <= 120
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !uid.starts_with('.');
    let stem = if safe {
        uid.to_string()
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    format!("{stem}{VCF_EXT}")
}

/// The item id of an href: its absolute path as the server wrote it.
pub fn item_id(base: &Url, href: &str) -> Option<String> {
    base.join(href).ok().map(|u| u.path().to_string())
}

/// The comparison key of an href or id: the percent-decoded absolute path.
pub fn href_key(base: &Url, href: &str) -> String {
    let path = base
        .join(href)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| href.to_string());
    percent_decode_str(&path).decode_utf8_lossy().into_owned()
}

/// True for a group card (`KIND:group`).
pub fn is_group(card: &VCard) -> bool {
    card.entries.iter().any(|e| {
        e.name == VCardProperty::Kind
            && e.values.iter().any(|v| match v {
                VCardValue::Kind(k) => *k == VCardKind::Group,
                VCardValue::Text(t) => t.eq_ignore_ascii_case("group"),
                _ => false,
            })
    })
}

/// The member UIDs of a group card (`urn:uuid:` stripped).
pub fn members(card: &VCard) -> BTreeSet<String> {
    card.entries
        .iter()
        .filter(|e| e.name == VCardProperty::Member)
        .flat_map(|e| e.values.iter())
        .filter_map(|v| match v {
            VCardValue::Text(t) => Some(t.trim()),
            _ => None,
        })
        .map(|t| {
            t.get(..URN_UUID.len())
                .filter(|p| p.eq_ignore_ascii_case(URN_UUID))
                .map_or(t, |_| &t[URN_UUID.len()..])
                .to_string()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// The group card with `uid` added as a member (unchanged when it already is one).
pub fn with_member(group: &VCard, uid: &str) -> Option<VCard> {
    if members(group).contains(uid) {
        return None;
    }
    let mut g = group.clone();
    g.entries
        .push(VCardEntry::new(VCardProperty::Member).with_value(format!("{URN_UUID}{uid}")));
    Some(g)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GROUP: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Friends;;;;\r\nFN:Friends\r\nUID:G1\r\nX-ADDRESSBOOKSERVER-KIND:group\r\nX-ADDRESSBOOKSERVER-MEMBER:urn:uuid:A\r\nX-ADDRESSBOOKSERVER-MEMBER:urn:uuid:B\r\nEND:VCARD\r\n";

    #[test]
    fn reads_icloud_group_cards() {
        let g = read_one(GROUP).unwrap();
        assert!(is_group(&g));
        assert_eq!(
            members(&g),
            ["A".to_string(), "B".to_string()].into_iter().collect()
        );
        let g2 = with_member(&g, "C").unwrap();
        assert!(members(&g2).contains("C"));
        assert!(with_member(&g2, "C").is_none());
        // Written back as 3.0 with Apple's property names.
        let v3 = serialize(&g2, WriteVersion::V3);
        assert!(v3.contains("X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:C"), "{v3}");
        assert!(v3.contains("X-ADDRESSBOOKSERVER-KIND:group"), "{v3}");
    }

    #[test]
    fn unreadable_and_multiple() {
        assert!(read_one("garbage").is_err());
        let two = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:a\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:b\r\nEND:VCARD\r\n";
        assert!(read_one(two).unwrap_err().contains("2 vCards"));
    }

    #[test]
    fn ids_and_names() {
        let base = Url::parse("http://h/alice/book/").unwrap();
        assert_eq!(
            item_id(&base, "a%20b.vcf").unwrap(),
            "/alice/book/a%20b.vcf"
        );
        assert_eq!(
            item_id(&base, "http://h/alice/book/x.vcf").unwrap(),
            "/alice/book/x.vcf"
        );
        assert_eq!(
            href_key(&base, "/alice/book/a%20b.vcf"),
            "/alice/book/a b.vcf"
        );
        assert_eq!(resource_name("abc-1"), "abc-1.vcf");
        assert_ne!(resource_name("a/b"), "a/b.vcf");
        let (c, uid) =
            ensure_uid(&read_one("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:x\r\nEND:VCARD\r\n").unwrap());
        assert_eq!(vcard::uid(&c), Some(uid.as_str()));
    }
}
