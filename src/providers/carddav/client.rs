//! The CardDAV transport: [`DavClient`], one reqwest client with the connection's credentials
//! (Basic, Digest per RFC 7616 via the `digest_auth` crate, or Bearer), the shared retry policy
//! of [`crate::providers::http`], DAV methods (`PROPFIND`, `REPORT`) built by [`crate::dav`], and
//! the rule of where credentials may go: the configured origin and the hosts the profile names
//! (iCloud's `pNN-contacts.icloud.com` partitions), never anywhere else. Redirects are followed
//! here, by hand, so that rule also holds across redirects, and so does the connection's
//! [`NetworkPolicy`] (the SSRF guard): every URL sent to, each redirect hop included, is checked,
//! and host names are screened when they are resolved for the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::dav::multistatus::Multistatus;
use crate::dav::names;
use crate::dav::propfind::Propfind;
use crate::providers::http::{
    refused, retry_after, send_with_retry, status_error, NetworkPolicy, RetryPolicy,
};
use crate::providers::ProviderError;

/// RFC 9110 §11.6.1 `WWW-Authenticate`.
pub const HEADER_WWW_AUTHENTICATE: &str = "www-authenticate";
/// RFC 9110 §11.6.2 `Authorization`.
pub const HEADER_AUTHORIZATION: &str = "authorization";
/// RFC 9110 §8.8.3 `ETag`.
pub const HEADER_ETAG: &str = "etag";
/// RFC 7616 §3.3 auth scheme `Digest`.
pub const SCHEME_DIGEST: &str = "digest";
/// RFC 7617 §2 auth scheme `Basic`.
pub const SCHEME_BASIC: &str = "Basic";
/// RFC 6750 §2.1 auth scheme `Bearer`.
pub const SCHEME_BEARER: &str = "Bearer";
/// How many redirects one request follows (RFC 9110 §15.4 leaves the bound to the client).
pub const MAX_REDIRECTS: usize = 5;
/// Largest response body read into memory.
pub const MAX_BODY: usize = crate::dav::xml::Limits::RESPONSE_MAX_BYTES;

/// The credentials of a connection.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (e.g. a local Xandikos).
    None,
    /// RFC 7617 Basic (iCloud app-specific passwords, most servers).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// RFC 7616 Digest (older sabre/Baïkal setups), answered after the server's challenge.
    Digest {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// RFC 6750 Bearer token.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Basic { user, .. } => write!(f, "Auth::Basic({user})"),
            Auth::Digest { user, .. } => write!(f, "Auth::Digest({user})"),
            Auth::Bearer(_) => f.write_str("Auth::Bearer(..)"),
        }
    }
}

/// A host pattern that may receive credentials besides the configured origin: `*` matches any
/// run of characters in the host (`p*-contacts.icloud.com`); an optional `:port` must match too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(pub String);

impl HostPattern {
    /// True when `url`'s host (and port, if the pattern names one) matches.
    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let (host_pat, port_pat) = match self.0.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
            _ => (self.0.as_str(), None),
        };
        if let Some(p) = port_pat {
            if url
                .port_or_known_default()
                .map(|x| x.to_string())
                .as_deref()
                != Some(p)
            {
                return false;
            }
        }
        glob(&host_pat.to_ascii_lowercase(), &host.to_ascii_lowercase())
    }
}

fn glob(pat: &str, text: &str) -> bool {
    match pat.split_once('*') {
        None => pat == text,
        Some((head, rest)) => {
            let Some(mut tail) = text.strip_prefix(head) else {
                return false;
            };
            loop {
                if glob(rest, tail) {
                    return true;
                }
                let mut chars = tail.chars();
                // `*` never spans a dot: it stands for one label part.
                match chars.next() {
                    None | Some('.') => return false,
                    Some(_) => tail = chars.as_str(),
                }
            }
        }
    }
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct DavResponse {
    /// The final URL (after redirects).
    pub url: Url,
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl DavResponse {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error this (non-success) response stands for.
    pub fn error(&self) -> ProviderError {
        status_error(
            self.status,
            retry_after(&self.headers),
            &String::from_utf8_lossy(&self.body),
        )
    }

    /// Reads the body as a multistatus; a non-207/2xx status is an error.
    pub fn multistatus(&self) -> Result<Multistatus, ProviderError> {
        if !self.status.is_success() {
            return Err(self.error());
        }
        Multistatus::parse(&self.body)
            .map_err(|e| ProviderError::Protocol(format!("{}: {e}", self.url)))
    }
}

/// The DAV transport of one connection.
#[derive(Debug)]
pub struct DavClient {
    http: reqwest::Client,
    auth: Auth,
    origin: Url,
    credential_hosts: Vec<HostPattern>,
    policy: RetryPolicy,
    network: NetworkPolicy,
    digest: Mutex<Option<digest_auth::WwwAuthenticateHeader>>,
    requests: AtomicU64,
}

/// The reqwest client of a [`DavClient`]: no automatic redirects (they are followed by hand),
/// and, unless the policy allows every address, its resolver screening every name.
fn http_client(network: &NetworkPolicy) -> Result<reqwest::Client, ProviderError> {
    network
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("cardbridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProviderError::Transport(e.to_string()))
}

impl DavClient {
    /// A client for the server at `origin` (its scheme, host and port receive the credentials).
    /// It may reach any address; a connection whose URL a user gave sets the configured policy
    /// with [`DavClient::with_network_policy`].
    pub fn new(origin: Url, auth: Auth) -> Result<Self, ProviderError> {
        let network = NetworkPolicy::unrestricted();
        Ok(Self {
            http: http_client(&network)?,
            auth,
            origin,
            credential_hosts: Vec::new(),
            policy: RetryPolicy::default(),
            network,
            digest: Mutex::new(None),
            requests: AtomicU64::new(0),
        })
    }

    /// Only reach the addresses `network` permits: every URL sent to (redirect targets
    /// included) and every address a host name resolves to is checked.
    pub fn with_network_policy(mut self, network: NetworkPolicy) -> Result<Self, ProviderError> {
        self.http = http_client(&network)?;
        self.network = network;
        Ok(self)
    }

    /// Also send credentials to hosts matching these patterns (a profile's partition hosts).
    pub fn with_credential_hosts(mut self, hosts: Vec<HostPattern>) -> Self {
        self.credential_hosts = hosts;
        self
    }

    /// Use this retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The configured origin.
    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// How many HTTP requests went out so far (retries and redirects included).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// True when `url` may receive this connection's credentials.
    pub fn may_send_credentials(&self, url: &Url) -> bool {
        same_origin(url, &self.origin) || self.credential_hosts.iter().any(|p| p.matches(url))
    }

    /// PROPFIND `url` with `propfind` (Content-Type always set: Xandikos answers 415 without it).
    pub async fn propfind(
        &self,
        url: &Url,
        propfind: &Propfind,
    ) -> Result<DavResponse, ProviderError> {
        let headers = xml_headers(Some(propfind.depth.as_str()));
        self.send(
            names::METHOD_PROPFIND,
            url,
            headers,
            xml_body(propfind.body()),
        )
        .await
    }

    /// Sends a request the pure DAV layer built (method, headers, body); its URI is ignored in
    /// favour of `url`. Content-Type is kept (the DAV layer always sets it).
    pub async fn send_dav(
        &self,
        url: &Url,
        req: http::Request<String>,
    ) -> Result<DavResponse, ProviderError> {
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        if !headers.contains_key(http::header::CONTENT_TYPE) {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(names::CONTENT_TYPE_XML),
            );
        }
        self.send(parts.method.as_str(), url, headers, Bytes::from(body))
            .await
    }

    /// One request with retries, redirects (credentials only where allowed) and authentication.
    /// Returns any final response, success or not, except 401, which is
    /// [`ProviderError::CredentialsRejected`].
    pub async fn send(
        &self,
        method: &str,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<DavResponse, ProviderError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| ProviderError::Protocol(format!("bad method {method}: {e}")))?;
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            // The first URL and every redirect target (a 30x to 169.254.169.254 or to a
            // loopback service is the classic SSRF path); names are screened at connect.
            self.network
                .check_url(&url)
                .map_err(|why| refused(&url, &why))?;
            let resp = self.send_once(&method, &url, &headers, &body).await?;
            if resp.status.is_redirection() && resp.status != StatusCode::NOT_MODIFIED {
                if let Some(next) = resp.header(names::HEADER_LOCATION) {
                    let next = url.join(next).map_err(|e| {
                        ProviderError::Protocol(format!("bad Location {next}: {e}"))
                    })?;
                    tracing::debug!(from = %url, to = %next, "following redirect");
                    url = next;
                    continue;
                }
            }
            return Ok(resp);
        }
        Err(ProviderError::Protocol(format!(
            "more than {MAX_REDIRECTS} redirects from {url}"
        )))
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<DavResponse, ProviderError> {
        let creds = self.may_send_credentials(url);
        let mut challenged = false;
        loop {
            let authz = if creds {
                self.authorization(method, url, body)
            } else {
                None
            };
            let sent_credentials = authz.is_some();
            let resp = self.attempt(method, url, headers, body, authz).await?;
            if resp.status != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            // A Digest challenge is answered once; anything else is a rejection.
            if creds && !challenged && matches!(self.auth, Auth::Digest { .. }) {
                if let Some(challenge) = digest_challenge(&resp.headers) {
                    if let Ok(parsed) = digest_auth::parse(&challenge) {
                        if let Ok(mut g) = self.digest.lock() {
                            *g = Some(parsed);
                        }
                        challenged = true;
                        continue;
                    }
                }
            }
            if !creds && !sent_credentials && !matches!(self.auth, Auth::None) {
                tracing::warn!(%url, "401 from a host that may not receive our credentials");
            }
            return Err(ProviderError::CredentialsRejected);
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Bytes,
        authz: Option<HeaderValue>,
    ) -> Result<DavResponse, ProviderError> {
        // A body that breaks off mid-way (dropped connection) is retried like a failed send.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let resp = send_with_retry(&self.policy, || {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let mut b = self
                    .http
                    .request(method.clone(), url.clone())
                    .headers(headers.clone())
                    .body(body.clone());
                if let Some(a) = &authz {
                    b = b.header(HEADER_AUTHORIZATION, a.clone());
                }
                b
            })
            .await?;
            let status = resp.status();
            let resp_headers = resp.headers().clone();
            let final_url = url.clone();
            match read_body(resp).await {
                Ok(body) => {
                    return Ok(DavResponse {
                        url: final_url,
                        status,
                        headers: resp_headers,
                        body,
                    })
                }
                Err(e) if attempts < self.policy.max_attempts => {
                    let wait = self.policy.delay(attempts, None);
                    tracing::debug!(error = %e, ?wait, "retrying after a broken body");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn authorization(&self, method: &Method, url: &Url, body: &Bytes) -> Option<HeaderValue> {
        use base64::Engine as _;
        match &self.auth {
            Auth::None => None,
            Auth::Basic { user, password } => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                HeaderValue::from_str(&format!("{SCHEME_BASIC} {token}")).ok()
            }
            Auth::Bearer(token) => HeaderValue::from_str(&format!("{SCHEME_BEARER} {token}")).ok(),
            Auth::Digest { user, password } => {
                let mut guard = self.digest.lock().ok()?;
                let challenge = guard.as_mut()?;
                let mut uri = url.path().to_string();
                if let Some(q) = url.query() {
                    uri.push('?');
                    uri.push_str(q);
                }
                let ctx = digest_auth::AuthContext::new_with_method(
                    user.as_str(),
                    password.as_str(),
                    uri,
                    Some(body.as_ref()),
                    digest_auth::HttpMethod::from(method.as_str().to_string()),
                );
                let answer = challenge.respond(&ctx).ok()?;
                HeaderValue::from_str(&answer.to_header_string()).ok()
            }
        }
    }
}

async fn read_body(resp: reqwest::Response) -> Result<Bytes, ProviderError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ProviderError::Protocol(format!(
            "response body larger than {MAX_BODY} bytes"
        )));
    }
    resp.bytes()
        .await
        .map_err(|e| ProviderError::Transport(e.to_string()))
}

fn digest_challenge(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(HEADER_WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| {
            v.trim_start()
                .get(..SCHEME_DIGEST.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME_DIGEST))
        })
        .map(str::to_string)
}

/// True when both URLs have the same scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

fn xml_body(s: String) -> Bytes {
    Bytes::from(s)
}

/// Headers for an XML-bodied request (Content-Type and an optional Depth).
pub fn xml_headers(depth: Option<&'static str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(names::CONTENT_TYPE_XML),
    );
    if let Some(d) = depth {
        h.insert(
            HeaderName::from_static("depth"),
            HeaderValue::from_static(d),
        );
    }
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partition_pattern_matches_only_partitions() {
        let p = HostPattern("p*-contacts.icloud.com".into());
        assert!(
            p.matches(&Url::parse("https://p42-contacts.icloud.com:443/1/carddavhome/").unwrap())
        );
        assert!(p.matches(&Url::parse("https://P07-CONTACTS.icloud.com/").unwrap()));
        assert!(!p.matches(&Url::parse("https://evil.com/p42-contacts.icloud.com").unwrap()));
        assert!(!p.matches(&Url::parse("https://p42-contacts.icloud.com.evil.com/").unwrap()));
        assert!(!p.matches(&Url::parse("https://x.p42-contacts.icloud.com/").unwrap()));
        assert!(!p.matches(&Url::parse("https://p4.2-contacts.icloud.com/").unwrap()));
        let with_port = HostPattern("127.0.0.2:8443".into());
        assert!(with_port.matches(&Url::parse("http://127.0.0.2:8443/").unwrap()));
        assert!(!with_port.matches(&Url::parse("http://127.0.0.2:8444/").unwrap()));
    }

    #[test]
    fn credentials_go_to_origin_and_partitions_only() {
        let c = DavClient::new(
            Url::parse("https://contacts.icloud.com/").unwrap(),
            Auth::Basic {
                user: "u".into(),
                password: "p".into(),
            },
        )
        .unwrap()
        .with_credential_hosts(vec![HostPattern("p*-contacts.icloud.com".into())]);
        assert!(c.may_send_credentials(&Url::parse("https://contacts.icloud.com:443/x").unwrap()));
        assert!(c.may_send_credentials(&Url::parse("https://p3-contacts.icloud.com/x").unwrap()));
        assert!(!c.may_send_credentials(&Url::parse("http://contacts.icloud.com/x").unwrap()));
        assert!(!c.may_send_credentials(&Url::parse("https://attacker.example/").unwrap()));
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let a = Auth::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer("tok".into())).contains("tok"));
    }
}
