//! Pure mapping between the People API `Person` resource and normalized vCard 4.
//!
//! Owns the serde model of the `Person` fields we read and write (names, nicknames,
//! emailAddresses, phoneNumbers, addresses, organizations, birthdays, biographies, urls,
//! photos, memberships, metadata, clientData, etag, resourceName); unknown fields are
//! ignored on read. No I/O.
//!
//! Label rules: a Google `type` with a vCard equivalent becomes `TYPE` parameters (`work`,
//! `home`, `cell`, `fax`, …); `other` becomes no `TYPE`; any other (custom) type becomes an
//! Apple-style property group, `itemN.EMAIL` plus `itemN.X-ABLabel:<label>`. The primary
//! field (`metadata.primary`) is `PREF=1`. A birthday without a year is `BDAY:--MMDD`.
//! Photos are `PHOTO` URIs (Google's `default` placeholder photo is dropped). Our CRM id,
//! kept in `clientData`, is `X-CARDBRIDGE-CRM-ID`.

use calcard::common::{IanaString as _, PartialDateTime};
use calcard::vcard::{
    VCardEntry, VCardParameter, VCardParameterName, VCardParameterValue, VCardProperty, VCardType,
    VCardValue,
};
use serde::{Deserialize, Serialize};

use crate::vcard::VCard;

/// Apple's label for a property group (`itemN.X-ABLabel`), the de-facto vCard way to carry a
/// free-form label (see docs/providers.md §1, "Custom labels use a property group").
pub const X_ABLABEL: &str = "X-ABLabel";
/// Our CRM id on a card (cardbridge extension, RFC 6350 §6.10 `x-name`).
pub const X_CARDBRIDGE_CRM_ID: &str = "X-CARDBRIDGE-CRM-ID";
/// The `clientData` key under which we store the CRM id (People API `ClientData.key`).
pub const CLIENT_DATA_CRM_ID_KEY: &str = "cardbridgeCrmId";

/// People API `personFields` we request on reads.
pub const PERSON_FIELDS: &str = "names,nicknames,emailAddresses,phoneNumbers,addresses,organizations,birthdays,biographies,urls,photos,memberships,metadata,clientData";
/// People API `updatePersonFields` we always send on `updateContact`: every field the card
/// owns, so that a value removed from the card is removed at Google too. (`photos` need
/// `updateContactPhoto`; `memberships` are left to group handling.)
pub const UPDATE_PERSON_FIELDS: &str =
    "names,nicknames,emailAddresses,phoneNumbers,addresses,organizations,birthdays,biographies,urls";
/// Added to [`UPDATE_PERSON_FIELDS`] when the card carries a CRM id.
pub const CLIENT_DATA_FIELD: &str = "clientData";

/// Google's `type` for "no particular label".
pub const TYPE_OTHER: &str = "other";

/// People API `Person` (the fields we use).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// `people/c…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// The person's etag (`%Eg…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Sources and the deletion flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PersonMetadata>,
    /// Names (singleton per source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<Name>,
    /// Nicknames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nicknames: Vec<Nickname>,
    /// Email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_addresses: Vec<EmailAddress>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_numbers: Vec<PhoneNumber>,
    /// Postal addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Organizations (company, department, title).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<Organization>,
    /// Birthdays (singleton per source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub birthdays: Vec<Birthday>,
    /// Notes (singleton per source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub biographies: Vec<Biography>,
    /// Web sites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<UrlField>,
    /// Photos (read-only through this resource).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photos: Vec<Photo>,
    /// Contact group memberships.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memberships: Vec<Membership>,
    /// Client-specific key/value pairs (our CRM id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_data: Vec<ClientData>,
}

/// `Person.metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonMetadata {
    /// Where the person's data comes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    /// True for a deletion reported by an incremental sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    /// Resource names this person had before (merges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_resource_names: Vec<String>,
}

/// `Source`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// `CONTACT`, `PROFILE`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Source id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Source etag (`#…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Last update time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<String>,
}

/// `FieldMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldMetadata {
    /// The primary field of its kind across sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// The primary field of its kind within its source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_primary: Option<bool>,
    /// The source of the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

impl FieldMetadata {
    fn is_primary(m: &Option<FieldMetadata>) -> bool {
        m.as_ref().is_some_and(|m| m.primary == Some(true))
    }

    fn primary() -> Option<FieldMetadata> {
        Some(FieldMetadata {
            primary: Some(true),
            ..Default::default()
        })
    }
}

/// `Name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Name {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unstructured_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_suffix: Option<String>,
}

/// `Nickname`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Nickname {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default)]
    pub value: String,
}

/// `EmailAddress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct EmailAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default)]
    pub value: String,
    /// `home`, `work`, `other` or a custom label.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Output only: the type translated to the viewer's locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `PhoneNumber`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PhoneNumber {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default)]
    pub value: String,
    /// Output only: E.164.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_form: Option<String>,
    /// `home`, `work`, `mobile`, `homeFax`, `workFax`, `otherFax`, `pager`, `workMobile`,
    /// `workPager`, `main`, `googleVoice`, `other` or a custom label.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_type: Option<String>,
}

/// `Address`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_value: Option<String>,
    /// `home`, `work`, `other` or a custom label.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub po_box: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
}

/// `Organization`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Organization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// `Birthday`: a date (year 0 or absent = no year) or free text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Birthday {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `google.type.Date`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Date {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u8>,
}

/// `Biography` (notes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Biography {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default)]
    pub value: String,
    /// `TEXT_PLAIN` or `TEXT_HTML`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// `Url`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct UrlField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default)]
    pub value: String,
    /// `home`, `work`, `blog`, `profile`, `homePage`, `ftp`, `reservations`,
    /// `appInstallPage`, `other` or a custom label.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_type: Option<String>,
}

/// `Photo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Photo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default)]
    pub url: String,
    /// True for Google's placeholder (initials) photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
}

/// `Membership`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Membership {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_group_membership: Option<ContactGroupMembership>,
}

/// `ContactGroupMembership`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ContactGroupMembership {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_group_resource_name: Option<String>,
}

/// `ClientData`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ClientData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<FieldMetadata>,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl Person {
    /// True when an incremental sync reports this person as deleted.
    pub fn is_deleted(&self) -> bool {
        self.metadata
            .as_ref()
            .and_then(|m| m.deleted)
            .unwrap_or(false)
    }

    /// True when the person is a member of `group` (`contactGroups/…`).
    pub fn is_member_of(&self, group: &str) -> bool {
        self.memberships.iter().any(|m| {
            m.contact_group_membership
                .as_ref()
                .and_then(|c| c.contact_group_resource_name.as_deref())
                == Some(group)
        })
    }

    /// The CRM id we stored in `clientData`, if any.
    pub fn crm_id(&self) -> Option<&str> {
        self.client_data
            .iter()
            .find(|c| c.key == CLIENT_DATA_CRM_ID_KEY)
            .map(|c| c.value.as_str())
    }

    /// The etag to send with an update: the person's, else the first source's.
    pub fn any_etag(&self) -> Option<&str> {
        self.etag.as_deref().or_else(|| {
            self.metadata
                .as_ref()
                .and_then(|m| m.sources.iter().find_map(|s| s.etag.as_deref()))
        })
    }
}

/// The `updatePersonFields` mask for writing `person`.
pub fn update_person_fields(person: &Person) -> String {
    if person.client_data.is_empty() {
        UPDATE_PERSON_FIELDS.to_string()
    } else {
        format!("{UPDATE_PERSON_FIELDS},{CLIENT_DATA_FIELD}")
    }
}

// ---------------------------------------------------------------------------------------
// Person → vCard
// ---------------------------------------------------------------------------------------

fn some(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn text(s: &str) -> VCardValue {
    VCardValue::Text(s.to_string())
}

fn typ(t: VCardType) -> VCardParameter {
    VCardParameter {
        name: VCardParameterName::Type,
        value: VCardParameterValue::Type(t),
    }
}

fn pref() -> VCardParameter {
    VCardParameter {
        name: VCardParameterName::Pref,
        value: VCardParameterValue::Integer(1),
    }
}

fn entry(name: VCardProperty, values: Vec<VCardValue>) -> VCardEntry {
    VCardEntry {
        group: None,
        name,
        params: Vec::new(),
        values,
    }
}

/// Google email/address/generic types with a vCard `TYPE` equivalent.
fn generic_types(kind: &str) -> Option<Vec<VCardType>> {
    match kind {
        "home" => Some(vec![VCardType::Home]),
        "work" => Some(vec![VCardType::Work]),
        TYPE_OTHER => Some(vec![]),
        _ => None,
    }
}

/// Google phone types with a vCard `TYPE` equivalent (RFC 6350 §6.4.1).
fn phone_types(kind: &str) -> Option<Vec<VCardType>> {
    use VCardType::*;
    Some(match kind {
        "home" => vec![Home],
        "work" => vec![Work],
        "mobile" => vec![Cell],
        "homeFax" => vec![Home, Fax],
        "workFax" => vec![Work, Fax],
        "otherFax" => vec![Fax],
        "pager" => vec![Pager],
        "workMobile" => vec![Work, Cell],
        "workPager" => vec![Work, Pager],
        "main" => vec![MainNumber],
        TYPE_OTHER => vec![],
        _ => return None,
    })
}

/// Adds one labelled property: known types as `TYPE`, custom ones as `itemN.X-ABLabel`.
fn push_labelled(
    out: &mut Vec<VCardEntry>,
    items: &mut u32,
    mut e: VCardEntry,
    kind: Option<&str>,
    known: fn(&str) -> Option<Vec<VCardType>>,
    primary: bool,
) {
    let kind = kind.map(str::trim).filter(|k| !k.is_empty());
    let mut label = None;
    if let Some(k) = kind {
        match known(k) {
            Some(types) => {
                let n = types.len();
                e.params.extend(types.into_iter().map(typ));
                e.params.rotate_right(n);
            }
            None => label = Some(k.to_string()),
        }
    }
    if primary {
        e.params.push(pref());
    }
    match label {
        Some(label) => {
            *items += 1;
            let group = format!("item{items}");
            e.group = Some(group.clone());
            out.push(e);
            let mut l = entry(
                VCardProperty::Other(X_ABLABEL.to_string()),
                vec![text(&label)],
            );
            l.group = Some(group);
            out.push(l);
        }
        None => out.push(e),
    }
}

fn pick_primary<T>(items: &[T], meta: impl Fn(&T) -> &Option<FieldMetadata>) -> Option<&T> {
    items
        .iter()
        .find(|i| FieldMetadata::is_primary(meta(i)))
        .or_else(|| items.first())
}

/// Maps a person to a normalized vCard 4 (never fails; empty fields are skipped).
pub fn person_to_vcard(p: &Person) -> VCard {
    let mut out = Vec::new();
    let mut items = 0u32;
    let name = pick_primary(&p.names, |n| &n.metadata);

    // FN (RFC 6350 §6.2.1) is mandatory: fall back on the structured name, the company, the
    // first email.
    let structured: Vec<&str> = name
        .map(|n| {
            [&n.given_name, &n.middle_name, &n.family_name]
                .into_iter()
                .filter_map(some)
                .collect()
        })
        .unwrap_or_default();
    let fn_value = name
        .and_then(|n| some(&n.display_name).or_else(|| some(&n.unstructured_name)))
        .map(str::to_string)
        .or_else(|| (!structured.is_empty()).then(|| structured.join(" ")))
        .or_else(|| {
            p.organizations
                .iter()
                .find_map(|o| some(&o.name))
                .map(str::to_string)
        })
        .or_else(|| p.email_addresses.first().map(|e| e.value.clone()))
        .unwrap_or_default();
    out.push(entry(VCardProperty::Fn, vec![VCardValue::Text(fn_value)]));

    if let Some(n) = name {
        let parts = [
            &n.family_name,
            &n.given_name,
            &n.middle_name,
            &n.honorific_prefix,
            &n.honorific_suffix,
        ];
        if parts.iter().any(|p| some(p).is_some()) {
            out.push(entry(
                VCardProperty::N,
                parts
                    .iter()
                    .map(|p| text(some(p).unwrap_or_default()))
                    .collect(),
            ));
        }
    }

    for nick in p.nicknames.iter().filter(|n| !n.value.trim().is_empty()) {
        out.push(entry(
            VCardProperty::Nickname,
            vec![text(nick.value.trim())],
        ));
    }

    for e in p
        .email_addresses
        .iter()
        .filter(|e| !e.value.trim().is_empty())
    {
        push_labelled(
            &mut out,
            &mut items,
            entry(VCardProperty::Email, vec![text(e.value.trim())]),
            e.kind.as_deref(),
            generic_types,
            FieldMetadata::is_primary(&e.metadata),
        );
    }

    for t in &p.phone_numbers {
        let value = if t.value.trim().is_empty() {
            t.canonical_form.as_deref().unwrap_or_default().trim()
        } else {
            t.value.trim()
        };
        if value.is_empty() {
            continue;
        }
        push_labelled(
            &mut out,
            &mut items,
            entry(VCardProperty::Tel, vec![text(value)]),
            t.kind.as_deref(),
            phone_types,
            FieldMetadata::is_primary(&t.metadata),
        );
    }

    for a in &p.addresses {
        let parts = [
            &a.po_box,
            &a.extended_address,
            &a.street_address,
            &a.city,
            &a.region,
            &a.postal_code,
            &a.country,
        ];
        if parts.iter().all(|p| some(p).is_none()) && some(&a.formatted_value).is_none() {
            continue;
        }
        let mut e = entry(
            VCardProperty::Adr,
            parts
                .iter()
                .map(|p| text(some(p).unwrap_or_default()))
                .collect(),
        );
        if let Some(label) = some(&a.formatted_value) {
            e.params.push(VCardParameter {
                name: VCardParameterName::Label,
                value: VCardParameterValue::Text(label.to_string()),
            });
        }
        push_labelled(
            &mut out,
            &mut items,
            e,
            a.kind.as_deref(),
            generic_types,
            FieldMetadata::is_primary(&a.metadata),
        );
    }

    for o in &p.organizations {
        if let Some(name) = some(&o.name) {
            let mut values = vec![text(name)];
            if let Some(dept) = some(&o.department) {
                values.push(text(dept));
            }
            out.push(entry(VCardProperty::Org, values));
        }
        if let Some(title) = some(&o.title) {
            out.push(entry(VCardProperty::Title, vec![text(title)]));
        }
    }

    if let Some(b) = pick_primary(&p.birthdays, |b| &b.metadata) {
        if let Some(d) = b
            .date
            .as_ref()
            .filter(|d| d.month.is_some() && d.day.is_some())
        {
            out.push(entry(
                VCardProperty::Bday,
                vec![VCardValue::PartialDateTime(PartialDateTime {
                    year: d.year.filter(|y| *y != 0),
                    month: d.month,
                    day: d.day,
                    ..Default::default()
                })],
            ));
        } else if let Some(t) = some(&b.text) {
            let mut e = entry(VCardProperty::Bday, vec![text(t)]);
            e.params.push(VCardParameter {
                name: VCardParameterName::Value,
                value: VCardParameterValue::ValueType(calcard::vcard::VCardValueType::Text),
            });
            out.push(e);
        }
    }

    if let Some(bio) = pick_primary(&p.biographies, |b| &b.metadata) {
        if !bio.value.trim().is_empty() {
            out.push(entry(VCardProperty::Note, vec![text(&bio.value)]));
        }
    }

    for u in p.urls.iter().filter(|u| !u.value.trim().is_empty()) {
        push_labelled(
            &mut out,
            &mut items,
            entry(VCardProperty::Url, vec![text(u.value.trim())]),
            u.kind.as_deref(),
            generic_types,
            FieldMetadata::is_primary(&u.metadata),
        );
    }

    for ph in p.photos.iter().filter(|ph| ph.default != Some(true)) {
        let url = ph.url.trim();
        if url.starts_with("https://") || url.starts_with("data:") {
            out.push(entry(VCardProperty::Photo, vec![text(url)]));
        }
    }

    if let Some(crm) = p.crm_id() {
        out.push(entry(
            VCardProperty::Other(X_CARDBRIDGE_CRM_ID.to_string()),
            vec![text(crm)],
        ));
    }

    VCard { entries: out }
}

// ---------------------------------------------------------------------------------------
// vCard → Person
// ---------------------------------------------------------------------------------------

fn first_text(e: &VCardEntry) -> Option<String> {
    e.values.first().and_then(value_text)
}

fn value_text(v: &VCardValue) -> Option<String> {
    match v {
        VCardValue::Text(s) => Some(s.clone()),
        VCardValue::Component(parts) => Some(parts.join(",")),
        _ => None,
    }
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

fn component(e: &VCardEntry, i: usize) -> Option<String> {
    e.values.get(i).and_then(value_text)
}

fn is_prop(e: &VCardEntry, name: &str) -> bool {
    matches!(&e.name, VCardProperty::Other(n) if n.eq_ignore_ascii_case(name))
}

/// The types on an entry (from `TYPE=` parameters, typed or free text).
fn entry_types(e: &VCardEntry) -> Vec<String> {
    e.params
        .iter()
        .filter(|p| p.name == VCardParameterName::Type)
        .filter_map(|p| match &p.value {
            VCardParameterValue::Type(t) => Some(t.as_str().to_ascii_lowercase()),
            VCardParameterValue::Text(t) => Some(t.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn pref_of(e: &VCardEntry) -> Option<u32> {
    e.params
        .iter()
        .filter(|p| p.name == VCardParameterName::Pref)
        .find_map(|p| match &p.value {
            VCardParameterValue::Integer(i) => Some(*i),
            VCardParameterValue::Text(t) => t.trim().parse().ok(),
            _ => None,
        })
}

/// Strips Apple's `_$!<Label>!$_` wrapper.
fn clean_label(label: &str) -> String {
    let l = label.trim();
    match l.strip_prefix("_$!<").and_then(|s| s.strip_suffix(">!$_")) {
        Some(inner) => {
            let mut c = inner.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => String::new(),
            }
        }
        None => l.to_string(),
    }
}

fn label_of(card: &VCard, e: &VCardEntry) -> Option<String> {
    let group = e.group.as_deref()?;
    card.entries
        .iter()
        .find(|l| {
            is_prop(l, X_ABLABEL)
                && l.group
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case(group))
        })
        .and_then(first_text)
        .map(|l| clean_label(&l))
        .filter(|l| !l.is_empty())
}

fn generic_kind(types: &[String]) -> Option<String> {
    if types.iter().any(|t| t == "work") {
        Some("work".into())
    } else if types.iter().any(|t| t == "home") {
        Some("home".into())
    } else {
        None
    }
}

fn phone_kind(types: &[String]) -> Option<String> {
    let has = |t: &str| types.iter().any(|x| x == t);
    let k = if has("cell") && has("work") {
        "workMobile"
    } else if has("cell") {
        "mobile"
    } else if has("fax") && has("home") {
        "homeFax"
    } else if has("fax") && has("work") {
        "workFax"
    } else if has("fax") {
        "otherFax"
    } else if has("pager") && has("work") {
        "workPager"
    } else if has("pager") {
        "pager"
    } else if has("main-number") {
        "main"
    } else if has("work") {
        "work"
    } else if has("home") {
        "home"
    } else {
        return None;
    };
    Some(k.to_string())
}

/// Index of the entry with the lowest `PREF` among `entries` (the primary one), if any.
fn primary_index(entries: &[&VCardEntry]) -> Option<usize> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| pref_of(e).map(|p| (p, i)))
        .min()
        .map(|(_, i)| i)
}

fn entries<'a>(card: &'a VCard, prop: &VCardProperty) -> Vec<&'a VCardEntry> {
    card.entries.iter().filter(|e| &e.name == prop).collect()
}

fn opt(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Maps a normalized vCard to the `Person` body of `createContact`/`updateContact`
/// (without `resourceName`, `etag` or memberships; the caller adds those).
pub fn vcard_to_person(card: &VCard) -> Person {
    let mut p = Person::default();

    let fn_value = entries(card, &VCardProperty::Fn)
        .first()
        .and_then(|e| first_text(e));
    if let Some(n) = entries(card, &VCardProperty::N).first() {
        let name = Name {
            family_name: opt(component(n, 0)),
            given_name: opt(component(n, 1)),
            middle_name: opt(component(n, 2)),
            honorific_prefix: opt(component(n, 3)),
            honorific_suffix: opt(component(n, 4)),
            ..Default::default()
        };
        if name != Name::default() {
            p.names.push(name);
        }
    }
    // An FN that only repeats the company (an organization's card) is not a person's name.
    let org_name = entries(card, &VCardProperty::Org)
        .first()
        .and_then(|e| component(e, 0));
    if p.names.is_empty() && fn_value.is_some() && fn_value != org_name {
        if let Some(f) = fn_value {
            p.names.push(Name {
                unstructured_name: Some(f),
                ..Default::default()
            });
        }
    }

    for e in entries(card, &VCardProperty::Nickname) {
        for v in e.values.iter().filter_map(value_text) {
            p.nicknames.push(Nickname {
                value: v,
                ..Default::default()
            });
        }
    }

    let kind = |e: &VCardEntry, f: fn(&[String]) -> Option<String>| {
        label_of(card, e).or_else(|| f(&entry_types(e)))
    };

    let emails = entries(card, &VCardProperty::Email);
    let primary = primary_index(&emails);
    for (i, e) in emails.iter().enumerate() {
        if let Some(v) = first_text(e) {
            p.email_addresses.push(EmailAddress {
                metadata: (primary == Some(i)).then(FieldMetadata::primary).flatten(),
                value: v,
                kind: kind(e, generic_kind),
                ..Default::default()
            });
        }
    }

    let tels = entries(card, &VCardProperty::Tel);
    let primary = primary_index(&tels);
    for (i, e) in tels.iter().enumerate() {
        if let Some(v) = first_text(e) {
            let v = v.strip_prefix("tel:").map(str::to_string).unwrap_or(v);
            p.phone_numbers.push(PhoneNumber {
                metadata: (primary == Some(i)).then(FieldMetadata::primary).flatten(),
                value: v,
                kind: kind(e, phone_kind),
                ..Default::default()
            });
        }
    }

    let adrs = entries(card, &VCardProperty::Adr);
    let primary = primary_index(&adrs);
    for (i, e) in adrs.iter().enumerate() {
        let a = Address {
            metadata: (primary == Some(i)).then(FieldMetadata::primary).flatten(),
            po_box: component(e, 0),
            extended_address: component(e, 1),
            street_address: component(e, 2),
            city: component(e, 3),
            region: component(e, 4),
            postal_code: component(e, 5),
            country: component(e, 6),
            kind: kind(e, generic_kind),
            ..Default::default()
        };
        let mut a = a;
        let empty = Address {
            metadata: a.metadata.clone(),
            kind: a.kind.clone(),
            ..Default::default()
        };
        if a == empty {
            // Only a free-form label: send it as the unstructured address. With structured
            // parts we leave `formattedValue` to Google, so a stale label cannot win.
            a.formatted_value = e
                .params
                .iter()
                .filter(|p| p.name == VCardParameterName::Label)
                .find_map(|p| match &p.value {
                    VCardParameterValue::Text(t) if !t.trim().is_empty() => Some(t.clone()),
                    _ => None,
                });
        }
        if a != empty {
            p.addresses.push(a);
        }
    }

    let orgs = entries(card, &VCardProperty::Org);
    let titles = entries(card, &VCardProperty::Title);
    for i in 0..orgs.len().max(titles.len()) {
        let o = Organization {
            name: orgs.get(i).and_then(|e| component(e, 0)),
            department: orgs.get(i).and_then(|e| component(e, 1)),
            title: titles.get(i).and_then(|e| first_text(e)),
            ..Default::default()
        };
        if o != Organization::default() {
            p.organizations.push(o);
        }
    }

    if let Some(b) = entries(card, &VCardProperty::Bday).first() {
        match b.values.first() {
            Some(VCardValue::PartialDateTime(d)) if d.month.is_some() && d.day.is_some() => {
                p.birthdays.push(Birthday {
                    date: Some(Date {
                        year: d.year,
                        month: d.month,
                        day: d.day,
                    }),
                    ..Default::default()
                });
            }
            _ => {
                if let Some(t) = first_text(b) {
                    p.birthdays.push(Birthday {
                        text: Some(t),
                        ..Default::default()
                    });
                }
            }
        }
    }

    if let Some(note) = entries(card, &VCardProperty::Note)
        .first()
        .and_then(|e| first_text(e))
    {
        p.biographies.push(Biography {
            value: note,
            content_type: Some("TEXT_PLAIN".into()),
            ..Default::default()
        });
    }

    let urls = entries(card, &VCardProperty::Url);
    let primary = primary_index(&urls);
    for (i, e) in urls.iter().enumerate() {
        if let Some(v) = first_text(e) {
            p.urls.push(UrlField {
                metadata: (primary == Some(i)).then(FieldMetadata::primary).flatten(),
                value: v,
                kind: kind(e, generic_kind),
                ..Default::default()
            });
        }
    }

    if let Some(crm) = card
        .entries
        .iter()
        .find(|e| is_prop(e, X_CARDBRIDGE_CRM_ID))
        .and_then(first_text)
    {
        p.client_data.push(ClientData {
            key: CLIENT_DATA_CRM_ID_KEY.to_string(),
            value: crm,
            ..Default::default()
        });
    }

    p
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn person(json: &str) -> Person {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn custom_label_becomes_item_group_and_back() {
        let p = person(
            r#"{"emailAddresses":[{"value":"a@b.c","type":"billing","formattedType":"billing"},
                {"value":"w@b.c","type":"work","metadata":{"primary":true}}]}"#,
        );
        let card = person_to_vcard(&p);
        let s = card.to_string();
        assert!(s.contains("item1.EMAIL:a@b.c"), "{s}");
        assert!(s.contains("item1.X-ABLabel:billing"), "{s}");
        assert!(
            s.contains("EMAIL;TYPE=WORK;PREF=1:w@b.c")
                || s.contains("EMAIL;TYPE=work;PREF=1:w@b.c"),
            "{s}"
        );
        let back = vcard_to_person(&card);
        assert_eq!(back.email_addresses[0].kind.as_deref(), Some("billing"));
        assert_eq!(back.email_addresses[1].kind.as_deref(), Some("work"));
        assert!(FieldMetadata::is_primary(&back.email_addresses[1].metadata));
        assert!(!FieldMetadata::is_primary(
            &back.email_addresses[0].metadata
        ));
    }

    #[test]
    fn birthday_without_year() {
        let p = person(r#"{"birthdays":[{"date":{"month":4,"day":12}}]}"#);
        let s = person_to_vcard(&p).to_string();
        assert!(s.contains("BDAY:--0412"), "{s}");
        let p0 = person(r#"{"birthdays":[{"date":{"year":0,"month":4,"day":12}}]}"#);
        assert_eq!(person_to_vcard(&p0), person_to_vcard(&p));
        let back = vcard_to_person(&person_to_vcard(&p));
        assert_eq!(
            back.birthdays[0].date,
            Some(Date {
                year: None,
                month: Some(4),
                day: Some(12)
            })
        );
    }

    #[test]
    fn default_photo_is_dropped_and_fn_falls_back() {
        let p = person(
            r#"{"photos":[{"url":"https://lh3.googleusercontent.com/a","default":true}],
                "organizations":[{"name":"Acme"}]}"#,
        );
        let card = person_to_vcard(&p);
        let s = card.to_string();
        assert!(!s.contains("PHOTO"), "{s}");
        assert!(s.contains("FN:Acme"), "{s}");
    }

    #[test]
    fn deleted_and_membership_and_crm_id() {
        let p = person(
            r#"{"resourceName":"people/c9","etag":"%E","metadata":{"deleted":true},
                "memberships":[{"contactGroupMembership":{"contactGroupResourceName":"contactGroups/abc"}}],
                "clientData":[{"key":"cardbridgeCrmId","value":"42"}]}"#,
        );
        assert!(p.is_deleted());
        assert!(p.is_member_of("contactGroups/abc"));
        assert!(!p.is_member_of("contactGroups/xyz"));
        assert_eq!(p.crm_id(), Some("42"));
        assert_eq!(
            update_person_fields(&vcard_to_person(&person_to_vcard(&p))),
            format!("{UPDATE_PERSON_FIELDS},clientData")
        );
    }
}
