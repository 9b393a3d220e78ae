//! The CardDAV client against in-process fakes: a fake iCloud (partition-host home set,
//! credentials only where allowed, vCard 3.0 only, group cards, 403 without `N`, no ETag on PUT)
//! and a fake that truncates every `sync-collection` answer (no change may be lost).
#![allow(clippy::unwrap_used)]

#[path = "fakes/dav_common.rs"]
mod dav_common;
#[path = "fakes/icloud.rs"]
mod icloud;
#[path = "fakes/truncating.rs"]
mod truncating;

use std::collections::BTreeMap;

use cardbridge::providers::carddav::{
    discover, Auth, CarddavProvider, DavClient, DiscoveryStart, GroupRef, HostPattern, NoDns,
    Profile,
};
use cardbridge::providers::{Page, Provider, ProviderError, PullKind, RemoteChange, SyncGroupKind};
use url::Url;

fn icloud_auth() -> Auth {
    Auth::Basic {
        user: icloud::USER.into(),
        password: icloud::PASSWORD.into(),
    }
}

/// The iCloud profile with the fake's partition host standing in for `pNN-contacts.icloud.com`.
fn fake_icloud_profile(f: &icloud::FakeIcloud) -> Profile {
    Profile {
        credential_hosts: vec![HostPattern(f.partition_host.clone())],
        ..Profile::icloud()
    }
}

fn provider(f: &icloud::FakeIcloud) -> CarddavProvider {
    CarddavProvider::connect(
        Url::parse(&f.public_url).unwrap(),
        icloud_auth(),
        fake_icloud_profile(f),
    )
    .unwrap()
}

/// Applies pages to a local id → etag map, the way the engine would.
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
                RemoteChange::Invalid { id, .. } => {
                    mentioned.insert(id.clone());
                }
            }
        }
    }
    if full && pages.last().is_some_and(|p| p.complete) {
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
        assert!(pages.len() < 1000, "pull does not finish");
    }
}

const JANE: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Doe;Jane;;;\r\nFN:Jane Doe\r\nUID:D4C1-JANE\r\nitem1.EMAIL;type=INTERNET:jane@example.com\r\nitem1.X-ABLabel:Billing\r\nEND:VCARD\r\n";
const JOHN: &str =
    "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Roe;John;;;\r\nFN:John Roe\r\nUID:JOHN\r\nEND:VCARD\r\n";
const FRIENDS: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Friends;;;;\r\nFN:Friends\r\nUID:GROUP-FRIENDS\r\nX-ADDRESSBOOKSERVER-KIND:group\r\nX-ADDRESSBOOKSERVER-MEMBER:urn:uuid:D4C1-JANE\r\nEND:VCARD\r\n";

#[tokio::test]
async fn icloud_discovery_follows_the_partition_host_with_credentials() {
    let f = icloud::FakeIcloud::start().await;
    let client = DavClient::new(Url::parse(&f.public_url).unwrap(), icloud_auth())
        .unwrap()
        .with_credential_hosts(fake_icloud_profile(&f).credential_hosts);
    let d = discover(
        &client,
        &DiscoveryStart::parse(&f.public_url).unwrap(),
        &NoDns,
    )
    .await
    .unwrap();
    assert_eq!(d.principal.path(), "/1234567/principal/");
    assert_eq!(
        d.home_sets[0].as_str(),
        format!("{}1234567/carddavhome/", f.partition_url)
    );
    assert_eq!(d.books.len(), 1);
    let b = &d.books[0].info;
    assert_eq!(b.supported_address_data.len(), 1);
    assert_eq!(b.supported_address_data[0].version, "3.0");
    assert!(b.supports_sync_collection());
    let seen = f.seen();
    assert!(
        seen.iter().any(|s| s.host == "partition" && s.authorized),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.host != "unrelated"));
}

#[tokio::test]
async fn credentials_never_go_to_an_unrelated_host() {
    let f = icloud::FakeIcloud::start().await;
    // A home set and a redirect pointing at another host.
    {
        let mut g = f.inner.lock().unwrap();
        g.home_set = format!("{}1234567/carddavhome/", f.unrelated_url);
        g.well_known_to = format!("{}steal/", f.unrelated_url);
    }
    let client = DavClient::new(Url::parse(&f.public_url).unwrap(), icloud_auth())
        .unwrap()
        .with_credential_hosts(fake_icloud_profile(&f).credential_hosts);
    let err = discover(
        &client,
        &DiscoveryStart::parse(&f.public_url).unwrap(),
        &NoDns,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProviderError::CredentialsRejected), "{err:?}");
    let seen = f.seen();
    let unrelated: Vec<_> = seen.iter().filter(|s| s.host == "unrelated").collect();
    assert!(
        !unrelated.is_empty(),
        "the unrelated host was asked: {seen:?}"
    );
    assert!(
        unrelated.iter().all(|s| !s.has_authorization),
        "credentials leaked: {unrelated:?}"
    );
}

#[tokio::test]
async fn wrong_password_is_credentials_rejected_not_retried() {
    let f = icloud::FakeIcloud::start().await;
    let p = CarddavProvider::connect(
        Url::parse(&f.public_url).unwrap(),
        Auth::Basic {
            user: icloud::USER.into(),
            password: "wrong".into(),
        },
        fake_icloud_profile(&f),
    )
    .unwrap();
    assert!(matches!(
        p.sync_groups().await.unwrap_err(),
        ProviderError::CredentialsRejected
    ));
    assert_eq!(f.seen().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn icloud_groups_pull_push_and_membership() {
    let f = icloud::FakeIcloud::start().await;
    f.put_raw("jane.vcf", JANE);
    f.put_raw("john.vcf", JOHN);
    f.put_raw("friends.vcf", FRIENDS);
    let p = provider(&f);

    let groups = p.sync_groups().await.unwrap();
    let book = groups
        .iter()
        .find(|g| g.kind == SyncGroupKind::AddressBook)
        .unwrap();
    assert_eq!(book.id, f.book_url());
    let friends = groups
        .iter()
        .find(|g| g.kind == SyncGroupKind::Group)
        .unwrap();
    assert_eq!(friends.name, "Friends");

    // The whole book: two contacts, the group card is not a contact.
    let (pages, _) = pull_all(&p, &book.id, None).await;
    let mut ids: Vec<String> = pages
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| match c {
            RemoteChange::Upsert(i) => Some(i.id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "/1234567/carddavhome/card/jane.vcf",
            "/1234567/carddavhome/card/john.vcf"
        ]
    );
    assert_eq!(pages[0].kind, PullKind::FullListing);

    // The group: only Jane, with her labelled email kept.
    let (pages, cursor) = pull_all(&p, &friends.id, None).await;
    let mut state = BTreeMap::new();
    apply(&mut state, &pages);
    assert_eq!(
        state.keys().collect::<Vec<_>>(),
        ["/1234567/carddavhome/card/jane.vcf"]
    );

    // No change: one request.
    let before = p.client().request_count();
    let (pages, cursor) = pull_all(&p, &friends.id, cursor).await;
    assert!(pages[0].changes.is_empty() && pages[0].kind == PullKind::Incremental);
    assert_eq!(p.client().request_count() - before, 1);

    // John joins the group: only the group card changed, and John shows up.
    f.put_raw(
        "friends.vcf",
        &FRIENDS.replace(
            "END:VCARD",
            "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:JOHN\r\nEND:VCARD",
        ),
    );
    let (pages, cursor) = pull_all(&p, &friends.id, cursor).await;
    apply(&mut state, &pages);
    assert_eq!(state.len(), 2, "{pages:?}");

    // Jane leaves: a full listing of the group that no longer mentions her.
    f.put_raw(
        "friends.vcf",
        &FRIENDS.replace("urn:uuid:D4C1-JANE", "urn:uuid:JOHN"),
    );
    let (pages, cursor) = pull_all(&p, &friends.id, cursor).await;
    apply(&mut state, &pages);
    assert_eq!(
        state.keys().collect::<Vec<_>>(),
        ["/1234567/carddavhome/card/john.vcf"]
    );

    // Creating in the group: written as 3.0 (with N), read back because iCloud sends no ETag,
    // and added to the group card.
    let new = cardbridge::vcard::read_normalized("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ann Example\r\nUID:ANN-1\r\nEMAIL;TYPE=work;PREF=1:ann@example.com\r\nEND:VCARD\r\n").cards.remove(0);
    let w = p.create(&friends.id, &new, "crm-1").await.unwrap();
    assert_eq!(w.id, "/1234567/carddavhome/card/ANN-1.vcf");
    assert!(w.etag.is_some(), "the ETag was read back");
    let stored = f.stored("ANN-1.vcf").unwrap();
    assert!(
        stored.contains("VERSION:3.0") && stored.contains("\r\nN:"),
        "{stored}"
    );
    assert!(f.stored("friends.vcf").unwrap().contains("urn:uuid:ANN-1"));
    let (pages, _) = pull_all(&p, &friends.id, cursor).await;
    apply(&mut state, &pages);
    assert!(state.contains_key("/1234567/carddavhome/card/ANN-1.vcf"));
    assert_eq!(
        state["/1234567/carddavhome/card/ANN-1.vcf"],
        w.etag.clone().unwrap(),
        "our own write is not a new change"
    );

    // Stale If-Match → typed conflict; delete with the right one works.
    let stale = p
        .update(&book.id, &w.id, Some("\"C=1@U=fake\""), &new)
        .await
        .unwrap_err();
    assert!(matches!(stale, ProviderError::Conflict), "{stale:?}");
    p.delete(&book.id, &w.id, w.etag.as_deref()).await.unwrap();
    assert!(f.stored("ANN-1.vcf").is_none());
    let _ = GroupRef::parse(&friends.id).unwrap();
}

#[tokio::test]
async fn icloud_refuses_a_card_without_n_which_we_never_send() {
    let f = icloud::FakeIcloud::start().await;
    // The fake really refuses it...
    let resp = reqwest::Client::new()
        .put(format!("{}nameless.vcf", f.book_url()))
        .basic_auth(icloud::USER, Some(icloud::PASSWORD))
        .body("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No N\r\nUID:x\r\nEND:VCARD\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // ...and a card without N from us still gets one in 3.0.
    let p = provider(&f);
    let card = cardbridge::vcard::read_normalized(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Only FN\r\nUID:only-fn\r\nEND:VCARD\r\n",
    )
    .cards
    .remove(0);
    let w = p.create(&f.book_url(), &card, "c").await.unwrap();
    assert!(f.stored("only-fn.vcf").is_some(), "{w:?}");
}

#[tokio::test]
async fn invalid_token_recovers_with_a_full_listing() {
    let f = icloud::FakeIcloud::start().await;
    f.put_raw("jane.vcf", JANE);
    let p = provider(&f);
    let bogus = cardbridge::providers::carddav::Cursor::Sync {
        token: "FT=-@RU=fake@S=999".into(),
        full: false,
        members: None,
    }
    .encode();
    let page = p.pull(&f.book_url(), Some(&bogus)).await.unwrap();
    assert_eq!(page.kind, PullKind::FullListing);
    assert!(page.complete);
    assert_eq!(page.changes.len(), 1);
}

#[tokio::test]
async fn truncated_sync_loses_no_change() {
    let t = truncating::Truncating::start(7).await;
    for i in 0..25 {
        t.put(&format!("c{i:02}.vcf"));
    }
    let p = CarddavProvider::connect(Url::parse(&t.url).unwrap(), Auth::None, Profile::generic())
        .unwrap();
    let (pages, cursor) = pull_all(&p, &t.url, None).await;
    assert_eq!(pages.len(), 4, "25 members, 7 per answer");
    assert!(pages.iter().all(|p| p.kind == PullKind::FullListing));
    assert!(pages[..3].iter().all(|p| !p.complete));
    let mut state = BTreeMap::new();
    apply(&mut state, &pages);
    assert_eq!(state, t.state());

    // Changes, then more changes between the pages of the next pull.
    for i in 0..10 {
        t.put(&format!("c{i:02}.vcf"));
    }
    for i in 10..15 {
        t.delete(&format!("c{i:02}.vcf"));
    }
    for i in 30..33 {
        t.put(&format!("c{i:02}.vcf"));
    }
    let mut cursor = cursor;
    let mut pages = Vec::new();
    let mut n = 0;
    loop {
        let page = p.pull(&t.url, cursor.as_deref()).await.unwrap();
        cursor = page.cursor.clone();
        let done = page.complete;
        assert_eq!(page.kind, PullKind::Incremental);
        // No deletion is ever concluded from a truncated answer: deletes are explicit.
        pages.push(page);
        n += 1;
        if n == 1 {
            t.put("c20.vcf");
            t.delete("c21.vcf");
            t.put("c40.vcf");
        }
        if done {
            break;
        }
    }
    apply(&mut state, &pages);
    // One more incremental pull picks up whatever the last page could not have seen.
    let (more, _) = pull_all(&p, &t.url, cursor).await;
    apply(&mut state, &more);
    assert_eq!(state, t.state());
    assert!(t.inner.lock().unwrap().truncated_answers >= 5);
}

/// The profile's `multiget_concurrency` bounds the multigets in flight, and that many are
/// used (the next multiget is out while the previous answer is parsed).
#[tokio::test]
async fn multigets_run_concurrently_up_to_the_profile_bound() {
    let t = truncating::Truncating::start(10_000).await;
    for i in 0..1_000 {
        t.put(&format!("c{i:04}.vcf"));
    }
    t.inner.lock().unwrap().multiget_delay = std::time::Duration::from_millis(30);
    let with = |n| Profile {
        multiget_concurrency: n,
        ..Profile::generic()
    };
    for (profile, expected) in [(Profile::generic(), 2), (with(4), 4), (with(1), 1)] {
        assert_eq!(profile.multiget_concurrency, expected);
        t.inner.lock().unwrap().max_multigets_in_flight = 0;
        let p = CarddavProvider::connect(Url::parse(&t.url).unwrap(), Auth::None, profile).unwrap();
        let (pages, _) = pull_all(&p, &t.url, None).await;
        let mut state = BTreeMap::new();
        apply(&mut state, &pages);
        assert_eq!(state, t.state(), "every card, in any case");
        assert_eq!(
            t.inner.lock().unwrap().max_multigets_in_flight,
            expected,
            "10 multigets of 100, at most {expected} at once and as many as allowed"
        );
    }
}
