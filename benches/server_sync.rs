//! CardDAV server benchmark: a client's initial full sync (sync-collection, then
//! addressbook-multiget in batches of 100), a no-change sync, a sync after 20 changes
//! (sync-collection with the token, then one multiget of the changed cards; the 20 PUTs before it
//! are not timed) and a `PROPFIND Depth: 1` listing (getetag of every card) against our server, Radicale 3.9
//! and Xandikos 0.4 serving the same 10,000 cards (benches/common/corpus.rs: realistic Apple-shaped
//! vCard 3.0, non-ASCII names, 10% with a photo), in one run.
//!
//! - **Ours** is the real `cardbridge serve` binary on a fresh data directory, filled through
//!   its CardDAV server with parallel PUTs (the upload is timed), then stopped with SIGTERM and
//!   started again on the same data, so the peak RSS (VmHWM from /proc) read at the end is that
//!   of a process serving 10,000 persons. The VmHWM of the loading process is reported too.
//! - **Radicale** and **Xandikos** are filled straight into their storage (benches/common/fill.rs).
//! - Every server must answer an initial sync-collection with all the cards before timing.
//! - The servers run alternately, `REPS` times (default 5) after one warm-up; medians with min
//!   and max.
//!
//! Run: `CARDBRIDGE_PEERS=… cargo bench --bench server_sync` (env `BENCH_CARDS` changes the
//! count). Prints a Markdown table for docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/fill.rs"]
mod fill;
#[path = "common/serve.rs"]
mod serve;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::multistatus::Multistatus;
use cardbridge::dav::names;
use cardbridge::dav::propfind::{Depth, Propfind};
use cardbridge::dav::sync_collection::SyncCollection;
use serve::{basic, ms, serve, stats, stop, upload, vm_hwm_mb, ADMIN_PASSWORD};

fn cards() -> usize {
    std::env::var("BENCH_CARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn reps() -> usize {
    std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1)
}

struct Target {
    name: &'static str,
    collection: String,
    auth: Option<String>,
    pid: u32,
}

async fn send(client: &reqwest::Client, t: &Target, req: http::Request<String>) -> (u16, Vec<u8>) {
    serve::send(client, t.auth.as_deref(), req).await
}

/// One initial sync; returns (elapsed, cards fetched, token).
async fn initial_sync(client: &reqwest::Client, t: &Target) -> (Duration, usize, String) {
    let start = Instant::now();
    let sc = SyncCollection::new(None, &[names::GETETAG]);
    let (s, body) = send(client, t, sc.build_request(&t.collection).unwrap()).await;
    assert_eq!(s, 207, "{}", t.name);
    let res = SyncCollection::parse_response(&body).unwrap();
    let base = reqwest::Url::parse(&t.collection).unwrap();
    let hrefs: Vec<String> = res.changed.iter().map(|c| c.href.clone()).collect();
    let mut fetched = 0;
    for batch in hrefs.chunks(100) {
        let mg = AddressbookMultiget::new(batch.to_vec());
        let (s, body) = send(client, t, mg.build_request(base.as_str()).unwrap()).await;
        assert_eq!(s, 207, "{}", t.name);
        fetched += mg.parse_response(&body).unwrap().cards.len();
    }
    (start.elapsed(), fetched, res.new_token.unwrap_or_default())
}

async fn no_change_sync(client: &reqwest::Client, t: &Target, token: &str) -> Duration {
    let start = Instant::now();
    let sc = SyncCollection::new(Some(token), &[names::GETETAG]);
    let (s, body) = send(client, t, sc.build_request(&t.collection).unwrap()).await;
    assert_eq!(s, 207, "{}", t.name);
    let res = SyncCollection::parse_response(&body).unwrap();
    assert!(
        res.changed.is_empty(),
        "{}: {} changed",
        t.name,
        res.changed.len()
    );
    start.elapsed()
}

/// How many cards change before the "sync after changes" measurement.
const CHANGES: usize = 20;

/// PUTs [`CHANGES`] changed cards (a NOTE naming `rep`; not timed), then times the sync that
/// picks them up: sync-collection with `token`, then one multiget of the changed hrefs.
/// Returns the elapsed time and the new token.
async fn changes_sync(
    client: &reqwest::Client,
    t: &Target,
    token: &str,
    corpus: &[String],
    rep: usize,
) -> (Duration, String) {
    for j in 0..CHANGES {
        let i = (rep * CHANGES + j) % corpus.len();
        let card = corpus[i].replacen(
            "END:VCARD",
            &format!("NOTE:bench change {rep}\r\nEND:VCARD"),
            1,
        );
        let mut rb = client
            .put(format!("{}{}", t.collection, corpus::file_name(i)))
            .header("Content-Type", "text/vcard; charset=utf-8")
            .body(card);
        if let Some(a) = &t.auth {
            rb = rb.header("Authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert!(
            r.status().is_success(),
            "{}: PUT card {i}: {}",
            t.name,
            r.status()
        );
    }
    let start = Instant::now();
    let sc = SyncCollection::new(Some(token), &[names::GETETAG]);
    let (s, body) = send(client, t, sc.build_request(&t.collection).unwrap()).await;
    assert_eq!(s, 207, "{}", t.name);
    let res = SyncCollection::parse_response(&body).unwrap();
    let hrefs: Vec<String> = res.changed.iter().map(|c| c.href.clone()).collect();
    assert_eq!(hrefs.len(), CHANGES, "{}: {} changed", t.name, hrefs.len());
    let base = reqwest::Url::parse(&t.collection).unwrap();
    let mg = AddressbookMultiget::new(hrefs);
    let (s, body) = send(client, t, mg.build_request(base.as_str()).unwrap()).await;
    assert_eq!(s, 207, "{}", t.name);
    let got = mg.parse_response(&body).unwrap().cards.len();
    assert_eq!(got, CHANGES, "{}: fetched {got}", t.name);
    (start.elapsed(), res.new_token.unwrap_or_default())
}

/// Times a `PROPFIND Depth: 1` of the collection for `getetag` (the listing a client without
/// sync-collection does); every card must be listed.
async fn propfind_listing(client: &reqwest::Client, t: &Target, n: usize) -> Duration {
    let start = Instant::now();
    let pf = Propfind::props(Depth::One, &[names::GETETAG]);
    let mut rb = client
        .request(
            reqwest::Method::from_bytes(names::METHOD_PROPFIND.as_bytes()).unwrap(),
            &t.collection,
        )
        .header("Depth", Depth::One.as_str())
        .header("Content-Type", names::CONTENT_TYPE_XML)
        .body(pf.body());
    if let Some(a) = &t.auth {
        rb = rb.header("Authorization", a);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 207, "{}", t.name);
    let body = r.bytes().await.unwrap();
    let listed = Multistatus::parse(&body).unwrap().responses.len();
    assert!(listed >= n, "{}: PROPFIND listed {listed} of {n}", t.name);
    start.elapsed()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` builds and runs it with --test: skip.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let n = cards();
    let reps = reps();
    let corpus = corpus::cards(n);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let admin = basic("admin", ADMIN_PASSWORD);

    // Our server: the real binary, filled over CardDAV, then restarted on the same data.
    let dir = tempfile::Builder::new()
        .prefix("cb-bench-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let (guard, port) = serve(&data, &dir.path().join("load.log"));
    let collection = format!("http://127.0.0.1:{port}/dav/addressbooks/admin/persons/");
    let t_upload = rt.block_on(upload(&client, &collection, &admin, &corpus));
    let load_hwm = vm_hwm_mb(guard.id());
    eprintln!(
        "cardbridge: uploaded {n} cards by PUT (8 parallel) in {t_upload:.1?}, VmHWM {load_hwm:?} MB"
    );
    stop(guard);
    let (ours, port) = serve(&data, &dir.path().join("serve.log"));
    let after_start_hwm = vm_hwm_mb(ours.id());

    let radicale = support::Radicale::start();
    let rbook = fill::radicale(&radicale, "contacts", &corpus);
    let xandikos = support::Xandikos::start();
    fill::xandikos(&xandikos, &corpus);

    let targets = [
        Target {
            name: "cardbridge",
            collection: format!("http://127.0.0.1:{port}/dav/addressbooks/admin/persons/"),
            auth: Some(admin.clone()),
            pid: ours.id(),
        },
        Target {
            name: "Radicale 3.9",
            collection: rbook.clone(),
            auth: Some(basic("alice", "alicepw")),
            pid: radicale.pid(),
        },
        Target {
            name: "Xandikos 0.4",
            collection: xandikos.addressbook_url.clone(),
            auth: None,
            pid: xandikos.pid(),
        },
    ];
    let mut init: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut none: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut changed: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut listing: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    rt.block_on(async {
        for t in &targets {
            let served = fill::count_served(&client, &t.collection, t.auth.as_deref()).await;
            assert_eq!(served, n, "{} serves {served} of {n} cards", t.name);
            // One warm-up (servers build caches and indexes on first use).
            let (_, got, _) = initial_sync(&client, t).await;
            assert_eq!(got, n, "{} served {got} of {n} cards", t.name);
        }
        for rep in 0..reps {
            for (k, t) in targets.iter().enumerate() {
                let (d, got, token) = initial_sync(&client, t).await;
                assert_eq!(got, n, "{}", t.name);
                init[k].push(d);
                none[k].push(no_change_sync(&client, t, &token).await);
                let (c, _) = changes_sync(&client, t, &token, &corpus, rep).await;
                changed[k].push(c);
                listing[k].push(propfind_listing(&client, t, n).await);
                eprintln!(
                    "rep {rep} {}: initial {d:.2?}, no-change {:.2?}, {CHANGES} changes {c:.2?}, \
                     PROPFIND {:.2?}",
                    t.name, none[k][rep], listing[k][rep]
                );
            }
        }
    });
    let rows: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(k, t)| {
            (
                t.name,
                stats(init[k].clone()),
                stats(none[k].clone()),
                vm_hwm_mb(t.pid),
            )
        })
        .collect();
    let more: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(k, t)| (t.name, stats(changed[k].clone()), stats(listing[k].clone())))
        .collect();
    stop(ours);
    let ours_init = rows[0].1 .0.as_secs_f64();
    println!("{n} cards, median of {reps} runs (min–max)\n");
    println!("| server | initial full sync | no-change sync | no-change / initial | ours faster by | peak RSS (VmHWM) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, i, z, rss) in &rows {
        println!(
            "| {name} | {} | {} | 1/{:.0} | {:.1}× | {} |",
            ms(*i),
            ms(*z),
            i.0.as_secs_f64() / z.0.as_secs_f64().max(1e-9),
            i.0.as_secs_f64() / ours_init,
            rss.map(|r| format!("{r:.0} MB"))
                .unwrap_or_else(|| "n/a".into())
        );
    }
    let (ours_changed, ours_listing) = (more[0].1 .0.as_secs_f64(), more[0].2 .0.as_secs_f64());
    println!("\n| server | sync after {CHANGES} changes | ours faster by | PROPFIND Depth:1 listing | ours faster by |");
    println!("|---|---:|---:|---:|---:|");
    for (name, c, l) in &more {
        println!(
            "| {name} | {} | {:.1}× | {} | {:.1}× |",
            ms(*c),
            c.0.as_secs_f64() / ours_changed.max(1e-9),
            ms(*l),
            l.0.as_secs_f64() / ours_listing.max(1e-9),
        );
    }
    println!(
        "\ncardbridge serve: upload of {n} cards by PUT (8 in parallel) {:.1} s; VmHWM of the loading process {}; after restart on the same data, before the syncs {}",
        t_upload.as_secs_f64(),
        load_hwm.map(|r| format!("{r:.0} MB")).unwrap_or_else(|| "n/a".into()),
        after_start_hwm.map(|r| format!("{r:.0} MB")).unwrap_or_else(|| "n/a".into()),
    );
}
