//! Shared by the sync execute and end-to-end tests: the crate's in-memory store, a wrapper
//! that "crashes" after k commits, an in-memory address book [`Provider`] with ETags,
//! incremental and full-listing pulls, and helpers to build a CRM.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cardbridge::crm::repo::{CrmConfig, NewUser};
use cardbridge::crm::{Crm, User};
use cardbridge::providers::{
    Page, Provider, ProviderError, ProviderKind, PullKind, RemoteChange, RemoteItem, SyncGroup,
    SyncGroupKind, Written,
};
use cardbridge::store::{Batch, ScanPage, Space, Store, StoreError};
use cardbridge::vcard::{read_normalized, uid, write_v4, VCard};

/// The crate's in-memory backend (it passes the store conformance suite).
pub type MapStore = cardbridge::store::MemoryStore;

/// A store whose commits fail (nothing written) once `left` commits have succeeded: the
/// process "crashes" at that point. Reads keep working.
pub struct CrashStore {
    pub inner: Arc<MapStore>,
    pub left: AtomicI64,
}

impl CrashStore {
    pub fn new(inner: Arc<MapStore>, commits: i64) -> Self {
        CrashStore {
            inner,
            left: AtomicI64::new(commits),
        }
    }
    pub fn crashed(&self) -> bool {
        self.left.load(Ordering::SeqCst) < 0
    }
}

#[async_trait]
impl Store for CrashStore {
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(space, key).await
    }
    async fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        self.inner.scan(space, prefix, after, limit).await
    }
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if self.left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(StoreError::Backend("injected crash".into()));
        }
        self.inner.commit(batch).await
    }
    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        self.inner.next_id(sequence).await
    }
}

/// A card from a few properties. `extra` lines are added verbatim.
pub fn card(uid: &str, name: &str, emails: &[&str], extra: &[&str]) -> VCard {
    let mut t = format!("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{uid}\r\nFN:{name}\r\n");
    for e in emails {
        t.push_str(&format!("EMAIL;TYPE=work:{e}\r\n"));
    }
    for x in extra {
        t.push_str(x);
        t.push_str("\r\n");
    }
    t.push_str("END:VCARD\r\n");
    read_normalized(&t).cards.remove(0)
}

/// The text value of the first `prop` line of a card, via its vCard 4 text.
pub fn prop(card: &VCard, name: &str) -> Option<String> {
    let text = write_v4(card);
    text.lines()
        .find(|l| {
            let head = l.split(':').next().unwrap_or_default();
            head.split(';').next() == Some(name)
        })
        .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
}

#[derive(Debug, Clone)]
pub struct Stored {
    pub card: VCard,
    pub etag: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create(String),
    Update(String, Option<String>),
    Delete(String, Option<String>),
}

#[derive(Default)]
pub struct BookState {
    pub cards: BTreeMap<String, Stored>,
    /// id → the change sequence of its last change (deleted ids too).
    changed: BTreeMap<String, u64>,
    /// The same, by sequence (one entry per id, at its last change), so that an incremental
    /// pull costs O(changes) and not O(book) (benches/scaling.rs measures the engine with it).
    by_seq: BTreeMap<u64, String>,
    seq: u64,
    next_etag: u64,
    pub invalid: BTreeSet<String>,
    pub calls: Vec<Call>,
    /// Edits applied to a card right before the next provider write to it (a racing user).
    pub race: BTreeMap<String, VCard>,
    /// Incremental cursors of another epoch are expired: the pull starts a full listing.
    epoch: u64,
}

/// An in-memory CardDAV-like address book.
pub struct FakeBook {
    pub state: Mutex<BookState>,
    pub page_size: usize,
    pub kind: ProviderKind,
}

impl FakeBook {
    pub fn new(page_size: usize) -> Arc<Self> {
        Arc::new(FakeBook {
            state: Mutex::new(BookState::default()),
            page_size,
            kind: ProviderKind::Carddav,
        })
    }

    fn touch(st: &mut BookState, id: &str) {
        st.seq += 1;
        if let Some(old) = st.changed.insert(id.to_owned(), st.seq) {
            st.by_seq.remove(&old);
        }
        st.by_seq.insert(st.seq, id.to_owned());
    }

    /// A user edits the address book: put (create or replace) a card.
    pub fn put(&self, id: &str, card: VCard) {
        let mut st = self.state.lock().unwrap();
        st.next_etag += 1;
        let etag = st.next_etag;
        st.cards.insert(id.to_owned(), Stored { card, etag });
        Self::touch(&mut st, id);
    }

    /// A user deletes a card.
    pub fn remove(&self, id: &str) {
        let mut st = self.state.lock().unwrap();
        st.cards.remove(id);
        Self::touch(&mut st, id);
    }

    pub fn get(&self, id: &str) -> Option<VCard> {
        self.state
            .lock()
            .unwrap()
            .cards
            .get(id)
            .map(|s| s.card.clone())
    }

    pub fn ids(&self) -> Vec<String> {
        self.state.lock().unwrap().cards.keys().cloned().collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Every cursor issued so far stops working (the next pull is a full listing).
    pub fn expire_cursors(&self) {
        self.state.lock().unwrap().epoch += 1;
    }

    fn apply_race(st: &mut BookState, id: &str) {
        if let Some(card) = st.race.remove(id) {
            st.next_etag += 1;
            let etag = st.next_etag;
            st.cards.insert(id.to_owned(), Stored { card, etag });
            Self::touch(st, id);
        }
    }

    fn item(&self, st: &BookState, id: &str) -> RemoteChange {
        if st.invalid.contains(id) {
            return RemoteChange::Invalid {
                id: id.to_owned(),
                reason: "broken vCard".into(),
            };
        }
        match st.cards.get(id) {
            Some(s) => RemoteChange::Upsert(RemoteItem {
                id: id.to_owned(),
                etag: Some(format!("\"{}\"", s.etag)),
                card: s.card.clone(),
            }),
            None => RemoteChange::Delete { id: id.to_owned() },
        }
    }
}

fn etag_of(s: &Stored) -> String {
    format!("\"{}\"", s.etag)
}

#[async_trait]
impl Provider for FakeBook {
    fn kind(&self) -> ProviderKind {
        self.kind
    }
    async fn sync_groups(&self) -> Result<Vec<SyncGroup>, ProviderError> {
        Ok(vec![SyncGroup {
            id: "book".into(),
            name: "Book".into(),
            kind: SyncGroupKind::AddressBook,
            writable: true,
        }])
    }
    async fn pull(&self, _group: &str, cursor: Option<&str>) -> Result<Page, ProviderError> {
        let st = self.state.lock().unwrap();
        // Cursors: "seq:N:E" (incremental after N, epoch E), "full:K:N" (listing from id
        // index K, started at seq N).
        let mut parts = cursor.unwrap_or("").split(':');
        let (kind, a, b) = (
            parts.next().unwrap_or(""),
            parts.next().and_then(|x| x.parse::<u64>().ok()),
            parts.next().and_then(|x| x.parse::<u64>().ok()),
        );
        let listing = match (kind, a, b) {
            ("seq", Some(_), Some(e)) if e == st.epoch => None,
            ("full", Some(k), Some(n)) => Some((k as usize, n)),
            _ => Some((0, st.seq)),
        };
        if let Some((from, at)) = listing {
            let ids: Vec<&String> = st.cards.keys().collect();
            let end = (from + self.page_size).min(ids.len());
            let changes = ids[from.min(end)..end]
                .iter()
                .map(|id| self.item(&st, id))
                .collect();
            let complete = end >= ids.len();
            return Ok(Page {
                changes,
                kind: PullKind::FullListing,
                cursor: Some(if complete {
                    format!("seq:{at}:{}", st.epoch)
                } else {
                    format!("full:{end}:{at}")
                }),
                complete,
            });
        }
        let after = a.unwrap_or(0);
        let mut pending: Vec<(u64, &String)> = st
            .by_seq
            .range(after.saturating_add(1)..)
            .take(self.page_size.saturating_add(1))
            .map(|(s, id)| (*s, id))
            .collect();
        let complete = pending.len() <= self.page_size;
        pending.truncate(self.page_size);
        let last = if complete {
            st.seq
        } else {
            pending.last().map(|(s, _)| *s).unwrap_or(after)
        };
        Ok(Page {
            changes: pending.iter().map(|(_, id)| self.item(&st, id)).collect(),
            kind: PullKind::Incremental,
            cursor: Some(format!("seq:{last}:{}", st.epoch)),
            complete,
        })
    }
    async fn fetch(&self, _group: &str, id: &str) -> Result<Option<RemoteItem>, ProviderError> {
        let st = self.state.lock().unwrap();
        Ok(st.cards.get(id).map(|s| RemoteItem {
            id: id.to_owned(),
            etag: Some(etag_of(s)),
            card: s.card.clone(),
        }))
    }
    async fn create(
        &self,
        _group: &str,
        card: &VCard,
        _crm_id: &str,
    ) -> Result<Written, ProviderError> {
        let mut st = self.state.lock().unwrap();
        let id = format!("{}.vcf", uid(card).unwrap_or("no-uid"));
        st.calls.push(Call::Create(id.clone()));
        if st.cards.contains_key(&id) {
            // If-None-Match: * failed.
            return Err(ProviderError::Conflict);
        }
        st.next_etag += 1;
        let etag = st.next_etag;
        st.cards.insert(
            id.clone(),
            Stored {
                card: card.clone(),
                etag,
            },
        );
        Self::touch(&mut st, &id);
        Ok(Written {
            id,
            etag: Some(format!("\"{etag}\"")),
            card: card.clone(),
        })
    }
    async fn update(
        &self,
        _group: &str,
        id: &str,
        etag: Option<&str>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        let mut st = self.state.lock().unwrap();
        st.calls
            .push(Call::Update(id.to_owned(), etag.map(str::to_owned)));
        Self::apply_race(&mut st, id);
        let current = st.cards.get(id).ok_or(ProviderError::NotFound)?;
        if etag.is_some_and(|e| e != etag_of(current)) {
            return Err(ProviderError::Conflict);
        }
        st.next_etag += 1;
        let n = st.next_etag;
        st.cards.insert(
            id.to_owned(),
            Stored {
                card: card.clone(),
                etag: n,
            },
        );
        Self::touch(&mut st, id);
        Ok(Written {
            id: id.to_owned(),
            etag: Some(format!("\"{n}\"")),
            card: card.clone(),
        })
    }
    async fn delete(
        &self,
        _group: &str,
        id: &str,
        etag: Option<&str>,
    ) -> Result<(), ProviderError> {
        let mut st = self.state.lock().unwrap();
        st.calls
            .push(Call::Delete(id.to_owned(), etag.map(str::to_owned)));
        Self::apply_race(&mut st, id);
        let current = st.cards.get(id).ok_or(ProviderError::NotFound)?;
        if etag.is_some_and(|e| e != etag_of(current)) {
            return Err(ProviderError::Conflict);
        }
        st.cards.remove(id);
        Self::touch(&mut st, id);
        Ok(())
    }
}

/// A CRM on `store` with one user (the connection's) and a second one.
pub async fn crm_with_users(store: Arc<dyn Store>) -> (Crm, User, User) {
    let crm = Crm::open(
        store,
        CrmConfig {
            default_region: Some(phonenumber::country::Id::US),
            clock: None,
            shared_store: false,
        },
    )
    .await
    .unwrap();
    let mk = |login: &str| NewUser {
        login: login.into(),
        name: login.into(),
        email: format!("{login}@corp"),
        role_id: None,
        is_admin: false,
        password: "pw".into(),
    };
    let a = crm.create_user(mk("alice")).await.unwrap();
    let b = crm.create_user(mk("bob")).await.unwrap();
    (crm, a, b)
}

/// Reopens the CRM after a crash (a new process).
pub async fn reopen(store: Arc<dyn Store>) -> Crm {
    Crm::open(
        store,
        CrmConfig {
            default_region: Some(phonenumber::country::Id::US),
            clock: None,
            shared_store: false,
        },
    )
    .await
    .unwrap()
}
