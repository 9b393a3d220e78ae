//! PostgreSQL helpers for the integration tests: the test server's URL, schema names unique to
//! a run, and [`require_server`], which FAILS (never skips) when the server cannot be used: the
//! test machine and CI run PostgreSQL 15 on 127.0.0.1:5432 with trust auth and a database
//! `test`, so its absence is a broken environment. `CARDBRIDGE_TEST_POSTGRES_URL` points the
//! tests elsewhere.
//!
//! Use it with `mod pg_support;`. A test names its schema with [`TempSchema`], which drops it
//! when it goes out of scope, also when the test panics.
#![allow(dead_code)]

use cardbridge::store::postgres::{drop_schema, PgSettings, PgStore};

/// The variable that overrides the test server's URL.
pub const ENV_TEST_URL: &str = "CARDBRIDGE_TEST_POSTGRES_URL";

/// The test database URL.
pub fn url() -> String {
    std::env::var(ENV_TEST_URL).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema name unique to this process and moment, starting with `cbt_<what>_`.
pub fn unique_schema(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "cbt_{what}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

/// Settings for `schema` on the test server.
pub fn settings(schema: &str) -> PgSettings {
    PgSettings::new(url()).with_schema(schema)
}

/// Panics with a clear message when the test server cannot be used.
pub async fn require_server() {
    let probe = settings(&unique_schema("probe"));
    match PgStore::open(&probe).await {
        Ok(store) => {
            drop(store);
            drop_schema(&probe.url, &probe.schema)
                .await
                .unwrap_or_else(|e| panic!("cannot drop the probe schema: {e}"));
        }
        Err(e) => panic!(
            "PostgreSQL is required for this test and is not usable at {} ({e}). Start the \
             server (127.0.0.1:5432, trust auth, database `test`) or set {ENV_TEST_URL}.",
            url()
        ),
    }
}

/// Drops `schema` on the test server.
pub async fn remove(schema: &str) {
    drop_schema(&url(), schema)
        .await
        .unwrap_or_else(|e| panic!("cannot drop schema {schema}: {e}"));
}

/// A unique schema name ([`unique_schema`]) whose schema is dropped when this goes out of
/// scope, even during a panic (on a thread of its own, since the test's runtime may be gone).
pub struct TempSchema(String);

impl TempSchema {
    /// A fresh name starting with `cbt_<what>_`; nothing is created until a store opens it.
    pub fn new(what: &str) -> Self {
        TempSchema(unique_schema(what))
    }
}

impl std::ops::Deref for TempSchema {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TempSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        let name = self.0.clone();
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(drop_schema(&url(), &name))
                .map_err(|e| e.to_string())
        })
        .join();
        if !std::thread::panicking() {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("cannot drop schema {}: {e}", self.0),
                Err(_) => panic!("dropping schema {} panicked", self.0),
            }
        }
    }
}
