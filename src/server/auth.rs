//! HTTP Basic authentication (RFC 7617) for the CardDAV server: the user's argon2 password or
//! one of their app passwords, checked through [`Crm::authenticate`].
//!
//! - **401** answers carry `WWW-Authenticate: Basic realm="cardbridge", charset="UTF-8"`.
//! - **Failed logins are slowed down** per login name and per client address: after the n-th
//!   consecutive failure the next attempt from that login or address waits
//!   `base · 2^(n-1)`, capped at `max` (both in [`AuthConfig`]). A success clears the login's and
//!   the address's counters. Entries expire after `forget_after` of quiet.
//! - **A verified credential is cached** (keyed by SHA-256 of login and secret, never the secret
//!   itself) for `cache_ttl`, so DAV clients that send Basic on every request do not pay argon2
//!   each time. The user record is read again on every request, so role and admin changes apply
//!   at once; a changed password or revoked app password stops working after `cache_ttl` at most.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::crm::{Crm, CrmError, User};

/// RFC 7235 §4.1 `WWW-Authenticate` header.
pub const HEADER_WWW_AUTHENTICATE: &str = "WWW-Authenticate";
/// The challenge we send (RFC 7617 §2, with §2.1 `charset`).
pub const BASIC_CHALLENGE: &str = "Basic realm=\"cardbridge\", charset=\"UTF-8\"";
/// RFC 7617 §2 scheme name.
pub const SCHEME_BASIC: &str = "Basic";

/// Tuning of the login throttle and the credential cache.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Delay after the first failure.
    pub base_delay: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
    /// Counters are forgotten after this long without failures.
    pub forget_after: Duration,
    /// How long a verified credential is trusted without running argon2 again.
    pub cache_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(16),
            forget_after: Duration::from_secs(15 * 60),
            cache_ttl: Duration::from_secs(300),
        }
    }
}

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No or unreadable `Authorization` header.
    #[error("missing or malformed Basic credentials")]
    Missing,
    /// Wrong login or secret.
    #[error("invalid credentials")]
    Invalid,
    /// The CRM failed.
    #[error(transparent)]
    Crm(#[from] CrmError),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The authenticator: throttle state and credential cache. Share one per server.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    failures: Mutex<HashMap<String, Failures>>,
    cache: Mutex<HashMap<[u8; 32], (u64, Instant)>>,
}

/// Reads `Authorization: Basic …` into (login, secret).
pub fn parse_basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case(SCHEME_BASIC) {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (login, secret) = text.split_once(':')?;
    Some((login.to_string(), secret.to_string()))
}

/// The header value of the challenge.
pub fn challenge() -> HeaderValue {
    HeaderValue::from_static(BASIC_CHALLENGE)
}

impl Authenticator {
    /// A fresh authenticator.
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            failures: Mutex::default(),
            cache: Mutex::default(),
        }
    }

    /// The delay owed before checking a login from `addr` (the larger of the two counters).
    pub fn delay_for(&self, login: &str, addr: Option<IpAddr>) -> Duration {
        let now = Instant::now();
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let d = |k: &str| -> Duration {
            match f.get(k) {
                Some(x) if now.duration_since(x.last) < self.config.forget_after => {
                    self.delay_after(x.count)
                }
                _ => Duration::ZERO,
            }
        };
        let a = addr.map(|a| d(&addr_key(a))).unwrap_or_default();
        d(&login_key(login)).max(a)
    }

    /// The delay after `n` consecutive failures: 0, base, 2·base, 4·base, … ≤ max.
    pub fn delay_after(&self, n: u32) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.config
            .base_delay
            .saturating_mul(factor)
            .min(self.config.max_delay)
    }

    fn record(&self, login: &str, addr: Option<IpAddr>, ok: bool) {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.retain(|_, v| now.duration_since(v.last) < self.config.forget_after);
        let mut keys = vec![login_key(login)];
        if let Some(a) = addr {
            keys.push(addr_key(a));
        }
        for k in keys {
            if ok {
                f.remove(&k);
            } else {
                let e = f.entry(k).or_insert(Failures {
                    count: 0,
                    last: now,
                });
                e.count = e.count.saturating_add(1);
                e.last = now;
            }
        }
    }

    /// Authenticates a request: waits the owed delay, checks the credentials (cache first),
    /// records the outcome. Returns the current user record.
    pub async fn authenticate(
        &self,
        crm: &Crm,
        headers: &HeaderMap,
        addr: Option<IpAddr>,
    ) -> Result<User, AuthError> {
        let (login, secret) = parse_basic(headers).ok_or(AuthError::Missing)?;
        let ck = cache_key(&login, &secret);
        let cached = {
            let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            c.get(&ck)
                .filter(|(_, at)| at.elapsed() < self.config.cache_ttl)
                .map(|(id, _)| *id)
        };
        if let Some(id) = cached {
            if let Some(u) = crm.get_user(id).await? {
                if u.login == login {
                    return Ok(u);
                }
            }
        }
        let delay = self.delay_for(&login, addr);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match crm.authenticate(&login, &secret).await? {
            Some((user, _)) => {
                self.record(&login, addr, true);
                let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                let ttl = self.config.cache_ttl;
                c.retain(|_, (_, at)| at.elapsed() < ttl);
                c.insert(ck, (user.id, Instant::now()));
                Ok(user)
            }
            None => {
                self.record(&login, addr, false);
                Err(AuthError::Invalid)
            }
        }
    }
}

fn login_key(login: &str) -> String {
    format!("u:{login}")
}

fn addr_key(a: IpAddr) -> String {
    format!("a:{a}")
}

fn cache_key(login: &str, secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(login.as_bytes());
    h.update([0]);
    h.update(secret.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(AuthConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            forget_after: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(60),
        })
    }

    #[test]
    fn delay_doubles_and_is_bounded() {
        let a = auth();
        let ms: Vec<u128> = (0..8).map(|n| a.delay_after(n).as_millis()).collect();
        assert_eq!(ms, vec![0, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(a.delay_after(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn failures_count_per_login_and_per_address_and_success_clears() {
        let a = auth();
        let ip: IpAddr = "127.0.0.7".parse().unwrap();
        let other: IpAddr = "127.0.0.8".parse().unwrap();
        a.record("alice", Some(ip), false);
        a.record("alice", Some(ip), false);
        assert_eq!(a.delay_for("alice", None), Duration::from_millis(200));
        // Another login from the same address is slowed down too, by the address counter.
        assert_eq!(a.delay_for("bob", Some(ip)), Duration::from_millis(200));
        // The same login from another address is slowed down by the login counter.
        assert_eq!(
            a.delay_for("alice", Some(other)),
            Duration::from_millis(200)
        );
        assert_eq!(a.delay_for("bob", Some(other)), Duration::ZERO);
        a.record("alice", Some(ip), true);
        assert_eq!(a.delay_for("alice", Some(ip)), Duration::ZERO);
    }

    #[test]
    fn parses_basic_headers() {
        let mut h = HeaderMap::new();
        assert!(parse_basic(&h).is_none());
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM="),
        );
        assert_eq!(
            parse_basic(&h),
            Some(("alice".into(), "pw:with:colons".into()))
        );
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(parse_basic(&h).is_none());
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic !!!"),
        );
        assert!(parse_basic(&h).is_none());
    }
}
