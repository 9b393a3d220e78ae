//! OAuth 2 against the fake Google endpoints: the authorization-code flow with PKCE, the
//! token manager's refresh-before-expiry, and `invalid_grant` becoming "needs
//! re-authorization" after exactly one token request.
#![allow(clippy::unwrap_used)]

#[path = "fakes/google.rs"]
mod google_fake;

use std::sync::Arc;
use std::time::Duration;

use cardbridge::providers::http::AccessTokenSource;
use cardbridge::providers::oauth::{
    OAuthClient, OAuthEndpoints, OAuthError, Pkce, SecretBox, TokenManager,
};
use cardbridge::providers::ProviderError;
use google_fake::FakeGoogle;

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

fn client(fake: &FakeGoogle) -> OAuthClient {
    let endpoints = OAuthEndpoints {
        authorize_url: fake.authorize_url().parse().unwrap(),
        token_url: fake.token_url().parse().unwrap(),
    };
    OAuthClient::google("client-id", Some("s3cret".into()), REDIRECT, endpoints)
}

/// Follows the authorization URL like a browser whose user consents; returns the callback's
/// query.
async fn consent(url: &url::Url) -> std::collections::HashMap<String, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(url.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn pkce_authorization_code_flow() {
    let fake = FakeGoogle::start().await;
    let client = client(&fake);
    let http = reqwest::Client::new();

    let req = client.authorize_url();
    let cb = consent(&req.url).await;
    OAuthClient::check_state(&req.state, &cb["state"]).unwrap();
    assert_eq!(cb["scope"], "https://www.googleapis.com/auth/contacts");
    let tok = client
        .exchange_code(&http, &cb["code"], &req.pkce_verifier)
        .await
        .unwrap();
    assert!(tok.access_token.starts_with("ya29."));
    let refresh = tok.refresh_token.unwrap();
    assert!(refresh.starts_with("1//"));
    assert_eq!(tok.expires_in, Some(3599));

    // The refresh token works.
    let again = client.refresh(&http, &refresh).await.unwrap();
    assert_ne!(again.access_token, tok.access_token);

    // A code is single-use, and a wrong verifier is refused.
    let err = client
        .exchange_code(&http, &cb["code"], &req.pkce_verifier)
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::InvalidGrant(_)), "{err:?}");
    let req2 = client.authorize_url();
    let cb2 = consent(&req2.url).await;
    let wrong = Pkce::generate();
    let err = client
        .exchange_code(&http, &cb2["code"], &wrong.verifier)
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::InvalidGrant(_)), "{err:?}");

    let form = fake.requests_to("/token");
    assert_eq!(form.len(), 4);
}

#[tokio::test]
async fn token_manager_refreshes_before_expiry() {
    let fake = FakeGoogle::start().await;
    fake.add_refresh_token("1//rt");
    // 61 s lifetime with a 60 s skew: usable for about one second.
    fake.set_token_lifetime(61);
    let secrets = Arc::new(SecretBox::from_key(&[5u8; 32]).unwrap());
    let sealed = secrets.seal(b"1//rt").unwrap();
    let tm = TokenManager::new(client(&fake), reqwest::Client::new(), secrets, sealed)
        .with_refresh_skew(Duration::from_secs(60));

    let t1 = tm.access_token().await.unwrap();
    let t2 = tm.access_token().await.unwrap();
    assert_eq!(t1, t2, "cached while fresh");
    assert_eq!(fake.requests_to("/token").len(), 1);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t3 = tm.access_token().await.unwrap();
    assert_ne!(t3, t1, "refreshed before the announced expiry");
    assert_eq!(fake.requests_to("/token").len(), 2);

    // invalidate() after a 401 forces a refresh; invalidating a stale token does not.
    tm.invalidate(&t1).await;
    assert_eq!(tm.access_token().await.unwrap(), t3);
    tm.invalidate(&t3).await;
    let t4 = tm.access_token().await.unwrap();
    assert_ne!(t4, t3);
    assert_eq!(fake.requests_to("/token").len(), 3);
}

#[tokio::test]
async fn invalid_grant_needs_reauthorization_after_one_request() {
    let fake = FakeGoogle::start().await;
    fake.add_refresh_token("1//rt");
    fake.revoke_refresh_token("1//rt");
    let secrets = Arc::new(SecretBox::from_key(&[5u8; 32]).unwrap());
    let sealed = secrets.seal(b"1//rt").unwrap();
    let tm = TokenManager::new(client(&fake), reqwest::Client::new(), secrets, sealed);

    for _ in 0..5 {
        let err = tm.access_token().await.unwrap_err();
        match err {
            ProviderError::NeedsReauthorization(reason) => {
                assert!(reason.contains("expired or revoked"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fake.requests_to("/token").len(), 1);
    assert!(tm.needs_reauthorization().await.is_some());
}

#[tokio::test]
async fn a_tampered_sealed_refresh_token_is_not_sent() {
    let fake = FakeGoogle::start().await;
    let secrets = Arc::new(SecretBox::from_key(&[5u8; 32]).unwrap());
    let other = SecretBox::from_key(&[6u8; 32]).unwrap();
    let sealed = other.seal(b"1//rt").unwrap();
    let tm = TokenManager::new(client(&fake), reqwest::Client::new(), secrets, sealed);
    let err = tm.access_token().await.unwrap_err();
    assert!(
        matches!(err, ProviderError::NeedsReauthorization(_)),
        "{err:?}"
    );
    assert!(fake.requests_to("/token").is_empty());
}

#[tokio::test]
async fn a_rotated_refresh_token_is_resealed_and_used_next_time() {
    let fake = FakeGoogle::start().await;
    fake.add_refresh_token("1//rt");
    fake.rotate_refresh_tokens();
    let secrets = Arc::new(SecretBox::from_key(&[5u8; 32]).unwrap());
    let sealed = secrets.seal(b"1//rt").unwrap();
    let tm = TokenManager::new(
        client(&fake),
        reqwest::Client::new(),
        secrets.clone(),
        sealed.clone(),
    );

    let t1 = tm.access_token().await.unwrap();
    let resealed = tm.sealed_refresh_token().await;
    assert_ne!(resealed, sealed);
    let rotated = String::from_utf8(secrets.open(&resealed).unwrap()).unwrap();
    assert!(rotated.starts_with("1//fake-rotated-"), "{rotated}");
    assert!(!resealed.contains(&rotated), "stored sealed, not in clear");

    // The old refresh token is dead now; the manager must use the new one.
    tm.invalidate(&t1).await;
    let t2 = tm.access_token().await.unwrap();
    assert_ne!(t1, t2);
    assert!(tm.needs_reauthorization().await.is_none());
}
