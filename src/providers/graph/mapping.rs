//! Pure mapping between a Microsoft Graph `contact` (JSON) and a normalized vCard 4 card.
//!
//! No I/O. Reading ([`from_graph`]) never fails on a well-formed JSON object: fields of the
//! wrong shape are ignored. Writing ([`to_graph`]) fills Graph's fixed slots predictably,
//! preferred entries first (PREF ascending, then card order), and reports everything that did
//! not fit as [`Overflow`] so that the engine keeps it in the CRM and never deletes it there
//! because the Graph copy lacks it (see [`reattach_overflow`] and `docs/FAKES-graph.md`).
//!
//! Slot limits (Graph `contact` resource; providers.md §3 "Data model"):
//! at most [`MAX_EMAILS`] `emailAddresses`, [`MAX_BUSINESS_PHONES`] `businessPhones`,
//! one `mobilePhone`, [`MAX_HOME_PHONES`] `homePhones`, [`MAX_IM_ADDRESSES`] `imAddresses`,
//! one address each of `businessAddress`/`homeAddress`/`otherAddress`, one
//! `businessHomePage`.
//!
//! Our CRM id is kept in the single-value extended property [`CRM_ID_PROPERTY_ID`].

use calcard::common::{IanaString, PartialDateTime};
use calcard::vcard::{
    VCardEntry, VCardParameter, VCardParameterName, VCardParameterValue, VCardProperty, VCardType,
    VCardValue,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::vcard::VCard;

/// Graph rejects more than 3 `emailAddresses` (400 "The multi value property EmailAddresses
/// has 4 entries, that exceeds the max allowed value of 3", microsoft-graph-docs#15276).
pub const MAX_EMAILS: usize = 3;
/// Graph `businessPhones` holds at most 2 numbers (providers.md §3).
pub const MAX_BUSINESS_PHONES: usize = 2;
/// Graph `homePhones`: Exchange stores HomePhone and HomePhone2, so at most 2.
pub const MAX_HOME_PHONES: usize = 2;
/// Graph `imAddresses`: Exchange stores ImAddress1..3, so at most 3.
pub const MAX_IM_ADDRESSES: usize = 3;

/// The single-value extended property (MAPI named property, string type, in our own property
/// set GUID) that holds the CRM id of a contact we created. Graph `singleValueLegacyExtendedProperty`
/// id syntax: `"{type} {guid} Name {name}"`.
pub const CRM_ID_PROPERTY_ID: &str =
    "String {6f1c1b5e-2d8a-4b8e-9a3c-7c2f0c1e4a11} Name cardbridgeCrmId";

/// Graph JSON member names of the `contact` resource (Graph v1.0 `contact` resource type).
pub mod field {
    /// `id`.
    pub const ID: &str = "id";
    /// `@odata.etag` (OData JSON format §4.5.10).
    pub const ODATA_ETAG: &str = "@odata.etag";
    /// `@removed` in a delta response (delta-query-overview).
    pub const REMOVED: &str = "@removed";
    /// `changeKey`.
    pub const CHANGE_KEY: &str = "changeKey";
    /// `displayName`.
    pub const DISPLAY_NAME: &str = "displayName";
    /// `givenName`.
    pub const GIVEN_NAME: &str = "givenName";
    /// `middleName`.
    pub const MIDDLE_NAME: &str = "middleName";
    /// `surname`.
    pub const SURNAME: &str = "surname";
    /// `title` (the honorific prefix, not the job title).
    pub const TITLE: &str = "title";
    /// `generation` (suffix).
    pub const GENERATION: &str = "generation";
    /// `nickName`.
    pub const NICK_NAME: &str = "nickName";
    /// `emailAddresses`.
    pub const EMAIL_ADDRESSES: &str = "emailAddresses";
    /// `businessPhones`.
    pub const BUSINESS_PHONES: &str = "businessPhones";
    /// `homePhones`.
    pub const HOME_PHONES: &str = "homePhones";
    /// `mobilePhone`.
    pub const MOBILE_PHONE: &str = "mobilePhone";
    /// `imAddresses`.
    pub const IM_ADDRESSES: &str = "imAddresses";
    /// `businessAddress`.
    pub const BUSINESS_ADDRESS: &str = "businessAddress";
    /// `homeAddress`.
    pub const HOME_ADDRESS: &str = "homeAddress";
    /// `otherAddress`.
    pub const OTHER_ADDRESS: &str = "otherAddress";
    /// `companyName`.
    pub const COMPANY_NAME: &str = "companyName";
    /// `department`.
    pub const DEPARTMENT: &str = "department";
    /// `jobTitle`.
    pub const JOB_TITLE: &str = "jobTitle";
    /// `birthday`.
    pub const BIRTHDAY: &str = "birthday";
    /// `personalNotes`.
    pub const PERSONAL_NOTES: &str = "personalNotes";
    /// `businessHomePage`.
    pub const BUSINESS_HOME_PAGE: &str = "businessHomePage";
    /// `categories`.
    pub const CATEGORIES: &str = "categories";
    /// `singleValueExtendedProperties`.
    pub const SINGLE_VALUE_EXTENDED_PROPERTIES: &str = "singleValueExtendedProperties";
    /// The contact's `photo` navigation property (a `profilePhoto`), whose bytes are at
    /// `photo/$value`.
    pub const PHOTO: &str = "photo";
    /// The raw-value path segment of a media entity (OData URL conventions §4.12).
    pub const VALUE: &str = "$value";
}

/// The properties the provider asks for in `$select` on the first delta call and on reads.
pub const SELECT_FIELDS: &[&str] = &[
    field::CHANGE_KEY,
    field::DISPLAY_NAME,
    field::GIVEN_NAME,
    field::MIDDLE_NAME,
    field::SURNAME,
    field::TITLE,
    field::GENERATION,
    field::NICK_NAME,
    field::EMAIL_ADDRESSES,
    field::BUSINESS_PHONES,
    field::HOME_PHONES,
    field::MOBILE_PHONE,
    field::IM_ADDRESSES,
    field::BUSINESS_ADDRESS,
    field::HOME_ADDRESS,
    field::OTHER_ADDRESS,
    field::COMPANY_NAME,
    field::DEPARTMENT,
    field::JOB_TITLE,
    field::BIRTHDAY,
    field::PERSONAL_NOTES,
    field::BUSINESS_HOME_PAGE,
    field::CATEGORIES,
];

/// `emailAddress` complex type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EmailAddress {
    /// Display name (Graph has no label for emails).
    #[serde(default)]
    pub name: Option<String>,
    /// The address.
    #[serde(default)]
    pub address: Option<String>,
}

/// `physicalAddress` complex type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhysicalAddress {
    /// Street (may hold several lines).
    #[serde(default)]
    pub street: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// State or province.
    #[serde(default)]
    pub state: Option<String>,
    /// Country or region.
    #[serde(default)]
    pub country_or_region: Option<String>,
    /// Postal code.
    #[serde(default)]
    pub postal_code: Option<String>,
}

impl PhysicalAddress {
    fn is_empty(&self) -> bool {
        [
            &self.street,
            &self.city,
            &self.state,
            &self.country_or_region,
            &self.postal_code,
        ]
        .iter()
        .all(|f| f.as_deref().is_none_or(|s| s.trim().is_empty()))
    }
}

/// `singleValueLegacyExtendedProperty`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SingleValueExtendedProperty {
    /// Property id, e.g. [`CRM_ID_PROPERTY_ID`].
    pub id: String,
    /// Value.
    #[serde(default)]
    pub value: Option<String>,
}

/// `@removed` annotation of a delta entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Removed {
    /// `deleted` or `changed` (moved out of the folder).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The Graph `contact` resource as read (every member optional; delta rows may be partial).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphContact {
    /// Item id.
    #[serde(default)]
    pub id: Option<String>,
    /// `@odata.etag`, `W/"<changeKey>"`.
    #[serde(default, rename = "@odata.etag")]
    pub odata_etag: Option<String>,
    /// Present on delta entries that report a removal.
    #[serde(default, rename = "@removed")]
    pub removed: Option<Removed>,
    /// Version of the item.
    #[serde(default)]
    pub change_key: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Given name.
    #[serde(default)]
    pub given_name: Option<String>,
    /// Middle name.
    #[serde(default)]
    pub middle_name: Option<String>,
    /// Surname.
    #[serde(default)]
    pub surname: Option<String>,
    /// Honorific prefix.
    #[serde(default)]
    pub title: Option<String>,
    /// Suffix.
    #[serde(default)]
    pub generation: Option<String>,
    /// Nickname.
    #[serde(default)]
    pub nick_name: Option<String>,
    /// Up to 3 emails.
    #[serde(default)]
    pub email_addresses: Option<Vec<EmailAddress>>,
    /// Up to 2 business phones.
    #[serde(default)]
    pub business_phones: Option<Vec<String>>,
    /// Home phones.
    #[serde(default)]
    pub home_phones: Option<Vec<String>>,
    /// One mobile phone.
    #[serde(default)]
    pub mobile_phone: Option<String>,
    /// Instant messaging addresses.
    #[serde(default)]
    pub im_addresses: Option<Vec<String>>,
    /// Business address.
    #[serde(default)]
    pub business_address: Option<PhysicalAddress>,
    /// Home address.
    #[serde(default)]
    pub home_address: Option<PhysicalAddress>,
    /// Other address.
    #[serde(default)]
    pub other_address: Option<PhysicalAddress>,
    /// Company.
    #[serde(default)]
    pub company_name: Option<String>,
    /// Department.
    #[serde(default)]
    pub department: Option<String>,
    /// Job title.
    #[serde(default)]
    pub job_title: Option<String>,
    /// Birthday, an ISO 8601 date-time (`1974-07-22T00:00:00Z`).
    #[serde(default)]
    pub birthday: Option<String>,
    /// Notes.
    #[serde(default)]
    pub personal_notes: Option<String>,
    /// Web page.
    #[serde(default)]
    pub business_home_page: Option<String>,
    /// Categories.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Extended properties (only present when `$expand`ed; never in delta).
    #[serde(default)]
    pub single_value_extended_properties: Option<Vec<SingleValueExtendedProperty>>,
}

impl GraphContact {
    /// Reads one JSON object; `Err` carries the serde message.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        GraphContact::deserialize(value).map_err(|e| e.to_string())
    }

    /// The version tag to report and to send as `If-Match`: `@odata.etag`, else built from
    /// the `changeKey` the way Graph builds it (`W/"<changeKey>"`).
    pub fn etag(&self) -> Option<String> {
        self.odata_etag
            .clone()
            .or_else(|| self.change_key.as_ref().map(|ck| format!("W/\"{ck}\"")))
    }

    /// The CRM id from [`CRM_ID_PROPERTY_ID`], when the property was expanded.
    pub fn crm_id(&self) -> Option<String> {
        self.single_value_extended_properties
            .as_ref()?
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(CRM_ID_PROPERTY_ID))
            .and_then(|p| p.value.clone())
            .filter(|v| !v.is_empty())
    }
}

/// A Graph contact read as a card.
#[derive(Debug, Clone, PartialEq)]
pub struct FromGraph {
    /// The normalized vCard 4 card.
    pub card: VCard,
    /// The CRM id, when Graph returned [`CRM_ID_PROPERTY_ID`].
    pub crm_id: Option<String>,
}

/// Why a vCard property did not make it into the Graph body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverflowReason {
    /// The Graph field has a fixed number of slots and they were full (the field is named).
    SlotsFull(&'static str),
    /// Graph's `contact` has no field for this property (or this value).
    Unsupported,
}

/// One card property that Graph cannot hold. The engine keeps it in the CRM.
#[derive(Debug, Clone, PartialEq)]
pub struct Overflow {
    /// The property, as it was on the card.
    pub entry: VCardEntry,
    /// Why it did not fit.
    pub reason: OverflowReason,
}

/// A card mapped for a write.
#[derive(Debug, Clone, PartialEq)]
pub struct ToGraph {
    /// The JSON body for `POST`/`PATCH`. Every mapped member is present (empty values clear
    /// the field on `PATCH`, which otherwise leaves absent members untouched).
    pub body: Map<String, Value>,
    /// What did not fit.
    pub overflow: Vec<Overflow>,
}

// ---------------------------------------------------------------------------------------
// Graph → vCard

pub(crate) fn text(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(crate) fn typ(t: VCardType) -> VCardParameter {
    VCardParameter::new(VCardParameterName::Type, VCardParameterValue::Type(t))
}

pub(crate) fn pref1() -> VCardParameter {
    VCardParameter::new(VCardParameterName::Pref, VCardParameterValue::Integer(1))
}

pub(crate) fn text_entry(name: VCardProperty, value: &str) -> VCardEntry {
    VCardEntry::new(name).with_value(value.to_string())
}

fn adr_entry(addr: &PhysicalAddress, kind: Option<VCardType>) -> Option<VCardEntry> {
    if addr.is_empty() {
        return None;
    }
    let part = |s: &Option<String>| VCardValue::Text(text(s).unwrap_or_default().to_string());
    let mut entry = VCardEntry::new(VCardProperty::Adr).with_values(vec![
        VCardValue::Text(String::new()),
        VCardValue::Text(String::new()),
        part(&addr.street),
        part(&addr.city),
        part(&addr.state),
        part(&addr.postal_code),
        part(&addr.country_or_region),
    ]);
    if let Some(kind) = kind {
        entry.add_param(typ(kind));
    }
    Some(entry)
}

/// Parses Graph's `birthday` (`YYYY-MM-DD` optionally followed by a time) into a date.
///
/// Strictly that shape (4-digit year, 2-digit month and day, then nothing or `T`/space and a
/// time): the year must fit vCard's `DATE` (RFC 6350 §4.3.1, `year = 4DIGIT`). Reading the first
/// ten characters of anything made `19020-9-29` the 29th but its own rendering
/// `19020-09-29T…` the 2nd (found by the `graph_contact_mapping` fuzz target).
pub(crate) fn parse_birthday(s: &str) -> Option<PartialDateTime> {
    let s = s.trim();
    let date = s.get(..10)?;
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10)) {
        return None;
    }
    if !matches!(s.as_bytes().get(10), None | Some(b'T' | b't' | b' ')) {
        return None;
    }
    let year: u16 = date[0..4].parse().ok()?;
    let month: u8 = date[5..7].parse().ok()?;
    let day: u8 = date[8..10].parse().ok()?;
    // A real calendar date (rejects 1990-02-29).
    chrono::NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day))?;
    Some(PartialDateTime {
        year: Some(year),
        month: Some(month),
        day: Some(day),
        ..Default::default()
    })
}

/// Maps a Graph contact to a normalized vCard 4 card.
///
/// Order of properties: FN, N, NICKNAME, EMAIL (Graph order, the first PREF=1), TEL (business
/// phones `TYPE=work`, mobile `TYPE=cell`, home phones `TYPE=home`; the first PREF=1), IMPP,
/// ADR (work, home, other-untyped), ORG (company; department), TITLE, BDAY, URL
/// (`TYPE=work`), CATEGORIES, NOTE. Graph's email `name` is a display name and is not kept.
pub fn from_graph(contact: &GraphContact) -> FromGraph {
    let mut entries = Vec::new();

    let composed = [
        text(&contact.title),
        text(&contact.given_name),
        text(&contact.middle_name),
        text(&contact.surname),
        text(&contact.generation),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let fn_value = text(&contact.display_name)
        .map(str::to_string)
        .or_else(|| (!composed.is_empty()).then_some(composed))
        .or_else(|| text(&contact.company_name).map(str::to_string))
        .unwrap_or_default();
    entries.push(text_entry(VCardProperty::Fn, &fn_value));

    let name_parts = [
        &contact.surname,
        &contact.given_name,
        &contact.middle_name,
        &contact.title,
        &contact.generation,
    ];
    if name_parts.iter().any(|p| text(p).is_some()) {
        entries.push(
            VCardEntry::new(VCardProperty::N).with_values(
                name_parts
                    .iter()
                    .map(|p| VCardValue::Text(text(p).unwrap_or_default().to_string()))
                    .collect(),
            ),
        );
    }
    if let Some(nick) = text(&contact.nick_name) {
        entries.push(text_entry(VCardProperty::Nickname, nick));
    }

    let emails = contact.email_addresses.iter().flatten();
    for (i, address) in emails.filter_map(|e| text(&e.address)).enumerate() {
        let mut entry = text_entry(VCardProperty::Email, address);
        if i == 0 {
            entry.add_param(pref1());
        }
        entries.push(entry);
    }

    let mut phones: Vec<(VCardType, &str)> = Vec::new();
    for p in contact.business_phones.iter().flatten() {
        phones.push((VCardType::Work, p.as_str()));
    }
    if let Some(m) = contact.mobile_phone.as_ref() {
        phones.push((VCardType::Cell, m.as_str()));
    }
    for p in contact.home_phones.iter().flatten() {
        phones.push((VCardType::Home, p.as_str()));
    }
    let phones = phones
        .into_iter()
        .map(|(t, p)| (t, p.trim()))
        .filter(|(_, p)| !p.is_empty());
    for (i, (kind, number)) in phones.enumerate() {
        let mut entry = text_entry(VCardProperty::Tel, number).with_param(typ(kind));
        if i == 0 {
            entry.add_param(pref1());
        }
        entries.push(entry);
    }

    for im in contact.im_addresses.iter().flatten() {
        let im = im.trim();
        if !im.is_empty() {
            entries.push(text_entry(VCardProperty::Impp, im));
        }
    }

    let addresses = [
        (&contact.business_address, Some(VCardType::Work)),
        (&contact.home_address, Some(VCardType::Home)),
        (&contact.other_address, None),
    ];
    for (addr, kind) in addresses {
        if let Some(entry) = addr.as_ref().and_then(|a| adr_entry(a, kind)) {
            entries.push(entry);
        }
    }

    match (text(&contact.company_name), text(&contact.department)) {
        (None, None) => {}
        (company, None) => entries.push(text_entry(VCardProperty::Org, company.unwrap_or(""))),
        (company, Some(dept)) => {
            entries.push(VCardEntry::new(VCardProperty::Org).with_values(vec![
                VCardValue::Text(company.unwrap_or_default().to_string()),
                VCardValue::Text(dept.to_string()),
            ]))
        }
    }
    if let Some(title) = text(&contact.job_title) {
        entries.push(text_entry(VCardProperty::Title, title));
    }
    if let Some(bday) = text(&contact.birthday).and_then(parse_birthday) {
        entries.push(
            VCardEntry::new(VCardProperty::Bday).with_value(VCardValue::PartialDateTime(bday)),
        );
    }
    if let Some(url) = text(&contact.business_home_page) {
        entries.push(text_entry(VCardProperty::Url, url).with_param(typ(VCardType::Work)));
    }
    let categories: Vec<VCardValue> = contact
        .categories
        .iter()
        .flatten()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .map(|c| VCardValue::Text(c.to_string()))
        .collect();
    if !categories.is_empty() {
        entries.push(VCardEntry::new(VCardProperty::Categories).with_values(categories));
    }
    if let Some(note) = contact
        .personal_notes
        .as_deref()
        .filter(|n| !n.trim().is_empty())
    {
        entries.push(text_entry(VCardProperty::Note, note));
    }

    FromGraph {
        card: VCard { entries },
        crm_id: contact.crm_id(),
    }
}

// ---------------------------------------------------------------------------------------
// vCard → Graph

/// RFC 6350 §5.3: PREF is 1..=100, 1 most preferred; absent means least preferred.
pub(crate) fn pref_of(entry: &VCardEntry) -> u32 {
    entry
        .params
        .iter()
        .filter(|p| p.name == VCardParameterName::Pref)
        .find_map(|p| match &p.value {
            VCardParameterValue::Integer(n) => Some(*n),
            VCardParameterValue::Text(t) => t.trim().parse().ok(),
            _ => None,
        })
        .unwrap_or(101)
}

pub(crate) fn has_type(entry: &VCardEntry, wanted: &VCardType) -> bool {
    entry
        .params
        .iter()
        .filter(|p| p.name == VCardParameterName::Type)
        .any(|p| match &p.value {
            VCardParameterValue::Type(t) => t == wanted,
            VCardParameterValue::Text(t) => t
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(wanted.as_str())),
            _ => false,
        })
}

/// The entries with `name`, most preferred first (stable for equal PREF).
pub(crate) fn by_pref<'a>(card: &'a VCard, name: &VCardProperty) -> Vec<&'a VCardEntry> {
    let mut v: Vec<&VCardEntry> = card.entries.iter().filter(|e| &e.name == name).collect();
    v.sort_by_key(|e| pref_of(e));
    v
}

/// The entry's first text value as it is (a structured value joined with commas).
fn raw_text(entry: &VCardEntry) -> Option<String> {
    entry.values.iter().find_map(|v| match v {
        VCardValue::Text(t) => Some(t.clone()),
        VCardValue::Component(c) => Some(c.join(",")),
        _ => None,
    })
}

pub(crate) fn first_text(entry: &VCardEntry) -> Option<String> {
    raw_text(entry)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The text of a NOTE as it is, untrimmed (notes are free text, and reading keeps them so:
/// trimming only on writing made a note with edge whitespace read back changed, found by the
/// `graph_contact_mapping` fuzz target); `None` when it is empty or only whitespace.
pub(crate) fn note_text(entry: &VCardEntry) -> Option<String> {
    raw_text(entry).filter(|s| !s.trim().is_empty())
}

/// The `idx`th component of a structured value, "" when missing.
pub(crate) fn component(entry: &VCardEntry, idx: usize) -> String {
    match entry.values.get(idx) {
        Some(VCardValue::Text(t)) => t.trim().to_string(),
        Some(VCardValue::Component(c)) => c.join(","),
        _ => String::new(),
    }
}

fn opt(s: String) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s)
    }
}

fn address_json(entry: &VCardEntry) -> Value {
    // ADR: post office box; extended address; street; locality; region; postal code; country
    // (RFC 6350 §6.3.1). Graph has one street member: box and extended go on lines before it.
    let street = [
        component(entry, 0),
        component(entry, 1),
        component(entry, 2),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("\n");
    json!({
        "street": street,
        "city": component(entry, 3),
        "state": component(entry, 4),
        "postalCode": component(entry, 5),
        "countryOrRegion": component(entry, 6),
    })
}

pub(crate) fn birthday_json(entry: &VCardEntry) -> Option<String> {
    let date = entry.values.iter().find_map(|v| match v {
        VCardValue::PartialDateTime(d) => Some(d.clone()),
        VCardValue::Text(t) => {
            let t = t.trim();
            if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
                parse_birthday(&format!("{}-{}-{}", &t[..4], &t[4..6], &t[6..8]))
            } else {
                parse_birthday(t)
            }
        }
        _ => None,
    })?;
    let (year, month, day) = (date.year?, date.month?, date.day?);
    Some(format!("{year:04}-{month:02}-{day:02}T00:00:00Z"))
}

/// Every CATEGORIES value of the card, trimmed, empty ones dropped.
pub(crate) fn categories_of(card: &VCard) -> Vec<String> {
    card.properties(&VCardProperty::Categories)
        .flat_map(|e| e.values.iter())
        .flat_map(|v| match v {
            VCardValue::Text(t) => vec![t.trim().to_string()],
            VCardValue::Component(c) => c.iter().map(|s| s.trim().to_string()).collect(),
            _ => vec![],
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// True for the properties the Graph and EWS mappings write (or that are card metadata, never
/// written nor reported): everything else is overflow.
pub(crate) fn is_mapped(name: &VCardProperty) -> bool {
    matches!(
        name,
        VCardProperty::Begin
            | VCardProperty::End
            | VCardProperty::Version
            | VCardProperty::Prodid
            | VCardProperty::Rev
            | VCardProperty::Uid
            | VCardProperty::Kind
            | VCardProperty::Fn
            | VCardProperty::N
            | VCardProperty::Nickname
            | VCardProperty::Email
            | VCardProperty::Tel
            | VCardProperty::Impp
            | VCardProperty::Adr
            | VCardProperty::Org
            | VCardProperty::Title
            | VCardProperty::Url
            | VCardProperty::Bday
            | VCardProperty::Note
            | VCardProperty::Categories
    )
}

/// Maps a card to the Graph JSON body for `POST`/`PATCH`, filling slots primary first.
///
/// - EMAIL → `emailAddresses` (3 slots; `name` is set to the address itself).
/// - TEL with `TYPE=cell` → `mobilePhone` (1 slot); `TYPE=home` (and not work) →
///   `homePhones` (2); `TYPE=fax`/`pager` → overflow (no such Graph v1.0 field); any other
///   TEL → `businessPhones` (2).
/// - ADR `TYPE=work` → `businessAddress`, `TYPE=home` → `homeAddress`, else `otherAddress`;
///   one each.
/// - IMPP → `imAddresses` (3); URL → `businessHomePage` (1); ORG → `companyName`;
///   `department`; TITLE → `jobTitle`; BDAY (with a year) → `birthday`; NOTE →
///   `personalNotes` (first; later NOTEs overflow); CATEGORIES → `categories` (all).
/// - FN, N, NICKNAME → the name members. VERSION, PRODID, REV, UID, KIND are metadata and
///   are neither written nor reported. Everything else is overflow (`Unsupported`).
pub fn to_graph(card: &VCard) -> ToGraph {
    let mut body = Map::new();
    let mut overflow = Vec::new();
    let mut push_over = |e: &VCardEntry, reason: OverflowReason| {
        overflow.push(Overflow {
            entry: e.clone(),
            reason,
        })
    };

    // Names.
    let fn_value = card.property(&VCardProperty::Fn).and_then(first_text);
    let n = card.property(&VCardProperty::N);
    let n_part = |i: usize| n.map(|n| component(n, i)).unwrap_or_default();
    body.insert(field::SURNAME.into(), opt(n_part(0)));
    body.insert(field::GIVEN_NAME.into(), opt(n_part(1)));
    body.insert(field::MIDDLE_NAME.into(), opt(n_part(2)));
    body.insert(field::TITLE.into(), opt(n_part(3)));
    body.insert(field::GENERATION.into(), opt(n_part(4)));
    let display = fn_value.unwrap_or_else(|| {
        [n_part(3), n_part(1), n_part(2), n_part(0), n_part(4)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    });
    body.insert(field::DISPLAY_NAME.into(), opt(display));
    let nick = by_pref(card, &VCardProperty::Nickname);
    body.insert(
        field::NICK_NAME.into(),
        opt(nick.first().and_then(|e| first_text(e)).unwrap_or_default()),
    );
    for e in nick.iter().skip(1) {
        push_over(e, OverflowReason::SlotsFull(field::NICK_NAME));
    }

    // Emails.
    let mut emails = Vec::new();
    for e in by_pref(card, &VCardProperty::Email) {
        match first_text(e) {
            Some(addr) if emails.len() < MAX_EMAILS => {
                emails.push(json!({"name": addr, "address": addr}));
            }
            Some(_) => push_over(e, OverflowReason::SlotsFull(field::EMAIL_ADDRESSES)),
            None => {}
        }
    }
    body.insert(field::EMAIL_ADDRESSES.into(), Value::Array(emails));

    // Phones.
    let (mut business, mut home, mut mobile) = (Vec::new(), Vec::new(), None);
    for e in by_pref(card, &VCardProperty::Tel) {
        let Some(number) = first_text(e) else {
            continue;
        };
        let number = number.strip_prefix("tel:").unwrap_or(&number).to_string();
        if has_type(e, &VCardType::Fax) || has_type(e, &VCardType::Pager) {
            push_over(e, OverflowReason::Unsupported);
        } else if has_type(e, &VCardType::Cell) {
            if mobile.is_none() {
                mobile = Some(number);
            } else {
                push_over(e, OverflowReason::SlotsFull(field::MOBILE_PHONE));
            }
        } else if has_type(e, &VCardType::Home) && !has_type(e, &VCardType::Work) {
            if home.len() < MAX_HOME_PHONES {
                home.push(Value::String(number));
            } else {
                push_over(e, OverflowReason::SlotsFull(field::HOME_PHONES));
            }
        } else if business.len() < MAX_BUSINESS_PHONES {
            business.push(Value::String(number));
        } else {
            push_over(e, OverflowReason::SlotsFull(field::BUSINESS_PHONES));
        }
    }
    body.insert(field::BUSINESS_PHONES.into(), Value::Array(business));
    body.insert(field::HOME_PHONES.into(), Value::Array(home));
    body.insert(
        field::MOBILE_PHONE.into(),
        mobile.map(Value::String).unwrap_or(Value::Null),
    );

    // IM.
    let mut ims = Vec::new();
    for e in by_pref(card, &VCardProperty::Impp) {
        match first_text(e) {
            Some(im) if ims.len() < MAX_IM_ADDRESSES => ims.push(Value::String(im)),
            Some(_) => push_over(e, OverflowReason::SlotsFull(field::IM_ADDRESSES)),
            None => {}
        }
    }
    body.insert(field::IM_ADDRESSES.into(), Value::Array(ims));

    // Addresses.
    let (mut work_adr, mut home_adr, mut other_adr) = (None, None, None);
    for e in by_pref(card, &VCardProperty::Adr) {
        let (slot, name) = if has_type(e, &VCardType::Work) {
            (&mut work_adr, field::BUSINESS_ADDRESS)
        } else if has_type(e, &VCardType::Home) {
            (&mut home_adr, field::HOME_ADDRESS)
        } else {
            (&mut other_adr, field::OTHER_ADDRESS)
        };
        if slot.is_none() {
            *slot = Some(address_json(e));
        } else {
            push_over(e, OverflowReason::SlotsFull(name));
        }
    }
    // An empty object clears the address on PATCH.
    let empty_adr = || json!({});
    body.insert(
        field::BUSINESS_ADDRESS.into(),
        work_adr.unwrap_or_else(empty_adr),
    );
    body.insert(
        field::HOME_ADDRESS.into(),
        home_adr.unwrap_or_else(empty_adr),
    );
    body.insert(
        field::OTHER_ADDRESS.into(),
        other_adr.unwrap_or_else(empty_adr),
    );

    // Work.
    let orgs = by_pref(card, &VCardProperty::Org);
    let org = orgs.first();
    body.insert(
        field::COMPANY_NAME.into(),
        opt(org.map(|o| component(o, 0)).unwrap_or_default()),
    );
    body.insert(
        field::DEPARTMENT.into(),
        opt(org.map(|o| component(o, 1)).unwrap_or_default()),
    );
    for e in orgs.iter().skip(1) {
        push_over(e, OverflowReason::SlotsFull(field::COMPANY_NAME));
    }
    let titles = by_pref(card, &VCardProperty::Title);
    body.insert(
        field::JOB_TITLE.into(),
        opt(titles
            .first()
            .and_then(|e| first_text(e))
            .unwrap_or_default()),
    );
    for e in titles.iter().skip(1) {
        push_over(e, OverflowReason::SlotsFull(field::JOB_TITLE));
    }
    let urls = by_pref(card, &VCardProperty::Url);
    body.insert(
        field::BUSINESS_HOME_PAGE.into(),
        opt(urls.first().and_then(|e| first_text(e)).unwrap_or_default()),
    );
    for e in urls.iter().skip(1) {
        push_over(e, OverflowReason::SlotsFull(field::BUSINESS_HOME_PAGE));
    }

    // Personal.
    let mut birthday = Value::Null;
    for e in card.properties(&VCardProperty::Bday) {
        match birthday_json(e) {
            Some(b) if birthday.is_null() => birthday = Value::String(b),
            Some(_) => push_over(e, OverflowReason::SlotsFull(field::BIRTHDAY)),
            // A birthday without a year (or unreadable) has no Graph form.
            None => push_over(e, OverflowReason::Unsupported),
        }
    }
    body.insert(field::BIRTHDAY.into(), birthday);
    let notes = by_pref(card, &VCardProperty::Note);
    body.insert(
        field::PERSONAL_NOTES.into(),
        opt(notes.first().and_then(|e| note_text(e)).unwrap_or_default()),
    );
    for e in notes.iter().skip(1) {
        push_over(e, OverflowReason::SlotsFull(field::PERSONAL_NOTES));
    }
    let categories: Vec<Value> = categories_of(card).into_iter().map(Value::String).collect();
    body.insert(field::CATEGORIES.into(), Value::Array(categories));

    // The first PHOTO goes to the contact's `photo/$value` (the provider's job, not the
    // body's); Graph holds one photo, so any other overflows.
    for e in card
        .entries
        .iter()
        .filter(|e| e.name == VCardProperty::Photo)
        .skip(1)
    {
        push_over(e, OverflowReason::SlotsFull(field::PHOTO));
    }

    // Whatever Graph has no member for.
    for e in &card.entries {
        if !is_mapped(&e.name) && e.name != VCardProperty::Photo {
            push_over(e, OverflowReason::Unsupported);
        }
    }

    ToGraph { body, overflow }
}

/// The body for `POST` (create): [`to_graph`] plus the CRM id as [`CRM_ID_PROPERTY_ID`].
pub fn to_graph_create(card: &VCard, crm_id: &str) -> ToGraph {
    let mut out = to_graph(card);
    out.body.insert(
        field::SINGLE_VALUE_EXTENDED_PROPERTIES.into(),
        json!([{ "id": CRM_ID_PROPERTY_ID, "value": crm_id }]),
    );
    out
}

/// Re-adds to `remote` (a card read from Graph) the properties of `base` (the card last
/// pushed, or the CRM's card) that Graph could never hold — `to_graph(base).overflow`.
///
/// Their absence from the Graph copy says nothing about the user's intent, so the engine
/// calls this before comparing, and a push can never delete them in the CRM. Entries already
/// on `remote` are not duplicated.
pub fn reattach_overflow(remote: &VCard, base: &VCard) -> VCard {
    crate::providers::reattach_entries(remote, to_graph(base).overflow.into_iter().map(|o| o.entry))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/graph")
    }

    fn update() -> bool {
        std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1")
    }

    /// Compares `actual` with the golden file, rewriting it only with `UPDATE_EXPECT=1`.
    fn golden(path: &Path, actual: &str) {
        if update() {
            std::fs::write(path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(path)
            .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
        assert_eq!(actual, expected, "golden mismatch: {}", path.display());
    }

    fn sorted_files(suffix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix) && !n.contains(".expected."))
            })
            .collect();
        v.sort();
        v
    }

    /// A contact and its `photo/$value` (`photo.jpg`, served as `image/jpeg`) make one card
    /// with an inline PHOTO, in the shape a CardDAV card's photo normalizes to.
    #[test]
    fn golden_graph_contact_with_photo() {
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("contact-minimal.json")).unwrap(),
        )
        .unwrap();
        let contact = GraphContact::from_value(&json).unwrap();
        let bytes = std::fs::read(fixtures().join("photo.jpg")).unwrap();
        let photo = crate::vcard::photo::inline_entry(bytes, Some("image/jpeg")).unwrap();
        let card = crate::vcard::photo::with_photo(&from_graph(&contact).card, Some(photo));
        let out = crate::vcard::write_v4(&card);
        golden(&fixtures().join("photo-contact.expected.vcf"), &out);
        // The same card read back from vCard text (as a CardDAV peer would serve it) is equal.
        let again = crate::vcard::read_normalized(&out).cards.remove(0);
        assert_eq!(
            crate::vcard::photo::photo(&again),
            crate::vcard::photo::photo(&card)
        );
    }

    #[test]
    fn a_second_photo_overflows_and_the_first_is_not_overflow() {
        let card = crate::vcard::read_normalized(
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nPHOTO:data:image/jpeg;base64,/9j/4A==\r\n\
             PHOTO:https://example.com/b.jpg\r\nEND:VCARD\r\n",
        )
        .cards
        .remove(0);
        let out = to_graph(&card);
        assert_eq!(out.overflow.len(), 1, "{:?}", out.overflow);
        assert_eq!(
            out.overflow[0].reason,
            OverflowReason::SlotsFull(field::PHOTO)
        );
        assert!(!out.body.contains_key(field::PHOTO));
    }

    #[test]
    fn golden_graph_contacts_to_vcard() {
        let files = sorted_files(".json");
        let files: Vec<_> = files
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("contact-"))
            })
            .collect();
        assert!(files.len() >= 3, "expected contact fixtures, got {files:?}");
        for path in files {
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let contact = GraphContact::from_value(&json).unwrap();
            let mapped = from_graph(&contact);
            let mut out = mapped.card.to_string();
            if let Some(crm) = mapped.crm_id {
                out.push_str(&format!("# crm_id: {crm}\n"));
            }
            golden(&path.with_extension("expected.vcf"), &out);
        }
    }

    #[test]
    fn golden_vcard_to_graph_writes() {
        let files = sorted_files(".vcf");
        assert!(files.len() >= 2, "expected write fixtures, got {files:?}");
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let card = VCard::parse(&text).unwrap();
            let mapped = to_graph(&card);
            let overflow: Vec<String> = mapped
                .overflow
                .iter()
                .map(|o| {
                    let line = VCard {
                        entries: vec![o.entry.clone()],
                    }
                    .to_string();
                    let line = line
                        .lines()
                        .find(|l| !l.starts_with("BEGIN") && !l.starts_with("VERSION"))
                        .unwrap_or_default()
                        .to_string();
                    format!("{:?}: {line}", o.reason)
                })
                .collect();
            let out = serde_json::to_string_pretty(&json!({
                "body": Value::Object(mapped.body),
                "overflow": overflow,
            }))
            .unwrap()
                + "\n";
            golden(&path.with_extension("expected.json"), &out);
        }
    }

    fn card(text: &str) -> VCard {
        VCard::parse(text).unwrap()
    }

    #[test]
    fn slots_fill_primary_first_and_overflow_is_reported() {
        let c = card(
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nEMAIL:e1@x\r\nEMAIL;PREF=1:p@x\r\nEMAIL:e2@x\r\nEMAIL:e3@x\r\n\
             TEL;TYPE=work:1\r\nTEL:2\r\nTEL;TYPE=work;PREF=1:0\r\nTEL;TYPE=cell:m1\r\nTEL;TYPE=cell:m2\r\nEND:VCARD\r\n",
        );
        let out = to_graph(&c);
        let emails: Vec<&str> = out.body[field::EMAIL_ADDRESSES]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["address"].as_str().unwrap())
            .collect();
        assert_eq!(emails, ["p@x", "e1@x", "e2@x"]);
        assert_eq!(out.body[field::BUSINESS_PHONES], json!(["0", "1"]));
        assert_eq!(out.body[field::MOBILE_PHONE], json!("m1"));
        let over: Vec<(String, OverflowReason)> = out
            .overflow
            .iter()
            .map(|o| (first_text(&o.entry).unwrap(), o.reason.clone()))
            .collect();
        assert_eq!(
            over,
            vec![
                (
                    "e3@x".into(),
                    OverflowReason::SlotsFull(field::EMAIL_ADDRESSES)
                ),
                (
                    "2".into(),
                    OverflowReason::SlotsFull(field::BUSINESS_PHONES)
                ),
                ("m2".into(), OverflowReason::SlotsFull(field::MOBILE_PHONE)),
            ]
        );
    }

    #[test]
    fn overflow_is_reattached_and_not_duplicated() {
        let base = card(
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nEMAIL:1@x\r\nEMAIL:2@x\r\nEMAIL:3@x\r\nEMAIL:4@x\r\nGENDER:F\r\nEND:VCARD\r\n",
        );
        let remote_json = json!({"id": "a", "displayName": "A", "emailAddresses": [
            {"address": "1@x"}, {"address": "2@x"}, {"address": "3@x"}]});
        let remote = from_graph(&GraphContact::from_value(&remote_json).unwrap()).card;
        let merged = reattach_overflow(&remote, &base);
        let emails: Vec<String> = merged
            .properties(&VCardProperty::Email)
            .filter_map(first_text)
            .collect();
        assert_eq!(emails, ["1@x", "2@x", "3@x", "4@x"]);
        assert!(merged.property(&VCardProperty::Gender).is_some());
        assert_eq!(reattach_overflow(&merged, &base), merged);
    }

    #[test]
    fn round_trip_keeps_mapped_fields() {
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("contact-full.json")).unwrap(),
        )
        .unwrap();
        let contact = GraphContact::from_value(&json).unwrap();
        let card = from_graph(&contact).card;
        let body = to_graph(&card);
        assert!(body.overflow.is_empty(), "{:?}", body.overflow);
        let again = GraphContact::from_value(&Value::Object(body.body)).unwrap();
        assert_eq!(from_graph(&again).card, card);
    }

    #[test]
    fn etag_falls_back_to_change_key_and_crm_id_is_read() {
        let c = GraphContact::from_value(&json!({"id": "x", "changeKey": "EQ1",
            "singleValueExtendedProperties": [{"id": CRM_ID_PROPERTY_ID, "value": "crm-7"}]}))
        .unwrap();
        assert_eq!(c.etag().as_deref(), Some("W/\"EQ1\""));
        assert_eq!(c.crm_id().as_deref(), Some("crm-7"));
        let body = to_graph_create(
            &card("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nEND:VCARD\r\n"),
            "crm-9",
        );
        assert_eq!(
            body.body[field::SINGLE_VALUE_EXTENDED_PROPERTIES],
            json!([{"id": CRM_ID_PROPERTY_ID, "value": "crm-9"}])
        );
    }

    /// The `graph_contact_mapping` fuzz target's check: a contact whose card maps back without
    /// overflow reads back from its own Graph body to the same card.
    fn assert_round_trip(json: &Value) {
        let Ok(contact) = GraphContact::from_value(json) else {
            return;
        };
        let card = from_graph(&contact).card;
        let out = to_graph(&card);
        if out.overflow.is_empty() {
            let again = GraphContact::from_value(&Value::Object(out.body)).unwrap();
            assert_eq!(from_graph(&again).card, card, "{json}");
        }
    }

    /// Replays every input the fuzz target found (fixtures/graph/fuzz/, docs/FUZZING.md).
    #[test]
    fn fuzz_findings_round_trip() {
        let dir = fixtures().join("fuzz");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            match json.get("value").and_then(Value::as_array) {
                Some(rows) => rows.iter().for_each(assert_round_trip),
                None => assert_round_trip(&json),
            }
            n += 1;
        }
        assert!(
            n >= 2,
            "the saved fuzz inputs are missing from {}",
            dir.display()
        );
    }

    /// Fuzz finding 1: a note with edge whitespace was read as is but written trimmed, so it
    /// read back changed (and a push would have trimmed the user's note in Graph).
    #[test]
    fn notes_keep_their_whitespace_both_ways() {
        let c =
            GraphContact::from_value(&json!({"id": "a", "personalNotes": "  indented\n"})).unwrap();
        let card = from_graph(&c).card;
        let body = to_graph(&card).body;
        assert_eq!(body[field::PERSONAL_NOTES], json!("  indented\n"));
        // Whitespace alone is still no note.
        let blank = card_of_note("   ");
        assert_eq!(to_graph(&blank).body[field::PERSONAL_NOTES], Value::Null);
    }

    fn card_of_note(note: &str) -> VCard {
        VCard {
            entries: vec![
                text_entry(VCardProperty::Fn, "A"),
                text_entry(VCardProperty::Note, note),
            ],
        }
    }

    /// Fuzz finding 2: `19020-9-29` was read as the 29th (first ten characters), its rendering
    /// `19020-09-29T…` as the 2nd. Only `YYYY-MM-DD` (vCard's 4-digit year) is a birthday now.
    #[test]
    fn birthdays_need_the_iso_date_shape() {
        let ok = |s: &str| parse_birthday(s).map(|d| (d.year, d.month, d.day));
        assert_eq!(
            ok("1974-07-22T00:00:00Z"),
            Some((Some(1974), Some(7), Some(22)))
        );
        assert_eq!(ok(" 1974-07-22 "), Some((Some(1974), Some(7), Some(22))));
        assert_eq!(
            ok("1974-07-22 11:00"),
            Some((Some(1974), Some(7), Some(22)))
        );
        for bad in [
            "19020-9-29T00:00:00Z",
            "19020-09-29T00:00:00Z",
            "1974-7-22T00:00:00Z",
            "1974-07-2",
            "1974-07-221",
            "+974-07-22",
            "1974-07-22X",
            "1990-02-29",
            "1974/07/22",
            "１９７４-07-22",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
        let c = GraphContact::from_value(&json!({"id": "a", "birthday": "19020-9-29T00:00:00Z"}))
            .unwrap();
        assert!(from_graph(&c).card.property(&VCardProperty::Bday).is_none());
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        assert!(GraphContact::from_value(&json!({"id": 5})).is_err());
        assert!(GraphContact::from_value(&json!("x")).is_err());
        let c = GraphContact::from_value(&json!({"id": "a", "birthday": "garbage"})).unwrap();
        assert!(from_graph(&c).card.property(&VCardProperty::Bday).is_none());
    }
}
