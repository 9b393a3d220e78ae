//! A stateful fake of the Microsoft Graph contacts API on 127.0.0.1:0, for the Graph provider
//! tests. It reproduces the documented wire format (providers.md §3): contact folders and
//! child folders, contacts delta with `$select` on the first call only, `@odata.nextLink`
//! paging driven by `Prefer: odata.maxpagesize`, a final `@odata.deltaLink`, `@removed`
//! deletions, replays/duplicates and empty pages on demand, 410 `SyncStateNotFound` /
//! `resyncRequired` on demand, `changeKey`/`@odata.etag` with 412 `ErrorIrresolvableConflict`,
//! 429 with `Retry-After` on demand, 401 on a bad bearer token, the slot limits (400 on more
//! than 3 emails / 2 business phones), and a request log with times and the highest number of
//! requests in flight. Error bodies come from `fixtures/graph/error-*.json`.
//! See `docs/FAKES-graph.md`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

const FIX_410_SYNC: &str = include_str!("../../fixtures/graph/error-410-syncstatenotfound.json");
const FIX_410_RESYNC: &str = include_str!("../../fixtures/graph/error-410-resyncrequired.json");
const FIX_412: &str = include_str!("../../fixtures/graph/error-412-conflict.json");
const FIX_429: &str = include_str!("../../fixtures/graph/error-429-throttled.json");
const FIX_401: &str = include_str!("../../fixtures/graph/error-401-token.json");
const FIX_400_EMAILS: &str = include_str!("../../fixtures/graph/error-400-too-many-emails.json");
const FIX_404: &str = include_str!("../../fixtures/graph/error-404-item.json");
const FIX_DELTA_PAGE: &str = include_str!("../../fixtures/graph/delta-page.json");
const FIX_CONTACT: &str = include_str!("../../fixtures/graph/contact-full.json");

/// Graph's documented per-mailbox concurrency limit.
pub const MAILBOX_CONCURRENCY: usize = 4;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When it arrived.
    pub at: Instant,
    /// Method.
    pub method: Method,
    /// Path and query, as sent.
    pub uri: String,
    /// `If-Match`, if any.
    pub if_match: Option<String>,
    /// `Prefer`, if any.
    pub prefer: Option<String>,
    /// The status the fake answered.
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Folder {
    id: String,
    name: String,
    parent: Option<String>,
}

#[derive(Debug, Clone)]
struct Stored {
    folder: String,
    props: Map<String, Value>,
    change_key: String,
    ext: Vec<Value>,
    deleted: bool,
}

#[derive(Debug, Clone)]
struct Session {
    folder: String,
    select: Option<Vec<String>>,
    pages: VecDeque<Vec<Value>>,
    delta_seq: u64,
}

#[derive(Debug, Clone)]
struct DeltaToken {
    folder: String,
    select: Option<Vec<String>>,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    token: String,
    folders: Vec<Folder>,
    contacts: BTreeMap<String, Stored>,
    /// (seq, id) for every change, in order.
    log: Vec<(u64, String)>,
    seq: u64,
    next_id: u64,
    next_token: u64,
    sessions: HashMap<String, Session>,
    delta_tokens: HashMap<String, DeltaToken>,
    expired_code: Option<&'static str>,
    duplicate_entries: bool,
    empty_pages: usize,
    partial_updates: bool,
    throttle_remaining: u32,
    throttle_secs: u64,
    latency: Duration,
    in_flight: usize,
    max_in_flight: usize,
    requests: Vec<Recorded>,
}

/// The fake; dropping it stops the server.
pub struct FakeGraph {
    /// Service root, e.g. `http://127.0.0.1:1234/v1.0`.
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn err(status: StatusCode, fixture: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        fixture.to_string(),
    )
        .into_response()
}

fn ok_json(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

impl FakeGraph {
    /// Starts the fake; requests must carry `Authorization: Bearer {token}`.
    pub async fn start(token: &str) -> FakeGraph {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.into(),
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}/v1.0");
        let app = Router::new()
            .fallback(handle)
            .with_state((inner.clone(), base.clone()));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGraph {
            base,
            inner,
            server,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    // ---- setup and server-side edits -----------------------------------------------------

    /// Adds a contact folder (a child folder when `parent` is given).
    pub fn add_folder(&self, id: &str, name: &str, parent: Option<&str>) {
        self.lock().folders.push(Folder {
            id: id.into(),
            name: name.into(),
            parent: parent.map(str::to_string),
        });
    }

    /// Creates a contact as if the user made it in Outlook; returns its id.
    pub fn put_contact(&self, folder: &str, props: Value) -> String {
        let mut g = self.lock();
        let props = props.as_object().cloned().unwrap_or_default();
        g.create(folder, props, vec![])
    }

    /// `n` contacts shaped like `fixtures/graph/contact-full.json`, numbered from `start`.
    pub fn seed(&self, folder: &str, start: usize, n: usize) -> Vec<String> {
        let template: Map<String, Value> = serde_json::from_str(FIX_CONTACT).unwrap();
        let mut g = self.lock();
        (start..start + n)
            .map(|i| {
                let mut props = template.clone();
                for k in ["id", "@odata.etag", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId"] {
                    props.remove(k);
                }
                props.insert("givenName".into(), json!(format!("Given{i}")));
                props.insert("surname".into(), json!(format!("Sur{i}")));
                props.insert("displayName".into(), json!(format!("Given{i} Sur{i}")));
                props.insert(
                    "emailAddresses".into(),
                    json!([{"name": format!("Given{i} Sur{i}"), "address": format!("p{i}@example.com")}]),
                );
                g.create(folder, props, vec![])
            })
            .collect()
    }

    /// Changes a contact as if edited in Outlook (new changeKey).
    pub fn edit_contact(&self, id: &str, patch: Value) {
        let mut g = self.lock();
        let patch = patch.as_object().cloned().unwrap_or_default();
        g.patch(id, patch);
    }

    /// Deletes a contact as if deleted in Outlook.
    pub fn delete_contact(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The stored contact (as a GET would show it, with the extended properties), if live.
    pub fn contact(&self, id: &str) -> Option<Value> {
        let g = self.lock();
        g.contacts
            .get(id)
            .filter(|c| !c.deleted)
            .map(|c| g.render(id, c, None, true))
    }

    /// Live contacts in `folder`.
    pub fn count(&self, folder: &str) -> usize {
        self.lock()
            .contacts
            .values()
            .filter(|c| !c.deleted && c.folder == folder)
            .count()
    }

    // ---- behaviour knobs -------------------------------------------------------------------

    /// Every delta/skip token issued so far becomes unknown; using one gets 410 with `code`
    /// (`SyncStateNotFound` or `resyncRequired`).
    pub fn expire_sync_state(&self, code: &'static str) {
        let mut g = self.lock();
        g.sessions.clear();
        g.delta_tokens.clear();
        g.expired_code = Some(code);
    }

    /// Every delta listing from now on repeats each entry once more at its end (replays).
    pub fn set_duplicates(&self, on: bool) {
        self.lock().duplicate_entries = on;
    }

    /// Delta listings from now on start with `n` empty pages that still carry a nextLink.
    pub fn set_empty_pages(&self, n: usize) {
        self.lock().empty_pages = n;
    }

    /// Incremental rows for updated contacts carry only `id` and `displayName`.
    pub fn set_partial_updates(&self, on: bool) {
        self.lock().partial_updates = on;
    }

    /// The next `n` requests get 429 `ApplicationThrottled` with `Retry-After: secs`.
    pub fn throttle_next(&self, n: u32, secs: u64) {
        let mut g = self.lock();
        g.throttle_remaining = n;
        g.throttle_secs = secs;
    }

    /// Every request takes at least this long (to make concurrency observable).
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Rotates the accepted bearer token.
    pub fn set_token(&self, token: &str) {
        self.lock().token = token.into();
    }

    // ---- observations ----------------------------------------------------------------------

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The highest number of requests in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// Forgets the request log and the in-flight maximum.
    pub fn clear_requests(&self) {
        let mut g = self.lock();
        g.requests.clear();
        g.max_in_flight = 0;
    }
}

impl Inner {
    fn bump(&mut self, id: &str) -> String {
        self.seq += 1;
        let seq = self.seq;
        self.log.push((seq, id.to_string()));
        format!("EQAAABYAAACdJ0v1Zpy3RqHmGe7yPfl3AAA{seq:07}")
    }

    fn create(&mut self, folder: &str, props: Map<String, Value>, ext: Vec<Value>) -> String {
        self.next_id += 1;
        let id = format!("AAMkAGI2TG{:08}AAA=", self.next_id);
        let change_key = self.bump(&id);
        self.contacts.insert(
            id.clone(),
            Stored {
                folder: folder.into(),
                props,
                change_key,
                ext,
                deleted: false,
            },
        );
        id
    }

    fn patch(&mut self, id: &str, patch: Map<String, Value>) {
        let ck = self.bump(id);
        if let Some(c) = self.contacts.get_mut(id) {
            for (k, v) in patch {
                if k == "singleValueExtendedProperties" {
                    if let Some(a) = v.as_array() {
                        c.ext = a.clone();
                    }
                } else if v.is_null() {
                    c.props.remove(&k);
                } else {
                    c.props.insert(k, v);
                }
            }
            c.change_key = ck;
        }
    }

    fn remove(&mut self, id: &str) {
        self.bump(id);
        if let Some(c) = self.contacts.get_mut(id) {
            c.deleted = true;
        }
    }

    fn etag(c: &Stored) -> String {
        format!("W/\"{}\"", c.change_key)
    }

    /// A contact as JSON; `select` limits the properties (id, etag always present).
    fn render(&self, id: &str, c: &Stored, select: Option<&[String]>, ext: bool) -> Value {
        let mut out = Map::new();
        out.insert("@odata.etag".into(), json!(Self::etag(c)));
        out.insert("id".into(), json!(id));
        let mut all = c.props.clone();
        all.insert("changeKey".into(), json!(c.change_key));
        all.insert("parentFolderId".into(), json!(c.folder));
        for (k, v) in all {
            if select.is_none_or(|s| s.iter().any(|f| f == &k)) {
                out.insert(k, v);
            }
        }
        if ext && !c.ext.is_empty() {
            out.insert(
                "singleValueExtendedProperties".into(),
                Value::Array(c.ext.clone()),
            );
        }
        Value::Object(out)
    }

    fn removed_row(id: &str) -> Value {
        json!({"@odata.type": "#microsoft.graph.contact", "id": id, "@removed": {"reason": "deleted"}})
    }

    fn new_token(&mut self, prefix: &str) -> String {
        self.next_token += 1;
        format!("{prefix}{:x}{}", self.next_token * 7919, self.next_token)
    }

    /// Splits `rows` into pages and stores a session; returns the first page's response.
    fn start_session(
        &mut self,
        base: &str,
        folder: &str,
        select: Option<Vec<String>>,
        mut rows: Vec<Value>,
        page_size: usize,
    ) -> Value {
        if self.duplicate_entries {
            let again = rows.clone();
            rows.extend(again);
        }
        let mut pages: VecDeque<Vec<Value>> = VecDeque::new();
        for _ in 0..self.empty_pages {
            pages.push_back(vec![]);
        }
        for chunk in rows.chunks(page_size.max(1)) {
            pages.push_back(chunk.to_vec());
        }
        if pages.is_empty() {
            pages.push_back(vec![]);
        }
        let session = Session {
            folder: folder.into(),
            select,
            pages,
            delta_seq: self.seq,
        };
        self.next_page(base, session)
    }

    fn next_page(&mut self, base: &str, mut session: Session) -> Value {
        let page = session.pages.pop_front().unwrap_or_default();
        let context: Value =
            serde_json::from_str::<Value>(FIX_DELTA_PAGE).unwrap()["@odata.context"].clone();
        let link_base = format!("{base}/me/contactFolders/{}/contacts/delta", session.folder);
        if session.pages.is_empty() {
            let tok = self.new_token("D");
            self.delta_tokens.insert(
                tok.clone(),
                DeltaToken {
                    folder: session.folder.clone(),
                    select: session.select.clone(),
                    seq: session.delta_seq,
                },
            );
            json!({"@odata.context": context, "@odata.deltaLink": format!("{link_base}?$deltatoken={tok}"), "value": page})
        } else {
            let tok = self.new_token("S");
            self.sessions.insert(tok.clone(), session);
            json!({"@odata.context": context, "@odata.nextLink": format!("{link_base}?$skiptoken={tok}"), "value": page})
        }
    }

    fn listing_rows(&self, folder: &str, select: Option<&[String]>) -> Vec<Value> {
        self.contacts
            .iter()
            .filter(|(_, c)| !c.deleted && c.folder == folder)
            .map(|(id, c)| self.render(id, c, select, false))
            .collect()
    }

    fn change_rows(&self, folder: &str, since: u64, select: Option<&[String]>) -> Vec<Value> {
        let mut order: Vec<String> = Vec::new();
        for (seq, id) in &self.log {
            if *seq > since {
                order.retain(|o| o != id);
                order.push(id.clone());
            }
        }
        order
            .into_iter()
            .filter_map(|id| {
                let c = self.contacts.get(&id)?;
                if c.folder != folder {
                    return None;
                }
                Some(if c.deleted {
                    Self::removed_row(&id)
                } else if self.partial_updates {
                    json!({"id": id, "displayName": c.props.get("displayName").cloned().unwrap_or(Value::Null)})
                } else {
                    self.render(&id, c, select, false)
                })
            })
            .collect()
    }
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn segments(uri: &Uri) -> Vec<String> {
    uri.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

fn gone(code: &str) -> Response {
    if code == "resyncRequired" {
        err(StatusCode::GONE, FIX_410_RESYNC)
    } else {
        err(StatusCode::GONE, FIX_410_SYNC)
    }
}

type Shared = (Arc<Mutex<Inner>>, String);

async fn handle(
    State((inner, base)): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let latency = {
        let mut g = inner.lock().unwrap();
        g.in_flight += 1;
        g.max_in_flight = g.max_in_flight.max(g.in_flight);
        g.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let resp = {
        let mut g = inner.lock().unwrap();
        let resp = route(&mut g, &base, &method, &uri, &headers, &body);
        g.in_flight -= 1;
        g.requests.push(Recorded {
            at,
            method: method.clone(),
            uri: uri.to_string(),
            if_match: header("if-match"),
            prefer: header("prefer"),
            status: resp.status().as_u16(),
        });
        resp
    };
    resp
}

fn route(
    g: &mut Inner,
    base: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    // Over the mailbox concurrency limit: Graph answers 429 MailboxConcurrency.
    if g.in_flight > MAILBOX_CONCURRENCY {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1"), ("content-type", "application/json")],
            FIX_429,
        )
            .into_response();
    }
    if g.throttle_remaining > 0 {
        g.throttle_remaining -= 1;
        let secs = g.throttle_secs.to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", secs.as_str()),
                ("content-type", "application/json"),
            ],
            FIX_429,
        )
            .into_response();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", g.token) {
        return err(StatusCode::UNAUTHORIZED, FIX_401);
    }
    let segs = segments(uri);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let q = query_map(uri);
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["v1.0", "me", "contactFolders"]) => {
            let value: Vec<Value> = g
                .folders
                .iter()
                .filter(|f| f.parent.is_none())
                .map(|f| json!({"id": f.id, "displayName": f.name, "parentFolderId": "AAMkAGI2AAEOAAA="}))
                .collect();
            ok_json(StatusCode::OK, json!({"value": value}))
        }
        (Method::GET, ["v1.0", "me", "contactFolders", fid, "childFolders"]) => {
            if !g.folders.iter().any(|f| f.id == *fid) {
                return err(StatusCode::NOT_FOUND, FIX_404);
            }
            let value: Vec<Value> = g
                .folders
                .iter()
                .filter(|f| f.parent.as_deref() == Some(*fid))
                .map(|f| json!({"id": f.id, "displayName": f.name, "parentFolderId": fid}))
                .collect();
            ok_json(StatusCode::OK, json!({"value": value}))
        }
        (Method::GET, ["v1.0", "me", "contactFolders", fid, "contacts", "delta"]) => {
            delta(g, base, fid, &q, headers)
        }
        (Method::GET, ["v1.0", "me", "contactFolders", fid, "contacts", id]) => {
            match g
                .contacts
                .get(*id)
                .filter(|c| !c.deleted && c.folder == *fid)
            {
                Some(c) => {
                    let expand = q
                        .get("$expand")
                        .is_some_and(|e| e.contains("singleValueExtendedProperties"));
                    let select: Option<Vec<String>> = q
                        .get("$select")
                        .map(|s| s.split(',').map(str::to_string).collect());
                    ok_json(StatusCode::OK, g.render(id, c, select.as_deref(), expand))
                }
                None => err(StatusCode::NOT_FOUND, FIX_404),
            }
        }
        (Method::POST, ["v1.0", "me", "contactFolders", fid, "contacts"]) => {
            if !g.folders.iter().any(|f| f.id == *fid) {
                return err(StatusCode::NOT_FOUND, FIX_404);
            }
            let Ok(Value::Object(mut props)) = serde_json::from_slice::<Value>(body) else {
                return ok_json(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"code": "BadRequest", "message": "Empty Payload. JSON content expected."}}),
                );
            };
            if let Some(resp) = check_limits(&props) {
                return resp;
            }
            let ext = props
                .remove("singleValueExtendedProperties")
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            props.retain(|_, v| !v.is_null());
            let id = g.create(fid, props, ext);
            let c = g.contacts.get(&id).unwrap();
            ok_json(StatusCode::CREATED, g.render(&id, c, None, false))
        }
        (Method::PATCH, ["v1.0", "me", "contactFolders", fid, "contacts", id]) => {
            let Some(c) = g
                .contacts
                .get(*id)
                .filter(|c| !c.deleted && c.folder == *fid)
            else {
                return err(StatusCode::NOT_FOUND, FIX_404);
            };
            if let Some(m) = headers.get("if-match").and_then(|v| v.to_str().ok()) {
                if m != Inner::etag(c) {
                    return err(StatusCode::PRECONDITION_FAILED, FIX_412);
                }
            }
            let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(body) else {
                return ok_json(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"code": "BadRequest", "message": "Empty Payload. JSON content expected."}}),
                );
            };
            if let Some(resp) = check_limits(&patch) {
                return resp;
            }
            g.patch(id, patch);
            let c = g.contacts.get(*id).unwrap();
            ok_json(StatusCode::OK, g.render(id, c, None, false))
        }
        (Method::DELETE, ["v1.0", "me", "contactFolders", fid, "contacts", id]) => {
            let Some(c) = g
                .contacts
                .get(*id)
                .filter(|c| !c.deleted && c.folder == *fid)
            else {
                return err(StatusCode::NOT_FOUND, FIX_404);
            };
            if let Some(m) = headers.get("if-match").and_then(|v| v.to_str().ok()) {
                if m != Inner::etag(c) {
                    return err(StatusCode::PRECONDITION_FAILED, FIX_412);
                }
            }
            g.remove(id);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => ok_json(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": {"code": "ErrorInvalidRequest", "message": "The OData request is not supported."}}),
        ),
    }
}

fn check_limits(props: &Map<String, Value>) -> Option<Response> {
    let n = |k: &str| props.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    if n("emailAddresses") > 3 {
        return Some(err(StatusCode::BAD_REQUEST, FIX_400_EMAILS));
    }
    if n("businessPhones") > 2 {
        return Some(ok_json(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "ErrorInvalidArgument", "message": format!("The multi value property BusinessPhones has {} entries, that exceeds the max allowed value of 2", n("businessPhones"))}}),
        ));
    }
    None
}

fn delta(
    g: &mut Inner,
    base: &str,
    fid: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    if !g.folders.iter().any(|f| f.id == fid) {
        return err(StatusCode::NOT_FOUND, FIX_404);
    }
    let page_size = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .and_then(|p| {
            p.split(',')
                .find_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        })
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(10);
    let skip = q.get("$skiptoken");
    let dtok = q.get("$deltatoken");
    if (skip.is_some() || dtok.is_some())
        && q.keys().any(|k| k != "$skiptoken" && k != "$deltatoken")
    {
        return ok_json(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "BadRequest", "message": "Query parameters other than $skiptoken and $deltatoken are only allowed on the initial delta request."}}),
        );
    }
    let code = g.expired_code.unwrap_or("SyncStateNotFound");
    if let Some(tok) = skip {
        let Some(session) = g.sessions.remove(tok) else {
            return gone(code);
        };
        return ok_json(StatusCode::OK, g.next_page(base, session));
    }
    if let Some(tok) = dtok {
        let Some(state) = g.delta_tokens.get(tok).cloned() else {
            return gone(code);
        };
        let rows = g.change_rows(&state.folder, state.seq, state.select.as_deref());
        let v = g.start_session(base, &state.folder, state.select, rows, page_size);
        return ok_json(StatusCode::OK, v);
    }
    let select: Option<Vec<String>> = q
        .get("$select")
        .map(|s| s.split(',').map(str::to_string).collect());
    let rows = g.listing_rows(fid, select.as_deref());
    let v = g.start_session(base, fid, select, rows, page_size);
    ok_json(StatusCode::OK, v)
}
