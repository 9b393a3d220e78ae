//! Fuzz target: the server half of the DAV layer. Arbitrary bytes go to every request-body
//! parser the CardDAV server uses (PROPFIND at each Depth, PROPPATCH, extended MKCOL,
//! addressbook-multiget, addressbook-query, sync-collection) and to the bounded XML reader
//! itself. Nothing may panic; a parsed query's filter is evaluated against a card; a parsed
//! document renders and reads back to the same tree. Compiles `src/dav/` in directly (it is
//! pure; see Cargo.toml).
#![no_main]

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../src/dav/mod.rs"]
mod dav;

use dav::mkcol::Mkcol;
use dav::multiget::AddressbookMultiget;
use dav::propfind::Propfind;
use dav::proppatch::Proppatch;
use dav::query::AddressbookQuery;
use dav::sync_collection::SyncCollection;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

const CARD: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u-1\r\nFN:Straße Müller\r\nN:Müller;Straße;;;\r\nEMAIL;TYPE=work:a@example.com\r\nTEL;TYPE=cell:+1 555 0100\r\nitem1.X-ABLabel:custom\r\nEND:VCARD\r\n";

fuzz_target!(|data: &[u8]| {
    let depths = [
        None,
        Some(HeaderValue::from_static("0")),
        Some(HeaderValue::from_static("1")),
        Some(HeaderValue::from_static("infinity")),
    ];
    for d in &depths {
        let _ = Propfind::parse_request(d.as_ref(), data);
        let _ = SyncCollection::parse_request(d.as_ref(), data);
    }
    let _ = Proppatch::parse_request(data);
    let _ = Mkcol::parse_request(data);
    let _ = AddressbookMultiget::parse_request(data);
    if let Ok(q) = AddressbookQuery::parse_request(data) {
        let _ = q.filter.matches_vcard(CARD);
        let _ = q.filter.matches_vcard(std::str::from_utf8(data).unwrap_or(""));
    }
    if let Ok(root) = dav::xml::parse(data) {
        let text = dav::xml::render(&root);
        let again = dav::xml::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("own rendering unreadable ({e}): {text:?}"));
        assert_eq!(again, root, "render/parse is not a round trip: {text:?}");
    }
});
