//! The service wiring: opens the store and the CRM, does the first-start setup (admin user,
//! credentials key), starts the scheduler, and serves the REST API, the dashboard, `/healthz`
//! and `/metrics` over HTTP or HTTPS until SIGINT/SIGTERM.
//!
//! The two seams other modules plug into:
//! - [`Connector`] opens a [`Provider`] for a connection (sync groups, sample cards for the
//!   field-mapping preview).
//! - [`SyncRunner`] runs one sync of a connection and forgets a deleted one.
//!
//! [`wiring::Wiring`] implements both with the real providers and the sync engine; it is what
//! [`ServiceBuilder`] uses unless a test passes its own.

pub mod connections;
pub mod metrics;
pub mod secrets;
pub mod wiring;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use rand::distributions::Alphanumeric;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::config::{Config, LogFormat, ENV_ADMIN_PASSWORD};
use crate::crm::repo::{CrmConfig, NewUser};
use crate::crm::Crm;
use crate::providers::{Provider, ProviderError};
use crate::scheduler::{
    Cluster, JobOutcome, JobRunner, JobSpec, RunId, Scheduler, SchedulerConfig, Trigger,
};
use crate::store::{Store, StoreError};
use crate::sync::execute::ProgressHook;
use connections::{
    now_rfc3339, Connection, ConnectionId, ConnectionState, Connections, LiveRuns, RunRecord,
    RunState, RunSummary,
};
use metrics::{Area, Gauges, Metrics, PROMETHEUS_CONTENT_TYPE};
use secrets::SecretBox;

pub use crate::server::api::{router as api_router, ApiState};
pub use crate::server::dashboard::router as dashboard_router;

/// The credentials a connection holds, sealed at rest. `Debug` never shows a secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Login at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password or app-specific password (CardDAV, iCloud, EWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// OAuth refresh token (Google, Graph).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// How the password is presented (EWS: Basic or NTLM; absent: Basic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PasswordScheme>,
}

/// How a connection presents its password to the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordScheme {
    /// HTTP Basic (RFC 7617).
    #[default]
    Basic,
    /// NTLM (MS-NLMP), Exchange on premises only.
    Ntlm,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("auth", &self.auth)
            .finish()
    }
}

/// Opens providers for connections.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// A provider bound to the connection's account. For CardDAV without a `server_url` this
    /// runs discovery from the email's domain (RFC 6764); for EWS, Autodiscover.
    async fn open(
        &self,
        connection: &Connection,
        credentials: &Credentials,
    ) -> Result<Arc<dyn Provider>, ProviderError>;

    /// Which provider serves an account whose email domain names none (not gmail.com,
    /// icloud.com, outlook.com, …), and where: CardDAV discovery (RFC 6764) first, then
    /// Exchange Autodiscover (MS-OXDSCLI / MS-OXWSADISC). `Ok(None)`: this connector does
    /// not discover at creation; the connection is created as CardDAV and discovered when it
    /// is opened.
    async fn discover(
        &self,
        email: &str,
        credentials: &Credentials,
    ) -> Result<Option<Discovered>, DiscoveryError> {
        let _ = (email, credentials);
        Ok(None)
    }

    /// The operator's OAuth app for `provider` (Google or Graph), for the server's
    /// authorization-code flow. Connectors without OAuth apps refuse.
    fn oauth_client(
        &self,
        provider: crate::providers::ProviderKind,
    ) -> Result<crate::providers::oauth::OAuthClient, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "{} has no OAuth app in this server",
            connections::provider_name(provider)
        )))
    }

    /// The addresses this connector's requests may reach (the OAuth code exchange uses it
    /// too). Connectors that say nothing reach no private address.
    fn network_policy(&self) -> crate::providers::http::NetworkPolicy {
        crate::providers::http::NetworkPolicy::from_config(false)
    }
}

/// What deleting a connection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetSummary {
    /// Persons the connection had created that were deleted.
    pub persons_removed: u64,
    /// Persons kept (linked, or created but kept by choice).
    pub persons_kept: u64,
}

/// Why a sync run or a forget failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The provider failed (or refused the connection's settings).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// cardbridge's own store or CRM failed.
    #[error("cardbridge's own data failed: {0}")]
    Local(String),
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        RunError::Local(e.to_string())
    }
}

/// What [`Connector::discover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// `carddav` or `ews`.
    pub provider: crate::providers::ProviderKind,
    /// The CardDAV principal or the EWS endpoint, already checked against the private-network
    /// policy.
    pub server_url: String,
}

/// Why [`Connector::discover`] found no provider.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A server was found but refused the credentials.
    #[error("the {} server found for this address rejected the credentials: {message}", connections::provider_name(*.provider))]
    Rejected {
        /// The provider whose server refused.
        provider: crate::providers::ProviderKind,
        /// What it said.
        message: String,
    },
    /// Neither CardDAV discovery nor Exchange Autodiscover found a server.
    #[error("no address book service found for {email}: CardDAV discovery (RFC 6764) found nothing ({carddav}); Exchange Autodiscover found nothing ({ews})")]
    NothingFound {
        /// The address.
        email: String,
        /// Why CardDAV discovery failed.
        carddav: String,
        /// Why Autodiscover failed.
        ews: String,
    },
}

/// Runs the sync engine for one connection.
#[async_trait]
pub trait SyncRunner: Send + Sync + 'static {
    /// One sync run (pull, reconcile, execute, checkpoint).
    async fn run(
        &self,
        connection: &Connection,
        credentials: &Credentials,
        run_id: RunId,
    ) -> Result<RunSummary, RunError>;
    /// One sync run that reports its live progress to `progress` as it goes (the run-status
    /// API, the dashboard's Refresh, `cardbridge sync`'s bar). Runners that cannot report
    /// progress keep this default: the run goes on without live counts.
    async fn run_reporting(
        &self,
        connection: &Connection,
        credentials: &Credentials,
        run_id: RunId,
        progress: ProgressHook,
    ) -> Result<RunSummary, RunError> {
        drop(progress);
        self.run(connection, credentials, run_id).await
    }
    /// Drops the connection's sync state; when `remove_persons`, deletes the persons it
    /// created (linked persons are only unlinked).
    async fn forget(
        &self,
        connection: &Connection,
        remove_persons: bool,
    ) -> Result<ForgetSummary, RunError>;
}

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CRM failed.
    #[error(transparent)]
    Crm(#[from] crate::crm::CrmError),
    /// The credentials key or a sealed value is unusable.
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    /// The scheduler refused.
    #[error(transparent)]
    Scheduler(#[from] crate::scheduler::SchedulerError),
    /// Startup I/O (bind, data directory, TLS files).
    #[error("{0}")]
    Io(String),
}

/// Everything the handlers and the job runner share.
pub struct Core {
    /// The CRM.
    pub crm: Crm,
    /// The store underneath.
    pub store: Arc<dyn Store>,
    /// Connection records.
    pub connections: Connections,
    /// Opens providers.
    pub connector: Arc<dyn Connector>,
    /// Runs syncs.
    pub runner: Arc<dyn SyncRunner>,
    /// Seals credentials.
    pub secrets: SecretBox,
    /// Counters.
    pub metrics: Metrics,
    /// The private-network policy for connection URLs.
    pub allow_private_networks: bool,
    /// Live progress of the runs going on in this process.
    pub live: LiveRuns,
}

impl Core {
    /// The connection's credentials, unsealed.
    pub fn credentials(&self, c: &Connection) -> Result<Credentials, ServiceError> {
        match &c.sealed_credentials {
            None => Ok(Credentials::default()),
            Some(s) => {
                let raw = self.secrets.open(s)?;
                serde_json::from_slice(&raw).map_err(|_| secrets::SecretError::Tampered.into())
            }
        }
    }

    /// Seals credentials for storing.
    pub fn seal(&self, c: &Credentials) -> Result<String, ServiceError> {
        let raw = serde_json::to_vec(c).map_err(|e| ServiceError::Io(e.to_string()))?;
        Ok(self.secrets.seal(&raw)?)
    }

    /// The scheduler's view of a connection.
    pub fn job_spec(c: &Connection) -> JobSpec {
        JobSpec {
            connection_id: c.id,
            account: c.account_key(),
            interval: c.interval_secs.map(Duration::from_secs),
        }
    }
}

/// Records runs around the [`SyncRunner`] and turns their result into scheduling outcomes.
pub struct ServiceJobRunner {
    core: Arc<Core>,
}

/// The message and fix shown for a connection that needs re-authorization.
pub fn reauthorization_fix(c: &Connection) -> &'static str {
    match c.provider {
        crate::providers::ProviderKind::Google | crate::providers::ProviderKind::Graph => {
            "sign in to the account again (PUT /api/v1/connections/{id}/credentials with a new \
             refresh_token, or Reconnect on the dashboard)"
        }
        _ => {
            "enter the account's current password or app-specific password \
             (PUT /api/v1/connections/{id}/credentials, or Reconnect on the dashboard)"
        }
    }
}

#[async_trait]
impl JobRunner for ServiceJobRunner {
    async fn spec(&self, id: ConnectionId) -> Option<JobSpec> {
        match self.core.connections.get(id).await {
            Ok(Some(c)) if c.state != ConnectionState::Setup => Some(Core::job_spec(&c)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(connection = id, error = %e, "cannot read a claimed connection");
                // Keep the job: run it with the defaults; the run reports the store's error.
                Some(JobSpec {
                    connection_id: id,
                    account: format!("connection:{id}"),
                    interval: None,
                })
            }
        }
    }

    async fn run(&self, id: ConnectionId, run_id: RunId, trigger: Trigger) -> JobOutcome {
        let core = &self.core;
        let conn = match core.connections.get(id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return JobOutcome::Failed {
                    message: format!("connection {id} no longer exists"),
                    retry_after_secs: None,
                    transient: false,
                }
            }
            Err(e) => {
                return JobOutcome::Failed {
                    message: e.to_string(),
                    retry_after_secs: None,
                    transient: true,
                }
            }
        };
        let mut record = RunRecord {
            id: run_id,
            connection_id: id,
            trigger,
            state: RunState::Running,
            started: now_rfc3339(),
            ended: None,
            summary: None,
            error: None,
            progress: None,
        };
        if let Err(e) = core.connections.put_run(&record).await {
            tracing::warn!(connection = id, run = run_id, error = %e, "cannot record the run start");
        }
        let t0 = Instant::now();
        tracing::info!(connection = id, run = run_id, ?trigger, "sync run started");
        let live = core.live.clone();
        let progress: ProgressHook = Arc::new(move |p| live.set(run_id, p.into()));
        let result = match core.credentials(&conn) {
            Ok(creds) => {
                core.runner
                    .run_reporting(&conn, &creds, run_id, progress)
                    .await
            }
            Err(e) => Err(RunError::Local(e.to_string())),
        };
        let took = t0.elapsed();
        record.ended = Some(now_rfc3339());
        record.progress = core.live.take(run_id);
        let outcome = match result {
            Ok(summary) => {
                core.metrics.record_items(
                    summary.added,
                    summary.updated,
                    summary.deleted,
                    summary.conflicts.len() as u64,
                    summary.errors,
                );
                record.state = RunState::Succeeded;
                record.summary = Some(summary);
                if conn.state != ConnectionState::Active {
                    self.set_state(id, ConnectionState::Active).await;
                }
                JobOutcome::Succeeded
            }
            Err(e) => {
                record.state = RunState::Failed;
                record.error = Some(e.to_string());
                let needs_human = matches!(
                    e,
                    RunError::Provider(
                        ProviderError::CredentialsRejected | ProviderError::NeedsReauthorization(_)
                    )
                );
                if needs_human {
                    self.set_state(
                        id,
                        ConnectionState::NeedsReauthorization {
                            reason: e.to_string(),
                        },
                    )
                    .await;
                }
                let retry_after_secs = match &e {
                    RunError::Provider(ProviderError::Throttled { retry_after }) => {
                        retry_after.map(|d| d.as_secs())
                    }
                    _ => None,
                };
                JobOutcome::Failed {
                    message: e.to_string(),
                    retry_after_secs,
                    transient: !needs_human,
                }
            }
        };
        core.metrics
            .record_run(matches!(outcome, JobOutcome::Succeeded), took);
        tracing::info!(
            connection = id,
            run = run_id,
            ok = matches!(outcome, JobOutcome::Succeeded),
            took_ms = took.as_millis() as u64,
            "sync run ended"
        );
        if let Err(e) = core.connections.put_run(&record).await {
            tracing::warn!(connection = id, run = run_id, error = %e, "cannot record the run end");
        }
        outcome
    }
}

impl ServiceJobRunner {
    async fn set_state(&self, id: ConnectionId, state: ConnectionState) {
        if let Ok(Some(mut c)) = self.core.connections.get(id).await {
            c.state = state;
            if let Err(e) = self.core.connections.put(&c).await {
                tracing::warn!(connection = id, error = %e, "cannot store the connection state");
            }
        }
    }
}

/// Builds the service state from its parts: by default the real providers and engine
/// ([`wiring::Wiring`]); tests may pass fakes for `connector` and `runner`.
pub struct ServiceBuilder {
    store: Arc<dyn Store>,
    connector: Option<Arc<dyn Connector>>,
    runner: Option<Arc<dyn SyncRunner>>,
    wiring: wiring::WiringConfig,
    scheduler: SchedulerConfig,
    secret_key: [u8; 32],
    allow_private_networks: bool,
    cluster: Option<Cluster>,
}

impl ServiceBuilder {
    /// Over `store`, with the real providers and engine and a random key.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill(&mut key);
        Self {
            store,
            connector: None,
            runner: None,
            wiring: wiring::WiringConfig::default(),
            scheduler: SchedulerConfig::default(),
            secret_key: key,
            allow_private_networks: false,
            cluster: None,
        }
    }
    /// Schedules through a lease table shared with other nodes (PostgreSQL): each due
    /// connection runs on exactly one node.
    pub fn cluster(mut self, c: Cluster) -> Self {
        self.cluster = Some(c);
        self
    }
    /// The provider opener (default: [`wiring::Wiring`]).
    pub fn connector(mut self, c: Arc<dyn Connector>) -> Self {
        self.connector = Some(c);
        self
    }
    /// The sync engine (default: [`wiring::Wiring`]).
    pub fn runner(mut self, r: Arc<dyn SyncRunner>) -> Self {
        self.runner = Some(r);
        self
    }
    /// Settings of the default [`wiring::Wiring`] (OAuth apps, API roots). Its private-network
    /// policy is the builder's.
    pub fn wiring(mut self, w: wiring::WiringConfig) -> Self {
        self.wiring = w;
        self
    }
    /// Scheduler settings.
    pub fn scheduler(mut self, s: SchedulerConfig) -> Self {
        self.scheduler = s;
        self
    }
    /// The credentials key.
    pub fn secret_key(mut self, k: [u8; 32]) -> Self {
        self.secret_key = k;
        self
    }
    /// The private-network policy.
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.allow_private_networks = allow;
        self
    }

    /// Opens the CRM, registers every active connection with the scheduler and starts it.
    pub async fn start(mut self) -> Result<ApiState, ServiceError> {
        if self.cluster.is_some() {
            // A run's writes hold only while its lease does (scheduler::run_fenced).
            self.store = Arc::new(crate::scheduler::FencedStore::new(self.store));
        }
        // Nodes sharing PostgreSQL share the change log; a sled store is this process's alone.
        let crm_config = CrmConfig {
            shared_store: self.cluster.is_some(),
            ..CrmConfig::default()
        };
        let crm = Crm::open(self.store.clone(), crm_config).await?;
        let (connector, runner) = match (self.connector, self.runner) {
            (Some(c), Some(r)) => (c, r),
            (c, r) => {
                let mut cfg = self.wiring;
                cfg.allow_private_networks = self.allow_private_networks;
                let w = Arc::new(
                    wiring::Wiring::new(crm.clone(), self.store.clone(), &self.secret_key, cfg)
                        .map_err(|e| ServiceError::Io(e.to_string()))?,
                );
                (
                    c.unwrap_or_else(|| w.clone() as Arc<dyn Connector>),
                    r.unwrap_or(w as Arc<dyn SyncRunner>),
                )
            }
        };
        let core = Arc::new(Core {
            crm,
            store: self.store.clone(),
            connections: Connections::new(self.store.clone()),
            connector,
            runner,
            secrets: SecretBox::from_key(&self.secret_key)?,
            metrics: Metrics::default(),
            allow_private_networks: self.allow_private_networks,
            live: LiveRuns::default(),
        });
        let job_runner = Arc::new(ServiceJobRunner { core: core.clone() });
        let clustered = self.cluster.is_some();
        let scheduler = match self.cluster {
            Some(c) => Scheduler::with_cluster(self.scheduler, job_runner, self.store, c),
            None => Scheduler::new(self.scheduler, job_runner, self.store),
        };
        // A lone node holds the store: a run still recorded as running died with its process.
        // (Nodes sharing PostgreSQL cannot tell: another node may be running it; their leases
        // expire instead, and the run record stays until that node or the next run settles it.)
        if !clustered {
            let interrupted = core.connections.interrupt_stale_runs().await?;
            if interrupted > 0 {
                tracing::warn!(
                    runs = interrupted,
                    "marked runs left running by a stopped process as failed (interrupted)"
                );
            }
        }
        for c in core.connections.all().await? {
            if c.state != ConnectionState::Setup {
                scheduler.upsert(Core::job_spec(&c)).await?;
            }
        }
        scheduler.start();
        Ok(ApiState::new(core, scheduler))
    }
}

/// `/healthz`: 200 `ok` when the store answers.
async fn healthz(State(state): State<ApiState>) -> axum::response::Response {
    match state.core.store.get(connections::CONNECTIONS, b"").await {
        Ok(_) => (axum::http::StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// `/metrics`: Prometheus text format.
async fn metrics_handler(State(state): State<ApiState>) -> axum::response::Response {
    let text = state.core.metrics.render(Gauges {
        queue_depth: state.scheduler.queue_depth(),
        running: state.scheduler.running(),
    });
    ([(CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response()
}

async fn count_requests(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    state
        .core
        .metrics
        .record_request(Area::of_path(req.uri().path()));
    next.run(req).await
}

/// What `cardbridge serve` serves: [`app`] with the CardDAV server, which shares the one `Crm`
/// (and so the one change log) and the one login [`crate::server::auth::Throttle`] with the
/// API and the dashboard: a failed CardDAV Basic login and a failed API or dashboard login
/// count against the same login name and address.
pub fn full_app(state: ApiState, dav: crate::server::ServerConfig) -> Router {
    let carddav = crate::server::app(crate::server::AppState::with_throttle(
        Arc::new(state.core.crm.clone()),
        dav,
        state.auth.throttle.clone(),
    ));
    app(state, Some(carddav))
}

/// The whole HTTP service: API, dashboard, `/healthz`, `/metrics`, plus `extra` (the CardDAV
/// server's router, [`crate::server::app`]), with request counting.
pub fn app(state: ApiState, extra: Option<Router>) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_handler))
        .with_state(state.clone())
        .merge(api_router(state.clone()))
        .merge(dashboard_router(state.clone()));
    if let Some(extra) = extra {
        r = r.merge(extra);
    }
    r.layer(axum::middleware::from_fn_with_state(state, count_requests))
}

/// The first-start admin: created when the CRM has no user yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstStart {
    /// Users exist already.
    NotFirst,
    /// Created with the password from `CARDBRIDGE_ADMIN_PASSWORD`.
    FromEnv {
        /// The login.
        login: String,
    },
    /// Created with a generated one-time password (to print once).
    Generated {
        /// The login.
        login: String,
        /// The password.
        password: String,
    },
}

/// Creates the admin user when there is no user yet.
pub async fn ensure_admin(
    crm: &Crm,
    login: &str,
    env_password: Option<String>,
) -> Result<FirstStart, ServiceError> {
    if !crm.list_users().await?.is_empty() {
        return Ok(FirstStart::NotFirst);
    }
    let (password, generated) = match env_password.filter(|p| !p.is_empty()) {
        Some(p) => (p, false),
        None => (
            rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(24)
                .map(char::from)
                .collect::<String>(),
            true,
        ),
    };
    crm.create_user(NewUser {
        login: login.to_string(),
        name: "Administrator".into(),
        email: String::new(),
        role_id: None,
        is_admin: true,
        password: password.clone(),
    })
    .await?;
    Ok(if generated {
        FirstStart::Generated {
            login: login.to_string(),
            password,
        }
    } else {
        FirstStart::FromEnv {
            login: login.to_string(),
        }
    })
}

/// Installs the tracing subscriber (pretty or JSON). Secrets are never passed to it.
pub fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Opens the store in `data_dir`.
pub fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>, ServiceError> {
    let store = crate::store::SledStore::open(data_dir.join("db"))?;
    Ok(Arc::new(store))
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// How long a shutdown waits for running syncs to finish their batch.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// `cardbridge serve`: runs until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> Result<(), ServiceError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ServiceError::Io(format!(
            "cannot create the data directory {}: {e} (set --data or CARDBRIDGE_DATA)",
            config.data_dir.display()
        ))
    })?;
    let (store, leases) = crate::store::open::open_for_serve(&config).await?;
    let (secret_box, created) =
        SecretBox::load_or_create(&config.data_dir, config.secret_key.as_deref())?;
    drop(secret_box);
    if created {
        tracing::info!(
            path = %config.data_dir.join(secrets::KEY_FILE).display(),
            "created the credentials key"
        );
    }
    let key = read_key(&config)?;
    let mut builder = ServiceBuilder::new(store.clone());
    if let Some(leases) = leases {
        let mut cluster = Cluster::new(leases);
        cluster.lease = Duration::from_secs(config.scheduler.lease_secs.max(1));
        cluster.poll = cluster.poll.min(cluster.lease / 2);
        tracing::info!(
            node = %cluster.node,
            lease_secs = cluster.lease.as_secs(),
            "scheduling through the shared lease table"
        );
        builder = builder.cluster(cluster);
    }
    let state = builder
        .scheduler(config.scheduler.to_scheduler())
        .secret_key(key)
        .allow_private_networks(config.allow_private_networks)
        .wiring(wiring::WiringConfig {
            oauth: config.oauth.clone(),
            ..wiring::WiringConfig::default()
        })
        .start()
        .await?;
    match ensure_admin(
        &state.core.crm,
        &config.admin_login,
        std::env::var(ENV_ADMIN_PASSWORD).ok(),
    )
    .await?
    {
        FirstStart::NotFirst => {}
        FirstStart::FromEnv { login } => {
            tracing::info!(%login, "first start: created the admin user with the password from {ENV_ADMIN_PASSWORD}");
        }
        FirstStart::Generated { login, password } => {
            // Printed once, to the terminal only; never logged.
            println!(
                "First start: created admin user `{login}` with one-time password: {password}\n\
                 Log in at the dashboard and change it (or set {ENV_ADMIN_PASSWORD} before the first start)."
            );
        }
    }
    let scheduler = state.scheduler.clone();
    let router = full_app(state, crate::server::ServerConfig::default());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            ServiceError::Io(format!(
                "cannot listen on {}: {e} (set --listen)",
                config.listen
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| ServiceError::Io(e.to_string()))?;
    let served = match &config.tls {
        None => {
            tracing::info!(%local, "listening (http)");
            println!("cardbridge listening on http://{local}/");
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await
        }
        Some(tls) => {
            let acceptor = tls::acceptor(&tls.cert, &tls.key)?;
            tracing::info!(%local, "listening (https)");
            println!("cardbridge listening on https://{local}/");
            use axum::serve::ListenerExt as _;
            let listener = tls::TlsListener::new(listener, acceptor).tap_io(|_| {});
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await
        }
    };
    served.map_err(|e| ServiceError::Io(format!("server failed: {e}")))?;
    tracing::info!("shutting down: waiting for running syncs");
    if tokio::time::timeout(SHUTDOWN_GRACE, scheduler.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("running syncs did not finish within {SHUTDOWN_GRACE:?}; they resume from their last checkpoint");
    }
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// A [`SyncRunner`] that runs [`wiring::Wiring`] reporting progress to the command line too
/// (for `cardbridge sync`).
struct ObservedRunner {
    wiring: Arc<wiring::Wiring>,
    observer: ProgressHook,
}

#[async_trait]
impl SyncRunner for ObservedRunner {
    async fn run(
        &self,
        c: &Connection,
        creds: &Credentials,
        _: RunId,
    ) -> Result<RunSummary, RunError> {
        self.wiring
            .run_observed(c, creds, Some(self.observer.clone()))
            .await
    }
    async fn run_reporting(
        &self,
        c: &Connection,
        creds: &Credentials,
        _: RunId,
        progress: ProgressHook,
    ) -> Result<RunSummary, RunError> {
        let observer = self.observer.clone();
        let both: ProgressHook = Arc::new(move |p| {
            progress(p);
            observer(p);
        });
        self.wiring.run_observed(c, creds, Some(both)).await
    }
    async fn forget(&self, c: &Connection, remove: bool) -> Result<ForgetSummary, RunError> {
        self.wiring.forget(c, remove).await
    }
}

/// Why `cardbridge sync` could not run.
#[derive(Debug, thiserror::Error)]
pub enum SyncOnceError {
    /// Opening the data directory, the key or the CRM failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// No such connection.
    #[error("connection {0} does not exist (list them with GET /api/v1/connections)")]
    NoConnection(ConnectionId),
    /// The connection was never started.
    #[error("connection {0} has not been started: press Start Syncing (POST /api/v1/connections/{0}/start) first")]
    NotStarted(ConnectionId),
}

/// `cardbridge sync --connection ID`: one run in the foreground, recorded like a manual
/// refresh (run record, conflicts, connection state), reporting the run's progress (pages,
/// items, counts so far) to `observer`. Needs the data directory to itself: `serve` must not
/// be running on it.
pub async fn sync_once(
    config: &Config,
    id: ConnectionId,
    observer: ProgressHook,
) -> Result<RunRecord, SyncOnceError> {
    let store = open_store(&config.data_dir).map_err(|e| {
        ServiceError::Io(format!(
            "cannot open the data directory {}: {e} (is `cardbridge serve` running on it? \
             then use POST /api/v1/connections/{id}/refresh?wait=true instead)",
            config.data_dir.display()
        ))
    })?;
    let key = read_key(config)?;
    let crm = Crm::open(store.clone(), CrmConfig::default())
        .await
        .map_err(ServiceError::from)?;
    let w = Arc::new(
        wiring::Wiring::new(
            crm.clone(),
            store.clone(),
            &key,
            wiring::WiringConfig {
                allow_private_networks: config.allow_private_networks,
                oauth: config.oauth.clone(),
                ..wiring::WiringConfig::default()
            },
        )
        .map_err(|e| ServiceError::Io(e.to_string()))?,
    );
    let core = Arc::new(Core {
        crm,
        store: store.clone(),
        connections: Connections::new(store.clone()),
        connector: w.clone(),
        runner: Arc::new(ObservedRunner {
            wiring: w,
            observer,
        }),
        secrets: SecretBox::from_key(&key).map_err(ServiceError::from)?,
        metrics: Metrics::default(),
        allow_private_networks: config.allow_private_networks,
        live: LiveRuns::default(),
    });
    let conn = core
        .connections
        .get(id)
        .await
        .map_err(ServiceError::from)?
        .ok_or(SyncOnceError::NoConnection(id))?;
    if conn.state == ConnectionState::Setup {
        return Err(SyncOnceError::NotStarted(id));
    }
    core.connections
        .interrupt_stale_runs()
        .await
        .map_err(ServiceError::from)?;
    let run_id = store
        .next_id(crate::scheduler::SEQ_RUN)
        .await
        .map_err(ServiceError::from)?;
    let runner = ServiceJobRunner { core: core.clone() };
    runner.run(id, run_id, Trigger::Manual).await;
    let record = core
        .connections
        .run(id, run_id)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| ServiceError::Io(format!("run {run_id} was not recorded")))?;
    Ok(record)
}

fn read_key(config: &Config) -> Result<[u8; 32], ServiceError> {
    use base64::Engine as _;
    let raw = match &config.secret_key {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| secrets::SecretError::BadKey)?,
        None => std::fs::read(config.data_dir.join(secrets::KEY_FILE))
            .map_err(|e| ServiceError::Io(format!("cannot read the credentials key: {e}")))?,
    };
    raw.try_into()
        .map_err(|_| ServiceError::Secret(secrets::SecretError::BadKey))
}

/// HTTPS: a rustls acceptor from PEM files and an axum listener that handshakes
/// concurrently (a slow client never blocks the accept loop).
pub mod tls {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::server::TlsStream;
    use tokio_rustls::TlsAcceptor;

    use super::ServiceError;

    /// How long a TLS handshake may take.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// A TLS acceptor from a PEM certificate chain and key.
    pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServiceError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| ServiceError::Io(format!("tls.cert {}: {e}", cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| ServiceError::Io(format!("tls.cert {}: {e}", cert.display())))?;
        if certs.is_empty() {
            return Err(ServiceError::Io(format!(
                "tls.cert {}: no CERTIFICATE block found",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| ServiceError::Io(format!("tls.key {}: {e}", key.display())))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServiceError::Io(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ServiceError::Io(format!("TLS certificate and key do not fit: {e}")))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Accepts TCP connections and hands out those whose TLS handshake succeeded.
    pub struct TlsListener {
        rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
    }

    impl TlsListener {
        /// Spawns the accept loop.
        pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
            let local = listener
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(async move {
                loop {
                    let (tcp, peer) = match listener.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if tx.is_closed() {
                        return;
                    }
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send((tls, peer)).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
            });
            Self { rx, local }
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.rx.recv().await {
                Some(x) => x,
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            Ok(self.local)
        }
    }
}
