//! [`MemoryStore`]: the in-memory [`Store`] backend, a `BTreeMap` per keyspace behind one
//! mutex. Used by the unit tests of the layers above the store; it passes the conformance
//! suite except the durability checks (it has nothing to reopen).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{check_space, Batch, ScanPage, Space, Store, StoreError, Write};

#[derive(Default)]
struct Inner {
    spaces: HashMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    sequences: HashMap<String, u64>,
}

/// An in-memory store. Cheap to create; all data is lost when it is dropped.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a panic happened mid-operation; every operation mutates only
        // after all checks pass, so the data is still consistent, but say so rather than hide it.
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        check_space(space)?;
        let inner = self.lock()?;
        Ok(inner.spaces.get(space).and_then(|m| m.get(key)).cloned())
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
        let inner = self.lock()?;
        let Some(map) = inner.spaces.get(space) else {
            return Ok(ScanPage::default());
        };
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut entries = Vec::new();
        let mut more = false;
        for (k, v) in map.range((lower, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push((k.clone(), v.clone()));
        }
        Ok(ScanPage::new(entries, more))
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        for e in &batch.expects {
            check_space(e.space)?;
        }
        for w in &batch.writes {
            match w {
                Write::Put { space, .. } | Write::Delete { space, .. } => check_space(space)?,
            }
        }
        let mut inner = self.lock()?;
        for e in &batch.expects {
            let current = inner.spaces.get(e.space).and_then(|m| m.get(&e.key));
            if current != e.expected.as_ref() {
                return Err(StoreError::Conflict {
                    space: e.space.to_string(),
                    key: String::from_utf8_lossy(&e.key).into_owned(),
                });
            }
        }
        for w in batch.writes {
            match w {
                Write::Put { space, key, value } => {
                    inner
                        .spaces
                        .entry(space.to_string())
                        .or_default()
                        .insert(key, value);
                }
                Write::Delete { space, key } => {
                    if let Some(m) = inner.spaces.get_mut(space) {
                        m.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        check_space(sequence)?;
        let mut inner = self.lock()?;
        let slot = inner.sequences.entry(sequence.to_string()).or_insert(0);
        *slot = slot
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend(format!("sequence {sequence} exhausted")))?;
        Ok(*slot)
    }
}
