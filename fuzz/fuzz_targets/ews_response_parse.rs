//! Fuzz target: the EWS response readers. Arbitrary bytes are read as a server's answer by
//! the SOAP reader (`parse_body`, faults and their back-off), by the reader of every operation
//! the provider calls (SyncFolderItems, GetItem, FindFolder, GetFolder, CreateItem, UpdateItem,
//! DeleteItem, the throttling check), and by both Autodiscover readers (POX and SOAP
//! `GetUserSettings`). Each `t:Contact` a GetItem answer carries goes through the pure mapping to
//! vCard 4 and back (`from_ews`, `to_ews`, `contact_element`, `updates`); when nothing overflows,
//! the written contact reads back to the same card. Nothing may panic; memory stays bounded by the
//! XML reader's limits (10 MiB, depth 64; the run's `-rss_limit_mb` enforces it). Compiles the
//! pure files of `src/providers/ews/` in directly, never its HTTP half (see Cargo.toml).
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
use providers::ews::mapping::{contact_element, from_ews, to_ews, updates, EwsContact};
use providers::ews::names::op;
use providers::ews::{autodiscover_parse, soap};

fn check_contact(item: &dav::xml::Element) {
    let Ok(contact) = EwsContact::from_element(item) else {
        return;
    };
    let _ = contact.etag();
    let card = from_ews(&contact).card;
    let _ = vcard::write_v4(&card);
    let back = to_ews(&card);
    let _ = updates(&back.contact);
    let written = contact_element(&back.contact, contact.crm_id.as_deref());
    let _ = dav::xml::render(&written);
    if back.overflow.is_empty() {
        let again = EwsContact::from_element(&written)
            .unwrap_or_else(|e| panic!("own t:Contact unreadable ({e}): {written:?}"));
        assert_eq!(
            from_ews(&again).card,
            card,
            "written t:Contact does not read back to the card"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = autodiscover_parse::parse_response(data);
    let _ = autodiscover_parse::parse_soap_response(data);
    let body = match soap::parse_body(data) {
        Ok(body) => body,
        Err(e) => {
            let _ = (e.code(), e.back_off(), e.to_string());
            return;
        }
    };
    if let Some(e) = soap::busy_message(&body) {
        assert!(
            e.back_off().is_some(),
            "busy_message returned a non-throttling error"
        );
    }
    for operation in [
        op::FIND_FOLDER,
        op::GET_FOLDER,
        op::SYNC_FOLDER_ITEMS,
        op::GET_ITEM,
        op::CREATE_ITEM,
        op::UPDATE_ITEM,
        op::DELETE_ITEM,
    ] {
        if let Ok(msgs) = soap::response_messages(&body, operation) {
            for msg in msgs {
                let _ = msg.ok().map_err(|e| e.back_off());
            }
        }
    }
    let _ = soap::parse_sync_folder_items(&body);
    let _ = soap::parse_find_folder(&body);
    let _ = soap::parse_get_folder(&body);
    let _ = soap::parse_delete_item(&body);
    let _ = soap::parse_written_id(&body, op::CREATE_ITEM);
    let _ = soap::parse_written_id(&body, op::UPDATE_ITEM);
    if let Ok(items) = soap::parse_get_item(&body) {
        for item in items.iter().flatten() {
            check_contact(item);
        }
    }
});
