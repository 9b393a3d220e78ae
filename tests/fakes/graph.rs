//! A stateful fake of the Microsoft Graph contacts API on 127.0.0.1:0, for the Graph provider
//! tests. It reproduces the documented wire format (providers.md §3): contact folders and
//! child folders, contacts delta with `$select` on the first call only, `@odata.nextLink`
//! paging driven by `Prefer: odata.maxpagesize`, a final `@odata.deltaLink`, `@removed`
//! deletions, replays/duplicates and empty pages on demand, 410 `SyncStateNotFound` /
//! `resyncRequired` on demand, `changeKey`/`@odata.etag` with 412 `ErrorIrresolvableConflict`,
//! 429 with `Retry-After` on demand, 401 on a bad bearer token, the slot limits (400 on more
//! than 3 emails / 2 business phones), and a request log with times and the highest number of
//! requests in flight. Error bodies come from `fixtures/graph/error-*.json`.
//!
//! It also plays the Microsoft identity platform v2.0 endpoints on the same origin
//! (`/{tenant}/oauth2/v2.0/authorize` and `/{tenant}/oauth2/v2.0/token`): the authorization
//! code flow with PKCE (the `code_verifier` checked against the S256 `code_challenge` of the
//! authorize request, RFC 7636 §4.6), single-use codes bound to the client and redirect URI, a
//! refresh token only when `offline_access` was granted, refresh-token rotation (every refresh
//! answers a new refresh token; the used one stays valid, as Microsoft documents, or dies with
//! `strict_rotation`), access tokens with a configurable lifetime
//! that the API accepts, and `invalid_grant` bodies in Microsoft's shape (`error_codes`,
//! `trace_id`, …) from `fixtures/graph/oauth-*.json`.
//! See `docs/FAKES-graph.md`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
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
const FIX_404_PHOTO: &str = include_str!("../../fixtures/graph/error-404-photo.json");
const FIX_400_PHOTO_TYPE: &str = include_str!("../../fixtures/graph/error-400-photo-type.json");
const FIX_403_PHOTO: &str = include_str!("../../fixtures/graph/error-403-photo.json");
/// Graph's documented limit for a photo upload (profilePhoto update: 4 MB).
pub const MAX_PHOTO_UPLOAD: usize = 4 * 1024 * 1024;
const FIX_DELTA_PAGE: &str = include_str!("../../fixtures/graph/delta-page.json");
const FIX_CONTACT: &str = include_str!("../../fixtures/graph/contact-full.json");
const FIX_OAUTH_TOKEN: &str = include_str!("../../fixtures/graph/oauth-token.json");
const FIX_OAUTH_BAD_CODE: &str = include_str!("../../fixtures/graph/oauth-invalid-grant-code.json");
const FIX_OAUTH_BAD_VERIFIER: &str =
    include_str!("../../fixtures/graph/oauth-invalid-grant-verifier.json");
const FIX_OAUTH_REVOKED: &str =
    include_str!("../../fixtures/graph/oauth-invalid-grant-revoked.json");

/// A pending authorization code: what the authorize request bound it to.
#[derive(Debug, Clone)]
struct PendingCode {
    challenge: String,
    redirect_uri: String,
    client_id: String,
    offline: bool,
}

/// The Microsoft identity platform side of the fake.
#[derive(Debug, Default)]
struct Identity {
    /// The registered app's client id (`None`: any).
    client_id: Option<String>,
    codes: HashMap<String, PendingCode>,
    /// Refresh token → still valid.
    refresh_tokens: HashMap<String, bool>,
    access_tokens: HashSet<String>,
    lifetime_secs: u64,
    issued: u64,
    /// A refresh kills the refresh token it used.
    strict_rotation: bool,
    /// Access tokens die after this many more API requests (an expiry mid-run).
    expire_after: Option<u32>,
    /// The query of every authorize request.
    authorize_queries: Vec<HashMap<String, String>>,
    /// The form of every token request.
    token_forms: Vec<HashMap<String, String>>,
}

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
    /// `Content-Type` of the request, if any.
    pub content_type: Option<String>,
    /// Length of the request body.
    pub body_len: usize,
}

impl Recorded {
    /// A request to a contact's `photo/$value`.
    pub fn is_photo(&self) -> bool {
        self.uri
            .split('?')
            .next()
            .unwrap_or("")
            .ends_with("/photo/$value")
    }
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
    /// The photo: media type and bytes.
    photo: Option<(String, Vec<u8>)>,
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
    identity: Identity,
    /// Contacts whose photo GET is answered 403 (`ErrorAccessDenied`).
    denied_photos: HashSet<String>,
}

/// The fake; dropping it stops the server.
pub struct FakeGraph {
    /// Service root, e.g. `http://127.0.0.1:1234/v1.0`.
    pub base: String,
    /// `http://127.0.0.1:1234`: the authority of the identity endpoints.
    pub origin: String,
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
            identity: Identity {
                lifetime_secs: 3599,
                ..Default::default()
            },
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = format!("http://{addr}");
        let base = format!("{origin}/v1.0");
        let app = Router::new()
            .fallback(handle)
            .with_state((inner.clone(), base.clone()));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGraph {
            base,
            origin,
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

    /// Sets a contact's photo as if the user added one in Outlook (new changeKey).
    pub fn set_photo(&self, id: &str, media_type: &str, bytes: &[u8]) {
        let mut g = self.lock();
        g.set_photo(id, Some((media_type.into(), bytes.to_vec())));
    }

    /// Answers 403 `ErrorAccessDenied` to every GET of this contact's photo.
    pub fn deny_photo(&self, id: &str) {
        self.lock().denied_photos.insert(id.to_string());
    }

    /// The contact's photo (media type, bytes), if it has one.
    pub fn photo(&self, id: &str) -> Option<(String, Vec<u8>)> {
        self.lock().contacts.get(id).and_then(|c| c.photo.clone())
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

    // ---- identity platform -----------------------------------------------------------------

    /// `{origin}/{tenant}/oauth2/v2.0/authorize`.
    pub fn authorize_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/authorize", self.origin)
    }

    /// `{origin}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.origin)
    }

    /// Only `client_id` may use the identity endpoints.
    pub fn register_app(&self, client_id: &str) {
        self.lock().identity.client_id = Some(client_id.into());
    }

    /// A refresh token the fake honours (as if granted earlier).
    pub fn add_refresh_token(&self, token: &str) {
        self.lock()
            .identity
            .refresh_tokens
            .insert(token.into(), true);
    }

    /// Revokes every refresh token (the user changed the password or removed the app's
    /// consent): the next refresh answers `invalid_grant` AADSTS50173.
    pub fn revoke_grants(&self) {
        for v in self.lock().identity.refresh_tokens.values_mut() {
            *v = false;
        }
    }

    /// The refresh tokens still valid.
    pub fn live_refresh_tokens(&self) -> Vec<String> {
        let g = self.lock();
        let mut v: Vec<String> = g
            .identity
            .refresh_tokens
            .iter()
            .filter(|(_, live)| **live)
            .map(|(t, _)| t.clone())
            .collect();
        v.sort();
        v
    }

    /// A used refresh token dies when the refresh answers its successor (stricter than
    /// Microsoft, which keeps the old one valid until it expires).
    pub fn set_strict_rotation(&self, on: bool) {
        self.lock().identity.strict_rotation = on;
    }

    /// `expires_in` of the access tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.lock().identity.lifetime_secs = secs;
    }

    /// Every issued access token expires after `n` more API requests.
    pub fn expire_access_tokens_after(&self, n: u32) {
        self.lock().identity.expire_after = Some(n);
    }

    /// The query of every authorize request so far.
    pub fn authorize_queries(&self) -> Vec<HashMap<String, String>> {
        self.lock().identity.authorize_queries.clone()
    }

    /// The form of every token request so far.
    pub fn token_forms(&self) -> Vec<HashMap<String, String>> {
        self.lock().identity.token_forms.clone()
    }

    /// The access tokens issued and still accepted.
    pub fn live_access_tokens(&self) -> HashSet<String> {
        self.lock().identity.access_tokens.clone()
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
                photo: None,
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

    fn set_photo(&mut self, id: &str, photo: Option<(String, Vec<u8>)>) {
        let ck = self.bump(id);
        if let Some(c) = self.contacts.get_mut(id) {
            c.photo = photo;
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
        let resp = match identity_route(&mut g, &method, &uri, &body) {
            Some(r) => r,
            None => route(&mut g, &base, &method, &uri, &headers, &body),
        };
        g.in_flight -= 1;
        g.requests.push(Recorded {
            at,
            method: method.clone(),
            uri: uri.to_string(),
            if_match: header("if-match"),
            prefer: header("prefer"),
            status: resp.status().as_u16(),
            content_type: header("content-type"),
            body_len: body.len(),
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
    let issued = auth
        .strip_prefix("Bearer ")
        .is_some_and(|t| g.identity.access_tokens.contains(t));
    if auth != format!("Bearer {}", g.token) && !issued {
        return err(StatusCode::UNAUTHORIZED, FIX_401);
    }
    if issued {
        if let Some(n) = g.identity.expire_after {
            if n == 0 {
                g.identity.expire_after = None;
                g.identity.access_tokens.clear();
                return err(StatusCode::UNAUTHORIZED, FIX_401);
            }
            g.identity.expire_after = Some(n - 1);
        }
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
        (Method::GET, ["v1.0", "me", "contactFolders", _, "contacts", id, "photo", "$value"])
        | (Method::GET, ["v1.0", "me", "contacts", id, "photo", "$value"]) => {
            let fid = folder_of(&segs);
            if g.denied_photos.contains(*id) {
                return err(StatusCode::FORBIDDEN, FIX_403_PHOTO);
            }
            match g
                .contacts
                .get(*id)
                .filter(|c| !c.deleted && fid.is_none_or(|f| c.folder == f))
            {
                None => err(StatusCode::NOT_FOUND, FIX_404),
                Some(Stored { photo: None, .. }) => err(StatusCode::NOT_FOUND, FIX_404_PHOTO),
                Some(Stored {
                    photo: Some((ct, bytes)),
                    ..
                }) => (
                    StatusCode::OK,
                    [("content-type", ct.clone())],
                    bytes.clone(),
                )
                    .into_response(),
            }
        }
        (
            Method::PUT | Method::PATCH,
            ["v1.0", "me", "contactFolders", _, "contacts", id, "photo", "$value"],
        )
        | (Method::PUT | Method::PATCH, ["v1.0", "me", "contacts", id, "photo", "$value"]) => {
            let fid = folder_of(&segs);
            if !g
                .contacts
                .get(*id)
                .is_some_and(|c| !c.deleted && fid.is_none_or(|f| c.folder == f))
            {
                return err(StatusCode::NOT_FOUND, FIX_404);
            }
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            if !ct.starts_with("image/") || body.is_empty() {
                return err(StatusCode::BAD_REQUEST, FIX_400_PHOTO_TYPE);
            }
            if body.len() > MAX_PHOTO_UPLOAD {
                return ok_json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": {"code": "ErrorRequestEntityTooLarge", "message": "The photo is larger than 4 MB."}}),
                );
            }
            g.set_photo(id, Some((ct, body.to_vec())));
            StatusCode::OK.into_response()
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

/// The folder of a `…/contactFolders/{fid}/contacts/…` path (`None` for `/me/contacts/…`).
fn folder_of<'a>(segs: &[&'a str]) -> Option<&'a str> {
    match segs {
        ["v1.0", "me", "contactFolders", fid, ..] => Some(fid),
        _ => None,
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

// ---- Microsoft identity platform v2.0 ------------------------------------------------------

fn oauth_error(fixture: &str) -> Response {
    err(StatusCode::BAD_REQUEST, fixture)
}

/// `/{tenant}/oauth2/v2.0/{authorize,token}`, or `None` for the Graph API.
fn identity_route(g: &mut Inner, method: &Method, uri: &Uri, body: &Bytes) -> Option<Response> {
    let seg = segments(uri);
    if seg.len() != 4 || seg[1] != "oauth2" || seg[2] != "v2.0" {
        return None;
    }
    match (method, seg[3].as_str()) {
        (&Method::GET, "authorize") => Some(authorize(g, query_map(uri))),
        (&Method::POST, "token") => {
            let form: HashMap<String, String> =
                url::form_urlencoded::parse(body).into_owned().collect();
            Some(token(g, form))
        }
        _ => Some(StatusCode::NOT_FOUND.into_response()),
    }
}

fn authorize(g: &mut Inner, q: HashMap<String, String>) -> Response {
    g.identity.authorize_queries.push(q.clone());
    let bad = |what: &str| {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "AADSTS900144: The request body must contain the following parameter: '{what}'."
            ),
        )
            .into_response()
    };
    let Some(redirect) = q.get("redirect_uri") else {
        return bad("redirect_uri");
    };
    let Some(client_id) = q.get("client_id") else {
        return bad("client_id");
    };
    if g.identity
        .client_id
        .as_ref()
        .is_some_and(|c| c != client_id)
    {
        return bad("client_id");
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return bad("response_type");
    }
    let Some(challenge) = q.get("code_challenge") else {
        return bad("code_challenge");
    };
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return bad("code_challenge_method");
    }
    let scopes: Vec<&str> = q
        .get("scope")
        .map(|s| s.split(' ').collect())
        .unwrap_or_default();
    if !scopes.contains(&"Contacts.ReadWrite") {
        return bad("scope");
    }
    g.identity.issued += 1;
    let code = format!("M.C507_fake-code-{}", g.identity.issued);
    g.identity.codes.insert(
        code.clone(),
        PendingCode {
            challenge: challenge.clone(),
            redirect_uri: redirect.clone(),
            client_id: client_id.clone(),
            offline: scopes.contains(&"offline_access"),
        },
    );
    let mut loc = url::Url::parse(redirect).unwrap();
    loc.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map(String::as_str).unwrap_or(""));
    (StatusCode::FOUND, [("location", loc.to_string())]).into_response()
}

fn issue_tokens(g: &mut Inner, with_refresh: bool) -> Response {
    g.identity.issued += 1;
    let access = format!("EwB4A8l6BAAU_fake-access-{}", g.identity.issued);
    g.identity.access_tokens.insert(access.clone());
    let refresh = format!("M.C507_fake-refresh-{}", g.identity.issued);
    let mut v: Value = serde_json::from_str(
        &FIX_OAUTH_TOKEN
            .replace("{access_token}", &access)
            .replace("{refresh_token}", &refresh)
            .replace("{expires_in}", &g.identity.lifetime_secs.to_string()),
    )
    .unwrap();
    if with_refresh {
        g.identity.refresh_tokens.insert(refresh, true);
    } else if let Some(o) = v.as_object_mut() {
        o.remove("refresh_token");
    }
    ok_json(StatusCode::OK, v)
}

fn token(g: &mut Inner, f: HashMap<String, String>) -> Response {
    g.identity.token_forms.push(f.clone());
    let client_ok = match (&g.identity.client_id, f.get("client_id")) {
        (Some(want), Some(got)) => want == got,
        (None, Some(_)) => true,
        (_, None) => false,
    };
    if !client_ok {
        return err(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_client","error_description":"AADSTS700016: Application not found in the directory.","error_codes":[700016]}"#,
        );
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = f.get("code").cloned().unwrap_or_default();
            let Some(pending) = g.identity.codes.remove(&code) else {
                return oauth_error(FIX_OAUTH_BAD_CODE);
            };
            if f.get("redirect_uri") != Some(&pending.redirect_uri)
                || f.get("client_id") != Some(&pending.client_id)
            {
                return oauth_error(FIX_OAUTH_BAD_CODE);
            }
            use base64::Engine as _;
            use sha2::Digest as _;
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != pending.challenge {
                return oauth_error(FIX_OAUTH_BAD_VERIFIER);
            }
            issue_tokens(g, pending.offline)
        }
        Some("refresh_token") => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            if g.identity.refresh_tokens.get(&rt) != Some(&true) {
                return oauth_error(FIX_OAUTH_REVOKED);
            }
            // Rotation: the answer carries a new refresh token.
            if g.identity.strict_rotation {
                g.identity.refresh_tokens.insert(rt, false);
            }
            issue_tokens(g, true)
        }
        _ => err(
            StatusCode::BAD_REQUEST,
            r#"{"error":"unsupported_grant_type","error_description":"AADSTS70003: The app requested an unsupported grant type.","error_codes":[70003]}"#,
        ),
    }
}
