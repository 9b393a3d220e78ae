//! [`PgStore`]: the PostgreSQL [`Store`] backend (cargo feature `postgres`), for several
//! cardbridge nodes sharing one state (issue #9, `docs/SCALING.md`).
//!
//! # Layout
//! Everything lives in one PostgreSQL schema (default `cardbridge`; tests use one fresh schema
//! per store). Every statement names its tables schema-qualified, so nothing depends on the
//! connection's `search_path`.
//! - `kv (space text COLLATE "C", key bytea, value bytea, PRIMARY KEY (space, key))` holds every
//!   keyspace. `bytea` compares bytewise (memcmp, then length), which is exactly the order the
//!   contract asks for, and the primary key index makes a prefix scan one index range.
//! - `sequences (name text COLLATE "C" PRIMARY KEY, value bigint)`: the last value handed out.
//! - `cardbridge_meta (name text PRIMARY KEY, value bigint)`: `schema_version`.
//!
//! # Commit
//! One `SERIALIZABLE` transaction per batch: it reads every guard in one statement, fails with
//! [`StoreError::Conflict`] on the first (in batch order) that does not hold, then applies the
//! writes, collapsed to each key's last write (which is what applying them in order leaves).
//! PostgreSQL's serializable snapshot isolation aborts (SQLSTATE 40001) a transaction whose
//! guard read was overtaken by a concurrent commit, also for guards on *absent* keys, where a
//! `SELECT ... FOR UPDATE` would lock nothing; the commit then retries from the start, and the
//! retry sees the new value and reports the conflict. Deadlocks (40P01) are retried the same
//! way. Every connection runs with `synchronous_commit = on`, so `Ok` means the WAL is flushed.
//!
//! # Sequences
//! [`Store::next_id`] is one auto-committed upsert (`value + 1 ... RETURNING value`): contiguous,
//! durable before it returns, and strictly increasing across every node sharing the database.
//! Not a PostgreSQL `SEQUENCE`: `nextval` is not flushed by a transaction that writes nothing
//! else, so after a crash it may hand out a value again.
//!
//! # Schema
//! [`PgStore::open`] creates the schema and runs the pending [`MIGRATIONS`] in one transaction
//! under an advisory lock, so several nodes starting at once migrate exactly once. A schema
//! written by a newer build is refused with [`StoreError::Schema`].

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::tokio_postgres::{self, error::SqlState, IsolationLevel, NoTls};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::{check_space, Batch, ScanPage, Space, Store, StoreError, Write};

/// The schema version this build reads and writes (the number of [`MIGRATIONS`]).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The default schema name.
pub const DEFAULT_SCHEMA: &str = "cardbridge";
/// The default number of pooled connections per store.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long opening a connection may take before the store reports the server unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Entries per statement when importing.
const IMPORT_CHUNK: usize = 1000;
/// How often a commit is retried after a serialization failure or deadlock.
const MAX_ATTEMPTS: u32 = 64;

/// The migrations, in order; `{s}` stands for the quoted schema name. Migration `n` (1-based)
/// brings the schema from version `n - 1` to `n`. Never edit one that has shipped: append.
pub const MIGRATIONS: &[&str] = &[
    // 1: the key-value store and the sequences.
    r#"CREATE TABLE {s}.kv (
           space text COLLATE "C" NOT NULL,
           key bytea NOT NULL,
           value bytea NOT NULL,
           PRIMARY KEY (space, key)
       );
       CREATE TABLE {s}.sequences (
           name text COLLATE "C" PRIMARY KEY,
           value bigint NOT NULL
       );"#,
    // 2: leased jobs (see `super::leases`).
    r#"CREATE TABLE {s}.leases (
           job text COLLATE "C" PRIMARY KEY,
           due_at timestamptz NOT NULL,
           holder text,
           claimed_at timestamptz,
           expires_at timestamptz,
           fence bigint NOT NULL DEFAULT 0,
           refresh_at timestamptz
       );
       CREATE INDEX leases_due ON {s}.leases (due_at);"#,
];

/// Where a [`PgStore`] lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// libpq-style URL or key=value string, e.g. `postgres://cardbridge@db.internal/cardbridge`.
    pub url: String,
    /// The schema holding cardbridge's tables: 1–63 of `a-z`, `0-9`, `_`, not starting with a
    /// digit.
    pub schema: String,
    /// Pooled connections (at least 1).
    pub pool_size: usize,
}

impl PgSettings {
    /// `url` with the default schema and pool size.
    pub fn new(url: impl Into<String>) -> Self {
        PgSettings {
            url: url.into(),
            schema: DEFAULT_SCHEMA.into(),
            pool_size: DEFAULT_POOL_SIZE,
        }
    }
    /// The same settings with another schema.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }
}

/// A [`Store`] on a PostgreSQL schema, shared safely by any number of processes.
pub struct PgStore {
    pool: Pool,
    schema: String,
    sql: Sql,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// The statements, with the schema filled in once.
struct Sql {
    get: String,
    /// `[lower exclusive?][upper bound?]`
    scan: [[String; 2]; 2],
    guards: String,
    delete: String,
    upsert: String,
    next_id: String,
    raise_sequence: String,
    counts: String,
    sequences: String,
}

impl Sql {
    fn new(s: &str) -> Sql {
        let scan = |exclusive: bool, upper: bool| {
            format!(
                "SELECT key, value FROM {s}.kv WHERE space = $1 AND key {} $2{} \
                 ORDER BY key LIMIT $3",
                if exclusive { ">" } else { ">=" },
                if upper { " AND key < $4" } else { "" }
            )
        };
        Sql {
            get: format!("SELECT value FROM {s}.kv WHERE space = $1 AND key = $2"),
            scan: [
                [scan(false, false), scan(false, true)],
                [scan(true, false), scan(true, true)],
            ],
            guards: format!(
                "SELECT kv.value FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY \
                 AS g(space, key, i) LEFT JOIN {s}.kv kv ON kv.space = g.space AND kv.key = g.key \
                 ORDER BY g.i"
            ),
            delete: format!(
                "DELETE FROM {s}.kv WHERE (space, key) IN \
                 (SELECT * FROM unnest($1::text[], $2::bytea[]))"
            ),
            upsert: format!(
                "INSERT INTO {s}.kv (space, key, value) \
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) \
                 ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value"
            ),
            next_id: format!(
                "INSERT INTO {s}.sequences (name, value) VALUES ($1, 1) \
                 ON CONFLICT (name) DO UPDATE SET value = {s}.sequences.value + 1 \
                 RETURNING value"
            ),
            raise_sequence: format!(
                "INSERT INTO {s}.sequences (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = GREATEST({s}.sequences.value, EXCLUDED.value)"
            ),
            counts: format!("SELECT space, count(*) FROM {s}.kv GROUP BY space ORDER BY space"),
            sequences: format!("SELECT name, value FROM {s}.sequences ORDER BY name"),
        }
    }
}

/// Maps a driver error to [`StoreError::Backend`], with the server's message when there is one.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "postgres: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        )),
        None => {
            let mut msg = format!("postgres: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            StoreError::Backend(msg)
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Backend(format!("postgres pool: {other}")),
    }
}

/// True for errors after which the whole transaction should simply be run again.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Checks a schema name: 1–63 bytes of `a-z0-9_`, not starting with a digit, so it can be
/// written into SQL (quoted) without escaping and means the same to every tool.
pub fn check_schema(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid PostgreSQL schema name {schema:?}: use 1-63 of a-z, 0-9 and _, not starting with a digit"
        )))
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any
/// (`None` when `prefix` is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Builds the pool. The connection parameters come from `url`; cardbridge adds a connect
/// timeout (when the URL sets none) and forces `synchronous_commit = on`.
fn make_pool(settings: &PgSettings) -> Result<Pool, StoreError> {
    let mut config = tokio_postgres::Config::from_str(&settings.url).map_err(|e| {
        // The URL may hold a password: do not echo it.
        StoreError::Backend(format!("invalid PostgreSQL URL: {e}"))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.options("-c synchronous_commit=on");
    if config.get_application_name().is_none() {
        config.application_name("cardbridge");
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))
}

impl PgStore {
    /// Connects, creates the schema if needed and runs the pending migrations. Fails with a
    /// `Backend` error naming the problem when the server is unreachable, and with
    /// [`StoreError::Schema`] when the schema was written by a newer build.
    pub async fn open(settings: &PgSettings) -> Result<PgStore, StoreError> {
        check_schema(&settings.schema)?;
        let pool = make_pool(settings)?;
        let quoted = format!("\"{}\"", settings.schema);
        let store = PgStore {
            pool,
            schema: settings.schema.clone(),
            sql: Sql::new(&quoted),
        };
        store.migrate(&quoted).await?;
        Ok(store)
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The schema name, quoted for SQL.
    pub(crate) fn quoted_schema(&self) -> String {
        format!("\"{}\"", self.schema)
    }

    async fn migrate(&self, s: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // One migrator at a time per schema, across every node: a transaction-scoped advisory
        // lock keyed by the schema name (taken before the schema may exist).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('cardbridge.migrate.' || $1, 0))",
            &[&self.schema],
        )
        .await
        .map_err(pg_error)?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.cardbridge_meta (
                 name text PRIMARY KEY,
                 value bigint NOT NULL
             );"
        ))
        .await
        .map_err(pg_error)?;
        let found: i64 = match tx
            .query_opt(
                &format!("SELECT value FROM {s}.cardbridge_meta WHERE name = 'schema_version'"),
                &[],
            )
            .await
            .map_err(pg_error)?
        {
            Some(row) => row.try_get(0).map_err(pg_error)?,
            None => 0,
        };
        let found = u32::try_from(found).map_err(|_| StoreError::Corrupt {
            space: "cardbridge_meta".into(),
            reason: format!("schema_version {found} is out of range"),
        })?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(&migration.replace("{s}", s))
                .await
                .map_err(|e| match pg_error(e) {
                    StoreError::Backend(m) => {
                        StoreError::Backend(format!("migration {} failed: {m}", i + 1))
                    }
                    other => other,
                })?;
        }
        if found < SCHEMA_VERSION {
            tx.execute(
                &format!(
                    "INSERT INTO {s}.cardbridge_meta (name, value) VALUES ('schema_version', $1) \
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
                ),
                &[&i64::from(SCHEMA_VERSION)],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!(
                    "SELECT value FROM {}.cardbridge_meta WHERE name = 'schema_version'",
                    self.quoted_schema()
                ),
                &[],
            )
            .await
            .map_err(pg_error)?;
        let v: i64 = row.try_get(0).map_err(pg_error)?;
        u32::try_from(v).map_err(|_| StoreError::Corrupt {
            space: "cardbridge_meta".into(),
            reason: format!("schema_version {v} is out of range"),
        })
    }

    /// How many entries each keyspace holds, by space name (for `cardbridge migrate`).
    pub async fn counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(&self.sql.counts, &[])
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| {
                let space: String = r.try_get(0).map_err(pg_error)?;
                let n: i64 = r.try_get(1).map_err(pg_error)?;
                Ok((space, n.max(0) as u64))
            })
            .collect()
    }

    /// Every sequence and the last value it handed out.
    pub async fn sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(&self.sql.sequences, &[])
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0).map_err(pg_error)?;
                let v: i64 = r.try_get(1).map_err(pg_error)?;
                Ok((name, v.max(0) as u64))
            })
            .collect()
    }

    /// True when the schema holds no entry and no sequence.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.counts().await?.is_empty() && self.sequences().await?.is_empty())
    }

    /// Bulk-loads entries and sequence floors in ONE transaction (all or nothing), for
    /// `cardbridge migrate`. Entries are `(space, key, value)`, read lazily in chunks; each
    /// sequence ends at least at the given value, so the next id is above every id the source
    /// handed out. Returns the number of entries written.
    pub async fn import<I>(
        &self,
        entries: I,
        sequences: &[(String, u64)],
    ) -> Result<u64, StoreError>
    where
        I: Iterator<Item = Result<(String, Vec<u8>, Vec<u8>), StoreError>>,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let stmt = tx
            .prepare_cached(&self.sql.upsert)
            .await
            .map_err(pg_error)?;
        let mut entries = entries.peekable();
        let mut written = 0u64;
        while entries.peek().is_some() {
            let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
            for e in entries.by_ref().take(IMPORT_CHUNK) {
                let e = e?;
                check_space(&e.0)?;
                chunk.push(e);
            }
            let spaces: Vec<&str> = chunk.iter().map(|(s, _, _)| s.as_str()).collect();
            let keys: Vec<&[u8]> = chunk.iter().map(|(_, k, _)| k.as_slice()).collect();
            let values: Vec<&[u8]> = chunk.iter().map(|(_, _, v)| v.as_slice()).collect();
            tx.execute(&stmt, &[&spaces, &keys, &values])
                .await
                .map_err(pg_error)?;
            written += chunk.len() as u64;
        }
        for (name, value) in sequences {
            check_space(name)?;
            let value = i64::try_from(*value)
                .map_err(|_| StoreError::Backend(format!("sequence {name} is beyond bigint")))?;
            tx.execute(&self.sql.raise_sequence, &[name, &value])
                .await
                .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(written)
    }

    /// One attempt at a commit. `Ok(Err(e))` is a final outcome (a conflict); `Err(e)` is a
    /// driver error that may be retryable.
    async fn try_commit(
        &self,
        batch: &Batch,
        spaces: &[&str],
        keys: &[&[u8]],
        deletes: &(Vec<&str>, Vec<&[u8]>),
        puts: &(Vec<&str>, Vec<&[u8]>, Vec<&[u8]>),
    ) -> Result<Result<(), StoreError>, Result<tokio_postgres::Error, StoreError>> {
        let mut client = self.client().await.map_err(Err)?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()
            .await
            .map_err(Ok)?;
        if !batch.expects.is_empty() {
            let stmt = tx.prepare_cached(&self.sql.guards).await.map_err(Ok)?;
            let rows = tx.query(&stmt, &[&spaces, &keys]).await.map_err(Ok)?;
            if rows.len() != batch.expects.len() {
                return Err(Err(StoreError::Backend(format!(
                    "postgres: {} guard rows for {} guards",
                    rows.len(),
                    batch.expects.len()
                ))));
            }
            for (row, e) in rows.iter().zip(&batch.expects) {
                let current: Option<Vec<u8>> = row.try_get(0).map_err(Ok)?;
                if current != e.expected {
                    // Dropping `tx` rolls back.
                    return Ok(Err(StoreError::Conflict {
                        space: e.space.to_string(),
                        key: String::from_utf8_lossy(&e.key).into_owned(),
                    }));
                }
            }
        }
        if !deletes.0.is_empty() {
            let stmt = tx.prepare_cached(&self.sql.delete).await.map_err(Ok)?;
            tx.execute(&stmt, &[&deletes.0, &deletes.1])
                .await
                .map_err(Ok)?;
        }
        if !puts.0.is_empty() {
            let stmt = tx.prepare_cached(&self.sql.upsert).await.map_err(Ok)?;
            tx.execute(&stmt, &[&puts.0, &puts.1, &puts.2])
                .await
                .map_err(Ok)?;
        }
        tx.commit().await.map_err(Ok)?;
        Ok(Ok(()))
    }
}

/// Drops a schema and everything in it. For tests and operators; cardbridge itself never
/// calls it.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    check_schema(schema)?;
    let pool = make_pool(&PgSettings {
        url: url.to_string(),
        schema: schema.to_string(),
        pool_size: 1,
    })?;
    let client = pool.get().await.map_err(pool_error)?;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .map_err(pg_error)
}

#[async_trait]
impl Store for PgStore {
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        check_space(space)?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.get)
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(&stmt, &[&space, &key])
            .await
            .map_err(pg_error)?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(r.try_get(0).map_err(pg_error)?)),
        }
    }

    async fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        check_space(space)?;
        if limit == 0 {
            return Ok(ScanPage::default());
        }
        let (exclusive, lower) = match after {
            Some(a) if a >= prefix => (true, a),
            _ => (false, prefix),
        };
        let upper = prefix_end(prefix);
        // One more than asked, to know whether more entries follow.
        let fetch = i64::try_from(limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.scan[usize::from(exclusive)][usize::from(upper.is_some())])
            .await
            .map_err(pg_error)?;
        let rows = match &upper {
            Some(u) => client.query(&stmt, &[&space, &lower, &fetch, u]).await,
            None => client.query(&stmt, &[&space, &lower, &fetch]).await,
        }
        .map_err(pg_error)?;
        let more = rows.len() > limit;
        let mut entries = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            let k: Vec<u8> = row.try_get(0).map_err(pg_error)?;
            let v: Vec<u8> = row.try_get(1).map_err(pg_error)?;
            entries.push((k, v));
        }
        Ok(ScanPage::new(entries, more))
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut spaces = Vec::with_capacity(batch.expects.len());
        let mut keys = Vec::with_capacity(batch.expects.len());
        for e in &batch.expects {
            check_space(e.space)?;
            spaces.push(e.space);
            keys.push(e.key.as_slice());
        }
        // Collapse the writes to each key's last one: the same end state as applying them in
        // order, and one row per key for each bulk statement.
        let mut last: HashMap<(&str, &[u8]), Option<&[u8]>> = HashMap::new();
        let mut order: Vec<(&str, &[u8])> = Vec::new();
        for w in &batch.writes {
            let (space, key, value) = match w {
                Write::Put { space, key, value } => {
                    (*space, key.as_slice(), Some(value.as_slice()))
                }
                Write::Delete { space, key } => (*space, key.as_slice(), None),
            };
            check_space(space)?;
            if last.insert((space, key), value).is_none() {
                order.push((space, key));
            }
        }
        let mut deletes = (Vec::new(), Vec::new());
        let mut puts = (Vec::new(), Vec::new(), Vec::new());
        for (space, key) in order {
            match last.get(&(space, key)).copied().flatten() {
                None => {
                    deletes.0.push(space);
                    deletes.1.push(key);
                }
                Some(v) => {
                    puts.0.push(space);
                    puts.1.push(key);
                    puts.2.push(v);
                }
            }
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self
                .try_commit(&batch, &spaces, &keys, &deletes, &puts)
                .await
            {
                Ok(outcome) => return outcome,
                Err(Err(e)) => return Err(e),
                Err(Ok(e)) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                    // Back off a little, at random, so that colliding committers spread out.
                    let cap = 1u64 << attempt.min(6);
                    let ms = rand::random::<u64>() % cap;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(Ok(e)) => return Err(pg_error(e)),
            }
        }
    }

    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        check_space(sequence)?;
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql.next_id)
            .await
            .map_err(pg_error)?;
        let row = client
            .query_one(&stmt, &[&sequence])
            .await
            .map_err(pg_error)?;
        let v: i64 = row.try_get(0).map_err(pg_error)?;
        u64::try_from(v).map_err(|_| StoreError::Corrupt {
            space: sequence.to_string(),
            reason: format!("sequence value {v} is negative"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b"p/"), Some(b"p0".to_vec()));
        assert_eq!(prefix_end(&[0x01, 0xff]), Some(vec![0x02]));
        assert_eq!(prefix_end(&[0x00]), Some(vec![0x01]));
    }

    #[test]
    fn schema_names_are_checked() {
        for ok in ["cardbridge", "cb_test_1", "_x", &"a".repeat(63)] {
            assert!(check_schema(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "Upper",
            "with space",
            "quote\"d",
            "semi;colon",
            &"a".repeat(64),
        ] {
            assert!(check_schema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_schema_version_counts_the_migrations() {
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
        assert!(MIGRATIONS.iter().all(|m| m.contains("{s}.")));
    }
}
