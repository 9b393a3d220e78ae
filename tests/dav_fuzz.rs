//! No-panic property tests: every parser of `dav/` is fed random bytes and random XML-ish strings and
//! must return (Ok or a typed error) without panicking.
#![allow(clippy::unwrap_used)]

use cardbridge::dav::{
    address_data, error, multiget::AddressbookMultiget, multistatus::Multistatus,
    propfind::Propfind, query::AddressbookQuery, sync_collection::SyncCollection, xml,
};
use proptest::prelude::*;

fn feed(input: &[u8]) {
    let _ = xml::parse(input);
    let _ = Multistatus::parse(input);
    let _ = error::parse_error_body(input);
    let _ = Propfind::parse_request(None, input);
    let _ = SyncCollection::parse_request(None, input);
    let _ = SyncCollection::parse_response(input);
    let _ = AddressbookMultiget::parse_request(input);
    let _ = AddressbookMultiget::new(vec!["/a".into()]).parse_response(input);
    if let Ok(q) = AddressbookQuery::parse_request(input) {
        let _ = q.filter.matches_vcard(&String::from_utf8_lossy(input));
    }
    let text = String::from_utf8_lossy(input);
    let _ = address_data::content_lines(&text);
}

fn xmlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "<",
        ">",
        "/",
        "</",
        "/>",
        "<d:",
        "<D:multistatus xmlns:D=\"DAV:\">",
        "</D:multistatus>",
        "<D:response>",
        "</D:response>",
        "<D:href>",
        "</D:href>",
        "<D:status>HTTP/1.1 ",
        "</D:status>",
        "<D:propstat>",
        "<D:prop>",
        "</D:prop>",
        "&",
        "&amp;",
        "&#",
        "&#x",
        ";",
        "\"",
        "'",
        "=",
        " xmlns=\"",
        "urn:ietf:params:xml:ns:carddav",
        "<!DOCTYPE",
        "<![CDATA[",
        "]]>",
        "<?xml",
        "?>",
        "<!--",
        "-->",
        "404",
        "507",
        "a",
        "é",
        ":",
        "<C:filter>",
        "<C:prop-filter name=\"",
        "<C:text-match",
        " negate-condition=\"yes\"",
        "<sync-token>",
        "\r\n",
        " ",
        "\u{0}",
    ]);
    prop::collection::vec(atoms, 0..80).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
        feed(&input);
    }

    #[test]
    fn random_xmlish_strings_never_panic(input in xmlish()) {
        feed(input.as_bytes());
    }

    #[test]
    fn rendered_text_round_trips(text in "\\PC*") {
        let el = xml::Element::new(&cardbridge::dav::names::HREF).with_text(text.clone());
        let back = xml::parse(xml::render(&el).as_bytes()).unwrap();
        prop_assert_eq!(back.text, text);
    }
}
