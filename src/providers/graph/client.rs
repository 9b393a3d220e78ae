//! The HTTP side of the Graph provider: bearer auth with one refresh on 401, the shared retry
//! policy (429 `Retry-After`, 5xx) from [`crate::providers::http`], the per-mailbox cap of
//! [`MAX_CONCURRENT_PER_MAILBOX`] requests in flight, Graph error bodies, and the check that
//! server-supplied links (`@odata.nextLink`, `@odata.deltaLink`) stay on the configured host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use url::Url;

use crate::providers::http::{
    retry_after, send_with_retry, status_error, AccessTokenSource, RetryPolicy,
};
use crate::providers::ProviderError;

/// Graph throttling: at most 4 concurrent requests per app per mailbox
/// (`concepts/throttling-limits.md`, Outlook service limits).
pub const MAX_CONCURRENT_PER_MAILBOX: usize = 4;

/// `Prefer` (RFC 7240 §2); Graph reads `odata.maxpagesize=N` from it on delta calls.
pub const PREFER: HeaderName = HeaderName::from_static("prefer");
/// `If-Match` (RFC 9110 §13.1.1), carrying `@odata.etag` on PATCH/DELETE.
pub const IF_MATCH: HeaderName = HeaderName::from_static("if-match");

/// The global registry of per-mailbox semaphores: every provider (every sync group, every
/// connection) talking to the same mailbox on the same Graph host shares one.
fn registry() -> &'static Mutex<HashMap<String, Weak<Semaphore>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Semaphore>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The semaphore shared by all requests to `mailbox` at the Graph host of `base`.
pub fn mailbox_limiter(base: &Url, mailbox: &str) -> Arc<Semaphore> {
    let key = format!(
        "{}|{}",
        base.origin().ascii_serialization(),
        mailbox.trim().to_lowercase()
    );
    // A poisoned lock only means another thread panicked while inserting; the map is fine.
    let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(sem) = map.get(&key).and_then(Weak::upgrade) {
        return sem;
    }
    let sem = Arc::new(Semaphore::new(MAX_CONCURRENT_PER_MAILBOX));
    map.insert(key, Arc::downgrade(&sem));
    sem
}

/// A Graph error body: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GraphErrorBody {
    /// The error.
    #[serde(default)]
    pub error: GraphErrorDetail,
}

/// The `error` member.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GraphErrorDetail {
    /// E.g. `SyncStateNotFound`, `ErrorIrresolvableConflict`, `ApplicationThrottled`.
    #[serde(default)]
    pub code: String,
    /// Human-readable text.
    #[serde(default)]
    pub message: String,
}

/// A finished response, body read.
#[derive(Debug)]
pub struct GraphResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body text.
    pub body: String,
}

impl GraphResponse {
    /// The Graph error code, when the body is a Graph error.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_str::<GraphErrorBody>(&self.body)
            .ok()
            .map(|b| b.error.code)
            .filter(|c| !c.is_empty())
    }

    /// The error the engine acts on for this (non-success) response.
    pub fn into_error(self) -> ProviderError {
        let message = match serde_json::from_str::<GraphErrorBody>(&self.body) {
            Ok(b) if !b.error.code.is_empty() => format!("{}: {}", b.error.code, b.error.message),
            _ => self.body.clone(),
        };
        status_error(self.status, retry_after(&self.headers), &message)
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, ProviderError> {
        serde_json::from_str(&self.body)
            .map_err(|e| ProviderError::Protocol(format!("invalid JSON from Graph: {e}")))
    }
}

/// An authenticated, throttled Graph HTTP client for one mailbox.
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    tokens: Arc<dyn AccessTokenSource>,
    limiter: Arc<Semaphore>,
    retry: RetryPolicy,
}

impl GraphClient {
    /// `base` is the service root including the version, e.g. `https://graph.microsoft.com/v1.0`
    /// (national clouds: `https://graph.microsoft.us/v1.0`, `https://microsoftgraph.chinacloudapi.cn/v1.0`).
    pub fn new(
        http: reqwest::Client,
        base: &str,
        mailbox: &str,
        tokens: Arc<dyn AccessTokenSource>,
        retry: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let mut base = Url::parse(base).map_err(|e| {
            ProviderError::Unsupported(format!("invalid Graph base URL {base}: {e}"))
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let limiter = mailbox_limiter(&base, mailbox);
        Ok(Self {
            http,
            base,
            tokens,
            limiter,
            retry,
        })
    }

    /// The service root (always ending in `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` joined with path segments where the `id` segments are encoded whole (an item id
    /// may contain `/`).
    pub fn url_with_ids(&self, segments: &[Segment<'_>]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for s in segments {
                match s {
                    Segment::Path(p) => {
                        path.extend(p.split('/').filter(|p| !p.is_empty()));
                    }
                    Segment::Id(id) => {
                        path.push(id);
                    }
                }
            }
        }
        url
    }

    /// Refuses a server-supplied link that leaves the configured Graph host (the bearer token
    /// must never go elsewhere).
    pub fn check_link(&self, link: &str) -> Result<Url, ProviderError> {
        let url = Url::parse(link)
            .map_err(|e| ProviderError::Protocol(format!("invalid link {link}: {e}")))?;
        if url.origin() != self.base.origin() {
            return Err(ProviderError::Protocol(format!(
                "link {link} leaves the Graph host {}",
                self.base.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// Sends one request: waits for a mailbox slot, adds the bearer token, retries per the
    /// policy, and on a 401 invalidates the token and tries once more with a fresh one.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        headers: &[(HeaderName, String)],
        body: Option<&Value>,
    ) -> Result<GraphResponse, ProviderError> {
        let body = body.map(|b| RawBody {
            content_type: MEDIA_JSON.to_string(),
            bytes: b.to_string().into_bytes(),
        });
        let raw = self.send_raw(method, url, headers, body.as_ref()).await?;
        Ok(GraphResponse {
            status: raw.status,
            headers: raw.headers,
            body: String::from_utf8_lossy(&raw.body).into_owned(),
        })
    }

    /// Like [`GraphClient::send`] with a body of any media type (a photo) and the answer's bytes
    /// as they came (`photo/$value` is binary, not base64). Same mailbox cap, retries and
    /// token refresh.
    pub async fn send_raw(
        &self,
        method: Method,
        url: Url,
        headers: &[(HeaderName, String)],
        body: Option<&RawBody>,
    ) -> Result<RawResponse, ProviderError> {
        let _permit = self
            .limiter
            .acquire()
            .await
            .map_err(|_| ProviderError::Transport("mailbox limiter closed".into()))?;
        let mut refreshed = false;
        loop {
            let token = self.tokens.access_token().await?;
            let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ProviderError::CredentialsRejected)?;
            let resp = send_with_retry(&self.retry, || {
                let mut req = self
                    .http
                    .request(method.clone(), url.clone())
                    .header(AUTHORIZATION, bearer.clone());
                for (name, value) in headers {
                    req = req.header(name, value.as_str());
                }
                if let Some(body) = body {
                    req = req
                        .header(CONTENT_TYPE, body.content_type.as_str())
                        .body(body.bytes.clone());
                }
                req
            })
            .await?;
            if resp.status() == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::debug!("Graph answered 401; refreshing the access token once");
                self.tokens.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| ProviderError::Transport(e.to_string()))?;
            return Ok(RawResponse {
                status,
                headers,
                body,
            });
        }
    }
}

/// `application/json` (RFC 8259 §11), the media type of every Graph JSON body.
pub const MEDIA_JSON: &str = "application/json";

/// A request body of any media type.
#[derive(Debug, Clone)]
pub struct RawBody {
    /// Its `Content-Type`.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A finished response whose body is kept as bytes.
#[derive(Debug)]
pub struct RawResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: bytes::Bytes,
}

impl RawResponse {
    /// The error the engine acts on for this (non-success) response.
    pub fn into_error(self) -> ProviderError {
        GraphResponse {
            status: self.status,
            headers: self.headers,
            body: String::from_utf8_lossy(&self.body).into_owned(),
        }
        .into_error()
    }

    /// The `Content-Type` header, if readable.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
    }
}

/// One part of a request path.
#[derive(Debug, Clone, Copy)]
pub enum Segment<'a> {
    /// Literal path segments, `/`-separated.
    Path(&'a str),
    /// An id, encoded as a single segment.
    Id(&'a str),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limiter_is_shared_per_mailbox_and_host() {
        let a = Url::parse("https://graph.example/v1.0/").unwrap();
        let b = Url::parse("https://graph.example/beta/").unwrap();
        let c = Url::parse("https://graph.other.example/v1.0/").unwrap();
        let s1 = mailbox_limiter(&a, "Jane@Contoso.com");
        let s2 = mailbox_limiter(&b, "jane@contoso.com");
        let s3 = mailbox_limiter(&c, "jane@contoso.com");
        let s4 = mailbox_limiter(&a, "pat@contoso.com");
        assert!(Arc::ptr_eq(&s1, &s2));
        assert!(!Arc::ptr_eq(&s1, &s3));
        assert!(!Arc::ptr_eq(&s1, &s4));
        assert_eq!(s1.available_permits(), MAX_CONCURRENT_PER_MAILBOX);
    }

    #[test]
    fn error_bodies_are_read() {
        let r = GraphResponse {
            status: StatusCode::GONE,
            headers: HeaderMap::new(),
            body: r#"{"error":{"code":"SyncStateNotFound","message":"gone"}}"#.into(),
        };
        assert_eq!(r.error_code().as_deref(), Some("SyncStateNotFound"));
        let r = GraphResponse {
            status: StatusCode::PRECONDITION_FAILED,
            headers: HeaderMap::new(),
            body: r#"{"error":{"code":"ErrorIrresolvableConflict","message":"x"}}"#.into(),
        };
        assert!(matches!(r.into_error(), ProviderError::Conflict));
    }
}
