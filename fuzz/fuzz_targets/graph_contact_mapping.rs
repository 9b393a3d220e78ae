//! Fuzz target: the Graph JSON mapping. Arbitrary bytes are read as JSON the way the provider
//! reads a delta page (`value` rows) or a single contact (GET/POST/PATCH answers), each row
//! through `GraphContact::from_value`, the pure mapping to a vCard 4 card (`from_graph`), the
//! vCard 4 writer and reader, and back to a Graph body (`to_graph`, `to_graph_create`). Nothing
//! may panic, and for a contact whose card maps back without overflow, the Graph body read again
//! gives the same card (the mapping round trip of `round_trip_keeps_mapped_fields`, for every
//! input). Compiles `src/vcard/`, `src/dav/` and the pure provider files in directly (see
//! `providers/mod.rs`), never the HTTP half of the provider.
#![no_main]

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../src/vcard/mod.rs"]
mod vcard;

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../src/dav/mod.rs"]
mod dav;

// The pure provider files (see providers/mod.rs).
mod providers;

use libfuzzer_sys::fuzz_target;
use providers::graph::mapping::{
    from_graph, reattach_overflow, to_graph, to_graph_create, GraphContact,
};
use serde_json::Value;

fn check(row: &Value) {
    let Ok(contact) = GraphContact::from_value(row) else {
        return;
    };
    let _ = contact.etag();
    let _ = contact.crm_id();
    let card = from_graph(&contact).card;

    // The card as the store keeps it: vCard 4 text, read back.
    let text = vcard::write_v4(&card);
    let read = vcard::read_normalized(&text);
    assert_eq!(read.cards.len(), 1, "own card text not one card: {text:?}");
    let _ = vcard::fingerprint(&card);

    let out = to_graph(&card);
    let _ = to_graph_create(&card, "crm-1");
    let merged = reattach_overflow(&card, &card);
    assert_eq!(
        merged, card,
        "reattaching a card's own overflow added entries"
    );
    let _ = to_graph(&read.cards[0]);

    if out.overflow.is_empty() {
        let again = GraphContact::from_value(&Value::Object(out.body.clone()))
            .unwrap_or_else(|e| panic!("own Graph body unreadable ({e}): {:?}", out.body));
        assert_eq!(
            from_graph(&again).card,
            card,
            "Graph body {:?} does not read back to the card",
            out.body
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match json.get("value").and_then(Value::as_array) {
        // A delta page or a folder listing: every row.
        Some(rows) => rows.iter().for_each(check),
        // A single contact.
        None => check(&json),
    }
});
