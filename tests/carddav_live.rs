//! The CardDAV client against live Radicale 3.9 and Xandikos 0.4 (provisioned under `target/`
//! by `scripts/provision-peers`, started on free loopback ports by `tests/support`): discovery
//! from the server root, a full pull of 1,000 cards, incremental pulls after adds,
//! modifications and deletions, a one-request no-change pull, recovery from an invalidated
//! token, a 412 on a stale `If-Match`, and pushing creates, updates and deletes.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use cardbridge::providers::carddav::{
    discover, Auth, CarddavProvider, Cursor, DavClient, DiscoveryStart, NoDns, Profile,
};
use cardbridge::providers::{Page, Provider, ProviderError, PullKind, RemoteChange};
use futures::StreamExt as _;
use support::{Radicale, Xandikos};
use url::Url;

const CARDS: usize = 1000;

fn card(uid: &str, rev: u32) -> String {
    format!("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nN:Person;{uid};;;\r\nFN:{uid} Person {rev}\r\nEMAIL;TYPE=INTERNET:{uid}@example.com\r\nTEL;TYPE=CELL:+1555{rev:04}\r\nEND:VCARD\r\n")
}

/// PUTs `uids` into `book` with a few requests in flight.
async fn populate(book: &str, auth: Option<(&str, &str)>, uids: Vec<String>) {
    let client = reqwest::Client::new();
    futures::stream::iter(uids)
        .map(|uid| {
            let client = client.clone();
            async move {
                let mut req = client
                    .put(format!("{book}{uid}.vcf"))
                    .header("content-type", "text/vcard; charset=utf-8")
                    .body(card(&uid, 0));
                if let Some((u, p)) = auth {
                    req = req.basic_auth(u, Some(p));
                }
                let resp = req.send().await.unwrap();
                assert!(resp.status().is_success(), "PUT {uid}: {}", resp.status());
            }
        })
        .buffer_unordered(6)
        .collect::<Vec<_>>()
        .await;
}

async fn raw(
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
    body: Option<String>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "text/vcard; charset=utf-8")
            .body(b);
    }
    req.send().await.unwrap()
}

fn apply(state: &mut BTreeMap<String, String>, pages: &[Page]) {
    let full = pages
        .first()
        .is_some_and(|p| p.kind == PullKind::FullListing);
    let mut mentioned = std::collections::BTreeSet::new();
    for p in pages {
        for c in &p.changes {
            match c {
                RemoteChange::Upsert(i) => {
                    mentioned.insert(i.id.clone());
                    state.insert(i.id.clone(), i.etag.clone().unwrap_or_default());
                }
                RemoteChange::Delete { id } => {
                    state.remove(id);
                }
                RemoteChange::Invalid { id, reason } => panic!("{id} unreadable: {reason}"),
            }
        }
    }
    if full {
        state.retain(|k, _| mentioned.contains(k));
    }
}

async fn pull_all(
    p: &CarddavProvider,
    group: &str,
    cursor: Option<String>,
) -> (Vec<Page>, Option<String>) {
    let mut pages = Vec::new();
    let mut cursor = cursor;
    loop {
        let page = p.pull(group, cursor.as_deref()).await.unwrap();
        cursor = page.cursor.clone();
        let done = page.complete;
        pages.push(page);
        if done {
            return (pages, cursor);
        }
    }
}

fn upserted(pages: &[Page]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| match c {
            RemoteChange::Upsert(i) => Some(i.id.clone()),
            _ => None,
        })
        .collect()
}

/// The whole scenario against one server.
async fn exercise(root: &str, book: &str, auth: Auth, raw_auth: Option<(&str, &str)>) {
    let root_url = Url::parse(root).unwrap();
    let p = CarddavProvider::connect(root_url.clone(), auth.clone(), Profile::generic()).unwrap();

    // Discovery from the root finds the book.
    let client = DavClient::new(root_url.clone(), auth).unwrap();
    let d = discover(&client, &DiscoveryStart::Url(root_url), &NoDns)
        .await
        .unwrap();
    assert!(d.books.iter().any(|b| b.url.as_str() == book), "{d:?}");
    let groups = p.sync_groups().await.unwrap();
    assert!(
        groups.iter().any(|g| g.id == book && g.writable),
        "{groups:?}"
    );

    // Full pull of 1,000 cards.
    let uids: Vec<String> = (0..CARDS).map(|i| format!("u{i:04}")).collect();
    populate(book, raw_auth, uids).await;
    let (pages, cursor) = pull_all(&p, book, None).await;
    assert_eq!(pages[0].kind, PullKind::FullListing);
    let ids = upserted(&pages);
    assert_eq!(ids.len(), CARDS);
    let mut state = BTreeMap::new();
    apply(&mut state, &pages);
    assert_eq!(state.len(), CARDS);
    let sample = pages
        .iter()
        .flat_map(|p| &p.changes)
        .find_map(|c| match c {
            RemoteChange::Upsert(i) if i.id.ends_with("u0007.vcf") => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(cardbridge::vcard::uid(&sample.card), Some("u0007"));

    // No change: one request, nothing reported.
    let before = p.client().request_count();
    let (pages, cursor) = pull_all(&p, book, cursor).await;
    assert_eq!(p.client().request_count() - before, 1);
    assert!(pages[0].changes.is_empty());
    assert_eq!(pages[0].kind, PullKind::Incremental);

    // Adds, modifications, deletions.
    for uid in ["n1", "n2", "n3"] {
        assert!(raw(
            "PUT",
            &format!("{book}{uid}.vcf"),
            raw_auth,
            Some(card(uid, 1))
        )
        .await
        .status()
        .is_success());
    }
    for uid in ["u0001", "u0002"] {
        assert!(raw(
            "PUT",
            &format!("{book}{uid}.vcf"),
            raw_auth,
            Some(card(uid, 2))
        )
        .await
        .status()
        .is_success());
    }
    for uid in ["u0003", "u0004"] {
        assert!(raw("DELETE", &format!("{book}{uid}.vcf"), raw_auth, None)
            .await
            .status()
            .is_success());
    }
    let (pages, cursor) = pull_all(&p, book, cursor).await;
    assert_eq!(pages[0].kind, PullKind::Incremental);
    let mut up = upserted(&pages);
    up.sort();
    let path = Url::parse(book).unwrap().path().to_string();
    let want: Vec<String> = ["n1", "n2", "n3", "u0001", "u0002"]
        .iter()
        .map(|u| format!("{path}{u}.vcf"))
        .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(up, want_sorted);
    let mut deleted: Vec<String> = pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| match c {
            RemoteChange::Delete { id } => Some(id.clone()),
            _ => None,
        })
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        [format!("{path}u0003.vcf"), format!("{path}u0004.vcf")]
    );
    apply(&mut state, &pages);
    assert_eq!(state.len(), CARDS + 1);

    // Push: create, update, a stale If-Match, delete.
    let new = cardbridge::vcard::read_normalized(&card("pushed", 1))
        .cards
        .remove(0);
    let w = p.create(book, &new, "crm-1").await.unwrap();
    assert_eq!(w.id, format!("{path}pushed.vcf"));
    assert!(w.etag.is_some());
    let again = p.create(book, &new, "crm-1").await.unwrap_err();
    assert!(
        matches!(again, ProviderError::Conflict),
        "If-None-Match: * on an existing card: {again:?}"
    );
    let changed = cardbridge::vcard::read_normalized(&card("pushed", 2))
        .cards
        .remove(0);
    let w2 = p
        .update(book, &w.id, w.etag.as_deref(), &changed)
        .await
        .unwrap();
    assert_ne!(w2.etag, w.etag);
    let stale = p
        .update(book, &w.id, w.etag.as_deref(), &changed)
        .await
        .unwrap_err();
    assert!(matches!(stale, ProviderError::Conflict), "{stale:?}");
    let stale_del = p.delete(book, &w.id, w.etag.as_deref()).await.unwrap_err();
    assert!(
        matches!(stale_del, ProviderError::Conflict),
        "{stale_del:?}"
    );
    let fetched = p.fetch(book, &w.id).await.unwrap().unwrap();
    assert_eq!(fetched.etag, w2.etag);
    // Our own writes come back with the ETags we already know.
    let (pages, cursor) = pull_all(&p, book, cursor).await;
    let ours = pages.iter().flat_map(|p| &p.changes).find_map(|c| match c {
        RemoteChange::Upsert(i) if i.id == w.id => Some(i.etag.clone()),
        _ => None,
    });
    assert_eq!(ours, Some(w2.etag.clone()));
    p.delete(book, &w.id, w2.etag.as_deref()).await.unwrap();
    assert!(p.fetch(book, &w.id).await.unwrap().is_none());
    let (pages, _cursor) = pull_all(&p, book, cursor).await;
    assert!(pages
        .iter()
        .flat_map(|p| &p.changes)
        .any(|c| matches!(c, RemoteChange::Delete { id } if *id == w.id)));

    // An invalidated token: a full listing of what is there.
    let bogus = match Cursor::decode(&_cursor.unwrap()).unwrap() {
        Cursor::Sync { token, .. } => Cursor::Sync {
            token: format!("{token}-invalidated"),
            full: false,
            members: None,
        },
        other => panic!("expected a sync cursor, got {other:?}"),
    };
    let (pages, _) = pull_all(&p, book, Some(bogus.encode())).await;
    assert_eq!(pages[0].kind, PullKind::FullListing);
    let mut fresh = BTreeMap::new();
    apply(&mut fresh, &pages);
    assert_eq!(fresh.len(), CARDS + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale() {
    let r = Radicale::start();
    let book = r.new_addressbook("contacts");
    let auth = Auth::Basic {
        user: r.user.clone(),
        password: r.password.clone(),
    };
    exercise(&r.url, &book, auth, Some((&r.user, &r.password))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xandikos() {
    let x = Xandikos::start();
    exercise(&x.url, &x.addressbook_url, Auth::None, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xandikos_needs_content_type_and_takes_non_uri_tokens() {
    let x = Xandikos::start();
    // Without Content-Type, Xandikos refuses a PROPFIND; our client always sends one.
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            &x.addressbook_url,
        )
        .header("depth", "0")
        .body(cardbridge::dav::discovery::principal_request().body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let p = CarddavProvider::connect(Url::parse(&x.url).unwrap(), Auth::None, Profile::generic())
        .unwrap();
    let (pages, cursor) = pull_all(&p, &x.addressbook_url, None).await;
    assert!(pages[0].complete);
    let token = match Cursor::decode(&cursor.unwrap()).unwrap() {
        Cursor::Sync { token, .. } => token,
        other => panic!("{other:?}"),
    };
    assert!(
        Url::parse(&token).is_err(),
        "Xandikos tokens are not URIs: {token}"
    );
}
