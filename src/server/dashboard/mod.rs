//! The web page, served by the same binary: server-rendered HTML with a little inline CSS and
//! JavaScript, no framework. Login, the connections list, Add New Account (the article's
//! flow: provider and email → sync group from the account, direction, visibility from the
//! plan's options → field-mapping preview → Start Syncing), the per-connection dashboard
//! (totals, recent additions/updates/deletions, last sync, errors, conflicts,
//! needs-re-authorization with its fix, Refresh that follows the run until it ends) and
//! settings. The pages call the REST API with the session cookie (and `X-Requested-With`).

use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::api::auth::{authenticate, client_addr, session_cookie, SESSION_COOKIE};
use super::api::connections::{describe_run, load, status_view};
use super::api::{auth::Caller, ApiState};
use crate::crm::visibility::allowed_visibilities;
use crate::crm::User;
use crate::service::connections::{provider_name, ConnectionState, SyncDirection};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}\
header{background:#203040;color:#fff;padding:.6em 1.2em;display:flex;justify-content:space-between;align-items:center}\
header a{color:#fff}main{max-width:60em;margin:1.5em auto;padding:0 1em}\
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:1em 1.2em;margin-bottom:1em}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.35em .5em;text-align:left}\
.fig{display:inline-block;min-width:8em;margin-right:1em}.fig b{display:block;font-size:1.8em}\
button,.btn{background:#2a6ad8;color:#fff;border:0;border-radius:4px;padding:.5em 1em;cursor:pointer;text-decoration:none;display:inline-block}\
button.danger{background:#c0392b}label{display:block;margin:.6em 0 .2em}input,select{padding:.4em;min-width:20em}\
input[type=radio]{min-width:0;margin:0 .5em 0 0}\
.warn{background:#fff4e5;border-color:#f0b429}.err{color:#c0392b}.muted{color:#777}";

const JS: &str = r#"
async function api(method, path, body) {
  const opt = {method, headers: {'X-Requested-With': 'cardbridge'}};
  if (body !== undefined) { opt.headers['Content-Type'] = 'application/json'; opt.body = JSON.stringify(body); }
  const r = await fetch('/api/v1' + path, opt);
  const j = await r.json().catch(() => ({success:false, error:'HTTP ' + r.status, error_info:''}));
  if (!j.success) { throw new Error(j.error + (j.error_info ? ' — ' + j.error_info : '')); }
  return j.data;
}
function show(id, text, isErr) { const e = document.getElementById(id); if (e) { e.textContent = text; e.className = isErr ? 'err' : 'muted'; } }
"#;

fn page(title: &str, user: Option<&User>, body: &str) -> Html<String> {
    let nav = match user {
        Some(u) => format!(
            "<span>{} · <a href=\"/connections\">Connections</a> · \
             <form method=post action=/logout style=display:inline><button>Log out</button></form></span>",
            esc(&u.login)
        ),
        None => String::new(),
    };
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{t} · cardbridge</title><style>{CSS}</style><script>{JS}</script></head>\
         <body><header><strong>cardbridge</strong>{nav}</header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    ))
}

/// A logged-in page user; anyone else is sent to the login page.
pub struct PageUser(pub User);

impl FromRequestParts<ApiState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, Response> {
        match authenticate(parts, st).await {
            Ok(Some(u)) => Ok(PageUser(u)),
            _ => Err(Redirect::to("/login").into_response()),
        }
    }
}

async fn login_page() -> Html<String> {
    page(
        "Log in",
        None,
        "<div class=card><form method=post action=/login>\
         <label for=login>Login</label><input id=login name=login autocomplete=username required>\
         <label for=password>Password</label><input id=password name=password type=password autocomplete=current-password required>\
         <p><button type=submit>Log in</button></p></form></div>",
    )
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    login: String,
    password: String,
}

async fn login(State(st): State<ApiState>, parts: Parts, Form(f): Form<LoginForm>) -> Response {
    let addr = client_addr(&parts);
    let crm = &st.core.crm;
    let checked = st
        .auth
        .throttled(&f.login, addr, || async {
            Ok(crm.authenticate(&f.login, &f.password).await?)
        })
        .await;
    match checked {
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            let secs = e.retry_after.unwrap_or(1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                page(
                    "Log in",
                    None,
                    &format!("<p class=err>Too many failed logins. Wait {secs} seconds and try again.</p>"),
                ),
            )
                .into_response()
        }
        Ok(Some((user, _))) => {
            let token = st.auth.create_session(user.id);
            (
                StatusCode::SEE_OTHER,
                [
                    (
                        header::SET_COOKIE,
                        format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
                    ),
                    (header::LOCATION, "/connections".to_string()),
                ],
            )
                .into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            page(
                "Log in",
                None,
                "<p class=err>Wrong login or password. Try again.</p>\
                 <div class=card><form method=post action=/login>\
                 <label for=login>Login</label><input id=login name=login required>\
                 <label for=password>Password</label><input id=password name=password type=password required>\
                 <p><button type=submit>Log in</button></p></form></div>",
            ),
        )
            .into_response(),
    }
}

async fn logout(State(st): State<ApiState>, req: axum::extract::Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Some(t) = session_cookie(&parts) {
        st.auth.end_session(&t);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
            ),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}

async fn home(State(st): State<ApiState>, req: axum::extract::Request) -> Redirect {
    let (parts, _) = req.into_parts();
    match authenticate(&parts, &st).await {
        Ok(Some(_)) => Redirect::to("/connections"),
        _ => Redirect::to("/login"),
    }
}

fn state_label(s: &ConnectionState) -> &'static str {
    match s {
        ConnectionState::Setup => "setting up",
        ConnectionState::Active => "syncing",
        ConnectionState::NeedsReauthorization { .. } => "needs re-authorization",
    }
}

async fn connections_page(State(st): State<ApiState>, PageUser(u): PageUser) -> Response {
    let conns = match st.core.connections.of_user(u.id).await {
        Ok(c) => c,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut rows = String::new();
    for c in &conns {
        let href = if c.state == ConnectionState::Setup {
            format!("/connections/{}/settings", c.id)
        } else {
            format!("/connections/{}", c.id)
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"{href}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.account_email),
            provider_name(c.provider),
            c.sync_group
                .as_ref()
                .map(|g| esc(&g.name))
                .unwrap_or_default(),
            state_label(&c.state)
        ));
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=4 class=muted>No address book connected yet.</td></tr>".into();
    }
    page(
        "Contact Sync",
        Some(&u),
        &format!(
            "<div class=card><table><tr><th>Account</th><th>Provider</th><th>Sync group</th><th>State</th></tr>{rows}</table>\
             <p><a class=btn id=add href=/connections/new>Add New Account</a></p></div>"
        ),
    )
    .into_response()
}

async fn new_connection_page(PageUser(u): PageUser) -> Html<String> {
    page(
        "Add New Account",
        Some(&u),
        r#"<div class=card><form id=f>
<label for=provider>Provider</label>
<select id=provider name=provider>
<option value="">Pick from the email address</option>
<option value=google>Google</option><option value=graph>Outlook.com / Office 365</option>
<option value=ews>Microsoft Exchange</option><option value=icloud>iCloud</option>
<option value=carddav>Other CardDAV server</option></select>
<label for=email>Email address of the account</label><input id=email type=email required>
<label for=server_url>Server URL (CardDAV or Exchange; leave empty to discover it)</label><input id=server_url>
<label for=username>Login at the provider (default: the email)</label><input id=username>
<label for=password>Password or app-specific password</label><input id=password type=password>
<label for=refresh_token>OAuth refresh token (Google, Outlook.com)</label><input id=refresh_token>
<p><button type=submit id=next>Add New Account</button> <span id=msg></span></p></form></div>
<script>
document.getElementById('f').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const v = id => document.getElementById(id).value.trim();
  const body = {email: v('email')};
  for (const k of ['provider','server_url','username','password','refresh_token']) { if (v(k)) body[k] = v(k); }
  show('msg', 'Connecting…');
  try { const c = await api('POST', '/connections', body); location.href = '/connections/' + c.id + '/settings'; }
  catch (e) { show('msg', e.message, true); }
});
</script>"#,
    )
}

async fn settings_page(
    State(st): State<ApiState>,
    PageUser(u): PageUser,
    Path(id): Path<u64>,
) -> Response {
    let caller = Caller { user: u.clone() };
    let c = match load(&st, &caller, id).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let plan = match st.core.crm.company().await {
        Ok(c) => c.plan,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let vis_options: String = allowed_visibilities(plan)
        .iter()
        .map(|v| {
            let sel = if c.visibility == Some(*v) {
                " selected"
            } else {
                ""
            };
            format!(
                "<option value={}{sel}>{}</option>",
                v.as_str(),
                visibility_label(v.as_str())
            )
        })
        .collect();
    let (one, two) = match c.direction {
        SyncDirection::OneWay => (" checked", ""),
        SyncDirection::TwoWay => ("", " checked"),
    };
    let current_group = c
        .sync_group
        .as_ref()
        .map(|g| g.id.clone())
        .unwrap_or_default();
    let start_label = if c.state == ConnectionState::Setup {
        "Start Syncing"
    } else {
        "Save settings"
    };
    let body = format!(
        r#"<p>{email} ({provider})</p><div class=card>
<label for=group>Sync group</label><select id=group><option value="">Loading the account's groups…</option></select> <span id=gmsg></span>
<label>Sync direction</label>
<label><input type=radio name=direction value=one_way{one}> One-way sync: the address book's changes come into the CRM</label>
<label><input type=radio name=direction value=two_way{two}> Two-way sync: changes flow both ways</label>
<label for=visibility>Visibility of synced persons (<span id=plan>{plan}</span> plan)</label><select id=visibility>{vis_options}</select>
<p><button id=preview type=button>Preview field mapping</button></p>
<div id=mapping></div>
<p><button id=start type=button>{start_label}</button> <span id=msg></span></p></div>
<script>
const CID = {id};
const current = {current:?};
(async () => {{
  try {{
    const gs = await api('GET', '/connections/' + CID + '/sync-groups');
    const sel = document.getElementById('group'); sel.innerHTML = '';
    for (const g of gs) {{ const o = document.createElement('option'); o.value = g.id; o.textContent = g.name + (g.writable ? '' : ' (read-only)'); if (g.id === current) o.selected = true; sel.appendChild(o); }}
    if (!gs.length) show('gmsg', 'The account offers no group to sync.', true);
  }} catch (e) {{ show('gmsg', e.message, true); }}
}})();
function settings() {{
  return {{sync_group: document.getElementById('group').value || undefined,
          direction: document.querySelector('input[name=direction]:checked').value,
          visibility: document.getElementById('visibility').value}};
}}
document.getElementById('preview').onclick = async () => {{
  const m = document.getElementById('mapping'); m.textContent = 'Loading…';
  try {{
    await api('PATCH', '/connections/' + CID + '/settings', settings());
    const p = await api('GET', '/connections/' + CID + '/mapping-preview');
    const arrow = {{both: '⇄', to_crm: '→ CRM', to_provider: '→ provider', off: 'off'}};
    let h = '<h3>Field mapping</h3><p class=muted></p><table id=mapping-table><tr><th>CRM field</th><th>Direction</th><th>Address book field</th></tr>';
    for (const r of p.rows) h += '<tr><td>' + r.crm_field + '</td><td>' + (arrow[r.direction] || r.direction) + '</td><td>' + r.provider_field + '</td></tr>';
    h += '</table><h3>Sample</h3><table><tr><th>Name</th><th>Emails</th><th>Phones</th><th>Organization</th></tr>';
    for (const s of p.samples) {{ const f = s.fields; h += '<tr><td></td><td></td><td></td><td></td></tr>'; }}
    h += '</table>';
    m.innerHTML = h; m.querySelector('p').textContent = p.note;
    const rows = m.querySelectorAll('table')[1].querySelectorAll('tr');
    p.samples.forEach((s, i) => {{ const c = rows[i + 1].children, f = s.fields;
      c[0].textContent = f.name; c[1].textContent = f.emails.map(e => e.value).join(', ');
      c[2].textContent = f.phones.map(e => e.value).join(', '); c[3].textContent = f.org_name; }});
  }} catch (e) {{ m.textContent = ''; show('msg', e.message, true); reloadOptions(); }}
}};
// A refused visibility (the plan changed since the page loaded): offer the plan's current
// options, as this page renders them now, keeping the rest of the form as it is.
async function reloadOptions() {{
  try {{
    const r = await fetch(location.pathname, {{headers: {{'X-Requested-With': 'cardbridge'}}}});
    const fresh = new DOMParser().parseFromString(await r.text(), 'text/html');
    const opts = fresh.getElementById('visibility'), plan = fresh.getElementById('plan');
    if (opts) document.getElementById('visibility').innerHTML = opts.innerHTML;
    if (plan) document.getElementById('plan').textContent = plan.textContent;
  }} catch (e) {{}}
}}
document.getElementById('start').onclick = async () => {{
  show('msg', 'Saving…');
  try {{
    await api('PATCH', '/connections/' + CID + '/settings', settings());
    let q = '';
    if ({setup}) {{ const r = await api('POST', '/connections/' + CID + '/start'); if (r && r.run_id) q = '?run=' + r.run_id; }}
    location.href = '/connections/' + CID + q;
  }} catch (e) {{ show('msg', e.message, true); reloadOptions(); }}
}};
</script>"#,
        email = esc(&c.account_email),
        provider = provider_name(c.provider),
        plan = plan.as_str(),
        current = current_group,
        setup = c.state == ConnectionState::Setup,
    );
    let title = if c.state == ConnectionState::Setup {
        "Add New Account: what to sync"
    } else {
        "Contact Sync settings"
    };
    page(title, Some(&u), &body).into_response()
}

fn visibility_label(v: &str) -> &'static str {
    match v {
        "owner_followers" => "Owner &amp; followers",
        "owner_only" => "Owner only",
        "owners_role" => "Owner's role",
        "owners_role_and_below" => "Owner's role, and roles below",
        _ => "Entire company",
    }
}

/// `?run=N`: the run the dashboard follows on arrival.
#[derive(Deserialize)]
pub struct DashboardQuery {
    run: Option<u64>,
}

fn direction_label(d: SyncDirection) -> &'static str {
    match d {
        SyncDirection::OneWay => "one-way",
        SyncDirection::TwoWay => "two-way",
    }
}

async fn dashboard_page(
    State(st): State<ApiState>,
    PageUser(u): PageUser,
    Path(id): Path<u64>,
    Query(q): Query<DashboardQuery>,
) -> Response {
    let caller = Caller { user: u.clone() };
    let c = match load(&st, &caller, id).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let s = match status_view(&st, &c).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let f = &s.figures;
    // The run to follow on arrival: the one Start Syncing queued, else one in progress.
    let running = q
        .run
        .or_else(|| s.schedule.as_ref().and_then(|j| j.running.or(j.queued)));
    let reauth = match &s.needs_reauthorization {
        Some(v) => format!(
            "<div class=\"card warn\" id=reauth><h2>Needs re-authorization</h2><p>{}</p><p><b>Fix:</b> {}</p>\
             <label for=newpw>New password or app-specific password</label><input id=newpw type=password>\
             <p><button id=reconnect type=button>Reconnect</button> <span id=rmsg></span></p></div>",
            esc(v.get("reason").and_then(|r| r.as_str()).unwrap_or("")),
            esc(v.get("fix").and_then(|r| r.as_str()).unwrap_or(""))
        ),
        None => String::new(),
    };
    let last = match &f.last_finished_run {
        Some(r) => format!(
            "{} — {}",
            esc(r.ended.as_deref().unwrap_or(&r.started)),
            esc(&describe_run(r))
        ),
        None => "never".into(),
    };
    let errors: String = f
        .last_finished_run
        .as_ref()
        .and_then(|r| r.summary.as_ref())
        .map(|s| {
            s.error_messages
                .iter()
                .map(|m| format!("<li>{}</li>", esc(m)))
                .collect()
        })
        .unwrap_or_default();
    let conflicts = st
        .core
        .connections
        .conflicts(id, 10)
        .await
        .unwrap_or_default();
    let conflict_rows: String = conflicts
        .iter()
        .map(|k| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&k.at),
                esc(&k.field),
                esc(&k.crm_value),
                esc(&k.provider_value),
                esc(&k.winner)
            )
        })
        .collect();
    let conflict_rows = if conflict_rows.is_empty() {
        "<tr><td colspan=5 class=muted>No conflicts.</td></tr>".to_string()
    } else {
        conflict_rows
    };
    let body = format!(
        r#"<p>{email} ({provider}) · sync group <b>{group}</b> · <span id=direction>{direction}</span> · visible to <span id=visibility>{visibility}</span> · <a href="/connections/{id}/settings">Settings</a></p>
{reauth}
<div class=card><span class=fig><b id=total>{total}</b>contacts in sync</span>
<span class=fig><b id=added>{a}</b>recent additions</span><span class=fig><b id=updated>{u}</b>recent updates</span>
<span class=fig><b id=deleted>{d}</b>recent deletions</span>
<p class=muted id=periods>Last 7 days: {a7} added, {u7} updated, {d7} deleted · last 30 days: {a30} added, {u30} updated, {d30} deleted</p>
<p>Last sync: <span id=last>{last}</span></p>
<p><button id=refresh type=button>Refresh</button> <span id=msg></span></p></div>
<div class=card><h2>Errors</h2><p>{errs} item errors in the last sync; {failed} failed runs in 30 days.</p><ul>{errors}</ul></div>
<div class=card><h2>Conflicts</h2><table><tr><th>When</th><th>Field</th><th>CRM</th><th>Address book</th><th>Winner</th></tr>{conflict_rows}</table></div>
<div class=card><h2>Delete this connection</h2>
<label><input type=radio name=persons value=keep checked> Keep the persons it brought in</label>
<label><input type=radio name=persons value=remove> Remove the persons it created</label>
<p><button class=danger id=delete type=button>Delete connection</button> <span id=dmsg></span></p></div>
<script>
const CID = {id};
// Follows one run until it ends: its state, elapsed time and live counts, then its summary and
// the figures.
async function follow(runId, joined) {{
  const b = document.getElementById('refresh'); b.disabled = true;
  const t0 = Date.now();
  try {{
    show('msg', 'Run ' + runId + (joined ? ' (already running)' : '') + ': queued…');
    for (;;) {{
      await new Promise(res => setTimeout(res, 500));
      const run = await api('GET', '/connections/' + CID + '/runs/' + runId);
      const pg = run.progress;
      if (run.state === 'queued' || run.state === 'running') {{
        show('msg', 'Run ' + runId + ': ' + run.state + '… (' + Math.round((Date.now() - t0) / 1000) + ' s)'
          + (pg ? ' — ' + pg.pages + ' pages, ' + pg.items + ' items: ' + pg.added + ' added, ' + pg.updated + ' updated, '
            + pg.deleted + ' deleted so far' : ''));
        continue;
      }}
      const sm = run.summary;
      show('msg', 'Run ' + runId + ': ' + run.state + (run.error ? ' — ' + run.error : '')
        + (sm ? ' — ' + sm.added + ' added, ' + sm.updated + ' updated, ' + sm.deleted + ' deleted' : '')
        + (pg ? ' (' + pg.items + ' items in ' + pg.pages + ' pages)' : ''), run.state !== 'succeeded');
      const s = await api('GET', '/connections/' + CID + '/status');
      const t = s.figures.last_run;
      document.getElementById('total').textContent = s.figures.total_in_sync;
      document.getElementById('added').textContent = t.added;
      document.getElementById('updated').textContent = t.updated;
      document.getElementById('deleted').textContent = t.deleted;
      const p7 = s.figures.last_7_days, p30 = s.figures.last_30_days;
      document.getElementById('periods').textContent = 'Last 7 days: ' + p7.added + ' added, ' + p7.updated + ' updated, ' + p7.deleted
        + ' deleted · last 30 days: ' + p30.added + ' added, ' + p30.updated + ' updated, ' + p30.deleted + ' deleted';
      const lr = s.figures.last_finished_run;
      if (lr) document.getElementById('last').textContent = (lr.ended || lr.started) + ' — ' + lr.state + (lr.error ? ': ' + lr.error : '');
      break;
    }}
  }} catch (e) {{ show('msg', e.message, true); }}
  b.disabled = false;
}}
document.getElementById('refresh').onclick = async () => {{
  try {{ const r = await api('POST', '/connections/' + CID + '/refresh'); await follow(r.run_id, r.joined); }}
  catch (e) {{ show('msg', e.message, true); }}
}};
// Arriving from Start Syncing (?run=N), or while a run is going: follow it.
const RUNNING = {running};
if (RUNNING) follow(RUNNING, false);
const rc = document.getElementById('reconnect');
if (rc) rc.onclick = async () => {{
  try {{ await api('PUT', '/connections/' + CID + '/credentials', {{password: document.getElementById('newpw').value}}); location.reload(); }}
  catch (e) {{ show('rmsg', e.message, true); }}
}};
document.getElementById('delete').onclick = async () => {{
  const p = document.querySelector('input[name=persons]:checked').value;
  if (!confirm('Delete this connection?')) return;
  try {{ await api('DELETE', '/connections/' + CID + '?persons=' + p); location.href = '/connections'; }}
  catch (e) {{ show('dmsg', e.message, true); }}
}};
</script>"#,
        email = esc(&c.account_email),
        provider = provider_name(c.provider),
        group = c
            .sync_group
            .as_ref()
            .map(|g| esc(&g.name))
            .unwrap_or_default(),
        total = f.total_in_sync,
        a = f.last_run.added,
        u = f.last_run.updated,
        d = f.last_run.deleted,
        a7 = f.last_7_days.added,
        u7 = f.last_7_days.updated,
        d7 = f.last_7_days.deleted,
        a30 = f.last_30_days.added,
        u30 = f.last_30_days.updated,
        d30 = f.last_30_days.deleted,
        errs = f.last_run.errors,
        direction = direction_label(c.direction),
        visibility = c
            .visibility
            .map(|v| visibility_label(v.as_str()))
            .unwrap_or("(not chosen)"),
        running = running
            .map(|r| r.to_string())
            .unwrap_or_else(|| "null".into()),
        failed = f.failed_runs_30_days,
    );
    page("Contact Sync", Some(&u), &body).into_response()
}

/// The dashboard router (`/`, `/login`, `/logout`, `/connections…`).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/connections", get(connections_page))
        .route("/connections/new", get(new_connection_page))
        .route("/connections/{id}", get(dashboard_page))
        .route("/connections/{id}/settings", get(settings_page))
        .with_state(state)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn every_plan_option_has_its_own_label() {
        for plan in [
            crate::crm::users::Plan::Silver,
            crate::crm::users::Plan::Gold,
            crate::crm::users::Plan::Platinum,
        ] {
            let labels: Vec<&str> = allowed_visibilities(plan)
                .iter()
                .map(|v| visibility_label(v.as_str()))
                .collect();
            let mut distinct = labels.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), labels.len(), "{plan:?}: {labels:?}");
        }
        assert_eq!(visibility_label("owner_followers"), "Owner &amp; followers");
        assert_eq!(
            visibility_label("owners_role_and_below"),
            "Owner's role, and roles below"
        );
    }

    #[test]
    fn directions_read_as_the_article_names_them() {
        assert_eq!(direction_label(SyncDirection::OneWay), "one-way");
        assert_eq!(direction_label(SyncDirection::TwoWay), "two-way");
    }
}
