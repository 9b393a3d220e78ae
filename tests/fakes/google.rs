//! A stateful fake of the Google People API and Google's OAuth endpoints, on 127.0.0.1:0,
//! reproducing the documented wire format (see docs/FAKES.md, section Google): paging with
//! `nextPageToken` and parameter checks, `nextSyncToken` on the last page only, sync tokens
//! that expire on demand (400 `FAILED_PRECONDITION` / `EXPIRED_SYNC_TOKEN`), deletions as
//! `metadata.deleted`, etags on update (400 `failedPrecondition` when stale), 429
//! `RESOURCE_EXHAUSTED` with `Retry-After` on demand, 401 on a bad bearer, and a token
//! endpoint with PKCE checks and `invalid_grant`. Error bodies and the seed person come from
//! `fixtures/google/api/`. Every request is recorded with its arrival time.
//!
//! Include from a test file with `#[path = "fakes/google.rs"] mod google_fake;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;

/// Where the payloads live.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/google/api/");

/// Reads one fixture file.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}"))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// Arrival time.
    pub at: Instant,
    /// The status the fake answered.
    pub status: u16,
}

struct Stored {
    person: Value,
    etag_n: u64,
    seq: u64,
    deleted: bool,
}

struct Session {
    /// Every query parameter of the first call except `pageToken`.
    params: BTreeMap<String, String>,
    items: Vec<Value>,
    next_sync_token: Option<String>,
    sync_token: Option<String>,
}

#[derive(Default)]
struct State {
    people: BTreeMap<String, Stored>,
    seq: u64,
    next_id: u64,
    sync_tokens: HashMap<String, u64>,
    expired_tokens: HashSet<String>,
    sessions: HashMap<String, Session>,
    access_tokens: HashSet<String>,
    refresh_tokens: HashMap<String, bool>,
    codes: HashMap<String, (String, String)>,
    token_lifetime: u64,
    issued: u64,
    throttle: Option<(u32, u64)>,
    rotate_refresh: bool,
    requests: Vec<Recorded>,
    /// Photo bytes uploaded with `updateContactPhoto`, by resource name.
    photo_bytes: HashMap<String, Vec<u8>>,
}

/// The running fake.
pub struct FakeGoogle {
    /// `http://127.0.0.1:<port>/`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn etag_for(n: u64) -> String {
    format!(
        "%Eg{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(n.to_be_bytes())
    )
}

fn source_etag_for(n: u64) -> String {
    format!(
        "#{}",
        base64::engine::general_purpose::STANDARD.encode(n.to_le_bytes())
    )
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [("content-type", "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, fixture_name: &str) -> Response {
    json_response(status, fixture(fixture_name))
}

fn invalid_argument(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error":{"code":400,"message":message,"status":"INVALID_ARGUMENT"}}).to_string(),
    )
}

impl State {
    fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn stamp(&mut self, id: &str, mut person: Value) -> Value {
        let seq = self.bump();
        let etag = etag_for(seq);
        let src_id = id.trim_start_matches("people/c").to_string();
        person["resourceName"] = json!(id);
        person["etag"] = json!(etag);
        person["metadata"] = json!({
            "sources": [{"type": "CONTACT", "id": src_id, "etag": source_etag_for(seq),
                         "updateTime": "2025-01-01T00:00:00Z"}],
            "objectType": "PERSON"
        });
        self.people.insert(
            id.to_string(),
            Stored {
                person: person.clone(),
                etag_n: seq,
                seq,
                deleted: false,
            },
        );
        person
    }

    fn tombstone(&mut self, id: &str) -> bool {
        let seq = self.bump();
        match self.people.get_mut(id) {
            Some(s) if !s.deleted => {
                s.deleted = true;
                s.seq = seq;
                s.etag_n = seq;
                s.person = json!({
                    "resourceName": id,
                    "etag": etag_for(seq),
                    "metadata": {"deleted": true,
                                 "sources": [{"type": "CONTACT", "id": id.trim_start_matches("people/c")}],
                                 "objectType": "PERSON"}
                });
                true
            }
            _ => false,
        }
    }

    fn issue_sync_token(&mut self) -> String {
        let t = format!("EJj9{}", self.seq);
        let t = format!("{t}-{}", self.sync_tokens.len());
        self.sync_tokens.insert(t.clone(), self.seq);
        t
    }

    fn issue_access_token(&mut self) -> String {
        self.issued += 1;
        let t = format!("ya29.fake-{}", self.issued);
        self.access_tokens.insert(t.clone());
        t
    }
}

/// Keeps only the requested `personFields` (plus `resourceName` and `etag`).
fn filter_fields(person: &Value, fields: &str) -> Value {
    let wanted: HashSet<&str> = fields.split(',').map(str::trim).collect();
    let mut out = serde_json::Map::new();
    if let Some(obj) = person.as_object() {
        for (k, v) in obj {
            let deleted_meta =
                k == "metadata" && v.get("deleted").and_then(Value::as_bool) == Some(true);
            if k == "resourceName" || k == "etag" || wanted.contains(k.as_str()) || deleted_meta {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

impl FakeGoogle {
    /// Starts the fake in the current tokio runtime.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            token_lifetime: 3599,
            next_id: 900_000,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{addr}/"),
            state,
            task,
        }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}token", self.base_url)
    }

    /// The authorization endpoint (consents immediately and redirects).
    pub fn authorize_url(&self) -> String {
        format!("{}o/oauth2/v2/auth", self.base_url)
    }

    /// Adds `n` people from `seed_person.json` (ids `people/c{first}`…), members of
    /// `myContacts` plus `extra_groups`.
    pub fn seed(&self, first: u64, n: u64, extra_groups: &[&str]) -> Vec<String> {
        let template = fixture("seed_person.json");
        let mut st = self.state.lock().unwrap();
        let mut ids = Vec::new();
        for i in first..first + n {
            let mut p: Value =
                serde_json::from_str(&template.replace("{n}", &i.to_string())).unwrap();
            for g in extra_groups {
                p["memberships"].as_array_mut().unwrap().push(json!({
                    "contactGroupMembership": {
                        "contactGroupId": g.trim_start_matches("contactGroups/"),
                        "contactGroupResourceName": g
                    }
                }));
            }
            let id = format!("people/c{i}");
            st.stamp(&id, p);
            ids.push(id);
        }
        ids
    }

    /// Inserts or replaces a person as another client would (new etag, new change).
    pub fn put_person(&self, id: &str, person: Value) {
        self.state.lock().unwrap().stamp(id, person);
    }

    /// Edits a stored person as another client would (new etag, new change).
    pub fn edit_person(&self, id: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.state.lock().unwrap();
        let mut p = st.people.get(id).expect("no such person").person.clone();
        f(&mut p);
        st.stamp(id, p);
    }

    /// Deletes a person as another client would.
    pub fn remove_person(&self, id: &str) {
        assert!(self.state.lock().unwrap().tombstone(id), "no such person");
    }

    /// The stored person (`None` when absent or deleted).
    pub fn person(&self, id: &str) -> Option<Value> {
        let st = self.state.lock().unwrap();
        st.people
            .get(id)
            .filter(|s| !s.deleted)
            .map(|s| s.person.clone())
    }

    /// The resource names of the live people, sorted.
    pub fn resource_names(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<String> = st
            .people
            .iter()
            .filter(|(_, s)| !s.deleted)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// Number of live people.
    pub fn live_count(&self) -> usize {
        let st = self.state.lock().unwrap();
        st.people.values().filter(|s| !s.deleted).count()
    }

    /// Every sync token issued so far expires now.
    pub fn expire_sync_tokens(&self) {
        let mut st = self.state.lock().unwrap();
        let all: Vec<String> = st.sync_tokens.keys().cloned().collect();
        st.expired_tokens.extend(all);
    }

    /// The next `n` People API requests get 429 with `Retry-After: secs`.
    pub fn throttle(&self, n: u32, secs: u64) {
        self.state.lock().unwrap().throttle = Some((n, secs));
    }

    /// A valid bearer token without going through OAuth.
    pub fn issue_access_token(&self) -> String {
        self.state.lock().unwrap().issue_access_token()
    }

    /// Every access token issued so far stops working (as if expired).
    pub fn revoke_access_tokens(&self) {
        self.state.lock().unwrap().access_tokens.clear();
    }

    /// Registers a refresh token the token endpoint accepts.
    pub fn add_refresh_token(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .insert(token.to_string(), false);
    }

    /// The user revoked the grant: the refresh token now gets `invalid_grant`.
    pub fn revoke_refresh_token(&self, token: &str) {
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .insert(token.to_string(), true);
    }

    /// Each refresh returns a new refresh token and revokes the old one (as Microsoft does).
    pub fn rotate_refresh_tokens(&self) {
        self.state.lock().unwrap().rotate_refresh = true;
    }

    /// `expires_in` for new access tokens.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state.lock().unwrap().token_lifetime = secs;
    }

    /// The bytes last uploaded with `updateContactPhoto` for `id`, while it has that photo.
    pub fn uploaded_photo(&self, id: &str) -> Option<Vec<u8>> {
        self.state.lock().unwrap().photo_bytes.get(id).cloned()
    }

    /// Requests to `updateContactPhoto` or `deleteContactPhoto`.
    pub fn photo_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("ContactPhoto"))
            .collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests whose path is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }
}

async fn handle(
    AxState(state): AxState<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = uri.path().to_string();
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut st = state.lock().unwrap();
    let resp = route(&mut st, &method, &path, &query, &headers, &body);
    st.requests.push(Recorded {
        method: method.to_string(),
        path,
        query,
        at,
        status: resp.status().as_u16(),
    });
    resp
}

fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if path == "/token" && method == Method::POST {
        return token_endpoint(st, body);
    }
    if path == "/o/oauth2/v2/auth" && method == Method::GET {
        return authorize_endpoint(st, query);
    }

    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !st.access_tokens.contains(bearer) {
        let mut r = error(StatusCode::UNAUTHORIZED, "error_unauthenticated.json");
        r.headers_mut().insert(
            "www-authenticate",
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""
                .parse()
                .unwrap(),
        );
        return r;
    }
    if let Some((n, secs)) = st.throttle {
        st.throttle = (n > 1).then(|| (n - 1, secs));
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "error_resource_exhausted.json",
        );
        r.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
        return r;
    }

    let body_json = || serde_json::from_slice::<Value>(body).ok();
    match (method.clone(), path) {
        (Method::GET, "/v1/people/me/connections") => list_connections(st, query),
        (Method::GET, "/v1/contactGroups") => {
            let mut groups: Value = serde_json::from_str(&fixture("contact_groups.json")).unwrap();
            for g in groups["contactGroups"].as_array_mut().unwrap() {
                let name = g["resourceName"].as_str().unwrap().to_string();
                let count = st
                    .people
                    .values()
                    .filter(|s| !s.deleted && is_member(&s.person, &name))
                    .count();
                g["memberCount"] = json!(count);
            }
            json_response(StatusCode::OK, groups.to_string())
        }
        (Method::POST, "/v1/people:createContact") => {
            let Some(mut p) = body_json() else {
                return invalid_argument("Invalid JSON payload received.");
            };
            if let Some(obj) = p.as_object_mut() {
                obj.remove("resourceName");
                obj.remove("etag");
            }
            if !is_member(&p, "contactGroups/myContacts") {
                let list = p
                    .as_object_mut()
                    .unwrap()
                    .entry("memberships")
                    .or_insert(json!([]));
                list.as_array_mut()
                    .unwrap()
                    .push(json!({"contactGroupMembership": {
                    "contactGroupId": "myContacts",
                    "contactGroupResourceName": "contactGroups/myContacts"}}));
            }
            st.next_id += 1;
            let id = format!("people/c{}", st.next_id);
            let stored = st.stamp(&id, p);
            let fields = query.get("personFields").map(String::as_str).unwrap_or("");
            json_response(StatusCode::OK, filter_fields(&stored, fields).to_string())
        }
        (Method::PATCH, p) if p.starts_with("/v1/people/") && p.ends_with(":updateContact") => {
            let id = p
                .trim_start_matches("/v1/")
                .trim_end_matches(":updateContact")
                .to_string();
            update_contact(st, &id, query, body_json())
        }
        (Method::PATCH, p)
            if p.starts_with("/v1/people/") && p.ends_with(":updateContactPhoto") =>
        {
            let id = p
                .trim_start_matches("/v1/")
                .trim_end_matches(":updateContactPhoto")
                .to_string();
            let Some(body) = body_json() else {
                return invalid_argument("Invalid JSON payload received.");
            };
            let Some(bytes) = body["photoBytes"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .filter(|b| !b.is_empty())
            else {
                return invalid_argument("Invalid value at 'photo_bytes' (TYPE_BYTES).");
            };
            let Some(stored) = st.people.get(&id).filter(|s| !s.deleted) else {
                return error(StatusCode::NOT_FOUND, "error_not_found.json");
            };
            let mut person = stored.person.clone();
            let hash = sha2::Sha256::digest(&bytes);
            let url = format!(
                "https://lh3.googleusercontent.com/contacts/{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash[..12])
            );
            let src_id = id.trim_start_matches("people/c").to_string();
            person["photos"] = json!([{"metadata": {"primary": true, "source": {"type": "CONTACT", "id": src_id}}, "url": url}]);
            st.photo_bytes.insert(id.clone(), bytes);
            let stored = st.stamp(&id, person);
            let fields = body["personFields"].as_str().unwrap_or("");
            json_response(
                StatusCode::OK,
                json!({"person": filter_fields(&stored, fields)}).to_string(),
            )
        }
        (Method::DELETE, p)
            if p.starts_with("/v1/people/") && p.ends_with(":deleteContactPhoto") =>
        {
            let id = p
                .trim_start_matches("/v1/")
                .trim_end_matches(":deleteContactPhoto")
                .to_string();
            let Some(stored) = st.people.get(&id).filter(|s| !s.deleted) else {
                return error(StatusCode::NOT_FOUND, "error_not_found.json");
            };
            let mut person = stored.person.clone();
            if let Some(o) = person.as_object_mut() {
                o.remove("photos");
            }
            st.photo_bytes.remove(&id);
            let stored = st.stamp(&id, person);
            let fields = query.get("personFields").map(String::as_str).unwrap_or("");
            json_response(
                StatusCode::OK,
                json!({"person": filter_fields(&stored, fields)}).to_string(),
            )
        }
        (Method::DELETE, p) if p.starts_with("/v1/people/") && p.ends_with(":deleteContact") => {
            let id = p
                .trim_start_matches("/v1/")
                .trim_end_matches(":deleteContact")
                .to_string();
            if st.tombstone(&id) {
                json_response(StatusCode::OK, "{}".into())
            } else {
                error(StatusCode::NOT_FOUND, "error_not_found.json")
            }
        }
        (Method::GET, p) if p.starts_with("/v1/people/c") => {
            let id = p.trim_start_matches("/v1/");
            let Some(fields) = query.get("personFields") else {
                return error(StatusCode::BAD_REQUEST, "error_person_fields_required.json");
            };
            match st.people.get(id).filter(|s| !s.deleted) {
                Some(s) => {
                    json_response(StatusCode::OK, filter_fields(&s.person, fields).to_string())
                }
                None => error(StatusCode::NOT_FOUND, "error_not_found.json"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "error_not_found.json"),
    }
}

fn is_member(person: &Value, group: &str) -> bool {
    person["memberships"].as_array().is_some_and(|ms| {
        ms.iter().any(|m| {
            m["contactGroupMembership"]["contactGroupResourceName"].as_str() == Some(group)
        })
    })
}

fn list_connections(st: &mut State, query: &BTreeMap<String, String>) -> Response {
    let Some(fields) = query.get("personFields").cloned() else {
        return error(StatusCode::BAD_REQUEST, "error_person_fields_required.json");
    };
    let page_size: usize = match query.get("pageSize").map(|s| s.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return invalid_argument("pageSize must be between 1 and 1000."),
    };
    let mut params = query.clone();
    let page_token = params.remove("pageToken");

    let (session_id, offset) = match page_token {
        Some(pt) => {
            let Some((sid, off)) = pt.rsplit_once('.') else {
                return invalid_argument("Page token is not valid.");
            };
            let Some(session) = st.sessions.get(sid) else {
                return invalid_argument("Page token is not valid.");
            };
            if session.params != params {
                return error(StatusCode::BAD_REQUEST, "error_parameters_mismatch.json");
            }
            if session
                .sync_token
                .as_ref()
                .is_some_and(|t| st.expired_tokens.contains(t))
            {
                return error(StatusCode::BAD_REQUEST, "error_expired_sync_token.json");
            }
            (sid.to_string(), off.parse::<usize>().unwrap_or(0))
        }
        None => {
            let sync_token = params.get("syncToken").cloned();
            let items: Vec<Value> = match &sync_token {
                Some(t) if st.expired_tokens.contains(t) => {
                    return error(StatusCode::BAD_REQUEST, "error_expired_sync_token.json");
                }
                Some(t) => {
                    let Some(since) = st.sync_tokens.get(t).copied() else {
                        return invalid_argument("Sync token is invalid.");
                    };
                    st.people
                        .values()
                        .filter(|s| s.seq > since)
                        .map(|s| s.person.clone())
                        .collect()
                }
                None => st
                    .people
                    .values()
                    .filter(|s| !s.deleted)
                    .map(|s| s.person.clone())
                    .collect(),
            };
            let next_sync_token = (params.get("requestSyncToken").map(String::as_str)
                == Some("true")
                || sync_token.is_some())
            .then(|| st.issue_sync_token());
            let sid = format!("s{}", st.sessions.len() + 1);
            st.sessions.insert(
                sid.clone(),
                Session {
                    params,
                    items,
                    next_sync_token,
                    sync_token,
                },
            );
            (sid, 0)
        }
    };

    let session = &st.sessions[&session_id];
    let total = session.items.len();
    let end = (offset + page_size).min(total);
    let page: Vec<Value> = session.items[offset.min(total)..end]
        .iter()
        .map(|p| filter_fields(p, &fields))
        .collect();
    let mut out = json!({"connections": page, "totalPeople": total, "totalItems": total});
    if end < total {
        out["nextPageToken"] = json!(format!("{session_id}.{end}"));
    } else if let Some(t) = &session.next_sync_token {
        out["nextSyncToken"] = json!(t);
    }
    if page.is_empty() {
        out.as_object_mut().unwrap().remove("connections");
    }
    json_response(StatusCode::OK, out.to_string())
}

fn update_contact(
    st: &mut State,
    id: &str,
    query: &BTreeMap<String, String>,
    body: Option<Value>,
) -> Response {
    let Some(mask) = query.get("updatePersonFields") else {
        return invalid_argument(
            "updatePersonFields mask is required. Please specify one or more valid paths.",
        );
    };
    let Some(body) = body else {
        return invalid_argument("Invalid JSON payload received.");
    };
    let Some(stored) = st.people.get(id).filter(|s| !s.deleted) else {
        return error(StatusCode::NOT_FOUND, "error_not_found.json");
    };
    let sent_etag = body["etag"].as_str().map(str::to_string).or_else(|| {
        body["metadata"]["sources"].as_array().and_then(|s| {
            s.iter()
                .find_map(|s| s["etag"].as_str().map(str::to_string))
        })
    });
    let Some(sent_etag) = sent_etag else {
        return error(StatusCode::BAD_REQUEST, "error_etag_required.json");
    };
    if sent_etag != etag_for(stored.etag_n) && sent_etag != source_etag_for(stored.etag_n) {
        return error(StatusCode::BAD_REQUEST, "error_stale_etag.json");
    }
    let mut person = stored.person.clone();
    for field in mask.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match body.get(field) {
            Some(v) => person[field] = v.clone(),
            None => {
                if let Some(o) = person.as_object_mut() {
                    o.remove(field);
                }
            }
        }
    }
    let stored = st.stamp(id, person);
    let fields = query
        .get("personFields")
        .map(String::as_str)
        .unwrap_or(mask);
    json_response(StatusCode::OK, filter_fields(&stored, fields).to_string())
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn token_ok(st: &mut State, refresh: Option<String>) -> Response {
    let access = st.issue_access_token();
    let mut v: Value = serde_json::from_str(
        &fixture("oauth_token.json")
            .replace("{access_token}", &access)
            .replace("{expires_in}", &st.token_lifetime.to_string()),
    )
    .unwrap();
    if let Some(r) = refresh {
        v["refresh_token"] = json!(r);
    }
    json_response(StatusCode::OK, v.to_string())
}

fn token_endpoint(st: &mut State, body: &Bytes) -> Response {
    let f = form(body);
    match f.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            match st.refresh_tokens.get(&rt) {
                Some(false) if st.rotate_refresh => {
                    st.refresh_tokens.insert(rt, true);
                    st.issued += 1;
                    let next = format!("1//fake-rotated-{}", st.issued);
                    st.refresh_tokens.insert(next.clone(), false);
                    token_ok(st, Some(next))
                }
                Some(false) => token_ok(st, None),
                _ => error(StatusCode::BAD_REQUEST, "oauth_invalid_grant.json"),
            }
        }
        Some("authorization_code") => {
            let code = f.get("code").cloned().unwrap_or_default();
            let Some((challenge, redirect)) = st.codes.remove(&code) else {
                return error(StatusCode::BAD_REQUEST, "oauth_invalid_grant.json");
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != challenge || f.get("redirect_uri") != Some(&redirect) {
                return error(StatusCode::BAD_REQUEST, "oauth_invalid_grant.json");
            }
            st.issued += 1;
            let refresh = format!("1//fake-refresh-{}", st.issued);
            st.refresh_tokens.insert(refresh.clone(), false);
            token_ok(st, Some(refresh))
        }
        _ => json_response(
            StatusCode::BAD_REQUEST,
            json!({"error":"unsupported_grant_type","error_description":"Invalid grant_type."})
                .to_string(),
        ),
    }
}

fn authorize_endpoint(st: &mut State, query: &BTreeMap<String, String>) -> Response {
    let (Some(redirect), Some(challenge)) =
        (query.get("redirect_uri"), query.get("code_challenge"))
    else {
        return (StatusCode::BAD_REQUEST, "Error 400: invalid_request").into_response();
    };
    if query.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return (StatusCode::BAD_REQUEST, "Error 400: invalid_request").into_response();
    }
    st.issued += 1;
    let code = format!("4/fake-code-{}", st.issued);
    st.codes
        .insert(code.clone(), (challenge.clone(), redirect.clone()));
    let mut loc = url::Url::parse(redirect).unwrap();
    loc.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair(
            "state",
            query.get("state").map(String::as_str).unwrap_or(""),
        )
        .append_pair(
            "scope",
            query.get("scope").map(String::as_str).unwrap_or(""),
        );
    (StatusCode::FOUND, [("location", loc.to_string())]).into_response()
}
