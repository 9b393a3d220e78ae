//! The field-level three-way merge: given the last agreed fields (`base`), the CRM's fields and
//! the remote's fields, decide every field, and name the conflicts and who won them.
//!
//! Per field (single-valued) or per set element (multi-valued, keyed by identity key):
//!
//! | CRM vs base | remote vs base | result |
//! |---|---|---|
//! | same | same | base |
//! | same | changed | remote's value (added, changed or removed) |
//! | changed | same | CRM's value (added, changed or removed) |
//! | changed | changed, to the same value | that value, no conflict |
//! | changed | changed, differently | **conflict**: the [`Policy`] picks a side |
//!
//! So for a set: an element added on one side is added, removed on one side (and untouched on
//! the other) is removed, changed on both sides differently is a conflict for that element,
//! added on both sides with different content is a conflict, and removed on one side while
//! changed on the other is a conflict too.
//!
//! [`Policy::NewestWins`] compares the card's REV / lastModified with the person's
//! `update_time`; the later one wins. **When they are equal, or either is unknown, the provider
//! wins**: a remote change is only ever seen because it happened since the last sync, so "no
//! REV" cannot mean "older"; and the address book is where the user edits on the go (one-way
//! sync already treats it as the source). The times are whole-record times, not per field.
//!
//! The output is deterministic: fields and elements are visited in key order.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::fields::{FieldMap, FieldValue};

/// How a field changed on both sides is decided (the connection's conflict policy).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The side changed last wins (REV / lastModified vs `update_time`); ties go to the provider.
    #[default]
    NewestWins,
    /// The provider's value wins.
    ProviderWins,
    /// The CRM's value wins.
    CrmWins,
}

/// One side of a sync pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The CRM person.
    Crm,
    /// The provider's card.
    Remote,
}

/// The record times [`Policy::NewestWins`] compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// The person's `update_time`, if known.
    pub crm_update_time: Option<DateTime<Utc>>,
    /// The card's REV (vCard) or lastModified (Google, Graph), if the provider gives one.
    pub remote_rev: Option<DateTime<Utc>>,
}

impl Policy {
    /// Which side wins a conflict under this policy.
    pub fn winner(self, times: Times) -> Side {
        match self {
            Policy::ProviderWins => Side::Remote,
            Policy::CrmWins => Side::Crm,
            Policy::NewestWins => match (times.crm_update_time, times.remote_rev) {
                (Some(crm), Some(remote)) if crm > remote => Side::Crm,
                // Remote newer, equal, or either unknown: the provider wins (module docs).
                _ => Side::Remote,
            },
        }
    }
}

/// A field (or one element of a multi-valued field) changed on both sides differently.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FieldConflict {
    /// The field name.
    pub field: String,
    /// For a multi-valued field, the identity key of the conflicting element.
    pub element: Option<String>,
    /// The last agreed value (`None`: empty / absent).
    pub base: Option<String>,
    /// The CRM's value.
    pub crm: Option<String>,
    /// The remote's value.
    pub remote: Option<String>,
    /// The side whose value was kept.
    pub winner: Side,
}

/// What [`merge`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergeOutcome {
    /// The merged fields.
    pub merged: FieldMap,
    /// Fields where the CRM differs from the base.
    pub crm_changed_fields: BTreeSet<String>,
    /// Fields where the remote differs from the base.
    pub remote_changed_fields: BTreeSet<String>,
    /// Every conflict, in field then element order.
    pub conflicts: Vec<FieldConflict>,
}

/// The three-way merge of `crm` and `remote` against `base` (module docs).
pub fn merge(
    base: &FieldMap,
    crm: &FieldMap,
    remote: &FieldMap,
    policy: Policy,
    times: Times,
) -> MergeOutcome {
    let winner = policy.winner(times);
    let mut out = MergeOutcome {
        crm_changed_fields: base.diff(crm),
        remote_changed_fields: base.diff(remote),
        ..MergeOutcome::default()
    };
    for field in FieldMap::union_of_names(&[base, crm, remote]) {
        let (b, c, r) = (base.get(field), crm.get(field), remote.get(field));
        let all_sets = [b, c, r]
            .iter()
            .all(|v| matches!(v, None | Some(FieldValue::Set(_))));
        if all_sets {
            let merged = merge_set(field, base, crm, remote, winner, &mut out.conflicts);
            out.merged.insert(field, FieldValue::Set(merged));
        } else {
            let (value, conflicted) = three_way(b, c, r, winner);
            if conflicted {
                out.conflicts.push(FieldConflict {
                    field: field.to_owned(),
                    element: None,
                    base: b.map(FieldValue::render),
                    crm: c.map(FieldValue::render),
                    remote: r.map(FieldValue::render),
                    winner,
                });
            }
            out.merged.put(field, value.cloned());
        }
    }
    out
}

/// Merges one multi-valued field element by element.
fn merge_set(
    field: &str,
    base: &FieldMap,
    crm: &FieldMap,
    remote: &FieldMap,
    winner: Side,
    conflicts: &mut Vec<FieldConflict>,
) -> BTreeMap<String, String> {
    let (b, c, r) = (
        base.elements(field),
        crm.elements(field),
        remote.elements(field),
    );
    let keys: BTreeSet<&String> = b.keys().chain(c.keys()).chain(r.keys()).collect();
    let mut merged = BTreeMap::new();
    for key in keys {
        let (eb, ec, er) = (b.get(key), c.get(key), r.get(key));
        let (value, conflicted) = three_way(eb, ec, er, winner);
        if conflicted {
            conflicts.push(FieldConflict {
                field: field.to_owned(),
                element: Some(key.clone()),
                base: eb.cloned(),
                crm: ec.cloned(),
                remote: er.cloned(),
                winner,
            });
        }
        if let Some(v) = value {
            merged.insert(key.clone(), v.clone());
        }
    }
    merged
}

/// The three-way rule for one value; `None` is "absent". Returns the value and whether it was a
/// conflict.
fn three_way<'a, T: PartialEq>(
    base: Option<&'a T>,
    crm: Option<&'a T>,
    remote: Option<&'a T>,
    winner: Side,
) -> (Option<&'a T>, bool) {
    if crm == remote {
        (crm, false)
    } else if crm == base {
        (remote, false)
    } else if remote == base {
        (crm, false)
    } else {
        match winner {
            Side::Crm => (crm, true),
            Side::Remote => (remote, true),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::fields::names::*;
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> Option<DateTime<Utc>> {
        Utc.timestamp_opt(secs, 0).single()
    }

    fn text(pairs: &[(&str, &str)]) -> FieldMap {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn emails(elements: &[(&str, &str)]) -> FieldMap {
        FieldMap::new().with(EMAILS, FieldValue::set(elements.iter().copied()))
    }

    fn m(base: &FieldMap, crm: &FieldMap, remote: &FieldMap, policy: Policy) -> MergeOutcome {
        merge(base, crm, remote, policy, Times::default())
    }

    #[test]
    fn scalar_only_remote_changed_takes_remote() {
        let out = m(
            &text(&[(NAME, "Ada")]),
            &text(&[(NAME, "Ada")]),
            &text(&[(NAME, "Ada L")]),
            Policy::CrmWins,
        );
        assert_eq!(out.merged, text(&[(NAME, "Ada L")]));
        assert!(out.conflicts.is_empty());
        assert_eq!(out.remote_changed_fields, BTreeSet::from([NAME.to_owned()]));
        assert!(out.crm_changed_fields.is_empty());
    }

    #[test]
    fn scalar_only_crm_changed_keeps_crm() {
        let out = m(
            &text(&[(NAME, "Ada")]),
            &text(&[(NAME, "Ada K")]),
            &text(&[(NAME, "Ada")]),
            Policy::ProviderWins,
        );
        assert_eq!(out.merged, text(&[(NAME, "Ada K")]));
        assert!(out.conflicts.is_empty());
    }

    #[test]
    fn scalar_removed_on_one_side_is_removed() {
        let out = m(
            &text(&[(NOTES, "n"), (NAME, "A")]),
            &text(&[(NAME, "A")]),
            &text(&[(NOTES, "n"), (NAME, "A")]),
            Policy::ProviderWins,
        );
        assert_eq!(out.merged, text(&[(NAME, "A")]));
    }

    #[test]
    fn scalar_both_changed_to_the_same_value_is_no_conflict() {
        let out = m(
            &text(&[(ORG_NAME, "A")]),
            &text(&[(ORG_NAME, "B")]),
            &text(&[(ORG_NAME, "B")]),
            Policy::CrmWins,
        );
        assert_eq!(out.merged, text(&[(ORG_NAME, "B")]));
        assert!(out.conflicts.is_empty());
    }

    #[test]
    fn scalar_both_changed_differently_is_a_conflict_resolved_by_each_policy() {
        let base = text(&[(ORG_NAME, "A")]);
        let crm = text(&[(ORG_NAME, "C")]);
        let remote = text(&[(ORG_NAME, "R")]);
        for (policy, times, want, side) in [
            (Policy::CrmWins, Times::default(), "C", Side::Crm),
            (Policy::ProviderWins, Times::default(), "R", Side::Remote),
            (
                Policy::NewestWins,
                Times {
                    crm_update_time: t(20),
                    remote_rev: t(10),
                },
                "C",
                Side::Crm,
            ),
            (
                Policy::NewestWins,
                Times {
                    crm_update_time: t(10),
                    remote_rev: t(20),
                },
                "R",
                Side::Remote,
            ),
        ] {
            let out = merge(&base, &crm, &remote, policy, times);
            assert_eq!(out.merged.text(ORG_NAME), want, "{policy:?}");
            assert_eq!(
                out.conflicts,
                vec![FieldConflict {
                    field: ORG_NAME.to_owned(),
                    element: None,
                    base: Some("A".to_owned()),
                    crm: Some("C".to_owned()),
                    remote: Some("R".to_owned()),
                    winner: side,
                }]
            );
        }
    }

    #[test]
    fn newest_wins_tie_goes_to_the_provider() {
        let times = Times {
            crm_update_time: t(10),
            remote_rev: t(10),
        };
        assert_eq!(Policy::NewestWins.winner(times), Side::Remote);
    }

    #[test]
    fn newest_wins_without_rev_goes_to_the_provider() {
        let times = Times {
            crm_update_time: t(10),
            remote_rev: None,
        };
        assert_eq!(Policy::NewestWins.winner(times), Side::Remote);
        let times = Times {
            crm_update_time: None,
            remote_rev: t(10),
        };
        assert_eq!(Policy::NewestWins.winner(times), Side::Remote);
    }

    #[test]
    fn newest_wins_is_the_default_policy() {
        assert_eq!(Policy::default(), Policy::NewestWins);
    }

    #[test]
    fn set_element_added_on_either_side_is_added() {
        let base = emails(&[("a@x", "a")]);
        let crm = emails(&[("a@x", "a"), ("c@x", "c")]);
        let remote = emails(&[("a@x", "a"), ("r@x", "r")]);
        let out = m(&base, &crm, &remote, Policy::CrmWins);
        assert_eq!(
            out.merged,
            emails(&[("a@x", "a"), ("c@x", "c"), ("r@x", "r")])
        );
        assert!(out.conflicts.is_empty());
    }

    #[test]
    fn set_element_removed_on_one_side_is_removed() {
        let base = emails(&[("a@x", "a"), ("b@x", "b")]);
        let crm = emails(&[("a@x", "a")]);
        let remote = emails(&[("a@x", "a"), ("b@x", "b")]);
        let out = m(&base, &crm, &remote, Policy::ProviderWins);
        assert_eq!(out.merged, emails(&[("a@x", "a")]));
        let out = m(&base, &remote, &crm, Policy::CrmWins);
        assert_eq!(out.merged, emails(&[("a@x", "a")]));
    }

    #[test]
    fn set_last_element_removed_empties_the_field() {
        let base = emails(&[("a@x", "a")]);
        let out = m(&base, &base, &FieldMap::new(), Policy::CrmWins);
        assert_eq!(out.merged, FieldMap::new());
    }

    #[test]
    fn set_element_changed_on_one_side_is_changed() {
        let base = emails(&[("a@x", "home:a")]);
        let remote = emails(&[("a@x", "work:a")]);
        let out = m(&base, &base, &remote, Policy::CrmWins);
        assert_eq!(out.merged, remote);
    }

    #[test]
    fn set_element_changed_on_both_sides_differently_conflicts_for_that_element_only() {
        let base = emails(&[("a@x", "home:a"), ("b@x", "b")]);
        let crm = emails(&[("a@x", "work:a"), ("b@x", "b"), ("c@x", "c")]);
        let remote = emails(&[("a@x", "other:a"), ("b@x", "b")]);
        let out = m(&base, &crm, &remote, Policy::ProviderWins);
        assert_eq!(
            out.merged,
            emails(&[("a@x", "other:a"), ("b@x", "b"), ("c@x", "c")])
        );
        assert_eq!(
            out.conflicts,
            vec![FieldConflict {
                field: EMAILS.to_owned(),
                element: Some("a@x".to_owned()),
                base: Some("home:a".to_owned()),
                crm: Some("work:a".to_owned()),
                remote: Some("other:a".to_owned()),
                winner: Side::Remote,
            }]
        );
    }

    #[test]
    fn set_element_added_on_both_sides_with_different_content_conflicts() {
        let base = FieldMap::new();
        let crm = emails(&[("a@x", "home:a")]);
        let remote = emails(&[("a@x", "work:a")]);
        let out = m(&base, &crm, &remote, Policy::CrmWins);
        assert_eq!(out.merged, crm);
        assert_eq!(out.conflicts.len(), 1);
        assert_eq!(out.conflicts[0].base, None);
    }

    #[test]
    fn set_element_added_on_both_sides_identically_is_no_conflict() {
        let crm = emails(&[("a@x", "home:a")]);
        let out = m(&FieldMap::new(), &crm, &crm, Policy::CrmWins);
        assert_eq!(out.merged, crm);
        assert!(out.conflicts.is_empty());
    }

    #[test]
    fn set_element_removed_on_one_side_and_changed_on_the_other_conflicts() {
        let base = emails(&[("a@x", "home:a")]);
        let crm = FieldMap::new();
        let remote = emails(&[("a@x", "work:a")]);
        let out = m(&base, &crm, &remote, Policy::CrmWins);
        assert_eq!(out.merged, FieldMap::new());
        assert_eq!(out.conflicts[0].crm, None);
        let out = m(&base, &crm, &remote, Policy::ProviderWins);
        assert_eq!(out.merged, remote);
    }

    #[test]
    fn a_field_holding_text_on_one_side_merges_as_a_whole_value() {
        let base = FieldMap::new();
        let crm = text(&[(URLS, "https://a")]);
        let remote = FieldMap::new().with(URLS, FieldValue::set([("https://b", "b")]));
        let out = m(&base, &crm, &remote, Policy::ProviderWins);
        assert_eq!(out.merged, remote);
        assert_eq!(out.conflicts.len(), 1);
        assert_eq!(out.conflicts[0].element, None);
    }

    #[test]
    fn merge_is_deterministic_and_conflicts_come_in_field_order() {
        let base = text(&[(NAME, "a"), (NOTES, "a"), (ORG_NAME, "a")]);
        let crm = text(&[(NAME, "c"), (NOTES, "c"), (ORG_NAME, "c")]);
        let remote = text(&[(NAME, "r"), (NOTES, "r"), (ORG_NAME, "r")]);
        let one = m(&base, &crm, &remote, Policy::NewestWins);
        let two = m(&base, &crm, &remote, Policy::NewestWins);
        assert_eq!(one, two);
        let fields: Vec<_> = one.conflicts.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec![NAME, NOTES, ORG_NAME]);
    }

    #[test]
    fn merge_with_an_empty_base_unions_and_conflicts_on_differences() {
        // The first-sync link case: nothing agreed yet.
        let crm = text(&[(NAME, "Ada"), (ORG_NAME, "ACME")]);
        let remote = text(&[(NAME, "Ada L"), (NOTES, "met at conf")]);
        let out = m(&FieldMap::new(), &crm, &remote, Policy::CrmWins);
        assert_eq!(
            out.merged,
            text(&[(NAME, "Ada"), (ORG_NAME, "ACME"), (NOTES, "met at conf")])
        );
        assert_eq!(out.conflicts.len(), 1);
    }
}
