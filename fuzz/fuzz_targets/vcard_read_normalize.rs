//! Fuzz target: arbitrary bytes through reading, normalizing, writing (4.0, 3.0, jCard) and
//! fingerprinting; the normalized 4.0 output must read back without diagnostics and normalize to
//! the same bytes (idempotence). Compiles `src/vcard/` in directly (it is pure; see Cargo.toml).
#![no_main]

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../src/vcard/mod.rs"]
mod vcard;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let out = vcard::read_bytes_normalized(data);
    for card in &out.cards {
        let v4 = vcard::write_v4(card);
        let _ = vcard::write_v3(card);
        let _ = vcard::to_jcard(card);
        let _ = vcard::fingerprint(card);
        let again = vcard::read_normalized(&v4);
        assert!(again.diagnostics.is_empty(), "own output unreadable: {v4:?}");
        assert_eq!(again.cards.len(), 1);
        assert_eq!(vcard::write_v4(&again.cards[0]), v4, "normalize is not idempotent");
    }
});
