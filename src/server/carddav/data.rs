//! The CardDAV server's own persistent state over [`Store`] (keyspaces `carddav.*`) and the
//! per-user *view*: the materialized set of persons a user can see, its change log, its ctag and
//! its sync tokens. See the parent module doc for the design; this file owns the keys, records
//! and the catch-up algorithm.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::crm::repo::NewUser;
use crate::crm::{access, AccessContext, Crm, CrmError, Person, PersonFields, PersonId, User};
use crate::store::{scan_all, Batch, Space, Store, StoreError};

/// The client's card per person: person id (8 BE) → JSON [`StoredCard`].
pub const CARDS: Space = "carddav.cards";
/// UID index: UID bytes ++ 0x00 ++ person id (8 BE) → empty.
pub const UIDS: Space = "carddav.uids";
/// Href names: user (8) ++ collection (8) ++ name bytes → person id (8 BE).
pub const NAMES: Space = "carddav.names";
/// Reverse href names: user (8) ++ collection (8) ++ person id (8) → name bytes.
pub const HREFS: Space = "carddav.hrefs";
/// Collections: user (8) ++ collection (8) → JSON [`Collection`].
pub const COLLS: Space = "carddav.colls";
/// Custom-collection membership: user (8) ++ person id (8) → JSON list of collection ids.
pub const PCOLL: Space = "carddav.pcoll";
/// The view snapshot: user (8) ++ person id (8) → person version (8 BE) for every person the
/// user could see when the view was last caught up.
pub const MEMBER: Space = "carddav.member";
/// The view log: user (8) ++ collection (8) ++ seq (8) ++ person id (8) → [`VlogValue`].
pub const VLOG: Space = "carddav.vlog";
/// The view state: user (8) → JSON [`ViewState`].
pub const VSTATE: Space = "carddav.vstate";
/// Sequence of collection ids (0 is the built-in `persons` collection).
pub const SEQ_COLL: Space = "carddav.seq.coll";

/// The id of the built-in collection holding every visible person.
pub const PERSONS_COLL: u64 = 0;
/// Its path segment.
pub const PERSONS_SLUG: &str = "persons";

/// Why a server-state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The CRM failed.
    #[error(transparent)]
    Crm(#[from] CrmError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The card a client last PUT for a person, kept so that everything the CRM does not model
/// comes back as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCard {
    /// The body exactly as the client sent it.
    pub text: String,
    /// Its vCard version (`3.0` or `4.0`).
    pub version: String,
    /// Its UID.
    pub uid: String,
    /// The person's fields right after that PUT: while the person still has them, the client's
    /// text is served verbatim.
    pub fields: PersonFields,
    /// The person's version right after that PUT (absent in cards stored before it was
    /// recorded). While the person is still at it, its fields are the ones above, so the text
    /// can be served without decoding and comparing them ([`Data::card_head`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_version: Option<u64>,
}

/// A [`StoredCard`] without its fields, for the read path of GET and REPORTs: decoding the
/// stored fields of every card was a fifth of an initial sync's instructions (docs/BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredCardHead {
    /// The body exactly as the client sent it.
    pub text: String,
    /// Its vCard version (`3.0` or `4.0`).
    pub version: String,
    /// The person's version right after the PUT, when recorded.
    #[serde(default)]
    pub person_version: Option<u64>,
}

/// A user's address book collection (the built-in one only stores its dead properties here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Collection {
    /// Its id ([`PERSONS_COLL`] for the built-in one).
    pub id: u64,
    /// Its path segment.
    pub slug: String,
    /// Dead properties set by PROPPATCH/MKCOL: Clark name → text.
    pub props: BTreeMap<String, String>,
}

/// A position in a view log: (change sequence, person id). Tokens and ctags are positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Pos {
    /// CRM change sequence.
    pub seq: u64,
    /// Person id within that sequence.
    pub pid: u64,
}

/// Prefix of sync tokens (RFC 6578 §3.2 wants a URI; any scheme will do, clients treat it as
/// opaque).
pub const TOKEN_PREFIX: &str = "urn:x-cardbridge:sync:";
/// Prefix of the tokens of a truncated *initial* sync (resume the member listing after a person).
pub const INIT_TOKEN_PREFIX: &str = "urn:x-cardbridge:init:";

impl Pos {
    /// The opaque sync token (also the ctag).
    pub fn token(&self) -> String {
        format!("{TOKEN_PREFIX}{}-{}", self.seq, self.pid)
    }
}

/// A parsed sync token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Changes after this position.
    Changes(Pos),
    /// An initial listing stopped after person `after`; once it is complete, changes resume
    /// from `from`.
    Initial {
        /// Where the log is read from once the listing is complete.
        from: Pos,
        /// The last person listed.
        after: u64,
    },
}

/// Reads a token; `None` for anything we did not issue.
pub fn parse_token(text: &str) -> Option<Token> {
    let (kind, rest) = if let Some(r) = text.strip_prefix(TOKEN_PREFIX) {
        (0, r)
    } else if let Some(r) = text.strip_prefix(INIT_TOKEN_PREFIX) {
        (1, r)
    } else {
        return None;
    };
    let nums: Vec<u64> = rest
        .split('-')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    match (kind, nums.as_slice()) {
        (0, [seq, pid]) => Some(Token::Changes(Pos {
            seq: *seq,
            pid: *pid,
        })),
        (1, [seq, pid, after]) => Some(Token::Initial {
            from: Pos {
                seq: *seq,
                pid: *pid,
            },
            after: *after,
        }),
        _ => None,
    }
}

/// The token of a truncated initial listing.
pub fn initial_token(from: Pos, after: u64) -> String {
    format!("{INIT_TOKEN_PREFIX}{}-{}-{after}", from.seq, from.pid)
}

/// Per-user view state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ViewState {
    /// Every CRM change up to here is reflected in the snapshot and the logs.
    pub caught_up: u64,
    /// Last log position per collection id (the ctag and the current sync token).
    pub ctags: BTreeMap<u64, Pos>,
}

/// One view-log entry: the person is (now) in or out of the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlogEntry {
    /// Position.
    pub pos: Pos,
    /// In (with its version) or out.
    pub present: Option<u64>,
}

pub(crate) fn k8(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub(crate) fn key(parts: &[u64]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.to_be_bytes()).collect()
}

fn key_with(parts: &[u64], tail: &[u8]) -> Vec<u8> {
    let mut k = key(parts);
    k.extend_from_slice(tail);
    k
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn corrupt(space: Space, reason: impl Into<String>) -> DataError {
    DataError::Store(StoreError::Corrupt {
        space: space.to_string(),
        reason: reason.into(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(space: Space, b: &[u8]) -> Result<T, DataError> {
    serde_json::from_slice(b).map_err(|e| corrupt(space, e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, DataError> {
    serde_json::to_vec(v)
        .map_err(|e| DataError::Store(StoreError::Backend(format!("cannot encode: {e}"))))
}

/// The default href name of a person that has no client-chosen name in a collection.
pub fn default_name(pid: PersonId) -> String {
    format!("crm-{pid}.vcf")
}

/// The person id a default name stands for.
pub fn parse_default_name(name: &str) -> Option<PersonId> {
    let digits = name.strip_prefix("crm-")?.strip_suffix(".vcf")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// Access to the server's state. Cheap to clone.
#[derive(Clone)]
pub struct Data {
    crm: Crm,
    /// Serializes view catch-up per user.
    locks: Arc<Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Data {
    /// Wraps the CRM (and its store).
    pub fn new(crm: Crm) -> Self {
        Self {
            crm,
            locks: Arc::default(),
        }
    }

    /// The CRM.
    pub fn crm(&self) -> &Crm {
        &self.crm
    }

    fn store(&self) -> &dyn Store {
        self.crm.store().as_ref()
    }

    /// The lock serializing `user`'s view catch-up and collection writes.
    pub fn user_lock(&self, user: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(user).or_default().clone()
    }

    // ------------------------------------------------------------------ cards and names

    /// The stored client card of a person.
    /// The client's card of a person without its stored fields (their JSON is skipped, not
    /// decoded).
    pub async fn card_head(&self, pid: PersonId) -> Result<Option<StoredCardHead>, DataError> {
        match self.store().get(CARDS, &k8(pid)).await? {
            Some(b) => Ok(Some(decode(CARDS, &b)?)),
            None => Ok(None),
        }
    }

    pub async fn card(&self, pid: PersonId) -> Result<Option<StoredCard>, DataError> {
        match self.store().get(CARDS, &k8(pid)).await? {
            Some(b) => Ok(Some(decode(CARDS, &b)?)),
            None => Ok(None),
        }
    }

    /// Adds the storing of a client card to `batch` (replacing `old`'s UID entry).
    pub fn stage_card(
        &self,
        batch: &mut Batch,
        pid: PersonId,
        card: &StoredCard,
        old: Option<&StoredCard>,
    ) -> Result<(), DataError> {
        if let Some(old) = old {
            if old.uid != card.uid {
                batch.delete(UIDS, uid_key(&old.uid, pid));
            }
        }
        batch.put(UIDS, uid_key(&card.uid, pid), Vec::new());
        batch.put(CARDS, k8(pid).to_vec(), encode(card)?);
        Ok(())
    }

    /// Adds the removal of a person's card to `batch`.
    pub fn stage_card_delete(&self, batch: &mut Batch, pid: PersonId, old: Option<&StoredCard>) {
        if let Some(old) = old {
            batch.delete(UIDS, uid_key(&old.uid, pid));
        }
        batch.delete(CARDS, k8(pid).to_vec());
    }

    /// Persons whose stored card has this UID.
    pub async fn persons_with_uid(&self, uid: &str) -> Result<Vec<PersonId>, DataError> {
        let mut prefix = uid.as_bytes().to_vec();
        prefix.push(0);
        Ok(scan_all(self.store(), UIDS, &prefix)
            .await?
            .iter()
            .filter_map(|(k, _)| u64_at(k, prefix.len()))
            .filter(|_| true)
            .collect())
    }

    /// The person a client-chosen name stands for in a user's collection.
    pub async fn name_target(
        &self,
        user: u64,
        coll: u64,
        name: &str,
    ) -> Result<Option<PersonId>, DataError> {
        Ok(self
            .store()
            .get(NAMES, &key_with(&[user, coll], name.as_bytes()))
            .await?
            .and_then(|b| u64_at(&b, 0)))
    }

    /// A person's client-chosen name in a user's collection.
    pub async fn chosen_name(
        &self,
        user: u64,
        coll: u64,
        pid: PersonId,
    ) -> Result<Option<String>, DataError> {
        Ok(self
            .store()
            .get(HREFS, &key(&[user, coll, pid]))
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// A person's href name in a user's collection.
    pub async fn name_of(&self, user: u64, coll: u64, pid: PersonId) -> Result<String, DataError> {
        Ok(self
            .chosen_name(user, coll, pid)
            .await?
            .unwrap_or_else(|| default_name(pid)))
    }

    /// Every client-chosen name in a user's collection: person → name.
    pub async fn names_in(
        &self,
        user: u64,
        coll: u64,
    ) -> Result<HashMap<PersonId, String>, DataError> {
        let prefix = key(&[user, coll]);
        Ok(scan_all(self.store(), HREFS, &prefix)
            .await?
            .into_iter()
            .filter_map(|(k, v)| Some((u64_at(&k, 16)?, String::from_utf8(v).ok()?)))
            .collect())
    }

    /// The client-chosen names of `pids` in a user's collection (person → name; a person
    /// without one is left out), one lookup each: O(pids), whatever the collection's size.
    pub async fn names_of(
        &self,
        user: u64,
        coll: u64,
        pids: &[PersonId],
    ) -> Result<HashMap<PersonId, String>, DataError> {
        let mut out = HashMap::with_capacity(pids.len());
        for &pid in pids {
            if let Some(name) = self.chosen_name(user, coll, pid).await? {
                out.insert(pid, name);
            }
        }
        Ok(out)
    }

    /// Adds a name ↔ person mapping to `batch`.
    pub fn stage_name(&self, batch: &mut Batch, user: u64, coll: u64, name: &str, pid: PersonId) {
        batch.put(
            NAMES,
            key_with(&[user, coll], name.as_bytes()),
            k8(pid).to_vec(),
        );
        batch.put(HREFS, key(&[user, coll, pid]), name.as_bytes().to_vec());
    }

    /// Adds the removal of a name mapping to `batch`.
    pub fn stage_name_delete(
        &self,
        batch: &mut Batch,
        user: u64,
        coll: u64,
        name: &str,
        pid: PersonId,
    ) {
        batch.delete(NAMES, key_with(&[user, coll], name.as_bytes()));
        batch.delete(HREFS, key(&[user, coll, pid]));
    }

    /// The custom collections a person was created in, for a user.
    pub async fn person_colls(&self, user: u64, pid: PersonId) -> Result<Vec<u64>, DataError> {
        match self.store().get(PCOLL, &key(&[user, pid])).await? {
            Some(b) => decode(PCOLL, &b),
            None => Ok(vec![]),
        }
    }

    /// Adds membership of a new person in a custom collection to `batch`.
    pub fn stage_person_coll(
        &self,
        batch: &mut Batch,
        user: u64,
        pid: PersonId,
        coll: u64,
    ) -> Result<(), DataError> {
        batch.put(PCOLL, key(&[user, pid]), encode(&vec![coll])?);
        Ok(())
    }

    // ------------------------------------------------------------------ collections

    /// A user's custom collections plus the stored record of the built-in one.
    pub async fn collections(&self, user: u64) -> Result<Vec<Collection>, DataError> {
        let mut out: Vec<Collection> = scan_all(self.store(), COLLS, &k8(user))
            .await?
            .iter()
            .map(|(_, v)| decode(COLLS, v))
            .collect::<Result<_, _>>()?;
        if !out.iter().any(|c| c.id == PERSONS_COLL) {
            out.insert(
                0,
                Collection {
                    id: PERSONS_COLL,
                    slug: PERSONS_SLUG.to_string(),
                    props: BTreeMap::new(),
                },
            );
        }
        Ok(out)
    }

    /// The collection with this path segment.
    pub async fn collection(&self, user: u64, slug: &str) -> Result<Option<Collection>, DataError> {
        Ok(self
            .collections(user)
            .await?
            .into_iter()
            .find(|c| c.slug == slug))
    }

    /// Writes a collection record.
    pub async fn put_collection(&self, user: u64, c: &Collection) -> Result<(), DataError> {
        let mut b = Batch::new();
        b.put(COLLS, key(&[user, c.id]), encode(c)?);
        self.store().commit(b).await?;
        Ok(())
    }

    /// Creates a custom collection; its log starts at the user's current view position.
    pub async fn create_collection(
        &self,
        user: &User,
        slug: &str,
        props: BTreeMap<String, String>,
    ) -> Result<Collection, DataError> {
        let lock = self.user_lock(user.id);
        let _g = lock.lock().await;
        let mut st = self.catch_up_locked(user).await?;
        let before = encode(&st)?;
        let id = self.store().next_id(SEQ_COLL).await?;
        let c = Collection {
            id,
            slug: slug.to_string(),
            props,
        };
        st.ctags.insert(
            id,
            Pos {
                seq: st.caught_up,
                pid: u64::MAX,
            },
        );
        let mut b = Batch::new();
        b.put(COLLS, key(&[user.id, id]), encode(&c)?);
        b.expect(VSTATE, k8(user.id).to_vec(), Some(before));
        b.put(VSTATE, k8(user.id).to_vec(), encode(&st)?);
        self.store().commit(b).await?;
        Ok(c)
    }

    /// Deletes a custom collection (its persons stay in the CRM and in `persons`).
    pub async fn delete_collection(&self, user: u64, id: u64) -> Result<(), DataError> {
        let mut b = Batch::new();
        b.delete(COLLS, key(&[user, id]));
        self.store().commit(b).await?;
        Ok(())
    }

    // ------------------------------------------------------------------ the view

    /// The persons in a user's collection as of the view snapshot: person → version.
    pub async fn members(
        &self,
        user: u64,
        coll: u64,
    ) -> Result<BTreeMap<PersonId, u64>, DataError> {
        let mut out = BTreeMap::new();
        for (k, v) in scan_all(self.store(), MEMBER, &k8(user)).await? {
            let (Some(pid), Some(ver)) = (u64_at(&k, 8), u64_at(&v, 0)) else {
                return Err(corrupt(MEMBER, "bad member entry"));
            };
            if coll != PERSONS_COLL && !self.person_colls(user, pid).await?.contains(&coll) {
                continue;
            }
            out.insert(pid, ver);
        }
        Ok(out)
    }

    /// Log entries of a user's collection strictly after `after`, at most `limit`.
    pub async fn log_after(
        &self,
        user: u64,
        coll: u64,
        after: Pos,
        limit: usize,
    ) -> Result<(Vec<VlogEntry>, bool), DataError> {
        let prefix = key(&[user, coll]);
        let after_key = key(&[user, coll, after.seq, after.pid]);
        let page = self
            .store()
            .scan(VLOG, &prefix, Some(&after_key), limit)
            .await?;
        let mut out = Vec::with_capacity(page.entries.len());
        for (k, v) in &page.entries {
            let (Some(seq), Some(pid)) = (u64_at(k, 16), u64_at(k, 24)) else {
                return Err(corrupt(VLOG, "bad log key"));
            };
            let present = match v.first() {
                Some(1) => Some(u64_at(v, 1).ok_or_else(|| corrupt(VLOG, "bad log value"))?),
                _ => None,
            };
            out.push(VlogEntry {
                pos: Pos { seq, pid },
                present,
            });
        }
        Ok((out, page.next_after.is_some()))
    }

    /// Brings the user's view up to the CRM's current watermark and returns its state.
    pub async fn catch_up(&self, user: &User) -> Result<ViewState, DataError> {
        let lock = self.user_lock(user.id);
        let _g = lock.lock().await;
        self.catch_up_locked(user).await
    }

    /// Catches up; another node catching the same view up at the same time makes the loser
    /// of the state's compare-and-swap start over from the winner's state.
    async fn catch_up_locked(&self, user: &User) -> Result<ViewState, DataError> {
        let mut attempts = 0;
        loop {
            match self.catch_up_once(user).await {
                Err(DataError::Store(StoreError::Conflict { .. })) if attempts < 8 => {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    async fn catch_up_once(&self, user: &User) -> Result<ViewState, DataError> {
        let watermark = self.crm.current_seq().await?;
        // The state as stored: every commit below is guarded on it (views are shared by nodes).
        let raw = self.store().get(VSTATE, &k8(user.id)).await?;
        let state = match &raw {
            Some(b) => Some(decode::<ViewState>(VSTATE, b)?),
            None => None,
        };
        let Some(mut state) = state else {
            return self
                .rebuild(user, ViewState::default(), watermark, true, raw)
                .await;
        };
        if state.caught_up >= watermark {
            return Ok(state);
        }
        // Collect what changed since the view was last caught up: O(changes).
        let mut touched: BTreeMap<PersonId, u64> = BTreeMap::new();
        let mut context_changed = false;
        let mut from = state.caught_up;
        loop {
            let page = self.crm.changes_since(from, 1000).await?;
            for c in &page.changes {
                match &c.event {
                    crate::crm::ChangeEvent::Person { person_id, .. } => {
                        touched.insert(*person_id, c.seq);
                    }
                    _ => context_changed = true,
                }
            }
            from = page.next_seq;
            if !page.more || from >= watermark {
                break;
            }
        }
        if context_changed {
            return self.rebuild(user, state, watermark, false, raw).await;
        }
        let ctx = self.crm.access_context().await?;
        // The viewer's own record may have changed (role, admin) only through a context event,
        // which took the branch above, so `user` is current here.
        let mut batch = Batch::new();
        let colls = self.live_coll_ids(user.id).await?;
        for (pid, seq) in touched {
            let now = self.crm.get_person(pid).await?;
            let visible = now
                .as_ref()
                .filter(|p| access(user, &p.acl(), &ctx).view)
                .map(|p| p.version);
            let was = self
                .store()
                .get(MEMBER, &key(&[user.id, pid]))
                .await?
                .and_then(|b| u64_at(&b, 0));
            if visible == was {
                continue;
            }
            self.stage_entry(&mut batch, &mut state, user.id, pid, seq, visible, &colls)
                .await?;
        }
        state.caught_up = watermark;
        batch.expect(VSTATE, k8(user.id).to_vec(), raw);
        batch.put(VSTATE, k8(user.id).to_vec(), encode(&state)?);
        self.store().commit(batch).await?;
        Ok(state)
    }

    async fn live_coll_ids(&self, user: u64) -> Result<BTreeSet<u64>, DataError> {
        Ok(self
            .collections(user)
            .await?
            .iter()
            .map(|c| c.id)
            .filter(|id| *id != PERSONS_COLL)
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn stage_entry(
        &self,
        batch: &mut Batch,
        state: &mut ViewState,
        user: u64,
        pid: PersonId,
        seq: u64,
        present: Option<u64>,
        colls: &BTreeSet<u64>,
    ) -> Result<(), DataError> {
        match present {
            Some(v) => batch.put(MEMBER, key(&[user, pid]), k8(v).to_vec()),
            None => batch.delete(MEMBER, key(&[user, pid])),
        };
        let value = match present {
            Some(v) => {
                let mut b = vec![1u8];
                b.extend_from_slice(&k8(v));
                b
            }
            None => vec![0u8],
        };
        let mut targets = vec![PERSONS_COLL];
        if !colls.is_empty() {
            targets.extend(
                self.person_colls(user, pid)
                    .await?
                    .into_iter()
                    .filter(|c| colls.contains(c)),
            );
        }
        for coll in targets {
            batch.put(VLOG, key(&[user, coll, seq, pid]), value.clone());
            let pos = Pos { seq, pid };
            let e = state.ctags.entry(coll).or_default();
            if pos > *e {
                *e = pos;
            }
        }
        Ok(())
    }

    /// Recomputes the whole view (first use, or after a role/plan/role-tree/admin change) and
    /// logs the difference at `watermark`. O(persons): the only non-O(changes) path.
    async fn rebuild(
        &self,
        user: &User,
        mut state: ViewState,
        watermark: u64,
        fresh: bool,
        raw: Option<Vec<u8>>,
    ) -> Result<ViewState, DataError> {
        // The viewer's own role/admin flag may have changed: read it again.
        let viewer = self
            .crm
            .get_user(user.id)
            .await?
            .unwrap_or_else(|| user.clone());
        let ctx = self.crm.access_context().await?;
        let old: BTreeMap<PersonId, u64> = if fresh {
            BTreeMap::new()
        } else {
            self.members(user.id, PERSONS_COLL).await?
        };
        let colls = self.live_coll_ids(user.id).await?;
        let mut batch = Batch::new();
        let mut seen = BTreeSet::new();
        let mut after = None;
        loop {
            let page = self.crm.list_persons(after, 1000).await?;
            for p in &page.persons {
                if !visible(&viewer, p, &ctx) {
                    continue;
                }
                seen.insert(p.id);
                if old.get(&p.id) != Some(&p.version) {
                    self.stage_entry(
                        &mut batch,
                        &mut state,
                        user.id,
                        p.id,
                        watermark,
                        Some(p.version),
                        &colls,
                    )
                    .await?;
                }
            }
            if batch.writes.len() > 4000 {
                self.store().commit(std::mem::take(&mut batch)).await?;
            }
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        for pid in old.keys().filter(|p| !seen.contains(p)) {
            self.stage_entry(
                &mut batch, &mut state, user.id, *pid, watermark, None, &colls,
            )
            .await?;
        }
        if fresh {
            state.ctags.entry(PERSONS_COLL).or_insert(Pos {
                seq: watermark,
                pid: 0,
            });
        }
        state.caught_up = watermark;
        batch.expect(VSTATE, k8(user.id).to_vec(), raw);
        batch.put(VSTATE, k8(user.id).to_vec(), encode(&state)?);
        self.store().commit(batch).await?;
        Ok(state)
    }
}

fn visible(viewer: &User, p: &Person, ctx: &AccessContext) -> bool {
    access(viewer, &p.acl(), ctx).view
}

fn uid_key(uid: &str, pid: PersonId) -> Vec<u8> {
    let mut k = uid.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&k8(pid));
    k
}

/// Test and bench helper: a user with a password (re-exported for integration tests).
pub fn new_user(login: &str, password: &str, role: Option<u64>, is_admin: bool) -> NewUser {
    NewUser {
        login: login.to_string(),
        name: login.to_string(),
        email: format!("{login}@example.com"),
        role_id: role,
        is_admin,
        password: password.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_foreign_text() {
        let p = Pos { seq: 42, pid: 7 };
        assert_eq!(parse_token(&p.token()), Some(Token::Changes(p)));
        assert_eq!(
            parse_token(&initial_token(p, 9)),
            Some(Token::Initial { from: p, after: 9 })
        );
        for bad in [
            "",
            "42",
            "urn:x-cardbridge:sync:",
            "urn:x-cardbridge:sync:1",
            "http://x/1-2",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_card_stored_before_person_version_still_reads_both_ways() {
        // The JSON of a card stored by an earlier build has no person_version key.
        let old = StoredCard {
            text: "BEGIN:VCARD\r\nEND:VCARD\r\n".into(),
            version: "3.0".into(),
            uid: "u1".into(),
            fields: PersonFields {
                name: "Ada".into(),
                ..Default::default()
            },
            person_version: None,
        };
        let legacy = encode(&old).unwrap();
        assert!(!String::from_utf8_lossy(&legacy).contains("person_version"));
        let full: StoredCard = decode(CARDS, &legacy).unwrap();
        assert_eq!(full, old);
        let head: StoredCardHead = decode(CARDS, &legacy).unwrap();
        assert_eq!(head.person_version, None);
        assert_eq!(head.text, full.text);
        // A new one round-trips its version, and the head reads it without the fields.
        let new = StoredCard {
            person_version: Some(4),
            ..full
        };
        let head: StoredCardHead = decode(CARDS, &encode(&new).unwrap()).unwrap();
        assert_eq!(head.person_version, Some(4));
        assert_eq!(head.version, "3.0");
    }

    #[test]
    fn default_names_are_canonical() {
        assert_eq!(parse_default_name(&default_name(17)), Some(17));
        assert_eq!(parse_default_name("crm-017.vcf"), None);
        assert_eq!(parse_default_name("crm-.vcf"), None);
        assert_eq!(parse_default_name("x.vcf"), None);
    }
}
