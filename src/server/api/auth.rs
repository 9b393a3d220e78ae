//! Who is calling the REST API: HTTP Basic (login + password or app password), a bearer token
//! (an app password as `cbt_<user id>_<secret>`), or the dashboard's session cookie.
//!
//! Verified Basic credentials are cached for [`CACHE_TTL`] under a SHA-256 of the pair, so
//! argon2 runs once per client per minute, not per request. Cookie-authenticated requests
//! that change state must carry [`CSRF_HEADER`]: a cross-site form cannot set it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::ApiState;
use crate::crm::users::AuthMethod;
use crate::crm::{User, UserId};

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "cb_session";
/// Required on cookie-authenticated non-GET requests (any value).
pub const CSRF_HEADER: &str = "x-requested-with";
/// Prefix of bearer tokens.
pub const TOKEN_PREFIX: &str = "cbt_";
/// How long verified Basic credentials stay cached.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How long a dashboard session lives.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user, freshly read.
    pub user: User,
}

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

/// The bearer token of an app password.
pub fn bearer_token(user: UserId, secret: &str) -> String {
    format!("{TOKEN_PREFIX}{user}_{secret}")
}

/// In-memory sessions and the credential cache (both lost on restart: users log in again).
#[derive(Default)]
pub struct AuthState {
    sessions: Mutex<HashMap<String, (UserId, Instant)>>,
    cache: Mutex<HashMap<[u8; 32], (UserId, Instant)>>,
}

impl AuthState {
    /// Starts a session; returns its token.
    pub fn create_session(&self, user: UserId) -> String {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.retain(|_, (_, exp)| *exp > now);
        s.insert(token.clone(), (user, now + SESSION_TTL));
        token
    }
    /// The user of a live session.
    pub fn session_user(&self, token: &str) -> Option<UserId> {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.get(token)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(u, _)| *u)
    }
    /// Ends a session.
    pub fn end_session(&self, token: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }
    /// Forgets every cached credential (after a password change or revocation).
    pub fn clear_cache(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    fn cached(&self, k: &[u8; 32]) -> Option<UserId> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(k)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(u, _)| *u)
    }
    fn remember(&self, k: [u8; 32], user: UserId) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if c.len() > 10_000 {
            c.retain(|_, (_, exp)| *exp > now);
        }
        c.insert(k, (user, now + CACHE_TTL));
    }
}

fn cache_key(kind: &str, login: &str, secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(login.as_bytes());
    h.update([0]);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// The session token in a `Cookie` header.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Authenticates a request's parts (shared by the API and the dashboard).
pub async fn authenticate(parts: &Parts, state: &ApiState) -> Result<Option<User>, ApiError> {
    let crm = &state.core.crm;
    if let Some(auth) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((login, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(ApiError::bad_request(
                    "malformed Basic credentials",
                    "send `Authorization: Basic base64(login:password)`",
                ));
            };
            let k = cache_key("basic", login, secret);
            if let Some(id) = state.auth.cached(&k) {
                return Ok(crm.get_user(id).await?);
            }
            return match crm.authenticate(login, secret).await? {
                Some((user, _)) => {
                    state.auth.remember(k, user.id);
                    Ok(Some(user))
                }
                None => Ok(None),
            };
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            let parsed = token
                .strip_prefix(TOKEN_PREFIX)
                .and_then(|t| t.split_once('_'))
                .and_then(|(id, secret)| Some((id.parse::<UserId>().ok()?, secret)));
            let Some((id, secret)) = parsed else {
                return Ok(None);
            };
            let k = cache_key("bearer", &id.to_string(), secret);
            if let Some(id) = state.auth.cached(&k) {
                return Ok(crm.get_user(id).await?);
            }
            let Some(user) = crm.get_user(id).await? else {
                return Ok(None);
            };
            let secret = secret.to_string();
            let checked = tokio::task::spawn_blocking(move || {
                matches!(user.verify(&secret), Some(AuthMethod::AppPassword(_))).then_some(user)
            })
            .await
            .ok()
            .flatten();
            if let Some(u) = &checked {
                state.auth.remember(k, u.id);
            }
            return Ok(checked);
        }
        return Ok(None);
    }
    if let Some(token) = session_cookie(parts) {
        if let Some(id) = state.auth.session_user(&token) {
            let safe = matches!(parts.method, Method::GET | Method::HEAD);
            if !safe && !parts.headers.contains_key(CSRF_HEADER) {
                return Err(ApiError::forbidden(
                    "cookie-authenticated changes need the X-Requested-With header",
                    "send `X-Requested-With: cardbridge` (the dashboard does), or use Basic/bearer auth",
                ));
            }
            return Ok(crm.get_user(id).await?);
        }
    }
    Ok(None)
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        match authenticate(parts, state).await? {
            Some(user) => Ok(Caller { user }),
            None => Err(ApiError::unauthorized()),
        }
    }
}

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let c = Caller::from_request_parts(parts, state).await?;
        if !c.user.is_admin {
            return Err(ApiError::forbidden(
                "this needs an admin",
                "ask an admin to do it, or to make you an admin",
            ));
        }
        Ok(Admin(c))
    }
}
