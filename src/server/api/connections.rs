//! `/api/v1/connections`: the article's flow as an API. Create (provider + account email;
//! known domains pick the provider; for others, without a provider or server URL, CardDAV
//! discovery and then Exchange Autodiscover pick it, or a 422 says both were tried), list the account's sync groups, settings (sync group,
//! direction, visibility — refused with 422 listing the plan's options), field-mapping
//! preview, Start Syncing, Refresh (202 with a run id; `?wait=true` blocks until the run
//! ends), status and dashboard figures, conflicts, credentials, and delete (keeping or
//! removing the persons it brought in).
//!
//! A connection is its owner's: another (non-admin) user gets 404 for it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::auth::Caller;
use super::error::{ApiError, Body};
use super::{ok, ok_with, ApiState};
use crate::crm::mapping::preview;
use crate::crm::visibility::{allowed_visibilities, check_allowed};
use crate::crm::{MappingConfig, Visibility};
use crate::providers::http::NetworkPolicy;
use crate::providers::{Provider, ProviderKind, RemoteChange};
use crate::scheduler::{JobOutcome, RunId};
use crate::service::connections::{
    now_rfc3339, provider_for_domain, provider_name, ChosenGroup, ConflictPolicy, Connection,
    ConnectionId, ConnectionState, Figures, RunRecord, RunState, SyncDirection,
};
use crate::service::{reauthorization_fix, Core, Credentials, DiscoveryError, PasswordScheme};

/// How many sample cards the field-mapping preview maps.
pub const PREVIEW_SAMPLES: usize = 5;

/// A connection as the API shows it (credentials never leave the server).
#[derive(Debug, Serialize)]
pub struct ConnectionView {
    /// Id.
    pub id: ConnectionId,
    /// Owner.
    pub user_id: u64,
    /// Provider.
    pub provider: ProviderKind,
    /// Account email.
    pub account_email: String,
    /// Server URL.
    pub server_url: Option<String>,
    /// Login at the provider.
    pub username: String,
    /// Whether credentials are stored.
    pub has_credentials: bool,
    /// Chosen sync group.
    pub sync_group: Option<ChosenGroup>,
    /// Direction.
    pub direction: SyncDirection,
    /// Visibility of the persons it brings in.
    pub visibility: Option<Visibility>,
    /// Conflict policy.
    pub conflict_policy: ConflictPolicy,
    /// Field mapping.
    pub mapping: MappingConfig,
    /// Interval override, seconds.
    pub interval_secs: Option<u64>,
    /// State (`setup`, `active`, `needs_reauthorization`).
    #[serde(flatten)]
    pub state: ConnectionState,
    /// Created.
    pub created: String,
    /// Updated.
    pub updated: String,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        ConnectionView {
            id: c.id,
            user_id: c.user_id,
            provider: c.provider,
            account_email: c.account_email.clone(),
            server_url: c.server_url.clone(),
            username: c.username.clone(),
            has_credentials: c.sealed_credentials.is_some(),
            sync_group: c.sync_group.clone(),
            direction: c.direction,
            visibility: c.visibility,
            conflict_policy: c.conflict_policy,
            mapping: c.mapping.clone(),
            interval_secs: c.interval_secs,
            state: c.state.clone(),
            created: c.created.clone(),
            updated: c.updated.clone(),
        }
    }
}

/// Loads a connection the caller may manage (its owner, or an admin); 404 otherwise.
pub async fn load(
    st: &ApiState,
    caller: &Caller,
    id: ConnectionId,
) -> Result<Connection, ApiError> {
    match st.core.connections.get(id).await? {
        Some(c) if c.user_id == caller.user.id || caller.user.is_admin => Ok(c),
        _ => Err(ApiError::not_found(format!("connection {id}"))),
    }
}

async fn open_provider(core: &Core, c: &Connection) -> Result<Arc<dyn Provider>, ApiError> {
    let creds = core.credentials(c)?;
    core.connector
        .open(c, &creds)
        .await
        .map_err(ApiError::provider)
}

/// The body of `POST /connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInput {
    /// `carddav`, `icloud`, `google`, `graph` or `ews`; from the domain when absent.
    pub provider: Option<ProviderKind>,
    /// The account's email.
    pub email: String,
    /// CardDAV/EWS server URL (discovered from the email's domain when absent).
    pub server_url: Option<String>,
    /// Login at the provider (default: the email).
    pub username: Option<String>,
    /// Password or app-specific password (CardDAV, iCloud, EWS).
    pub password: Option<String>,
    /// OAuth refresh token (Google, Graph).
    pub refresh_token: Option<String>,
    /// EWS: `basic` (default) or `ntlm`.
    pub auth: Option<PasswordScheme>,
}

fn valid_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !e.contains(' ')
        }
        None => false,
    }
}

async fn check_server_url(core: &Core, raw: &str) -> Result<String, ApiError> {
    let url = Url::parse(raw).map_err(|e| {
        ApiError::unprocessable(
            format!("server_url {raw:?} is not a URL: {e}"),
            "give an absolute URL like https://dav.example.com/",
        )
    })?;
    NetworkPolicy::from_config(core.allow_private_networks)
        .check_url_resolved(&url)
        .await
        .map_err(|e| {
            ApiError::unprocessable(
                format!("server_url refused: {e}"),
                "use a public server, or have the operator allow private networks",
            )
        })?;
    Ok(url.to_string())
}

fn check_credentials(provider: ProviderKind, c: &Credentials) -> Result<(), ApiError> {
    match provider {
        ProviderKind::Google | ProviderKind::Graph => {
            if c.refresh_token.as_deref().unwrap_or("").is_empty() {
                return Err(ApiError::unprocessable(
                    format!("{} needs an OAuth refresh token", provider_name(provider)),
                    "sign in with the provider and pass `refresh_token`",
                ));
            }
        }
        _ => {
            if c.auth == Some(PasswordScheme::Ntlm) && provider != ProviderKind::Ews {
                return Err(ApiError::unprocessable(
                    format!("{} does not use NTLM", provider_name(provider)),
                    "leave `auth` out (NTLM is for Exchange on premises, provider `ews`)",
                ));
            }
            if c.password.as_deref().unwrap_or("").is_empty() {
                return Err(ApiError::unprocessable(
                    format!("{} needs a password", provider_name(provider)),
                    "pass `password` (for iCloud: an app-specific password from appleid.apple.com)",
                ));
            }
        }
    }
    Ok(())
}

/// `POST /connections`.
pub async fn create(
    State(st): State<ApiState>,
    caller: Caller,
    Body(input): Body<CreateInput>,
) -> Result<Response, ApiError> {
    let core = &st.core;
    let email = input.email.trim().to_string();
    if !valid_email(&email) {
        return Err(ApiError::unprocessable(
            format!("{email:?} is not an email address"),
            "give the address of the account to sync, like ann@example.com",
        ));
    }
    let by_domain = provider_for_domain(&email);
    let provider = match (input.provider, by_domain) {
        (Some(p), Some(d)) if p != d => {
            return Err(ApiError::unprocessable(
                format!(
                    "{email} is a {} account, not {}",
                    provider_name(d),
                    provider_name(p)
                ),
                format!("leave `provider` out or set it to `{}`", provider_name(d)),
            ))
        }
        (Some(p), _) => Some(p),
        (None, Some(d)) => Some(d),
        (None, None) => None,
    };
    let mut server_url = match input.server_url.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(raw) => Some(check_server_url(core, raw.trim()).await?),
        None => None,
    };
    let creds = Credentials {
        username: input.username.clone(),
        password: input.password,
        refresh_token: input.refresh_token,
        auth: input.auth,
    };
    let provider = match (provider, &server_url) {
        (Some(p), _) => p,
        // A server URL without a provider: CardDAV, as the form says.
        (None, Some(_)) => ProviderKind::Carddav,
        // An unknown domain: CardDAV discovery, then Exchange Autodiscover.
        (None, None) => {
            check_credentials(ProviderKind::Carddav, &creds)?;
            match core.connector.discover(&email, &creds).await {
                Ok(Some(found)) => {
                    server_url = Some(found.server_url);
                    found.provider
                }
                Ok(None) => ProviderKind::Carddav,
                Err(e @ DiscoveryError::Rejected { .. }) => {
                    return Err(ApiError::unprocessable(
                        e.to_string(),
                        "check the login and password (an app-specific password if the \
                         account uses two-step sign-in)",
                    ))
                }
                Err(e @ DiscoveryError::NothingFound { .. }) => {
                    return Err(ApiError::unprocessable(
                        e.to_string(),
                        "give `server_url` (your CardDAV server, or your Exchange server's EWS \
                         URL like https://mail.example.com/EWS/Exchange.asmx) and `provider` \
                         (`carddav` or `ews`); or pick `google`, `icloud` or `graph` if the \
                         account is hosted there",
                    ))
                }
            }
        }
    };
    check_credentials(provider, &creds)?;
    let now = now_rfc3339();
    let plan = core.crm.company().await?.plan;
    let c = Connection {
        id: core.connections.next_id().await?,
        user_id: caller.user.id,
        provider,
        username: input.username.unwrap_or_else(|| email.clone()),
        account_email: email,
        server_url,
        sealed_credentials: Some(core.seal(&creds)?),
        sync_group: None,
        direction: SyncDirection::OneWay,
        visibility: allowed_visibilities(plan).first().copied(),
        conflict_policy: ConflictPolicy::NewestWins,
        mapping: MappingConfig::default(),
        interval_secs: None,
        state: ConnectionState::Setup,
        created: now.clone(),
        updated: now,
    };
    core.connections.put(&c).await?;
    tracing::info!(
        connection = c.id,
        provider = provider_name(provider),
        "connection created"
    );
    Ok(ok_with(StatusCode::CREATED, ConnectionView::from(&c)))
}

/// `?all=true` lets an admin list everyone's connections.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Admins only: every user's connections.
    #[serde(default)]
    pub all: bool,
}

/// `GET /connections`.
pub async fn list(
    State(st): State<ApiState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let conns = if q.all && caller.user.is_admin {
        st.core.connections.all().await?
    } else {
        st.core.connections.of_user(caller.user.id).await?
    };
    Ok(ok(conns
        .iter()
        .map(ConnectionView::from)
        .collect::<Vec<_>>()))
}

/// `GET /connections/{id}`.
pub async fn get_one(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
) -> Result<Response, ApiError> {
    Ok(ok(ConnectionView::from(&load(&st, &caller, id).await?)))
}

/// `GET /connections/{id}/sync-groups`: the groups the account offers (the dropdown).
pub async fn sync_groups(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
) -> Result<Response, ApiError> {
    let c = load(&st, &caller, id).await?;
    let p = open_provider(&st.core, &c).await?;
    let groups = p.sync_groups().await.map_err(ApiError::provider)?;
    Ok(ok(groups))
}

/// `GET /connections/{id}/settings`: the settings and the choices the plan offers.
pub async fn get_settings(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
) -> Result<Response, ApiError> {
    let c = load(&st, &caller, id).await?;
    let plan = st.core.crm.company().await?.plan;
    Ok(ok(json!({
        "sync_group": c.sync_group,
        "direction": c.direction,
        "visibility": c.visibility,
        "conflict_policy": c.conflict_policy,
        "mapping": c.mapping,
        "interval_secs": c.interval_secs,
        "options": {
            "direction": ["one_way", "two_way"],
            "visibility": allowed_visibilities(plan),
            "conflict_policy": ["newest_wins", "provider_wins", "crm_wins"],
            "plan": plan,
        }
    })))
}

/// A settings change; absent fields stay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    /// The sync group's id (from `/sync-groups`).
    pub sync_group: Option<String>,
    /// `one_way` or `two_way`.
    pub direction: Option<SyncDirection>,
    /// A visibility the plan offers.
    pub visibility: Option<String>,
    /// Conflict policy.
    pub conflict_policy: Option<ConflictPolicy>,
    /// Field mapping.
    pub mapping: Option<MappingConfig>,
    /// Interval in seconds (`null`: the default).
    pub interval_secs: Option<Option<u64>>,
}

fn parse_visibility(s: &str, allowed: &[Visibility]) -> Result<Visibility, ApiError> {
    serde_json::from_value::<Visibility>(serde_json::Value::String(s.to_string())).map_err(|_| {
        ApiError::unprocessable(
            format!("unknown visibility `{s}`"),
            format!(
                "choose one of: {}",
                allowed
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// `PATCH`/`PUT /connections/{id}/settings`.
pub async fn update_settings(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
    Body(input): Body<SettingsInput>,
) -> Result<Response, ApiError> {
    let core = &st.core;
    let mut c = load(&st, &caller, id).await?;
    let plan = core.crm.company().await?.plan;
    if let Some(v) = &input.visibility {
        let allowed = allowed_visibilities(plan);
        let v = parse_visibility(v, allowed)?;
        check_allowed(plan, v).map_err(|e| {
            ApiError::unprocessable(
                e.to_string(),
                format!(
                    "choose one of: {}",
                    allowed
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        c.visibility = Some(v);
    }
    if let Some(gid) = &input.sync_group {
        let p = open_provider(core, &c).await?;
        let groups = p.sync_groups().await.map_err(ApiError::provider)?;
        let g = groups.iter().find(|g| &g.id == gid).ok_or_else(|| {
            ApiError::unprocessable(
                format!("the account has no sync group {gid:?}"),
                format!(
                    "choose one of: {}",
                    groups
                        .iter()
                        .map(|g| g.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        c.sync_group = Some(ChosenGroup {
            id: g.id.clone(),
            name: g.name.clone(),
            writable: g.writable,
        });
    }
    if let Some(d) = input.direction {
        c.direction = d;
    }
    if c.direction == SyncDirection::TwoWay {
        if let Some(g) = c.sync_group.as_ref().filter(|g| !g.writable) {
            return Err(ApiError::unprocessable(
                format!(
                    "two-way sync needs a writable group; {:?} is read-only",
                    g.name
                ),
                "choose one-way sync, or a group the account may write",
            ));
        }
    }
    if let Some(p) = input.conflict_policy {
        c.conflict_policy = p;
    }
    if let Some(m) = input.mapping {
        c.mapping = m;
    }
    if let Some(i) = input.interval_secs {
        if i.is_some_and(|s| s < 60) {
            return Err(ApiError::unprocessable(
                "interval_secs is below 60",
                "use at least 60 seconds, or null for the default",
            ));
        }
        c.interval_secs = i;
    }
    c.updated = now_rfc3339();
    // Settings never change the credentials, but listing the groups may have rotated the
    // refresh token, which the opened provider stored meanwhile: keep the stored ones.
    if let Some(cur) = core.connections.get(id).await? {
        c.sealed_credentials = cur.sealed_credentials;
    }
    core.connections.put(&c).await?;
    if c.state != ConnectionState::Setup {
        st.scheduler.upsert(Core::job_spec(&c)).await?;
    }
    Ok(ok(ConnectionView::from(&c)))
}

/// `PUT /connections/{id}/credentials`: new credentials (the fix for "needs
/// re-authorization"). An active connection is rescheduled right away.
pub async fn set_credentials(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
    Body(input): Body<Credentials>,
) -> Result<Response, ApiError> {
    let mut c = load(&st, &caller, id).await?;
    check_credentials(c.provider, &input)?;
    if let Some(u) = &input.username {
        c.username = u.clone();
    }
    save_credentials(&st, &mut c, &input).await?;
    Ok(ok(ConnectionView::from(&c)))
}

/// Seals `creds` into the connection, clears "needs re-authorization", stores it and
/// reschedules it (unless it is still in setup).
pub async fn save_credentials(
    st: &ApiState,
    c: &mut Connection,
    creds: &Credentials,
) -> Result<(), ApiError> {
    let core = &st.core;
    c.sealed_credentials = Some(core.seal(creds)?);
    if matches!(c.state, ConnectionState::NeedsReauthorization { .. }) {
        c.state = ConnectionState::Active;
    }
    c.updated = now_rfc3339();
    core.connections.put(c).await?;
    if c.state != ConnectionState::Setup {
        st.scheduler.upsert(Core::job_spec(c)).await?;
    }
    Ok(())
}

fn need_group(c: &Connection) -> Result<&ChosenGroup, ApiError> {
    c.sync_group.as_ref().ok_or_else(|| {
        ApiError::unprocessable(
            "no sync group chosen",
            "choose one from GET /connections/{id}/sync-groups and PATCH /connections/{id}/settings",
        )
    })
}

/// `GET /connections/{id}/mapping-preview`: the field table and sample cards as they would map.
pub async fn mapping_preview(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
) -> Result<Response, ApiError> {
    let c = load(&st, &caller, id).await?;
    let group = need_group(&c)?.id.clone();
    let p = open_provider(&st.core, &c).await?;
    let page = p.pull(&group, None).await.map_err(ApiError::provider)?;
    let cards: Vec<_> = page
        .changes
        .into_iter()
        .filter_map(|ch| match ch {
            RemoteChange::Upsert(item) => Some(item.card),
            _ => None,
        })
        .take(PREVIEW_SAMPLES)
        .collect();
    let mut pv = serde_json::to_value(preview(&c.mapping, &cards)).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "report this bug",
        )
    })?;
    if let Some(obj) = pv.as_object_mut() {
        obj.insert("direction".into(), json!(c.direction));
        obj.insert(
            "note".into(),
            json!(match c.direction {
                SyncDirection::OneWay =>
                    "one-way: fields flow from the address book into the CRM only",
                SyncDirection::TwoWay =>
                    "two-way: fields flow both ways, as each row's direction allows",
            }),
        );
    }
    Ok(ok(pv))
}

/// The answer to start and refresh.
#[derive(Debug, Serialize)]
struct RunStarted {
    run_id: RunId,
    joined: bool,
    status_url: String,
}

/// `POST /connections/{id}/start`: confirms the settings and starts syncing (202 + run id).
pub async fn start(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
) -> Result<Response, ApiError> {
    let core = &st.core;
    let mut c = load(&st, &caller, id).await?;
    need_group(&c)?;
    let plan = core.crm.company().await?.plan;
    let Some(v) = c.visibility else {
        return Err(ApiError::unprocessable(
            "no visibility chosen",
            "set `visibility` in the settings",
        ));
    };
    check_allowed(plan, v).map_err(|e| {
        ApiError::unprocessable(
            e.to_string(),
            "the plan changed since the visibility was chosen: choose an allowed one in the settings",
        )
    })?;
    if c.state == ConnectionState::Setup {
        c.state = ConnectionState::Active;
        c.updated = now_rfc3339();
        core.connections.put(&c).await?;
    }
    let t = st.scheduler.start_now(Core::job_spec(&c)).await?;
    Ok(ok_with(
        StatusCode::ACCEPTED,
        RunStarted {
            run_id: t.run_id,
            joined: t.joined,
            status_url: format!("/api/v1/connections/{id}/runs/{}", t.run_id),
        },
    ))
}

/// `?wait=true`.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Block until the run ends.
    #[serde(default)]
    pub wait: bool,
}

/// `POST /connections/{id}/refresh[?wait=true]`.
pub async fn refresh(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
    Query(q): Query<WaitQuery>,
) -> Result<Response, ApiError> {
    let c = load(&st, &caller, id).await?;
    if c.state == ConnectionState::Setup {
        return Err(ApiError::conflict(
            "the connection has not been started",
            "press Start Syncing (POST /api/v1/connections/{id}/start) first",
        ));
    }
    let t = st.scheduler.refresh(id).await?;
    let run_id = t.run_id;
    if !q.wait {
        return Ok(ok_with(
            StatusCode::ACCEPTED,
            RunStarted {
                run_id,
                joined: t.joined,
                status_url: format!("/api/v1/connections/{id}/runs/{run_id}"),
            },
        ));
    }
    let outcome = t.wait().await;
    let record = st.core.connections.run(id, run_id).await?;
    Ok(ok(json!({
        "run_id": run_id,
        "outcome": outcome,
        "run": record,
    })))
}

/// A running run's record with its live progress from the run registry.
fn with_live_progress(st: &ApiState, r: &mut RunRecord) {
    if r.state == RunState::Running {
        r.progress = st.core.live.get(r.id).or(r.progress);
    }
}

/// `GET /connections/{id}/runs`: recent runs, newest first.
pub async fn runs(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
) -> Result<Response, ApiError> {
    load(&st, &caller, id).await?;
    let mut runs = st.core.connections.runs(id).await?;
    runs.truncate(50);
    for r in &mut runs {
        with_live_progress(&st, r);
    }
    Ok(ok(runs))
}

/// `GET /connections/{id}/runs/{run_id}`: one run (poll it until `state` is not `running`).
/// A running run carries its live `progress` (pages, items, added/updated/deleted so far); a
/// finished one its final progress. A run that was requested but has not started yet answers
/// `state: "queued"`.
pub async fn run(
    State(st): State<ApiState>,
    caller: Caller,
    Path((id, run_id)): Path<(ConnectionId, RunId)>,
) -> Result<Response, ApiError> {
    load(&st, &caller, id).await?;
    match st.core.connections.run(id, run_id).await? {
        Some(mut r) => {
            with_live_progress(&st, &mut r);
            Ok(ok(r))
        }
        None => {
            let s = st.scheduler.status(id);
            let pending = s
                .as_ref()
                .is_some_and(|s| s.queued == Some(run_id) || s.running == Some(run_id));
            if pending {
                Ok(ok(
                    json!({"id": run_id, "connection_id": id, "state": "queued"}),
                ))
            } else {
                Err(ApiError::not_found(format!(
                    "run {run_id} of connection {id}"
                )))
            }
        }
    }
}

/// The dashboard figures and state of a connection.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// The connection.
    pub connection: ConnectionView,
    /// Totals and tallies.
    pub figures: Figures,
    /// The scheduler's view.
    pub schedule: Option<crate::scheduler::JobStatus>,
    /// Set when the provider refused the credentials: what happened and how to fix it.
    pub needs_reauthorization: Option<serde_json::Value>,
}

/// Builds the status view (shared with the dashboard).
pub async fn status_view(st: &ApiState, c: &Connection) -> Result<StatusView, ApiError> {
    let mut figures = st.core.connections.figures(c.id).await?;
    if let Some(r) = &mut figures.latest_run {
        with_live_progress(st, r);
    }
    let needs = match &c.state {
        ConnectionState::NeedsReauthorization { reason } => Some(json!({
            "reason": reason,
            "fix": reauthorization_fix(c).replace("{id}", &c.id.to_string()),
        })),
        _ => None,
    };
    Ok(StatusView {
        connection: ConnectionView::from(c),
        figures,
        schedule: st.scheduler.status(c.id),
        needs_reauthorization: needs,
    })
}

/// `GET /connections/{id}/status`.
pub async fn status(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
) -> Result<Response, ApiError> {
    let c = load(&st, &caller, id).await?;
    Ok(ok(status_view(&st, &c).await?))
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
pub struct LimitQuery {
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

/// `GET /connections/{id}/conflicts`: newest first.
pub async fn conflicts(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    load(&st, &caller, id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(ok(st.core.connections.conflicts(id, limit).await?))
}

/// `?persons=keep|remove`.
#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    /// What happens to the persons the connection brought in.
    pub persons: Option<String>,
}

/// `DELETE /connections/{id}?persons=keep|remove`.
pub async fn remove(
    State(st): State<ApiState>,
    caller: Caller,
    Path(id): Path<ConnectionId>,
    Query(q): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    let c = load(&st, &caller, id).await?;
    let remove_persons = match q.persons.as_deref() {
        Some("keep") => false,
        Some("remove") => true,
        other => {
            return Err(ApiError::unprocessable(
                match other {
                    Some(v) => format!("persons={v:?} is not a choice"),
                    None => "say what happens to the persons this connection brought in".into(),
                },
                "add ?persons=keep to keep them in the CRM, or ?persons=remove to delete the ones it created",
            ))
        }
    };
    st.scheduler.remove(id).await?;
    let forgot = match st.core.runner.forget(&c, remove_persons).await {
        Ok(f) => f,
        Err(e) => {
            // Put it back on the schedule if it was running: nothing was deleted.
            if c.state != ConnectionState::Setup {
                st.scheduler.upsert(Core::job_spec(&c)).await?;
            }
            return Err(run_error(e));
        }
    };
    st.core.connections.delete(&c).await?;
    tracing::info!(connection = id, remove_persons, "connection deleted");
    Ok(ok(json!({
        "id": id,
        "persons_removed": forgot.persons_removed,
        "persons_kept": forgot.persons_kept,
    })))
}

fn run_error(e: crate::service::RunError) -> ApiError {
    match e {
        crate::service::RunError::Provider(p) => ApiError::provider(p),
        crate::service::RunError::Local(m) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            m,
            "check the server's data directory and its log, then try again",
        ),
    }
}

/// Whether a finished run outcome is a success (for `?wait=true` callers).
pub fn succeeded(o: &JobOutcome) -> bool {
    matches!(o, JobOutcome::Succeeded)
}

/// A run record's final state, for the dashboard.
pub fn describe_run(r: &RunRecord) -> String {
    match (&r.state, &r.error) {
        (crate::service::connections::RunState::Running, _) => "running".into(),
        (crate::service::connections::RunState::Succeeded, _) => "succeeded".into(),
        (_, Some(e)) => format!("failed: {e}"),
        _ => "failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntlm_is_for_exchange_only_and_still_needs_a_password() {
        let ntlm = |password: Option<&str>| Credentials {
            username: Some("CONTOSO\\jane".into()),
            password: password.map(str::to_string),
            auth: Some(PasswordScheme::Ntlm),
            ..Credentials::default()
        };
        assert!(check_credentials(ProviderKind::Ews, &ntlm(Some("pw"))).is_ok());
        assert!(check_credentials(ProviderKind::Ews, &ntlm(None)).is_err());
        assert!(check_credentials(ProviderKind::Carddav, &ntlm(Some("pw"))).is_err());
        assert!(check_credentials(ProviderKind::Icloud, &ntlm(Some("pw"))).is_err());
        // The scheme is part of the sealed credentials.
        let json = serde_json::to_string(&ntlm(Some("pw"))).unwrap_or_default();
        assert!(json.contains("\"auth\":\"ntlm\""), "{json}");
        let back: Credentials = serde_json::from_str(r#"{"password":"pw"}"#).unwrap_or_default();
        assert_eq!(back.auth, None, "old credentials stay Basic");
    }
}
