//! Golden tests for the Google People ↔ vCard 4 mapping: `fixtures/google/people/*.json`
//! against `*.expected.vcf`, and the write direction (vCard → Person JSON plus the
//! `updatePersonFields` mask) against `*.expected-write.json`. Rewritten only with
//! `UPDATE_EXPECT=1`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use cardbridge::providers::google::mapping::{
    person_to_vcard, update_person_fields, vcard_to_person, Person,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/google/people")
}

fn check(path: &Path, actual: &str) {
    if std::env::var("UPDATE_EXPECT").as_deref() == Ok("1") {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_EXPECT=1)", path.display()));
    assert_eq!(
        expected,
        actual,
        "{} differs (run with UPDATE_EXPECT=1 to rewrite)",
        path.display()
    );
}

fn inputs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p.to_string_lossy().ends_with(".expected-write.json")
        })
        .collect();
    v.sort();
    assert!(v.len() >= 4, "fixtures missing");
    v
}

#[test]
fn people_map_to_expected_vcards() {
    for input in inputs() {
        let person: Person = serde_json::from_str(&std::fs::read_to_string(&input).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let card = person_to_vcard(&person);
        check(&input.with_extension("expected.vcf"), &card.to_string());
    }
}

#[test]
fn vcards_map_back_to_expected_person_bodies() {
    for input in inputs() {
        let person: Person =
            serde_json::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
        // Through the text form, as the engine will hand it over.
        let text = person_to_vcard(&person).to_string();
        let card = calcard::vcard::VCard::parse(&text).unwrap();
        let body = vcard_to_person(&card);
        let out = serde_json::json!({
            "updatePersonFields": update_person_fields(&body),
            "person": body,
        });
        let mut s = serde_json::to_string_pretty(&out).unwrap();
        s.push('\n');
        check(&input.with_extension("expected-write.json"), &s);
    }
}

#[test]
fn round_trip_is_stable_on_the_card() {
    // Person → vCard → Person → vCard gives the same card, except photos (not written
    // through updateContact), FN and address labels (derived by Google).
    for input in inputs() {
        let person: Person =
            serde_json::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
        let mut card = person_to_vcard(&person);
        let again = person_to_vcard(&vcard_to_person(&card));
        card.entries
            .retain(|e| e.name != calcard::vcard::VCardProperty::Photo);
        // FN is derived from the structured name on the way back when Google gave a
        // displayName; compare everything else.
        let strip = |c: &calcard::vcard::VCard| {
            let mut c = c.clone();
            c.entries
                .retain(|e| e.name != calcard::vcard::VCardProperty::Fn);
            // ADR;LABEL= (Google's formattedValue) is recomputed by Google when the
            // structured parts are written.
            for e in &mut c.entries {
                e.params
                    .retain(|p| p.name != calcard::vcard::VCardParameterName::Label);
            }
            c
        };
        assert_eq!(strip(&card), strip(&again), "{}", input.display());
    }
}

#[test]
fn documented_connections_payloads_parse() {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/google/api");
    let page: cardbridge::providers::google::client::ListConnectionsResponse =
        serde_json::from_str(
            &std::fs::read_to_string(api.join("connections_last_page.json")).unwrap(),
        )
        .unwrap();
    assert_eq!(page.connections.len(), 1);
    assert!(page.next_page_token.is_none());
    assert_eq!(page.next_sync_token.as_deref(), Some("EJj9wJTE2YoDGgw"));
    let p: Person = serde_json::from_value(page.connections[0].clone()).unwrap();
    assert!(p.is_member_of("contactGroups/myContacts"));

    let inc: cardbridge::providers::google::client::ListConnectionsResponse = serde_json::from_str(
        &std::fs::read_to_string(api.join("connections_incremental_deleted.json")).unwrap(),
    )
    .unwrap();
    let d: Person = serde_json::from_value(inc.connections[0].clone()).unwrap();
    assert!(d.is_deleted());
    assert_eq!(d.resource_name.as_deref(), Some("people/c9"));
}
