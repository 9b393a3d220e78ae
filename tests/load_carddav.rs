//! Load: `LOAD_CLIENTS` (50) concurrent CardDAV clients sync against our server's address book
//! of `LOAD_CARDS` (10,000) persons for `LOAD_SECS` (60) seconds, while a provider sync
//! (`sync::execute` from an in-memory address book, tests/sync_support) keeps writing new and
//! edited persons into the same CRM. Each client does an initial sync (sync-collection, then
//! addressbook-multiget by 100) and then incremental syncs in a loop. Afterwards every client
//! catches up once and must hold exactly the server's listing (same hrefs and ETags), and the
//! CRM must hold every provider card at its last revision: no errors, no lost updates.
//! Prints p50/p99 per request kind (initial and incremental sync-collection apart), when the
//! last client finished its initial sync (from then on every client is in the steady state of
//! incremental syncs), and the throughput.
//!
//! By default every client starts at once (the harshest case: 50 initial syncs of the whole
//! collection in the same second). `LOAD_RAMP_SECS` spreads the starts evenly over that many
//! seconds instead, as real clients arrive; the 60 s window (and the count of syncs) starts
//! with the first client either way.
//!
//! Long; run by name: `cargo test --release --test load_carddav -- --ignored --nocapture`
//! (docs/BENCHMARKS.md, "Load", has the latest numbers).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod sync_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine as _;
use cardbridge::crm::{MappingConfig, Visibility};
use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::names;
use cardbridge::dav::sync_collection::SyncCollection;
use cardbridge::providers::ProviderKind;
use cardbridge::server::{app, AppState, ServerConfig};
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::execute;
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::Direction;
use sync_support::{card, crm_with_users, FakeBook, MapStore};
use tower::ServiceExt;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw")
    )
}

fn vcard(i: usize) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:load-{i}\r\nFN:Zoë Person {i}\r\nN:Person;Zoë {i};;;\r\n\
         EMAIL;TYPE=work:person{i}@example.com\r\nTEL;TYPE=cell:+1 202 555 {:04}\r\n\
         ORG:Company {}\r\nTITLE:Engineer\r\nEND:VCARD\r\n",
        i % 10_000,
        i % 97
    )
}

#[derive(Default)]
struct Lat {
    /// sync-collection without a token (the whole listing).
    initial: Vec<Duration>,
    /// sync-collection with a token.
    incremental: Vec<Duration>,
    multiget: Vec<Duration>,
    /// Cards received in multiget answers.
    cards: u64,
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    /// href → etag.
    view: BTreeMap<String, String>,
}

impl Client {
    async fn send(&self, req: http::Request<String>) -> (u16, Vec<u8>) {
        let (parts, body) = req.into_parts();
        let mut rb = self
            .http
            .request(
                reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap(),
                parts.uri.to_string(),
            )
            .body(body)
            .header("Authorization", basic());
        for (k, v) in &parts.headers {
            rb = rb.header(k.as_str(), v.to_str().unwrap());
        }
        match rb.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
            }
            Err(_) => (0, Vec::new()),
        }
    }

    /// One sync (initial or incremental); returns the number of failed requests.
    async fn sync(&mut self, lat: &mut Lat) -> u64 {
        let t = Instant::now();
        let sc = SyncCollection::new(self.token.as_deref(), &[names::GETETAG]);
        let (s, body) = self.send(sc.build_request(&self.url).unwrap()).await;
        if self.token.is_some() {
            lat.incremental.push(t.elapsed());
        } else {
            lat.initial.push(t.elapsed());
        }
        if s != 207 {
            eprintln!("sync-collection answered {s}");
            return 1;
        }
        let Ok(res) = SyncCollection::parse_response(&body) else {
            return 1;
        };
        let mut errors = 0;
        for href in &res.removed {
            self.view.remove(href);
        }
        let hrefs: Vec<String> = res.changed.iter().map(|c| c.href.clone()).collect();
        for batch in hrefs.chunks(100) {
            let t = Instant::now();
            let mg = AddressbookMultiget::new(batch.to_vec());
            let (s, body) = self.send(mg.build_request(&self.url).unwrap()).await;
            lat.multiget.push(t.elapsed());
            if s != 207 {
                eprintln!("multiget answered {s}");
                errors += 1;
                continue;
            }
            match mg.parse_response(&body) {
                Ok(r) => {
                    lat.cards += r.cards.len() as u64;
                    for c in r.cards {
                        self.view
                            .insert(c.href.clone(), c.etag.clone().unwrap_or_default());
                    }
                }
                Err(_) => errors += 1,
            }
        }
        if errors == 0 {
            self.token = res.new_token;
        }
        errors
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long load run; run by name (see the module doc)"]
async fn fifty_clients_sync_while_a_provider_sync_writes() {
    let n = env("LOAD_CARDS", 10_000);
    let clients = env("LOAD_CLIENTS", 50);
    let secs = env("LOAD_SECS", 60) as u64;
    let ramp = env("LOAD_RAMP_SECS", 0) as f64;

    let store = Arc::new(MapStore::default());
    let (crm, alice, _) = crm_with_users(store.clone()).await;
    let router = app(AppState::new(
        Arc::new(crm.clone()),
        ServerConfig::default(),
    ));
    let t0 = Instant::now();
    for i in 0..n {
        let req = http::Request::put(format!("/dav/addressbooks/alice/persons/load-{i}.vcf"))
            .header("Authorization", basic())
            .header("Content-Type", "text/vcard")
            .body(Body::from(vcard(i)))
            .unwrap();
        let r = router.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), http::StatusCode::CREATED);
    }
    eprintln!("{n} persons loaded in {:?}", t0.elapsed());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let url = format!("http://127.0.0.1:{port}/dav/addressbooks/alice/persons/");

    // The provider side: an address book that gains 20 cards and edits 20 each round.
    let book = FakeBook::new(200);
    let conn = SyncConnection {
        id: 9,
        user_id: alice.id,
        provider: ProviderKind::Carddav,
        group: "book".into(),
        direction: Direction::TwoWay,
        policy: Policy::NewestWins,
        visibility: Visibility::EntireCompany,
        mapping: MappingConfig::default(),
        default_region: Some("US".into()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let provider_runs = Arc::new(AtomicU64::new(0));
    let revisions: Arc<Mutex<BTreeMap<usize, usize>>> = Arc::default();
    let provider = {
        let conn = conn.clone();
        let (stop, runs, revs, crm, store) = (
            stop.clone(),
            provider_runs.clone(),
            revisions.clone(),
            crm.clone(),
            store.clone(),
        );
        tokio::spawn(async move {
            let mut next = 0usize;
            let mut round = 0usize;
            while !stop.load(Ordering::SeqCst) {
                round += 1;
                {
                    let mut revs = revs.lock().unwrap();
                    for _ in 0..20 {
                        revs.insert(next, 0);
                        next += 1;
                    }
                    let existing: Vec<usize> = revs.keys().copied().collect();
                    for k in 0..20.min(existing.len()) {
                        let i = existing[(round * 20 + k) % existing.len()];
                        *revs.get_mut(&i).unwrap() = round;
                    }
                    for (&i, &rev) in revs.iter() {
                        let title = format!("TITLE:Rev {rev}");
                        let c = card(
                            &format!("prov-{i}"),
                            &format!("Provider Person {i}"),
                            &[&format!("prov{i}@example.net")],
                            &[&title],
                        );
                        if book.get(&format!("p{i}")).as_ref() != Some(&c) {
                            book.put(&format!("p{i}"), c);
                        }
                    }
                }
                let s = execute::run(&conn, book.as_ref(), &crm, store.as_ref())
                    .await
                    .expect("provider sync run");
                assert!(s.errors.is_empty(), "{:?}", s.errors);
                runs.fetch_add(1, Ordering::SeqCst);
            }
            book
        })
    };

    // The clients.
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for k in 0..clients {
        let url = url.clone();
        let delay = Duration::from_secs_f64(ramp * k as f64 / clients as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut c = Client {
                http: reqwest::Client::new(),
                url,
                token: None,
                view: BTreeMap::new(),
            };
            let mut lat = Lat::default();
            let mut errors = 0;
            let mut syncs = 0u64;
            let mut initial_done = None;
            while Instant::now() < deadline {
                errors += c.sync(&mut lat).await;
                syncs += 1;
                if initial_done.is_none() && c.token.is_some() {
                    initial_done = Some(start.elapsed());
                }
            }
            (c, lat, errors, syncs, initial_done)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let book = provider.await.unwrap();
    // A last provider run with everything in place, then every client catches up.
    execute::run(&conn, book.as_ref(), &crm, store.as_ref())
        .await
        .unwrap();
    let mut all = Lat::default();
    let mut errors = 0;
    let mut syncs = 0;
    let mut steady_from: Option<Duration> = Some(Duration::ZERO);
    let mut reference = Client {
        http: reqwest::Client::new(),
        url: url.clone(),
        token: None,
        view: BTreeMap::new(),
    };
    errors += reference.sync(&mut Lat::default()).await;
    for (mut c, lat, e, s, initial_done) in results {
        all.initial.extend(lat.initial);
        all.incremental.extend(lat.incremental);
        all.multiget.extend(lat.multiget);
        all.cards += lat.cards;
        steady_from = match (steady_from, initial_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        errors += e;
        syncs += s;
        errors += c.sync(&mut Lat::default()).await;
        assert_eq!(c.view, reference.view, "a client's view after catching up");
    }
    assert_eq!(errors, 0, "failed requests");
    let revs = revisions.lock().unwrap().clone();
    assert_eq!(reference.view.len(), n + revs.len());
    // No lost update: every provider card is in the CRM at its last revision.
    let mut titles = BTreeMap::new();
    let mut after = None;
    loop {
        let page = crm.list_persons(after, 500).await.unwrap();
        for p in &page.persons {
            if let Some(e) = p.emails.first() {
                titles.insert(e.value.clone(), p.job_title.clone());
            }
        }
        match page.next_after {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    for (i, rev) in &revs {
        assert_eq!(
            titles
                .get(&format!("prov{i}@example.net"))
                .map(String::as_str),
            Some(format!("Rev {rev}").as_str()),
            "provider person {i}"
        );
    }
    let reqs = (all.initial.len() + all.incremental.len() + all.multiget.len()) as f64;
    let secs_run = elapsed.as_secs_f64();
    eprintln!(
        "LOAD: {clients} clients (starts spread over {ramp} s), {n} persons, {secs_run:.1} s: \
         {syncs} syncs; initial sync-collection {} (p50 {:?}, p99 {:?}); incremental \
         sync-collection {} (p50 {:?}, p99 {:?}); multiget {} (p50 {:?}, p99 {:?}); \
         every client in incremental syncs from {}; {:.1} req/s, {} cards served ({:.0} \
         cards/s); {} provider runs wrote {} persons ({} edit rounds); errors {errors}",
        all.initial.len(),
        pct(&mut all.initial, 0.5),
        pct(&mut all.initial, 0.99),
        all.incremental.len(),
        pct(&mut all.incremental, 0.5),
        pct(&mut all.incremental, 0.99),
        all.multiget.len(),
        pct(&mut all.multiget, 0.5),
        pct(&mut all.multiget, 0.99),
        steady_from
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never (a client was still in its initial sync)".into()),
        reqs / secs_run,
        all.cards,
        all.cards as f64 / secs_run,
        provider_runs.load(Ordering::SeqCst),
        revs.len(),
        provider_runs.load(Ordering::SeqCst),
    );
}
