//! [`SledStore`]: the embedded [`Store`] backend on sled 0.34, cardbridge's default.
//!
//! # Layout
//! - Tree `cardbridge.data` holds every keyspace. A key `k` of space `s` is stored as
//!   `s ++ 0x00 ++ k`. Space names never contain NUL (see [`check_space`]), so the encoded
//!   prefix `s ++ 0x00` of one space is never a prefix of another's (`item\0…` vs
//!   `items\0…` differ at the NUL), ordering inside a space is the bytewise order of `k`, and
//!   a scan is one contiguous range.
//! - Tree `cardbridge.meta` holds the schema version (`schema_version` → u32 big-endian) and
//!   the sequences' reserved high-water marks (`seq\0<name>` → u64 big-endian).
//!
//! One data tree rather than one tree per space: a [`Batch`] touches any number of spaces,
//! and a single-tree sled transaction covers them all without opening trees on the fly or
//! building a multi-tree transaction whose tree set changes per batch. The cost (a few
//! prefix bytes per key) is small.
//!
//! # Commit
//! [`Store::commit`] runs one sled transaction that re-reads every [`Expect`](super::Expect)
//! and applies all writes only if they hold (sled retries the closure on internal conflicts,
//! so guards are always checked against the state the writes land on). It then flushes
//! (fsyncs) the log: on `Ok` the batch is durable. sled recovers a transaction entirely or not
//! at all; `tests/store_crash.rs` kills a writer with SIGKILL to check that for real.
//!
//! The flush is sled's blocking `Db::flush` on tokio's blocking pool, NOT `flush_async`:
//! `flush_async` parks a thread of sled's own small pool (it grows only when more than 7 jobs
//! queue) until the log write is stable, and that write is itself queued on the same pool; 8
//! concurrent commits deadlocked the conformance suite that way.
//!
//! # Sequences
//! [`Store::next_id`] hands out values from a block of [`ID_BLOCK`] reserved in the meta tree
//! (and flushed) before the first value of the block is returned. After a restart (clean or
//! not) the sequence resumes after the reserved block, so values never repeat and always grow,
//! but are not contiguous across restarts: up to `ID_BLOCK - 1` values may be skipped.
//!
//! # Schema
//! [`SCHEMA_VERSION`] is written on first open. A data directory with a newer version is
//! refused with [`StoreError::Schema`]; older versions would be migrated in [`SledStore::open`]
//! (there are none yet).

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{check_space, Batch, ScanPage, Space, Store, StoreError, Write};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// How many sequence values are reserved (and flushed) at a time.
pub const ID_BLOCK: u64 = 1024;

/// The sled tree holding all keyspaces.
const DATA_TREE: &str = "cardbridge.data";
/// The sled tree holding the schema version and sequence reservations.
const META_TREE: &str = "cardbridge.meta";
/// Meta key of the schema version.
const META_SCHEMA: &[u8] = b"schema_version";
/// Meta key prefix of a sequence's reserved high-water mark.
const META_SEQ_PREFIX: &[u8] = b"seq\0";
/// Separator between space and key in the data tree.
const SPACE_SEP: u8 = 0;

/// The part of a sequence's reserved block not handed out yet: `next..=last`.
#[derive(Debug, Clone, Copy)]
struct Block {
    next: u64,
    last: u64,
}

/// A [`Store`] on a sled database directory. Only one `SledStore` may have a directory open
/// at a time (sled holds a lock on it); drop it before reopening.
pub struct SledStore {
    db: sled::Db,
    data: sled::Tree,
    meta: sled::Tree,
    blocks: tokio::sync::Mutex<HashMap<String, Block>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(format!("sled: {e}"))
}

fn encode_key(space: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(space.len() + 1 + key.len());
    out.extend_from_slice(space.as_bytes());
    out.push(SPACE_SEP);
    out.extend_from_slice(key);
    out
}

fn read_u64(space: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        space: space.to_string(),
        reason: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// How long `open` waits for the directory's file lock. sled releases it from its flusher
/// thread a moment *after* the last handle is dropped, so reopening in the same process (a
/// restart in tests, `migrate` after a check) can find it still held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_CAPACITY)
            .open()
        {
            Ok(db) => return Ok(db),
            // sled reports the lock as ErrorKind::Other with this text (config.rs).
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(StoreError::Backend(format!(
                        "sled: the data directory {} is in use by another process ({e})",
                        path.display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

/// sled's page cache. Its default (1 GiB) let a node serving 10,000 persons grow past the
/// 150 MB budget of issue #5 just by reading them all once; the working set of a sync or a
/// CardDAV listing is far smaller, and the OS page cache still holds the files.
const CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

impl SledStore {
    /// Opens (creating if needed) the database directory at `path`, writing the schema version
    /// on first open and refusing a newer one.
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore, StoreError> {
        let db = open_db(path.as_ref())?;
        let data = db.open_tree(DATA_TREE).map_err(backend)?;
        let meta = db.open_tree(META_TREE).map_err(backend)?;
        match meta.get(META_SCHEMA).map_err(backend)? {
            None => {
                meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(backend)?;
                db.flush().map_err(backend)?;
            }
            Some(raw) => {
                let arr: [u8; 4] = raw.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    space: META_TREE.to_string(),
                    reason: format!("schema version has {} bytes, expected 4", raw.len()),
                })?;
                let found = u32::from_be_bytes(arr);
                if found != SCHEMA_VERSION {
                    // Newer: refuse. Older: there is no older version yet; a migration to
                    // SCHEMA_VERSION would go here and rewrite the meta key in one batch.
                    return Err(StoreError::Schema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(SledStore {
            db,
            data,
            meta,
            blocks: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The schema version recorded in the directory.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let raw = self
            .meta
            .get(META_SCHEMA)
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt {
                space: META_TREE.to_string(),
                reason: "schema version missing".into(),
            })?;
        let arr: [u8; 4] = raw.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            space: META_TREE.to_string(),
            reason: "schema version is not 4 bytes".into(),
        })?;
        Ok(u32::from_be_bytes(arr))
    }

    /// Flushes everything written so far to disk (see the module doc for why not
    /// `flush_async`).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Backend(format!("flush task failed: {e}")))?
            .map_err(backend)
            .map(|_| ())
    }

    /// Every entry of every keyspace as `(space, key, value)`, in stored order (by space, then
    /// key): what `cardbridge migrate` copies. An entry whose stored key has no separator or
    /// whose space is not UTF-8 is reported as [`StoreError::Corrupt`], not skipped.
    pub fn export(
        &self,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>, Vec<u8>), StoreError>> + Send + '_ {
        self.data.iter().map(|item| {
            let (k, v) = item.map_err(backend)?;
            let corrupt = |reason: &str| StoreError::Corrupt {
                space: DATA_TREE.to_string(),
                reason: format!("{reason}: {:?}", String::from_utf8_lossy(&k)),
            };
            let sep = k
                .iter()
                .position(|b| *b == SPACE_SEP)
                .ok_or_else(|| corrupt("stored key without a space separator"))?;
            let space = std::str::from_utf8(&k[..sep])
                .map_err(|_| corrupt("space name is not UTF-8"))?
                .to_string();
            Ok((space, k[sep + 1..].to_vec(), v.to_vec()))
        })
    }

    /// Every sequence with its reserved high-water mark: no id above it was ever handed out.
    pub fn sequence_marks(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(META_SEQ_PREFIX) {
            let (k, v) = item.map_err(backend)?;
            let name = String::from_utf8(k[META_SEQ_PREFIX.len()..].to_vec()).map_err(|_| {
                StoreError::Corrupt {
                    space: META_TREE.to_string(),
                    reason: "sequence name is not UTF-8".into(),
                }
            })?;
            out.push((name, read_u64(META_TREE, &v)?));
        }
        Ok(out)
    }

    /// Reserves the next block of `sequence` durably and returns it.
    async fn reserve(&self, sequence: &str) -> Result<Block, StoreError> {
        let mut meta_key = META_SEQ_PREFIX.to_vec();
        meta_key.extend_from_slice(sequence.as_bytes());
        let reserved = match self.meta.get(&meta_key).map_err(backend)? {
            Some(raw) => read_u64(META_TREE, &raw)?,
            None => 0,
        };
        let exhausted = || StoreError::Backend(format!("sequence {sequence} exhausted"));
        let next = reserved.checked_add(1).ok_or_else(exhausted)?;
        let last = reserved.checked_add(ID_BLOCK).ok_or_else(exhausted)?;
        self.meta
            .insert(meta_key, &last.to_be_bytes())
            .map_err(backend)?;
        self.flush().await?;
        Ok(Block { next, last })
    }
}

/// A write with its key already encoded.
enum Encoded {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

#[async_trait]
impl Store for SledStore {
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        check_space(space)?;
        Ok(self
            .data
            .get(encode_key(space, key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    async fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        check_space(space)?;
        if limit == 0 {
            return Ok(ScanPage::default());
        }
        let full_prefix = encode_key(space, prefix);
        let strip = space.len() + 1;
        let lower = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(encode_key(space, a)),
            _ => std::ops::Bound::Included(full_prefix.clone()),
        };
        let mut entries = Vec::new();
        let mut more = false;
        for item in self
            .data
            .range::<Vec<u8>, _>((lower, std::ops::Bound::Unbounded))
        {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(&full_prefix) {
                break;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push((k[strip..].to_vec(), v.to_vec()));
        }
        Ok(ScanPage::new(entries, more))
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut expects = Vec::with_capacity(batch.expects.len());
        for e in &batch.expects {
            check_space(e.space)?;
            expects.push((encode_key(e.space, &e.key), e.expected.as_deref()));
        }
        let mut writes = Vec::with_capacity(batch.writes.len());
        for w in &batch.writes {
            writes.push(match w {
                Write::Put { space, key, value } => {
                    check_space(space)?;
                    Encoded::Put(encode_key(space, key), value.clone())
                }
                Write::Delete { space, key } => {
                    check_space(space)?;
                    Encoded::Delete(encode_key(space, key))
                }
            });
        }
        let result = self.data.transaction(|tx| {
            for (i, (key, expected)) in expects.iter().enumerate() {
                let current = tx.get(key)?;
                if current.as_deref() != *expected {
                    return Err(ConflictableTransactionError::Abort(i));
                }
            }
            for w in &writes {
                match w {
                    Encoded::Put(k, v) => {
                        tx.insert(k.as_slice(), v.as_slice())?;
                    }
                    Encoded::Delete(k) => {
                        tx.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(i)) => {
                let (space, key) = batch
                    .expects
                    .get(i)
                    .map(|e| {
                        (
                            e.space.to_string(),
                            String::from_utf8_lossy(&e.key).into_owned(),
                        )
                    })
                    .unwrap_or_default();
                return Err(StoreError::Conflict { space, key });
            }
            Err(TransactionError::Storage(e)) => return Err(backend(e)),
        }
        if !batch.writes.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        check_space(sequence)?;
        let mut blocks = self.blocks.lock().await;
        if let Some(block) = blocks.get_mut(sequence) {
            if block.next <= block.last {
                let id = block.next;
                block.next += 1;
                return Ok(id);
            }
        }
        let mut block = self.reserve(sequence).await?;
        let id = block.next;
        block.next += 1;
        blocks.insert(sequence.to_string(), block);
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn schema_version_is_written_on_first_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        drop(store);
        let raw = {
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree(META_TREE).unwrap();
            meta.get(META_SCHEMA).unwrap().unwrap().to_vec()
        };
        assert_eq!(raw, SCHEMA_VERSION.to_be_bytes().to_vec());
    }

    #[tokio::test]
    async fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree(META_TREE).unwrap();
            meta.insert(META_SCHEMA, &(SCHEMA_VERSION + 1).to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        match SledStore::open(dir.path()) {
            Err(StoreError::Schema { found, supported }) => {
                assert_eq!(found, SCHEMA_VERSION + 1);
                assert_eq!(supported, SCHEMA_VERSION);
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn garbled_schema_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree(META_TREE).unwrap();
            meta.insert(META_SCHEMA, b"xyz").unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn second_open_of_a_locked_directory_is_a_backend_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(StoreError::Backend(_))
        ));
    }

    #[tokio::test]
    async fn keys_are_laid_out_as_space_nul_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut b = Batch::new();
        b.put("items", b"k".to_vec(), b"v".to_vec());
        store.commit(b).await.unwrap();
        let raw: Vec<Vec<u8>> = store
            .data
            .iter()
            .keys()
            .map(|k| k.unwrap().to_vec())
            .collect();
        assert_eq!(raw, vec![b"items\0k".to_vec()]);
    }

    #[tokio::test]
    async fn ids_skip_at_most_one_block_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.next_id("seq").await.unwrap(), 1);
        assert_eq!(store.next_id("seq").await.unwrap(), 2);
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.next_id("seq").await.unwrap(), ID_BLOCK + 1);
    }

    /// Regression (CI flake): reopening right after a drop found sled's file lock still held
    /// by its flusher thread. Reopen many times in a row.
    #[tokio::test]
    async fn reopening_right_after_a_drop_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..20 {
            let store = SledStore::open(dir.path()).unwrap();
            store.next_id("seq").await.unwrap();
            drop(store);
        }
    }

    #[test]
    fn a_directory_held_by_another_handle_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let _held = SledStore::open(dir.path()).unwrap();
        let err = SledStore::open(dir.path()).err().unwrap();
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }
}
