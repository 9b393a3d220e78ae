//! Persistent state behind the [`Store`] trait.
//!
//! The trait is a small ordered key-value contract: named keyspaces, point reads, ordered
//! prefix scans with paging, and *atomic, durable* batches guarded by compare-and-swap
//! expectations. Everything cardbridge remembers (sync cursors, item state, CRM persons,
//! users, roles, connections, the CardDAV change log, stats, conflicts, credentials) is laid
//! on top of it by typed modules, so a backend only has to get these few operations right.
//!
//! Backends: [`sled_store::SledStore`] (the embedded default), `postgres::PgStore` (cargo
//! feature `postgres`: several nodes sharing one PostgreSQL) and [`memory::MemoryStore`]
//! (tests). Every backend must pass [`conformance`], unchanged.
//!
//! Architecture invariant: a batch commits entirely or not at all, and is durable when
//! [`Store::commit`] returns `Ok`. The sync engine relies on this to advance a cursor in the
//! same step as the items it covers.
//!
//! The full contract, the key layouts of the typed layers and the crash guarantees are written
//! down in `docs/STORE.md`.

use async_trait::async_trait;

pub mod conformance;
#[cfg(feature = "postgres")]
pub mod leases;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod migrate;
pub mod open;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sled_store;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgSettings, PgStore};
pub use sled_store::SledStore;

/// A keyspace name. Each typed layer owns its keyspaces and declares them as constants.
///
/// A space name is non-empty, at most [`MAX_SPACE_LEN`] bytes, and contains no NUL byte
/// (backends may use NUL as the separator between space and key); see [`check_space`].
pub type Space = &'static str;

/// The longest accepted keyspace (and sequence) name, in bytes.
pub const MAX_SPACE_LEN: usize = 64;

/// Checks that `space` is a valid keyspace or sequence name (see [`Space`]). Backends call
/// this on every operation so that an invalid name is an error, never a silent aliasing of
/// two spaces.
pub fn check_space(space: &str) -> Result<(), StoreError> {
    if space.is_empty() || space.len() > MAX_SPACE_LEN || space.as_bytes().contains(&0) {
        return Err(StoreError::Backend(format!(
            "invalid keyspace name {space:?}: must be 1..={MAX_SPACE_LEN} bytes without NUL"
        )));
    }
    Ok(())
}

/// One write inside a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Insert or replace `key` in `space`.
    Put {
        /// The keyspace.
        space: Space,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` from `space`; removing a missing key is not an error.
    Delete {
        /// The keyspace.
        space: Space,
        /// The key.
        key: Vec<u8>,
    },
}

/// A guard checked atomically with the batch: the current value of `key` in `space` must be
/// `expected` (`None`: the key must be absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The keyspace.
    pub space: Space,
    /// The key.
    pub key: Vec<u8>,
    /// The value the key must hold, or `None` for "absent".
    pub expected: Option<Vec<u8>>,
}

/// An atomic group of writes, with optional compare-and-swap guards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Checked first; if any fails, nothing is written and [`StoreError::Conflict`] is returned.
    pub expects: Vec<Expect>,
    /// Applied in order.
    pub writes: Vec<Write>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(
        &mut self,
        space: Space,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.writes.push(Write::Put {
            space,
            key: key.into(),
            value: value.into(),
        });
        self
    }
    /// Adds a delete.
    pub fn delete(&mut self, space: Space, key: impl Into<Vec<u8>>) -> &mut Self {
        self.writes.push(Write::Delete {
            space,
            key: key.into(),
        });
        self
    }
    /// Adds a guard.
    pub fn expect(
        &mut self,
        space: Space,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
    ) -> &mut Self {
        self.expects.push(Expect {
            space,
            key: key.into(),
            expected,
        });
        self
    }
    /// True when the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.expects.is_empty()
    }
    /// Moves all writes and guards of `other` into `self`.
    pub fn extend(&mut self, other: Batch) {
        self.expects.extend(other.expects);
        self.writes.extend(other.writes);
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A guard of the batch did not hold; nothing was written.
    #[error("conflict: {space}/{key} changed concurrently")]
    Conflict {
        /// The keyspace of the failed guard.
        space: String,
        /// The key of the failed guard, lossily decoded.
        key: String,
    },
    /// The backend failed (I/O, corruption, connection); committed data is untouched.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// A stored value could not be decoded.
    #[error("stored value in {space} is unreadable: {reason}")]
    Corrupt {
        /// The keyspace.
        space: String,
        /// What was wrong.
        reason: String,
    },
    /// The data directory was written by an incompatible schema version.
    #[error("schema version {found} is not supported (this build reads {supported})")]
    Schema {
        /// Version found on disk.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
}

impl StoreError {
    /// The HTTP status an API should answer with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::Conflict { .. } => 409,
            _ => 500,
        }
    }
}

/// One page of an ordered scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Key/value pairs in ascending key order (keys without the keyspace).
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Present when more entries follow: pass it as `after` to get the next page.
    pub next_after: Option<Vec<u8>>,
}

impl ScanPage {
    /// A page of `entries`; `more` says whether matching entries follow, in which case
    /// `next_after` is the last key of the page.
    pub fn new(entries: Vec<(Vec<u8>, Vec<u8>)>, more: bool) -> Self {
        let next_after = if more {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        ScanPage {
            entries,
            next_after,
        }
    }
}

/// The storage contract. See the module doc; [`conformance`] is its executable specification.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of `key` in `space`.
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries of `space` whose key starts with `prefix`, in ascending (bytewise) key order,
    /// strictly after `after` when given, at most `limit` of them.
    ///
    /// `next_after` is `Some(last returned key)` exactly when the page is full and at least one
    /// more matching entry exists. `limit == 0` returns an empty page with `next_after: None`
    /// (it is not an existence probe). `after` may lie outside `prefix`; only entries that match
    /// the prefix *and* sort after it are returned.
    async fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError>;
    /// Applies a batch atomically and durably, after checking its guards.
    ///
    /// All guards are checked against the state the writes are applied to (no other commit
    /// interleaves). If one fails, nothing is written and [`StoreError::Conflict`] names it.
    /// On `Ok`, every write is durable (survives a crash of the process or the machine); on
    /// `Err`, either nothing or (only for `Backend` errors raised while flushing) the whole
    /// batch may be visible after a restart, never a part of it. An empty batch is a no-op.
    async fn commit(&self, batch: Batch) -> Result<(), StoreError>;
    /// The next value of the named monotonic sequence (starts at 1, never repeats, survives
    /// restarts, even crashes).
    ///
    /// Values are strictly increasing per sequence across the life of the data, but need not
    /// be contiguous: a backend may skip values after a restart (the sled backend reserves
    /// blocks). Concurrent callers each get a distinct value. The sequence name follows the
    /// rules of [`Space`]; sequences and keyspaces are separate namespaces.
    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError>;
}

/// Reads every entry under `prefix` (all pages). For small keyspaces and tests.
pub async fn scan_all(
    store: &dyn Store,
    space: Space,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(space, prefix, after.as_deref(), 1024).await?;
        out.extend(page.entries);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}
