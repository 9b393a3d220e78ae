//! A fake iCloud CardDAV service for tests, on three loopback listeners: the public host
//! (`contacts.icloud.com`: principal discovery), the partition host (`pNN-contacts.icloud.com`,
//! standing in as `127.0.0.2`: the home set and the one address book) and an unrelated host
//! (`127.0.0.3`) that must never see credentials. It stores vCard 3.0 only, answers 403 to a
//! card without `N` or with another version, rewrites stored cards (adds a PRODID) and so sends
//! no ETag on PUT, uses opaque non-URI sync tokens, and serves group cards through
//! `addressbook-query`. Every request is recorded with whether it carried credentials.
#![allow(dead_code, clippy::unwrap_used)]

use crate::dav_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cardbridge::dav::address_data::ReportProps;
use cardbridge::dav::error::{render_error_body, Precondition};
use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::multistatus::{Multistatus, Response as DavResp};
use cardbridge::dav::names;
use cardbridge::dav::prop::{self, AddressDataType, ResourceType};
use cardbridge::dav::propfind::Propfind;
use cardbridge::dav::query::AddressbookQuery;
use cardbridge::dav::sync_collection::{invalid_token_error, render_response, SyncCollection};
use cardbridge::dav::xml::{self, Element};

pub const USER: &str = "jane@icloud.example";
pub const PASSWORD: &str = "abcd-efgh-ijkl-mnop";
pub const DSID: &str = "1234567";
pub const PRODID: &str = "PRODID:-//Apple Inc.//iCloud Web Address Book 2602B12//EN";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub host: &'static str,
    pub method: String,
    pub path: String,
    pub authorized: bool,
    pub has_authorization: bool,
}

#[derive(Default)]
pub struct Book {
    /// name → (etag, stored text)
    pub cards: BTreeMap<String, (String, String)>,
    /// (seq, name) for every change.
    pub log: Vec<(u64, String)>,
    pub seq: u64,
}

pub struct Inner {
    pub book: Book,
    pub seen: Vec<Seen>,
    /// Where the principal's home set points (the partition host, or elsewhere for tests).
    pub home_set: String,
    /// Where `/.well-known/carddav` on the public host redirects.
    pub well_known_to: String,
}

#[derive(Clone)]
pub struct FakeIcloud {
    pub inner: Arc<Mutex<Inner>>,
    /// `http://127.0.0.1:P/`
    pub public_url: String,
    /// `http://127.0.0.2:P/`
    pub partition_url: String,
    /// `http://127.0.0.3:P/`
    pub unrelated_url: String,
    pub partition_host: String,
}

#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
    host: &'static str,
}

async fn bind(ip: [u8; 4], inner: Arc<Mutex<Inner>>, host: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(Ctx { inner, host });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

impl FakeIcloud {
    pub async fn start() -> FakeIcloud {
        let inner = Arc::new(Mutex::new(Inner {
            book: Book::default(),
            seen: vec![],
            home_set: String::new(),
            well_known_to: "/".into(),
        }));
        let public = bind([127, 0, 0, 1], inner.clone(), "public").await;
        let partition = bind([127, 0, 0, 2], inner.clone(), "partition").await;
        let unrelated = bind([127, 0, 0, 3], inner.clone(), "unrelated").await;
        let partition_url = format!("http://{partition}/");
        inner.lock().unwrap().home_set = format!("{partition_url}{DSID}/carddavhome/");
        FakeIcloud {
            inner,
            public_url: format!("http://{public}/"),
            partition_url,
            unrelated_url: format!("http://{unrelated}/"),
            partition_host: partition.to_string(),
        }
    }

    pub fn book_url(&self) -> String {
        format!("{}{DSID}/carddavhome/card/", self.partition_url)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// Stores a card directly (as if made on an iPhone).
    pub fn put_raw(&self, name: &str, text: &str) {
        let mut g = self.inner.lock().unwrap();
        store(&mut g.book, name, text.to_string());
    }

    pub fn delete_raw(&self, name: &str) {
        let mut g = self.inner.lock().unwrap();
        let b = &mut g.book;
        b.cards.remove(name);
        b.seq += 1;
        let s = b.seq;
        b.log.push((s, name.to_string()));
    }

    pub fn stored(&self, name: &str) -> Option<String> {
        self.inner
            .lock()
            .unwrap()
            .book
            .cards
            .get(name)
            .map(|c| c.1.clone())
    }

    pub fn names(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .book
            .cards
            .keys()
            .cloned()
            .collect()
    }
}

fn store(b: &mut Book, name: &str, text: String) -> String {
    b.seq += 1;
    let etag = format!("\"C={}@U=fake\"", b.seq);
    b.cards.insert(name.to_string(), (etag.clone(), text));
    let s = b.seq;
    b.log.push((s, name.to_string()));
    etag
}

fn token(seq: u64) -> String {
    format!("FT=-@RU=fake@S={seq}")
}

fn status(s: StatusCode) -> Response {
    s.into_response()
}

fn ms_response(ms: Multistatus) -> Response {
    let r = ms.to_response();
    let (parts, body) = r.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn dav_error(s: StatusCode, p: Precondition) -> Response {
    (
        s,
        [("content-type", names::CONTENT_TYPE_XML)],
        render_error_body(&p),
    )
        .into_response()
}

fn authorized(h: &HeaderMap) -> bool {
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

async fn handle(State(ctx): State<Ctx>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let ok = authorized(&parts.headers);
    let mut g = ctx.inner.lock().unwrap();
    g.seen.push(Seen {
        host: ctx.host,
        method: method.clone(),
        path: path.clone(),
        authorized: ok,
        has_authorization: parts.headers.contains_key("authorization"),
    });
    if ctx.host == "unrelated" || !ok {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"fake\"")],
        )
            .into_response();
    }
    let ct_ok = parts.headers.contains_key("content-type");
    let depth = parts.headers.get("depth");
    let principal = format!("/{DSID}/principal/");
    let home = format!("/{DSID}/carddavhome/");
    let book_path = format!("/{DSID}/carddavhome/card/");
    match (ctx.host, method.as_str()) {
        ("public", "PROPFIND") if path == names::WELL_KNOWN_CARDDAV => (
            StatusCode::MOVED_PERMANENTLY,
            [("location", g.well_known_to.clone())],
        )
            .into_response(),
        ("public", "PROPFIND") if path == "/" || path == principal => {
            let Ok(pf) = Propfind::parse_request(depth, &body) else {
                return status(StatusCode::BAD_REQUEST);
            };
            let home_set = g.home_set.clone();
            let r = pf.respond(&path, &[], |q| {
                if *q == names::CURRENT_USER_PRINCIPAL {
                    Some(prop::hrefs_prop(q, &[principal.as_str()]))
                } else if *q == names::ADDRESSBOOK_HOME_SET && path == principal {
                    Some(prop::hrefs_prop(q, &[home_set.as_str()]))
                } else {
                    None
                }
            });
            ms_response(Multistatus {
                responses: vec![r],
                sync_token: None,
                description: None,
            })
        }
        ("partition", "PROPFIND") if path == home || path == book_path => {
            if !ct_ok {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            let Ok(pf) = Propfind::parse_request(depth, &body) else {
                return status(StatusCode::BAD_REQUEST);
            };
            let seq = g.book.seq;
            let book_lookup = |q: &names::QName| -> Option<Element> {
                if *q == names::RESOURCETYPE {
                    Some(ResourceType::addressbook().to_element())
                } else if *q == names::DISPLAYNAME {
                    Some(prop::text(q, "Card"))
                } else if *q == names::SUPPORTED_ADDRESS_DATA {
                    Some(prop::supported_address_data(&[AddressDataType::vcard(
                        "3.0",
                    )]))
                } else if *q == names::GETCTAG {
                    Some(prop::text(q, seq.to_string()))
                } else if *q == names::SYNC_TOKEN {
                    Some(prop::text(q, token(seq)))
                } else if *q == names::CURRENT_USER_PRIVILEGE_SET {
                    Some(prop::privilege_set(&[
                        names::READ,
                        names::WRITE_CONTENT,
                        names::BIND,
                        names::UNBIND,
                    ]))
                } else if *q == names::SUPPORTED_REPORT_SET {
                    Some(prop::supported_report_set(&[
                        names::SYNC_COLLECTION,
                        names::ADDRESSBOOK_MULTIGET,
                        names::ADDRESSBOOK_QUERY,
                    ]))
                } else {
                    None
                }
            };
            let mut responses = Vec::new();
            if path == home {
                responses.push(pf.respond(&home, &[], |q| {
                    (*q == names::RESOURCETYPE).then(|| ResourceType::collection().to_element())
                }));
                if pf.depth.as_str() != "0" {
                    responses.push(pf.respond(&book_path, &[], book_lookup));
                }
            } else {
                responses.push(pf.respond(&book_path, &[], book_lookup));
            }
            ms_response(Multistatus {
                responses,
                sync_token: None,
                description: None,
            })
        }
        ("partition", "REPORT") if path == book_path => {
            if !ct_ok {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            let Ok(root) = xml::parse(&body) else {
                return status(StatusCode::BAD_REQUEST);
            };
            let book = &g.book;
            if root.is(&names::SYNC_COLLECTION) {
                let Ok(sc) = SyncCollection::parse_request(depth, &body) else {
                    return status(StatusCode::BAD_REQUEST);
                };
                let since = match &sc.sync_token {
                    None => 0,
                    Some(t) => match t
                        .rsplit_once("@S=")
                        .and_then(|(_, n)| n.parse::<u64>().ok())
                    {
                        Some(n) if n <= book.seq => n,
                        _ => {
                            let e = invalid_token_error("unknown token");
                            return dav_error(e.status, Precondition::ValidSyncToken);
                        }
                    },
                };
                let mut names_changed: Vec<&String> = book
                    .log
                    .iter()
                    .filter(|(s, _)| *s > since)
                    .map(|(_, n)| n)
                    .collect();
                names_changed.sort();
                names_changed.dedup();
                let mut changed = Vec::new();
                let mut removed = Vec::new();
                for n in names_changed {
                    let href = format!("{book_path}{n}");
                    match book.cards.get(n) {
                        Some((etag, _)) => changed.push(DavResp::with_props(
                            href,
                            vec![prop::text(&names::GETETAG, etag.clone())],
                            &[],
                        )),
                        None if since > 0 => removed.push(href),
                        None => {}
                    }
                }
                ms_response(render_response(
                    &book_path,
                    changed,
                    &removed,
                    false,
                    &token(book.seq),
                ))
            } else if root.is(&names::ADDRESSBOOK_MULTIGET) {
                let Ok(mg) = AddressbookMultiget::parse_request(&body) else {
                    return status(StatusCode::BAD_REQUEST);
                };
                ms_response(dav_common::multiget(&mg, &book.cards))
            } else if root.is(&names::ADDRESSBOOK_QUERY) {
                let Ok(q) = AddressbookQuery::parse_request(&body) else {
                    return status(StatusCode::BAD_REQUEST);
                };
                let props: &ReportProps = &q.props;
                let responses = book
                    .cards
                    .iter()
                    .filter(|(_, (_, text))| q.filter.matches_vcard(text))
                    .map(|(n, (etag, text))| {
                        props.respond(&format!("{book_path}{n}"), text, |p| {
                            (*p == names::GETETAG).then(|| prop::text(p, etag.clone()))
                        })
                    })
                    .collect();
                ms_response(Multistatus {
                    responses,
                    sync_token: None,
                    description: None,
                })
            } else {
                status(StatusCode::FORBIDDEN)
            }
        }
        ("partition", m) if path.starts_with(&book_path) && path.len() > book_path.len() => {
            let name = path[book_path.len()..].to_string();
            let current = g.book.cards.get(&name).cloned();
            let if_match = parts
                .headers
                .get("if-match")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let if_none = parts.headers.get("if-none-match").is_some();
            match m {
                "GET" => match current {
                    Some((etag, text)) => (
                        [("etag", etag), ("content-type", "text/vcard".into())],
                        text,
                    )
                        .into_response(),
                    None => status(StatusCode::NOT_FOUND),
                },
                "PUT" => {
                    let text = String::from_utf8_lossy(&body).to_string();
                    if !text.contains("\nVERSION:3.0\r\n") {
                        return dav_error(
                            StatusCode::FORBIDDEN,
                            Precondition::SupportedAddressData,
                        );
                    }
                    if !text
                        .lines()
                        .any(|l| l.starts_with("N:") || l.starts_with("N;"))
                    {
                        return status(StatusCode::FORBIDDEN);
                    }
                    if (if_none && current.is_some())
                        || if_match
                            .as_ref()
                            .is_some_and(|e| current.as_ref().map(|c| &c.0) != Some(e))
                    {
                        return status(StatusCode::PRECONDITION_FAILED);
                    }
                    // iCloud rewrites what it stores, so it sends no ETag.
                    let stored = text.replacen(
                        "VERSION:3.0\r\n",
                        &format!("VERSION:3.0\r\n{PRODID}\r\n"),
                        1,
                    );
                    store(&mut g.book, &name, stored);
                    status(if current.is_some() {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::CREATED
                    })
                }
                "DELETE" => {
                    if current.is_none() {
                        return status(StatusCode::NOT_FOUND);
                    }
                    if if_match
                        .as_ref()
                        .is_some_and(|e| current.as_ref().map(|c| &c.0) != Some(e))
                    {
                        return status(StatusCode::PRECONDITION_FAILED);
                    }
                    let b = &mut g.book;
                    b.cards.remove(&name);
                    b.seq += 1;
                    let s = b.seq;
                    b.log.push((s, name));
                    status(StatusCode::NO_CONTENT)
                }
                _ => status(StatusCode::METHOD_NOT_ALLOWED),
            }
        }
        _ => status(StatusCode::NOT_FOUND),
    }
}
