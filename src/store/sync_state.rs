//! The typed sync state of each connection, on top of [`Store`]: the connection's cursor and,
//! per remote item, what was last agreed with the remote side ([`ItemState`]).
//!
//! The sync engine stages everything one page of changes produces (item upserts and deletes,
//! the new cursor, and writes of other layers such as persons) in a [`Stage`] and commits it
//! as ONE [`Batch`], so a cursor never advances without the items it covers (issue #3, "Sync
//! state in sled"). [`Stage::into_batch`] guards every item it rewrites with the value it read,
//! so a concurrent writer of the same item makes the whole page fail with
//! [`StoreError::Conflict`] instead of corrupting the person index.
//!
//! # Keys (all integers big-endian, so keys sort numerically)
//! | space | key | value |
//! |---|---|---|
//! | [`SPACE_CURSOR`] | `conn u64` | JSON string ([`Cursor`]) |
//! | [`SPACE_ITEM`] | `conn u64 ++ remote_id (UTF-8)` | JSON [`ItemState`] |
//! | [`SPACE_ITEM_BY_PERSON`] | `conn u64 ++ person u64 ++ remote_id (UTF-8)` | empty |
//!
//! The person index is multi-valued: two remote cards may be linked to one person (a
//! duplicate in the address book); [`SyncState::items_for_person`] returns all of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Batch, Space, Store, StoreError};

/// A connection id (one user's link to one address book).
pub type ConnectionId = u64;
/// A CRM person id, as in `crm::person::PersonId`.
pub type PersonId = u64;

/// Keyspace of the per-connection cursors.
pub const SPACE_CURSOR: Space = "sync.cursor";
/// Keyspace of the per-item state.
pub const SPACE_ITEM: Space = "sync.item";
/// Keyspace of the person → items index.
pub const SPACE_ITEM_BY_PERSON: Space = "sync.item_by_person";

/// Where the next pull resumes: a WebDAV sync token, a CTag, a Graph delta link, an EWS
/// SyncState, a Google sync token. Opaque to the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub String);

/// How an item came to be linked to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// This connection created the person from the remote card (or the card from the person).
    Created,
    /// The remote card was matched to a person that already existed.
    Linked,
}

/// The kind of a push that was started but not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingOp {
    /// PUT with `If-None-Match: *` (or the provider's create).
    Create,
    /// PUT with `If-Match` (or the provider's update).
    Update,
    /// DELETE with `If-Match`.
    Delete,
}

/// A push recorded before it is sent, so that after a crash the engine can tell its own
/// write from a remote change and finish or retry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// What was being done.
    pub op: PendingOp,
    /// The card sent (vCard text as sent on the wire; empty for a delete).
    pub card: String,
}

/// What this connection last agreed with the remote side about one remote item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemState {
    /// The provider's id: a CardDAV href, a Google resource name, a Graph/EWS item id.
    pub remote_id: String,
    /// The last ETag / change key seen for it.
    pub etag: Option<String>,
    /// The vCard UID, when the item has one.
    pub uid: Option<String>,
    /// Fingerprint of the normalized content, to tell real changes from re-serializations.
    pub fingerprint: String,
    /// The CRM person it is linked to.
    pub person_id: Option<PersonId>,
    /// How the link came about.
    pub origin: Origin,
    /// The last agreed card (vCard 4.0 text): the base of the three-way merge.
    pub base_card: String,
    /// The person's version when `base_card` was agreed.
    pub base_person_version: u64,
    /// A push started but not yet confirmed.
    #[serde(default)]
    pub pending: Option<PendingWrite>,
}

/// One page of a connection's items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemPage {
    /// Items in ascending remote-id (bytewise) order.
    pub items: Vec<ItemState>,
    /// Pass as `after` to get the next page; `None` when this was the last one.
    pub next_after: Option<String>,
}

fn conn_prefix(conn: ConnectionId) -> Vec<u8> {
    conn.to_be_bytes().to_vec()
}

fn item_key(conn: ConnectionId, remote_id: &str) -> Vec<u8> {
    let mut k = conn_prefix(conn);
    k.extend_from_slice(remote_id.as_bytes());
    k
}

fn person_prefix(conn: ConnectionId, person: PersonId) -> Vec<u8> {
    let mut k = conn_prefix(conn);
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
        space: space.to_string(),
        reason: reason.to_string(),
    }
}

fn decode_item(raw: &[u8]) -> Result<ItemState, StoreError> {
    serde_json::from_slice(raw).map_err(|e| corrupt(SPACE_ITEM, e))
}

fn encode<T: Serialize>(space: Space, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| corrupt(space, format!("cannot encode: {e}")))
}

fn remote_id_of(key: &[u8], skip: usize) -> Result<String, StoreError> {
    let raw = key
        .get(skip..)
        .ok_or_else(|| corrupt(SPACE_ITEM, "key shorter than its prefix"))?;
    String::from_utf8(raw.to_vec()).map_err(|e| corrupt(SPACE_ITEM, e))
}

/// Reads and stages the sync state of connections.
#[derive(Clone)]
pub struct SyncState {
    store: Arc<dyn Store>,
}

impl SyncState {
    /// Sync state on `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        SyncState { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The connection's cursor, if a pull ever completed a page.
    pub async fn cursor(&self, conn: ConnectionId) -> Result<Option<Cursor>, StoreError> {
        match self.store.get(SPACE_CURSOR, &conn_prefix(conn)).await? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| corrupt(SPACE_CURSOR, e)),
        }
    }

    /// Sets (or, with `None`, forgets) the cursor alone. The engine normally advances it with
    /// [`Stage::set_cursor`] instead, together with the items it covers.
    pub async fn set_cursor(
        &self,
        conn: ConnectionId,
        cursor: Option<&Cursor>,
    ) -> Result<(), StoreError> {
        let mut b = Batch::new();
        match cursor {
            Some(c) => b.put(SPACE_CURSOR, conn_prefix(conn), encode(SPACE_CURSOR, c)?),
            None => b.delete(SPACE_CURSOR, conn_prefix(conn)),
        };
        self.store.commit(b).await
    }

    /// The state of one item.
    pub async fn item(
        &self,
        conn: ConnectionId,
        remote_id: &str,
    ) -> Result<Option<ItemState>, StoreError> {
        self.store
            .get(SPACE_ITEM, &item_key(conn, remote_id))
            .await?
            .map(|raw| decode_item(&raw))
            .transpose()
    }

    /// Every item of `conn` linked to `person`, in remote-id order.
    pub async fn items_for_person(
        &self,
        conn: ConnectionId,
        person: PersonId,
    ) -> Result<Vec<ItemState>, StoreError> {
        let prefix = person_prefix(conn, person);
        let entries = super::scan_all(self.store.as_ref(), SPACE_ITEM_BY_PERSON, &prefix).await?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, _) in entries {
            let remote_id = remote_id_of(&key, prefix.len())?;
            match self.item(conn, &remote_id).await? {
                Some(item) if item.person_id == Some(person) => out.push(item),
                // The index and the items are written in one batch; a dangling entry means
                // the data was damaged outside cardbridge.
                _ => {
                    return Err(corrupt(
                        SPACE_ITEM_BY_PERSON,
                        format!("index entry {conn}/{person}/{remote_id} has no matching item"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// A page of the connection's items, strictly after remote id `after`.
    pub async fn items(
        &self,
        conn: ConnectionId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ItemPage, StoreError> {
        let prefix = conn_prefix(conn);
        let after_key = after.map(|a| item_key(conn, a));
        let page = self
            .store
            .scan(SPACE_ITEM, &prefix, after_key.as_deref(), limit)
            .await?;
        let items = page
            .entries
            .iter()
            .map(|(_, v)| decode_item(v))
            .collect::<Result<Vec<_>, _>>()?;
        let next_after = page
            .next_after
            .map(|k| remote_id_of(&k, prefix.len()))
            .transpose()?;
        Ok(ItemPage { items, next_after })
    }

    /// Every item of the connection (all pages).
    pub async fn all_items(&self, conn: ConnectionId) -> Result<Vec<ItemState>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.items(conn, after.as_deref(), 1024).await?;
            out.extend(page.items);
            match page.next_after {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// A new, empty stage for `conn`.
    pub fn stage(&self, conn: ConnectionId) -> Stage {
        Stage::new(conn)
    }

    /// Commits one page: `items` upserted, `deletes` removed and, when given, the cursor
    /// advanced, all in one atomic batch.
    pub async fn commit_page(
        &self,
        conn: ConnectionId,
        items: Vec<ItemState>,
        deletes: Vec<String>,
        cursor: Option<Cursor>,
    ) -> Result<(), StoreError> {
        let mut stage = self.stage(conn);
        for item in items {
            stage.upsert(item);
        }
        for remote_id in deletes {
            stage.delete(remote_id);
        }
        if let Some(c) = cursor {
            stage.set_cursor(c);
        }
        self.commit(stage).await
    }

    /// Builds the stage's batch and commits it.
    pub async fn commit(&self, stage: Stage) -> Result<(), StoreError> {
        let batch = stage.into_batch(self.store.as_ref()).await?;
        self.store.commit(batch).await
    }

    /// Forgets everything about `conn` (items, index, cursor) in one batch; returns how many
    /// items were removed. For removing a connection or forcing a full resync.
    pub async fn clear_connection(&self, conn: ConnectionId) -> Result<usize, StoreError> {
        let items = self.all_items(conn).await?;
        let mut stage = self.stage(conn);
        for item in &items {
            stage.delete(item.remote_id.clone());
        }
        stage.clear_cursor();
        self.commit(stage).await?;
        Ok(items.len())
    }
}

/// What the cursor should become when the stage commits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CursorChange {
    Keep,
    Set(Cursor),
    Clear,
}

/// Changes of one connection collected for one atomic commit.
///
/// Later calls for the same remote id replace earlier ones (an upsert after a delete wins,
/// and vice versa).
#[derive(Debug, Clone)]
pub struct Stage {
    conn: ConnectionId,
    items: BTreeMap<String, Option<ItemState>>,
    cursor: CursorChange,
    extra: Batch,
}

impl Stage {
    /// An empty stage for `conn`.
    pub fn new(conn: ConnectionId) -> Self {
        Stage {
            conn,
            items: BTreeMap::new(),
            cursor: CursorChange::Keep,
            extra: Batch::new(),
        }
    }

    /// The connection this stage writes.
    pub fn connection(&self) -> ConnectionId {
        self.conn
    }

    /// Inserts or replaces the state of `item.remote_id`.
    pub fn upsert(&mut self, item: ItemState) -> &mut Self {
        self.items.insert(item.remote_id.clone(), Some(item));
        self
    }

    /// Forgets the item (it was deleted on either side).
    pub fn delete(&mut self, remote_id: impl Into<String>) -> &mut Self {
        self.items.insert(remote_id.into(), None);
        self
    }

    /// Advances the cursor in the same commit.
    pub fn set_cursor(&mut self, cursor: Cursor) -> &mut Self {
        self.cursor = CursorChange::Set(cursor);
        self
    }

    /// Removes the cursor in the same commit (the next pull is a full one).
    pub fn clear_cursor(&mut self) -> &mut Self {
        self.cursor = CursorChange::Clear;
        self
    }

    /// Writes and guards of other layers (persons, change log) that must commit atomically
    /// with this page.
    pub fn batch_mut(&mut self) -> &mut Batch {
        &mut self.extra
    }

    /// True when committing would change nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.cursor == CursorChange::Keep && self.extra.is_empty()
    }

    /// Turns the stage into one batch. It reads the current state of every staged item to
    /// keep the person index exact, and guards each item with the value read, so the batch
    /// fails with [`StoreError::Conflict`] if the item changes before it commits.
    pub async fn into_batch(self, store: &dyn Store) -> Result<Batch, StoreError> {
        let conn = self.conn;
        let mut batch = Batch::new();
        for (remote_id, new) in self.items {
            let key = item_key(conn, &remote_id);
            let current = store.get(SPACE_ITEM, &key).await?;
            let old_person = match &current {
                Some(raw) => decode_item(raw)?.person_id,
                None => None,
            };
            batch.expect(SPACE_ITEM, key.clone(), current);
            let new_person = new.as_ref().and_then(|i| i.person_id);
            if let Some(p) = old_person {
                if new_person != Some(p) {
                    batch.delete(SPACE_ITEM_BY_PERSON, person_key(conn, p, &remote_id));
                }
            }
            match new {
                Some(item) => {
                    if let Some(p) = new_person {
                        batch.put(
                            SPACE_ITEM_BY_PERSON,
                            person_key(conn, p, &remote_id),
                            Vec::new(),
                        );
                    }
                    batch.put(SPACE_ITEM, key, encode(SPACE_ITEM, &item)?);
                }
                None => {
                    batch.delete(SPACE_ITEM, key);
                }
            }
        }
        match self.cursor {
            CursorChange::Keep => {}
            CursorChange::Set(c) => {
                batch.put(SPACE_CURSOR, conn_prefix(conn), encode(SPACE_CURSOR, &c)?);
            }
            CursorChange::Clear => {
                batch.delete(SPACE_CURSOR, conn_prefix(conn));
            }
        }
        batch.extend(self.extra);
        Ok(batch)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, SledStore};

    fn item(remote_id: &str, person: Option<PersonId>) -> ItemState {
        ItemState {
            remote_id: remote_id.to_string(),
            etag: Some(format!("\"etag-{remote_id}\"")),
            uid: Some(format!("uid-{remote_id}")),
            fingerprint: format!("fp-{remote_id}"),
            person_id: person,
            origin: Origin::Created,
            base_card: format!("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:{remote_id}\r\nEND:VCARD\r\n"),
            base_person_version: 1,
            pending: None,
        }
    }

    /// Runs `body` against a memory store and a fresh sled store.
    async fn both<F, Fut>(body: F)
    where
        F: Fn(SyncState) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        body(SyncState::new(Arc::new(MemoryStore::new()))).await;
        let dir = tempfile::tempdir().unwrap();
        body(SyncState::new(Arc::new(
            SledStore::open(dir.path()).unwrap(),
        )))
        .await;
    }

    #[tokio::test]
    async fn cursor_round_trips_per_connection() {
        both(|s| async move {
            assert_eq!(s.cursor(1).await.unwrap(), None);
            s.set_cursor(1, Some(&Cursor("http://x/sync/1".into())))
                .await
                .unwrap();
            s.set_cursor(256, Some(&Cursor("ctag-256".into())))
                .await
                .unwrap();
            assert_eq!(
                s.cursor(1).await.unwrap(),
                Some(Cursor("http://x/sync/1".into()))
            );
            assert_eq!(
                s.cursor(256).await.unwrap(),
                Some(Cursor("ctag-256".into()))
            );
            assert_eq!(s.cursor(2).await.unwrap(), None);
            s.set_cursor(1, None).await.unwrap();
            assert_eq!(s.cursor(1).await.unwrap(), None);
            assert_eq!(
                s.cursor(256).await.unwrap(),
                Some(Cursor("ctag-256".into()))
            );
        })
        .await;
    }

    #[tokio::test]
    async fn items_by_remote_id_and_by_person() {
        both(|s| async move {
            let mut a = item("/ab/a.vcf", Some(7));
            a.pending = Some(PendingWrite {
                op: PendingOp::Update,
                card: "BEGIN:VCARD\r\nEND:VCARD\r\n".into(),
            });
            a.origin = Origin::Linked;
            s.commit_page(1, vec![a.clone(), item("/ab/b.vcf", Some(8))], vec![], None)
                .await
                .unwrap();
            assert_eq!(s.item(1, "/ab/a.vcf").await.unwrap(), Some(a.clone()));
            assert_eq!(s.item(2, "/ab/a.vcf").await.unwrap(), None);
            assert_eq!(s.items_for_person(1, 7).await.unwrap(), vec![a.clone()]);
            assert_eq!(s.items_for_person(2, 7).await.unwrap(), vec![]);
            assert_eq!(
                s.items_for_person(1, 8).await.unwrap()[0].remote_id,
                "/ab/b.vcf"
            );

            // Relinking a to person 8 moves its index entry.
            let mut a2 = a.clone();
            a2.person_id = Some(8);
            s.commit_page(1, vec![a2.clone()], vec![], None)
                .await
                .unwrap();
            assert_eq!(s.items_for_person(1, 7).await.unwrap(), vec![]);
            let for8: Vec<String> = s
                .items_for_person(1, 8)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.remote_id)
                .collect();
            assert_eq!(for8, vec!["/ab/a.vcf", "/ab/b.vcf"]);

            // Unlinking removes it; deleting removes the item and its entry.
            let mut a3 = a2.clone();
            a3.person_id = None;
            s.commit_page(1, vec![a3], vec!["/ab/b.vcf".into()], None)
                .await
                .unwrap();
            assert_eq!(s.items_for_person(1, 8).await.unwrap(), vec![]);
            assert_eq!(s.item(1, "/ab/b.vcf").await.unwrap(), None);
            let index = crate::store::scan_all(s.store().as_ref(), SPACE_ITEM_BY_PERSON, b"")
                .await
                .unwrap();
            assert!(index.is_empty(), "index left behind: {index:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn items_are_listed_in_pages_per_connection() {
        both(|s| async move {
            let ids: Vec<String> = (0..23).map(|i| format!("/ab/{i:03}.vcf")).collect();
            s.commit_page(
                5,
                ids.iter().map(|id| item(id, None)).collect(),
                vec![],
                None,
            )
            .await
            .unwrap();
            // Neighbouring connections (also one whose id shares leading bytes) stay apart.
            s.commit_page(4, vec![item("/ab/zz.vcf", None)], vec![], None)
                .await
                .unwrap();
            s.commit_page(5 << 8, vec![item("/ab/yy.vcf", None)], vec![], None)
                .await
                .unwrap();
            let mut got = Vec::new();
            let mut after: Option<String> = None;
            let mut pages = 0;
            loop {
                let page = s.items(5, after.as_deref(), 10).await.unwrap();
                pages += 1;
                got.extend(page.items.into_iter().map(|i| i.remote_id));
                match page.next_after {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            assert_eq!(pages, 3);
            assert_eq!(got, ids);
            assert_eq!(s.all_items(5).await.unwrap().len(), 23);
            assert_eq!(s.all_items(4).await.unwrap().len(), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn a_page_commits_items_cursor_and_extra_writes_together() {
        both(|s| async move {
            s.commit_page(
                1,
                vec![item("a", Some(1))],
                vec![],
                Some(Cursor("t1".into())),
            )
            .await
            .unwrap();

            let mut stage = s.stage(1);
            stage
                .upsert(item("b", Some(2)))
                .delete("a")
                .set_cursor(Cursor("t2".into()));
            stage
                .batch_mut()
                .put("persons", 2u64.to_be_bytes().to_vec(), b"{}".to_vec());
            let batch = stage.into_batch(s.store().as_ref()).await.unwrap();

            // Someone changes item `a` between staging and committing: the page must fail
            // as a whole: no item, no cursor, no person.
            s.commit_page(1, vec![item("a", Some(3))], vec![], None)
                .await
                .unwrap();
            let err = s.store().commit(batch).await.unwrap_err();
            assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
            assert_eq!(s.cursor(1).await.unwrap(), Some(Cursor("t1".into())));
            assert_eq!(s.item(1, "b").await.unwrap(), None);
            assert_eq!(s.item(1, "a").await.unwrap().unwrap().person_id, Some(3));
            assert_eq!(
                s.store().get("persons", &2u64.to_be_bytes()).await.unwrap(),
                None
            );

            // Restaged on the fresh state, it commits everything at once.
            let mut stage = s.stage(1);
            stage
                .upsert(item("b", Some(2)))
                .delete("a")
                .set_cursor(Cursor("t2".into()));
            stage
                .batch_mut()
                .put("persons", 2u64.to_be_bytes().to_vec(), b"{}".to_vec());
            s.commit(stage).await.unwrap();
            assert_eq!(s.cursor(1).await.unwrap(), Some(Cursor("t2".into())));
            assert_eq!(s.item(1, "a").await.unwrap(), None);
            assert_eq!(s.items_for_person(1, 3).await.unwrap(), vec![]);
            assert_eq!(s.items_for_person(1, 2).await.unwrap().len(), 1);
            assert_eq!(
                s.store().get("persons", &2u64.to_be_bytes()).await.unwrap(),
                Some(b"{}".to_vec())
            );
        })
        .await;
    }

    #[tokio::test]
    async fn later_staging_of_the_same_item_wins() {
        both(|s| async move {
            let mut stage = s.stage(1);
            stage.upsert(item("a", Some(1))).delete("a");
            stage.delete("b").upsert(item("b", Some(2)));
            assert!(!stage.is_empty());
            s.commit(stage).await.unwrap();
            assert_eq!(s.item(1, "a").await.unwrap(), None);
            assert_eq!(s.items_for_person(1, 1).await.unwrap(), vec![]);
            assert_eq!(s.item(1, "b").await.unwrap().unwrap().person_id, Some(2));
            assert!(s.stage(1).is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn clear_connection_forgets_items_index_and_cursor() {
        both(|s| async move {
            s.commit_page(
                3,
                vec![item("a", Some(1)), item("b", None)],
                vec![],
                Some(Cursor("t".into())),
            )
            .await
            .unwrap();
            s.commit_page(
                4,
                vec![item("a", Some(1))],
                vec![],
                Some(Cursor("u".into())),
            )
            .await
            .unwrap();
            assert_eq!(s.clear_connection(3).await.unwrap(), 2);
            assert_eq!(s.all_items(3).await.unwrap(), vec![]);
            assert_eq!(s.cursor(3).await.unwrap(), None);
            assert_eq!(s.items_for_person(3, 1).await.unwrap(), vec![]);
            assert_eq!(s.items_for_person(4, 1).await.unwrap().len(), 1);
            assert_eq!(s.cursor(4).await.unwrap(), Some(Cursor("u".into())));
        })
        .await;
    }

    #[tokio::test]
    async fn unreadable_values_are_corrupt_not_panics() {
        both(|s| async move {
            let mut b = Batch::new();
            b.put(SPACE_ITEM, item_key(1, "x"), b"not json".to_vec());
            b.put(SPACE_CURSOR, conn_prefix(1), vec![0xff]);
            b.put(SPACE_ITEM_BY_PERSON, person_key(1, 9, "ghost"), Vec::new());
            s.store().commit(b).await.unwrap();
            assert!(matches!(
                s.item(1, "x").await,
                Err(StoreError::Corrupt { .. })
            ));
            assert!(matches!(s.cursor(1).await, Err(StoreError::Corrupt { .. })));
            assert!(matches!(
                s.items(1, None, 10).await,
                Err(StoreError::Corrupt { .. })
            ));
            assert!(matches!(
                s.items_for_person(1, 9).await,
                Err(StoreError::Corrupt { .. })
            ));
        })
        .await;
    }

    #[tokio::test]
    async fn state_survives_a_sled_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SyncState::new(Arc::new(SledStore::open(dir.path()).unwrap()));
            s.commit_page(
                9,
                vec![item("é/ü.vcf", Some(42))],
                vec![],
                Some(Cursor("tok".into())),
            )
            .await
            .unwrap();
        }
        let s = SyncState::new(Arc::new(SledStore::open(dir.path()).unwrap()));
        assert_eq!(s.cursor(9).await.unwrap(), Some(Cursor("tok".into())));
        assert_eq!(
            s.items_for_person(9, 42).await.unwrap(),
            vec![item("é/ü.vcf", Some(42))]
        );
    }

    #[test]
    fn keys_sort_numerically() {
        assert!(item_key(1, "zzz") < item_key(2, ""));
        assert!(item_key(255, "a") < item_key(256, "a"));
        assert!(person_key(1, 2, "z") < person_key(1, 10, "a"));
        assert!(person_key(1, u64::MAX, "") < person_key(2, 0, ""));
    }
}
