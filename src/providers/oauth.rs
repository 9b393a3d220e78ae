//! OAuth 2.0 for the Google and Microsoft providers: the authorization-code flow with PKCE
//! (RFC 6749 §4.1, RFC 7636), the refresh grant (RFC 6749 §6), a [`TokenManager`] that hands
//! out access tokens to providers (refreshing before expiry and after a 401), and the
//! [`SecretBox`] that keeps refresh tokens encrypted at rest.
//!
//! Endpoints are configurable ([`OAuthEndpoints`]) so tests can point at a fake and national
//! clouds can use their own authority. A revoked or expired grant (`invalid_grant`) is
//! sticky: the [`TokenManager`] reports [`ProviderError::NeedsReauthorization`] from then on
//! without asking the token endpoint again, so a dead grant never turns into a retry loop.
//!
//! The HTTP start/callback endpoints live in the server; this module only builds the
//! authorization URL (with `state` and the PKCE verifier the server must keep) and
//! exchanges the code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use rand::RngCore as _;
use serde::Deserialize;
use sha2::Digest as _;
use url::Url;

use super::http::{retry_after, send_with_retry, AccessTokenSource, RetryPolicy};
use super::ProviderError;

/// Google's scope for reading and writing contacts (People API).
pub const GOOGLE_CONTACTS_SCOPE: &str = "https://www.googleapis.com/auth/contacts";
/// Microsoft Graph delegated scopes: contacts read/write, plus a refresh token.
pub const MICROSOFT_CONTACTS_SCOPES: &[&str] = &["Contacts.ReadWrite", "offline_access"];

/// Google's authorization endpoint.
pub const GOOGLE_AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The Microsoft identity platform (v2) authority for the global cloud.
pub const MICROSOFT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// `response_type`, RFC 6749 §4.1.1.
pub const PARAM_RESPONSE_TYPE: &str = "response_type";
/// `client_id`, RFC 6749 §2.2.
pub const PARAM_CLIENT_ID: &str = "client_id";
/// `client_secret`, RFC 6749 §2.3.1.
pub const PARAM_CLIENT_SECRET: &str = "client_secret";
/// `redirect_uri`, RFC 6749 §3.1.2.
pub const PARAM_REDIRECT_URI: &str = "redirect_uri";
/// `scope`, RFC 6749 §3.3.
pub const PARAM_SCOPE: &str = "scope";
/// `state`, RFC 6749 §4.1.1.
pub const PARAM_STATE: &str = "state";
/// `code`, RFC 6749 §4.1.2 / §4.1.3.
pub const PARAM_CODE: &str = "code";
/// `grant_type`, RFC 6749 §4.1.3 / §6.
pub const PARAM_GRANT_TYPE: &str = "grant_type";
/// `refresh_token`, RFC 6749 §6.
pub const PARAM_REFRESH_TOKEN: &str = "refresh_token";
/// `code_challenge`, RFC 7636 §4.3.
pub const PARAM_CODE_CHALLENGE: &str = "code_challenge";
/// `code_challenge_method`, RFC 7636 §4.3.
pub const PARAM_CODE_CHALLENGE_METHOD: &str = "code_challenge_method";
/// `code_verifier`, RFC 7636 §4.5.
pub const PARAM_CODE_VERIFIER: &str = "code_verifier";
/// `access_type=offline`: Google's switch for issuing a refresh token.
pub const PARAM_ACCESS_TYPE: &str = "access_type";
/// `prompt=consent`: makes Google issue a fresh refresh token on re-authorization.
pub const PARAM_PROMPT: &str = "prompt";
/// The PKCE transformation we use, RFC 7636 §4.2.
pub const CODE_CHALLENGE_METHOD_S256: &str = "S256";
/// `grant_type=authorization_code`, RFC 6749 §4.1.3.
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
/// `grant_type=refresh_token`, RFC 6749 §6.
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
/// The error code for a revoked, expired or otherwise dead grant, RFC 6749 §5.2.
pub const ERROR_INVALID_GRANT: &str = "invalid_grant";

/// Where the authorization server lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthEndpoints {
    /// The authorization endpoint (the browser goes here).
    pub authorize_url: Url,
    /// The token endpoint (we POST here).
    pub token_url: Url,
}

impl OAuthEndpoints {
    /// Google's production endpoints.
    pub fn google() -> Result<Self, OAuthError> {
        Ok(Self {
            authorize_url: parse_url(GOOGLE_AUTHORIZE_URL)?,
            token_url: parse_url(GOOGLE_TOKEN_URL)?,
        })
    }

    /// Microsoft identity platform v2 endpoints under `authority` (e.g.
    /// `https://login.microsoftonline.com` or a national cloud) for `tenant` (`common`,
    /// `consumers`, `organizations` or a tenant id).
    pub fn microsoft(authority: &str, tenant: &str) -> Result<Self, OAuthError> {
        let base = authority.trim_end_matches('/');
        Ok(Self {
            authorize_url: parse_url(&format!("{base}/{tenant}/oauth2/v2.0/authorize"))?,
            token_url: parse_url(&format!("{base}/{tenant}/oauth2/v2.0/token"))?,
        })
    }
}

fn parse_url(s: &str) -> Result<Url, OAuthError> {
    Url::parse(s).map_err(|e| OAuthError::Config(format!("bad URL {s}: {e}")))
}

/// Why an OAuth call failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The grant (code or refresh token) is revoked, expired or unknown: a human must
    /// authorize again.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// The token endpoint refused the request for another reason (RFC 6749 §5.2).
    #[error("token endpoint refused ({status}): {error} {description}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` code.
        error: String,
        /// The `error_description`, if any.
        description: String,
    },
    /// The token endpoint could not be reached or failed (after retries).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The answer was not a token response.
    #[error("malformed token response: {0}")]
    Protocol(String),
    /// The callback's `state` does not match the one we issued.
    #[error("state mismatch in the authorization callback")]
    StateMismatch,
    /// Misconfiguration (bad URL).
    #[error("OAuth configuration: {0}")]
    Config(String),
}

impl From<OAuthError> for ProviderError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::InvalidGrant(msg) => ProviderError::NeedsReauthorization(msg),
            OAuthError::Provider(p) => p,
            OAuthError::Refused {
                status,
                error,
                description,
            } => ProviderError::Rejected {
                status,
                message: format!("{error}: {description}"),
            },
            OAuthError::Protocol(m) => ProviderError::Protocol(m),
            other => ProviderError::Unsupported(other.to_string()),
        }
    }
}

/// A PKCE verifier and its S256 challenge (RFC 7636 §4.1, §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkce {
    /// The `code_verifier`: 43 URL-safe characters from 32 random bytes.
    pub verifier: String,
    /// `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`.
    pub challenge: String,
}

impl Pkce {
    /// A fresh random verifier.
    pub fn generate() -> Self {
        Self::from_verifier(random_token(32))
    }

    /// The challenge for a given verifier.
    pub fn from_verifier(verifier: impl Into<String>) -> Self {
        let verifier = verifier.into();
        let challenge = s256_challenge(&verifier);
        Self {
            verifier,
            challenge,
        }
    }
}

/// `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`, RFC 7636 §4.2.
pub fn s256_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// `n` random bytes, base64url without padding.
fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One OAuth client registration.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    /// The client id.
    pub client_id: String,
    /// The client secret (Google web clients have one; public clients do not).
    pub client_secret: Option<String>,
    /// Our callback URL.
    pub redirect_uri: String,
    /// The scopes to ask for.
    pub scopes: Vec<String>,
    /// The authorization server.
    pub endpoints: OAuthEndpoints,
    /// Add Google's `access_type=offline&prompt=consent` to the authorization URL.
    pub google_offline: bool,
    /// Retries for the token endpoint (throttling, 5xx, transport).
    pub retry: RetryPolicy,
}

/// What the server keeps between redirecting the browser and receiving the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// Where to send the browser.
    pub url: Url,
    /// The `state` to compare in the callback.
    pub state: String,
    /// The PKCE verifier to send with the code.
    pub pkce_verifier: String,
}

/// A token endpoint answer (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// `Bearer`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// A refresh token (on code exchange; sometimes rotated on refresh).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scope: Option<String>,
}

/// An error answer (RFC 6749 §5.2).
#[derive(Debug, Deserialize)]
struct TokenErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl OAuthClient {
    /// A Google client with the contacts scope and offline access.
    pub fn google(
        client_id: impl Into<String>,
        client_secret: Option<String>,
        redirect_uri: impl Into<String>,
        endpoints: OAuthEndpoints,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            redirect_uri: redirect_uri.into(),
            scopes: vec![GOOGLE_CONTACTS_SCOPE.to_string()],
            endpoints,
            google_offline: true,
            retry: RetryPolicy::default(),
        }
    }

    /// A Microsoft client with `Contacts.ReadWrite offline_access`.
    pub fn microsoft(
        client_id: impl Into<String>,
        client_secret: Option<String>,
        redirect_uri: impl Into<String>,
        endpoints: OAuthEndpoints,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            redirect_uri: redirect_uri.into(),
            scopes: MICROSOFT_CONTACTS_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            endpoints,
            google_offline: false,
            retry: RetryPolicy::default(),
        }
    }

    /// Starts an authorization: a fresh `state` and PKCE verifier, and the URL to send the
    /// browser to (RFC 6749 §4.1.1 with RFC 7636 §4.3).
    pub fn authorize_url(&self) -> AuthorizationRequest {
        let state = random_token(24);
        let pkce = Pkce::generate();
        let url = self.authorize_url_with(&state, &pkce);
        AuthorizationRequest {
            url,
            state,
            pkce_verifier: pkce.verifier,
        }
    }

    /// The authorization URL for a given `state` and PKCE pair.
    pub fn authorize_url_with(&self, state: &str, pkce: &Pkce) -> Url {
        let mut url = self.endpoints.authorize_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(PARAM_RESPONSE_TYPE, PARAM_CODE)
                .append_pair(PARAM_CLIENT_ID, &self.client_id)
                .append_pair(PARAM_REDIRECT_URI, &self.redirect_uri)
                .append_pair(PARAM_SCOPE, &self.scopes.join(" "))
                .append_pair(PARAM_STATE, state)
                .append_pair(PARAM_CODE_CHALLENGE, &pkce.challenge)
                .append_pair(PARAM_CODE_CHALLENGE_METHOD, CODE_CHALLENGE_METHOD_S256);
            if self.google_offline {
                q.append_pair(PARAM_ACCESS_TYPE, "offline")
                    .append_pair(PARAM_PROMPT, "consent");
            }
        }
        url
    }

    /// Checks the callback's `state` against the one issued.
    pub fn check_state(expected: &str, got: &str) -> Result<(), OAuthError> {
        if !expected.is_empty() && constant_time_eq(expected.as_bytes(), got.as_bytes()) {
            Ok(())
        } else {
            Err(OAuthError::StateMismatch)
        }
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub async fn exchange_code(
        &self,
        http: &reqwest::Client,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let mut form = vec![
            (PARAM_GRANT_TYPE, GRANT_AUTHORIZATION_CODE.to_string()),
            (PARAM_CODE, code.to_string()),
            (PARAM_REDIRECT_URI, self.redirect_uri.clone()),
            (PARAM_CODE_VERIFIER, pkce_verifier.to_string()),
        ];
        self.add_client_auth(&mut form);
        self.token_request(http, &form).await
    }

    /// Uses a refresh token (RFC 6749 §6).
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let mut form = vec![
            (PARAM_GRANT_TYPE, GRANT_REFRESH_TOKEN.to_string()),
            (PARAM_REFRESH_TOKEN, refresh_token.to_string()),
        ];
        if !self.google_offline {
            // Microsoft wants the scopes again on refresh.
            form.push((PARAM_SCOPE, self.scopes.join(" ")));
        }
        self.add_client_auth(&mut form);
        self.token_request(http, &form).await
    }

    fn add_client_auth(&self, form: &mut Vec<(&'static str, String)>) {
        form.push((PARAM_CLIENT_ID, self.client_id.clone()));
        if let Some(secret) = &self.client_secret {
            form.push((PARAM_CLIENT_SECRET, secret.clone()));
        }
    }

    async fn token_request(
        &self,
        http: &reqwest::Client,
        form: &[(&'static str, String)],
    ) -> Result<TokenResponse, OAuthError> {
        let url = self.endpoints.token_url.clone();
        let body = {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                ser.append_pair(k, v);
            }
            ser.finish()
        };
        let resp = send_with_retry(&self.retry, || {
            http.post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone())
        })
        .await?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let body = resp
            .text()
            .await
            .map_err(|e| ProviderError::Transport(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_str(&body).map_err(|e| OAuthError::Protocol(e.to_string()));
        }
        match serde_json::from_str::<TokenErrorBody>(&body) {
            Ok(err) if err.error == ERROR_INVALID_GRANT => Err(OAuthError::InvalidGrant(
                err.error_description.unwrap_or(err.error),
            )),
            Ok(err) if status.is_client_error() && status.as_u16() != 429 => {
                Err(OAuthError::Refused {
                    status: status.as_u16(),
                    error: err.error,
                    description: err.error_description.unwrap_or_default(),
                })
            }
            _ => Err(super::http::status_error(status, wait, &body).into()),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refresh tokens are sealed with the one credentials box of the service (same key file,
/// same format as every connection credential).
pub use crate::service::secrets::{SecretBox, SecretError};

/// Refresh this long before the access token's announced expiry.
pub const DEFAULT_REFRESH_SKEW: Duration = Duration::from_secs(60);

struct TokenState {
    sealed_refresh: String,
    access: Option<(String, Instant)>,
    reauth: Option<String>,
}

/// Hands out access tokens for one connection. Holds the refresh token sealed; refreshes
/// before expiry and after [`AccessTokenSource::invalidate`]; after an `invalid_grant` it
/// answers [`ProviderError::NeedsReauthorization`] without calling the token endpoint again.
pub struct TokenManager {
    client: OAuthClient,
    http: reqwest::Client,
    secrets: Arc<SecretBox>,
    skew: Duration,
    state: tokio::sync::Mutex<TokenState>,
}

impl TokenManager {
    /// A manager for the refresh token sealed in `sealed_refresh_token`.
    pub fn new(
        client: OAuthClient,
        http: reqwest::Client,
        secrets: Arc<SecretBox>,
        sealed_refresh_token: String,
    ) -> Self {
        Self {
            client,
            http,
            secrets,
            skew: DEFAULT_REFRESH_SKEW,
            state: tokio::sync::Mutex::new(TokenState {
                sealed_refresh: sealed_refresh_token,
                access: None,
                reauth: None,
            }),
        }
    }

    /// Changes how long before expiry a token is refreshed.
    pub fn with_refresh_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// The refresh token as it should be persisted (sealed; it changes when rotated).
    pub async fn sealed_refresh_token(&self) -> String {
        self.state.lock().await.sealed_refresh.clone()
    }

    /// `Some(reason)` once the grant is dead and a user must authorize again.
    pub async fn needs_reauthorization(&self) -> Option<String> {
        self.state.lock().await.reauth.clone()
    }
}

#[async_trait]
impl AccessTokenSource for TokenManager {
    async fn access_token(&self) -> Result<String, ProviderError> {
        let mut st = self.state.lock().await;
        if let Some(reason) = &st.reauth {
            return Err(ProviderError::NeedsReauthorization(reason.clone()));
        }
        if let Some((token, expires)) = &st.access {
            if Instant::now() + self.skew < *expires {
                return Ok(token.clone());
            }
        }
        let refresh = self
            .secrets
            .open(&st.sealed_refresh)
            .map_err(|e| ProviderError::NeedsReauthorization(e.to_string()))?;
        let refresh = String::from_utf8(refresh)
            .map_err(|_| ProviderError::NeedsReauthorization("refresh token unreadable".into()))?;
        match self.client.refresh(&self.http, &refresh).await {
            Ok(tok) => {
                // Without `expires_in`, assume the common hour.
                let life = Duration::from_secs(tok.expires_in.unwrap_or(3600));
                st.access = Some((tok.access_token.clone(), Instant::now() + life));
                if let Some(new_refresh) = tok.refresh_token.filter(|r| *r != refresh) {
                    st.sealed_refresh = self
                        .secrets
                        .seal(new_refresh.as_bytes())
                        .map_err(|e| ProviderError::Protocol(e.to_string()))?;
                }
                Ok(tok.access_token)
            }
            Err(OAuthError::InvalidGrant(reason)) => {
                tracing::warn!(%reason, "OAuth grant is dead; needs re-authorization");
                st.access = None;
                st.reauth = Some(reason.clone());
                Err(ProviderError::NeedsReauthorization(reason))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn invalidate(&self, token: &str) {
        let mut st = self.state.lock().await;
        if st.access.as_ref().is_some_and(|(t, _)| t == token) {
            st.access = None;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn generated_verifier_is_43_unreserved_chars() {
        let p = Pkce::generate();
        assert_eq!(p.verifier.len(), 43);
        assert!(p
            .verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
        assert_ne!(p.verifier, Pkce::generate().verifier);
    }

    #[test]
    fn authorize_url_carries_pkce_state_and_scope() {
        let client = OAuthClient::google(
            "cid",
            None,
            "http://127.0.0.1/cb",
            OAuthEndpoints::google().unwrap(),
        );
        let req = client.authorize_url();
        let q: std::collections::HashMap<_, _> = req.url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["scope"], GOOGLE_CONTACTS_SCOPE);
        assert_eq!(q["state"], req.state);
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], s256_challenge(&req.pkce_verifier));
        assert_eq!(q["access_type"], "offline");
        assert!(OAuthClient::check_state(&req.state, &q["state"]).is_ok());
        assert!(OAuthClient::check_state(&req.state, "forged").is_err());
    }

    #[test]
    fn microsoft_scopes_and_national_cloud() {
        let ep = OAuthEndpoints::microsoft("https://login.microsoftonline.us/", "common").unwrap();
        assert_eq!(
            ep.token_url.as_str(),
            "https://login.microsoftonline.us/common/oauth2/v2.0/token"
        );
        let client = OAuthClient::microsoft("cid", None, "http://127.0.0.1/cb", ep);
        let req = client.authorize_url();
        let q: std::collections::HashMap<_, _> = req.url.query_pairs().into_owned().collect();
        assert_eq!(q["scope"], "Contacts.ReadWrite offline_access");
        assert!(!q.contains_key("access_type"));
    }
}
