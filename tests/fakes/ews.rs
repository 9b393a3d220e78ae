//! A stateful fake of an on-premises Exchange server's EWS endpoint (`POST /EWS/Exchange.asmx`)
//! and POX Autodiscover (`POST /autodiscover/autodiscover.xml`) on 127.0.0.1:0, for the EWS
//! provider tests. It reproduces the documented wire format (providers.md §4): SOAP 1.1 with the
//! `SOAPAction` of each operation, Basic or bearer auth (401 otherwise), or NTLM when required
//! (the connection-bound handshake of MS-NTHT with the NTLMv2 proof recomputed from the password
//! by the fake's own MD4/HMAC-MD5, per TCP connection), GetFolder/FindFolder
//! (deep, paged, with hidden `IPF.Contact.*` system folders), SyncFolderItems with an opaque
//! SyncState, `MaxChangesReturned` and `IncludesLastItemInRange`, Create/Update/Delete changes
//! computed from what each state has already reported, GetItem batches, CreateItem,
//! UpdateItem (`SetItemField`/`DeleteItemField` on plain and indexed fields, ChangeKey checked
//! unless `AlwaysOverwrite`), DeleteItem, `ErrorInvalidSyncStateData` for forgotten states, and
//! throttling (SOAP fault `ErrorServerBusy` with `BackOffMilliseconds`, the same inside an HTTP
//! 200, HTTP 503 with `Retry-After`). Every request is recorded with its arrival time.
//! Error bodies and the seed contact come from `fixtures/ews/`. See `docs/FAKES-ews.md`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use cardbridge::dav::xml::{self, Element};
use cardbridge::providers::ews::names::{NS_MESSAGES, NS_SOAP, NS_TYPES};

const FIX_INVALID_STATE: &str = include_str!("../../fixtures/ews/sync-invalid-state.xml");
const FIX_SERVER_BUSY: &str = include_str!("../../fixtures/ews/fault-server-busy.xml");
const FIX_BUSY_IN_200: &str = include_str!("../../fixtures/ews/get-item-server-busy.xml");
const FIX_CONFLICT: &str = include_str!("../../fixtures/ews/update-item-conflict.xml");
const FIX_CONTACT: &str = include_str!("../../fixtures/ews/contact-full.xml");
const FIX_NTLM_HANDSHAKE: &str = include_str!("../../fixtures/ews/ntlm-handshake.txt");
const FIX_AUTODISCOVER: &str = include_str!("../../fixtures/ews/autodiscover-settings.xml");
const FIX_AUTODISCOVER_SOAP: &str =
    include_str!("../../fixtures/ews/autodiscover-soap-settings.xml");
/// SOAPAction of SOAP Autodiscover GetUserSettings (MS-OXWSADISC).
const GET_USER_SETTINGS_ACTION: &str =
    "http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings";
/// The EwsUrl the Autodiscover fixture carries; the fake swaps in its own.
const FIXTURE_EWS_URL: &str = "https://mail.contoso.com/EWS/Exchange.asmx";
/// The BackOffMilliseconds the throttling fixtures carry; the fake swaps in the configured one.
const FIXTURE_BACK_OFF: &str = ">5000<";

/// The id of the default Contacts folder (what `DistinguishedFolderId Id="contacts"` means).
pub const CONTACTS_ID: &str = "AAMkADc3AAEOAAA=";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When it arrived.
    pub at: Instant,
    /// Path.
    pub path: String,
    /// The operation (local name of the SOAP body's first element).
    pub op: String,
    /// `SOAPAction`.
    pub action: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// The first `ResponseCode` answered, or the fault code.
    pub code: Option<String>,
    /// Number of ids asked for (GetItem) or changes returned (SyncFolderItems).
    pub count: usize,
    /// Whether a SyncFolderItems request carried a SyncState.
    pub had_state: bool,
    /// `ConflictResolution` of an UpdateItem.
    pub conflict_resolution: Option<String>,
    /// The client's address: one per TCP connection.
    pub peer: Option<SocketAddr>,
    /// With NTLM required: what the request was in the handshake.
    pub ntlm: Option<NtlmLeg>,
}

/// A request's part in the NTLM handshake (MS-NTHT §3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmLeg {
    /// No credentials on a connection not authenticated: 401 `WWW-Authenticate: NTLM`.
    Unauthenticated,
    /// A NEGOTIATE_MESSAGE: 401 with a CHALLENGE_MESSAGE.
    Negotiate,
    /// An AUTHENTICATE_MESSAGE whose NTLMv2 proof matched: the connection is authenticated.
    Authenticated {
        /// `DOMAIN` of the message.
        domain: String,
        /// User of the message.
        user: String,
    },
    /// An AUTHENTICATE_MESSAGE refused (401), with why.
    Rejected(String),
    /// No credentials on a connection already authenticated.
    Session,
}

#[derive(Debug, Clone)]
struct Folder {
    id: String,
    name: String,
    parent: String,
    class: String,
}

#[derive(Debug, Clone)]
struct Stored {
    folder: String,
    /// Children of `t:Contact` (no ItemId).
    props: Vec<Element>,
    change_key: String,
    /// Sequence number of the last change.
    seq: u64,
    /// The contact photo attachment: (AttachmentId, ContentType, bytes).
    photo: Option<(String, String, Vec<u8>)>,
}

#[derive(Debug, Clone)]
struct SyncStateData {
    folder: String,
    /// What this state has reported: id → ChangeKey.
    seen: BTreeMap<String, String>,
}

#[derive(Default)]
struct Inner {
    base: String,
    username: String,
    password: String,
    bearer: Option<String>,
    folders: Vec<Folder>,
    contacts: BTreeMap<String, Stored>,
    seq: u64,
    next_id: u64,
    next_state: u64,
    states: HashMap<String, SyncStateData>,
    busy_fault_next: u32,
    busy_200_next: u32,
    unavailable_next: u32,
    back_off_ms: u64,
    retry_after_secs: u64,
    /// An Outlook edit (id, property, value) that lands just before the next UpdateItem of id.
    race_next_update: Option<(String, String, String)>,
    /// A contact deleted (as in Outlook) just before the next GetItem.
    race_next_get: Option<String>,
    requests: Vec<Recorded>,
    /// NTLM required (Basic and bearer refused).
    ntlm: bool,
    /// Server challenges sent, per connection, awaiting the AUTHENTICATE.
    ntlm_pending: HashMap<SocketAddr, [u8; 8]>,
    /// Connections authenticated by NTLM.
    ntlm_authenticated: HashSet<SocketAddr>,
}

/// The fake; dropping it stops the server.
pub struct FakeEws {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The EWS endpoint URL.
    pub ews_url: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEws {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn t(local: &str) -> Element {
    Element {
        ns: NS_TYPES.into(),
        name: local.into(),
        ..Default::default()
    }
}

fn m(local: &str) -> Element {
    Element {
        ns: NS_MESSAGES.into(),
        name: local.into(),
        ..Default::default()
    }
}

fn is_t(e: &Element, local: &str) -> bool {
    e.ns == NS_TYPES && e.name == local
}

fn child<'a>(e: &'a Element, local: &str) -> Option<&'a Element> {
    e.children.iter().find(|c| c.name == local)
}

/// Renders with the prefixes Exchange uses (`s:`, `m:`, `t:`).
fn render_el(e: &Element, out: &mut String) {
    let prefix = match e.ns.as_str() {
        NS_SOAP => "s:",
        NS_MESSAGES => "m:",
        NS_TYPES => "t:",
        _ => "",
    };
    out.push('<');
    out.push_str(prefix);
    out.push_str(&e.name);
    for a in &e.attrs {
        out.push(' ');
        out.push_str(&a.name);
        out.push_str("=\"");
        xml::escape_attr(&a.value, out);
        out.push('"');
    }
    if e.children.is_empty() && e.text.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    xml::escape_text(&e.text, out);
    for c in &e.children {
        render_el(c, out);
    }
    out.push_str("</");
    out.push_str(prefix);
    out.push_str(&e.name);
    out.push('>');
}

fn envelope(body_child: Element) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><s:Header><t:ServerVersionInfo MajorVersion=\"15\" MinorVersion=\"1\" MajorBuildNumber=\"2507\" MinorBuildNumber=\"6\"/></s:Header><s:Body>"
    );
    render_el(&body_child, &mut out);
    out.push_str("</s:Body></s:Envelope>");
    out
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "text/xml; charset=utf-8")], body).into_response()
}

/// A `…ResponseMessage` with class and code.
fn message(op: &str, class: &str, code: &str) -> Element {
    let mut e = m(&format!("{op}ResponseMessage")).with_attr("ResponseClass", class);
    if code != "NoError" {
        e.push(m("MessageText").with_text(format!("{code} (fake)")));
    }
    e.push(m("ResponseCode").with_text(code));
    e
}

impl FakeEws {
    /// Starts the fake accepting Basic `username`/`password`.
    pub async fn start(username: &str, password: &str) -> FakeEws {
        let inner = Arc::new(Mutex::new(Inner {
            username: username.into(),
            password: password.into(),
            back_off_ms: 5000,
            retry_after_secs: 1,
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = format!("http://{addr}");
        let ews_url = format!("{origin}/EWS/Exchange.asmx");
        {
            let mut g = inner.lock().unwrap();
            g.base = ews_url.clone();
            g.folders.push(Folder {
                id: CONTACTS_ID.into(),
                name: "Contacts".into(),
                parent: "AAMkADc3AAEBAAA=".into(),
                class: "IPF.Contact".into(),
            });
        }
        let app = Router::new()
            .route("/EWS/Exchange.asmx", post(ews))
            .route("/autodiscover/autodiscover.xml", post(autodiscover))
            .route("/autodiscover/autodiscover.svc", post(autodiscover_soap))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        FakeEws {
            origin,
            ews_url,
            inner,
            server,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    // ---- setup and server-side edits -----------------------------------------------------

    /// Adds a folder below `parent` (use [`CONTACTS_ID`] for a top-level contact folder).
    pub fn add_folder(&self, id: &str, name: &str, parent: &str, class: &str) {
        self.lock().folders.push(Folder {
            id: id.into(),
            name: name.into(),
            parent: parent.into(),
            class: class.into(),
        });
    }

    /// Creates a contact from `t:` child elements (e.g. `<t:GivenName>Ada</t:GivenName>`), as if
    /// made in Outlook; returns its id.
    pub fn put_contact(&self, folder: &str, inner_xml: &str) -> String {
        let el = xml::parse(
            format!("<t:Contact xmlns:t=\"{NS_TYPES}\">{inner_xml}</t:Contact>").as_bytes(),
        )
        .unwrap();
        self.lock().create(folder, el.children)
    }

    /// `n` contacts shaped like `fixtures/ews/contact-full.xml`, numbered from `start`.
    pub fn seed(&self, folder: &str, start: usize, n: usize) -> Vec<String> {
        let template = xml::parse(FIX_CONTACT.as_bytes()).unwrap();
        let base: Vec<Element> = template
            .children
            .into_iter()
            .filter(|c| {
                !matches!(
                    c.name.as_str(),
                    "ItemId"
                        | "ParentFolderId"
                        | "GivenName"
                        | "Surname"
                        | "DisplayName"
                        | "FileAs"
                        | "EmailAddresses"
                        | "Subject"
                )
            })
            .collect();
        let mut g = self.lock();
        (start..start + n)
            .map(|i| {
                let mut props = base.clone();
                props.push(t("GivenName").with_text(format!("Given{i}")));
                props.push(t("Surname").with_text(format!("Sur{i}")));
                props.push(t("DisplayName").with_text(format!("Given{i} Sur{i}")));
                props.push(
                    t("EmailAddresses").with_child(
                        t("Entry")
                            .with_attr("Key", "EmailAddress1")
                            .with_text(format!("p{i}@example.com")),
                    ),
                );
                g.create(folder, props)
            })
            .collect()
    }

    /// Sets (or with `None` removes) a plain property, as if edited in Outlook.
    pub fn edit_contact(&self, id: &str, local: &str, value: Option<&str>) {
        let mut g = self.lock();
        let seq = g.bump();
        let c = g.contacts.get_mut(id).unwrap();
        c.props.retain(|p| p.name != local);
        if let Some(v) = value {
            c.props.push(t(local).with_text(v));
        }
        c.change_key = format!("EQAAABYAAACy8FYL{seq:010}");
        c.seq = seq;
    }

    /// Deletes a contact as if deleted in Outlook.
    pub fn delete_contact(&self, id: &str) {
        self.lock().contacts.remove(id);
    }

    /// The stored contact's plain property `local`.
    pub fn field(&self, id: &str, local: &str) -> Option<String> {
        let g = self.lock();
        let c = g.contacts.get(id)?;
        c.props
            .iter()
            .find(|p| p.name == local)
            .map(|p| p.text.clone())
    }

    /// The stored value of indexed entry `key` in dictionary `dict` (e.g. `EmailAddresses`).
    pub fn entry(&self, id: &str, dict: &str, key: &str) -> Option<String> {
        let g = self.lock();
        let c = g.contacts.get(id)?;
        let d = c.props.iter().find(|p| p.name == dict)?;
        d.children
            .iter()
            .find(|e| e.attr("Key") == Some(key))
            .map(|e| e.text.clone())
    }

    /// The number of entries of dictionary `dict`.
    pub fn entry_count(&self, id: &str, dict: &str) -> usize {
        let g = self.lock();
        g.contacts
            .get(id)
            .and_then(|c| c.props.iter().find(|p| p.name == dict))
            .map_or(0, |d| d.children.len())
    }

    /// The CRM id extended property of a contact.
    pub fn crm_id(&self, id: &str) -> Option<String> {
        let g = self.lock();
        let c = g.contacts.get(id)?;
        c.props
            .iter()
            .find(|p| p.name == "ExtendedProperty")
            .and_then(|p| child(p, "Value"))
            .map(|v| v.text.clone())
    }

    /// Sets the contact photo as Outlook would (an attachment; new ChangeKey).
    pub fn set_photo(&self, id: &str, content_type: &str, bytes: &[u8]) {
        self.lock()
            .set_photo(id, Some((content_type.into(), bytes.to_vec())));
    }

    /// The contact photo: (content type, bytes).
    pub fn photo(&self, id: &str) -> Option<(String, Vec<u8>)> {
        self.lock()
            .contacts
            .get(id)
            .and_then(|c| c.photo.clone())
            .map(|(_, ct, b)| (ct, b))
    }

    /// Requests to GetAttachment, CreateAttachment or DeleteAttachment.
    pub fn attachment_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.op.ends_with("Attachment"))
            .collect()
    }

    /// The current ChangeKey.
    pub fn change_key(&self, id: &str) -> Option<String> {
        self.lock().contacts.get(id).map(|c| c.change_key.clone())
    }

    /// Whether the contact exists.
    pub fn exists(&self, id: &str) -> bool {
        self.lock().contacts.contains_key(id)
    }

    /// Live contacts in `folder`.
    pub fn count(&self, folder: &str) -> usize {
        self.lock()
            .contacts
            .values()
            .filter(|c| c.folder == folder)
            .count()
    }

    /// Ids of the live contacts in `folder`.
    pub fn ids(&self, folder: &str) -> Vec<String> {
        self.lock()
            .contacts
            .iter()
            .filter(|(_, c)| c.folder == folder)
            .map(|(id, _)| id.clone())
            .collect()
    }

    // ---- behaviour knobs -------------------------------------------------------------------

    /// Forgets every SyncState issued so far: using one gets `ErrorInvalidSyncStateData`.
    pub fn expire_sync_states(&self) {
        self.lock().states.clear();
    }

    /// The next `n` requests get HTTP 500 with the `ErrorServerBusy` fault, `BackOffMilliseconds`
    /// set to `ms`.
    pub fn busy_fault_next(&self, n: u32, ms: u64) {
        let mut g = self.lock();
        g.busy_fault_next = n;
        g.back_off_ms = ms;
    }

    /// The next `n` requests get HTTP 200 with `ErrorInternalServerError` wrapping
    /// `ErrorServerBusy`, `BackOffMilliseconds` set to `ms`.
    pub fn busy_in_200_next(&self, n: u32, ms: u64) {
        let mut g = self.lock();
        g.busy_200_next = n;
        g.back_off_ms = ms;
    }

    /// The next `n` requests get HTTP 503 with `Retry-After: secs`.
    pub fn unavailable_next(&self, n: u32, secs: u64) {
        let mut g = self.lock();
        g.unavailable_next = n;
        g.retry_after_secs = secs;
    }

    /// Simulates a user editing `id` in Outlook (`local` := `value`) between the client's read
    /// and its next UpdateItem of that item, so the client's ChangeKey is stale.
    pub fn edit_before_next_update(&self, id: &str, local: &str, value: &str) {
        self.lock().race_next_update = Some((id.into(), local.into(), value.into()));
    }

    /// Simulates a user deleting `id` in Outlook between the client's SyncFolderItems and its
    /// next GetItem.
    pub fn delete_before_next_get_item(&self, id: &str) {
        self.lock().race_next_get = Some(id.into());
    }

    /// Changes the accepted password (revokes the old credentials).
    pub fn set_password(&self, password: &str) {
        self.lock().password = password.into();
    }

    /// Requires NTLM (`true`) for the configured user and password: Basic and bearer get 401.
    pub fn require_ntlm(&self, on: bool) {
        let mut g = self.lock();
        g.ntlm = on;
        g.ntlm_pending.clear();
        g.ntlm_authenticated.clear();
    }

    /// Also accepts `Authorization: Bearer {token}` (`None`: only Basic).
    pub fn set_bearer(&self, token: Option<&str>) {
        self.lock().bearer = token.map(str::to_string);
    }

    // ---- observations ----------------------------------------------------------------------

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn create(&mut self, folder: &str, props: Vec<Element>) -> String {
        self.next_id += 1;
        let id = format!("AAMkADc3MWUyMGQ1LTdhZjQtNDE0OS1i{:08}AAA=", self.next_id);
        let seq = self.bump();
        self.contacts.insert(
            id.clone(),
            Stored {
                folder: folder.into(),
                props: props
                    .into_iter()
                    .filter(|p| p.name != "ItemId" && p.name != "ParentFolderId")
                    .collect(),
                change_key: format!("EQAAABYAAACy8FYL{seq:010}"),
                seq,
                photo: None,
            },
        );
        id
    }

    /// A new ChangeKey for `id` (an attachment change modifies the item, MS-OXWSATT).
    fn touch(&mut self, id: &str) -> Option<String> {
        let seq = self.bump();
        let c = self.contacts.get_mut(id)?;
        c.change_key = format!("EQAAABYAAACy8FYL{seq:010}");
        c.seq = seq;
        Some(c.change_key.clone())
    }

    /// Sets (or removes) the contact photo of `id`; returns the item's new ChangeKey.
    fn set_photo(&mut self, id: &str, photo: Option<(String, Vec<u8>)>) -> Option<String> {
        self.next_id += 1;
        let att = format!("AAMkADc3MWUyMGQ1LTdhZjQtNDE0OS1iATT{:06}=", self.next_id);
        self.contacts.get_mut(id)?.photo = photo.map(|(ct, b)| (att, ct, b));
        self.touch(id)
    }

    /// The contact owning attachment `att`.
    fn owner_of(&self, att: &str) -> Option<String> {
        self.contacts
            .iter()
            .find(|(_, c)| c.photo.as_ref().is_some_and(|p| p.0 == att))
            .map(|(id, _)| id.clone())
    }

    fn folder_id(&self, r: &Element) -> Option<String> {
        let f = r.children.first()?;
        let id = f.attr("Id")?;
        if f.name == "DistinguishedFolderId" {
            return (id == "contacts").then(|| CONTACTS_ID.to_string());
        }
        self.folders
            .iter()
            .any(|x| x.id == id)
            .then(|| id.to_string())
    }

    fn render_contact(&self, id: &str, c: &Stored, with_ext: bool) -> Element {
        let mut e = t("Contact")
            .with_child(
                t("ItemId")
                    .with_attr("Id", id)
                    .with_attr("ChangeKey", c.change_key.clone()),
            )
            .with_child(
                t("ParentFolderId")
                    .with_attr("Id", c.folder.clone())
                    .with_attr("ChangeKey", "AQAAAA=="),
            )
            .with_child(t("ItemClass").with_text("IPM.Contact"));
        if let Some((att, ct, bytes)) = &c.photo {
            // ItemType lists attachments (no content) right after Body/ItemClass.
            e.push(
                t("Attachments").with_child(
                    t("FileAttachment")
                        .with_child(t("AttachmentId").with_attr("Id", att.clone()))
                        .with_child(t("Name").with_text("ContactPicture.jpg"))
                        .with_child(t("ContentType").with_text(ct.clone()))
                        .with_child(t("Size").with_text(bytes.len().to_string()))
                        .with_child(t("IsInline").with_text("false"))
                        .with_child(t("IsContactPhoto").with_text("true")),
                ),
            );
        }
        for p in &c.props {
            if p.name == "ExtendedProperty" && !with_ext {
                continue;
            }
            if p.name == "HasPicture" {
                continue;
            }
            e.push(p.clone());
        }
        e.push(t("HasPicture").with_text(if c.photo.is_some() { "true" } else { "false" }));
        e
    }

    fn new_state(&mut self, data: SyncStateData) -> String {
        self.next_state += 1;
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "H4sIAAAAAAAEAO29B2AcSZYl|{}|{}",
            self.next_state,
            data.seen.len()
        ));
        self.states.insert(token.clone(), data);
        token
    }
}

type Shared = Arc<Mutex<Inner>>;

fn authorized(g: &Inner, headers: &HeaderMap) -> bool {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", g.username, g.password))
    );
    auth == basic
        || g.bearer
            .as_ref()
            .is_some_and(|tok| auth == format!("Bearer {tok}"))
}

/// Whether the request may pass, its NTLM leg (NTLM mode), and the 401 to send otherwise.
fn gate(
    g: &mut Inner,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> (bool, Option<NtlmLeg>, Option<Response>) {
    if !g.ntlm {
        let ok = authorized(g, headers);
        let refusal = (!ok).then(|| StatusCode::UNAUTHORIZED.into_response());
        return (ok, None, refusal);
    }
    let (leg, refusal) = ntlm_gate(g, peer, headers);
    (refusal.is_none(), Some(leg), refusal)
}

fn ntlm_401(token: Option<&str>) -> Response {
    let value = match token {
        Some(t) => format!("NTLM {t}"),
        None => "NTLM".to_string(),
    };
    // IIS answers with a small HTML page; Exchange offers both schemes, a client must pick NTLM.
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [("content-type", "text/html")],
        "<html><body>401 - Unauthorized: Access is denied due to invalid credentials.</body></html>",
    )
        .into_response();
    r.headers_mut()
        .append("www-authenticate", "Negotiate".parse().unwrap());
    r.headers_mut()
        .append("www-authenticate", value.parse().unwrap());
    r
}

/// The CHALLENGE_MESSAGE of the handshake fixture (MS-NLMP §4.2.4.3) with `challenge` as its
/// server challenge (bytes 24..32).
fn challenge_message(challenge: [u8; 8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let token = FIX_NTLM_HANDSHAKE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("WWW-Authenticate: NTLM "))
        .unwrap();
    let mut bytes = b64.decode(token.trim()).unwrap();
    bytes[24..32].copy_from_slice(&challenge);
    b64.encode(bytes)
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv2 (MS-NLMP §3.3.2): HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) || domain)).
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    use md4::Digest as _;
    let nt_hash = md4::Md4::digest(utf16le(password));
    hmac_md5(
        &nt_hash,
        &[&utf16le(&user.to_uppercase()), &utf16le(domain)],
    )
}

/// Checks an AUTHENTICATE_MESSAGE against the configured account and the connection's server
/// challenge: NTProofStr = HMAC-MD5(NTOWFv2, server challenge || blob).
fn verify_authenticate(
    g: &Inner,
    challenge: [u8; 8],
    a: &ntlmclient::AuthenticateMessage,
) -> Result<(), String> {
    let (domain, user) = g.username.split_once('\\').unwrap_or(("", &g.username));
    if !a.user_name.eq_ignore_ascii_case(user) || !a.domain_name.eq_ignore_ascii_case(domain) {
        return Err(format!(
            "unknown account {}\\{}",
            a.domain_name, a.user_name
        ));
    }
    if a.ntlm_response.len() < 16 + 28 {
        return Err("not an NTLMv2 response".into());
    }
    let (proof, blob) = a.ntlm_response.split_at(16);
    if blob[0] != 1 || blob[1] != 1 {
        return Err("NTLMv2 blob version is not 1".into());
    }
    // The key uses the user and domain as the client sent them.
    let key = ntowf_v2(&g.password, &a.user_name, &a.domain_name);
    if hmac_md5(&key, &[&challenge, blob]) != proof {
        return Err("NTProofStr does not match the password".into());
    }
    Ok(())
}

fn ntlm_gate(g: &mut Inner, peer: SocketAddr, headers: &HeaderMap) -> (NtlmLeg, Option<Response>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(token) = auth.strip_prefix("NTLM ") else {
        if g.ntlm_authenticated.contains(&peer) {
            return (NtlmLeg::Session, None);
        }
        return (NtlmLeg::Unauthenticated, Some(ntlm_401(None)));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .unwrap_or_default();
    // MS-NLMP §2.2.1.1: "NTLMSSP\0", MessageType 1. (Read by hand: the client crate's parser
    // wants 32 bytes after the header, more than a NEGOTIATE without payload has.)
    let negotiate =
        bytes.len() >= 32 && bytes[..8] == *b"NTLMSSP\0" && bytes[8..12] == [1, 0, 0, 0];
    match ntlmclient::Message::try_from(bytes.as_slice()) {
        _ if negotiate => {
            let challenge: [u8; 8] = rand::random();
            g.ntlm_pending.insert(peer, challenge);
            g.ntlm_authenticated.remove(&peer);
            (
                NtlmLeg::Negotiate,
                Some(ntlm_401(Some(&challenge_message(challenge)))),
            )
        }
        Ok(ntlmclient::Message::Authenticate(a)) => {
            let verdict = match g.ntlm_pending.remove(&peer) {
                None => Err("no challenge was sent on this connection".to_string()),
                Some(challenge) => verify_authenticate(g, challenge, &a),
            };
            match verdict {
                Ok(()) => {
                    g.ntlm_authenticated.insert(peer);
                    (
                        NtlmLeg::Authenticated {
                            domain: a.domain_name.clone(),
                            user: a.user_name.clone(),
                        },
                        None,
                    )
                }
                Err(why) => (NtlmLeg::Rejected(why), Some(ntlm_401(None))),
            }
        }
        _ => (
            NtlmLeg::Rejected("not an NTLM message".into()),
            Some(ntlm_401(None)),
        ),
    }
}

async fn autodiscover(
    State(inner): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut g = inner.lock().unwrap();
    let (ok, leg, refusal) = gate(&mut g, peer, &headers);
    let status = if ok { 200 } else { 401 };
    g.requests.push(Recorded {
        at: Instant::now(),
        path: "/autodiscover/autodiscover.xml".into(),
        op: "Autodiscover".into(),
        action: None,
        status,
        code: None,
        count: 0,
        had_state: false,
        conflict_resolution: None,
        peer: Some(peer),
        ntlm: leg,
    });
    if let Some(refusal) = refusal {
        return refusal;
    }
    let asked = xml::parse(&body)
        .ok()
        .and_then(|r| child(&r, "Request").cloned())
        .and_then(|r| child(&r, "EMailAddress").map(|e| e.text.clone()))
        .unwrap_or_default();
    if !asked.contains('@') {
        return StatusCode::BAD_REQUEST.into_response();
    }
    xml_response(
        StatusCode::OK,
        FIX_AUTODISCOVER.replace(FIXTURE_EWS_URL, &g.base),
    )
}

async fn autodiscover_soap(
    State(inner): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut g = inner.lock().unwrap();
    let (ok, leg, refusal) = gate(&mut g, peer, &headers);
    let action = headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim_matches('"').to_string());
    let mailbox = xml::parse(&body).ok().and_then(|r| {
        fn find(e: &Element) -> Option<String> {
            if e.name == "Mailbox" {
                return Some(e.text.clone());
            }
            e.children.iter().find_map(find)
        }
        find(&r)
    });
    let status = if !ok {
        401
    } else if action.as_deref() != Some(GET_USER_SETTINGS_ACTION)
        || !mailbox.is_some_and(|m| m.contains('@'))
    {
        400
    } else {
        200
    };
    g.requests.push(Recorded {
        at: Instant::now(),
        path: "/autodiscover/autodiscover.svc".into(),
        op: "GetUserSettings".into(),
        action,
        status,
        code: None,
        count: 0,
        had_state: false,
        conflict_resolution: None,
        peer: Some(peer),
        ntlm: leg,
    });
    if let Some(refusal) = refusal {
        return refusal;
    }
    match status {
        400 => StatusCode::BAD_REQUEST.into_response(),
        _ => xml_response(
            StatusCode::OK,
            FIX_AUTODISCOVER_SOAP.replace(FIXTURE_EWS_URL, &g.base),
        ),
    }
}

async fn ews(
    State(inner): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let mut g = inner.lock().unwrap();
    let action = headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim_matches('"').to_string());
    let parsed = xml::parse(&body).ok();
    let op_el = parsed
        .as_ref()
        .and_then(|r| {
            r.children
                .iter()
                .find(|c| c.ns == NS_SOAP && c.name == "Body")
        })
        .and_then(|b| b.children.first())
        .cloned();
    let op = op_el.as_ref().map(|e| e.name.clone()).unwrap_or_default();
    let mut rec = Recorded {
        at,
        path: "/EWS/Exchange.asmx".into(),
        op: op.clone(),
        action: action.clone(),
        status: 200,
        code: None,
        count: 0,
        had_state: false,
        conflict_resolution: None,
        peer: Some(peer),
        ntlm: None,
    };
    if g.ntlm {
        let (_, leg, refusal) = gate(&mut g, peer, &headers);
        rec.ntlm = leg;
        if let Some(refusal) = refusal {
            rec.status = 401;
            g.requests.push(rec);
            return refusal;
        }
    }
    let resp = route(&mut g, &headers, op_el, &op, action.as_deref(), &mut rec);
    rec.status = resp.0.as_u16();
    g.requests.push(rec);
    xml_response_or_empty(resp)
}

fn xml_response_or_empty(
    (status, headers, body): (StatusCode, Vec<(&'static str, String)>, String),
) -> Response {
    let mut r = if body.is_empty() {
        status.into_response()
    } else {
        xml_response(status, body)
    };
    for (k, v) in headers {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r
}

type Answer = (StatusCode, Vec<(&'static str, String)>, String);

fn answer(op: &str, messages: Vec<Element>) -> Answer {
    let root =
        m(&format!("{op}Response")).with_child(m("ResponseMessages").with_children(messages));
    (StatusCode::OK, vec![], envelope(root))
}

fn route(
    g: &mut Inner,
    headers: &HeaderMap,
    op_el: Option<Element>,
    op: &str,
    action: Option<&str>,
    rec: &mut Recorded,
) -> Answer {
    if g.unavailable_next > 0 {
        g.unavailable_next -= 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            vec![("retry-after", g.retry_after_secs.to_string())],
            String::new(),
        );
    }
    if !g.ntlm && !authorized(g, headers) {
        return (StatusCode::UNAUTHORIZED, vec![], String::new());
    }
    let back_off = format!(">{}<", g.back_off_ms);
    if g.busy_fault_next > 0 {
        g.busy_fault_next -= 1;
        rec.code = Some("ErrorServerBusy".into());
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            FIX_SERVER_BUSY.replace(FIXTURE_BACK_OFF, &back_off),
        );
    }
    if g.busy_200_next > 0 {
        g.busy_200_next -= 1;
        rec.code = Some("ErrorInternalServerError".into());
        return (
            StatusCode::OK,
            vec![],
            FIX_BUSY_IN_200
                .replace(FIXTURE_BACK_OFF, &back_off)
                .replace("GetItemResponse", &format!("{op}Response")),
        );
    }
    let Some(req) = op_el.filter(|e| e.ns == NS_MESSAGES) else {
        return (StatusCode::BAD_REQUEST, vec![], String::new());
    };
    let expected_action = format!("{NS_MESSAGES}/{op}");
    if action != Some(expected_action.as_str()) {
        // Exchange routes by SOAPAction; a wrong one is a client bug.
        return (StatusCode::BAD_REQUEST, vec![], String::new());
    }
    let out = match op {
        "GetFolder" => get_folder(g, &req),
        "FindFolder" => find_folder(g, &req),
        "SyncFolderItems" => sync_folder_items(g, &req, rec),
        "GetItem" => get_item(g, &req, rec),
        "CreateItem" => create_item(g, &req),
        "UpdateItem" => update_item(g, &req, rec),
        "DeleteItem" => delete_item(g, &req),
        "GetAttachment" => get_attachment(g, &req),
        "CreateAttachment" => create_attachment(g, &req),
        "DeleteAttachment" => delete_attachment(g, &req),
        _ => return (StatusCode::BAD_REQUEST, vec![], String::new()),
    };
    if rec.code.is_none() {
        rec.code = xml::parse(out.2.as_bytes()).ok().and_then(|r| {
            fn find(e: &Element) -> Option<String> {
                if e.name == "ResponseCode" {
                    return Some(e.text.clone());
                }
                e.children.iter().find_map(find)
            }
            find(&r)
        });
    }
    out
}

fn folder_el(f: &Folder) -> Element {
    t("ContactsFolder")
        .with_child(
            t("FolderId")
                .with_attr("Id", f.id.clone())
                .with_attr("ChangeKey", "AwAAABYAAAA"),
        )
        .with_child(t("ParentFolderId").with_attr("Id", f.parent.clone()))
        .with_child(t("FolderClass").with_text(f.class.clone()))
        .with_child(t("DisplayName").with_text(f.name.clone()))
}

fn get_folder(g: &mut Inner, req: &Element) -> Answer {
    let id = child(req, "FolderIds").and_then(|r| g.folder_id(r));
    match id.and_then(|id| g.folders.iter().find(|f| f.id == id)) {
        Some(f) => answer(
            "GetFolder",
            vec![message("GetFolder", "Success", "NoError")
                .with_child(m("Folders").with_child(folder_el(f)))],
        ),
        None => answer(
            "GetFolder",
            vec![message("GetFolder", "Error", "ErrorFolderNotFound")],
        ),
    }
}

fn find_folder(g: &mut Inner, req: &Element) -> Answer {
    let deep = req.attr("Traversal") == Some("Deep");
    let view = child(req, "IndexedPageFolderView");
    let max: usize = view
        .and_then(|v| v.attr("MaxEntriesReturned"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    let offset: usize = view
        .and_then(|v| v.attr("Offset"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let Some(parent) = child(req, "ParentFolderIds").and_then(|r| g.folder_id(r)) else {
        return answer(
            "FindFolder",
            vec![message("FindFolder", "Error", "ErrorFolderNotFound")],
        );
    };
    // Descendants in breadth-first order (deep) or children only (shallow).
    let mut all = Vec::new();
    let mut frontier = vec![parent];
    while let Some(p) = frontier.pop() {
        for f in g.folders.iter().filter(|f| f.parent == p) {
            all.push(f.clone());
            if deep {
                frontier.insert(0, f.id.clone());
            }
        }
    }
    let page: Vec<Element> = all.iter().skip(offset).take(max).map(folder_el).collect();
    let next = offset + page.len();
    let last = next >= all.len();
    answer(
        "FindFolder",
        vec![message("FindFolder", "Success", "NoError").with_child(
            m("RootFolder")
                .with_attr("IndexedPagingOffset", next.to_string())
                .with_attr("TotalItemsInView", all.len().to_string())
                .with_attr("IncludesLastItemInRange", last.to_string())
                .with_child(t("Folders").with_children(page)),
        )],
    )
}

fn sync_folder_items(g: &mut Inner, req: &Element, rec: &mut Recorded) -> Answer {
    let Some(folder) = child(req, "SyncFolderId").and_then(|r| g.folder_id(r)) else {
        return answer(
            "SyncFolderItems",
            vec![message(
                "SyncFolderItems",
                "Error",
                "ErrorSyncFolderNotFound",
            )],
        );
    };
    let max: usize = child(req, "MaxChangesReturned")
        .and_then(|e| e.text.trim().parse().ok())
        .filter(|n| (1..=512).contains(n))
        .unwrap_or(0);
    if max == 0 {
        return answer(
            "SyncFolderItems",
            vec![message("SyncFolderItems", "Error", "ErrorInvalidArgument")],
        );
    }
    let state_text = child(req, "SyncState").map(|s| s.text.trim().to_string());
    rec.had_state = state_text.as_deref().is_some_and(|s| !s.is_empty());
    let data = match state_text.filter(|s| !s.is_empty()) {
        None => SyncStateData {
            folder: folder.clone(),
            seen: BTreeMap::new(),
        },
        Some(s) => match g.states.get(&s) {
            Some(d) if d.folder == folder => d.clone(),
            _ => {
                rec.code = Some("ErrorInvalidSyncStateData".into());
                return (StatusCode::OK, vec![], FIX_INVALID_STATE.to_string());
            }
        },
    };
    // Pending changes: creates/updates in change order, then deletes.
    let mut live: Vec<(&String, &Stored)> = g
        .contacts
        .iter()
        .filter(|(_, c)| c.folder == folder)
        .collect();
    live.sort_by_key(|(_, c)| c.seq);
    let mut pending: Vec<(char, String, String)> = Vec::new();
    for (id, c) in &live {
        match data.seen.get(*id) {
            None => pending.push(('c', (*id).clone(), c.change_key.clone())),
            Some(ck) if *ck != c.change_key => {
                pending.push(('u', (*id).clone(), c.change_key.clone()))
            }
            Some(_) => {}
        }
    }
    for id in data.seen.keys() {
        if g.contacts.get(id).is_none_or(|c| c.folder != folder) {
            pending.push(('d', id.clone(), String::new()));
        }
    }
    let last = pending.len() <= max;
    let mut new = data.clone();
    let mut changes = Vec::new();
    for (kind, id, ck) in pending.into_iter().take(max) {
        let item_id = t("ItemId").with_attr("Id", id.clone());
        match kind {
            'd' => {
                new.seen.remove(&id);
                changes.push(t("Delete").with_child(item_id));
            }
            k => {
                new.seen.insert(id.clone(), ck.clone());
                let wrapper = if k == 'c' { "Create" } else { "Update" };
                changes.push(
                    t(wrapper)
                        .with_child(t("Contact").with_child(item_id.with_attr("ChangeKey", ck))),
                );
            }
        }
    }
    rec.count = changes.len();
    let token = g.new_state(new);
    answer(
        "SyncFolderItems",
        vec![message("SyncFolderItems", "Success", "NoError")
            .with_child(m("SyncState").with_text(token))
            .with_child(m("IncludesLastItemInRange").with_text(last.to_string()))
            .with_child(m("Changes").with_children(changes))],
    )
}

fn get_item(g: &mut Inner, req: &Element, rec: &mut Recorded) -> Answer {
    if let Some(gone) = g.race_next_get.take() {
        g.contacts.remove(&gone);
    }
    let with_ext = child(req, "ItemShape")
        .and_then(|s| child(s, "AdditionalProperties"))
        .is_some_and(|a| a.children.iter().any(|c| c.name == "ExtendedFieldURI"));
    let ids: Vec<String> = child(req, "ItemIds")
        .map(|l| {
            l.children
                .iter()
                .filter_map(|i| i.attr("Id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    rec.count = ids.len();
    let messages = ids
        .iter()
        .map(|id| match g.contacts.get(id) {
            Some(c) => message("GetItem", "Success", "NoError")
                .with_child(m("Items").with_child(g.render_contact(id, c, with_ext))),
            None => message("GetItem", "Error", "ErrorItemNotFound").with_child(m("Items")),
        })
        .collect();
    answer("GetItem", messages)
}

fn attachment_ids(req: &Element) -> Vec<String> {
    child(req, "AttachmentIds")
        .map(|l| {
            l.children
                .iter()
                .filter_map(|i| i.attr("Id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// GetAttachment (MS-OXWSATT §3.1.4.3): one message per id, the file with base64 `Content`.
fn get_attachment(g: &mut Inner, req: &Element) -> Answer {
    let messages = attachment_ids(req)
        .iter()
        .map(|att| {
            let file = g.owner_of(att).and_then(|id| g.contacts[&id].photo.clone());
            match file {
                Some((att, ct, bytes)) => message("GetAttachment", "Success", "NoError")
                    .with_child(
                        m("Attachments").with_child(
                            t("FileAttachment")
                                .with_child(t("AttachmentId").with_attr("Id", att))
                                .with_child(t("Name").with_text("ContactPicture.jpg"))
                                .with_child(t("ContentType").with_text(ct))
                                .with_child(t("Size").with_text(bytes.len().to_string()))
                                .with_child(t("IsInline").with_text("false"))
                                .with_child(t("IsContactPhoto").with_text("true"))
                                .with_child(t("Content").with_text(
                                    base64::engine::general_purpose::STANDARD.encode(&bytes),
                                )),
                        ),
                    ),
                None => message("GetAttachment", "Error", "ErrorItemNotFound")
                    .with_child(m("Attachments")),
            }
        })
        .collect();
    answer("GetAttachment", messages)
}

/// CreateAttachment (MS-OXWSATT §3.1.4.1) of a contact photo: the FileAttachment must carry
/// `IsContactPhoto` true, an image `ContentType` and base64 `Content`; it replaces the item's
/// photo and gives the item a new ChangeKey, answered as `RootItemChangeKey`.
fn create_attachment(g: &mut Inner, req: &Element) -> Answer {
    let parent = child(req, "ParentItemId");
    let Some(id) = parent.and_then(|p| p.attr("Id")).map(str::to_string) else {
        return answer(
            "CreateAttachment",
            vec![message("CreateAttachment", "Error", "ErrorInvalidRequest")],
        );
    };
    let Some(c) = g.contacts.get(&id) else {
        return answer(
            "CreateAttachment",
            vec![message("CreateAttachment", "Error", "ErrorItemNotFound")],
        );
    };
    if parent
        .and_then(|p| p.attr("ChangeKey"))
        .is_some_and(|ck| ck != c.change_key)
    {
        return answer(
            "CreateAttachment",
            vec![message("CreateAttachment", "Error", "ErrorStaleObject")],
        );
    }
    let file = child(req, "Attachments").and_then(|a| child(a, "FileAttachment"));
    let text = |local: &str| {
        file.and_then(|f| child(f, local))
            .map(|e| e.text.trim().to_string())
    };
    let content = text("Content")
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .filter(|b| !b.is_empty());
    let ct = text("ContentType").unwrap_or_default();
    let (Some(bytes), true, true) = (
        content,
        text("IsContactPhoto").as_deref() == Some("true"),
        ct.starts_with("image/"),
    ) else {
        return answer(
            "CreateAttachment",
            vec![message("CreateAttachment", "Error", "ErrorInvalidRequest")],
        );
    };
    let ck = g.set_photo(&id, Some((ct, bytes))).unwrap();
    let att = g.contacts[&id].photo.as_ref().unwrap().0.clone();
    answer(
        "CreateAttachment",
        vec![
            message("CreateAttachment", "Success", "NoError").with_child(
                m("Attachments").with_child(
                    t("FileAttachment").with_child(
                        t("AttachmentId")
                            .with_attr("Id", att)
                            .with_attr("RootItemId", id)
                            .with_attr("RootItemChangeKey", ck),
                    ),
                ),
            ),
        ],
    )
}

/// DeleteAttachment (MS-OXWSATT §3.1.4.2): answers the item's new ChangeKey in `RootItemId`.
fn delete_attachment(g: &mut Inner, req: &Element) -> Answer {
    let messages = attachment_ids(req)
        .iter()
        .map(|att| match g.owner_of(att) {
            Some(id) => {
                let ck = g.set_photo(&id, None).unwrap();
                message("DeleteAttachment", "Success", "NoError").with_child(
                    m("RootItemId")
                        .with_attr("RootItemId", id)
                        .with_attr("RootItemChangeKey", ck),
                )
            }
            None => message("DeleteAttachment", "Error", "ErrorItemNotFound"),
        })
        .collect();
    answer("DeleteAttachment", messages)
}

fn written_message(op: &str, id: &str, ck: &str) -> Element {
    message(op, "Success", "NoError").with_child(m("Items").with_child(
        t("Contact").with_child(t("ItemId").with_attr("Id", id).with_attr("ChangeKey", ck)),
    ))
}

fn create_item(g: &mut Inner, req: &Element) -> Answer {
    let Some(folder) = child(req, "SavedItemFolderId").and_then(|r| g.folder_id(r)) else {
        return answer(
            "CreateItem",
            vec![message("CreateItem", "Error", "ErrorFolderNotFound")],
        );
    };
    let Some(contact) = child(req, "Items").and_then(|i| i.children.first()) else {
        return answer(
            "CreateItem",
            vec![message("CreateItem", "Error", "ErrorInvalidRequest")],
        );
    };
    if !is_t(contact, "Contact") {
        return answer(
            "CreateItem",
            vec![message("CreateItem", "Error", "ErrorInvalidRequest")],
        );
    }
    if let Some(err) = check_limits(&contact.children) {
        return answer("CreateItem", vec![message("CreateItem", "Error", err)]);
    }
    let id = g.create(&folder, contact.children.clone());
    let ck = g.contacts[&id].change_key.clone();
    answer("CreateItem", vec![written_message("CreateItem", &id, &ck)])
}

/// Dictionary keys EWS accepts (MS-OXWSCONT); anything else is a schema error.
fn check_limits(props: &[Element]) -> Option<&'static str> {
    for p in props {
        let allowed: &[&str] = match p.name.as_str() {
            "EmailAddresses" => &["EmailAddress1", "EmailAddress2", "EmailAddress3"],
            "ImAddresses" => &["ImAddress1", "ImAddress2", "ImAddress3"],
            "PhysicalAddresses" => &["Business", "Home", "Other"],
            _ => continue,
        };
        if p.children
            .iter()
            .any(|e| !e.attr("Key").is_some_and(|k| allowed.contains(&k)))
        {
            return Some("ErrorSchemaValidation");
        }
    }
    None
}

/// The dictionary element an indexed FieldURI lives in, and the sub-element for addresses.
fn indexed_target(uri: &str) -> Option<(&'static str, Option<&str>)> {
    match uri {
        "contacts:EmailAddress" => Some(("EmailAddresses", None)),
        "contacts:PhoneNumber" => Some(("PhoneNumbers", None)),
        "contacts:ImAddress" => Some(("ImAddresses", None)),
        u => u
            .strip_prefix("contacts:PhysicalAddress:")
            .map(|sub| ("PhysicalAddresses", Some(sub))),
    }
}

fn apply_update(c: &mut Stored, upd: &Element) -> Result<(), &'static str> {
    let path = upd.children.first().ok_or("ErrorInvalidRequest")?;
    let uri = path.attr("FieldURI").ok_or("ErrorInvalidRequest")?;
    let set = upd.name == "SetItemField";
    let value = if set {
        let contact = upd.children.get(1).ok_or("ErrorInvalidRequest")?;
        Some(
            contact
                .children
                .first()
                .ok_or("ErrorInvalidRequest")?
                .clone(),
        )
    } else {
        None
    };
    if path.name == "FieldURI" {
        let local = uri.rsplit(':').next().unwrap_or_default();
        if let Some(v) = &value {
            if v.name != local {
                return Err("ErrorInvalidRequest");
            }
        }
        c.props.retain(|p| p.name != local);
        if let Some(v) = value {
            c.props.push(v);
        }
        return Ok(());
    }
    if path.name != "IndexedFieldURI" {
        return Err("ErrorInvalidRequest");
    }
    let index = path.attr("FieldIndex").ok_or("ErrorInvalidRequest")?;
    let (dict, sub) = indexed_target(uri).ok_or("ErrorInvalidRequest")?;
    let new_entry = match &value {
        Some(v) => {
            if v.name != dict || check_limits(std::slice::from_ref(v)).is_some() {
                return Err("ErrorSchemaValidation");
            }
            Some(
                v.children
                    .iter()
                    .find(|e| e.attr("Key") == Some(index))
                    .ok_or("ErrorInvalidRequest")?
                    .clone(),
            )
        }
        None => None,
    };
    if !c.props.iter().any(|p| p.name == dict) {
        c.props.push(t(dict));
    }
    let d = c
        .props
        .iter_mut()
        .find(|p| p.name == dict)
        .ok_or("ErrorInvalidRequest")?;
    match sub {
        None => {
            d.children.retain(|e| e.attr("Key") != Some(index));
            if let Some(e) = new_entry {
                d.children.push(e);
            }
        }
        Some(sub) => {
            if !d.children.iter().any(|e| e.attr("Key") == Some(index)) {
                d.children.push(t("Entry").with_attr("Key", index));
            }
            let entry = d
                .children
                .iter_mut()
                .find(|e| e.attr("Key") == Some(index))
                .ok_or("ErrorInvalidRequest")?;
            entry.children.retain(|s| s.name != sub);
            if let Some(e) = new_entry {
                entry
                    .children
                    .extend(e.children.into_iter().filter(|s| s.name == sub));
            }
            d.children.retain(|e| !e.children.is_empty());
        }
    }
    c.props
        .retain(|p| !(p.name == dict && p.children.is_empty()));
    Ok(())
}

fn update_item(g: &mut Inner, req: &Element, rec: &mut Recorded) -> Answer {
    let resolution = req
        .attr("ConflictResolution")
        .unwrap_or("AutoResolve")
        .to_string();
    rec.conflict_resolution = Some(resolution.clone());
    let Some(change) = child(req, "ItemChanges").and_then(|c| c.children.first()) else {
        return answer(
            "UpdateItem",
            vec![message("UpdateItem", "Error", "ErrorInvalidRequest")],
        );
    };
    let Some(item_id) = child(change, "ItemId") else {
        return answer(
            "UpdateItem",
            vec![message("UpdateItem", "Error", "ErrorInvalidRequest")],
        );
    };
    let id = item_id.attr("Id").unwrap_or_default().to_string();
    if g.race_next_update
        .as_ref()
        .is_some_and(|(rid, _, _)| *rid == id)
    {
        if let Some((_, local, value)) = g.race_next_update.take() {
            let seq = g.bump();
            if let Some(c) = g.contacts.get_mut(&id) {
                c.props.retain(|p| p.name != local);
                c.props.push(t(&local).with_text(value));
                c.change_key = format!("EQAAABYAAACy8FYL{seq:010}");
                c.seq = seq;
            }
        }
    }
    let Some(current) = g.contacts.get(&id) else {
        return answer(
            "UpdateItem",
            vec![message("UpdateItem", "Error", "ErrorItemNotFound")],
        );
    };
    if resolution != "AlwaysOverwrite" {
        match item_id.attr("ChangeKey") {
            None => {
                return answer(
                    "UpdateItem",
                    vec![message(
                        "UpdateItem",
                        "Error",
                        "ErrorChangeKeyRequiredForWriteOperations",
                    )],
                )
            }
            Some(ck) if ck != current.change_key => {
                rec.code = Some("ErrorIrresolvableConflict".into());
                return (StatusCode::OK, vec![], FIX_CONFLICT.to_string());
            }
            Some(_) => {}
        }
    }
    let mut updated = current.clone();
    for upd in child(change, "Updates")
        .map(|u| u.children.clone())
        .unwrap_or_default()
    {
        if let Err(code) = apply_update(&mut updated, &upd) {
            return answer("UpdateItem", vec![message("UpdateItem", "Error", code)]);
        }
    }
    let seq = g.bump();
    updated.change_key = format!("EQAAABYAAACy8FYL{seq:010}");
    updated.seq = seq;
    let ck = updated.change_key.clone();
    g.contacts.insert(id.clone(), updated);
    answer("UpdateItem", vec![written_message("UpdateItem", &id, &ck)])
}

fn delete_item(g: &mut Inner, req: &Element) -> Answer {
    let ids: Vec<String> = child(req, "ItemIds")
        .map(|l| {
            l.children
                .iter()
                .filter_map(|i| i.attr("Id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let messages = ids
        .iter()
        .map(|id| {
            if g.contacts.remove(id).is_some() {
                message("DeleteItem", "Success", "NoError")
            } else {
                message("DeleteItem", "Error", "ErrorItemNotFound")
            }
        })
        .collect();
    answer("DeleteItem", messages)
}
