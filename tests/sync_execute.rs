//! `sync::execute` against an in-memory address book (`tests/sync_support`): every reconcile
//! rule reached through a real run, in both directions, plus conflicts per policy, 412
//! retries, bad cards, full listings, stats, and a crash model check (a store that fails after
//! k commits, then a rerun) that must converge with no duplicate, no lost edit and no
//! resurrected deletion.
#![allow(clippy::unwrap_used)]

mod sync_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use cardbridge::crm::{
    Acl, Crm, LabeledValue, MappingConfig, Person, PersonFields, User, Visibility,
};
use cardbridge::providers::ProviderKind;
use cardbridge::store::Store;
use cardbridge::sync::conflicts;
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::convert::derived_uid;
use cardbridge::sync::execute::{self, RunSummary};
use cardbridge::sync::merge::{Policy, Side};
use cardbridge::sync::reconcile::{Direction, Rule};
use cardbridge::sync::stats;
use cardbridge::vcard::VCard;
use chrono::Utc;
use proptest::prelude::*;
use sync_support::{card, crm_with_users, prop, reopen, Call, CrashStore, FakeBook, MapStore};

struct World {
    store: Arc<MapStore>,
    crm: Crm,
    alice: User,
    bob: User,
    book: Arc<FakeBook>,
    conn: SyncConnection,
}

fn connection(user: u64, direction: Direction, policy: Policy) -> SyncConnection {
    SyncConnection {
        id: 7,
        user_id: user,
        provider: ProviderKind::Carddav,
        group: "book".into(),
        direction,
        policy,
        visibility: Visibility::OwnerFollowers,
        mapping: MappingConfig::default(),
        default_region: Some("US".into()),
    }
}

async fn world(direction: Direction, policy: Policy) -> World {
    let store = Arc::new(MapStore::default());
    let (crm, alice, bob) = crm_with_users(store.clone()).await;
    World {
        store,
        crm,
        conn: connection(alice.id, direction, policy),
        alice,
        bob,
        book: FakeBook::new(2),
    }
}

impl World {
    async fn sync(&self) -> RunSummary {
        execute::run(
            &self.conn,
            self.book.as_ref(),
            &self.crm,
            self.store.as_ref(),
        )
        .await
        .unwrap()
    }
    async fn persons(&self) -> Vec<Person> {
        self.crm.list_persons(None, 10_000).await.unwrap().persons
    }
    async fn person_by_name(&self, name: &str) -> Option<Person> {
        self.persons().await.into_iter().find(|p| p.name == name)
    }
    async fn add_person(&self, owner: &User, name: &str, email: &str) -> Person {
        let f = PersonFields {
            name: name.into(),
            emails: vec![LabeledValue {
                value: email.into(),
                label: "work".into(),
                primary: false,
            }],
            ..Default::default()
        };
        self.crm
            .create_person(
                f,
                Acl {
                    owner_id: owner.id,
                    followers: vec![],
                    visible_to: Visibility::OwnerFollowers,
                },
            )
            .await
            .unwrap()
    }
    async fn edit(&self, id: u64, f: impl FnOnce(&mut PersonFields)) -> Person {
        let p = self.crm.get_person(id).await.unwrap().unwrap();
        let mut fields = p.fields();
        f(&mut fields);
        self.crm
            .update_person(id, p.version, fields, p.acl())
            .await
            .unwrap()
    }
}

fn ada() -> VCard {
    card("ada", "Ada Lovelace", &["ada@x.org"], &["TITLE:Countess"])
}

const BOTH: [Direction; 2] = [Direction::OneWay, Direction::TwoWay];

#[tokio::test]
async fn progress_is_reported_after_each_page_and_item_and_ends_at_the_summary() {
    let w = world(Direction::TwoWay, Policy::NewestWins).await;
    for i in 0..5 {
        w.book.put(
            &format!("p{i}.vcf"),
            card(
                &format!("p{i}"),
                &format!("Person {i}"),
                &[&format!("p{i}@x.org")],
                &[],
            ),
        );
    }
    w.book.state.lock().unwrap().invalid.insert("p4.vcf".into());
    let seen = Arc::new(std::sync::Mutex::new(Vec::<execute::Progress>::new()));
    let hook: execute::ProgressHook = {
        let seen = seen.clone();
        Arc::new(move |p| seen.lock().unwrap().push(*p))
    };
    let options = execute::Options {
        progress: Some(hook),
        ..execute::Options::default()
    };
    let s = execute::run_with(&w.conn, w.book.as_ref(), &w.crm, w.store.as_ref(), &options)
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    // Page size 2: 3 pages of 5 cards (one unreadable), each page and each item reported.
    assert_eq!(s.pages, 3);
    let pages: Vec<u64> = seen.iter().map(|p| p.pages).collect();
    assert_eq!(pages.first(), Some(&1), "{seen:?}");
    // Counts only grow, and the first page's items are counted before the second is pulled.
    for pair in seen.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(b.pages >= a.pages && b.items >= a.items, "{seen:?}");
        assert!(b.counts.crm.added >= a.counts.crm.added, "{seen:?}");
    }
    let before_page_2 = seen
        .iter()
        .rfind(|p| p.pages == 1)
        .expect("reports during the first page");
    assert_eq!(before_page_2.items, 2, "{seen:?}");
    assert_eq!(before_page_2.counts.crm.added, 2, "{seen:?}");
    // The last report is the run's own summary.
    let last = seen.last().unwrap();
    assert_eq!(last.pages, s.pages);
    assert_eq!(last.counts, s.counts);
    assert_eq!(last.counts.crm.added, 4);
    assert_eq!(last.counts.errors, 1, "the unreadable card");
    assert!(last.items >= 5, "5 cards, then the CRM changes: {seen:?}");
}

#[tokio::test]
async fn remote_created_creates_a_person_with_the_connections_owner_and_visibility() {
    for d in BOTH {
        let w = world(d, Policy::NewestWins).await;
        w.book.put("ada.vcf", ada());
        let s = w.sync().await;
        assert_eq!(s.rule_count(Rule::RemoteCreatedNew), 1, "{d:?}");
        let p = w.person_by_name("Ada Lovelace").await.unwrap();
        assert_eq!(p.owner_id, w.alice.id);
        assert_eq!(p.visible_to, Visibility::OwnerFollowers);
        assert_eq!(p.job_title, "Countess");
        assert_eq!(p.emails[0].value, "ada@x.org");
        // Our own state is not read back as a change; nothing is pushed.
        let again = w.sync().await;
        assert_eq!(again.counts.crm.added + again.counts.crm.updated, 0);
        assert!(w.book.calls().is_empty(), "{d:?}: {:?}", w.book.calls());
        assert_eq!(w.persons().await.len(), 1);
    }
}

#[tokio::test]
async fn first_sync_links_existing_persons_by_email_and_phone_without_duplicates() {
    for d in BOTH {
        let w = world(d, Policy::NewestWins).await;
        let by_mail = w.add_person(&w.alice, "Ada L.", "ADA@x.org").await;
        let by_phone = w
            .crm
            .create_person(
                PersonFields {
                    name: "Bob".into(),
                    phones: vec![LabeledValue {
                        value: "(202) 555-0143".into(),
                        label: "work".into(),
                        primary: false,
                    }],
                    ..Default::default()
                },
                Acl {
                    owner_id: w.alice.id,
                    followers: vec![],
                    visible_to: Visibility::OwnerFollowers,
                },
            )
            .await
            .unwrap();
        // Same email, but bob's person: not a candidate.
        w.add_person(&w.bob, "Ada (bob's)", "ada@x.org").await;
        w.book.put("ada.vcf", ada());
        w.book.put(
            "bob.vcf",
            card("bob", "Bob B", &[], &["TEL:+1 202 555 0143"]),
        );
        let s = w.sync().await;
        assert_eq!(s.rule_count(Rule::RemoteCreatedLinked), 2, "{d:?}");
        assert_eq!(w.persons().await.len(), 3, "{d:?}: no duplicate");
        let linked = w.crm.get_person(by_mail.id).await.unwrap().unwrap();
        assert_eq!(linked.job_title, "Countess");
        let linked = w.crm.get_person(by_phone.id).await.unwrap().unwrap();
        assert_eq!(linked.phones.len(), 1);
        match d {
            // One-way: the CRM-only name stays local; nothing written remotely.
            Direction::OneWay => assert!(w.book.calls().is_empty()),
            Direction::TwoWay => {}
        }
    }
}

#[tokio::test]
async fn remote_changes_flow_in_and_crm_edits_stay_local_in_one_way() {
    let w = world(Direction::OneWay, Policy::NewestWins).await;
    w.book.put("ada.vcf", ada());
    w.sync().await;
    let p = w.person_by_name("Ada Lovelace").await.unwrap();
    w.edit(p.id, |f| f.notes = "met at the salon".into()).await;
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::CrmChangedStaysLocal), 1);
    w.book.put(
        "ada.vcf",
        card("ada", "Ada Lovelace", &["ada@x.org"], &["TITLE:Analyst"]),
    );
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::RemoteChanged), 1);
    let p = w.crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.job_title, "Analyst");
    assert_eq!(p.notes, "met at the salon", "a one-way CRM edit stays");
    assert!(w.book.calls().is_empty(), "one-way never writes");
    assert!(prop(&w.book.get("ada.vcf").unwrap(), "NOTE").is_none());
}

#[tokio::test]
async fn remote_deletion_deletes_created_and_unlinks_linked_persons() {
    for d in BOTH {
        let w = world(d, Policy::NewestWins).await;
        let linked = w.add_person(&w.alice, "Grace", "grace@x.org").await;
        w.book.put("ada.vcf", ada());
        w.book.put(
            "grace.vcf",
            card("grace", "Grace Hopper", &["grace@x.org"], &[]),
        );
        w.sync().await;
        w.book.remove("ada.vcf");
        w.book.remove("grace.vcf");
        let s = w.sync().await;
        assert_eq!(s.rule_count(Rule::RemoteDeletedPersonDeleted), 1, "{d:?}");
        assert_eq!(s.rule_count(Rule::RemoteDeletedPersonUnlinked), 1, "{d:?}");
        assert!(w.person_by_name("Ada Lovelace").await.is_none());
        assert!(w.crm.get_person(linked.id).await.unwrap().is_some());
        // The kept person is not pushed back, even when edited.
        w.edit(linked.id, |f| f.notes = "still here".into()).await;
        let s = w.sync().await;
        assert_eq!(s.rule_count(Rule::UnlinkedPersonIgnored), 1, "{d:?}");
        assert!(w.book.get("grace.vcf").is_none());
        assert!(
            !w.book.calls().iter().any(|c| matches!(c, Call::Create(_))),
            "{d:?}"
        );
    }
}

#[tokio::test]
async fn a_remote_deletion_does_not_delete_an_edited_person() {
    let w = world(Direction::TwoWay, Policy::NewestWins).await;
    w.book.put("ada.vcf", ada());
    w.sync().await;
    let p = w.person_by_name("Ada Lovelace").await.unwrap();
    w.edit(p.id, |f| f.notes = "edited".into()).await;
    w.book.remove("ada.vcf");
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::RemoteDeletedPersonEditedKept), 1);
    assert!(w.crm.get_person(p.id).await.unwrap().is_some());
    assert!(w.book.get("ada.vcf").is_none(), "not recreated");
}

#[tokio::test]
async fn crm_deletion_unlinks_in_one_way_and_the_card_recreates_only_when_it_changes() {
    let w = world(Direction::OneWay, Policy::NewestWins).await;
    w.book.put("ada.vcf", ada());
    w.sync().await;
    let p = w.person_by_name("Ada Lovelace").await.unwrap();
    w.crm.delete_person(p.id, None).await.unwrap();
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::CrmDeletedUnlinked), 1);
    assert!(
        w.book.get("ada.vcf").is_some(),
        "one-way never deletes remotely"
    );
    // A full listing reports the unchanged card: it does not come back.
    w.book.expire_cursors();
    let s = w.sync().await;
    assert!(s.full_listing);
    assert_eq!(s.rule_count(Rule::UnlinkedCardIgnored), 1);
    assert!(w.persons().await.is_empty(), "no resurrection");
    w.book.put(
        "ada.vcf",
        card("ada", "Ada Lovelace", &["ada@x.org"], &["TITLE:Analyst"]),
    );
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::UnlinkedCardChangedRecreated), 1);
    assert_eq!(w.persons().await.len(), 1);
    // The card was deleted remotely after its person was deleted: forgotten.
    let p = w.person_by_name("Ada Lovelace").await.unwrap();
    w.crm.delete_person(p.id, None).await.unwrap();
    w.sync().await;
    w.book.remove("ada.vcf");
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::TombstoneCleared), 1);
}

#[tokio::test]
async fn crm_deleted_while_card_edited_keeps_the_card() {
    for d in BOTH {
        let w = world(d, Policy::NewestWins).await;
        w.book.put("ada.vcf", ada());
        w.sync().await;
        let p = w.person_by_name("Ada Lovelace").await.unwrap();
        w.crm.delete_person(p.id, None).await.unwrap();
        w.book.put(
            "ada.vcf",
            card("ada", "Ada Lovelace", &["ada@x.org"], &["TITLE:Analyst"]),
        );
        let s = w.sync().await;
        assert_eq!(s.rule_count(Rule::CrmDeletedRemoteEditedKept), 1, "{d:?}");
        assert!(w.book.get("ada.vcf").is_some(), "{d:?}");
        assert!(w.persons().await.is_empty(), "{d:?}");
    }
}

#[tokio::test]
async fn both_deleted_is_forgotten() {
    let w = world(Direction::TwoWay, Policy::NewestWins).await;
    w.book.put("ada.vcf", ada());
    w.sync().await;
    let p = w.person_by_name("Ada Lovelace").await.unwrap();
    w.crm.delete_person(p.id, None).await.unwrap();
    w.book.remove("ada.vcf");
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::BothDeleted), 1);
    assert!(w.book.calls().is_empty());
}

#[tokio::test]
async fn two_way_pushes_creates_edits_and_deletes_with_preconditions() {
    let w = world(Direction::TwoWay, Policy::NewestWins).await;
    let p = w.add_person(&w.alice, "Ada Lovelace", "ada@x.org").await;
    // Bob's persons are never pushed through Alice's connection.
    w.add_person(&w.bob, "Not Alice's", "bob@x.org").await;
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::CrmCreatedPushed), 1);
    let id = format!("{}.vcf", derived_uid(w.conn.id, p.id));
    assert_eq!(w.book.ids(), vec![id.clone()]);
    // The echo of our own create is not a change.
    let s = w.sync().await;
    assert_eq!(s.counts.crm.updated + s.counts.provider.updated, 0, "{s:?}");

    w.edit(p.id, |f| f.job_title = "Countess".into()).await;
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::CrmChangedPushed), 1);
    assert_eq!(
        prop(&w.book.get(&id).unwrap(), "TITLE").as_deref(),
        Some("Countess")
    );
    assert!(matches!(
        w.book.calls().last(),
        Some(Call::Update(i, Some(_))) if *i == id
    ));

    w.book.put(&id, {
        let mut c = w.book.get(&id).unwrap();
        c.entries.push(
            cardbridge::vcard::VCardEntry::new(cardbridge::vcard::VCardProperty::Other(
                "X-KEEP".into(),
            ))
            .with_value("photo-like".to_string()),
        );
        c
    });
    w.sync().await;
    w.edit(p.id, |f| f.notes = "n".into()).await;
    w.sync().await;
    let text = cardbridge::vcard::write_v4(&w.book.get(&id).unwrap());
    assert!(
        text.contains("X-KEEP:photo-like"),
        "unmodelled data survives: {text}"
    );

    w.crm.delete_person(p.id, None).await.unwrap();
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::CrmDeletedRemoteDeleted), 1);
    assert!(w.book.get(&id).is_none());
    assert!(matches!(
        w.book.calls().last(),
        Some(Call::Delete(_, Some(_)))
    ));
    let s = w.sync().await;
    assert_eq!(
        s.counts.added() + s.counts.updated() + s.counts.deleted(),
        0
    );
}

#[tokio::test]
async fn one_way_keeps_crm_created_persons_local() {
    let w = world(Direction::OneWay, Policy::NewestWins).await;
    w.add_person(&w.alice, "Ada Lovelace", "ada@x.org").await;
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::CrmCreatedStaysLocal), 1);
    assert!(w.book.ids().is_empty());
    assert!(w.book.calls().is_empty());
}

#[tokio::test]
async fn a_same_field_conflict_is_resolved_by_each_policy_and_recorded() {
    for (policy, want, winner) in [
        (Policy::ProviderWins, "Remote Title", Side::Remote),
        (Policy::CrmWins, "CRM Title", Side::Crm),
        // The card has no REV: ties and unknown times go to the provider.
        (Policy::NewestWins, "Remote Title", Side::Remote),
    ] {
        let w = world(Direction::TwoWay, policy).await;
        w.book.put("ada.vcf", ada());
        w.sync().await;
        let p = w.person_by_name("Ada Lovelace").await.unwrap();
        w.edit(p.id, |f| f.job_title = "CRM Title".into()).await;
        w.book.put(
            "ada.vcf",
            card(
                "ada",
                "Ada Lovelace",
                &["ada@x.org"],
                &["TITLE:Remote Title"],
            ),
        );
        let s = w.sync().await;
        assert_eq!(s.rule_count(Rule::BothChanged), 1, "{policy:?}");
        assert_eq!(s.counts.conflicts, 1);
        let p = w.crm.get_person(p.id).await.unwrap().unwrap();
        assert_eq!(p.job_title, want, "{policy:?}");
        assert_eq!(
            prop(&w.book.get("ada.vcf").unwrap(), "TITLE").as_deref(),
            Some(want),
            "{policy:?}"
        );
        let recorded = conflicts::list(w.store.as_ref(), w.conn.id, None, 10)
            .await
            .unwrap();
        assert_eq!(recorded.len(), 1);
        let c = &recorded[0];
        assert_eq!(c.field, "job_title");
        assert_eq!(c.crm.as_deref(), Some("CRM Title"));
        assert_eq!(c.remote.as_deref(), Some("Remote Title"));
        assert_eq!(c.base.as_deref(), Some("Countess"));
        assert_eq!(c.winner, winner);
        assert_eq!(c.person_id, Some(p.id));
        // Resolved: the next run is quiet.
        let s = w.sync().await;
        assert_eq!(s.counts.conflicts, 0);
        assert_eq!(s.counts.updated(), 0, "{policy:?}: {s:?}");
        let st = stats::view(w.store.as_ref(), w.conn.id, Utc::now())
            .await
            .unwrap();
        assert_eq!(st.last_7_days.conflicts, 1);
        assert_eq!(st.total_in_sync, 1);
    }
}

#[tokio::test]
async fn newest_wins_compares_rev_with_update_time() {
    let w = world(Direction::TwoWay, Policy::NewestWins).await;
    w.book.put("ada.vcf", ada());
    w.sync().await;
    let p = w.person_by_name("Ada Lovelace").await.unwrap();
    w.edit(p.id, |f| f.job_title = "CRM Title".into()).await;
    // A REV long before the CRM edit: the CRM wins.
    w.book.put(
        "ada.vcf",
        card(
            "ada",
            "Ada Lovelace",
            &["ada@x.org"],
            &["TITLE:Remote Title", "REV:20000101T000000Z"],
        ),
    );
    w.sync().await;
    let p = w.crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.job_title, "CRM Title");
    assert_eq!(
        prop(&w.book.get("ada.vcf").unwrap(), "TITLE").as_deref(),
        Some("CRM Title")
    );
}

#[tokio::test]
async fn a_412_refetches_remerges_and_retries() {
    let w = world(Direction::TwoWay, Policy::NewestWins).await;
    w.book.put("ada.vcf", ada());
    w.sync().await;
    let p = w.person_by_name("Ada Lovelace").await.unwrap();
    w.edit(p.id, |f| f.notes = "from the CRM".into()).await;
    // Someone edits another field of the card right before our PUT.
    w.book.state.lock().unwrap().race.insert(
        "ada.vcf".into(),
        card(
            "ada",
            "Ada Lovelace",
            &["ada@x.org", "ada2@x.org"],
            &["TITLE:Countess"],
        ),
    );
    let s = w.sync().await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let updates = w
        .book
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Update(..)))
        .count();
    assert_eq!(updates, 2, "one 412, one retry");
    let card = w.book.get("ada.vcf").unwrap();
    assert_eq!(prop(&card, "NOTE").as_deref(), Some("from the CRM"));
    let p = w.crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.emails.len(), 2, "the racing edit reached the CRM");
    assert_eq!(p.notes, "from the CRM");
}

#[tokio::test]
async fn bad_cards_are_reported_and_never_deleted() {
    let w = world(Direction::OneWay, Policy::NewestWins).await;
    w.book.put("ada.vcf", ada());
    w.book
        .put("bad.vcf", card("bad", "Bad", &["bad@x.org"], &[]));
    w.sync().await;
    assert_eq!(w.persons().await.len(), 2);
    w.book
        .state
        .lock()
        .unwrap()
        .invalid
        .insert("bad.vcf".into());
    w.book
        .put("bad.vcf", card("bad", "Bad", &["bad@x.org"], &["NOTE:x"]));
    let s = w.sync().await;
    assert_eq!(s.counts.errors, 1);
    assert_eq!(s.errors[0].remote_id.as_deref(), Some("bad.vcf"));
    // A full listing that reports it as invalid does not delete it either.
    w.book.expire_cursors();
    let s = w.sync().await;
    assert!(s.full_listing);
    assert_eq!(w.persons().await.len(), 2);
    let st = stats::view(w.store.as_ref(), w.conn.id, Utc::now())
        .await
        .unwrap();
    assert_eq!(st.last_7_days.errors, 2);
    assert_eq!(st.last_run.unwrap().outcome, stats::Outcome::Ok);
}

#[tokio::test]
async fn a_full_listing_deletes_what_it_did_not_list_only_at_its_end() {
    let w = world(Direction::OneWay, Policy::NewestWins).await;
    for i in 0..5 {
        w.book.put(
            &format!("c{i}.vcf"),
            card(
                &format!("c{i}"),
                &format!("C {i}"),
                &[&format!("c{i}@x.org")],
                &[],
            ),
        );
    }
    let s = w.sync().await;
    assert_eq!(s.counts.crm.added, 5);
    assert!(s.pages >= 3, "several pages: {}", s.pages);
    // Deleted while the cursor expired: only a listing can tell.
    w.book.remove("c3.vcf");
    w.book.expire_cursors();
    let s = w.sync().await;
    assert!(s.full_listing);
    assert_eq!(s.rule_count(Rule::RemoteDeletedPersonDeleted), 1);
    assert_eq!(w.persons().await.len(), 4);
    assert!(w.person_by_name("C 3").await.is_none());
}

#[tokio::test]
async fn a_person_the_user_may_not_edit_is_neither_written_nor_pushed() {
    let w = world(Direction::TwoWay, Policy::NewestWins).await;
    w.book.put("ada.vcf", ada());
    w.sync().await;
    let p = w.person_by_name("Ada Lovelace").await.unwrap();
    // The person is handed to Bob.
    let mut acl = p.acl();
    acl.owner_id = w.bob.id;
    w.crm
        .update_person(p.id, p.version, p.fields(), acl)
        .await
        .unwrap();
    w.book.put(
        "ada.vcf",
        card("ada", "Ada Lovelace", &["ada@x.org"], &["TITLE:Analyst"]),
    );
    let s = w.sync().await;
    assert!(s.rule_count(Rule::NotEditable) >= 1, "{:?}", s.rules);
    let p = w.crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.job_title, "Countess");
}

#[tokio::test]
async fn a_reappearing_card_relinks_its_kept_person() {
    let w = world(Direction::TwoWay, Policy::NewestWins).await;
    let p = w.add_person(&w.alice, "Grace", "grace@x.org").await;
    w.book
        .put("grace.vcf", card("grace", "Grace", &["grace@x.org"], &[]));
    w.sync().await;
    w.book.remove("grace.vcf");
    w.sync().await;
    w.book.put(
        "grace.vcf",
        card("grace", "Grace", &["grace@x.org"], &["TITLE:Admiral"]),
    );
    let s = w.sync().await;
    assert_eq!(s.rule_count(Rule::RemoteReappearedRelinked), 1);
    assert_eq!(
        w.crm.get_person(p.id).await.unwrap().unwrap().job_title,
        "Admiral"
    );
    assert_eq!(w.persons().await.len(), 1);
}

// ---------------------------------------------------------------------------- crash model

#[derive(Debug, Clone)]
enum Step {
    RemoteAdd(u8),
    RemoteEdit(u8, u8),
    RemoteDelete(u8),
    CrmAdd(u8),
    CrmEdit(u8, u8),
    CrmDelete(u8),
    /// A sync that crashes after this many commits.
    CrashSync(u8),
    Sync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6).prop_map(Step::RemoteAdd),
        (0u8..6, 0u8..4).prop_map(|(a, b)| Step::RemoteEdit(a, b)),
        (0u8..6).prop_map(Step::RemoteDelete),
        (0u8..6).prop_map(Step::CrmAdd),
        (0u8..6, 0u8..4).prop_map(|(a, b)| Step::CrmEdit(a, b)),
        (0u8..6).prop_map(Step::CrmDelete),
        (0u8..12).prop_map(Step::CrashSync),
        Just(Step::Sync),
    ]
}

fn email(e: u8) -> String {
    format!("e{e}@x.org")
}

/// The entity (email) of a person or card.
fn entity_of_person(p: &Person) -> Option<String> {
    p.emails.first().map(|e| e.value.clone())
}

struct Model {
    store: Arc<MapStore>,
    crm: Crm,
    alice: User,
    book: Arc<FakeBook>,
    conn: SyncConnection,
    /// Entities deleted on a side and not re-added since (must not come back on that side).
    remote_deleted: BTreeSet<String>,
    crm_deleted: BTreeSet<String>,
    /// Entities with a person and a card at the last completed sync (so they are linked).
    synced_pairs: BTreeSet<String>,
    /// Remote-deleted entities that were linked: their card must stay gone.
    remote_deleted_linked: BTreeSet<String>,
    /// CRM-deleted entities whose card did not change since: their person must stay gone.
    crm_deleted_quiet: BTreeSet<String>,
    /// Entities edited on the CRM (two-way: the note must reach the card).
    crm_notes: std::collections::BTreeMap<String, String>,
    remote_titles: std::collections::BTreeMap<String, String>,
}

impl Model {
    async fn persons(&self) -> Vec<Person> {
        self.crm.list_persons(None, 10_000).await.unwrap().persons
    }
    async fn person_of(&self, e: &str) -> Option<Person> {
        self.persons()
            .await
            .into_iter()
            .find(|p| entity_of_person(p).as_deref() == Some(e))
    }
    fn card_of(&self, e: &str) -> Option<(String, VCard)> {
        let st = self.book.state.lock().unwrap();
        st.cards
            .iter()
            .find(|(_, s)| prop(&s.card, "EMAIL").as_deref() == Some(e))
            .map(|(id, s)| (id.clone(), s.card.clone()))
    }
    async fn step(&mut self, s: &Step) {
        match s {
            Step::RemoteAdd(e) => {
                let e = email(*e);
                if self.card_of(&e).is_none()
                    && !self.remote_deleted.contains(&e)
                    && !self.crm_deleted.contains(&e)
                {
                    self.book
                        .put(&format!("{e}.vcf"), card(&e, &format!("N {e}"), &[&e], &[]));
                }
            }
            Step::RemoteEdit(e, v) => {
                let e = email(*e);
                if let Some((id, _)) = self.card_of(&e) {
                    let title = format!("T{v}");
                    let mut c = card(&e, &format!("N {e}"), &[&e], &[&format!("TITLE:{title}")]);
                    if let Some(n) = self.book.get(&id).and_then(|c| prop(&c, "NOTE")) {
                        c = card(
                            &e,
                            &format!("N {e}"),
                            &[&e],
                            &[&format!("TITLE:{title}"), &format!("NOTE:{n}")],
                        );
                    }
                    self.book.put(&id, c);
                    self.crm_deleted_quiet.remove(&e);
                    self.remote_titles.insert(e, title);
                }
            }
            Step::RemoteDelete(e) => {
                let e = email(*e);
                if let Some((id, _)) = self.card_of(&e) {
                    self.book.remove(&id);
                    self.remote_deleted.insert(e.clone());
                    if self.synced_pairs.contains(&e) {
                        self.remote_deleted_linked.insert(e);
                    }
                }
            }
            Step::CrmAdd(e) => {
                let e = email(*e);
                if self.person_of(&e).await.is_none()
                    && !self.crm_deleted.contains(&e)
                    && !self.remote_deleted.contains(&e)
                {
                    self.crm
                        .create_person(
                            PersonFields {
                                name: format!("N {e}"),
                                emails: vec![LabeledValue {
                                    value: e.clone(),
                                    label: "work".into(),
                                    primary: false,
                                }],
                                ..Default::default()
                            },
                            Acl {
                                owner_id: self.alice.id,
                                followers: vec![],
                                visible_to: Visibility::OwnerFollowers,
                            },
                        )
                        .await
                        .unwrap();
                }
            }
            Step::CrmEdit(e, v) => {
                let e = email(*e);
                if let Some(p) = self.person_of(&e).await {
                    let mut f = p.fields();
                    f.notes = format!("note{v}");
                    self.crm
                        .update_person(p.id, p.version, f, p.acl())
                        .await
                        .unwrap();
                    self.crm_notes.insert(e, format!("note{v}"));
                }
            }
            Step::CrmDelete(e) => {
                let e = email(*e);
                if let Some(p) = self.person_of(&e).await {
                    self.crm.delete_person(p.id, None).await.unwrap();
                    self.crm_deleted.insert(e.clone());
                    if self.synced_pairs.contains(&e) {
                        self.crm_deleted_quiet.insert(e);
                    }
                }
            }
            Step::CrashSync(k) => {
                let crash = Arc::new(CrashStore::new(self.store.clone(), i64::from(*k)));
                let crm = reopen(crash.clone()).await;
                let r = execute::run(&self.conn, self.book.as_ref(), &crm, crash.as_ref()).await;
                assert!(r.is_ok() || crash.crashed(), "{r:?}");
                // A new process.
                self.crm = reopen(self.store.clone() as Arc<dyn Store>).await;
            }
            Step::Sync => {
                execute::run(
                    &self.conn,
                    self.book.as_ref(),
                    &self.crm,
                    self.store.as_ref(),
                )
                .await
                .unwrap();
                let mut pairs = BTreeSet::new();
                for p in self.persons().await {
                    let e = entity_of_person(&p).unwrap();
                    if self.card_of(&e).is_some() {
                        pairs.insert(e);
                    }
                }
                self.synced_pairs = pairs;
            }
        }
    }

    async fn check_final(&self) {
        let persons = self.persons().await;
        let mut seen = BTreeSet::new();
        for p in &persons {
            let e = entity_of_person(p).unwrap();
            assert!(seen.insert(e.clone()), "duplicate person for {e}");
            assert!(
                !self.crm_deleted_quiet.contains(&e),
                "person {e} deleted in the CRM came back though its card did not change"
            );
            let clean = !self.crm_deleted.contains(&e) && !self.remote_deleted.contains(&e);
            if clean && self.card_of(&e).is_some() {
                // No lost edit: notes are only edited in the CRM, titles only remotely.
                let note = self.crm_notes.get(&e).cloned().unwrap_or_default();
                assert_eq!(p.notes, note, "CRM edit of {e} lost");
                let title = self.remote_titles.get(&e).cloned().unwrap_or_default();
                assert_eq!(p.job_title, title, "remote edit of {e} lost");
            }
        }
        let cards: Vec<VCard> = self
            .book
            .state
            .lock()
            .unwrap()
            .cards
            .values()
            .map(|s| s.card.clone())
            .collect();
        let mut seen_cards = BTreeSet::new();
        for c in &cards {
            let e = prop(c, "EMAIL").unwrap();
            assert!(seen_cards.insert(e.clone()), "duplicate card for {e}");
        }
        // Nothing deleted comes back on the side it was deleted from, unless the other side
        // edited it since (an edit beats a delete) — the model only re-adds via the other side.
        for e in &self.remote_deleted_linked {
            if let Some((_, c)) = self.card_of(e) {
                panic!("card {e} deleted remotely came back: {c:?}");
            }
        }
        if self.conn.direction == Direction::TwoWay {
            // The two sides agree on every linked entity.
            for p in &persons {
                let e = entity_of_person(p).unwrap();
                if self.remote_deleted.contains(&e) {
                    continue;
                }
                let (_, c) = self
                    .card_of(&e)
                    .unwrap_or_else(|| panic!("person {e} has no card"));
                assert_eq!(prop(&c, "NOTE").unwrap_or_default(), p.notes, "{e}");
                assert_eq!(prop(&c, "TITLE").unwrap_or_default(), p.job_title, "{e}");
            }
            for c in &cards {
                let e = prop(c, "EMAIL").unwrap();
                if self.crm_deleted.contains(&e) {
                    continue;
                }
                assert!(
                    persons
                        .iter()
                        .any(|p| entity_of_person(p) == Some(e.clone())),
                    "card {e} has no person"
                );
            }
        }
    }
}

fn run_model(direction: Direction, steps: Vec<Step>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Arc::new(MapStore::default());
        let (crm, alice, _) = crm_with_users(store.clone()).await;
        let mut m = Model {
            store,
            crm,
            conn: connection(alice.id, direction, Policy::NewestWins),
            alice,
            book: FakeBook::new(3),
            remote_deleted: BTreeSet::new(),
            crm_deleted: BTreeSet::new(),
            crm_deleted_quiet: BTreeSet::new(),
            synced_pairs: BTreeSet::new(),
            remote_deleted_linked: BTreeSet::new(),
            crm_notes: Default::default(),
            remote_titles: Default::default(),
        };
        for s in &steps {
            m.step(s).await;
        }
        m.step(&Step::Sync).await;
        m.step(&Step::Sync).await;
        // Quiescent: a further run changes nothing.
        let s = execute::run(&m.conn, m.book.as_ref(), &m.crm, m.store.as_ref())
            .await
            .unwrap();
        assert_eq!(
            s.counts.added() + s.counts.updated() + s.counts.deleted(),
            0,
            "not quiescent: {s:?}"
        );
        m.check_final().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn crashes_converge_two_way(steps in prop::collection::vec(step(), 1..24)) {
        run_model(Direction::TwoWay, steps);
    }

    #[test]
    fn crashes_converge_one_way(steps in prop::collection::vec(step(), 1..24)) {
        run_model(Direction::OneWay, steps);
    }
}

/// Regression (CI, proptest): a CRM edit made after two crashed runs was overwritten by the
/// card's older value.
#[test]
fn a_crm_edit_after_crashed_runs_is_kept() {
    run_model(
        Direction::TwoWay,
        vec![
            Step::CrmAdd(2),
            Step::CrmEdit(2, 2),
            Step::CrashSync(3),
            Step::CrashSync(8),
            Step::CrmEdit(2, 0),
        ],
    );
}
