//! The People API wire layer: URLs, query parameters, the JSON envelopes
//! (`ListConnectionsResponse`, `ListContactGroupsResponse`, the Google error body) and one
//! authenticated request helper that retries throttling through [`http::send_with_retry`],
//! refreshes the bearer once on a 401, and classifies errors (expired sync token, stale
//! etag) for the provider.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use url::Url;

use super::mapping::Person;
use crate::providers::http::{self, AccessTokenSource, RetryPolicy};
use crate::providers::ProviderError;

/// The production People API root.
pub const DEFAULT_BASE_URL: &str = "https://people.googleapis.com/";

/// `personFields` query parameter (people.connections.list, people.get).
pub const Q_PERSON_FIELDS: &str = "personFields";
/// `pageSize` query parameter (1–1000).
pub const Q_PAGE_SIZE: &str = "pageSize";
/// `pageToken` query parameter.
pub const Q_PAGE_TOKEN: &str = "pageToken";
/// `requestSyncToken` query parameter.
pub const Q_REQUEST_SYNC_TOKEN: &str = "requestSyncToken";
/// `syncToken` query parameter.
pub const Q_SYNC_TOKEN: &str = "syncToken";
/// `updatePersonFields` query parameter (people.updateContact).
pub const Q_UPDATE_PERSON_FIELDS: &str = "updatePersonFields";
/// `groupFields` query parameter (contactGroups.list).
pub const Q_GROUP_FIELDS: &str = "groupFields";

/// `status` of a failed precondition (expired sync token, stale etag).
pub const STATUS_FAILED_PRECONDITION: &str = "FAILED_PRECONDITION";
/// `details[].reason` of an expired sync token.
pub const REASON_EXPIRED_SYNC_TOKEN: &str = "EXPIRED_SYNC_TOKEN";
/// Legacy `errors[].reason` of a failed precondition (stale etag).
pub const REASON_FAILED_PRECONDITION: &str = "failedPrecondition";

/// `people.connections.list` answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListConnectionsResponse {
    /// The page's people, kept raw so one unreadable person does not sink the page.
    #[serde(default)]
    pub connections: Vec<serde_json::Value>,
    /// More pages follow.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// Only on the last page.
    #[serde(default)]
    pub next_sync_token: Option<String>,
    /// Total number of items in the list (without paging).
    #[serde(default)]
    pub total_items: Option<u64>,
}

/// `ContactGroup`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactGroup {
    /// `contactGroups/…`.
    pub resource_name: String,
    /// Group etag.
    #[serde(default)]
    pub etag: Option<String>,
    /// The group name (system groups: `myContacts`, `starred`, …).
    #[serde(default)]
    pub name: Option<String>,
    /// Localized name.
    #[serde(default)]
    pub formatted_name: Option<String>,
    /// `USER_CONTACT_GROUP` or `SYSTEM_CONTACT_GROUP`.
    #[serde(default)]
    pub group_type: Option<String>,
    /// Number of members.
    #[serde(default)]
    pub member_count: Option<u64>,
}

/// `contactGroups.list` answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListContactGroupsResponse {
    /// The groups on this page.
    #[serde(default)]
    pub contact_groups: Vec<ContactGroup>,
    /// More pages follow.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// Sync token for group changes.
    #[serde(default)]
    pub next_sync_token: Option<String>,
}

/// Google's JSON error envelope (`google.rpc.Status` plus the legacy `errors` list).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The body of [`ErrorEnvelope`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    /// HTTP status.
    #[serde(default)]
    pub code: u16,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Canonical code, e.g. `FAILED_PRECONDITION`.
    #[serde(default)]
    pub status: Option<String>,
    /// `google.rpc.ErrorInfo` and friends.
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
    /// Legacy per-error list (`reason: failedPrecondition`).
    #[serde(default)]
    pub errors: Vec<LegacyError>,
}

/// One `details[]` item.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorDetail {
    /// `type.googleapis.com/google.rpc.ErrorInfo`, …
    #[serde(default, rename = "@type")]
    pub kind: Option<String>,
    /// Machine-readable reason.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One legacy `errors[]` item.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LegacyError {
    /// e.g. `failedPrecondition`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A classified People API failure.
#[derive(Debug)]
pub enum GoogleError {
    /// 400 `FAILED_PRECONDITION` / `EXPIRED_SYNC_TOKEN`: start a full sync.
    ExpiredSyncToken,
    /// 400 `FAILED_PRECONDITION` (or legacy `failedPrecondition`) otherwise: stale etag.
    FailedPrecondition(String),
    /// Everything else.
    Other(ProviderError),
}

impl From<ProviderError> for GoogleError {
    fn from(e: ProviderError) -> Self {
        GoogleError::Other(e)
    }
}

impl GoogleError {
    /// Maps to the engine's error; a failed precondition on a write is a conflict.
    pub fn into_provider(self) -> ProviderError {
        match self {
            GoogleError::ExpiredSyncToken => ProviderError::Rejected {
                status: 400,
                message: "sync token expired".into(),
            },
            GoogleError::FailedPrecondition(_) => ProviderError::Conflict,
            GoogleError::Other(e) => e,
        }
    }
}

/// Classifies a non-success answer.
pub fn classify(
    status: StatusCode,
    retry_after: Option<std::time::Duration>,
    body: &str,
) -> GoogleError {
    if status == StatusCode::BAD_REQUEST {
        if let Ok(env) = serde_json::from_str::<ErrorEnvelope>(body) {
            let e = env.error;
            if e.details
                .iter()
                .any(|d| d.reason.as_deref() == Some(REASON_EXPIRED_SYNC_TOKEN))
            {
                return GoogleError::ExpiredSyncToken;
            }
            if e.status.as_deref() == Some(STATUS_FAILED_PRECONDITION)
                || e.errors
                    .iter()
                    .any(|x| x.reason.as_deref() == Some(REASON_FAILED_PRECONDITION))
            {
                return GoogleError::FailedPrecondition(e.message);
            }
        }
    }
    GoogleError::Other(http::status_error(status, retry_after, body))
}

/// Authenticated People API calls.
#[derive(Clone)]
pub struct PeopleClient {
    http: reqwest::Client,
    base: Url,
    tokens: Arc<dyn AccessTokenSource>,
    retry: RetryPolicy,
}

impl PeopleClient {
    /// A client for `base` (the API root, e.g. [`DEFAULT_BASE_URL`]).
    pub fn new(
        http: reqwest::Client,
        base: Url,
        tokens: Arc<dyn AccessTokenSource>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            http,
            base,
            tokens,
            retry,
        }
    }

    /// `base` + `v1/` + `path` (path may contain `people/c1:updateContact`).
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ProviderError> {
        let mut url = self
            .base
            .join(&format!("v1/{path}"))
            .map_err(|e| ProviderError::Protocol(format!("bad URL for {path}: {e}")))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Sends one request and decodes the JSON answer. Throttling is retried per policy; a
    /// 401 invalidates the bearer and is retried exactly once with a fresh one.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<T, GoogleError> {
        let text = self.call_raw(method, url, body).await?;
        let text = if text.trim().is_empty() { "{}" } else { &text };
        serde_json::from_str(text)
            .map_err(|e| GoogleError::Other(ProviderError::Protocol(e.to_string())))
    }

    /// Like [`PeopleClient::call`] but returns the raw body.
    pub async fn call_raw(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<String, GoogleError> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.access_token().await?;
            let resp = http::send_with_retry(&self.retry, || {
                let req = self
                    .http
                    .request(method.clone(), url.clone())
                    .bearer_auth(&token);
                match body {
                    Some(b) => req.json(b),
                    None => req,
                }
            })
            .await?;
            let status = resp.status();
            let wait = http::retry_after(resp.headers());
            let text = resp
                .text()
                .await
                .map_err(|e| ProviderError::Transport(e.to_string()))?;
            if status.is_success() {
                return Ok(text);
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::debug!("People API said 401; refreshing the access token once");
                self.tokens.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            return Err(classify(status, wait, &text));
        }
    }

    /// One page of `people/me/connections`.
    pub async fn list_connections(
        &self,
        query: &[(&str, String)],
    ) -> Result<ListConnectionsResponse, GoogleError> {
        let url = self.url("people/me/connections", query)?;
        self.call(Method::GET, url, None).await
    }

    /// One person (`people.get`); `None` on 404.
    pub async fn get_person(
        &self,
        resource_name: &str,
        person_fields: &str,
    ) -> Result<Option<Person>, GoogleError> {
        let url = self.url(
            resource_name,
            &[(Q_PERSON_FIELDS, person_fields.to_string())],
        )?;
        match self.call(Method::GET, url, None).await {
            Ok(p) => Ok(Some(p)),
            Err(GoogleError::Other(ProviderError::NotFound)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_expired_token_stale_etag_and_throttling() {
        let expired = r#"{"error":{"code":400,"message":"Sync token is expired. Clear local cache and retry call without the sync token.","status":"FAILED_PRECONDITION","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"EXPIRED_SYNC_TOKEN","domain":"people.googleapis.com"}]}}"#;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, expired),
            GoogleError::ExpiredSyncToken
        ));
        let stale = r#"{"error":{"code":400,"message":"Request person.etag is different than the current person.etag.","errors":[{"message":"x","domain":"global","reason":"failedPrecondition"}],"status":"FAILED_PRECONDITION"}}"#;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, stale).into_provider(),
            ProviderError::Conflict
        ));
        let invalid = r#"{"error":{"code":400,"message":"personFields mask is required","status":"INVALID_ARGUMENT"}}"#;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, invalid).into_provider(),
            ProviderError::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, None, "{}").into_provider(),
            ProviderError::Throttled { .. }
        ));
    }
}
