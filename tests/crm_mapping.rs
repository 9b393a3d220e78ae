//! vCard ↔ person mapping: golden files in `fixtures/crm/mapping/` (`*.vcf` in, `*.json` out,
//! rewritten only with `UPDATE_EXPECT=1`), no-op merges that keep the card intact, merges that
//! keep unmodeled content, directions, the preview, and a fields → card → fields round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use cardbridge::crm::mapping::{
    card_to_fields, fields_to_card, preview, CrmField, Direction, MappingConfig,
};
use cardbridge::crm::{Address, LabeledValue, PersonFields};
use cardbridge::vcard::VCard;
use proptest::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/crm/mapping")
}

fn parse(text: &str) -> VCard {
    VCard::parse(text).expect("fixture parses")
}

fn render(card: &VCard) -> String {
    card.to_string()
}

fn check_golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_EXPECT=1", path.display()));
    assert_eq!(actual, expected, "golden {} differs", path.display());
}

fn vcf_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "vcf")
                && !p.to_string_lossy().ends_with(".merged.vcf")
        })
        .collect();
    v.sort();
    assert!(v.len() >= 3, "fixtures present");
    v
}

#[test]
fn golden_card_to_fields() {
    for path in vcf_fixtures() {
        let card = parse(&std::fs::read_to_string(&path).unwrap());
        let fields = card_to_fields(&card, &MappingConfig::default());
        let json = serde_json::to_string_pretty(&fields).unwrap() + "\n";
        check_golden(&path.with_extension("json"), &json);
    }
}

#[test]
fn unchanged_fields_leave_the_card_identical() {
    for path in vcf_fixtures() {
        let card = parse(&std::fs::read_to_string(&path).unwrap());
        let fields = card_to_fields(&card, &MappingConfig::default());
        let merged = fields_to_card(&fields, Some(&card), &MappingConfig::default());
        if card.property(&calcard::vcard::VCardProperty::Fn).is_some() {
            assert_eq!(merged, card, "{}", path.display());
        }
        assert_eq!(
            card_to_fields(&merged, &MappingConfig::default()),
            fields,
            "{}",
            path.display()
        );
    }
}

#[test]
fn golden_merge_keeps_unmodeled_content() {
    let base = parse(&std::fs::read_to_string(fixtures().join("apple_labels.vcf")).unwrap());
    let mut f = card_to_fields(&base, &MappingConfig::default());
    // CRM edits: a new work email, the mobile loses, the assistant number is relabelled,
    // the birthday gets a year, a label is added.
    f.emails.push(LabeledValue {
        value: "tim@work.example".into(),
        label: "work".into(),
        primary: true,
    });
    f.phones.retain(|p| p.label != "mobile");
    f.phones[0].label = "Chief of staff".into();
    f.birthday = Some("1960-11-01".into());
    f.labels = vec!["vip".into()];
    let merged = fields_to_card(&f, Some(&base), &MappingConfig::default());
    let text = render(&merged);
    check_golden(&fixtures().join("apple_labels.merged.vcf"), &text);
    // What the CRM does not model survives.
    assert!(text.contains("X-ABUID:ABC-123:ABPerson"), "{text}");
    assert!(text.contains("item4.X-ABLabel:Campus"), "{text}");
    assert!(text.contains("item5.X-ABLabel:_$!<HomePage>!$_"), "{text}");
    // The mobile's label went with it.
    assert!(!text.contains("_$!<Mobile>!$_"), "{text}");
    assert_eq!(card_to_fields(&parse(&text), &MappingConfig::default()), f);
}

#[test]
fn merge_keeps_photo_impp_x_props_and_unknown_params() {
    let base = parse(&std::fs::read_to_string(fixtures().join("rfc_full.vcf")).unwrap());
    let mut f = card_to_fields(&base, &MappingConfig::default());
    f.emails.remove(1);
    f.org_name = "Acme Corp".into();
    f.first_name = "Janet".into();
    f.name = "Janet Doe".into();
    let merged_card = fields_to_card(&f, Some(&base), &MappingConfig::default());
    // Unmodeled entries come through unchanged, params and all. (Compared structurally:
    // calcard's writer renders a data: URI as `base64\,`, which is not the mapping's doing.)
    use calcard::vcard::VCardProperty as P;
    for prop in [P::Photo, P::Impp, P::Other("X-CUSTOM-THING".into()), P::Uid] {
        let before: Vec<_> = base.properties(&prop).collect();
        let after: Vec<_> = merged_card.properties(&prop).collect();
        assert_eq!(before, after, "{prop:?}");
        assert_eq!(after.len(), 1, "{prop:?}");
    }
    let merged = render(&merged_card);
    assert!(
        merged.contains("X-CUSTOM-THING;X-FLAVOR=mint:kept"),
        "{merged}"
    );
    assert!(
        merged.contains("ORG:Acme Corp;Sales;West"),
        "org units kept: {merged}"
    );
    assert!(
        merged.contains("N:Doe;Janet;Quinn;Dr.;PhD"),
        "N parts kept: {merged}"
    );
    assert!(!merged.contains("jane@home.example"), "{merged}");
    assert!(merged.contains("UID:urn:uuid:4fbe8971"), "{merged}");
}

#[test]
fn directions_limit_what_flows() {
    let base = parse(&std::fs::read_to_string(fixtures().join("rfc_full.vcf")).unwrap());
    let cfg = MappingConfig::default()
        .set(CrmField::Notes, Direction::Off)
        .set(CrmField::JobTitle, Direction::ToProvider)
        .set(CrmField::OrgName, Direction::ToCrm);
    let f = card_to_fields(&base, &cfg);
    assert_eq!(f.notes, "", "off: not read");
    assert_eq!(f.job_title, "", "to_provider: not read");
    assert_eq!(f.org_name, "Acme Inc.", "to_crm: read");

    let mut edit = card_to_fields(&base, &MappingConfig::default());
    edit.notes = "CRM notes".into();
    edit.job_title = "VP".into();
    edit.org_name = "Other Org".into();
    let text = render(&fields_to_card(&edit, Some(&base), &cfg));
    assert!(
        text.contains("NOTE:Met at the fair."),
        "off: not written: {text}"
    );
    assert!(text.contains("TITLE:VP"), "to_provider: written: {text}");
    assert!(
        text.contains("ORG:Acme Inc."),
        "to_crm: not written: {text}"
    );
    assert_eq!(cfg.fields_to_crm().count(), 8);
    assert_eq!(cfg.fields_to_provider().count(), 8);
}

#[test]
fn preview_lists_every_field_and_maps_samples() {
    let cards: Vec<VCard> = vcf_fixtures()
        .iter()
        .map(|p| parse(&std::fs::read_to_string(p).unwrap()))
        .collect();
    let cfg = MappingConfig::default().set(CrmField::Birthday, Direction::Off);
    let pv = preview(&cfg, &cards);
    assert_eq!(pv.rows.len(), CrmField::ALL.len());
    let bday = pv
        .rows
        .iter()
        .find(|r| r.field == CrmField::Birthday)
        .unwrap();
    assert_eq!(bday.provider_field, "BDAY");
    assert_eq!(bday.direction, Direction::Off);
    assert_eq!(pv.samples.len(), cards.len());
    assert!(pv.samples.iter().all(|s| s.fields.birthday.is_none()));
    assert_eq!(pv.samples[0].uid.as_deref(), Some("apple-1"));
    let json = serde_json::to_value(&pv).unwrap();
    assert_eq!(json["rows"][0]["crm_field"], "name, first_name, last_name");
}

fn label_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("work".to_string()),
        Just("home".to_string()),
        Just("other".to_string()),
        "[A-Z][a-z]{2,8}( [a-z]{2,6})?",
    ]
}

fn phone_label_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        label_strategy(),
        Just("mobile".to_string()),
        Just("fax".to_string()),
        Just("pager".to_string()),
        Just("main".to_string()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 .,;:'\\-]{0,20}".prop_map(|s| s.trim_end().to_string())
}

fn fields_strategy() -> impl Strategy<Value = PersonFields> {
    let emails = prop::collection::btree_map(
        "[a-z]{1,8}@[a-z]{1,8}\\.example",
        (label_strategy(), any::<bool>()),
        0..4,
    );
    let phones = prop::collection::btree_map(
        "\\+1 [2-9][0-9]{2} 555 0[0-9]{3}",
        (phone_label_strategy(), any::<bool>()),
        0..4,
    );
    let addr = (label_strategy(), text(), text(), text(), any::<bool>()).prop_map(
        |(label, street, locality, country, primary)| Address {
            label,
            street,
            locality,
            country,
            primary,
            ..Default::default()
        },
    );
    (
        ("[A-Z][a-z]{1,8}", "[A-Z][a-z]{1,8}"),
        emails,
        phones,
        (text(), text()),
        prop::collection::vec(addr, 0..3),
        prop::option::of((1950u16..2010, 1u8..=12, 1u8..=28, any::<bool>())),
        (
            text(),
            prop::collection::btree_set("https://[a-z]{1,8}\\.example/[a-z]{0,5}", 0..3),
        ),
        prop::collection::btree_set("[a-z]{1,8}", 0..4),
    )
        .prop_map(
            |(
                (first, last),
                emails,
                phones,
                (org, title),
                addresses,
                bday,
                (notes, urls),
                labels,
            )| {
                let lv = |m: std::collections::BTreeMap<String, (String, bool)>| {
                    m.into_iter()
                        .map(|(value, (label, primary))| LabeledValue {
                            value,
                            label,
                            primary,
                        })
                        .collect()
                };
                PersonFields {
                    name: format!("{first} {last}"),
                    first_name: first,
                    last_name: last,
                    emails: lv(emails),
                    phones: lv(phones),
                    org_name: org,
                    job_title: title,
                    addresses,
                    birthday: bday.map(|(y, m, d, with_year)| {
                        if with_year {
                            format!("{y:04}-{m:02}-{d:02}")
                        } else {
                            format!("--{m:02}-{d:02}")
                        }
                    }),
                    notes,
                    urls: urls.into_iter().collect(),
                    labels: labels.into_iter().collect(),
                }
            },
        )
}

/// Primaries are canonical when read back only if at least the chosen ones stay "lowest PREF".
fn canonical(mut f: PersonFields) -> PersonFields {
    // Addresses are keyed by value: identical addresses would merge; keep them unique.
    let mut seen = std::collections::BTreeSet::new();
    f.addresses.retain(|a| {
        seen.insert((
            a.street.clone(),
            a.locality.clone(),
            a.country.clone(),
            a.po_box.clone(),
        ))
    });
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn fields_card_fields_is_identity(f in fields_strategy()) {
        let f = canonical(f);
        let cfg = MappingConfig::default();
        let card = fields_to_card(&f, None, &cfg);
        prop_assert_eq!(&card_to_fields(&card, &cfg), &f);
        // Through text too: what we write parses back to the same fields.
        let reparsed = VCard::parse(card.to_string()).expect("our output parses");
        prop_assert_eq!(&card_to_fields(&reparsed, &cfg), &f);
    }

    #[test]
    fn merge_onto_any_fixture_is_identity(f in fields_strategy(), which in 0usize..3) {
        let f = canonical(f);
        let cfg = MappingConfig::default();
        let base = parse(&std::fs::read_to_string(&vcf_fixtures()[which]).unwrap());
        let card = fields_to_card(&f, Some(&base), &cfg);
        prop_assert_eq!(&card_to_fields(&card, &cfg), &f);
    }
}
