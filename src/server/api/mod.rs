//! The REST API under `/api/v1` (JSON, Pipedrive-like envelopes): persons with visibility
//! applied on every call, admin (users, app passwords, roles, company plan), connections
//! (create, sync groups, settings, field-mapping preview, start, refresh, status, conflicts,
//! delete), and the OAuth start/callback of Google and Graph connections ([`oauth`]). Documented in `docs/API.md` and `docs/openapi.yaml`.
//!
//! Success: `{"success":true,"data":…}` (lists add
//! `"additional_data":{"pagination":{"next_cursor":…,"limit":…}}`). Errors:
//! `{"success":false,"error":"…","error_info":"…"}` ([`error::ApiError`]).

pub mod admin;
pub mod auth;
pub mod connections;
pub mod error;
pub mod oauth;
pub mod persons;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::Serialize;
use serde_json::json;

use crate::scheduler::Scheduler;
use crate::service::Core;
use error::ApiError;

/// The path prefix of the API.
pub const PREFIX: &str = "/api/v1";

/// The API's shared state. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// CRM, store, connections, providers, engine, metrics.
    pub core: Arc<Core>,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// Sessions and the credential cache.
    pub auth: Arc<auth::AuthState>,
}

impl ApiState {
    /// State over a started core and scheduler.
    pub fn new(core: Arc<Core>, scheduler: Scheduler) -> Self {
        Self {
            core,
            scheduler,
            auth: Arc::new(auth::AuthState::default()),
        }
    }
}

/// `{"success":true,"data":data}` with `status`.
pub fn ok_with<T: Serialize>(status: StatusCode, data: T) -> Response {
    (status, axum::Json(json!({"success": true, "data": data}))).into_response()
}

/// `{"success":true,"data":data}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    ok_with(StatusCode::OK, data)
}

/// A page with its cursor.
pub fn ok_page<T: Serialize>(data: T, next_cursor: Option<String>, limit: usize) -> Response {
    axum::Json(json!({
        "success": true,
        "data": data,
        "additional_data": {"pagination": {"next_cursor": next_cursor, "limit": limit}},
    }))
    .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such API endpoint",
        "see docs/API.md for the endpoints under /api/v1",
    )
}

/// The API router (mounted at `/api/v1`).
pub fn router(state: ApiState) -> Router {
    let callback = oauth::callback_router(state.clone());
    let api = Router::new()
        .route("/persons", get(persons::list).post(persons::create))
        .route(
            "/persons/{id}",
            get(persons::get_one)
                .patch(persons::update)
                .put(persons::update)
                .delete(persons::remove),
        )
        .route("/me", get(admin::me))
        .route("/me/password", put(admin::set_my_password))
        .route(
            "/me/app-passwords",
            get(admin::my_app_passwords).post(admin::create_my_app_password),
        )
        .route(
            "/me/app-passwords/{pid}",
            delete(admin::revoke_my_app_password),
        )
        .route("/company", get(admin::company))
        .route(
            "/admin/company",
            get(admin::company).put(admin::set_company),
        )
        .route(
            "/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route(
            "/admin/users/{id}",
            get(admin::get_user)
                .patch(admin::update_user)
                .delete(admin::delete_user),
        )
        .route("/admin/users/{id}/password", put(admin::set_user_password))
        .route(
            "/admin/users/{id}/app-passwords",
            post(admin::create_user_app_password),
        )
        .route(
            "/admin/users/{id}/app-passwords/{pid}",
            delete(admin::revoke_user_app_password),
        )
        .route(
            "/admin/roles",
            get(admin::list_roles).post(admin::create_role),
        )
        .route(
            "/admin/roles/{id}",
            axum::routing::patch(admin::update_role).delete(admin::delete_role),
        )
        .route(
            "/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/connections/{id}",
            get(connections::get_one).delete(connections::remove),
        )
        .route(
            "/connections/{id}/sync-groups",
            get(connections::sync_groups),
        )
        .route(
            "/connections/{id}/settings",
            get(connections::get_settings)
                .patch(connections::update_settings)
                .put(connections::update_settings),
        )
        .route(
            "/connections/{id}/credentials",
            put(connections::set_credentials),
        )
        .route(
            "/connections/{id}/mapping-preview",
            get(connections::mapping_preview),
        )
        .route("/connections/{id}/oauth/start", post(oauth::start))
        .route("/connections/{id}/start", post(connections::start))
        .route("/connections/{id}/refresh", post(connections::refresh))
        .route("/connections/{id}/runs", get(connections::runs))
        .route("/connections/{id}/runs/{run_id}", get(connections::run))
        .route("/connections/{id}/status", get(connections::status))
        .route("/connections/{id}/conflicts", get(connections::conflicts))
        .fallback(not_found)
        .with_state(state);
    Router::new().nest(PREFIX, api).merge(callback)
}
