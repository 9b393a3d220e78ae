//! The REST API end to end over the in-process router: every endpoint, including the
//! refusals (a visibility the plan does not offer, another user's connection or person,
//! malformed JSON, missing auth), with a fake provider and a scripted sync runner; and a
//! run's live progress, with the real engine over a provider that stops between pages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;
mod sync_support;

use std::sync::Arc;

use api_support::{call, Auth, FakeConnector, MapStore, ScriptedRunner};
use axum::http::StatusCode;
use cardbridge::providers::ProviderError;
use cardbridge::scheduler::SchedulerConfig;
use cardbridge::service::connections::RunSummary;
use cardbridge::service::{app, ensure_admin, ServiceBuilder};
use serde_json::{json, Value};

const ADMIN: Auth = Auth::Basic("admin", "adminpass1");
const ANN: Auth = Auth::Basic("ann", "annpass123");
const BOB: Auth = Auth::Basic("bob", "bobpass123");

struct Env {
    app: axum::Router,
    runner: Arc<ScriptedRunner>,
}

async fn env_with(runner: ScriptedRunner) -> Env {
    let runner = Arc::new(runner);
    let state = ServiceBuilder::new(Arc::new(MapStore::default()))
        .connector(Arc::new(FakeConnector))
        .runner(runner.clone())
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
    for (login, pw) in [("ann", "annpass123"), ("bob", "bobpass123")] {
        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/admin/users",
            ADMIN,
            Some(&json!({"login": login, "name": login, "password": pw}).to_string()),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    Env { app, runner }
}

async fn env() -> Env {
    env_with(ScriptedRunner::default()).await
}

fn assert_error(v: &Value) {
    assert_eq!(v["success"], false, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|s| !s.is_empty()),
        "error says what went wrong: {v}"
    );
    assert!(
        v["error_info"].as_str().is_some_and(|s| !s.is_empty()),
        "error_info says what to fix: {v}"
    );
}

async fn create_person(app: &axum::Router, auth: Auth<'_>, body: Value) -> Value {
    let (s, v) = call(
        app,
        "POST",
        "/api/v1/persons",
        auth,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["data"].clone()
}

#[tokio::test]
async fn auth_is_required_and_wrong_credentials_are_refused() {
    let e = env().await;
    let (s, v) = call(&e.app, "GET", "/api/v1/persons", Auth::None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&v);
    let (s, _) = call(
        &e.app,
        "GET",
        "/api/v1/persons",
        Auth::Basic("ann", "nope"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(
        &e.app,
        "GET",
        "/api/v1/persons",
        Auth::Bearer("cbt_2_xxx"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = call(&e.app, "GET", "/api/v1/me", ANN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["login"], "ann");
    assert!(v["data"].get("password_hash").is_none());
}

#[tokio::test]
async fn app_password_works_as_basic_and_bearer_and_revokes() {
    let e = env().await;
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/me/app-passwords",
        ANN,
        Some(r#"{"label":"iPhone"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["data"]["password"].as_str().unwrap().to_string();
    let token = v["data"]["bearer_token"].as_str().unwrap().to_string();
    let pid = v["data"]["id"].as_str().unwrap().to_string();
    let (s, v) = call(&e.app, "GET", "/api/v1/me", Auth::Bearer(&token), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["login"], "ann");
    let (s, _) = call(
        &e.app,
        "GET",
        "/api/v1/me",
        Auth::Basic("ann", &secret),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&e.app, "GET", "/api/v1/me/app-passwords", ANN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert!(v["data"][0].get("hash").is_none(), "hashes never leave");
    let (s, _) = call(
        &e.app,
        "DELETE",
        &format!("/api/v1/me/app-passwords/{pid}"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&e.app, "GET", "/api/v1/me", Auth::Bearer(&token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked token is refused");
    let (s, v) = call(
        &e.app,
        "DELETE",
        &format!("/api/v1/me/app-passwords/{pid}"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v);
}

#[tokio::test]
async fn persons_crud_with_pipedrive_envelope() {
    let e = env().await;
    let p = create_person(
        &e.app,
        ANN,
        json!({"first_name":"Ada","last_name":"Lovelace",
               "email":[{"value":"ada@example.com","label":"work","primary":true}]}),
    )
    .await;
    assert_eq!(p["name"], "Ada Lovelace");
    assert_eq!(p["visible_to"], "owner_followers", "silver's first option");
    let id = p["id"].as_u64().unwrap();
    let (s, v) = call(&e.app, "GET", &format!("/api/v1/persons/{id}"), ANN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["emails"][0]["value"], "ada@example.com");

    let (s, v) = call(
        &e.app,
        "PATCH",
        &format!("/api/v1/persons/{id}"),
        ANN,
        Some(r#"{"job_title":"Analyst"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["job_title"], "Analyst");
    assert_eq!(v["data"]["name"], "Ada Lovelace", "absent fields stay");
    let version = v["data"]["version"].as_u64().unwrap();

    // A stale version is refused with 412 and a fix.
    let (s, v) = call(
        &e.app,
        "PATCH",
        &format!("/api/v1/persons/{id}"),
        ANN,
        Some(&json!({"notes":"x","version": version - 1}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{v}");
    assert_error(&v);

    let (s, _) = call(
        &e.app,
        "DELETE",
        &format!("/api/v1/persons/{id}"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&e.app, "GET", &format!("/api/v1/persons/{id}"), ANN, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v);
}

#[tokio::test]
async fn persons_refusals() {
    let e = env().await;
    // Malformed JSON → 400 saying what to fix.
    let (s, v) = call(&e.app, "POST", "/api/v1/persons", ANN, Some("{\"name\": ")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v);
    // Wrong shape → 422.
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/persons",
        ANN,
        Some(r#"{"name": 5}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v);
    // No name.
    let (s, v) = call(&e.app, "POST", "/api/v1/persons", ANN, Some("{}")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v);
    // A visibility the plan (silver) does not offer → 422 listing the allowed ones.
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/persons",
        ANN,
        Some(r#"{"name":"X","visible_to":"owner_only"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("owner_followers, entire_company"),
        "{v}"
    );
    // Another owner is for admins only.
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/persons",
        ANN,
        Some(r#"{"name":"X","owner_id":1}"#),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_error(&v);
    // Bad paging.
    let (s, v) = call(&e.app, "GET", "/api/v1/persons?limit=0", ANN, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v);
    let (s, _) = call(&e.app, "GET", "/api/v1/persons?cursor=zz", ANN, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Unknown endpoint.
    let (s, v) = call(&e.app, "GET", "/api/v1/nothing", ANN, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v);
}

#[tokio::test]
async fn visibility_applies_to_every_person_call_and_paging() {
    let e = env().await;
    let private = create_person(&e.app, ANN, json!({"name":"Ann's secret"})).await;
    let pid = private["id"].as_u64().unwrap();
    let mut shared = vec![];
    for i in 0..5 {
        let p = create_person(
            &e.app,
            ANN,
            json!({"name": format!("Shared {i}"), "visible_to": "entire_company"}),
        )
        .await;
        shared.push(p["id"].as_u64().unwrap());
        // Interleave invisible ones so pages must skip them.
        create_person(&e.app, ANN, json!({"name": format!("Hidden {i}")})).await;
    }
    // Bob sees neither the private person nor may he change or delete it: 404 as if absent.
    for (m, body) in [
        ("GET", None),
        ("PATCH", Some(r#"{"name":"pwned"}"#)),
        ("DELETE", None),
    ] {
        let (s, v) = call(&e.app, m, &format!("/api/v1/persons/{pid}"), BOB, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m}");
        assert_error(&v);
    }
    // Paging two at a time returns exactly the visible ones, in order.
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/persons?limit=2&cursor={c}"),
            None => "/api/v1/persons?limit=2".into(),
        };
        let (s, v) = call(&e.app, "GET", &path, BOB, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for p in v["data"].as_array().unwrap() {
            seen.push(p["id"].as_u64().unwrap());
        }
        match v["additional_data"]["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, shared);
    // Bob may edit an entire_company person; the admin sees everything.
    let (s, _) = call(
        &e.app,
        "PATCH",
        &format!("/api/v1/persons/{}", shared[0]),
        BOB,
        Some(r#"{"notes":"met at the fair"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&e.app, "GET", "/api/v1/persons?limit=500", ADMIN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 11);
}

#[tokio::test]
async fn admin_users_roles_and_company() {
    let e = env().await;
    // Non-admins are refused with 403.
    for (m, p) in [
        ("GET", "/api/v1/admin/users"),
        ("GET", "/api/v1/admin/roles"),
        ("PUT", "/api/v1/admin/company"),
    ] {
        let (s, v) = call(&e.app, m, p, ANN, Some("{}")).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {p}");
        assert_error(&v);
    }
    let (s, v) = call(&e.app, "GET", "/api/v1/admin/users", ADMIN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    // Duplicate login → 409; short password → 422.
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/admin/users",
        ADMIN,
        Some(r#"{"login":"ann","password":"whatever1"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v);
    let (s, _) = call(
        &e.app,
        "POST",
        "/api/v1/admin/users",
        ADMIN,
        Some(r#"{"login":"cy","password":"short"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Roles tree: lead > sales; a cycle is refused.
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/admin/roles",
        ADMIN,
        Some(r#"{"name":"lead"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let lead = v["data"]["id"].as_u64().unwrap();
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/admin/roles",
        ADMIN,
        Some(&json!({"name":"sales","parent_id":lead}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let sales = v["data"]["id"].as_u64().unwrap();
    let (s, v) = call(
        &e.app,
        "PATCH",
        &format!("/api/v1/admin/roles/{lead}"),
        ADMIN,
        Some(&json!({"parent_id":sales}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_error(&v);
    // Put ann and bob in roles; a role in use cannot be deleted.
    let (s, v) = call(
        &e.app,
        "PATCH",
        "/api/v1/admin/users/2",
        ADMIN,
        Some(&json!({"role_id": sales}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["role_id"], sales);
    let (s, _) = call(
        &e.app,
        "DELETE",
        &format!("/api/v1/admin/roles/{sales}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = call(&e.app, "GET", "/api/v1/admin/roles", ADMIN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    // Company plan: unknown plan 422 listing the plans; platinum changes the options.
    let (s, v) = call(
        &e.app,
        "PUT",
        "/api/v1/admin/company",
        ADMIN,
        Some(r#"{"plan":"bronze"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error_info"].as_str().unwrap().contains("platinum"));
    let (s, v) = call(
        &e.app,
        "PUT",
        "/api/v1/admin/company",
        ADMIN,
        Some(r#"{"name":"Acme","plan":"platinum"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&e.app, "GET", "/api/v1/company", ANN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["plan"], "platinum");
    assert_eq!(
        v["data"]["visibility_options"],
        json!([
            "owner_only",
            "owners_role",
            "owners_role_and_below",
            "entire_company"
        ])
    );

    // Passwords: admin resets bob's; the old one stops working.
    let (s, _) = call(
        &e.app,
        "PUT",
        "/api/v1/admin/users/3/password",
        ADMIN,
        Some(r#"{"password":"newbobpass"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&e.app, "GET", "/api/v1/me", BOB, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(
        &e.app,
        "GET",
        "/api/v1/me",
        Auth::Basic("bob", "newbobpass"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Admin app passwords for another user; delete a user; not yourself.
    let (s, _) = call(
        &e.app,
        "POST",
        "/api/v1/admin/users/3/app-passwords",
        ADMIN,
        Some(r#"{"label":"laptop"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = call(&e.app, "DELETE", "/api/v1/admin/users/1", ADMIN, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v);
    let (s, _) = call(&e.app, "DELETE", "/api/v1/admin/users/3", ADMIN, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&e.app, "GET", "/api/v1/admin/users/3", ADMIN, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn new_connection(app: &axum::Router, auth: Auth<'_>) -> u64 {
    let (s, v) = call(
        app,
        "POST",
        "/api/v1/connections",
        auth,
        Some(r#"{"email":"ann@example.org","server_url":"https://93.184.216.34/dav/","password":"right"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["data"]["id"].as_u64().unwrap()
}

#[tokio::test]
async fn connection_create_picks_provider_by_domain_and_refuses_bad_input() {
    let e = env().await;
    for (email, provider, creds) in [
        ("a@gmail.com", "google", json!({"refresh_token":"rt"})),
        ("a@icloud.com", "icloud", json!({"password":"app-pw"})),
        ("a@me.com", "icloud", json!({"password":"app-pw"})),
        ("a@mac.com", "icloud", json!({"password":"app-pw"})),
        ("a@outlook.com", "graph", json!({"refresh_token":"rt"})),
        ("a@hotmail.com", "graph", json!({"refresh_token":"rt"})),
        ("a@live.com", "graph", json!({"refresh_token":"rt"})),
        ("a@example.org", "carddav", json!({"password":"pw"})),
    ] {
        let mut body = creds.clone();
        body["email"] = json!(email);
        let (s, v) = call(
            &e.app,
            "POST",
            "/api/v1/connections",
            ANN,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{email}: {v}");
        assert_eq!(v["data"]["provider"], provider, "{email}");
        assert_eq!(v["data"]["state"], "setup");
        assert_eq!(v["data"]["has_credentials"], true);
        assert!(v["data"].get("sealed_credentials").is_none());
        assert!(!v.to_string().contains("app-pw"), "no secret in answers");
    }
    // Explicit EWS for an unknown domain.
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/connections",
        ANN,
        Some(r#"{"provider":"ews","email":"a@corp.example","password":"pw"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["data"]["provider"], "ews");
    // Refusals: known domain vs another provider, bad email, missing secret, private URL.
    for (body, what) in [
        (
            r#"{"provider":"carddav","email":"a@gmail.com","password":"x"}"#,
            "google",
        ),
        (r#"{"email":"not-an-email","password":"x"}"#, "email"),
        (r#"{"email":"a@example.org"}"#, "password"),
        (r#"{"email":"a@gmail.com"}"#, "refresh_token"),
        (
            r#"{"email":"a@example.org","password":"x","server_url":"http://127.0.0.1:5232/"}"#,
            "allow_private_networks",
        ),
        (
            r#"{"email":"a@example.org","password":"x","server_url":"http://169.254.169.254/"}"#,
            "allow_private_networks",
        ),
        (
            r#"{"email":"a@example.org","password":"x","server_url":"ftp://x/"}"#,
            "scheme",
        ),
    ] {
        let (s, v) = call(&e.app, "POST", "/api/v1/connections", ANN, Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_error(&v);
        assert!(v.to_string().contains(what), "{body}: {v}");
    }
    let (s, v) = call(&e.app, "POST", "/api/v1/connections", ANN, Some("{oops")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v);
    let (s, v) = call(&e.app, "GET", "/api/v1/connections", ANN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 9);
    let (_, v) = call(&e.app, "GET", "/api/v1/connections", BOB, None).await;
    assert_eq!(
        v["data"].as_array().unwrap().len(),
        0,
        "bob sees none of ann's"
    );
    let (_, v) = call(&e.app, "GET", "/api/v1/connections?all=true", ADMIN, None).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 9);
}

#[tokio::test]
async fn another_users_connection_is_404_on_every_endpoint() {
    let e = env().await;
    let id = new_connection(&e.app, ANN).await;
    for (m, p, body) in [
        ("GET", "", None),
        ("GET", "/sync-groups", None),
        ("GET", "/settings", None),
        ("PATCH", "/settings", Some(r#"{"direction":"two_way"}"#)),
        ("PUT", "/credentials", Some(r#"{"password":"x"}"#)),
        ("GET", "/mapping-preview", None),
        ("POST", "/start", None),
        ("POST", "/refresh", None),
        ("GET", "/runs", None),
        ("GET", "/runs/1", None),
        ("GET", "/status", None),
        ("GET", "/conflicts", None),
        ("DELETE", "?persons=remove", None),
    ] {
        let (s, v) = call(
            &e.app,
            m,
            &format!("/api/v1/connections/{id}{p}"),
            BOB,
            body,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {p}: {v}");
        assert_error(&v);
    }
    assert!(e.runner.forgotten.lock().unwrap().is_empty());
    // The admin may look.
    let (s, _) = call(
        &e.app,
        "GET",
        &format!("/api/v1/connections/{id}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_article_flow_groups_settings_preview_start_refresh_status() {
    let e = env().await;
    let id = new_connection(&e.app, ANN).await;
    let base = format!("/api/v1/connections/{id}");

    // Refresh before Start Syncing is refused with the fix.
    let (s, v) = call(&e.app, "POST", &format!("{base}/refresh"), ANN, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(v["error_info"].as_str().unwrap().contains("Start Syncing"));
    // Start without a group → 422.
    let (s, v) = call(&e.app, "POST", &format!("{base}/start"), ANN, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v);
    // Preview without a group → 422.
    let (s, _) = call(&e.app, "GET", &format!("{base}/mapping-preview"), ANN, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // The dropdown: the account's groups.
    let (s, v) = call(&e.app, "GET", &format!("{base}/sync-groups"), ANN, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"][0]["id"], "/book/");
    assert_eq!(v["data"][1]["writable"], false);

    // Settings: options listed; refusals.
    let (s, v) = call(&e.app, "GET", &format!("{base}/settings"), ANN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["data"]["options"]["visibility"],
        json!(["owner_followers", "entire_company"])
    );
    let (s, v) = call(
        &e.app,
        "PATCH",
        &format!("{base}/settings"),
        ANN,
        Some(r#"{"visibility":"owners_role"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v);
    assert!(v["error"].as_str().unwrap().contains("silver"), "{v}");
    assert!(
        v["error_info"]
            .as_str()
            .unwrap()
            .contains("owner_followers, entire_company"),
        "{v}"
    );
    let (s, v) = call(
        &e.app,
        "PATCH",
        &format!("{base}/settings"),
        ANN,
        Some(r#"{"visibility":"nobody"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error_info"].as_str().unwrap().contains("entire_company"));
    let (s, v) = call(
        &e.app,
        "PATCH",
        &format!("{base}/settings"),
        ANN,
        Some(r#"{"sync_group":"/nope/"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error_info"].as_str().unwrap().contains("/book/"), "{v}");
    let (s, v) = call(
        &e.app,
        "PATCH",
        &format!("{base}/settings"),
        ANN,
        Some(r#"{"sync_group":"/ro/","direction":"two_way"}"#),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "two-way on a read-only group"
    );
    assert_error(&v);
    let (s, v) = call(
        &e.app,
        "PATCH",
        &format!("{base}/settings"),
        ANN,
        Some(r#"{"sync_group":"/book/","direction":"two_way","visibility":"entire_company"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["sync_group"]["name"], "Contacts");
    assert_eq!(v["data"]["direction"], "two_way");

    // Field-mapping preview: the table and the sample cards.
    let (s, v) = call(&e.app, "GET", &format!("{base}/mapping-preview"), ANN, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows = v["data"]["rows"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["crm_field"] == "emails" && r["provider_field"] == "EMAIL"));
    assert_eq!(v["data"]["samples"][0]["fields"]["name"], "Ada Lovelace");
    assert_eq!(
        v["data"]["samples"][1]["fields"]["emails"][0]["value"],
        "bob@example.com"
    );

    // Start Syncing → 202 with a run id; wait for it through refresh?wait=true.
    let (s, v) = call(&e.app, "POST", &format!("{base}/start"), ANN, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let first = v["data"]["run_id"].as_u64().unwrap();
    let (s, v) = call(
        &e.app,
        "POST",
        &format!("{base}/refresh?wait=true"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let waited = v["data"]["run_id"].as_u64().unwrap();
    assert!(waited >= first);
    assert_eq!(v["data"]["outcome"]["outcome"], "succeeded");
    assert_eq!(v["data"]["run"]["state"], "succeeded");

    // A plain refresh answers 202 at once.
    let (s, v) = call(&e.app, "POST", &format!("{base}/refresh"), ANN, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let rid = v["data"]["run_id"].as_u64().unwrap();
    assert_eq!(
        v["data"]["status_url"],
        format!("/api/v1/connections/{id}/runs/{rid}")
    );
    // Poll the run until it ends.
    let mut state = String::new();
    for _ in 0..200 {
        let (s, v) = call(&e.app, "GET", &format!("{base}/runs/{rid}"), ANN, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        state = v["data"]["state"].as_str().unwrap().to_string();
        if state != "queued" && state != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(state, "succeeded");
    let (s, _) = call(&e.app, "GET", &format!("{base}/runs/999999"), ANN, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Status: figures of issue #4.
    let (s, v) = call(&e.app, "GET", &format!("{base}/status"), ANN, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let f = &v["data"]["figures"];
    assert_eq!(f["total_in_sync"], 2);
    assert_eq!(f["last_run"]["added"], 2);
    // Start's run (which ?wait=true may have joined) and the plain refresh: at least two runs
    // of 2 additions each, all within 7 days.
    let (_, runs) = call(&e.app, "GET", &format!("{base}/runs"), ANN, None).await;
    let n = runs["data"].as_array().unwrap().len() as u64;
    assert!(n >= 2, "{runs}");
    assert_eq!(f["last_7_days"]["added"].as_u64().unwrap(), 2 * n, "{f}");
    assert_eq!(f["last_30_days"]["added"], f["last_7_days"]["added"]);
    assert_eq!(v["data"]["connection"]["state"], "active");
    assert!(v["data"]["needs_reauthorization"].is_null());
    assert!(v["data"]["schedule"]["next_run_unix_ms"].as_u64().is_some());
}

#[tokio::test]
async fn conflicts_errors_and_reauthorization_are_reported_with_the_fix() {
    let runner = ScriptedRunner::default();
    runner.script.lock().unwrap().extend([
        Ok(RunSummary {
            updated: 1,
            errors: 1,
            total_in_sync: 5,
            error_messages: vec!["card x.vcf: unreadable".into()],
            conflicts: vec![cardbridge::service::connections::ConflictRecord {
                at: String::new(),
                run_id: 0,
                person_id: Some(3),
                remote_id: Some("x.vcf".into()),
                field: "job_title".into(),
                crm_value: "CTO".into(),
                provider_value: "CEO".into(),
                winner: "provider".into(),
            }],
            ..RunSummary::default()
        }),
        Err(ProviderError::CredentialsRejected),
    ]);
    let e = env_with(runner).await;
    let id = new_connection(&e.app, ANN).await;
    let base = format!("/api/v1/connections/{id}");
    let (s, _) = call(
        &e.app,
        "PATCH",
        &format!("{base}/settings"),
        ANN,
        Some(r#"{"sync_group":"/book/"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    call(&e.app, "POST", &format!("{base}/start"), ANN, None).await;
    let (_, v) = call(
        &e.app,
        "POST",
        &format!("{base}/refresh?wait=true"),
        ANN,
        None,
    )
    .await;
    // The start's run may or may not have been joined; make sure both scripted runs ran.
    if e.runner.runs.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        call(
            &e.app,
            "POST",
            &format!("{base}/refresh?wait=true"),
            ANN,
            None,
        )
        .await;
    }
    let _ = v;
    let (s, v) = call(&e.app, "GET", &format!("{base}/conflicts"), ANN, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"][0]["field"], "job_title");
    assert_eq!(v["data"][0]["winner"], "provider");
    assert!(v["data"][0]["run_id"].as_u64().unwrap() > 0);
    let (_, v) = call(&e.app, "GET", &format!("{base}/status"), ANN, None).await;
    let d = &v["data"];
    assert_eq!(d["connection"]["state"], "needs_reauthorization", "{d}");
    assert!(d["needs_reauthorization"]["fix"]
        .as_str()
        .unwrap()
        .contains(&format!("/api/v1/connections/{id}/credentials")));
    assert_eq!(
        d["schedule"]["parked"], true,
        "no retry loop on rejected credentials"
    );
    assert_eq!(
        d["figures"]["total_in_sync"], 5,
        "from the last successful run"
    );
    assert_eq!(d["figures"]["failed_runs_30_days"], 1);
    // The fix: new credentials un-park and reactivate it.
    let (s, v) = call(
        &e.app,
        "PUT",
        &format!("{base}/credentials"),
        ANN,
        Some(r#"{"password":"right"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["state"], "active");
    let (_, v) = call(&e.app, "GET", &format!("{base}/status"), ANN, None).await;
    assert_eq!(v["data"]["schedule"]["parked"], false);
}

#[tokio::test]
async fn provider_refusing_credentials_is_a_422_with_the_fix() {
    let e = env().await;
    let (s, v) = call(
        &e.app,
        "POST",
        "/api/v1/connections",
        ANN,
        Some(r#"{"email":"ann@example.org","password":"wrong"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = v["data"]["id"].as_u64().unwrap();
    let (s, v) = call(
        &e.app,
        "GET",
        &format!("/api/v1/connections/{id}/sync-groups"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error_info"].as_str().unwrap().contains("credentials"));
}

#[tokio::test]
async fn delete_connection_keeps_or_removes_persons_as_chosen() {
    let e = env().await;
    let id = new_connection(&e.app, ANN).await;
    let (s, v) = call(
        &e.app,
        "DELETE",
        &format!("/api/v1/connections/{id}"),
        ANN,
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the choice is required"
    );
    assert!(v["error_info"].as_str().unwrap().contains("persons=keep"));
    let (s, _) = call(
        &e.app,
        "DELETE",
        &format!("/api/v1/connections/{id}?persons=maybe"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = call(
        &e.app,
        "DELETE",
        &format!("/api/v1/connections/{id}?persons=remove"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["persons_removed"], 2);
    let id2 = new_connection(&e.app, ANN).await;
    let (s, v) = call(
        &e.app,
        "DELETE",
        &format!("/api/v1/connections/{id2}?persons=keep"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["persons_kept"], 2);
    assert_eq!(
        *e.runner.forgotten.lock().unwrap(),
        vec![(id, true), (id2, false)]
    );
    let (s, _) = call(
        &e.app,
        "GET",
        &format!("/api/v1/connections/{id}"),
        ANN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn healthz_and_metrics() {
    let e = env().await;
    let (s, v) = call(&e.app, "GET", "/healthz", Auth::None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, Value::String("ok\n".into()));
    let (s, v) = call(&e.app, "GET", "/metrics", Auth::None, None).await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().unwrap();
    assert!(text.contains("# TYPE cardbridge_sync_runs_total counter"));
    assert!(text.contains("cardbridge_scheduler_queue_depth 0"));
    // The user-creation calls of the setup were counted as API requests.
    let line = text
        .lines()
        .find(|l| l.starts_with("cardbridge_http_requests_total{area=\"api\"}"))
        .unwrap();
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2, "{line}");
}

#[tokio::test]
async fn dashboard_login_session_and_csrf() {
    let e = env().await;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;
    // Unauthenticated pages redirect to the login page.
    let r = e
        .app
        .clone()
        .oneshot(Request::get("/connections").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    let r = e
        .app
        .clone()
        .oneshot(
            Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("login=ann&password=annpass123"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly"));
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = |path: &str| {
        Request::get(path)
            .header("cookie", cookie.clone())
            .body(Body::empty())
            .unwrap()
    };
    let r = e.app.clone().oneshot(page("/connections")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = String::from_utf8(
        axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains("Add New Account"));
    let r = e
        .app
        .clone()
        .oneshot(page("/connections/new"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The session authenticates API reads; writes need X-Requested-With.
    let r = e.app.clone().oneshot(page("/api/v1/me")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let post = |csrf: bool| {
        let mut b = Request::post("/api/v1/persons")
            .header("cookie", cookie.clone())
            .header("content-type", "application/json");
        if csrf {
            b = b.header("x-requested-with", "cardbridge");
        }
        b.body(Body::from(r#"{"name":"Via page"}"#)).unwrap()
    };
    let r = e.app.clone().oneshot(post(false)).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = e.app.clone().oneshot(post(true)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Wrong password: 401 page, no cookie.
    let r = e
        .app
        .clone()
        .oneshot(
            Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("login=ann&password=nope"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    // A connection's pages render; another user's is 404.
    let id = new_connection(&e.app, ANN).await;
    let r = e
        .app
        .clone()
        .oneshot(page(&format!("/connections/{id}/settings")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = String::from_utf8(
        axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains("Start Syncing") && html.contains("owner_followers"));
    assert!(!html.contains("owners_role"), "only the plan's options");
    let r = e
        .app
        .clone()
        .oneshot(page(&format!("/connections/{id}")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = String::from_utf8(
        axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains("contacts in sync") && html.contains("Refresh"));
}

#[tokio::test]
async fn every_path_in_openapi_yaml_is_routed() {
    let e = env().await;
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml")).unwrap();
    let mut path = String::new();
    let mut checked = 0;
    for line in spec.lines() {
        if let Some(p) = line.strip_prefix("  /") {
            path = format!("/{}", p.trim_end_matches(':'));
            continue;
        }
        let method = line.trim().trim_end_matches(':');
        if !line.starts_with("    ") || line.starts_with("     ") {
            continue;
        }
        if !["get", "post", "put", "patch", "delete"].contains(&method) || path.is_empty() {
            continue;
        }
        let concrete = path
            .replace("{id}", "999")
            .replace("{pid}", "x")
            .replace("{run_id}", "1");
        let (s, v) = call(
            &e.app,
            &method.to_uppercase(),
            &format!("/api/v1{concrete}"),
            ADMIN,
            Some("{}"),
        )
        .await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(v["error"], "no such API endpoint", "{method} {path}");
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} operations found in the spec");
}

/// A provider that stops before the second page of each run: it says so on `reached`, then
/// waits for a permit on `release`. The test sees the run between its pages, deterministically.
struct GatedBook {
    inner: Arc<sync_support::FakeBook>,
    pulls: std::sync::atomic::AtomicUsize,
    reached: tokio::sync::mpsc::UnboundedSender<()>,
    release: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl cardbridge::providers::Provider for GatedBook {
    fn kind(&self) -> cardbridge::providers::ProviderKind {
        cardbridge::providers::ProviderKind::Carddav
    }
    async fn sync_groups(&self) -> Result<Vec<cardbridge::providers::SyncGroup>, ProviderError> {
        self.inner.sync_groups().await
    }
    async fn pull(
        &self,
        group: &str,
        cursor: Option<&str>,
    ) -> Result<cardbridge::providers::Page, ProviderError> {
        if self.pulls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.reached.send(()).unwrap();
            self.release.acquire().await.unwrap().forget();
        }
        self.inner.pull(group, cursor).await
    }
    async fn fetch(
        &self,
        group: &str,
        id: &str,
    ) -> Result<Option<cardbridge::providers::RemoteItem>, ProviderError> {
        self.inner.fetch(group, id).await
    }
    async fn create(
        &self,
        group: &str,
        card: &cardbridge::vcard::VCard,
        crm_id: &str,
    ) -> Result<cardbridge::providers::Written, ProviderError> {
        self.inner.create(group, card, crm_id).await
    }
    async fn update(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        card: &cardbridge::vcard::VCard,
    ) -> Result<cardbridge::providers::Written, ProviderError> {
        self.inner.update(group, id, etag, card).await
    }
    async fn delete(&self, group: &str, id: &str, etag: Option<&str>) -> Result<(), ProviderError> {
        self.inner.delete(group, id, etag).await
    }
}

/// Runs the real sync engine over a [`GatedBook`] with the service's progress hook.
struct EngineRunner {
    core: std::sync::OnceLock<(cardbridge::crm::Crm, Arc<dyn cardbridge::store::Store>)>,
    book: Arc<sync_support::FakeBook>,
    reached: tokio::sync::mpsc::UnboundedSender<()>,
    release: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl cardbridge::service::SyncRunner for EngineRunner {
    async fn run(
        &self,
        _: &cardbridge::service::connections::Connection,
        _: &cardbridge::service::Credentials,
        _: cardbridge::scheduler::RunId,
    ) -> Result<RunSummary, cardbridge::service::RunError> {
        Err(cardbridge::service::RunError::Local(
            "the service must call run_reporting".into(),
        ))
    }
    async fn run_reporting(
        &self,
        c: &cardbridge::service::connections::Connection,
        _: &cardbridge::service::Credentials,
        _: cardbridge::scheduler::RunId,
        progress: cardbridge::sync::execute::ProgressHook,
    ) -> Result<RunSummary, cardbridge::service::RunError> {
        let (crm, store) = self.core.get().unwrap();
        let sc = cardbridge::service::wiring::sync_connection(c)?;
        let book = GatedBook {
            inner: self.book.clone(),
            pulls: Default::default(),
            reached: self.reached.clone(),
            release: self.release.clone(),
        };
        let options = cardbridge::sync::execute::Options {
            progress: Some(progress),
            ..Default::default()
        };
        let s = cardbridge::sync::execute::run_with(&sc, &book, crm, store.as_ref(), &options)
            .await
            .map_err(cardbridge::service::RunError::from)?;
        Ok(cardbridge::service::wiring::service_summary(&s, 0))
    }
    async fn forget(
        &self,
        _: &cardbridge::service::connections::Connection,
        _: bool,
    ) -> Result<cardbridge::service::ForgetSummary, cardbridge::service::RunError> {
        Ok(Default::default())
    }
}

/// Waits until the gated run stands before its second page (the timeout only guards a hang).
async fn wait_for_gate(reached: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(60), reached.recv())
        .await
        .expect("the run reaches its second page")
        .unwrap();
}

/// Polls a run until it is no longer queued or running (the run itself is gated, not timed).
async fn finished_run(app: &axum::Router, url: &str) -> Value {
    for _ in 0..3000 {
        let (s, v) = call(app, "GET", url, ANN, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["data"]["state"] != "running" && v["data"]["state"] != "queued" {
            return v["data"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("run {url} did not end");
}

#[tokio::test]
async fn a_running_refresh_reports_live_counts_until_it_ends() {
    let book = sync_support::FakeBook::new(2);
    for (id, name) in [("a", "Ada Lovelace"), ("b", "Bob Byte"), ("c", "Cy Young")] {
        book.put(
            &format!("{id}.vcf"),
            sync_support::card(id, name, &[&format!("{id}@example.com")], &[]),
        );
    }
    let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let runner = Arc::new(EngineRunner {
        core: std::sync::OnceLock::new(),
        book: book.clone(),
        reached: reached_tx,
        release: release.clone(),
    });
    let state = ServiceBuilder::new(Arc::new(MapStore::default()))
        .connector(Arc::new(FakeConnector))
        .runner(runner.clone())
        .scheduler(SchedulerConfig {
            jitter: std::time::Duration::ZERO,
            ..SchedulerConfig::default()
        })
        .start()
        .await
        .unwrap();
    runner
        .core
        .set((state.core.crm.clone(), state.core.store.clone()))
        .ok()
        .unwrap();
    ensure_admin(&state.core.crm, "admin", Some("adminpass1".into()))
        .await
        .unwrap();
    let app = app(state, None);
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/admin/users",
        ADMIN,
        Some(&json!({"login": "ann", "name": "ann", "password": "annpass123"}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = new_connection(&app, ANN).await;
    let base = format!("/api/v1/connections/{id}");
    let (s, v) = call(
        &app,
        "PATCH",
        &format!("{base}/settings"),
        ANN,
        Some(r#"{"sync_group":"/book/","visibility":"entire_company"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Start Syncing: the first run (a full listing of 3 cards, 2 per page).
    let (s, v) = call(&app, "POST", &format!("{base}/start"), ANN, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let url = v["data"]["status_url"].as_str().unwrap().to_string();
    wait_for_gate(&mut reached).await;
    let (s, v) = call(&app, "GET", &url, ANN, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["state"], "running", "{v}");
    let p = &v["data"]["progress"];
    assert_eq!(
        (&p["pages"], &p["items"], &p["added"], &p["updated"]),
        (&json!(1), &json!(2), &json!(2), &json!(0)),
        "{v}"
    );
    release.add_permits(1);
    let done = finished_run(&app, &url).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["summary"]["added"], 3, "{done}");
    assert_eq!(done["progress"]["pages"], 2, "{done}");
    // 3 cards, plus the CRM changes the run walks after the pull.
    assert!(done["progress"]["items"].as_u64().unwrap() >= 3, "{done}");
    assert_eq!(done["progress"]["added"], 3, "{done}");

    // Three cards edited, then Refresh: the run's 202 status URL shows the updates so far.
    for (id, name) in [("a", "Ada King"), ("b", "Bob Bit"), ("c", "Cy Old")] {
        book.put(
            &format!("{id}.vcf"),
            sync_support::card(id, name, &[&format!("{id}@example.com")], &[]),
        );
    }
    let (s, v) = call(&app, "POST", &format!("{base}/refresh"), ANN, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let run_id = v["data"]["run_id"].as_u64().unwrap();
    let url = v["data"]["status_url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("{base}/runs/{run_id}"));
    wait_for_gate(&mut reached).await;
    let (_, v) = call(&app, "GET", &url, ANN, None).await;
    assert_eq!(v["data"]["state"], "running", "{v}");
    let p = &v["data"]["progress"];
    assert_eq!(
        (&p["pages"], &p["items"], &p["added"], &p["updated"]),
        (&json!(1), &json!(2), &json!(0), &json!(2)),
        "{v}"
    );
    // The list of runs and the status figures show the same live counts.
    let (_, v) = call(&app, "GET", &format!("{base}/runs"), ANN, None).await;
    assert_eq!(v["data"][0]["id"], run_id, "{v}");
    assert_eq!(v["data"][0]["progress"]["updated"], 2, "{v}");
    let (_, v) = call(&app, "GET", &format!("{base}/status"), ANN, None).await;
    assert_eq!(
        v["data"]["figures"]["latest_run"]["progress"]["updated"], 2,
        "{v}"
    );
    release.add_permits(1);
    let done = finished_run(&app, &url).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["summary"]["updated"], 3, "{done}");
    assert_eq!(done["progress"]["updated"], 3, "{done}");
    assert_eq!(done["progress"]["pages"], 2, "{done}");
}
