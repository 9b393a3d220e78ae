//! `reconcile`: the pure decision for one sync item. Given what the remote reports, what the
//! CRM holds, and the last agreed state (the *base*), it returns a [`Plan`] of [`Op`]s that
//! `execute` applies. No I/O, no clock, no store: the same input always gives the same plan.
//!
//! The decision is ONE exhaustive `match` over the remote's and the CRM's state *relative to
//! the base* (see [`reconcile`]); every arm names the [`Rule`] it applies, and the rules table
//! lives in the module docs of [`crate::sync`].

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::fields::FieldMap;
use super::merge::{merge, FieldConflict, Policy, Times};

/// A CRM person id (the same integer as `crm::PersonId`; declared here so the core does not
/// depend on the CRM module).
pub type PersonId = u64;

/// Which way a connection syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Provider → CRM only. Never writes to the provider.
    OneWay,
    /// Both ways.
    TwoWay,
}

/// Which way one field may flow (the per-connection field mapping).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FieldDirection {
    /// Both ways (one-way connections still only flow provider → CRM).
    #[default]
    Both,
    /// Provider → CRM only.
    ToCrm,
    /// CRM → provider only (two-way connections only).
    ToProvider,
    /// Not synced.
    Off,
}

impl FieldDirection {
    /// May the provider's value flow into the CRM?
    pub fn to_crm(self) -> bool {
        matches!(self, FieldDirection::Both | FieldDirection::ToCrm)
    }
    /// May the CRM's value flow to the provider (in a two-way connection)?
    pub fn to_provider(self) -> bool {
        matches!(self, FieldDirection::Both | FieldDirection::ToProvider)
    }
}

/// The field directions of a connection: a default and per-field overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldDirections {
    /// The direction of a field without an override.
    pub default: FieldDirection,
    /// Per-field overrides, by field name.
    pub fields: std::collections::BTreeMap<String, FieldDirection>,
}

impl FieldDirections {
    /// Every field both ways.
    pub fn all_both() -> Self {
        Self::default()
    }
    /// Overrides one field.
    pub fn with(mut self, field: &str, direction: FieldDirection) -> Self {
        self.fields.insert(field.to_owned(), direction);
        self
    }
    /// The direction of `field`.
    pub fn get(&self, field: &str) -> FieldDirection {
        self.fields.get(field).copied().unwrap_or(self.default)
    }
}

/// The remote item as the provider reports it this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteItem {
    /// The card's fields, mapped.
    pub fields: FieldMap,
    /// The content fingerprint of the whole card (every property, not only mapped ones).
    pub card_fingerprint: String,
    /// The ETag (or change key) the provider gave.
    pub etag: Option<String>,
    /// REV / lastModified, for [`Policy::NewestWins`].
    pub rev: Option<DateTime<Utc>>,
}

/// What the provider says about the item this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteState {
    /// Not in this run's changes (incremental sync): as it was.
    NotReported,
    /// Created or changed (or listed by a full sync).
    Present(RemoteItem),
    /// Deleted at the provider.
    Deleted,
}

/// The CRM person as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmPerson {
    /// Its id.
    pub person_id: PersonId,
    /// Its fields, mapped.
    pub fields: FieldMap,
    /// Its version (every write bumps it).
    pub version: u64,
    /// Its `update_time`, for [`Policy::NewestWins`].
    pub update_time: Option<DateTime<Utc>>,
    /// Owned by the connection's user and editable by them (`crm` visibility says so). The
    /// engine writes neither to nor from a person that is not.
    pub editable: bool,
}

/// The CRM side of the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmState {
    /// No person is linked (and none was: the base has no person).
    Absent,
    /// The linked person (the base's person), or, without a base person, a person not synced
    /// yet (a CRM-created person, from the CRM's change feed).
    Present(CrmPerson),
    /// The base's person no longer exists.
    Deleted {
        /// Its id.
        person_id: PersonId,
    },
}

/// How the remote item was when last agreed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RemoteMark {
    /// The card fingerprint after our last read or write: a report with the same fingerprint
    /// is our own write echoed back, or no change at all.
    pub fingerprint: String,
    /// The ETag, for `If-Match`.
    pub etag: Option<String>,
}

/// How the person was when last agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PersonMark {
    /// The linked person.
    pub person_id: PersonId,
    /// Its version after our last read or write: the same version is no change.
    pub version: u64,
}

/// Who brought the person into the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// This connection created the person from the card: a remote deletion deletes it.
    Created,
    /// The person existed (link on first sync, or a CRM person pushed to the provider): a
    /// remote deletion only unlinks it.
    Linked,
}

/// The last agreed state of an item.
///
/// Both sides present is a live pair. One side `None` is a **tombstone**: `remote: None` means
/// the card was deleted and the person kept (unlinked; it is never pushed again), `person:
/// None` means the person was deleted or unlinked while the card stays (it is not recreated
/// until the card changes again).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Base {
    /// The agreed fields. Per field this is the value on the side the field flows *from*
    /// (both sides' value for a field that flows both ways; the card's value in one-way sync),
    /// so a later difference on that side is a change.
    pub fields: FieldMap,
    /// The card, unless deleted.
    pub remote: Option<RemoteMark>,
    /// The person, unless deleted or unlinked.
    pub person: Option<PersonMark>,
    /// Who brought the person in.
    pub origin: Origin,
}

/// An existing person that a new card should be merged into instead of creating a duplicate.
/// `execute` finds it: a person of the connection's user (who may therefore edit it) with the
/// same normalized email or E.164 phone, not linked to another item — or the person whose push
/// created this card (its UID is derived from the person id, see [`Op::PushCreate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCandidate {
    /// Its id.
    pub person_id: PersonId,
    /// Its fields.
    pub fields: FieldMap,
    /// Its version.
    pub version: u64,
    /// Its `update_time`.
    pub update_time: Option<DateTime<Utc>>,
}

/// Everything [`reconcile`] needs about one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInput {
    /// The provider's side.
    pub remote: RemoteState,
    /// The CRM's side.
    pub crm: CrmState,
    /// The last agreed state, if any.
    pub base: Option<Base>,
    /// For a card with no person yet: an existing person to link instead of creating one.
    pub link_candidate: Option<LinkCandidate>,
}

/// A value the base will record: known now, produced by this plan's write on that side, or
/// gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Track<T> {
    /// Known at planning time.
    Known(T),
    /// What the write on that side in this plan returns (the new person id and version; the
    /// new ETag and card fingerprint).
    Written,
    /// The side is gone (a tombstone).
    Gone,
}

/// The base a [`Op::SaveBase`] records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewBase {
    /// The agreed fields (see [`Base::fields`]).
    pub fields: FieldMap,
    /// The card.
    pub remote: Track<RemoteMark>,
    /// The person.
    pub person: Track<PersonMark>,
    /// Who brought the person in.
    pub origin: Origin,
}

/// One step of a plan. Field maps are complete; `changed` names the fields to write, and a
/// field in `changed` but missing from `fields` is cleared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// Create a person owned by the connection's user with the connection's visibility.
    /// `execute` commits it in the same store batch as the [`Op::SaveBase`] that follows it:
    /// a crash between them would leave a person the next run cannot recognize.
    CreatePerson {
        /// Its fields.
        fields: FieldMap,
    },
    /// Link an existing person to the card, writing the merged fields into it (nothing is
    /// written when `changed` is empty).
    LinkPerson {
        /// The person.
        person_id: PersonId,
        /// Its version when planned; a different version aborts the item for this run.
        expected_version: u64,
        /// Its complete new fields.
        fields: FieldMap,
        /// The fields to write.
        changed: BTreeSet<String>,
    },
    /// Write merged fields into the linked person.
    UpdatePerson {
        /// The person.
        person_id: PersonId,
        /// Its version when planned; a different version aborts the item for this run.
        expected_version: u64,
        /// Its complete new fields.
        fields: FieldMap,
        /// The fields to write.
        changed: BTreeSet<String>,
    },
    /// Delete the person (only one this connection created).
    DeletePerson {
        /// The person.
        person_id: PersonId,
        /// Its version when planned.
        expected_version: u64,
    },
    /// The person stays in the CRM but is no longer synced with this card (no CRM write;
    /// counted as unlinked). The base that follows records the tombstone.
    UnlinkPerson {
        /// The person.
        person_id: PersonId,
    },
    /// Create the card at the provider. `execute` derives its UID/href deterministically from
    /// the connection and `person_id` and creates it with `If-None-Match: *`, so a push retried
    /// after a crash finds its own card instead of making a second one.
    PushCreate {
        /// The person pushed.
        person_id: PersonId,
        /// The card's fields.
        fields: FieldMap,
    },
    /// Write fields into the card. `execute` merges them into the last remote card, so what
    /// the CRM does not model (photo, IM, X- properties) survives. A 412 re-fetches,
    /// re-reconciles and retries, a bounded number of times.
    PushUpdate {
        /// The card's complete new fields.
        fields: FieldMap,
        /// The fields to write.
        changed: BTreeSet<String>,
        /// `If-Match`.
        if_match: Option<String>,
    },
    /// Delete the card at the provider.
    PushDelete {
        /// `If-Match`.
        if_match: Option<String>,
    },
    /// Record a resolved conflict (visible through the API). Recorded before the writes, so at
    /// least once; `execute` ignores a record identical to the item's last one.
    RecordConflict(FieldConflict),
    /// Record the new base. Always after the writes it describes.
    SaveBase(NewBase),
    /// Drop everything about the item.
    ForgetItem,
    /// Nothing to do.
    Nothing,
}

/// The rule a plan applies: one per arm of the reconcile match. Stats and logs use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Nothing is known on either side.
    Idle,
    /// Neither side changed since the base (our own writes included).
    InSync,
    /// A new card was merged into an existing person of the same owner (no duplicate).
    RemoteCreatedLinked,
    /// A new card created a person.
    RemoteCreatedNew,
    /// The card changed, the person did not: remote fields flow to the CRM.
    RemoteChanged,
    /// Both changed: three-way merge, conflicts resolved by the policy.
    BothChanged,
    /// Two-way: the person changed; CRM fields are pushed.
    CrmChangedPushed,
    /// One-way: the person changed; the edit stays in the CRM.
    CrmChangedStaysLocal,
    /// Two-way: a person not synced yet is pushed as a new card.
    CrmCreatedPushed,
    /// One-way: a person not synced yet stays in the CRM.
    CrmCreatedStaysLocal,
    /// The card was deleted; this connection created the person and it is unchanged: deleted.
    RemoteDeletedPersonDeleted,
    /// The card was deleted; the person was only linked (or is not editable): unlinked, kept.
    RemoteDeletedPersonUnlinked,
    /// The card was deleted but the person changed since: kept (an edit beats a delete) and
    /// unlinked, and the card is not recreated.
    RemoteDeletedPersonEditedKept,
    /// Two-way: the person was deleted: the card is deleted.
    CrmDeletedRemoteDeleted,
    /// One-way: the person was deleted: unlinked; the card is remembered so it does not
    /// recreate the person until it changes again.
    CrmDeletedUnlinked,
    /// The person was deleted while the card changed: the card keeps its edit (not deleted),
    /// the person is not recreated (tombstone with the new card state).
    CrmDeletedRemoteEditedKept,
    /// Both sides deleted.
    BothDeleted,
    /// A card deleted earlier: the kept person's changes are not pushed back.
    UnlinkedPersonIgnored,
    /// A person deleted or unlinked earlier: the unchanged card does not recreate it.
    UnlinkedCardIgnored,
    /// A card whose person was deleted earlier changed again: the person is recreated (or
    /// linked to a matching one).
    UnlinkedCardChangedRecreated,
    /// A card deleted earlier reappeared with the same identity: the kept person is re-linked.
    RemoteReappearedRelinked,
    /// A tombstone's remaining side is gone too: forgotten.
    TombstoneCleared,
    /// The person is not the user's to edit: nothing is written either way.
    NotEditable,
    /// The input contradicts itself (the CRM person is not the base's person): nothing done.
    InconsistentInput,
}

impl Rule {
    /// Every rule, in declaration order.
    pub const ALL: [Rule; 24] = [
        Rule::Idle,
        Rule::InSync,
        Rule::RemoteCreatedLinked,
        Rule::RemoteCreatedNew,
        Rule::RemoteChanged,
        Rule::BothChanged,
        Rule::CrmChangedPushed,
        Rule::CrmChangedStaysLocal,
        Rule::CrmCreatedPushed,
        Rule::CrmCreatedStaysLocal,
        Rule::RemoteDeletedPersonDeleted,
        Rule::RemoteDeletedPersonUnlinked,
        Rule::RemoteDeletedPersonEditedKept,
        Rule::CrmDeletedRemoteDeleted,
        Rule::CrmDeletedUnlinked,
        Rule::CrmDeletedRemoteEditedKept,
        Rule::BothDeleted,
        Rule::UnlinkedPersonIgnored,
        Rule::UnlinkedCardIgnored,
        Rule::UnlinkedCardChangedRecreated,
        Rule::RemoteReappearedRelinked,
        Rule::TombstoneCleared,
        Rule::NotEditable,
        Rule::InconsistentInput,
    ];
}

/// What to do for one item, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The rule applied.
    pub rule: Rule,
    /// The steps, in order: conflict records, the CRM write, the provider write, then the base
    /// (see the crate-level crash notes in [`crate::sync`]).
    pub ops: Vec<Op>,
}

impl Plan {
    fn new(rule: Rule, ops: Vec<Op>) -> Self {
        Plan { rule, ops }
    }
    fn nothing(rule: Rule) -> Self {
        Plan::new(rule, vec![Op::Nothing])
    }
    /// True when the plan writes to the provider.
    pub fn writes_remote(&self) -> bool {
        self.ops.iter().any(|op| {
            matches!(
                op,
                Op::PushCreate { .. } | Op::PushUpdate { .. } | Op::PushDelete { .. }
            )
        })
    }
    /// True when the plan does nothing at all.
    pub fn is_nothing(&self) -> bool {
        self.ops.iter().all(|op| matches!(op, Op::Nothing))
    }
    /// The conflicts the plan records.
    pub fn conflicts(&self) -> impl Iterator<Item = &FieldConflict> {
        self.ops.iter().filter_map(|op| match op {
            Op::RecordConflict(c) => Some(c),
            _ => None,
        })
    }
}

/// The remote side relative to the base.
enum RemoteView<'a> {
    /// No card known: none in the base, none reported.
    Absent,
    /// A card the base does not know.
    New(&'a RemoteItem),
    /// The base's card, unchanged (not reported, or reported with the base's fingerprint). The
    /// mark carries the *current* ETag when the card was reported (content unchanged does not
    /// mean the ETag is).
    Quiet(RemoteMark),
    /// The base's card, changed.
    Changed(&'a RemoteItem),
    /// The base's card was deleted.
    Gone,
}

/// The CRM side relative to the base.
enum CrmView<'a> {
    /// No person known.
    Absent,
    /// A person the base does not know.
    New(&'a CrmPerson),
    /// The base's person at the base's version.
    Unchanged(&'a CrmPerson),
    /// The base's person, changed.
    Changed(&'a CrmPerson),
    /// The base's person was deleted.
    Gone(PersonId),
}

/// Plans one item: one exhaustive match over (remote, CRM) relative to the base. The base's
/// shape is folded into the two views (a `Quiet`/`Changed`/`Gone` remote means the base knows
/// the card; an `Unchanged`/`Changed`/`Gone` CRM means it knows the person), so every
/// combination of the three is one arm and none is impossible-but-unhandled.
pub fn reconcile(
    input: &ItemInput,
    direction: Direction,
    policy: Policy,
    mapping: &FieldDirections,
) -> Plan {
    let base = input.base.as_ref();
    let remote = match (&input.remote, base.and_then(|b| b.remote.as_ref())) {
        (RemoteState::Present(r), Some(m)) if r.card_fingerprint == m.fingerprint => {
            RemoteView::Quiet(mark_of(r))
        }
        (RemoteState::Present(r), Some(_)) => RemoteView::Changed(r),
        (RemoteState::Present(r), None) => RemoteView::New(r),
        (RemoteState::NotReported, Some(m)) => RemoteView::Quiet(m.clone()),
        (RemoteState::NotReported | RemoteState::Deleted, None) => RemoteView::Absent,
        (RemoteState::Deleted, Some(_)) => RemoteView::Gone,
    };
    let crm = match (&input.crm, base.and_then(|b| b.person.as_ref())) {
        (CrmState::Present(c), Some(pm)) if c.person_id != pm.person_id => {
            return Plan::nothing(Rule::InconsistentInput);
        }
        (CrmState::Present(c), Some(pm)) if c.version == pm.version => CrmView::Unchanged(c),
        (CrmState::Present(c), Some(_)) => CrmView::Changed(c),
        (CrmState::Present(c), None) => CrmView::New(c),
        (CrmState::Absent | CrmState::Deleted { .. }, Some(pm)) => CrmView::Gone(pm.person_id),
        (CrmState::Absent | CrmState::Deleted { .. }, None) => CrmView::Absent,
    };
    let cx = Cx {
        direction,
        policy,
        mapping,
    };
    let empty = FieldMap::new();
    // `base` is Some in every arm whose view says "the base knows"; the fallbacks are unused.
    let base_fields = base.map_or(&empty, |b| &b.fields);
    let origin = base.map_or(Origin::Linked, |b| b.origin);

    match (remote, crm) {
        (RemoteView::Absent, CrmView::Absent) => Plan::nothing(Rule::Idle),
        (RemoteView::Absent, CrmView::New(c)) => match direction {
            _ if !c.editable => Plan::nothing(Rule::NotEditable),
            Direction::OneWay => Plan::nothing(Rule::CrmCreatedStaysLocal),
            Direction::TwoWay => Plan::new(
                Rule::CrmCreatedPushed,
                cx.merge_ops(
                    &empty,
                    CrmSide::Existing(c),
                    RemoteSide::New,
                    Origin::Linked,
                ),
            ),
        },
        (RemoteView::Absent, CrmView::Unchanged(_) | CrmView::Changed(_)) => {
            Plan::nothing(Rule::UnlinkedPersonIgnored)
        }
        (RemoteView::Absent, CrmView::Gone(_)) => {
            Plan::new(Rule::TombstoneCleared, vec![Op::ForgetItem])
        }

        (RemoteView::New(r), CrmView::Absent | CrmView::Gone(_)) => cx.remote_created(
            r,
            input.link_candidate.as_ref(),
            Rule::RemoteCreatedLinked,
            Rule::RemoteCreatedNew,
        ),
        (RemoteView::New(r), CrmView::New(c)) => {
            if c.editable {
                cx.link(r, &candidate_of(c), Rule::RemoteCreatedLinked)
            } else {
                Plan::nothing(Rule::NotEditable)
            }
        }
        (RemoteView::New(r), CrmView::Unchanged(c) | CrmView::Changed(c)) => {
            if c.editable {
                Plan::new(
                    Rule::RemoteReappearedRelinked,
                    cx.merge_ops(
                        base_fields,
                        CrmSide::Existing(c),
                        RemoteSide::Existing(r),
                        origin,
                    ),
                )
            } else {
                Plan::nothing(Rule::NotEditable)
            }
        }

        (RemoteView::Quiet(_), CrmView::Absent | CrmView::New(_)) => {
            Plan::nothing(Rule::UnlinkedCardIgnored)
        }
        (RemoteView::Quiet(_), CrmView::Unchanged(_)) => Plan::nothing(Rule::InSync),
        (RemoteView::Quiet(m), CrmView::Changed(c)) => {
            if !c.editable {
                return Plan::nothing(Rule::NotEditable);
            }
            let rule = match direction {
                Direction::OneWay => Rule::CrmChangedStaysLocal,
                Direction::TwoWay => Rule::CrmChangedPushed,
            };
            let quiet = RemoteItem {
                fields: base_fields.clone(),
                card_fingerprint: m.fingerprint.clone(),
                etag: m.etag.clone(),
                rev: None,
            };
            Plan::new(
                rule,
                cx.merge_ops(
                    base_fields,
                    CrmSide::Existing(c),
                    RemoteSide::Existing(&quiet),
                    origin,
                ),
            )
        }
        (RemoteView::Quiet(m), CrmView::Gone(person_id)) => match direction {
            Direction::TwoWay => Plan::new(
                Rule::CrmDeletedRemoteDeleted,
                vec![Op::PushDelete { if_match: m.etag }, Op::ForgetItem],
            ),
            Direction::OneWay => Plan::new(
                Rule::CrmDeletedUnlinked,
                vec![
                    Op::UnlinkPerson { person_id },
                    Op::SaveBase(NewBase {
                        fields: base_fields.clone(),
                        remote: Track::Known(m),
                        person: Track::Gone,
                        origin,
                    }),
                ],
            ),
        },

        (RemoteView::Changed(r), CrmView::Absent) => cx.remote_created(
            r,
            input.link_candidate.as_ref(),
            Rule::UnlinkedCardChangedRecreated,
            Rule::UnlinkedCardChangedRecreated,
        ),
        (RemoteView::Changed(r), CrmView::New(c)) => {
            if c.editable {
                cx.link(r, &candidate_of(c), Rule::UnlinkedCardChangedRecreated)
            } else {
                Plan::nothing(Rule::NotEditable)
            }
        }
        (RemoteView::Changed(_), CrmView::Unchanged(c) | CrmView::Changed(c)) if !c.editable => {
            Plan::nothing(Rule::NotEditable)
        }
        (RemoteView::Changed(r), CrmView::Unchanged(c)) => Plan::new(
            Rule::RemoteChanged,
            cx.merge_ops(
                base_fields,
                CrmSide::Existing(c),
                RemoteSide::Existing(r),
                origin,
            ),
        ),
        (RemoteView::Changed(r), CrmView::Changed(c)) => Plan::new(
            Rule::BothChanged,
            cx.merge_ops(
                base_fields,
                CrmSide::Existing(c),
                RemoteSide::Existing(r),
                origin,
            ),
        ),
        (RemoteView::Changed(r), CrmView::Gone(person_id)) => Plan::new(
            Rule::CrmDeletedRemoteEditedKept,
            vec![
                Op::UnlinkPerson { person_id },
                Op::SaveBase(NewBase {
                    fields: r.fields.clone(),
                    remote: Track::Known(mark_of(r)),
                    person: Track::Gone,
                    origin,
                }),
            ],
        ),

        (RemoteView::Gone, CrmView::Absent | CrmView::New(_)) => {
            Plan::new(Rule::TombstoneCleared, vec![Op::ForgetItem])
        }
        (RemoteView::Gone, CrmView::Unchanged(c)) => {
            if origin == Origin::Created && c.editable {
                Plan::new(
                    Rule::RemoteDeletedPersonDeleted,
                    vec![
                        Op::DeletePerson {
                            person_id: c.person_id,
                            expected_version: c.version,
                        },
                        Op::ForgetItem,
                    ],
                )
            } else {
                Plan::new(
                    Rule::RemoteDeletedPersonUnlinked,
                    unlink_kept(base_fields, c, origin),
                )
            }
        }
        (RemoteView::Gone, CrmView::Changed(c)) => Plan::new(
            Rule::RemoteDeletedPersonEditedKept,
            unlink_kept(base_fields, c, origin),
        ),
        (RemoteView::Gone, CrmView::Gone(_)) => Plan::new(Rule::BothDeleted, vec![Op::ForgetItem]),
    }
}

/// The card is gone; the person stays, unlinked, remembered so it is not pushed back.
fn unlink_kept(base_fields: &FieldMap, c: &CrmPerson, origin: Origin) -> Vec<Op> {
    vec![
        Op::UnlinkPerson {
            person_id: c.person_id,
        },
        Op::SaveBase(NewBase {
            fields: base_fields.clone(),
            remote: Track::Gone,
            person: Track::Known(PersonMark {
                person_id: c.person_id,
                version: c.version,
            }),
            origin,
        }),
    ]
}

fn mark_of(r: &RemoteItem) -> RemoteMark {
    RemoteMark {
        fingerprint: r.card_fingerprint.clone(),
        etag: r.etag.clone(),
    }
}

fn candidate_of(c: &CrmPerson) -> LinkCandidate {
    LinkCandidate {
        person_id: c.person_id,
        fields: c.fields.clone(),
        version: c.version,
        update_time: c.update_time,
    }
}

/// The CRM side of a merge.
enum CrmSide<'a> {
    /// No person yet: the plan creates one.
    New,
    /// An existing person, linked now (first link).
    Link(&'a LinkCandidate),
    /// The linked person.
    Existing(&'a CrmPerson),
}

/// The remote side of a merge.
enum RemoteSide<'a> {
    /// No card yet: the plan pushes one.
    New,
    /// The card (or, when not reported, what the base says it is).
    Existing(&'a RemoteItem),
}

/// The planning context shared by the arms.
struct Cx<'a> {
    direction: Direction,
    policy: Policy,
    mapping: &'a FieldDirections,
}

impl Cx<'_> {
    /// A card with no person: link to the candidate, or create a person.
    fn remote_created(
        &self,
        r: &RemoteItem,
        candidate: Option<&LinkCandidate>,
        linked: Rule,
        created: Rule,
    ) -> Plan {
        match candidate {
            Some(candidate) => self.link(r, candidate, linked),
            None => Plan::new(
                created,
                self.merge_ops(
                    &FieldMap::new(),
                    CrmSide::New,
                    RemoteSide::Existing(r),
                    Origin::Created,
                ),
            ),
        }
    }

    /// Merges a card into an existing person, nothing agreed yet (empty base).
    fn link(&self, r: &RemoteItem, candidate: &LinkCandidate, rule: Rule) -> Plan {
        Plan::new(
            rule,
            self.merge_ops(
                &FieldMap::new(),
                CrmSide::Link(candidate),
                RemoteSide::Existing(r),
                Origin::Linked,
            ),
        )
    }

    /// The three-way merge turned into ops, honoring the field directions and the direction:
    /// per field, the CRM gets the merged value if the field flows to the CRM, the card gets it
    /// if the field flows to the provider in a two-way connection, and the base records the
    /// value of the side the field flows from.
    fn merge_ops(
        &self,
        base: &FieldMap,
        crm: CrmSide<'_>,
        remote: RemoteSide<'_>,
        origin: Origin,
    ) -> Vec<Op> {
        let empty = FieldMap::new();
        let (crm_fields, crm_time) = match &crm {
            CrmSide::New => (&empty, None),
            CrmSide::Link(c) => (&c.fields, c.update_time),
            CrmSide::Existing(c) => (&c.fields, c.update_time),
        };
        let (remote_fields, remote_rev) = match &remote {
            RemoteSide::New => (&empty, None),
            RemoteSide::Existing(r) => (&r.fields, r.rev),
        };
        let times = Times {
            crm_update_time: crm_time,
            remote_rev,
        };
        let out = merge(base, crm_fields, remote_fields, self.policy, times);
        let push_allowed = self.direction == Direction::TwoWay;

        let mut crm_target = FieldMap::new();
        let mut remote_target = FieldMap::new();
        let mut new_base = FieldMap::new();
        let mut flowing = BTreeSet::new();
        let names = FieldMap::union_of_names(&[base, crm_fields, remote_fields, &out.merged]);
        for field in names {
            let dir = self.mapping.get(field);
            let to_crm = dir.to_crm();
            let to_provider = push_allowed && dir.to_provider();
            let merged = out.merged.get(field).cloned();
            let crm_value = crm_fields.get(field).cloned();
            let remote_value = remote_fields.get(field).cloned();
            let crm_new = if to_crm { merged.clone() } else { crm_value };
            let remote_new = if to_provider {
                merged.clone()
            } else {
                remote_value
            };
            let base_new = match (to_crm, to_provider) {
                (true, true) => merged,
                (false, true) => crm_new.clone(),
                (true, false) | (false, false) => remote_new.clone(),
            };
            if to_crm || to_provider {
                flowing.insert(field.to_owned());
            }
            crm_target.put(field, crm_new);
            remote_target.put(field, remote_new);
            new_base.put(field, base_new);
        }

        let mut ops: Vec<Op> = out
            .conflicts
            .into_iter()
            .filter(|c| flowing.contains(&c.field))
            .map(Op::RecordConflict)
            .collect();

        let crm_changed = crm_fields.diff(&crm_target);
        let person = match crm {
            CrmSide::New => {
                ops.push(Op::CreatePerson { fields: crm_target });
                Track::Written
            }
            CrmSide::Link(c) => {
                let written = !crm_changed.is_empty();
                ops.push(Op::LinkPerson {
                    person_id: c.person_id,
                    expected_version: c.version,
                    fields: crm_target,
                    changed: crm_changed,
                });
                if written {
                    Track::Written
                } else {
                    Track::Known(PersonMark {
                        person_id: c.person_id,
                        version: c.version,
                    })
                }
            }
            CrmSide::Existing(c) if crm_changed.is_empty() => Track::Known(PersonMark {
                person_id: c.person_id,
                version: c.version,
            }),
            CrmSide::Existing(c) => {
                ops.push(Op::UpdatePerson {
                    person_id: c.person_id,
                    expected_version: c.version,
                    fields: crm_target,
                    changed: crm_changed,
                });
                Track::Written
            }
        };

        let remote_changed = remote_fields.diff(&remote_target);
        let card = match remote {
            RemoteSide::New => match &person {
                Track::Known(pm) => {
                    ops.push(Op::PushCreate {
                        person_id: pm.person_id,
                        fields: remote_target,
                    });
                    Track::Written
                }
                // A person and a card both new cannot happen (one side is always given).
                Track::Written | Track::Gone => Track::Gone,
            },
            RemoteSide::Existing(r) if remote_changed.is_empty() => Track::Known(mark_of(r)),
            RemoteSide::Existing(r) => {
                ops.push(Op::PushUpdate {
                    fields: remote_target,
                    changed: remote_changed,
                    if_match: r.etag.clone(),
                });
                Track::Written
            }
        };

        ops.push(Op::SaveBase(NewBase {
            fields: new_base,
            remote: card,
            person,
            origin,
        }));
        ops
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The rules table, row by row, for both directions and every policy. `rows()` is the
    //! table itself; `fixtures/sync/reconcile_table.expected` is its rendering (rewritten only
    //! with `UPDATE_EXPECT=1`).

    use super::super::fields::names::*;
    use super::super::merge::Side;
    use super::*;
    use chrono::TimeZone;

    const DIRECTIONS: [Direction; 2] = [Direction::OneWay, Direction::TwoWay];
    const POLICIES: [Policy; 3] = [Policy::NewestWins, Policy::ProviderWins, Policy::CrmWins];

    fn t(secs: i64) -> Option<DateTime<Utc>> {
        Utc.timestamp_opt(secs, 0).single()
    }

    fn f(pairs: &[(&str, &str)]) -> FieldMap {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn card(fields: FieldMap, fp: &str) -> RemoteItem {
        RemoteItem {
            fields,
            card_fingerprint: fp.to_owned(),
            etag: Some(format!("etag-{fp}")),
            rev: t(100),
        }
    }

    fn person(id: PersonId, fields: FieldMap, version: u64) -> CrmPerson {
        CrmPerson {
            person_id: id,
            fields,
            version,
            update_time: t(50),
            editable: true,
        }
    }

    fn base(fields: FieldMap, fp: &str, id: PersonId, version: u64, origin: Origin) -> Base {
        Base {
            fields,
            remote: Some(RemoteMark {
                fingerprint: fp.to_owned(),
                etag: Some(format!("etag-{fp}")),
            }),
            person: Some(PersonMark {
                person_id: id,
                version,
            }),
            origin,
        }
    }

    fn input(remote: RemoteState, crm: CrmState, base: Option<Base>) -> ItemInput {
        ItemInput {
            remote,
            crm,
            base,
            link_candidate: None,
        }
    }

    fn plan(i: &ItemInput, d: Direction, p: Policy) -> Plan {
        reconcile(i, d, p, &FieldDirections::all_both())
    }

    fn agreed() -> FieldMap {
        f(&[(NAME, "Ada"), (ORG_NAME, "ACME")])
    }

    fn linked_base(origin: Origin) -> Base {
        base(agreed(), "fp1", 7, 3, origin)
    }

    fn save_base(p: &Plan) -> &NewBase {
        p.ops
            .iter()
            .find_map(|op| match op {
                Op::SaveBase(b) => Some(b),
                _ => None,
            })
            .unwrap()
    }

    /// Every row of the rules table: a name and an input. Each rule appears at least once.
    fn rows() -> Vec<(&'static str, ItemInput)> {
        let b = || Some(linked_base(Origin::Created));
        let bl = || Some(linked_base(Origin::Linked));
        let same = || CrmState::Present(person(7, agreed(), 3));
        let edited = || CrmState::Present(person(7, f(&[(NAME, "Ada"), (ORG_NAME, "Crm Inc")]), 4));
        let changed_card = || card(f(&[(NAME, "Ada L"), (ORG_NAME, "ACME")]), "fp2");
        let new_person = || CrmState::Present(person(9, f(&[(NAME, "Bo"), (EMAILS, "x")]), 1));
        let person_kept = || {
            Some(Base {
                remote: None,
                ..linked_base(Origin::Linked)
            })
        };
        let card_kept = || {
            Some(Base {
                person: None,
                ..linked_base(Origin::Created)
            })
        };
        let mut locked = person(7, f(&[(NAME, "Ada"), (ORG_NAME, "Crm Inc")]), 4);
        locked.editable = false;
        let mut candidate_input = input(
            RemoteState::Present(card(f(&[(NAME, "Ada L"), (NOTES, "met")]), "fpN")),
            CrmState::Absent,
            None,
        );
        candidate_input.link_candidate = Some(LinkCandidate {
            person_id: 5,
            fields: f(&[(NAME, "Ada"), (ORG_NAME, "ACME")]),
            version: 2,
            update_time: t(50),
        });
        vec![
            (
                "idle",
                input(RemoteState::NotReported, CrmState::Absent, None),
            ),
            (
                "in sync, not reported",
                input(RemoteState::NotReported, same(), b()),
            ),
            (
                "in sync, our own write echoed",
                input(RemoteState::Present(card(agreed(), "fp1")), same(), b()),
            ),
            ("remote created, candidate", candidate_input),
            (
                "remote created, no candidate",
                input(
                    RemoteState::Present(card(f(&[(NAME, "Cy")]), "fpN")),
                    CrmState::Absent,
                    None,
                ),
            ),
            (
                "remote created, paired person",
                input(
                    RemoteState::Present(card(f(&[(NAME, "Bo L")]), "fpN")),
                    new_person(),
                    None,
                ),
            ),
            (
                "remote changed",
                input(RemoteState::Present(changed_card()), same(), b()),
            ),
            (
                "both changed",
                input(RemoteState::Present(changed_card()), edited(), b()),
            ),
            (
                "both changed, same field",
                input(
                    RemoteState::Present(card(f(&[(NAME, "Ada"), (ORG_NAME, "Card Co")]), "fp2")),
                    edited(),
                    b(),
                ),
            ),
            (
                "crm changed",
                input(RemoteState::NotReported, edited(), b()),
            ),
            (
                "crm created",
                input(RemoteState::NotReported, new_person(), None),
            ),
            (
                "remote deleted, created",
                input(RemoteState::Deleted, same(), b()),
            ),
            (
                "remote deleted, linked",
                input(RemoteState::Deleted, same(), bl()),
            ),
            (
                "remote deleted, person edited",
                input(RemoteState::Deleted, edited(), b()),
            ),
            (
                "crm deleted",
                input(
                    RemoteState::NotReported,
                    CrmState::Deleted { person_id: 7 },
                    b(),
                ),
            ),
            (
                "crm deleted, card edited",
                input(
                    RemoteState::Present(changed_card()),
                    CrmState::Deleted { person_id: 7 },
                    b(),
                ),
            ),
            (
                "both deleted",
                input(
                    RemoteState::Deleted,
                    CrmState::Deleted { person_id: 7 },
                    b(),
                ),
            ),
            (
                "unlinked person edited",
                input(RemoteState::NotReported, edited(), person_kept()),
            ),
            (
                "unlinked card unchanged",
                input(
                    RemoteState::Present(card(agreed(), "fp1")),
                    CrmState::Absent,
                    card_kept(),
                ),
            ),
            (
                "unlinked card changed",
                input(
                    RemoteState::Present(changed_card()),
                    CrmState::Absent,
                    card_kept(),
                ),
            ),
            (
                "remote reappeared",
                input(
                    RemoteState::Present(changed_card()),
                    edited(),
                    person_kept(),
                ),
            ),
            (
                "tombstone, card deleted",
                input(RemoteState::Deleted, CrmState::Absent, card_kept()),
            ),
            (
                "tombstone, person deleted",
                input(
                    RemoteState::NotReported,
                    CrmState::Deleted { person_id: 7 },
                    person_kept(),
                ),
            ),
            (
                "not editable",
                input(
                    RemoteState::Present(changed_card()),
                    CrmState::Present(locked),
                    b(),
                ),
            ),
            (
                "inconsistent",
                input(
                    RemoteState::NotReported,
                    CrmState::Present(person(8, agreed(), 1)),
                    b(),
                ),
            ),
        ]
    }

    fn render(ops: &[Op]) -> String {
        ops.iter()
            .map(|op| format!("    {op:?}\n"))
            .collect::<String>()
    }

    #[test]
    fn every_rule_has_a_row_in_the_table() {
        let mut seen = BTreeSet::new();
        for (_, i) in rows() {
            for d in DIRECTIONS {
                for p in POLICIES {
                    seen.insert(plan(&i, d, p).rule);
                }
            }
        }
        let missing: Vec<_> = Rule::ALL.iter().filter(|r| !seen.contains(r)).collect();
        assert!(missing.is_empty(), "rules without a row: {missing:?}");
    }

    #[test]
    fn the_rules_table_matches_its_golden_rendering() {
        let mut text = String::new();
        for (name, i) in rows() {
            for d in DIRECTIONS {
                for p in POLICIES {
                    let pl = plan(&i, d, p);
                    text.push_str(&format!("## {name} / {d:?} / {p:?} => {:?}\n", pl.rule));
                    text.push_str(&render(&pl.ops));
                }
            }
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/sync/reconcile_table.expected");
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_EXPECT=1)", path.display()));
        assert!(
            expected == text,
            "reconcile table changed; review and rerun with UPDATE_EXPECT=1"
        );
    }

    #[test]
    fn one_way_never_writes_to_the_provider() {
        for (name, i) in rows() {
            for p in POLICIES {
                assert!(!plan(&i, Direction::OneWay, p).writes_remote(), "{name}");
            }
        }
    }

    #[test]
    fn every_plan_saves_or_forgets_the_base_last_or_does_nothing() {
        for (name, i) in rows() {
            for d in DIRECTIONS {
                for p in POLICIES {
                    let pl = plan(&i, d, p);
                    let last = pl.ops.last().unwrap();
                    assert!(
                        matches!(last, Op::SaveBase(_) | Op::ForgetItem) || pl.is_nothing(),
                        "{name}: {:?}",
                        pl.ops
                    );
                    let base_ops = pl
                        .ops
                        .iter()
                        .filter(|o| matches!(o, Op::SaveBase(_) | Op::ForgetItem))
                        .count();
                    assert!(base_ops <= 1, "{name}");
                }
            }
        }
    }

    #[test]
    fn idle() {
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(
                    &input(RemoteState::NotReported, CrmState::Absent, None),
                    d,
                    p,
                );
                assert_eq!(pl, Plan::nothing(Rule::Idle));
                let pl = plan(&input(RemoteState::Deleted, CrmState::Absent, None), d, p);
                assert_eq!(pl.rule, Rule::Idle);
            }
        }
    }

    #[test]
    fn in_sync_when_neither_side_changed_including_our_own_echoed_write() {
        for d in DIRECTIONS {
            for p in POLICIES {
                for remote in [
                    RemoteState::NotReported,
                    RemoteState::Present(card(agreed(), "fp1")),
                ] {
                    let same = CrmState::Present(person(7, agreed(), 3));
                    let pl = plan(
                        &input(remote, same, Some(linked_base(Origin::Created))),
                        d,
                        p,
                    );
                    assert_eq!(pl, Plan::nothing(Rule::InSync));
                }
                // An echoed card whose mapped fields even look different is still no change:
                // the fingerprint decides.
                let echoed = card(f(&[(NAME, "something else")]), "fp1");
                let pl = plan(
                    &input(
                        RemoteState::Present(echoed),
                        CrmState::Present(person(7, agreed(), 3)),
                        Some(linked_base(Origin::Created)),
                    ),
                    d,
                    p,
                );
                assert_eq!(pl.rule, Rule::InSync);
            }
        }
    }

    #[test]
    fn remote_created_new_creates_a_person() {
        let fields = f(&[(NAME, "Cy"), (NOTES, "n")]);
        for d in DIRECTIONS {
            for p in POLICIES {
                let r = card(fields.clone(), "fpN");
                let pl = plan(
                    &input(RemoteState::Present(r), CrmState::Absent, None),
                    d,
                    p,
                );
                assert_eq!(pl.rule, Rule::RemoteCreatedNew);
                assert_eq!(
                    pl.ops,
                    vec![
                        Op::CreatePerson {
                            fields: fields.clone()
                        },
                        Op::SaveBase(NewBase {
                            fields: fields.clone(),
                            remote: Track::Known(RemoteMark {
                                fingerprint: "fpN".to_owned(),
                                etag: Some("etag-fpN".to_owned()),
                            }),
                            person: Track::Written,
                            origin: Origin::Created,
                        }),
                    ]
                );
            }
        }
    }

    #[test]
    fn remote_created_linked_merges_into_the_candidate_instead_of_duplicating() {
        let (_, i) = rows().into_iter().nth(3).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::RemoteCreatedLinked);
                assert!(!pl.ops.iter().any(|o| matches!(o, Op::CreatePerson { .. })));
                // NAME differs on both sides with nothing agreed: a conflict, by policy.
                // NewestWins: card REV 100 > update_time 50, so the provider wins.
                let want_name = match p {
                    Policy::CrmWins => "Ada",
                    Policy::NewestWins | Policy::ProviderWins => "Ada L",
                };
                let conflicts: Vec<_> = pl.conflicts().collect();
                assert_eq!(conflicts.len(), 1);
                assert_eq!(conflicts[0].field, NAME);
                let link = pl
                    .ops
                    .iter()
                    .find_map(|o| match o {
                        Op::LinkPerson {
                            person_id,
                            expected_version,
                            fields,
                            ..
                        } => Some((*person_id, *expected_version, fields.clone())),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!((link.0, link.1), (5, 2));
                assert_eq!(
                    link.2,
                    f(&[(NAME, want_name), (ORG_NAME, "ACME"), (NOTES, "met")])
                );
                // Two-way: the CRM-only field (ORG) and a CRM-won name go to the card.
                let push = pl.ops.iter().find_map(|o| match o {
                    Op::PushUpdate {
                        changed, if_match, ..
                    } => Some((changed.clone(), if_match.clone())),
                    _ => None,
                });
                match d {
                    Direction::OneWay => assert_eq!(push, None),
                    Direction::TwoWay => {
                        let (changed, if_match) = push.unwrap();
                        let mut want = BTreeSet::from([ORG_NAME.to_owned()]);
                        if p == Policy::CrmWins {
                            want.insert(NAME.to_owned());
                        }
                        assert_eq!(changed, want);
                        assert_eq!(if_match.as_deref(), Some("etag-fpN"));
                    }
                }
                assert_eq!(save_base(&pl).origin, Origin::Linked);
            }
        }
    }

    #[test]
    fn remote_created_paired_with_a_new_person_links_it() {
        let (_, i) = rows().into_iter().nth(5).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::RemoteCreatedLinked);
                assert!(matches!(
                    pl.ops.iter().find(|o| matches!(o, Op::LinkPerson { .. })),
                    Some(Op::LinkPerson { person_id: 9, .. })
                ));
            }
        }
    }

    #[test]
    fn remote_changed_flows_to_the_crm() {
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(
                    &input(
                        RemoteState::Present(card(
                            f(&[(NAME, "Ada L"), (ORG_NAME, "ACME")]),
                            "fp2",
                        )),
                        CrmState::Present(person(7, agreed(), 3)),
                        Some(linked_base(Origin::Created)),
                    ),
                    d,
                    p,
                );
                assert_eq!(pl.rule, Rule::RemoteChanged);
                let new = f(&[(NAME, "Ada L"), (ORG_NAME, "ACME")]);
                assert_eq!(
                    pl.ops,
                    vec![
                        Op::UpdatePerson {
                            person_id: 7,
                            expected_version: 3,
                            fields: new.clone(),
                            changed: BTreeSet::from([NAME.to_owned()]),
                        },
                        Op::SaveBase(NewBase {
                            fields: new.clone(),
                            remote: Track::Known(RemoteMark {
                                fingerprint: "fp2".to_owned(),
                                etag: Some("etag-fp2".to_owned()),
                            }),
                            person: Track::Written,
                            origin: Origin::Created,
                        }),
                    ]
                );
            }
        }
    }

    #[test]
    fn both_changed_different_fields_merge_without_conflict() {
        for d in DIRECTIONS {
            for p in POLICIES {
                let (_, i) = rows().into_iter().nth(7).unwrap();
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::BothChanged);
                assert_eq!(pl.conflicts().count(), 0);
                let merged = f(&[(NAME, "Ada L"), (ORG_NAME, "Crm Inc")]);
                assert!(pl.ops.contains(&Op::UpdatePerson {
                    person_id: 7,
                    expected_version: 4,
                    fields: merged.clone(),
                    changed: BTreeSet::from([NAME.to_owned()]),
                }));
                let push = pl.ops.iter().any(|o| {
                    *o == Op::PushUpdate {
                        fields: merged.clone(),
                        changed: BTreeSet::from([ORG_NAME.to_owned()]),
                        if_match: Some("etag-fp2".to_owned()),
                    }
                });
                assert_eq!(push, d == Direction::TwoWay, "{d:?}");
                // The base records what the card holds after the plan.
                let want_base = match d {
                    Direction::TwoWay => merged.clone(),
                    Direction::OneWay => f(&[(NAME, "Ada L"), (ORG_NAME, "ACME")]),
                };
                assert_eq!(save_base(&pl).fields, want_base);
            }
        }
    }

    #[test]
    fn both_changed_same_field_is_a_conflict_resolved_by_each_policy() {
        let (_, i) = rows().into_iter().nth(8).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::BothChanged);
                let c: Vec<_> = pl.conflicts().cloned().collect();
                // Card REV 100 is newer than update_time 50.
                let winner = match p {
                    Policy::CrmWins => Side::Crm,
                    Policy::ProviderWins | Policy::NewestWins => Side::Remote,
                };
                assert_eq!(
                    c,
                    vec![FieldConflict {
                        field: ORG_NAME.to_owned(),
                        element: None,
                        base: Some("ACME".to_owned()),
                        crm: Some("Crm Inc".to_owned()),
                        remote: Some("Card Co".to_owned()),
                        winner,
                    }]
                );
                let crm_written = pl.ops.iter().any(|o| matches!(o, Op::UpdatePerson { .. }));
                let pushed = pl.writes_remote();
                match winner {
                    Side::Remote => assert!(crm_written && !pushed),
                    Side::Crm => assert!(!crm_written && pushed == (d == Direction::TwoWay)),
                }
                // The conflict is recorded before any write.
                assert!(matches!(pl.ops[0], Op::RecordConflict(_)));
            }
        }
    }

    #[test]
    fn both_changed_newest_wins_picks_the_crm_when_it_is_newer() {
        let (_, mut i) = rows().into_iter().nth(8).unwrap();
        if let CrmState::Present(c) = &mut i.crm {
            c.update_time = t(500);
        }
        let pl = plan(&i, Direction::TwoWay, Policy::NewestWins);
        assert_eq!(pl.conflicts().next().unwrap().winner, Side::Crm);
    }

    #[test]
    fn crm_changed_pushed_in_two_way_and_stays_local_in_one_way() {
        let (_, i) = rows().into_iter().nth(9).unwrap();
        for p in POLICIES {
            let pl = plan(&i, Direction::TwoWay, p);
            assert_eq!(pl.rule, Rule::CrmChangedPushed);
            let edited = f(&[(NAME, "Ada"), (ORG_NAME, "Crm Inc")]);
            assert_eq!(
                pl.ops,
                vec![
                    Op::PushUpdate {
                        fields: edited.clone(),
                        changed: BTreeSet::from([ORG_NAME.to_owned()]),
                        if_match: Some("etag-fp1".to_owned()),
                    },
                    Op::SaveBase(NewBase {
                        fields: edited.clone(),
                        remote: Track::Written,
                        person: Track::Known(PersonMark {
                            person_id: 7,
                            version: 4
                        }),
                        origin: Origin::Created,
                    }),
                ]
            );
            let pl = plan(&i, Direction::OneWay, p);
            assert_eq!(pl.rule, Rule::CrmChangedStaysLocal);
            assert_eq!(
                pl.ops,
                vec![Op::SaveBase(NewBase {
                    fields: agreed(),
                    remote: Track::Known(RemoteMark {
                        fingerprint: "fp1".to_owned(),
                        etag: Some("etag-fp1".to_owned()),
                    }),
                    person: Track::Known(PersonMark {
                        person_id: 7,
                        version: 4
                    }),
                    origin: Origin::Created,
                })]
            );
        }
    }

    #[test]
    fn crm_created_pushed_in_two_way_and_stays_local_in_one_way() {
        let (_, i) = rows().into_iter().nth(10).unwrap();
        let fields = f(&[(NAME, "Bo"), (EMAILS, "x")]);
        for p in POLICIES {
            let pl = plan(&i, Direction::TwoWay, p);
            assert_eq!(pl.rule, Rule::CrmCreatedPushed);
            assert_eq!(
                pl.ops,
                vec![
                    Op::PushCreate {
                        person_id: 9,
                        fields: fields.clone()
                    },
                    Op::SaveBase(NewBase {
                        fields: fields.clone(),
                        remote: Track::Written,
                        person: Track::Known(PersonMark {
                            person_id: 9,
                            version: 1
                        }),
                        origin: Origin::Linked,
                    }),
                ]
            );
            assert_eq!(
                plan(&i, Direction::OneWay, p),
                Plan::nothing(Rule::CrmCreatedStaysLocal)
            );
        }
    }

    #[test]
    fn remote_deleted_person_deleted_when_this_connection_created_it() {
        let (_, i) = rows().into_iter().nth(11).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::RemoteDeletedPersonDeleted);
                assert_eq!(
                    pl.ops,
                    vec![
                        Op::DeletePerson {
                            person_id: 7,
                            expected_version: 3
                        },
                        Op::ForgetItem
                    ]
                );
            }
        }
    }

    #[test]
    fn remote_deleted_person_unlinked_when_only_linked() {
        let (_, i) = rows().into_iter().nth(12).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::RemoteDeletedPersonUnlinked);
                assert_eq!(pl.ops[0], Op::UnlinkPerson { person_id: 7 });
                let b = save_base(&pl);
                assert_eq!((&b.remote, b.origin), (&Track::Gone, Origin::Linked));
                assert!(!pl.ops.iter().any(|o| matches!(o, Op::DeletePerson { .. })));
            }
        }
    }

    #[test]
    fn remote_deleted_person_edited_is_kept_and_unlinked() {
        let (_, i) = rows().into_iter().nth(13).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::RemoteDeletedPersonEditedKept);
                assert!(!pl.ops.iter().any(|o| matches!(o, Op::DeletePerson { .. })));
                assert_eq!(
                    save_base(&pl).person,
                    Track::Known(PersonMark {
                        person_id: 7,
                        version: 4
                    })
                );
            }
        }
    }

    #[test]
    fn crm_deleted_deletes_the_card_in_two_way_and_unlinks_in_one_way() {
        let (_, i) = rows().into_iter().nth(14).unwrap();
        for p in POLICIES {
            let pl = plan(&i, Direction::TwoWay, p);
            assert_eq!(pl.rule, Rule::CrmDeletedRemoteDeleted);
            assert_eq!(
                pl.ops,
                vec![
                    Op::PushDelete {
                        if_match: Some("etag-fp1".to_owned())
                    },
                    Op::ForgetItem
                ]
            );
            let pl = plan(&i, Direction::OneWay, p);
            assert_eq!(pl.rule, Rule::CrmDeletedUnlinked);
            assert_eq!(
                pl.ops,
                vec![
                    Op::UnlinkPerson { person_id: 7 },
                    Op::SaveBase(NewBase {
                        fields: agreed(),
                        remote: Track::Known(RemoteMark {
                            fingerprint: "fp1".to_owned(),
                            etag: Some("etag-fp1".to_owned()),
                        }),
                        person: Track::Gone,
                        origin: Origin::Created,
                    })
                ]
            );
        }
    }

    #[test]
    fn crm_deleted_unlinked_card_is_not_recreated_until_it_changes_again() {
        // The tombstone the one-way unlink saved, fed back in.
        let tomb = Base {
            person: None,
            ..linked_base(Origin::Created)
        };
        for d in DIRECTIONS {
            for p in POLICIES {
                for remote in [
                    RemoteState::NotReported,
                    RemoteState::Present(card(agreed(), "fp1")),
                ] {
                    let pl = plan(&input(remote, CrmState::Absent, Some(tomb.clone())), d, p);
                    assert_eq!(pl, Plan::nothing(Rule::UnlinkedCardIgnored));
                }
                let changed = card(f(&[(NAME, "Ada 2")]), "fp9");
                let pl = plan(
                    &input(
                        RemoteState::Present(changed),
                        CrmState::Absent,
                        Some(tomb.clone()),
                    ),
                    d,
                    p,
                );
                assert_eq!(pl.rule, Rule::UnlinkedCardChangedRecreated);
                assert_eq!(
                    pl.ops[0],
                    Op::CreatePerson {
                        fields: f(&[(NAME, "Ada 2")])
                    }
                );
            }
        }
    }

    #[test]
    fn unlinked_card_changed_links_to_a_candidate_if_one_exists() {
        let tomb = Base {
            person: None,
            ..linked_base(Origin::Created)
        };
        let mut i = input(
            RemoteState::Present(card(f(&[(NAME, "Ada 2")]), "fp9")),
            CrmState::Absent,
            Some(tomb),
        );
        i.link_candidate = Some(LinkCandidate {
            person_id: 11,
            fields: f(&[(NAME, "Ada 2")]),
            version: 1,
            update_time: None,
        });
        let pl = plan(&i, Direction::TwoWay, Policy::NewestWins);
        assert_eq!(pl.rule, Rule::UnlinkedCardChangedRecreated);
        assert!(matches!(pl.ops[0], Op::LinkPerson { person_id: 11, .. }));
    }

    #[test]
    fn crm_deleted_remote_edited_kept_deletes_nothing_and_recreates_nothing() {
        let (_, i) = rows().into_iter().nth(15).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::CrmDeletedRemoteEditedKept);
                assert!(!pl.writes_remote());
                assert!(!pl.ops.iter().any(|o| matches!(o, Op::CreatePerson { .. })));
                let b = save_base(&pl);
                assert_eq!(b.person, Track::Gone);
                assert_eq!(b.fields, f(&[(NAME, "Ada L"), (ORG_NAME, "ACME")]));
            }
        }
    }

    #[test]
    fn both_deleted_forgets_the_item() {
        let (_, i) = rows().into_iter().nth(16).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                assert_eq!(
                    plan(&i, d, p),
                    Plan::new(Rule::BothDeleted, vec![Op::ForgetItem])
                );
            }
        }
    }

    #[test]
    fn unlinked_person_ignored_is_never_pushed_back() {
        let (_, i) = rows().into_iter().nth(17).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                assert_eq!(plan(&i, d, p), Plan::nothing(Rule::UnlinkedPersonIgnored));
            }
        }
    }

    #[test]
    fn remote_reappeared_relinked_merges_against_the_old_base() {
        let (_, i) = rows().into_iter().nth(20).unwrap();
        for d in DIRECTIONS {
            for p in POLICIES {
                let pl = plan(&i, d, p);
                assert_eq!(pl.rule, Rule::RemoteReappearedRelinked);
                assert_eq!(pl.conflicts().count(), 0);
                assert!(matches!(
                    save_base(&pl).remote,
                    Track::Known(_) | Track::Written
                ));
            }
        }
    }

    #[test]
    fn tombstone_cleared_when_its_remaining_side_goes() {
        for n in [21, 22] {
            let (_, i) = rows().into_iter().nth(n).unwrap();
            for d in DIRECTIONS {
                for p in POLICIES {
                    assert_eq!(
                        plan(&i, d, p),
                        Plan::new(Rule::TombstoneCleared, vec![Op::ForgetItem])
                    );
                }
            }
        }
    }

    #[test]
    fn not_editable_writes_nothing_either_way() {
        let mut locked = person(7, f(&[(NAME, "Ada"), (ORG_NAME, "Crm Inc")]), 4);
        locked.editable = false;
        let b = Some(linked_base(Origin::Created));
        let changed = card(f(&[(NAME, "Ada L"), (ORG_NAME, "ACME")]), "fp2");
        let mut new_locked = locked.clone();
        new_locked.person_id = 9;
        let cases = [
            input(
                RemoteState::Present(changed.clone()),
                CrmState::Present(locked.clone()),
                b.clone(),
            ),
            input(
                RemoteState::NotReported,
                CrmState::Present(locked.clone()),
                b.clone(),
            ),
            input(
                RemoteState::NotReported,
                CrmState::Present(new_locked.clone()),
                None,
            ),
            input(
                RemoteState::Present(changed.clone()),
                CrmState::Present(new_locked),
                None,
            ),
        ];
        for i in cases {
            for d in DIRECTIONS {
                for p in POLICIES {
                    assert_eq!(plan(&i, d, p), Plan::nothing(Rule::NotEditable), "{i:?}");
                }
            }
        }
        // A deleted card does not delete a person the user may not edit: it unlinks it.
        let mut same_locked = person(7, agreed(), 3);
        same_locked.editable = false;
        let i = input(RemoteState::Deleted, CrmState::Present(same_locked), b);
        assert_eq!(
            plan(&i, Direction::TwoWay, Policy::NewestWins).rule,
            Rule::RemoteDeletedPersonUnlinked
        );
    }

    #[test]
    fn inconsistent_input_does_nothing() {
        let (_, i) = rows().into_iter().nth(24).unwrap();
        assert_eq!(
            plan(&i, Direction::TwoWay, Policy::NewestWins),
            Plan::nothing(Rule::InconsistentInput)
        );
    }

    #[test]
    fn field_directions_filter_each_flow() {
        // Card changes NAME and NOTES; CRM changes ORG and URLS.
        let b = base(
            f(&[(NAME, "A"), (NOTES, "n"), (ORG_NAME, "o"), (URLS, "u")]),
            "fp1",
            7,
            3,
            Origin::Created,
        );
        let r = card(
            f(&[(NAME, "A2"), (NOTES, "n2"), (ORG_NAME, "o"), (URLS, "u")]),
            "fp2",
        );
        let c = person(
            7,
            f(&[(NAME, "A"), (NOTES, "n"), (ORG_NAME, "o2"), (URLS, "u2")]),
            4,
        );
        let mapping = FieldDirections::all_both()
            .with(NOTES, FieldDirection::ToProvider) // the card's NOTES change is not pulled
            .with(ORG_NAME, FieldDirection::ToCrm) // the CRM's ORG change is not pushed
            .with(URLS, FieldDirection::Off);
        let i = input(RemoteState::Present(r), CrmState::Present(c), Some(b));
        let pl = reconcile(&i, Direction::TwoWay, Policy::NewestWins, &mapping);
        let update = pl.ops.iter().find_map(|o| match o {
            Op::UpdatePerson {
                changed, fields, ..
            } => Some((changed.clone(), fields.clone())),
            _ => None,
        });
        let (changed, fields) = update.unwrap();
        assert_eq!(changed, BTreeSet::from([NAME.to_owned()]));
        assert_eq!(fields.text(NOTES), "n");
        let push = pl.ops.iter().find(|o| matches!(o, Op::PushUpdate { .. }));
        assert_eq!(
            push, None,
            "ORG is ToCrm, URLS Off, NOTES unchanged in the CRM"
        );
        // The base records the source side of each one-directional field.
        let nb = save_base(&pl);
        assert_eq!(nb.fields.text(NOTES), "n"); // ToProvider: the CRM's value
        assert_eq!(nb.fields.text(ORG_NAME), "o"); // ToCrm: the card's value
        assert_eq!(nb.fields.text(NAME), "A2");

        // A ToProvider field the CRM changed is pushed; an Off field never conflicts.
        let b = base(
            f(&[(NOTES, "n"), (URLS, "u")]),
            "fp1",
            7,
            3,
            Origin::Created,
        );
        let r = card(f(&[(NOTES, "n"), (URLS, "r")]), "fp2");
        let c = person(7, f(&[(NOTES, "c"), (URLS, "c")]), 4);
        let i = input(RemoteState::Present(r), CrmState::Present(c), Some(b));
        let pl = reconcile(&i, Direction::TwoWay, Policy::NewestWins, &mapping);
        assert_eq!(pl.conflicts().count(), 0);
        assert!(pl.ops.iter().any(|o| matches!(o,
            Op::PushUpdate { changed, .. } if *changed == BTreeSet::from([NOTES.to_owned()]))));
        // In one-way a ToProvider field flows nowhere.
        let pl = reconcile(&i, Direction::OneWay, Policy::NewestWins, &mapping);
        assert!(!pl.writes_remote());
        assert!(!pl.ops.iter().any(|o| matches!(o, Op::UpdatePerson { .. })));
    }

    #[test]
    fn one_way_crm_edit_stays_local_until_the_card_changes_that_field() {
        // One-way: the CRM edited ORG; the base holds the card's ORG.
        let b = base(agreed(), "fp1", 7, 4, Origin::Created);
        let c = person(7, f(&[(NAME, "Ada"), (ORG_NAME, "Crm Inc")]), 4);
        // The card changes NAME only: ORG stays the CRM's, no conflict.
        let r = card(f(&[(NAME, "Ada L"), (ORG_NAME, "ACME")]), "fp2");
        let i = input(
            RemoteState::Present(r),
            CrmState::Present(c.clone()),
            Some(b.clone()),
        );
        let pl = plan(&i, Direction::OneWay, Policy::ProviderWins);
        assert_eq!(pl.conflicts().count(), 0);
        assert!(pl
            .ops
            .iter()
            .any(|o| matches!(o, Op::UpdatePerson { fields, .. }
            if fields.text(ORG_NAME) == "Crm Inc" && fields.text(NAME) == "Ada L")));
        // The card changes ORG too: now it is a conflict, decided by the policy.
        let r = card(f(&[(NAME, "Ada"), (ORG_NAME, "Card Co")]), "fp3");
        let i = input(RemoteState::Present(r), CrmState::Present(c), Some(b));
        let pl = plan(&i, Direction::OneWay, Policy::ProviderWins);
        assert_eq!(pl.conflicts().count(), 1);
    }
}
