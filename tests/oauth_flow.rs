//! The OAuth 2 authorization-code flow with PKCE on our server
//! (`POST /api/v1/connections/{id}/oauth/start`, `GET /oauth/callback`) against the fake Google
//! authorization and token endpoints (tests/fakes/google.rs, which checks the S256 challenge
//! per RFC 7636 §4.6): a connection that needs re-authorization is authorized again and syncs
//! with the new refresh token; unknown, expired and reused states, a wrong verifier, another
//! user's connection, non-OAuth providers and a denied consent are refused with clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
#[path = "fakes/google.rs"]
mod google_fake;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use api_support::{call, Auth, MapStore};
use axum::body::Body;
use axum::http::Request;
use cardbridge::config::{OAuthApp, OAuthSection};
use cardbridge::providers::http::NetworkPolicy;
use cardbridge::providers::oauth::OAuthEndpoints;
use cardbridge::scheduler::SchedulerConfig;
use cardbridge::server::api::oauth::{PendingState, SPACE_OAUTH_STATES};
use cardbridge::server::api::ApiState;
use cardbridge::service::wiring::WiringConfig;
use cardbridge::service::{app, ensure_admin, ServiceBuilder};
use cardbridge::store::Batch;
use google_fake::FakeGoogle;
use serde_json::{json, Value};
use tower::ServiceExt as _;

const ADMIN: Auth = Auth::Basic("admin", "adminpass1");
const BOB: Auth = Auth::Basic("bob", "bobpass123");
const REFRESH: &str = "1//fake-refresh-initial";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

struct Env {
    app: axum::Router,
    state: ApiState,
    fake: FakeGoogle,
    http: reqwest::Client,
}

async fn env() -> Env {
    let fake = FakeGoogle::start().await;
    fake.add_refresh_token(REFRESH);
    fake.put_person(
        "people/c900",
        json!({
            "resourceName": "people/c900",
            "names": [{"givenName": "Ada", "familyName": "Lovelace", "displayName": "Ada Lovelace"}],
            "emailAddresses": [{"value": "ada@example.com", "type": "work"}],
            "memberships": [{"contactGroupMembership": {"contactGroupId": "myContacts",
                "contactGroupResourceName": "contactGroups/myContacts"}}]
        }),
    );
    let wiring = WiringConfig {
        oauth: OAuthSection {
            google: Some(OAuthApp {
                client_id: "client-id".into(),
                client_secret: Some("s3cret".into()),
                redirect_uri: REDIRECT.into(),
                tenant: None,
            }),
            microsoft: Some(OAuthApp {
                client_id: "ms-client".into(),
                client_secret: None,
                redirect_uri: REDIRECT.into(),
                tenant: Some("consumers".into()),
            }),
        },
        google_api: Some(fake.base_url.parse().unwrap()),
        google_endpoints: Some(OAuthEndpoints {
            authorize_url: fake.authorize_url().parse().unwrap(),
            token_url: fake.token_url().parse().unwrap(),
        }),
        microsoft_authority: Some(fake.base_url.clone()),
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
    let app = app(state.clone(), None);
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/admin/users",
        ADMIN,
        Some(&json!({"login": "bob", "name": "bob", "password": "bobpass123"}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env {
        app,
        state,
        fake,
        http,
    }
}

async fn create(env: &Env, body: Value) -> u64 {
    let (s, v) = call(
        &env.app,
        "POST",
        "/api/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["data"]["id"].as_u64().unwrap()
}

/// `oauth/start` as the admin: the authorize URL's query.
async fn start(env: &Env, id: u64) -> (String, HashMap<String, String>) {
    let (s, v) = call(
        &env.app,
        "POST",
        &format!("/api/v1/connections/{id}/oauth/start"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let url = v["data"]["authorize_url"].as_str().unwrap().to_string();
    let q = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    (url, q)
}

/// The browser at the fake's consent page: our callback path and query it redirects to.
async fn consent(env: &Env, authorize_url: &str) -> String {
    let resp = env.http.get(authorize_url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(loc.path(), "/oauth/callback");
    format!("{}?{}", loc.path(), loc.query().unwrap())
}

/// `GET` on our router without credentials: status, `Location`, body.
async fn get(env: &Env, path: &str, accept: &str) -> (u16, Option<String>, String) {
    let req = Request::builder()
        .uri(path)
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    let resp = env.app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let loc = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, loc, String::from_utf8_lossy(&body).into_owned())
}

async fn admin(env: &Env, method: &str, path: &str) -> (u16, Value) {
    let (s, v) = call(&env.app, method, path, ADMIN, None).await;
    (s.as_u16(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_then_callback_reauthorizes_and_the_next_sync_uses_the_new_token() {
    let env = env().await;
    let id = create(
        &env,
        json!({"email": "ada@gmail.com", "refresh_token": REFRESH}),
    )
    .await;
    let (s, v) = call(
        &env.app,
        "PATCH",
        &format!("/api/v1/connections/{id}/settings"),
        ADMIN,
        Some(
            &json!({"sync_group": "contactGroups/all", "visibility": "entire_company"}).to_string(),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = admin(&env, "POST", &format!("/api/v1/connections/{id}/start")).await;
    assert_eq!(s, 202, "{v}");
    // Let the first run end (a refresh joins it), so the next one starts after the revocation.
    let (_, v) = admin(
        &env,
        "POST",
        &format!("/api/v1/connections/{id}/refresh?wait=true"),
    )
    .await;
    assert_eq!(v["data"]["run"]["state"], "succeeded", "{v}");
    // The grant is revoked: the run fails and the connection needs re-authorization.
    env.fake.revoke_refresh_token(REFRESH);
    let (_, v) = admin(
        &env,
        "POST",
        &format!("/api/v1/connections/{id}/refresh?wait=true"),
    )
    .await;
    assert_eq!(v["data"]["run"]["state"], "failed", "{v}");
    let (_, v) = admin(&env, "GET", &format!("/api/v1/connections/{id}")).await;
    assert_eq!(v["data"]["state"], "needs_reauthorization", "{v}");

    let (url, q) = start(&env, id).await;
    assert!(url.starts_with(&env.fake.authorize_url()), "{url}");
    assert_eq!(q["scope"], "https://www.googleapis.com/auth/contacts");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["client_id"], "client-id");
    assert!(q["state"].len() >= 32, "{url}");

    let callback = consent(&env, &url).await;
    // From here on: the code exchange, then the refreshes of the runs. A run may start as soon
    // as the connection is active again, before the refresh below (which then joins it).
    env.fake.clear_requests();
    let (s, loc, body) = get(&env, &callback, "text/html").await;
    assert_eq!(s, 303, "{body}");
    assert_eq!(loc.as_deref(), Some(format!("/connections/{id}").as_str()));
    let (_, v) = admin(&env, "GET", &format!("/api/v1/connections/{id}")).await;
    assert_eq!(v["data"]["state"], "active", "{v}");

    let (s, v) = admin(
        &env,
        "POST",
        &format!("/api/v1/connections/{id}/refresh?wait=true"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["run"]["state"], "succeeded", "{v}");
    let (_, persons) = call(&env.app, "GET", "/api/v1/persons", ADMIN, None).await;
    assert_eq!(persons["data"][0]["name"], "Ada Lovelace", "{persons}");
    // The old grant stays revoked (a refresh with it is a 400), so this run could only succeed
    // with the new token: the code exchange and at least one refresh, all accepted.
    let token = env.fake.requests_to("/token");
    assert!(
        token.len() >= 2 && token.iter().all(|r| r.status == 200),
        "the sync refreshed with the newly issued token: {:?}",
        token.iter().map(|r| r.status).collect::<Vec<_>>()
    );

    // The same callback again: the state was single-use.
    let (s, _, body) = get(&env, &callback, "application/json").await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("unknown or already used"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_expired_states_are_refused_and_change_nothing() {
    let env = env().await;
    let id = create(
        &env,
        json!({"email": "ada@gmail.com", "refresh_token": REFRESH}),
    )
    .await;
    let (_, before) = admin(&env, "GET", &format!("/api/v1/connections/{id}")).await;

    let (s, _, body) = get(&env, "/oauth/callback?code=4/x&state=bogus", "text/html").await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("<h1>Authorization failed</h1>"), "{body}");
    assert!(body.contains("unknown or already used"), "{body}");
    let (s, _, body) = get(&env, "/oauth/callback?code=4/x", "application/json").await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("missing"), "{body}");

    // An expired state (as the store would hold it ten minutes later).
    let core = &env.state.core;
    let pending = PendingState {
        connection_id: id,
        user_id: 1,
        verifier: "v".repeat(43),
        expires_at: 1,
    };
    let sealed = core
        .secrets
        .seal(&serde_json::to_vec(&pending).unwrap())
        .unwrap();
    let mut batch = Batch::new();
    batch.put(
        SPACE_OAUTH_STATES,
        b"old-state".to_vec(),
        sealed.into_bytes(),
    );
    core.store.commit(batch).await.unwrap();
    let (s, _, body) = get(
        &env,
        "/oauth/callback?code=4/x&state=old-state",
        "application/json",
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("expired"), "{body}");
    assert!(
        env.fake.requests_to("/token").is_empty(),
        "no code was exchanged"
    );
    let (_, after) = admin(&env, "GET", &format!("/api/v1/connections/{id}")).await;
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_verifier_is_refused_by_the_token_endpoint_with_a_clear_error() {
    let env = env().await;
    let id = create(
        &env,
        json!({"email": "ada@gmail.com", "refresh_token": REFRESH}),
    )
    .await;
    let (url_a, _) = start(&env, id).await;
    let (_, q_b) = start(&env, id).await;
    // The code was issued for A's challenge, but the callback names B's state (and verifier).
    let callback = consent(&env, &url_a).await;
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(callback.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    for (k, v) in &mut pairs {
        if k == "state" {
            *v = q_b["state"].clone();
        }
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let (_, before) = admin(&env, "GET", &format!("/api/v1/connections/{id}")).await;
    let (s, _, body) = get(
        &env,
        &format!("/oauth/callback?{query}"),
        "application/json",
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("refused the authorization code"), "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    assert_eq!(env.fake.requests_to("/token").len(), 1);
    let (_, after) = admin(&env, "GET", &format!("/api/v1/connections/{id}")).await;
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_consent_shows_a_clear_message_and_changes_nothing() {
    let env = env().await;
    let id = create(
        &env,
        json!({"email": "ada@gmail.com", "refresh_token": REFRESH}),
    )
    .await;
    let (_, q) = start(&env, id).await;
    let (_, before) = admin(&env, "GET", &format!("/api/v1/connections/{id}")).await;
    let (s, loc, body) = get(
        &env,
        &format!("/oauth/callback?error=access_denied&state={}", q["state"]),
        "text/html",
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(loc, None);
    assert!(body.contains("access was denied"), "{body}");
    assert!(body.contains("unchanged"), "{body}");
    assert!(env.fake.requests_to("/token").is_empty());
    let (_, after) = admin(&env, "GET", &format!("/api/v1/connections/{id}")).await;
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_for_the_owner_and_oauth_providers_only() {
    let env = env().await;
    let id = create(
        &env,
        json!({"email": "ada@gmail.com", "refresh_token": REFRESH}),
    )
    .await;
    // Another user's connection is not found; no state is created for it.
    let (s, v) = call(
        &env.app,
        "POST",
        &format!("/api/v1/connections/{id}/oauth/start"),
        BOB,
        None,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let states =
        cardbridge::store::scan_all(env.state.core.store.as_ref(), SPACE_OAUTH_STATES, b"")
            .await
            .unwrap();
    assert!(states.is_empty());
    // Without authentication: 401.
    let (s, _) = call(
        &env.app,
        "POST",
        &format!("/api/v1/connections/{id}/oauth/start"),
        Auth::None,
        None,
    )
    .await;
    assert_eq!(s, 401);

    // A CardDAV connection has no OAuth: 422 saying why.
    let dav = create(
        &env,
        json!({"email": "ann@example.com", "provider": "carddav", "password": "pw"}),
    )
    .await;
    let (s, v) = admin(
        &env,
        "POST",
        &format!("/api/v1/connections/{dav}/oauth/start"),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("only Google and Microsoft Graph"),
        "{v}"
    );

    // Microsoft Graph: its authority, scopes and no Google-only parameters.
    let ms = create(
        &env,
        json!({"email": "ann@outlook.com", "refresh_token": "M.fake"}),
    )
    .await;
    let (url, q) = start(&env, ms).await;
    assert!(
        url.starts_with(&format!(
            "{}consumers/oauth2/v2.0/authorize?",
            env.fake.base_url
        )),
        "{url}"
    );
    assert_eq!(q["scope"], "Contacts.ReadWrite offline_access");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "ms-client");
    assert!(
        !q.contains_key("access_type") && !q.contains_key("prompt"),
        "{url}"
    );
}
