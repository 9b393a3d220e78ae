//! Shared scaffolding of the server tests and benches: an in-memory [`Store`] (ordered map,
//! range scans) until the `store` branch's `MemoryStore` lands, and a CRM with users.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cardbridge::crm::repo::{CrmConfig, NewUser};
use cardbridge::crm::Crm;
use cardbridge::store::{Batch, ScanPage, Space, Store, StoreError, Write};

/// An ordered in-memory store: one map per keyspace.
#[derive(Default)]
pub struct MemStore {
    data: Mutex<BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>>,
    seqs: Mutex<BTreeMap<&'static str, u64>>,
}

#[async_trait]
impl Store for MemStore {
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .data
            .lock()
            .unwrap()
            .get(space)
            .and_then(|m| m.get(key).cloned()))
    }
    async fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        let data = self.data.lock().unwrap();
        let Some(m) = data.get(space) else {
            return Ok(ScanPage::default());
        };
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = m
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit + 1)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let next_after = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(ScanPage {
            entries,
            next_after,
        })
    }
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mut data = self.data.lock().unwrap();
        for e in &batch.expects {
            let cur = data.get(e.space).and_then(|m| m.get(&e.key));
            if cur != e.expected.as_ref() {
                return Err(StoreError::Conflict {
                    space: e.space.to_string(),
                    key: String::from_utf8_lossy(&e.key).into_owned(),
                });
            }
        }
        for w in batch.writes {
            match w {
                Write::Put { space, key, value } => {
                    data.entry(space).or_default().insert(key, value);
                }
                Write::Delete { space, key } => {
                    if let Some(m) = data.get_mut(space) {
                        m.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }
    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        let mut s = self.seqs.lock().unwrap();
        let n = s.entry(sequence).or_insert(0);
        *n += 1;
        Ok(*n)
    }
}

/// A CRM over a fresh [`MemStore`].
pub async fn crm() -> Arc<Crm> {
    Arc::new(
        Crm::open(Arc::new(MemStore::default()), CrmConfig::default())
            .await
            .unwrap(),
    )
}

/// A new user record.
pub fn user(login: &str, password: &str, role: Option<u64>) -> NewUser {
    NewUser {
        login: login.into(),
        name: login.into(),
        email: format!("{login}@example.com"),
        role_id: role,
        is_admin: false,
        password: password.into(),
    }
}
