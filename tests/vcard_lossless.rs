//! Regression tests for losslessness fixes of the vCard layer: unknown property values kept
//! verbatim, extended-format dates keeping their day, and Apple's group renumbering not changing
//! the fingerprint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardbridge::vcard::{
    fingerprint, read_normalized, to_jcard, write_v3, write_v4, PartialDateTime, VCard,
    VCardProperty, VCardValue,
};

fn one(text: &str) -> VCard {
    let out = read_normalized(text);
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    assert_eq!(out.cards.len(), 1);
    out.cards.into_iter().next().unwrap()
}

fn card(version: &str, body: &[&str]) -> String {
    let mut s = format!("BEGIN:VCARD\r\nVERSION:{version}\r\nFN:Test\r\n");
    for line in body {
        s.push_str(line);
        s.push_str("\r\n");
    }
    s.push_str("END:VCARD\r\n");
    s
}

fn lines(text: &str) -> Vec<String> {
    text.replace("\r\n ", "")
        .split("\r\n")
        .map(str::to_string)
        .collect()
}

const UNKNOWN_LINES: &[&str] = &[
    r"X-FOO:a\;b",
    r"X-FOO:a;b",
    r"X-BAR:x\,y,z",
    r"X-BAZ:back\\slash and \n newline \N upper",
    r"item1.X-ABLabel:Work\, main",
    r"X-ANDROID-CUSTOM:vnd.android.cursor.item/nickname;Bob;1;;;;;;;;;;;;;",
    r"X-ODD:\x unknown escape and trailing backslash\\",
    r"X-URI;VALUE=uri:http://example.com/a\,b?c=d;e",
];

#[test]
fn unknown_property_value_is_kept_verbatim_in_v4() {
    for version in ["3.0", "4.0"] {
        let input = card(version, UNKNOWN_LINES);
        let out = write_v4(&one(&input));
        let got = lines(&out);
        for want in UNKNOWN_LINES {
            assert!(
                got.iter().any(|l| l == want),
                "{version}: {want:?} not kept verbatim in\n{out}"
            );
        }
    }
}

#[test]
fn unknown_property_value_is_kept_verbatim_in_v3() {
    let input = card("3.0", UNKNOWN_LINES);
    let out = write_v3(&one(&input));
    let got = lines(&out);
    for want in UNKNOWN_LINES {
        assert!(got.iter().any(|l| l == want), "{want:?} not in\n{out}");
    }
}

#[test]
fn unknown_property_escaped_and_unescaped_separators_differ() {
    let a = one(&card("4.0", &[r"X-FOO:a\;b"]));
    let b = one(&card("4.0", &[r"X-FOO:a;b"]));
    assert_ne!(write_v4(&a), write_v4(&b));
    assert_ne!(fingerprint(&a), fingerprint(&b));
}

#[test]
fn unknown_property_verbatim_survives_folding() {
    let long = format!(r"X-LONG:{}\;{}\,end", "a".repeat(70), "é".repeat(40));
    let out = write_v4(&one(&card("4.0", &[&long])));
    assert!(lines(&out).contains(&long), "{out}");
    let again = write_v4(&one(&out));
    assert_eq!(again, out);
}

#[test]
fn unknown_property_is_raw_and_unknown_in_jcard() {
    let json = to_jcard(&one(&card("4.0", &[r"X-FOO:a\;b"])));
    let props = json[1].as_array().unwrap();
    let foo = props.iter().find(|p| p[0] == "x-foo").unwrap();
    assert_eq!(foo[2], "unknown");
    assert_eq!(foo[3], r"a\;b");
}

#[test]
fn quoted_printable_unknown_property_is_decoded_and_escaped() {
    let input = "BEGIN:VCARD\r\nVERSION:2.1\r\nN:X;Y\r\nX-NOTE;ENCODING=QUOTED-PRINTABLE;CHARSET=UTF-8:a=0D=0Ab=5Cc\r\nEND:VCARD\r\n";
    let out = write_v4(&one(input));
    assert!(lines(&out).iter().any(|l| l == r"X-NOTE:a\nb\\c"), "{out}");
}

#[test]
fn renamed_unknown_properties_are_decoded() {
    let c = one(&card(
        "3.0",
        &[
            r"X-ANNIVERSARY:2001-02-03",
            r"X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:a\,b",
        ],
    ));
    let member = c
        .entries
        .iter()
        .find(|e| e.name == VCardProperty::Member)
        .unwrap();
    assert_eq!(member.values[0].as_text(), Some("urn:uuid:a,b"));
}

fn date_of(c: &VCard, name: VCardProperty) -> PartialDateTime {
    match &c.entries.iter().find(|e| e.name == name).unwrap().values[0] {
        VCardValue::PartialDateTime(dt) => dt.clone(),
        other => panic!("{name:?} is not a date: {other:?}"),
    }
}

#[test]
fn v4_bday_extended_date_keeps_the_day() {
    let c = one(&card(
        "4.0",
        &["BDAY:1604-11-01", "ANNIVERSARY:2001-02-03T10:20:30Z"],
    ));
    let b = date_of(&c, VCardProperty::Bday);
    assert_eq!((b.year, b.month, b.day), (Some(1604), Some(11), Some(1)));
    let a = date_of(&c, VCardProperty::Anniversary);
    assert_eq!((a.year, a.month, a.day), (Some(2001), Some(2), Some(3)));
    assert_eq!((a.hour, a.minute, a.second), (Some(10), Some(20), Some(30)));
    let out = write_v4(&c);
    assert!(out.contains("BDAY:16041101\r\n"), "{out}");
}

#[test]
fn v3_and_v4_month_day_extended_date_keeps_the_day() {
    for version in ["3.0", "4.0"] {
        let c = one(&card(version, &["BDAY:--11-01", "ANNIVERSARY:--02-29"]));
        let b = date_of(&c, VCardProperty::Bday);
        assert_eq!(
            (b.year, b.month, b.day),
            (None, Some(11), Some(1)),
            "{version}"
        );
        let a = date_of(&c, VCardProperty::Anniversary);
        assert_eq!(
            (a.year, a.month, a.day),
            (None, Some(2), Some(29)),
            "{version}"
        );
    }
}

#[test]
fn v4_text_valued_bday_is_not_rewritten() {
    let c = one(&card("4.0", &["BDAY;VALUE=text:1604-11-01"]));
    let out = write_v4(&c);
    assert!(out.contains("1604-11-01"), "{out}");
}

const APPLE_A: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Doe;Jane;;;\r\nFN:Jane Doe\r\n\
item1.EMAIL;type=INTERNET;type=WORK:jane@work.example\r\nitem1.X-ABLabel:_$!<Work>!$_\r\n\
item2.TEL;type=CELL:+1 555 0100\r\nitem2.X-ABLabel:_$!<Mobile>!$_\r\n\
item3.URL:https://example.com\r\nitem3.X-ABLabel:blog\r\nEND:VCARD\r\n";

#[test]
fn apple_group_renumbering_keeps_the_fingerprint() {
    let renumbered = APPLE_A
        .replace("item1.", "itemX.")
        .replace("item2.", "item1.")
        .replace("item3.", "item2.")
        .replace("itemX.", "item3.");
    assert_ne!(renumbered, APPLE_A);
    assert_eq!(fingerprint(&one(APPLE_A)), fingerprint(&one(&renumbered)));
    let renamed = APPLE_A.replace("item2.", "ITEM9.");
    assert_eq!(fingerprint(&one(APPLE_A)), fingerprint(&one(&renamed)));
}

#[test]
fn apple_group_value_change_still_changes_the_fingerprint() {
    let base = fingerprint(&one(APPLE_A));
    // A label moved to another member: same set of lines, different grouping.
    let swapped = APPLE_A
        .replace("item1.X-ABLabel:_$!<Work>!$_", "item1.X-ABLabel:blog")
        .replace("item3.X-ABLabel:blog", "item3.X-ABLabel:_$!<Work>!$_");
    assert_ne!(base, fingerprint(&one(&swapped)));
    let changed = APPLE_A.replace("+1 555 0100", "+1 555 0101");
    assert_ne!(base, fingerprint(&one(&changed)));
    let relabelled = APPLE_A.replace("item3.X-ABLabel:blog", "item3.X-ABLabel:shop");
    assert_ne!(base, fingerprint(&one(&relabelled)));
}
