//! In-process tests of the CardDAV server (`tower::ServiceExt::oneshot`), with requests built and
//! answers read by the client halves of `cardbridge::dav` (both halves round trip).
#![allow(clippy::unwrap_used)]

mod server_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine as _;
use cardbridge::crm::{Acl, Company, Crm, PersonFields, Plan, Visibility};
use cardbridge::dav::error::{body_has_precondition, parse_error_body, Precondition};
use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::names;
use cardbridge::dav::propfind::{Depth, Propfind, Selection};
use cardbridge::dav::query::{AddressbookQuery, Filter, PropFilter, TextMatch};
use cardbridge::dav::sync_collection::SyncCollection;
use cardbridge::dav::{discovery, prop};
use cardbridge::server::auth::AuthConfig;
use cardbridge::server::{app, AppState, ServerConfig};
use http::{Request, StatusCode};
use tower::ServiceExt;

struct T {
    app: axum::Router,
    crm: Arc<Crm>,
}

struct Resp {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn etag(&self) -> String {
        self.headers["etag"].to_str().unwrap().to_string()
    }
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

const CARD3: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u-1\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\nEMAIL;TYPE=INTERNET,WORK:ada@example.com\r\nX-FAVOURITE-ENGINE:analytical\r\nIMPP:xmpp:ada@example.com\r\nEND:VCARD\r\n";

fn card(uid: &str, fn_: &str) -> String {
    format!("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{uid}\r\nFN:{fn_}\r\nEMAIL:{uid}@example.com\r\nEND:VCARD\r\n")
}

impl T {
    async fn new() -> T {
        Self::with(ServerConfig {
            auth: AuthConfig {
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_millis(800),
                ..AuthConfig::default()
            },
            ..ServerConfig::default()
        })
        .await
    }

    async fn with(config: ServerConfig) -> T {
        let crm = server_support::crm().await;
        for u in ["alice", "bob"] {
            crm.create_user(server_support::user(u, &format!("{u}-pw"), None))
                .await
                .unwrap();
        }
        let app = app(AppState::new(crm.clone(), config));
        T { app, crm }
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn req(
        &self,
        user: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("Authorization", basic(user, &format!("{user}-pw")));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn dav(&self, user: &str, req: http::Request<String>) -> Resp {
        let (mut parts, body) = req.into_parts();
        parts.headers.insert(
            "Authorization",
            basic(user, &format!("{user}-pw")).parse().unwrap(),
        );
        self.send(Request::from_parts(parts, Body::from(body)))
            .await
    }

    async fn put(&self, user: &str, name: &str, body: &str) -> Resp {
        self.req(
            user,
            "PUT",
            &format!("/dav/addressbooks/{user}/persons/{name}"),
            &[("Content-Type", "text/vcard")],
            body,
        )
        .await
    }

    async fn sync(
        &self,
        user: &str,
        token: Option<&str>,
        limit: Option<u32>,
    ) -> cardbridge::dav::sync_collection::SyncResult {
        let mut sc = SyncCollection::new(token, &[names::GETETAG]);
        sc.limit = limit;
        let r = self
            .dav(
                user,
                sc.build_request(&format!("/dav/addressbooks/{user}/persons/"))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::MULTI_STATUS, "{}", r.text());
        SyncCollection::parse_response(&r.body).unwrap()
    }

    async fn ctag(&self, user: &str) -> String {
        let pf = Propfind::props(Depth::Zero, &[names::GETCTAG]);
        let r = self
            .dav(
                user,
                pf.build_request(&format!("/dav/addressbooks/{user}/persons/"))
                    .unwrap(),
            )
            .await;
        let ms = Propfind::parse_response(&r.body).unwrap();
        ms.responses[0]
            .prop_text(&names::GETCTAG)
            .unwrap()
            .to_string()
    }

    async fn listing(&self, user: &str) -> Vec<String> {
        let pf = Propfind::props(Depth::One, &[names::GETETAG]);
        let r = self
            .dav(
                user,
                pf.build_request(&format!("/dav/addressbooks/{user}/persons/"))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::MULTI_STATUS);
        let mut v: Vec<String> = Propfind::parse_response(&r.body)
            .unwrap()
            .responses
            .into_iter()
            .map(|r| r.href)
            .filter(|h| h.ends_with(".vcf"))
            .collect();
        v.sort();
        v
    }

    async fn user_id(&self, login: &str) -> u64 {
        self.crm.user_by_login(login).await.unwrap().unwrap().id
    }
}

#[tokio::test]
async fn discovery_with_our_own_client_halves() {
    let t = T::new().await;
    let r = t
        .send(
            Request::get("/.well-known/carddav")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers["location"], "/dav/");
    let r = t
        .dav(
            "alice",
            discovery::principal_request()
                .build_request("/dav/")
                .unwrap(),
        )
        .await;
    let ms = Propfind::parse_response(&r.body).unwrap();
    let principal = discovery::parse_principal(&ms).unwrap();
    assert_eq!(principal, "/dav/principals/alice/");
    let r = t
        .dav(
            "alice",
            discovery::home_set_request()
                .build_request(&principal)
                .unwrap(),
        )
        .await;
    let homes = discovery::parse_home_set(&Propfind::parse_response(&r.body).unwrap());
    assert_eq!(homes, vec!["/dav/addressbooks/alice/".to_string()]);
    let r = t
        .dav(
            "alice",
            discovery::addressbooks_request()
                .build_request(&homes[0])
                .unwrap(),
        )
        .await;
    let books = discovery::parse_addressbooks(&Propfind::parse_response(&r.body).unwrap());
    assert_eq!(books.len(), 1, "{}", r.text());
    assert_eq!(books[0].href, "/dav/addressbooks/alice/persons/");
    assert!(books[0].supports_sync_collection());
}

#[tokio::test]
async fn options_advertise_classes_and_allow() {
    let t = T::new().await;
    let r = t
        .send(
            Request::options("/dav/addressbooks/alice/persons/")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["dav"], "1, 3, addressbook, extended-mkcol");
    assert!(r.headers["allow"].to_str().unwrap().contains("REPORT"));
    let r = t
        .req("alice", "LOCK", "/dav/addressbooks/alice/persons/", &[], "")
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers.contains_key("allow"));
}

#[tokio::test]
async fn propfind_answers_every_listed_property_and_404s_unknown_ones() {
    let t = T::new().await;
    let wanted = [
        names::CURRENT_USER_PRINCIPAL,
        names::PRINCIPAL_URL,
        names::ADDRESSBOOK_HOME_SET,
        names::RESOURCETYPE,
        names::DISPLAYNAME,
        names::CURRENT_USER_PRIVILEGE_SET,
    ];
    let r = t
        .dav(
            "alice",
            Propfind::props(Depth::Zero, &wanted)
                .build_request("/dav/principals/alice/")
                .unwrap(),
        )
        .await;
    let ms = Propfind::parse_response(&r.body).unwrap();
    for n in &wanted {
        assert_eq!(ms.responses[0].prop_status(n), Some(StatusCode::OK), "{n}");
    }
    let unknown = names::QName::new("urn:x", "nope");
    let coll_props = [
        names::RESOURCETYPE,
        names::DISPLAYNAME,
        names::GETCTAG,
        names::SYNC_TOKEN,
        names::SUPPORTED_ADDRESS_DATA,
        names::MAX_RESOURCE_SIZE,
        names::CURRENT_USER_PRIVILEGE_SET,
        names::SUPPORTED_REPORT_SET,
        names::CURRENT_USER_PRINCIPAL,
        unknown.clone(),
    ];
    let r = t
        .dav(
            "alice",
            Propfind::props(Depth::Zero, &coll_props)
                .build_request("/dav/addressbooks/alice/persons/")
                .unwrap(),
        )
        .await;
    let ms = Propfind::parse_response(&r.body).unwrap();
    let c = &ms.responses[0];
    assert_eq!(c.prop_status(&unknown), Some(StatusCode::NOT_FOUND));
    assert_eq!(
        prop::supported_address_data_of(c.prop(&names::SUPPORTED_ADDRESS_DATA).unwrap()),
        vec![
            prop::AddressDataType::vcard("4.0"),
            prop::AddressDataType::vcard("3.0")
        ]
    );
    assert_eq!(c.prop_text(&names::MAX_RESOURCE_SIZE), Some("1048576"));
    assert_eq!(
        c.prop_text(&names::GETCTAG),
        c.prop_text(&names::SYNC_TOKEN)
    );
    let reports = prop::supported_reports_of(c.prop(&names::SUPPORTED_REPORT_SET).unwrap());
    assert!(
        reports.contains(&names::SYNC_COLLECTION) && reports.contains(&names::ADDRESSBOOK_MULTIGET)
    );
    let rt = prop::ResourceType::from_element(c.prop(&names::RESOURCETYPE).unwrap());
    assert!(rt.addressbook && rt.collection);
    assert!(prop::grants(
        &prop::privileges_of(c.prop(&names::CURRENT_USER_PRIVILEGE_SET).unwrap()),
        &names::BIND
    ));

    // propname and allprop, and a card's getetag/getcontenttype.
    t.put("alice", "a.vcf", &card("a", "A")).await;
    let pn = Propfind {
        depth: Depth::One,
        selection: Selection::PropName,
    };
    let r = t
        .dav(
            "alice",
            pn.build_request("/dav/addressbooks/alice/persons/")
                .unwrap(),
        )
        .await;
    let ms = Propfind::parse_response(&r.body).unwrap();
    assert_eq!(ms.responses.len(), 2);
    assert!(ms.responses[0].propstats[0]
        .props
        .iter()
        .any(|p| p.is(&names::GETCTAG)));
    let ap = Propfind {
        depth: Depth::One,
        selection: Selection::AllProp(vec![]),
    };
    let r = t
        .dav(
            "alice",
            ap.build_request("/dav/addressbooks/alice/persons/")
                .unwrap(),
        )
        .await;
    let ms = Propfind::parse_response(&r.body).unwrap();
    let card = ms
        .responses
        .iter()
        .find(|r| r.href.ends_with("a.vcf"))
        .unwrap();
    assert!(card.prop_text(&names::GETETAG).is_some());
    assert!(card
        .prop_text(&names::GETCONTENTTYPE)
        .unwrap()
        .starts_with("text/vcard"));
}

#[tokio::test]
async fn auth_401_challenge_app_passwords_and_no_foreign_homes() {
    let t = T::new().await;
    let r = t
        .send(
            Request::builder()
                .method("PROPFIND")
                .uri("/dav/")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm=\"cardbridge\""));
    // Another user's principal and home look like nothing at all.
    for uri in [
        "/dav/principals/bob/",
        "/dav/addressbooks/bob/",
        "/dav/addressbooks/bob/persons/",
        "/dav/addressbooks/nobody/",
    ] {
        let r = t.req("alice", "PROPFIND", uri, &[("Depth", "0")], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(r.body.is_empty());
    }
    // App password works, revoked it does not.
    let alice = t.user_id("alice").await;
    let app_pw = t.crm.create_app_password(alice, "phone").await.unwrap();
    let auth = basic("alice", &app_pw.secret);
    let mk = |auth: &str| {
        Request::builder()
            .method("PROPFIND")
            .uri("/dav/principals/alice/")
            .header("Depth", "0")
            .header("Authorization", auth)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(t.send(mk(&auth)).await.status, StatusCode::MULTI_STATUS);
    t.crm
        .revoke_app_password(alice, &app_pw.record.id)
        .await
        .unwrap();
    // A fresh server (no credential cache) refuses the revoked password.
    let app2 = app(AppState::new(t.crm.clone(), ServerConfig::default()));
    let r = app2.oneshot(mk(&auth)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn failed_logins_are_slowed_down_exponentially() {
    let t = T::new().await;
    let bad = || {
        Request::builder()
            .method("PROPFIND")
            .uri("/dav/")
            .header("Authorization", basic("alice", "wrong"))
            .body(Body::empty())
            .unwrap()
    };
    let mut took = Vec::new();
    for _ in 0..4 {
        let start = Instant::now();
        assert_eq!(t.send(bad()).await.status, StatusCode::UNAUTHORIZED);
        took.push(start.elapsed());
    }
    // Delays owed before attempts 2, 3, 4: 200, 400, 800 ms (argon2 time on top).
    assert!(took[1] >= Duration::from_millis(200), "{took:?}");
    assert!(took[2] >= Duration::from_millis(400), "{took:?}");
    assert!(took[3] >= Duration::from_millis(800), "{took:?}");
    assert!(
        took[3] < Duration::from_millis(800 + 3000),
        "bounded: {took:?}"
    );
}

#[tokio::test]
async fn put_get_versions_etags_and_unmodeled_properties_survive() {
    let t = T::new().await;
    let r = t.put("alice", "ada.vcf", CARD3).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let tag = r.etag();
    // The default representation is the client's own card, verbatim.
    let g = t
        .req(
            "alice",
            "GET",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[],
            "",
        )
        .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), CARD3);
    assert_eq!(g.etag(), tag);
    // 4.0 on request, its own ETag; HEAD agrees.
    let g4 = t
        .req(
            "alice",
            "GET",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[("Accept", "text/vcard; version=4.0")],
            "",
        )
        .await;
    assert!(g4.text().contains("VERSION:4.0"), "{}", g4.text());
    assert!(g4.text().contains("X-FAVOURITE-ENGINE:analytical"));
    assert_ne!(g4.etag(), tag);
    let h = t
        .req(
            "alice",
            "HEAD",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[("Accept", "text/vcard; version=4.0")],
            "",
        )
        .await;
    assert_eq!(h.etag(), g4.etag());
    assert!(h.body.is_empty());
    // The CRM got the fields.
    let p = t.crm.list_persons(None, 10).await.unwrap().persons;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].name, "Ada Lovelace");
    assert_eq!(p[0].emails[0].value, "ada@example.com");
    assert_eq!(p[0].owner_id, t.user_id("alice").await);
    // A CRM-side edit is merged into the client's card: unmodeled properties survive.
    let mut f = p[0].fields();
    f.job_title = "Analyst".into();
    t.crm
        .update_person(p[0].id, p[0].version, f, p[0].acl())
        .await
        .unwrap();
    let g = t
        .req(
            "alice",
            "GET",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[],
            "",
        )
        .await;
    assert!(g.text().contains("VERSION:3.0"));
    assert!(g.text().contains("TITLE:Analyst"), "{}", g.text());
    assert!(g.text().contains("X-FAVOURITE-ENGINE:analytical"));
    assert!(g.text().contains("IMPP"));
    assert_ne!(g.etag(), tag);
    // If-Match with the stale tag fails, with the current one succeeds.
    let stale = t
        .req(
            "alice",
            "PUT",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[("If-Match", &tag)],
            CARD3,
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let cur = g.etag();
    let ok = t
        .req(
            "alice",
            "PUT",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[("If-Match", &cur)],
            &CARD3.replace("Ada Lovelace", "Ada King"),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.text());
    // If-None-Match: * on an existing card fails.
    let r = t
        .req(
            "alice",
            "PUT",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[("If-None-Match", "*")],
            CARD3,
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    // DELETE honours If-Match.
    let r = t
        .req(
            "alice",
            "DELETE",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[("If-Match", "\"nope\"")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = t
        .req(
            "alice",
            "DELETE",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[("If-Match", &ok.etag())],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(t
        .crm
        .list_persons(None, 10)
        .await
        .unwrap()
        .persons
        .is_empty());
    let r = t
        .req(
            "alice",
            "GET",
            "/dav/addressbooks/alice/persons/ada.vcf",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_preconditions_answer_with_their_elements() {
    let t = T::with(ServerConfig {
        max_resource_size: 400,
        ..ServerConfig::default()
    })
    .await;
    let r = t.put("alice", "x.vcf", "HAHA:YES").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(body_has_precondition(&r.body, &names::VALID_ADDRESS_DATA));
    let r = t
        .put(
            "alice",
            "x.vcf",
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:No Uid\r\nEND:VCARD\r\n",
        )
        .await;
    assert!(body_has_precondition(&r.body, &names::VALID_ADDRESS_DATA));
    let big = card("big", &"x".repeat(500));
    let r = t.put("alice", "big.vcf", &big).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(body_has_precondition(
        &r.body,
        &names::PRE_MAX_RESOURCE_SIZE
    ));
    assert_eq!(
        t.put("alice", "one.vcf", &card("same", "One")).await.status,
        StatusCode::CREATED
    );
    let r = t.put("alice", "two.vcf", &card("same", "Two")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        parse_error_body(&r.body).unwrap(),
        vec![Precondition::NoUidConflict(Some(
            "/dav/addressbooks/alice/persons/one.vcf".into()
        ))]
    );
    // Bob cannot see alice's card (owner_followers by default), so the same UID is no conflict
    // for him and the answer reveals nothing.
    assert_eq!(
        t.put("bob", "two.vcf", &card("same", "Two")).await.status,
        StatusCode::CREATED
    );
    // Reserved default names.
    let r = t.put("alice", "crm-999.vcf", &card("r", "R")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn multiget_query_and_partial_address_data() {
    let t = T::new().await;
    t.put("alice", "a.vcf", &card("a", "Straße Müller")).await;
    t.put("alice", "b.vcf", &card("b", "Bob Builder")).await;
    let bob_card = t.put("bob", "hidden.vcf", &card("h", "Hidden")).await;
    assert_eq!(bob_card.status, StatusCode::CREATED);
    let hrefs = vec![
        "/dav/addressbooks/alice/persons/a.vcf".to_string(),
        "/dav/addressbooks/alice/persons/missing.vcf".to_string(),
        "/dav/addressbooks/alice/persons/hidden.vcf".to_string(),
        "/dav/addressbooks/alice/persons/crm-3.vcf".to_string(),
        "/dav/addressbooks/bob/persons/hidden.vcf".to_string(),
    ];
    let mut mg = AddressbookMultiget::new(hrefs.clone());
    mg.props.address_data.as_mut().unwrap().version = Some("3.0".into());
    let r = t
        .dav(
            "alice",
            mg.build_request("/dav/addressbooks/alice/persons/")
                .unwrap(),
        )
        .await;
    let res = mg.parse_response(&r.body).unwrap();
    assert_eq!(res.cards.len(), 1);
    assert!(res.cards[0].data.contains("VERSION:3.0"));
    assert_eq!(res.missing.len(), 4, "{}", r.text());
    // Invisible and nonexistent hrefs get the same bare 404.
    assert!(!r.text().contains("Hidden"));

    // Query: i;unicode-casemap full folding (ß ≡ SS), partial address-data.
    let q = AddressbookQuery {
        props: cardbridge::dav::address_data::ReportProps {
            props: vec![names::GETETAG],
            address_data: Some(cardbridge::dav::address_data::AddressDataRequest {
                props: Some(vec![cardbridge::dav::address_data::CardPropRequest {
                    name: "FN".into(),
                    novalue: false,
                }]),
                ..Default::default()
            }),
        },
        filter: Filter {
            test: Default::default(),
            prop_filters: vec![PropFilter {
                name: "FN".into(),
                test: Default::default(),
                is_not_defined: false,
                text_matches: vec![TextMatch::contains("STRASSE")],
                param_filters: vec![],
            }],
        },
        limit: None,
    };
    let r = t
        .dav(
            "alice",
            q.build_request("/dav/addressbooks/alice/persons/").unwrap(),
        )
        .await;
    let ms = cardbridge::dav::multistatus::Multistatus::parse(&r.body).unwrap();
    assert_eq!(ms.responses.len(), 1, "{}", r.text());
    let data = ms.responses[0].prop_text(&names::ADDRESS_DATA).unwrap();
    assert!(
        data.contains("FN:Straße Müller") && !data.contains("EMAIL"),
        "{data}"
    );
    // limit: one match of two, then the 507 marker.
    let mut all = q.clone();
    all.filter.prop_filters[0].text_matches = vec![TextMatch::contains("")];
    all.limit = Some(1);
    let r = t
        .dav(
            "alice",
            all.build_request("/dav/addressbooks/alice/persons/")
                .unwrap(),
        )
        .await;
    let ms = cardbridge::dav::multistatus::Multistatus::parse(&r.body).unwrap();
    assert_eq!(ms.responses.len(), 2);
    assert_eq!(
        ms.responses[1].status,
        Some(StatusCode::INSUFFICIENT_STORAGE)
    );
}

#[tokio::test]
async fn sync_collection_is_incremental_with_exact_limits_and_token_errors() {
    let t = T::new().await;
    let s0 = t.sync("alice", None, None).await;
    assert!(s0.changed.is_empty());
    let tok0 = s0.new_token.unwrap();
    for i in 0..5 {
        t.put("alice", &format!("c{i}.vcf"), &card(&format!("c{i}"), "C"))
            .await;
    }
    // Limit 2: three pages; every change exactly once, nothing lost.
    let mut seen = Vec::new();
    let mut tok = tok0.clone();
    loop {
        let s = t.sync("alice", Some(&tok), Some(2)).await;
        assert!(s.changed.len() <= 2);
        seen.extend(s.changed.iter().map(|c| c.href.clone()));
        tok = s.new_token.unwrap();
        if !s.truncated {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen.len(), 5, "{seen:?}");
    // No change: empty answer, same token.
    let s = t.sync("alice", Some(&tok), None).await;
    assert!(s.changed.is_empty() && s.removed.is_empty());
    assert_eq!(s.new_token.as_deref(), Some(tok.as_str()));
    // Delete shows up as removed.
    t.req(
        "alice",
        "DELETE",
        "/dav/addressbooks/alice/persons/c1.vcf",
        &[],
        "",
    )
    .await;
    let s = t.sync("alice", Some(&tok), None).await;
    assert_eq!(
        s.removed,
        vec!["/dav/addressbooks/alice/persons/c1.vcf".to_string()]
    );
    // Initial sync with a limit resumes exactly.
    let a = t.sync("alice", None, Some(3)).await;
    assert!(a.truncated);
    let b = t.sync("alice", a.new_token.as_deref(), Some(3)).await;
    assert!(!b.truncated);
    assert_eq!(a.changed.len() + b.changed.len(), 4);
    // Unknown and future tokens.
    for bad in ["garbage", "urn:x-cardbridge:sync:999999-0"] {
        let sc = SyncCollection::new(Some(bad), &[names::GETETAG]);
        let r = t
            .dav(
                "alice",
                sc.build_request("/dav/addressbooks/alice/persons/")
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(body_has_precondition(&r.body, &names::VALID_SYNC_TOKEN));
    }
}

/// Two users, every visibility setting of every plan: each sees exactly what `can_view` allows,
/// and a change of visibility appears as an addition or a removal in the next sync.
#[tokio::test]
async fn visibility_every_setting_two_roles_and_sync_removals() {
    let t = T::new().await;
    let boss = t.crm.create_role("boss", None).await.unwrap();
    let staff = t.crm.create_role("staff", Some(boss.id)).await.unwrap();
    let owner = t
        .crm
        .create_user(server_support::user("owner", "owner-pw", Some(staff.id)))
        .await
        .unwrap();
    let peer = t
        .crm
        .create_user(server_support::user("peer", "peer-pw", Some(staff.id)))
        .await
        .unwrap();
    let above = t
        .crm
        .create_user(server_support::user("above", "above-pw", Some(boss.id)))
        .await
        .unwrap();
    let _ = (owner.clone(), peer.clone(), above.clone());
    let cases: Vec<(Plan, Visibility, bool, bool)> = vec![
        // plan, setting, peer (same role) sees, above (parent role) sees
        (Plan::Silver, Visibility::OwnerFollowers, false, false),
        (Plan::Gold, Visibility::EntireCompany, true, true),
        (Plan::Platinum, Visibility::OwnerOnly, false, false),
        (Plan::Platinum, Visibility::OwnersRole, true, false),
        (Plan::Platinum, Visibility::OwnersRoleAndBelow, true, false),
        (Plan::Platinum, Visibility::EntireCompany, true, true),
    ];
    let mut tokens = std::collections::HashMap::new();
    for u in ["owner", "peer", "above"] {
        tokens.insert(u, t.sync(u, None, None).await.new_token.unwrap());
    }
    for (plan, vis, peer_sees, above_sees) in cases {
        t.crm
            .set_company(Company {
                name: "Co".into(),
                plan,
            })
            .await
            .unwrap();
        let p = t
            .crm
            .create_person(
                PersonFields {
                    name: format!("{vis}"),
                    ..Default::default()
                },
                Acl {
                    owner_id: owner.id,
                    followers: vec![],
                    visible_to: vis,
                },
            )
            .await
            .unwrap();
        let href = |u: &str| format!("/dav/addressbooks/{u}/persons/crm-{}.vcf", p.id);
        assert!(t.listing("owner").await.contains(&href("owner")), "{vis}");
        assert_eq!(
            t.listing("peer").await.contains(&href("peer")),
            peer_sees,
            "{vis}"
        );
        assert_eq!(
            t.listing("above").await.contains(&href("above")),
            above_sees,
            "{vis}"
        );
        for (u, sees) in [("peer", peer_sees), ("above", above_sees)] {
            let s = t.sync(u, Some(&tokens[u]), None).await;
            let added = s.changed.iter().any(|c| c.href == href(u));
            assert_eq!(added, sees, "{u} {vis}");
            tokens.insert(u, s.new_token.unwrap());
            let g = t.req(u, "GET", &href(u), &[], "").await;
            assert_eq!(g.status == StatusCode::OK, sees, "{u} {vis}");
        }
        t.crm.delete_person(p.id, None).await.unwrap();
        for u in ["peer", "above"] {
            let s = t.sync(u, Some(&tokens[u]), None).await;
            tokens.insert(u, s.new_token.unwrap());
        }
    }

    // Followers on Silver: a follower sees the person; unfollowing removes it in the next sync.
    t.crm
        .set_company(Company {
            name: "Co".into(),
            plan: Plan::Silver,
        })
        .await
        .unwrap();
    let p = t
        .crm
        .create_person(
            PersonFields {
                name: "Followed".into(),
                ..Default::default()
            },
            Acl {
                owner_id: owner.id,
                followers: vec![peer.id],
                visible_to: Visibility::OwnerFollowers,
            },
        )
        .await
        .unwrap();
    let peer_href = format!("/dav/addressbooks/peer/persons/crm-{}.vcf", p.id);
    let s = t.sync("peer", Some(&tokens["peer"]), None).await;
    assert!(s.changed.iter().any(|c| c.href == peer_href));
    let tok = s.new_token.unwrap();
    let ctag_above = t.ctag("above").await;
    let p = t
        .crm
        .update_person(
            p.id,
            p.version,
            p.fields(),
            Acl {
                owner_id: owner.id,
                followers: vec![],
                visible_to: Visibility::OwnerFollowers,
            },
        )
        .await
        .unwrap();
    let s = t.sync("peer", Some(&tok), None).await;
    assert_eq!(s.removed, vec![peer_href.clone()]);
    // The person was never visible to `above`: nothing moved for them.
    assert_eq!(t.ctag("above").await, ctag_above);
    let s2 = t.sync("above", Some(&tokens["above"]), None).await;
    assert!(s2.removed.is_empty() && s2.changed.is_empty(), "{s2:?}");
    let tok = s.new_token.unwrap();
    // Entire company → added again; then the user's role change on Platinum removes it.
    let p = t
        .crm
        .update_person(
            p.id,
            p.version,
            p.fields(),
            Acl {
                owner_id: owner.id,
                followers: vec![],
                visible_to: Visibility::EntireCompany,
            },
        )
        .await
        .unwrap();
    let s = t.sync("peer", Some(&tok), None).await;
    assert!(s.changed.iter().any(|c| c.href == peer_href));
    let tok = s.new_token.unwrap();
    t.crm
        .set_company(Company {
            name: "Co".into(),
            plan: Plan::Platinum,
        })
        .await
        .unwrap();
    t.crm
        .update_person(
            p.id,
            p.version,
            p.fields(),
            Acl {
                owner_id: owner.id,
                followers: vec![],
                visible_to: Visibility::OwnersRole,
            },
        )
        .await
        .unwrap();
    let s = t.sync("peer", Some(&tok), None).await;
    assert!(
        s.changed.iter().any(|c| c.href == peer_href),
        "same role still sees it"
    );
    let tok = s.new_token.unwrap();
    let mut moved = t.crm.get_user(peer.id).await.unwrap().unwrap();
    moved.role_id = Some(boss.id);
    t.crm.update_user(moved).await.unwrap();
    let s = t.sync("peer", Some(&tok), None).await;
    assert_eq!(s.removed, vec![peer_href], "role change removes it");
}

#[tokio::test]
async fn ctag_does_not_move_for_invisible_changes() {
    let t = T::new().await;
    let c0 = t.ctag("alice").await;
    t.put("bob", "b.vcf", &card("b", "B")).await;
    t.put("bob", "b.vcf", &card("b", "B2")).await;
    assert_eq!(t.ctag("alice").await, c0);
    t.put("alice", "a.vcf", &card("a", "A")).await;
    assert_ne!(t.ctag("alice").await, c0);
}

#[tokio::test]
async fn mkcol_custom_collections_hold_what_was_created_in_them() {
    let t = T::new().await;
    let mk = cardbridge::dav::mkcol::Mkcol::addressbook("Extra");
    let r = t
        .dav(
            "alice",
            mk.build_request("/dav/addressbooks/alice/extra/").unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = t
        .dav(
            "alice",
            mk.build_request("/dav/addressbooks/alice/extra/").unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    t.put("alice", "p.vcf", &card("p", "P")).await;
    let r = t
        .req(
            "alice",
            "PUT",
            "/dav/addressbooks/alice/extra/e.vcf",
            &[("Content-Type", "text/vcard")],
            &card("e", "E"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let pf = Propfind::props(Depth::One, &[names::GETETAG, names::DISPLAYNAME]);
    let r = t
        .dav(
            "alice",
            pf.build_request("/dav/addressbooks/alice/extra/").unwrap(),
        )
        .await;
    let ms = Propfind::parse_response(&r.body).unwrap();
    assert_eq!(
        ms.responses[0].prop_text(&names::DISPLAYNAME),
        Some("Extra")
    );
    let hrefs: Vec<_> = ms
        .responses
        .iter()
        .skip(1)
        .map(|r| r.href.clone())
        .collect();
    assert_eq!(
        hrefs,
        vec!["/dav/addressbooks/alice/extra/e.vcf".to_string()]
    );
    assert_eq!(t.listing("alice").await.len(), 2);
    let r = t
        .req("alice", "DELETE", "/dav/addressbooks/alice/extra/", &[], "")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(t.listing("alice").await.len(), 2, "persons stay in the CRM");
    let r = t
        .req(
            "alice",
            "DELETE",
            "/dav/addressbooks/alice/persons/",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// GET without a version in `Accept` serves the default representation: a card a client wrote
/// comes back as written (Apple writes 3.0 and reads it back; Radicale likewise serves the stored
/// file), a person made in the CRM as vCard 4. `Content-Type` names the version served, and
/// `Accept` with a version converts.
#[tokio::test]
async fn get_without_accept_serves_the_stored_version_else_vcard_4() {
    let t = T::new().await;
    assert_eq!(
        t.put("alice", "ada.vcf", CARD3).await.status,
        StatusCode::CREATED
    );
    let alice = t.crm.user_by_login("alice").await.unwrap().unwrap();
    let p = t
        .crm
        .create_person(
            PersonFields {
                name: "Grace Hopper".into(),
                ..Default::default()
            },
            Acl {
                owner_id: alice.id,
                followers: vec![],
                visible_to: Visibility::OwnerFollowers,
            },
        )
        .await
        .unwrap();
    let crm_card = format!("/dav/addressbooks/alice/persons/crm-{}.vcf", p.id);
    let ct = |r: &Resp| r.headers["content-type"].to_str().unwrap().to_string();
    for accept in [
        None,
        Some("*/*"),
        Some("text/vcard"),
        Some("text/vcard, */*;q=0.1"),
    ] {
        let h: Vec<(&str, &str)> = accept.map(|a| vec![("Accept", a)]).unwrap_or_default();
        let g = t
            .req(
                "alice",
                "GET",
                "/dav/addressbooks/alice/persons/ada.vcf",
                &h,
                "",
            )
            .await;
        assert_eq!(g.text(), CARD3, "{accept:?}");
        assert!(ct(&g).contains("version=3.0"), "{accept:?}: {}", ct(&g));
        let g = t.req("alice", "GET", &crm_card, &h, "").await;
        assert_eq!(g.status, StatusCode::OK);
        assert!(g.text().contains("VERSION:4.0"), "{accept:?}: {}", g.text());
        assert!(g.text().contains("FN:Grace Hopper"));
        assert!(ct(&g).contains("version=4.0"), "{accept:?}: {}", ct(&g));
    }
    // Asked for 3.0, the CRM person converts, under its own ETag.
    let plain = t.req("alice", "GET", &crm_card, &[], "").await;
    let g3 = t
        .req(
            "alice",
            "GET",
            &crm_card,
            &[("Accept", "text/vcard; version=3.0")],
            "",
        )
        .await;
    assert!(g3.text().contains("VERSION:3.0"), "{}", g3.text());
    assert!(ct(&g3).contains("version=3.0"));
    assert_ne!(g3.etag(), plain.etag());
}

/// A sync-collection REPORT that asks for `CARDDAV:address-data` gets the card bodies inline,
/// in the requested version and under that representation's ETag, on the initial and on an
/// incremental sync; a removal stays a bare 404; an unsupported type is refused.
#[tokio::test]
async fn sync_collection_returns_address_data_when_asked() {
    use cardbridge::dav::address_data::AddressDataRequest;
    let t = T::new().await;
    assert_eq!(
        t.put("alice", "ada.vcf", CARD3).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        t.put("alice", "bob.vcf", &card("u-2", "Bob Beta"))
            .await
            .status,
        StatusCode::CREATED
    );
    let sync = |token: Option<String>, version: Option<&str>, ct: Option<&str>| {
        let mut sc = SyncCollection::new(token.as_deref(), &[names::GETETAG]);
        sc.address_data = Some(AddressDataRequest {
            content_type: ct.map(str::to_string),
            version: version.map(str::to_string),
            props: None,
        });
        sc.build_request("/dav/addressbooks/alice/persons/")
            .unwrap()
    };
    let data = |c: &cardbridge::dav::sync_collection::SyncChange| {
        c.response
            .prop(&names::ADDRESS_DATA)
            .map(|e| e.text.clone())
            .unwrap_or_default()
    };
    // Initial sync, default representation: each card as stored, ETag = GET's ETag.
    let r = t.dav("alice", sync(None, None, None)).await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS, "{}", r.text());
    let s = SyncCollection::parse_response(&r.body).unwrap();
    assert_eq!(s.changed.len(), 2);
    for c in &s.changed {
        let g = t.req("alice", "GET", &c.href, &[], "").await;
        assert_eq!(data(c), g.text(), "{}", c.href);
        assert_eq!(c.etag.as_deref(), Some(g.etag().as_str()));
    }
    // Asked for 4.0: the 3.0 card converts, with the 4.0 representation's ETag.
    let r = t.dav("alice", sync(None, Some("4.0"), None)).await;
    let s = SyncCollection::parse_response(&r.body).unwrap();
    let ada = s
        .changed
        .iter()
        .find(|c| c.href.ends_with("ada.vcf"))
        .unwrap();
    assert!(data(ada).contains("VERSION:4.0"), "{}", data(ada));
    assert!(data(ada).contains("X-FAVOURITE-ENGINE:analytical"));
    let g4 = t
        .req(
            "alice",
            "GET",
            &ada.href,
            &[("Accept", "text/vcard; version=4.0")],
            "",
        )
        .await;
    assert_eq!(ada.etag.as_deref(), Some(g4.etag().as_str()));
    // Incremental: the changed card comes with its new body, the removed one as a bare 404.
    let token = s.new_token.clone();
    let r = t
        .put(
            "alice",
            "bob.vcf",
            &card("u-2", "Bob Beta").replace("FN:Bob Beta", "FN:Bob Gamma"),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    t.req(
        "alice",
        "DELETE",
        "/dav/addressbooks/alice/persons/ada.vcf",
        &[],
        "",
    )
    .await;
    let r = t.dav("alice", sync(token, None, None)).await;
    let s = SyncCollection::parse_response(&r.body).unwrap();
    assert_eq!(s.changed.len(), 1, "{}", r.text());
    assert!(data(&s.changed[0]).contains("FN:Bob Gamma"));
    assert_eq!(
        s.removed,
        vec!["/dav/addressbooks/alice/persons/ada.vcf".to_string()]
    );
    // Without address-data, no bodies (what vdirsyncer and our client ask).
    let plain = t.sync("alice", None, None).await;
    assert!(plain.changed.iter().all(|c| data(c).is_empty()));
    // An address-data type we cannot produce is refused with its precondition.
    let r = t
        .dav("alice", sync(None, None, Some("application/vcard+json")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(body_has_precondition(
        &r.body,
        &names::PRE_SUPPORTED_ADDRESS_DATA
    ));
}
