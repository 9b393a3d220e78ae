//! Provider faults between `cardbridge serve` and a live Radicale, injected by the proxy in
//! `tests/fakes/fault_proxy.rs`: 500s, 429 with `Retry-After`, stalls then dropped
//! connections, truncated bodies and malformed XML, on the sync REPORTs and on the pushes'
//! PUTs. A fault the retry policy absorbs (one 429, one drop, one truncation) leaves the run
//! succeeded; a fault that persists fails the run, and the failure is visible in
//! `/connections/{id}/status` (latest run failed with its error, `failed_runs_30_days`) and in
//! `/metrics`. After each fault the next refresh succeeds, and at the end the CRM and
//! Radicale hold exactly the expected persons and cards, without duplicates, and a sync with
//! no changes changes nothing. Malformed JSON from the Google and Graph fakes (through the same
//! proxy) fails the run with a provider error, and the next run converges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fakes/fault_proxy.rs"]
mod fault_proxy;
mod fault_support;
#[path = "fakes/google.rs"]
mod google_fake;
#[path = "fakes/graph.rs"]
mod graph_fake;
mod support;
mod sync_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cardbridge::crm::{MappingConfig, Visibility};
use cardbridge::providers::google::{GoogleConfig, GoogleProvider, GROUP_ALL};
use cardbridge::providers::graph::{GraphConfig, GraphProvider};
use cardbridge::providers::http::{AccessTokenSource, RetryPolicy};
use cardbridge::providers::oauth::{OAuthClient, OAuthEndpoints, SecretBox, TokenManager};
use cardbridge::providers::{Provider, ProviderError, ProviderKind};
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::execute::{self, SyncError};
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::Direction;
use sync_support::{crm_with_users, MapStore};

use fault_proxy::{Fault, FaultProxy};
use fault_support::{filled_book, serve, vcf_files, Api};
use serde_json::{json, Value};
use support::Radicale;

const N: usize = 150;

/// One refresh; returns the run record (succeeded or failed).
async fn refresh_run(api: &Api, id: u64) -> Value {
    let (s, v) = api
        .call(
            "POST",
            &format!("/connections/{id}/refresh?wait=true"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"]["run"].clone()
}

async fn failed_runs(api: &Api, id: u64) -> u64 {
    let status = api
        .ok("GET", &format!("/connections/{id}/status"), None)
        .await;
    status["figures"]["failed_runs_30_days"].as_u64().unwrap()
}

/// A persistent fault fails the run, visibly; once disarmed, the next refresh succeeds.
async fn fails_visibly(
    api: &Api,
    proxy: &FaultProxy,
    id: u64,
    method: &str,
    fault: Fault,
    error_has: &str,
) {
    let before = failed_runs(api, id).await;
    let injected = proxy.injected();
    proxy.arm(method, fault, None);
    let run = refresh_run(api, id).await;
    proxy.disarm();
    assert!(proxy.injected() > injected, "{fault:?} was never hit");
    assert_eq!(run["state"], "failed", "{fault:?}: {run}");
    let error = run["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        error.contains(error_has),
        "{fault:?}: the error says what failed ({error_has}): {error}"
    );
    let status = api
        .ok("GET", &format!("/connections/{id}/status"), None)
        .await;
    assert_eq!(
        status["figures"]["latest_run"]["state"], "failed",
        "{status}"
    );
    assert_eq!(
        status["figures"]["failed_runs_30_days"].as_u64().unwrap(),
        before + 1,
        "{status}"
    );
    let after = refresh_run(api, id).await;
    assert_eq!(after["state"], "succeeded", "{fault:?}: resumes: {after}");
    eprintln!(
        "{method} {fault:?}: run failed ({error}); next refresh {}",
        after["summary"]
    );
}

/// A fault injected `times` times is absorbed by the retry policy: the run succeeds.
async fn absorbed(
    api: &Api,
    proxy: &FaultProxy,
    id: u64,
    method: &str,
    fault: Fault,
    times: u32,
) -> Duration {
    let injected = proxy.injected();
    proxy.arm(method, fault, Some(times));
    let t0 = Instant::now();
    let run = refresh_run(api, id).await;
    let took = t0.elapsed();
    proxy.disarm();
    assert_eq!(
        proxy.injected(),
        injected + u64::from(times),
        "{fault:?} hit"
    );
    assert_eq!(
        run["state"], "succeeded",
        "{fault:?} x{times} is retried: {run}"
    );
    eprintln!("{method} {fault:?} x{times}: retried, run succeeded in {took:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_faults_are_retried_or_fail_visibly_and_the_sync_ends_correct() {
    let radicale = Radicale::start();
    let (_, dir) = filled_book(&radicale, "faults", N);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], radicale.port))).await;
    let book = format!("{}{}/faults/", proxy.url, radicale.user);

    let tmp = tempfile::Builder::new()
        .prefix("cardbridge-faults-")
        .tempdir()
        .unwrap();
    let server = serve(&tmp.path().join("data"));
    let api = Api::new(&server);
    let id = api
        .two_way_carddav(&proxy.url, &radicale.user, &radicale.password, &book)
        .await;

    // The first run meets a 500 on its sync REPORT: it fails and says so.
    proxy.arm("REPORT", Fault::Status500, None);
    let (s, started) = api
        .call("POST", &format!("/connections/{id}/start"), None)
        .await;
    assert_eq!(s, 202, "{started}");
    let run_id = started["data"]["run_id"].as_u64().unwrap();
    let first = loop {
        let r = api
            .ok("GET", &format!("/connections/{id}/runs/{run_id}"), None)
            .await;
        if r["state"] != "running" && r["state"] != "queued" {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    proxy.disarm();
    assert_eq!(first["state"], "failed", "{first}");
    assert!(first["error"].as_str().unwrap().contains("500"), "{first}");
    assert_eq!(failed_runs(&api, id).await, 1);

    // The REPORTs (sync-collection, multiget) of the initial sync.
    fails_visibly(&api, &proxy, id, "REPORT", Fault::Status500, "500").await;
    // Retry-After is honoured, and a throttle that lasts fails the run as throttled.
    let took = absorbed(
        &api,
        &proxy,
        id,
        "REPORT",
        Fault::Throttle {
            retry_after_secs: 1,
        },
        1,
    )
    .await;
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After: 1 waited: {took:?}"
    );
    fails_visibly(
        &api,
        &proxy,
        id,
        "REPORT",
        Fault::Throttle {
            retry_after_secs: 1,
        },
        "throttl",
    )
    .await;
    absorbed(
        &api,
        &proxy,
        id,
        "REPORT",
        Fault::Drop { stall_ms: 1500 },
        1,
    )
    .await;
    fails_visibly(
        &api,
        &proxy,
        id,
        "REPORT",
        Fault::Drop { stall_ms: 200 },
        "",
    )
    .await;
    absorbed(&api, &proxy, id, "REPORT", Fault::Truncate, 1).await;
    fails_visibly(&api, &proxy, id, "REPORT", Fault::Truncate, "").await;
    fails_visibly(&api, &proxy, id, "REPORT", Fault::MalformedXml, "").await;

    // Two-way pushes: CRM persons whose PUT fails, then goes through.
    for j in 0..5 {
        api.ok(
            "POST",
            "/persons",
            Some(json!({"name": format!("Crm Person {j}"),
                "emails": [{"value": format!("crm{j}@example.org"), "label": "work", "primary": true}]})),
        )
        .await;
    }
    proxy.arm("PUT", Fault::Status500, None);
    let run = refresh_run(&api, id).await;
    proxy.disarm();
    let pushed_fail = format!("{run}");
    eprintln!(
        "PUT Status500: run {} errors {}",
        run["state"], run["summary"]["errors"]
    );
    assert!(
        run["state"] == "failed" || run["summary"]["errors"].as_u64().unwrap_or(0) > 0,
        "a failed push is visible: {pushed_fail}"
    );
    let run = refresh_run(&api, id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    api.ok(
        "POST",
        "/persons",
        Some(json!({"name": "Crm Person 5",
            "emails": [{"value": "crm5@example.org", "label": "work", "primary": true}]})),
    )
    .await;
    absorbed(&api, &proxy, id, "PUT", Fault::Drop { stall_ms: 0 }, 1).await;

    // The end state: exactly N + 6 on both sides, no duplicates, and nothing more to do.
    let quiet = refresh_run(&api, id).await;
    assert_eq!(quiet["state"], "succeeded", "{quiet}");
    for k in ["added", "updated", "deleted", "errors"] {
        assert_eq!(quiet["summary"][k], 0, "no changes: {quiet}");
    }
    let persons = api.persons().await;
    let emails: BTreeSet<String> = persons
        .iter()
        .flat_map(|p| p["emails"].as_array().cloned().unwrap_or_default())
        .map(|e| e["value"].as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(persons.len(), N + 6);
    assert_eq!(emails.len(), N + 6);
    let files = vcf_files(&dir);
    let uids: BTreeSet<String> = files
        .iter()
        .map(|f| {
            let t = std::fs::read_to_string(f).unwrap();
            t.lines()
                .find_map(|l| l.strip_prefix("UID:"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(files.len(), N + 6, "cards on Radicale");
    assert_eq!(uids.len(), N + 6, "unique UIDs on Radicale");

    // The failures are counted in the metrics too.
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cardbridge_sync_runs_total{outcome=\"failed\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(failed >= 7, "failed runs in /metrics: {failed}");
}

// ------------------------------------------------------------------ malformed JSON (Google, Graph)

const GRAPH_FOLDER: &str = "AAMkAGI2TAAA=";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(10),
    }
}

fn cloud_conn(user: u64, kind: ProviderKind, group: &str) -> SyncConnection {
    SyncConnection {
        id: 3,
        user_id: user,
        provider: kind,
        group: group.into(),
        direction: Direction::TwoWay,
        policy: Policy::NewestWins,
        visibility: Visibility::EntireCompany,
        mapping: MappingConfig::default(),
        default_region: Some("US".into()),
    }
}

/// The proxy in front of a fake whose root is `base` (`http://127.0.0.1:PORT/...`); returns
/// the proxy and `base` rewritten to go through it.
async fn proxied(base: &str) -> (FaultProxy, String) {
    let url: reqwest::Url = base.parse().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], url.port().unwrap()));
    let proxy = FaultProxy::start(addr).await;
    let through = format!("{}{}", proxy.url.trim_end_matches('/'), url.path());
    (proxy, through)
}

struct StaticTokens;

#[async_trait]
impl AccessTokenSource for StaticTokens {
    async fn access_token(&self) -> Result<String, ProviderError> {
        Ok("tok".into())
    }
    async fn invalidate(&self, _token: &str) {}
}

/// Runs `provider` with a malformed JSON answer to its first GET: the run fails with a
/// protocol error and commits nothing wrong; the next runs pull everything once and then
/// nothing.
async fn malformed_json_then_converges(
    provider: &dyn Provider,
    proxy: &FaultProxy,
    kind: ProviderKind,
    group: &str,
    n: usize,
) {
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = cloud_conn(alice.id, kind, group);
    proxy.arm("GET", Fault::MalformedJson, Some(1));
    let err = execute::run(&c, provider, &crm, store.as_ref())
        .await
        .expect_err("a malformed page fails the run");
    assert_eq!(proxy.injected(), 1);
    eprintln!("{kind:?} malformed JSON: {err}");
    assert!(
        matches!(err, SyncError::Provider(_)),
        "a provider error, not a panic or a CRM write: {err}"
    );
    let s = execute::run(&c, provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let persons = crm.list_persons(None, 500).await.unwrap().persons;
    assert_eq!(persons.len(), n, "{kind:?}");
    let emails: BTreeSet<String> = persons
        .iter()
        .flat_map(|p| p.emails.iter().map(|e| e.value.to_lowercase()))
        .collect();
    assert_eq!(emails.len(), n, "{kind:?}: no duplicates");
    let s = execute::run(&c, provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert_eq!(
        s.counts.added() + s.counts.updated() + s.counts.deleted(),
        0,
        "{kind:?}: nothing left to do: {s:?}"
    );
}

#[tokio::test]
async fn malformed_graph_json_fails_the_run_and_the_next_one_converges() {
    let fake = graph_fake::FakeGraph::start("tok").await;
    fake.add_folder(GRAPH_FOLDER, "Contacts", None);
    fake.seed(GRAPH_FOLDER, 0, 120);
    let (proxy, base) = proxied(&fake.base).await;
    let mut cfg = GraphConfig::new(format!("user-{}@contoso.com", uuid::Uuid::new_v4()));
    cfg.base_url = base;
    cfg.page_size = 50;
    cfg.retry = fast_retry();
    let p = GraphProvider::new(cfg, Arc::new(StaticTokens)).unwrap();
    malformed_json_then_converges(&p, &proxy, ProviderKind::Graph, GRAPH_FOLDER, 120).await;
}

#[tokio::test]
async fn malformed_google_json_fails_the_run_and_the_next_one_converges() {
    const REFRESH: &str = "1//fake-refresh-initial";
    let fake = google_fake::FakeGoogle::start().await;
    fake.add_refresh_token(REFRESH);
    fake.seed(0, 120, &[]);
    let (proxy, base) = proxied(&fake.base_url).await;
    let http = reqwest::Client::new();
    let secrets = Arc::new(SecretBox::from_key(&[3u8; 32]).unwrap());
    let sealed = secrets.seal(REFRESH.as_bytes()).unwrap();
    let endpoints = OAuthEndpoints {
        authorize_url: fake.authorize_url().parse().unwrap(),
        token_url: fake.token_url().parse().unwrap(),
    };
    let mut client = OAuthClient::google(
        "client-id",
        Some("s3cret".into()),
        "http://127.0.0.1:1/cb",
        endpoints,
    );
    client.retry = fast_retry();
    let tokens = Arc::new(TokenManager::new(client, http.clone(), secrets, sealed));
    let config = GoogleConfig {
        base_url: base.parse().unwrap(),
        page_size: 50,
        retry: fast_retry(),
    };
    let p = GoogleProvider::new(http, tokens, config);
    malformed_json_then_converges(&p, &proxy, ProviderKind::Google, GROUP_ALL, 120).await;
}
