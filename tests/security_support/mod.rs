//! Shared scaffolding of the security suites: the whole service as `cardbridge serve` wires it
//! (REST API, dashboard and CardDAV server over ONE `Crm`), driven in process, plus raw
//! request helpers that return status, headers and body.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../api_support/mod.rs"]
pub mod api_support;

use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use cardbridge::crm::Crm;
use cardbridge::server::api::auth::AuthState;
use cardbridge::server::auth::AuthConfig;
use cardbridge::server::ServerConfig;
use cardbridge::service::{ApiState, ServiceBuilder};
use http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt as _;

/// The service under test.
pub struct Svc {
    /// The combined router.
    pub app: axum::Router,
    /// The shared CRM.
    pub crm: Arc<Crm>,
    /// The API state (connections, secrets, auth state).
    pub api: ApiState,
}

/// An answer.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// `Authorization: Basic …`.
pub fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// Builds the service over `builder` (a fresh in-memory store unless the caller chose one),
/// with these CardDAV settings and, when given, this login throttle for the API — which the
/// CardDAV server shares, as in `cardbridge serve` ([`cardbridge::service::full_app`]).
pub async fn service_with(
    builder: ServiceBuilder,
    dav: ServerConfig,
    api_auth: Option<AuthConfig>,
) -> Svc {
    let mut api = builder
        .connector(Arc::new(api_support::FakeConnector))
        .runner(Arc::new(api_support::ScriptedRunner::default()))
        .start()
        .await
        .unwrap();
    if let Some(c) = api_auth {
        api.auth = Arc::new(AuthState::with_config(c));
    }
    let crm = Arc::new(api.core.crm.clone());
    // As `serve` does: the CardDAV server counts failed logins in the API's throttle.
    let app = cardbridge::service::full_app(api.clone(), dav);
    Svc { app, crm, api }
}

/// The service over a fresh in-memory store with default settings.
pub async fn service() -> Svc {
    service_with(
        ServiceBuilder::new(Arc::new(api_support::MapStore::default())),
        ServerConfig::default(),
        None,
    )
    .await
}

impl Svc {
    /// Adds a user without a role.
    pub async fn add_user(&self, login: &str, password: &str) -> cardbridge::crm::User {
        self.crm
            .create_user(cardbridge::crm::repo::NewUser {
                login: login.into(),
                name: login.into(),
                email: format!("{login}@example.com"),
                role_id: None,
                is_admin: false,
                password: password.into(),
            })
            .await
            .unwrap()
    }

    /// Sends one request.
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A request as `user` (password `pw`), with extra headers and a body.
    pub async fn req(
        &self,
        auth: (&str, &str),
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("Authorization", basic(auth.0, auth.1));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(body.into()).unwrap()).await
    }

    /// A DAV request built by a client half of `cardbridge::dav`.
    pub async fn dav(&self, auth: (&str, &str), req: http::Request<String>) -> Resp {
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .insert("Authorization", basic(auth.0, auth.1).parse().unwrap());
        self.send(Request::from_parts(parts, Body::from(body)))
            .await
    }

    /// A JSON API call.
    pub async fn json(
        &self,
        auth: (&str, &str),
        method: &str,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> Resp {
        match body {
            Some(v) => {
                self.req(
                    auth,
                    method,
                    uri,
                    &[("Content-Type", "application/json")],
                    v.to_string(),
                )
                .await
            }
            None => self.req(auth, method, uri, &[], Body::empty()).await,
        }
    }
}
