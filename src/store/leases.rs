//! Jobs leased across nodes on PostgreSQL (issue #9): each due job is claimed by exactly one
//! node, for a limited time, so that when a node dies another one takes its jobs over.
//!
//! The `leases` table lives in the [`PgStore`]'s schema (migration 2). A row is one job (for
//! cardbridge: one connection's sync), with the time it is next due, its current holder and
//! the lease's expiry. Every time is the database's clock, so nodes with skewed clocks agree.
//!
//! - [`Leases::claim`] takes up to `max` jobs that are due and either free or whose lease has
//!   expired, with `SELECT ... FOR UPDATE SKIP LOCKED`: concurrent claimers skip each other's
//!   rows instead of waiting or double-claiming. Each claim bumps the job's `fence`.
//! - [`Leases::renew`] extends a lease while a long run goes on.
//! - [`Leases::complete`] releases the job and sets when it is next due, but only while the
//!   caller still holds the lease it claimed (same holder and fence). A node that stalled past
//!   its lease and was taken over gets `false` and must not publish the result of its run: the
//!   scheduler records the fence when a run starts and guards each of the run's commits with it
//!   (`scheduler::run_fenced`, `scheduler::FencedStore`).
//! - [`Leases::trigger`] is a manual refresh from any node: the job becomes due now, and when
//!   it is currently running, its holder's [`Leases::complete`] makes it due again at once
//!   instead of after the interval, so the refresh is not lost.
//!
//! Architecture invariant: a job is held by at most one unexpired lease at a time, and only
//! the holder of the current fence can complete it.

use std::sync::Arc;
use std::time::Duration;

use super::postgres::pg_error;
use super::{PgStore, StoreError};
use crate::scheduler::{ConnectionId, JobLease, JobLeases};

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: String,
    /// The node holding it.
    pub holder: String,
    /// Increases with every claim of the job: identifies this lease.
    pub fence: i64,
}

/// The lease table of one [`PgStore`].
#[derive(Clone, Debug)]
pub struct Leases {
    store: Arc<PgStore>,
    sql: Arc<Sql>,
}

#[derive(Debug)]
struct Sql {
    schedule: String,
    claim: String,
    renew: String,
    complete: String,
    trigger: String,
    remove: String,
    claim_now: String,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Leases {
    /// The leases of `store`'s schema.
    pub fn new(store: Arc<PgStore>) -> Self {
        let s = store.quoted_schema();
        let ms = "* interval '1 millisecond'";
        let sql = Sql {
            schedule: format!(
                "INSERT INTO {s}.leases (job, due_at) VALUES ($1, now() + $2::bigint {ms}) \
                 ON CONFLICT (job) DO NOTHING"
            ),
            claim: format!(
                "WITH due AS (
                     SELECT job FROM {s}.leases
                     WHERE due_at <= now() AND (holder IS NULL OR expires_at <= now())
                     ORDER BY due_at
                     LIMIT $2
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE {s}.leases l
                 SET holder = $1, claimed_at = now(), expires_at = now() + $3::bigint {ms},
                     fence = l.fence + 1
                 FROM due WHERE l.job = due.job
                 RETURNING l.job, l.fence"
            ),
            renew: format!(
                "UPDATE {s}.leases SET expires_at = now() + $4::bigint {ms} \
                 WHERE job = $1 AND holder = $2 AND fence = $3 AND expires_at > now()"
            ),
            complete: format!(
                "UPDATE {s}.leases SET holder = NULL, expires_at = NULL, \
                 due_at = CASE WHEN refresh_at >= claimed_at THEN now() ELSE now() + $4::bigint {ms} END, \
                 refresh_at = NULL, claimed_at = NULL \
                 WHERE job = $1 AND holder = $2 AND fence = $3"
            ),
            trigger: format!(
                "UPDATE {s}.leases SET due_at = LEAST(due_at, now()), refresh_at = now() \
                 WHERE job = $1"
            ),
            remove: format!("DELETE FROM {s}.leases WHERE job = $1"),
            claim_now: format!(
                "UPDATE {s}.leases SET holder = $1, claimed_at = now(), \
                 expires_at = now() + $3::bigint {ms}, fence = fence + 1 \
                 WHERE job = $2 AND (holder IS NULL OR expires_at <= now()) \
                 RETURNING fence"
            ),
        };
        Leases {
            store,
            sql: Arc::new(sql),
        }
    }

    /// Adds `job`, first due after `due_in`; a job already known keeps its schedule. Returns
    /// whether it was added.
    pub async fn schedule(&self, job: &str, due_in: Duration) -> Result<bool, StoreError> {
        let client = self.store.client().await?;
        let n = client
            .execute(&self.sql.schedule, &[&job, &millis(due_in)])
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    /// Claims up to `max` due jobs for `node`, each for `lease`. Jobs held by another node
    /// under an unexpired lease, or being claimed concurrently, are skipped.
    pub async fn claim(
        &self,
        node: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let client = self.store.client().await?;
        let rows = client
            .query(&self.sql.claim, &[&node, &max, &millis(lease)])
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| {
                Ok(Lease {
                    job: r.try_get(0).map_err(pg_error)?,
                    holder: node.to_string(),
                    fence: r.try_get(1).map_err(pg_error)?,
                })
            })
            .collect()
    }

    /// Extends a lease still held to `lease` from now; `false` when it was lost (expired or
    /// taken over).
    pub async fn renew(&self, held: &Lease, lease: Duration) -> Result<bool, StoreError> {
        let client = self.store.client().await?;
        let n = client
            .execute(
                &self.sql.renew,
                &[&held.job, &held.holder, &held.fence, &millis(lease)],
            )
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    /// Releases the job, next due after `next_in` (or at once if a refresh was requested while
    /// it ran). `false` when this lease is no longer the job's current one: another node took
    /// the job over and the caller's run must be discarded.
    pub async fn complete(&self, held: &Lease, next_in: Duration) -> Result<bool, StoreError> {
        let client = self.store.client().await?;
        let n = client
            .execute(
                &self.sql.complete,
                &[&held.job, &held.holder, &held.fence, &millis(next_in)],
            )
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    /// A manual refresh: `job` is due now (and again right after a run in progress). `false`
    /// when the job is unknown.
    pub async fn trigger(&self, job: &str) -> Result<bool, StoreError> {
        let client = self.store.client().await?;
        let n = client
            .execute(&self.sql.trigger, &[&job])
            .await
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    /// Claims `job` for `node` now, due or not (a manual refresh), unless another node holds
    /// an unexpired lease on it. `None` when it is held or unknown.
    pub async fn claim_now(
        &self,
        node: &str,
        job: &str,
        lease: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let client = self.store.client().await?;
        let row = client
            .query_opt(&self.sql.claim_now, &[&node, &job, &millis(lease)])
            .await
            .map_err(pg_error)?;
        row.map(|r| {
            Ok(Lease {
                job: job.to_string(),
                holder: node.to_string(),
                fence: r.try_get(0).map_err(pg_error)?,
            })
        })
        .transpose()
    }

    /// Forgets `job` (its connection was deleted).
    pub async fn remove(&self, job: &str) -> Result<(), StoreError> {
        let client = self.store.client().await?;
        client
            .execute(&self.sql.remove, &[&job])
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}

/// The scheduler's view: a connection's job is named by its decimal id.
#[async_trait::async_trait]
impl JobLeases for Leases {
    async fn schedule(&self, job: ConnectionId, due_in: Duration) -> Result<(), StoreError> {
        Leases::schedule(self, &job.to_string(), due_in)
            .await
            .map(drop)
    }

    async fn claim(
        &self,
        node: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<JobLease>, StoreError> {
        let got = Leases::claim(self, node, max, lease).await?;
        Ok(got.iter().filter_map(job_lease).collect())
    }

    async fn claim_now(
        &self,
        node: &str,
        job: ConnectionId,
        lease: Duration,
    ) -> Result<Option<JobLease>, StoreError> {
        let got = Leases::claim_now(self, node, &job.to_string(), lease).await?;
        Ok(got.as_ref().and_then(job_lease))
    }

    async fn renew(&self, node: &str, held: JobLease, lease: Duration) -> Result<bool, StoreError> {
        Leases::renew(self, &lease_of(node, held), lease).await
    }

    async fn complete(
        &self,
        node: &str,
        held: JobLease,
        next_in: Duration,
    ) -> Result<bool, StoreError> {
        Leases::complete(self, &lease_of(node, held), next_in).await
    }

    async fn trigger(&self, job: ConnectionId) -> Result<(), StoreError> {
        Leases::trigger(self, &job.to_string()).await.map(drop)
    }

    async fn remove(&self, job: ConnectionId) -> Result<(), StoreError> {
        Leases::remove(self, &job.to_string()).await
    }
}

/// A claimed row as a scheduler lease; rows not named by a connection id are not ours.
fn job_lease(l: &Lease) -> Option<JobLease> {
    let job = l.job.parse().ok();
    if job.is_none() {
        tracing::warn!(job = %l.job, "a lease that is not a connection id was claimed");
    }
    job.map(|job| JobLease {
        job,
        fence: l.fence,
    })
}

fn lease_of(node: &str, held: JobLease) -> Lease {
    Lease {
        job: held.job.to_string(),
        holder: node.to_string(),
        fence: held.fence,
    }
}
