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
    for space in [SPACE_ITEM, SPACE_ITEM_BY_PERSON] {
        for (k, _) in scan_all(store, space, &conn_key(conn)).await? {
            b.delete(space, k);
        }
    }
    b.delete(SPACE_CURSOR, conn_key(conn));
    b.delete(SPACE_CRM_CURSOR, conn_key(conn));
    store.commit(b).await
}
