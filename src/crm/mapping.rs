//! The default vCard 4 ↔ person mapping, its per-connection configuration, and the
//! field-mapping preview. PURE: no I/O.
//!
//! Input cards are NORMALIZED vCard 4 (see [`crate::vcard`]): typed `TYPE` and integer `PREF`
//! parameters, groups in [`VCardEntry::group`]. For robustness, 3.0 leftovers (`TYPE=pref`,
//! `TYPE=internet`, `TYPE=voice`) are tolerated on input.
//!
//! Writing ([`fields_to_card`]) MERGES into the last remote card: a field whose value equals
//! what the base card already maps to is left byte-for-byte alone; a changed multi-valued
//! field keeps the entries (params, groups) of values that survive, drops removed ones and
//! appends new ones. Properties the CRM does not model (PHOTO, IMPP, X- properties, unknown
//! parameters, groups) are never touched.

use std::collections::{BTreeMap, BTreeSet};

use calcard::common::PartialDateTime;
use calcard::vcard::{
    VCardEntry, VCardParameter, VCardParameterName, VCardParameterValue, VCardProperty, VCardType,
    VCardValue,
};
use serde::{Deserialize, Serialize};

pub use super::person::PersonFields;
use super::person::{Address, LabeledValue};
use crate::vcard::VCard;

/// Apple's custom-label property on a grouped entry (`item1.X-ABLabel`); an RFC 6350 §6.10
/// extension property, matched case-insensitively.
pub const X_ABLABEL: &str = "X-ABLABEL";
/// Apple's "this BDAY has no year" parameter: its value is the placeholder year.
pub const X_APPLE_OMIT_YEAR: &str = "X-APPLE-OMIT-YEAR";
/// Apple's encoding of built-in labels: `_$!<Mobile>!$_`.
const APPLE_LABEL_PREFIX: &str = "_$!<";
const APPLE_LABEL_SUFFIX: &str = ">!$_";

/// Canonical labels (Pipedrive's).
pub mod labels {
    /// Work.
    pub const WORK: &str = "work";
    /// Home.
    pub const HOME: &str = "home";
    /// Mobile phone.
    pub const MOBILE: &str = "mobile";
    /// Anything else; also a value without a TYPE.
    pub const OTHER: &str = "other";
    /// Fax.
    pub const FAX: &str = "fax";
    /// Pager.
    pub const PAGER: &str = "pager";
    /// Main number.
    pub const MAIN: &str = "main";
}

/// A mapped CRM field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmField {
    /// `name`, `first_name`, `last_name` ↔ FN, N.
    Name,
    /// `emails` ↔ EMAIL.
    Emails,
    /// `phones` ↔ TEL.
    Phones,
    /// `org_name` ↔ ORG.
    OrgName,
    /// `job_title` ↔ TITLE.
    JobTitle,
    /// `addresses` ↔ ADR.
    Addresses,
    /// `birthday` ↔ BDAY.
    Birthday,
    /// `notes` ↔ NOTE.
    Notes,
    /// `urls` ↔ URL.
    Urls,
    /// `labels` ↔ CATEGORIES.
    Labels,
}

impl CrmField {
    /// Every field, in preview order.
    pub const ALL: [CrmField; 10] = [
        CrmField::Name,
        CrmField::Emails,
        CrmField::Phones,
        CrmField::OrgName,
        CrmField::JobTitle,
        CrmField::Addresses,
        CrmField::Birthday,
        CrmField::Notes,
        CrmField::Urls,
        CrmField::Labels,
    ];

    /// The CRM side's name.
    pub fn crm_name(self) -> &'static str {
        match self {
            CrmField::Name => "name, first_name, last_name",
            CrmField::Emails => "emails",
            CrmField::Phones => "phones",
            CrmField::OrgName => "org_name",
            CrmField::JobTitle => "job_title",
            CrmField::Addresses => "addresses",
            CrmField::Birthday => "birthday",
            CrmField::Notes => "notes",
            CrmField::Urls => "urls",
            CrmField::Labels => "labels",
        }
    }

    /// The vCard properties (RFC 6350 §6) the field maps to.
    pub fn provider_name(self) -> &'static str {
        match self {
            CrmField::Name => "FN, N",
            CrmField::Emails => "EMAIL",
            CrmField::Phones => "TEL",
            CrmField::OrgName => "ORG",
            CrmField::JobTitle => "TITLE",
            CrmField::Addresses => "ADR",
            CrmField::Birthday => "BDAY",
            CrmField::Notes => "NOTE",
            CrmField::Urls => "URL",
            CrmField::Labels => "CATEGORIES",
        }
    }
}

/// Which way a field flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Both ways (two-way sync only writes the provider if the connection is two-way).
    #[default]
    Both,
    /// Provider → CRM only.
    ToCrm,
    /// CRM → provider only.
    ToProvider,
    /// Not synced.
    Off,
}

impl Direction {
    /// Card values flow into the CRM.
    pub fn to_crm(self) -> bool {
        matches!(self, Direction::Both | Direction::ToCrm)
    }
    /// CRM values flow into the card.
    pub fn to_provider(self) -> bool {
        matches!(self, Direction::Both | Direction::ToProvider)
    }
}

/// A connection's mapping: a direction per field (missing fields: [`Direction::Both`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingConfig {
    /// Overrides of the default direction.
    #[serde(default)]
    pub directions: BTreeMap<CrmField, Direction>,
}

impl MappingConfig {
    /// The direction of `field`.
    pub fn direction(&self, field: CrmField) -> Direction {
        self.directions.get(&field).copied().unwrap_or_default()
    }
    /// Sets the direction of `field`.
    pub fn set(mut self, field: CrmField, d: Direction) -> Self {
        self.directions.insert(field, d);
        self
    }
    /// Fields whose card values flow into the CRM.
    pub fn fields_to_crm(&self) -> impl Iterator<Item = CrmField> + '_ {
        CrmField::ALL
            .into_iter()
            .filter(|f| self.direction(*f).to_crm())
    }
    /// Fields whose CRM values flow into the card.
    pub fn fields_to_provider(&self) -> impl Iterator<Item = CrmField> + '_ {
        CrmField::ALL
            .into_iter()
            .filter(|f| self.direction(*f).to_provider())
    }
}

impl PersonFields {
    /// Copies `fields` from `other` into `self` (used to apply only the mapped fields).
    pub fn copy_from(&mut self, other: &PersonFields, fields: impl IntoIterator<Item = CrmField>) {
        for f in fields {
            match f {
                CrmField::Name => {
                    self.name = other.name.clone();
                    self.first_name = other.first_name.clone();
                    self.last_name = other.last_name.clone();
                }
                CrmField::Emails => self.emails = other.emails.clone(),
                CrmField::Phones => self.phones = other.phones.clone(),
                CrmField::OrgName => self.org_name = other.org_name.clone(),
                CrmField::JobTitle => self.job_title = other.job_title.clone(),
                CrmField::Addresses => self.addresses = other.addresses.clone(),
                CrmField::Birthday => self.birthday = other.birthday.clone(),
                CrmField::Notes => self.notes = other.notes.clone(),
                CrmField::Urls => self.urls = other.urls.clone(),
                CrmField::Labels => self.labels = other.labels.clone(),
            }
        }
    }

    fn same(&self, other: &PersonFields, f: CrmField) -> bool {
        match f {
            CrmField::Name => {
                self.name == other.name
                    && self.first_name == other.first_name
                    && self.last_name == other.last_name
            }
            CrmField::Emails => self.emails == other.emails,
            CrmField::Phones => self.phones == other.phones,
            CrmField::OrgName => self.org_name == other.org_name,
            CrmField::JobTitle => self.job_title == other.job_title,
            CrmField::Addresses => self.addresses == other.addresses,
            CrmField::Birthday => self.birthday == other.birthday,
            CrmField::Notes => self.notes == other.notes,
            CrmField::Urls => self.urls == other.urls,
            CrmField::Labels => self.labels == other.labels,
        }
    }
}

// ------------------------------------------------------------------ reading helpers

fn value_text(v: &VCardValue) -> String {
    match v {
        VCardValue::Text(s) => s.clone(),
        VCardValue::Component(parts) => parts.join(","),
        VCardValue::Integer(i) => i.to_string(),
        VCardValue::Float(f) => f.to_string(),
        VCardValue::Boolean(b) => b.to_string(),
        VCardValue::Binary(d) => d.to_unwrapped_string(),
        VCardValue::PartialDateTime(d) => format_date(d, false).unwrap_or_default(),
        VCardValue::Sex(_) | VCardValue::GramGender(_) | VCardValue::Kind(_) => String::new(),
    }
}

fn first_text(e: &VCardEntry) -> String {
    e.values.first().map(value_text).unwrap_or_default()
}

fn component(e: &VCardEntry, i: usize) -> String {
    e.values.get(i).map(value_text).unwrap_or_default()
}

fn is_ablabel(e: &VCardEntry) -> bool {
    matches!(&e.name, VCardProperty::Other(n) if n.eq_ignore_ascii_case(X_ABLABEL))
}

/// Decodes an Apple label: `_$!<Mobile>!$_` → `mobile`; other labels unchanged.
pub fn decode_apple_label(raw: &str) -> String {
    match raw
        .strip_prefix(APPLE_LABEL_PREFIX)
        .and_then(|r| r.strip_suffix(APPLE_LABEL_SUFFIX))
    {
        Some(inner) => match inner.to_ascii_lowercase().as_str() {
            "mobile" | "iphone" => labels::MOBILE.into(),
            "work" => labels::WORK.into(),
            "home" => labels::HOME.into(),
            "other" => labels::OTHER.into(),
            "main" => labels::MAIN.into(),
            "pager" => labels::PAGER.into(),
            "homefax" | "workfax" | "otherfax" => labels::FAX.into(),
            _ => inner.to_string(),
        },
        None => raw.to_string(),
    }
}

/// The X-ABLabel of `entry`'s group, decoded.
fn ablabel_of(card: &VCard, entry: &VCardEntry) -> Option<String> {
    let group = entry.group.as_deref()?;
    card.entries
        .iter()
        .find(|e| {
            is_ablabel(e)
                && e.group
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case(group))
        })
        .map(|e| decode_apple_label(&first_text(e)))
        .filter(|l| !l.is_empty())
}

/// TYPE values of `entry`, lowercased text.
fn types(e: &VCardEntry) -> Vec<String> {
    e.parameters(&VCardParameterName::Type)
        .filter_map(|v| v.as_text())
        .flat_map(|t| t.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    Tel,
    Adr,
}

fn label_from_types(kind: Kind, types: &[String]) -> String {
    let has = |t: &str| types.iter().any(|x| x == t);
    if kind == Kind::Tel {
        if has("cell") {
            return labels::MOBILE.into();
        }
        if has("fax") {
            return labels::FAX.into();
        }
        if has("pager") {
            return labels::PAGER.into();
        }
        if has("main-number") {
            return labels::MAIN.into();
        }
    }
    if has("work") {
        return labels::WORK.into();
    }
    if has("home") {
        return labels::HOME.into();
    }
    // Any other TYPE that is not a 3.0 leftover is kept as a custom label.
    types
        .iter()
        .find(|t| {
            !matches!(
                t.as_str(),
                "pref" | "internet" | "x400" | "voice" | "text" | "other"
            )
        })
        .cloned()
        .unwrap_or_else(|| labels::OTHER.into())
}

fn label_of(card: &VCard, e: &VCardEntry, kind: Kind) -> String {
    ablabel_of(card, e).unwrap_or_else(|| label_from_types(kind, &types(e)))
}

/// The entry's preference: PREF (1 = most preferred), or 1 for a 3.0 `TYPE=pref`.
fn pref_of(e: &VCardEntry) -> Option<u32> {
    let p = e
        .parameters(&VCardParameterName::Pref)
        .find_map(|v| match v {
            VCardParameterValue::Integer(i) => Some(*i),
            VCardParameterValue::Text(t) => t.trim().parse().ok(),
            _ => None,
        });
    p.or_else(|| types(e).iter().any(|t| t == "pref").then_some(1))
}

/// Marks the most preferred entries (lowest PREF) primary.
fn primaries(prefs: &[Option<u32>]) -> Vec<bool> {
    let best = prefs.iter().flatten().min().copied();
    prefs.iter().map(|p| best.is_some() && *p == best).collect()
}

fn format_date(d: &PartialDateTime, omit_year: bool) -> Option<String> {
    let (m, day) = (d.month?, d.day?);
    match d.year {
        Some(y) if !omit_year => Some(format!("{y:04}-{m:02}-{day:02}")),
        _ => Some(format!("--{m:02}-{day:02}")),
    }
}

/// Parses `YYYY-MM-DD`, `YYYYMMDD`, `--MMDD`, `--MM-DD` (and a time suffix) into
/// (year, month, day).
fn parse_date_text(s: &str) -> Option<(Option<u16>, u8, u8)> {
    let s = s.trim();
    let date = s.split('T').next()?;
    let (year, rest) = match date.strip_prefix("--") {
        Some(rest) => (None, rest.to_string()),
        None => {
            let digits: String = date.chars().filter(|c| *c != '-').collect();
            if digits.len() != 8 {
                return None;
            }
            (
                Some(digits.get(0..4)?.parse().ok()?),
                digits[4..].to_string(),
            )
        }
    };
    let md: String = rest.chars().filter(|c| *c != '-').collect();
    if md.len() != 4 {
        return None;
    }
    let m: u8 = md.get(0..2)?.parse().ok()?;
    let d: u8 = md.get(2..4)?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((year, m, d))
}

fn birthday_of(e: &VCardEntry) -> Option<String> {
    let omit: Option<u16> = e.params.iter().find_map(|p| match &p.name {
        VCardParameterName::Other(n) if n.eq_ignore_ascii_case(X_APPLE_OMIT_YEAR) => p
            .value
            .as_text()
            .and_then(|t| t.trim().parse().ok())
            .or(match p.value {
                VCardParameterValue::Integer(i) => u16::try_from(i).ok(),
                _ => None,
            }),
        _ => None,
    });
    match e.values.first()? {
        VCardValue::PartialDateTime(d) => format_date(d, omit.is_some() && omit == d.year),
        other => {
            let (y, m, d) = parse_date_text(&value_text(other))?;
            Some(match y {
                Some(y) if Some(y) != omit => format!("{y:04}-{m:02}-{d:02}"),
                _ => format!("--{m:02}-{d:02}"),
            })
        }
    }
}

fn address_of(card: &VCard, e: &VCardEntry) -> Address {
    Address {
        label: label_of(card, e, Kind::Adr),
        po_box: component(e, 0),
        extended: component(e, 1),
        street: component(e, 2),
        locality: component(e, 3),
        region: component(e, 4),
        postal_code: component(e, 5),
        country: component(e, 6),
        primary: false,
    }
}

// ------------------------------------------------------------------ card → fields

/// Maps a normalized card to person fields. Fields whose direction does not flow to the CRM
/// are left empty: apply the result with [`PersonFields::copy_from`] and
/// [`MappingConfig::fields_to_crm`].
pub fn card_to_fields(card: &VCard, config: &MappingConfig) -> PersonFields {
    let all = read_all(card);
    let mut out = PersonFields::default();
    out.copy_from(&all, config.fields_to_crm());
    out
}

/// The value of an EMAIL or TEL entry as the CRM shows it (`tel:` URIs unwrapped).
fn item_value(e: &VCardEntry, kind: Kind) -> String {
    let v = first_text(e);
    let v = v.trim();
    if kind == Kind::Tel {
        if let Some(rest) = v
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("tel:"))
            .and(v.get(4..))
        {
            return rest.trim().to_string();
        }
    }
    v.to_string()
}

fn read_labeled(card: &VCard, prop: &VCardProperty, kind: Kind) -> Vec<LabeledValue> {
    let entries: Vec<&VCardEntry> = card
        .properties(prop)
        .filter(|e| !item_value(e, kind).is_empty())
        .collect();
    let prims = primaries(&entries.iter().map(|e| pref_of(e)).collect::<Vec<_>>());
    entries
        .iter()
        .zip(prims)
        .map(|(e, primary)| LabeledValue {
            value: item_value(e, kind),
            label: label_of(card, e, kind),
            primary,
        })
        .collect()
}

fn read_all(card: &VCard) -> PersonFields {
    let mut f = PersonFields::default();
    if let Some(n) = card.property(&VCardProperty::N) {
        f.last_name = component(n, 0);
        f.first_name = component(n, 1);
    }
    f.name = card
        .property(&VCardProperty::Fn)
        .map(first_text)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| {
            [f.first_name.as_str(), f.last_name.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        });
    f.emails = read_labeled(card, &VCardProperty::Email, Kind::Email);
    f.phones = read_labeled(card, &VCardProperty::Tel, Kind::Tel);
    f.org_name = card
        .property(&VCardProperty::Org)
        .map(|e| component(e, 0))
        .unwrap_or_default();
    f.job_title = card
        .property(&VCardProperty::Title)
        .map(first_text)
        .unwrap_or_default();
    let adrs: Vec<&VCardEntry> = card.properties(&VCardProperty::Adr).collect();
    let prims = primaries(&adrs.iter().map(|e| pref_of(e)).collect::<Vec<_>>());
    f.addresses = adrs
        .iter()
        .zip(prims)
        .map(|(e, primary)| Address {
            primary,
            ..address_of(card, e)
        })
        .collect();
    f.birthday = card.property(&VCardProperty::Bday).and_then(birthday_of);
    f.notes = card
        .properties(&VCardProperty::Note)
        .map(first_text)
        .collect::<Vec<_>>()
        .join("\n");
    f.urls = card
        .properties(&VCardProperty::Url)
        .map(first_text)
        .filter(|u| !u.trim().is_empty())
        .collect();
    let mut seen = BTreeSet::new();
    f.labels = card
        .properties(&VCardProperty::Categories)
        .flat_map(|e| e.values.iter().map(value_text))
        .flat_map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty() && seen.insert(s.clone()))
        .collect();
    f
}

// ------------------------------------------------------------------ fields → card

/// Writes `fields` into a card. With `base` (the last remote card) the fields are MERGED into
/// it and everything the CRM does not model survives; without, a fresh vCard 4 is built.
/// Only fields whose direction flows to the provider are written. The caller sets UID.
pub fn fields_to_card(
    fields: &PersonFields,
    base: Option<&VCard>,
    config: &MappingConfig,
) -> VCard {
    let mut card = base.cloned().unwrap_or_else(|| VCard {
        entries: vec![VCardEntry::new(VCardProperty::Version).with_value("4.0".to_string())],
    });
    let current = read_all(&card);
    for f in config.fields_to_provider() {
        if fields.same(&current, f) {
            continue;
        }
        match f {
            CrmField::Name => write_name(&mut card, fields),
            CrmField::Emails => write_labeled(&mut card, Kind::Email, &fields.emails),
            CrmField::Phones => write_labeled(&mut card, Kind::Tel, &fields.phones),
            CrmField::OrgName => write_org(&mut card, &fields.org_name),
            CrmField::JobTitle => {
                write_single_text(&mut card, VCardProperty::Title, &fields.job_title)
            }
            CrmField::Addresses => write_addresses(&mut card, &fields.addresses),
            CrmField::Birthday => write_birthday(&mut card, fields.birthday.as_deref()),
            CrmField::Notes => write_single_text(&mut card, VCardProperty::Note, &fields.notes),
            CrmField::Urls => write_urls(&mut card, &fields.urls),
            CrmField::Labels => write_categories(&mut card, &fields.labels),
        }
    }
    // FN is required by RFC 6350 §6.2.1.
    if card.property(&VCardProperty::Fn).is_none() {
        let name = if fields.name.is_empty() {
            current.name.clone()
        } else {
            fields.name.clone()
        };
        insert_at_end(
            &mut card,
            VCardEntry::new(VCardProperty::Fn).with_value(name),
        );
    }
    card
}

/// Inserts before a trailing END entry if the card has one, else at the end.
fn insert_at_end(card: &mut VCard, e: VCardEntry) {
    let pos = card
        .entries
        .iter()
        .rposition(|x| x.name == VCardProperty::End)
        .unwrap_or(card.entries.len());
    card.entries.insert(pos, e);
}

/// Inserts after the last entry of `prop` (and the label of its group), else at the end.
fn insert_after_last(card: &mut VCard, prop: &VCardProperty, e: VCardEntry) -> usize {
    match card.entries.iter().rposition(|x| &x.name == prop) {
        Some(mut i) => {
            if let Some(g) = card.entries[i].group.clone() {
                while card.entries.get(i + 1).is_some_and(|x| {
                    is_ablabel(x)
                        && x.group
                            .as_deref()
                            .is_some_and(|y| y.eq_ignore_ascii_case(&g))
                }) {
                    i += 1;
                }
            }
            card.entries.insert(i + 1, e);
            i + 1
        }
        None => {
            insert_at_end(card, e);
            card.entries
                .iter()
                .rposition(|x| &x.name == prop)
                .unwrap_or(0)
        }
    }
}

fn set_single(card: &mut VCard, prop: VCardProperty, values: Vec<VCardValue>, empty: bool) {
    let idx: Vec<usize> = card
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == prop)
        .map(|(i, _)| i)
        .collect();
    if empty {
        for i in idx.into_iter().rev() {
            card.entries.remove(i);
        }
        return;
    }
    match idx.first() {
        Some(&first) => {
            card.entries[first].values = values;
            for i in idx.into_iter().skip(1).rev() {
                card.entries.remove(i);
            }
        }
        None => insert_at_end(card, VCardEntry::new(prop).with_values(values)),
    }
}

fn write_single_text(card: &mut VCard, prop: VCardProperty, text: &str) {
    set_single(
        card,
        prop,
        vec![VCardValue::Text(text.to_string())],
        text.is_empty(),
    );
}

fn write_name(card: &mut VCard, f: &PersonFields) {
    let name = if f.name.is_empty() {
        [f.first_name.as_str(), f.last_name.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        f.name.clone()
    };
    set_single(card, VCardProperty::Fn, vec![VCardValue::Text(name)], false);
    // Keep N's other components (additional names, prefixes, suffixes).
    let mut values: Vec<VCardValue> = card
        .property(&VCardProperty::N)
        .map(|n| n.values.clone())
        .unwrap_or_default();
    values.resize(5, VCardValue::Text(String::new()));
    values[0] = VCardValue::Text(f.last_name.clone());
    values[1] = VCardValue::Text(f.first_name.clone());
    set_single(card, VCardProperty::N, values, false);
}

fn write_org(card: &mut VCard, org: &str) {
    // Keep the organizational units after the name.
    let mut values: Vec<VCardValue> = card
        .property(&VCardProperty::Org)
        .map(|e| e.values.clone())
        .unwrap_or_default();
    if values.is_empty() {
        values.push(VCardValue::Text(String::new()));
    }
    values[0] = VCardValue::Text(org.to_string());
    let units_empty = values.iter().skip(1).all(|v| value_text(v).is_empty());
    set_single(
        card,
        VCardProperty::Org,
        values,
        org.is_empty() && units_empty,
    );
}

fn write_birthday(card: &mut VCard, b: Option<&str>) {
    let parsed = b.and_then(parse_date_text);
    let Some((year, month, day)) = parsed else {
        set_single(card, VCardProperty::Bday, vec![], true);
        return;
    };
    let value = VCardValue::PartialDateTime(PartialDateTime {
        year,
        month: Some(month),
        day: Some(day),
        ..Default::default()
    });
    // A fresh value: Apple's omit-year marker would no longer match.
    if let Some(e) = card
        .entries
        .iter_mut()
        .find(|e| e.name == VCardProperty::Bday)
    {
        e.params.retain(|p| {
            !matches!(&p.name, VCardParameterName::Other(n) if n.eq_ignore_ascii_case(X_APPLE_OMIT_YEAR))
                && p.name != VCardParameterName::Value
        });
    }
    set_single(card, VCardProperty::Bday, vec![value], false);
}

fn write_categories(card: &mut VCard, labels: &[String]) {
    let values = labels.iter().map(|l| VCardValue::Text(l.clone())).collect();
    set_single(card, VCardProperty::Categories, values, labels.is_empty());
}

fn write_urls(card: &mut VCard, urls: &[String]) {
    let mut wanted: Vec<Option<&String>> = urls.iter().map(Some).collect();
    // Keep entries whose value survives; drop the others (and their orphaned labels).
    let mut dropped_groups = Vec::new();
    card.entries.retain(|e| {
        if e.name != VCardProperty::Url {
            return true;
        }
        let v = first_text(e);
        match wanted.iter_mut().find(|w| w.is_some_and(|u| *u == v)) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => {
                dropped_groups.extend(e.group.clone());
                false
            }
        }
    });
    for g in dropped_groups {
        drop_group_label_if_orphan(card, &g);
    }
    for u in wanted.into_iter().flatten() {
        insert_after_last(
            card,
            &VCardProperty::Url,
            VCardEntry::new(VCardProperty::Url).with_value(u.clone()),
        );
    }
}

fn prop_of(kind: Kind) -> VCardProperty {
    match kind {
        Kind::Email => VCardProperty::Email,
        Kind::Tel => VCardProperty::Tel,
        Kind::Adr => VCardProperty::Adr,
    }
}

/// TYPE parameters for a canonical label; `None` for a custom label (needs X-ABLabel).
fn types_for_label(kind: Kind, label: &str) -> Option<Vec<VCardParameterValue>> {
    let t = |x: VCardType| VCardParameterValue::Type(x);
    match label {
        labels::WORK => Some(vec![t(VCardType::Work)]),
        labels::HOME => Some(vec![t(VCardType::Home)]),
        labels::OTHER => Some(vec![]),
        labels::MOBILE if kind == Kind::Tel => Some(vec![t(VCardType::Cell)]),
        labels::FAX if kind == Kind::Tel => Some(vec![t(VCardType::Fax)]),
        labels::PAGER if kind == Kind::Tel => Some(vec![t(VCardType::Pager)]),
        labels::MAIN if kind == Kind::Tel => Some(vec![t(VCardType::MainNumber)]),
        _ => None,
    }
}

/// TYPE values that describe the medium rather than the label; kept on relabel.
fn is_medium_type(v: &VCardParameterValue) -> bool {
    match v.as_text() {
        Some(t) => matches!(
            t.to_ascii_lowercase().as_str(),
            "voice" | "text" | "internet" | "x400" | "video" | "textphone"
        ),
        None => false,
    }
}

fn next_group(card: &VCard) -> String {
    let max = card
        .entries
        .iter()
        .filter_map(|e| e.group.as_deref())
        .filter_map(|g| {
            g.get(..4)
                .filter(|p| p.eq_ignore_ascii_case("item"))
                .and_then(|_| g.get(4..))
                .and_then(|n| n.parse::<u32>().ok())
        })
        .max()
        .unwrap_or(0);
    format!("item{}", max + 1)
}

/// One wanted item of a labeled multi-valued field.
struct Wanted {
    key: String,
    values: Vec<VCardValue>,
    label: String,
    primary: bool,
}

fn match_key(kind: Kind, values: &[VCardValue]) -> String {
    match kind {
        Kind::Email => values
            .first()
            .map(value_text)
            .unwrap_or_default()
            .trim()
            .to_lowercase(),
        Kind::Tel => values
            .first()
            .map(value_text)
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect(),
        Kind::Adr => values.iter().map(value_text).collect::<Vec<_>>().join(";"),
    }
}

fn write_labeled(card: &mut VCard, kind: Kind, items: &[LabeledValue]) {
    let wanted = items
        .iter()
        .map(|i| {
            let values = vec![VCardValue::Text(i.value.clone())];
            Wanted {
                key: match_key(kind, &values),
                values,
                label: i.label.clone(),
                primary: i.primary,
            }
        })
        .collect();
    write_wanted(card, kind, wanted);
}

fn write_addresses(card: &mut VCard, items: &[Address]) {
    let wanted = items
        .iter()
        .map(|a| {
            let values: Vec<VCardValue> = [
                &a.po_box,
                &a.extended,
                &a.street,
                &a.locality,
                &a.region,
                &a.postal_code,
                &a.country,
            ]
            .into_iter()
            .map(|s| VCardValue::Text(s.clone()))
            .collect();
            Wanted {
                key: match_key(Kind::Adr, &values),
                values,
                label: a.label.clone(),
                primary: a.primary,
            }
        })
        .collect();
    write_wanted(card, Kind::Adr, wanted);
}

fn write_wanted(card: &mut VCard, kind: Kind, wanted: Vec<Wanted>) {
    let prop = prop_of(kind);
    let any_primary = wanted.iter().any(|w| w.primary);
    // 1. Pair wanted items with existing entries of the same key (first unused match).
    let existing: Vec<usize> = card
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == prop)
        .map(|(i, _)| i)
        .collect();
    let mut used = BTreeSet::new();
    let mut pairs: Vec<Option<usize>> = Vec::with_capacity(wanted.len());
    for w in &wanted {
        let hit = existing
            .iter()
            .copied()
            .find(|i| !used.contains(i) && match_key(kind, &card.entries[*i].values) == w.key);
        if let Some(i) = hit {
            used.insert(i);
        }
        pairs.push(hit);
    }
    // 2. Update matched entries in place.
    for (w, slot) in wanted.iter().zip(&pairs) {
        if let Some(i) = *slot {
            let current_label = label_of(card, &card.entries[i], kind);
            let current_values: Vec<String> = match kind {
                Kind::Adr => card.entries[i].values.iter().map(value_text).collect(),
                _ => vec![item_value(&card.entries[i], kind)],
            };
            let wanted_values: Vec<String> = w.values.iter().map(value_text).collect();
            if current_values != wanted_values {
                card.entries[i].values = w.values.clone();
                // A plain value replaces a `VALUE=uri` one.
                card.entries[i]
                    .params
                    .retain(|p| p.name != VCardParameterName::Value);
            }
            set_pref(&mut card.entries[i], w.primary, any_primary);
            if current_label != w.label {
                relabel(card, i, kind, &w.label);
            }
        }
    }
    // 3. Remove unmatched existing entries and the labels of groups left empty.
    let removed: Vec<usize> = existing
        .iter()
        .copied()
        .filter(|i| !used.contains(i))
        .collect();
    let removed_groups: Vec<String> = removed
        .iter()
        .filter_map(|i| card.entries[*i].group.clone())
        .collect();
    let mut idx = 0usize;
    card.entries.retain(|_| {
        let keep = !removed.contains(&idx);
        idx += 1;
        keep
    });
    for g in removed_groups {
        drop_group_label_if_orphan(card, &g);
    }
    // 4. Append new items after the last entry of the property.
    for (w, slot) in wanted.iter().zip(&pairs) {
        if slot.is_some() {
            continue;
        }
        let mut e = VCardEntry::new(prop.clone()).with_values(w.values.clone());
        set_pref(&mut e, w.primary, any_primary);
        let at = insert_after_last(card, &prop, e);
        apply_label(card, at, kind, &w.label);
    }
}

fn drop_group_label_if_orphan(card: &mut VCard, group: &str) {
    let still_used = card.entries.iter().any(|e| {
        !is_ablabel(e)
            && e.group
                .as_deref()
                .is_some_and(|g| g.eq_ignore_ascii_case(group))
    });
    if !still_used {
        card.entries.retain(|e| {
            !(is_ablabel(e)
                && e.group
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case(group)))
        });
    }
}

fn relabel(card: &mut VCard, i: usize, kind: Kind, label: &str) {
    card.entries[i]
        .params
        .retain(|p| p.name != VCardParameterName::Type || is_medium_type(&p.value));
    let mut i = i;
    if let Some(g) = card.entries[i].group.clone() {
        let in_group = |e: &VCardEntry| {
            is_ablabel(e)
                && e.group
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(&g))
        };
        // Labels removed before `i` shift it left.
        i -= card.entries[..i].iter().filter(|e| in_group(e)).count();
        card.entries.retain(|e| !in_group(e));
    }
    apply_label(card, i, kind, label);
}

fn apply_label(card: &mut VCard, i: usize, kind: Kind, label: &str) {
    let Some(entry) = card.entries.get_mut(i) else {
        return;
    };
    match types_for_label(kind, label) {
        Some(ts) => {
            for t in ts {
                entry.params.push(VCardParameter::typ(t));
            }
        }
        None => {
            let group = match entry.group.clone() {
                Some(g) => g,
                None => {
                    let g = next_group(card);
                    if let Some(e) = card.entries.get_mut(i) {
                        e.group = Some(g.clone());
                    }
                    g
                }
            };
            let lab = VCardEntry::new(VCardProperty::Other("X-ABLabel".to_string()))
                .with_group(Some(group))
                .with_value(label.to_string());
            card.entries.insert(i + 1, lab);
        }
    }
}

fn set_pref(e: &mut VCardEntry, primary: bool, any_primary: bool) {
    let current = pref_of(e);
    if primary {
        if current == Some(1) && e.parameters(&VCardParameterName::Pref).next().is_some() {
            return;
        }
        strip_pref(e);
        e.params
            .push(VCardParameter::pref(VCardParameterValue::Integer(1)));
    } else if !(any_primary && current.is_some_and(|p| p > 1)) {
        strip_pref(e);
    }
}

fn strip_pref(e: &mut VCardEntry) {
    e.params.retain(|p| {
        p.name != VCardParameterName::Pref
            && !(p.name == VCardParameterName::Type
                && p.value
                    .as_text()
                    .is_some_and(|t| t.eq_ignore_ascii_case("pref")))
    });
}

// ------------------------------------------------------------------ preview

/// One row of the field-mapping table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRow {
    /// The CRM field.
    pub field: CrmField,
    /// The CRM side's name.
    pub crm_field: String,
    /// The provider side's name.
    pub provider_field: String,
    /// The configured direction.
    pub direction: Direction,
}

/// One sample card as it would map into the CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSample {
    /// The card's UID, if any.
    pub uid: Option<String>,
    /// What the CRM would receive.
    pub fields: PersonFields,
}

/// The field-mapping preview of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingPreview {
    /// One row per CRM field.
    pub rows: Vec<MappingRow>,
    /// The sample cards, mapped.
    pub samples: Vec<MappingSample>,
}

/// The mapping table and a sample of real cards as they would map.
pub fn preview(config: &MappingConfig, sample_cards: &[VCard]) -> MappingPreview {
    MappingPreview {
        rows: CrmField::ALL
            .iter()
            .map(|f| MappingRow {
                field: *f,
                crm_field: f.crm_name().to_string(),
                provider_field: f.provider_name().to_string(),
                direction: config.direction(*f),
            })
            .collect(),
        samples: sample_cards
            .iter()
            .map(|c| MappingSample {
                uid: c.uid().map(str::to_string),
                fields: card_to_fields(c, config),
            })
            .collect(),
    }
}
