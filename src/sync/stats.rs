//! Per-connection sync statistics: the number of items in sync, what each run added, updated
//! and deleted on either side, conflicts and errors, per run and over the last 7 and 30 days
//! (daily buckets, UTC), and the last run's start, end and outcome.
//!
//! Keys: [`SPACE_STATS`] `conn` (big-endian) → JSON [`ConnectionStats`].

use std::collections::BTreeMap;
use std::ops::AddAssign;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::connection::ConnectionId;
use crate::store::{Batch, Space, Store, StoreError};

/// The stats of every connection.
pub const SPACE_STATS: Space = "sync.stats";
/// Daily buckets older than this many days are dropped.
pub const KEEP_DAYS: i64 = 30;

/// Writes on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Created (a person, or a card).
    pub added: u64,
    /// Changed.
    pub updated: u64,
    /// Deleted.
    pub deleted: u64,
    /// Unlinked (kept, no longer synced).
    pub unlinked: u64,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.added += o.added;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.unlinked += o.unlinked;
    }
}

/// What one run (or a period) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Writes to the CRM.
    pub crm: Counts,
    /// Writes to the provider.
    pub provider: Counts,
    /// Conflicts resolved.
    pub conflicts: u64,
    /// Items that failed (bad cards, refused writes).
    pub errors: u64,
}

impl AddAssign for RunCounts {
    fn add_assign(&mut self, o: RunCounts) {
        self.crm += o.crm;
        self.provider += o.provider;
        self.conflicts += o.conflicts;
        self.errors += o.errors;
    }
}

impl RunCounts {
    /// Added on either side.
    pub fn added(&self) -> u64 {
        self.crm.added + self.provider.added
    }
    /// Updated on either side.
    pub fn updated(&self) -> u64 {
        self.crm.updated + self.provider.updated
    }
    /// Deleted on either side.
    pub fn deleted(&self) -> u64 {
        self.crm.deleted + self.provider.deleted
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Still running (or the process died during it).
    Running,
    /// Completed (item errors may still have been counted).
    Ok,
    /// Stopped by an error; the next run resumes.
    Failed {
        /// Why.
        message: String,
    },
    /// The provider needs the user to authorize again; runs stop until then.
    NeedsReauthorization {
        /// What the provider said.
        message: String,
    },
}

/// One run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Start.
    pub started: DateTime<Utc>,
    /// End (`None` while running).
    pub ended: Option<DateTime<Utc>>,
    /// Outcome.
    pub outcome: Outcome,
    /// What it did.
    pub counts: RunCounts,
}

/// What is stored per connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStats {
    /// Items whose card and person are linked.
    pub total_in_sync: u64,
    /// The last run.
    pub last_run: Option<RunRecord>,
    /// Per UTC day (`YYYY-MM-DD`), the last [`KEEP_DAYS`] days.
    pub daily: BTreeMap<NaiveDate, RunCounts>,
    /// Since the connection began.
    pub all_time: RunCounts,
}

/// The stats as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// Items in sync.
    pub total_in_sync: u64,
    /// The last run.
    pub last_run: Option<RunRecord>,
    /// Today and the 6 days before.
    pub last_7_days: RunCounts,
    /// Today and the 29 days before.
    pub last_30_days: RunCounts,
    /// Since the connection began.
    pub all_time: RunCounts,
}

impl ConnectionStats {
    /// Sums the buckets of the `days` days ending with `now`'s day.
    pub fn window(&self, now: DateTime<Utc>, days: i64) -> RunCounts {
        let today = now.date_naive();
        let first = today - Duration::days(days - 1);
        let mut out = RunCounts::default();
        for (_, c) in self.daily.range(first..=today) {
            out += *c;
        }
        out
    }

    /// The API view at `now`.
    pub fn view(&self, now: DateTime<Utc>) -> StatsView {
        StatsView {
            total_in_sync: self.total_in_sync,
            last_run: self.last_run.clone(),
            last_7_days: self.window(now, 7),
            last_30_days: self.window(now, 30),
            all_time: self.all_time,
        }
    }

    /// Adds a finished run, counted on the day it ended; drops buckets past [`KEEP_DAYS`].
    pub fn add_run(&mut self, run: RunRecord, total_in_sync: u64) {
        let day = run.ended.unwrap_or(run.started).date_naive();
        *self.daily.entry(day).or_default() += run.counts;
        self.all_time += run.counts;
        let oldest = day - Duration::days(KEEP_DAYS);
        self.daily.retain(|d, _| *d > oldest);
        self.total_in_sync = total_in_sync;
        self.last_run = Some(run);
    }
}

fn key(conn: ConnectionId) -> Vec<u8> {
    conn.to_be_bytes().to_vec()
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        space: SPACE_STATS.to_owned(),
        reason: e.to_string(),
    }
}

/// The stored stats of a connection.
pub async fn load(store: &dyn Store, conn: ConnectionId) -> Result<ConnectionStats, StoreError> {
    match store.get(SPACE_STATS, &key(conn)).await? {
        Some(raw) => serde_json::from_slice(&raw).map_err(corrupt),
        None => Ok(ConnectionStats::default()),
    }
}

/// Stages the stats of a connection.
pub fn stage(batch: &mut Batch, conn: ConnectionId, s: &ConnectionStats) -> Result<(), StoreError> {
    batch.put(
        SPACE_STATS,
        key(conn),
        serde_json::to_vec(s).map_err(corrupt)?,
    );
    Ok(())
}

/// The API view of a connection's stats at `now`.
pub async fn view(
    store: &dyn Store,
    conn: ConnectionId,
    now: DateTime<Utc>,
) -> Result<StatsView, StoreError> {
    Ok(load(store, conn).await?.view(now))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(day: u32, added: u64) -> RunRecord {
        let t = Utc
            .with_ymd_and_hms(2024, 5, day, 12, 0, 0)
            .single()
            .unwrap();
        RunRecord {
            started: t,
            ended: Some(t),
            outcome: Outcome::Ok,
            counts: RunCounts {
                crm: Counts {
                    added,
                    ..Counts::default()
                },
                conflicts: 1,
                ..RunCounts::default()
            },
        }
    }

    #[test]
    fn windows_sum_the_right_days_and_old_buckets_go() {
        let mut s = ConnectionStats::default();
        s.add_run(run(1, 1), 1);
        s.add_run(run(20, 10), 2);
        s.add_run(run(30, 100), 3);
        s.add_run(run(31, 1000), 4);
        let now = Utc
            .with_ymd_and_hms(2024, 5, 31, 23, 0, 0)
            .single()
            .unwrap();
        let v = s.view(now);
        assert_eq!(v.last_7_days.added(), 1100);
        assert_eq!(v.last_30_days.added(), 1110);
        assert_eq!(v.all_time.added(), 1111);
        assert_eq!(v.last_30_days.conflicts, 3);
        assert_eq!(v.total_in_sync, 4);
        // May 1 is more than 30 days before May 31: dropped.
        assert!(!s
            .daily
            .contains_key(&NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()));
    }
}
