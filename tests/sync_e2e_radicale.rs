//! End to end through `sync::execute` against a LIVE Radicale (started by `tests/support`) with
//! the CardDAV provider: one-way and two-way create/edit/delete on both sides, a same-field
//! conflict resolved by each policy, and a first sync against a CRM that already holds some
//! of the same people (no duplicates).
#![allow(clippy::unwrap_used)]

mod support;
mod sync_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use cardbridge::crm::{
    Acl, Crm, LabeledValue, MappingConfig, Person, PersonFields, User, Visibility,
};
use cardbridge::providers::carddav::{Auth, CarddavProvider, Profile};
use cardbridge::providers::{Provider, ProviderKind, RemoteChange};
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::execute::{self, RunSummary};
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::Direction;
use cardbridge::vcard::VCard;
use support::Radicale;
use sync_support::{crm_with_users, prop, MapStore};
use url::Url;

struct Live {
    radicale: Radicale,
    book: String,
    provider: CarddavProvider,
    store: Arc<MapStore>,
    crm: Crm,
    alice: User,
    conn: SyncConnection,
    http: reqwest::Client,
}

async fn live(r: Radicale, name: &str, direction: Direction, policy: Policy) -> Live {
    let book = r.new_addressbook(name);
    let auth = Auth::Basic {
        user: r.user.clone(),
        password: r.password.clone(),
    };
    let provider =
        CarddavProvider::connect(Url::parse(&r.url).unwrap(), auth, Profile::generic()).unwrap();
    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let conn = SyncConnection {
        id: 11,
        user_id: alice.id,
        provider: ProviderKind::Carddav,
        group: book.clone(),
        direction,
        policy,
        visibility: Visibility::OwnerFollowers,
        mapping: MappingConfig::default(),
        default_region: Some("US".into()),
    };
    Live {
        radicale: r,
        book,
        provider,
        store,
        crm,
        alice,
        conn,
        http: reqwest::Client::new(),
    }
}

fn vcard3(uid: &str, name: &str, email: &str, extra: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nN:;{name};;;\r\nFN:{name}\r\n\
         EMAIL;TYPE=INTERNET:{email}\r\n{extra}END:VCARD\r\n"
    )
}

impl Live {
    async fn sync(&self) -> RunSummary {
        let s = execute::run(&self.conn, &self.provider, &self.crm, self.store.as_ref())
            .await
            .unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        s
    }
    fn url(&self, href: &str) -> Url {
        Url::parse(&self.book).unwrap().join(href).unwrap()
    }
    /// Another client writes the card at `href` (relative to the book or absolute).
    async fn server_put(&self, href: &str, body: String) {
        let resp = self
            .http
            .put(self.url(href))
            .basic_auth(&self.radicale.user, Some(&self.radicale.password))
            .header("content-type", "text/vcard; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "PUT {href}: {}", resp.status());
    }
    async fn server_delete(&self, href: &str) {
        let resp = self
            .http
            .delete(self.url(href))
            .basic_auth(&self.radicale.user, Some(&self.radicale.password))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "DELETE {href}: {}",
            resp.status()
        );
    }
    /// Every card on the server, by href, as a fresh full pull sees it.
    async fn server_cards(&self) -> BTreeMap<String, VCard> {
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .provider
                .pull(&self.book, cursor.as_deref())
                .await
                .unwrap();
            for c in page.changes {
                if let RemoteChange::Upsert(i) = c {
                    out.insert(i.id, i.card);
                }
            }
            cursor = page.cursor;
            if page.complete {
                return out;
            }
        }
    }
    async fn persons(&self) -> Vec<Person> {
        self.crm.list_persons(None, 1000).await.unwrap().persons
    }
    async fn person(&self, name: &str) -> Option<Person> {
        self.persons().await.into_iter().find(|p| p.name == name)
    }
    async fn add_person(&self, name: &str, email: &str, phone: Option<&str>) -> Person {
        let f = PersonFields {
            name: name.into(),
            emails: vec![LabeledValue {
                value: email.into(),
                label: "work".into(),
                primary: false,
            }],
            phones: phone
                .map(|p| LabeledValue {
                    value: p.into(),
                    label: "mobile".into(),
                    primary: false,
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let acl = Acl {
            owner_id: self.alice.id,
            followers: vec![],
            visible_to: Visibility::OwnerFollowers,
        };
        self.crm.create_person(f, acl).await.unwrap()
    }
    async fn edit(&self, id: u64, f: impl FnOnce(&mut PersonFields)) {
        let p = self.crm.get_person(id).await.unwrap().unwrap();
        let mut fields = p.fields();
        f(&mut fields);
        self.crm
            .update_person(id, p.version, fields, p.acl())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_reflects_the_server_and_keeps_crm_edits_local() {
    let l = live(
        Radicale::start(),
        "oneway",
        Direction::OneWay,
        Policy::NewestWins,
    )
    .await;
    l.server_put(
        "ada.vcf",
        vcard3("ada", "Ada Lovelace", "ada@x.org", "TITLE:Countess\r\n"),
    )
    .await;
    l.sync().await;
    let p = l
        .person("Ada Lovelace")
        .await
        .expect("created from the server");
    assert_eq!(p.job_title, "Countess");
    assert_eq!(p.emails[0].value, "ada@x.org");

    // A CRM edit stays local.
    l.edit(p.id, |f| f.notes = "CRM only".into()).await;
    l.sync().await;
    let cards = l.server_cards().await;
    assert_eq!(cards.len(), 1);
    let card = cards.values().next().unwrap();
    assert!(
        prop(card, "NOTE").is_none(),
        "one-way never writes the server"
    );
    // A CRM-created person stays local too.
    l.add_person("Local Only", "local@x.org", None).await;
    l.sync().await;
    assert_eq!(l.server_cards().await.len(), 1);

    // Server edit flows in, the CRM note stays.
    l.server_put(
        "ada.vcf",
        vcard3("ada", "Ada Lovelace", "ada@x.org", "TITLE:Analyst\r\n"),
    )
    .await;
    l.sync().await;
    let p = l.crm.get_person(p.id).await.unwrap().unwrap();
    assert_eq!(p.job_title, "Analyst");
    assert_eq!(p.notes, "CRM only");

    // Server delete: the person the connection created is deleted.
    l.server_delete("ada.vcf").await;
    l.sync().await;
    assert!(l.crm.get_person(p.id).await.unwrap().is_none());
    assert!(l.person("Local Only").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_way_reflects_both_sides() {
    let l = live(
        Radicale::start(),
        "twoway",
        Direction::TwoWay,
        Policy::NewestWins,
    )
    .await;
    // Server → CRM.
    l.server_put(
        "grace.vcf",
        vcard3("grace", "Grace Hopper", "grace@x.org", ""),
    )
    .await;
    // CRM → server.
    let ada = l
        .add_person("Ada Lovelace", "ada@x.org", Some("+1 202 555 0143"))
        .await;
    l.sync().await;
    let grace = l
        .person("Grace Hopper")
        .await
        .expect("created from the server");
    let cards = l.server_cards().await;
    assert_eq!(cards.len(), 2, "{:?}", cards.keys());
    let (ada_href, ada_card) = cards
        .iter()
        .find(|(_, c)| prop(c, "FN").as_deref() == Some("Ada Lovelace"))
        .expect("pushed to the server");
    assert!(prop(ada_card, "EMAIL").is_some_and(|e| e.contains("ada@x.org")));
    // Quiet afterwards: our own writes are not changes.
    let s = l.sync().await;
    assert_eq!(s.counts.added() + s.counts.updated(), 0, "{s:?}");

    // CRM edit → server; server edit → CRM.
    l.edit(ada.id, |f| f.job_title = "Countess".into()).await;
    l.server_put(
        "grace.vcf",
        vcard3("grace", "Grace Hopper", "grace@x.org", "ORG:US Navy\r\n"),
    )
    .await;
    l.sync().await;
    let cards = l.server_cards().await;
    assert_eq!(prop(&cards[ada_href], "TITLE").as_deref(), Some("Countess"));
    let grace_now = l.crm.get_person(grace.id).await.unwrap().unwrap();
    assert_eq!(grace_now.org_name, "US Navy");

    // CRM delete → server delete; server delete → CRM delete.
    l.crm.delete_person(ada.id, None).await.unwrap();
    let grace_href = cards
        .iter()
        .find(|(_, c)| prop(c, "FN").as_deref() == Some("Grace Hopper"))
        .map(|(h, _)| h.clone())
        .unwrap();
    l.server_delete(&grace_href).await;
    l.sync().await;
    assert!(l.server_cards().await.is_empty());
    assert!(l.persons().await.is_empty());
    let s = l.sync().await;
    assert_eq!(s.counts.added() + s.counts.deleted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_field_conflict_is_resolved_by_each_policy() {
    let r = Radicale::start();
    let mut l = live(
        r,
        "conflicts-provider",
        Direction::TwoWay,
        Policy::ProviderWins,
    )
    .await;
    for (i, (policy, want)) in [
        (Policy::ProviderWins, "Server Title"),
        (Policy::CrmWins, "CRM Title"),
        (Policy::NewestWins, "Server Title"),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            // A fresh book, CRM and connection on the same server.
            l = live(
                l.radicale,
                &format!("conflicts-{i}"),
                Direction::TwoWay,
                policy,
            )
            .await;
        }
        l.server_put(
            "ada.vcf",
            vcard3("ada", "Ada Lovelace", "ada@x.org", "TITLE:Base\r\n"),
        )
        .await;
        l.sync().await;
        let p = l.person("Ada Lovelace").await.unwrap();
        l.edit(p.id, |f| f.job_title = "CRM Title".into()).await;
        // The server copy is edited after the CRM (REV later): newest wins is the server.
        l.server_put(
            "ada.vcf",
            vcard3(
                "ada",
                "Ada Lovelace",
                "ada@x.org",
                "TITLE:Server Title\r\nREV:20990101T000000Z\r\n",
            ),
        )
        .await;
        let s = l.sync().await;
        assert_eq!(s.counts.conflicts, 1, "{policy:?}: {s:?}");
        assert_eq!(s.conflicts[0].field, "job_title");
        let p = l.crm.get_person(p.id).await.unwrap().unwrap();
        assert_eq!(p.job_title, want, "{policy:?}");
        let cards = l.server_cards().await;
        assert_eq!(
            prop(cards.values().next().unwrap(), "TITLE").as_deref(),
            Some(want),
            "{policy:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_against_a_populated_crm_creates_no_duplicates() {
    for direction in [Direction::OneWay, Direction::TwoWay] {
        let name = format!("populated-{direction:?}").to_lowercase();
        let l = live(Radicale::start(), &name, direction, Policy::NewestWins).await;
        let by_mail = l.add_person("Ada L.", "ADA@x.org", None).await;
        let by_phone = l
            .add_person("Bob B.", "other@x.org", Some("(202) 555-0143"))
            .await;
        l.add_person("Carol CRM-only", "carol@x.org", None).await;
        l.server_put("ada.vcf", vcard3("ada", "Ada Lovelace", "ada@x.org", ""))
            .await;
        l.server_put(
            "bob.vcf",
            vcard3(
                "bob",
                "Bob Builder",
                "bob@x.org",
                "TEL;TYPE=CELL:+12025550143\r\n",
            ),
        )
        .await;
        l.server_put("dave.vcf", vcard3("dave", "Dave New", "dave@x.org", ""))
            .await;
        l.sync().await;
        let persons = l.persons().await;
        assert_eq!(persons.len(), 4, "{direction:?}: {persons:#?}");
        assert!(l.crm.get_person(by_mail.id).await.unwrap().is_some());
        assert!(l.crm.get_person(by_phone.id).await.unwrap().is_some());
        let cards = l.server_cards().await;
        let expected = match direction {
            Direction::OneWay => 3,
            // Carol is pushed; nobody else is duplicated.
            Direction::TwoWay => 4,
        };
        assert_eq!(cards.len(), expected, "{direction:?}: {:?}", cards.keys());
        let s = l.sync().await;
        assert_eq!(s.counts.added(), 0, "{direction:?}");
    }
}
