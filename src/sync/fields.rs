//! The field representation the sync engine compares: [`FieldMap`], an ordered map from a field
//! name to a [`FieldValue`].
//!
//! The engine owns this representation on purpose: it knows nothing of vCard properties or of
//! the CRM's `Person` struct. Each side converts into a `FieldMap` before [`super::reconcile`]
//! and back after; a field the conversion does not produce is simply *empty*.
//!
//! Two kinds of value:
//! - [`FieldValue::Text`] for single-valued fields (names, organization, notes…), compared
//!   whole.
//! - [`FieldValue::Set`] for multi-valued fields (emails, phones, addresses…): a map from an
//!   **identity key** (what makes two elements "the same element": a normalized email, a phone
//!   in E.164, a normalized address text) to the element's **canonical text** (everything the
//!   element carries, label and primary flag included, e.g. compact JSON). The merge works
//!   element by element on the identity key, so a relabelled email is a *changed* element, not
//!   a removal plus an addition.
//!
//! An empty value and a missing field are the same thing: [`FieldMap::insert`] drops empty
//! values, so two maps are equal exactly when they mean the same.

use std::collections::{BTreeMap, BTreeSet};

/// Field names the CRM person mapping produces. Any other name is allowed too (a connection
/// may map more); these are the ones cardbridge ships with.
pub mod names {
    /// Full display name (vCard FN).
    pub const NAME: &str = "name";
    /// Given name (vCard N, given component).
    pub const FIRST_NAME: &str = "first_name";
    /// Family name (vCard N, family component).
    pub const LAST_NAME: &str = "last_name";
    /// Email addresses, a set keyed by normalized address (vCard EMAIL).
    pub const EMAILS: &str = "emails";
    /// Phone numbers, a set keyed by E.164 number (vCard TEL).
    pub const PHONES: &str = "phones";
    /// Organization (vCard ORG).
    pub const ORG_NAME: &str = "org_name";
    /// Job title (vCard TITLE).
    pub const JOB_TITLE: &str = "job_title";
    /// Postal addresses, a set keyed by normalized address text (vCard ADR).
    pub const ADDRESSES: &str = "addresses";
    /// Birthday, ISO 8601 (vCard BDAY).
    pub const BIRTHDAY: &str = "birthday";
    /// Notes (vCard NOTE).
    pub const NOTES: &str = "notes";
    /// Web addresses, a set keyed by the URL (vCard URL).
    pub const URLS: &str = "urls";
    /// Labels, a set keyed by the label (vCard CATEGORIES).
    pub const LABELS: &str = "labels";

    /// Every field the default mapping produces, in a stable order.
    pub const ALL: [&str; 12] = [
        NAME, FIRST_NAME, LAST_NAME, EMAILS, PHONES, ORG_NAME, JOB_TITLE, ADDRESSES, BIRTHDAY,
        NOTES, URLS, LABELS,
    ];

    /// The fields of [`ALL`] that hold a set ([`super::FieldValue::Set`]).
    pub const MULTI_VALUED: [&str; 5] = [EMAILS, PHONES, ADDRESSES, URLS, LABELS];
}

/// The value of one field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldValue {
    /// A single-valued field, compared whole.
    Text(String),
    /// A multi-valued field: identity key → canonical element text.
    Set(BTreeMap<String, String>),
}

impl FieldValue {
    /// True for `Text("")` and an empty set: the value a missing field has.
    pub fn is_empty(&self) -> bool {
        match self {
            FieldValue::Text(t) => t.is_empty(),
            FieldValue::Set(s) => s.is_empty(),
        }
    }

    /// A set from `(identity key, canonical element)` pairs.
    pub fn set<K: Into<String>, V: Into<String>>(
        elements: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        FieldValue::Set(
            elements
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// A one-line rendering for conflict records and logs: the text itself, or the set's
    /// canonical elements joined with `"; "` in key order.
    pub fn render(&self) -> String {
        match self {
            FieldValue::Text(t) => t.clone(),
            FieldValue::Set(s) => s.values().cloned().collect::<Vec<_>>().join("; "),
        }
    }
}

impl From<&str> for FieldValue {
    fn from(value: &str) -> Self {
        FieldValue::Text(value.to_owned())
    }
}

impl From<String> for FieldValue {
    fn from(value: String) -> Self {
        FieldValue::Text(value)
    }
}

/// An ordered map field name → value, where a missing field means an empty one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldMap(BTreeMap<String, FieldValue>);

impl FieldMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `field` to `value`; an empty value removes the field (missing = empty).
    pub fn insert(&mut self, field: impl Into<String>, value: impl Into<FieldValue>) {
        let field = field.into();
        let value = value.into();
        if value.is_empty() {
            self.0.remove(&field);
        } else {
            self.0.insert(field, value);
        }
    }

    /// Builder form of [`FieldMap::insert`].
    pub fn with(mut self, field: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.insert(field, value);
        self
    }

    /// Sets `field` to `value`, or removes it when `value` is `None`.
    pub fn put(&mut self, field: &str, value: Option<FieldValue>) {
        match value {
            Some(v) => self.insert(field, v),
            None => {
                self.0.remove(field);
            }
        }
    }

    /// The value of `field`, `None` when it is empty.
    pub fn get(&self, field: &str) -> Option<&FieldValue> {
        self.0.get(field)
    }

    /// The text of a single-valued field, `""` when it is empty or holds a set.
    pub fn text(&self, field: &str) -> &str {
        match self.0.get(field) {
            Some(FieldValue::Text(t)) => t,
            _ => "",
        }
    }

    /// The elements of a multi-valued field; empty when the field is empty or holds text.
    pub fn elements(&self, field: &str) -> BTreeMap<String, String> {
        match self.0.get(field) {
            Some(FieldValue::Set(s)) => s.clone(),
            _ => BTreeMap::new(),
        }
    }

    /// True when every field is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The non-empty fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The names of the non-empty fields.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The names of the fields non-empty in any of `maps`, sorted and deduplicated.
    pub fn union_of_names<'a>(maps: &[&'a FieldMap]) -> BTreeSet<&'a str> {
        maps.iter().flat_map(|m| m.field_names()).collect()
    }

    /// The names of the fields whose values differ between `self` and `other`.
    pub fn diff(&self, other: &FieldMap) -> BTreeSet<String> {
        Self::union_of_names(&[self, other])
            .into_iter()
            .filter(|f| self.get(f) != other.get(f))
            .map(str::to_owned)
            .collect()
    }
}

impl<K: Into<String>, V: Into<FieldValue>> FromIterator<(K, V)> for FieldMap {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut map = FieldMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::names::*;
    use super::*;

    #[test]
    fn missing_and_empty_are_the_same_value() {
        let a = FieldMap::new()
            .with(NAME, "")
            .with(EMAILS, FieldValue::set::<&str, &str>([]));
        assert_eq!(a, FieldMap::new());
        assert_eq!(a.get(NAME), None);
        assert_eq!(a.text(NAME), "");
        assert!(a.elements(EMAILS).is_empty());
    }

    #[test]
    fn put_none_clears_a_field() {
        let mut a = FieldMap::new().with(NAME, "Ada");
        a.put(NAME, None);
        assert!(a.is_empty());
    }

    #[test]
    fn diff_names_exactly_the_differing_fields() {
        let a = FieldMap::new().with(NAME, "Ada").with(NOTES, "x");
        let b = FieldMap::new().with(NAME, "Ada").with(ORG_NAME, "ACME");
        let d: Vec<_> = a.diff(&b).into_iter().collect();
        assert_eq!(d, vec![NOTES.to_owned(), ORG_NAME.to_owned()]);
    }

    #[test]
    fn render_joins_set_elements_in_key_order() {
        let v = FieldValue::set([("b@x", "work:b@x"), ("a@x", "home:a@x")]);
        assert_eq!(v.render(), "home:a@x; work:b@x");
    }

    #[test]
    fn all_names_are_distinct_and_multi_valued_is_a_subset() {
        let all: BTreeSet<_> = ALL.iter().collect();
        assert_eq!(all.len(), ALL.len());
        assert!(MULTI_VALUED.iter().all(|f| all.contains(f)));
    }
}
