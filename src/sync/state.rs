//! The engine's persistent per-connection state on [`Store`]: the provider cursor, the CRM
//! change-log cursor, and per remote item the last agreed [`Base`] plus the last remote card
//! (the merge target of pushes and the source of Graph's overflow).
//!
//! Everything is *staged* into the caller's [`Batch`], so `execute` commits an item's base with
//! its CRM write and the page's cursor in one atomic step.
//!
//! # Keys (integers big-endian)
//! | space | key | value |
//! |---|---|---|
//! | [`SPACE_ITEM`] | `conn ++ remote_id` | JSON [`ItemRecord`] |
//! | [`SPACE_ITEM_BY_PERSON`] | `conn ++ person ++ remote_id` | empty |
//! | [`SPACE_CURSOR`] | `conn` | JSON `Option<String>` (the provider's cursor) |
//! | [`SPACE_CRM_CURSOR`] | `conn` | the CRM change-log sequence, 8 bytes |
//! | [`SPACE_PENDING_PUSH`] | `conn ++ person` | JSON [`PendingPush`] |
//!
//! # Pending pushes
//! A provider write cannot join a store batch, so a crash can fall between a push and the
//! batch that records its base. Before each push `execute` commits a [`PendingPush`]: the
//! agreed state the push starts from (the person's version when the plan was made, its fields
//! for what the push carries, the old base for the rest) and the fields of the card it sends. The batch with the new base removes it. When a run
//! finds one left over and the card it pulls carries exactly the fields that were sent, the
//! push landed: the pending record is the item's base, so edits made in the CRM since the crash
//! are CRM changes, not conflicts with our own copy. A card a lost *create* made is found the
//! same way: providers that do not hand our UID back (Google, Graph's delta) pull it as an
//! unknown card, and a left-over pending push whose sent fields it carries names its person.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::connection::ConnectionId;
use super::fields::{FieldMap, FieldValue};
use super::reconcile::{Base, Origin, PersonId, PersonMark, RemoteMark};
use crate::store::{scan_all, Batch, Space, Store, StoreError};
use crate::vcard::{read_normalized, write_v4, VCard};

/// Per-item state.
pub const SPACE_ITEM: Space = "sync.engine.item";
/// Person → items index (link candidates must not be linked already; CRM changes find their
/// items).
pub const SPACE_ITEM_BY_PERSON: Space = "sync.engine.item_by_person";
/// The provider cursor of each connection.
pub const SPACE_CURSOR: Space = "sync.engine.cursor";
/// The CRM change-log position of each connection.
pub const SPACE_CRM_CURSOR: Space = "sync.engine.crm_cursor";
/// Pushes whose base is not committed yet (see the module doc).
pub const SPACE_PENDING_PUSH: Space = "sync.engine.pending_push";

/// A field value as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredValue {
    Text(String),
    Set(BTreeMap<String, String>),
}

fn store_fields(f: &FieldMap) -> BTreeMap<String, StoredValue> {
    f.iter()
        .map(|(k, v)| {
            let v = match v {
                FieldValue::Text(t) => StoredValue::Text(t.clone()),
                FieldValue::Set(s) => StoredValue::Set(s.clone()),
            };
            (k.to_owned(), v)
        })
        .collect()
}

fn load_fields(f: &BTreeMap<String, StoredValue>) -> FieldMap {
    f.iter()
        .map(|(k, v)| {
            let v = match v {
                StoredValue::Text(t) => FieldValue::Text(t.clone()),
                StoredValue::Set(s) => FieldValue::Set(s.clone()),
            };
            (k.clone(), v)
        })
        .collect()
}

/// What the connection last agreed about one remote item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The provider's id of the card.
    pub remote_id: String,
    /// The card's UID, when it has one.
    pub uid: Option<String>,
    fields: BTreeMap<String, StoredValue>,
    /// The card as agreed (fingerprint, ETag); `None`: deleted (tombstone).
    pub remote: Option<RemoteMark>,
    /// The person as agreed; `None`: deleted or unlinked (tombstone).
    pub person: Option<PersonMark>,
    /// Who brought the person in.
    pub origin: Origin,
    /// The last remote card, vCard 4 text.
    pub base_card: Option<String>,
}

impl ItemRecord {
    /// A record from a base.
    pub fn new(remote_id: &str, uid: Option<String>, base: &Base, card: Option<&VCard>) -> Self {
        ItemRecord {
            remote_id: remote_id.to_owned(),
            uid,
            fields: store_fields(&base.fields),
            remote: base.remote.clone(),
            person: base.person,
            origin: base.origin,
            base_card: card.map(write_v4),
        }
    }

    /// The base `reconcile` merges against.
    pub fn base(&self) -> Base {
        Base {
            fields: load_fields(&self.fields),
            remote: self.remote.clone(),
            person: self.person,
            origin: self.origin,
        }
    }

    /// The last remote card, parsed.
    pub fn card(&self) -> Option<VCard> {
        let text = self.base_card.as_deref()?;
        read_normalized(text).cards.into_iter().next()
    }

    /// The linked person.
    pub fn person_id(&self) -> Option<PersonId> {
        self.person.map(|p| p.person_id)
    }

    /// True when the card and the person are both there and linked (what the connection's
    /// `total_in_sync` counts).
    pub fn in_sync(&self) -> bool {
        self.remote.is_some() && self.person.is_some()
    }
}

/// A push made (or about to be made) whose base is not committed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPush {
    /// The person as the plan saw it.
    pub person: PersonMark,
    /// Who brought the person in.
    pub origin: Origin,
    /// The agreed fields a recovery merges against: the person's (when the plan was made) for
    /// the fields the push carries, the old base's for the others.
    fields: BTreeMap<String, StoredValue>,
    /// The fields of the card sent.
    sent: BTreeMap<String, StoredValue>,
}

impl PendingPush {
    /// The record of a push from `person` (at `fields`) sending a card with `sent`.
    pub fn new(person: PersonMark, origin: Origin, fields: &FieldMap, sent: &FieldMap) -> Self {
        PendingPush {
            person,
            origin,
            fields: store_fields(fields),
            sent: store_fields(sent),
        }
    }

    /// True when a card with `card_fields` is the card this push sent.
    pub fn sent(&self, card_fields: &FieldMap) -> bool {
        load_fields(&self.sent) == *card_fields
    }

    /// The base to merge against once the push is known to have landed: the person's fields
    /// and version the push started from, and a card mark no card matches (the card holds the
    /// pushed values, which are compared field by field).
    pub fn base(&self) -> Base {
        Base {
            fields: load_fields(&self.fields),
            remote: Some(RemoteMark {
                fingerprint: String::new(),
                etag: None,
            }),
            person: Some(self.person),
            origin: self.origin,
        }
    }
}

/// The pending push of `person`, if one is left.
pub async fn pending_push(
    store: &dyn Store,
    conn: ConnectionId,
    person: PersonId,
) -> Result<Option<PendingPush>, StoreError> {
    match store
        .get(SPACE_PENDING_PUSH, &person_prefix(conn, person))
        .await?
    {
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| corrupt(SPACE_PENDING_PUSH, e)),
        None => Ok(None),
    }
}

/// Every pending push of `conn`: the pushes of runs that stopped before committing their base.
pub async fn pending_pushes(
    store: &dyn Store,
    conn: ConnectionId,
) -> Result<Vec<PendingPush>, StoreError> {
    scan_all(store, SPACE_PENDING_PUSH, &conn_key(conn))
        .await?
        .iter()
        .map(|(_, v)| serde_json::from_slice(v).map_err(|e| corrupt(SPACE_PENDING_PUSH, e)))
        .collect()
}

/// Stages the pending push of its person.
pub fn stage_pending_push(
    batch: &mut Batch,
    conn: ConnectionId,
    pending: &PendingPush,
) -> Result<(), StoreError> {
    batch.put(
        SPACE_PENDING_PUSH,
        person_prefix(conn, pending.person.person_id),
        encode(SPACE_PENDING_PUSH, pending)?,
    );
    Ok(())
}

/// Stages removing the pending push of `person`.
pub fn stage_clear_pending_push(batch: &mut Batch, conn: ConnectionId, person: PersonId) {
    batch.delete(SPACE_PENDING_PUSH, person_prefix(conn, person));
}

fn conn_key(conn: ConnectionId) -> Vec<u8> {
    conn.to_be_bytes().to_vec()
}

fn item_key(conn: ConnectionId, remote_id: &str) -> Vec<u8> {
    let mut k = conn_key(conn);
    k.extend_from_slice(remote_id.as_bytes());
    k
}

fn person_prefix(conn: ConnectionId, person: PersonId) -> Vec<u8> {
    let mut k = conn_key(conn);
    k.extend_from_slice(&person.to_be_bytes());
    k
}

fn person_key(conn: ConnectionId, person: PersonId, remote_id: &str) -> Vec<u8> {
    let mut k = person_prefix(conn, person);
    k.extend_from_slice(remote_id.as_bytes());
    k
}

fn corrupt(space: Space, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        space: space.to_owned(),
        reason: reason.to_string(),
    }
}

fn encode<T: Serialize>(space: Space, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| corrupt(space, e))
}

/// The item's record.
pub async fn item(
    store: &dyn Store,
    conn: ConnectionId,
    remote_id: &str,
) -> Result<Option<ItemRecord>, StoreError> {
    match store.get(SPACE_ITEM, &item_key(conn, remote_id)).await? {
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| corrupt(SPACE_ITEM, e)),
        None => Ok(None),
    }
}

/// Every item of the connection, in remote-id order.
pub async fn all_items(
    store: &dyn Store,
    conn: ConnectionId,
) -> Result<Vec<ItemRecord>, StoreError> {
    scan_all(store, SPACE_ITEM, &conn_key(conn))
        .await?
        .iter()
        .map(|(_, v)| serde_json::from_slice(v).map_err(|e| corrupt(SPACE_ITEM, e)))
        .collect()
}

/// The remote ids of the items linked to `person`.
pub async fn items_of_person(
    store: &dyn Store,
    conn: ConnectionId,
    person: PersonId,
) -> Result<Vec<String>, StoreError> {
    let prefix = person_prefix(conn, person);
    scan_all(store, SPACE_ITEM_BY_PERSON, &prefix)
        .await?
        .iter()
        .map(|(k, _)| {
            let tail = k.get(prefix.len()..).unwrap_or_default();
            String::from_utf8(tail.to_vec()).map_err(|e| corrupt(SPACE_ITEM_BY_PERSON, e))
        })
        .collect()
}

/// Stages `record` (replacing `old`, keeping the person index in step).
pub fn stage_put(
    batch: &mut Batch,
    conn: ConnectionId,
    record: &ItemRecord,
    old: Option<&ItemRecord>,
) -> Result<(), StoreError> {
    let old_person = old.and_then(ItemRecord::person_id);
    if let Some(p) = old_person.filter(|p| Some(*p) != record.person_id()) {
        batch.delete(SPACE_ITEM_BY_PERSON, person_key(conn, p, &record.remote_id));
    }
    if let Some(p) = record.person_id() {
        batch.put(
            SPACE_ITEM_BY_PERSON,
            person_key(conn, p, &record.remote_id),
            Vec::new(),
        );
    }
    batch.put(
        SPACE_ITEM,
        item_key(conn, &record.remote_id),
        encode(SPACE_ITEM, record)?,
    );
    Ok(())
}

/// Stages forgetting the item.
pub fn stage_forget(batch: &mut Batch, conn: ConnectionId, old: &ItemRecord) {
    if let Some(p) = old.person_id() {
        batch.delete(SPACE_ITEM_BY_PERSON, person_key(conn, p, &old.remote_id));
    }
    batch.delete(SPACE_ITEM, item_key(conn, &old.remote_id));
}

/// The provider cursor.
pub async fn cursor(store: &dyn Store, conn: ConnectionId) -> Result<Option<String>, StoreError> {
    match store.get(SPACE_CURSOR, &conn_key(conn)).await? {
        Some(raw) => serde_json::from_slice(&raw).map_err(|e| corrupt(SPACE_CURSOR, e)),
        None => Ok(None),
    }
}

/// Stages the provider cursor.
pub fn stage_cursor(
    batch: &mut Batch,
    conn: ConnectionId,
    cursor: Option<&str>,
) -> Result<(), StoreError> {
    batch.put(SPACE_CURSOR, conn_key(conn), encode(SPACE_CURSOR, &cursor)?);
    Ok(())
}

/// The CRM change-log position (0: from the beginning).
pub async fn crm_cursor(store: &dyn Store, conn: ConnectionId) -> Result<u64, StoreError> {
    match store.get(SPACE_CRM_CURSOR, &conn_key(conn)).await? {
        Some(raw) => {
            let b: [u8; 8] = raw
                .as_slice()
                .try_into()
                .map_err(|_| corrupt(SPACE_CRM_CURSOR, "not 8 bytes"))?;
            Ok(u64::from_be_bytes(b))
        }
        None => Ok(0),
    }
}

/// Stages the CRM change-log position.
pub fn stage_crm_cursor(batch: &mut Batch, conn: ConnectionId, seq: u64) {
    batch.put(SPACE_CRM_CURSOR, conn_key(conn), seq.to_be_bytes().to_vec());
}

/// Drops every trace of the connection (items, index, cursors). For removing a connection.
pub async fn forget_connection(store: &dyn Store, conn: ConnectionId) -> Result<(), StoreError> {
    let mut b = Batch::new();
    for space in [SPACE_ITEM, SPACE_ITEM_BY_PERSON, SPACE_PENDING_PUSH] {
        for (k, _) in scan_all(store, space, &conn_key(conn)).await? {
            b.delete(space, k);
        }
    }
    b.delete(SPACE_CURSOR, conn_key(conn));
    b.delete(SPACE_CRM_CURSOR, conn_key(conn));
    store.commit(b).await
}
