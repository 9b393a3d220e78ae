//! Who is calling the REST API: HTTP Basic (login + password or app password), a bearer token
//! (an app password as `cbt_<user id>_<secret>`), or the dashboard's session cookie.
//!
//! Verified Basic credentials are cached for [`CACHE_TTL`] under a SHA-256 of the pair, so
//! argon2 runs once per client per minute, not per request; a cache entry is honoured only
//! while the user still holds the credential ([`credential_stamp`]), so a password change or a
//! revoked app password applies at once. Failed Basic, bearer and dashboard logins go through
//! the same [`Throttle`] as the CardDAV server (delay, then 429 with `Retry-After`; a locked
//! login is refused before its password is looked at). Cookie-authenticated requests
//! that change state must carry [`CSRF_HEADER`]: a cross-site form cannot set it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::ApiState;
use crate::crm::users::AuthMethod;
use crate::crm::{User, UserId};
use crate::server::auth::{credential_stamp, still_holds, AuthConfig, AuthError, Throttle};

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

/// A credential-cache entry: the user, the [`credential_stamp`] it was verified against, and
/// until when it may be used.
#[derive(Debug, Clone, Copy)]
struct Cached {
    user: UserId,
    stamp: [u8; 32],
    until: Instant,
}

/// In-memory sessions, the credential cache (both lost on restart: users log in again) and
/// the login throttle.
pub struct AuthState {
    sessions: Mutex<HashMap<String, (UserId, Instant)>>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    /// Failed-login counters (shared by Basic, bearer, the dashboard login form and, in
    /// `cardbridge serve`, the CardDAV server).
    pub throttle: Arc<Throttle>,
}

impl Default for AuthState {
    fn default() -> Self {
        Self::with_config(AuthConfig::default())
    }
}

impl AuthState {
    /// Empty state with these throttle settings.
    pub fn with_config(config: AuthConfig) -> Self {
        Self::with_throttle(Arc::new(Throttle::new(config)))
    }
    /// Empty state counting failed logins in `throttle`.
    pub fn with_throttle(throttle: Arc<Throttle>) -> Self {
        Self {
            sessions: Mutex::default(),
            cache: Mutex::default(),
            throttle,
        }
    }
    /// Checks the throttle, runs `verify`, records the outcome: the one path every password
    /// check of the API and the dashboard takes.
    pub async fn throttled<F, Fut>(
        &self,
        login: &str,
        addr: Option<IpAddr>,
        verify: F,
    ) -> Result<Option<(User, AuthMethod)>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<(User, AuthMethod)>, ApiError>>,
    {
        if let Err(AuthError::Locked(left)) = self.throttle.wait_turn(login, addr).await {
            return Err(ApiError::login_locked(left));
        }
        let r = verify().await?;
        self.throttle.record(login, addr, r.is_some());
        Ok(r)
    }
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
    fn cached(&self, k: &[u8; 32]) -> Option<(UserId, [u8; 32])> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(k)
            .filter(|e| e.until > Instant::now())
            .map(|e| (e.user, e.stamp))
    }
    fn forget(&self, k: &[u8; 32]) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(k);
    }
    fn remember(&self, k: [u8; 32], user: &User, method: &AuthMethod) {
        let Some(stamp) = credential_stamp(user, method) else {
            return;
        };
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if c.len() > 10_000 {
            c.retain(|_, e| e.until > now);
        }
        c.insert(
            k,
            Cached {
                user: user.id,
                stamp,
                until: now + CACHE_TTL,
            },
        );
    }
    /// The cached user for `k` when the user still holds the cached credential.
    async fn cached_user(
        &self,
        crm: &crate::crm::Crm,
        k: &[u8; 32],
    ) -> Result<Option<User>, ApiError> {
        let Some((id, stamp)) = self.cached(k) else {
            return Ok(None);
        };
        match crm.get_user(id).await? {
            Some(u) if still_holds(&u, &stamp) => Ok(Some(u)),
            _ => {
                self.forget(k);
                Ok(None)
            }
        }
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

/// The client's address, when the server was started with connect info.
pub fn client_addr(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Authenticates a request's parts (shared by the API and the dashboard).
pub async fn authenticate(parts: &Parts, state: &ApiState) -> Result<Option<User>, ApiError> {
    let crm = &state.core.crm;
    let addr = client_addr(parts);
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
            // The lock comes first: not even a cached (right) password passes it.
            if let Err(left) = state.auth.throttle.check(login, addr) {
                return Err(ApiError::login_locked(left));
            }
            let k = cache_key("basic", login, secret);
            if let Some(u) = state.auth.cached_user(crm, &k).await? {
                return Ok(Some(u));
            }
            let checked = state
                .auth
                .throttled(login, addr, || async {
                    Ok(crm.authenticate(login, secret).await?)
                })
                .await?;
            return Ok(checked.map(|(user, method)| {
                state.auth.remember(k, &user, &method);
                user
            }));
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
            let login = format!("#{id}");
            if let Err(left) = state.auth.throttle.check(&login, addr) {
                return Err(ApiError::login_locked(left));
            }
            let k = cache_key("bearer", &id.to_string(), secret);
            if let Some(u) = state.auth.cached_user(crm, &k).await? {
                return Ok(Some(u));
            }
            let checked = state
                .auth
                .throttled(&login, addr, || async {
                    let Some(user) = crm.get_user(id).await? else {
                        return Ok(None);
                    };
                    let secret = secret.to_string();
                    Ok(
                        tokio::task::spawn_blocking(move || match user.verify(&secret) {
                            Some(m @ AuthMethod::AppPassword(_)) => Some((user, m)),
                            _ => None,
                        })
                        .await
                        .ok()
                        .flatten(),
                    )
                })
                .await?;
            return Ok(checked.map(|(user, method)| {
                state.auth.remember(k, &user, &method);
                user
            }));
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
