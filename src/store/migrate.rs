//! `cardbridge migrate --from sled --to postgres`: copies every keyspace and sequence of a sled
//! data directory into an empty PostgreSQL schema in one transaction, then verifies, per
//! keyspace, the entry count and a SHA-256 digest of the entries read back from PostgreSQL.
//!
//! [`sled_to_postgres_with`] reports its progress (per keyspace, copied/total, then read
//! back/total) for the command's progress bar.
//!
//! The copy is all or nothing: a failure leaves the schema as empty as it was, so the command
//! can simply be run again. sled locks its directory, so the node using it must be stopped
//! first (the command says so when the directory is locked).

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::{PgStore, SledStore, Store, StoreError};

/// What was copied, per keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceReport {
    /// The keyspace.
    pub space: String,
    /// Entries read from sled.
    pub source: u64,
    /// Entries found in PostgreSQL afterwards.
    pub target: u64,
    /// Whether the entries read back from PostgreSQL hash to the same digest as sled's.
    pub digest_matches: bool,
}

/// The outcome of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// One row per keyspace (of either side), by name.
    pub spaces: Vec<SpaceReport>,
    /// Each sequence and the value PostgreSQL continues after.
    pub sequences: Vec<(String, u64)>,
}

impl MigrationReport {
    /// True when every keyspace arrived complete and unchanged.
    pub fn verified(&self) -> bool {
        self.spaces
            .iter()
            .all(|s| s.source == s.target && s.digest_matches)
    }
    /// Total entries copied.
    pub fn total(&self) -> u64 {
        self.spaces.iter().map(|s| s.source).sum()
    }
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .spaces
            .iter()
            .map(|s| s.space.len())
            .chain([8])
            .max()
            .unwrap_or(8);
        writeln!(
            f,
            "{:<width$}  {:>10}  {:>10}  check",
            "keyspace", "sled", "postgres"
        )?;
        for s in &self.spaces {
            let ok = if s.source == s.target && s.digest_matches {
                "ok"
            } else if s.source != s.target {
                "COUNT DIFFERS"
            } else {
                "CONTENT DIFFERS"
            };
            writeln!(
                f,
                "{:<width$}  {:>10}  {:>10}  {ok}",
                s.space, s.source, s.target
            )?;
        }
        writeln!(
            f,
            "{:<width$}  {:>10}  {:>10}",
            "total",
            self.total(),
            self.spaces.iter().map(|s| s.target).sum::<u64>()
        )?;
        for (name, last) in &self.sequences {
            writeln!(f, "sequence {name}: continues after {last}")?;
        }
        Ok(())
    }
}

/// Why a migration did not happen or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The target schema already holds data; nothing was written.
    #[error("the PostgreSQL schema {schema} is not empty; migrate into an empty schema (nothing was written)")]
    TargetNotEmpty {
        /// The schema.
        schema: String,
    },
    /// Reading or writing failed; the target is unchanged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data was copied but does not read back the same (should not happen; the report
    /// says where).
    #[error("verification failed:\n{0}")]
    Verification(MigrationReport),
}

#[derive(Default)]
struct Tally {
    count: u64,
    digest: Sha256,
}

impl Tally {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.count += 1;
        self.digest.update((key.len() as u64).to_be_bytes());
        self.digest.update(key);
        self.digest.update((value.len() as u64).to_be_bytes());
        self.digest.update(value);
    }
}

/// What a migration is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Copying sled's entries into PostgreSQL.
    Copy,
    /// Reading them back from PostgreSQL.
    Verify,
}

/// Where a migration stands, reported after each entry copied or read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// Copying or verifying.
    pub phase: Phase,
    /// The keyspace.
    pub space: &'a str,
    /// Entries of this keyspace done.
    pub done: u64,
    /// Entries of this keyspace in sled.
    pub total: u64,
    /// Entries of every keyspace done in this phase.
    pub done_all: u64,
    /// Entries of every keyspace in sled.
    pub total_all: u64,
}

/// Receives a migration's [`Progress`]; called for every entry, so keep it cheap.
pub type ProgressFn<'f> = &'f (dyn Fn(&Progress<'_>) + Send + Sync);

/// Copies `sled` into `pg` (which must be empty) and verifies the copy.
pub async fn sled_to_postgres(
    sled: &SledStore,
    pg: &PgStore,
) -> Result<MigrationReport, MigrateError> {
    sled_to_postgres_with(sled, pg, &|_| {}).await
}

/// [`sled_to_postgres`], reporting its progress to `progress` (per keyspace, entries
/// copied / total, then read back / total). The totals come from one counting pass over
/// sled before the copy.
pub async fn sled_to_postgres_with(
    sled: &SledStore,
    pg: &PgStore,
    progress: ProgressFn<'_>,
) -> Result<MigrationReport, MigrateError> {
    if !pg.is_empty().await? {
        return Err(MigrateError::TargetNotEmpty {
            schema: pg.schema().to_string(),
        });
    }
    let sequences = sled.sequence_marks()?;
    // The totals, for the progress report.
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for e in sled.export() {
        let (space, _, _) = e?;
        *totals.entry(space).or_default() += 1;
    }
    let total_all: u64 = totals.values().sum();
    // Tally the source as it streams by.
    let mut source: BTreeMap<String, Tally> = BTreeMap::new();
    let mut done_all = 0u64;
    let entries = sled.export().inspect(|e| {
        if let Ok((space, k, v)) = e {
            let tally = source.entry(space.clone()).or_default();
            tally.add(k, v);
            done_all += 1;
            progress(&Progress {
                phase: Phase::Copy,
                space,
                done: tally.count,
                total: totals.get(space).copied().unwrap_or(tally.count),
                done_all,
                total_all,
            });
        }
    });
    pg.import(entries, &sequences).await?;

    // Read everything back from PostgreSQL, through the same `Store` API the service uses.
    let mut target: BTreeMap<String, Tally> = BTreeMap::new();
    let mut read_all = 0u64;
    for (space, _) in pg.counts().await? {
        let tally = target.entry(space.clone()).or_default();
        let total = totals.get(&space).copied().unwrap_or(0);
        // `Space` is `&'static str`; a migration reads a handful of spaces once.
        let space: &'static str = Box::leak(space.into_boxed_str());
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = pg.scan(space, b"", after.as_deref(), 1000).await?;
            for (k, v) in &page.entries {
                tally.add(k, v);
                read_all += 1;
                progress(&Progress {
                    phase: Phase::Verify,
                    space,
                    done: tally.count,
                    total,
                    done_all: read_all,
                    total_all,
                });
            }
            match page.next_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    let names: std::collections::BTreeSet<&String> = source.keys().chain(target.keys()).collect();
    let mut report = MigrationReport {
        spaces: Vec::new(),
        sequences: pg.sequences().await?,
    };
    for name in names {
        let s = source.get(name);
        let t = target.get(name);
        report.spaces.push(SpaceReport {
            space: name.clone(),
            source: s.map_or(0, |s| s.count),
            target: t.map_or(0, |t| t.count),
            digest_matches: match (s, t) {
                (Some(s), Some(t)) => s.digest.clone().finalize() == t.digest.clone().finalize(),
                _ => false,
            },
        });
    }
    if report.verified() {
        Ok(report)
    } else {
        Err(MigrateError::Verification(report))
    }
}
