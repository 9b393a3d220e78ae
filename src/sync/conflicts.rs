//! The conflict log: every conflict a sync resolved — the field, the base, both values, the
//! winner, when, and which item — kept per connection and listable through the API.
//!
//! Records are staged into the batch of the item they belong to, so a conflict is recorded
//! exactly when the resolution it describes is committed.
//!
//! Keys: [`SPACE_CONFLICTS`] `conn ++ id` (big-endian) → JSON [`ConflictRecord`]; ids from the
//! [`SEQ_CONFLICT`] sequence, so a listing is in the order they happened.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::connection::ConnectionId;
use super::merge::{FieldConflict, Side};
use super::reconcile::PersonId;
use crate::store::{Batch, Space, Store, StoreError};

/// The conflict log.
pub const SPACE_CONFLICTS: Space = "sync.conflicts";
/// The id sequence of conflict records.
pub const SEQ_CONFLICT: Space = "sync.seq.conflict";

/// One resolved conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Its id (increasing).
    pub id: u64,
    /// The connection.
    pub connection_id: ConnectionId,
    /// The provider's item id.
    pub remote_id: String,
    /// The person, when known (`None`: created by the same step).
    pub person_id: Option<PersonId>,
    /// The field.
    pub field: String,
    /// For a multi-valued field, the element's identity key.
    pub element: Option<String>,
    /// The last agreed value.
    pub base: Option<String>,
    /// The CRM's value.
    pub crm: Option<String>,
    /// The provider's value.
    pub remote: Option<String>,
    /// Whose value was kept.
    pub winner: Side,
    /// When it was resolved.
    pub at: DateTime<Utc>,
}

fn key(conn: ConnectionId, id: u64) -> Vec<u8> {
    let mut k = conn.to_be_bytes().to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Stages one record; returns it.
pub async fn stage(
    store: &dyn Store,
    batch: &mut Batch,
    conn: ConnectionId,
    remote_id: &str,
    person_id: Option<PersonId>,
    c: &FieldConflict,
    at: DateTime<Utc>,
) -> Result<ConflictRecord, StoreError> {
    let id = store.next_id(SEQ_CONFLICT).await?;
    let rec = ConflictRecord {
        id,
        connection_id: conn,
        remote_id: remote_id.to_owned(),
        person_id,
        field: c.field.clone(),
        element: c.element.clone(),
        base: c.base.clone(),
        crm: c.crm.clone(),
        remote: c.remote.clone(),
        winner: c.winner,
        at,
    };
    let value = serde_json::to_vec(&rec).map_err(|e| StoreError::Corrupt {
        space: SPACE_CONFLICTS.to_owned(),
        reason: e.to_string(),
    })?;
    batch.put(SPACE_CONFLICTS, key(conn, id), value);
    Ok(rec)
}

/// A page of a connection's conflicts, oldest first, with ids strictly above `after`.
pub async fn list(
    store: &dyn Store,
    conn: ConnectionId,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<ConflictRecord>, StoreError> {
    let after_key = after.map(|a| key(conn, a));
    let page = store
        .scan(
            SPACE_CONFLICTS,
            &conn.to_be_bytes(),
            after_key.as_deref(),
            limit,
        )
        .await?;
    page.entries
        .iter()
        .map(|(_, v)| {
            serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
                space: SPACE_CONFLICTS.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}
