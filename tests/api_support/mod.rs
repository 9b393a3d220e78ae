//! Shared helpers of the API and scheduler tests: the in-memory store, a fake provider and
//! connector, a scriptable sync runner, and a one-shot HTTP caller over the in-process router.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use cardbridge::providers::{
    Page, Provider, ProviderError, ProviderKind, PullKind, RemoteChange, RemoteItem, SyncGroup,
    SyncGroupKind, Written,
};
use cardbridge::scheduler::RunId;
use cardbridge::service::connections::{Connection, RunSummary};
use cardbridge::service::{Connector, Credentials, ForgetSummary, RunError, SyncRunner};
use cardbridge::vcard::VCard;
use serde_json::Value;
use tower::ServiceExt as _;

/// The in-memory backend of `store` (passes the store conformance suite).
pub use cardbridge::store::MemoryStore as MapStore;

pub fn card(uid: &str, name: &str, email: &str) -> VCard {
    let text = format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{uid}\r\nFN:{name}\r\nEMAIL;TYPE=work:{email}\r\nORG:Acme\r\nEND:VCARD\r\n"
    );
    cardbridge::vcard::read_bytes_normalized(text.as_bytes())
        .cards
        .into_iter()
        .next()
        .expect("test card parses")
}

/// A provider with two groups (`/book/` writable, `/ro/` read-only) and two cards.
pub struct FakeProvider;

#[async_trait]
impl Provider for FakeProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Carddav
    }
    async fn sync_groups(&self) -> Result<Vec<SyncGroup>, ProviderError> {
        Ok(vec![
            SyncGroup {
                id: "/book/".into(),
                name: "Contacts".into(),
                kind: SyncGroupKind::AddressBook,
                writable: true,
            },
            SyncGroup {
                id: "/ro/".into(),
                name: "Shared (read-only)".into(),
                kind: SyncGroupKind::AddressBook,
                writable: false,
            },
        ])
    }
    async fn pull(&self, _group: &str, _cursor: Option<&str>) -> Result<Page, ProviderError> {
        Ok(Page {
            changes: vec![
                RemoteChange::Upsert(RemoteItem {
                    id: "a.vcf".into(),
                    etag: Some("1".into()),
                    card: card("a", "Ada Lovelace", "ada@example.com"),
                }),
                RemoteChange::Upsert(RemoteItem {
                    id: "b.vcf".into(),
                    etag: Some("1".into()),
                    card: card("b", "Bob Byte", "bob@example.com"),
                }),
            ],
            kind: PullKind::FullListing,
            cursor: Some("c1".into()),
            complete: true,
        })
    }
    async fn fetch(&self, _: &str, _: &str) -> Result<Option<RemoteItem>, ProviderError> {
        Ok(None)
    }
    async fn create(&self, _: &str, _: &VCard, _: &str) -> Result<Written, ProviderError> {
        Err(ProviderError::Unsupported("fake".into()))
    }
    async fn update(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: &VCard,
    ) -> Result<Written, ProviderError> {
        Err(ProviderError::Unsupported("fake".into()))
    }
    async fn delete(&self, _: &str, _: &str, _: Option<&str>) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported("fake".into()))
    }
}

/// Opens [`FakeProvider`] when the password is `right`; otherwise the credentials are rejected.
pub struct FakeConnector;

#[async_trait]
impl Connector for FakeConnector {
    async fn open(
        &self,
        _c: &Connection,
        creds: &Credentials,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        if creds.password.as_deref() == Some("wrong") {
            return Err(ProviderError::CredentialsRejected);
        }
        Ok(Arc::new(FakeProvider))
    }
}

/// A sync runner that answers scripted results (default: a success adding 2).
#[derive(Default)]
pub struct ScriptedRunner {
    pub script: Mutex<VecDeque<Result<RunSummary, ProviderError>>>,
    pub runs: AtomicUsize,
    pub forgotten: Mutex<Vec<(u64, bool)>>,
    /// When set, each run waits for a permit.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[async_trait]
impl SyncRunner for ScriptedRunner {
    async fn run(
        &self,
        _c: &Connection,
        _creds: &Credentials,
        _run: RunId,
    ) -> Result<RunSummary, RunError> {
        if let Some(g) = &self.gate {
            g.acquire().await.unwrap().forget();
        }
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| {
                Ok(RunSummary {
                    added: 2,
                    total_in_sync: 2,
                    ..RunSummary::default()
                })
            })
            .map_err(RunError::from)
    }
    async fn forget(
        &self,
        c: &Connection,
        remove_persons: bool,
    ) -> Result<ForgetSummary, RunError> {
        self.forgotten.lock().unwrap().push((c.id, remove_persons));
        Ok(ForgetSummary {
            persons_removed: if remove_persons { 2 } else { 0 },
            persons_kept: if remove_persons { 0 } else { 2 },
        })
    }
}

/// How a test authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

/// One request through the router; returns the status and the JSON body (Null if none).
pub async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    match auth {
        Auth::None => {}
        Auth::Basic(u, p) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header("authorization", format!("Basic {b64}"));
        }
        Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}
