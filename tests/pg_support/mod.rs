//! PostgreSQL helpers for the integration tests: the test server's URL, schema names unique to
//! a run, and [`require_server`], which FAILS (never skips) when the server cannot be used: the
//! test machine and CI run PostgreSQL 15 on 127.0.0.1:5432 with trust auth and a database
//! `test`, so its absence is a broken environment. `CARDBRIDGE_TEST_POSTGRES_URL` points the
//! tests elsewhere.
//!
//! Use it with `mod pg_support;`. Every schema a test creates is dropped by that test.
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
