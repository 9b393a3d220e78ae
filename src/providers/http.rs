//! The HTTP transport every provider shares: one retry policy for throttling (429), server
//! overload (503, 502, 504), timeouts and dropped connections, honouring `Retry-After`, always
//! bounded; and the mapping of final statuses to [`ProviderError`].
//!
//! A 401 is never retried here: it is reported as credentials rejected, or handed back to an
//! OAuth token source to refresh once (see [`AccessTokenSource`]).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{RequestBuilder, Response, StatusCode};

use super::ProviderError;

/// `Retry-After`, RFC 9110 §10.2.3.
pub const RETRY_AFTER: &str = "retry-after";

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry when the server gave none; doubled each time.
    pub base_delay: Duration,
    /// No single wait is longer than this, whatever `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry (probes such as Autodiscover candidates, where the next
    /// candidate is the retry).
    pub fn once() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before retry number `attempt` (1-based), given the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        retry_after.unwrap_or(backoff).min(self.max_delay)
    }
}

/// Parses `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// True for statuses worth retrying with the same request.
pub fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Sends the request built by `build` (called once per attempt), retrying per `policy`.
/// Returns the first response that is not retryable, or the last one when attempts run out;
/// transport errors become [`ProviderError::Transport`] once attempts run out.
pub async fn send_with_retry(
    policy: &RetryPolicy,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, ProviderError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt >= policy.max_attempts;
        match build().send().await {
            Ok(resp) if is_retryable(resp.status()) && !last => {
                let wait = policy.delay(attempt, retry_after(resp.headers()));
                tracing::debug!(status = %resp.status(), ?wait, attempt, "retrying after server asked to");
                tokio::time::sleep(wait).await;
            }
            Ok(resp) => return Ok(resp),
            Err(err) if (err.is_timeout() || err.is_connect() || err.is_request()) && !last => {
                let wait = policy.delay(attempt, None);
                tracing::debug!(error = %err, ?wait, attempt, "retrying after transport failure");
                tokio::time::sleep(wait).await;
            }
            Err(err) => return Err(ProviderError::Transport(err.to_string())),
        }
    }
}

/// Maps a final non-success status to the error the engine acts on. `body` is the response
/// text, kept (shortened) as the message.
pub fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> ProviderError {
    let message: String = body.chars().take(500).collect();
    match status.as_u16() {
        401 => ProviderError::CredentialsRejected,
        404 | 410 => ProviderError::NotFound,
        409 | 412 => ProviderError::Conflict,
        429 => ProviderError::Throttled { retry_after },
        s @ 500..=599 => ProviderError::Server { status: s, message },
        s => ProviderError::Rejected { status: s, message },
    }
}

/// Where OAuth-based providers get their bearer token.
#[async_trait]
pub trait AccessTokenSource: Send + Sync {
    /// A currently valid access token (refreshed before it expires).
    async fn access_token(&self) -> Result<String, ProviderError>;
    /// The provider got a 401 with `token`: drop it so the next call refreshes.
    async fn invalidate(&self, token: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_prefers_retry_after_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        assert_eq!(p.delay(1, None), Duration::from_millis(100));
        assert_eq!(p.delay(3, None), Duration::from_millis(400));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(120))),
            Duration::from_secs(2)
        );
        assert_eq!(p.delay(40, None), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("soon"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert!(matches!(
            status_error(StatusCode::UNAUTHORIZED, None, ""),
            ProviderError::CredentialsRejected
        ));
        assert!(matches!(
            status_error(StatusCode::PRECONDITION_FAILED, None, ""),
            ProviderError::Conflict
        ));
        assert!(matches!(
            status_error(StatusCode::FORBIDDEN, None, "no N"),
            ProviderError::Rejected { status: 403, .. }
        ));
        assert!(matches!(
            status_error(StatusCode::SERVICE_UNAVAILABLE, None, ""),
            ProviderError::Server { status: 503, .. }
        ));
    }
}
