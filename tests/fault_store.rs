//! Storage faults through the service: the in-process service (`ServiceBuilder`, default
//! wiring, `/api/v1`) over a store whose commits fail on demand, syncing a live Radicale.
//! While the CRM and sync keyspaces refuse writes, creating or editing a person answers 500
//! with the API's JSON error envelope (`internal error`, retry later; the backend's message
//! goes to the log only), and a refresh ends `failed` with a
//! store error visible in the connection status; nothing committed before is lost or half
//! changed. While every write fails (the run record included), the API still answers. Once
//! the store heals, the next refresh brings in what was missed, exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod fault_support;
mod support;

use std::sync::{Arc, Mutex};

use api_support::{call, Auth, MapStore};
use async_trait::async_trait;
use cardbridge::scheduler::SchedulerConfig;
use cardbridge::service::{app, ensure_admin, ServiceBuilder};
use cardbridge::store::{Batch, ScanPage, Space, Store, StoreError, Write};
use fault_support::{card, filled_book};
use serde_json::{json, Value};
use support::Radicale;

const ADMIN: Auth = Auth::Basic("admin", "adminpass1");

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Healthy,
    /// Commits writing any `crm.*` or `sync.*` key fail (the data; run bookkeeping passes).
    DataFails,
    /// Every commit fails.
    AllFail,
}

/// A memory store whose commits fail per [`Mode`]; a failed commit writes nothing.
struct FlakyStore {
    inner: MapStore,
    mode: Mutex<Mode>,
}

impl FlakyStore {
    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
}

#[async_trait]
impl Store for FlakyStore {
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
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let mode = *self.mode.lock().unwrap();
        let data = batch.writes.iter().any(|w| {
            let space = match w {
                Write::Put { space, .. } | Write::Delete { space, .. } => space,
            };
            space.starts_with("crm.") || space.starts_with("sync.")
        });
        if mode == Mode::AllFail || (mode == Mode::DataFails && data) {
            return Err(StoreError::Backend(
                "injected: no space left on device".into(),
            ));
        }
        self.inner.commit(batch).await
    }
    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        if *self.mode.lock().unwrap() == Mode::AllFail {
            return Err(StoreError::Backend(
                "injected: no space left on device".into(),
            ));
        }
        self.inner.next_id(sequence).await
    }
}

async fn api(app: &axum::Router, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let b = body.map(|b| b.to_string());
    let (s, v) = call(app, method, path, ADMIN, b.as_deref()).await;
    (s.as_u16(), v)
}

async fn persons(app: &axum::Router) -> Vec<Value> {
    let (s, v) = api(app, "GET", "/api/v1/persons?limit=500", None).await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_surfaces_as_errors_and_loses_no_committed_data() {
    let radicale = Radicale::start();
    let (book, dir) = filled_book(&radicale, "store", 20);
    let store = Arc::new(FlakyStore {
        inner: MapStore::default(),
        mode: Mutex::new(Mode::Healthy),
    });
    let state = ServiceBuilder::new(store.clone())
        .allow_private_networks(true)
        .scheduler(SchedulerConfig {
            jitter: std::time::Duration::ZERO,
            ..SchedulerConfig::default()
        })
        .start()
        .await
        .unwrap();
    ensure_admin(&state.core.crm, "admin", Some("adminpass1".into()))
        .await
        .unwrap();
    let app = app(state, None);

    let (s, v) = api(
        &app,
        "POST",
        "/api/v1/connections",
        Some(json!({"provider": "carddav", "email": "alice@example.org",
            "server_url": radicale.url, "username": radicale.user, "password": radicale.password})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["id"].as_u64().unwrap();
    let (s, v) = api(
        &app,
        "PATCH",
        &format!("/api/v1/connections/{id}/settings"),
        Some(json!({"sync_group": book, "direction": "two_way", "visibility": "entire_company"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api(
        &app,
        "POST",
        &format!("/api/v1/connections/{id}/start"),
        None,
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let refresh = format!("/api/v1/connections/{id}/refresh?wait=true");
    let (s, v) = api(&app, "POST", &refresh, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["run"]["state"], "succeeded", "{v}");
    let before = persons(&app).await;
    assert_eq!(before.len(), 20);

    // The data keyspaces refuse writes.
    store.set(Mode::DataFails);
    let (s, v) = api(
        &app,
        "POST",
        "/api/v1/persons",
        Some(json!({"name": "Never Stored", "emails": [{"value": "never@example.org", "label": "work", "primary": true}]})),
    )
    .await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(v["success"], false, "{v}");
    // The body is the API's error envelope; internals (the backend's message) stay in the log.
    assert_eq!(v["error"], "internal error", "{v}");
    assert!(
        v["error_info"].as_str().unwrap().contains("retry later"),
        "{v}"
    );
    let pid = before[0]["id"].as_u64().unwrap();
    let (s, v) = api(
        &app,
        "PATCH",
        &format!("/api/v1/persons/{pid}"),
        Some(json!({"job_title": "Lost Edit"})),
    )
    .await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(v["success"], false, "{v}");

    // Remote changes meanwhile: a new card and an edited one.
    std::fs::write(dir.join("c100.vcf"), card(100)).unwrap();
    let edited = card(0).replace("TITLE:Engineer 0", "TITLE:Architect 0");
    std::fs::write(dir.join("c0.vcf"), edited).unwrap();
    let (s, v) = api(&app, "POST", &refresh, None).await;
    assert_eq!(s, 200, "{v}");
    let run = &v["data"]["run"];
    assert_eq!(run["state"], "failed", "{v}");
    assert!(
        run["error"].as_str().unwrap().contains("store"),
        "the run says the store failed: {run}"
    );
    let (_, status) = api(
        &app,
        "GET",
        &format!("/api/v1/connections/{id}/status"),
        None,
    )
    .await;
    assert_eq!(
        status["data"]["figures"]["latest_run"]["state"], "failed",
        "{status}"
    );
    assert_eq!(
        status["data"]["figures"]["failed_runs_30_days"], 1,
        "{status}"
    );
    assert_eq!(
        persons(&app).await,
        before,
        "nothing committed was lost or half changed"
    );

    // Every write fails, the run record included: the API still answers, with an error.
    store.set(Mode::AllFail);
    let (s, v) = api(&app, "POST", &refresh, None).await;
    eprintln!("all writes failing: refresh answered {s}: {v}");
    assert!(
        s >= 500 || v["data"]["run"]["state"] == "failed",
        "a refresh with a dead store is not a success: {s} {v}"
    );
    assert_eq!(persons(&app).await, before);

    // Healed: the next refresh brings in exactly what was missed.
    store.set(Mode::Healthy);
    let (s, v) = api(&app, "POST", &refresh, None).await;
    assert_eq!(s, 200, "{v}");
    let run = &v["data"]["run"];
    assert_eq!(run["state"], "succeeded", "{v}");
    assert_eq!(run["summary"]["added"], 1, "{run}");
    assert_eq!(run["summary"]["updated"], 1, "{run}");
    let after = persons(&app).await;
    assert_eq!(after.len(), 21);
    assert!(after.iter().any(|p| p["job_title"] == "Architect 0"));
    assert!(!after.iter().any(|p| p["job_title"] == "Lost Edit"));
    assert!(!after.iter().any(|p| p["name"] == "Never Stored"));
    let (_, v) = api(&app, "POST", &refresh, None).await;
    let quiet = &v["data"]["run"]["summary"];
    for k in ["added", "updated", "deleted"] {
        assert_eq!(quiet[k], 0, "{v}");
    }
}
