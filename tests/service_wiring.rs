//! The service's default wiring (`service::wiring::Wiring`) with a Google connection against
//! the fake People API and token endpoint (tests/fakes/google.rs), through `/api/v1` in
//! process: create from a gmail.com address, sync groups, settings, start, refresh; the
//! person arrives, a refresh token the provider rotates is stored for the next run, and a
//! refresh token the provider refuses puts the connection in "needs re-authorization". And
//! connection create for an email whose domain names no provider: RFC 6764 discovery finds a
//! live Radicale, Exchange Autodiscover finds the EWS fake (tests/fakes/ews.rs) when CardDAV
//! finds nothing, a refused password is a 422, and nothing found is a 422 naming both tries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
#[path = "fakes/google.rs"]
mod google_fake;

use std::net::Ipv4Addr;
use std::sync::Arc;

use api_support::{call, Auth, MapStore};
use cardbridge::config::{OAuthApp, OAuthSection};
use cardbridge::providers::http::NetworkPolicy;
use cardbridge::providers::oauth::OAuthEndpoints;
use cardbridge::scheduler::SchedulerConfig;
use cardbridge::service::wiring::WiringConfig;
use cardbridge::service::{app, ensure_admin, ServiceBuilder};
use serde_json::json;

const ADMIN: Auth = Auth::Basic("admin", "adminpass1");
const REFRESH: &str = "1//fake-refresh-initial";

/// `GET`/`POST` without a body, as the admin.
async fn admin(app: &axum::Router, method: &str, path: &str) -> (u16, serde_json::Value) {
    let (s, v) = call(app, method, path, ADMIN, None).await;
    (s.as_u16(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_connection_syncs_through_the_default_wiring() {
    let fake = google_fake::FakeGoogle::start().await;
    fake.add_refresh_token(REFRESH);
    fake.put_person(
        "people/c900",
        json!({
            "resourceName": "people/c900",
            "names": [{"givenName": "Ada", "familyName": "Lovelace", "displayName": "Ada Lovelace"}],
            "emailAddresses": [{"value": "ada@example.com", "type": "work"}],
            "organizations": [{"name": "Analytical Engines", "title": "Countess"}],
            "memberships": [{"contactGroupMembership": {"contactGroupId": "myContacts",
                "contactGroupResourceName": "contactGroups/myContacts"}}]
        }),
    );
    let wiring = WiringConfig {
        oauth: OAuthSection {
            google: Some(OAuthApp {
                client_id: "client-id".into(),
                client_secret: Some("s3cret".into()),
                redirect_uri: "http://127.0.0.1:1/cb".into(),
                tenant: None,
            }),
            microsoft: None,
        },
        google_api: Some(fake.base_url.parse().unwrap()),
        google_endpoints: Some(OAuthEndpoints {
            authorize_url: fake.authorize_url().parse().unwrap(),
            token_url: fake.token_url().parse().unwrap(),
        }),
        // The fake is on loopback: allowed explicitly, that address only (issue #8 SSRF).
        network: Some(NetworkPolicy::from_config(false).allowing([Ipv4Addr::LOCALHOST.into()])),
        ..WiringConfig::default()
    };
    let state = ServiceBuilder::new(Arc::new(MapStore::default()))
        .wiring(wiring)
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

    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/connections",
        ADMIN,
        Some(&json!({"email": "ada@gmail.com", "refresh_token": REFRESH}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["provider"], "google");
    let id = v["data"]["id"].as_u64().unwrap();

    let (s, groups) = admin(
        &app,
        "GET",
        &format!("/api/v1/connections/{id}/sync-groups"),
    )
    .await;
    assert_eq!(s, 200, "{groups}");
    let all = groups["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "contactGroups/all")
        .unwrap_or_else(|| panic!("no contactGroups/all in {groups}"))
        .clone();
    let (s, v) = call(
        &app,
        "PATCH",
        &format!("/api/v1/connections/{id}/settings"),
        ADMIN,
        Some(
            &json!({"sync_group": all["id"], "direction": "two_way", "visibility": "entire_company"})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = admin(&app, "POST", &format!("/api/v1/connections/{id}/start")).await;
    assert_eq!(s, 202, "{v}");

    // The provider rotates refresh tokens from now on and revokes the old one at each refresh:
    // two runs in a row only succeed when the first run stored the rotated token.
    fake.rotate_refresh_tokens();
    for round in 0..2 {
        let (s, v) = admin(
            &app,
            "POST",
            &format!("/api/v1/connections/{id}/refresh?wait=true"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["data"]["run"]["state"], "succeeded", "round {round}: {v}");
    }
    let (_, persons) = call(&app, "GET", "/api/v1/persons", ADMIN, None).await;
    let ada = &persons["data"][0];
    assert_eq!(ada["name"], "Ada Lovelace", "{persons}");
    assert_eq!(ada["job_title"], "Countess");
    assert_eq!(ada["visible_to"], "entire_company");
    let (_, status) = admin(&app, "GET", &format!("/api/v1/connections/{id}/status")).await;
    assert_eq!(status["data"]["figures"]["total_in_sync"], 1, "{status}");

    // A refresh token the provider does not accept: the run fails and the connection needs
    // re-authorization, with its fix.
    let (s, v) = call(
        &app,
        "PUT",
        &format!("/api/v1/connections/{id}/credentials"),
        ADMIN,
        Some(&json!({"refresh_token": "1//unknown"}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = admin(
        &app,
        "POST",
        &format!("/api/v1/connections/{id}/refresh?wait=true"),
    )
    .await;
    assert_eq!(v["data"]["run"]["state"], "failed", "{v}");
    let (_, status) = admin(&app, "GET", &format!("/api/v1/connections/{id}/status")).await;
    assert_eq!(
        status["data"]["connection"]["state"], "needs_reauthorization",
        "{status}"
    );
    assert!(
        status["data"]["needs_reauthorization"]["fix"]
            .as_str()
            .unwrap()
            .contains("refresh_token"),
        "{status}"
    );
}

// ---- connection create: CardDAV discovery, then Exchange Autodiscover, for unknown domains ----

#[path = "fakes/ews.rs"]
mod ews_fake;
mod support;

use cardbridge::providers::carddav::discovery::{SrvRecord, SrvResolver};

/// DNS for the test domain: `_carddav._tcp` points at `127.0.0.1:port`, with TXT `path=`.
struct LoopbackDns {
    port: u16,
    path: &'static str,
}

#[async_trait::async_trait]
impl SrvResolver for LoopbackDns {
    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, String> {
        Ok(if name.starts_with("_carddav._tcp.") {
            vec![SrvRecord {
                priority: 0,
                weight: 0,
                port: self.port,
                target: "127.0.0.1".into(),
            }]
        } else {
            Vec::new()
        })
    }
    async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        Ok(if name.starts_with("_carddav._tcp.") {
            vec![format!("path={}", self.path)]
        } else {
            Vec::new()
        })
    }
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The service with the default wiring, private networks allowed (everything is loopback),
/// this DNS and this Autodiscover origin.
async fn discovering_app(dns: LoopbackDns, autodiscover: &str) -> axum::Router {
    let wiring = WiringConfig {
        resolver: Some(Arc::new(dns)),
        autodiscover_origin: Some(autodiscover.parse().unwrap()),
        ..WiringConfig::default()
    };
    let state = ServiceBuilder::new(Arc::new(MapStore::default()))
        .wiring(wiring)
        .allow_private_networks(true)
        .start()
        .await
        .unwrap();
    ensure_admin(&state.core.crm, "admin", Some("adminpass1".into()))
        .await
        .unwrap();
    app(state, None)
}

async fn create(app: &axum::Router, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (s, v) = call(
        app,
        "POST",
        "/api/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    (s.as_u16(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_domain_without_carddav_is_found_by_exchange_autodiscover() {
    let fake = ews_fake::FakeEws::start("jane@corp.example", "pw").await;
    // CardDAV discovery finds nothing: its SRV target does not answer.
    let app = discovering_app(
        LoopbackDns {
            port: dead_port(),
            path: "/",
        },
        &fake.origin,
    )
    .await;
    let (s, v) = create(
        &app,
        json!({"email": "jane@corp.example", "password": "pw"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["provider"], "ews", "{v}");
    assert_eq!(v["data"]["server_url"], fake.ews_url.as_str(), "{v}");
    let asked: Vec<String> = fake.requests().iter().map(|r| r.op.clone()).collect();
    assert_eq!(asked, ["GetUserSettings"], "SOAP Autodiscover answered");
    // The connection works: its folders come from the discovered EWS URL.
    let id = v["data"]["id"].as_u64().unwrap();
    let (s, v) = admin(
        &app,
        "GET",
        &format!("/api/v1/connections/{id}/sync-groups"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["name"], "Contacts", "{v}");

    // A wrong password: Autodiscover's 401 is a 422 that says the credentials were refused.
    let (s, v) = create(
        &app,
        json!({"email": "jane@corp.example", "password": "nope"}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("rejected the credentials"),
        "{v}"
    );
    assert!(
        v["error_info"].as_str().unwrap().contains("password"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_domain_with_nothing_found_is_a_422_naming_both_tries() {
    let dead = format!("http://127.0.0.1:{}/", dead_port());
    let app = discovering_app(
        LoopbackDns {
            port: dead_port(),
            path: "/",
        },
        &dead,
    )
    .await;
    let (s, v) = create(
        &app,
        json!({"email": "ann@nowhere.example", "password": "pw"}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("CardDAV discovery"), "{v}");
    assert!(error.contains("Exchange Autodiscover"), "{v}");
    assert!(error.contains("ann@nowhere.example"), "{v}");
    let fix = v["error_info"].as_str().unwrap();
    assert!(fix.contains("server_url") && fix.contains("`ews`"), "{v}");
    // Nothing was created.
    let (_, v) = admin(&app, "GET", "/api/v1/connections").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_domain_with_carddav_is_found_by_rfc6764_discovery() {
    let radicale = support::Radicale::start();
    // Autodiscover must not be needed: its origin does not answer.
    let dead = format!("http://127.0.0.1:{}/", dead_port());
    let app = discovering_app(
        LoopbackDns {
            port: radicale.port,
            path: "/",
        },
        &dead,
    )
    .await;
    let (s, v) = create(
        &app,
        json!({"email": "alice@corp.example", "username": radicale.user, "password": radicale.password}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["provider"], "carddav", "{v}");
    assert_eq!(
        v["data"]["server_url"],
        format!("http://127.0.0.1:{}/{}/", radicale.port, radicale.user),
        "the principal: {v}"
    );
    // A wrong password at the CardDAV server found: 422, not a fall-through to Exchange.
    let (s, v) = create(
        &app,
        json!({"email": "alice@corp.example", "username": radicale.user, "password": "wrong"}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("carddav"), "{v}");
}
