//! The CardDAV HTTP handlers: one dispatcher on `req.method().as_str()` (axum's method filter
//! does not know PROPFIND/REPORT/MKCOL/PROPPATCH), authentication, then one function per
//! method. XML is parsed and rendered by [`crate::dav`]; access goes through
//! [`crate::crm::access`] only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::data::{self, DataError, Pos, StoredCard, Token, PERSONS_COLL, PERSONS_SLUG};
use super::paths::{self, Resource};
use super::{ALLOW, DAV_CLASSES};
use crate::crm::mapping::{card_to_fields, fields_to_card};
use crate::crm::visibility::allowed_visibilities;
use crate::crm::{access, Acl, CrmError, Person, PersonId, User};
use crate::dav::address_data::{AddressDataRequest, ReportProps};
use crate::dav::error::{DavError, Precondition};
use crate::dav::mkcol::Mkcol;
use crate::dav::multiget::AddressbookMultiget;
use crate::dav::multistatus::{Multistatus, Response as DavResponse};
use crate::dav::names::{self, QName};
use crate::dav::prop;
use crate::dav::propfind::{Depth, Propfind};
use crate::dav::proppatch::{Instruction, Proppatch};
use crate::dav::query::{truncation_marker, AddressbookQuery};
use crate::dav::sync_collection::{invalid_token_error, render_response, SyncCollection};
use crate::dav::xml::Element;
use crate::server::auth::{self, AuthError};
use crate::server::AppState;
use crate::store::{Batch, StoreError};
use crate::vcard::{self, VCardEntry, VCardProperty, VCardValue, VCardVersion};

/// Largest XML request body accepted (PROPFIND, REPORT, PROPPATCH, MKCOL).
const MAX_XML_BODY: usize = 10 * 1024 * 1024;
/// RFC 6352 §5.1 content type of cards we serve.
const VCARD_CONTENT_TYPE: &str = "text/vcard; charset=utf-8";
/// RFC 6350 §10.1 `text/vcard` with its `version` parameter, for a vCard 3.0 body.
const VCARD_CONTENT_TYPE_V3: &str = "text/vcard; charset=utf-8; version=3.0";
/// Likewise for a vCard 4.0 body.
const VCARD_CONTENT_TYPE_V4: &str = "text/vcard; charset=utf-8; version=4.0";
/// The display name of the built-in collection.
const PERSONS_DISPLAYNAME: &str = "CRM persons";

type HandlerResult = Result<Response, DavError>;

/// A vCard representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    V3,
    V4,
}

impl V {
    fn as_str(self) -> &'static str {
        match self {
            V::V3 => names::VCARD_VERSION_3,
            V::V4 => names::VCARD_VERSION_4,
        }
    }
    fn parse(s: &str) -> Option<V> {
        match s.trim() {
            names::VCARD_VERSION_3 => Some(V::V3),
            names::VCARD_VERSION_4 => Some(V::V4),
            _ => None,
        }
    }
    fn tag(self) -> &'static str {
        match self {
            V::V3 => "v3",
            V::V4 => "v4",
        }
    }
}

fn internal(e: impl std::fmt::Display) -> DavError {
    DavError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl From<DataError> for DavError {
    fn from(e: DataError) -> Self {
        internal(e)
    }
}

impl From<CrmError> for DavError {
    fn from(e: CrmError) -> Self {
        match e {
            CrmError::VersionConflict { .. } => {
                DavError::new(StatusCode::PRECONDITION_FAILED, e.to_string())
            }
            CrmError::Visibility(_) => DavError::new(StatusCode::FORBIDDEN, e.to_string()),
            other => internal(other),
        }
    }
}

fn not_found() -> DavError {
    DavError::new(StatusCode::NOT_FOUND, "not found")
}

fn to_axum(resp: http::Response<String>) -> Response {
    resp.map(Body::from)
}

fn error_response(e: DavError) -> Response {
    if e.status.is_server_error() {
        tracing::warn!(error = %e, "CardDAV request failed");
    }
    to_axum(e.to_response())
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// The one entry point: routes by path and method.
pub async fn dispatch(State(st): State<AppState>, req: Request) -> Response {
    match handle(st, req).await {
        Ok(r) => r,
        Err(e) => error_response(e),
    }
}

async fn handle(st: AppState, req: Request) -> HandlerResult {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(resource) = paths::parse(&path) else {
        return Err(not_found());
    };
    if method == Method::OPTIONS {
        let mut r = empty(StatusCode::OK);
        r.headers_mut()
            .insert(names::HEADER_DAV, HeaderValue::from_static(DAV_CLASSES));
        r.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static(ALLOW));
        return Ok(r);
    }
    if resource == Resource::WellKnown {
        let mut r = empty(StatusCode::MOVED_PERMANENTLY);
        r.headers_mut().insert(
            http::header::LOCATION,
            HeaderValue::from_static(paths::DAV_ROOT),
        );
        return Ok(r);
    }
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user = match st.auth.authenticate(&st.crm, req.headers(), addr).await {
        Ok(u) => u,
        Err(AuthError::Crm(e)) => return Err(internal(e)),
        Err(AuthError::Locked(left)) => {
            let mut r = empty(StatusCode::TOO_MANY_REQUESTS);
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(auth::retry_after_secs(left)),
            );
            return Ok(r);
        }
        Err(_) => {
            let mut r = empty(StatusCode::UNAUTHORIZED);
            r.headers_mut()
                .insert(auth::HEADER_WWW_AUTHENTICATE, auth::challenge());
            return Ok(r);
        }
    };
    // Only one's own principal and home exist for a user.
    let owner = match &resource {
        Resource::Principal(u) | Resource::Home(u) => Some(u),
        Resource::Collection(u, _) | Resource::Card(u, _, _) => Some(u),
        _ => None,
    };
    if owner.is_some_and(|u| *u != user.login) {
        return Err(not_found());
    }
    let (parts, body) = req.into_parts();
    let cx = Cx {
        st: &st,
        user,
        headers: &parts.headers,
    };
    let limit = if method == Method::PUT {
        st.config.max_resource_size.saturating_add(1)
    } else {
        MAX_XML_BODY
    };
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        if method == Method::PUT {
            max_size_error()
        } else {
            DavError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
    })?;
    match (method.as_str(), &resource) {
        (names::METHOD_PROPFIND, _) => cx.propfind(&resource, &body).await,
        (names::METHOD_REPORT, Resource::Collection(_, c)) => cx.report(c, &body).await,
        (names::METHOD_PROPPATCH, Resource::Collection(_, c)) => cx.proppatch(c, &body).await,
        (names::METHOD_MKCOL, Resource::Collection(_, c)) => cx.mkcol(c, &body).await,
        ("GET" | "HEAD", Resource::Card(_, c, n)) => cx.get(c, n, method == Method::HEAD).await,
        ("PUT", Resource::Card(_, c, n)) => cx.put(c, n, &body).await,
        ("DELETE", Resource::Card(_, c, n)) => cx.delete(c, n).await,
        ("DELETE", Resource::Collection(_, c)) => cx.delete_collection(c).await,
        ("GET" | "HEAD", _) => {
            // Collections have no body; answer something harmless for browsers.
            let mut r = Response::new(Body::from("cardbridge CardDAV\n"));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(r)
        }
        _ => {
            let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(ALLOW));
            Ok(r)
        }
    }
}

fn max_size_error() -> DavError {
    DavError::with_precondition(
        StatusCode::FORBIDDEN,
        Precondition::MaxResourceSize,
        "card larger than max-resource-size",
    )
}

fn invalid_data(msg: impl Into<String>) -> DavError {
    DavError::with_precondition(StatusCode::FORBIDDEN, Precondition::ValidAddressData, msg)
}

/// A person as one user may see it in one collection.
struct Found {
    person: Person,
    edit: bool,
}

/// One request's context.
struct Cx<'a> {
    st: &'a AppState,
    user: User,
    headers: &'a HeaderMap,
}

/// The default-representation ETag of a person version.
fn etag(pid: PersonId, version: u64) -> String {
    format!("\"{pid}-{version}\"")
}

/// One page of a sync-collection answer, before rendering.
struct SyncPage {
    /// Present members (person, version), in answer order.
    changed: Vec<(PersonId, u64)>,
    /// Removed (or no longer visible) members.
    removed: Vec<PersonId>,
    /// Whether the page stops short of the end (RFC 6578 §3.6).
    truncated: bool,
    /// The token of the answer.
    token: String,
    /// An initial listing (every member) rather than the changes after a token.
    listing: bool,
}

/// A rendered card.
struct Rendered {
    text: String,
    etag: String,
    /// The vCard version of `text`.
    version: V,
}

impl<'a> Cx<'a> {
    fn data(&self) -> &data::Data {
        &self.st.dav
    }

    fn login(&self) -> &str {
        &self.user.login
    }

    /// The collection id for a path segment, or 404.
    async fn coll_id(&self, slug: &str) -> Result<u64, DavError> {
        if slug == PERSONS_SLUG {
            return Ok(PERSONS_COLL);
        }
        self.data()
            .collection(self.user.id, slug)
            .await?
            .map(|c| c.id)
            .ok_or_else(not_found)
    }

    /// Resolves a card name in a collection to a person this user may see, else `None`
    /// (unknown, deleted and invisible persons are indistinguishable).
    async fn resolve(&self, coll: u64, name: &str) -> Result<Option<Found>, DavError> {
        let d = self.data();
        let pid = match d.name_target(self.user.id, coll, name).await? {
            Some(p) => p,
            None => match data::parse_default_name(name) {
                Some(p) if d.chosen_name(self.user.id, coll, p).await?.is_none() => p,
                _ => return Ok(None),
            },
        };
        let Some(person) = self.st.crm.get_person(pid).await? else {
            return Ok(None);
        };
        let ctx = self.st.crm.access_context().await?;
        let a = access(&self.user, &person.acl(), &ctx);
        if !a.view {
            return Ok(None);
        }
        if coll != PERSONS_COLL && !d.person_colls(self.user.id, pid).await?.contains(&coll) {
            return Ok(None);
        }
        Ok(Some(Found {
            person,
            edit: a.edit,
        }))
    }

    /// Renders a person in `want` (default: the stored card's version, else 4.0).
    fn render(&self, p: &Person, stored: Option<&StoredCard>, want: Option<V>) -> Rendered {
        let default_v = stored.and_then(|s| V::parse(&s.version)).unwrap_or(V::V4);
        let v = want.unwrap_or(default_v);
        let tag = if v == default_v {
            etag(p.id, p.version)
        } else {
            format!("\"{}-{}-{}\"", p.id, p.version, v.tag())
        };
        if let Some(s) = stored {
            if s.fields == p.fields() && v == default_v {
                return Rendered {
                    text: s.text.clone(),
                    etag: tag,
                    version: v,
                };
            }
        }
        let base = stored.and_then(|s| vcard::read_normalized(&s.text).cards.into_iter().next());
        let mut card = fields_to_card(&p.fields(), base.as_ref(), &self.st.config.mapping);
        if vcard::uid(&card).is_none() {
            let uid = stored
                .map(|s| s.uid.clone())
                .unwrap_or_else(|| format!("cardbridge-person-{}", p.id));
            card.entries
                .push(VCardEntry::new(VCardProperty::Uid).with_value(uid));
        }
        let text = match v {
            V::V3 => vcard::write_v3(&card),
            V::V4 => vcard::write_v4(&card),
        };
        Rendered {
            text,
            etag: tag,
            version: v,
        }
    }

    async fn render_person(&self, p: &Person, want: Option<V>) -> Result<Rendered, DavError> {
        let Some(head) = self.data().card_head(p.id).await? else {
            return Ok(self.render(p, None, want));
        };
        // Still at the version the PUT left: its fields are the stored ones, so the text is
        // served as the client sent it (what `render` decides by comparing the fields).
        let default_v = V::parse(&head.version).unwrap_or(V::V4);
        if head.person_version == Some(p.version) && want.is_none_or(|v| v == default_v) {
            return Ok(Rendered {
                text: head.text,
                etag: etag(p.id, p.version),
                version: default_v,
            });
        }
        let stored = self.data().card(p.id).await?;
        Ok(self.render(p, stored.as_ref(), want))
    }

    /// Every ETag a person's representations carry (for If-Match).
    async fn all_etags(&self, p: &Person) -> Result<Vec<String>, DavError> {
        let stored = self.data().card(p.id).await?;
        Ok([None, Some(V::V3), Some(V::V4)]
            .into_iter()
            .map(|v| self.render_tag(p, stored.as_ref(), v))
            .collect())
    }

    fn render_tag(&self, p: &Person, stored: Option<&StoredCard>, want: Option<V>) -> String {
        let default_v = stored.and_then(|s| V::parse(&s.version)).unwrap_or(V::V4);
        match want {
            Some(v) if v != default_v => format!("\"{}-{}-{}\"", p.id, p.version, v.tag()),
            _ => etag(p.id, p.version),
        }
    }

    // ------------------------------------------------------------------ PROPFIND

    async fn propfind(&self, resource: &Resource, body: &[u8]) -> HandlerResult {
        let pf = Propfind::parse_request(self.headers.get(names::HEADER_DEPTH), body)?;
        let mut ms = Multistatus::default();
        match resource {
            Resource::Root | Resource::WellKnown => {
                let all = [
                    names::RESOURCETYPE,
                    names::CURRENT_USER_PRINCIPAL,
                    names::DISPLAYNAME,
                ];
                ms.responses.push(pf.respond(paths::DAV_ROOT, &all, |n| {
                    self.common_prop(n).or_else(|| {
                        if *n == names::RESOURCETYPE {
                            Some(prop::ResourceType::collection().to_element())
                        } else if *n == names::DISPLAYNAME {
                            Some(prop::text(&names::DISPLAYNAME, "cardbridge"))
                        } else {
                            None
                        }
                    })
                }));
            }
            Resource::Principal(_) => {
                ms.responses.push(self.principal_response(&pf));
            }
            Resource::Home(_) => {
                ms.responses.push(self.home_response(&pf));
                if pf.depth != Depth::Zero {
                    let state = self.data().catch_up(&self.user).await?;
                    for c in self.data().collections(self.user.id).await? {
                        ms.responses.push(self.collection_response(&pf, &c, &state));
                    }
                }
            }
            Resource::Collection(_, slug) => {
                let coll = self.coll_id(slug).await?;
                let state = self.data().catch_up(&self.user).await?;
                let c = self
                    .data()
                    .collections(self.user.id)
                    .await?
                    .into_iter()
                    .find(|c| c.id == coll)
                    .ok_or_else(not_found)?;
                ms.responses.push(self.collection_response(&pf, &c, &state));
                if pf.depth != Depth::Zero {
                    let members = self.data().members(self.user.id, coll).await?;
                    let names_map = self.data().names_in(self.user.id, coll).await?;
                    ms.responses.reserve(members.len());
                    for (pid, ver) in members {
                        let name = names_map
                            .get(&pid)
                            .cloned()
                            .unwrap_or_else(|| data::default_name(pid));
                        let href = paths::card(self.login(), slug, &name);
                        let tag = etag(pid, ver);
                        ms.responses.push(
                            pf.respond(&href, &card_allprop(), |n| self.card_prop(n, &tag, true)),
                        );
                    }
                }
            }
            Resource::Card(_, slug, name) => {
                let coll = self.coll_id(slug).await?;
                let found = self.resolve(coll, name).await?.ok_or_else(not_found)?;
                let stored = self.data().card(found.person.id).await?;
                let tag = self.render_tag(&found.person, stored.as_ref(), None);
                let href = paths::card(self.login(), slug, name);
                ms.responses.push(pf.respond(&href, &card_allprop(), |n| {
                    self.card_prop(n, &tag, found.edit)
                }));
            }
        }
        Ok(to_axum(ms.to_response()))
    }

    /// Properties every resource answers.
    fn common_prop(&self, n: &QName) -> Option<Element> {
        if *n == names::CURRENT_USER_PRINCIPAL {
            Some(prop::hrefs_prop(
                &names::CURRENT_USER_PRINCIPAL,
                &[&paths::principal(self.login())],
            ))
        } else {
            None
        }
    }

    fn principal_response(&self, pf: &Propfind) -> DavResponse {
        let all = [
            names::RESOURCETYPE,
            names::DISPLAYNAME,
            names::CURRENT_USER_PRINCIPAL,
            names::PRINCIPAL_URL,
            names::ADDRESSBOOK_HOME_SET,
            names::CURRENT_USER_PRIVILEGE_SET,
        ];
        let me = paths::principal(self.login());
        let home = paths::home(self.login());
        pf.respond(&me, &all, |n| {
            if let Some(e) = self.common_prop(n) {
                return Some(e);
            }
            if *n == names::RESOURCETYPE {
                Some(
                    prop::ResourceType {
                        collection: true,
                        principal: true,
                        ..Default::default()
                    }
                    .to_element(),
                )
            } else if *n == names::DISPLAYNAME {
                Some(prop::text(&names::DISPLAYNAME, self.user.name.clone()))
            } else if *n == names::PRINCIPAL_URL {
                Some(prop::hrefs_prop(&names::PRINCIPAL_URL, &[&me]))
            } else if *n == names::ADDRESSBOOK_HOME_SET {
                Some(prop::hrefs_prop(&names::ADDRESSBOOK_HOME_SET, &[&home]))
            } else if *n == names::CURRENT_USER_PRIVILEGE_SET {
                Some(prop::privilege_set(&[
                    names::READ,
                    names::READ_CURRENT_USER_PRIVILEGE_SET,
                ]))
            } else {
                None
            }
        })
    }

    fn home_response(&self, pf: &Propfind) -> DavResponse {
        let all = [
            names::RESOURCETYPE,
            names::DISPLAYNAME,
            names::CURRENT_USER_PRINCIPAL,
            names::ADDRESSBOOK_HOME_SET,
            names::CURRENT_USER_PRIVILEGE_SET,
        ];
        let home = paths::home(self.login());
        pf.respond(&home, &all, |n| {
            if let Some(e) = self.common_prop(n) {
                return Some(e);
            }
            if *n == names::RESOURCETYPE {
                Some(prop::ResourceType::collection().to_element())
            } else if *n == names::DISPLAYNAME {
                Some(prop::text(&names::DISPLAYNAME, self.user.name.clone()))
            } else if *n == names::ADDRESSBOOK_HOME_SET {
                Some(prop::hrefs_prop(&names::ADDRESSBOOK_HOME_SET, &[&home]))
            } else if *n == names::CURRENT_USER_PRIVILEGE_SET {
                Some(prop::privilege_set(&[
                    names::READ,
                    names::BIND,
                    names::UNBIND,
                    names::READ_CURRENT_USER_PRIVILEGE_SET,
                ]))
            } else {
                None
            }
        })
    }

    fn collection_response(
        &self,
        pf: &Propfind,
        c: &data::Collection,
        state: &data::ViewState,
    ) -> DavResponse {
        let all = [
            names::RESOURCETYPE,
            names::DISPLAYNAME,
            names::CURRENT_USER_PRINCIPAL,
            names::GETCTAG,
            names::SYNC_TOKEN,
            names::SUPPORTED_ADDRESS_DATA,
            names::MAX_RESOURCE_SIZE,
            names::CURRENT_USER_PRIVILEGE_SET,
            names::SUPPORTED_REPORT_SET,
        ];
        let href = paths::collection(self.login(), &c.slug);
        let ctag = state
            .ctags
            .get(&c.id)
            .copied()
            .unwrap_or(Pos {
                seq: state.caught_up,
                pid: u64::MAX,
            })
            .token();
        let dead: HashMap<QName, &String> = c
            .props
            .iter()
            .filter_map(|(k, v)| Some((clark_to_qname(k)?, v)))
            .collect();
        let mut all: Vec<QName> = all.to_vec();
        for k in dead.keys() {
            if !all.contains(k) {
                all.push(k.clone());
            }
        }
        pf.respond(&href, &all, |n| {
            if let Some(e) = self.common_prop(n) {
                return Some(e);
            }
            if let Some(v) = dead.get(n) {
                return Some(prop::text(n, (*v).clone()));
            }
            if *n == names::RESOURCETYPE {
                Some(prop::ResourceType::addressbook().to_element())
            } else if *n == names::DISPLAYNAME {
                Some(prop::text(
                    &names::DISPLAYNAME,
                    if c.id == PERSONS_COLL {
                        PERSONS_DISPLAYNAME.to_string()
                    } else {
                        c.slug.clone()
                    },
                ))
            } else if *n == names::GETCTAG || *n == names::SYNC_TOKEN {
                Some(prop::text(n, ctag.clone()))
            } else if *n == names::SUPPORTED_ADDRESS_DATA {
                Some(prop::supported_address_data(&[
                    prop::AddressDataType::vcard(names::VCARD_VERSION_4),
                    prop::AddressDataType::vcard(names::VCARD_VERSION_3),
                ]))
            } else if *n == names::MAX_RESOURCE_SIZE {
                Some(prop::text(
                    &names::MAX_RESOURCE_SIZE,
                    self.st.config.max_resource_size.to_string(),
                ))
            } else if *n == names::CURRENT_USER_PRIVILEGE_SET {
                Some(prop::privilege_set(&[
                    names::READ,
                    names::WRITE,
                    names::WRITE_CONTENT,
                    names::WRITE_PROPERTIES,
                    names::BIND,
                    names::UNBIND,
                    names::READ_CURRENT_USER_PRIVILEGE_SET,
                ]))
            } else if *n == names::SUPPORTED_REPORT_SET {
                Some(prop::supported_report_set(&[
                    names::ADDRESSBOOK_MULTIGET,
                    names::ADDRESSBOOK_QUERY,
                    names::SYNC_COLLECTION,
                ]))
            } else {
                None
            }
        })
    }

    fn card_prop(&self, n: &QName, tag: &str, edit: bool) -> Option<Element> {
        if let Some(e) = self.common_prop(n) {
            return Some(e);
        }
        if *n == names::GETETAG {
            Some(prop::text(&names::GETETAG, tag))
        } else if *n == names::GETCONTENTTYPE {
            Some(prop::text(&names::GETCONTENTTYPE, VCARD_CONTENT_TYPE))
        } else if *n == names::RESOURCETYPE {
            Some(Element::new(&names::RESOURCETYPE))
        } else if *n == names::CURRENT_USER_PRIVILEGE_SET {
            let mut p = vec![names::READ, names::READ_CURRENT_USER_PRIVILEGE_SET];
            if edit {
                p.extend([names::WRITE, names::WRITE_CONTENT, names::UNBIND]);
            }
            Some(prop::privilege_set(&p))
        } else {
            None
        }
    }

    // ------------------------------------------------------------------ PROPPATCH, MKCOL

    async fn proppatch(&self, slug: &str, body: &[u8]) -> HandlerResult {
        let coll = self.coll_id(slug).await?;
        let pp = Proppatch::parse_request(body)?;
        let mut c = self
            .data()
            .collections(self.user.id)
            .await?
            .into_iter()
            .find(|c| c.id == coll)
            .ok_or_else(not_found)?;
        let mut outcomes = Vec::new();
        for i in &pp.instructions {
            let name = match i {
                Instruction::Set(el) => el.qname(),
                Instruction::Remove(n) => n.clone(),
            };
            if is_live(&name) {
                outcomes.push(StatusCode::FORBIDDEN);
                continue;
            }
            match i {
                Instruction::Set(el) => {
                    c.props.insert(name.to_string(), el.text.clone());
                }
                Instruction::Remove(_) => {
                    c.props.remove(&name.to_string());
                }
            }
            outcomes.push(StatusCode::OK);
        }
        if outcomes.iter().all(|s| s.is_success()) {
            self.data().put_collection(self.user.id, &c).await?;
        }
        let href = paths::collection(self.login(), slug);
        let ms = Multistatus {
            responses: vec![pp.respond(&href, &outcomes)],
            ..Default::default()
        };
        Ok(to_axum(ms.to_response()))
    }

    async fn mkcol(&self, slug: &str, body: &[u8]) -> HandlerResult {
        if slug == PERSONS_SLUG || self.data().collection(self.user.id, slug).await?.is_some() {
            let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(ALLOW));
            return Ok(r);
        }
        let mk = Mkcol::parse_request(body)?;
        if !(mk.resourcetype.collection
            && mk.resourcetype.addressbook
            && mk.resourcetype.other.is_empty())
            || mk.resourcetype.principal
        {
            return Err(Mkcol::refuse_resourcetype());
        }
        let mut props = BTreeMap::new();
        for p in &mk.props {
            if is_live(&p.qname()) {
                continue;
            }
            props.insert(p.qname().to_string(), p.text.clone());
        }
        self.data()
            .create_collection(&self.user, slug, props)
            .await?;
        let mut r = empty(StatusCode::CREATED);
        if let Ok(v) = HeaderValue::from_str(&paths::collection(self.login(), slug)) {
            r.headers_mut().insert(http::header::LOCATION, v);
        }
        Ok(r)
    }

    async fn delete_collection(&self, slug: &str) -> HandlerResult {
        let coll = self.coll_id(slug).await?;
        if coll == PERSONS_COLL {
            return Err(DavError::with_precondition(
                StatusCode::FORBIDDEN,
                Precondition::NeedPrivileges,
                "the persons collection cannot be deleted",
            ));
        }
        check_if_match(self.headers, None)?;
        self.data().delete_collection(self.user.id, coll).await?;
        Ok(empty(StatusCode::NO_CONTENT))
    }

    // ------------------------------------------------------------------ REPORT

    async fn report(&self, slug: &str, body: &[u8]) -> HandlerResult {
        let coll = self.coll_id(slug).await?;
        let root = crate::dav::xml::parse(body)?;
        if root.is(&names::SYNC_COLLECTION) {
            self.sync_collection(slug, coll, body).await
        } else if root.is(&names::ADDRESSBOOK_MULTIGET) {
            self.multiget(slug, coll, body).await
        } else if root.is(&names::ADDRESSBOOK_QUERY) {
            self.query(slug, coll, body).await
        } else {
            Err(DavError::with_precondition(
                StatusCode::FORBIDDEN,
                Precondition::Other(Box::new(Element::new(&names::SUPPORTED_REPORT))),
                format!("unsupported report {}", root.clark()),
            ))
        }
    }

    fn want_version(ad: Option<&AddressDataRequest>) -> Result<Option<V>, DavError> {
        let Some(ad) = ad else { return Ok(None) };
        if let Some(ct) = &ad.content_type {
            if !ct.trim().eq_ignore_ascii_case(names::CONTENT_TYPE_VCARD) {
                return Err(DavError::with_precondition(
                    StatusCode::FORBIDDEN,
                    Precondition::SupportedAddressData,
                    format!("unsupported address-data type {ct}"),
                ));
            }
        }
        match &ad.version {
            None => Ok(None),
            Some(v) => V::parse(v).map(Some).ok_or_else(|| {
                DavError::with_precondition(
                    StatusCode::FORBIDDEN,
                    Precondition::SupportedAddressData,
                    format!("unsupported vCard version {v}"),
                )
            }),
        }
    }

    async fn multiget(&self, slug: &str, coll: u64, body: &[u8]) -> HandlerResult {
        let mg = AddressbookMultiget::parse_request(body)?;
        let want = Self::want_version(mg.props.address_data.as_ref())?;
        let mut ms = Multistatus::default();
        ms.responses.reserve(mg.hrefs.len());
        let ctx = self.st.crm.access_context().await?;
        for href in &mg.hrefs {
            let name = match paths::parse(href) {
                Some(Resource::Card(u, c, n)) if u == self.user.login && c == slug => n,
                _ => {
                    ms.responses
                        .push(AddressbookMultiget::respond_missing(href));
                    continue;
                }
            };
            match self.resolve_with(coll, &name, &ctx).await? {
                Some(f) => {
                    let r = self.render_person(&f.person, want).await?;
                    ms.responses.push(
                        mg.respond_found(href, &r.text, |n| self.card_prop(n, &r.etag, f.edit)),
                    );
                }
                None => ms
                    .responses
                    .push(AddressbookMultiget::respond_missing(href)),
            }
        }
        Ok(to_axum(ms.to_response()))
    }

    /// [`Self::resolve`] with an access context already read (multiget loops).
    async fn resolve_with(
        &self,
        coll: u64,
        name: &str,
        ctx: &crate::crm::AccessContext,
    ) -> Result<Option<Found>, DavError> {
        let d = self.data();
        let pid = match d.name_target(self.user.id, coll, name).await? {
            Some(p) => p,
            None => match data::parse_default_name(name) {
                Some(p) if d.chosen_name(self.user.id, coll, p).await?.is_none() => p,
                _ => return Ok(None),
            },
        };
        let Some(person) = self.st.crm.get_person(pid).await? else {
            return Ok(None);
        };
        let a = access(&self.user, &person.acl(), ctx);
        if !a.view {
            return Ok(None);
        }
        if coll != PERSONS_COLL && !d.person_colls(self.user.id, pid).await?.contains(&coll) {
            return Ok(None);
        }
        Ok(Some(Found {
            person,
            edit: a.edit,
        }))
    }

    async fn query(&self, slug: &str, coll: u64, body: &[u8]) -> HandlerResult {
        let q = AddressbookQuery::parse_request(body)?;
        let want = Self::want_version(q.props.address_data.as_ref())?;
        self.data().catch_up(&self.user).await?;
        let members = self.data().members(self.user.id, coll).await?;
        let names_map = self.data().names_in(self.user.id, coll).await?;
        let ctx = self.st.crm.access_context().await?;
        let limit = q.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        let mut ms = Multistatus::default();
        let mut truncated = false;
        for pid in members.keys() {
            let Some(person) = self.st.crm.get_person(*pid).await? else {
                continue;
            };
            let a = access(&self.user, &person.acl(), &ctx);
            if !a.view {
                continue;
            }
            let r = self.render_person(&person, want).await?;
            if !q.filter.matches_vcard(&r.text) {
                continue;
            }
            if ms.responses.len() >= limit {
                truncated = true;
                break;
            }
            let name = names_map
                .get(pid)
                .cloned()
                .unwrap_or_else(|| data::default_name(*pid));
            let href = paths::card(self.login(), slug, &name);
            ms.responses.push(
                q.props
                    .respond(&href, &r.text, |n| self.card_prop(n, &r.etag, a.edit)),
            );
        }
        if truncated {
            ms.responses
                .push(truncation_marker(&paths::collection(self.login(), slug)));
        }
        Ok(to_axum(ms.to_response()))
    }

    async fn sync_collection(&self, slug: &str, coll: u64, body: &[u8]) -> HandlerResult {
        let sc = SyncCollection::parse_request(self.headers.get(names::HEADER_DEPTH), body)?;
        // Checked before anything else: an unsupported address-data type is the whole answer.
        let want = Self::want_version(sc.address_data.as_ref())?;
        let state = self.data().catch_up(&self.user).await?;
        let ctag = state.ctags.get(&coll).copied().unwrap_or(Pos {
            seq: state.caught_up,
            pid: u64::MAX,
        });
        let limit = sc.limit.map(|l| (l as usize).max(1));
        let token = match &sc.sync_token {
            None => None,
            Some(t) => match data::parse_token(t) {
                Some(tok) => Some(tok),
                None => return Err(invalid_token_error("unknown sync token")),
            },
        };
        let (from, after) = match token {
            None => (None, 0),
            Some(Token::Initial { from, after }) => (Some(from), after),
            Some(Token::Changes(p)) => {
                if p.seq > state.caught_up
                    || p > ctag.max(Pos {
                        seq: state.caught_up,
                        pid: u64::MAX,
                    })
                {
                    return Err(invalid_token_error("sync token is ahead of this view"));
                }
                let page = self.sync_changes(coll, p, limit).await?;
                return self.sync_answer(slug, coll, &sc, want, page).await;
            }
        };
        // Initial listing (or its continuation) from the snapshot.
        if let Some(f) = from {
            if f.seq > state.caught_up {
                return Err(invalid_token_error("sync token is ahead of this view"));
            }
        }
        let resume = from.unwrap_or(ctag);
        let members = self.data().members(self.user.id, coll).await?;
        let mut changed = Vec::new();
        let mut last = after;
        let mut truncated = false;
        for (pid, ver) in members.range(after.saturating_add(1)..) {
            if limit.is_some_and(|l| changed.len() >= l) {
                truncated = true;
                break;
            }
            changed.push((*pid, *ver));
            last = *pid;
        }
        let token = if truncated {
            data::initial_token(resume, last)
        } else {
            resume.token()
        };
        let page = SyncPage {
            changed,
            removed: Vec::new(),
            truncated,
            token,
            listing: true,
        };
        self.sync_answer(slug, coll, &sc, want, page).await
    }

    /// The changes after `from`: each person once, in first-seen order, with its final state.
    async fn sync_changes(
        &self,
        coll: u64,
        from: Pos,
        limit: Option<usize>,
    ) -> Result<SyncPage, DavError> {
        // Final state per person, in first-seen order; stop before the entry that would make
        // the answer exceed `limit` distinct persons.
        let mut order: Vec<PersonId> = Vec::new();
        let mut fin: HashMap<PersonId, Option<u64>> = HashMap::new();
        let mut pos = from;
        let mut truncated = false;
        'outer: loop {
            let (entries, more) = self.data().log_after(self.user.id, coll, pos, 1000).await?;
            for e in &entries {
                if !fin.contains_key(&e.pos.pid) {
                    if limit.is_some_and(|l| order.len() >= l) {
                        truncated = true;
                        break 'outer;
                    }
                    order.push(e.pos.pid);
                }
                fin.insert(e.pos.pid, e.present);
                pos = e.pos;
            }
            if !more {
                break;
            }
        }
        let mut page = SyncPage {
            changed: Vec::new(),
            removed: Vec::new(),
            truncated,
            token: pos.token(),
            listing: false,
        };
        for pid in order {
            match fin.get(&pid).copied().flatten() {
                Some(ver) => page.changed.push((pid, ver)),
                None => page.removed.push(pid),
            }
        }
        Ok(page)
    }

    /// Renders a sync-collection page. With `address-data` requested (RFC 6352 §10.4 in an
    /// RFC 6578 REPORT), each changed member carries its card in the version `want` asks for,
    /// and the ETag of that representation.
    async fn sync_answer(
        &self,
        slug: &str,
        coll: u64,
        sc: &SyncCollection,
        want: Option<V>,
        page: SyncPage,
    ) -> HandlerResult {
        let request_uri = paths::collection(self.login(), slug);
        // A listing names every member: one scan of the collection's names. The changes after a
        // token name only their persons: one lookup each, so that an incremental sync costs
        // O(changes) and not O(collection) (docs/BENCHMARKS.md, "Scaling").
        let names_map = if page.listing {
            self.data().names_in(self.user.id, coll).await?
        } else {
            let pids: Vec<PersonId> = page
                .changed
                .iter()
                .map(|(pid, _)| *pid)
                .chain(page.removed.iter().copied())
                .collect();
            self.data().names_of(self.user.id, coll, &pids).await?
        };
        let href_of = |pid: PersonId| {
            let name = names_map
                .get(&pid)
                .cloned()
                .unwrap_or_else(|| data::default_name(pid));
            paths::card(self.login(), slug, &name)
        };
        let with_data = match &sc.address_data {
            Some(ad) => Some((
                ReportProps {
                    props: sc.props.clone(),
                    address_data: Some(ad.clone()),
                },
                self.st.crm.access_context().await?,
            )),
            None => None,
        };
        let mut changed = Vec::with_capacity(page.changed.len());
        for (pid, ver) in page.changed {
            let href = href_of(pid);
            if let Some((rp, ctx)) = &with_data {
                if let Some(person) = self.st.crm.get_person(pid).await? {
                    let a = access(&self.user, &person.acl(), ctx);
                    if a.view {
                        let r = self.render_person(&person, want).await?;
                        changed.push(
                            rp.respond(&href, &r.text, |n| self.card_prop(n, &r.etag, a.edit)),
                        );
                        continue;
                    }
                }
                // Changed again (deleted or hidden) since the log was read: listed without its
                // body, and the next sync reports it removed.
            }
            let tag = etag(pid, ver);
            let mut found = Vec::with_capacity(sc.props.len());
            let mut missing = Vec::new();
            for n in &sc.props {
                match self.card_prop(n, &tag, true) {
                    Some(e) => found.push(e),
                    None => missing.push(n.clone()),
                }
            }
            changed.push(DavResponse::with_props(href, found, &missing));
        }
        let removed: Vec<String> = page.removed.into_iter().map(href_of).collect();
        let ms = render_response(&request_uri, changed, &removed, page.truncated, &page.token);
        Ok(to_axum(ms.to_response()))
    }

    // ------------------------------------------------------------------ GET, PUT, DELETE

    async fn get(&self, slug: &str, name: &str, head: bool) -> HandlerResult {
        let coll = self.coll_id(slug).await?;
        let found = self.resolve(coll, name).await?.ok_or_else(not_found)?;
        let want = accept_version(self.headers);
        let r = self.render_person(&found.person, want).await?;
        if let Some(inm) = self.headers.get(http::header::IF_NONE_MATCH) {
            if etag_list_matches(inm, std::slice::from_ref(&r.etag)) {
                let mut resp = empty(StatusCode::NOT_MODIFIED);
                set_etag(&mut resp, &r.etag);
                return Ok(resp);
            }
        }
        let len = r.text.len();
        let mut resp = if head {
            Response::new(Body::empty())
        } else {
            Response::new(Body::from(r.text))
        };
        // Without a version in Accept, the default representation: the card as its client
        // stored it (3.0 from Apple), else vCard 4. Either way the type names the version.
        let ct = match r.version {
            V::V3 => VCARD_CONTENT_TYPE_V3,
            V::V4 => VCARD_CONTENT_TYPE_V4,
        };
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        if head {
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        set_etag(&mut resp, &r.etag);
        Ok(resp)
    }

    async fn put(&self, slug: &str, name: &str, body: &[u8]) -> HandlerResult {
        let coll = self.coll_id(slug).await?;
        if body.len() > self.st.config.max_resource_size {
            return Err(max_size_error());
        }
        if let Some(ct) = self.headers.get(http::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let mt = ct.split(';').next().unwrap_or("").trim();
            if !mt.is_empty() && !["text/vcard", "text/x-vcard", "text/directory"].contains(&mt) {
                return Err(DavError::with_precondition(
                    StatusCode::FORBIDDEN,
                    Precondition::SupportedAddressData,
                    format!("unsupported media type {mt}"),
                ));
            }
        }
        // valid-address-data: exactly one readable vCard with a UID.
        let text =
            String::from_utf8(body.to_vec()).map_err(|_| invalid_data("card is not UTF-8"))?;
        let raw = vcard::read(&text);
        if raw.cards.len() != 1 || !raw.diagnostics.is_empty() {
            return Err(invalid_data(
                "the body must hold exactly one readable vCard",
            ));
        }
        let version = match raw.cards.first().and_then(vcard::version) {
            Some(VCardVersion::V3_0) => V::V3,
            Some(VCardVersion::V4_0) => V::V4,
            _ => return Err(invalid_data("only vCard 3.0 and 4.0 are accepted")),
        };
        let norm = vcard::normalize(&raw.cards[0]);
        let uid = vcard::uid(&norm)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| invalid_data("the card has no UID"))?
            .to_string();
        let existing = self.resolve(coll, name).await?;
        // RFC 7232 preconditions.
        match &existing {
            Some(f) => {
                if let Some(inm) = self.headers.get(http::header::IF_NONE_MATCH) {
                    let tags = self.all_etags(&f.person).await?;
                    if etag_list_matches(inm, &tags) {
                        return Err(DavError::new(
                            StatusCode::PRECONDITION_FAILED,
                            "If-None-Match failed",
                        ));
                    }
                }
                let tags = self.all_etags(&f.person).await?;
                check_if_match(self.headers, Some(&tags))?;
            }
            None => {
                check_if_match(self.headers, None)?;
                if data::parse_default_name(name).is_some()
                    && self
                        .data()
                        .name_target(self.user.id, coll, name)
                        .await?
                        .is_none()
                {
                    return Err(DavError::with_precondition(
                        StatusCode::FORBIDDEN,
                        Precondition::NeedPrivileges,
                        "names of the form crm-<id>.vcf are reserved",
                    ));
                }
            }
        }
        // no-uid-conflict: another visible card of this collection with the same UID.
        let this = existing.as_ref().map(|f| f.person.id);
        let ctx = self.st.crm.access_context().await?;
        for pid in self.data().persons_with_uid(&uid).await? {
            if Some(pid) == this {
                continue;
            }
            let Some(p) = self.st.crm.get_person(pid).await? else {
                continue;
            };
            if !access(&self.user, &p.acl(), &ctx).view {
                continue;
            }
            if coll != PERSONS_COLL
                && !self
                    .data()
                    .person_colls(self.user.id, pid)
                    .await?
                    .contains(&coll)
            {
                continue;
            }
            let other = self.data().name_of(self.user.id, coll, pid).await?;
            return Err(DavError::with_precondition(
                StatusCode::CONFLICT,
                Precondition::NoUidConflict(Some(paths::card(self.login(), slug, &other))),
                "another card of this collection has the same UID",
            ));
        }
        let mapped = card_to_fields(&norm, &self.st.config.mapping);
        let crm = &self.st.crm;
        let d = self.data();
        let mut batch = Batch::new();
        match existing {
            Some(f) => {
                if !f.edit {
                    return Err(DavError::with_precondition(
                        StatusCode::FORBIDDEN,
                        Precondition::NeedPrivileges,
                        "no permission to edit this person",
                    ));
                }
                let mut fields = f.person.fields();
                fields.copy_from(&mapped, self.st.config.mapping.fields_to_crm());
                let old = d.card(f.person.id).await?;
                let staged = crm
                    .stage_update(
                        &mut batch,
                        f.person.id,
                        f.person.version,
                        fields,
                        f.person.acl(),
                    )
                    .await?;
                let card = StoredCard {
                    text,
                    version: version.as_str().to_string(),
                    uid,
                    fields: staged.value.fields(),
                    person_version: Some(staged.value.version),
                };
                d.stage_card(&mut batch, staged.value.id, &card, old.as_ref())?;
                commit(self.st, batch).await?;
                let mut r = empty(StatusCode::NO_CONTENT);
                set_etag(&mut r, &etag(staged.value.id, staged.value.version));
                drop(staged);
                Ok(r)
            }
            None => {
                let plan = crm.company().await?.plan;
                let offered = allowed_visibilities(plan);
                let visible_to = self
                    .st
                    .config
                    .default_visibility
                    .filter(|v| offered.contains(v))
                    .or_else(|| offered.first().copied())
                    .ok_or_else(|| internal("the plan offers no visibility"))?;
                let mut fields = crate::crm::PersonFields::default();
                fields.copy_from(&mapped, self.st.config.mapping.fields_to_crm());
                let acl = Acl {
                    owner_id: self.user.id,
                    followers: vec![],
                    visible_to,
                };
                let staged = crm.stage_create(&mut batch, fields, acl).await?;
                let pid = staged.value.id;
                let card = StoredCard {
                    text,
                    version: version.as_str().to_string(),
                    uid,
                    fields: staged.value.fields(),
                    person_version: Some(staged.value.version),
                };
                d.stage_card(&mut batch, pid, &card, None)?;
                d.stage_name(&mut batch, self.user.id, coll, name, pid);
                if coll != PERSONS_COLL {
                    d.stage_person_coll(&mut batch, self.user.id, pid, coll)?;
                    if d.name_target(self.user.id, PERSONS_COLL, name)
                        .await?
                        .is_none()
                    {
                        d.stage_name(&mut batch, self.user.id, PERSONS_COLL, name, pid);
                    }
                }
                commit(self.st, batch).await?;
                let mut r = empty(StatusCode::CREATED);
                set_etag(&mut r, &etag(pid, staged.value.version));
                drop(staged);
                Ok(r)
            }
        }
    }

    async fn delete(&self, slug: &str, name: &str) -> HandlerResult {
        let coll = self.coll_id(slug).await?;
        let f = self.resolve(coll, name).await?.ok_or_else(not_found)?;
        let tags = self.all_etags(&f.person).await?;
        check_if_match(self.headers, Some(&tags))?;
        if !f.edit {
            return Err(DavError::with_precondition(
                StatusCode::FORBIDDEN,
                Precondition::NeedPrivileges,
                "no permission to delete this person",
            ));
        }
        let d = self.data();
        let pid = f.person.id;
        let old = d.card(pid).await?;
        let mut batch = Batch::new();
        let staged = self
            .st
            .crm
            .stage_delete(&mut batch, pid, Some(f.person.version))
            .await?;
        d.stage_card_delete(&mut batch, pid, old.as_ref());
        // Name mappings stay: the next sync reports the removal under the href the client
        // knows, and resolution checks that the person still exists.
        commit(self.st, batch).await?;
        drop(staged);
        Ok(empty(StatusCode::NO_CONTENT))
    }
}

async fn commit(st: &AppState, batch: Batch) -> Result<(), DavError> {
    match st.crm.store().commit(batch).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict { .. }) => Err(DavError::new(
            StatusCode::PRECONDITION_FAILED,
            "the card changed concurrently",
        )),
        Err(e) => Err(internal(e)),
    }
}

fn card_allprop() -> [QName; 3] {
    [names::RESOURCETYPE, names::GETETAG, names::GETCONTENTTYPE]
}

/// Live properties a client may not set.
fn is_live(n: &QName) -> bool {
    [
        names::RESOURCETYPE,
        names::GETCTAG,
        names::SYNC_TOKEN,
        names::GETETAG,
        names::SUPPORTED_ADDRESS_DATA,
        names::MAX_RESOURCE_SIZE,
        names::CURRENT_USER_PRIVILEGE_SET,
        names::SUPPORTED_REPORT_SET,
        names::CURRENT_USER_PRINCIPAL,
    ]
    .contains(n)
}

fn clark_to_qname(s: &str) -> Option<QName> {
    let rest = s.strip_prefix('{')?;
    let (ns, local) = rest.split_once('}')?;
    Some(QName::new(ns, local))
}

fn set_etag(r: &mut Response, tag: &str) {
    if let Ok(v) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(http::header::ETAG, v);
    }
}

/// True when an `If-Match`/`If-None-Match` value lists one of `tags` (or is `*`).
fn etag_list_matches(v: &HeaderValue, tags: &[String]) -> bool {
    let s = v.to_str().unwrap_or("");
    s.split(',').map(str::trim).any(|t| {
        t == "*" || {
            let t = t.strip_prefix("W/").unwrap_or(t);
            tags.iter().any(|x| x == t)
        }
    })
}

/// RFC 7232 §3.1: `If-Match` fails when the resource is absent or no tag matches.
fn check_if_match(h: &HeaderMap, tags: Option<&[String]>) -> Result<(), DavError> {
    let Some(v) = h.get(http::header::IF_MATCH) else {
        return Ok(());
    };
    let ok = match tags {
        None => false,
        Some(tags) => {
            // Strong comparison: weak tags never match.
            let s = v.to_str().unwrap_or("");
            s.split(',')
                .map(str::trim)
                .any(|t| t == "*" || tags.iter().any(|x| x == t))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(DavError::new(
            StatusCode::PRECONDITION_FAILED,
            "If-Match failed",
        ))
    }
}

/// The vCard version an `Accept` header asks for (first `text/vcard` range with a `version`).
fn accept_version(h: &HeaderMap) -> Option<V> {
    let accept = h.get(http::header::ACCEPT)?.to_str().ok()?;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let mt = parts.next().unwrap_or("");
        if !mt.eq_ignore_ascii_case(names::CONTENT_TYPE_VCARD) {
            continue;
        }
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("version") {
                    if let Some(v) = V::parse(v.trim().trim_matches('"')) {
                        return Some(v);
                    }
                }
            }
        }
    }
    None
}

#[allow(dead_code)]
fn value_text(v: &VCardValue) -> Option<&str> {
    match v {
        VCardValue::Text(t) => Some(t),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_version() {
        let mut h = HeaderMap::new();
        assert_eq!(accept_version(&h), None);
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/html, text/vcard; version=3.0"),
        );
        assert_eq!(accept_version(&h), Some(V::V3));
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/vcard;version=\"4.0\""),
        );
        assert_eq!(accept_version(&h), Some(V::V4));
    }

    #[test]
    fn if_match_is_strong_and_absent_resources_fail() {
        let tags = vec!["\"1-2\"".to_string()];
        let mut h = HeaderMap::new();
        assert!(check_if_match(&h, None).is_ok());
        h.insert(http::header::IF_MATCH, HeaderValue::from_static("\"1-2\""));
        assert!(check_if_match(&h, Some(&tags)).is_ok());
        assert!(check_if_match(&h, None).is_err());
        h.insert(
            http::header::IF_MATCH,
            HeaderValue::from_static("W/\"1-2\""),
        );
        assert!(check_if_match(&h, Some(&tags)).is_err());
        h.insert(http::header::IF_MATCH, HeaderValue::from_static("*"));
        assert!(check_if_match(&h, Some(&tags)).is_ok());
    }
}
