//! The CRM repository over [`Store`]: persons (versioned, compare-and-swap updates, cursor
//! paging), their secondary indexes (owner + normalized email, owner + E.164 phone), users,
//! roles, the company, and the CRM change log that the CardDAV server derives sync results
//! from in O(changes).
//!
//! Every person write puts the person, its index entries and one change-log entry in ONE
//! atomic batch. Callers that must commit other state with it (the sync engine) use the
//! `stage_*` functions, which add the writes to their own [`Batch`].
//!
//! ## Change-log ordering
//! Change sequence numbers come from [`Store::next_id`], so two concurrent writers (in one
//! process or on several nodes sharing a store) may commit out of order.
//! [`Crm::current_seq`] is therefore a *watermark*: the highest sequence up to which every
//! number is *settled in the store*: its change is in [`CHANGES`], or it is voided in
//! [`CHANGES_VOID`]. [`Crm::changes_since`] never returns an entry above it, so a sync token
//! never skips a change that commits late, and since the watermark is a fact of the store,
//! a token from one node is valid on every other.
//!
//! A number is voided (a gap closed) when it is below a committed one and is either this
//! process's and released (its [`Staged`] write was dropped uncommitted) or another
//! writer's and still missing after [`VOID_GRACE`]. Every change write guards that its number
//! is not voided, and a void guards that the change is absent, so exactly one of them
//! commits: a writer slower than the grace gets a `Conflict` and retries; nothing is lost.
//! The per-process state (in-flight numbers, the settled watermark, a store hint at
//! [`LOG_SETTLED`]) only caches store facts that never become false.
//! A [`Staged`] write keeps its sequence in flight until it is dropped: drop it only after the
//! batch has been committed (or abandoned).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::person::{Person, PersonFields, PersonId, RoleId, UserId};
use super::users::{
    hash_password, AuthMethod, Company, CredentialError, NewAppPassword, Plan, Role, RoleError,
    RoleTree, User,
};
use super::visibility::{access, check_allowed, AccessContext, Acl, VisibilityError};
use crate::store::{scan_all, Batch, Space, Store, StoreError};

/// Persons by id (8-byte big-endian) → JSON [`Person`].
pub const PERSONS: Space = "crm.persons";
/// Index: owner (8 bytes BE) ++ normalized email ++ 0x00 ++ person id (8 bytes BE) → empty.
pub const IDX_OWNER_EMAIL: Space = "crm.idx.owner_email";
/// Index: owner (8 bytes BE) ++ E.164 phone (or digits) ++ 0x00 ++ person id (8 BE) → empty.
pub const IDX_OWNER_PHONE: Space = "crm.idx.owner_phone";
/// The change log: sequence (8 bytes BE) → JSON [`Change`].
pub const CHANGES: Space = "crm.changes";
/// Change-log numbers that will never hold a change (allocated, then abandoned): sequence
/// (8 bytes BE) → empty.
pub const CHANGES_VOID: Space = "crm.changes.void";
/// A hint: every change-log number up to this one (8 bytes BE) is settled. Key `settled`.
pub const LOG_SETTLED: Space = "crm.changes.settled";
/// How long another writer's missing change-log number is waited for before it is voided.
pub const VOID_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
/// Users by id (8 bytes BE) → JSON [`User`].
pub const USERS: Space = "crm.users";
/// Login (UTF-8) → user id (8 bytes BE).
pub const USERS_BY_LOGIN: Space = "crm.users.by_login";
/// Roles by id (8 bytes BE) → JSON [`Role`].
pub const ROLES: Space = "crm.roles";
/// The single key [`COMPANY_KEY`] → JSON [`Company`].
pub const COMPANY: Space = "crm.company";
/// Key of the company record in [`COMPANY`].
pub const COMPANY_KEY: &[u8] = b"company";
/// Sequence of person ids.
pub const SEQ_PERSON: Space = "crm.seq.person";
/// Sequence of user ids.
pub const SEQ_USER: Space = "crm.seq.user";
/// Sequence of role ids.
pub const SEQ_ROLE: Space = "crm.seq.role";
/// Sequence of change-log entries.
pub const SEQ_CHANGE: Space = "crm.seq.change";

/// Why a CRM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// No such record.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `person`, `user` or `role`.
        kind: &'static str,
        /// The id looked for.
        id: u64,
    },
    /// The person changed since the caller read it.
    #[error("person {id} is at version {actual:?}, expected {expected}")]
    VersionConflict {
        /// The person.
        id: PersonId,
        /// The version the caller based its write on.
        expected: u64,
        /// The current version (`None`: deleted).
        actual: Option<u64>,
    },
    /// A concurrent write to a user, role or the company won.
    #[error("{0} changed concurrently; retry")]
    Concurrent(&'static str),
    /// The plan does not offer the visibility setting.
    #[error(transparent)]
    Visibility(#[from] VisibilityError),
    /// The role tree refused the change.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The role is still held by users.
    #[error("role {0} is still assigned to users")]
    RoleInUse(RoleId),
    /// The login is taken.
    #[error("login `{0}` is already taken")]
    LoginTaken(String),
    /// A credential could not be hashed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// A sync position ahead of the log.
    #[error("change sequence {requested} is ahead of the log (current {current})")]
    FutureSeq {
        /// Asked for.
        requested: u64,
        /// The current watermark.
        current: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CrmError {
    /// The HTTP status an API should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            CrmError::NotFound { .. } => 404,
            CrmError::VersionConflict { .. } => 412,
            CrmError::Concurrent(_) | CrmError::LoginTaken(_) | CrmError::RoleInUse(_) => 409,
            CrmError::Visibility(e) => e.http_status(),
            CrmError::Role(_) => 422,
            CrmError::FutureSeq { .. } => 403,
            CrmError::Credential(CredentialError::Empty) => 422,
            CrmError::Credential(_) => 500,
            CrmError::Store(e) => e.http_status(),
        }
    }
}

/// What a person change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonChangeKind {
    /// Created or updated.
    Upsert,
    /// Deleted.
    Delete,
}

/// One change-log event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChangeEvent {
    /// A person was written; `before`/`after` let a reader decide, per user, whether the
    /// person appeared, changed or disappeared from that user's view.
    Person {
        /// The person.
        person_id: PersonId,
        /// Upsert or delete.
        kind: PersonChangeKind,
        /// The version written (for a delete: the last version).
        version: u64,
        /// The ACL before (`None`: created).
        before: Option<Acl>,
        /// The ACL after (`None`: deleted).
        after: Option<Acl>,
    },
    /// A user's role changed: that user's view and the audience of their persons may change.
    UserRole {
        /// The user.
        user_id: UserId,
        /// The old role.
        before: Option<RoleId>,
        /// The new role.
        after: Option<RoleId>,
    },
    /// A user's admin flag changed: that user's view changes wholesale.
    UserAdmin {
        /// The user.
        user_id: UserId,
        /// The new flag.
        is_admin: bool,
    },
    /// A user was deleted: their persons lose their owner's role.
    UserRemoved {
        /// The user.
        user_id: UserId,
    },
    /// The role tree changed (a role was added, moved or removed).
    RoleTree {
        /// The role that changed.
        role_id: RoleId,
    },
    /// The company's plan changed: the effective visibility of stored settings may change.
    Plan {
        /// The old plan.
        before: Plan,
        /// The new plan.
        after: Plan,
    },
}

impl ChangeEvent {
    /// True for events that change who sees what beyond one person (a reader must recompute
    /// the affected views rather than apply a delta).
    pub fn is_context_change(&self) -> bool {
        !matches!(self, ChangeEvent::Person { .. })
    }
}

/// One change-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the log (strictly increasing; gaps are allowed).
    pub seq: u64,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// What happened.
    pub event: ChangeEvent,
}

/// A page of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePage {
    /// Changes in sequence order.
    pub changes: Vec<Change>,
    /// Resume from here (a sync token); never beyond [`Crm::current_seq`].
    pub next_seq: u64,
    /// True when the limit stopped the page before the watermark.
    pub more: bool,
}

/// What a page of the change log means for one viewer's address book.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewDelta {
    /// Persons visible to the viewer now that were written in the range: report them
    /// (added or changed; a client cannot tell the difference from a sync report).
    pub upserts: BTreeSet<PersonId>,
    /// Persons the viewer may have seen before that are deleted or no longer visible:
    /// report them as removed (404). May name persons the client never had; that is harmless.
    pub removals: BTreeSet<PersonId>,
    /// An ACL-context change (plan, role tree, a user's role or admin flag, a removed user)
    /// happened in the range: the per-person delta is not enough, recompute the whole view.
    pub context_changed: bool,
}

/// Folds log entries into the delta of one viewer, in O(changes). `ctx` is the CURRENT
/// context; the last `after` ACL of each person in the range is taken as its current ACL, so
/// pass a complete page (changes up to a watermark), in order.
pub fn view_delta(viewer: &User, ctx: &AccessContext, changes: &[Change]) -> ViewDelta {
    let mut last: BTreeMap<PersonId, Option<&Acl>> = BTreeMap::new();
    let mut seen_before: BTreeSet<PersonId> = BTreeSet::new();
    let mut delta = ViewDelta::default();
    for c in changes {
        match &c.event {
            ChangeEvent::Person {
                person_id,
                before,
                after,
                ..
            } => {
                let visible = |a: &Acl| access(viewer, a, ctx).view;
                if before.as_ref().is_some_and(visible) || after.as_ref().is_some_and(visible) {
                    seen_before.insert(*person_id);
                }
                last.insert(*person_id, after.as_ref());
            }
            _ => delta.context_changed = true,
        }
    }
    for (id, now) in last {
        if now.is_some_and(|a| access(viewer, a, ctx).view) {
            delta.upserts.insert(id);
        } else if seen_before.contains(&id) {
            delta.removals.insert(id);
        }
    }
    delta
}

/// A page of persons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonPage {
    /// Persons in id order.
    pub persons: Vec<Person>,
    /// Pass as `after` to get the next page; `None` at the end.
    pub next_after: Option<PersonId>,
}

/// A new user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Unique login.
    pub login: String,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Role.
    pub role_id: Option<RoleId>,
    /// Admin flag.
    pub is_admin: bool,
    /// Plain password; only its argon2 hash is stored.
    pub password: String,
}

/// The time source (tests pin it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Options of a [`Crm`].
#[derive(Clone, Default)]
pub struct CrmConfig {
    /// Region for phone numbers written without a country code (`None`: such numbers fall
    /// back to digits only). Changing it changes index keys of later writes only.
    pub default_region: Option<phonenumber::country::Id>,
    /// The clock; `None` uses the system clock.
    pub clock: Option<Clock>,
    /// Other processes write the same store (nodes sharing PostgreSQL). When `false` (a store
    /// this process holds alone, like sled), a change-log number allocated before
    /// [`Crm::open`] and never committed was abandoned by a process that has stopped, so it is
    /// voided at once instead of after [`VOID_GRACE`].
    pub shared_store: bool,
}

/// A write added to a caller's batch. Keep it until the batch has been committed (or given
/// up): dropping it settles its change sequence (see the module doc).
#[must_use = "drop a Staged write only after its batch has been committed"]
pub struct Staged<T> {
    /// The value the batch writes (for a delete: the removed value).
    pub value: T,
    /// The change-log sequence of the write.
    pub seq: u64,
    _guard: SeqGuard,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Staged<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("value", &self.value)
            .field("seq", &self.seq)
            .finish()
    }
}

#[derive(Default)]
struct LogState {
    /// This process's numbers whose writes may still commit.
    in_flight: BTreeSet<u64>,
    /// This process's numbers whose writes are done (committed or abandoned), above `settled`.
    released: BTreeSet<u64>,
    /// Every number up to here is settled in the store.
    settled: u64,
    /// Other writers' missing numbers, and when this process first saw each missing.
    gaps: BTreeMap<u64, std::time::Instant>,
    /// With a store held alone: a number allocated when this process opened it. Every missing
    /// number below it belongs to a stopped process (0: the store is shared).
    opened_at: u64,
}

struct SeqGuard {
    seq: u64,
    log: Arc<Mutex<LogState>>,
}

impl Drop for SeqGuard {
    fn drop(&mut self) {
        let mut st = lock(&self.log);
        st.in_flight.remove(&self.seq);
        if self.seq > st.settled {
            st.released.insert(self.seq);
        }
    }
}

fn lock(m: &Mutex<LogState>) -> MutexGuard<'_, LogState> {
    // The state stays consistent even if a holder panicked: every update is one insert/remove.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The CRM repository. Cheap to clone; share one per store.
#[derive(Clone)]
pub struct Crm {
    store: Arc<dyn Store>,
    region: Option<phonenumber::country::Id>,
    clock: Clock,
    log: Arc<Mutex<LogState>>,
    /// Serializes change-sequence allocation with its registration as in flight.
    alloc: Arc<tokio::sync::Mutex<()>>,
    /// Serializes user, role and company writes (role cycles need a consistent tree).
    admin: Arc<tokio::sync::Mutex<()>>,
}

fn key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

const SETTLED_KEY: &[u8] = b"settled";

/// Every key of `space` above the 8-byte big-endian `after`.
async fn scan_after(
    store: &dyn Store,
    space: Space,
    after: u64,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = key(after).to_vec();
    loop {
        let page = store.scan(space, b"", Some(&cursor), 1024).await?;
        out.extend(page.entries);
        match page.next_after {
            Some(n) => cursor = n,
            None => return Ok(out),
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CrmError> {
    serde_json::to_vec(v).map_err(|e| {
        CrmError::Store(StoreError::Backend(format!(
            "cannot encode a CRM record: {e}"
        )))
    })
}

fn decode<T: DeserializeOwned>(space: Space, bytes: &[u8]) -> Result<T, CrmError> {
    serde_json::from_slice(bytes).map_err(|e| {
        CrmError::Store(StoreError::Corrupt {
            space: space.to_string(),
            reason: e.to_string(),
        })
    })
}

/// Normalizes an email for matching: trimmed and lowercased (no IDNA processing).
pub fn normalize_email(email: &str) -> String {
    email.trim().replace('\0', "").to_lowercase()
}

/// Normalizes a phone number for matching: E.164 when it parses (with `region` for national
/// numbers), otherwise its digits only.
pub fn normalize_phone(phone: &str, region: Option<phonenumber::country::Id>) -> String {
    match phonenumber::parse(region, phone) {
        Ok(n) if phonenumber::is_valid(&n) => n.format().mode(phonenumber::Mode::E164).to_string(),
        _ => phone.chars().filter(char::is_ascii_digit).collect(),
    }
}

fn index_key(owner: UserId, norm: &str, id: PersonId) -> Vec<u8> {
    let mut k = index_prefix(owner, norm);
    k.extend_from_slice(&key(id));
    k
}

fn index_prefix(owner: UserId, norm: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + norm.len() + 9);
    k.extend_from_slice(&key(owner));
    k.extend_from_slice(norm.as_bytes());
    k.push(0);
    k
}

impl Crm {
    /// Opens the repository. Settles the change log: everything allocated before this call
    /// has been committed or abandoned.
    pub async fn open(store: Arc<dyn Store>, config: CrmConfig) -> Result<Self, CrmError> {
        let settled = match store.get(LOG_SETTLED, SETTLED_KEY).await? {
            Some(b) => b
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes),
            None => 0,
        };
        let mut log = LogState {
            settled,
            ..LogState::default()
        };
        if !config.shared_store {
            // Allocated and released at once: it and every missing number below it are voided
            // by the next `current_seq`.
            let mark = store.next_id(SEQ_CHANGE).await?;
            log.opened_at = mark;
            log.released.insert(mark);
        }
        Ok(Crm {
            store,
            region: config.default_region,
            clock: config.clock.unwrap_or_else(|| Arc::new(Utc::now)),
            log: Arc::new(Mutex::new(log)),
            alloc: Arc::new(tokio::sync::Mutex::new(())),
            admin: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> String {
        (self.clock)().to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    async fn reserve_seq(&self) -> Result<SeqGuard, CrmError> {
        let _serial = self.alloc.lock().await;
        let seq = self.store.next_id(SEQ_CHANGE).await?;
        let mut st = lock(&self.log);
        st.in_flight.insert(seq);
        Ok(SeqGuard {
            seq,
            log: self.log.clone(),
        })
    }

    /// The change-log watermark: a sync token for "now", valid on every node of the store.
    pub async fn current_seq(&self) -> Result<u64, CrmError> {
        loop {
            let from = lock(&self.log).settled;
            // The settled numbers above the watermark, from both logs.
            let mut present = BTreeSet::new();
            for space in [CHANGES, CHANGES_VOID] {
                for (k, _) in scan_after(self.store.as_ref(), space, from).await? {
                    if let Some(n) = k.get(..8).and_then(|b| b.try_into().ok()) {
                        present.insert(u64::from_be_bytes(n));
                    }
                }
            }
            let top = present.last().copied().unwrap_or(from);
            let mut w = from;
            let mut void = None;
            {
                let mut st = lock(&self.log);
                loop {
                    let next = w + 1;
                    if present.contains(&next) {
                        w = next;
                        continue;
                    }
                    if st.released.contains(&next) {
                        // Ours and done, yet absent: abandoned.
                        void = Some(next);
                    } else if next < st.opened_at {
                        // Allocated by a stopped process of a store held alone: abandoned.
                        void = Some(next);
                    } else if next <= top && !st.in_flight.contains(&next) {
                        // Missing below a settled number, so allocated: another writer's.
                        let seen = *st.gaps.entry(next).or_insert_with(std::time::Instant::now);
                        if seen.elapsed() >= VOID_GRACE {
                            void = Some(next);
                        }
                    }
                    break;
                }
                if w > st.settled {
                    st.settled = w;
                    st.released = st.released.split_off(&(w + 1));
                    st.gaps = st.gaps.split_off(&(w + 1));
                }
            }
            if w > from {
                let mut b = Batch::new();
                b.put(LOG_SETTLED, SETTLED_KEY.to_vec(), key(w).to_vec());
                // Only a hint: a lost race leaves an older, still true value.
                if let Err(e) = self.store.commit(b).await {
                    tracing::debug!(error = %e, "cannot store the change-log watermark hint");
                }
            }
            let Some(n) = void else {
                return Ok(w);
            };
            let mut b = Batch::new();
            b.expect(CHANGES, key(n).to_vec(), None);
            b.put(CHANGES_VOID, key(n).to_vec(), Vec::new());
            match self.store.commit(b).await {
                // Voided, or committed meanwhile: look again either way.
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn log_entry(&self, batch: &mut Batch, event: ChangeEvent) -> Result<SeqGuard, CrmError> {
        let guard = self.reserve_seq().await?;
        let change = Change {
            seq: guard.seq,
            at: self.now(),
            event,
        };
        // Commits only if no reader gave the number up as abandoned (see the module doc).
        batch.expect(CHANGES_VOID, key(guard.seq).to_vec(), None);
        batch.put(CHANGES, key(guard.seq).to_vec(), encode(&change)?);
        Ok(guard)
    }

    /// Changes after `seq`, at most `limit`, never beyond [`Crm::current_seq`].
    pub async fn changes_since(&self, seq: u64, limit: usize) -> Result<ChangePage, CrmError> {
        let watermark = self.current_seq().await?;
        if seq > watermark {
            return Err(CrmError::FutureSeq {
                requested: seq,
                current: watermark,
            });
        }
        let limit = limit.max(1);
        let page = self
            .store
            .scan(CHANGES, b"", Some(&key(seq)), limit + 1)
            .await?;
        let mut changes = Vec::new();
        for (_, v) in &page.entries {
            let c: Change = decode(CHANGES, v)?;
            if c.seq > watermark {
                break;
            }
            changes.push(c);
        }
        let more = changes.len() > limit;
        changes.truncate(limit);
        let next_seq = match (more, changes.last()) {
            (true, Some(last)) => last.seq,
            _ => watermark,
        };
        Ok(ChangePage {
            changes,
            next_seq,
            more,
        })
    }

    // ---------------------------------------------------------------- persons

    async fn plan(&self) -> Result<Plan, CrmError> {
        Ok(self.company().await?.plan)
    }

    fn index_writes(&self, batch: &mut Batch, p: &Person, old: Option<&Person>, put: bool) {
        let keys = |p: &Person| -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
            let emails = p
                .emails
                .iter()
                .map(|e| normalize_email(&e.value))
                .filter(|n| !n.is_empty())
                .map(|n| index_key(p.owner_id, &n, p.id))
                .collect();
            let phones = p
                .phones
                .iter()
                .map(|e| normalize_phone(&e.value, self.region))
                .filter(|n| !n.is_empty())
                .map(|n| index_key(p.owner_id, &n, p.id))
                .collect();
            (emails, phones)
        };
        let (new_e, new_p) = if put { keys(p) } else { Default::default() };
        if let Some(old) = old {
            let (old_e, old_p) = keys(old);
            for k in old_e.difference(&new_e) {
                batch.delete(IDX_OWNER_EMAIL, k.clone());
            }
            for k in old_p.difference(&new_p) {
                batch.delete(IDX_OWNER_PHONE, k.clone());
            }
        }
        for k in new_e {
            batch.put(IDX_OWNER_EMAIL, k, Vec::new());
        }
        for k in new_p {
            batch.put(IDX_OWNER_PHONE, k, Vec::new());
        }
    }

    async fn read_person(&self, id: PersonId) -> Result<Option<(Person, Vec<u8>)>, CrmError> {
        match self.store.get(PERSONS, &key(id)).await? {
            Some(bytes) => Ok(Some((decode(PERSONS, &bytes)?, bytes))),
            None => Ok(None),
        }
    }

    /// Adds the creation of a person to `batch` (id, times, version 1, indexes, change entry).
    /// Refuses a visibility setting the plan does not offer.
    pub async fn stage_create(
        &self,
        batch: &mut Batch,
        fields: PersonFields,
        acl: Acl,
    ) -> Result<Staged<Person>, CrmError> {
        check_allowed(self.plan().await?, acl.visible_to)?;
        let id = self.store.next_id(SEQ_PERSON).await?;
        let now = self.now();
        let mut person = Person {
            id,
            name: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            emails: vec![],
            phones: vec![],
            org_name: String::new(),
            job_title: String::new(),
            addresses: vec![],
            birthday: None,
            notes: String::new(),
            urls: vec![],
            labels: vec![],
            owner_id: acl.owner_id,
            followers: acl.followers.clone(),
            visible_to: acl.visible_to,
            add_time: now.clone(),
            update_time: now,
            version: 1,
        };
        person.set_fields(fields);
        batch.expect(PERSONS, key(id).to_vec(), None);
        batch.put(PERSONS, key(id).to_vec(), encode(&person)?);
        self.index_writes(batch, &person, None, true);
        let guard = self
            .log_entry(
                batch,
                ChangeEvent::Person {
                    person_id: id,
                    kind: PersonChangeKind::Upsert,
                    version: 1,
                    before: None,
                    after: Some(acl),
                },
            )
            .await?;
        Ok(Staged {
            seq: guard.seq,
            value: person,
            _guard: guard,
        })
    }

    /// Adds an update of person `id` to `batch`, guarded by `expected_version` (a typed
    /// [`CrmError::VersionConflict`] when it no longer holds). A changed visibility must be
    /// offered by the plan; an unchanged one is kept even if it is not (see `visibility`).
    pub async fn stage_update(
        &self,
        batch: &mut Batch,
        id: PersonId,
        expected_version: u64,
        fields: PersonFields,
        acl: Acl,
    ) -> Result<Staged<Person>, CrmError> {
        let (old, old_bytes) = self
            .read_person(id)
            .await?
            .ok_or(CrmError::NotFound { kind: "person", id })?;
        if old.version != expected_version {
            return Err(CrmError::VersionConflict {
                id,
                expected: expected_version,
                actual: Some(old.version),
            });
        }
        if acl.visible_to != old.visible_to {
            check_allowed(self.plan().await?, acl.visible_to)?;
        }
        let mut person = old.clone();
        person.set_fields(fields);
        person.owner_id = acl.owner_id;
        person.followers = acl.followers.clone();
        person.visible_to = acl.visible_to;
        person.version = old.version + 1;
        person.update_time = self.now();
        batch.expect(PERSONS, key(id).to_vec(), Some(old_bytes));
        batch.put(PERSONS, key(id).to_vec(), encode(&person)?);
        self.index_writes(batch, &person, Some(&old), true);
        let guard = self
            .log_entry(
                batch,
                ChangeEvent::Person {
                    person_id: id,
                    kind: PersonChangeKind::Upsert,
                    version: person.version,
                    before: Some(old.acl()),
                    after: Some(acl),
                },
            )
            .await?;
        Ok(Staged {
            seq: guard.seq,
            value: person,
            _guard: guard,
        })
    }

    /// Adds the deletion of person `id` to `batch`, guarded by `expected_version` when given.
    /// The staged value is the removed person.
    pub async fn stage_delete(
        &self,
        batch: &mut Batch,
        id: PersonId,
        expected_version: Option<u64>,
    ) -> Result<Staged<Person>, CrmError> {
        let (old, old_bytes) = self
            .read_person(id)
            .await?
            .ok_or(CrmError::NotFound { kind: "person", id })?;
        if let Some(expected) = expected_version {
            if old.version != expected {
                return Err(CrmError::VersionConflict {
                    id,
                    expected,
                    actual: Some(old.version),
                });
            }
        }
        batch.expect(PERSONS, key(id).to_vec(), Some(old_bytes));
        batch.delete(PERSONS, key(id).to_vec());
        self.index_writes(batch, &old, Some(&old), false);
        let guard = self
            .log_entry(
                batch,
                ChangeEvent::Person {
                    person_id: id,
                    kind: PersonChangeKind::Delete,
                    version: old.version,
                    before: Some(old.acl()),
                    after: None,
                },
            )
            .await?;
        Ok(Staged {
            seq: guard.seq,
            value: old,
            _guard: guard,
        })
    }

    async fn commit_person(
        &self,
        batch: Batch,
        staged: Staged<Person>,
        expected: u64,
    ) -> Result<Person, CrmError> {
        let id = staged.value.id;
        match self.store.commit(batch).await {
            Ok(()) => Ok(staged.value),
            Err(StoreError::Conflict { space, .. }) if space == PERSONS => {
                drop(staged);
                let actual = self.read_person(id).await?.map(|(p, _)| p.version);
                Err(CrmError::VersionConflict {
                    id,
                    expected,
                    actual,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a person.
    pub async fn create_person(&self, fields: PersonFields, acl: Acl) -> Result<Person, CrmError> {
        let mut batch = Batch::new();
        let staged = self.stage_create(&mut batch, fields, acl).await?;
        self.commit_person(batch, staged, 0).await
    }

    /// Updates person `id` if it is still at `expected_version`.
    pub async fn update_person(
        &self,
        id: PersonId,
        expected_version: u64,
        fields: PersonFields,
        acl: Acl,
    ) -> Result<Person, CrmError> {
        let mut batch = Batch::new();
        let staged = self
            .stage_update(&mut batch, id, expected_version, fields, acl)
            .await?;
        self.commit_person(batch, staged, expected_version).await
    }

    /// Deletes person `id` (if still at `expected_version` when given); returns it.
    pub async fn delete_person(
        &self,
        id: PersonId,
        expected_version: Option<u64>,
    ) -> Result<Person, CrmError> {
        let mut batch = Batch::new();
        let staged = self.stage_delete(&mut batch, id, expected_version).await?;
        let expected = expected_version.unwrap_or(staged.value.version);
        self.commit_person(batch, staged, expected).await
    }

    /// The person with `id`.
    pub async fn get_person(&self, id: PersonId) -> Result<Option<Person>, CrmError> {
        Ok(self.read_person(id).await?.map(|(p, _)| p))
    }

    /// The person with `id` if `viewer` may see it; `None` otherwise, exactly as if it did not
    /// exist.
    pub async fn get_person_as(
        &self,
        viewer: &User,
        id: PersonId,
        ctx: &AccessContext,
    ) -> Result<Option<Person>, CrmError> {
        Ok(self
            .get_person(id)
            .await?
            .filter(|p| access(viewer, &p.acl(), ctx).view))
    }

    /// Persons in id order, strictly after `after`, at most `limit`.
    pub async fn list_persons(
        &self,
        after: Option<PersonId>,
        limit: usize,
    ) -> Result<PersonPage, CrmError> {
        let after_key = after.map(key);
        let page = self
            .store
            .scan(
                PERSONS,
                b"",
                after_key.as_ref().map(|k| &k[..]),
                limit.max(1),
            )
            .await?;
        let persons = page
            .entries
            .iter()
            .map(|(_, v)| decode::<Person>(PERSONS, v))
            .collect::<Result<Vec<_>, _>>()?;
        let next_after = if page.next_after.is_some() {
            persons.last().map(|p| p.id)
        } else {
            None
        };
        Ok(PersonPage {
            persons,
            next_after,
        })
    }

    async fn ids_under(&self, space: Space, prefix: Vec<u8>) -> Result<Vec<PersonId>, CrmError> {
        let entries = scan_all(self.store.as_ref(), space, &prefix).await?;
        Ok(entries
            .iter()
            .filter_map(|(k, _)| {
                let tail: [u8; 8] = k.get(prefix.len()..)?.try_into().ok()?;
                Some(u64::from_be_bytes(tail))
            })
            .collect())
    }

    /// Persons of `owner` with this email (normalized before lookup).
    pub async fn find_by_email(
        &self,
        owner: UserId,
        email: &str,
    ) -> Result<Vec<PersonId>, CrmError> {
        let norm = normalize_email(email);
        if norm.is_empty() {
            return Ok(vec![]);
        }
        self.ids_under(IDX_OWNER_EMAIL, index_prefix(owner, &norm))
            .await
    }

    /// Persons of `owner` with this phone number (normalized to E.164 before lookup).
    pub async fn find_by_phone(
        &self,
        owner: UserId,
        phone: &str,
    ) -> Result<Vec<PersonId>, CrmError> {
        let norm = normalize_phone(phone, self.region);
        if norm.is_empty() {
            return Ok(vec![]);
        }
        self.ids_under(IDX_OWNER_PHONE, index_prefix(owner, &norm))
            .await
    }

    /// The first existing person of `owner` sharing an email, else a phone, with `fields`
    /// (the sync engine's "no duplicates on first sync" lookup). Lowest id wins.
    pub async fn find_match(
        &self,
        owner: UserId,
        fields: &PersonFields,
    ) -> Result<Option<PersonId>, CrmError> {
        for e in &fields.emails {
            if let Some(id) = self.find_by_email(owner, &e.value).await?.into_iter().min() {
                return Ok(Some(id));
            }
        }
        for p in &fields.phones {
            if let Some(id) = self.find_by_phone(owner, &p.value).await?.into_iter().min() {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    // ---------------------------------------------------------------- company

    /// The company (a Silver company with no name until one is set).
    pub async fn company(&self) -> Result<Company, CrmError> {
        match self.store.get(COMPANY, COMPANY_KEY).await? {
            Some(b) => decode(COMPANY, &b),
            None => Ok(Company::default()),
        }
    }

    /// Sets the company; a plan change is logged (effective visibilities may change).
    pub async fn set_company(&self, company: Company) -> Result<(), CrmError> {
        let _admin = self.admin.lock().await;
        let old_bytes = self.store.get(COMPANY, COMPANY_KEY).await?;
        let old: Company = match &old_bytes {
            Some(b) => decode(COMPANY, b)?,
            None => Company::default(),
        };
        let mut batch = Batch::new();
        batch.expect(COMPANY, COMPANY_KEY.to_vec(), old_bytes);
        batch.put(COMPANY, COMPANY_KEY.to_vec(), encode(&company)?);
        let mut _guard = None;
        if old.plan != company.plan {
            _guard = Some(
                self.log_entry(
                    &mut batch,
                    ChangeEvent::Plan {
                        before: old.plan,
                        after: company.plan,
                    },
                )
                .await?,
            );
        }
        self.commit_admin(batch, "company").await
    }

    async fn commit_admin(&self, batch: Batch, what: &'static str) -> Result<(), CrmError> {
        match self.store.commit(batch).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(CrmError::Concurrent(what)),
            Err(e) => Err(e.into()),
        }
    }

    // ---------------------------------------------------------------- roles

    async fn read_roles(&self) -> Result<Vec<Role>, CrmError> {
        scan_all(self.store.as_ref(), ROLES, b"")
            .await?
            .iter()
            .map(|(_, v)| decode(ROLES, v))
            .collect()
    }

    /// The role tree.
    pub async fn role_tree(&self) -> Result<RoleTree, CrmError> {
        Ok(RoleTree::from_roles(self.read_roles().await?)?)
    }

    /// Creates a role under `parent`.
    pub async fn create_role(&self, name: &str, parent: Option<RoleId>) -> Result<Role, CrmError> {
        let _admin = self.admin.lock().await;
        let mut tree = self.role_tree().await?;
        let id = self.store.next_id(SEQ_ROLE).await?;
        let role = Role {
            id,
            name: name.to_string(),
            parent,
        };
        tree.upsert(role.clone())?;
        let mut batch = Batch::new();
        batch.expect(ROLES, key(id).to_vec(), None);
        batch.put(ROLES, key(id).to_vec(), encode(&role)?);
        let _guard = self
            .log_entry(&mut batch, ChangeEvent::RoleTree { role_id: id })
            .await?;
        self.commit_admin(batch, "role").await?;
        Ok(role)
    }

    /// Renames or moves a role; a move that would make a cycle is refused.
    pub async fn update_role(&self, role: Role) -> Result<Role, CrmError> {
        let _admin = self.admin.lock().await;
        let old_bytes = self
            .store
            .get(ROLES, &key(role.id))
            .await?
            .ok_or(CrmError::NotFound {
                kind: "role",
                id: role.id,
            })?;
        let old: Role = decode(ROLES, &old_bytes)?;
        let mut tree = self.role_tree().await?;
        tree.upsert(role.clone())?;
        let mut batch = Batch::new();
        batch.expect(ROLES, key(role.id).to_vec(), Some(old_bytes));
        batch.put(ROLES, key(role.id).to_vec(), encode(&role)?);
        let mut _guard = None;
        if old.parent != role.parent {
            _guard = Some(
                self.log_entry(&mut batch, ChangeEvent::RoleTree { role_id: role.id })
                    .await?,
            );
        }
        self.commit_admin(batch, "role").await?;
        Ok(role)
    }

    /// Deletes a leaf role that no user holds.
    pub async fn delete_role(&self, id: RoleId) -> Result<(), CrmError> {
        let _admin = self.admin.lock().await;
        let old_bytes = self
            .store
            .get(ROLES, &key(id))
            .await?
            .ok_or(CrmError::NotFound { kind: "role", id })?;
        let mut tree = self.role_tree().await?;
        tree.remove(id)?;
        if self
            .list_users()
            .await?
            .iter()
            .any(|u| u.role_id == Some(id))
        {
            return Err(CrmError::RoleInUse(id));
        }
        let mut batch = Batch::new();
        batch.expect(ROLES, key(id).to_vec(), Some(old_bytes));
        batch.delete(ROLES, key(id).to_vec());
        let _guard = self
            .log_entry(&mut batch, ChangeEvent::RoleTree { role_id: id })
            .await?;
        self.commit_admin(batch, "role").await
    }

    // ---------------------------------------------------------------- users

    /// Creates a user (the password is argon2-hashed off the async runtime).
    pub async fn create_user(&self, new: NewUser) -> Result<User, CrmError> {
        let password_hash = hash_blocking(new.password).await?;
        let _admin = self.admin.lock().await;
        if let Some(role) = new.role_id {
            if self.role_tree().await?.get(role).is_none() {
                return Err(CrmError::NotFound {
                    kind: "role",
                    id: role,
                });
            }
        }
        if self
            .store
            .get(USERS_BY_LOGIN, new.login.as_bytes())
            .await?
            .is_some()
        {
            return Err(CrmError::LoginTaken(new.login));
        }
        let id = self.store.next_id(SEQ_USER).await?;
        let user = User {
            id,
            login: new.login,
            name: new.name,
            email: new.email,
            role_id: new.role_id,
            is_admin: new.is_admin,
            password_hash,
            app_passwords: vec![],
        };
        let mut batch = Batch::new();
        batch.expect(USERS_BY_LOGIN, user.login.as_bytes().to_vec(), None);
        batch.put(
            USERS_BY_LOGIN,
            user.login.as_bytes().to_vec(),
            key(id).to_vec(),
        );
        batch.put(USERS, key(id).to_vec(), encode(&user)?);
        match self.store.commit(batch).await {
            Ok(()) => Ok(user),
            Err(StoreError::Conflict { .. }) => Err(CrmError::LoginTaken(user.login)),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_user(&self, id: UserId) -> Result<Option<(User, Vec<u8>)>, CrmError> {
        match self.store.get(USERS, &key(id)).await? {
            Some(b) => Ok(Some((decode(USERS, &b)?, b))),
            None => Ok(None),
        }
    }

    /// The user with `id`.
    pub async fn get_user(&self, id: UserId) -> Result<Option<User>, CrmError> {
        Ok(self.read_user(id).await?.map(|(u, _)| u))
    }

    /// The user with this login.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<User>, CrmError> {
        let Some(id) = self.store.get(USERS_BY_LOGIN, login.as_bytes()).await? else {
            return Ok(None);
        };
        let id: [u8; 8] = id.as_slice().try_into().map_err(|_| {
            CrmError::Store(StoreError::Corrupt {
                space: USERS_BY_LOGIN.to_string(),
                reason: "user id is not 8 bytes".into(),
            })
        })?;
        self.get_user(u64::from_be_bytes(id)).await
    }

    /// Every user, by id.
    pub async fn list_users(&self) -> Result<Vec<User>, CrmError> {
        scan_all(self.store.as_ref(), USERS, b"")
            .await?
            .iter()
            .map(|(_, v)| decode(USERS, v))
            .collect()
    }

    /// Replaces a user record (login, name, email, role, admin flag, app passwords); role and
    /// admin changes are logged. The password hash is kept from the stored record: use
    /// [`Crm::set_password`] to change it.
    pub async fn update_user(&self, mut user: User) -> Result<User, CrmError> {
        let _admin = self.admin.lock().await;
        self.update_user_locked(&mut user, true).await?;
        Ok(user)
    }

    async fn update_user_locked(
        &self,
        user: &mut User,
        keep_password: bool,
    ) -> Result<(), CrmError> {
        let (old, old_bytes) = self.read_user(user.id).await?.ok_or(CrmError::NotFound {
            kind: "user",
            id: user.id,
        })?;
        if keep_password {
            user.password_hash = old.password_hash.clone();
        }
        if let Some(role) = user.role_id {
            if old.role_id != Some(role) && self.role_tree().await?.get(role).is_none() {
                return Err(CrmError::NotFound {
                    kind: "role",
                    id: role,
                });
            }
        }
        let mut batch = Batch::new();
        batch.expect(USERS, key(user.id).to_vec(), Some(old_bytes));
        if old.login != user.login {
            batch.expect(USERS_BY_LOGIN, user.login.as_bytes().to_vec(), None);
            batch.delete(USERS_BY_LOGIN, old.login.as_bytes().to_vec());
            batch.put(
                USERS_BY_LOGIN,
                user.login.as_bytes().to_vec(),
                key(user.id).to_vec(),
            );
        }
        batch.put(USERS, key(user.id).to_vec(), encode(&*user)?);
        let mut guards = Vec::new();
        if old.role_id != user.role_id {
            guards.push(
                self.log_entry(
                    &mut batch,
                    ChangeEvent::UserRole {
                        user_id: user.id,
                        before: old.role_id,
                        after: user.role_id,
                    },
                )
                .await?,
            );
        }
        if old.is_admin != user.is_admin {
            guards.push(
                self.log_entry(
                    &mut batch,
                    ChangeEvent::UserAdmin {
                        user_id: user.id,
                        is_admin: user.is_admin,
                    },
                )
                .await?,
            );
        }
        match self.store.commit(batch).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict { space, .. }) if space == USERS_BY_LOGIN => {
                Err(CrmError::LoginTaken(user.login.clone()))
            }
            Err(StoreError::Conflict { .. }) => Err(CrmError::Concurrent("user")),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets a user's password.
    pub async fn set_password(&self, id: UserId, password: String) -> Result<(), CrmError> {
        let hash = hash_blocking(password).await?;
        let _admin = self.admin.lock().await;
        let mut user = self
            .get_user(id)
            .await?
            .ok_or(CrmError::NotFound { kind: "user", id })?;
        user.password_hash = hash;
        self.update_user_locked(&mut user, false).await
    }

    /// Creates an app password for user `id`; the secret is in the result only.
    pub async fn create_app_password(
        &self,
        id: UserId,
        label: &str,
    ) -> Result<NewAppPassword, CrmError> {
        let _admin = self.admin.lock().await;
        let mut user = self
            .get_user(id)
            .await?
            .ok_or(CrmError::NotFound { kind: "user", id })?;
        let created = user.add_app_password(label, &self.now());
        self.update_user_locked(&mut user, true).await?;
        Ok(created)
    }

    /// Revokes an app password; false when the user had none with that id.
    pub async fn revoke_app_password(&self, id: UserId, app_id: &str) -> Result<bool, CrmError> {
        let _admin = self.admin.lock().await;
        let mut user = self
            .get_user(id)
            .await?
            .ok_or(CrmError::NotFound { kind: "user", id })?;
        if !user.revoke_app_password(app_id) {
            return Ok(false);
        }
        self.update_user_locked(&mut user, true).await?;
        Ok(true)
    }

    /// Checks a login and a password or app password (argon2 runs off the async runtime).
    /// Unknown logins and wrong secrets both answer `None`.
    pub async fn authenticate(
        &self,
        login: &str,
        secret: &str,
    ) -> Result<Option<(User, AuthMethod)>, CrmError> {
        let Some(user) = self.user_by_login(login).await? else {
            return Ok(None);
        };
        let secret = secret.to_string();
        let checked = tokio::task::spawn_blocking(move || {
            let m = user.verify(&secret);
            m.map(|m| (user, m))
        })
        .await
        .map_err(|e| CrmError::Credential(CredentialError::Hash(e.to_string())))?;
        Ok(checked)
    }

    /// Deletes a user (their persons keep `owner_id`; only admins and, by setting, others
    /// still see them).
    pub async fn delete_user(&self, id: UserId) -> Result<(), CrmError> {
        let _admin = self.admin.lock().await;
        let (old, old_bytes) = self
            .read_user(id)
            .await?
            .ok_or(CrmError::NotFound { kind: "user", id })?;
        let mut batch = Batch::new();
        batch.expect(USERS, key(id).to_vec(), Some(old_bytes));
        batch.delete(USERS, key(id).to_vec());
        batch.delete(USERS_BY_LOGIN, old.login.as_bytes().to_vec());
        let _guard = self
            .log_entry(&mut batch, ChangeEvent::UserRemoved { user_id: id })
            .await?;
        self.commit_admin(batch, "user").await
    }

    /// Everything [`access`] needs besides the viewer and the person.
    pub async fn access_context(&self) -> Result<AccessContext, CrmError> {
        let user_roles: BTreeMap<UserId, Option<RoleId>> = self
            .list_users()
            .await?
            .into_iter()
            .map(|u| (u.id, u.role_id))
            .collect();
        Ok(AccessContext {
            plan: self.plan().await?,
            roles: self.role_tree().await?,
            user_roles,
        })
    }
}

async fn hash_blocking(password: String) -> Result<String, CrmError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| CrmError::Credential(CredentialError::Hash(e.to_string())))?
        .map_err(CrmError::from)
}
