//! The HTTP service: [`app`] builds the router from an [`AppState`]. The CardDAV server lives in
//! [`carddav`] (mounted at `/dav/` and `/.well-known/carddav`), HTTP Basic authentication and
//! the login throttle in [`auth`]. The REST API (`/api/v1`) and the dashboard are sibling
//! modules added next to these and merged into the same router.
//!
//! Serve it with client addresses so that the login throttle can count per address:
//! `axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>())`.
//! Without connect info (e.g. `tower::ServiceExt::oneshot` in tests) only the per-login
//! counter applies.

pub mod api;
pub mod auth;
pub mod carddav;
pub mod dashboard;

use std::sync::Arc;

use crate::crm::{Crm, MappingConfig, Visibility};

/// Settings of the HTTP service.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// RFC 6352 §6.2.3 `max-resource-size`: the largest card a PUT may store, in bytes.
    pub max_resource_size: usize,
    /// The visibility of persons created over CardDAV; when the plan does not offer it, the
    /// plan's narrowest offered setting is used.
    pub default_visibility: Option<Visibility>,
    /// How vCard properties map to person fields.
    pub mapping: MappingConfig,
    /// The login throttle and credential cache.
    pub auth: auth::AuthConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_resource_size: 1024 * 1024,
            default_visibility: None,
            mapping: MappingConfig::default(),
            auth: auth::AuthConfig::default(),
        }
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The CRM (its store also holds the server's own state).
    pub crm: Arc<Crm>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// The authenticator (throttle and credential cache).
    pub auth: Arc<auth::Authenticator>,
    /// The CardDAV server's state (names, client cards, per-user views).
    pub dav: carddav::data::Data,
}

impl AppState {
    /// State over a CRM with these settings.
    pub fn new(crm: Arc<Crm>, config: ServerConfig) -> Self {
        let throttle = Arc::new(auth::Throttle::new(config.auth.clone()));
        Self::with_throttle(crm, config, throttle)
    }

    /// State whose Basic logins count their failures in `throttle`, shared with the REST API
    /// and the dashboard (`cardbridge serve` passes the API's).
    pub fn with_throttle(
        crm: Arc<Crm>,
        config: ServerConfig,
        throttle: Arc<auth::Throttle>,
    ) -> Self {
        let authn = auth::Authenticator::with_throttle(config.auth.clone(), throttle);
        Self {
            dav: carddav::data::Data::new((*crm).clone()),
            crm,
            config: Arc::new(config),
            auth: Arc::new(authn),
        }
    }
}

/// The whole HTTP service.
pub fn app(state: AppState) -> axum::Router {
    carddav::router(state)
}
