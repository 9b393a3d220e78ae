//! Persistent state behind the [`Store`] trait.
//!
//! The trait is a small ordered key-value contract: named keyspaces, point reads, ordered
//! prefix scans with paging, and *atomic, durable* batches guarded by compare-and-swap
//! expectations. Everything cardbridge remembers (sync cursors, item state, CRM persons,
//! users, roles, connections, the CardDAV change log, stats, conflicts, credentials) is laid
//! on top of it by typed modules, so a backend only has to get these few operations right.
//!
//! Backends: [`sled_store::SledStore`] (the embedded default) and [`memory::MemoryStore`]
//! (tests). Every backend must pass [`conformance`], unchanged.
//!
//! Architecture invariant: a batch commits entirely or not at all, and is durable when
//! [`Store::commit`] returns `Ok`. The sync engine relies on this to advance a cursor in the
//! same step as the items it covers.

use async_trait::async_trait;

/// A keyspace name. Each typed layer owns its keyspaces and declares them as constants.
pub type Space = &'static str;

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

/// The storage contract. See the module doc; [`conformance`] is its executable specification.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of `key` in `space`.
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries of `space` whose key starts with `prefix`, in ascending key order, strictly after
    /// `after` when given, at most `limit` of them.
    async fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError>;
    /// Applies a batch atomically and durably, after checking its guards.
    async fn commit(&self, batch: Batch) -> Result<(), StoreError>;
    /// The next value of the named monotonic sequence (starts at 1, never repeats, survives
    /// restarts, even crashes).
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
