//! The REST API's error body: `{"success":false,"error":"…","error_info":"…"}`, where
//! `error` says what went wrong and `error_info` what to do about it; and the JSON body
//! extractor that turns malformed JSON into such a 400.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::crm::CrmError;
use crate::providers::ProviderError;
use crate::scheduler::SchedulerError;
use crate::service::ServiceError;
use crate::store::StoreError;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub error: String,
    /// What to fix.
    pub error_info: String,
    /// `Retry-After` seconds (429 after too many failed logins).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with its status, message and fix.
    pub fn new(status: StatusCode, error: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            error_info: fix.into(),
            retry_after: None,
        }
    }
    /// 429 after too many failed logins, with `Retry-After`.
    pub fn login_locked(left: std::time::Duration) -> Self {
        let secs = crate::server::auth::retry_after_secs(left);
        Self {
            retry_after: Some(secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins from this login or address",
                format!("wait {secs} s (Retry-After) and check the password"),
            )
        }
    }
    /// 404 for `what` (also used for things the caller may not see).
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("{what} not found"),
            "check the id; items you are not allowed to see are reported as not found",
        )
    }
    /// 422 with a fix.
    pub fn unprocessable(error: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, error, fix)
    }
    /// 400 with a fix.
    pub fn bad_request(error: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, fix)
    }
    /// 403 with a fix.
    pub fn forbidden(error: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error, fix)
    }
    /// 409 with a fix.
    pub fn conflict(error: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, error, fix)
    }
    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication required",
            "send HTTP Basic credentials (login and password or app password), \
             `Authorization: Bearer <token>` with an app-password token, or log in on the dashboard",
        )
    }
    /// A provider failure while talking to the account, as 502 (or 422/401-ish causes as 422).
    pub fn provider(e: ProviderError) -> Self {
        match e {
            ProviderError::CredentialsRejected | ProviderError::NeedsReauthorization(_) => {
                Self::unprocessable(
                    e.to_string(),
                    "update the connection's credentials (PUT /api/v1/connections/{id}/credentials)",
                )
            }
            ProviderError::Refused { .. } => Self::unprocessable(
                e.to_string(),
                "the address is on a loopback, private or link-local network: set \
                 allow_private_networks = true in the server's configuration to allow it, or \
                 use the server's public address",
            ),
            ProviderError::Unsupported(_) => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                e.to_string(),
                "the message names what to change: a setting of the connection or of the \
                 server (allow_private_networks, [oauth.*]), the server URL, or a provider this \
                 build does not have yet",
            ),
            _ => Self::new(
                StatusCode::BAD_GATEWAY,
                format!("the address book provider failed: {e}"),
                "check the server URL and that the provider is reachable, then retry",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(json!({
                "success": false,
                "error": self.error,
                "error_info": self.error_info,
            })),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"cardbridge\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        match e {
            StoreError::Conflict { .. } => Self::conflict(e.to_string(), "retry the request"),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal storage error",
                "retry later; the server log has the details",
            ),
        }
    }
}

impl From<CrmError> for ApiError {
    fn from(e: CrmError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let fix = match &e {
            CrmError::NotFound { .. } => "check the id",
            CrmError::VersionConflict { .. } => {
                "the person changed since you read it: read it again and resend with its current version"
            }
            CrmError::Concurrent(_) => "retry the request",
            CrmError::Visibility(_) => "choose one of the allowed visibility settings",
            CrmError::Role(_) => "choose an existing parent role that is not below this role",
            CrmError::RoleInUse(_) => "move the role's users to another role first",
            CrmError::LoginTaken(_) => "choose another login",
            CrmError::Credential(_) => "give a non-empty password",
            CrmError::FutureSeq { .. } => "ask an admin for access",
            CrmError::Store(_) => "retry later; the server log has the details",
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "CRM error");
            return Self::new(status, "internal error", fix);
        }
        Self::new(status, e.to_string(), fix)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(e) => e.into(),
            ServiceError::Crm(e) => e.into(),
            ServiceError::Scheduler(e) => e.into(),
            other => {
                tracing::error!(error = %other, "service error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    "retry later; the server log has the details",
                )
            }
        }
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::NotScheduled(_) => Self::conflict(
                e.to_string(),
                "press Start Syncing (POST /api/v1/connections/{id}/start) first",
            ),
            SchedulerError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                "retry after the server has restarted",
            ),
            SchedulerError::Store(e) => e.into(),
        }
    }
}

/// A JSON request body; malformed JSON is a 400, a wrong shape a 422, both saying what to fix.
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::bad_request(
                format!("malformed JSON: {}", e.body_text()),
                "send a valid JSON object",
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::unprocessable(
                format!("invalid request body: {}", e.body_text()),
                "see docs/API.md for the fields this endpoint takes",
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body is not JSON",
                "send `Content-Type: application/json`",
            )),
            Err(e) => Err(ApiError::bad_request(
                format!("cannot read the request body: {}", e.body_text()),
                "send a valid JSON object",
            )),
        }
    }
}
