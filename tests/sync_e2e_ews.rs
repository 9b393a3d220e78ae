//! End to end through `sync::execute` against the fake Exchange (tests/fakes/ews.rs): a contact
//! created in the fake reaches the CRM as a person with the right fields; in two-way sync a CRM
//! edit reaches the fake, EWS's slot overflow stays in the CRM, and a stale ChangeKey is
//! resolved by the connection's policy; a SyncState the server forgot resyncs without
//! duplicating persons; revoked credentials stop the run as "needs re-authorization".
#![allow(clippy::unwrap_used)]

#[path = "fakes/ews.rs"]
mod ews_fake;
mod sync_support;

use std::sync::Arc;
use std::time::Duration;

use cardbridge::crm::{LabeledValue, MappingConfig, Visibility};
use cardbridge::providers::ews::{EwsConfig, EwsProvider};
use cardbridge::providers::http::RetryPolicy;
use cardbridge::providers::ProviderKind;
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::execute;
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::Direction;
use ews_fake::{FakeEws, NtlmLeg, CONTACTS_ID};
use sync_support::{crm_with_users, MapStore};

const FOLDER: &str = "AAMkADc3AAEOAAB=";

fn conn(user: u64, direction: Direction) -> SyncConnection {
    SyncConnection {
        id: 5,
        user_id: user,
        provider: ProviderKind::Ews,
        group: FOLDER.into(),
        direction,
        policy: Policy::NewestWins,
        visibility: Visibility::EntireCompany,
        mapping: MappingConfig::default(),
        default_region: Some("US".into()),
    }
}

async fn ews(password: &str) -> (FakeEws, EwsProvider) {
    let fake = FakeEws::start("CONTOSO\\jane", "s3cret").await;
    fake.add_folder(FOLDER, "Customers", CONTACTS_ID, "IPF.Contact");
    let mut cfg = EwsConfig::basic(fake.ews_url.clone(), "CONTOSO\\jane", password);
    cfg.page_size = 20;
    cfg.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(10),
    };
    let p = EwsProvider::new(cfg).unwrap();
    (fake, p)
}

const GRACE: &str = "<t:DisplayName>Grace Hopper</t:DisplayName>\
    <t:GivenName>Grace</t:GivenName>\
    <t:CompanyName>Navy</t:CompanyName>\
    <t:EmailAddresses><t:Entry Key=\"EmailAddress1\">grace@navy.mil</t:Entry></t:EmailAddresses>\
    <t:PhoneNumbers><t:Entry Key=\"MobilePhone\">+1 202 555 0199</t:Entry></t:PhoneNumbers>\
    <t:JobTitle>Rear Admiral</t:JobTitle>\
    <t:Surname>Hopper</t:Surname>";

#[tokio::test]
async fn ews_contact_reaches_the_crm_and_a_crm_edit_reaches_exchange_keeping_overflow() {
    let (fake, provider) = ews("s3cret").await;
    let id = fake.put_contact(FOLDER, GRACE);
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, Direction::TwoWay);
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let persons = crm.list_persons(None, 100).await.unwrap().persons;
    assert_eq!(persons.len(), 1);
    let p = &persons[0];
    assert_eq!(p.name, "Grace Hopper");
    assert_eq!(p.first_name, "Grace");
    assert_eq!(p.last_name, "Hopper");
    assert_eq!(p.org_name, "Navy");
    assert_eq!(p.job_title, "Rear Admiral");
    assert_eq!(p.emails[0].value, "grace@navy.mil");
    assert_eq!(p.phones[0].value, "+1 202 555 0199");
    assert_eq!(p.owner_id, alice.id);

    // Four emails in the CRM: Exchange holds three, the fourth stays in the CRM.
    let mut f = p.fields();
    f.job_title = "Commodore".into();
    for e in ["g2@navy.mil", "g3@navy.mil", "g4@navy.mil"] {
        f.emails.push(LabeledValue {
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
    assert_eq!(s.counts.provider.updated, 1, "{s:?}");
    assert_eq!(fake.field(&id, "JobTitle").as_deref(), Some("Commodore"));
    assert_eq!(fake.entry_count(&id, "EmailAddresses"), 3);
    assert_eq!(
        fake.entry(&id, "EmailAddresses", "EmailAddress1")
            .as_deref(),
        Some("grace@navy.mil")
    );
    // Our own write and the overflow are not read back as changes.
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert_eq!(
        s.counts.updated() + s.counts.added() + s.counts.deleted(),
        0,
        "{s:?}"
    );
    let p = crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.emails.len(), 4, "{:?}", p.emails);

    // A remote edit flows in and the overflow survives it.
    fake.edit_contact(&id, "CompanyName", Some("US Navy"));
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let p = crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.org_name, "US Navy");
    assert_eq!(p.emails.len(), 4, "{:?}", p.emails);
}

#[tokio::test]
async fn a_crm_person_is_created_in_exchange_with_its_crm_id() {
    let (fake, provider) = ews("s3cret").await;
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, Direction::TwoWay);
    execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    fake.put_contact(FOLDER, GRACE);
    execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    let grace = crm.list_persons(None, 100).await.unwrap().persons;
    assert_eq!(grace.len(), 1);
    // A second person made in the CRM by the same user goes to Exchange.
    let mut f = grace[0].fields();
    f.name = "Ada Lovelace".into();
    f.first_name = "Ada".into();
    f.last_name = "Lovelace".into();
    f.org_name = "Analytical Engines".into();
    f.job_title = String::new();
    f.emails = vec![LabeledValue {
        value: "ada@engines.example".into(),
        label: "work".into(),
        primary: true,
    }];
    f.phones = vec![];
    let ada = crm.create_person(f, grace[0].acl()).await.unwrap();
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.counts.provider.added, 1, "{s:?}");
    let created: Vec<String> = fake
        .ids(FOLDER)
        .into_iter()
        .filter(|i| fake.field(i, "Surname").as_deref() == Some("Lovelace"))
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(
        fake.field(&created[0], "CompanyName").as_deref(),
        Some("Analytical Engines")
    );
    assert_eq!(fake.crm_id(&created[0]), Some(ada.id.to_string()));
    // The created contact is not pulled back as a new person.
    execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert_eq!(crm.list_persons(None, 100).await.unwrap().persons.len(), 2);
}

#[tokio::test]
async fn a_stale_change_key_is_resolved_by_the_policy() {
    let (fake, provider) = ews("s3cret").await;
    let id = fake.put_contact(FOLDER, GRACE);
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, Direction::TwoWay);
    execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    let p = crm.list_persons(None, 100).await.unwrap().persons.remove(0);
    // The CRM edits the title; Outlook edits the company after our pull and before our push,
    // so the ChangeKey the engine holds is stale.
    let mut f = p.fields();
    f.job_title = "Commodore".into();
    crm.update_person(p.id, p.version, f, p.acl())
        .await
        .unwrap();
    fake.edit_before_next_update(&id, "CompanyName", "US Navy");
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let updates: Vec<Option<String>> = fake
        .requests()
        .into_iter()
        .filter(|r| r.op == "UpdateItem")
        .map(|r| r.code)
        .collect();
    assert_eq!(
        updates,
        [
            Some("ErrorIrresolvableConflict".to_string()),
            Some("NoError".to_string())
        ],
        "the stale write is refused, then re-merged and retried"
    );
    // Both edits survive on both sides.
    assert_eq!(fake.field(&id, "JobTitle").as_deref(), Some("Commodore"));
    assert_eq!(fake.field(&id, "CompanyName").as_deref(), Some("US Navy"));
    let p = crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.org_name, "US Navy");
    assert_eq!(p.job_title, "Commodore");
}

#[tokio::test]
async fn a_forgotten_sync_state_resyncs_without_duplicate_persons() {
    let (fake, provider) = ews("s3cret").await;
    fake.seed(FOLDER, 0, 45);
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, Direction::OneWay);
    execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert_eq!(crm.list_persons(None, 500).await.unwrap().persons.len(), 45);
    let gone = fake.ids(FOLDER)[0].clone();
    fake.delete_contact(&gone);
    fake.expire_sync_states();
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.code.as_deref() == Some("ErrorInvalidSyncStateData")));
    let persons = crm.list_persons(None, 500).await.unwrap().persons;
    assert_eq!(persons.len(), 44, "no duplicates, the deleted one removed");
}

#[tokio::test]
async fn revoked_credentials_stop_the_run_as_needs_reauthorization() {
    let (fake, provider) = ews("s3cret").await;
    fake.seed(FOLDER, 0, 1);
    fake.set_password("rotated");
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, Direction::TwoWay);
    let err = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
    assert_eq!(fake.requests().len(), 1, "no retry loop");
}

async fn ews_ntlm(password: &str) -> (FakeEws, EwsProvider) {
    let fake = FakeEws::start("CONTOSO\\jane", "s3cret").await;
    fake.require_ntlm(true);
    fake.add_folder(FOLDER, "Customers", CONTACTS_ID, "IPF.Contact");
    let mut cfg = EwsConfig::ntlm(fake.ews_url.clone(), "CONTOSO\\jane", password);
    cfg.page_size = 20;
    cfg.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(10),
    };
    (fake, EwsProvider::new(cfg).unwrap())
}

#[tokio::test]
async fn a_sync_over_ntlm_authenticates_once_and_keeps_the_connection() {
    let (fake, provider) = ews_ntlm("s3cret").await;
    fake.seed(FOLDER, 0, 45);
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, Direction::TwoWay);
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(crm.list_persons(None, 100).await.unwrap().persons.len(), 45);
    let reqs = fake.requests();
    assert!(reqs.len() > 4, "several pages and GetItem batches");
    assert_eq!(reqs[0].ntlm, Some(NtlmLeg::Negotiate));
    assert!(
        matches!(&reqs[1].ntlm, Some(NtlmLeg::Authenticated { user, .. }) if user == "jane"),
        "{reqs:?}"
    );
    // Every later request rode on the authenticated connection without credentials.
    assert!(
        reqs[2..]
            .iter()
            .all(|r| r.ntlm == Some(NtlmLeg::Session) && r.peer == reqs[0].peer),
        "{reqs:?}"
    );
    assert!(reqs.iter().skip(1).all(|r| r.status == 200));
}

#[tokio::test]
async fn a_wrong_ntlm_password_stops_the_run_without_retrying() {
    let (fake, provider) = ews_ntlm("wrong").await;
    fake.seed(FOLDER, 0, 1);
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, Direction::TwoWay);
    let err = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap_err();
    assert!(err.needs_reauthorization(), "{err:?}");
    assert!(err.to_string().contains("credentials rejected"), "{err}");
    assert_eq!(fake.requests().len(), 2, "one handshake, no retry loop");
}

const JPEG: &[u8] = include_bytes!("../fixtures/graph/photo.jpg");

/// The inline photo of the remote card the engine keeps for `id`.
async fn stored_photo(store: &MapStore, conn: u64, id: &str) -> Option<Vec<u8>> {
    let rec = cardbridge::sync::state::item(store, conn, id)
        .await
        .unwrap()
        .unwrap();
    match cardbridge::vcard::photo::photo(&rec.card().unwrap()) {
        Some(cardbridge::vcard::photo::Photo::Inline { bytes, .. }) => Some(bytes.to_vec()),
        _ => None,
    }
}

/// An Exchange contact's photo attachment comes in with the pull and is kept in the engine's
/// remote card; a CRM edit pushed to it sends no attachment request and leaves the photo; the
/// next runs send none either (the echo of our own UpdateItem reads no attachment).
#[tokio::test]
async fn ews_photo_is_pulled_kept_across_a_crm_edit_and_never_echoed() {
    let (fake, provider) = ews("s3cret").await;
    let id = fake.put_contact(FOLDER, GRACE);
    fake.set_photo(&id, "image/jpeg", JPEG);
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let c = conn(alice.id, Direction::TwoWay);
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(stored_photo(&store, c.id, &id).await.as_deref(), Some(JPEG));

    let p = crm.list_persons(None, 10).await.unwrap().persons.remove(0);
    let mut f = p.fields();
    f.phones[0].value = "+1 202 555 0100".into();
    crm.update_person(p.id, p.version, f, p.acl())
        .await
        .unwrap();
    fake.clear_requests();
    let s = execute::run(&c, &provider, &crm, store.as_ref())
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(
        fake.entry(&id, "PhoneNumbers", "MobilePhone").as_deref(),
        Some("+1 202 555 0100")
    );
    assert!(
        fake.attachment_requests().is_empty(),
        "{:?}",
        fake.requests()
    );
    assert_eq!(fake.photo(&id).unwrap().1, JPEG);
    assert_eq!(stored_photo(&store, c.id, &id).await.as_deref(), Some(JPEG));

    for _ in 0..2 {
        fake.clear_requests();
        let s = execute::run(&c, &provider, &crm, store.as_ref())
            .await
            .unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.counts.updated() + s.counts.deleted(), 0, "{s:?}");
        assert!(
            fake.attachment_requests().is_empty(),
            "{:?}",
            fake.requests()
        );
    }
}
