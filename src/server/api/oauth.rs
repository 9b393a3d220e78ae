//! The OAuth 2 authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636) on our server:
//! `POST /api/v1/connections/{id}/oauth/start` issues a single-use `state` bound to the
//! connection and the caller (kept sealed in the store with its PKCE verifier, for
//! [`STATE_TTL`]) and answers the provider's authorization URL; `GET /oauth/callback` (the
//! operator's `redirect_uri`, authenticated by the `state` alone) consumes the state, exchanges
//! the code with the verifier, seals the refresh token into the connection's credentials and
//! redirects the browser to the dashboard page of the connection.
//!
//! Architecture invariant: a `state` is consumed by an atomic compare-and-delete in the store
//! before the code is exchanged, so a replayed callback can never exchange a second code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Caller;
use super::connections::{load, save_credentials};
use super::error::ApiError;
use super::{ok, ApiState};
use crate::providers::http::refused;
use crate::providers::oauth::OAuthError;
use crate::providers::ProviderKind;
use crate::service::connections::{provider_name, ConnectionId};
use crate::service::Core;
use crate::store::{scan_all, Batch, Space, StoreError};

/// The keyspace of pending authorizations: key = `state`, value = a sealed [`PendingState`].
pub const SPACE_OAUTH_STATES: Space = "api.oauth_states";
/// How long a `state` stays valid after `oauth/start`.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// The callback path (the operator's `redirect_uri` must point here).
pub const CALLBACK_PATH: &str = "/oauth/callback";
/// `error=access_denied`: the user refused consent (RFC 6749 §4.1.2.1).
pub const ERROR_ACCESS_DENIED: &str = "access_denied";

/// What a `state` stands for until the callback consumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingState {
    /// The connection being authorized.
    pub connection_id: ConnectionId,
    /// The user who started it.
    pub user_id: u64,
    /// The PKCE `code_verifier`.
    pub verifier: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        e.to_string(),
        "report this bug",
    )
}

/// Removes expired states (they are otherwise only removed when used).
async fn purge_expired(core: &Core) -> Result<(), ApiError> {
    let now = now_secs();
    let mut batch = Batch::new();
    for (key, value) in scan_all(core.store.as_ref(), SPACE_OAUTH_STATES, b"").await? {
        let expired = decode(core, &value).is_none_or(|p| p.expires_at <= now);
        if expired {
            batch.delete(SPACE_OAUTH_STATES, key);
        }
    }
    if !batch.is_empty() {
        core.store.commit(batch).await?;
    }
    Ok(())
}

fn decode(core: &Core, value: &[u8]) -> Option<PendingState> {
    let sealed = std::str::from_utf8(value).ok()?;
    let raw = core.secrets.open(sealed).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// `POST /api/v1/connections/{id}/oauth/start`: `{"authorize_url": …}`.
pub async fn start(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
) -> Result<Response, ApiError> {
    let core = &st.core;
    let c = load(&st, &caller, id).await?;
    if !matches!(c.provider, ProviderKind::Google | ProviderKind::Graph) {
        return Err(ApiError::unprocessable(
            format!(
                "connection {id} is a {} connection; only Google and Microsoft Graph \
                 connections sign in with OAuth",
                provider_name(c.provider)
            ),
            "set the password with PUT /api/v1/connections/{id}/credentials instead",
        ));
    }
    let client = core
        .connector
        .oauth_client(c.provider)
        .map_err(ApiError::provider)?;
    let req = client.authorize_url();
    let pending = PendingState {
        connection_id: c.id,
        user_id: caller.user.id,
        verifier: req.pkce_verifier,
        expires_at: now_secs() + STATE_TTL.as_secs(),
    };
    let sealed = core
        .secrets
        .seal(&serde_json::to_vec(&pending).map_err(internal)?)
        .map_err(internal)?;
    purge_expired(core).await?;
    let mut batch = Batch::new();
    batch
        .expect(SPACE_OAUTH_STATES, req.state.as_bytes(), None)
        .put(
            SPACE_OAUTH_STATES,
            req.state.as_bytes(),
            sealed.into_bytes(),
        );
    core.store.commit(batch).await?;
    tracing::info!(connection = c.id, "OAuth authorization started");
    Ok(ok(json!({
        "authorize_url": req.url.to_string(),
        "expires_in": STATE_TTL.as_secs(),
    })))
}

/// The query of `GET /oauth/callback` (RFC 6749 §4.1.2, §4.1.2.1).
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` we issued.
    pub state: Option<String>,
    /// An error code instead of a code.
    pub error: Option<String>,
    /// Its description.
    pub error_description: Option<String>,
}

/// A callback failure, answered as JSON or, for browsers, as a small HTML page.
struct CallbackError {
    err: ApiError,
    html: bool,
}

impl IntoResponse for CallbackError {
    fn into_response(self) -> Response {
        if !self.html {
            return self.err.into_response();
        }
        let page = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorization \
             failed</title></head><body><h1>Authorization failed</h1><p>{}</p><p>{}</p>\
             </body></html>",
            escape(&self.err.error),
            escape(&self.err.error_info)
        );
        (self.err.status, Html(page)).into_response()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

const RESTART: &str = "start the authorization again from the connection's page \
                       (POST /api/v1/connections/{id}/oauth/start)";

/// Consumes `state` atomically: unknown, expired and already used states are refused.
async fn consume(core: &Core, state: &str) -> Result<PendingState, ApiError> {
    let refused = |why: &str| {
        ApiError::bad_request(
            format!("the authorization state is {why}"),
            format!(
                "{RESTART}; a state is valid once, for {} minutes",
                STATE_TTL.as_secs() / 60
            ),
        )
    };
    if state.is_empty() {
        return Err(refused("missing"));
    }
    let Some(value) = core.store.get(SPACE_OAUTH_STATES, state.as_bytes()).await? else {
        return Err(refused("unknown or already used"));
    };
    let mut batch = Batch::new();
    batch
        .expect(SPACE_OAUTH_STATES, state.as_bytes(), Some(value.clone()))
        .delete(SPACE_OAUTH_STATES, state.as_bytes());
    match core.store.commit(batch).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => return Err(refused("unknown or already used")),
        Err(e) => return Err(e.into()),
    }
    let pending = decode(core, &value).ok_or_else(|| refused("unreadable"))?;
    if pending.expires_at <= now_secs() {
        return Err(refused("expired"));
    }
    Ok(pending)
}

/// `GET /oauth/callback?code=…&state=…`: finishes the authorization and redirects to the
/// dashboard page of the connection.
pub async fn callback(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, impl IntoResponse> {
    let html = wants_html(&headers);
    finish(&st, q)
        .await
        .map_err(|err| CallbackError { err, html })
}

async fn finish(st: &ApiState, q: CallbackQuery) -> Result<Response, ApiError> {
    let core = &st.core;
    let pending = consume(core, q.state.as_deref().unwrap_or("")).await?;
    let id = pending.connection_id;
    if let Some(error) = q.error.as_deref() {
        let detail = q.error_description.unwrap_or_default();
        tracing::info!(connection = id, error, "OAuth authorization not granted");
        let what = if error == ERROR_ACCESS_DENIED {
            "access was denied at the provider".to_string()
        } else {
            format!("the provider refused the authorization: {error} {detail}")
        };
        return Err(ApiError::bad_request(
            format!("{what}; connection {id} is unchanged"),
            format!("to connect the account, allow access when asked; {RESTART}"),
        ));
    }
    let code = q.code.as_deref().unwrap_or("");
    if code.is_empty() {
        return Err(ApiError::bad_request(
            "the callback carries no authorization code",
            RESTART,
        ));
    }
    let mut c = match core.connections.get(id).await? {
        Some(c) if c.user_id == pending.user_id || caller_is_admin(st, pending.user_id).await => c,
        _ => return Err(ApiError::not_found(format!("connection {id}"))),
    };
    let client = core
        .connector
        .oauth_client(c.provider)
        .map_err(ApiError::provider)?;
    // The token endpoint under the connector's private-network policy, like the providers'
    // requests: an IP literal checked here, names when resolved, every redirect hop.
    let network = core.connector.network_policy();
    let token_url = &client.endpoints.token_url;
    network
        .check_url(token_url)
        .map_err(|why| ApiError::provider(refused(token_url, &why)))?;
    let http = network.client_builder().build().map_err(internal)?;
    let tokens = client
        .exchange_code(&http, code, &pending.verifier)
        .await
        .map_err(|e| match e {
            OAuthError::InvalidGrant(_) | OAuthError::Refused { .. } => ApiError::bad_request(
                format!(
                    "{} refused the authorization code: {e}",
                    provider_name(c.provider)
                ),
                RESTART,
            ),
            other => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "exchanging the code at {} failed: {other}",
                    provider_name(c.provider)
                ),
                RESTART,
            ),
        })?;
    let Some(refresh) = tokens.refresh_token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "{} issued no refresh token, so the connection could not sync unattended",
                provider_name(c.provider)
            ),
            RESTART,
        ));
    };
    let mut creds = core.credentials(&c)?;
    creds.refresh_token = Some(refresh);
    save_credentials(st, &mut c, &creds).await?;
    tracing::info!(connection = id, "OAuth authorization completed");
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/connections/{id}"))],
    )
        .into_response())
}

/// An admin may authorize someone else's connection (the state remembers who started it).
async fn caller_is_admin(st: &ApiState, user_id: u64) -> bool {
    st.core
        .crm
        .get_user(user_id)
        .await
        .ok()
        .flatten()
        .is_some_and(|u| u.is_admin)
}

/// The callback route (outside `/api/v1`, without API authentication).
pub fn callback_router(state: ApiState) -> Router {
    Router::new()
        .route(CALLBACK_PATH, get(callback))
        .with_state(state)
}
