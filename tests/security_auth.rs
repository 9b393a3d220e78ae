//! Logins (issue #8, Security): brute-force slowing on CardDAV Basic auth, on the REST API
//! (Basic and bearer) and on the dashboard's login form — after `lock_after` failures from one
//! login or one address, further attempts get 429 with `Retry-After` and even the right password
//! is refused until the lock has passed; afterwards it works again. And revocation applies at
//! once: a revoked app password or a changed password stops working on the very next request,
//! although both servers cache verified credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use cardbridge::server::auth::AuthConfig;
use cardbridge::server::ServerConfig;
use cardbridge::service::ServiceBuilder;
use http::{Request, StatusCode};
use security_support::{basic, service_with, Svc};
use serde_json::json;

const LOCK_AFTER: u32 = 3;

fn throttle() -> AuthConfig {
    AuthConfig {
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1500),
        forget_after: Duration::from_secs(600),
        cache_ttl: Duration::from_secs(300),
        lock_after: LOCK_AFTER,
    }
}

async fn svc() -> Svc {
    let s = service_with(
        ServiceBuilder::new(Arc::new(security_support::api_support::MapStore::default())),
        ServerConfig {
            auth: throttle(),
            ..ServerConfig::default()
        },
        Some(throttle()),
    )
    .await;
    for login in ["alice", "bob", "carol"] {
        s.add_user(login, &format!("{login}-right-pw")).await;
    }
    s
}

fn from(addr: &str, mut req: Request<Body>) -> Request<Body> {
    let a: SocketAddr = format!("{addr}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(a));
    req
}

fn dav_req(login: &str, pw: &str) -> Request<Body> {
    Request::builder()
        .method("PROPFIND")
        .uri(format!("/dav/principals/{login}/"))
        .header("Depth", "0")
        .header("Authorization", basic(login, pw))
        .body(Body::empty())
        .unwrap()
}

fn api_req(login: &str, pw: &str) -> Request<Body> {
    Request::builder()
        .uri("/api/v1/me")
        .header("Authorization", basic(login, pw))
        .body(Body::empty())
        .unwrap()
}

fn bearer_req(token: &str) -> Request<Body> {
    Request::builder()
        .uri("/api/v1/me")
        .header("Authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn form_req(login: &str, pw: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/login")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("login={login}&password={pw}")))
        .unwrap()
}

fn retry_after(r: &security_support::Resp) -> u64 {
    r.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is delta-seconds")
}

/// Fails `LOCK_AFTER` times, then checks the lock refuses the right password with 429 and
/// `Retry-After`, then waits it out and logs in.
async fn lock_cycle(
    s: &Svc,
    what: &str,
    bad: impl Fn() -> Request<Body>,
    good: impl Fn() -> Request<Body>,
    good_status: StatusCode,
) {
    for i in 0..LOCK_AFTER {
        let r = s.send(bad()).await;
        assert!(
            r.status == StatusCode::UNAUTHORIZED,
            "{what}: failure {i} is a plain 401/refusal: {}",
            r.status
        );
    }
    let r = s.send(bad()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{what}: locked");
    let wait = retry_after(&r);
    assert!((1..=2).contains(&wait), "{what}: Retry-After {wait}");
    // The right password does not get through the lock.
    let r = s.send(good()).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: the right password is refused during the lock"
    );
    assert!(retry_after(&r) >= 1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = s.send(good()).await;
    assert_eq!(
        r.status,
        good_status,
        "{what}: after the lock: {}",
        r.text()
    );
    // A success clears the counters: one more failure is a 401 again, not a 429.
    let r = s.send(bad()).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "{what}: counters cleared"
    );
}

#[tokio::test]
async fn carddav_basic_auth_locks_per_login_and_refuses_the_right_password_meanwhile() {
    let s = svc().await;
    // The right password is cached before the attack: the cache must not bypass the lock.
    assert_eq!(
        s.send(dav_req("alice", "alice-right-pw")).await.status,
        StatusCode::MULTI_STATUS
    );
    lock_cycle(
        &s,
        "CardDAV per login",
        || dav_req("alice", "guess"),
        || dav_req("alice", "alice-right-pw"),
        StatusCode::MULTI_STATUS,
    )
    .await;
    // Another login is not affected (no connect info: per-login counters only).
    assert_eq!(
        s.send(dav_req("bob", "bob-right-pw")).await.status,
        StatusCode::MULTI_STATUS
    );
}

#[tokio::test]
async fn carddav_locks_an_address_that_sprays_many_logins() {
    let s = svc().await;
    let attacker = "192.0.2.7";
    // One guess each at many logins from one address.
    for (i, login) in ["alice", "bob", "carol"].iter().enumerate() {
        let r = s.send(from(attacker, dav_req(login, "guess"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "spray {i}");
    }
    // The address is locked now, whatever the login and password.
    let r = s
        .send(from(attacker, dav_req("carol", "carol-right-pw")))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    // Another address is fine for a login with fewer failures than the limit.
    let r = s
        .send(from("192.0.2.8", dav_req("carol", "carol-right-pw")))
        .await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS);
}

#[tokio::test]
async fn rest_api_basic_and_bearer_and_dashboard_login_lock_too() {
    let s = svc().await;
    lock_cycle(
        &s,
        "REST Basic",
        || api_req("alice", "guess"),
        || api_req("alice", "alice-right-pw"),
        StatusCode::OK,
    )
    .await;
    // Bearer tokens: a guessed token for Bob's id locks that id.
    let r = s
        .json(
            ("bob", "bob-right-pw"),
            "POST",
            "/api/v1/me/app-passwords",
            Some(json!({"label": "phone"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let token = r.json()["data"]["bearer_token"]
        .as_str()
        .unwrap()
        .to_string();
    let last = if token.ends_with('x') { 'y' } else { 'x' };
    let bad_token = format!("{}{last}", &token[..token.len() - 1]);
    lock_cycle(
        &s,
        "REST bearer",
        || bearer_req(&bad_token),
        || bearer_req(&token),
        StatusCode::OK,
    )
    .await;
    // The dashboard's login form: 401 page, then 429 with Retry-After, then a session.
    lock_cycle(
        &s,
        "dashboard login",
        || form_req("carol", "guess"),
        || form_req("carol", "carol-right-pw"),
        StatusCode::SEE_OTHER,
    )
    .await;
}

#[tokio::test]
async fn carddav_and_rest_api_failures_count_together() {
    let s = svc().await;
    // Alternating between the CardDAV server and the REST API gains a guesser nothing: the
    // failures of both count against the one login (regression: each had its own counters,
    // so 2 × (lock_after − 1) guesses went through without a lock).
    let attempts: Vec<Box<dyn Fn() -> Request<Body>>> = vec![
        Box::new(|| dav_req("alice", "guess-1")),
        Box::new(|| api_req("alice", "guess-2")),
        Box::new(|| form_req("alice", "guess-3")),
    ];
    assert_eq!(attempts.len() as u32, LOCK_AFTER);
    for (i, bad) in attempts.iter().enumerate() {
        let r = s.send(bad()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "failure {i}");
    }
    // Locked everywhere now, even for the right password.
    for (what, r) in [
        ("CardDAV", s.send(dav_req("alice", "alice-right-pw")).await),
        ("REST", s.send(api_req("alice", "alice-right-pw")).await),
        (
            "dashboard",
            s.send(form_req("alice", "alice-right-pw")).await,
        ),
    ] {
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{what}: {}",
            r.text()
        );
        assert!(retry_after(&r) >= 1, "{what}");
    }
    // The same per address: a spray split between CardDAV and the API locks the address.
    let attacker = "192.0.2.9";
    for (i, req) in [
        from(attacker, dav_req("bob", "guess")),
        from(attacker, api_req("carol", "guess")),
        from(attacker, dav_req("carol", "guess")),
    ]
    .into_iter()
    .enumerate()
    {
        let r = s.send(req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "spray {i}");
    }
    let r = s.send(from(attacker, api_req("bob", "bob-right-pw"))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
}

#[tokio::test]
async fn revoked_app_password_and_changed_password_stop_working_at_once() {
    let s = svc().await;
    // An app password, used (and so cached) on CardDAV and on the API.
    let r = s
        .json(
            ("alice", "alice-right-pw"),
            "POST",
            "/api/v1/me/app-passwords",
            Some(json!({"label": "phone"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    let app_pw = v["data"]["password"].as_str().unwrap().to_string();
    let pid = v["data"]["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        assert_eq!(
            s.send(dav_req("alice", &app_pw)).await.status,
            StatusCode::MULTI_STATUS
        );
        assert_eq!(
            s.send(api_req("alice", &app_pw)).await.status,
            StatusCode::OK
        );
    }
    // Revoked through the API: the next CardDAV request (same server, warm cache) fails.
    let r = s
        .json(
            ("alice", "alice-right-pw"),
            "DELETE",
            &format!("/api/v1/me/app-passwords/{pid}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        s.send(dav_req("alice", &app_pw)).await.status,
        StatusCode::UNAUTHORIZED,
        "revoked app password still accepted by the CardDAV server"
    );
    assert_eq!(
        s.send(api_req("alice", &app_pw)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Revoked directly in the CRM (another process path, no API cache clearing) too.
    let bob = s.crm.user_by_login("bob").await.unwrap().unwrap().id;
    let created = s.crm.create_app_password(bob, "tablet").await.unwrap();
    assert_eq!(
        s.send(dav_req("bob", &created.secret)).await.status,
        StatusCode::MULTI_STATUS
    );
    assert_eq!(
        s.send(api_req("bob", &created.secret)).await.status,
        StatusCode::OK
    );
    s.crm
        .revoke_app_password(bob, &created.record.id)
        .await
        .unwrap();
    assert_eq!(
        s.send(dav_req("bob", &created.secret)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.send(api_req("bob", &created.secret)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A changed password: the old one stops working at once on both servers.
    assert_eq!(
        s.send(dav_req("carol", "carol-right-pw")).await.status,
        StatusCode::MULTI_STATUS
    );
    let r = s
        .json(
            ("carol", "carol-right-pw"),
            "PUT",
            "/api/v1/me/password",
            Some(json!({"password": "carol-new-pw-42"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        s.send(dav_req("carol", "carol-right-pw")).await.status,
        StatusCode::UNAUTHORIZED,
        "old password still accepted by the CardDAV server"
    );
    assert_eq!(
        s.send(api_req("carol", "carol-right-pw")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.send(dav_req("carol", "carol-new-pw-42")).await.status,
        StatusCode::MULTI_STATUS
    );
}
