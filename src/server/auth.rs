//! HTTP Basic authentication (RFC 7617) for the CardDAV server: the user's argon2 password or
//! one of their app passwords, checked through [`Crm::authenticate`].
//!
//! - **401** answers carry `WWW-Authenticate: Basic realm="cardbridge", charset="UTF-8"`.
//! - **Failed logins are slowed down** per login name and per client address ([`Throttle`]):
//!   after the n-th consecutive failure the next attempt from that login or address waits
//!   `base · 2^(n-1)`, capped at `max` (both in [`AuthConfig`]). From `lock_after` consecutive
//!   failures on, the login or address is **locked** for that same delay after its last
//!   failure: every attempt during the lock is answered 429 with `Retry-After` *without
//!   checking the password*, so neither parallel guessing nor the right password gets through.
//!   A success clears the login's and the address's counters. Entries expire after
//!   `forget_after` of quiet. `cardbridge serve` hands ONE [`Throttle`] to the CardDAV server,
//!   the REST API and the dashboard login ([`Authenticator::with_throttle`]), so failures on
//!   any of them count together: alternating between them gains a guesser nothing.
//! - **A verified credential is cached** (keyed by SHA-256 of login and secret, never the secret
//!   itself) for `cache_ttl`, so DAV clients that send Basic on every request do not pay argon2
//!   each time. The user record is read again on every request and the cache entry is only
//!   honoured while the user still holds the credential it was made from
//!   ([`credential_stamp`]), so role and admin changes, a changed password and a revoked app
//!   password apply at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::crm::users::AuthMethod;
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
    /// Consecutive failures after which a login or address is locked (429) until its delay
    /// has passed.
    pub lock_after: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(16),
            forget_after: Duration::from_secs(15 * 60),
            cache_ttl: Duration::from_secs(300),
            lock_after: 5,
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
    /// Too many failures: locked for this long (HTTP 429 with `Retry-After`).
    #[error("too many failed logins; retry after {} s", retry_after_secs(*.0))]
    Locked(Duration),
    /// The CRM failed.
    #[error(transparent)]
    Crm(#[from] CrmError),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Per-login and per-address failure counters: the delay owed and the lock (see the module
/// doc). Share one per server.
#[derive(Debug)]
pub struct Throttle {
    config: AuthConfig,
    failures: Mutex<HashMap<String, Failures>>,
}

/// A credential-cache entry: the user, the [`credential_stamp`] it was verified against, and
/// when.
#[derive(Debug, Clone, Copy)]
struct Cached {
    user: u64,
    stamp: [u8; 32],
    at: Instant,
}

/// The authenticator: throttle state and credential cache. Share one per server.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    throttle: Arc<Throttle>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

/// `Retry-After` seconds for a lock of `d` (rounded up, at least 1).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A fingerprint of the credential `method` verified, taken from the user record: the
/// password's PHC string or the app password's stored hash. A cached login is honoured only
/// while the record still yields the same stamp, so a password change or a revoked app
/// password applies at once.
pub fn credential_stamp(user: &User, method: &AuthMethod) -> Option<[u8; 32]> {
    let stored = match method {
        AuthMethod::Password => user.password_hash.as_str(),
        AuthMethod::AppPassword(id) => user
            .app_passwords
            .iter()
            .find(|a| &a.id == id)
            .map(|a| a.hash.as_str())?,
    };
    let mut h = Sha256::new();
    h.update(user.id.to_be_bytes());
    h.update([0]);
    h.update(stored.as_bytes());
    Some(h.finalize().into())
}

/// Does the user record still hold the credential `stamp` was made from?
pub fn still_holds(user: &User, stamp: &[u8; 32]) -> bool {
    credential_stamp(user, &AuthMethod::Password).as_ref() == Some(stamp)
        || user.app_passwords.iter().any(|a| {
            credential_stamp(user, &AuthMethod::AppPassword(a.id.clone())).as_ref() == Some(stamp)
        })
}

impl Throttle {
    /// Counters with these settings.
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            failures: Mutex::default(),
        }
    }

    /// Before checking a login from `addr`: `Err(remaining)` while the login or the address is
    /// locked, else `Ok(delay owed)` (the larger of the two counters).
    pub fn check(&self, login: &str, addr: Option<IpAddr>) -> Result<Duration, Duration> {
        let now = Instant::now();
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut delay = Duration::ZERO;
        let mut locked = Duration::ZERO;
        let keys = std::iter::once(login_key(login)).chain(addr.map(addr_key));
        for k in keys {
            let Some(x) = f.get(&k) else { continue };
            let quiet = now.duration_since(x.last);
            if quiet >= self.config.forget_after {
                continue;
            }
            let d = self.delay_after(x.count);
            if x.count >= self.config.lock_after.max(1) && quiet < d {
                locked = locked.max(d - quiet);
            }
            delay = delay.max(d);
        }
        if locked.is_zero() {
            Ok(delay)
        } else {
            Err(locked)
        }
    }

    /// The delay owed before checking a login from `addr` (the larger of the two counters).
    pub fn delay_for(&self, login: &str, addr: Option<IpAddr>) -> Duration {
        match self.check(login, addr) {
            Ok(d) | Err(d) => d,
        }
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

    /// Records the outcome of a checked login.
    pub fn record(&self, login: &str, addr: Option<IpAddr>, ok: bool) {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.retain(|_, v| now.duration_since(v.last) < self.config.forget_after);
        let keys = std::iter::once(login_key(login)).chain(addr.map(addr_key));
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

    /// Waits out the delay owed, or fails with [`AuthError::Locked`].
    pub async fn wait_turn(&self, login: &str, addr: Option<IpAddr>) -> Result<(), AuthError> {
        let delay = self.check(login, addr).map_err(AuthError::Locked)?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
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
    /// A fresh authenticator with its own failure counters.
    pub fn new(config: AuthConfig) -> Self {
        let throttle = Arc::new(Throttle::new(config.clone()));
        Self::with_throttle(config, throttle)
    }

    /// An authenticator counting failures in `throttle`, shared with the other login paths
    /// (the REST API's and the dashboard's); its delays and lock are `throttle`'s.
    pub fn with_throttle(config: AuthConfig, throttle: Arc<Throttle>) -> Self {
        Self {
            throttle,
            config,
            cache: Mutex::default(),
        }
    }

    /// The failure counters.
    pub fn throttle(&self) -> &Arc<Throttle> {
        &self.throttle
    }

    /// The delay owed before checking a login from `addr` (the larger of the two counters).
    pub fn delay_for(&self, login: &str, addr: Option<IpAddr>) -> Duration {
        self.throttle.delay_for(login, addr)
    }

    /// The delay after `n` consecutive failures: 0, base, 2·base, 4·base, … ≤ max.
    pub fn delay_after(&self, n: u32) -> Duration {
        self.throttle.delay_after(n)
    }

    /// Authenticates a request: refuses a locked login or address, answers from the cache
    /// while the user still holds the cached credential, else waits the owed delay, checks
    /// the credentials and records the outcome. Returns the current user record.
    pub async fn authenticate(
        &self,
        crm: &Crm,
        headers: &HeaderMap,
        addr: Option<IpAddr>,
    ) -> Result<User, AuthError> {
        let (login, secret) = parse_basic(headers).ok_or(AuthError::Missing)?;
        // The lock comes first: not even a cached (right) password passes it.
        if let Err(left) = self.throttle.check(&login, addr) {
            return Err(AuthError::Locked(left));
        }
        let ck = cache_key(&login, &secret);
        let cached = {
            let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            c.get(&ck)
                .filter(|e| e.at.elapsed() < self.config.cache_ttl)
                .map(|e| (e.user, e.stamp))
        };
        if let Some((id, stamp)) = cached {
            if let Some(u) = crm.get_user(id).await? {
                if u.login == login && still_holds(&u, &stamp) {
                    return Ok(u);
                }
            }
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ck);
        }
        self.throttle.wait_turn(&login, addr).await?;
        match crm.authenticate(&login, &secret).await? {
            Some((user, method)) => {
                self.throttle.record(&login, addr, true);
                if let Some(stamp) = credential_stamp(&user, &method) {
                    let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    let ttl = self.config.cache_ttl;
                    c.retain(|_, e| e.at.elapsed() < ttl);
                    c.insert(
                        ck,
                        Cached {
                            user: user.id,
                            stamp,
                            at: Instant::now(),
                        },
                    );
                }
                Ok(user)
            }
            None => {
                self.throttle.record(&login, addr, false);
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

    fn auth() -> Throttle {
        Throttle::new(AuthConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            forget_after: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(60),
            lock_after: 3,
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
    fn lock_starts_at_lock_after_and_covers_login_and_address() {
        let a = auth();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        a.record("carol", Some(ip), false);
        a.record("carol", Some(ip), false);
        assert_eq!(a.check("carol", Some(ip)), Ok(Duration::from_millis(200)));
        a.record("carol", Some(ip), false);
        let left = a.check("carol", None).unwrap_err();
        assert!(
            left <= Duration::from_millis(400) && !left.is_zero(),
            "{left:?}"
        );
        assert!(
            a.check("dave", Some(ip)).is_err(),
            "the address is locked too"
        );
        assert!(a.check("dave", None).is_ok());
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
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
