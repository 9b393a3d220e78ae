//! Pure mapping between an EWS `t:Contact` (MS-OXWSCONT `ContactItemType`) and a normalized
//! vCard 4 card, in both directions, plus the `UpdateItem` field changes for a card.
//!
//! No I/O. Reading ([`EwsContact::from_element`], [`from_ews`]) never fails on a `t:Contact`
//! element: unreadable values are skipped. Writing ([`to_ews`]) fills EWS's fixed slots
//! predictably, preferred entries first (PREF ascending, then card order), and reports what did
//! not fit as [`Overflow`]; the provider and the engine keep that in the CRM
//! ([`reattach_overflow`]), exactly as for Graph.
//!
//! Slots (providers.md §4 "Data model"): `EmailAddress1..3`; `ImAddress1..3`; one
//! `Business`/`Home`/`Other` physical address; the phone keys of [`names::phone`], assigned by
//! TEL type:
//!
//! | TEL TYPE | keys, in order |
//! |---|---|
//! | `work` | BusinessPhone, BusinessPhone2 |
//! | `home` | HomePhone, HomePhone2 |
//! | `cell` | MobilePhone |
//! | `main-number` | CompanyMainPhone, PrimaryPhone |
//! | `fax` + `work` / `home` / neither | BusinessFax / HomeFax / OtherFax, then the other fax keys |
//! | `pager` | Pager |
//! | `textphone` | TtyTddPhone |
//! | anything else | OtherTelephone, CarPhone, Callback, AssistantPhone, Isdn, RadioPhone, Telex |
//!
//! Reading maps each key back to those types, so a read card written back lands in the same
//! keys. Our CRM id is the named string property [`names::CRM_ID_PROPERTY_NAME`].

use calcard::vcard::{VCardEntry, VCardProperty, VCardType, VCardValue};

use crate::dav::names::QName;
use crate::dav::xml::Element;
use crate::providers::graph::mapping::{
    birthday_json, by_pref, categories_of, component, first_text, has_type, is_mapped, note_text,
    parse_birthday, pref1, text, text_entry, typ,
};
use crate::vcard::VCard;

use super::names::{self, attr, el, field, phone, ADDRESS_KEYS, EMAIL_KEYS, IM_KEYS, NS_TYPES};
use super::soap::{self, indexed_path, path, FieldUpdate, ItemId};

/// A physical address entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// Street (may hold several lines).
    pub street: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or province.
    pub state: Option<String>,
    /// Country or region.
    pub country: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
}

impl Address {
    fn parts(&self) -> [(&'static str, &'static str, &Option<String>); 5] {
        [
            (el::STREET, field::ADDRESS_STREET, &self.street),
            (el::CITY, field::ADDRESS_CITY, &self.city),
            (el::STATE, field::ADDRESS_STATE, &self.state),
            (el::COUNTRY_OR_REGION, field::ADDRESS_COUNTRY, &self.country),
            (
                el::POSTAL_CODE,
                field::ADDRESS_POSTAL_CODE,
                &self.postal_code,
            ),
        ]
    }

    fn is_empty(&self) -> bool {
        self.parts().iter().all(|(_, _, v)| text(v).is_none())
    }
}

/// The contact properties the mapping reads and writes. Indexed values are `(key, value)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EwsContact {
    /// `ItemId` (read only).
    pub item_id: Option<ItemId>,
    /// `DisplayName`.
    pub display_name: Option<String>,
    /// `GivenName`.
    pub given_name: Option<String>,
    /// `MiddleName`.
    pub middle_name: Option<String>,
    /// `Surname`.
    pub surname: Option<String>,
    /// `Generation` (suffix).
    pub generation: Option<String>,
    /// `Nickname`.
    pub nickname: Option<String>,
    /// `CompanyName`.
    pub company_name: Option<String>,
    /// `Department`.
    pub department: Option<String>,
    /// `JobTitle`.
    pub job_title: Option<String>,
    /// `BusinessHomePage`.
    pub business_home_page: Option<String>,
    /// `Birthday`, an `xs:dateTime`.
    pub birthday: Option<String>,
    /// `Body` as text (notes).
    pub notes: Option<String>,
    /// `EmailAddresses` entries.
    pub emails: Vec<(String, String)>,
    /// `PhoneNumbers` entries.
    pub phones: Vec<(String, String)>,
    /// `PhysicalAddresses` entries.
    pub addresses: Vec<(String, Address)>,
    /// `ImAddresses` entries.
    pub im_addresses: Vec<(String, String)>,
    /// `Categories`.
    pub categories: Vec<String>,
    /// `HasPicture` (read only; the photo itself is [`EwsContact::photo`]).
    pub has_picture: bool,
    /// The file attachment with `IsContactPhoto` true (its bytes come from `GetAttachment`;
    /// the provider reads them and puts them on the card).
    pub photo: Option<PhotoAttachment>,
    /// Our CRM id, from the extended property.
    pub crm_id: Option<String>,
}

/// A contact photo attachment as `GetItem` lists it (no content).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PhotoAttachment {
    /// `AttachmentId Id`.
    pub id: String,
    /// `ContentType`.
    pub content_type: Option<String>,
}

/// The first `t:FileAttachment` of `e`'s `t:Attachments` with `IsContactPhoto` true.
fn photo_attachment(e: &Element) -> Option<PhotoAttachment> {
    e.child(&t(el::ATTACHMENTS))?
        .children
        .iter()
        .filter(|a| a.ns == NS_TYPES && a.name == el::FILE_ATTACHMENT)
        .find(|a| child_text(a, el::IS_CONTACT_PHOTO).is_some_and(|v| v == "true"))
        .and_then(|a| {
            let id = a.child(&t(el::ATTACHMENT_ID))?.attr(attr::ID)?.to_string();
            Some(PhotoAttachment {
                id,
                content_type: child_text(a, el::CONTENT_TYPE),
            })
        })
}

fn t(local: &'static str) -> QName {
    QName::new_static(NS_TYPES, local)
}

fn child_text(e: &Element, local: &'static str) -> Option<String> {
    e.child(&t(local))
        .map(|c| c.text.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The `(Key, t:Entry)` pairs of the indexed dictionary `local` (e.g. `EmailAddresses`).
fn entries<'a>(e: &'a Element, local: &'static str) -> Vec<(String, &'a Element)> {
    e.child(&t(local))
        .map(|d| {
            d.children
                .iter()
                .filter(|c| c.ns == NS_TYPES && c.name == el::ENTRY)
                .filter_map(|c| c.attr(attr::KEY).map(|k| (k.to_string(), c)))
                .collect()
        })
        .unwrap_or_default()
}

impl EwsContact {
    /// Reads a `t:Contact` element; `Err` when it is something else.
    pub fn from_element(e: &Element) -> Result<Self, String> {
        if !e.is(&t(el::CONTACT)) {
            return Err(format!("not a contact: {}", e.clark()));
        }
        let mut c = EwsContact {
            item_id: e.child(&t(el::ITEM_ID)).and_then(soap::item_id),
            display_name: child_text(e, el::DISPLAY_NAME),
            given_name: child_text(e, el::GIVEN_NAME),
            middle_name: child_text(e, el::MIDDLE_NAME),
            surname: child_text(e, el::SURNAME),
            generation: child_text(e, el::GENERATION),
            nickname: child_text(e, el::NICKNAME),
            company_name: child_text(e, el::COMPANY_NAME),
            department: child_text(e, el::DEPARTMENT),
            job_title: child_text(e, el::JOB_TITLE),
            business_home_page: child_text(e, el::BUSINESS_HOME_PAGE),
            birthday: child_text(e, el::BIRTHDAY),
            notes: e
                .child(&t(el::ITEM_BODY))
                .map(|b| b.text.clone())
                .filter(|s| !s.trim().is_empty()),
            has_picture: child_text(e, el::HAS_PICTURE).is_some_and(|v| v == "true"),
            photo: photo_attachment(e),
            ..Default::default()
        };
        for (key, entry) in entries(e, el::EMAIL_ADDRESSES) {
            // An `EX` routing type holds an X.500 DN, not an address.
            if entry.attr("RoutingType").is_some_and(|r| r == "EX") {
                continue;
            }
            let v = entry.text.trim();
            if !v.is_empty() && EMAIL_KEYS.contains(&key.as_str()) {
                c.emails
                    .push((key, v.strip_prefix("SMTP:").unwrap_or(v).to_string()));
            }
        }
        c.emails
            .sort_by_key(|(k, _)| EMAIL_KEYS.iter().position(|x| x == k));
        for (key, entry) in entries(e, el::PHONE_NUMBERS) {
            let v = entry.text.trim();
            if !v.is_empty() && phone::ALL.contains(&key.as_str()) {
                c.phones.push((key, v.to_string()));
            }
        }
        c.phones
            .sort_by_key(|(k, _)| phone::ALL.iter().position(|x| x == k));
        for (key, entry) in entries(e, el::IM_ADDRESSES) {
            let v = entry.text.trim();
            if !v.is_empty() && IM_KEYS.contains(&key.as_str()) {
                c.im_addresses.push((key, v.to_string()));
            }
        }
        c.im_addresses
            .sort_by_key(|(k, _)| IM_KEYS.iter().position(|x| x == k));
        for (key, entry) in entries(e, el::PHYSICAL_ADDRESSES) {
            if !ADDRESS_KEYS.contains(&key.as_str()) {
                continue;
            }
            let a = Address {
                street: child_text(entry, el::STREET),
                city: child_text(entry, el::CITY),
                state: child_text(entry, el::STATE),
                country: child_text(entry, el::COUNTRY_OR_REGION),
                postal_code: child_text(entry, el::POSTAL_CODE),
            };
            if !a.is_empty() {
                c.addresses.push((key, a));
            }
        }
        c.addresses
            .sort_by_key(|(k, _)| ADDRESS_KEYS.iter().position(|x| x == k));
        if let Some(cats) = e.child(&t(el::CATEGORIES)) {
            c.categories = cats
                .children
                .iter()
                .filter(|s| s.name == el::STRING)
                .map(|s| s.text.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        c.crm_id = e
            .children
            .iter()
            .filter(|x| x.is(&t(el::EXTENDED_PROPERTY)))
            .find(|x| {
                x.child(&t(el::EXTENDED_FIELD_URI)).is_some_and(|u| {
                    u.attr(attr::PROPERTY_NAME) == Some(names::CRM_ID_PROPERTY_NAME)
                        && u.attr(attr::PROPERTY_SET_ID).is_some_and(|s| {
                            s.trim_matches(['{', '}'])
                                .eq_ignore_ascii_case(names::CRM_ID_PROPERTY_SET)
                        })
                })
            })
            .and_then(|x| child_text(x, el::VALUE));
        Ok(c)
    }

    /// The version tag: the ChangeKey.
    pub fn etag(&self) -> Option<String> {
        self.item_id.as_ref().and_then(|i| i.change_key.clone())
    }
}

/// The vCard TYPEs a phone key reads as.
fn phone_types(key: &str) -> Vec<VCardType> {
    match key {
        phone::BUSINESS | phone::BUSINESS2 => vec![VCardType::Work],
        phone::HOME | phone::HOME2 => vec![VCardType::Home],
        phone::MOBILE => vec![VCardType::Cell],
        phone::COMPANY_MAIN | phone::PRIMARY => vec![VCardType::MainNumber],
        phone::BUSINESS_FAX => vec![VCardType::Work, VCardType::Fax],
        phone::HOME_FAX => vec![VCardType::Home, VCardType::Fax],
        phone::OTHER_FAX => vec![VCardType::Fax],
        phone::PAGER => vec![VCardType::Pager],
        phone::TTY_TDD => vec![VCardType::Textphone],
        _ => vec![],
    }
}

/// The keys a TEL may fill, in order of preference.
fn phone_slots(e: &VCardEntry) -> &'static [&'static str] {
    let is = |t: VCardType| has_type(e, &t);
    if is(VCardType::Fax) {
        if is(VCardType::Work) {
            &[phone::BUSINESS_FAX, phone::OTHER_FAX]
        } else if is(VCardType::Home) {
            &[phone::HOME_FAX, phone::OTHER_FAX]
        } else {
            &[phone::OTHER_FAX, phone::BUSINESS_FAX, phone::HOME_FAX]
        }
    } else if is(VCardType::Pager) {
        &[phone::PAGER]
    } else if is(VCardType::Cell) {
        &[phone::MOBILE]
    } else if is(VCardType::Textphone) {
        &[phone::TTY_TDD]
    } else if is(VCardType::MainNumber) {
        &[phone::COMPANY_MAIN, phone::PRIMARY]
    } else if is(VCardType::Home) && !is(VCardType::Work) {
        &[phone::HOME, phone::HOME2]
    } else if is(VCardType::Work) {
        &[phone::BUSINESS, phone::BUSINESS2]
    } else {
        &[
            phone::OTHER,
            phone::CAR,
            phone::CALLBACK,
            phone::ASSISTANT,
            phone::ISDN,
            phone::RADIO,
            phone::TELEX,
        ]
    }
}

/// An EWS contact read as a card.
#[derive(Debug, Clone, PartialEq)]
pub struct FromEws {
    /// The normalized vCard 4 card.
    pub card: VCard,
    /// The CRM id, when the contact carries our property.
    pub crm_id: Option<String>,
}

/// Maps an EWS contact to a normalized vCard 4 card.
///
/// Order: FN, N, NICKNAME, EMAIL (key order, the first PREF=1), TEL (key order of
/// [`phone::ALL`], the first PREF=1), IMPP, ADR (work, home, other-untyped), ORG, TITLE, BDAY,
/// URL (`TYPE=work`), CATEGORIES, NOTE.
pub fn from_ews(c: &EwsContact) -> FromEws {
    let mut entries = Vec::new();
    let composed = [&c.given_name, &c.middle_name, &c.surname, &c.generation]
        .into_iter()
        .filter_map(text)
        .collect::<Vec<_>>()
        .join(" ");
    let fn_value = text(&c.display_name)
        .map(str::to_string)
        .or_else(|| (!composed.is_empty()).then_some(composed))
        .or_else(|| text(&c.company_name).map(str::to_string))
        .unwrap_or_default();
    entries.push(text_entry(VCardProperty::Fn, &fn_value));
    let n_parts = [
        &c.surname,
        &c.given_name,
        &c.middle_name,
        &None,
        &c.generation,
    ];
    if n_parts.iter().any(|p| text(p).is_some()) {
        entries.push(
            VCardEntry::new(VCardProperty::N).with_values(
                n_parts
                    .iter()
                    .map(|p| VCardValue::Text(text(p).unwrap_or_default().to_string()))
                    .collect(),
            ),
        );
    }
    if let Some(nick) = text(&c.nickname) {
        entries.push(text_entry(VCardProperty::Nickname, nick));
    }
    for (i, (_, address)) in c.emails.iter().enumerate() {
        let mut entry = text_entry(VCardProperty::Email, address);
        if i == 0 {
            entry.add_param(pref1());
        }
        entries.push(entry);
    }
    for (i, (key, number)) in c.phones.iter().enumerate() {
        let mut entry = text_entry(VCardProperty::Tel, number);
        for ty in phone_types(key) {
            entry.add_param(typ(ty));
        }
        if i == 0 {
            entry.add_param(pref1());
        }
        entries.push(entry);
    }
    for (_, im) in &c.im_addresses {
        entries.push(text_entry(VCardProperty::Impp, im));
    }
    for (key, a) in &c.addresses {
        let part = |s: &Option<String>| VCardValue::Text(text(s).unwrap_or_default().to_string());
        let mut entry = VCardEntry::new(VCardProperty::Adr).with_values(vec![
            VCardValue::Text(String::new()),
            VCardValue::Text(String::new()),
            part(&a.street),
            part(&a.city),
            part(&a.state),
            part(&a.postal_code),
            part(&a.country),
        ]);
        match key.as_str() {
            "Business" => entry.add_param(typ(VCardType::Work)),
            "Home" => entry.add_param(typ(VCardType::Home)),
            _ => {}
        }
        entries.push(entry);
    }
    match (text(&c.company_name), text(&c.department)) {
        (None, None) => {}
        (company, None) => entries.push(text_entry(VCardProperty::Org, company.unwrap_or(""))),
        (company, Some(dept)) => {
            entries.push(VCardEntry::new(VCardProperty::Org).with_values(vec![
                VCardValue::Text(company.unwrap_or_default().to_string()),
                VCardValue::Text(dept.to_string()),
            ]))
        }
    }
    if let Some(title) = text(&c.job_title) {
        entries.push(text_entry(VCardProperty::Title, title));
    }
    if let Some(bday) = text(&c.birthday).and_then(parse_birthday) {
        entries.push(
            VCardEntry::new(VCardProperty::Bday).with_value(VCardValue::PartialDateTime(bday)),
        );
    }
    if let Some(url) = text(&c.business_home_page) {
        entries.push(text_entry(VCardProperty::Url, url).with_param(typ(VCardType::Work)));
    }
    if !c.categories.is_empty() {
        entries.push(
            VCardEntry::new(VCardProperty::Categories).with_values(
                c.categories
                    .iter()
                    .map(|s| VCardValue::Text(s.clone()))
                    .collect(),
            ),
        );
    }
    if let Some(note) = c.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        entries.push(text_entry(VCardProperty::Note, note));
    }
    FromEws {
        card: VCard { entries },
        crm_id: c.crm_id.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// vCard → EWS

/// Why a vCard property did not make it into the EWS contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverflowReason {
    /// The EWS field has a fixed number of slots and they were full (the field is named).
    SlotsFull(&'static str),
    /// EWS's contact has no field for this property (or this value).
    Unsupported,
}

/// One card property EWS cannot hold. The engine keeps it in the CRM.
#[derive(Debug, Clone, PartialEq)]
pub struct Overflow {
    /// The property, as it was on the card.
    pub entry: VCardEntry,
    /// Why it did not fit.
    pub reason: OverflowReason,
}

/// A card mapped for a write.
#[derive(Debug, Clone, PartialEq)]
pub struct ToEws {
    /// The values to store (no item id, no CRM id).
    pub contact: EwsContact,
    /// What did not fit.
    pub overflow: Vec<Overflow>,
}

fn opt(s: String) -> Option<String> {
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Maps a card to EWS contact values, filling slots primary first (see the module table).
/// FN/N/NICKNAME → names; EMAIL → `EmailAddress1..3`; IMPP → `ImAddress1..3`; ADR `work` /
/// `home` / other → `Business` / `Home` / `Other`; ORG → company; department; TITLE → job
/// title; URL → business home page; BDAY (with a year) → birthday; NOTE → body; CATEGORIES.
/// VERSION, PRODID, REV, UID and KIND are metadata and are neither written nor reported; the N
/// prefix is neither written nor read; everything else is overflow (`Unsupported`).
pub fn to_ews(card: &VCard) -> ToEws {
    let mut c = EwsContact::default();
    let mut overflow = Vec::new();
    let mut over = |e: &VCardEntry, reason: OverflowReason| {
        overflow.push(Overflow {
            entry: e.clone(),
            reason,
        })
    };

    let n = card.property(&VCardProperty::N);
    let n_part = |i: usize| n.map(|n| component(n, i)).unwrap_or_default();
    c.surname = opt(n_part(0));
    c.given_name = opt(n_part(1));
    c.middle_name = opt(n_part(2));
    c.generation = opt(n_part(4));
    // The honorific prefix (N component 3) is not written: EWS has it only in the read-only
    // CompleteName, and the mapping does not read it either, so it never looks deleted.
    c.display_name = card
        .property(&VCardProperty::Fn)
        .and_then(first_text)
        .or_else(|| {
            opt([n_part(1), n_part(2), n_part(0), n_part(4)]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "))
        });
    let nicks = by_pref(card, &VCardProperty::Nickname);
    c.nickname = nicks.first().and_then(|e| first_text(e));
    for e in nicks.iter().skip(1) {
        over(e, OverflowReason::SlotsFull(el::NICKNAME));
    }

    for e in by_pref(card, &VCardProperty::Email) {
        match first_text(e) {
            Some(a) if c.emails.len() < EMAIL_KEYS.len() => {
                c.emails.push((EMAIL_KEYS[c.emails.len()].to_string(), a))
            }
            Some(_) => over(e, OverflowReason::SlotsFull(el::EMAIL_ADDRESSES)),
            None => {}
        }
    }
    for e in by_pref(card, &VCardProperty::Tel) {
        let Some(number) = first_text(e) else {
            continue;
        };
        let number = number.strip_prefix("tel:").unwrap_or(&number).to_string();
        let free = phone_slots(e)
            .iter()
            .find(|k| !c.phones.iter().any(|(used, _)| used == *k));
        match free {
            Some(key) => c.phones.push((key.to_string(), number)),
            None => over(e, OverflowReason::SlotsFull(el::PHONE_NUMBERS)),
        }
    }
    c.phones
        .sort_by_key(|(k, _)| phone::ALL.iter().position(|x| x == k));
    for e in by_pref(card, &VCardProperty::Impp) {
        match first_text(e) {
            Some(a) if c.im_addresses.len() < IM_KEYS.len() => c
                .im_addresses
                .push((IM_KEYS[c.im_addresses.len()].to_string(), a)),
            Some(_) => over(e, OverflowReason::SlotsFull(el::IM_ADDRESSES)),
            None => {}
        }
    }
    for e in by_pref(card, &VCardProperty::Adr) {
        let key = if has_type(e, &VCardType::Work) {
            "Business"
        } else if has_type(e, &VCardType::Home) {
            "Home"
        } else {
            "Other"
        };
        if c.addresses.iter().any(|(k, _)| k == key) {
            over(e, OverflowReason::SlotsFull(el::PHYSICAL_ADDRESSES));
            continue;
        }
        // ADR: box; extended; street; locality; region; code; country (RFC 6350 §6.3.1).
        let street = [component(e, 0), component(e, 1), component(e, 2)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let a = Address {
            street: opt(street),
            city: opt(component(e, 3)),
            state: opt(component(e, 4)),
            postal_code: opt(component(e, 5)),
            country: opt(component(e, 6)),
        };
        if !a.is_empty() {
            c.addresses.push((key.to_string(), a));
        }
    }
    c.addresses
        .sort_by_key(|(k, _)| ADDRESS_KEYS.iter().position(|x| x == k));

    let orgs = by_pref(card, &VCardProperty::Org);
    c.company_name = orgs.first().and_then(|o| opt(component(o, 0)));
    c.department = orgs.first().and_then(|o| opt(component(o, 1)));
    for e in orgs.iter().skip(1) {
        over(e, OverflowReason::SlotsFull(el::COMPANY_NAME));
    }
    let titles = by_pref(card, &VCardProperty::Title);
    c.job_title = titles.first().and_then(|e| first_text(e));
    for e in titles.iter().skip(1) {
        over(e, OverflowReason::SlotsFull(el::JOB_TITLE));
    }
    let urls = by_pref(card, &VCardProperty::Url);
    c.business_home_page = urls.first().and_then(|e| first_text(e));
    for e in urls.iter().skip(1) {
        over(e, OverflowReason::SlotsFull(el::BUSINESS_HOME_PAGE));
    }
    for e in card.properties(&VCardProperty::Bday) {
        match birthday_json(e) {
            Some(b) if c.birthday.is_none() => c.birthday = Some(b),
            Some(_) => over(e, OverflowReason::SlotsFull(el::BIRTHDAY)),
            None => over(e, OverflowReason::Unsupported),
        }
    }
    let notes = by_pref(card, &VCardProperty::Note);
    c.notes = notes.first().and_then(|e| note_text(e));
    for e in notes.iter().skip(1) {
        over(e, OverflowReason::SlotsFull(el::ITEM_BODY));
    }
    c.categories = categories_of(card);
    // The first PHOTO is the contact-photo attachment (the provider's job); EWS holds one.
    for e in card
        .entries
        .iter()
        .filter(|e| e.name == VCardProperty::Photo)
        .skip(1)
    {
        over(e, OverflowReason::SlotsFull(el::HAS_PICTURE));
    }
    for e in card
        .entries
        .iter()
        .filter(|e| !is_mapped(&e.name) && e.name != VCardProperty::Photo)
    {
        over(e, OverflowReason::Unsupported);
    }
    ToEws {
        contact: c,
        overflow,
    }
}

fn t_el(local: &'static str) -> Element {
    soap::t_el(local)
}

fn text_el(local: &'static str, value: &str) -> Element {
    t_el(local).with_text(value)
}

fn body_el(notes: &str) -> Element {
    text_el(el::ITEM_BODY, notes).with_attr(attr::BODY_TYPE, "Text")
}

fn categories_el(cats: &[String]) -> Element {
    t_el(el::CATEGORIES).with_children(cats.iter().map(|c| text_el(el::STRING, c)))
}

fn entry_el(key: &str, value: &str) -> Element {
    text_el(el::ENTRY, value).with_attr(attr::KEY, key)
}

fn address_el(key: &str, a: &Address) -> Element {
    t_el(el::ENTRY).with_attr(attr::KEY, key).with_children(
        a.parts()
            .into_iter()
            .filter_map(|(name, _, v)| text(v).map(|v| text_el(name, v))),
    )
}

fn crm_id_el(crm_id: &str) -> Element {
    t_el(el::EXTENDED_PROPERTY)
        .with_child(soap::crm_id_field_uri())
        .with_child(text_el(el::VALUE, crm_id))
}

/// The `t:Contact` for CreateItem, children in schema order (MS-OXWSCORE `ItemType`, then
/// MS-OXWSCONT `ContactItemType`), with our CRM id as an extended property.
pub fn contact_element(c: &EwsContact, crm_id: Option<&str>) -> Element {
    let mut e = t_el(el::CONTACT);
    let opt_el = |e: &mut Element, local: &'static str, v: &Option<String>| {
        if let Some(v) = text(v) {
            e.push(text_el(local, v));
        }
    };
    if let Some(n) = c.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        e.push(body_el(n));
    }
    if !c.categories.is_empty() {
        e.push(categories_el(&c.categories));
    }
    if let Some(id) = crm_id {
        e.push(crm_id_el(id));
    }
    opt_el(&mut e, el::DISPLAY_NAME, &c.display_name);
    opt_el(&mut e, el::GIVEN_NAME, &c.given_name);
    opt_el(&mut e, el::MIDDLE_NAME, &c.middle_name);
    opt_el(&mut e, el::NICKNAME, &c.nickname);
    opt_el(&mut e, el::COMPANY_NAME, &c.company_name);
    if !c.emails.is_empty() {
        e.push(
            t_el(el::EMAIL_ADDRESSES).with_children(c.emails.iter().map(|(k, v)| entry_el(k, v))),
        );
    }
    if !c.addresses.is_empty() {
        e.push(
            t_el(el::PHYSICAL_ADDRESSES)
                .with_children(c.addresses.iter().map(|(k, a)| address_el(k, a))),
        );
    }
    if !c.phones.is_empty() {
        e.push(t_el(el::PHONE_NUMBERS).with_children(c.phones.iter().map(|(k, v)| entry_el(k, v))));
    }
    opt_el(&mut e, el::BIRTHDAY, &c.birthday);
    opt_el(&mut e, el::BUSINESS_HOME_PAGE, &c.business_home_page);
    opt_el(&mut e, el::DEPARTMENT, &c.department);
    opt_el(&mut e, el::GENERATION, &c.generation);
    if !c.im_addresses.is_empty() {
        e.push(
            t_el(el::IM_ADDRESSES)
                .with_children(c.im_addresses.iter().map(|(k, v)| entry_el(k, v))),
        );
    }
    opt_el(&mut e, el::JOB_TITLE, &c.job_title);
    opt_el(&mut e, el::SURNAME, &c.surname);
    e
}

fn set_or_delete(path: Element, value: Option<Element>) -> FieldUpdate {
    match value {
        Some(v) => FieldUpdate::Set {
            path,
            contact: t_el(el::CONTACT).with_child(v),
        },
        None => FieldUpdate::Delete { path },
    }
}

/// The `UpdateItem` changes that make the stored contact hold exactly `c`'s values in every
/// field the mapping manages: `SetItemField` for a value, `DeleteItemField` for an empty one,
/// indexed per key (`EmailAddress1..3`, every phone key, `ImAddress1..3`, and each part of the
/// `Business`/`Home`/`Other` addresses).
pub fn updates(c: &EwsContact) -> Vec<FieldUpdate> {
    let mut out = Vec::new();
    let simple = |uri: &str, local: &'static str, v: &Option<String>| {
        set_or_delete(path(uri), text(v).map(|v| text_el(local, v)))
    };
    out.push(set_or_delete(
        path(field::ITEM_BODY),
        c.notes
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .map(body_el),
    ));
    out.push(set_or_delete(
        path(field::ITEM_CATEGORIES),
        (!c.categories.is_empty()).then(|| categories_el(&c.categories)),
    ));
    out.push(simple(
        field::DISPLAY_NAME,
        el::DISPLAY_NAME,
        &c.display_name,
    ));
    out.push(simple(field::GIVEN_NAME, el::GIVEN_NAME, &c.given_name));
    out.push(simple(field::MIDDLE_NAME, el::MIDDLE_NAME, &c.middle_name));
    out.push(simple(field::NICKNAME, el::NICKNAME, &c.nickname));
    out.push(simple(
        field::COMPANY_NAME,
        el::COMPANY_NAME,
        &c.company_name,
    ));
    let indexed = |uri: &str, dict: &'static str, keys: &[&str], vals: &[(String, String)]| {
        keys.iter()
            .map(|k| {
                let v = vals.iter().find(|(key, _)| key == k);
                set_or_delete(
                    indexed_path(uri, k),
                    v.map(|(k, v)| t_el(dict).with_child(entry_el(k, v))),
                )
            })
            .collect::<Vec<_>>()
    };
    out.extend(indexed(
        field::EMAIL_ADDRESS,
        el::EMAIL_ADDRESSES,
        &EMAIL_KEYS,
        &c.emails,
    ));
    for key in ADDRESS_KEYS {
        let a = c
            .addresses
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        for (local, uri, v) in a.parts() {
            out.push(set_or_delete(
                indexed_path(uri, key),
                text(v).map(|v| {
                    t_el(el::PHYSICAL_ADDRESSES).with_child(
                        t_el(el::ENTRY)
                            .with_attr(attr::KEY, key)
                            .with_child(text_el(local, v)),
                    )
                }),
            ));
        }
    }
    out.extend(indexed(
        field::PHONE_NUMBER,
        el::PHONE_NUMBERS,
        &phone::ALL,
        &c.phones,
    ));
    out.push(simple(field::BIRTHDAY, el::BIRTHDAY, &c.birthday));
    out.push(simple(
        field::BUSINESS_HOME_PAGE,
        el::BUSINESS_HOME_PAGE,
        &c.business_home_page,
    ));
    out.push(simple(field::DEPARTMENT, el::DEPARTMENT, &c.department));
    out.push(simple(field::GENERATION, el::GENERATION, &c.generation));
    out.extend(indexed(
        field::IM_ADDRESS,
        el::IM_ADDRESSES,
        &IM_KEYS,
        &c.im_addresses,
    ));
    out.push(simple(field::JOB_TITLE, el::JOB_TITLE, &c.job_title));
    out.push(simple(field::SURNAME, el::SURNAME, &c.surname));
    out
}

/// Re-adds to `remote` (a card read from EWS) the properties of `base` that EWS could never
/// hold — `to_ews(base).overflow` — so that their absence is never read as a deletion. Entries
/// already on `remote` are not duplicated.
pub fn reattach_overflow(remote: &VCard, base: &VCard) -> VCard {
    crate::providers::reattach_entries(remote, to_ews(base).overflow.into_iter().map(|o| o.entry))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dav::xml;
    use std::path::{Path, PathBuf};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ews")
    }

    fn golden(path: &Path, actual: &str) {
        if std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1") {
            std::fs::write(path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(path)
            .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
        assert_eq!(actual, expected, "golden mismatch: {}", path.display());
    }

    fn files(prefix: &str, suffix: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(prefix) && n.ends_with(suffix) && !n.contains(".expected.")
                })
            })
            .collect();
        v.sort();
        v
    }

    fn contact_fixture(name: &str) -> EwsContact {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        EwsContact::from_element(&xml::parse(&bytes).unwrap()).unwrap()
    }

    fn card(text: &str) -> VCard {
        VCard::parse(text).unwrap()
    }

    /// GetItem lists the contact photo attachment (not the other file); with the bytes
    /// GetAttachment answers, the card carries the same inline PHOTO as a CardDAV card.
    #[test]
    fn golden_ews_contact_with_photo() {
        let c = contact_fixture("photo-contact.xml");
        assert_eq!(
            c.photo,
            Some(PhotoAttachment {
                id: "AAMkPHOTO=ATT1".into(),
                content_type: Some("image/jpeg".into()),
            })
        );
        assert!(c.has_picture);
        let bytes = std::fs::read(fixtures().join("photo.jpg")).unwrap();
        let photo = crate::vcard::photo::inline_entry(
            bytes,
            c.photo.as_ref().unwrap().content_type.as_deref(),
        )
        .unwrap();
        let card = crate::vcard::photo::with_photo(&from_ews(&c).card, Some(photo));
        golden(
            &fixtures().join("photo-contact.expected.vcf"),
            &crate::vcard::write_v4(&card),
        );
        // A contact without attachments has no photo.
        assert_eq!(contact_fixture("contact-minimal.xml").photo, None);
    }

    #[test]
    fn golden_ews_contacts_to_vcard() {
        let files = files("contact-", ".xml");
        assert!(files.len() >= 3, "expected contact fixtures, got {files:?}");
        for path in files {
            let bytes = std::fs::read(&path).unwrap();
            let c = EwsContact::from_element(&xml::parse(&bytes).unwrap()).unwrap();
            let mapped = from_ews(&c);
            let mut out = mapped.card.to_string();
            if let Some(crm) = mapped.crm_id {
                out.push_str(&format!("# crm_id: {crm}\n"));
            }
            golden(&path.with_extension("expected.vcf"), &out);
        }
    }

    #[test]
    fn golden_vcard_to_ews_writes() {
        let files = files("write-", ".vcf");
        assert!(files.len() >= 2, "expected write fixtures, got {files:?}");
        for path in files {
            let c = card(&std::fs::read_to_string(&path).unwrap());
            let mapped = to_ews(&c);
            let mut out = xml::render(&contact_element(&mapped.contact, Some("crm-1")));
            out.push('\n');
            for o in &mapped.overflow {
                let line = VCard {
                    entries: vec![o.entry.clone()],
                }
                .to_string();
                let line = line
                    .lines()
                    .find(|l| !l.starts_with("BEGIN") && !l.starts_with("VERSION"))
                    .unwrap_or_default()
                    .to_string();
                out.push_str(&format!("<!-- overflow {:?}: {line} -->\n", o.reason));
            }
            golden(&path.with_extension("expected.xml"), &out);
        }
    }

    #[test]
    fn round_trip_keeps_every_mapped_field() {
        let c = contact_fixture("contact-full.xml");
        let card = from_ews(&c).card;
        let back = to_ews(&card);
        assert!(back.overflow.is_empty(), "{:?}", back.overflow);
        let again = EwsContact::from_element(&contact_element(&back.contact, None)).unwrap();
        assert_eq!(from_ews(&again).card, card);
        // Every phone key lands back in the key it came from.
        let keys = |c: &EwsContact| c.phones.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&back.contact), keys(&c));
    }

    #[test]
    fn slots_fill_primary_first_and_overflow_is_reported() {
        let c = card(
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nEMAIL:e1@x\r\nEMAIL;PREF=1:p@x\r\nEMAIL:e2@x\r\nEMAIL:e3@x\r\n\
             TEL;TYPE=work:1\r\nTEL;TYPE=work:2\r\nTEL;TYPE=work;PREF=1:0\r\nTEL;TYPE=cell:m1\r\nTEL;TYPE=cell:m2\r\n\
             TEL:o1\r\nTEL;TYPE=fax:f1\r\nROLE:Engineer\r\nEND:VCARD\r\n",
        );
        let out = to_ews(&c);
        let emails: Vec<(&str, &str)> = out
            .contact
            .emails
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            emails,
            [
                ("EmailAddress1", "p@x"),
                ("EmailAddress2", "e1@x"),
                ("EmailAddress3", "e2@x")
            ]
        );
        let phones: Vec<(&str, &str)> = out
            .contact
            .phones
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            phones,
            [
                ("BusinessPhone", "0"),
                ("BusinessPhone2", "1"),
                ("MobilePhone", "m1"),
                ("OtherFax", "f1"),
                ("OtherTelephone", "o1"),
            ]
        );
        let over: Vec<(String, OverflowReason)> = out
            .overflow
            .iter()
            .map(|o| (first_text(&o.entry).unwrap(), o.reason.clone()))
            .collect();
        assert_eq!(
            over,
            [
                (
                    "e3@x".into(),
                    OverflowReason::SlotsFull(el::EMAIL_ADDRESSES)
                ),
                ("2".into(), OverflowReason::SlotsFull(el::PHONE_NUMBERS)),
                ("m2".into(), OverflowReason::SlotsFull(el::PHONE_NUMBERS)),
                ("Engineer".into(), OverflowReason::Unsupported),
            ]
        );
        let merged = reattach_overflow(&from_ews(&out.contact).card, &c);
        assert_eq!(merged.properties(&VCardProperty::Email).count(), 4);
        assert_eq!(reattach_overflow(&merged, &c), merged);
    }

    #[test]
    fn updates_set_present_and_delete_absent_indexed_fields() {
        let c = to_ews(&card(
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A B\r\nN:B;A;;;\r\nEMAIL:a@x\r\nADR;TYPE=home:;;1 Road;Town;;;\r\nEND:VCARD\r\n",
        ))
        .contact;
        let ups = updates(&c);
        let describe = |u: &FieldUpdate| {
            let (kind, p) = match u {
                FieldUpdate::Set { path, .. } => ("set", path),
                FieldUpdate::Delete { path } => ("del", path),
            };
            format!(
                "{kind} {} {}",
                p.attr("FieldURI").unwrap_or_default(),
                p.attr("FieldIndex").unwrap_or_default()
            )
        };
        let d: Vec<String> = ups.iter().map(describe).collect();
        assert!(d.contains(&"set contacts:EmailAddress EmailAddress1".to_string()));
        assert!(d.contains(&"del contacts:EmailAddress EmailAddress2".to_string()));
        assert!(d.contains(&"set contacts:PhysicalAddress:Street Home".to_string()));
        assert!(d.contains(&"del contacts:PhysicalAddress:Street Business".to_string()));
        assert!(d.contains(&"del contacts:PhoneNumber MobilePhone".to_string()));
        assert!(d.contains(&"del contacts:JobTitle ".to_string()));
        assert!(d.contains(&"set contacts:Surname ".to_string()));
        assert_eq!(ups.len(), 2 + 5 + 3 + 15 + phone::ALL.len() + 4 + 3 + 2);
    }

    #[test]
    fn non_contacts_and_odd_values_do_not_panic() {
        let dl =
            xml::parse(format!("<t:DistributionList xmlns:t=\"{NS_TYPES}\"/>").as_bytes()).unwrap();
        assert!(EwsContact::from_element(&dl).is_err());
        let odd = xml::parse(
            format!(
                "<t:Contact xmlns:t=\"{NS_TYPES}\"><t:Birthday>garbage</t:Birthday>\
                 <t:EmailAddresses><t:Entry>nokey@x</t:Entry><t:Entry Key=\"EmailAddress9\">x@x</t:Entry>\
                 <t:Entry Key=\"EmailAddress1\" RoutingType=\"EX\">/o=ExchangeLabs/ou=x</t:Entry></t:EmailAddresses>\
                 <t:PhoneNumbers><t:Entry Key=\"Bogus\">1</t:Entry></t:PhoneNumbers></t:Contact>"
            )
            .as_bytes(),
        )
        .unwrap();
        let c = EwsContact::from_element(&odd).unwrap();
        assert!(c.emails.is_empty() && c.phones.is_empty());
        let card = from_ews(&c).card;
        assert!(card.property(&VCardProperty::Bday).is_none());
    }

    /// The Graph fuzz finding holds here too (shared helpers): a note read as is was written
    /// trimmed, so `Body` with edge whitespace read back changed.
    #[test]
    fn notes_keep_their_whitespace_both_ways() {
        let el = xml::parse(
            format!(
                "<t:Contact xmlns:t=\"{NS_TYPES}\"><t:Body BodyType=\"Text\">  indented\n</t:Body></t:Contact>"
            )
            .as_bytes(),
        )
        .unwrap();
        let c = EwsContact::from_element(&el).unwrap();
        let card = from_ews(&c).card;
        let back = to_ews(&card);
        assert_eq!(back.contact.notes.as_deref(), Some("  indented\n"));
        let again = EwsContact::from_element(&contact_element(&back.contact, None)).unwrap();
        assert_eq!(from_ews(&again).card, card);
        // A five-digit year is no birthday here either (shared `parse_birthday`).
        let c = EwsContact {
            birthday: Some("19020-09-29T00:00:00Z".into()),
            ..Default::default()
        };
        assert!(from_ews(&c).card.property(&VCardProperty::Bday).is_none());
    }
}
