//! The Google provider against the fake People API (tests/fakes/google.rs): full sync of
//! 2,000 contacts, incremental changes, sync-token expiry and recovery, stale-etag conflicts,
//! throttling, revoked grants, 401 refresh and group filtering. The engine comes later; these
//! drive the `Provider` directly.
#![allow(clippy::unwrap_used)]

#[path = "fakes/google.rs"]
mod google_fake;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cardbridge::providers::google::{Cursor, GoogleConfig, GoogleProvider, GROUP_ALL};
use cardbridge::providers::http::RetryPolicy;
use cardbridge::providers::oauth::{OAuthClient, OAuthEndpoints, SecretBox, TokenManager};
use cardbridge::providers::{Page, Provider, ProviderError, PullKind, RemoteChange};
use google_fake::FakeGoogle;
use serde_json::json;

const REFRESH: &str = "1//fake-refresh-initial";
const CONNECTIONS: &str = "/v1/people/me/connections";
const CRM_GROUP: &str = "contactGroups/1a2b3c4d";

struct Setup {
    fake: FakeGoogle,
    provider: GoogleProvider,
    tokens: Arc<TokenManager>,
}

async fn setup(page_size: u32) -> Setup {
    let fake = FakeGoogle::start().await;
    fake.add_refresh_token(REFRESH);
    let http = reqwest::Client::new();
    let secrets = Arc::new(SecretBox::from_key(&[3u8; 32]).unwrap());
    let sealed = secrets.seal(REFRESH.as_bytes()).unwrap();
    let endpoints = OAuthEndpoints {
        authorize_url: fake.authorize_url().parse().unwrap(),
        token_url: fake.token_url().parse().unwrap(),
    };
    let mut client = OAuthClient::google(
        "client-id",
        Some("s3cret".into()),
        "http://127.0.0.1:1/cb",
        endpoints,
    );
    client.retry = fast_retry();
    let tokens = Arc::new(TokenManager::new(client, http.clone(), secrets, sealed));
    let config = GoogleConfig {
        base_url: fake.base_url.parse().unwrap(),
        page_size,
        retry: fast_retry(),
    };
    let provider = GoogleProvider::new(http, tokens.clone(), config);
    Setup {
        fake,
        provider,
        tokens,
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(10),
    }
}

/// Pulls pages until one is complete.
async fn pull_run(p: &GoogleProvider, group: &str, mut cursor: Option<String>) -> Vec<Page> {
    let mut pages = Vec::new();
    loop {
        let page = p.pull(group, cursor.as_deref()).await.unwrap();
        cursor = page.cursor.clone();
        let done = page.complete;
        pages.push(page);
        assert!(pages.len() < 1000, "runaway paging");
        if done {
            return pages;
        }
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

fn delete_ids(pages: &[Page]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| match c {
            RemoteChange::Delete { id } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn final_cursor(pages: &[Page]) -> String {
    pages.last().unwrap().cursor.clone().unwrap()
}

#[tokio::test]
async fn full_sync_of_2000_contacts_follows_page_tokens() {
    let s = setup(300).await;
    s.fake.seed(1, 2000, &[]);
    let pages = pull_run(&s.provider, GROUP_ALL, None).await;

    assert_eq!(pages.len(), 7, "2000 / 300 → 7 pages");
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    assert!(pages[..6].iter().all(|p| !p.complete));
    let ids = upsert_ids(&pages);
    assert_eq!(ids.len(), 2000);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        2000,
        "no duplicates"
    );
    assert!(matches!(
        Cursor::parse(&final_cursor(&pages)).unwrap(),
        Cursor::Sync { .. }
    ));
    for p in &pages[..6] {
        assert!(matches!(
            Cursor::parse(p.cursor.as_deref().unwrap()).unwrap(),
            Cursor::FullPage { .. }
        ));
    }

    // The mapped card carries the fixture's fields.
    let c17 = pages
        .iter()
        .flat_map(|p| &p.changes)
        .find_map(|c| match c {
            RemoteChange::Upsert(i) if i.id == "people/c17" => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    let text = c17.card.to_string();
    assert!(text.contains("FN:Person 17"), "{text}");
    assert!(text.contains("person17@example.com"), "{text}");
    assert!(c17.etag.as_deref().unwrap().starts_with("%Eg"));

    // Wire: the first call asks for a sync token; later ones repeat every parameter and add
    // the page token.
    let reqs = s.fake.requests_to(CONNECTIONS);
    assert_eq!(reqs.len(), 7);
    let first = &reqs[0].query;
    assert_eq!(
        first.get("requestSyncToken").map(String::as_str),
        Some("true")
    );
    assert_eq!(first.get("pageSize").map(String::as_str), Some("300"));
    assert!(first["personFields"].contains("memberships"));
    assert!(!first.contains_key("pageToken"));
    for r in &reqs[1..] {
        let mut q = r.query.clone();
        assert!(q.remove("pageToken").is_some());
        assert_eq!(&q, first);
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn incremental_sync_reports_adds_updates_and_deletes() {
    let s = setup(20).await;
    s.fake.seed(1, 50, &[]);
    let full = pull_run(&s.provider, GROUP_ALL, None).await;
    let cursor = final_cursor(&full);
    let Cursor::Sync { sync_token } = Cursor::parse(&cursor).unwrap() else {
        panic!("not a sync cursor")
    };

    s.fake.seed(1001, 2, &[]);
    s.fake.edit_person("people/c5", |p| {
        p["emailAddresses"][0]["value"] = json!("new5@example.com");
    });
    s.fake.remove_person("people/c7");
    s.fake.clear_requests();

    let inc = pull_run(&s.provider, GROUP_ALL, Some(cursor)).await;
    assert!(inc.iter().all(|p| p.kind == PullKind::Incremental));
    let mut ups = upsert_ids(&inc);
    ups.sort();
    assert_eq!(ups, ["people/c1001", "people/c1002", "people/c5"]);
    assert_eq!(delete_ids(&inc), ["people/c7"]);
    let c5 = inc[0]
        .changes
        .iter()
        .find_map(|c| match c {
            RemoteChange::Upsert(i) if i.id == "people/c5" => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert!(c5.card.to_string().contains("new5@example.com"));

    // Identical parameters plus the sync token.
    let reqs = s.fake.requests_to(CONNECTIONS);
    assert_eq!(reqs.len(), 1);
    let q = &reqs[0].query;
    assert_eq!(q.get("syncToken"), Some(&sync_token));
    assert_eq!(q.get("requestSyncToken").map(String::as_str), Some("true"));
    assert_eq!(q.get("pageSize").map(String::as_str), Some("20"));

    // Nothing changed since: an empty incremental page.
    let again = pull_run(&s.provider, GROUP_ALL, inc.last().unwrap().cursor.clone()).await;
    assert_eq!(again.len(), 1);
    assert!(again[0].changes.is_empty());
    assert_eq!(again[0].kind, PullKind::Incremental);
}

#[tokio::test]
async fn incremental_sync_spans_pages_with_the_same_parameters() {
    let s = setup(4).await;
    s.fake.seed(1, 6, &[]);
    let full = pull_run(&s.provider, GROUP_ALL, None).await;
    s.fake.seed(100, 9, &[]);
    s.fake.clear_requests();
    let inc = pull_run(&s.provider, GROUP_ALL, Some(final_cursor(&full))).await;
    assert_eq!(inc.len(), 3);
    assert_eq!(upsert_ids(&inc).len(), 9);
    assert!(matches!(
        Cursor::parse(inc[0].cursor.as_deref().unwrap()).unwrap(),
        Cursor::IncrementalPage { .. }
    ));
    let reqs = s.fake.requests_to(CONNECTIONS);
    let mut first = reqs[0].query.clone();
    assert!(first.contains_key("syncToken"));
    first.remove("pageToken");
    for r in &reqs[1..] {
        let mut q = r.query.clone();
        q.remove("pageToken");
        assert_eq!(q, first);
        assert_eq!(r.status, 200, "the fake refuses mismatched parameters");
    }
}

#[tokio::test]
async fn expired_sync_token_restarts_as_a_full_listing_without_duplicates() {
    let s = setup(10).await;
    s.fake.seed(1, 30, &[]);
    let full = pull_run(&s.provider, GROUP_ALL, None).await;
    s.fake.seed(2001, 5, &[]);
    s.fake.edit_person("people/c3", |p| {
        p["names"][0]["displayName"] = json!("Three")
    });
    s.fake.remove_person("people/c4");
    s.fake.remove_person("people/c5");
    s.fake.expire_sync_tokens();

    let pages = pull_run(&s.provider, GROUP_ALL, Some(final_cursor(&full))).await;
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    let ids = upsert_ids(&pages);
    assert_eq!(ids.len(), 33);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        33,
        "no duplicates"
    );
    assert!(!ids.contains(&"people/c4".to_string()));
    assert!(
        delete_ids(&pages).is_empty(),
        "a listing reports no deletes"
    );
    let refused: Vec<_> = s
        .fake
        .requests_to(CONNECTIONS)
        .into_iter()
        .filter(|r| r.status == 400)
        .collect();
    assert_eq!(refused.len(), 1, "one refused call, no loop");
    assert!(refused[0].query.contains_key("syncToken"));

    // Expiry in the middle of a multi-page incremental run: the partial run is dropped and
    // the provider starts a fresh listing.
    let cursor = final_cursor(&pages);
    s.fake.seed(3001, 15, &[]);
    let first = s.provider.pull(GROUP_ALL, Some(&cursor)).await.unwrap();
    assert_eq!(first.kind, PullKind::Incremental);
    assert!(!first.complete);
    s.fake.expire_sync_tokens();
    let restarted = pull_run(&s.provider, GROUP_ALL, first.cursor.clone()).await;
    assert!(restarted.iter().all(|p| p.kind == PullKind::FullListing));
    let ids = upsert_ids(&restarted);
    assert_eq!(ids.len(), 48);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 48);
    assert!(matches!(
        Cursor::parse(&final_cursor(&restarted)).unwrap(),
        Cursor::Sync { .. }
    ));
}

#[tokio::test]
async fn stale_etag_update_is_a_conflict_and_fresh_one_succeeds() {
    let s = setup(100).await;
    s.fake.seed(1, 3, &[]);
    let item = s
        .provider
        .fetch(GROUP_ALL, "people/c2")
        .await
        .unwrap()
        .unwrap();
    let old_etag = item.etag.clone().unwrap();

    // Someone else edits it.
    s.fake.edit_person("people/c2", |p| {
        p["names"][0]["displayName"] = json!("Elsewhere")
    });

    let mut card = item.card.clone();
    for e in &mut card.entries {
        if e.name == calcard::vcard::VCardProperty::Email {
            e.values = vec![calcard::vcard::VCardValue::Text("ours@example.com".into())];
        }
    }
    let err = s
        .provider
        .update(GROUP_ALL, "people/c2", Some(&old_etag), &card)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Conflict), "{err:?}");
    let stored = s.fake.person("people/c2").unwrap();
    assert_eq!(stored["emailAddresses"][0]["value"], "person2@example.com");

    // Re-read and retry with the current etag.
    let fresh = s
        .provider
        .fetch(GROUP_ALL, "people/c2")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(fresh.etag, item.etag);
    let written = s
        .provider
        .update(GROUP_ALL, "people/c2", fresh.etag.as_deref(), &card)
        .await
        .unwrap();
    assert_eq!(written.id, "people/c2");
    assert_ne!(written.etag, fresh.etag);
    assert!(written.card.to_string().contains("ours@example.com"));
    let stored = s.fake.person("people/c2").unwrap();
    assert_eq!(stored["emailAddresses"][0]["value"], "ours@example.com");
    assert_eq!(stored["etag"].as_str(), written.etag.as_deref());

    let updates: Vec<_> = s
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(":updateContact"))
        .collect();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].status, 400);
    assert!(updates[1].query["updatePersonFields"].contains("emailAddresses"));
}

#[tokio::test]
async fn throttling_waits_for_retry_after() {
    let s = setup(100).await;
    s.fake.seed(1, 5, &[]);
    s.fake.throttle(2, 1);
    let pages = pull_run(&s.provider, GROUP_ALL, None).await;
    assert_eq!(upsert_ids(&pages).len(), 5);
    let reqs = s.fake.requests_to(CONNECTIONS);
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
    for w in reqs.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(gap >= Duration::from_secs(1), "waited only {gap:?}");
    }
}

#[tokio::test]
async fn throttling_beyond_the_retry_budget_is_reported() {
    let s = setup(100).await;
    s.fake.seed(1, 1, &[]);
    s.fake.throttle(10, 0);
    let err = s.provider.pull(GROUP_ALL, None).await.unwrap_err();
    assert!(matches!(err, ProviderError::Throttled { .. }), "{err:?}");
    assert_eq!(
        s.fake.requests_to(CONNECTIONS).len(),
        4,
        "bounded by max_attempts"
    );
}

#[tokio::test]
async fn revoked_grant_needs_reauthorization_without_retry_loop() {
    let s = setup(100).await;
    s.fake.seed(1, 3, &[]);
    s.fake.revoke_refresh_token(REFRESH);
    for _ in 0..3 {
        let err = s.provider.pull(GROUP_ALL, None).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::NeedsReauthorization(_)),
            "{err:?}"
        );
        assert!(!err.is_transient());
    }
    assert_eq!(
        s.fake.requests_to("/token").len(),
        1,
        "exactly one token request"
    );
    assert!(s.fake.requests_to(CONNECTIONS).is_empty());
    assert!(s.tokens.needs_reauthorization().await.is_some());
}

#[tokio::test]
async fn a_401_refreshes_the_access_token_once() {
    let s = setup(100).await;
    s.fake.seed(1, 2, &[]);
    pull_run(&s.provider, GROUP_ALL, None).await;
    assert_eq!(s.fake.requests_to("/token").len(), 1);

    s.fake.revoke_access_tokens();
    let pages = pull_run(&s.provider, GROUP_ALL, None).await;
    assert_eq!(upsert_ids(&pages).len(), 2);
    assert_eq!(s.fake.requests_to("/token").len(), 2);
    let statuses: Vec<u16> = s
        .fake
        .requests_to(CONNECTIONS)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 401, 200]);
}

#[tokio::test]
async fn groups_filter_by_membership_and_leaving_is_a_delete() {
    let s = setup(3).await;
    s.fake.seed(1, 4, &[CRM_GROUP]);
    s.fake.seed(5, 6, &[]);

    let groups = s.provider.sync_groups().await.unwrap();
    let crm = groups.iter().find(|g| g.id == CRM_GROUP).unwrap();
    assert_eq!(crm.name, "CRM");
    assert!(crm.writable);
    assert!(groups.iter().any(|g| g.id == "contactGroups/myContacts"));

    let full = pull_run(&s.provider, CRM_GROUP, None).await;
    let mut ids = upsert_ids(&full);
    ids.sort();
    assert_eq!(ids, ["people/c1", "people/c2", "people/c3", "people/c4"]);

    // c2 leaves the group, c6 joins it.
    s.fake.edit_person("people/c2", |p| {
        p["memberships"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["contactGroupMembership"]["contactGroupResourceName"] != CRM_GROUP);
    });
    s.fake.edit_person("people/c6", |p| {
        p["memberships"].as_array_mut().unwrap().push(json!({
            "contactGroupMembership": {"contactGroupId": "1a2b3c4d", "contactGroupResourceName": CRM_GROUP}
        }));
    });
    let inc = pull_run(&s.provider, CRM_GROUP, Some(final_cursor(&full))).await;
    assert_eq!(upsert_ids(&inc), ["people/c6"]);
    assert_eq!(delete_ids(&inc), ["people/c2"]);
    assert!(s
        .provider
        .fetch(CRM_GROUP, "people/c2")
        .await
        .unwrap()
        .is_none());
    assert!(s
        .provider
        .fetch(CRM_GROUP, "people/c6")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn create_records_the_crm_id_and_delete_checks_the_etag() {
    let s = setup(100).await;
    let card = calcard::vcard::VCard::parse(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:New Person\r\nN:Person;New;;;\r\nEMAIL;TYPE=work;PREF=1:new@example.com\r\nTEL;TYPE=cell:+1 555 0199\r\nORG:Acme\r\nTITLE:CTO\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let written = s.provider.create(CRM_GROUP, &card, "crm-77").await.unwrap();
    assert!(written.id.starts_with("people/c"));
    let stored = s.fake.person(&written.id).unwrap();
    assert_eq!(stored["clientData"][0]["key"], "cardbridgeCrmId");
    assert_eq!(stored["clientData"][0]["value"], "crm-77");
    assert_eq!(stored["names"][0]["givenName"], "New");
    assert_eq!(stored["phoneNumbers"][0]["type"], "mobile");
    assert_eq!(stored["emailAddresses"][0]["metadata"]["primary"], true);
    assert_eq!(stored["organizations"][0]["title"], "CTO");
    let groups: Vec<&str> = stored["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["contactGroupMembership"]["contactGroupResourceName"].as_str())
        .collect();
    assert!(groups.contains(&CRM_GROUP));
    assert!(written
        .card
        .to_string()
        .contains("X-CARDBRIDGE-CRM-ID:crm-77"));

    // A full sync of the group sees it; then delete it with a stale and a fresh etag.
    let full = pull_run(&s.provider, CRM_GROUP, None).await;
    assert_eq!(upsert_ids(&full), vec![written.id.clone()]);
    let err = s
        .provider
        .delete(CRM_GROUP, &written.id, Some("%EgSTALE"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Conflict), "{err:?}");
    s.provider
        .delete(CRM_GROUP, &written.id, written.etag.as_deref())
        .await
        .unwrap();
    assert!(s.fake.person(&written.id).is_none());
    let err = s
        .provider
        .delete(CRM_GROUP, &written.id, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotFound), "{err:?}");

    let inc = pull_run(&s.provider, CRM_GROUP, Some(final_cursor(&full))).await;
    assert_eq!(delete_ids(&inc), vec![written.id.clone()]);
}

#[tokio::test]
async fn update_without_a_known_etag_uses_the_current_one() {
    let s = setup(100).await;
    s.fake.seed(1, 1, &[]);
    s.fake.edit_person("people/c1", |p| {
        p["names"][0]["displayName"] = json!("Changed")
    });
    let card = calcard::vcard::VCard::parse(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Crm Name\r\nN:Name;Crm;;;\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let written = s
        .provider
        .update(GROUP_ALL, "people/c1", None, &card)
        .await
        .unwrap();
    let stored = s.fake.person("people/c1").unwrap();
    assert_eq!(stored["names"][0]["givenName"], "Crm");
    assert_eq!(stored["etag"].as_str(), written.etag.as_deref());
    // Fields the card no longer has are cleared through the update mask.
    assert!(stored.get("emailAddresses").is_none(), "{stored}");
    // Memberships are not in the mask and stay.
    assert!(stored["memberships"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    let err = s
        .provider
        .update(GROUP_ALL, "people/c404", None, &card)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotFound), "{err:?}");
}

// ------------------------------------------------------------------------------ photos

const JPEG: &[u8] = include_bytes!("../fixtures/graph/photo.jpg");

fn photo_uri(card: &cardbridge::vcard::VCard) -> Option<String> {
    match cardbridge::vcard::photo::photo(card)? {
        cardbridge::vcard::photo::Photo::Uri(u) => Some(u.to_string()),
        cardbridge::vcard::photo::Photo::Inline { .. } => panic!("Google photos are URIs"),
    }
}

/// New bytes go to `updateContactPhoto` (base64 `photoBytes`) and the written card carries the
/// URL Google answers; writing that card back (an unchanged URI) sends no photo request; a
/// removed photo goes to `deleteContactPhoto`.
#[tokio::test]
async fn photos_are_written_through_update_and_delete_contact_photo_without_echo() {
    let s = setup(100).await;
    let (fake, p) = (&s.fake, &s.provider);
    let id = "people/c4242";
    fake.put_person(
        id,
        json!({"resourceName": id, "names": [{"givenName": "Pho", "familyName": "To"}]}),
    );
    let held = p.fetch(GROUP_ALL, id).await.unwrap().unwrap();
    assert_eq!(photo_uri(&held.card), None);

    let entry = cardbridge::vcard::photo::inline_entry(JPEG.to_vec(), Some("image/jpeg")).unwrap();
    let with = cardbridge::vcard::photo::with_photo(&held.card, Some(entry));
    let w = p
        .update_with_base(GROUP_ALL, id, held.etag.as_deref(), Some(&held.card), &with)
        .await
        .unwrap();
    let reqs = fake.photo_requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "PATCH");
    assert!(reqs[0].path.ends_with(&format!("{id}:updateContactPhoto")));
    assert_eq!(reqs[0].status, 200);
    assert_eq!(fake.uploaded_photo(id).as_deref(), Some(JPEG));
    let url = photo_uri(&w.card).expect("the written card carries Google's photo URL");
    assert!(
        url.starts_with("https://lh3.googleusercontent.com/"),
        "{url}"
    );
    assert_eq!(w.etag.as_deref(), fake.person(id).unwrap()["etag"].as_str());

    // The card as Google holds it, pushed again with another edit: no photo request.
    fake.clear_requests();
    let w2 = p
        .update_with_base(GROUP_ALL, id, w.etag.as_deref(), Some(&w.card), &w.card)
        .await
        .unwrap();
    assert!(fake.photo_requests().is_empty(), "{:?}", fake.requests());
    assert_eq!(photo_uri(&w2.card).as_deref(), Some(url.as_str()));
    // A pull reads the same URI back: nothing for the engine to see as a change.
    let back = p.fetch(GROUP_ALL, id).await.unwrap().unwrap();
    assert_eq!(back.card, w2.card);
    assert_eq!(back.etag, w2.etag);

    // Removed from the card: deleteContactPhoto.
    fake.clear_requests();
    let without = cardbridge::vcard::photo::with_photo(&w2.card, None);
    let w3 = p
        .update_with_base(GROUP_ALL, id, w2.etag.as_deref(), Some(&w2.card), &without)
        .await
        .unwrap();
    let reqs = fake.photo_requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "DELETE");
    assert!(reqs[0].path.ends_with(&format!("{id}:deleteContactPhoto")));
    assert_eq!(fake.uploaded_photo(id), None);
    assert!(fake.person(id).unwrap().get("photos").is_none());
    assert_eq!(photo_uri(&w3.card), None);
}
