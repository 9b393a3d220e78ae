//! Integration tests of the Microsoft Graph provider against the fake Graph in
//! `tests/fakes/graph.rs`: full and incremental delta sync, resync after 410, conflicts,
//! throttling, the per-mailbox concurrency cap, slot overflow, folders and token refresh.
#![allow(clippy::unwrap_used)]

#[path = "fakes/graph.rs"]
mod graph_fake;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use calcard::vcard::VCardProperty;
use cardbridge::providers::graph::mapping::{self, CRM_ID_PROPERTY_ID};
use cardbridge::providers::graph::{GraphConfig, GraphProvider, CURSOR_DELTA};
use cardbridge::providers::http::{AccessTokenSource, RetryPolicy};
use cardbridge::providers::{Page, Provider, ProviderError, PullKind, RemoteChange, SyncGroupKind};
use cardbridge::vcard::VCard;
use graph_fake::FakeGraph;
use serde_json::json;

const FOLDER: &str = "AAMkAGI2TAAA=";

/// A token source that hands out `token`, and after an `invalidate` hands out `after`.
struct StaticTokens {
    token: Mutex<String>,
    after: Option<String>,
    invalidated: AtomicUsize,
}

impl StaticTokens {
    fn new(token: &str, after: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            token: Mutex::new(token.into()),
            after: after.map(str::to_string),
            invalidated: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl AccessTokenSource for StaticTokens {
    async fn access_token(&self) -> Result<String, ProviderError> {
        Ok(self.token.lock().unwrap().clone())
    }
    async fn invalidate(&self, token: &str) {
        self.invalidated.fetch_add(1, Ordering::SeqCst);
        let mut t = self.token.lock().unwrap();
        if *t == token {
            if let Some(a) = &self.after {
                *t = a.clone();
            }
        }
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
    }
}

fn provider_for(
    fake: &FakeGraph,
    mailbox: &str,
    page_size: u32,
    tokens: Arc<StaticTokens>,
) -> GraphProvider {
    let mut cfg = GraphConfig::new(mailbox);
    cfg.base_url = fake.base.clone();
    cfg.page_size = page_size;
    cfg.retry = fast_retry();
    GraphProvider::new(cfg, tokens).unwrap()
}

async fn setup(page_size: u32) -> (FakeGraph, GraphProvider) {
    let fake = FakeGraph::start("tok").await;
    fake.add_folder(FOLDER, "Contacts", None);
    // A unique mailbox per test so concurrent tests do not share a limiter.
    let mailbox = format!("user-{}@contoso.com", uuid::Uuid::new_v4());
    let p = provider_for(&fake, &mailbox, page_size, StaticTokens::new("tok", None));
    (fake, p)
}

/// Pulls until the run completes; returns every page.
async fn pull_all(p: &GraphProvider, cursor: Option<String>) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut cursor = cursor;
    loop {
        let page = p.pull(FOLDER, cursor.as_deref()).await.unwrap();
        let done = page.complete;
        cursor = page.cursor.clone();
        pages.push(page);
        if done {
            return pages;
        }
        assert!(pages.len() < 1000, "pull never completed");
    }
}

fn upsert_ids(pages: &[Page]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| match c {
            RemoteChange::Upsert(i) => Some(i.id.clone()),
            _ => None,
        })
        .collect()
}

fn fn_of(card: &VCard) -> String {
    card.property(&VCardProperty::Fn)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .unwrap_or_default()
        .to_string()
}

fn card(text: &str) -> VCard {
    VCard::parse(text).unwrap()
}

#[tokio::test]
async fn full_sync_of_2000_contacts_across_pages() {
    let (fake, p) = setup(150).await;
    let ids = fake.seed(FOLDER, 0, 2000);
    let pages = pull_all(&p, None).await;
    assert!(
        pages.len() >= 14,
        "expected many pages, got {}",
        pages.len()
    );
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    assert!(pages[..pages.len() - 1].iter().all(|p| !p.complete));
    let got = upsert_ids(&pages);
    assert_eq!(got.len(), 2000);
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
    let last = pages.last().unwrap().cursor.clone().unwrap();
    assert!(
        last.starts_with(CURSOR_DELTA) && last.contains("$deltatoken="),
        "{last}"
    );

    // One photo GET per contact the listing returned (O(changes)), none for anything else.
    let (photos, reqs): (Vec<_>, Vec<_>) = fake.requests().into_iter().partition(|r| r.is_photo());
    assert_eq!(photos.len(), 2000);
    // $select on the first call only; Prefer on every call; links followed verbatim.
    assert_eq!(reqs.len(), pages.len());
    assert!(reqs[0].uri.contains("%24select=") || reqs[0].uri.contains("$select="));
    assert!(reqs[1..]
        .iter()
        .all(|r| !r.uri.contains("select") && r.uri.contains("$skiptoken=")));
    assert!(reqs
        .iter()
        .all(|r| r.prefer.as_deref() == Some("odata.maxpagesize=150")));

    // Mapped content.
    let first = pages[0]
        .changes
        .iter()
        .find_map(|c| match c {
            RemoteChange::Upsert(i) if i.id == ids[0] => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(fn_of(&first.card), "Given0 Sur0");
    assert_eq!(
        first.etag,
        fake.contact(&ids[0]).unwrap()["@odata.etag"]
            .as_str()
            .map(str::to_string)
    );
    assert_eq!(first.card.properties(&VCardProperty::Tel).count(), 4);
}

#[tokio::test]
async fn incremental_sync_reports_adds_updates_and_deletes_through_empty_pages() {
    let (fake, p) = setup(100).await;
    let ids = fake.seed(FOLDER, 0, 30);
    let cursor = pull_all(&p, None).await.last().unwrap().cursor.clone();

    let new_id = fake.put_contact(
        FOLDER,
        json!({"displayName": "New Person", "givenName": "New"}),
    );
    fake.edit_contact(&ids[3], json!({"displayName": "Renamed Three"}));
    fake.delete_contact(&ids[7]);
    fake.set_empty_pages(2);

    let pages = pull_all(&p, cursor).await;
    assert!(pages.len() >= 3, "empty pages expected first");
    assert!(pages[0].changes.is_empty() && !pages[0].complete);
    assert!(pages.iter().all(|p| p.kind == PullKind::Incremental));
    let changes: Vec<&RemoteChange> = pages.iter().flat_map(|p| &p.changes).collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    let mut seen_new = false;
    let mut seen_edit = false;
    let mut seen_delete = false;
    for c in changes {
        match c {
            RemoteChange::Upsert(i) if i.id == new_id => {
                seen_new = fn_of(&i.card) == "New Person";
            }
            RemoteChange::Upsert(i) if i.id == ids[3] => {
                seen_edit = fn_of(&i.card) == "Renamed Three";
            }
            RemoteChange::Delete { id } if *id == ids[7] => seen_delete = true,
            other => panic!("unexpected change {other:?}"),
        }
    }
    assert!(seen_new && seen_edit && seen_delete);

    // Nothing changed since: an empty incremental run.
    fake.set_empty_pages(0);
    let cursor = pages.last().unwrap().cursor.clone();
    let pages = pull_all(&p, cursor).await;
    assert!(pages.iter().all(|p| p.changes.is_empty()));
}

#[tokio::test]
async fn partial_update_rows_are_read_in_full() {
    let (fake, p) = setup(100).await;
    let ids = fake.seed(FOLDER, 0, 3);
    let cursor = pull_all(&p, None).await.last().unwrap().cursor.clone();
    fake.edit_contact(&ids[1], json!({"jobTitle": "CFO"}));
    fake.set_partial_updates(true);
    let pages = pull_all(&p, cursor).await;
    let item = pages
        .iter()
        .flat_map(|p| &p.changes)
        .find_map(|c| match c {
            RemoteChange::Upsert(i) => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(item.id, ids[1]);
    assert!(item.etag.is_some());
    let title = item.card.property(&VCardProperty::Title).unwrap();
    assert_eq!(title.values[0].as_text(), Some("CFO"));
    assert_eq!(item.card.properties(&VCardProperty::Email).count(), 1);
}

#[tokio::test]
async fn expired_skiptoken_restarts_as_full_listing_without_duplicate_ids() {
    let (fake, p) = setup(20).await;
    fake.seed(FOLDER, 0, 50);
    fake.set_duplicates(true);
    let first = p.pull(FOLDER, None).await.unwrap();
    assert!(!first.complete);
    fake.expire_sync_state("SyncStateNotFound");

    let pages = pull_all(&p, first.cursor.clone()).await;
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    // Replays repeat entries across pages, never inside one page.
    for page in &pages {
        let ids = upsert_ids(std::slice::from_ref(page));
        assert_eq!(ids.len(), ids.iter().collect::<HashSet<_>>().len());
    }
    let all = upsert_ids(&pages);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 50);
    let gone: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 410)
        .collect();
    assert_eq!(gone.len(), 1);
}

#[tokio::test]
async fn resync_required_on_delta_link_restarts_as_full_listing() {
    let (fake, p) = setup(100).await;
    fake.seed(FOLDER, 0, 5);
    let cursor = pull_all(&p, None).await.last().unwrap().cursor.clone();
    fake.expire_sync_state("resyncRequired");
    let pages = pull_all(&p, cursor).await;
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    assert_eq!(upsert_ids(&pages).len(), 5);
    // The restart carries $select again (it is a new first call).
    let reqs = fake.requests();
    let after_gone = reqs.iter().skip_while(|r| r.status != 410).nth(1).unwrap();
    assert!(after_gone.uri.contains("select"));
    // And the next incremental run works from the new delta link.
    let pages = pull_all(&p, pages.last().unwrap().cursor.clone()).await;
    assert!(pages
        .iter()
        .all(|p| p.kind == PullKind::Incremental && p.changes.is_empty()));
}

#[tokio::test]
async fn stale_etag_is_a_conflict() {
    let (fake, p) = setup(100).await;
    let c = card("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ann Lee\r\nN:Lee;Ann;;;\r\nEMAIL:ann@example.com\r\nEND:VCARD\r\n");
    let w = p.create(FOLDER, &c, "crm-1").await.unwrap();
    let stale = w.etag.clone().unwrap();
    fake.edit_contact(&w.id, json!({"jobTitle": "Changed in Outlook"}));

    let edited = card("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ann B. Lee\r\nEND:VCARD\r\n");
    let err = p
        .update(FOLDER, &w.id, Some(&stale), &edited)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Conflict), "{err:?}");
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.status, 412);
    assert_eq!(last.if_match.as_deref(), Some(stale.as_str()));
    assert!(matches!(
        p.delete(FOLDER, &w.id, Some(&stale)).await.unwrap_err(),
        ProviderError::Conflict
    ));

    // Re-read, then the write with the fresh etag goes through.
    let fresh = p.fetch(FOLDER, &w.id).await.unwrap().unwrap();
    let w2 = p
        .update(FOLDER, &w.id, fresh.etag.as_deref(), &edited)
        .await
        .unwrap();
    assert_ne!(w2.etag, fresh.etag);
    assert_eq!(fake.contact(&w.id).unwrap()["displayName"], "Ann B. Lee");
    // PATCH cleared what the card no longer has.
    assert!(fake.contact(&w.id).unwrap().get("jobTitle").is_none());
    p.delete(FOLDER, &w.id, w2.etag.as_deref()).await.unwrap();
    assert!(fake.contact(&w.id).is_none());
    assert!(p.fetch(FOLDER, &w.id).await.unwrap().is_none());
}

#[tokio::test]
async fn own_writes_replay_with_the_written_etag_and_keep_the_crm_id() {
    let (fake, p) = setup(100).await;
    let cursor = pull_all(&p, None).await.last().unwrap().cursor.clone();
    let c = card("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Bo Ek\r\nEMAIL:bo@example.se\r\nEND:VCARD\r\n");
    let w = p.create(FOLDER, &c, "person-42").await.unwrap();
    let stored = fake.contact(&w.id).unwrap();
    assert_eq!(
        stored["singleValueExtendedProperties"],
        json!([{"id": CRM_ID_PROPERTY_ID, "value": "person-42"}])
    );
    let pages = pull_all(&p, cursor).await;
    let replay = pages
        .iter()
        .flat_map(|p| &p.changes)
        .find_map(|c| match c {
            RemoteChange::Upsert(i) if i.id == w.id => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        replay.etag, w.etag,
        "the engine recognises its own write by etag"
    );
    assert_eq!(replay.card, w.card);
    // The fetch path expands the extended property.
    let fetch_req = {
        p.fetch(FOLDER, &w.id).await.unwrap().unwrap();
        fake.requests()
            .into_iter()
            .rfind(|r| !r.is_photo())
            .unwrap()
    };
    assert!(fetch_req.uri.contains("expand"));
}

#[tokio::test]
async fn throttling_waits_for_retry_after() {
    let (fake, p) = setup(100).await;
    let id = fake.put_contact(FOLDER, json!({"displayName": "T"}));
    fake.throttle_next(1, 1);
    let item = p.fetch(FOLDER, &id).await.unwrap().unwrap();
    assert_eq!(fn_of(&item.card), "T");
    let reqs: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| !r.is_photo())
        .collect();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].status, 429);
    assert_eq!(reqs[1].status, 200);
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");

    // Throttled beyond the retry budget surfaces as Throttled with the server's delay.
    fake.throttle_next(10, 0);
    let err = p.fetch(FOLDER, &id).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Throttled { retry_after: Some(d) } if d == Duration::ZERO),
        "{err:?}"
    );
}

#[tokio::test]
async fn never_more_than_four_requests_in_flight_per_mailbox() {
    let fake = FakeGraph::start("tok").await;
    fake.add_folder(FOLDER, "Contacts", None);
    let id = fake.put_contact(FOLDER, json!({"displayName": "C"}));
    fake.set_latency(Duration::from_millis(80));
    // Two providers (e.g. two sync groups) of the same mailbox share the cap.
    let mailbox = format!("shared-{}@contoso.com", uuid::Uuid::new_v4());
    let a = Arc::new(provider_for(
        &fake,
        &mailbox,
        10,
        StaticTokens::new("tok", None),
    ));
    let b = Arc::new(provider_for(
        &fake,
        &mailbox.to_uppercase(),
        10,
        StaticTokens::new("tok", None),
    ));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let p = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = id.clone();
        tasks.push(tokio::spawn(async move { p.fetch(FOLDER, &id).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    // Each fetch is the contact and its photo (404: it has none).
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 32, "no request was throttled and retried");
    assert!(reqs.iter().all(|r| if r.is_photo() {
        r.status == 404
    } else {
        r.status == 200
    }));
    assert_eq!(fake.max_in_flight(), 4);
}

#[tokio::test]
async fn overflow_is_not_sent_and_is_kept_in_the_written_card() {
    let (fake, p) = setup(100).await;
    let c = card(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Many Slots\r\nEMAIL:a@x.example\r\nEMAIL:b@x.example\r\n\
         EMAIL;PREF=1:primary@x.example\r\nEMAIL:c@x.example\r\nEMAIL:d@x.example\r\n\
         TEL;TYPE=work:1\r\nTEL;TYPE=work:2\r\nTEL;TYPE=work:3\r\nTEL;TYPE=cell:4\r\nTEL;TYPE=cell:5\r\nEND:VCARD\r\n",
    );
    let overflow = mapping::to_graph(&c).overflow;
    assert_eq!(overflow.len(), 4);
    let w = p.create(FOLDER, &c, "crm-9").await.unwrap();
    let stored = fake.contact(&w.id).unwrap();
    let emails: Vec<&str> = stored["emailAddresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["primary@x.example", "a@x.example", "b@x.example"]);
    assert_eq!(stored["businessPhones"], json!(["1", "2"]));
    assert_eq!(stored["mobilePhone"], json!("4"));
    // Written.card still has every email and phone, so the engine sees no deletion.
    assert_eq!(w.card.properties(&VCardProperty::Email).count(), 5);
    assert_eq!(w.card.properties(&VCardProperty::Tel).count(), 5);
    for o in &overflow {
        assert!(w.card.entries.contains(&o.entry));
    }
    // A pulled copy loses them; reattaching against the pushed card restores them.
    let pulled = p.fetch(FOLDER, &w.id).await.unwrap().unwrap();
    assert_eq!(pulled.card.properties(&VCardProperty::Email).count(), 3);
    let merged = mapping::reattach_overflow(&pulled.card, &c);
    assert_eq!(merged.properties(&VCardProperty::Email).count(), 5);
}

#[tokio::test]
async fn folders_and_child_folders_are_sync_groups() {
    let fake = FakeGraph::start("tok").await;
    fake.add_folder("F1", "Customers", None);
    fake.add_folder("F2", "Suppliers", None);
    fake.add_folder("F1a", "EMEA", Some("F1"));
    fake.add_folder("F1a1", "Nordics", Some("F1a"));
    fake.add_folder("F2a", "Retired", Some("F2"));
    let p = provider_for(
        &fake,
        "folders@contoso.com",
        10,
        StaticTokens::new("tok", None),
    );
    let groups = p.sync_groups().await.unwrap();
    let got: Vec<(&str, &str)> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("F1", "Customers"),
            ("F1a", "Customers / EMEA"),
            ("F1a1", "Customers / EMEA / Nordics"),
            ("F2", "Suppliers"),
            ("F2a", "Suppliers / Retired"),
        ]
    );
    assert!(groups
        .iter()
        .all(|g| g.kind == SyncGroupKind::Folder && g.writable));
}

#[tokio::test]
async fn a_401_refreshes_the_token_once() {
    let fake = FakeGraph::start("new-token").await;
    fake.add_folder(FOLDER, "Contacts", None);
    let id = fake.put_contact(FOLDER, json!({"displayName": "R"}));
    let tokens = StaticTokens::new("old-token", Some("new-token"));
    let p = provider_for(&fake, "refresh@contoso.com", 10, tokens.clone());
    assert!(p.fetch(FOLDER, &id).await.unwrap().is_some());
    assert_eq!(tokens.invalidated.load(Ordering::SeqCst), 1);
    let statuses: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| !r.is_photo())
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [401, 200]);

    // A token the server keeps refusing: one refresh, then CredentialsRejected.
    let bad = StaticTokens::new("bad", Some("still-bad"));
    let p = provider_for(&fake, "refresh@contoso.com", 10, bad.clone());
    assert!(matches!(
        p.fetch(FOLDER, &id).await.unwrap_err(),
        ProviderError::CredentialsRejected
    ));
    assert_eq!(bad.invalidated.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fake_pages_have_the_fixture_shape() {
    let (fake, _p) = setup(2).await;
    let ids = fake.seed(FOLDER, 0, 2);
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .bearer_auth("tok")
                .header("prefer", "odata.maxpagesize=2")
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let page_fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/graph/delta-page.json")).unwrap();
    let final_fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/graph/delta-final.json")).unwrap();

    fake.set_empty_pages(1);
    let first = get(format!(
        "{}/me/contactFolders/{FOLDER}/contacts/delta",
        fake.base
    ))
    .await;
    assert_eq!(keys(&first), keys(&page_fixture));
    let second = get(first["@odata.nextLink"].as_str().unwrap().to_string()).await;
    assert_eq!(keys(&second), keys(&final_fixture));
    assert_eq!(second["value"].as_array().unwrap().len(), 2);

    fake.set_empty_pages(0);
    fake.delete_contact(&ids[0]);
    let third = get(second["@odata.deltaLink"].as_str().unwrap().to_string()).await;
    assert_eq!(keys(&third), keys(&final_fixture));
    assert_eq!(third["value"][0], {
        let mut row = final_fixture["value"][0].clone();
        row["id"] = serde_json::Value::String(ids[0].clone());
        row
    });
}

/// A token source whose grant was revoked.
struct RevokedGrant;

#[async_trait]
impl AccessTokenSource for RevokedGrant {
    async fn access_token(&self) -> Result<String, ProviderError> {
        Err(ProviderError::NeedsReauthorization("invalid_grant".into()))
    }
    async fn invalidate(&self, _token: &str) {}
}

#[tokio::test]
async fn a_revoked_grant_surfaces_as_needs_reauthorization_without_requests() {
    let fake = FakeGraph::start("tok").await;
    fake.add_folder(FOLDER, "Contacts", None);
    let mut cfg = GraphConfig::new("revoked@contoso.com");
    cfg.base_url = fake.base.clone();
    cfg.retry = fast_retry();
    let p = GraphProvider::new(cfg, Arc::new(RevokedGrant)).unwrap();
    let err = p.pull(FOLDER, None).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::NeedsReauthorization(_)),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(fake.requests().is_empty());
}

// ------------------------------------------------------------------------------ photos

const PHOTO_JPG: &[u8] = include_bytes!("../fixtures/graph/photo.jpg");

fn photo_requests(fake: &FakeGraph) -> Vec<graph_fake::Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.is_photo())
        .collect()
}

fn photo_of(card: &VCard) -> Option<(String, Vec<u8>)> {
    match cardbridge::vcard::photo::photo(card)? {
        cardbridge::vcard::photo::Photo::Inline { media_type, bytes } => {
            Some((media_type.to_string(), bytes.to_vec()))
        }
        cardbridge::vcard::photo::Photo::Uri(u) => panic!("a URI photo from Graph: {u}"),
    }
}

fn items(pages: &[Page]) -> Vec<cardbridge::providers::RemoteItem> {
    pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| match c {
            RemoteChange::Upsert(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn photos_are_read_for_created_and_updated_contacts_only() {
    let (fake, p) = setup(2).await;
    let ids = fake.seed(FOLDER, 0, 3);
    fake.set_photo(&ids[1], "image/jpeg", PHOTO_JPG);
    let pages = pull_all(&p, None).await;
    let got = items(&pages);
    assert_eq!(got.len(), 3);
    for it in &got {
        if it.id == ids[1] {
            assert_eq!(
                photo_of(&it.card),
                Some(("image/jpeg".into(), PHOTO_JPG.to_vec()))
            );
            let text = cardbridge::vcard::write_v4(&it.card);
            assert!(
                text.contains("PHOTO:data:image/jpeg;base64,/9j/4AAQ"),
                "{text}"
            );
        } else {
            assert_eq!(photo_of(&it.card), None, "{}", it.id);
        }
    }
    // One GET per contact the listing returned, on the folder path; 404 for those without.
    let reqs = photo_requests(&fake);
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert!(reqs.iter().all(|r| r.method == "GET"
        && r.uri
            .contains(&format!("/me/contactFolders/{FOLDER}/contacts/"))));
    assert_eq!(reqs.iter().filter(|r| r.status == 404).count(), 2);
    // One contact changes: one photo GET; nothing changes: none.
    let cursor = pages.last().unwrap().cursor.clone();
    fake.clear_requests();
    fake.edit_contact(&ids[2], json!({"jobTitle": "Boss"}));
    let pages = pull_all(&p, cursor).await;
    assert_eq!(upsert_ids(&pages), vec![ids[2].clone()]);
    assert_eq!(photo_requests(&fake).len(), 1);
    let cursor = pages.last().unwrap().cursor.clone();
    fake.clear_requests();
    let pages = pull_all(&p, cursor).await;
    assert!(upsert_ids(&pages).is_empty());
    assert!(photo_requests(&fake).is_empty());
}

#[tokio::test]
async fn an_oversize_photo_is_left_off_the_card_without_failing_the_pull() {
    let (fake, p) = setup(10).await;
    let ids = fake.seed(FOLDER, 0, 2);
    let big = vec![0xAB; cardbridge::vcard::photo::MAX_PHOTO_BYTES + 1];
    fake.set_photo(&ids[0], "image/jpeg", &big);
    // Exactly at the bound: kept.
    let max = vec![0xCD; cardbridge::vcard::photo::MAX_PHOTO_BYTES];
    fake.set_photo(&ids[1], "image/jpeg", &max);
    let got = items(&pull_all(&p, None).await);
    assert_eq!(got.len(), 2);
    let card_of = |id: &str| &got.iter().find(|i| i.id == id).unwrap().card;
    assert_eq!(photo_of(card_of(&ids[0])), None);
    assert_eq!(
        photo_of(card_of(&ids[1])),
        Some(("image/jpeg".into(), max.clone()))
    );
}

#[tokio::test]
async fn a_changed_photo_is_put_an_unchanged_one_is_not_and_removal_keeps_it() {
    let (fake, p) = setup(10).await;
    let ids = fake.seed(FOLDER, 0, 1);
    let id = ids[0].clone();
    fake.set_photo(&id, "image/jpeg", PHOTO_JPG);
    let held = p.fetch(FOLDER, &id).await.unwrap().unwrap();
    assert!(photo_of(&held.card).is_some());

    // An edit of a phone: no photo request at all, the photo stays.
    fake.clear_requests();
    let mut edited = held.card.clone();
    edited.entries.push(
        cardbridge::vcard::VCardEntry::new(VCardProperty::Tel)
            .with_value("+1 555 0100".to_string()),
    );
    let w = p
        .update_with_base(FOLDER, &id, held.etag.as_deref(), Some(&held.card), &edited)
        .await
        .unwrap();
    assert!(photo_requests(&fake).is_empty(), "{:?}", fake.requests());
    assert_eq!(fake.photo(&id).unwrap().1, PHOTO_JPG);
    assert_eq!(photo_of(&w.card), photo_of(&held.card));

    // A new photo: one PUT with the bytes and their Content-Type, then the new etag is read
    // so the next If-Match is not a false conflict.
    fake.clear_requests();
    let png = b"\x89PNG\r\n\x1a\n-new-photo-".to_vec();
    let entry = cardbridge::vcard::photo::inline_entry(png.clone(), Some("image/png")).unwrap();
    let with_new = cardbridge::vcard::photo::with_photo(&w.card, Some(entry));
    let w2 = p
        .update_with_base(FOLDER, &id, w.etag.as_deref(), Some(&w.card), &with_new)
        .await
        .unwrap();
    let reqs = photo_requests(&fake);
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(reqs[0].content_type.as_deref(), Some("image/png"));
    assert_eq!(reqs[0].body_len, png.len());
    assert_eq!(reqs[0].status, 200);
    assert_eq!(fake.photo(&id), Some(("image/png".into(), png.clone())));
    assert_eq!(photo_of(&w2.card), Some(("image/png".into(), png.clone())));
    assert_eq!(
        w2.etag.as_deref(),
        fake.contact(&id).unwrap()["@odata.etag"].as_str()
    );

    // Our own write comes back in the next delta: its photo is known, not read again.
    let cursor = {
        let pages = pull_all(&p, None).await;
        pages.last().unwrap().cursor.clone()
    };
    fake.clear_requests();
    let w3 = p
        .update_with_base(FOLDER, &id, w2.etag.as_deref(), Some(&w2.card), &w2.card)
        .await
        .unwrap();
    let pages = pull_all(&p, cursor).await;
    let back = items(&pages);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].etag, w3.etag);
    assert_eq!(
        photo_of(&back[0].card),
        Some(("image/png".into(), png.clone()))
    );
    assert!(photo_requests(&fake).is_empty(), "{:?}", fake.requests());

    // Removal: Graph cannot delete a contact photo; nothing is sent and the card says so.
    fake.clear_requests();
    let without = cardbridge::vcard::photo::with_photo(&w3.card, None);
    let w4 = p
        .update_with_base(FOLDER, &id, w3.etag.as_deref(), Some(&w3.card), &without)
        .await
        .unwrap();
    assert!(photo_requests(&fake).is_empty());
    assert_eq!(fake.photo(&id).unwrap().1, png);
    assert_eq!(photo_of(&w4.card), Some(("image/png".into(), png)));
}

#[tokio::test]
async fn a_created_contact_gets_its_photo() {
    let (fake, p) = setup(10).await;
    let c = cardbridge::vcard::read_normalized(&format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Photo Person\r\nPHOTO:data:image/jpeg;base64,{}\r\nEND:VCARD\r\n",
        {
            use base64::Engine as _;
            base64::prelude::BASE64_STANDARD.encode(PHOTO_JPG)
        }
    ))
    .cards
    .remove(0);
    let w = p.create(FOLDER, &c, "crm-9").await.unwrap();
    assert_eq!(
        fake.photo(&w.id),
        Some(("image/jpeg".into(), PHOTO_JPG.to_vec()))
    );
    assert_eq!(
        w.etag.as_deref(),
        fake.contact(&w.id).unwrap()["@odata.etag"].as_str()
    );
}

/// Regression: a photo GET refused with a 4xx (here 403 `ErrorAccessDenied` for one contact)
/// failed the whole pull, so every later run stopped at the same contact. The contact now
/// comes without its photo and the others with theirs.
#[tokio::test]
async fn an_unreadable_photo_leaves_the_contact_without_it_and_the_sync_goes_on() {
    let (fake, p) = setup(10).await;
    let ids = fake.seed(FOLDER, 0, 3);
    fake.set_photo(&ids[0], "image/jpeg", PHOTO_JPG);
    fake.set_photo(&ids[1], "image/jpeg", PHOTO_JPG);
    fake.deny_photo(&ids[1]);
    let pages = pull_all(&p, None).await;
    let got = items(&pages);
    assert_eq!(got.len(), 3);
    for it in &got {
        let expected = (it.id == ids[0]).then(|| ("image/jpeg".to_string(), PHOTO_JPG.to_vec()));
        assert_eq!(photo_of(&it.card), expected, "{}", it.id);
    }
    let denied = fake
        .requests()
        .into_iter()
        .filter(|r| r.is_photo() && r.status == 403)
        .count();
    assert_eq!(denied, 1, "one request, not retried");
}
