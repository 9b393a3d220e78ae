//! A fake CardDAV server holding many accounts, one address book each, for the multi-node
//! tests (tests/cluster_nodes.rs): account `n` lives under `/u<n>/` (principal and home set in
//! one collection) with its book at `/u<n>/book/`. It speaks enough CardDAV for the real
//! provider code: discovery (PROPFIND for `current-user-principal`, `addressbook-home-set`, the
//! home's children), `sync-collection` with numeric tokens (RFC 6578), `addressbook-multiget`,
//! `addressbook-query` (no group cards) and GET. Basic auth must name user `u<n>`.
//!
//! Every request is recorded with its wall-clock time, its account and what it was, so a test
//! can count the syncs of each connection ("one `sync-collection` per run") from the server's
//! side; [`FakeBooks::delay`] slows every answer down (a provider's latency).
#![allow(dead_code, clippy::unwrap_used)]

use crate::dav_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::multistatus::{Multistatus, Response as DavResp};
use cardbridge::dav::names;
use cardbridge::dav::prop::{self, AddressDataType, ResourceType};
use cardbridge::dav::propfind::Propfind;
use cardbridge::dav::sync_collection::{render_response, SyncCollection};
use cardbridge::dav::xml;

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Propfind,
    /// A `sync-collection` REPORT: one per sync run of a connection whose book did not
    /// truncate its answer.
    Sync,
    Multiget,
    Query,
    Get,
    Other,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived (wall clock).
    pub at: SystemTime,
    /// The account (`n` of `/u<n>/`).
    pub account: usize,
    pub kind: Kind,
    /// For [`Kind::Sync`]: the token the client sent (`None`: initial listing).
    pub token: Option<String>,
}

#[derive(Default)]
pub struct Book {
    /// name → (etag, text)
    pub cards: BTreeMap<String, (String, String)>,
    /// name → seq of its last change
    pub last_change: BTreeMap<String, u64>,
    pub seq: u64,
}

#[derive(Default)]
pub struct Inner {
    pub books: Vec<Book>,
    pub seen: Vec<Seen>,
    pub delay: Duration,
}

#[derive(Clone)]
pub struct FakeBooks {
    pub inner: Arc<Mutex<Inner>>,
    /// `http://127.0.0.1:P`
    pub base: String,
}

/// The card `name` of account `account`, at revision `rev`. Its UID and FN are unique.
pub fn card(account: usize, name: &str, rev: u64) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u{account}-{name}\r\nFN:{name} U{account}\r\n\
         N:U{account};{name};;;\r\nEMAIL:{name}.u{account}@example.org\r\nNOTE:rev {rev}\r\n\
         END:VCARD\r\n"
    )
}

impl FakeBooks {
    /// `accounts` books, empty, on a fresh loopback port (its own runtime's tasks).
    pub async fn start(accounts: usize) -> FakeBooks {
        let inner = Arc::new(Mutex::new(Inner {
            books: (0..accounts).map(|_| Book::default()).collect(),
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeBooks {
            inner,
            base: format!("http://{addr}"),
        }
    }

    /// The server URL a connection of account `n` is created with.
    pub fn server_url(&self, n: usize) -> String {
        format!("{}/u{n}/", self.base)
    }

    /// The book's URL (its sync-group id).
    pub fn book_url(&self, n: usize) -> String {
        format!("{}/u{n}/book/", self.base)
    }

    /// Adds or changes card `name` in account `n`'s book.
    pub fn put(&self, n: usize, name: &str) {
        let mut g = self.inner.lock().unwrap();
        let b = &mut g.books[n];
        b.seq += 1;
        let s = b.seq;
        b.cards
            .insert(name.to_string(), (format!("\"{s}\""), card(n, name, s)));
        b.last_change.insert(name.to_string(), s);
    }

    /// Every answer waits this long first.
    pub fn delay(&self, d: Duration) {
        self.inner.lock().unwrap().delay = d;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }
}

fn ms(m: Multistatus) -> Response {
    let (parts, body) = m.to_response().into_parts();
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn status(s: StatusCode) -> Response {
    s.into_response()
}

/// `/u<n>/rest` → (n, rest).
fn account_of(path: &str) -> Option<(usize, &str)> {
    let rest = path.strip_prefix("/u")?;
    let (n, rest) = rest.split_once('/')?;
    Some((n.parse().ok()?, rest))
}

fn user_is(h: &HeaderMap, n: usize) -> bool {
    use base64::Engine as _;
    let Some(v) = h.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(b) = v.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b) else {
        return false;
    };
    let raw = String::from_utf8_lossy(&raw);
    raw.split_once(':')
        .is_some_and(|(u, p)| u == format!("u{n}") && !p.is_empty())
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let Some((n, rest)) = account_of(&path) else {
        return status(StatusCode::NOT_FOUND);
    };
    let rest = rest.to_string();
    let method = parts.method.as_str().to_string();
    let depth = parts.headers.get("depth");
    // What kind of request, and the sync token, before any waiting: the time is its arrival.
    let root = if method == "REPORT" {
        xml::parse(&body).ok()
    } else {
        None
    };
    let kind = match (method.as_str(), &root) {
        ("PROPFIND", _) => Kind::Propfind,
        ("REPORT", Some(r)) if r.is(&names::SYNC_COLLECTION) => Kind::Sync,
        ("REPORT", Some(r)) if r.is(&names::ADDRESSBOOK_MULTIGET) => Kind::Multiget,
        ("REPORT", Some(r)) if r.is(&names::ADDRESSBOOK_QUERY) => Kind::Query,
        ("GET", _) => Kind::Get,
        _ => Kind::Other,
    };
    let sync = if kind == Kind::Sync {
        match SyncCollection::parse_request(depth, &body) {
            Ok(sc) => Some(sc),
            Err(_) => return status(StatusCode::BAD_REQUEST),
        }
    } else {
        None
    };
    let delay = {
        let mut g = inner.lock().unwrap();
        if n >= g.books.len() {
            return status(StatusCode::NOT_FOUND);
        }
        g.seen.push(Seen {
            at: SystemTime::now(),
            account: n,
            kind,
            token: sync.as_ref().and_then(|s| s.sync_token.clone()),
        });
        g.delay
    };
    if !user_is(&parts.headers, n) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"fake\"")],
        )
            .into_response();
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let home = format!("/u{n}/");
    let book_path = format!("/u{n}/book/");
    let g = inner.lock().unwrap();
    let book = &g.books[n];
    match (method.as_str(), rest.as_str()) {
        ("PROPFIND", "" | "book/") => {
            let Ok(pf) = Propfind::parse_request(depth, &body) else {
                return status(StatusCode::BAD_REQUEST);
            };
            let seq = book.seq;
            let book_lookup = |q: &names::QName| {
                if *q == names::RESOURCETYPE {
                    Some(ResourceType::addressbook().to_element())
                } else if *q == names::DISPLAYNAME {
                    Some(prop::text(q, format!("Book {n}")))
                } else if *q == names::SUPPORTED_ADDRESS_DATA {
                    Some(prop::supported_address_data(&[AddressDataType::vcard(
                        "3.0",
                    )]))
                } else if *q == names::SYNC_TOKEN {
                    Some(prop::text(q, dav_common::token(seq)))
                } else if *q == names::GETCTAG {
                    Some(prop::text(q, seq.to_string()))
                } else if *q == names::CURRENT_USER_PRIVILEGE_SET {
                    Some(prop::privilege_set(&[names::READ]))
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
            if rest.is_empty() {
                responses.push(pf.respond(&home, &[], |q| {
                    if *q == names::CURRENT_USER_PRINCIPAL || *q == names::ADDRESSBOOK_HOME_SET {
                        Some(prop::hrefs_prop(q, &[home.as_str()]))
                    } else if *q == names::RESOURCETYPE {
                        Some(ResourceType::collection().to_element())
                    } else {
                        None
                    }
                }));
                if pf.depth.as_str() != "0" {
                    responses.push(pf.respond(&book_path, &[], book_lookup));
                }
            } else {
                responses.push(pf.respond(&book_path, &[], book_lookup));
            }
            ms(Multistatus {
                responses,
                sync_token: None,
                description: None,
            })
        }
        ("REPORT", "book/") => match (kind, sync) {
            (Kind::Sync, Some(sc)) => {
                let Some(since) = dav_common::since(sc.sync_token.as_deref(), book.seq) else {
                    return dav_common::invalid_token();
                };
                let changed = book
                    .last_change
                    .iter()
                    .filter(|(_, s)| **s > since)
                    .filter_map(|(name, _)| {
                        book.cards.get(name).map(|(etag, _)| {
                            DavResp::with_props(
                                format!("{book_path}{name}"),
                                vec![prop::text(&names::GETETAG, etag.clone())],
                                &[],
                            )
                        })
                    })
                    .collect();
                ms(render_response(
                    &book_path,
                    changed,
                    &[],
                    false,
                    &dav_common::token(book.seq),
                ))
            }
            (Kind::Multiget, _) => {
                let Ok(mg) = AddressbookMultiget::parse_request(&body) else {
                    return status(StatusCode::BAD_REQUEST);
                };
                ms(dav_common::multiget(&mg, &book.cards))
            }
            // No group cards in these books.
            (Kind::Query, _) => ms(Multistatus {
                responses: vec![],
                sync_token: None,
                description: None,
            }),
            _ => status(StatusCode::FORBIDDEN),
        },
        ("GET", r) if r.starts_with("book/") => match book.cards.get(&r["book/".len()..]) {
            Some((etag, text)) => (
                [
                    ("etag", etag.clone()),
                    ("content-type", "text/vcard".into()),
                ],
                text.clone(),
            )
                .into_response(),
            None => status(StatusCode::NOT_FOUND),
        },
        _ => status(StatusCode::NOT_FOUND),
    }
}
