//! The sync engine: [`reconcile`](reconcile::reconcile) (pure) plans, `execute` applies the
//! plan through a provider and the store.
//!
//! `fields`, `merge` and `reconcile` are pure: no tokio, no store, no I/O. It works on its own field representation,
//! [`fields::FieldMap`]; the CRM person and the vCard are converted into it at the edges.
//!
//! - [`fields`]: `FieldMap` / `FieldValue` (text, or a set keyed by identity key).
//! - [`merge`]: the field-level three-way merge and the conflict [`merge::Policy`].
//! - [`reconcile`]: one item's state → a [`reconcile::Plan`] of [`reconcile::Op`]s.
//!
//! # The rules table
//!
//! An *item* is one card ↔ person pair. Its **base** is the last agreed state: the agreed
//! fields, the card's fingerprint and ETag, the person's id and version, and whether this
//! connection *created* the person or only *linked* it. Each side is judged against the base:
//! a card reported with the base's fingerprint, or a person at the base's version, has **not
//! changed** — that is how our own writes are never read back as changes (`execute` stores the
//! fingerprint/ETag and version each write produces).
//!
//! A base with one side missing is a **tombstone**: "card deleted, person kept" or "person
//! deleted/unlinked, card kept".
//!
//! | remote (vs base) | CRM (vs base) | rule | two-way | one-way |
//! |---|---|---|---|---|
//! | absent | absent | `Idle` | nothing | nothing |
//! | absent | new person | `CrmCreatedPushed` / `CrmCreatedStaysLocal` | push create | nothing |
//! | absent (tombstone) | person kept | `UnlinkedPersonIgnored` | nothing (never pushed back) | nothing |
//! | absent (tombstone) | person gone | `TombstoneCleared` | forget | forget |
//! | new card | none / gone | `RemoteCreatedLinked` if a candidate, else `RemoteCreatedNew` | link (merge, empty base; push CRM-only fields) / create | link (no push) / create |
//! | new card | new person (paired by execute) | `RemoteCreatedLinked` | link | link |
//! | new card | person kept (tombstone) | `RemoteReappearedRelinked` | merge against the old base | same, no push |
//! | unchanged | none / unrelated | `UnlinkedCardIgnored` | nothing (not recreated) | nothing |
//! | unchanged | unchanged | `InSync` | nothing | nothing |
//! | unchanged | changed | `CrmChangedPushed` / `CrmChangedStaysLocal` | push the CRM-changed fields (`If-Match`) | keep locally, record the version |
//! | unchanged | deleted | `CrmDeletedRemoteDeleted` / `CrmDeletedUnlinked` | delete the card (`If-Match`), forget | unlink; tombstone keeps the card's fingerprint |
//! | changed | none (tombstone) | `UnlinkedCardChangedRecreated` | link to a candidate or create | same |
//! | changed | unchanged | `RemoteChanged` | remote fields flow to the CRM | same |
//! | changed | changed | `BothChanged` | three-way merge; conflicts by policy; push CRM-only fields | merge; CRM keeps its edits; no push |
//! | changed | deleted | `CrmDeletedRemoteEditedKept` | card keeps its edit, person not recreated (tombstone) | same |
//! | deleted | none / unrelated | `TombstoneCleared` | forget | forget |
//! | deleted | unchanged | `RemoteDeletedPersonDeleted` if we created it, else `RemoteDeletedPersonUnlinked` | delete / unlink | same |
//! | deleted | changed | `RemoteDeletedPersonEditedKept` | keep the person (an edit beats a delete), unlink | same |
//! | deleted | deleted | `BothDeleted` | forget | forget |
//!
//! Across the table: a person that is not the user's to edit (`editable == false`) gets
//! `NotEditable` (nothing written either way) wherever a write to or from it would happen; a
//! remote deletion only unlinks it. One-way sync never emits a `Push*` op. A CRM person whose
//! id is not the base's is `InconsistentInput`.
//!
//! ## The merge
//!
//! [`merge::merge`] is a per-field three-way merge; multi-valued fields merge per element by
//! identity key. Only-remote-changed takes the remote's value, only-CRM-changed keeps the CRM's,
//! the same change on both is no conflict, different changes are a conflict the connection's
//! policy resolves: `NewestWins` (default; REV/lastModified vs `update_time`, **ties and missing
//! times go to the provider**), `ProviderWins`, `CrmWins`. Each conflict becomes a
//! `RecordConflict` op with the field, the three values and the winner.
//!
//! [`reconcile::FieldDirections`] filters the flows per field (`Both`, `ToCrm`, `ToProvider`,
//! `Off`): the CRM receives the merged value only for fields flowing to the CRM, the card only
//! for fields flowing to the provider (two-way only), and the base records, per field, the value
//! of the side the field flows from — the card's value in one-way sync. That is what keeps a
//! one-way CRM edit local until the card changes *that* field again (then it is a conflict).
//!
//! ## Crashes and ordering
//!
//! A plan's ops run in order: conflict records, the CRM write, the provider write, then the base
//! (`SaveBase`/`ForgetItem`) last. Any prefix converges on the next run:
//! - the base moves only after the writes, so a rerun sees the same base; the merge is
//!   idempotent (a side that already holds the merged value matches the other side, so no
//!   conflict and no second write);
//! - `CreatePerson` is committed in one store batch with its `SaveBase` (otherwise a crash
//!   between them leaves a person nothing points to);
//! - `PushCreate` creates the card under an identity derived from the person id with
//!   `If-None-Match: *`, and `execute` offers that person as the link candidate of that card;
//!   so a push whose base was not saved links on the next run instead of duplicating;
//! - before each push `execute` commits a *pending push* (the person's version and fields the
//!   plan started from, and the fields sent); when a later run pulls a card carrying exactly
//!   those fields, that record is the base, so a CRM edit made after the crash is a CRM change
//!   and not a conflict with our own older copy (`state.rs`). Pushed cards carry the push time
//!   as REV, so without that record `NewestWins` still sees them as older than a later edit.
//!
//! `tests/sync_model.rs` checks this with random interleavings and crashes.

pub mod conflicts;
pub mod connection;
pub mod convert;
pub mod execute;
pub mod fields;
pub mod merge;
pub mod reconcile;
pub mod state;
pub mod stats;
