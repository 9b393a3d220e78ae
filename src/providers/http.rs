//! The HTTP transport every provider shares: one retry policy for throttling (429), server
//! overload (503, 502, 504), timeouts and dropped connections, honouring `Retry-After`, always
//! bounded; and the mapping of final statuses to [`ProviderError`].
//!
//! A 401 is never retried here: it is reported as credentials rejected, or handed back to an
//! OAuth token source to refresh once (see [`AccessTokenSource`]).
//!
//! Also the SSRF guard at the transport ([`NetworkPolicy`], issue #8 "SSRF"): which addresses a
//! request may reach, checked on every URL a client sends to (each redirect hop included) for
//! IP-literal hosts, and at connect time by [`PolicyResolver`] for host names, so a redirect,
//! or a name that resolves differently on the second lookup, cannot lead a request to a
//! loopback, private or link-local address the configuration does not allow.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{RequestBuilder, Response, StatusCode};
use url::Url;

use super::ProviderError;
use crate::config::{is_private, UrlPolicyError};

/// Which network addresses a provider's requests may reach (issue #8 "SSRF"; `config.rs` holds
/// the address classes, [`is_private`]).
#[derive(Clone, Default)]
pub struct NetworkPolicy {
    /// Loopback, private, link-local, … addresses are allowed (`allow_private_networks`).
    pub allow_private: bool,
    /// Private addresses allowed even when `allow_private` is false: exactly these addresses
    /// (an on-premises server, or a test's loopback peer), nothing else on their networks.
    pub allowed_addresses: Vec<IpAddr>,
    /// The name lookup behind [`PolicyResolver`] (`None`: the system resolver). Tests give a
    /// fixed table so that a public-looking name can resolve to a private address.
    pub lookup: Option<Arc<dyn Resolve>>,
}

impl std::fmt::Debug for NetworkPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkPolicy")
            .field("allow_private", &self.allow_private)
            .field("allowed_addresses", &self.allowed_addresses)
            .field("lookup", &self.lookup.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl NetworkPolicy {
    /// Every address allowed (what a client built without a policy does; the CLI's own
    /// commands and the tests that talk to local peers).
    pub fn unrestricted() -> Self {
        Self {
            allow_private: true,
            ..Self::default()
        }
    }

    /// Private networks allowed or not, per the configuration's `allow_private_networks`.
    pub fn from_config(allow_private_networks: bool) -> Self {
        Self {
            allow_private: allow_private_networks,
            ..Self::default()
        }
    }

    /// Also allow exactly these private addresses.
    pub fn allowing(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.allowed_addresses.extend(addresses);
        self
    }

    /// Resolve names with `lookup` instead of the system resolver.
    pub fn with_lookup(mut self, lookup: Arc<dyn Resolve>) -> Self {
        self.lookup = Some(lookup);
        self
    }

    /// True when nothing is refused (no resolver needs to screen names).
    pub fn is_unrestricted(&self) -> bool {
        self.allow_private
    }

    /// True when a request may reach `addr`.
    pub fn permits(&self, addr: IpAddr) -> bool {
        self.allow_private || !is_private(addr) || self.allowed_addresses.contains(&addr)
    }

    /// Checks what can be checked without resolving: the scheme (http/https only), and the
    /// address of an IP-literal host (or `localhost`, `*.localhost`). Other host names are
    /// screened when the connection is made ([`PolicyResolver`]).
    pub fn check_url(&self, url: &Url) -> Result<(), UrlPolicyError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlPolicyError::Scheme(url.scheme().to_string()));
        }
        let host = url.host().ok_or(UrlPolicyError::NoHost)?;
        let addr = match &host {
            url::Host::Ipv4(a) => IpAddr::V4(*a),
            url::Host::Ipv6(a) => IpAddr::V6(*a),
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    return Ok(());
                }
            }
        };
        if self.permits(addr) {
            Ok(())
        } else {
            Err(UrlPolicyError::Private {
                host: host.to_string(),
                addr,
            })
        }
    }

    /// The addresses `host` resolved to, refused as a whole when ANY of them is not permitted
    /// (so a name cannot smuggle a private address in among public ones).
    pub fn screen(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, UrlPolicyError> {
        if let Some(bad) = addrs.iter().find(|a| !self.permits(a.ip())) {
            return Err(UrlPolicyError::Private {
                host: host.to_string(),
                addr: bad.ip(),
            });
        }
        Ok(addrs)
    }

    /// [`NetworkPolicy::check_url`], then a host name is resolved (with the policy's lookup)
    /// and refused when ANY of its addresses is not permitted, or when it does not resolve.
    /// For URLs checked before a request is built (configured endpoints, Autodiscover
    /// candidates); the requests themselves are screened again at connect.
    pub async fn check_url_resolved(&self, url: &Url) -> Result<(), UrlPolicyError> {
        self.check_url(url)?;
        if self.is_unrestricted() {
            return Ok(());
        }
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        let unresolved = |reason: String| UrlPolicyError::Resolve {
            host: host.to_string(),
            reason,
        };
        let name: Name = host.parse().map_err(|e| unresolved(format!("{e}")))?;
        match self.resolver().resolve(name).await {
            Ok(_) => Ok(()),
            Err(e) => Err(match refusal_in(e.as_ref()) {
                Some(refused) => refused.clone(),
                None => unresolved(e.to_string()),
            }),
        }
    }

    /// The resolver a reqwest client built under this policy uses.
    pub fn resolver(&self) -> PolicyResolver {
        PolicyResolver {
            policy: self.clone(),
        }
    }

    /// A reqwest client builder under this policy: its resolver screens every name it connects
    /// to ([`PolicyResolver`], unless every address is allowed) and its redirect policy checks
    /// every hop ([`NetworkPolicy::redirect_policy`]). The providers' shared client and the
    /// CardDAV transport (which then follows redirects by hand) both start from it. A request's
    /// first URL is the caller's to check when it is an IP literal (names are screened here).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let b = reqwest::Client::builder().redirect(self.redirect_policy());
        if self.is_unrestricted() {
            b
        } else {
            b.dns_resolver(Arc::new(self.resolver()))
        }
    }

    /// At most [`MAX_REDIRECTS`] redirects, each target checked with
    /// [`NetworkPolicy::check_url`] before it is requested: a refused hop ends the request
    /// with [`RedirectRefused`] (which [`send_with_retry`] turns into
    /// [`ProviderError::Refused`]).
    pub fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let policy = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                let error = format!("more than {MAX_REDIRECTS} redirects");
                return attempt.error(error);
            }
            match policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(reason) => {
                    let url = attempt.url().clone();
                    attempt.error(RedirectRefused { url, reason })
                }
            }
        })
    }
}

/// At most this many redirects per request on a client built under a [`NetworkPolicy`].
pub const MAX_REDIRECTS: usize = 10;

/// A redirect the [`NetworkPolicy`] refused to follow: the error a policy-built client's
/// redirect policy ends the request with (reqwest reports the hop it came from; this names
/// the target).
#[derive(Debug, Clone, thiserror::Error)]
#[error("redirect to {url} refused: {reason}")]
pub struct RedirectRefused {
    /// The redirect target that was not requested.
    pub url: Url,
    /// Why.
    #[source]
    pub reason: UrlPolicyError,
}

/// A reqwest DNS resolver that resolves (with the policy's lookup, else the system's) and
/// refuses a name any of whose addresses the [`NetworkPolicy`] does not permit. Every
/// connection a client makes goes through it, redirect targets included, and it screens the
/// addresses actually connected to (no gap between a check and a second lookup).
#[derive(Clone, Debug)]
pub struct PolicyResolver {
    policy: NetworkPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = match &policy.lookup {
                Some(lookup) => lookup.resolve(name).await?.collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let addrs = policy.screen(&host, addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The policy refusal behind a transport error, if that is what it is (the resolver's error
/// comes back wrapped by reqwest and hyper).
pub fn refusal_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a UrlPolicyError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(refused) = e.downcast_ref::<UrlPolicyError>() {
            return Some(refused);
        }
        cur = e.source();
    }
    None
}

/// The error a request refused by the [`NetworkPolicy`] ends with: not retried, and naming the
/// URL, the address and the setting.
pub fn refused(url: &Url, why: &UrlPolicyError) -> ProviderError {
    ProviderError::Refused {
        url: url.to_string(),
        reason: why.clone(),
    }
}

/// The [`ProviderError::Refused`] a transport error stands for, when the policy refused it
/// (a redirect hop, or a name the resolver screened); `None` for any other failure.
pub fn refusal_of(err: &reqwest::Error) -> Option<ProviderError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(hop) = e.downcast_ref::<RedirectRefused>() {
            return Some(refused(&hop.url, &hop.reason));
        }
        cur = e.source();
    }
    let why = refusal_in(err)?;
    Some(match err.url() {
        Some(url) => refused(url, why),
        None => ProviderError::Refused {
            url: String::new(),
            reason: why.clone(),
        },
    })
}

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
            Err(err) if refusal_in(&err).is_some() => {
                return Err(refusal_of(&err).unwrap_or(ProviderError::Transport(err.to_string())));
            }
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
#[allow(clippy::unwrap_used, clippy::expect_used)]
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
    fn private_network_policy_per_allow_private_networks() {
        let strict = NetworkPolicy::from_config(false);
        let open = NetworkPolicy::from_config(true);
        for u in [
            "http://127.0.0.1:5232/",
            "http://localhost/",
            "https://10.1.2.3/",
            "https://192.168.0.1/",
            "https://172.16.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
        ] {
            let url = Url::parse(u).unwrap();
            assert!(
                matches!(strict.check_url(&url), Err(UrlPolicyError::Private { .. })),
                "{u}"
            );
            assert!(open.check_url(&url).is_ok(), "{u}");
        }
        for u in [
            "https://93.184.216.34/",
            "https://contacts.example.com/dav/",
        ] {
            assert!(strict.check_url(&Url::parse(u).unwrap()).is_ok(), "{u}");
        }
        assert!(matches!(
            open.check_url(&Url::parse("file:///etc/passwd").unwrap()),
            Err(UrlPolicyError::Scheme(_))
        ));
        let e = strict
            .check_url(&Url::parse("http://127.0.0.1/").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("allow_private_networks"), "{e}");
    }

    #[tokio::test]
    async fn resolved_names_are_checked_too() {
        let url = Url::parse("http://localhost.:8080/").unwrap();
        assert!(NetworkPolicy::from_config(false)
            .check_url_resolved(&url)
            .await
            .is_err());
    }

    #[test]
    fn network_policy_checks_literals_and_screens_resolved_names() {
        let u = |s: &str| Url::parse(s).unwrap();
        let strict = NetworkPolicy::from_config(false);
        for bad in [
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/",
            "http://[::ffff:10.0.0.1]/",
            "http://0x7f000001/",
            "http://LOCALHOST./",
            "http://a.localhost:8080/",
        ] {
            assert!(
                matches!(
                    strict.check_url(&u(bad)),
                    Err(UrlPolicyError::Private { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            strict.check_url(&u("file:///etc/passwd")),
            Err(UrlPolicyError::Scheme(_))
        ));
        assert!(strict.check_url(&u("https://93.184.215.14/")).is_ok());
        // Names are left to the resolver.
        assert!(strict.check_url(&u("https://dav.example.com/")).is_ok());

        // Exactly the allowed address, not its neighbours or other spellings' networks.
        let one = NetworkPolicy::from_config(false).allowing(["127.0.0.1".parse().unwrap()]);
        assert!(one.check_url(&u("http://127.0.0.1:5232/")).is_ok());
        assert!(one.check_url(&u("http://localhost:5232/")).is_ok());
        assert!(one.check_url(&u("http://127.0.0.2/")).is_err());
        assert!(one.check_url(&u("http://[::1]/")).is_err());

        let sa = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert!(strict.screen("a", vec![sa("93.184.215.14:443")]).is_ok());
        // One private address among public ones refuses the name.
        let mixed = strict.screen("a", vec![sa("93.184.215.14:443"), sa("10.0.0.1:443")]);
        assert!(
            matches!(mixed, Err(UrlPolicyError::Private { ref addr, .. }) if addr.to_string() == "10.0.0.1"),
            "{mixed:?}"
        );
        assert!(NetworkPolicy::unrestricted()
            .screen("a", vec![sa("10.0.0.1:443")])
            .is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_a_private_address() {
        struct Fixed;
        impl Resolve for Fixed {
            fn resolve(&self, _name: Name) -> Resolving {
                Box::pin(async {
                    Ok(Box::new(std::iter::once(SocketAddr::from(([10, 1, 2, 3], 0)))) as Addrs)
                })
            }
        }
        let policy = NetworkPolicy::from_config(false).with_lookup(Arc::new(Fixed));
        let name: Name = "intranet.example.test".parse().unwrap();
        let err = match policy.resolver().resolve(name).await {
            Ok(_) => panic!("a private address passed the resolver"),
            Err(e) => e,
        };
        let why = refusal_in(err.as_ref()).expect("the refusal is recognisable");
        assert!(why.to_string().contains("10.1.2.3"), "{why}");
        let open = NetworkPolicy::unrestricted().with_lookup(Arc::new(Fixed));
        let name: Name = "intranet.example.test".parse().unwrap();
        assert!(open.resolver().resolve(name).await.is_ok());
    }

    #[tokio::test]
    async fn check_url_resolved_screens_names_with_the_policy_lookup() {
        struct Table;
        impl Resolve for Table {
            fn resolve(&self, name: Name) -> Resolving {
                let ip: Option<IpAddr> = match name.as_str() {
                    "metadata.example.test" => Some([169, 254, 169, 254].into()),
                    "public.example.test" => Some([93, 184, 215, 14].into()),
                    _ => None,
                };
                Box::pin(async move {
                    let ip = ip.ok_or("no such name")?;
                    Ok(Box::new(std::iter::once(SocketAddr::new(ip, 0))) as Addrs)
                })
            }
        }
        let u = |s: &str| Url::parse(s).unwrap();
        let strict = NetworkPolicy::from_config(false).with_lookup(Arc::new(Table));
        let private = strict
            .check_url_resolved(&u("https://metadata.example.test/latest/"))
            .await;
        assert!(
            matches!(&private, Err(UrlPolicyError::Private { addr, .. }) if addr.to_string() == "169.254.169.254"),
            "{private:?}"
        );
        assert!(strict
            .check_url_resolved(&u("https://public.example.test/"))
            .await
            .is_ok());
        assert!(matches!(
            strict
                .check_url_resolved(&u("https://nowhere.example.test/"))
                .await,
            Err(UrlPolicyError::Resolve { .. })
        ));
        assert!(matches!(
            strict.check_url_resolved(&u("https://10.0.0.1/")).await,
            Err(UrlPolicyError::Private { .. })
        ));
        let open = NetworkPolicy::unrestricted().with_lookup(Arc::new(Table));
        assert!(open
            .check_url_resolved(&u("https://metadata.example.test/"))
            .await
            .is_ok());
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
