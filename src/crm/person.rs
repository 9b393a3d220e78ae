//! The CRM person, shaped like Pipedrive's person so that a Pipedrive adapter can follow.
//!
//! This is the data model only; storage lives in the repository module and the
//! vCard ↔ person mapping in `mapping`.

use serde::{Deserialize, Serialize};

/// A CRM user id.
pub type UserId = u64;
/// A CRM person id.
pub type PersonId = u64;
/// A role id.
pub type RoleId = u64;

/// One email address or phone number of a person.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabeledValue {
    /// The address or number as entered.
    pub value: String,
    /// `work`, `home`, `mobile`, `other`, or a custom label.
    pub label: String,
    /// The preferred one of its kind.
    pub primary: bool,
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// `work`, `home`, `other`, or a custom label.
    pub label: String,
    /// Post office box.
    pub po_box: String,
    /// Extended address (apartment, suite).
    pub extended: String,
    /// Street address.
    pub street: String,
    /// City.
    pub locality: String,
    /// State or province.
    pub region: String,
    /// Postal code.
    pub postal_code: String,
    /// Country.
    pub country: String,
    /// The preferred address.
    pub primary: bool,
}

/// Who may view and edit a person (the help article's "visible to" setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Silver, Gold: the owner and the person's followers.
    OwnerFollowers,
    /// Platinum: the owner only.
    OwnerOnly,
    /// Platinum: users whose role is the owner's role.
    OwnersRole,
    /// Platinum: users whose role is the owner's role or a role below it.
    OwnersRoleAndBelow,
    /// Every plan: every user.
    EntireCompany,
}

/// A CRM person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The id, assigned by the repository.
    pub id: PersonId,
    /// Full display name.
    pub name: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Email addresses.
    pub emails: Vec<LabeledValue>,
    /// Phone numbers.
    pub phones: Vec<LabeledValue>,
    /// Organization.
    pub org_name: String,
    /// Job title.
    pub job_title: String,
    /// Postal addresses.
    pub addresses: Vec<Address>,
    /// Birthday as ISO 8601 `YYYY-MM-DD`, or `--MM-DD` without a year.
    pub birthday: Option<String>,
    /// Free-text notes.
    pub notes: String,
    /// Web addresses.
    pub urls: Vec<String>,
    /// Labels (vCard CATEGORIES).
    pub labels: Vec<String>,
    /// The owning user.
    pub owner_id: UserId,
    /// Users following this person.
    pub followers: Vec<UserId>,
    /// Who may see and edit the person.
    pub visible_to: Visibility,
    /// Creation time, RFC 3339 UTC.
    pub add_time: String,
    /// Last update time, RFC 3339 UTC.
    pub update_time: String,
    /// Bumped by every write; used for optimistic concurrency and ETags.
    pub version: u64,
}

/// The syncable subset of a person: what a vCard maps to (no ids, ACL or timestamps).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonFields {
    /// Full display name.
    pub name: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Email addresses.
    pub emails: Vec<LabeledValue>,
    /// Phone numbers.
    pub phones: Vec<LabeledValue>,
    /// Organization.
    pub org_name: String,
    /// Job title.
    pub job_title: String,
    /// Postal addresses.
    pub addresses: Vec<Address>,
    /// Birthday, `YYYY-MM-DD` or `--MM-DD`.
    pub birthday: Option<String>,
    /// Free-text notes.
    pub notes: String,
    /// Web addresses.
    pub urls: Vec<String>,
    /// Labels (vCard CATEGORIES).
    pub labels: Vec<String>,
}

impl Person {
    /// The syncable fields.
    pub fn fields(&self) -> PersonFields {
        PersonFields {
            name: self.name.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            emails: self.emails.clone(),
            phones: self.phones.clone(),
            org_name: self.org_name.clone(),
            job_title: self.job_title.clone(),
            addresses: self.addresses.clone(),
            birthday: self.birthday.clone(),
            notes: self.notes.clone(),
            urls: self.urls.clone(),
            labels: self.labels.clone(),
        }
    }

    /// Replaces the syncable fields, leaving id, ACL, timestamps and version alone.
    pub fn set_fields(&mut self, f: PersonFields) {
        let PersonFields {
            name,
            first_name,
            last_name,
            emails,
            phones,
            org_name,
            job_title,
            addresses,
            birthday,
            notes,
            urls,
            labels,
        } = f;
        self.name = name;
        self.first_name = first_name;
        self.last_name = last_name;
        self.emails = emails;
        self.phones = phones;
        self.org_name = org_name;
        self.job_title = job_title;
        self.addresses = addresses;
        self.birthday = birthday;
        self.notes = notes;
        self.urls = urls;
        self.labels = labels;
    }
}
