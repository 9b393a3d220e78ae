//! Scaling benchmark: how our own costs grow from 1,000 to 10,000 to 100,000 persons, to show
//! which operations are O(changes) and which are O(n). No peers: only our server and our sync
//! engine, on the shared corpus (benches/common/corpus.rs).
//!
//! For each size `n` (env `SCALING_SIZES`, default `1000,10000,100000`):
//!
//! - **Server**: the real `cardbridge serve` binary (release) on a fresh sled data directory,
//!   filled with `n` cards by PUT (8 in parallel, timed), stopped with SIGTERM and started again
//!   on the same data. After one warm-up initial sync, each repetition times: the initial sync
//!   (sync-collection, then addressbook-multiget by 100), a no-change sync, a sync after 20
//!   changes (the 20 PUTs are not timed; sync-collection with the token plus one multiget of the
//!   20), a `PROPFIND Depth: 1` listing, and [`SINGLE_OPS`] GETs and [`SINGLE_OPS`] PUTs of one
//!   card each (every one a sample). Then the serving process's VmHWM and the data directory's
//!   size on disk (after the server stopped).
//! - **Engine**: `sync::execute::run` of a two-way connection on a sled store in a child
//!   process of this bench (so that its VmHWM is the engine's alone), against the in-memory
//!   address book of tests/sync_support (`FakeBook`, pages of 100) holding the `n` corpus cards:
//!   the initial run (once), then per repetition a no-change run, a run after 20 cards changed in
//!   the address book, and a run after 20 persons changed in the CRM (pushed to the book).
//!
//! Repetitions: `REPS` (default 5) below 100,000 persons, `REPS_LARGE` (default 3) from
//! 100,000 on; medians with min and max. `SCALING_PARTS=server,engine` picks the parts.
//!
//! Run: `cargo bench --bench scaling` (prints the tables of docs/BENCHMARKS.md, "Scaling").
#![allow(clippy::unwrap_used, dead_code)]

#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/serve.rs"]
mod serve;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/sync_support/mod.rs"]
mod sync_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardbridge::crm::{MappingConfig, Visibility};
use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::multistatus::Multistatus;
use cardbridge::dav::names;
use cardbridge::dav::propfind::{Depth, Propfind};
use cardbridge::dav::sync_collection::{SyncCollection, SyncResult};
use cardbridge::dav::xml::{self, Limits};
use cardbridge::providers::ProviderKind;
use cardbridge::store::{SledStore, Store};
use cardbridge::sync::connection::SyncConnection;
use cardbridge::sync::execute;
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::Direction;
use serve::{basic, ms, serve, stats, stop, upload, vm_hwm_mb, ADMIN_PASSWORD};

/// Cards changed before a "sync after changes" measurement.
const CHANGES: usize = 20;
/// The client's XML bound for the listings: a sync-collection or PROPFIND answer at 100,000
/// cards is ~22 MB, over the 10 MiB that `dav::xml::parse` accepts by default.
const LISTING_MAX_BYTES: usize = 256 * 1024 * 1024;
/// GETs and PUTs of one card timed per repetition.
const SINGLE_OPS: usize = 10;
/// Set (to the size) in the child process that runs the engine part.
const ENGINE_CHILD_ENV: &str = "SCALING_ENGINE_CHILD";
/// The line prefix the engine child reports its figures with.
const ENGINE_REPORT: &str = "SCALING-ENGINE ";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn sizes() -> Vec<usize> {
    std::env::var("SCALING_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn reps_for(n: usize) -> usize {
    if n >= 100_000 {
        env_usize("REPS_LARGE", 3)
    } else {
        env_usize("REPS", 5)
    }
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, like `du`).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            total += disk_usage(&e.path());
        } else {
            total += md.blocks() * 512;
        }
    }
    total
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------- server part

/// A multistatus of any size up to [`LISTING_MAX_BYTES`].
fn parse_listing(body: &[u8]) -> Multistatus {
    let limits = Limits {
        max_bytes: LISTING_MAX_BYTES,
        ..Limits::default()
    };
    Multistatus::from_element(&xml::parse_with(body, &limits).unwrap()).unwrap()
}

struct Dav {
    client: reqwest::Client,
    collection: String,
    auth: String,
}

impl Dav {
    async fn send(&self, req: http::Request<String>) -> (u16, Vec<u8>) {
        serve::send(&self.client, Some(&self.auth), req).await
    }

    /// sync-collection with `token`, then multigets by 100 of what it reports; returns
    /// (elapsed, cards fetched, new token).
    async fn sync(&self, token: Option<&str>) -> (Duration, usize, String) {
        let start = Instant::now();
        let sc = SyncCollection::new(token, &[names::GETETAG]);
        let (s, body) = self.send(sc.build_request(&self.collection).unwrap()).await;
        assert_eq!(s, 207, "sync-collection");
        let res = SyncResult::from_multistatus(parse_listing(&body)).unwrap();
        let hrefs: Vec<String> = res.changed.iter().map(|c| c.href.clone()).collect();
        let mut fetched = 0;
        for batch in hrefs.chunks(100) {
            let mg = AddressbookMultiget::new(batch.to_vec());
            let (s, body) = self.send(mg.build_request(&self.collection).unwrap()).await;
            assert_eq!(s, 207, "multiget");
            fetched += mg.parse_response(&body).unwrap().cards.len();
        }
        (start.elapsed(), fetched, res.new_token.unwrap_or_default())
    }

    /// PUTs card `i` of the corpus with a NOTE naming `tag`; returns the elapsed time.
    async fn put_changed(&self, corpus: &[String], i: usize, tag: &str) -> Duration {
        let card = corpus[i].replacen("END:VCARD", &format!("NOTE:scaling {tag}\r\nEND:VCARD"), 1);
        let start = Instant::now();
        let r = self
            .client
            .put(format!("{}{}", self.collection, corpus::file_name(i)))
            .header("Authorization", &self.auth)
            .header("Content-Type", "text/vcard; charset=utf-8")
            .body(card)
            .send()
            .await
            .unwrap();
        let elapsed = start.elapsed();
        assert!(r.status().is_success(), "PUT card {i}: {}", r.status());
        elapsed
    }

    async fn get(&self, i: usize) -> Duration {
        let start = Instant::now();
        let r = self
            .client
            .get(format!("{}{}", self.collection, corpus::file_name(i)))
            .header("Authorization", &self.auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET card {i}");
        let body = r.bytes().await.unwrap();
        let elapsed = start.elapsed();
        assert!(
            body.starts_with(b"BEGIN:VCARD"),
            "GET card {i}: not a vCard"
        );
        elapsed
    }

    async fn propfind(&self, n: usize) -> Duration {
        let start = Instant::now();
        let pf = Propfind::props(Depth::One, &[names::GETETAG]);
        let r = self
            .client
            .request(
                reqwest::Method::from_bytes(names::METHOD_PROPFIND.as_bytes()).unwrap(),
                &self.collection,
            )
            .header("Authorization", &self.auth)
            .header("Depth", Depth::One.as_str())
            .header("Content-Type", names::CONTENT_TYPE_XML)
            .body(pf.body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 207, "PROPFIND");
        let body = r.bytes().await.unwrap();
        let listed = parse_listing(&body).responses.len();
        assert!(listed >= n, "PROPFIND listed {listed} of {n}");
        start.elapsed()
    }
}

/// One size's server figures.
struct ServerRow {
    n: usize,
    reps: usize,
    upload: Duration,
    load_hwm: Option<f64>,
    initial: Vec<Duration>,
    no_change: Vec<Duration>,
    changes: Vec<Duration>,
    propfind: Vec<Duration>,
    get: Vec<Duration>,
    put: Vec<Duration>,
    serve_hwm: Option<f64>,
    disk: u64,
}

fn server_part(rt: &tokio::runtime::Runtime, n: usize, reps: usize) -> ServerRow {
    let corpus = corpus::cards(n);
    let dir = tempfile::Builder::new()
        .prefix("cb-scaling-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let admin = basic("admin", ADMIN_PASSWORD);
    let client = reqwest::Client::new();
    let (guard, port) = serve(&data, &dir.path().join("load.log"));
    let collection = format!("http://127.0.0.1:{port}/dav/addressbooks/admin/persons/");
    let upload_time = rt.block_on(upload(&client, &collection, &admin, &corpus));
    let load_hwm = vm_hwm_mb(guard.id());
    eprintln!("server {n}: uploaded in {upload_time:.1?}, loading VmHWM {load_hwm:?} MB");
    stop(guard);
    let (ours, port) = serve(&data, &dir.path().join("serve.log"));
    let dav = Dav {
        client,
        collection: format!("http://127.0.0.1:{port}/dav/addressbooks/admin/persons/"),
        auth: admin,
    };
    let mut row = ServerRow {
        n,
        reps,
        upload: upload_time,
        load_hwm,
        initial: vec![],
        no_change: vec![],
        changes: vec![],
        propfind: vec![],
        get: vec![],
        put: vec![],
        serve_hwm: None,
        disk: 0,
    };
    rt.block_on(async {
        let (_, got, _) = dav.sync(None).await;
        assert_eq!(got, n, "warm-up initial sync fetched {got} of {n}");
        for rep in 0..reps {
            let (d, got, token) = dav.sync(None).await;
            assert_eq!(got, n, "initial sync fetched {got} of {n}");
            row.initial.push(d);
            let (d, got, token) = dav.sync(Some(&token)).await;
            assert_eq!(got, 0, "no-change sync fetched {got}");
            row.no_change.push(d);
            for j in 0..CHANGES {
                let i = (rep * CHANGES + j) * 7919 % n;
                dav.put_changed(&corpus, i, &format!("change {rep}")).await;
            }
            let (d, got, _) = dav.sync(Some(&token)).await;
            assert_eq!(got, CHANGES, "sync after {CHANGES} changes fetched {got}");
            row.changes.push(d);
            row.propfind.push(dav.propfind(n).await);
            for j in 0..SINGLE_OPS {
                let i = (rep * SINGLE_OPS + j) * 104_729 % n;
                row.get.push(dav.get(i).await);
                row.put
                    .push(dav.put_changed(&corpus, i, &format!("single {rep}")).await);
            }
            eprintln!(
                "server {n} rep {rep}: initial {:.1?}, no-change {:.1?}, {CHANGES} changes {:.1?}, \
                 PROPFIND {:.1?}",
                row.initial[rep], row.no_change[rep], row.changes[rep], row.propfind[rep]
            );
        }
    });
    row.serve_hwm = vm_hwm_mb(ours.id());
    stop(ours);
    row.disk = disk_usage(&data);
    row
}

// ---------------------------------------------------------------------------- engine part

/// Runs in the child process: the engine figures for `n` persons, printed as one JSON line.
fn engine_child(n: usize, reps: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("cb-scaling-engine-")
        .tempdir()
        .unwrap();
    let sled_dir = dir.path().join("sled");
    let report = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&sled_dir).unwrap());
        let (crm, alice, _) = sync_support::crm_with_users(store.clone()).await;
        let book = sync_support::FakeBook::new(100);
        let photo = corpus::photo_b64();
        for i in 0..n {
            let text = corpus::card(i, &photo);
            let card = cardbridge::vcard::read_normalized(&text).cards.remove(0);
            book.put(&corpus::file_name(i), card);
        }
        let conn = SyncConnection {
            id: 1,
            user_id: alice.id,
            provider: ProviderKind::Carddav,
            group: "book".into(),
            direction: Direction::TwoWay,
            policy: Policy::NewestWins,
            visibility: Visibility::EntireCompany,
            mapping: MappingConfig::default(),
            default_region: Some("US".into()),
        };
        let start = Instant::now();
        let s = execute::run(&conn, book.as_ref(), &crm, store.as_ref())
            .await
            .unwrap();
        let initial = start.elapsed();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.counts.crm.added, n as u64, "initial run added");
        let mut none = Vec::new();
        let mut remote = Vec::new();
        let mut local = Vec::new();
        for rep in 0..reps {
            let start = Instant::now();
            let s = execute::run(&conn, book.as_ref(), &crm, store.as_ref())
                .await
                .unwrap();
            none.push(start.elapsed());
            assert_eq!(s.counts.crm.updated + s.counts.provider.updated, 0);
            // 20 cards change in the address book.
            for j in 0..CHANGES {
                let i = (rep * CHANGES + j) * 7919 % n;
                let text = corpus::card(i, &photo).replacen(
                    "END:VCARD",
                    &format!("NOTE:engine change {rep}\r\nEND:VCARD"),
                    1,
                );
                let card = cardbridge::vcard::read_normalized(&text).cards.remove(0);
                book.put(&corpus::file_name(i), card);
            }
            let start = Instant::now();
            let s = execute::run(&conn, book.as_ref(), &crm, store.as_ref())
                .await
                .unwrap();
            remote.push(start.elapsed());
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            assert_eq!(
                s.counts.crm.updated, CHANGES as u64,
                "remote changes applied"
            );
            // 20 persons change in the CRM (pushed to the address book).
            let page = crm.list_persons(None, n).await.unwrap();
            for j in 0..CHANGES {
                let p = &page.persons[(rep * CHANGES + j) * 104_729 % page.persons.len()];
                let mut fields = p.fields();
                fields.job_title = format!("Engine rep {rep}");
                crm.update_person(p.id, p.version, fields, p.acl())
                    .await
                    .unwrap();
            }
            let start = Instant::now();
            let s = execute::run(&conn, book.as_ref(), &crm, store.as_ref())
                .await
                .unwrap();
            local.push(start.elapsed());
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            assert_eq!(
                s.counts.provider.updated, CHANGES as u64,
                "CRM changes pushed"
            );
            eprintln!(
                "engine {n} rep {rep}: no-change {:.1?}, {CHANGES} remote {:.1?}, \
                 {CHANGES} CRM {:.1?}",
                none[rep], remote[rep], local[rep]
            );
        }
        let ms = |v: &[Duration]| -> Vec<f64> { v.iter().map(|d| d.as_secs_f64() * 1e3).collect() };
        serde_json::json!({
            "initial_ms": initial.as_secs_f64() * 1e3,
            "none_ms": ms(&none),
            "remote_ms": ms(&remote),
            "local_ms": ms(&local),
        })
    });
    let mut report = report;
    report["hwm_mb"] = serde_json::json!(vm_hwm_mb(std::process::id()));
    // Sled writes on drop/flush; the store is dropped with the runtime's task above.
    drop(rt);
    report["disk_bytes"] = serde_json::json!(disk_usage(&sled_dir));
    println!("{ENGINE_REPORT}{report}");
}

/// One size's engine figures, read from the child's report.
struct EngineRow {
    n: usize,
    initial: Duration,
    none: Vec<Duration>,
    remote: Vec<Duration>,
    local: Vec<Duration>,
    hwm: Option<f64>,
    disk: u64,
}

fn engine_part(n: usize, reps: usize) -> EngineRow {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .arg("--bench")
        .env(ENGINE_CHILD_ENV, n.to_string())
        .env("REPS", reps.to_string())
        .env("REPS_LARGE", reps.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "engine child for {n} failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(ENGINE_REPORT))
        .expect("the engine child's report");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let durs = |k: &str| -> Vec<Duration> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| Duration::from_secs_f64(x.as_f64().unwrap() / 1e3))
            .collect()
    };
    EngineRow {
        n,
        initial: Duration::from_secs_f64(v["initial_ms"].as_f64().unwrap() / 1e3),
        none: durs("none_ms"),
        remote: durs("remote_ms"),
        local: durs("local_ms"),
        hwm: v["hwm_mb"].as_f64(),
        disk: v["disk_bytes"].as_u64().unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------- output

fn median(v: &[Duration]) -> f64 {
    stats(v.to_vec()).0.as_secs_f64()
}

/// One table row: the operation, each size's "median (min–max)", and the growth factors
/// between consecutive sizes.
fn row(name: &str, cells: &[(String, f64)]) {
    let mut line = format!("| {name} |");
    for (text, _) in cells {
        line.push_str(&format!(" {text} |"));
    }
    for w in cells.windows(2) {
        let f = w[1].1 / w[0].1.max(1e-12);
        line.push_str(&format!(" {f:.1}× |"));
    }
    println!("{line}");
}

fn time_cells(v: &[&[Duration]]) -> Vec<(String, f64)> {
    v.iter()
        .map(|d| (ms(stats(d.to_vec())), median(d)))
        .collect()
}

fn header(sizes: &[usize]) {
    let mut h = "| operation |".to_string();
    let mut sep = "|---|".to_string();
    for n in sizes {
        h.push_str(&format!(" {n} |"));
        sep.push_str("---:|");
    }
    for w in sizes.windows(2) {
        h.push_str(&format!(" ×{}→{} |", w[0], w[1]));
        sep.push_str("---:|");
    }
    println!("{h}\n{sep}");
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` builds and runs it with --test: skip.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if let Ok(n) = std::env::var(ENGINE_CHILD_ENV) {
        let n: usize = n.parse().unwrap();
        engine_child(n, reps_for(n));
        return;
    }
    let sizes = sizes();
    let parts = std::env::var("SCALING_PARTS").unwrap_or_else(|_| "server,engine".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut servers = Vec::new();
    let mut engines = Vec::new();
    for &n in &sizes {
        let reps = reps_for(n);
        if parts.contains("server") {
            servers.push(server_part(&rt, n, reps));
        }
        if parts.contains("engine") {
            engines.push(engine_part(n, reps));
        }
    }
    let reps: Vec<String> = sizes
        .iter()
        .map(|&n| format!("{n}: {}", reps_for(n)))
        .collect();
    println!(
        "\nmedian (min–max) in ms; repetitions {}\n",
        reps.join(", ")
    );
    if !servers.is_empty() {
        let ns: Vec<usize> = servers.iter().map(|r| r.n).collect();
        println!("Server (cardbridge serve, sled)\n");
        header(&ns);
        let col = |f: fn(&ServerRow) -> &Vec<Duration>| -> Vec<(String, f64)> {
            let v: Vec<&[Duration]> = servers.iter().map(|r| f(r).as_slice()).collect();
            time_cells(&v)
        };
        row(
            "initial sync (sync-collection + multiget by 100)",
            &col(|r| &r.initial),
        );
        row("no-change sync", &col(|r| &r.no_change));
        row(
            &format!("sync after {CHANGES} changes (+ multiget of them)"),
            &col(|r| &r.changes),
        );
        row("PROPFIND Depth:1 (getetag)", &col(|r| &r.propfind));
        row(
            &format!("GET one card ({SINGLE_OPS}/rep)"),
            &col(|r| &r.get),
        );
        row(
            &format!("PUT one card ({SINGLE_OPS}/rep)"),
            &col(|r| &r.put),
        );
        let upload: Vec<(String, f64)> = servers
            .iter()
            .map(|r| {
                let s = r.upload.as_secs_f64();
                (format!("{s:.1} s ({:.0} cards/s)", r.n as f64 / s), s)
            })
            .collect();
        row("upload by PUT, 8 parallel (once)", &upload);
        let hwm: Vec<(String, f64)> = servers
            .iter()
            .map(|r| {
                let m = r.serve_hwm.unwrap_or(0.0);
                (format!("{m:.0} MB"), m)
            })
            .collect();
        row("peak RSS serving (VmHWM after the runs)", &hwm);
        let load: Vec<(String, f64)> = servers
            .iter()
            .map(|r| {
                let m = r.load_hwm.unwrap_or(0.0);
                (format!("{m:.0} MB"), m)
            })
            .collect();
        row("peak RSS of the loading process", &load);
        let disk: Vec<(String, f64)> = servers
            .iter()
            .map(|r| (format!("{:.1} MB", mb(r.disk)), r.disk as f64))
            .collect();
        row("store on disk (sled data directory)", &disk);
        println!();
    }
    if !engines.is_empty() {
        let ns: Vec<usize> = engines.iter().map(|r| r.n).collect();
        println!("Engine (sync::execute, two-way, sled, in-memory address book)\n");
        header(&ns);
        let init: Vec<(String, f64)> = engines
            .iter()
            .map(|r| {
                let s = r.initial.as_secs_f64();
                (format!("{:.1} ms (once)", s * 1e3), s)
            })
            .collect();
        row("initial sync (every card new)", &init);
        let col = |f: fn(&EngineRow) -> &Vec<Duration>| -> Vec<(String, f64)> {
            let v: Vec<&[Duration]> = engines.iter().map(|r| f(r).as_slice()).collect();
            time_cells(&v)
        };
        row("no-change sync", &col(|r| &r.none));
        row(
            &format!("sync after {CHANGES} address-book changes"),
            &col(|r| &r.remote),
        );
        row(
            &format!("sync after {CHANGES} CRM changes (pushed)"),
            &col(|r| &r.local),
        );
        let hwm: Vec<(String, f64)> = engines
            .iter()
            .map(|r| {
                let m = r.hwm.unwrap_or(0.0);
                (format!("{m:.0} MB"), m)
            })
            .collect();
        row("peak RSS of the process (book in memory too)", &hwm);
        let disk: Vec<(String, f64)> = engines
            .iter()
            .map(|r| (format!("{:.1} MB", mb(r.disk)), r.disk as f64))
            .collect();
        row("store on disk (sled)", &disk);
    }
}
