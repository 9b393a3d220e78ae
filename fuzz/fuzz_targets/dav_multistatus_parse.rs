//! Fuzz target: the client half of the DAV layer. Arbitrary bytes are read as a server's
//! answer by every response parser the CardDAV client uses (multistatus, PROPFIND, multiget,
//! sync-collection, PROPPATCH, DAV:error bodies) and by the discovery readers (principal, home
//! set, address books). Nothing may panic; a multistatus that parses renders and parses back
//! to the same responses. Compiles `src/dav/` in directly (it is pure; see Cargo.toml).
#![no_main]

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../src/dav/mod.rs"]
mod dav;

use dav::multiget::AddressbookMultiget;
use dav::multistatus::Multistatus;
use dav::propfind::Propfind;
use dav::proppatch::Proppatch;
use dav::sync_collection::SyncCollection;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ms) = Multistatus::parse(data) {
        let _ = dav::discovery::parse_principal(&ms);
        let _ = dav::discovery::parse_home_set(&ms);
        let _ = dav::discovery::parse_addressbooks(&ms);
        let text = ms.render();
        let again = Multistatus::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("own rendering unreadable ({e}): {text:?}"));
        assert_eq!(again.responses.len(), ms.responses.len(), "{text:?}");
    }
    let _ = Propfind::parse_response(data);
    let _ = SyncCollection::parse_response(data);
    let _ = Proppatch::parse_response(data);
    let _ = dav::error::parse_error_body(data);
    let mg = AddressbookMultiget::new(vec![
        "/dav/addressbooks/a/persons/1.vcf".into(),
        "/card.vcf".into(),
    ]);
    let _ = mg.parse_response(data);
    let _ = dav::mkcol::Mkcol::parse_response(http::StatusCode::MULTI_STATUS, data);
});
