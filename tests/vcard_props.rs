//! Property tests: read/write round trips, byte-for-byte idempotence of normalizing, fingerprint
//! invariance (REV, PRODID, property and parameter order) and sensitivity (any value change);
//! diagnostic positions; no panic on arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardbridge::vcard::{
    fingerprint, normalize, read, read_bytes, read_normalized, write_v3, write_v4,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Printable text including the characters that need escaping, and non-ASCII.
    "[a-zA-Z0-9 ,;:\\\\\"^é日\\-]{1,40}"
        .prop_map(|s| s.trim().to_string())
        .prop_filter("non-empty", |s| !s.is_empty())
}

fn card() -> impl Strategy<Value = (String, String, String, String, Vec<String>, bool)> {
    (
        text(),
        text(),
        text(),
        "[a-z0-9]{1,12}@[a-z]{1,8}\\.example",
        prop::collection::vec(text(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(fname, note, label, email, cats, pref)| (fname, note, label, email, cats, pref))
}

fn build(
    fname: &str,
    note: &str,
    label: &str,
    email: &str,
    cats: &[String],
    pref: bool,
    v3: bool,
) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace(',', "\\,")
            .replace(';', "\\;")
    };
    let caret = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('^', "^^")
            .replace('"', "^'")
    };
    let mut c = String::from("BEGIN:VCARD\r\n");
    c.push_str(if v3 {
        "VERSION:3.0\r\n"
    } else {
        "VERSION:4.0\r\n"
    });
    c.push_str(&format!("FN:{}\r\nN:{};;;;\r\n", esc(fname), esc(fname)));
    c.push_str(&format!("NOTE:{}\r\n", esc(note)));
    if v3 {
        c.push_str(&format!(
            "EMAIL;TYPE=INTERNET{}:{email}\r\n",
            if pref { ",pref" } else { "" }
        ));
    } else {
        c.push_str(&format!(
            "EMAIL{}:{email}\r\n",
            if pref { ";PREF=1" } else { "" }
        ));
    }
    c.push_str(&format!(
        "ADR;LABEL=\"{}\";TYPE=home:;;{};;;;\r\n",
        caret(label),
        esc(fname)
    ));
    if !cats.is_empty() {
        c.push_str(&format!(
            "CATEGORIES:{}\r\n",
            cats.iter().map(|s| esc(s)).collect::<Vec<_>>().join(",")
        ));
    }
    c.push_str("REV:20240101T000000Z\r\nUID:prop-test\r\nEND:VCARD\r\n");
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn normalize_is_idempotent_byte_for_byte((fname, note, label, email, cats, pref) in card(), v3 in any::<bool>()) {
        let input = build(&fname, &note, &label, &email, &cats, pref, v3);
        let out = read_normalized(&input);
        prop_assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        let once = write_v4(&out.cards[0]);
        let again = read_normalized(&once);
        let twice = write_v4(&again.cards[0]);
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(normalize(&out.cards[0]), out.cards[0].clone());
    }

    #[test]
    fn values_round_trip((fname, note, label, email, cats, pref) in card()) {
        let input = build(&fname, &note, &label, &email, &cats, pref, false);
        let card = &read_normalized(&input).cards[0];
        let fn_value = card.entries.iter().find(|e| e.name == cardbridge::vcard::VCardProperty::Fn).unwrap().values[0].as_text().unwrap().to_string();
        prop_assert_eq!(fn_value, fname);
        let adr = card.entries.iter().find(|e| e.name == cardbridge::vcard::VCardProperty::Adr).unwrap();
        let got_label = adr.params.iter().find(|p| p.name == cardbridge::vcard::VCardParameterName::Label).unwrap().value.as_text().unwrap().to_string();
        prop_assert_eq!(got_label, label);
        // and through 3.0
        let back = read_normalized(&write_v3(card));
        prop_assert_eq!(fingerprint(&back.cards[0]), fingerprint(card));
    }

    #[test]
    fn fingerprint_ignores_rev_prodid_and_order((fname, note, label, email, cats, pref) in card(), seed in any::<u64>()) {
        let input = build(&fname, &note, &label, &email, &cats, pref, false);
        let card = read_normalized(&input).cards.remove(0);
        let mut shuffled = card.clone();
        let n = shuffled.entries.len();
        shuffled.entries.rotate_left((seed as usize) % n);
        for e in &mut shuffled.entries { e.params.reverse(); if e.name == cardbridge::vcard::VCardProperty::Rev { e.values = vec![cardbridge::vcard::VCardValue::Text("other".into())]; } }
        shuffled.entries.push(cardbridge::vcard::VCardEntry { group: None, name: cardbridge::vcard::VCardProperty::Prodid, params: vec![], values: vec![cardbridge::vcard::VCardValue::Text("-//x//EN".into())] });
        prop_assert_eq!(fingerprint(&shuffled), fingerprint(&card));
    }

    #[test]
    fn fingerprint_changes_with_any_value((fname, note, label, email, cats, pref) in card(), other in text()) {
        let base = read_normalized(&build(&fname, &note, &label, &email, &cats, pref, false)).cards.remove(0);
        prop_assume!(other != note);
        let changed = read_normalized(&build(&fname, &other, &label, &email, &cats, pref, false)).cards.remove(0);
        prop_assert_ne!(fingerprint(&base), fingerprint(&changed));
        let flipped = read_normalized(&build(&fname, &note, &label, &email, &cats, !pref, false)).cards.remove(0);
        prop_assert_ne!(fingerprint(&base), fingerprint(&flipped));
    }

    #[test]
    fn never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let out = read_bytes(&bytes);
        for c in &out.cards { let n = normalize(c); let _ = write_v4(&n); let _ = write_v3(&n); let _ = fingerprint(&n); }
    }

    #[test]
    fn never_panics_on_card_shaped_garbage(body in "([A-Za-z;=:,\"^\\\\ .\r\n-]|BEGIN:VCARD\r\n|END:VCARD\r\n|=\r\n| ){0,200}") {
        let out = read(&format!("BEGIN:VCARD\r\n{body}\r\nEND:VCARD\r\n"));
        for c in &out.cards { let n = normalize(c); let _ = write_v4(&n); let _ = write_v3(&n); }
    }
}

#[test]
fn diagnostics_name_card_position_and_line() {
    let good = "BEGIN:VCARD\nVERSION:4.0\nFN:A\nEND:VCARD\n";
    let input = format!("{good}BEGIN:VCARD\nVERSION:4.0\nFN:B\nbad line\nEND:VCARD\n{good}stray\n{good}BEGIN:VCARD\nFN:C\n");
    let out = read(&input);
    assert_eq!(out.cards.len(), 3);
    let got: Vec<(usize, usize)> = out
        .diagnostics
        .iter()
        .map(|d| (d.card_index, d.line))
        .collect();
    assert_eq!(got, vec![(2, 8), (4, 14), (6, 19)]);
}
