//! End to end through `sync::execute` against the fake Google People API and the fake
//! Microsoft Graph (tests/fakes): a contact created in the fake reaches the CRM as a person
//! with the right fields; in two-way sync a CRM edit reaches the fake; Graph's slot overflow
//! stays in the CRM.
#![allow(clippy::unwrap_used)]

#[path = "fakes/google.rs"]
mod google_fake;
#[path = "fakes/graph.rs"]
mod graph_fake;
mod sync_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cardbridge::crm::{Acl, Crm, PersonFields};
use cardbridge::crm::{MappingConfig, Visibility};
use cardbridge::providers::google::{GoogleConfig, GoogleProvider, GROUP_ALL};
use cardbridge::providers::graph::{GraphConfig, GraphProvider};
use cardbridge::providers::http::{AccessTokenSource, RetryPolicy};
use cardbridge::providers::oauth::{OAuthClient, OAuthEndpoints, SecretBox, TokenManager};
use cardbridge::providers::Provider;
use cardbridge::providers::{ProviderError, ProviderKind};
use cardbridge::store::Store;
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::execute;
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::Direction;
use serde_json::json;
use sync_support::{crm_with_users, reopen, CrashStore, MapStore};

const REFRESH: &str = "1//fake-refresh-initial";
const FOLDER: &str = "AAMkAGI2TAAA=";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(10),
    }
}

fn conn(user: u64, kind: ProviderKind, group: &str, direction: Direction) -> SyncConnection {
    SyncConnection {
        id: 3,
        user_id: user,
        provider: kind,
        group: group.into(),
        direction,
        policy: Policy::NewestWins,
        visibility: Visibility::EntireCompany,
        mapping: MappingConfig::default(),
        default_region: Some("US".into()),
    }
}

async fn google() -> (google_fake::FakeGoogle, GoogleProvider) {
    let fake = google_fake::FakeGoogle::start().await;
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
        page_size: 50,
        retry: fast_retry(),
    };
    (fake, GoogleProvider::new(http, tokens, config))
}

#[tokio::test]
async fn google_contact_reaches_the_crm_and_a_crm_edit_reaches_google() {
    let (fake, provider) = google().await;
    fake.put_person(
        "people/c900",
        json!({
            "resourceName": "people/c900",
            "names": [{"givenName": "Ada", "familyName": "Lovelace", "displayName": "Ada Lovelace"}],
            "emailAddresses": [{"value": "ada@example.com", "type": "work"}],
            "phoneNumbers": [{"value": "+1 202 555 0143", "type": "mobile"}],
            "organizations": [{"name": "Analytical Engines", "title": "Countess"}],
            "memberships": [{"contactGroupMembership": {"contactGroupId": "myContacts",
                "contactGroupResourceName": "contactGroups/myContacts"}}]
        }),
    );
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, ProviderKind::Google, GROUP_ALL, Direction::TwoWay);
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let persons = crm.list_persons(None, 100).await.unwrap().persons;
    assert_eq!(persons.len(), 1);
    let p = &persons[0];
    assert_eq!(p.first_name, "Ada");
    assert_eq!(p.last_name, "Lovelace");
    assert_eq!(p.emails[0].value, "ada@example.com");
    assert_eq!(p.phones[0].value, "+1 202 555 0143");
    assert_eq!(p.org_name, "Analytical Engines");
    assert_eq!(p.job_title, "Countess");
    assert_eq!(p.owner_id, alice.id);
    assert_eq!(p.visible_to, Visibility::EntireCompany);

    let mut f = p.fields();
    f.job_title = "Analyst".into();
    crm.update_person(p.id, p.version, f, p.acl())
        .await
        .unwrap();
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.counts.provider.updated, 1, "{s:?}");
    let stored = fake.person("people/c900").unwrap();
    assert_eq!(stored["organizations"][0]["title"], "Analyst", "{stored}");
    assert_eq!(stored["emailAddresses"][0]["value"], "ada@example.com");
    // Our own write is not read back as a change.
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert_eq!(s.counts.updated() + s.counts.added(), 0, "{s:?}");
}

struct StaticTokens;

#[async_trait]
impl AccessTokenSource for StaticTokens {
    async fn access_token(&self) -> Result<String, ProviderError> {
        Ok("tok".into())
    }
    async fn invalidate(&self, _token: &str) {}
}

async fn graph() -> (graph_fake::FakeGraph, GraphProvider) {
    let fake = graph_fake::FakeGraph::start("tok").await;
    fake.add_folder(FOLDER, "Contacts", None);
    let mut cfg = GraphConfig::new(format!("user-{}@contoso.com", uuid::Uuid::new_v4()));
    cfg.base_url = fake.base.clone();
    cfg.page_size = 50;
    cfg.retry = fast_retry();
    let p = GraphProvider::new(cfg, Arc::new(StaticTokens)).unwrap();
    (fake, p)
}

#[tokio::test]
async fn graph_contact_reaches_the_crm_and_a_crm_edit_reaches_graph_keeping_overflow() {
    let (fake, provider) = graph().await;
    let id = fake.put_contact(
        FOLDER,
        json!({
            "givenName": "Grace",
            "surname": "Hopper",
            "displayName": "Grace Hopper",
            "companyName": "Navy",
            "jobTitle": "Rear Admiral",
            "emailAddresses": [{"name": "Grace Hopper", "address": "grace@navy.mil"}],
            "mobilePhone": "+1 202 555 0199"
        }),
    );
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, ProviderKind::Graph, FOLDER, Direction::TwoWay);
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let persons = crm.list_persons(None, 100).await.unwrap().persons;
    assert_eq!(persons.len(), 1);
    let p = &persons[0];
    assert_eq!(p.name, "Grace Hopper");
    assert_eq!(p.org_name, "Navy");
    assert_eq!(p.job_title, "Rear Admiral");
    assert_eq!(p.emails[0].value, "grace@navy.mil");
    assert_eq!(p.phones[0].value, "+1 202 555 0199");

    // Four emails in the CRM: Graph holds three, the fourth stays in the CRM.
    let mut f = p.fields();
    f.job_title = "Commodore".into();
    for e in ["g2@navy.mil", "g3@navy.mil", "g4@navy.mil"] {
        f.emails.push(cardbridge::crm::LabeledValue {
            value: e.into(),
            label: "work".into(),
            primary: false,
        });
    }
    crm.update_person(p.id, p.version, f, p.acl())
        .await
        .unwrap();
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let stored = fake.contact(&id).unwrap();
    assert_eq!(stored["jobTitle"], "Commodore", "{stored}");
    assert_eq!(stored["emailAddresses"].as_array().unwrap().len(), 3);
    // The overflow is not read back as a deletion.
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert_eq!(s.counts.updated() + s.counts.deleted(), 0, "{s:?}");
    let p = crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.emails.len(), 4, "{:?}", p.emails);
    // A remote edit still flows in, and the overflow survives it.
    fake.edit_contact(&id, json!({"companyName": "US Navy"}));
    execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    let p = crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.org_name, "US Navy");
    assert_eq!(p.emails.len(), 4, "{:?}", p.emails);
}

// ------------------------------------------------------------- create after a crash

/// A person with nothing to match on but the CRM id: no email, no phone.
fn ada() -> PersonFields {
    PersonFields {
        name: "Ada Lovelace".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        org_name: "Analytical Engines".into(),
        ..PersonFields::default()
    }
}

/// What one crash scenario left: whether the crash hit after the provider had created the
/// contact, and the persons after recovery.
struct Recovery {
    created_before_crash: bool,
    persons: usize,
}

/// A CRM person is pushed by a run whose store fails from commit `k` on (a crash), then a new
/// process syncs twice. `contacts` counts the contacts at the provider.
async fn create_with_crash_after(
    provider: &dyn Provider,
    kind: ProviderKind,
    group: &str,
    k: i64,
    contacts: &dyn Fn() -> usize,
) -> Recovery {
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, kind, group, Direction::TwoWay);
    crm.create_person(
        ada(),
        Acl {
            owner_id: alice.id,
            followers: vec![],
            visible_to: Visibility::EntireCompany,
        },
    )
    .await
    .unwrap();
    drop(crm);
    let crash = Arc::new(CrashStore::new(store.clone(), k));
    let crm = reopen(crash.clone() as Arc<dyn Store>).await;
    let r = execute::run(&c, provider, &crm, crash.as_ref()).await;
    assert!(r.is_ok() || crash.crashed(), "{r:?}");
    let created_before_crash = crash.crashed() && contacts() == 1;
    // A new process.
    let crm: Crm = reopen(store.clone() as Arc<dyn Store>).await;
    for _ in 0..2 {
        let s = execute::run(&c, provider, &crm, store.as_ref())
            .await
            .unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
    }
    let persons = crm.list_persons(None, 100).await.unwrap().persons;
    for p in &persons {
        assert_eq!(p.name, "Ada Lovelace", "{persons:?}");
    }
    Recovery {
        created_before_crash,
        persons: persons.len(),
    }
}

#[tokio::test]
async fn a_google_contact_created_before_a_crash_is_linked_back_not_duplicated() {
    let mut hit = 0;
    for k in 0..12 {
        let (fake, provider) = google().await;
        let r = create_with_crash_after(&provider, ProviderKind::Google, GROUP_ALL, k, &|| {
            fake.live_count()
        })
        .await;
        assert_eq!(fake.live_count(), 1, "crash after {k} commits: one contact");
        assert_eq!(r.persons, 1, "crash after {k} commits: one person");
        if r.created_before_crash {
            hit += 1;
            // The contact carries our CRM id in clientData.
            let p = fake.person(&fake.resource_names()[0]).unwrap();
            assert_eq!(p["clientData"][0]["key"], "cardbridgeCrmId", "{p}");
        }
    }
    assert!(hit > 0, "some crash fell between the create and its commit");
}

#[tokio::test]
async fn a_graph_contact_created_before_a_crash_is_linked_back_not_duplicated() {
    let mut hit = 0;
    for k in 0..12 {
        let (fake, provider) = graph().await;
        let r = create_with_crash_after(&provider, ProviderKind::Graph, FOLDER, k, &|| {
            fake.count(FOLDER)
        })
        .await;
        assert_eq!(
            fake.count(FOLDER),
            1,
            "crash after {k} commits: one contact"
        );
        assert_eq!(r.persons, 1, "crash after {k} commits: one person");
        hit += usize::from(r.created_before_crash);
    }
    assert!(hit > 0, "some crash fell between the create and its commit");
}

// ------------------------------------------------------------------------------ photos

const GRAPH_PHOTO: &[u8] = include_bytes!("../fixtures/graph/photo.jpg");

fn inline_photo(card: &cardbridge::vcard::VCard) -> Option<Vec<u8>> {
    match cardbridge::vcard::photo::photo(card)? {
        cardbridge::vcard::photo::Photo::Inline { bytes, .. } => Some(bytes.to_vec()),
        cardbridge::vcard::photo::Photo::Uri(_) => None,
    }
}

/// A Graph contact's photo comes in with the pull and is kept in the engine's remote card; a
/// CRM edit pushed to it makes no photo request and leaves the photo as it was; the runs after
/// make no photo request either (our own PATCH coming back in the delta is not re-read).
#[tokio::test]
async fn graph_photo_is_pulled_kept_across_a_crm_edit_and_never_echoed() {
    let (fake, provider) = graph().await;
    let id = fake.put_contact(
        FOLDER,
        json!({"givenName": "Ada", "surname": "Lovelace", "displayName": "Ada Lovelace",
               "mobilePhone": "+44 20 7946 0000"}),
    );
    fake.set_photo(&id, "image/jpeg", GRAPH_PHOTO);
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, ProviderKind::Graph, FOLDER, Direction::TwoWay);
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let rec = cardbridge::sync::state::item(store.as_ref(), c.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        inline_photo(&rec.card().unwrap()).as_deref(),
        Some(GRAPH_PHOTO)
    );
    let photo_reqs = |fake: &graph_fake::FakeGraph| {
        fake.requests()
            .into_iter()
            .filter(|r| r.is_photo())
            .collect::<Vec<_>>()
    };

    // A CRM edit of the phone reaches Graph with no photo request at all.
    let p = crm.list_persons(None, 10).await.unwrap().persons.remove(0);
    let mut f = p.fields();
    f.phones[0].value = "+44 20 7946 0001".into();
    crm.update_person(p.id, p.version, f, p.acl())
        .await
        .unwrap();
    fake.clear_requests();
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(
        fake.contact(&id).unwrap()["mobilePhone"],
        "+44 20 7946 0001"
    );
    assert!(photo_reqs(&fake).is_empty(), "{:?}", fake.requests());
    assert_eq!(fake.photo(&id).unwrap().1, GRAPH_PHOTO);
    let rec = cardbridge::sync::state::item(store.as_ref(), c.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        inline_photo(&rec.card().unwrap()).as_deref(),
        Some(GRAPH_PHOTO)
    );

    // The next runs: the delta returns our own PATCH; no photo request, nothing written.
    for _ in 0..2 {
        fake.clear_requests();
        let s = execute::run(&c, &provider, &crm, store.as_ref())
            .await
            .unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.counts.updated() + s.counts.deleted(), 0, "{s:?}");
        assert!(photo_reqs(&fake).is_empty(), "{:?}", fake.requests());
        assert!(
            fake.requests().iter().all(|r| r.method == "GET"),
            "{:?}",
            fake.requests()
        );
    }

    // A photo changed in Outlook flows into the stored card.
    let newer = b"\xff\xd8\xff\xe0-newer-".to_vec();
    fake.set_photo(&id, "image/jpeg", &newer);
    execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    let rec = cardbridge::sync::state::item(store.as_ref(), c.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inline_photo(&rec.card().unwrap()), Some(newer));
}

/// A Google photo (a URI) comes in with the pull and is kept in the engine's remote card; a
/// CRM edit pushed to that contact makes no photo request (the URI is never pushed back as
/// bytes), and neither does the next run.
#[tokio::test]
async fn google_photo_uri_is_kept_across_a_crm_edit_and_never_pushed_back() {
    let (fake, provider) = google().await;
    let id = "people/c901";
    let url = "https://lh3.googleusercontent.com/contacts/ABCdef123";
    fake.put_person(
        id,
        json!({
            "resourceName": id,
            "names": [{"givenName": "Ada", "familyName": "Lovelace", "displayName": "Ada Lovelace"}],
            "phoneNumbers": [{"value": "+1 202 555 0143", "type": "mobile"}],
            "photos": [{"metadata": {"primary": true, "source": {"type": "CONTACT", "id": "901"}}, "url": url}],
            "memberships": [{"contactGroupMembership": {"contactGroupId": "myContacts",
                "contactGroupResourceName": "contactGroups/myContacts"}}]
        }),
    );
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, ProviderKind::Google, GROUP_ALL, Direction::TwoWay);
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let stored_photo =
        |rec: cardbridge::sync::state::ItemRecord| match cardbridge::vcard::photo::photo(
            &rec.card().unwrap(),
        ) {
            Some(cardbridge::vcard::photo::Photo::Uri(u)) => Some(u.to_string()),
            _ => None,
        };
    let rec = cardbridge::sync::state::item(store.as_ref(), c.id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_photo(rec).as_deref(), Some(url));

    let p = crm.list_persons(None, 10).await.unwrap().persons.remove(0);
    let mut f = p.fields();
    f.phones[0].value = "+1 202 555 0144".into();
    crm.update_person(p.id, p.version, f, p.acl())
        .await
        .unwrap();
    for run in 0..2 {
        fake.clear_requests();
        let s = execute::run(&c, &provider, &crm, store.as_ref())
            .await
            .unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert!(
            fake.photo_requests().is_empty(),
            "run {run}: {:?}",
            fake.requests()
        );
        if run == 1 {
            assert_eq!(s.counts.updated() + s.counts.deleted(), 0, "{s:?}");
        }
    }
    let person = fake.person(id).unwrap();
    assert_eq!(person["phoneNumbers"][0]["value"], "+1 202 555 0144");
    assert_eq!(person["photos"][0]["url"], url);
    let rec = cardbridge::sync::state::item(store.as_ref(), c.id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_photo(rec).as_deref(), Some(url));
}
