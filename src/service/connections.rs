//! Connections (one user's link to one address book), their runs, recorded conflicts and
//! dashboard figures, stored over [`Store`] in the keyspaces declared here.
//!
//! | space | key | value |
//! |---|---|---|
//! | [`CONNECTIONS`] | `conn u64` | JSON [`Connection`] |
//! | [`CONNECTIONS_BY_USER`] | `user u64 ++ conn u64` | empty |
//! | [`RUNS`] | `conn u64 ++ run u64` | JSON [`RunRecord`] |
//! | [`CONFLICTS`] | `conn u64 ++ seq u64` | JSON [`ConflictRecord`] |
//!
//! Integers are big-endian so keys sort numerically.

use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::crm::{MappingConfig, UserId, Visibility};
use crate::providers::ProviderKind;
use crate::scheduler::{RunId, Trigger};
use crate::store::{scan_all, Batch, Space, Store, StoreError};

/// Connection records.
pub const CONNECTIONS: Space = "svc.connections";
/// Index of connections by owner.
pub const CONNECTIONS_BY_USER: Space = "svc.connections.by_user";
/// Run records.
pub const RUNS: Space = "svc.runs";

/// The error recorded on a run whose process died while it ran.
pub const INTERRUPTED_RUN: &str =
    "interrupted: the server stopped during this run; the next run resumes from its last checkpoint";
/// Recorded conflicts.
pub const CONFLICTS: Space = "svc.conflicts";
/// Sequence of connection ids.
pub const SEQ_CONNECTION: Space = "svc.seq.connection";
/// Sequence of conflict records.
pub const SEQ_CONFLICT: Space = "svc.seq.conflict";
/// Runs older than this are pruned when a new run is recorded.
pub const RUN_RETENTION_DAYS: i64 = 31;

/// A connection id.
pub type ConnectionId = u64;

/// The sync direction the article offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncDirection {
    /// Provider → CRM only; never writes to the provider.
    #[default]
    OneWay,
    /// Both ways.
    TwoWay,
}

/// How a field changed on both sides is resolved (issue #4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// The newer side wins (REV / lastModified against `update_time`).
    #[default]
    NewestWins,
    /// The provider's value wins.
    ProviderWins,
    /// The CRM's value wins.
    CrmWins,
}

/// The chosen sync group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChosenGroup {
    /// Provider-specific id (collection URL, group resource name, folder id).
    pub id: String,
    /// Display name.
    pub name: String,
    /// False when the account may only read it.
    pub writable: bool,
}

/// Where a connection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    /// Created; settings not confirmed with Start Syncing yet.
    Setup,
    /// Syncing on schedule.
    Active,
    /// The provider refused the credentials or the grant; a human must act.
    NeedsReauthorization {
        /// What the provider said.
        reason: String,
    },
}

/// One user's link to one address book.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The id.
    pub id: ConnectionId,
    /// The CRM user who owns it (and owns the persons it brings in).
    pub user_id: UserId,
    /// The protocol.
    pub provider: ProviderKind,
    /// The account's email address.
    pub account_email: String,
    /// The server (CardDAV context URL, EWS URL) when given or discovered.
    pub server_url: Option<String>,
    /// The login at the provider (defaults to the email).
    pub username: String,
    /// Sealed credentials (`v1:…`), never shown.
    pub sealed_credentials: Option<String>,
    /// The chosen sync group.
    pub sync_group: Option<ChosenGroup>,
    /// Sync direction.
    pub direction: SyncDirection,
    /// Who may see the persons it brings in.
    pub visibility: Option<Visibility>,
    /// Conflict policy.
    pub conflict_policy: ConflictPolicy,
    /// Field mapping.
    pub mapping: MappingConfig,
    /// Own sync interval in seconds (`None`: the configured default).
    pub interval_secs: Option<u64>,
    /// Where it stands.
    pub state: ConnectionState,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Last settings change, RFC 3339.
    pub updated: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("provider", &self.provider)
            .field("account_email", &self.account_email)
            .field("server_url", &self.server_url)
            .field("sync_group", &self.sync_group)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The account key the scheduler's per-account limit counts against.
    pub fn account_key(&self) -> String {
        format!(
            "{}:{}",
            provider_name(self.provider),
            self.account_email.to_lowercase()
        )
    }
}

/// The wire name of a provider kind.
pub fn provider_name(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Carddav => "carddav",
        ProviderKind::Icloud => "icloud",
        ProviderKind::Google => "google",
        ProviderKind::Graph => "graph",
        ProviderKind::Ews => "ews",
    }
}

/// The provider a known email domain implies (gmail.com → Google; icloud.com, me.com,
/// mac.com → iCloud; outlook.com, hotmail.com, live.com → Microsoft Graph).
pub fn provider_for_domain(email: &str) -> Option<ProviderKind> {
    let domain = email.rsplit_once('@')?.1.trim().to_ascii_lowercase();
    match domain.as_str() {
        "gmail.com" | "googlemail.com" => Some(ProviderKind::Google),
        "icloud.com" | "me.com" | "mac.com" => Some(ProviderKind::Icloud),
        "outlook.com" | "hotmail.com" | "live.com" => Some(ProviderKind::Graph),
        _ => None,
    }
}

/// A conflict the engine resolved (issue #4: field, both values, winner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// When, RFC 3339 (filled in when recorded if empty).
    #[serde(default)]
    pub at: String,
    /// The run that met it (filled in when recorded).
    #[serde(default)]
    pub run_id: RunId,
    /// The person.
    pub person_id: Option<u64>,
    /// The remote item.
    pub remote_id: Option<String>,
    /// The field.
    pub field: String,
    /// The CRM's value.
    pub crm_value: String,
    /// The provider's value.
    pub provider_value: String,
    /// `crm` or `provider`.
    pub winner: String,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Persons created in the CRM plus cards created at the provider.
    pub added: u64,
    /// Updates applied on either side.
    pub updated: u64,
    /// Deletions applied on either side.
    pub deleted: u64,
    /// Items that failed (skipped; retried next run).
    pub errors: u64,
    /// Items linked to this connection after the run.
    pub total_in_sync: u64,
    /// Item error messages (bounded by the engine).
    #[serde(default)]
    pub error_messages: Vec<String>,
    /// Conflicts met.
    #[serde(default)]
    pub conflicts: Vec<ConflictRecord>,
}

/// How far a run got: live while it runs (from the engine's progress hook), final once it
/// ended. Counts are on either side, like [`RunSummary`]'s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    /// Provider pages pulled so far.
    pub pages: u64,
    /// Items handled so far (remote changes, listed deletions, CRM changes).
    pub items: u64,
    /// Added so far.
    pub added: u64,
    /// Updated so far.
    pub updated: u64,
    /// Deleted so far.
    pub deleted: u64,
    /// Conflicts resolved so far.
    pub conflicts: u64,
    /// Item errors so far.
    pub errors: u64,
}

impl From<&crate::sync::execute::Progress> for RunProgress {
    fn from(p: &crate::sync::execute::Progress) -> Self {
        RunProgress {
            pages: p.pages,
            items: p.items,
            added: p.counts.added(),
            updated: p.counts.updated(),
            deleted: p.counts.deleted(),
            conflicts: p.counts.conflicts,
            errors: p.counts.errors,
        }
    }
}

/// The live progress of the runs going on in this process, by run id (the service's run
/// registry). A run's engine writes its entry as it goes; the run-status API reads it while
/// the run record says `running`; the entry is removed (and kept in the record) when the run
/// ends. Runs going on in another node of a cluster are not in it.
#[derive(Debug, Default, Clone)]
pub struct LiveRuns {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<RunId, RunProgress>>>,
}

impl LiveRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<RunId, RunProgress>> {
        // A poisoned lock only means a reader panicked; the map itself is always whole.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Records where `run` stands.
    pub fn set(&self, run: RunId, p: RunProgress) {
        self.lock().insert(run, p);
    }
    /// Where `run` stands, if it is going on here.
    pub fn get(&self, run: RunId) -> Option<RunProgress> {
        self.lock().get(&run).copied()
    }
    /// Removes `run`, returning its last progress.
    pub fn take(&self, run: RunId) -> Option<RunProgress> {
        self.lock().remove(&run)
    }
}

/// A run's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// In progress.
    Running,
    /// Finished.
    Succeeded,
    /// Failed as a whole.
    Failed,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run.
    pub id: RunId,
    /// The connection.
    pub connection_id: ConnectionId,
    /// Why it ran.
    pub trigger: Trigger,
    /// Where it stands.
    pub state: RunState,
    /// Start, RFC 3339.
    pub started: String,
    /// End, RFC 3339.
    pub ended: Option<String>,
    /// What it did (when it succeeded).
    pub summary: Option<RunSummary>,
    /// Why it failed.
    pub error: Option<String>,
    /// How far it got: live while running (on the node running it), final once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RunProgress>,
}

/// Added/updated/deleted over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Additions.
    pub added: u64,
    /// Updates.
    pub updated: u64,
    /// Deletions.
    pub deleted: u64,
    /// Conflicts.
    pub conflicts: u64,
    /// Item errors.
    pub errors: u64,
}

impl Tally {
    fn add(&mut self, s: &RunSummary) {
        self.added += s.added;
        self.updated += s.updated;
        self.deleted += s.deleted;
        self.conflicts += s.conflicts.len() as u64;
        self.errors += s.errors;
    }
}

/// The dashboard figures of a connection (the stats of issue #4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// Items in sync after the last successful run.
    pub total_in_sync: u64,
    /// The last finished run's tally.
    pub last_run: Tally,
    /// Last 7 days.
    pub last_7_days: Tally,
    /// Last 30 days.
    pub last_30_days: Tally,
    /// The most recent run (running or finished).
    pub latest_run: Option<RunRecord>,
    /// The most recent finished run.
    pub last_finished_run: Option<RunRecord>,
    /// Failed runs in the last 30 days.
    pub failed_runs_30_days: u64,
}

fn k1(a: u64) -> Vec<u8> {
    a.to_be_bytes().to_vec()
}

fn k2(a: u64, b: u64) -> Vec<u8> {
    let mut k = a.to_be_bytes().to_vec();
    k.extend_from_slice(&b.to_be_bytes());
    k
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(format!("cannot encode: {e}")))
}

fn decode<T: DeserializeOwned>(space: Space, b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        space: space.to_string(),
        reason: e.to_string(),
    })
}

/// RFC 3339 "now".
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The connection repository.
#[derive(Clone)]
pub struct Connections {
    store: Arc<dyn Store>,
}

impl Connections {
    /// Over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Allocates an id.
    pub async fn next_id(&self) -> Result<ConnectionId, StoreError> {
        self.store.next_id(SEQ_CONNECTION).await
    }

    /// Inserts or replaces a connection.
    pub async fn put(&self, c: &Connection) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put(CONNECTIONS, k1(c.id), encode(c)?);
        b.put(CONNECTIONS_BY_USER, k2(c.user_id, c.id), Vec::new());
        self.store.commit(b).await
    }

    /// One connection.
    pub async fn get(&self, id: ConnectionId) -> Result<Option<Connection>, StoreError> {
        match self.store.get(CONNECTIONS, &k1(id)).await? {
            Some(b) => Ok(Some(decode(CONNECTIONS, &b)?)),
            None => Ok(None),
        }
    }

    /// Every connection (for the scheduler at start).
    pub async fn all(&self) -> Result<Vec<Connection>, StoreError> {
        scan_all(self.store.as_ref(), CONNECTIONS, b"")
            .await?
            .iter()
            .map(|(_, v)| decode(CONNECTIONS, v))
            .collect()
    }

    /// The connections of one user.
    pub async fn of_user(&self, user: UserId) -> Result<Vec<Connection>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in scan_all(self.store.as_ref(), CONNECTIONS_BY_USER, &k1(user)).await? {
            let Some(tail) = k.get(8..16).and_then(|t| <[u8; 8]>::try_from(t).ok()) else {
                continue;
            };
            if let Some(c) = self.get(u64::from_be_bytes(tail)).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Deletes a connection with its runs and conflicts.
    pub async fn delete(&self, c: &Connection) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.delete(CONNECTIONS, k1(c.id));
        b.delete(CONNECTIONS_BY_USER, k2(c.user_id, c.id));
        for (k, _) in scan_all(self.store.as_ref(), RUNS, &k1(c.id)).await? {
            b.delete(RUNS, k);
        }
        for (k, _) in scan_all(self.store.as_ref(), CONFLICTS, &k1(c.id)).await? {
            b.delete(CONFLICTS, k);
        }
        self.store.commit(b).await
    }

    /// Records (inserts or replaces) a run; on a finished run, records its conflicts and
    /// prunes runs past the retention.
    pub async fn put_run(&self, r: &RunRecord) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put(RUNS, k2(r.connection_id, r.id), encode(r)?);
        if r.state != RunState::Running {
            if let Some(s) = &r.summary {
                for c in &s.conflicts {
                    let mut c = c.clone();
                    c.run_id = r.id;
                    if c.at.is_empty() {
                        c.at = r.ended.clone().unwrap_or_else(now_rfc3339);
                    }
                    let seq = self.store.next_id(SEQ_CONFLICT).await?;
                    b.put(CONFLICTS, k2(r.connection_id, seq), encode(&c)?);
                }
            }
            let cutoff = Utc::now() - ChronoDuration::days(RUN_RETENTION_DAYS);
            for (k, v) in scan_all(self.store.as_ref(), RUNS, &k1(r.connection_id)).await? {
                let old: RunRecord = decode(RUNS, &v)?;
                if parse_time(&old.started).is_some_and(|t| t < cutoff) {
                    b.delete(RUNS, k);
                }
            }
        }
        self.store.commit(b).await
    }

    /// Marks every run still recorded as running as failed ("interrupted"). Called when a
    /// process opens the store for itself (`serve` start, `cardbridge sync`): a run record left
    /// `running` then belongs to a process that died (`kill -9`, power loss) and would
    /// otherwise be reported as running forever. The next run resumes from the last committed
    /// checkpoint. Returns how many were marked.
    ///
    /// With several nodes on one PostgreSQL schema this must only touch runs whose lease
    /// expired, once the multi-node scheduler is wired (docs/SCALING.md).
    pub async fn interrupt_stale_runs(&self) -> Result<u64, StoreError> {
        let mut marked = 0;
        for c in self.all().await? {
            for mut r in self.runs(c.id).await? {
                if r.state == RunState::Running {
                    r.state = RunState::Failed;
                    r.ended = Some(now_rfc3339());
                    r.error = Some(INTERRUPTED_RUN.to_string());
                    self.put_run(&r).await?;
                    marked += 1;
                }
            }
        }
        Ok(marked)
    }

    /// One run.
    pub async fn run(
        &self,
        conn: ConnectionId,
        run: RunId,
    ) -> Result<Option<RunRecord>, StoreError> {
        match self.store.get(RUNS, &k2(conn, run)).await? {
            Some(b) => Ok(Some(decode(RUNS, &b)?)),
            None => Ok(None),
        }
    }

    /// Runs of a connection, newest first.
    pub async fn runs(&self, conn: ConnectionId) -> Result<Vec<RunRecord>, StoreError> {
        let mut runs: Vec<RunRecord> = scan_all(self.store.as_ref(), RUNS, &k1(conn))
            .await?
            .iter()
            .map(|(_, v)| decode(RUNS, v))
            .collect::<Result<_, _>>()?;
        runs.reverse();
        Ok(runs)
    }

    /// Conflicts of a connection, newest first, at most `limit`.
    pub async fn conflicts(
        &self,
        conn: ConnectionId,
        limit: usize,
    ) -> Result<Vec<ConflictRecord>, StoreError> {
        let mut all: Vec<ConflictRecord> = scan_all(self.store.as_ref(), CONFLICTS, &k1(conn))
            .await?
            .iter()
            .map(|(_, v)| decode(CONFLICTS, v))
            .collect::<Result<_, _>>()?;
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    /// The dashboard figures.
    pub async fn figures(&self, conn: ConnectionId) -> Result<Figures, StoreError> {
        let runs = self.runs(conn).await?;
        let now = Utc::now();
        let mut f = Figures {
            latest_run: runs.first().cloned(),
            ..Figures::default()
        };
        let mut seen_success = false;
        for r in &runs {
            if r.state != RunState::Running && f.last_finished_run.is_none() {
                f.last_finished_run = Some(r.clone());
                if let Some(s) = &r.summary {
                    f.last_run.add(s);
                }
            }
            if let (Some(s), false) = (&r.summary, seen_success) {
                if r.state == RunState::Succeeded {
                    f.total_in_sync = s.total_in_sync;
                    seen_success = true;
                }
            }
            let age = parse_time(&r.started).map(|t| now - t);
            if let Some(age) = age {
                if age <= ChronoDuration::days(30) {
                    if r.state == RunState::Failed {
                        f.failed_runs_30_days += 1;
                    }
                    if let Some(s) = &r.summary {
                        f.last_30_days.add(s);
                        if age <= ChronoDuration::days(7) {
                            f.last_7_days.add(s);
                        }
                    }
                }
            }
        }
        Ok(f)
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_domains_pick_the_provider() {
        assert_eq!(
            provider_for_domain("a@gmail.com"),
            Some(ProviderKind::Google)
        );
        assert_eq!(
            provider_for_domain("a@ICLOUD.com"),
            Some(ProviderKind::Icloud)
        );
        assert_eq!(provider_for_domain("a@me.com"), Some(ProviderKind::Icloud));
        assert_eq!(provider_for_domain("a@mac.com"), Some(ProviderKind::Icloud));
        assert_eq!(
            provider_for_domain("a@outlook.com"),
            Some(ProviderKind::Graph)
        );
        assert_eq!(
            provider_for_domain("a@hotmail.com"),
            Some(ProviderKind::Graph)
        );
        assert_eq!(provider_for_domain("a@live.com"), Some(ProviderKind::Graph));
        assert_eq!(provider_for_domain("a@example.org"), None);
        assert_eq!(provider_for_domain("not-an-email"), None);
    }
}
