//! The edges of the sync core: CRM person fields and vCards ↔ [`FieldMap`], the card's REV,
//! the deterministic identity of a card the engine creates, and writing merged fields back
//! into a person or a card without disturbing what did not change.
//!
//! Pure: no I/O.
//!
//! # Field encoding
//! Single-valued fields are [`FieldValue::Text`]; emails, phones, addresses, URLs and labels are
//! [`FieldValue::Set`]s keyed by an identity key (normalized email, E.164 phone, normalized
//! address text, the URL, the label) whose element text is the compact JSON of the element, so
//! a relabelled email or a moved primary flag is a *changed* element.
//!
//! Sets have no order. Writing back ([`apply_to_person`]) touches only the fields the plan
//! names as changed, and inside a changed set keeps the surviving elements in their old order
//! and appends new ones in key order, so a sync never reorders what nobody edited.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use serde::{de::DeserializeOwned, Serialize};

use super::fields::{names, FieldMap, FieldValue};
use super::reconcile::{FieldDirection, FieldDirections, PersonId, RemoteItem as ReconcileItem};
use crate::crm::mapping::{card_to_fields, fields_to_card, CrmField, Direction, MappingConfig};
use crate::crm::repo::{normalize_email, normalize_phone};
use crate::crm::{Address, LabeledValue, PersonFields};
use crate::vcard::{fingerprint, PartialDateTime, VCard, VCardEntry, VCardProperty, VCardValue};

/// A phone region for national numbers.
pub type Region = Option<phonenumber::country::Id>;

/// The prefix of the UID (and CardDAV resource name) of a card the engine creates for a CRM
/// person: `cardbridge-<connection>-<person>`.
pub const DERIVED_UID_PREFIX: &str = "cardbridge-";

/// The UID of the card the engine creates for `person` in `connection`. Deterministic, so a
/// create retried after a crash addresses the same card (`If-None-Match: *`) and a pulled card
/// with this UID is recognized as that person's ([`person_of_derived_uid`]).
pub fn derived_uid(connection: u64, person: PersonId) -> String {
    format!("{DERIVED_UID_PREFIX}{connection}-{person}")
}

/// The person a card UID was derived from, when it is this connection's derived UID.
pub fn person_of_derived_uid(connection: u64, uid: &str) -> Option<PersonId> {
    let rest = uid.strip_prefix(DERIVED_UID_PREFIX)?;
    let (conn, person) = rest.split_once('-')?;
    if conn.parse::<u64>().ok()? != connection {
        return None;
    }
    person.parse().ok()
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn from_json<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_str(s).ok()
}

fn collapse(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The identity key of an email.
fn email_key(v: &LabeledValue) -> String {
    normalize_email(&v.value)
}

/// The identity key of a phone: E.164 when it parses, else its digits, else its text.
fn phone_key(v: &LabeledValue, region: Region) -> String {
    let k = normalize_phone(&v.value, region);
    if k.is_empty() {
        collapse(&v.value)
    } else {
        k
    }
}

/// The identity key of an address: its components, whitespace-collapsed and lowercased.
fn address_key(a: &Address) -> String {
    [
        &a.po_box,
        &a.extended,
        &a.street,
        &a.locality,
        &a.region,
        &a.postal_code,
        &a.country,
    ]
    .iter()
    .map(|s| collapse(s))
    .collect::<Vec<_>>()
    .join("|")
}

fn set_of<T: Serialize>(items: &[T], key: impl Fn(&T) -> String) -> FieldValue {
    FieldValue::Set(
        items
            .iter()
            .map(|i| (key(i), json(i)))
            .filter(|(k, _)| !k.is_empty() && k.chars().any(|c| c != '|'))
            .collect(),
    )
}

fn text_set(items: &[String]) -> FieldValue {
    FieldValue::Set(
        items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| (s.to_owned(), s.to_owned()))
            .collect(),
    )
}

/// The sync core's view of person fields.
pub fn person_to_map(f: &PersonFields, region: Region) -> FieldMap {
    let mut m = FieldMap::new();
    m.insert(names::NAME, f.name.trim());
    m.insert(names::FIRST_NAME, f.first_name.trim());
    m.insert(names::LAST_NAME, f.last_name.trim());
    m.insert(names::EMAILS, set_of(&f.emails, email_key));
    m.insert(names::PHONES, set_of(&f.phones, |p| phone_key(p, region)));
    m.insert(names::ORG_NAME, f.org_name.trim());
    m.insert(names::JOB_TITLE, f.job_title.trim());
    m.insert(names::ADDRESSES, set_of(&f.addresses, address_key));
    m.insert(names::BIRTHDAY, f.birthday.clone().unwrap_or_default());
    m.insert(names::NOTES, f.notes.trim());
    m.insert(names::URLS, text_set(&f.urls));
    m.insert(names::LABELS, text_set(&f.labels));
    m
}

/// Rebuilds a changed set field: elements of `old` whose key survives take the new content in
/// place, removed ones go, new ones are appended in key order.
fn rebuild<T: DeserializeOwned + Clone>(
    old: &[T],
    key: impl Fn(&T) -> String,
    new: &BTreeMap<String, String>,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut used = BTreeSet::new();
    for o in old {
        let k = key(o);
        if used.contains(&k) {
            continue;
        }
        if let Some(text) = new.get(&k) {
            if let Some(v) = from_json::<T>(text) {
                out.push(v);
            } else {
                out.push(o.clone());
            }
            used.insert(k);
        }
    }
    for (k, text) in new {
        if !used.contains(k) {
            if let Some(v) = from_json::<T>(text) {
                out.push(v);
            }
        }
    }
    out
}

fn rebuild_text(old: &[String], new: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in old {
        let t = o.trim();
        if new.contains_key(t) && !out.iter().any(|x| x == t) {
            out.push(t.to_owned());
        }
    }
    for v in new.values() {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

/// Writes the `changed` fields of `fields` into `target` (the person's or the card's current
/// fields); every other field of `target` is left exactly as it is.
pub fn apply_to_person(
    target: &PersonFields,
    fields: &FieldMap,
    changed: &BTreeSet<String>,
    region: Region,
) -> PersonFields {
    let mut out = target.clone();
    for field in changed {
        match field.as_str() {
            names::NAME => out.name = fields.text(names::NAME).to_owned(),
            names::FIRST_NAME => out.first_name = fields.text(names::FIRST_NAME).to_owned(),
            names::LAST_NAME => out.last_name = fields.text(names::LAST_NAME).to_owned(),
            names::ORG_NAME => out.org_name = fields.text(names::ORG_NAME).to_owned(),
            names::JOB_TITLE => out.job_title = fields.text(names::JOB_TITLE).to_owned(),
            names::NOTES => out.notes = fields.text(names::NOTES).to_owned(),
            names::BIRTHDAY => {
                out.birthday =
                    Some(fields.text(names::BIRTHDAY).to_owned()).filter(|b| !b.is_empty())
            }
            names::EMAILS => {
                out.emails = rebuild(&out.emails, email_key, &fields.elements(names::EMAILS))
            }
            names::PHONES => {
                out.phones = rebuild(
                    &out.phones,
                    |p| phone_key(p, region),
                    &fields.elements(names::PHONES),
                )
            }
            names::ADDRESSES => {
                out.addresses = rebuild(
                    &out.addresses,
                    address_key,
                    &fields.elements(names::ADDRESSES),
                )
            }
            names::URLS => out.urls = rebuild_text(&out.urls, &fields.elements(names::URLS)),
            names::LABELS => {
                out.labels = rebuild_text(&out.labels, &fields.elements(names::LABELS))
            }
            // A field this build does not map has nowhere to go.
            _ => {}
        }
    }
    out
}

/// Person fields from a field map alone (for a person the engine creates).
pub fn map_to_person(fields: &FieldMap, region: Region) -> PersonFields {
    let all: BTreeSet<String> = fields.field_names().map(str::to_owned).collect();
    apply_to_person(&PersonFields::default(), fields, &all, region)
}

/// Every field flowing both ways: the engine converts whole cards and leaves the per-field
/// directions to `reconcile`.
fn all_fields() -> MappingConfig {
    MappingConfig::default()
}

/// The card's fields as the sync core sees them.
pub fn card_to_map(card: &VCard, region: Region) -> FieldMap {
    person_to_map(&card_to_fields(card, &all_fields()), region)
}

/// The card's REV (RFC 6350 §6.7.4) as a time, for `NewestWins`.
pub fn card_rev(card: &VCard) -> Option<DateTime<Utc>> {
    let entry: &VCardEntry = card.property(&VCardProperty::Rev)?;
    match entry.values.first()? {
        VCardValue::PartialDateTime(d) => Utc.timestamp_opt(d.to_timestamp()?, 0).single(),
        VCardValue::Text(t) => parse_rev_text(t),
        _ => None,
    }
}

fn parse_rev_text(t: &str) -> Option<DateTime<Utc>> {
    let t = t.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(t.trim_end_matches('Z'), "%Y%m%dT%H%M%S")
        .ok()
        .map(|n| n.and_utc())
}

/// What `reconcile` needs of a pulled (or written) card.
pub fn remote_item(card: &VCard, etag: Option<String>, region: Region) -> ReconcileItem {
    ReconcileItem {
        fields: card_to_map(card, region),
        card_fingerprint: fingerprint(card).to_hex(),
        etag,
        rev: card_rev(card),
    }
}

/// The card to send: the `changed` fields of `fields` written into `base` (the last remote
/// card, so what the CRM does not model survives), or a fresh card. Fields not in `changed`
/// are taken from `base` itself, so they are left byte-for-byte alone.
///
/// The card's REV (RFC 6350 §6.7.4) becomes `rev`, the time of the push: a card this bridge
/// wrote is then never "newer" than a CRM edit made after it. That matters when a crash lost
/// the base of a pushed card: the next run links the card back with an empty base, and
/// [`Policy::NewestWins`](super::merge::Policy::NewestWins) must let the later CRM edit win
/// instead of the card's older copy (a card without REV would win every tie).
pub fn card_for_push(
    base: Option<&VCard>,
    fields: &FieldMap,
    changed: &BTreeSet<String>,
    uid: Option<&str>,
    rev: DateTime<Utc>,
    region: Region,
) -> VCard {
    let current = base
        .map(|c| card_to_fields(c, &all_fields()))
        .unwrap_or_default();
    let target = apply_to_person(&current, fields, changed, region);
    let mut card = fields_to_card(&target, base, &all_fields());
    if let Some(uid) = uid {
        if card.property(&VCardProperty::Uid).is_none() {
            card.entries
                .push(VCardEntry::new(VCardProperty::Uid).with_value(uid.to_owned()));
        }
    }
    card.entries.retain(|e| e.name != VCardProperty::Rev);
    card.entries.push(
        VCardEntry::new(VCardProperty::Rev).with_value(VCardValue::PartialDateTime(
            PartialDateTime::from_utc_timestamp(rev.timestamp()),
        )),
    );
    card
}

/// The field names of one mapped CRM field.
pub fn field_names_of(f: CrmField) -> &'static [&'static str] {
    match f {
        CrmField::Name => &[names::NAME, names::FIRST_NAME, names::LAST_NAME],
        CrmField::Emails => &[names::EMAILS],
        CrmField::Phones => &[names::PHONES],
        CrmField::OrgName => &[names::ORG_NAME],
        CrmField::JobTitle => &[names::JOB_TITLE],
        CrmField::Addresses => &[names::ADDRESSES],
        CrmField::Birthday => &[names::BIRTHDAY],
        CrmField::Notes => &[names::NOTES],
        CrmField::Urls => &[names::URLS],
        CrmField::Labels => &[names::LABELS],
    }
}

/// The sync core's field directions for a connection's mapping.
pub fn field_directions(mapping: &MappingConfig) -> FieldDirections {
    let mut out = FieldDirections::all_both();
    for f in CrmField::ALL {
        let d = match mapping.direction(f) {
            Direction::Both => FieldDirection::Both,
            Direction::ToCrm => FieldDirection::ToCrm,
            Direction::ToProvider => FieldDirection::ToProvider,
            Direction::Off => FieldDirection::Off,
        };
        if d != FieldDirection::Both {
            for name in field_names_of(f) {
                out = out.with(name, d);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::vcard::read_normalized;

    fn lv(value: &str, label: &str, primary: bool) -> LabeledValue {
        LabeledValue {
            value: value.into(),
            label: label.into(),
            primary,
        }
    }

    fn sample() -> PersonFields {
        PersonFields {
            name: "Ada Lovelace".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            emails: vec![lv("b@x.org", "work", true), lv("A@x.org", "home", false)],
            phones: vec![lv("+44 20 7946 0018", "mobile", false)],
            org_name: "Engines".into(),
            birthday: Some("1815-12-10".into()),
            urls: vec!["https://b".into(), "https://a".into()],
            labels: vec!["vip".into()],
            ..Default::default()
        }
    }

    #[test]
    fn person_round_trips_through_the_map_keeping_order() {
        let p = sample();
        let m = person_to_map(&p, None);
        assert_eq!(
            m.elements(names::EMAILS).keys().collect::<Vec<_>>(),
            ["a@x.org", "b@x.org"]
        );
        assert!(m.elements(names::PHONES).contains_key("+442079460018"));
        let all: BTreeSet<String> = m.field_names().map(str::to_owned).collect();
        assert_eq!(apply_to_person(&p, &m, &all, None), p);
    }

    #[test]
    fn only_changed_fields_are_written_and_new_elements_append() {
        let p = sample();
        let mut m = person_to_map(&p, None);
        let mut emails = m.elements(names::EMAILS);
        emails.remove("a@x.org");
        emails.insert("c@x.org".into(), json(&lv("c@x.org", "other", false)));
        m.insert(names::EMAILS, FieldValue::Set(emails));
        m.insert(names::NOTES, "ignored: not in changed");
        let changed: BTreeSet<String> = [names::EMAILS.to_owned()].into();
        let out = apply_to_person(&p, &m, &changed, None);
        let vals: Vec<_> = out.emails.iter().map(|e| e.value.as_str()).collect();
        assert_eq!(vals, ["b@x.org", "c@x.org"]);
        assert_eq!(out.notes, "");
    }

    #[test]
    fn derived_uids_name_their_person_only_for_their_connection() {
        let uid = derived_uid(7, 42);
        assert_eq!(person_of_derived_uid(7, &uid), Some(42));
        assert_eq!(person_of_derived_uid(8, &uid), None);
        assert_eq!(person_of_derived_uid(7, "other-uid"), None);
    }

    #[test]
    fn a_push_keeps_what_the_crm_does_not_model() {
        let text = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:u1\r\nFN:Ada\r\nN:;Ada;;;\r\n\
                    EMAIL;TYPE=work:ada@x.org\r\nX-CUSTOM:keep me\r\n\
                    REV:20240102T030405Z\r\nEND:VCARD\r\n";
        let card = read_normalized(text).cards.remove(0);
        assert_eq!(
            card_rev(&card),
            Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).single()
        );
        let mut fields = card_to_map(&card, None);
        fields.insert(names::JOB_TITLE, "Countess");
        let changed: BTreeSet<String> = [names::JOB_TITLE.to_owned()].into();
        let pushed_at = Utc.with_ymd_and_hms(2026, 12, 4, 14, 16, 5).unwrap();
        let out = card_for_push(
            Some(&card),
            &fields,
            &changed,
            Some("ignored"),
            pushed_at,
            None,
        );
        let written = crate::vcard::write_v4(&out);
        // The REV is the push's, once.
        assert_eq!(card_rev(&out), Some(pushed_at), "{written}");
        assert_eq!(written.matches("REV:").count(), 1, "{written}");
        assert!(written.contains("X-CUSTOM:keep me"), "{written}");
        assert!(written.contains("TITLE:Countess"), "{written}");
        assert!(written.contains("UID:u1"), "{written}");
        assert!(!written.contains("ignored"), "{written}");
        assert_eq!(card_to_map(&out, None), fields);
    }

    #[test]
    fn directions_expand_the_name_field() {
        let d = field_directions(&MappingConfig::default().set(CrmField::Name, Direction::Off));
        assert_eq!(d.get(names::FIRST_NAME), FieldDirection::Off);
        assert_eq!(d.get(names::EMAILS), FieldDirection::Both);
    }
}
