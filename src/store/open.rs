//! Opens the backend the configuration names: `store = "sled"` (the data directory's `db/`)
//! or `store = "postgres"` (the `[postgres]` section). `cardbridge serve` and
//! `cardbridge migrate` go through here, so both read the same settings.

use std::sync::Arc;

use super::{SledStore, Store, StoreError};
use crate::config::{Config, StoreKind};

/// The sled database directory inside a data directory.
pub fn sled_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("db")
}

/// Opens the configured store (running PostgreSQL migrations on the way).
pub async fn open_configured(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match config.store {
        StoreKind::Sled => Ok(Arc::new(SledStore::open(sled_dir(config))?)),
        StoreKind::Postgres => open_postgres(config).await,
    }
}

/// Opens the configured store for `serve`, with the shared lease table the scheduler runs
/// through when the store is PostgreSQL (`None` for sled: one node, local schedule).
pub async fn open_for_serve(
    config: &Config,
) -> Result<(Arc<dyn Store>, Option<Arc<dyn crate::scheduler::JobLeases>>), StoreError> {
    match config.store {
        StoreKind::Sled => Ok((Arc::new(SledStore::open(sled_dir(config))?), None)),
        StoreKind::Postgres => open_postgres_leased(config).await,
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres_leased(
    config: &Config,
) -> Result<(Arc<dyn Store>, Option<Arc<dyn crate::scheduler::JobLeases>>), StoreError> {
    let store = Arc::new(super::PgStore::open(&postgres_settings(config)?).await?);
    let leases = super::leases::Leases::new(store.clone());
    Ok((store, Some(Arc::new(leases))))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres_leased(
    config: &Config,
) -> Result<(Arc<dyn Store>, Option<Arc<dyn crate::scheduler::JobLeases>>), StoreError> {
    Ok((open_postgres(config).await?, None))
}

#[cfg(feature = "postgres")]
async fn open_postgres(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(
        super::PgStore::open(&postgres_settings(config)?).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::Backend(
        "store = \"postgres\" but this build has no PostgreSQL support (cargo feature `postgres`)"
            .into(),
    ))
}

/// The `[postgres]` section as store settings; the URL is required.
#[cfg(feature = "postgres")]
pub fn postgres_settings(config: &Config) -> Result<super::PgSettings, StoreError> {
    let url = config.postgres.url.clone().ok_or_else(|| {
        StoreError::Backend(format!(
            "store = \"postgres\" needs postgres.url (or {})",
            crate::config::ENV_POSTGRES_URL
        ))
    })?;
    Ok(super::PgSettings {
        url,
        schema: config.postgres.schema.clone(),
        pool_size: config.postgres.pool_size,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sled_is_opened_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let store = open_configured(&config).await.unwrap();
        assert_eq!(store.next_id("s").await.unwrap(), 1);
        assert!(dir.path().join("db").is_dir());
    }

    #[tokio::test]
    async fn postgres_without_a_url_names_the_setting() {
        let config = Config {
            store: StoreKind::Postgres,
            ..Config::default()
        };
        let e = open_configured(&config).await.err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("postgres")
                && (msg.contains(crate::config::ENV_POSTGRES_URL) || msg.contains("feature")),
            "{msg}"
        );
    }
}
