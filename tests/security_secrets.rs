//! Secrets (issue #8, Security): provider credentials are encrypted at rest — the sled files
//! never hold a connection's password or refresh token (nor a user's password or app
//! password) in plain text — and no secret reaches the logs, at TRACE level, while connections
//! are created, re-credentialed, opened and synced, while the OAuth token manager refreshes and
//! fails, and while users log in right and wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;

#[path = "fakes/google.rs"]
mod google_fake;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use cardbridge::providers::google::{GoogleConfig, GoogleProvider, GROUP_ALL};
use cardbridge::providers::http::{AccessTokenSource, RetryPolicy};
use cardbridge::providers::oauth::{OAuthClient, OAuthEndpoints, SecretBox, TokenManager};
use cardbridge::providers::Provider;
use cardbridge::server::ServerConfig;
use cardbridge::service::ServiceBuilder;
use cardbridge::store::SledStore;
use http::StatusCode;
use security_support::{service_with, Svc};
use serde_json::json;

const CONN_PASSWORD: &str = "CardDavPa55-plaintext-7Q2";
const CONN_PASSWORD2: &str = "RotatedPa55-plaintext-K9w";
const REFRESH_TOKEN: &str = "1//refresh-plaintext-Zx81";
const USER_PASSWORD: &str = "UserLoginPa55-plain-4Hv";
const CLIENT_SECRET: &str = "oauth-client-secret-Pq7";

/// Log lines of every test in this binary, at TRACE for every target.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(w.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The secret and the encodings it could leak in.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    vec![
        secret.as_bytes().to_vec(),
        b64.trim_end_matches('=').as_bytes().to_vec(),
        b64url.as_bytes().to_vec(),
        hex::encode(secret).into_bytes(),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

async fn sled_service(dir: &Path) -> (Svc, Arc<SledStore>) {
    let store = Arc::new(SledStore::open(dir.join("db")).unwrap());
    let svc = service_with(
        ServiceBuilder::new(store.clone()),
        ServerConfig::default(),
        None,
    )
    .await;
    cardbridge::service::ensure_admin(&svc.crm, "admin", Some(USER_PASSWORD.into()))
        .await
        .unwrap();
    (svc, store)
}

const ADMIN: (&str, &str) = ("admin", USER_PASSWORD);

/// Creates a CardDAV connection (password) and a Google one (refresh token), rotates the
/// CardDAV password, opens both, starts and refreshes them, and makes an app password.
async fn exercise(svc: &Svc) -> String {
    let r = svc
        .json(
            ADMIN,
            "POST",
            "/api/v1/connections",
            Some(json!({
                "provider": "carddav",
                "email": "ann@example.com",
                "username": "ann",
                "password": CONN_PASSWORD,
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let dav_id = r.json()["data"]["id"].as_u64().unwrap();
    let r = svc
        .json(
            ADMIN,
            "POST",
            "/api/v1/connections",
            Some(json!({
                "provider": "google",
                "email": "ann@gmail.com",
                "refresh_token": REFRESH_TOKEN,
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let g_id = r.json()["data"]["id"].as_u64().unwrap();
    let r = svc
        .json(
            ADMIN,
            "PUT",
            &format!("/api/v1/connections/{dav_id}/credentials"),
            Some(json!({"password": CONN_PASSWORD2})),
        )
        .await;
    assert!(r.status.is_success(), "{} {}", r.status, r.text());
    // A wrong password is rejected by the (fake) provider and logged as such.
    let r = svc
        .json(
            ADMIN,
            "PUT",
            &format!("/api/v1/connections/{g_id}/credentials"),
            Some(json!({"password": "wrong", "refresh_token": REFRESH_TOKEN})),
        )
        .await;
    let _ = r.status;
    for id in [dav_id, g_id] {
        for (m, path) in [
            ("GET", format!("/api/v1/connections/{id}")),
            ("GET", format!("/api/v1/connections/{id}/sync-groups")),
            ("GET", format!("/api/v1/connections/{id}/mapping-preview")),
            ("GET", format!("/api/v1/connections/{id}/settings")),
            ("POST", format!("/api/v1/connections/{id}/start")),
            ("POST", format!("/api/v1/connections/{id}/refresh")),
            ("GET", format!("/api/v1/connections/{id}/status")),
            ("GET", "/api/v1/connections".to_string()),
        ] {
            let body = (m == "POST").then(|| json!({}));
            let r = svc.json(ADMIN, m, &path, body).await;
            for s in [CONN_PASSWORD, CONN_PASSWORD2, REFRESH_TOKEN] {
                assert!(!r.text().contains(s), "{m} {path} answers a secret");
            }
        }
    }
    // Let the scheduler run the started syncs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = svc
        .json(
            ADMIN,
            "POST",
            "/api/v1/me/app-passwords",
            Some(json!({"label": "phone"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    r.json()["data"]["password"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn credentials_are_encrypted_in_the_sled_files() {
    let _ = logs();
    let dir = tempfile::tempdir().unwrap();
    let (svc, store) = sled_service(dir.path()).await;
    let app_pw = exercise(&svc).await;
    store.flush().await.unwrap();
    drop(svc);
    drop(store);
    let mut files = Vec::new();
    files_under(dir.path(), &mut files);
    let mut total = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        total += bytes.len();
        for secret in [
            CONN_PASSWORD,
            CONN_PASSWORD2,
            REFRESH_TOKEN,
            USER_PASSWORD,
            app_pw.as_str(),
        ] {
            for form in forms(secret) {
                assert!(
                    !contains(&bytes, &form),
                    "{} holds {secret} ({} bytes)",
                    f.display(),
                    form.len()
                );
            }
        }
    }
    // The check looked at real data: the connection's non-secret fields are there.
    let all: Vec<u8> = files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(
        total > 0 && contains(&all, b"ann@example.com"),
        "store not flushed?"
    );
    assert!(contains(&all, b"v1:"), "sealed values are stored");
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let buf = logs();
    let dir = tempfile::tempdir().unwrap();
    let (svc, _store) = sled_service(dir.path()).await;
    let app_pw = exercise(&svc).await;
    // Logins, right and wrong, on the API and the CardDAV server.
    for pw in [USER_PASSWORD, "not-the-password-xyz", app_pw.as_str()] {
        let _ = svc.json(("admin", pw), "GET", "/api/v1/me", None).await;
        let _ = svc
            .req(
                ("admin", pw),
                "PROPFIND",
                "/dav/principals/admin/",
                &[("Depth", "0")],
                axum::body::Body::empty(),
            )
            .await;
    }

    // The OAuth token manager and a provider pull against the fake Google, then a revoked grant.
    let fake = google_fake::FakeGoogle::start().await;
    fake.add_refresh_token(REFRESH_TOKEN);
    let secrets = Arc::new(SecretBox::from_key(&[4u8; 32]).unwrap());
    let sealed = secrets.seal(REFRESH_TOKEN.as_bytes()).unwrap();
    let retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    };
    let mut client = OAuthClient::google(
        "client-id",
        Some(CLIENT_SECRET.into()),
        "http://127.0.0.1:1/cb",
        OAuthEndpoints {
            authorize_url: fake.authorize_url().parse().unwrap(),
            token_url: fake.token_url().parse().unwrap(),
        },
    );
    client.retry = retry;
    let http = reqwest::Client::new();
    let tokens = Arc::new(TokenManager::new(client, http.clone(), secrets, sealed));
    fake.seed(1, 5, &[]);
    let provider = GoogleProvider::new(
        http,
        tokens.clone(),
        GoogleConfig {
            base_url: fake.base_url.parse().unwrap(),
            page_size: 2,
            retry,
        },
    );
    let page = provider.pull(GROUP_ALL, None).await.unwrap();
    assert!(!page.changes.is_empty());
    let access = tokens.access_token().await.unwrap();
    fake.revoke_access_tokens();
    fake.revoke_refresh_token(REFRESH_TOKEN);
    tokens.invalidate(&access).await;
    assert!(provider.pull(GROUP_ALL, None).await.is_err());

    let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    assert!(
        text.contains("cardbridge") || text.contains("TRACE") || text.contains("DEBUG"),
        "the capture works: {} bytes",
        text.len()
    );
    for secret in [
        CONN_PASSWORD,
        CONN_PASSWORD2,
        REFRESH_TOKEN,
        USER_PASSWORD,
        CLIENT_SECRET,
        app_pw.as_str(),
        access.as_str(),
        "not-the-password-xyz",
    ] {
        for form in forms(secret) {
            let form = String::from_utf8(form).unwrap();
            assert!(
                !text.contains(&form),
                "the logs hold {secret}: {}",
                text.lines().find(|l| l.contains(&form)).unwrap_or_default()
            );
        }
    }
}
