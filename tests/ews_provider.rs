//! Integration tests of the EWS provider against the fake Exchange in `tests/fakes/ews.rs`:
//! full and incremental SyncFolderItems, SyncState expiry and recovery, ChangeKey conflicts,
//! throttling waits (asserted against the fake's request times), revoked credentials, bearer
//! refresh, contact folders and Autodiscover.
#![allow(clippy::unwrap_used)]

#[path = "fakes/ews.rs"]
mod ews_fake;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use calcard::vcard::VCardProperty;
use cardbridge::providers::ews::autodiscover::{discover, Candidate};
use cardbridge::providers::ews::{EwsAuth, EwsConfig, EwsProvider, CURSOR_DELTA, CURSOR_FULL};
use cardbridge::providers::http::{AccessTokenSource, NetworkPolicy, RetryPolicy};
use cardbridge::providers::{Page, Provider, ProviderError, PullKind, RemoteChange, SyncGroupKind};
use cardbridge::vcard::VCard;
use ews_fake::{FakeEws, NtlmLeg, CONTACTS_ID};

const FOLDER: &str = "AAMkADc3AAEOAAB=";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
    }
}

fn provider_for(fake: &FakeEws, password: &str, page_size: u32) -> EwsProvider {
    let mut cfg = EwsConfig::basic(fake.ews_url.clone(), "CONTOSO\\jane", password);
    cfg.page_size = page_size;
    cfg.get_item_batch = 50;
    cfg.retry = fast_retry();
    EwsProvider::new(cfg).unwrap()
}

async fn setup(page_size: u32) -> (FakeEws, EwsProvider) {
    let fake = FakeEws::start("CONTOSO\\jane", "s3cret").await;
    fake.add_folder(FOLDER, "Customers", CONTACTS_ID, "IPF.Contact");
    let p = provider_for(&fake, "s3cret", page_size);
    (fake, p)
}

async fn pull_all(p: &EwsProvider, cursor: Option<String>) -> Vec<Page> {
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
    assert_eq!(pages.len(), 14, "2000 contacts in pages of 150");
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    assert!(pages[..13]
        .iter()
        .all(|p| !p.complete && p.cursor.as_deref().unwrap().starts_with(CURSOR_FULL)));
    let last = pages.last().unwrap().cursor.clone().unwrap();
    assert!(last.starts_with(CURSOR_DELTA), "{last}");
    let got = upsert_ids(&pages);
    assert_eq!(got.len(), 2000);
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );

    // The wire: no SyncState on the first call only; GetItem in batches of at most 50.
    let reqs = fake.requests();
    let syncs: Vec<_> = reqs.iter().filter(|r| r.op == "SyncFolderItems").collect();
    assert_eq!(syncs.len(), 14);
    assert!(!syncs[0].had_state && syncs[1..].iter().all(|r| r.had_state));
    assert!(syncs.iter().all(|r| r.count <= 150));
    let gets: Vec<_> = reqs.iter().filter(|r| r.op == "GetItem").collect();
    assert_eq!(gets.iter().map(|r| r.count).sum::<usize>(), 2000);
    assert!(gets.iter().all(|r| r.count <= 50));
    assert!(reqs.iter().all(|r| r.status == 200
        && r.action.as_deref()
            == Some(&*format!(
                "http://schemas.microsoft.com/exchange/services/2006/messages/{}",
                r.op
            ))));

    // Mapped content from the fixture-shaped contacts.
    let first = pages[0]
        .changes
        .iter()
        .find_map(|c| match c {
            RemoteChange::Upsert(i) if i.id == ids[0] => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(fn_of(&first.card), "Given0 Sur0");
    assert_eq!(first.etag, fake.change_key(&ids[0]));
    assert_eq!(first.card.properties(&VCardProperty::Tel).count(), 19);
    assert_eq!(first.card.properties(&VCardProperty::Adr).count(), 3);
}

#[tokio::test]
async fn incremental_sync_reports_adds_updates_and_deletes() {
    let (fake, p) = setup(10).await;
    let ids = fake.seed(FOLDER, 0, 30);
    let cursor = pull_all(&p, None).await.last().unwrap().cursor.clone();

    let new_id = fake.put_contact(
        FOLDER,
        "<t:DisplayName>New Person</t:DisplayName><t:GivenName>New</t:GivenName>",
    );
    fake.edit_contact(&ids[3], "DisplayName", Some("Renamed Three"));
    fake.delete_contact(&ids[7]);

    let pages = pull_all(&p, cursor).await;
    assert!(pages.iter().all(|p| p.kind == PullKind::Incremental));
    let changes: Vec<&RemoteChange> = pages.iter().flat_map(|p| &p.changes).collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    let (mut seen_new, mut seen_edit, mut seen_delete) = (false, false, false);
    for c in changes {
        match c {
            RemoteChange::Upsert(i) if i.id == new_id => {
                seen_new = fn_of(&i.card) == "New Person";
            }
            RemoteChange::Upsert(i) if i.id == ids[3] => {
                seen_edit = fn_of(&i.card) == "Renamed Three" && i.etag == fake.change_key(&ids[3]);
            }
            RemoteChange::Delete { id } if *id == ids[7] => seen_delete = true,
            other => panic!("unexpected change {other:?}"),
        }
    }
    assert!(seen_new && seen_edit && seen_delete);

    // Nothing changed since: one empty page, a new SyncState all the same.
    let before = pages.last().unwrap().cursor.clone();
    let again = pull_all(&p, before.clone()).await;
    assert_eq!(again.len(), 1);
    assert!(again[0].changes.is_empty() && again[0].complete);
    assert_ne!(again[0].cursor, before);
}

#[tokio::test]
async fn more_changes_than_a_page_loop_until_the_last_item_in_range() {
    let (fake, p) = setup(4).await;
    fake.seed(FOLDER, 0, 3);
    let cursor = pull_all(&p, None).await.last().unwrap().cursor.clone();
    fake.seed(FOLDER, 3, 10);
    let pages = pull_all(&p, cursor).await;
    assert_eq!(pages.len(), 3);
    assert!(pages[..2]
        .iter()
        .all(|p| !p.complete && p.cursor.as_deref().unwrap().starts_with(CURSOR_DELTA)));
    assert_eq!(upsert_ids(&pages).len(), 10);
}

#[tokio::test]
async fn a_contact_deleted_before_get_item_is_a_deletion() {
    let (fake, p) = setup(10).await;
    let ids = fake.seed(FOLDER, 0, 3);
    fake.delete_before_next_get_item(&ids[1]);
    let pages = pull_all(&p, None).await;
    let changes: Vec<&RemoteChange> = pages.iter().flat_map(|p| &p.changes).collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(changes[1], &RemoteChange::Delete { id: ids[1].clone() });
    assert_eq!(upsert_ids(&pages), [ids[0].clone(), ids[2].clone()]);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.op == "GetItem" && r.code.as_deref() == Some("NoError")));
}

#[tokio::test]
async fn invalid_sync_state_restarts_as_full_listing_without_duplicates() {
    let (fake, p) = setup(20).await;
    let ids = fake.seed(FOLDER, 0, 50);
    // Mid-way through the first full listing.
    let first = p.pull(FOLDER, None).await.unwrap();
    assert!(!first.complete);
    fake.expire_sync_states();
    let pages = pull_all(&p, first.cursor.clone()).await;
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    let all = upsert_ids(&pages);
    assert_eq!(all.len(), 50, "each contact exactly once");
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 50);
    let invalid: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.code.as_deref() == Some("ErrorInvalidSyncStateData"))
        .collect();
    assert_eq!(invalid.len(), 1);

    // On an incremental cursor: the same recovery, then incremental runs work again.
    let cursor = pages.last().unwrap().cursor.clone();
    fake.delete_contact(&ids[0]);
    fake.expire_sync_states();
    let pages = pull_all(&p, cursor).await;
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    let listed = upsert_ids(&pages);
    assert_eq!(listed.len(), 49);
    assert!(!listed.contains(&ids[0]), "the deleted one is not listed");
    fake.edit_contact(&ids[1], "JobTitle", Some("CFO"));
    let pages = pull_all(&p, pages.last().unwrap().cursor.clone()).await;
    assert!(pages.iter().all(|p| p.kind == PullKind::Incremental));
    assert_eq!(upsert_ids(&pages), [ids[1].clone()]);
}

#[tokio::test]
async fn stale_change_key_is_a_conflict_and_a_fresh_one_writes() {
    let (fake, p) = setup(10).await;
    let c = card(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ann Lee\r\nN:Lee;Ann;;;\r\nEMAIL:ann@example.com\r\n\
         EMAIL:ann2@example.com\r\nTEL;TYPE=cell:+1 555 0100\r\nADR;TYPE=work:;;1 Main St;Springfield;;;\r\n\
         TITLE:Engineer\r\nEND:VCARD\r\n",
    );
    let w = p.create(FOLDER, &c, "crm-1").await.unwrap();
    assert_eq!(fake.crm_id(&w.id).as_deref(), Some("crm-1"));
    assert_eq!(w.etag, fake.change_key(&w.id));
    assert_eq!(fn_of(&w.card), "Ann Lee");
    let stale = w.etag.clone().unwrap();
    fake.edit_contact(&w.id, "JobTitle", Some("Changed in Outlook"));

    let edited = card(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ann B. Lee\r\nN:Lee;Ann;B.;;\r\nEMAIL:ann@example.com\r\n\
         TEL;TYPE=cell:+1 555 0199\r\nEND:VCARD\r\n",
    );
    let err = p
        .update(FOLDER, &w.id, Some(&stale), &edited)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Conflict), "{err:?}");
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.op, "UpdateItem");
    assert_eq!(last.code.as_deref(), Some("ErrorIrresolvableConflict"));
    assert_eq!(last.conflict_resolution.as_deref(), Some("NeverOverwrite"));
    assert_eq!(
        fake.field(&w.id, "JobTitle").as_deref(),
        Some("Changed in Outlook")
    );
    assert!(matches!(
        p.delete(FOLDER, &w.id, Some(&stale)).await.unwrap_err(),
        ProviderError::Conflict
    ));
    assert!(fake.exists(&w.id));

    // Re-read, then the write with the fresh ChangeKey goes through and clears what the card
    // no longer has (indexed fields included).
    let fresh = p.fetch(FOLDER, &w.id).await.unwrap().unwrap();
    let w2 = p
        .update(FOLDER, &w.id, fresh.etag.as_deref(), &edited)
        .await
        .unwrap();
    assert_ne!(w2.etag, fresh.etag);
    assert_eq!(w2.etag, fake.change_key(&w.id));
    assert_eq!(
        fake.field(&w.id, "DisplayName").as_deref(),
        Some("Ann B. Lee")
    );
    assert_eq!(fake.field(&w.id, "MiddleName").as_deref(), Some("B."));
    assert_eq!(fake.field(&w.id, "JobTitle"), None);
    assert_eq!(
        fake.entry(&w.id, "EmailAddresses", "EmailAddress1")
            .as_deref(),
        Some("ann@example.com")
    );
    assert_eq!(fake.entry_count(&w.id, "EmailAddresses"), 1);
    assert_eq!(
        fake.entry(&w.id, "PhoneNumbers", "MobilePhone").as_deref(),
        Some("+1 555 0199")
    );
    assert_eq!(fake.entry_count(&w.id, "PhysicalAddresses"), 0);
    assert_eq!(w2.card, p.fetch(FOLDER, &w.id).await.unwrap().unwrap().card);

    // Without a known version: overwrite.
    let w3 = p.update(FOLDER, &w.id, None, &c).await.unwrap();
    let upd = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.op == "UpdateItem")
        .unwrap();
    assert_eq!(upd.conflict_resolution.as_deref(), Some("AlwaysOverwrite"));
    p.delete(FOLDER, &w.id, w3.etag.as_deref()).await.unwrap();
    assert!(!fake.exists(&w.id));
    assert!(p.fetch(FOLDER, &w.id).await.unwrap().is_none());
    // Deleting what is gone reaches the goal.
    p.delete(FOLDER, &w.id, None).await.unwrap();
}

#[tokio::test]
async fn own_writes_come_back_with_the_written_change_key() {
    let (fake, p) = setup(10).await;
    let cursor = pull_all(&p, None).await.last().unwrap().cursor.clone();
    let c = card("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Bo Ek\r\nEMAIL:bo@example.se\r\nEND:VCARD\r\n");
    let w = p.create(FOLDER, &c, "person-42").await.unwrap();
    let pages = pull_all(&p, cursor).await;
    let replay = pages
        .iter()
        .flat_map(|p| &p.changes)
        .find_map(|c| match c {
            RemoteChange::Upsert(i) if i.id == w.id => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(replay.etag, w.etag, "the engine recognises its own write");
    assert_eq!(replay.card, w.card);
    let _ = fake;
}

#[tokio::test]
async fn throttling_waits_are_honoured() {
    let (fake, p) = setup(10).await;
    let id = fake.put_contact(FOLDER, "<t:DisplayName>T</t:DisplayName>");

    // SOAP fault ErrorServerBusy with BackOffMilliseconds (HTTP 500).
    fake.busy_fault_next(1, 400);
    let item = p.fetch(FOLDER, &id).await.unwrap().unwrap();
    assert_eq!(fn_of(&item.card), "T");
    let reqs = fake.requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 200]
    );
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(400), "retried after {gap:?}");

    // ErrorServerBusy inside an HTTP 200.
    fake.clear_requests();
    fake.busy_in_200_next(1, 300);
    p.fetch(FOLDER, &id).await.unwrap().unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].code.as_deref(), Some("ErrorInternalServerError"));
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(300));

    // HTTP 503 with Retry-After.
    fake.clear_requests();
    fake.unavailable_next(1, 1);
    let pages = pull_all(&p, None).await;
    assert_eq!(upsert_ids(&pages), vec![id.clone()]);
    let reqs = fake.requests();
    assert_eq!(reqs[0].status, 503);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(1));

    // Busy beyond the retry budget: Throttled with the server's back-off, no endless loop.
    fake.clear_requests();
    fake.busy_fault_next(10, 20);
    let err = p.fetch(FOLDER, &id).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Throttled { retry_after: Some(d) } if d == Duration::from_millis(20)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn revoked_credentials_need_reauthorization_without_retrying() {
    let (fake, p) = setup(10).await;
    fake.seed(FOLDER, 0, 2);
    fake.set_password("rotated");
    let err = p.pull(FOLDER, None).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::NeedsReauthorization(_)),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].status, 401);
    // The new password works.
    let p = provider_for(&fake, "rotated", 10);
    assert_eq!(upsert_ids(&pull_all(&p, None).await).len(), 2);
}

/// A token source that hands out `token`, and after an `invalidate` hands out `after`.
struct Tokens {
    token: Mutex<String>,
    after: String,
    invalidated: AtomicUsize,
}

#[async_trait]
impl AccessTokenSource for Tokens {
    async fn access_token(&self) -> Result<String, ProviderError> {
        Ok(self.token.lock().unwrap().clone())
    }
    async fn invalidate(&self, token: &str) {
        self.invalidated.fetch_add(1, Ordering::SeqCst);
        let mut t = self.token.lock().unwrap();
        if *t == token {
            *t = self.after.clone();
        }
    }
}

#[tokio::test]
async fn bearer_auth_refreshes_once_on_401() {
    let fake = FakeEws::start("nobody", "unused").await;
    fake.set_bearer(Some("new-token"));
    let id = fake.put_contact(CONTACTS_ID, "<t:DisplayName>R</t:DisplayName>");
    let tokens = Arc::new(Tokens {
        token: Mutex::new("old-token".into()),
        after: "new-token".into(),
        invalidated: AtomicUsize::new(0),
    });
    let mut cfg = EwsConfig::bearer(fake.ews_url.clone(), tokens.clone());
    cfg.retry = fast_retry();
    cfg.anchor_mailbox = Some("jane@contoso.com".into());
    let p = EwsProvider::new(cfg).unwrap();
    assert!(p.fetch("contacts", &id).await.unwrap().is_some());
    assert_eq!(tokens.invalidated.load(Ordering::SeqCst), 1);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 200]);
    // The distinguished `contacts` group pulls the default folder.
    let page = p.pull("contacts", None).await.unwrap();
    assert!(page.complete);
    assert_eq!(page.changes.len(), 1);
}

#[tokio::test]
async fn contact_folders_are_sync_groups_and_system_folders_are_not() {
    let fake = FakeEws::start("CONTOSO\\jane", "p").await;
    fake.add_folder("F1", "Customers", CONTACTS_ID, "IPF.Contact");
    fake.add_folder("F2", "Suppliers", CONTACTS_ID, "IPF.Contact");
    fake.add_folder("F1a", "EMEA", "F1", "IPF.Contact");
    fake.add_folder(
        "RC",
        "Recipient Cache",
        CONTACTS_ID,
        "IPF.Contact.RecipientCache",
    );
    fake.add_folder(
        "GAL",
        "GAL Contacts",
        CONTACTS_ID,
        "IPF.Contact.GalContacts",
    );
    fake.add_folder("RCx", "Inside the cache", "RC", "IPF.Contact");
    fake.add_folder("N", "Notes", CONTACTS_ID, "IPF.StickyNote");
    let p = provider_for(&fake, "p", 10);
    let groups = p.sync_groups().await.unwrap();
    let got: Vec<(&str, &str)> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (CONTACTS_ID, "Contacts"),
            ("F1", "Contacts / Customers"),
            ("F1a", "Contacts / Customers / EMEA"),
            ("F2", "Contacts / Suppliers"),
        ]
    );
    assert!(groups
        .iter()
        .all(|g| g.kind == SyncGroupKind::Folder && g.writable));
    let ops: Vec<String> = fake.requests().iter().map(|r| r.op.clone()).collect();
    assert_eq!(ops, ["GetFolder", "FindFolder"]);
}

#[tokio::test]
async fn autodiscover_finds_the_ews_url_in_candidate_order() {
    let fake = FakeEws::start("jane@contoso.com", "pw").await;
    let http = reqwest::Client::new();
    let auth = EwsAuth::Basic {
        username: "jane@contoso.com".into(),
        password: "pw".into(),
    };
    // The first candidate is unreachable; the second is the fake.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let candidates = vec![
        Candidate::Soap(
            format!("http://{dead}/autodiscover/autodiscover.svc")
                .parse()
                .unwrap(),
        ),
        Candidate::Pox(
            format!("http://{dead}/autodiscover/autodiscover.xml")
                .parse()
                .unwrap(),
        ),
        Candidate::Soap(
            format!("{}/autodiscover/autodiscover.svc", fake.origin)
                .parse()
                .unwrap(),
        ),
        Candidate::Pox(
            format!("{}/autodiscover/autodiscover.xml", fake.origin)
                .parse()
                .unwrap(),
        ),
    ];
    let found = discover(
        &http,
        &open_network(),
        "jane@contoso.com",
        &auth,
        candidates.clone(),
    )
    .await
    .unwrap();
    assert_eq!(found.ews_url.as_str(), fake.ews_url);
    let asked: Vec<String> = fake.requests().iter().map(|r| r.op.clone()).collect();
    assert_eq!(
        asked,
        ["GetUserSettings"],
        "SOAP is preferred; POX not needed"
    );
    // POX alone works too.
    let pox = discover(
        &http,
        &open_network(),
        "jane@contoso.com",
        &auth,
        candidates[3..].to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(pox.ews_url.as_str(), fake.ews_url);
    // The URL works as the provider's endpoint.
    let mut cfg = EwsConfig::basic(found.ews_url.to_string(), "jane@contoso.com", "pw");
    cfg.retry = fast_retry();
    let p = EwsProvider::new(cfg).unwrap();
    assert_eq!(p.sync_groups().await.unwrap().len(), 1);

    // Wrong password: needs re-authorization.
    let bad = EwsAuth::Basic {
        username: "jane@contoso.com".into(),
        password: "nope".into(),
    };
    let err = discover(&http, &open_network(), "jane@contoso.com", &bad, candidates)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::NeedsReauthorization(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn overflow_is_not_sent_and_is_kept_in_the_written_card() {
    let (fake, p) = setup(10).await;
    let c = card(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Many Slots\r\nEMAIL:a@x.example\r\nEMAIL:b@x.example\r\n\
         EMAIL;PREF=1:primary@x.example\r\nEMAIL:c@x.example\r\nTEL;TYPE=cell:1\r\nTEL;TYPE=cell:2\r\n\
         GENDER:F\r\nEND:VCARD\r\n",
    );
    let w = p.create(FOLDER, &c, "crm-9").await.unwrap();
    assert_eq!(fake.entry_count(&w.id, "EmailAddresses"), 3);
    assert_eq!(
        fake.entry(&w.id, "EmailAddresses", "EmailAddress1")
            .as_deref(),
        Some("primary@x.example")
    );
    assert_eq!(w.card.properties(&VCardProperty::Email).count(), 4);
    assert_eq!(w.card.properties(&VCardProperty::Tel).count(), 2);
    assert!(w.card.property(&VCardProperty::Gender).is_some());
    let pulled = p.fetch(FOLDER, &w.id).await.unwrap().unwrap();
    assert_eq!(pulled.card.properties(&VCardProperty::Email).count(), 3);
}

/// Every element path below `e` (`Envelope/Body/…`), by local name.
fn paths(e: &cardbridge::dav::xml::Element, prefix: &str, out: &mut HashSet<String>) {
    let here = format!("{prefix}/{}", e.name);
    for c in &e.children {
        paths(c, &here, out);
    }
    out.insert(here);
}

#[tokio::test]
async fn fake_sync_answers_have_the_fixture_shape() {
    use cardbridge::providers::ews::soap;
    let (fake, p) = setup(10).await;
    let ids = fake.seed(FOLDER, 0, 3);
    let cursor = pull_all(&p, None)
        .await
        .last()
        .unwrap()
        .cursor
        .clone()
        .unwrap();
    let state = cursor.strip_prefix(CURSOR_DELTA).unwrap();
    fake.put_contact(FOLDER, "<t:DisplayName>New</t:DisplayName>");
    fake.edit_contact(&ids[1], "JobTitle", Some("CFO"));
    fake.delete_contact(&ids[2]);
    let send = |body: String| {
        let url = fake.ews_url.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth("CONTOSO\\jane", Some("s3cret"))
                .header("content-type", "text/xml; charset=utf-8")
                .header("soapaction", soap::soap_action("SyncFolderItems"))
                .body(body)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    let shape = |bytes: &[u8]| {
        let root = cardbridge::dav::xml::parse(bytes).unwrap();
        let mut out = HashSet::new();
        paths(&root, "", &mut out);
        out.retain(|p| !p.contains("/Header"));
        out
    };
    let answer = send(soap::sync_folder_items(FOLDER, Some(state), 3)).await;
    let fixture = include_bytes!("../fixtures/ews/sync-folder-items.xml");
    assert_eq!(shape(&answer), shape(fixture));
    let page = soap::parse_sync_folder_items(&soap::parse_body(&answer).unwrap()).unwrap();
    assert!(page.last);
    assert_eq!(page.changes.len(), 3, "{:?}", page.changes);

    fake.expire_sync_states();
    let answer = send(soap::sync_folder_items(FOLDER, Some(state), 2)).await;
    assert_eq!(
        answer.as_ref(),
        include_bytes!("../fixtures/ews/sync-invalid-state.xml")
    );
}

#[tokio::test]
async fn ntlm_authenticates_one_connection_and_handshakes_again_on_a_new_one() {
    let fake = FakeEws::start("CONTOSO\\jane", "s3cret").await;
    fake.require_ntlm(true);
    let id = fake.put_contact(CONTACTS_ID, "<t:DisplayName>N</t:DisplayName>");
    let mut cfg = EwsConfig::ntlm(fake.ews_url.clone(), "CONTOSO\\jane", "s3cret");
    cfg.retry = fast_retry();
    let p = EwsProvider::new(cfg).unwrap();
    assert!(p.fetch("contacts", &id).await.unwrap().is_some());
    assert!(p.fetch("contacts", &id).await.unwrap().is_some());
    let reqs = fake.requests();
    let legs: Vec<Option<NtlmLeg>> = reqs.iter().map(|r| r.ntlm.clone()).collect();
    assert_eq!(
        legs,
        [
            Some(NtlmLeg::Negotiate),
            Some(NtlmLeg::Authenticated {
                domain: "CONTOSO".into(),
                user: "jane".into()
            }),
            Some(NtlmLeg::Session),
        ]
    );
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 200, 200]
    );
    // One connection for the handshake and the request after it.
    assert!(reqs.iter().all(|r| r.peer == reqs[0].peer), "{reqs:?}");

    // The server forgets the connection's authentication (as after a reconnect): the client
    // gets 401 without credentials and runs the handshake again.
    fake.require_ntlm(true);
    fake.clear_requests();
    assert!(p.fetch("contacts", &id).await.unwrap().is_some());
    let legs: Vec<Option<NtlmLeg>> = fake.requests().iter().map(|r| r.ntlm.clone()).collect();
    assert_eq!(legs.len(), 3, "{legs:?}");
    assert_eq!(legs[0], Some(NtlmLeg::Unauthenticated));
    assert_eq!(legs[1], Some(NtlmLeg::Negotiate));
    assert!(matches!(legs[2], Some(NtlmLeg::Authenticated { .. })));

    // Basic is refused by an NTLM-only server.
    let basic = provider_for(&fake, "s3cret", 10);
    let err = basic.fetch("contacts", &id).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn ntlm_with_a_wrong_password_is_rejected_once() {
    let fake = FakeEws::start("CONTOSO\\jane", "s3cret").await;
    fake.require_ntlm(true);
    let id = fake.put_contact(CONTACTS_ID, "<t:DisplayName>N</t:DisplayName>");
    let mut cfg = EwsConfig::ntlm(fake.ews_url.clone(), "CONTOSO\\jane", "wrong");
    cfg.retry = fast_retry();
    let p = EwsProvider::new(cfg).unwrap();
    let err = p.fetch("contacts", &id).await.unwrap_err();
    assert!(matches!(err, ProviderError::CredentialsRejected), "{err:?}");
    assert_eq!(err.to_string(), "credentials rejected by the provider");
    assert!(!err.is_transient());
    let reqs = fake.requests();
    assert_eq!(
        reqs.len(),
        2,
        "negotiate + authenticate, no retry: {reqs:?}"
    );
    assert!(
        matches!(&reqs[1].ntlm, Some(NtlmLeg::Rejected(why)) if why.contains("NTProofStr")),
        "{reqs:?}"
    );
    // A user the server does not know is refused as well.
    fake.clear_requests();
    let mut cfg = EwsConfig::ntlm(fake.ews_url.clone(), "FABRIKAM\\jane", "s3cret");
    cfg.retry = fast_retry();
    let err = EwsProvider::new(cfg)
        .unwrap()
        .fetch("contacts", &id)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::CredentialsRejected), "{err:?}");
}

#[tokio::test]
async fn autodiscover_runs_the_ntlm_handshake_per_candidate() {
    let fake = FakeEws::start("CONTOSO\\jane", "pw").await;
    fake.require_ntlm(true);
    let http = reqwest::Client::new();
    let candidates = vec![Candidate::Soap(
        format!("{}/autodiscover/autodiscover.svc", fake.origin)
            .parse()
            .unwrap(),
    )];
    let auth = EwsAuth::Ntlm {
        username: "CONTOSO\\jane".into(),
        password: "pw".into(),
    };
    let found = discover(
        &http,
        &open_network(),
        "jane@contoso.com",
        &auth,
        candidates.clone(),
    )
    .await
    .unwrap();
    assert_eq!(found.ews_url.as_str(), fake.ews_url);
    let reqs = fake.requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 200]
    );
    assert_eq!(reqs[0].peer, reqs[1].peer);
    let bad = EwsAuth::Ntlm {
        username: "CONTOSO\\jane".into(),
        password: "nope".into(),
    };
    let err = discover(&http, &open_network(), "jane@contoso.com", &bad, candidates)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::NeedsReauthorization(_)),
        "{err:?}"
    );
}

/// Discovery against the loopback fake: every address allowed (the SSRF guard has its own
/// tests in tests/security_ssrf.rs).
fn open_network() -> NetworkPolicy {
    NetworkPolicy::unrestricted()
}

// ------------------------------------------------------------------------------ photos

const JPEG: &[u8] = include_bytes!("../fixtures/graph/photo.jpg");

fn photo_of(card: &VCard) -> Option<(String, Vec<u8>)> {
    match cardbridge::vcard::photo::photo(card)? {
        cardbridge::vcard::photo::Photo::Inline { media_type, bytes } => {
            Some((media_type.to_string(), bytes.to_vec()))
        }
        cardbridge::vcard::photo::Photo::Uri(u) => panic!("a URI photo from EWS: {u}"),
    }
}

fn upserts(pages: &[Page]) -> Vec<cardbridge::providers::RemoteItem> {
    pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| match c {
            RemoteChange::Upsert(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

/// The contact-photo attachment's bytes are read with one GetAttachment for the changed
/// contacts that list one, and come out as an inline PHOTO; unchanged runs read none.
#[tokio::test]
async fn photos_are_read_with_get_attachment_for_changed_contacts_only() {
    let (fake, p) = setup(100).await;
    let ids = fake.seed(FOLDER, 0, 3);
    fake.set_photo(&ids[0], "image/jpeg", JPEG);
    fake.set_photo(&ids[2], "image/png", b"\x89PNG\r\n\x1a\n-two-");
    let pages = pull_all(&p, None).await;
    let got = upserts(&pages);
    assert_eq!(got.len(), 3);
    for it in &got {
        let expected = fake.photo(&it.id);
        assert_eq!(photo_of(&it.card), expected, "{}", it.id);
    }
    let att = fake.attachment_requests();
    assert_eq!(att.len(), 1, "{att:?}");
    assert_eq!(att[0].op, "GetAttachment");
    assert_eq!(att[0].code.as_deref(), Some("NoError"));

    // A change to a contact without a photo: no attachment request; no change: none either.
    let cursor = pages.last().unwrap().cursor.clone();
    fake.clear_requests();
    fake.edit_contact(&ids[1], "JobTitle", Some("Boss"));
    let pages = pull_all(&p, cursor).await;
    assert_eq!(upsert_ids(&pages), vec![ids[1].clone()]);
    assert!(fake.attachment_requests().is_empty());
    let cursor = pages.last().unwrap().cursor.clone();
    fake.clear_requests();
    assert!(upsert_ids(&pull_all(&p, cursor).await).is_empty());
    assert!(fake.attachment_requests().is_empty());
}

#[tokio::test]
async fn an_oversize_ews_photo_is_left_off_the_card() {
    let (fake, p) = setup(100).await;
    let ids = fake.seed(FOLDER, 0, 2);
    fake.set_photo(
        &ids[0],
        "image/jpeg",
        &vec![7; cardbridge::vcard::photo::MAX_PHOTO_BYTES + 1],
    );
    // Exactly at the bound: kept.
    let max = vec![8; cardbridge::vcard::photo::MAX_PHOTO_BYTES];
    fake.set_photo(&ids[1], "image/jpeg", &max);
    let got = upserts(&pull_all(&p, None).await);
    assert_eq!(got.len(), 2);
    let card_of = |id: &str| &got.iter().find(|i| i.id == id).unwrap().card;
    assert_eq!(photo_of(card_of(&ids[0])), None);
    assert_eq!(
        photo_of(card_of(&ids[1])),
        Some(("image/jpeg".into(), max.clone()))
    );
}

/// An unchanged photo sends no attachment request; a new one replaces the attachment
/// (DeleteAttachment, CreateAttachment) and the written ChangeKey is the one after it, so the
/// next UpdateItem is no false conflict and the SyncFolderItems echo reads no attachment; a
/// removed photo is a DeleteAttachment.
#[tokio::test]
async fn photo_writes_use_create_and_delete_attachment_without_conflict_or_echo() {
    let (fake, p) = setup(100).await;
    let ids = fake.seed(FOLDER, 0, 1);
    let id = ids[0].clone();
    fake.set_photo(&id, "image/jpeg", JPEG);
    let pages = pull_all(&p, None).await;
    let cursor = pages.last().unwrap().cursor.clone();
    let held = upserts(&pages).remove(0);
    assert!(photo_of(&held.card).is_some());

    // An edit of the job title: no attachment request, the photo stays.
    fake.clear_requests();
    let edited = cardbridge::vcard::photo::with_photo(
        &card("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Someone Else\r\nTITLE:Boss\r\nEND:VCARD\r\n"),
        cardbridge::vcard::photo::photo_entry(&held.card),
    );
    let w = p
        .update_with_base(FOLDER, &id, held.etag.as_deref(), Some(&held.card), &edited)
        .await
        .unwrap();
    assert!(
        fake.attachment_requests().is_empty(),
        "{:?}",
        fake.requests()
    );
    assert_eq!(fake.photo(&id).unwrap().1, JPEG);
    assert_eq!(photo_of(&w.card), photo_of(&held.card));

    // A new photo.
    fake.clear_requests();
    let png = b"\x89PNG\r\n\x1a\n-new-".to_vec();
    let entry = cardbridge::vcard::photo::inline_entry(png.clone(), Some("image/png")).unwrap();
    let with_new = cardbridge::vcard::photo::with_photo(&w.card, Some(entry));
    let w2 = p
        .update_with_base(FOLDER, &id, w.etag.as_deref(), Some(&w.card), &with_new)
        .await
        .unwrap();
    let ops: Vec<String> = fake
        .attachment_requests()
        .into_iter()
        .map(|r| r.op)
        .collect();
    assert_eq!(ops, ["DeleteAttachment", "CreateAttachment"]);
    assert_eq!(fake.photo(&id), Some(("image/png".into(), png.clone())));
    assert_eq!(
        w2.etag,
        fake.change_key(&id),
        "the ChangeKey after the attachment"
    );
    assert_eq!(photo_of(&w2.card), Some(("image/png".into(), png.clone())));

    // The next UpdateItem with that ChangeKey is no conflict, and the echo reads no attachment.
    fake.clear_requests();
    let w3 = p
        .update_with_base(FOLDER, &id, w2.etag.as_deref(), Some(&w2.card), &w2.card)
        .await
        .unwrap();
    let back = upserts(&pull_all(&p, cursor).await);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].etag, w3.etag);
    assert_eq!(photo_of(&back[0].card), Some(("image/png".into(), png)));
    assert!(
        fake.attachment_requests().is_empty(),
        "{:?}",
        fake.requests()
    );

    // Removed from the card: DeleteAttachment.
    fake.clear_requests();
    let without = cardbridge::vcard::photo::with_photo(&w3.card, None);
    let w4 = p
        .update_with_base(FOLDER, &id, w3.etag.as_deref(), Some(&w3.card), &without)
        .await
        .unwrap();
    let ops: Vec<String> = fake
        .attachment_requests()
        .into_iter()
        .map(|r| r.op)
        .collect();
    assert_eq!(ops, ["DeleteAttachment"]);
    assert_eq!(fake.photo(&id), None);
    assert_eq!(photo_of(&w4.card), None);
    assert_eq!(w4.etag, fake.change_key(&id));
}

#[tokio::test]
async fn a_created_ews_contact_gets_its_photo_attachment() {
    let (fake, p) = setup(100).await;
    let c = cardbridge::vcard::photo::with_photo(
        &card("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Photo Person\r\nEND:VCARD\r\n"),
        Some(cardbridge::vcard::photo::inline_entry(JPEG.to_vec(), Some("image/jpeg")).unwrap()),
    );
    let w = p.create(FOLDER, &c, "crm-7").await.unwrap();
    assert_eq!(
        fake.photo(&w.id),
        Some(("image/jpeg".into(), JPEG.to_vec()))
    );
    assert_eq!(w.etag, fake.change_key(&w.id));
}
