//! The cost shape behind docs/BENCHMARKS.md, "Scaling", checked without a clock: operations
//! that should cost O(changes) must read as many store entries by scan in a small collection as
//! in a larger one. A [`CountingStore`] around the crate's in-memory store counts the entries
//! every scan returns, per keyspace; each scenario runs at two sizes and compares the counts.
//!
//! - The CardDAV server: an incremental `sync-collection` (one change, one deletion) and the
//!   GET and PUT of one card.
//! - The sync engine: a no-change run and a run after two remote changes; the connection's
//!   `total_in_sync` stays the exact count of linked items all the same (and is recounted
//!   after a run that did not finish).
#![allow(clippy::unwrap_used)]

mod sync_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use base64::Engine as _;
use cardbridge::crm::{MappingConfig, Visibility};
use cardbridge::dav::names;
use cardbridge::dav::sync_collection::SyncCollection;
use cardbridge::providers::ProviderKind;
use cardbridge::server::{app, AppState, ServerConfig};
use cardbridge::store::{Batch, ScanPage, Space, Store, StoreError};
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::execute;
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::Direction;
use cardbridge::sync::{state, stats};
use sync_support::{card, crm_with_users, FakeBook, MapStore};
use tower::ServiceExt;

/// The in-memory store, counting the entries its scans return per keyspace.
#[derive(Default)]
struct CountingStore {
    inner: MapStore,
    scanned: Mutex<BTreeMap<String, usize>>,
}

impl CountingStore {
    /// The counts so far, and zero them.
    fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.scanned.lock().unwrap())
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(space, key).await
    }
    async fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        let page = self.inner.scan(space, prefix, after, limit).await?;
        *self
            .scanned
            .lock()
            .unwrap()
            .entry(space.to_owned())
            .or_default() += page.entries.len();
        Ok(page)
    }
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(batch).await
    }
    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        self.inner.next_id(sequence).await
    }
}

// ---------------------------------------------------------------------------- server

const COLLECTION: &str = "/dav/addressbooks/alice/persons/";

fn auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    )
}

fn vcard(i: usize, note: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:scale-{i}\r\nFN:Person {i}\r\n\
         EMAIL:person{i}@example.com\r\nNOTE:{note}\r\nEND:VCARD\r\n"
    )
}

/// A client-chosen name, unlike the server's default `crm-<id>.vcf`.
fn name(i: usize) -> String {
    format!("chosen-{i}.vcf")
}

async fn request(router: &axum::Router, req: http::Request<Body>) -> (u16, Vec<u8>) {
    let r = router.clone().oneshot(req).await.unwrap();
    let status = r.status().as_u16();
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, body)
}

async fn put(router: &axum::Router, i: usize, note: &str) -> u16 {
    let req = http::Request::put(format!("{COLLECTION}{}", name(i)))
        .header("Authorization", auth())
        .header("Content-Type", "text/vcard")
        .body(Body::from(vcard(i, note)))
        .unwrap();
    request(router, req).await.0
}

async fn sync(router: &axum::Router, token: Option<&str>) -> (Vec<String>, Vec<String>, String) {
    let sc = SyncCollection::new(token, &[names::GETETAG]);
    let (parts, body) = sc.build_request(COLLECTION).unwrap().into_parts();
    let mut req = http::Request::builder()
        .method(parts.method)
        .uri(parts.uri)
        .header("Authorization", auth());
    for (k, v) in &parts.headers {
        req = req.header(k, v);
    }
    let (status, body) = request(router, req.body(Body::from(body)).unwrap()).await;
    assert_eq!(status, 207, "{}", String::from_utf8_lossy(&body));
    let res = SyncCollection::parse_response(&body).unwrap();
    (
        res.changed.iter().map(|c| c.href.clone()).collect(),
        res.removed.clone(),
        res.new_token.unwrap(),
    )
}

/// Entries scanned by the server's requests in a collection of `n` cards the client named:
/// (incremental sync after one change and one deletion, GET of one card, PUT of one card).
async fn server_scans(n: usize) -> [BTreeMap<String, usize>; 3] {
    let store = Arc::new(CountingStore::default());
    let (crm, _alice, _) = crm_with_users(store.clone()).await;
    let router = app(AppState::new(Arc::new(crm), ServerConfig::default()));
    for i in 0..n {
        assert_eq!(put(&router, i, "first").await, 201);
    }
    let (listed, _, token) = sync(&router, None).await;
    assert_eq!(listed.len(), n);

    assert_eq!(put(&router, 1, "second").await, 204);
    let req = http::Request::delete(format!("{COLLECTION}{}", name(2)))
        .header("Authorization", auth())
        .body(Body::empty())
        .unwrap();
    assert_eq!(request(&router, req).await.0, 204);
    // Catch the view up first: the sync request itself is what is counted.
    let _ = sync(&router, Some(&token)).await;
    store.take();
    let (changed, removed, _) = sync(&router, Some(&token)).await;
    let sync_scans = store.take();
    // The answer names the cards by the names the client chose.
    assert_eq!(changed, vec![format!("{COLLECTION}{}", name(1))]);
    assert_eq!(removed, vec![format!("{COLLECTION}{}", name(2))]);

    let req = http::Request::get(format!("{COLLECTION}{}", name(3)))
        .header("Authorization", auth())
        .body(Body::empty())
        .unwrap();
    let (status, body) = request(&router, req).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("UID:scale-3"));
    let get_scans = store.take();

    assert_eq!(put(&router, 4, "third").await, 204);
    let put_scans = store.take();
    [sync_scans, get_scans, put_scans]
}

#[tokio::test]
async fn an_incremental_sync_and_one_card_get_and_put_scan_as_much_at_60_cards_as_at_10() {
    let small = server_scans(10).await;
    let large = server_scans(60).await;
    for (what, (s, l)) in ["incremental sync", "GET", "PUT"]
        .iter()
        .zip(small.iter().zip(large.iter()))
    {
        assert_eq!(
            s, l,
            "{what}: entries scanned per keyspace at 10 cards vs at 60 cards"
        );
    }
}

// ---------------------------------------------------------------------------- engine

fn connection(user: u64) -> SyncConnection {
    SyncConnection {
        id: 5,
        user_id: user,
        provider: ProviderKind::Carddav,
        group: "book".into(),
        direction: Direction::TwoWay,
        policy: Policy::NewestWins,
        visibility: Visibility::EntireCompany,
        mapping: MappingConfig::default(),
        default_region: Some("US".into()),
    }
}

fn book_card(i: usize, title: &str) -> cardbridge::vcard::VCard {
    card(
        &format!("eng-{i}"),
        &format!("Engine Person {i}"),
        &[&format!("eng{i}@example.net")],
        &[&format!("TITLE:{title}")],
    )
}

/// Linked items, counted the slow way.
async fn linked(store: &dyn Store, conn: u64) -> u64 {
    state::all_items(store, conn)
        .await
        .unwrap()
        .iter()
        .filter(|i| i.remote.is_some() && i.person.is_some())
        .count() as u64
}

/// Entries scanned by (a no-change run, a run after two remote changes) of a connection of
/// `n` cards; checks `total_in_sync` after every run.
async fn engine_scans(n: usize) -> [BTreeMap<String, usize>; 2] {
    let store = Arc::new(CountingStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let book = FakeBook::new(10);
    for i in 0..n {
        book.put(&format!("c{i}"), book_card(i, "first"));
    }
    let conn = connection(alice.id);
    let run = || execute::run(&conn, book.as_ref(), &crm, store.as_ref());
    let in_sync = || async {
        stats::load(store.as_ref(), conn.id)
            .await
            .unwrap()
            .total_in_sync
    };
    let s = run().await.unwrap();
    assert_eq!(s.counts.crm.added, n as u64);
    assert_eq!(in_sync().await, n as u64);

    store.take();
    let s = run().await.unwrap();
    assert_eq!(
        s.counts.added() + s.counts.updated() + s.counts.deleted(),
        0
    );
    let none = store.take();
    assert_eq!(in_sync().await, n as u64);

    book.put("c1", book_card(1, "second"));
    book.put("c2", book_card(2, "second"));
    store.take();
    let s = run().await.unwrap();
    assert_eq!(s.counts.crm.updated, 2);
    let changed = store.take();
    assert_eq!(in_sync().await, n as u64);

    // Items come and go: the kept count follows the slow count.
    book.remove("c3");
    book.put("new-a", book_card(1000, "new"));
    book.put("new-b", book_card(1001, "new"));
    run().await.unwrap();
    assert_eq!(in_sync().await, linked(store.as_ref(), conn.id).await);
    assert_eq!(in_sync().await, n as u64 + 1);
    let p = crm
        .find_by_email(alice.id, "eng4@example.net")
        .await
        .unwrap();
    let pid = p.first().copied().unwrap();
    crm.delete_person(pid, None).await.unwrap();
    run().await.unwrap();
    assert_eq!(in_sync().await, linked(store.as_ref(), conn.id).await);
    assert_eq!(in_sync().await, n as u64);

    // A run that never finished (the process died) leaves the count untrusted: the next run
    // counts again.
    let mut st = stats::load(store.as_ref(), conn.id).await.unwrap();
    st.total_in_sync = 999_999;
    if let Some(r) = st.last_run.as_mut() {
        r.outcome = stats::Outcome::Running;
        r.ended = None;
    }
    let mut b = Batch::new();
    stats::stage(&mut b, conn.id, &st).unwrap();
    store.commit(b).await.unwrap();
    run().await.unwrap();
    assert_eq!(in_sync().await, n as u64);
    [none, changed]
}

#[tokio::test]
async fn a_no_change_run_and_a_two_change_run_scan_as_much_at_60_cards_as_at_10() {
    let small = engine_scans(10).await;
    let large = engine_scans(60).await;
    for (what, (s, l)) in ["no-change run", "run after 2 remote changes"]
        .iter()
        .zip(small.iter().zip(large.iter()))
    {
        assert_eq!(
            s, l,
            "{what}: entries scanned per keyspace at 10 cards vs at 60 cards"
        );
    }
}
