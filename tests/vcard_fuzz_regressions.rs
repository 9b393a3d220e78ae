//! Inputs the `vcard_read_normalize` fuzz target (docs/FUZZING.md) found failing, replayed with
//! the target's own checks: no panic, the normalized 4.0 output reads back cleanly and normalizes
//! to the same bytes. The raw crash inputs live in `fixtures/vcard/fuzz/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardbridge::vcard::{
    fingerprint, read_bytes_normalized, read_normalized, to_jcard, write_v3, write_v4,
};
use std::path::Path;

/// The fuzz target's body.
fn check(data: &[u8]) {
    let out = read_bytes_normalized(data);
    for card in &out.cards {
        let v4 = write_v4(card);
        let _ = write_v3(card);
        let _ = to_jcard(card);
        let _ = fingerprint(card);
        let again = read_normalized(&v4);
        assert!(
            again.diagnostics.is_empty(),
            "own output unreadable: {v4:?}"
        );
        assert_eq!(again.cards.len(), 1);
        assert_eq!(write_v4(&again.cards[0]), v4, "normalize is not idempotent");
    }
}

#[test]
fn every_saved_fuzz_crash_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/vcard/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0);
}

/// crash-8655ab1d: a `VERSION:3.0BEGIN:VCARD` line makes calcard read the card as 3.0, and its
/// legacy date parser turns `20090808T1430-0500` into year 65535, hour 255; written back, that
/// read as a different date, so normalizing was not idempotent.
#[test]
fn impossible_date_from_calcard_becomes_text_and_is_idempotent() {
    let input =
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nANNIVERSARY:20090808T1430-0500\r\nEND:VCARD\r\n";
    check(input.as_bytes());
}

/// crash-c2d25273: a card with two `X-ABShowAs:COMPANY` lines kept the second one on the first
/// pass and dropped it on the second (the card then had a KIND).
#[test]
fn second_abshowas_company_goes_in_the_first_pass() {
    let input = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Acme\r\nORG:Acme;\r\nX-ABShowAs:COMPANY\r\nX-ABShowAs:COMPANY\r\nEND:VCARD\r\n";
    check(input.as_bytes());
    let out = write_v4(&read_normalized(input).cards[0]);
    assert!(out.contains("KIND:org\r\n"), "{out}");
    assert!(!out.contains("X-ABShowAs"), "{out}");
}

/// crash-674ac230: `NOTE;ENCODING=b` with bytes that are not UTF-8 came out of calcard as binary
/// and was written as a bare `data:` URI, which read back as text and was then escaped.
#[test]
fn binary_value_of_a_text_property_becomes_data_uri_text() {
    let input = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nNOTE;ENCODING=b:/w==\r\nEND:VCARD\r\n";
    check(input.as_bytes());
    let out = write_v4(&read_normalized(input).cards[0]);
    assert!(
        out.contains(r"NOTE:data:application/octet-stream\;base64\,/w=="),
        "{out}"
    );
}

/// crash-90cc3b63: a date property holding text (`ANNIVERSARY:2012-0=5-20`) was written without
/// `VALUE=text`, so the next read took its start as a (partial, impossible) date.
#[test]
fn text_in_a_date_property_is_written_with_value_text() {
    let input = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nANNIVERSARY:2012-0=5-20\r\nBDAY:circa 1800\r\nEND:VCARD\r\n";
    check(input.as_bytes());
    let out = write_v4(&read_normalized(input).cards[0]);
    // calcard's 4.0 parser reads the `2012-0` of it as an (impossible) date, so that part is
    // what is left, as text.
    assert!(out.contains("ANNIVERSARY;VALUE=text:2012-0"), "{out}");
    assert!(out.contains("BDAY;VALUE=text:circa 1800\r\n"), "{out}");
}

/// crash-de2c84ad: a parameter "name" with a quote, control and non-ASCII characters (calcard
/// keeps whatever stands before `=`) was written back and made the card unreadable.
#[test]
fn invalid_parameter_names_are_dropped() {
    let input = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nEMAIL;TYPE=work;X\u{e9}\u{16}\"Office: \u{7f}main; rooms 1,2:a@example.com\r\nEND:VCARD\r\n";
    check(input.as_bytes());
}

/// crash-49a06a50: calcard read a date with a zone but no time (`20240115+1020`); written back,
/// the zone was dropped on the next read. A zone without a time is now dropped at once.
#[test]
fn zone_without_time_is_dropped() {
    let input = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nREV;VALUE=date-and-or-time:20240115+1020\r\nEND:VCARD\r\n";
    check(input.as_bytes());
}

/// crash-b1273681: calcard took the text between `data:` and `;base64,` as the media type, line
/// break included, and it was written back as is, which broke the line.
#[test]
fn a_media_type_that_is_not_one_is_replaced() {
    let input = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nPHOTO:data:image/p\\nng x;base64,iVBORw0KGgo=\r\nEND:VCARD\r\n";
    check(input.as_bytes());
}

/// crash-9f922768: normalizing wrote `VALUE=` before a parameter it added (`MEDIATYPE`), and
/// calcard moves `VALUE` behind all others when reading, so the next pass wrote another order.
#[test]
fn value_parameter_is_written_last() {
    let input = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nPHOTO;VALUE=text;TYPE=image/encrev:\r\nEND:VCARD\r\n";
    check(input.as_bytes());
}

/// crash-5dd86ef1: a carriage return inside a structured value (N) was not turned into a line
/// break like in plain text, was written as `\r`, and read back as a carriage return.
#[test]
fn carriage_return_in_a_structured_value_becomes_a_line_break() {
    let input = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\\rB\r\nN:A\\rB;C;;;\r\nEND:VCARD\r\n";
    check(input.as_bytes());
}

/// crash-2b91c0dc: a bare `QUOTED-PRINTABLE` parameter that calcard kept (on a line our reader
/// did not rewrite) was written back, and the next read decoded the value as quoted-printable.
#[test]
fn leftover_transfer_encoding_parameters_are_dropped() {
    let input = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nX-N1;TYPE=voice;QUOTED-PRINTABLE;CHL:+49 =3D\r\nEND:VCARD\r\n";
    check(input.as_bytes());
}

/// crash-eba534f4: two ADRs and two 3.0 LABELs, the first LABEL matching no ADR by group or TYPE.
/// The second LABEL attached to its ADR, which left one free ADR for the first; one pass had
/// already skipped it, so it attached only on the next normalize (not idempotent).
#[test]
fn labels_attach_until_nothing_moves() {
    let input = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\n\
                 ADR;TYPE=WORK:;;1 Main St;Town;;;\r\n\
                 LABEL;TYPE=OTHER:First label\r\n\
                 ADR;TYPE=HOME:;;2 Side St;Town;;;\r\n\
                 LABEL;TYPE=HOME:Home label\r\n\
                 END:VCARD\r\n";
    check(input.as_bytes());
    let out = write_v4(&read_normalized(input).cards[0]);
    assert!(out.contains("LABEL=\"First label\":;;1 Main St"), "{out}");
    assert!(out.contains("LABEL=\"Home label\":;;2 Side St"), "{out}");
    assert!(!out.contains("\r\nLABEL"), "{out}");
}

/// crash-aabc884d: `BDAY;ENCODING=b:...` is inline data in a date property. It was written back
/// as a `data:` URI without VALUE=text, which the next read took for text and then typed, so
/// normalizing was not idempotent.
#[test]
fn inline_data_in_a_date_property_becomes_typed_text() {
    let input = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nBDAY;ENCODING=b:/w==\r\nEND:VCARD\r\n";
    check(input.as_bytes());
    let out = write_v4(&read_normalized(input).cards[0]);
    assert!(out.contains("BDAY;VALUE=text:data:"), "{out}");
}

/// crash-72013797: a TYPE parameter of two quoted values (`TYPE="a b","c d",cell`), folded
/// inside the quotes. The 3.0 fix that unquotes `TYPE="a,b"` looked at the first physical line
/// only and stripped the outer quotes of the list, leaving a stray quote that the next read
/// turned into `^'`. Fixes now work on the unfolded line, and unquote one quoted value only.
#[test]
fn quoted_type_lists_survive_folding() {
    let input = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\n\
                 TEL;TYPE=\"work\tx\",\"\r\n voice\ty\",cell:+1 555 0100\r\n\
                 TEL;TYPE=\"home,\r\n fax\":+1 555 0101\r\nEND:VCARD\r\n";
    check(input.as_bytes());
    let out = write_v4(&read_normalized(input).cards[0]);
    assert!(!out.contains("^'"), "{out}");
    assert!(
        out.contains("TYPE=fax,home:+1 555 0101") || out.contains("TYPE=home,fax:+1 555 0101"),
        "{out}"
    );
}

/// crash-e542f805: a card with two ANNIVERSARY lines, the first empty and the second a date. The
/// second goes back to `X-ANNIVERSARY` (one ANNIVERSARY per card), but its value stayed a typed
/// date, which an unknown property writes as nothing: the first pass wrote `X-ANNIVERSARY:` and
/// the second dropped it as a duplicate of the empty ANNIVERSARY. The date now becomes its text.
#[test]
fn anniversary_sent_back_to_x_name_keeps_its_date() {
    let input =
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nANNIVERSARY;PREF=1:\r\nANNIVERSARY;PREF=1:20150902\r\nEND:VCARD\r\n";
    check(input.as_bytes());
    let out = write_v4(&read_normalized(input).cards[0]);
    assert!(out.contains("X-ANNIVERSARY;PREF=1:20150902\r\n"), "{out}");
}
