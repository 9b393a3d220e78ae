//! A fake CardDAV address book whose `sync-collection` answers carry at most `every` members and
//! then a 507 truncation marker (RFC 6578 §3.6) with an intermediate token, so tests can prove
//! that a client following truncated answers loses no change, even when the book changes between
//! pages. Members are reported oldest change first; the intermediate token resumes exactly after
//! the last reported one. No auth; PROPFIND, sync-collection, multiget, GET.
#![allow(dead_code, clippy::unwrap_used)]

use crate::dav_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::multistatus::{Multistatus, Response as DavResp};
use cardbridge::dav::names;
use cardbridge::dav::prop::{self, ResourceType};
use cardbridge::dav::propfind::Propfind;
use cardbridge::dav::sync_collection::{render_response, SyncCollection};
use cardbridge::dav::xml;

pub const BOOK: &str = "/book/";

#[derive(Default)]
pub struct Inner {
    /// name → (etag, text)
    pub cards: BTreeMap<String, (String, String)>,
    /// name → seq of its last change (present or deleted)
    pub last_change: BTreeMap<String, u64>,
    pub seq: u64,
    pub every: usize,
    pub sync_requests: usize,
    pub truncated_answers: usize,
    /// How long each `addressbook-multiget` is held before it is answered (to make the
    /// client's concurrency observable), and the most that were ever held at once.
    pub multiget_delay: std::time::Duration,
    pub multigets_in_flight: usize,
    pub max_multigets_in_flight: usize,
}

#[derive(Clone)]
pub struct Truncating {
    pub inner: Arc<Mutex<Inner>>,
    pub url: String,
}

pub fn card(name: &str, rev: u64) -> String {
    format!("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{name}\r\nFN:Person {name} rev {rev}\r\nN:{name};Person;;;\r\nEND:VCARD\r\n")
}

impl Truncating {
    pub async fn start(every: usize) -> Truncating {
        let inner = Arc::new(Mutex::new(Inner {
            every,
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
        Truncating {
            inner,
            url: format!("http://{addr}{BOOK}"),
        }
    }

    pub fn put(&self, name: &str) {
        let mut g = self.inner.lock().unwrap();
        g.seq += 1;
        let s = g.seq;
        g.cards
            .insert(name.to_string(), (format!("\"{s}\""), card(name, s)));
        g.last_change.insert(name.to_string(), s);
    }

    pub fn delete(&self, name: &str) {
        let mut g = self.inner.lock().unwrap();
        g.seq += 1;
        let s = g.seq;
        g.cards.remove(name);
        g.last_change.insert(name.to_string(), s);
    }

    /// id (absolute path) → etag, as the server holds it.
    pub fn state(&self) -> BTreeMap<String, String> {
        let g = self.inner.lock().unwrap();
        g.cards
            .iter()
            .map(|(n, (e, _))| (format!("{BOOK}{n}"), e.clone()))
            .collect()
    }
}

fn ms(m: Multistatus) -> Response {
    let (parts, body) = m.to_response().into_parts();
    Response::from_parts(parts, axum::body::Body::from(body))
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let depth = parts.headers.get("depth");
    if parts.method.as_str() == "REPORT"
        && xml::parse(&body).is_ok_and(|r| r.is(&names::ADDRESSBOOK_MULTIGET))
    {
        let delay = {
            let mut g = inner.lock().unwrap();
            g.multigets_in_flight += 1;
            g.max_multigets_in_flight = g.max_multigets_in_flight.max(g.multigets_in_flight);
            g.multiget_delay
        };
        tokio::time::sleep(delay).await;
        inner.lock().unwrap().multigets_in_flight -= 1;
    }
    let mut g = inner.lock().unwrap();
    match parts.method.as_str() {
        "PROPFIND" if path == BOOK => {
            let Ok(pf) = Propfind::parse_request(depth, &body) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let seq = g.seq;
            let r = pf.respond(BOOK, &[], |q| {
                if *q == names::RESOURCETYPE {
                    Some(ResourceType::addressbook().to_element())
                } else if *q == names::SYNC_TOKEN {
                    Some(prop::text(q, dav_common::token(seq)))
                } else {
                    None
                }
            });
            ms(Multistatus {
                responses: vec![r],
                sync_token: None,
                description: None,
            })
        }
        "REPORT" if path == BOOK => {
            let Ok(root) = xml::parse(&body) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            if root.is(&names::SYNC_COLLECTION) {
                g.sync_requests += 1;
                let sc = SyncCollection::parse_request(depth, &body).unwrap();
                let Some(since) = dav_common::since(sc.sync_token.as_deref(), g.seq) else {
                    return dav_common::invalid_token();
                };
                let mut pending: Vec<(u64, &String)> = g
                    .last_change
                    .iter()
                    .filter(|(_, s)| **s > since)
                    .map(|(n, s)| (*s, n))
                    .collect();
                pending.sort();
                let truncated = pending.len() > g.every;
                pending.truncate(g.every);
                let new_seq = if truncated {
                    pending.last().map(|p| p.0).unwrap_or(since)
                } else {
                    g.seq
                };
                let mut changed = Vec::new();
                let mut removed = Vec::new();
                for (_, n) in &pending {
                    let href = format!("{BOOK}{n}");
                    match g.cards.get(*n) {
                        Some((etag, _)) => changed.push(DavResp::with_props(
                            href,
                            vec![prop::text(&names::GETETAG, etag.clone())],
                            &[],
                        )),
                        None if since > 0 => removed.push(href),
                        None => {}
                    }
                }
                if truncated {
                    g.truncated_answers += 1;
                }
                ms(render_response(
                    BOOK,
                    changed,
                    &removed,
                    truncated,
                    &dav_common::token(new_seq),
                ))
            } else if root.is(&names::ADDRESSBOOK_MULTIGET) {
                let mg = AddressbookMultiget::parse_request(&body).unwrap();
                ms(dav_common::multiget(&mg, &g.cards))
            } else {
                StatusCode::FORBIDDEN.into_response()
            }
        }
        "GET" => match path.strip_prefix(BOOK).and_then(|n| g.cards.get(n)) {
            Some((etag, text)) => ([("etag", etag.clone())], text.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
