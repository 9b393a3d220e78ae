//! The service configuration: a TOML file, `CARDBRIDGE_*` environment overrides and the
//! `serve` flags, in that order of precedence (defaults < file < environment < flags); and the
//! private-network policy for the URLs a connection may talk to (SSRF guard).
//!
//! Every key and variable is documented in `docs/CONFIG.md`; the tests below keep that file
//! and [`ENV_VARS`] in step.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./data";

/// `CARDBRIDGE_LISTEN`: `listen`.
pub const ENV_LISTEN: &str = "CARDBRIDGE_LISTEN";
/// `CARDBRIDGE_DATA`: `data_dir`.
pub const ENV_DATA: &str = "CARDBRIDGE_DATA";
/// `CARDBRIDGE_CONFIG`: the config file (same as `--config`).
pub const ENV_CONFIG: &str = "CARDBRIDGE_CONFIG";
/// `CARDBRIDGE_LOG_FORMAT`: `log_format` (`pretty` or `json`).
pub const ENV_LOG_FORMAT: &str = "CARDBRIDGE_LOG_FORMAT";
/// `CARDBRIDGE_LOG`: `log_filter` (a tracing `EnvFilter` directive).
pub const ENV_LOG: &str = "CARDBRIDGE_LOG";
/// `CARDBRIDGE_ALLOW_PRIVATE_NETWORKS`: `allow_private_networks` (`true`/`false`).
pub const ENV_ALLOW_PRIVATE: &str = "CARDBRIDGE_ALLOW_PRIVATE_NETWORKS";
/// `CARDBRIDGE_TLS_CERT`: `tls.cert`.
pub const ENV_TLS_CERT: &str = "CARDBRIDGE_TLS_CERT";
/// `CARDBRIDGE_TLS_KEY`: `tls.key`.
pub const ENV_TLS_KEY: &str = "CARDBRIDGE_TLS_KEY";
/// `CARDBRIDGE_SECRET_KEY`: `secret_key` (base64 of 32 bytes).
pub const ENV_SECRET_KEY: &str = "CARDBRIDGE_SECRET_KEY";
/// `CARDBRIDGE_ADMIN_LOGIN`: `admin_login`.
pub const ENV_ADMIN_LOGIN: &str = "CARDBRIDGE_ADMIN_LOGIN";
/// `CARDBRIDGE_ADMIN_PASSWORD`: the first admin's password (first start only; never stored
/// in the config, never logged).
pub const ENV_ADMIN_PASSWORD: &str = "CARDBRIDGE_ADMIN_PASSWORD";
/// `CARDBRIDGE_SYNC_INTERVAL_SECS`: `scheduler.interval_secs`.
pub const ENV_SYNC_INTERVAL: &str = "CARDBRIDGE_SYNC_INTERVAL_SECS";
/// `CARDBRIDGE_SYNC_JITTER_SECS`: `scheduler.jitter_secs`.
pub const ENV_SYNC_JITTER: &str = "CARDBRIDGE_SYNC_JITTER_SECS";
/// `CARDBRIDGE_BACKOFF_BASE_SECS`: `scheduler.backoff_base_secs`.
pub const ENV_BACKOFF_BASE: &str = "CARDBRIDGE_BACKOFF_BASE_SECS";
/// `CARDBRIDGE_BACKOFF_MAX_SECS`: `scheduler.backoff_max_secs`.
pub const ENV_BACKOFF_MAX: &str = "CARDBRIDGE_BACKOFF_MAX_SECS";
/// `CARDBRIDGE_MAX_CONCURRENT_SYNCS`: `scheduler.max_concurrent`.
pub const ENV_MAX_CONCURRENT: &str = "CARDBRIDGE_MAX_CONCURRENT_SYNCS";
/// `CARDBRIDGE_MAX_SYNCS_PER_ACCOUNT`: `scheduler.max_per_account`.
pub const ENV_MAX_PER_ACCOUNT: &str = "CARDBRIDGE_MAX_SYNCS_PER_ACCOUNT";
/// `CARDBRIDGE_SYNC_LEASE_SECS`: `scheduler.lease_secs`.
pub const ENV_SYNC_LEASE: &str = "CARDBRIDGE_SYNC_LEASE_SECS";
/// `CARDBRIDGE_STORE`: `store` (`sled` or `postgres`).
pub const ENV_STORE: &str = "CARDBRIDGE_STORE";
/// `CARDBRIDGE_POSTGRES_URL`: `postgres.url` (may hold a password; never logged).
pub const ENV_POSTGRES_URL: &str = "CARDBRIDGE_POSTGRES_URL";
/// `CARDBRIDGE_POSTGRES_SCHEMA`: `postgres.schema`.
pub const ENV_POSTGRES_SCHEMA: &str = "CARDBRIDGE_POSTGRES_SCHEMA";
/// `CARDBRIDGE_POSTGRES_POOL_SIZE`: `postgres.pool_size`.
pub const ENV_POSTGRES_POOL_SIZE: &str = "CARDBRIDGE_POSTGRES_POOL_SIZE";

/// Every environment variable the service reads (documented in `docs/CONFIG.md`).
pub const ENV_VARS: &[&str] = &[
    ENV_LISTEN,
    ENV_DATA,
    ENV_CONFIG,
    ENV_LOG_FORMAT,
    ENV_LOG,
    ENV_ALLOW_PRIVATE,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ENV_SECRET_KEY,
    ENV_ADMIN_LOGIN,
    ENV_ADMIN_PASSWORD,
    ENV_SYNC_INTERVAL,
    ENV_SYNC_JITTER,
    ENV_BACKOFF_BASE,
    ENV_BACKOFF_MAX,
    ENV_MAX_CONCURRENT,
    ENV_MAX_PER_ACCOUNT,
    ENV_SYNC_LEASE,
    ENV_STORE,
    ENV_POSTGRES_URL,
    ENV_POSTGRES_SCHEMA,
    ENV_POSTGRES_POOL_SIZE,
];

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// TLS certificate and key files (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Scheduler settings (see [`crate::scheduler::SchedulerConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSection {
    /// Default interval between two syncs of a connection, seconds.
    pub interval_secs: u64,
    /// Up to this many seconds are added at random to each interval.
    pub jitter_secs: u64,
    /// First retry delay after a failure, seconds; doubled per consecutive failure.
    pub backoff_base_secs: u64,
    /// The cap of the retry delay, seconds.
    pub backoff_max_secs: u64,
    /// At most this many syncs run at once.
    pub max_concurrent: usize,
    /// At most this many syncs of one account (provider + account email) run at once.
    pub max_per_account: usize,
    /// With `store = "postgres"`: how long a node's claim on a connection's sync holds without
    /// renewal (renewed every third of it while the run goes on); a dead node's connections
    /// are run by the others after this many seconds.
    pub lease_secs: u64,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        Self {
            interval_secs: 15 * 60,
            jitter_secs: 60,
            backoff_base_secs: 60,
            backoff_max_secs: 6 * 3600,
            max_concurrent: 8,
            max_per_account: 4,
            lease_secs: 60,
        }
    }
}

impl SchedulerSection {
    /// As the scheduler's settings.
    pub fn to_scheduler(&self) -> crate::scheduler::SchedulerConfig {
        crate::scheduler::SchedulerConfig {
            default_interval: Duration::from_secs(self.interval_secs),
            jitter: Duration::from_secs(self.jitter_secs),
            backoff_base: Duration::from_secs(self.backoff_base_secs),
            backoff_max: Duration::from_secs(self.backoff_max_secs),
            max_concurrent: self.max_concurrent.max(1),
            max_per_account: self.max_per_account.max(1),
        }
    }
}

/// Which backend holds the state (see `docs/STORE.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The embedded sled database in `data_dir/db` (one node).
    #[default]
    Sled,
    /// A PostgreSQL schema, shared by any number of nodes (`[postgres]`).
    Postgres,
}

/// The default PostgreSQL schema.
pub const DEFAULT_POSTGRES_SCHEMA: &str = "cardbridge";

/// PostgreSQL settings, used when `store = "postgres"`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSection {
    /// Connection URL (`postgres://user:password@host:5432/db`) or libpq key=value string.
    pub url: Option<String>,
    /// The schema holding cardbridge's tables (created on first start).
    pub schema: String,
    /// Pooled connections per node.
    pub pool_size: usize,
}

impl Default for PostgresSection {
    fn default() -> Self {
        Self {
            url: None,
            schema: DEFAULT_POSTGRES_SCHEMA.into(),
            pool_size: 16,
        }
    }
}

impl std::fmt::Debug for PostgresSection {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSection")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// The data directory (sled database, secret key).
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// tracing filter directive (`info`, `cardbridge=debug,tower_http=info`, …).
    pub log_filter: String,
    /// Allow connection URLs on loopback, private and link-local networks.
    pub allow_private_networks: bool,
    /// Serve HTTPS with these files; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// The credentials key as base64 of 32 bytes; when absent the key lives in
    /// `data_dir/secret.key` (created on first start, mode 0600).
    pub secret_key: Option<String>,
    /// Login of the admin created on first start.
    pub admin_login: String,
    /// Scheduler settings.
    pub scheduler: SchedulerSection,
    /// The OAuth apps the Google and Microsoft Graph connections sign in with.
    pub oauth: OAuthSection,
    /// The state backend.
    pub store: StoreKind,
    /// PostgreSQL settings (`store = "postgres"`).
    pub postgres: PostgresSection,
}

/// `[oauth.google]` and `[oauth.microsoft]`: the operator's OAuth app registrations. A
/// Google or Graph connection cannot sync without its provider's app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthSection {
    /// The Google Cloud OAuth client (People API, contacts scope).
    pub google: Option<OAuthApp>,
    /// The Microsoft Entra app (Graph, `Contacts.ReadWrite offline_access`).
    pub microsoft: Option<OAuthApp>,
}

/// One OAuth app registration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthApp {
    /// The client id.
    pub client_id: String,
    /// The client secret (confidential clients).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The redirect URI registered with the app.
    pub redirect_uri: String,
    /// Microsoft only: the tenant (`common`, `organizations`, `consumers` or a tenant id).
    #[serde(default)]
    pub tenant: Option<String>,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            log_format: LogFormat::Pretty,
            log_filter: "info".into(),
            allow_private_networks: false,
            tls: None,
            secret_key: None,
            admin_login: "admin".into(),
            scheduler: SchedulerSection::default(),
            oauth: OAuthSection::default(),
            store: StoreKind::Sled,
            postgres: PostgresSection::default(),
        }
    }
}

/// Why the configuration was refused. Each message names the key or variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's explanation (names the key and line).
        message: String,
    },
    /// An environment variable has a value of the wrong shape.
    #[error("environment variable {var}={value:?} is invalid: {expected}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value (never a secret: secrets are not parsed here).
        value: String,
        /// What is expected.
        expected: &'static str,
    },
    /// TLS needs both files.
    #[error(
        "TLS needs both tls.cert and tls.key ({ENV_TLS_CERT} and {ENV_TLS_KEY}); only one is set"
    )]
    TlsHalf,
}

/// Overrides from the command line (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data`.
    pub data_dir: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Loads the configuration: defaults, then the file (when given), then the environment
    /// (read through `env`), then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        if let Some(l) = flags.listen {
            cfg.listen = l;
        }
        if let Some(d) = &flags.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(f) = flags.log_format {
            cfg.log_format = f;
        }
        Ok(cfg)
    }

    /// Parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(
            var: &'static str,
            value: String,
            expected: &'static str,
        ) -> Result<T, ConfigError> {
            value.trim().parse().map_err(|_| ConfigError::Env {
                var,
                value,
                expected,
            })
        }
        if let Some(v) = env(ENV_LISTEN) {
            self.listen = parse(ENV_LISTEN, v, "an address and port like 127.0.0.1:8080")?;
        }
        if let Some(v) = env(ENV_DATA) {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env(ENV_LOG_FORMAT) {
            self.log_format = match v.trim() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        var: ENV_LOG_FORMAT,
                        value: v,
                        expected: "`pretty` or `json`",
                    })
                }
            };
        }
        if let Some(v) = env(ENV_LOG) {
            self.log_filter = v;
        }
        if let Some(v) = env(ENV_ALLOW_PRIVATE) {
            self.allow_private_networks = parse(ENV_ALLOW_PRIVATE, v, "`true` or `false`")?;
        }
        let cert = env(ENV_TLS_CERT).map(PathBuf::from);
        let key = env(ENV_TLS_KEY).map(PathBuf::from);
        match (cert, key, &mut self.tls) {
            (None, None, _) => {}
            (Some(c), Some(k), tls) => *tls = Some(TlsConfig { cert: c, key: k }),
            (Some(c), None, Some(tls)) => tls.cert = c,
            (None, Some(k), Some(tls)) => tls.key = k,
            _ => return Err(ConfigError::TlsHalf),
        }
        if let Some(v) = env(ENV_SECRET_KEY) {
            self.secret_key = Some(v);
        }
        if let Some(v) = env(ENV_ADMIN_LOGIN) {
            self.admin_login = v;
        }
        let s = &mut self.scheduler;
        if let Some(v) = env(ENV_SYNC_INTERVAL) {
            s.interval_secs = parse(ENV_SYNC_INTERVAL, v, "a number of seconds")?;
        }
        if let Some(v) = env(ENV_SYNC_JITTER) {
            s.jitter_secs = parse(ENV_SYNC_JITTER, v, "a number of seconds")?;
        }
        if let Some(v) = env(ENV_BACKOFF_BASE) {
            s.backoff_base_secs = parse(ENV_BACKOFF_BASE, v, "a number of seconds")?;
        }
        if let Some(v) = env(ENV_BACKOFF_MAX) {
            s.backoff_max_secs = parse(ENV_BACKOFF_MAX, v, "a number of seconds")?;
        }
        if let Some(v) = env(ENV_MAX_CONCURRENT) {
            s.max_concurrent = parse(ENV_MAX_CONCURRENT, v, "a positive number")?;
        }
        if let Some(v) = env(ENV_MAX_PER_ACCOUNT) {
            s.max_per_account = parse(ENV_MAX_PER_ACCOUNT, v, "a positive number")?;
        }
        if let Some(v) = env(ENV_SYNC_LEASE) {
            s.lease_secs = parse(ENV_SYNC_LEASE, v, "a number of seconds")?;
        }
        if let Some(v) = env(ENV_STORE) {
            self.store = match v.trim() {
                "sled" => StoreKind::Sled,
                "postgres" => StoreKind::Postgres,
                _ => {
                    return Err(ConfigError::Env {
                        var: ENV_STORE,
                        value: v,
                        expected: "`sled` or `postgres`",
                    })
                }
            };
        }
        if let Some(v) = env(ENV_POSTGRES_URL) {
            self.postgres.url = Some(v);
        }
        if let Some(v) = env(ENV_POSTGRES_SCHEMA) {
            self.postgres.schema = v;
        }
        if let Some(v) = env(ENV_POSTGRES_POOL_SIZE) {
            self.postgres.pool_size = parse(ENV_POSTGRES_POOL_SIZE, v, "a positive number")?;
        }
        Ok(())
    }
}

/// A connection URL refused by the private-network policy or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPolicyError {
    /// Only http and https are allowed.
    #[error("URL scheme `{0}` is not allowed; use https:// (or http://)")]
    Scheme(String),
    /// No host in the URL.
    #[error("the URL has no host")]
    NoHost,
    /// The host is (or resolves to) a loopback, private or link-local address.
    #[error(
        "{host} is on a loopback, private or link-local network ({addr}); \
         set allow_private_networks = true ({ENV_ALLOW_PRIVATE}=true) to allow it"
    )]
    Private {
        /// The host as written.
        host: String,
        /// The address that was refused.
        addr: IpAddr,
    },
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
}

/// True for addresses a server-side request must not reach unless private networks are
/// allowed: loopback, unspecified, private (RFC 1918, RFC 4193), shared (RFC 6598),
/// link-local, site-local, multicast, broadcast and reserved (240/4, 198.18/15, 192.0.0/24).
/// IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, RFC 6052) and
/// 6to4 (`2002::/16`, RFC 3056).
pub fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_private_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg0 & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg0 & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed locally)
                || (seg0 == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 local-use 64:ff9b:1::/48
        }
    }
}

/// The IPv4 address an IPv6 address stands for, when it is one of the forms that embed one.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = |a: u16, b: u16| Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated; `::` and `::1` are judged as IPv6 themselves).
    if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(low(s[6], s[7]));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    // 6to4 2002:AABB:CCDD::/48.
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || o[0] == 0
        || o[0] >= 240 // reserved 240.0.0.0/4
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments 192.0.0.0/24
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn ipv6_forms_that_embed_a_private_ipv4_are_private() {
        // Regression (issue #8 security_ssrf): these reached loopback/metadata addresses.
        for a in [
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "fec0::1",
            "240.0.0.1",
            "198.18.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in [
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "64:ff9b::5db8:d70e",
            "2002:5db8:d70e::1",
            "93.184.215.14",
        ] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn defaults_are_loopback_8080_and_data() {
        let c = Config::load(None, &|_| None, &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(!c.allow_private_networks);
        assert!(c.tls.is_none());
        assert_eq!(c.log_format, LogFormat::Pretty);
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/var/x\"\nlog_format = \"json\"\n\
             [scheduler]\ninterval_secs = 30\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), &|_| None, &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.scheduler.interval_secs, 30);
        assert_eq!(c.scheduler.max_per_account, 4, "unset keys keep defaults");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.tls.as_ref().unwrap().key, PathBuf::from("k.pem"));

        let env = env_of(&[
            (ENV_LISTEN, "127.0.0.1:9100"),
            (ENV_ALLOW_PRIVATE, "true"),
            (ENV_TLS_KEY, "other.pem"),
            (ENV_MAX_CONCURRENT, "3"),
        ]);
        let c = Config::load(Some(&path), &env, &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert!(c.allow_private_networks);
        assert_eq!(c.tls.as_ref().unwrap().key, PathBuf::from("other.pem"));
        assert_eq!(c.tls.as_ref().unwrap().cert, PathBuf::from("c.pem"));
        assert_eq!(c.scheduler.max_concurrent, 3);

        let flags = Overrides {
            listen: Some("127.0.0.1:9200".parse().unwrap()),
            data_dir: Some("/d".into()),
            log_format: Some(LogFormat::Pretty),
        };
        let c = Config::load(Some(&path), &env, &flags).unwrap();
        assert_eq!(c.listen.port(), 9200);
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        assert_eq!(c.log_format, LogFormat::Pretty);
    }

    #[test]
    fn bad_values_name_what_to_fix() {
        let e = Config::load(
            None,
            &env_of(&[(ENV_LISTEN, "nowhere")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains(ENV_LISTEN), "{e}");
        let e = Config::load(
            None,
            &env_of(&[(ENV_TLS_CERT, "c.pem")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::TlsHalf));
        let e = Config::from_toml("listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn store_switch_from_file_and_env() {
        let c = Config::from_toml(
            "store = \"postgres\"\n[postgres]\nurl = \"postgres://u:hunter2@db/cb\"\npool_size = 4\n",
        )
        .unwrap();
        assert_eq!(c.store, StoreKind::Postgres);
        assert_eq!(
            c.postgres.url.as_deref(),
            Some("postgres://u:hunter2@db/cb")
        );
        assert_eq!(c.postgres.schema, DEFAULT_POSTGRES_SCHEMA);
        assert_eq!(c.postgres.pool_size, 4);
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "Debug must not print the URL's password"
        );
        assert_eq!(Config::default().store, StoreKind::Sled);

        let env = env_of(&[
            (ENV_STORE, "postgres"),
            (ENV_POSTGRES_URL, "postgres://x@127.0.0.1/test"),
            (ENV_POSTGRES_SCHEMA, "node_state"),
            (ENV_POSTGRES_POOL_SIZE, "3"),
        ]);
        let c = Config::load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(c.store, StoreKind::Postgres);
        assert_eq!(
            c.postgres.url.as_deref(),
            Some("postgres://x@127.0.0.1/test")
        );
        assert_eq!(c.postgres.schema, "node_state");
        assert_eq!(c.postgres.pool_size, 3);

        let e = Config::load(
            None,
            &env_of(&[(ENV_STORE, "mysql")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains(ENV_STORE), "{e}");
        let e = Config::from_toml("store = \"mysql\"\n").unwrap_err();
        assert!(e.contains("store"), "{e}");
    }

    #[test]
    fn every_env_var_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md"))
            .unwrap();
        for v in ENV_VARS {
            assert!(doc.contains(v), "docs/CONFIG.md does not mention {v}");
        }
        for key in [
            "listen",
            "data_dir",
            "log_format",
            "log_filter",
            "allow_private_networks",
            "secret_key",
            "admin_login",
            "[tls]",
            "[scheduler]",
            "interval_secs",
            "jitter_secs",
            "backoff_base_secs",
            "backoff_max_secs",
            "max_concurrent",
            "max_per_account",
            "lease_secs",
            "[oauth.google]",
            "[oauth.microsoft]",
            "client_id",
            "client_secret",
            "redirect_uri",
            "tenant",
            "store",
            "[postgres]",
            "url",
            "schema",
            "pool_size",
        ] {
            assert!(doc.contains(key), "docs/CONFIG.md does not mention {key}");
        }
    }
}
