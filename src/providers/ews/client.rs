//! The HTTP side of the EWS provider: one SOAP call = one `POST` to the EWS URL with the
//! `SOAPAction` header and Basic, NTLM (see [`super::ntlm`]) or bearer credentials; the shared retry policy of
//! [`crate::providers::http`] for HTTP 503/429 (`Retry-After`), timeouts and dropped
//! connections; EWS throttling (`ErrorServerBusy` as a SOAP fault or inside an HTTP 200, with
//! `BackOffMilliseconds`) waited out within the same bounded budget; and 401 as
//! [`ProviderError::NeedsReauthorization`] (after one token refresh for bearer auth; NTLM's
//! rejected AUTHENTICATE leg is [`ProviderError::CredentialsRejected`]).

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use std::sync::Arc;
use url::Url;

use crate::dav::xml::Element;
use crate::providers::http::{
    refused, retry_after, send_with_retry, status_error, AccessTokenSource, NetworkPolicy,
    RetryPolicy,
};
use crate::providers::ProviderError;

use super::names::{code, CONTENT_TYPE_SOAP, HEADER_ANCHOR_MAILBOX, HEADER_SOAP_ACTION};
use super::ntlm::{NtlmConnection, NtlmCredentials};
use super::soap::{self, EwsError};

/// How the provider authenticates.
#[derive(Clone)]
pub enum EwsAuth {
    /// HTTP Basic (RFC 7617); on-premises servers with Basic enabled.
    Basic {
        /// User name (`DOMAIN\user` or the UPN).
        username: String,
        /// Password.
        password: String,
    },
    /// NTLM (MS-NLMP, NTLMv2), the default of on-premises Exchange's EWS virtual directory;
    /// authenticates the connection (see [`super::ntlm`]).
    Ntlm {
        /// `DOMAIN\user` or the UPN.
        username: String,
        /// Password.
        password: String,
    },
    /// OAuth 2 bearer token (Exchange with modern auth).
    Bearer(Arc<dyn AccessTokenSource>),
}

impl std::fmt::Debug for EwsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EwsAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"…")
                .finish(),
            EwsAuth::Ntlm { username, .. } => f
                .debug_struct("Ntlm")
                .field("username", username)
                .field("password", &"…")
                .finish(),
            EwsAuth::Bearer(_) => f.write_str("Bearer(…)"),
        }
    }
}

/// The `Authorization` value for Basic credentials (RFC 7617 §2).
pub fn basic_header(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The `Authorization` header for `auth`, and the bearer token it carries (to invalidate on a
/// 401). NTLM has no per-request header: use an [`NtlmConnection`].
pub async fn authorization(auth: &EwsAuth) -> Result<(HeaderValue, Option<String>), ProviderError> {
    let (value, token) = match auth {
        EwsAuth::Basic { username, password } => (basic_header(username, password), None),
        EwsAuth::Ntlm { .. } => {
            return Err(ProviderError::Unsupported(
                "NTLM authenticates a connection, not a request".into(),
            ))
        }
        EwsAuth::Bearer(tokens) => {
            let token = tokens.access_token().await?;
            (format!("Bearer {token}"), Some(token))
        }
    };
    let value = HeaderValue::from_str(&value).map_err(|_| {
        ProviderError::NeedsReauthorization("credentials are not a valid header".into())
    })?;
    Ok((value, token))
}

/// Maps an EWS error code to the error the engine acts on.
pub fn ews_error(err: EwsError) -> ProviderError {
    if let Some(back_off) = err.back_off() {
        return ProviderError::Throttled {
            retry_after: back_off,
        };
    }
    let message = err.to_string();
    match err.code() {
        Some(code::IRRESOLVABLE_CONFLICT | code::STALE_OBJECT | code::INVALID_CHANGE_KEY) => {
            ProviderError::Conflict
        }
        Some(code::ITEM_NOT_FOUND | code::FOLDER_NOT_FOUND | code::SYNC_FOLDER_NOT_FOUND) => {
            ProviderError::NotFound
        }
        Some(code::ACCESS_DENIED) => ProviderError::Rejected {
            status: 403,
            message,
        },
        Some(_) => ProviderError::Rejected {
            status: 500,
            message,
        },
        None => ProviderError::Protocol(message),
    }
}

/// An authenticated EWS client for one endpoint.
pub struct EwsClient {
    http: reqwest::Client,
    url: Url,
    auth: EwsAuth,
    /// The authenticated connection when `auth` is NTLM.
    ntlm: Option<NtlmConnection>,
    anchor_mailbox: Option<String>,
    retry: RetryPolicy,
}

impl EwsClient {
    /// A client for the EWS endpoint `url` (`https://host/EWS/Exchange.asmx`), refused when
    /// `network` does not allow its address.
    pub fn new(
        http: reqwest::Client,
        url: &str,
        auth: EwsAuth,
        anchor_mailbox: Option<String>,
        retry: RetryPolicy,
        network: &NetworkPolicy,
    ) -> Result<Self, ProviderError> {
        let url = Url::parse(url)
            .map_err(|e| ProviderError::Unsupported(format!("invalid EWS URL {url}: {e}")))?;
        network.check_url(&url).map_err(|why| refused(&url, &why))?;
        let ntlm = match &auth {
            EwsAuth::Ntlm { username, password } => Some(NtlmConnection::with_network(
                NtlmCredentials::new(username, password),
                network,
            )?),
            _ => None,
        };
        Ok(Self {
            http,
            url,
            auth,
            ntlm,
            anchor_mailbox,
            retry,
        })
    }

    /// The endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Performs one SOAP call (`request` is a whole envelope from [`soap`]) and returns the
    /// SOAP `Body`. Throttling is retried per the policy; what remains is an error.
    pub async fn call(&self, operation: &str, request: &str) -> Result<Element, ProviderError> {
        let action = soap::soap_action(operation);
        let mut refreshed = false;
        let mut busy_attempts = 0u32;
        let soap_post = |http: &reqwest::Client| {
            let mut req = http
                .post(self.url.clone())
                .header(CONTENT_TYPE, CONTENT_TYPE_SOAP)
                .header(HEADER_SOAP_ACTION, action.as_str())
                .body(request.to_string());
            if let Some(mbx) = &self.anchor_mailbox {
                req = req.header(HEADER_ANCHOR_MAILBOX, mbx.as_str());
            }
            req
        };
        loop {
            let (resp, token) = match &self.ntlm {
                Some(ntlm) => (ntlm.send(&self.retry, &soap_post).await?, None),
                None => {
                    let (auth, token) = authorization(&self.auth).await?;
                    let resp = send_with_retry(&self.retry, || {
                        soap_post(&self.http).header(AUTHORIZATION, auth.clone())
                    })
                    .await?;
                    (resp, token)
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            if status == StatusCode::UNAUTHORIZED {
                if let (EwsAuth::Bearer(tokens), Some(token), false) =
                    (&self.auth, &token, refreshed)
                {
                    tracing::debug!("EWS answered 401; refreshing the access token once");
                    tokens.invalidate(token).await;
                    refreshed = true;
                    continue;
                }
                return Err(ProviderError::NeedsReauthorization(
                    "the Exchange server rejected the credentials (HTTP 401)".into(),
                ));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| ProviderError::Transport(e.to_string()))?;
            let parsed = soap::parse_body(&bytes);
            // Throttling: a fault (HTTP 500) or a response message (HTTP 200).
            let busy = match &parsed {
                Err(e) => e.back_off(),
                Ok(body) => soap::busy_message(body).and_then(|e| e.back_off()),
            };
            if let Some(back_off) = busy {
                busy_attempts += 1;
                if busy_attempts >= self.retry.max_attempts {
                    return Err(ProviderError::Throttled {
                        retry_after: back_off,
                    });
                }
                let wait = self.retry.delay(busy_attempts, back_off);
                tracing::debug!(?wait, operation, "EWS server busy; backing off");
                tokio::time::sleep(wait).await;
                continue;
            }
            return match parsed {
                Ok(body) if status.is_success() => Ok(body),
                Ok(_) => Err(status_error(
                    status,
                    retry_after(&headers),
                    &String::from_utf8_lossy(&bytes),
                )),
                Err(EwsError::Xml(e)) if !status.is_success() => Err(status_error(
                    status,
                    retry_after(&headers),
                    &format!("{e}: {}", String::from_utf8_lossy(&bytes)),
                )),
                Err(e) => Err(ews_error(e)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_is_rfc7617() {
        assert_eq!(
            basic_header("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn codes_map_to_engine_errors() {
        let resp = |c: &str| EwsError::Response {
            code: c.into(),
            message: String::new(),
            back_off: None,
        };
        assert!(matches!(
            ews_error(resp(code::IRRESOLVABLE_CONFLICT)),
            ProviderError::Conflict
        ));
        assert!(matches!(
            ews_error(resp(code::ITEM_NOT_FOUND)),
            ProviderError::NotFound
        ));
        assert!(matches!(
            ews_error(resp(code::SERVER_BUSY)),
            ProviderError::Throttled { retry_after: None }
        ));
        assert!(matches!(
            ews_error(EwsError::Shape("x".into())),
            ProviderError::Protocol(_)
        ));
    }
}
