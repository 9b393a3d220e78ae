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
use cardbridge::crm::{MappingConfig, Visibility};
use cardbridge::providers::google::{GoogleConfig, GoogleProvider, GROUP_ALL};
use cardbridge::providers::graph::{GraphConfig, GraphProvider};
use cardbridge::providers::http::{AccessTokenSource, RetryPolicy};
use cardbridge::providers::oauth::{OAuthClient, OAuthEndpoints, SecretBox, TokenManager};
use cardbridge::providers::{ProviderError, ProviderKind};
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::execute;
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::Direction;
use serde_json::json;
use sync_support::{crm_with_users, MapStore};

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
