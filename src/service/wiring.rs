//! The real [`Connector`] and [`SyncRunner`]: [`Wiring`] opens a provider for a connection
//! from its record and sealed [`Credentials`] (CardDAV with a server URL or RFC 6764 discovery
//! from the email's domain, iCloud with its profile, Google People and Microsoft Graph with an
//! OAuth [`TokenManager`]), runs the sync engine ([`crate::sync::execute`]) with the
//! connection's direction, visibility, policy and mapping, and turns the engine's summary into
//! the service's [`RunSummary`] (what the API's status, figures and conflicts show), passing
//! the engine's live progress to the run registry. For a connection created from an email
//! whose domain names no provider it finds the provider: CardDAV discovery (RFC 6764), then
//! Exchange Autodiscover ([`Connector::discover`]).
//!
//! The private-network policy (`allow_private_networks`, [`NetworkPolicy`]) is applied to every
//! URL this module hands a provider: the server URL on each open, each discovered context URL,
//! the chosen address book's URL before each sync, and the configured Google/Graph API roots
//! and OAuth token endpoints. The transports enforce it on every request: the CardDAV client
//! follows redirects by hand and checks each hop; the HTTP client the other providers share
//! (EWS and its Autodiscover, Google, Graph, the OAuth token refresh) is built under the same
//! policy, so its resolver screens every name and its redirect policy checks every hop.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use super::connections::{
    provider_name, ConflictPolicy, ConflictRecord, Connection, Connections, RunSummary,
    SyncDirection,
};
use super::secrets::SecretBox;
use super::{
    Connector, Credentials, Discovered, DiscoveryError, ForgetSummary, PasswordScheme, RunError,
    SyncRunner,
};
use crate::config::{OAuthSection, UrlPolicyError};
use crate::crm::{Crm, CrmError};
use crate::providers::carddav::{
    self as cd, discovery, Auth, CarddavProvider, DiscoveryStart, Profile, SrvResolver,
};
use crate::providers::ews::{self, EwsAuth, EwsConfig, EwsProvider};
use crate::providers::google::{GoogleConfig, GoogleProvider};
use crate::providers::graph::{GraphConfig, GraphProvider};
use crate::providers::http::{refused, NetworkPolicy};
use crate::providers::oauth::{self, OAuthClient, OAuthEndpoints, TokenManager};
use crate::providers::{
    Page, Provider, ProviderError, ProviderKind, RemoteItem, SyncGroup, Written,
};
use crate::scheduler::RunId;
use crate::store::{scan_all, Batch, Store};
use crate::sync::conflicts::{self, SPACE_CONFLICTS};
use crate::sync::connection::SyncConnection;
use crate::sync::execute::{self, Options, ProgressHook, SyncError};
use crate::sync::merge::{Policy, Side};
use crate::sync::reconcile::{Direction, Origin};
use crate::sync::state;
use crate::sync::stats::{self, SPACE_STATS};
use crate::vcard::VCard;

/// iCloud's CardDAV entry point (discovery finds the partition host from here).
pub const ICLOUD_CARDDAV_URL: &str = "https://contacts.icloud.com/";

/// At most this many item error messages are kept in a run summary.
pub const MAX_ERROR_MESSAGES: usize = 20;

/// How long each of CardDAV discovery and Exchange Autodiscover may take when a connection
/// is created for an unknown domain (the API request waits for them).
pub const DISCOVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn timed_out() -> ProviderError {
    ProviderError::Transport(format!(
        "no answer within {} s",
        DISCOVERY_TIMEOUT.as_secs()
    ))
}

/// What [`Wiring`] needs besides the CRM and the store.
#[derive(Clone, Default)]
pub struct WiringConfig {
    /// Allow connection URLs on loopback/private/link-local networks.
    pub allow_private_networks: bool,
    /// The OAuth apps (`[oauth.*]` in the config file).
    pub oauth: OAuthSection,
    /// The Google People API root (`None`: production). Tests point it at a fake.
    pub google_api: Option<Url>,
    /// Google's token endpoints (`None`: production).
    pub google_endpoints: Option<OAuthEndpoints>,
    /// The Graph service root with version (`None`: production).
    pub graph_api: Option<String>,
    /// Microsoft's token authority (`None`: `login.microsoftonline.com`).
    pub microsoft_authority: Option<String>,
    /// DNS for RFC 6764 SRV/TXT lookups (`None`: the system resolver).
    pub resolver: Option<Arc<dyn SrvResolver + Send + Sync>>,
    /// Ask this origin's `/autodiscover/autodiscover.svc` and `.xml` instead of the email
    /// domain's documented Autodiscover candidates (`None`: the documented ones). Tests point
    /// it at a loopback fake.
    pub autodiscover_origin: Option<Url>,
    /// The network policy of every provider request, instead of the one
    /// `allow_private_networks` gives (`None`). Tests allow exactly a loopback address, or
    /// resolve names with a fixed table.
    pub network: Option<NetworkPolicy>,
}

/// The providers and the engine, wired to one CRM and store.
pub struct Wiring {
    crm: Crm,
    store: Arc<dyn Store>,
    connections: Connections,
    secrets: Arc<SecretBox>,
    config: WiringConfig,
    http: reqwest::Client,
}

/// The token manager of an opened provider, the box sealing its token, and the sealed token
/// the connection was opened with.
type OpenedTokens = (Arc<TokenManager>, Arc<oauth::SecretBox>, String);

/// A provider opened for a run, with the token manager whose refresh token may rotate.
struct Opened {
    provider: Arc<dyn Provider>,
    tokens: Option<OpenedTokens>,
}

impl Wiring {
    /// Over the service's CRM and store; `secret_key` is the credentials key (to re-seal a
    /// rotated refresh token).
    pub fn new(
        crm: Crm,
        store: Arc<dyn Store>,
        secret_key: &[u8; 32],
        config: WiringConfig,
    ) -> Result<Self, RunError> {
        let http = network_policy(&config)
            .client_builder()
            .build()
            .map_err(|e| RunError::Local(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            connections: Connections::new(store.clone()),
            secrets: Arc::new(
                SecretBox::from_key(secret_key).map_err(|e| RunError::Local(e.to_string()))?,
            ),
            crm,
            store,
            config,
            http,
        })
    }

    /// The transport-level policy of every provider client.
    fn network(&self) -> NetworkPolicy {
        network_policy(&self.config)
    }

    /// A URL a provider is given, checked (its name resolved) against the policy: a private
    /// address is [`ProviderError::Refused`], naming `allow_private_networks`.
    async fn check_url(&self, url: &Url) -> Result<(), ProviderError> {
        self.network()
            .check_url_resolved(url)
            .await
            .map_err(|e| match e {
                e @ UrlPolicyError::Private { .. } => refused(url, &e),
                e => ProviderError::Unsupported(format!("{url} refused: {e}")),
            })
    }

    /// A configured endpoint (an API root, a token endpoint) checked against the policy before
    /// a provider is opened on it: an IP literal it refuses is [`ProviderError::Refused`] (the
    /// shared client screens host names when it connects).
    fn check_endpoint(&self, url: &Url) -> Result<(), ProviderError> {
        self.network()
            .check_url(url)
            .map_err(|why| refused(url, &why))
    }

    async fn open_parts(
        &self,
        c: &Connection,
        creds: &Credentials,
    ) -> Result<Opened, ProviderError> {
        match c.provider {
            ProviderKind::Carddav | ProviderKind::Icloud => {
                let p = self.open_carddav(c, creds).await?;
                Ok(Opened {
                    provider: Arc::new(p),
                    tokens: None,
                })
            }
            ProviderKind::Google | ProviderKind::Graph => self.open_oauth(c, creds),
            ProviderKind::Ews => {
                let p = self.open_ews(c, creds).await?;
                Ok(Opened {
                    provider: Arc::new(p),
                    tokens: None,
                })
            }
        }
    }

    /// Exchange on premises: the server URL when the connection has one, else Autodiscover from
    /// the account email (MS-OXDSCLI). Basic credentials, like the CardDAV accounts, or NTLM
    /// when the credentials say so.
    async fn open_ews(
        &self,
        c: &Connection,
        creds: &Credentials,
    ) -> Result<EwsProvider, ProviderError> {
        let password = creds.password.clone().unwrap_or_default();
        if password.is_empty() {
            return Err(ProviderError::CredentialsRejected);
        }
        let username = creds
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| c.username.clone());
        let auth = match creds.auth.unwrap_or_default() {
            PasswordScheme::Basic => EwsAuth::Basic { username, password },
            PasswordScheme::Ntlm => EwsAuth::Ntlm { username, password },
        };
        let url = match &c.server_url {
            Some(raw) => Url::parse(raw)
                .map_err(|e| ProviderError::Unsupported(format!("bad server URL {raw}: {e}")))?,
            None => {
                ews::autodiscover::discover(
                    &self.http,
                    &self.network(),
                    &c.account_email,
                    &auth,
                    self.autodiscover_candidates(&c.account_email)?,
                )
                .await?
                .ews_url
            }
        };
        self.check_url(&url).await?;
        let mut cfg = EwsConfig::with_auth(url.as_str(), auth);
        cfg.network = self.network();
        EwsProvider::with_http(cfg, self.http.clone())
    }

    async fn open_carddav(
        &self,
        c: &Connection,
        creds: &Credentials,
    ) -> Result<CarddavProvider, ProviderError> {
        let password = creds.password.clone().unwrap_or_default();
        if password.is_empty() {
            return Err(ProviderError::CredentialsRejected);
        }
        let auth = Auth::Basic {
            user: creds
                .username
                .clone()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| c.username.clone()),
            password,
        };
        let profile = if c.provider == ProviderKind::Icloud {
            Profile::icloud()
        } else {
            Profile::generic()
        };
        let given = match (&c.server_url, c.provider) {
            (Some(u), _) => Some(u.clone()),
            (None, ProviderKind::Icloud) => Some(ICLOUD_CARDDAV_URL.to_string()),
            (None, _) => None,
        };
        if let Some(raw) = given {
            let url = Url::parse(&raw)
                .map_err(|e| ProviderError::Unsupported(format!("bad server URL {raw}: {e}")))?;
            self.check_url(&url).await?;
            return CarddavProvider::connect_with_policy(url, auth, profile, self.network());
        }
        let principal = self
            .discover_carddav(&c.account_email, &auth, &profile)
            .await?;
        CarddavProvider::connect_with_policy(principal, auth, profile, self.network())
    }

    /// RFC 6764 from an email address: SRV/TXT for its domain, then
    /// `https://domain/.well-known/carddav`; the principal of the first context URL that
    /// answers (each URL checked against the private-network policy).
    async fn discover_carddav(
        &self,
        email: &str,
        auth: &Auth,
        profile: &Profile,
    ) -> Result<Url, ProviderError> {
        let start = DiscoveryStart::Email(email.to_string());
        let resolver: Arc<dyn SrvResolver + Send + Sync> = match &self.config.resolver {
            Some(r) => r.clone(),
            None => Arc::new(cd::HickoryResolver::system().map_err(ProviderError::Transport)?),
        };
        let contexts = discovery::context_urls(&start, resolver.as_ref()).await?;
        let mut last = ProviderError::NotFound;
        for ctx in contexts {
            if let Err(e) = self.check_url(&ctx).await {
                last = e;
                continue;
            }
            let client = cd::DavClient::new(ctx.clone(), auth.clone())?
                .with_credential_hosts(profile.credential_hosts.clone())
                .with_network_policy(self.network())?;
            match cd::discover(&client, &DiscoveryStart::Url(ctx.clone()), &cd::NoDns).await {
                Ok(found) => {
                    self.check_url(&found.principal).await?;
                    return Ok(found.principal);
                }
                Err(ProviderError::CredentialsRejected) => {
                    return Err(ProviderError::CredentialsRejected)
                }
                Err(e) => last = e,
            }
        }
        Err(match last {
            ProviderError::NotFound => ProviderError::Unsupported(format!(
                "no CardDAV service found for {email} (RFC 6764 discovery); give the server URL"
            )),
            e => e,
        })
    }

    /// The Autodiscover candidates for `email`: the configured origin's, else the documented
    /// ones (`autodiscover::discover` checks each against the private-network policy).
    fn autodiscover_candidates(
        &self,
        email: &str,
    ) -> Result<Vec<ews::autodiscover::Candidate>, ProviderError> {
        use ews::autodiscover::Candidate;
        Ok(match &self.config.autodiscover_origin {
            Some(origin) => {
                let at = |p: &str| {
                    origin
                        .join(p)
                        .map_err(|e| ProviderError::Unsupported(format!("bad origin: {e}")))
                };
                vec![
                    Candidate::Soap(at(ews::names::AUTODISCOVER_SVC_PATH)?),
                    Candidate::Pox(at(ews::names::AUTODISCOVER_XML_PATH)?),
                ]
            }
            None => ews::autodiscover::candidates(email)?,
        })
    }

    /// [`Connector::discover`]: CardDAV discovery, then Exchange Autodiscover.
    async fn discover_account(
        &self,
        email: &str,
        creds: &Credentials,
    ) -> Result<Discovered, DiscoveryError> {
        let username = creds
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| email.to_string());
        let password = creds.password.clone().unwrap_or_default();
        let auth = Auth::Basic {
            user: username.clone(),
            password: password.clone(),
        };
        let profile = Profile::generic();
        let carddav = match tokio::time::timeout(
            DISCOVERY_TIMEOUT,
            self.discover_carddav(email, &auth, &profile),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out()))
        {
            Ok(principal) => {
                return Ok(Discovered {
                    provider: ProviderKind::Carddav,
                    server_url: principal.to_string(),
                })
            }
            Err(ProviderError::CredentialsRejected) => {
                return Err(DiscoveryError::Rejected {
                    provider: ProviderKind::Carddav,
                    message: ProviderError::CredentialsRejected.to_string(),
                })
            }
            Err(e) => e.to_string(),
        };
        let ews_auth = match creds.auth.unwrap_or_default() {
            PasswordScheme::Basic => EwsAuth::Basic { username, password },
            PasswordScheme::Ntlm => EwsAuth::Ntlm { username, password },
        };
        let autodiscover = async {
            let candidates = self.autodiscover_candidates(email)?;
            ews::autodiscover::discover(&self.http, &self.network(), email, &ews_auth, candidates)
                .await
        };
        let found = tokio::time::timeout(DISCOVERY_TIMEOUT, autodiscover)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        let ews = match found {
            Ok(d) => match self.check_url(&d.ews_url).await {
                Ok(()) => {
                    return Ok(Discovered {
                        provider: ProviderKind::Ews,
                        server_url: d.ews_url.to_string(),
                    })
                }
                Err(e) => e.to_string(),
            },
            Err(ProviderError::NeedsReauthorization(m)) => {
                return Err(DiscoveryError::Rejected {
                    provider: ProviderKind::Ews,
                    message: m,
                })
            }
            Err(e) => e.to_string(),
        };
        Err(DiscoveryError::NothingFound {
            email: email.to_string(),
            carddav,
            ews,
        })
    }

    fn open_oauth(&self, c: &Connection, creds: &Credentials) -> Result<Opened, ProviderError> {
        let refresh = creds
            .refresh_token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ProviderError::NeedsReauthorization("the connection holds no refresh token".into())
            })?;
        let client = self.oauth_app(c.provider)?;
        self.check_endpoint(&client.endpoints.token_url)?;
        tracing::debug!(connection = c.id, "opening an OAuth provider");
        self.open_with_client(c, client, refresh)
    }

    /// The operator's OAuth app for a Google or Graph connection, against the configured
    /// (or production) endpoints.
    fn oauth_app(&self, provider: ProviderKind) -> Result<OAuthClient, ProviderError> {
        let client = match provider {
            ProviderKind::Google => {
                let app = self.config.oauth.google.as_ref().ok_or_else(|| {
                    ProviderError::Unsupported(
                        "Google needs the operator's OAuth app: set [oauth.google] client_id, \
                         client_secret and redirect_uri in the config file"
                            .into(),
                    )
                })?;
                let endpoints = match &self.config.google_endpoints {
                    Some(e) => e.clone(),
                    None => OAuthEndpoints::google()?,
                };
                OAuthClient::google(
                    app.client_id.clone(),
                    app.client_secret.clone(),
                    app.redirect_uri.clone(),
                    endpoints,
                )
            }
            ProviderKind::Graph => {
                let app = self.config.oauth.microsoft.as_ref().ok_or_else(|| {
                    ProviderError::Unsupported(
                        "Microsoft Graph needs the operator's OAuth app: set [oauth.microsoft] \
                         client_id and redirect_uri in the config file"
                            .into(),
                    )
                })?;
                let authority = self
                    .config
                    .microsoft_authority
                    .as_deref()
                    .unwrap_or(oauth::MICROSOFT_AUTHORITY);
                let tenant = app.tenant.as_deref().unwrap_or("common");
                OAuthClient::microsoft(
                    app.client_id.clone(),
                    app.client_secret.clone(),
                    app.redirect_uri.clone(),
                    OAuthEndpoints::microsoft(authority, tenant)?,
                )
            }
            other => {
                return Err(ProviderError::Unsupported(format!(
                    "{} does not use OAuth",
                    provider_name(other)
                )))
            }
        };
        Ok(client)
    }

    fn open_with_client(
        &self,
        c: &Connection,
        client: OAuthClient,
        refresh: String,
    ) -> Result<Opened, ProviderError> {
        // The token manager keeps the refresh token sealed in memory under a per-run key.
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut key);
        let run_box = Arc::new(
            oauth::SecretBox::from_key(&key).map_err(|e| ProviderError::Protocol(e.to_string()))?,
        );
        let sealed = run_box
            .seal(refresh.as_bytes())
            .map_err(|e| ProviderError::Protocol(e.to_string()))?;
        let tokens = Arc::new(TokenManager::new(
            client,
            self.http.clone(),
            run_box.clone(),
            sealed.clone(),
        ));
        let provider: Arc<dyn Provider> = match c.provider {
            ProviderKind::Google => {
                let mut cfg = GoogleConfig::production()?;
                if let Some(base) = &self.config.google_api {
                    cfg.base_url = base.clone();
                }
                self.check_endpoint(&cfg.base_url)?;
                Arc::new(GoogleProvider::new(self.http.clone(), tokens.clone(), cfg))
            }
            _ => {
                let mut cfg = GraphConfig::new(c.account_email.clone());
                if let Some(base) = &self.config.graph_api {
                    cfg.base_url = base.clone();
                }
                let base = Url::parse(&cfg.base_url).map_err(|e| {
                    ProviderError::Unsupported(format!("bad Graph root {}: {e}", cfg.base_url))
                })?;
                self.check_endpoint(&base)?;
                Arc::new(GraphProvider::with_http(
                    cfg,
                    tokens.clone(),
                    self.http.clone(),
                )?)
            }
        };
        Ok(Opened {
            provider,
            tokens: Some((tokens, run_box, sealed)),
        })
    }

    /// Stores a refresh token the provider rotated during the run.
    async fn keep_rotated_token(&self, c: &Connection, opened: &Opened, creds: &Credentials) {
        if let Some((tm, run_box, sealed_in)) = &opened.tokens {
            keep_rotated_token(
                &self.connections,
                &self.secrets,
                c,
                (tm, run_box),
                sealed_in,
                creds,
            )
            .await;
        }
    }

    /// One sync run; `progress` sees the engine's progress after each page and item (the
    /// run registry, the CLI's progress bar).
    pub async fn run_observed(
        &self,
        c: &Connection,
        creds: &Credentials,
        progress: Option<ProgressHook>,
    ) -> Result<RunSummary, RunError> {
        let sc = sync_connection(c)?;
        if matches!(c.provider, ProviderKind::Carddav | ProviderKind::Icloud) {
            let book = cd::GroupRef::parse(&sc.group)?.book;
            self.check_url(&book).await?;
        }
        let opened = self.open_parts(c, creds).await?;
        let options = Options {
            progress,
            ..Options::default()
        };
        let result = execute::run_with(
            &sc,
            opened.provider.as_ref(),
            &self.crm,
            self.store.as_ref(),
            &options,
        )
        .await;
        self.keep_rotated_token(c, &opened, creds).await;
        let summary = result.map_err(RunError::from)?;
        let total = stats::load(self.store.as_ref(), c.id).await?.total_in_sync;
        Ok(service_summary(&summary, total))
    }
}

/// Stores the refresh token `tm` holds when it differs from `sealed_in`, the one last stored
/// (the provider rotated it). Returns the token as sealed by `tm` when it stored it.
async fn keep_rotated_token(
    connections: &Connections,
    secrets: &SecretBox,
    c: &Connection,
    (tm, run_box): (&TokenManager, &oauth::SecretBox),
    sealed_in: &str,
    creds: &Credentials,
) -> Option<String> {
    let now = tm.sealed_refresh_token().await;
    if now == sealed_in {
        return None;
    }
    let token = String::from_utf8(run_box.open(&now).ok()?).ok()?;
    let mut creds = creds.clone();
    creds.refresh_token = Some(token);
    let sealed = match serde_json::to_vec(&creds)
        .map_err(|e| e.to_string())
        .and_then(|raw| secrets.seal(&raw).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(connection = c.id, error = %e, "cannot seal the rotated refresh token");
            return None;
        }
    };
    match connections.get(c.id).await {
        Ok(Some(mut cur)) => {
            cur.sealed_credentials = Some(sealed);
            if let Err(e) = connections.put(&cur).await {
                tracing::warn!(connection = c.id, error = %e, "cannot store the rotated refresh token");
                return None;
            }
            tracing::info!(
                connection = c.id,
                "stored the provider's rotated refresh token"
            );
            Some(now)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(connection = c.id, error = %e, "cannot store the rotated refresh token");
            None
        }
    }
}

/// A provider opened outside a run (the sync groups, the mapping preview): a refresh token it
/// rotates is stored after each call, as a run stores it at its end. Without this, a provider
/// that retires a used refresh token would leave the connection with a dead one.
struct KeepsRotatedToken {
    inner: Arc<dyn Provider>,
    tm: Arc<TokenManager>,
    run_box: Arc<oauth::SecretBox>,
    /// The sealed token last stored.
    stored: tokio::sync::Mutex<String>,
    connections: Connections,
    secrets: Arc<SecretBox>,
    connection: Connection,
    creds: Credentials,
}

impl KeepsRotatedToken {
    async fn keep(&self) {
        let mut stored = self.stored.lock().await;
        if let Some(now) = keep_rotated_token(
            &self.connections,
            &self.secrets,
            &self.connection,
            (&self.tm, &self.run_box),
            &stored,
            &self.creds,
        )
        .await
        {
            *stored = now;
        }
    }
}

#[async_trait]
impl Provider for KeepsRotatedToken {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }
    async fn sync_groups(&self) -> Result<Vec<SyncGroup>, ProviderError> {
        let r = self.inner.sync_groups().await;
        self.keep().await;
        r
    }
    async fn pull(&self, group: &str, cursor: Option<&str>) -> Result<Page, ProviderError> {
        let r = self.inner.pull(group, cursor).await;
        self.keep().await;
        r
    }
    async fn fetch(&self, group: &str, id: &str) -> Result<Option<RemoteItem>, ProviderError> {
        let r = self.inner.fetch(group, id).await;
        self.keep().await;
        r
    }
    async fn create(
        &self,
        group: &str,
        card: &VCard,
        crm_id: &str,
    ) -> Result<Written, ProviderError> {
        let r = self.inner.create(group, card, crm_id).await;
        self.keep().await;
        r
    }
    async fn update(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        let r = self.inner.update(group, id, etag, card).await;
        self.keep().await;
        r
    }
    async fn update_with_base(
        &self,
        group: &str,
        id: &str,
        etag: Option<&str>,
        held: Option<&VCard>,
        card: &VCard,
    ) -> Result<Written, ProviderError> {
        let r = self
            .inner
            .update_with_base(group, id, etag, held, card)
            .await;
        self.keep().await;
        r
    }
    async fn delete(&self, group: &str, id: &str, etag: Option<&str>) -> Result<(), ProviderError> {
        let r = self.inner.delete(group, id, etag).await;
        self.keep().await;
        r
    }
}

/// The policy of `config`: its `network` when set, else the one `allow_private_networks` gives.
fn network_policy(config: &WiringConfig) -> NetworkPolicy {
    match &config.network {
        Some(n) => n.clone(),
        None => NetworkPolicy::from_config(config.allow_private_networks),
    }
}

/// The engine's settings of a connection; refuses one without sync group or visibility.
pub fn sync_connection(c: &Connection) -> Result<SyncConnection, RunError> {
    let group = c.sync_group.as_ref().ok_or_else(|| {
        RunError::Provider(ProviderError::Unsupported(
            "no sync group chosen: choose one in the connection's settings".into(),
        ))
    })?;
    let visibility = c.visibility.ok_or_else(|| {
        RunError::Provider(ProviderError::Unsupported(
            "no visibility chosen: choose one in the connection's settings".into(),
        ))
    })?;
    Ok(SyncConnection {
        id: c.id,
        user_id: c.user_id,
        provider: c.provider,
        group: group.id.clone(),
        direction: match c.direction {
            SyncDirection::OneWay => Direction::OneWay,
            SyncDirection::TwoWay => Direction::TwoWay,
        },
        policy: match c.conflict_policy {
            ConflictPolicy::NewestWins => Policy::NewestWins,
            ConflictPolicy::ProviderWins => Policy::ProviderWins,
            ConflictPolicy::CrmWins => Policy::CrmWins,
        },
        visibility,
        mapping: c.mapping.clone(),
        default_region: None,
    })
}

/// The service's summary of an engine run (`total_in_sync` from the engine's stats).
pub fn service_summary(s: &execute::RunSummary, total_in_sync: u64) -> RunSummary {
    RunSummary {
        added: s.counts.added(),
        updated: s.counts.updated(),
        deleted: s.counts.deleted(),
        errors: s.counts.errors,
        total_in_sync,
        error_messages: s
            .errors
            .iter()
            .take(MAX_ERROR_MESSAGES)
            .map(|e| match &e.remote_id {
                Some(id) => format!("{id}: {}", e.message),
                None => e.message.clone(),
            })
            .collect(),
        conflicts: s.conflicts.iter().map(conflict_record).collect(),
    }
}

fn conflict_record(c: &conflicts::ConflictRecord) -> ConflictRecord {
    let field = match &c.element {
        Some(el) => format!("{}[{el}]", c.field),
        None => c.field.clone(),
    };
    ConflictRecord {
        at: c.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        run_id: 0,
        person_id: c.person_id,
        remote_id: Some(c.remote_id.clone()),
        field,
        crm_value: c.crm.clone().unwrap_or_default(),
        provider_value: c.remote.clone().unwrap_or_default(),
        winner: match c.winner {
            Side::Crm => "crm".into(),
            Side::Remote => "provider".into(),
        },
    }
}

impl From<SyncError> for RunError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Provider(p) => RunError::Provider(p),
            other => RunError::Local(other.to_string()),
        }
    }
}

#[async_trait]
impl Connector for Wiring {
    async fn open(
        &self,
        c: &Connection,
        creds: &Credentials,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let opened = self.open_parts(c, creds).await?;
        Ok(match opened.tokens {
            None => opened.provider,
            Some((tm, run_box, sealed_in)) => Arc::new(KeepsRotatedToken {
                inner: opened.provider,
                tm,
                run_box,
                stored: tokio::sync::Mutex::new(sealed_in),
                connections: self.connections.clone(),
                secrets: self.secrets.clone(),
                connection: c.clone(),
                creds: creds.clone(),
            }),
        })
    }

    async fn discover(
        &self,
        email: &str,
        creds: &Credentials,
    ) -> Result<Option<Discovered>, DiscoveryError> {
        self.discover_account(email, creds).await.map(Some)
    }

    fn oauth_client(&self, provider: ProviderKind) -> Result<OAuthClient, ProviderError> {
        self.oauth_app(provider)
    }

    fn network_policy(&self) -> NetworkPolicy {
        self.network()
    }
}

#[async_trait]
impl SyncRunner for Wiring {
    async fn run(
        &self,
        c: &Connection,
        creds: &Credentials,
        run_id: RunId,
    ) -> Result<RunSummary, RunError> {
        tracing::debug!(
            connection = c.id,
            run = run_id,
            provider = provider_name(c.provider),
            "engine run"
        );
        self.run_observed(c, creds, None).await
    }

    async fn run_reporting(
        &self,
        c: &Connection,
        creds: &Credentials,
        run_id: RunId,
        progress: ProgressHook,
    ) -> Result<RunSummary, RunError> {
        tracing::debug!(
            connection = c.id,
            run = run_id,
            provider = provider_name(c.provider),
            "engine run"
        );
        self.run_observed(c, creds, Some(progress)).await
    }

    async fn forget(
        &self,
        c: &Connection,
        remove_persons: bool,
    ) -> Result<ForgetSummary, RunError> {
        let store = self.store.as_ref();
        let mut out = ForgetSummary::default();
        let mut seen = BTreeSet::new();
        for item in state::all_items(store, c.id).await? {
            let Some(pid) = item.person_id() else {
                continue;
            };
            if !seen.insert(pid) {
                continue;
            }
            if remove_persons && item.origin == Origin::Created {
                match self.crm.delete_person(pid, None).await {
                    Ok(_) => out.persons_removed += 1,
                    Err(CrmError::NotFound { .. }) => {}
                    Err(e) => return Err(RunError::Local(e.to_string())),
                }
            } else {
                out.persons_kept += 1;
            }
        }
        state::forget_connection(store, c.id).await?;
        let mut b = Batch::new();
        for space in [SPACE_STATS, SPACE_CONFLICTS] {
            for (k, _) in scan_all(store, space, &c.id.to_be_bytes()).await? {
                b.delete(space, k);
            }
        }
        store.commit(b).await?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crm::repo::CrmConfig;
    use crate::crm::{MappingConfig, Visibility};
    use crate::service::connections::{ChosenGroup, ConnectionState};
    use crate::store::MemoryStore;

    fn conn(provider: ProviderKind) -> Connection {
        Connection {
            id: 7,
            user_id: 3,
            provider,
            account_email: "ann@example.org".into(),
            server_url: None,
            username: "ann".into(),
            sealed_credentials: None,
            sync_group: Some(ChosenGroup {
                id: "http://127.0.0.1:1/ann/book/".into(),
                name: "book".into(),
                writable: true,
            }),
            direction: SyncDirection::TwoWay,
            visibility: Some(Visibility::EntireCompany),
            conflict_policy: ConflictPolicy::CrmWins,
            mapping: MappingConfig::default(),
            interval_secs: None,
            state: ConnectionState::Active,
            created: String::new(),
            updated: String::new(),
        }
    }

    async fn wiring(cfg: WiringConfig) -> Wiring {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let crm = Crm::open(store.clone(), CrmConfig::default())
            .await
            .unwrap();
        Wiring::new(crm, store, &[7u8; 32], cfg).unwrap()
    }

    #[test]
    fn the_engine_gets_the_connections_settings() {
        let sc = sync_connection(&conn(ProviderKind::Carddav)).unwrap();
        assert_eq!(sc.id, 7);
        assert_eq!(sc.user_id, 3);
        assert_eq!(sc.group, "http://127.0.0.1:1/ann/book/");
        assert_eq!(sc.direction, Direction::TwoWay);
        assert_eq!(sc.policy, Policy::CrmWins);
        assert_eq!(sc.visibility, Visibility::EntireCompany);
        let mut c = conn(ProviderKind::Carddav);
        c.visibility = None;
        assert!(sync_connection(&c)
            .unwrap_err()
            .to_string()
            .contains("no visibility"));
        c.sync_group = None;
        assert!(sync_connection(&c)
            .unwrap_err()
            .to_string()
            .contains("no sync group"));
    }

    #[tokio::test]
    async fn ews_needs_a_password_and_keeps_the_private_network_policy() {
        let w = wiring(WiringConfig::default()).await;
        let mut c = conn(ProviderKind::Ews);
        c.server_url = Some("http://127.0.0.1:9/EWS/Exchange.asmx".into());
        let err = w.open(&c, &Credentials::default()).await.err().unwrap();
        assert!(matches!(err, ProviderError::CredentialsRejected), "{err}");
        let creds = Credentials {
            password: Some("pw".into()),
            ..Credentials::default()
        };
        let err = w.open(&c, &creds).await.err().unwrap();
        assert!(err.to_string().contains("allow_private_networks"), "{err}");
    }

    #[tokio::test]
    async fn oauth_providers_need_the_operators_app_and_a_refresh_token() {
        let w = wiring(WiringConfig::default()).await;
        let creds = Credentials {
            refresh_token: Some("rt".into()),
            ..Credentials::default()
        };
        let err = w
            .open(&conn(ProviderKind::Google), &creds)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("[oauth.google]"), "{err}");
        let err = w
            .open(&conn(ProviderKind::Graph), &creds)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("[oauth.microsoft]"), "{err}");
        let err = w
            .open(&conn(ProviderKind::Graph), &Credentials::default())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ProviderError::NeedsReauthorization(_)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn private_server_urls_are_refused_unless_allowed() {
        let w = wiring(WiringConfig::default()).await;
        let mut c = conn(ProviderKind::Carddav);
        c.server_url = Some("http://127.0.0.1:9/".into());
        let creds = Credentials {
            password: Some("pw".into()),
            ..Credentials::default()
        };
        let err = w.open(&c, &creds).await.err().unwrap();
        assert!(err.to_string().contains("allow_private_networks"), "{err}");
        // The run refuses the chosen book's URL before opening anything.
        let err = w.run_observed(&c, &creds, None).await.unwrap_err();
        assert!(err.to_string().contains("allow_private_networks"), "{err}");
        let allowed = wiring(WiringConfig {
            allow_private_networks: true,
            ..WiringConfig::default()
        })
        .await;
        assert!(allowed.open(&c, &creds).await.is_ok());
    }

    #[tokio::test]
    async fn forgetting_an_unsynced_connection_keeps_nothing_and_fails_nothing() {
        let w = wiring(WiringConfig::default()).await;
        let f = w.forget(&conn(ProviderKind::Carddav), true).await.unwrap();
        assert_eq!(f, ForgetSummary::default());
    }
}
