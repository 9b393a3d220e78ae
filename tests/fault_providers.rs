//! Provider faults between `cardbridge serve` and a live Radicale, injected by the proxy in
//! `tests/fakes/fault_proxy.rs`: 500s, 429 with `Retry-After`, stalls then dropped
//! connections, truncated bodies and malformed XML, on the sync REPORTs and on the pushes'
//! PUTs. A fault the retry policy absorbs (one 429, one drop, one truncation) leaves the run
//! succeeded; a fault that persists fails the run, and the failure is visible in
//! `/connections/{id}/status` (latest run failed with its error, `failed_runs_30_days`) and in
//! `/metrics`. After each fault the next refresh succeeds, and at the end the CRM and
//! Radicale hold exactly the expected persons and cards, without duplicates, and a sync with
//! no changes changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fakes/fault_proxy.rs"]
mod fault_proxy;
mod fault_support;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
    };
    let conn = api
        .ok(
            "POST",
            "/connections",
            Some(json!({
                "provider": "carddav",
                "email": "alice@example.org",
                "server_url": proxy.url,
                "username": radicale.user,
                "password": radicale.password,
            })),
        )
        .await;
    let id = conn["id"].as_u64().unwrap();
    api.ok(
        "PATCH",
        &format!("/connections/{id}/settings"),
        Some(json!({"sync_group": book, "direction": "two_way", "visibility": "entire_company"})),
    )
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
