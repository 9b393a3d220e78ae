//! The scheduler: runs each connection on its interval and on demand.
//!
//! - **Timing.** After a successful run a connection is next due after its interval plus a
//!   random jitter in `0..=jitter`. After `n` consecutive failures it is due after
//!   `min(backoff_base · 2^(n-1), backoff_max)`, and never before the provider's
//!   `Retry-After`. A failure a retry cannot fix (credentials rejected, re-authorization
//!   needed) *parks* the connection: it runs again only after [`Scheduler::upsert`] or a manual
//!   [`Scheduler::refresh`].
//! - **Concurrency.** At most `max_concurrent` runs at once, and at most `max_per_account`
//!   runs of one account (Graph allows 4 concurrent requests per mailbox).
//! - **Fairness.** Due connections start earliest-due first (manual requests ahead of
//!   scheduled ones); a connection whose account is saturated is skipped, not waited for, so
//!   it never blocks others. Since a finished run is due again only after its interval, every
//!   due connection is reached after at most `due / max_concurrent` run lengths: no starvation.
//! - **Coalescing.** A manual refresh of a connection that is running or already queued joins
//!   that run ([`RunTicket::joined`]) instead of starting a second one.
//! - **Restarts.** Next-run times and failure counts are persisted in the [`SCHED_NEXT`]
//!   keyspace as wall-clock times, so they survive a restart.
//!
//! - **Several nodes** ([`Scheduler::with_cluster`], PostgreSQL): the due time lives in the
//!   shared lease table instead of the local queue. A node claims due connections
//!   ([`JobLeases::claim`], `FOR UPDATE SKIP LOCKED`) up to its free slots, renews the lease
//!   while the run goes on (a lost or unrenewable lease stops the run), and completes it with
//!   the fence checked, setting the next due time for every node. A manual refresh claims the
//!   connection on the node that received it, at once or as soon as the node running it
//!   finishes. Every commit of a run carries its lease's fence ([`run_fenced`],
//!   [`FencedStore`]), so a node that stalled past its lease cannot write once another node
//!   took the connection over. Without a cluster (sled) the scheduler works from its local
//!   queue alone.
//!
//! The scheduler knows nothing about syncing: it calls a [`JobRunner`].
//!
//! Architecture invariant: with a cluster, a connection runs only under a lease this node
//! holds; its next due time is written only by [`JobLeases::complete`] with the lease's fence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::store::{Batch, Expect, ScanPage, Space, Store, StoreError};

/// A connection id.
pub type ConnectionId = u64;
/// A run id (unique over restarts: drawn from [`SEQ_RUN`]).
pub type RunId = u64;

/// Next-run state per connection: connection id (8 bytes BE) → JSON [`Persisted`].
pub const SCHED_NEXT: Space = "sched.next_run";
/// The sequence of run ids.
pub const SEQ_RUN: Space = "sched.seq.run";
/// With a cluster, the fence of the lease the connection's current run holds: connection id
/// (8 bytes BE) → fence (i64, 8 bytes BE). Written by [`run_fenced`] when a run starts,
/// checked by every commit of that run made through a [`FencedStore`].
pub const SCHED_FENCE: Space = "sched.fence";

tokio::task_local! {
    /// The (connection, fence) of the leased run this task belongs to.
    static RUN_FENCE: (ConnectionId, i64);
}

/// A [`Store`] whose commits made inside [`run_fenced`] carry the run's lease fence as a guard:
/// a node that stalled past its lease (a pause, a partition) and was taken over cannot commit
/// an engine page, a person or a run record afterwards, because the node that took the job
/// over recorded a higher fence when its run started. The refusal is a
/// [`StoreError::Backend`], not a `Conflict`, so no caller retries it as a lost race. Commits
/// outside a fenced run pass through unchanged. The service puts one around the store when
/// it schedules through a cluster.
pub struct FencedStore {
    inner: Arc<dyn Store>,
}

impl FencedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner }
    }
}

fn fence_bytes(fence: i64) -> Vec<u8> {
    fence.to_be_bytes().to_vec()
}

fn fence_lost(id: ConnectionId, fence: i64) -> StoreError {
    StoreError::Backend(format!(
        "connection {id}: the lease of this run (fence {fence}) was taken over by another node; \
         its writes are refused"
    ))
}

#[async_trait]
impl Store for FencedStore {
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

    async fn commit(&self, mut batch: Batch) -> Result<(), StoreError> {
        let Ok((id, fence)) = RUN_FENCE.try_with(|f| *f) else {
            return self.inner.commit(batch).await;
        };
        if batch.is_empty() {
            return Ok(());
        }
        batch.expects.insert(
            0,
            Expect {
                space: SCHED_FENCE,
                key: key(id).to_vec(),
                expected: Some(fence_bytes(fence)),
            },
        );
        match self.inner.commit(batch).await {
            Err(StoreError::Conflict { space, .. }) if space == SCHED_FENCE => {
                Err(fence_lost(id, fence))
            }
            other => other,
        }
    }

    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        self.inner.next_id(sequence).await
    }
}

/// Runs `run` as the holder of the lease with `fence` on connection `id`: first records the
/// fence in [`SCHED_FENCE`] (refused when a later claim already recorded a higher one), then
/// runs `run` so that its commits through a [`FencedStore`] hold only while no later claim has
/// started a run. Fences only grow (each claim bumps it), so of two nodes that both believe they
/// hold the job, only the later claim's run can write.
pub async fn run_fenced<F: std::future::Future>(
    store: &dyn Store,
    id: ConnectionId,
    fence: i64,
    run: F,
) -> Result<F::Output, StoreError> {
    loop {
        let current = store.get(SCHED_FENCE, &key(id)).await?;
        let recorded = current
            .as_deref()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes);
        if recorded.is_some_and(|r| r > fence) {
            return Err(fence_lost(id, fence));
        }
        if recorded == Some(fence) {
            break;
        }
        let mut b = Batch::new();
        b.expect(SCHED_FENCE, key(id).to_vec(), current);
        b.put(SCHED_FENCE, key(id).to_vec(), fence_bytes(fence));
        match store.commit(b).await {
            Ok(()) => break,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(RUN_FENCE.scope((id, fence), run).await)
}

/// Scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Interval of a connection that does not set its own.
    pub default_interval: Duration,
    /// Up to this much is added at random to each interval.
    pub jitter: Duration,
    /// First retry delay after a failure.
    pub backoff_base: Duration,
    /// The cap of the retry delay (a longer `Retry-After` still wins).
    pub backoff_max: Duration,
    /// Global limit of concurrent runs.
    pub max_concurrent: usize,
    /// Limit of concurrent runs per account.
    pub max_per_account: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        crate::config::SchedulerSection::default().to_scheduler()
    }
}

impl SchedulerConfig {
    /// The retry delay after `failures` consecutive failures (≥ 1), before `Retry-After`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        self.backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max)
    }
}

/// What to schedule for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The connection.
    pub connection_id: ConnectionId,
    /// The account the per-account limit counts against (e.g. `graph:ann@example.com`).
    pub account: String,
    /// The connection's interval; `None` uses the default.
    pub interval: Option<Duration>,
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The interval elapsed.
    Scheduled,
    /// A user pressed Refresh (or Start Syncing).
    Manual,
}

/// How a run ended, as far as scheduling is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JobOutcome {
    /// The run finished.
    Succeeded,
    /// The run failed.
    Failed {
        /// What went wrong (shown to the user; never contains secrets).
        message: String,
        /// The provider asked us to wait this long.
        retry_after_secs: Option<u64>,
        /// True when a later retry may succeed without a human (else the job is parked).
        transient: bool,
    },
}

/// Runs one sync of a connection.
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    /// Runs connection `connection_id` as run `run_id`.
    async fn run(&self, connection_id: ConnectionId, run_id: RunId, trigger: Trigger)
        -> JobOutcome;

    /// The spec of a connection this node has not been told about (another node created it);
    /// `None` when it no longer exists or is not to be synced. Used with a cluster only.
    async fn spec(&self, connection_id: ConnectionId) -> Option<JobSpec> {
        Some(JobSpec {
            connection_id,
            account: format!("connection:{connection_id}"),
            interval: None,
        })
    }
}

/// A lease on one connection's job, held by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLease {
    /// The connection.
    pub job: ConnectionId,
    /// Identifies this claim (increases with every claim of the job).
    pub fence: i64,
}

/// The shared lease table the nodes of a cluster schedule through (implemented on
/// PostgreSQL by `store::leases::Leases`). Every time is the table's clock.
#[async_trait]
pub trait JobLeases: Send + Sync + 'static {
    /// Adds `job`, first due after `due_in`; a known job keeps its schedule.
    async fn schedule(&self, job: ConnectionId, due_in: Duration) -> Result<(), StoreError>;
    /// Claims up to `max` due, unheld jobs for `node`.
    async fn claim(
        &self,
        node: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<JobLease>, StoreError>;
    /// Claims `job` now, due or not, unless another node holds an unexpired lease on it.
    async fn claim_now(
        &self,
        node: &str,
        job: ConnectionId,
        lease: Duration,
    ) -> Result<Option<JobLease>, StoreError>;
    /// Extends a lease still held; `false` when it was lost.
    async fn renew(&self, node: &str, held: JobLease, lease: Duration) -> Result<bool, StoreError>;
    /// Releases the job, next due after `next_in`; `false` when the lease was lost.
    async fn complete(
        &self,
        node: &str,
        held: JobLease,
        next_in: Duration,
    ) -> Result<bool, StoreError>;
    /// Makes `job` due now (and again right after a run in progress).
    async fn trigger(&self, job: ConnectionId) -> Result<(), StoreError>;
    /// Forgets `job`.
    async fn remove(&self, job: ConnectionId) -> Result<(), StoreError>;
}

/// How this node takes part in a cluster of nodes sharing one lease table.
#[derive(Clone)]
pub struct Cluster {
    /// The shared lease table.
    pub leases: Arc<dyn JobLeases>,
    /// This node's name in the table (unique per process).
    pub node: String,
    /// How long a claim holds without renewal; a dead node's jobs move after this.
    pub lease: Duration,
    /// How often an idle node looks for due jobs.
    pub poll: Duration,
}

impl Cluster {
    /// Over `leases`, with a fresh node name, a 60 s lease and a 1 s poll.
    pub fn new(leases: Arc<dyn JobLeases>) -> Self {
        Self {
            leases,
            node: format!(
                "{}-{}-{:08x}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into()),
                std::process::id(),
                rand::thread_rng().gen::<u32>()
            ),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        }
    }
}

/// A parked job's "next due" in the lease table: in effect never, until a refresh or upsert.
const PARKED_FOR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why the scheduler refused a request.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The connection is not scheduled (not started, or removed).
    #[error("connection {0} is not scheduled; start syncing it first")]
    NotScheduled(ConnectionId),
    /// The scheduler is shutting down.
    #[error("the scheduler is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A handle on a run: its id, and its outcome once it ends.
#[derive(Debug, Clone)]
pub struct RunTicket {
    /// The run.
    pub run_id: RunId,
    /// True when this request joined a run that was already running or queued.
    pub joined: bool,
    rx: watch::Receiver<Option<JobOutcome>>,
}

impl RunTicket {
    /// Waits until the run ends.
    pub async fn wait(mut self) -> JobOutcome {
        loop {
            if let Some(o) = self.rx.borrow().clone() {
                return o;
            }
            if self.rx.changed().await.is_err() {
                return self.rx.borrow().clone().unwrap_or(JobOutcome::Failed {
                    message: "the run was abandoned (shutdown)".into(),
                    retry_after_secs: None,
                    transient: true,
                });
            }
        }
    }
}

/// The persisted schedule of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// When the connection is next due, milliseconds since the Unix epoch.
    pub next_run_unix_ms: u64,
    /// Consecutive failures.
    pub failures: u32,
    /// Parked after a failure that needs a human.
    #[serde(default)]
    pub parked: bool,
}

/// A connection's scheduling state, for the API and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    /// Seconds until the next scheduled run (0: due now); `None` when parked.
    pub next_run_in_secs: Option<u64>,
    /// Wall-clock time of the next scheduled run, ms since the epoch; `None` when parked.
    pub next_run_unix_ms: Option<u64>,
    /// The run in progress.
    pub running: Option<RunId>,
    /// A manual run waiting for a free slot.
    pub queued: Option<RunId>,
    /// Consecutive failures.
    pub failures: u32,
    /// Waiting for a human (re-authorization, new credentials).
    pub parked: bool,
}

struct Pending {
    run_id: RunId,
    tx: watch::Sender<Option<JobOutcome>>,
}

struct Entry {
    spec: JobSpec,
    next_run: Instant,
    failures: u32,
    parked: bool,
    running: Option<(RunId, watch::Receiver<Option<JobOutcome>>)>,
    manual: Option<Pending>,
    /// Scheduling generation: an `upsert` during a run must not be undone by its completion.
    generation: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<ConnectionId, Entry>,
    per_account: HashMap<String, usize>,
    running: usize,
    shutting_down: bool,
}

struct Inner {
    config: SchedulerConfig,
    runner: Arc<dyn JobRunner>,
    store: Arc<dyn Store>,
    cluster: Option<Cluster>,
    state: Mutex<State>,
    wake: Notify,
    idle: Notify,
}

/// The scheduler. Cheap to clone; [`Scheduler::start`] spawns its dispatcher.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(id: ConnectionId) -> [u8; 8] {
    id.to_be_bytes()
}

fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The wall-clock time of an instant.
fn to_wall(at: Instant) -> u64 {
    let now_i = Instant::now();
    let now_w = wall_ms(SystemTime::now());
    if at >= now_i {
        now_w.saturating_add((at - now_i).as_millis() as u64)
    } else {
        now_w.saturating_sub((now_i - at).as_millis() as u64)
    }
}

/// The instant of a wall-clock time (past times become "now").
fn from_wall(ms: u64) -> Instant {
    let now_w = wall_ms(SystemTime::now());
    Instant::now() + Duration::from_millis(ms.saturating_sub(now_w))
}

impl Scheduler {
    /// A scheduler over `runner`, persisting in `store`. Nothing runs until [`Self::start`].
    pub fn new(config: SchedulerConfig, runner: Arc<dyn JobRunner>, store: Arc<dyn Store>) -> Self {
        Self::build(config, runner, store, None)
    }

    /// A scheduler that shares its connections with the other nodes of `cluster`: each due
    /// connection runs on exactly one node.
    pub fn with_cluster(
        config: SchedulerConfig,
        runner: Arc<dyn JobRunner>,
        store: Arc<dyn Store>,
        cluster: Cluster,
    ) -> Self {
        Self::build(config, runner, store, Some(cluster))
    }

    fn build(
        config: SchedulerConfig,
        runner: Arc<dyn JobRunner>,
        store: Arc<dyn Store>,
        cluster: Option<Cluster>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                runner,
                store,
                cluster,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                idle: Notify::new(),
            }),
        }
    }

    /// Spawns the dispatcher; it stops after [`Self::shutdown`].
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        match inner.cluster.clone() {
            Some(c) => tokio::spawn(async move { inner.cluster_loop(c).await }),
            None => tokio::spawn(async move { inner.dispatch_loop().await }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    /// Adds a connection or changes its spec. A new connection resumes its persisted
    /// schedule, or is due now (plus jitter) when it has none. Un-parks a parked connection.
    pub async fn upsert(&self, spec: JobSpec) -> Result<(), SchedulerError> {
        self.upsert_inner(spec, false).await
    }

    /// Start Syncing: [`Self::upsert`], then [`Self::refresh`]. With a cluster, a connection
    /// that was never scheduled enters the lease table due one interval (+ jitter) from now
    /// instead of at once: the run queued here is its first run, and no other node may claim
    /// the job as due before this node's manual claim and run it a second time right after.
    /// (Should this node die before claiming it, the job runs one interval later elsewhere.)
    pub async fn start_now(&self, spec: JobSpec) -> Result<RunTicket, SchedulerError> {
        let id = spec.connection_id;
        self.upsert_inner(spec, true).await?;
        self.refresh(id).await
    }

    async fn upsert_inner(&self, spec: JobSpec, run_follows: bool) -> Result<(), SchedulerError> {
        let interval = spec.interval.unwrap_or(self.inner.config.default_interval);
        let persisted = match self
            .inner
            .store
            .get(SCHED_NEXT, &key(spec.connection_id))
            .await?
        {
            Some(b) => serde_json::from_slice::<Persisted>(&b).ok(),
            None => None,
        };
        let jitter = self.inner.jitter();
        let id = spec.connection_id;
        let unparked = {
            let mut st = lock(&self.inner.state);
            if st.shutting_down {
                return Err(SchedulerError::ShuttingDown);
            }
            match st.entries.get_mut(&spec.connection_id) {
                Some(e) => {
                    e.spec = spec;
                    let unparked = e.parked;
                    if e.parked {
                        e.parked = false;
                        e.next_run = Instant::now();
                    }
                    e.generation += 1;
                    unparked
                }
                None => {
                    let (next_run, failures) = match &persisted {
                        Some(p) if !p.parked => (from_wall(p.next_run_unix_ms), p.failures),
                        Some(p) => (Instant::now(), p.failures),
                        None => (Instant::now() + jitter, 0),
                    };
                    st.entries.insert(
                        spec.connection_id,
                        Entry {
                            spec,
                            next_run,
                            failures,
                            parked: false,
                            running: None,
                            manual: None,
                            generation: 0,
                        },
                    );
                    persisted.as_ref().is_some_and(|p| p.parked)
                }
            }
        };
        if let Some(c) = &self.inner.cluster {
            let due_in = match &persisted {
                Some(p) if !p.parked => Duration::from_millis(
                    p.next_run_unix_ms
                        .saturating_sub(wall_ms(SystemTime::now())),
                ),
                Some(_) => Duration::ZERO,
                None if run_follows => interval + jitter,
                None => jitter,
            };
            c.leases.schedule(id, due_in).await?;
            if unparked {
                // A parked job waits "forever" in the table: an upsert makes it due now.
                c.leases.trigger(id).await?;
            }
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Stops scheduling a connection and forgets its persisted schedule. A run in progress
    /// finishes.
    pub async fn remove(&self, id: ConnectionId) -> Result<(), SchedulerError> {
        lock(&self.inner.state).entries.remove(&id);
        if let Some(c) = &self.inner.cluster {
            c.leases.remove(id).await?;
        }
        let mut b = Batch::new();
        b.delete(SCHED_NEXT, key(id).to_vec());
        // A run of it still going on elsewhere can no longer write either.
        b.delete(SCHED_FENCE, key(id).to_vec());
        self.inner.store.commit(b).await?;
        Ok(())
    }

    /// Runs a connection now, or joins the run that is already running or queued.
    pub async fn refresh(&self, id: ConnectionId) -> Result<RunTicket, SchedulerError> {
        {
            let st = lock(&self.inner.state);
            if st.shutting_down {
                return Err(SchedulerError::ShuttingDown);
            }
            let e = st
                .entries
                .get(&id)
                .ok_or(SchedulerError::NotScheduled(id))?;
            if let Some(t) = Self::existing_ticket(e) {
                return Ok(t);
            }
        }
        // Allocate the id outside the lock (the store is async), then re-check.
        let run_id = self.inner.store.next_id(SEQ_RUN).await?;
        let ticket = {
            let mut st = lock(&self.inner.state);
            let e = st
                .entries
                .get_mut(&id)
                .ok_or(SchedulerError::NotScheduled(id))?;
            if let Some(t) = Self::existing_ticket(e) {
                return Ok(t);
            }
            let (tx, rx) = watch::channel(None);
            e.manual = Some(Pending { run_id, tx });
            e.parked = false;
            RunTicket {
                run_id,
                joined: false,
                rx,
            }
        };
        self.inner.wake.notify_one();
        Ok(ticket)
    }

    fn existing_ticket(e: &Entry) -> Option<RunTicket> {
        if let Some((run_id, rx)) = &e.running {
            return Some(RunTicket {
                run_id: *run_id,
                joined: true,
                rx: rx.clone(),
            });
        }
        e.manual.as_ref().map(|p| RunTicket {
            run_id: p.run_id,
            joined: true,
            rx: p.tx.subscribe(),
        })
    }

    /// The scheduling state of a connection.
    pub fn status(&self, id: ConnectionId) -> Option<JobStatus> {
        let st = lock(&self.inner.state);
        let e = st.entries.get(&id)?;
        let now = Instant::now();
        Some(JobStatus {
            next_run_in_secs: (!e.parked)
                .then(|| e.next_run.saturating_duration_since(now).as_secs()),
            next_run_unix_ms: (!e.parked).then(|| to_wall(e.next_run)),
            running: e.running.as_ref().map(|(r, _)| *r),
            queued: e.manual.as_ref().map(|p| p.run_id),
            failures: e.failures,
            parked: e.parked,
        })
    }

    /// Runs in progress.
    pub fn running(&self) -> usize {
        lock(&self.inner.state).running
    }

    /// Connections that are due (or manually requested) but not running: the queue depth.
    pub fn queue_depth(&self) -> usize {
        let st = lock(&self.inner.state);
        let now = Instant::now();
        st.entries
            .values()
            .filter(|e| {
                e.running.is_none() && (e.manual.is_some() || (!e.parked && e.next_run <= now))
            })
            .count()
    }

    /// Stops starting runs and waits until the running ones have finished.
    pub async fn shutdown(&self) {
        lock(&self.inner.state).shutting_down = true;
        self.inner.wake.notify_one();
        loop {
            let idle = self.inner.idle.notified();
            if lock(&self.inner.state).running == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Inner {
    fn jitter(&self) -> Duration {
        let ms = self.config.jitter.as_millis() as u64;
        if ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
        }
    }

    async fn dispatch_loop(self: Arc<Self>) {
        loop {
            let notified = self.wake.notified();
            let next_wake = {
                let mut st = lock(&self.state);
                if st.shutting_down {
                    return;
                }
                self.start_due(&mut st)
            };
            match next_wake {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Starts every run the limits allow, earliest-due first; returns when to look again.
    fn start_due(self: &Arc<Self>, st: &mut State) -> Option<Instant> {
        let now = Instant::now();
        let mut due: Vec<(bool, Instant, ConnectionId)> = st
            .entries
            .iter()
            .filter(|(_, e)| {
                e.running.is_none() && (e.manual.is_some() || (!e.parked && e.next_run <= now))
            })
            .map(|(id, e)| (e.manual.is_none(), e.next_run, *id))
            .collect();
        due.sort_unstable();
        for (_, _, id) in due {
            if st.running >= self.config.max_concurrent {
                break;
            }
            let Some(account) = st.entries.get(&id).map(|e| e.spec.account.clone()) else {
                continue;
            };
            let busy = st.per_account.get(&account).copied().unwrap_or(0);
            if busy >= self.config.max_per_account {
                continue;
            }
            let Some(e) = st.entries.get_mut(&id) else {
                continue;
            };
            let (run_id, tx, trigger) = match e.manual.take() {
                Some(p) => (Some(p.run_id), Some(p.tx), Trigger::Manual),
                None => (None, None, Trigger::Scheduled),
            };
            let (tx, rx) = match tx {
                Some(tx) => {
                    let rx = tx.subscribe();
                    (tx, rx)
                }
                None => watch::channel(None),
            };
            // A scheduled run gets its id asynchronously; 0 marks "being assigned".
            e.running = Some((run_id.unwrap_or(0), rx));
            let generation = e.generation;
            st.running += 1;
            *st.per_account.entry(account.clone()).or_default() += 1;
            let inner = self.clone();
            tokio::spawn(async move {
                let run_id = match run_id {
                    Some(r) => r,
                    None => match inner.store.next_id(SEQ_RUN).await {
                        Ok(r) => {
                            let mut st = lock(&inner.state);
                            if let Some(e) = st.entries.get_mut(&id) {
                                if let Some((slot, _)) = e.running.as_mut() {
                                    *slot = r;
                                }
                            }
                            r
                        }
                        Err(err) => {
                            let outcome = JobOutcome::Failed {
                                message: format!("cannot allocate a run id: {err}"),
                                retry_after_secs: None,
                                transient: true,
                            };
                            inner.finish(id, &account, generation, outcome, tx).await;
                            return;
                        }
                    },
                };
                let outcome = inner.runner.run(id, run_id, trigger).await;
                inner.finish(id, &account, generation, outcome, tx).await;
            });
        }
        // Next look: the earliest future due time among idle entries.
        st.entries
            .values()
            .filter(|e| e.running.is_none() && !e.parked && e.manual.is_none())
            .map(|e| e.next_run)
            .filter(|t| *t > now)
            .min()
    }

    async fn finish(
        &self,
        id: ConnectionId,
        account: &str,
        generation: u64,
        outcome: JobOutcome,
        tx: watch::Sender<Option<JobOutcome>>,
    ) -> Option<Duration> {
        let persisted = {
            let mut st = lock(&self.state);
            st.running = st.running.saturating_sub(1);
            if let Some(n) = st.per_account.get_mut(account) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.per_account.remove(account);
                }
            }
            let jitter = self.jitter();
            let now = Instant::now();
            let cfg = &self.config;
            let persisted = st.entries.get_mut(&id).map(|e| {
                e.running = None;
                let replanned = e.generation != generation;
                match &outcome {
                    JobOutcome::Succeeded => {
                        e.failures = 0;
                        e.parked = false;
                        let interval = e.spec.interval.unwrap_or(cfg.default_interval);
                        e.next_run = now + interval + jitter;
                    }
                    JobOutcome::Failed {
                        retry_after_secs,
                        transient,
                        ..
                    } => {
                        e.failures = e.failures.saturating_add(1);
                        let mut delay = cfg.backoff(e.failures);
                        if let Some(ra) = retry_after_secs {
                            delay = delay.max(Duration::from_secs(*ra));
                        }
                        e.next_run = now + delay;
                        // A changed spec (new credentials) deserves a retry, not a park.
                        e.parked = !transient && !replanned;
                    }
                }
                Persisted {
                    next_run_unix_ms: to_wall(e.next_run),
                    failures: e.failures,
                    parked: e.parked,
                }
            });
            if st.running == 0 {
                self.idle.notify_waiters();
            }
            persisted
        };
        let _ = tx.send(Some(outcome));
        let mut next_in = None;
        if let Some(p) = persisted {
            next_in = Some(if p.parked {
                PARKED_FOR
            } else {
                Duration::from_millis(
                    p.next_run_unix_ms
                        .saturating_sub(wall_ms(SystemTime::now())),
                )
            });
            if let Ok(bytes) = serde_json::to_vec(&p) {
                let mut b = Batch::new();
                b.put(SCHED_NEXT, key(id).to_vec(), bytes);
                if let Err(e) = self.store.commit(b).await {
                    tracing::warn!(connection = id, error = %e, "cannot persist the next run time");
                }
            }
        }
        self.wake.notify_one();
        next_in
    }

    /// The cluster's dispatcher: claims manual requests first (each on its own), then due
    /// jobs up to the free slots, and looks again after `poll` or when woken.
    async fn cluster_loop(self: Arc<Self>, c: Cluster) {
        loop {
            let notified = self.wake.notified();
            let manual: Vec<ConnectionId> = {
                let st = lock(&self.state);
                if st.shutting_down {
                    return;
                }
                st.entries
                    .iter()
                    .filter(|(_, e)| e.running.is_none() && e.manual.is_some())
                    .map(|(id, _)| *id)
                    .collect()
            };
            for id in &manual {
                if !self.reserve_slot() {
                    break;
                }
                match c.leases.claim_now(&c.node, *id, c.lease).await {
                    Ok(Some(l)) => self.launch(&c, l),
                    Ok(None) => self.release_slot(),
                    Err(e) => {
                        self.release_slot();
                        tracing::warn!(connection = id, error = %e, "cannot claim a refreshed job");
                    }
                }
            }
            let free = {
                let st = lock(&self.state);
                self.config.max_concurrent.saturating_sub(st.running)
            };
            if free > 0 {
                // Reserve the slots before the claim, so the claims never exceed them.
                lock(&self.state).running += free;
                match c.leases.claim(&c.node, free, c.lease).await {
                    Ok(got) => {
                        let unused = free - got.len().min(free);
                        self.release_slots(unused);
                        for l in got {
                            self.launch(&c, l);
                        }
                    }
                    Err(e) => {
                        self.release_slots(free);
                        tracing::warn!(error = %e, "cannot claim due jobs");
                    }
                }
            }
            // A refresh waiting for another node's run is retried sooner than the poll.
            let pause = if manual.is_empty() {
                c.poll
            } else {
                c.poll.min(Duration::from_millis(100))
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    fn reserve_slot(&self) -> bool {
        let mut st = lock(&self.state);
        if st.running >= self.config.max_concurrent {
            return false;
        }
        st.running += 1;
        true
    }

    fn release_slot(&self) {
        self.release_slots(1);
    }

    fn release_slots(&self, n: usize) {
        let mut st = lock(&self.state);
        st.running = st.running.saturating_sub(n);
        if st.running == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Runs a claimed job in its own task; its slot is already counted in `running`.
    fn launch(self: &Arc<Self>, c: &Cluster, held: JobLease) {
        let inner = self.clone();
        let c = c.clone();
        tokio::spawn(async move { inner.run_claimed(c, held).await });
    }

    async fn run_claimed(self: Arc<Self>, c: Cluster, held: JobLease) {
        let id = held.job;
        let known = lock(&self.state).entries.contains_key(&id);
        if !known {
            // Created (or started) on another node: learn its spec here.
            match self.runner.spec(id).await {
                Some(spec) => {
                    let failures = self.persisted(id).await.map_or(0, |p| p.failures);
                    lock(&self.state).entries.entry(id).or_insert(Entry {
                        spec,
                        next_run: Instant::now(),
                        failures,
                        parked: false,
                        running: None,
                        manual: None,
                        generation: 0,
                    });
                }
                None => {
                    self.release_slot();
                    if let Err(e) = c.leases.remove(id).await {
                        tracing::warn!(connection = id, error = %e, "cannot drop a gone job");
                    }
                    return;
                }
            }
        } else if let Some(p) = self.persisted(id).await {
            // Another node may have run it since: its failure count is the store's.
            if let Some(e) = lock(&self.state).entries.get_mut(&id) {
                if e.running.is_none() {
                    e.failures = p.failures;
                }
            }
        }
        let started = {
            let mut st = lock(&self.state);
            let account_busy = |st: &State, a: &str| {
                st.per_account.get(a).copied().unwrap_or(0) >= self.config.max_per_account
            };
            match st.entries.get(&id) {
                None => None,
                Some(e) if e.running.is_some() || account_busy(&st, &e.spec.account) => None,
                Some(e) => {
                    let account = e.spec.account.clone();
                    *st.per_account.entry(account.clone()).or_default() += 1;
                    st.entries.get_mut(&id).map(|e| {
                        let (run_id, tx, trigger) = match e.manual.take() {
                            Some(p) => (Some(p.run_id), p.tx, Trigger::Manual),
                            None => (None, watch::channel(None).0, Trigger::Scheduled),
                        };
                        e.running = Some((run_id.unwrap_or(0), tx.subscribe()));
                        (account, e.generation, run_id, tx, trigger)
                    })
                }
            }
        };
        let Some((account, generation, run_id, tx, trigger)) = started else {
            // Removed meanwhile, or its account is saturated here: try again shortly.
            self.release_slot();
            let _ = c
                .leases
                .complete(&c.node, held, Duration::from_secs(1))
                .await;
            return;
        };
        let run_id = match run_id {
            Some(r) => r,
            None => match self.store.next_id(SEQ_RUN).await {
                Ok(r) => {
                    if let Some((slot, _)) = lock(&self.state)
                        .entries
                        .get_mut(&id)
                        .and_then(|e| e.running.as_mut())
                    {
                        *slot = r;
                    }
                    r
                }
                Err(err) => {
                    let outcome = JobOutcome::Failed {
                        message: format!("cannot allocate a run id: {err}"),
                        retry_after_secs: None,
                        transient: true,
                    };
                    let next = self.finish(id, &account, generation, outcome, tx).await;
                    let _ = c
                        .leases
                        .complete(&c.node, held, next.unwrap_or(self.config.backoff_base))
                        .await;
                    return;
                }
            },
        };
        let runner = self.runner.clone();
        let store = self.store.clone();
        let run = async move {
            run_fenced(
                store.as_ref(),
                id,
                held.fence,
                runner.run(id, run_id, trigger),
            )
            .await
            .unwrap_or_else(|e| JobOutcome::Failed {
                message: e.to_string(),
                retry_after_secs: None,
                transient: true,
            })
        };
        tokio::pin!(run);
        let every = (c.lease / 3).max(Duration::from_millis(10));
        let mut renewals = tokio::time::interval_at(Instant::now() + every, every);
        let outcome = loop {
            tokio::select! {
                o = &mut run => break Some(o),
                _ = renewals.tick() => match c.leases.renew(&c.node, held, c.lease).await {
                    Ok(true) => {}
                    Ok(false) => break None,
                    Err(e) => {
                        tracing::warn!(connection = id, error = %e, "cannot renew a lease; stopping the run");
                        break None;
                    }
                },
            }
        };
        match outcome {
            Some(o) => {
                let next = self.finish(id, &account, generation, o, tx).await;
                match c
                    .leases
                    .complete(&c.node, held, next.unwrap_or(self.config.default_interval))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        connection = id,
                        "the lease was lost before the run completed; another node has the job"
                    ),
                    Err(e) => {
                        tracing::warn!(connection = id, error = %e, "cannot complete a lease")
                    }
                }
            }
            None => {
                // The run was stopped (dropped) between two store commits; the node that holds
                // the job now runs it again from the committed state.
                let lost = JobOutcome::Failed {
                    message: "the run lost its lease; another node runs the connection".into(),
                    retry_after_secs: None,
                    transient: true,
                };
                // Not recorded as a failure: the run goes on elsewhere, which owns the schedule.
                let _ = generation;
                self.abandon(id, &account, lost, tx);
            }
        }
    }

    /// Ends a run here without touching its schedule (another node holds it now).
    fn abandon(
        &self,
        id: ConnectionId,
        account: &str,
        outcome: JobOutcome,
        tx: watch::Sender<Option<JobOutcome>>,
    ) {
        {
            let mut st = lock(&self.state);
            st.running = st.running.saturating_sub(1);
            if let Some(n) = st.per_account.get_mut(account) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.per_account.remove(account);
                }
            }
            if let Some(e) = st.entries.get_mut(&id) {
                e.running = None;
            }
            if st.running == 0 {
                self.idle.notify_waiters();
            }
        }
        let _ = tx.send(Some(outcome));
        self.wake.notify_one();
    }

    async fn persisted(&self, id: ConnectionId) -> Option<Persisted> {
        match self.store.get(SCHED_NEXT, &key(id)).await {
            Ok(Some(b)) => serde_json::from_slice(&b).ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = SchedulerConfig {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(100),
            ..SchedulerConfig::default()
        };
        let got: Vec<u64> = (1..=6).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(got, vec![10, 20, 40, 80, 100, 100]);
        assert_eq!(c.backoff(1000).as_secs(), 100, "no overflow");
    }
}
