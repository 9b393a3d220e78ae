//! `execute`: one sync run of one connection. It pulls the provider's pages, builds each item's
//! [`ItemInput`] from the stored base, the CRM person and a link candidate, asks [`reconcile`]
//! for a plan, and applies it through the provider, the CRM and the store; then, in two-way
//! sync (and in one-way, to record CRM edits and deletions as local), it walks the CRM change
//! log of the connection's user the same way.
//!
//! # Atomicity and ordering
//! - An item's CRM writes (staged with `Crm::stage_*`), its conflict records and its new base
//!   (or its removal) go into ONE batch: a created person is never committed without the base
//!   that points to it. The items of a page share the page's batch, and the page's cursor is
//!   in it too, so the cursor advances exactly with the items it covers. When an item touches
//!   a person or item already touched by the open batch, the batch is committed first (without
//!   a cursor) so every plan is made on committed state.
//! - A provider write happens before the batch holding its base is committed. A crash between
//!   them converges: the next run sees the card it wrote as a remote change and re-merges it
//!   (both sides then hold the same values: no conflict, no second write); a card created for
//!   a person carries a UID derived from (connection, person), is created with
//!   `If-None-Match: *`, and is linked back to that person when it is pulled.
//! - A full listing holds the cursor until its last page; only then are stored items it did
//!   not list treated as deleted. Bad cards ([`RemoteChange::Invalid`]) count as listed: they
//!   are reported and skipped, never deleted.
//! - A 412 ([`ProviderError::Conflict`]) re-fetches the card, re-reconciles and retries, at
//!   most [`Options::max_retries`] times; so does a person that moved under the plan.
//! - One-way sync never calls a provider write (a plan asking for one is refused).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::conflicts::{self, ConflictRecord};
use super::connection::SyncConnection;
use super::convert::{
    apply_to_person, card_for_push, derived_uid, map_to_person, person_of_derived_uid,
    person_to_map, remote_item, Region,
};
use super::fields::FieldMap;
use super::reconcile::{
    reconcile, Base, CrmPerson, CrmState, Direction, FieldDirections, ItemInput, LinkCandidate,
    NewBase, Op, Origin, PersonId, PersonMark, Plan, RemoteMark, RemoteState, Rule, Track,
};
use super::state::{self, ItemRecord};
use super::stats::{self, Outcome, RunCounts, RunRecord};
use crate::crm::repo::Staged;
use crate::crm::{can_edit, AccessContext, Acl, Crm, CrmError, Person, User};
use crate::providers::{ews, graph};
use crate::providers::{Provider, ProviderError, ProviderKind, PullKind, RemoteChange};
use crate::store::{Batch, Store, StoreError};
use crate::vcard::{fingerprint, VCard};

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The provider failed in a way that stops the run (transport, throttling, credentials).
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    /// The CRM failed.
    #[error("crm: {0}")]
    Crm(#[from] CrmError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The connection's user does not exist.
    #[error("user {0} of the connection does not exist")]
    UserNotFound(u64),
}

impl SyncError {
    /// True when the provider needs the user to authorize again.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(
            self,
            SyncError::Provider(
                ProviderError::NeedsReauthorization(_) | ProviderError::CredentialsRejected
            )
        )
    }
}

/// An item that could not be synced this run (the run went on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    /// The provider's item id, when known.
    pub remote_id: Option<String>,
    /// The person, when known.
    pub person_id: Option<PersonId>,
    /// What went wrong.
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Start.
    pub started: DateTime<Utc>,
    /// End.
    pub ended: DateTime<Utc>,
    /// Writes, conflicts and errors.
    pub counts: RunCounts,
    /// How often each reconcile rule applied (by rule name).
    pub rules: BTreeMap<String, u64>,
    /// The conflicts recorded.
    pub conflicts: Vec<ConflictRecord>,
    /// The items that failed.
    pub errors: Vec<ItemError>,
    /// Provider pages pulled.
    pub pages: u64,
    /// True when the pull was a full listing.
    pub full_listing: bool,
}

impl RunSummary {
    /// How often `rule` applied.
    pub fn rule_count(&self, rule: Rule) -> u64 {
        self.rules.get(&format!("{rule:?}")).copied().unwrap_or(0)
    }
}

/// The time source.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Where a running sync stands, reported through [`Options::progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Provider pages pulled so far.
    pub pages: u64,
    /// Items handled so far: remote changes (unreadable ones included), listed deletions
    /// and CRM changes walked.
    pub items: u64,
    /// Writes, conflicts and item errors so far (committed, or staged in the open page).
    pub counts: RunCounts,
}

/// Receives a run's [`Progress`] after each pulled page and each handled item. It is called on
/// the sync's task: keep it cheap (store a copy, bump a bar), never block.
pub type ProgressHook = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Tuning of a run.
#[derive(Clone)]
pub struct Options {
    /// Re-fetch/re-merge attempts of one item after a 412 or a person that moved.
    pub max_retries: usize,
    /// CRM change-log entries read at a time.
    pub crm_page: usize,
    /// The clock (`None`: the system clock).
    pub clock: Option<Clock>,
    /// Live progress of the run (`None`: not reported).
    pub progress: Option<ProgressHook>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_retries: 3,
            crm_page: 256,
            clock: None,
            progress: None,
        }
    }
}

/// One sync run of `conn` with default [`Options`]. `store` must be the store `crm` runs on.
pub async fn run(
    conn: &SyncConnection,
    provider: &dyn Provider,
    crm: &Crm,
    store: &dyn Store,
) -> Result<RunSummary, SyncError> {
    run_with(conn, provider, crm, store, &Options::default()).await
}

/// One sync run of `conn`. Records the run in the connection's stats, whatever its outcome.
pub async fn run_with(
    conn: &SyncConnection,
    provider: &dyn Provider,
    crm: &Crm,
    store: &dyn Store,
    options: &Options,
) -> Result<RunSummary, SyncError> {
    let clock: Clock = options.clock.clone().unwrap_or_else(|| Arc::new(Utc::now));
    let started = clock();
    let mut st = stats::load(store, conn.id).await?;
    // The stored count of linked items is exact when the previous run finished (its end wrote
    // it); a run that never finished may have committed items it did not count.
    let counted = st
        .last_run
        .as_ref()
        .is_some_and(|r| r.outcome != Outcome::Running)
        .then_some(st.total_in_sync);
    st.last_run = Some(RunRecord {
        started,
        ended: None,
        outcome: Outcome::Running,
        counts: RunCounts::default(),
    });
    let mut b = Batch::new();
    stats::stage(&mut b, conn.id, &st)?;
    store.commit(b).await?;

    let mut engine = match Engine::new(conn, provider, crm, store, options, clock.clone()).await {
        Ok(e) => e,
        Err(e) => {
            let in_sync = InSync { counted, delta: 0 };
            finish(
                store,
                conn,
                started,
                clock(),
                RunCounts::default(),
                in_sync,
                Err(&e),
            )
            .await?;
            return Err(e);
        }
    };
    let result = engine.run().await;
    let summary = RunSummary {
        started,
        ended: clock(),
        counts: engine.counts,
        rules: engine.rules,
        conflicts: engine.conflicts,
        errors: engine.errors,
        pages: engine.pages,
        full_listing: engine.full_listing,
    };
    finish(
        store,
        conn,
        started,
        summary.ended,
        summary.counts,
        InSync {
            counted,
            delta: engine.in_sync_delta,
        },
        result.as_ref().map(|_| ()),
    )
    .await?;
    result.map(|()| summary)
}

/// How a run's end learns the connection's count of linked items.
struct InSync {
    /// The count before the run, when it can be trusted.
    counted: Option<u64>,
    /// Linked items the run's committed batches added (or removed, negative).
    delta: i64,
}

async fn finish(
    store: &dyn Store,
    conn: &SyncConnection,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    counts: RunCounts,
    in_sync: InSync,
    result: Result<(), &SyncError>,
) -> Result<(), StoreError> {
    let outcome = match result {
        Ok(()) => Outcome::Ok,
        Err(e) if e.needs_reauthorization() => Outcome::NeedsReauthorization {
            message: e.to_string(),
        },
        Err(e) => Outcome::Failed {
            message: e.to_string(),
        },
    };
    // O(changes): the count before the run plus what the run committed. Only when that count
    // cannot be trusted (first run, or the previous one never finished) are the items counted
    // again, which costs O(items).
    let in_sync = match in_sync.counted {
        Some(before) => before.saturating_add_signed(in_sync.delta),
        None => state::all_items(store, conn.id)
            .await?
            .iter()
            .filter(|i| i.in_sync())
            .count() as u64,
    };
    let mut st = stats::load(store, conn.id).await?;
    st.add_run(
        RunRecord {
            started,
            ended: Some(ended),
            outcome,
            counts,
        },
        in_sync,
    );
    let mut b = Batch::new();
    stats::stage(&mut b, conn.id, &st)?;
    store.commit(b).await
}

/// What the provider says about an item this run.
#[derive(Debug, Clone)]
enum Obs {
    NotReported,
    Present { card: VCard, etag: Option<String> },
    Deleted,
}

/// Why applying a plan stopped.
enum Stop {
    /// The card changed at the provider (412): re-fetch and re-plan.
    RemoteMoved,
    /// The card is gone at the provider: re-plan with it deleted.
    RemoteGone,
    /// The person moved under the plan: re-read and re-plan.
    CrmMoved,
    /// This item fails this run; the run goes on.
    Item(String),
    /// The run stops.
    Fatal(SyncError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Fatal(e.into())
    }
}

fn crm_stop(e: CrmError) -> Stop {
    match e {
        CrmError::VersionConflict { .. } | CrmError::NotFound { .. } => Stop::CrmMoved,
        e => Stop::Fatal(e.into()),
    }
}

fn provider_stop(e: ProviderError) -> Stop {
    match e {
        ProviderError::Conflict => Stop::RemoteMoved,
        ProviderError::NotFound => Stop::RemoteGone,
        ProviderError::Rejected { .. }
        | ProviderError::Unsupported(_)
        | ProviderError::Protocol(_) => Stop::Item(e.to_string()),
        e => Stop::Fatal(e.into()),
    }
}

/// The writes of the open page, not committed yet.
#[derive(Default)]
struct Open {
    batch: Batch,
    staged: Vec<Staged<Person>>,
    persons: BTreeSet<PersonId>,
    items: BTreeSet<String>,
    conflicts: Vec<ConflictRecord>,
    counts: RunCounts,
    rules: Vec<Rule>,
    /// Linked items added (removed, negative) by the open batch.
    in_sync_delta: i64,
}

/// The outcome of one applied plan, to add to the open page.
#[derive(Default)]
struct Applied {
    batch: Batch,
    staged: Vec<Staged<Person>>,
    persons: BTreeSet<PersonId>,
    conflicts: Vec<ConflictRecord>,
    counts: RunCounts,
    /// Linked items added (removed, negative) by the batch.
    in_sync_delta: i64,
}

struct Engine<'a> {
    conn: &'a SyncConnection,
    provider: &'a dyn Provider,
    crm: &'a Crm,
    store: &'a dyn Store,
    options: &'a Options,
    clock: Clock,
    user: User,
    ctx: AccessContext,
    dirs: FieldDirections,
    region: Region,
    open: Open,
    counts: RunCounts,
    rules: BTreeMap<String, u64>,
    conflicts: Vec<ConflictRecord>,
    errors: Vec<ItemError>,
    pages: u64,
    items: u64,
    full_listing: bool,
    /// Linked items added (removed, negative) by the batches committed so far.
    in_sync_delta: i64,
    /// The pending pushes earlier runs left (read once, when a card first needs a link).
    leftover_pushes: tokio::sync::OnceCell<Vec<state::PendingPush>>,
}

impl<'a> Engine<'a> {
    async fn new(
        conn: &'a SyncConnection,
        provider: &'a dyn Provider,
        crm: &'a Crm,
        store: &'a dyn Store,
        options: &'a Options,
        clock: Clock,
    ) -> Result<Engine<'a>, SyncError> {
        let user = crm
            .get_user(conn.user_id)
            .await?
            .ok_or(SyncError::UserNotFound(conn.user_id))?;
        let ctx = crm.access_context().await?;
        Ok(Engine {
            conn,
            provider,
            crm,
            store,
            options,
            clock,
            user,
            ctx,
            dirs: conn.field_directions(),
            region: conn.region(),
            open: Open::default(),
            counts: RunCounts::default(),
            rules: BTreeMap::new(),
            conflicts: Vec::new(),
            errors: Vec::new(),
            pages: 0,
            items: 0,
            full_listing: false,
            in_sync_delta: 0,
            leftover_pushes: tokio::sync::OnceCell::new(),
        })
    }

    /// Reports the progress so far to [`Options::progress`], if any.
    fn report(&self) {
        if let Some(hook) = &self.options.progress {
            let mut counts = self.counts;
            counts += self.open.counts;
            hook(&Progress {
                pages: self.pages,
                items: self.items,
                counts,
            });
        }
    }

    /// One more item handled.
    fn item_done(&mut self) {
        self.items += 1;
        self.report();
    }

    async fn run(&mut self) -> Result<(), SyncError> {
        self.pull_remote().await?;
        self.walk_crm().await?;
        Ok(())
    }

    /// Commits the open page, with the provider cursor and/or CRM position when given.
    async fn flush(
        &mut self,
        cursor: Option<Option<&str>>,
        crm_seq: Option<u64>,
    ) -> Result<(), SyncError> {
        let mut open = std::mem::take(&mut self.open);
        if let Some(c) = cursor {
            state::stage_cursor(&mut open.batch, self.conn.id, c)?;
        }
        if let Some(seq) = crm_seq {
            state::stage_crm_cursor(&mut open.batch, self.conn.id, seq);
        }
        if !open.batch.is_empty() {
            self.store.commit(open.batch).await?;
        }
        drop(open.staged);
        self.in_sync_delta += open.in_sync_delta;
        self.counts += open.counts;
        self.conflicts.extend(open.conflicts);
        for r in open.rules {
            *self.rules.entry(format!("{r:?}")).or_default() += 1;
        }
        Ok(())
    }

    fn item_error(&mut self, remote_id: Option<&str>, person_id: Option<PersonId>, msg: String) {
        tracing::warn!(connection = self.conn.id, ?remote_id, ?person_id, "{msg}");
        self.counts.errors += 1;
        self.errors.push(ItemError {
            remote_id: remote_id.map(str::to_owned),
            person_id,
            message: msg,
        });
    }

    // ------------------------------------------------------------------ provider side

    async fn pull_remote(&mut self) -> Result<(), SyncError> {
        let mut cursor = state::cursor(self.store, self.conn.id).await?;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut listing = false;
        loop {
            let page = self
                .provider
                .pull(&self.conn.group, cursor.as_deref())
                .await?;
            self.pages += 1;
            self.report();
            if page.kind == PullKind::FullListing && !listing {
                listing = true;
                self.full_listing = true;
                seen.clear();
            }
            for change in page.changes {
                match change {
                    RemoteChange::Upsert(item) => {
                        seen.insert(item.id.clone());
                        let obs = Obs::Present {
                            card: item.card,
                            etag: item.etag,
                        };
                        self.sync_item(Some(item.id), obs, None).await?;
                    }
                    RemoteChange::Delete { id } => {
                        seen.remove(&id);
                        self.sync_item(Some(id), Obs::Deleted, None).await?;
                    }
                    RemoteChange::Invalid { id, reason } => {
                        seen.insert(id.clone());
                        self.item_error(Some(&id), None, format!("unreadable card: {reason}"));
                    }
                }
                self.item_done();
            }
            if listing && page.complete {
                // Every stored card the listing did not mention was deleted remotely.
                self.flush(None, None).await?;
                let stored = state::all_items(self.store, self.conn.id).await?;
                for item in stored {
                    if item.remote.is_some() && !seen.contains(&item.remote_id) {
                        self.sync_item(Some(item.remote_id), Obs::Deleted, None)
                            .await?;
                        self.item_done();
                    }
                }
            }
            if listing && !page.complete {
                // A listing's cursor is held until the listing completes.
                self.flush(None, None).await?;
            } else {
                self.flush(Some(page.cursor.as_deref()), None).await?;
            }
            cursor = page.cursor;
            if page.complete {
                return Ok(());
            }
        }
    }

    // ------------------------------------------------------------------ CRM side

    async fn walk_crm(&mut self) -> Result<(), SyncError> {
        let mut seq = state::crm_cursor(self.store, self.conn.id).await?;
        loop {
            let page = self
                .crm
                .changes_since(seq, self.options.crm_page.max(1))
                .await?;
            let persons: BTreeSet<PersonId> = page
                .changes
                .iter()
                .filter_map(|c| match &c.event {
                    crate::crm::ChangeEvent::Person { person_id, .. } => Some(*person_id),
                    _ => None,
                })
                .collect();
            for pid in persons {
                if self.open.persons.contains(&pid) {
                    self.flush(None, None).await?;
                }
                let items = state::items_of_person(self.store, self.conn.id, pid).await?;
                if items.is_empty() {
                    let owned = self
                        .crm
                        .get_person(pid)
                        .await?
                        .is_some_and(|p| p.owner_id == self.user.id);
                    if owned {
                        self.sync_item(None, Obs::NotReported, Some(pid)).await?;
                    }
                } else {
                    for id in items {
                        self.sync_item(Some(id), Obs::NotReported, None).await?;
                    }
                }
                self.item_done();
            }
            self.flush(None, Some(page.next_seq)).await?;
            seq = page.next_seq;
            if !page.more {
                return Ok(());
            }
        }
    }

    // ------------------------------------------------------------------ one item

    fn crm_person(&self, p: &Person) -> CrmPerson {
        CrmPerson {
            person_id: p.id,
            fields: person_to_map(&p.fields(), self.region),
            version: p.version,
            update_time: DateTime::parse_from_rfc3339(&p.update_time)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
            editable: self.editable(p),
        }
    }

    fn editable(&self, p: &Person) -> bool {
        p.owner_id == self.user.id && can_edit(&self.user, &p.acl(), &self.ctx)
    }

    /// An existing person for a card nobody is linked to: the person whose push created the
    /// card (derived UID), else one of the user's persons with the same email, else phone,
    /// that no other item of this connection is linked to.
    async fn link_candidate(
        &self,
        remote_id: &str,
        card: &VCard,
        fields: &FieldMap,
    ) -> Result<Option<LinkCandidate>, SyncError> {
        let mut ids: Vec<PersonId> = Vec::new();
        if let Some(pid) =
            crate::vcard::uid(card).and_then(|u| person_of_derived_uid(self.conn.id, u))
        {
            ids.push(pid);
        }
        // A card an earlier run created and then crashed before committing: the pending push
        // it left carries exactly this card's fields (Google and Graph's delta do not return
        // our UID, and a person may have no email or phone to match on).
        let leftover = self
            .leftover_pushes
            .get_or_try_init(|| state::pending_pushes(self.store, self.conn.id))
            .await?;
        ids.extend(
            leftover
                .iter()
                .filter(|p| p.sent(fields))
                .map(|p| p.person.person_id),
        );
        let pf = map_to_person(fields, self.region);
        for e in &pf.emails {
            let mut found = self.crm.find_by_email(self.user.id, &e.value).await?;
            found.sort_unstable();
            ids.extend(found);
        }
        for p in &pf.phones {
            let mut found = self.crm.find_by_phone(self.user.id, &p.value).await?;
            found.sort_unstable();
            ids.extend(found);
        }
        let mut tried = BTreeSet::new();
        for pid in ids {
            if !tried.insert(pid) {
                continue;
            }
            let linked = state::items_of_person(self.store, self.conn.id, pid).await?;
            if linked.iter().any(|r| r != remote_id) {
                continue;
            }
            if let Some(p) = self.crm.get_person(pid).await? {
                if self.editable(&p) {
                    let c = self.crm_person(&p);
                    return Ok(Some(LinkCandidate {
                        person_id: c.person_id,
                        fields: c.fields,
                        version: c.version,
                        update_time: c.update_time,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Plans and applies one item, re-planning after a 412 or a person that moved.
    async fn sync_item(
        &mut self,
        remote_id: Option<String>,
        mut obs: Obs,
        crm_hint: Option<PersonId>,
    ) -> Result<(), SyncError> {
        let mut attempts = 0;
        while attempts <= self.options.max_retries {
            let record = match &remote_id {
                Some(id) => {
                    if self.open.items.contains(id) {
                        self.flush(None, None).await?;
                    }
                    state::item(self.store, self.conn.id, id).await?
                }
                None => None,
            };
            let base_card = record.as_ref().and_then(ItemRecord::card);
            // Graph and EWS keep what does not fit their slots only in our copy: put it back.
            if let (Obs::Present { card, .. }, Some(base)) = (&mut obs, &base_card) {
                *card = self.as_stored(card, base);
            }
            let base = record.as_ref().map(ItemRecord::base);
            let person_id = base
                .as_ref()
                .and_then(|b| b.person.map(|p| p.person_id))
                .or(crm_hint);
            let person = match person_id {
                Some(pid) => self.crm.get_person(pid).await?,
                None => None,
            };
            let crm = match (person_id, &person) {
                (Some(_), Some(p)) => CrmState::Present(self.crm_person(p)),
                (Some(pid), None) if base.as_ref().is_some_and(|b| b.person.is_some()) => {
                    CrmState::Deleted { person_id: pid }
                }
                _ => CrmState::Absent,
            };
            let remote = match &obs {
                Obs::NotReported => RemoteState::NotReported,
                Obs::Present { card, etag } => {
                    RemoteState::Present(remote_item(card, etag.clone(), self.region))
                }
                Obs::Deleted => RemoteState::Deleted,
            };
            let mut link_candidate = match (&remote, &crm, &obs, &remote_id) {
                (
                    RemoteState::Present(r),
                    CrmState::Absent | CrmState::Deleted { .. },
                    Obs::Present { card, .. },
                    Some(id),
                ) => self.link_candidate(id, card, &r.fields).await?,
                _ => None,
            };
            // A push whose base a crash lost: when the card is what it sent, its record is
            // the base (state.rs, "Pending pushes").
            let (mut base, mut crm, mut pending_used) = (base, crm, None);
            if let RemoteState::Present(r) = &remote {
                let known = base
                    .as_ref()
                    .and_then(|b| b.remote.as_ref())
                    .is_some_and(|m| m.fingerprint == r.card_fingerprint);
                let pid = person_id.or(link_candidate.as_ref().map(|c| c.person_id));
                if let (false, Some(pid)) = (known, pid) {
                    if let Some(p) = self.recovered_push(pid, &r.fields).await? {
                        base = Some(p.base);
                        crm = CrmState::Present(self.crm_person(&p.person));
                        link_candidate = None;
                        pending_used = Some(pid);
                    }
                }
            }
            let mut involved: BTreeSet<PersonId> = person_id.into_iter().collect();
            involved.extend(link_candidate.as_ref().map(|c| c.person_id));
            if involved.iter().any(|p| self.open.persons.contains(p)) {
                // Plan on committed state only (this does not count as an attempt).
                self.flush(None, None).await?;
                continue;
            }
            attempts += 1;
            let input = ItemInput {
                remote,
                crm,
                base,
                link_candidate,
            };
            let plan = reconcile(&input, self.conn.direction, self.conn.policy, &self.dirs);
            let current_card = match &obs {
                Obs::Present { card, .. } => Some(card.clone()),
                _ => base_card,
            };
            let planned = match (&input.crm, &input.link_candidate) {
                (CrmState::Present(c), _) => Some((
                    PersonMark {
                        person_id: c.person_id,
                        version: c.version,
                    },
                    &c.fields,
                )),
                (_, Some(c)) => Some((
                    PersonMark {
                        person_id: c.person_id,
                        version: c.version,
                    },
                    &c.fields,
                )),
                _ => None,
            };
            let ctx = ItemCx {
                remote_id: remote_id.as_deref(),
                record: record.as_ref(),
                card: current_card.as_ref(),
                base: input.base.as_ref(),
                planned,
                pending_used,
            };
            match self.apply(&ctx, &plan).await {
                Ok(mut applied) => {
                    applied.persons.extend(involved);
                    let open = &mut self.open;
                    open.batch.extend(applied.batch);
                    open.staged.extend(applied.staged);
                    open.persons.extend(applied.persons);
                    if let Some(id) = &remote_id {
                        open.items.insert(id.clone());
                    }
                    open.conflicts.extend(applied.conflicts);
                    open.counts += applied.counts;
                    open.in_sync_delta += applied.in_sync_delta;
                    open.rules.push(plan.rule);
                    return Ok(());
                }
                Err(Stop::RemoteMoved) => {
                    let Some(id) = &remote_id else {
                        self.item_error(
                            None,
                            person_id,
                            "the card to create exists already; it is linked when the provider \
                             reports it"
                                .into(),
                        );
                        return Ok(());
                    };
                    obs = match self.provider.fetch(&self.conn.group, id).await? {
                        Some(item) => Obs::Present {
                            card: item.card,
                            etag: item.etag,
                        },
                        None => Obs::Deleted,
                    };
                }
                Err(Stop::RemoteGone) => obs = Obs::Deleted,
                Err(Stop::CrmMoved) => {}
                Err(Stop::Item(msg)) => {
                    self.item_error(remote_id.as_deref(), person_id, msg);
                    return Ok(());
                }
                Err(Stop::Fatal(e)) => return Err(e),
            }
        }
        self.item_error(
            remote_id.as_deref(),
            crm_hint,
            format!(
                "gave up after {} attempts: the item kept changing",
                self.options.max_retries + 1
            ),
        );
        Ok(())
    }

    /// Applies a plan: CRM writes and conflict records are staged, provider writes are made,
    /// and the new base is staged last.
    async fn apply(&self, cx: &ItemCx<'_>, plan: &Plan) -> Result<Applied, Stop> {
        let mut out = Applied::default();
        let mut person_written: Option<(PersonId, u64)> = None;
        let mut card_written: Option<(String, Option<String>, VCard)> = None;
        let mut conflicts = Vec::new();
        let mut new_base: Option<&NewBase> = None;
        let mut forget = false;
        let mut pending = cx.pending_used;
        let region = self.region;
        for op in &plan.ops {
            match op {
                Op::RecordConflict(c) => conflicts.push(c.clone()),
                Op::CreatePerson { fields } => {
                    let acl = Acl {
                        owner_id: self.user.id,
                        followers: vec![],
                        visible_to: self.conn.visibility,
                    };
                    let staged = self
                        .crm
                        .stage_create(&mut out.batch, map_to_person(fields, region), acl)
                        .await
                        .map_err(crm_stop)?;
                    person_written = Some((staged.value.id, staged.value.version));
                    out.persons.insert(staged.value.id);
                    out.staged.push(staged);
                    out.counts.crm.added += 1;
                }
                Op::LinkPerson {
                    person_id,
                    expected_version,
                    fields,
                    changed,
                }
                | Op::UpdatePerson {
                    person_id,
                    expected_version,
                    fields,
                    changed,
                } => {
                    if changed.is_empty() {
                        continue;
                    }
                    let p = self
                        .crm
                        .get_person(*person_id)
                        .await
                        .map_err(crm_stop)?
                        .ok_or(Stop::CrmMoved)?;
                    if p.version != *expected_version {
                        return Err(Stop::CrmMoved);
                    }
                    let new_fields = apply_to_person(&p.fields(), fields, changed, region);
                    let staged = self
                        .crm
                        .stage_update(
                            &mut out.batch,
                            *person_id,
                            *expected_version,
                            new_fields,
                            p.acl(),
                        )
                        .await
                        .map_err(crm_stop)?;
                    person_written = Some((staged.value.id, staged.value.version));
                    out.staged.push(staged);
                    out.counts.crm.updated += 1;
                }
                Op::DeletePerson {
                    person_id,
                    expected_version,
                } => {
                    match self
                        .crm
                        .stage_delete(&mut out.batch, *person_id, Some(*expected_version))
                        .await
                    {
                        Ok(staged) => {
                            out.staged.push(staged);
                            out.counts.crm.deleted += 1;
                        }
                        // Already gone: nothing to delete.
                        Err(CrmError::NotFound { .. }) => {}
                        Err(e) => return Err(crm_stop(e)),
                    }
                }
                Op::UnlinkPerson { .. } => out.counts.crm.unlinked += 1,
                Op::PushCreate { person_id, fields } => {
                    self.refuse_one_way()?;
                    let uid = derived_uid(self.conn.id, *person_id);
                    let all: BTreeSet<String> = fields.field_names().map(str::to_owned).collect();
                    let card =
                        card_for_push(None, fields, &all, Some(&uid), (self.clock)(), region);
                    pending = self.commit_pending(cx, plan, &card).await?.or(pending);
                    let w = self
                        .provider
                        .create(&self.conn.group, &card, &person_id.to_string())
                        .await
                        .map_err(provider_stop)?;
                    let stored = self.as_stored(&w.card, &card);
                    card_written = Some((w.id, w.etag, stored));
                    out.counts.provider.added += 1;
                }
                Op::PushUpdate {
                    fields,
                    changed,
                    if_match,
                } => {
                    self.refuse_one_way()?;
                    let id = cx.remote_id.ok_or(Stop::Item("no card to update".into()))?;
                    let card =
                        card_for_push(cx.card, fields, changed, None, (self.clock)(), region);
                    pending = self.commit_pending(cx, plan, &card).await?.or(pending);
                    let w = self
                        .provider
                        .update_with_base(&self.conn.group, id, if_match.as_deref(), cx.card, &card)
                        .await
                        .map_err(provider_stop)?;
                    let stored = self.as_stored(&w.card, &card);
                    card_written = Some((id.to_owned(), w.etag, stored));
                    out.counts.provider.updated += 1;
                }
                Op::PushDelete { if_match } => {
                    self.refuse_one_way()?;
                    let id = cx.remote_id.ok_or(Stop::Item("no card to delete".into()))?;
                    match self
                        .provider
                        .delete(&self.conn.group, id, if_match.as_deref())
                        .await
                    {
                        Ok(()) | Err(ProviderError::NotFound) => {}
                        Err(e) => return Err(provider_stop(e)),
                    }
                    out.counts.provider.deleted += 1;
                }
                Op::SaveBase(nb) => new_base = Some(nb),
                Op::ForgetItem => forget = true,
                Op::Nothing => {}
            }
        }

        let person_of_item = person_written
            .map(|(id, _)| id)
            .or(cx.base.and_then(|b| b.person.map(|p| p.person_id)));
        let item_id = card_written
            .as_ref()
            .map(|(id, _, _)| id.as_str())
            .or(cx.remote_id);
        for c in &conflicts {
            let rec = conflicts::stage(
                self.store,
                &mut out.batch,
                self.conn.id,
                item_id.unwrap_or_default(),
                person_of_item,
                c,
                (self.clock)(),
            )
            .await?;
            out.counts.conflicts += 1;
            out.conflicts.push(rec);
        }

        if let Some(pid) = pending {
            state::stage_clear_pending_push(&mut out.batch, self.conn.id, pid);
        }
        if forget {
            if let Some(old) = cx.record {
                state::stage_forget(&mut out.batch, self.conn.id, old);
                out.in_sync_delta -= i64::from(old.in_sync());
            }
        } else if let Some(nb) = new_base {
            let Some(item_id) = item_id else {
                return Ok(out);
            };
            let remote = match &nb.remote {
                Track::Known(m) => Some(m.clone()),
                Track::Written => card_written.as_ref().map(|(_, etag, card)| RemoteMark {
                    fingerprint: fingerprint(card).to_hex(),
                    etag: etag.clone(),
                }),
                Track::Gone => None,
            };
            let person = match &nb.person {
                Track::Known(pm) => Some(*pm),
                Track::Written => {
                    person_written.map(|(person_id, version)| PersonMark { person_id, version })
                }
                Track::Gone => None,
            };
            let card = card_written
                .as_ref()
                .map(|(_, _, c)| c)
                .or(cx.card)
                .filter(|_| remote.is_some());
            let base = Base {
                fields: nb.fields.clone(),
                remote,
                person,
                origin: nb.origin,
            };
            let uid = card.and_then(|c| crate::vcard::uid(c).map(str::to_owned));
            let record = ItemRecord::new(item_id, uid, &base, card);
            state::stage_put(&mut out.batch, self.conn.id, &record, cx.record)?;
            out.in_sync_delta +=
                i64::from(record.in_sync()) - i64::from(cx.record.is_some_and(ItemRecord::in_sync));
        }
        Ok(out)
    }

    /// Commits the pending push of the planned person before `card` is sent (state.rs,
    /// "Pending pushes"); returns the person.
    async fn commit_pending(
        &self,
        cx: &ItemCx<'_>,
        plan: &Plan,
        card: &VCard,
    ) -> Result<Option<PersonId>, Stop> {
        let Some((mark, fields)) = cx.planned else {
            return Ok(None);
        };
        let origin = plan
            .ops
            .iter()
            .find_map(|op| match op {
                Op::SaveBase(nb) => Some(nb.origin),
                _ => None,
            })
            .unwrap_or(Origin::Linked);
        // The base a recovery merges against, per field: the person's value for a field the
        // push carries (the card now holds the merge of it), the old base's for a field it does
        // not (the push left the card's value alone, so the old agreement still holds).
        let empty = FieldMap::new();
        let old = cx.base.map_or(&empty, |b| &b.fields);
        let mut agreed = FieldMap::new();
        for name in FieldMap::union_of_names(&[fields, old]) {
            let from = if self.dirs.get(name).to_provider() {
                fields
            } else {
                old
            };
            agreed.put(name, from.get(name).cloned());
        }
        let sent = remote_item(card, None, self.region).fields;
        let pending = state::PendingPush::new(mark, origin, &agreed, &sent);
        let mut b = Batch::new();
        state::stage_pending_push(&mut b, self.conn.id, &pending)?;
        self.store.commit(b).await?;
        Ok(Some(mark.person_id))
    }

    /// The pending push of `pid` when the pulled card (`card_fields`) is the card it sent and
    /// the person is still there.
    async fn recovered_push(
        &self,
        pid: PersonId,
        card_fields: &FieldMap,
    ) -> Result<Option<Recovered>, SyncError> {
        let Some(pending) = state::pending_push(self.store, self.conn.id, pid).await? else {
            return Ok(None);
        };
        if !pending.sent(card_fields) {
            return Ok(None);
        }
        Ok(self.crm.get_person(pid).await?.map(|person| Recovered {
            base: pending.base(),
            person,
        }))
    }

    fn refuse_one_way(&self) -> Result<(), Stop> {
        match self.conn.direction {
            Direction::TwoWay => Ok(()),
            Direction::OneWay => Err(Stop::Item(
                "one-way sync never writes to the provider".into(),
            )),
        }
    }

    /// The card as the engine remembers it after a write: what the provider returned, with
    /// Graph's or EWS's overflow put back from what was sent.
    fn as_stored(&self, returned: &VCard, sent: &VCard) -> VCard {
        match self.provider.kind() {
            ProviderKind::Graph => graph::mapping::reattach_overflow(returned, sent),
            ProviderKind::Ews => ews::mapping::reattach_overflow(returned, sent),
            _ => returned.clone(),
        }
    }
}

/// What `apply` needs besides the plan.
struct ItemCx<'c> {
    remote_id: Option<&'c str>,
    record: Option<&'c ItemRecord>,
    card: Option<&'c VCard>,
    base: Option<&'c Base>,
    /// The person the plan was made from (its mark and mapped fields), for a pending push.
    planned: Option<(PersonMark, &'c FieldMap)>,
    /// The person whose pending push stood in for the base.
    pending_used: Option<PersonId>,
}

/// A pending push found to have landed.
struct Recovered {
    base: Base,
    person: Person,
}
