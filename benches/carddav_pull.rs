//! Benchmark of the CardDAV client's pull against a live Xandikos with 10,000 cards, in one run:
//! our initial pull vs a bare `sync-collection` + `addressbook-multiget` fetch done here with
//! plain reqwest (target ≤ 1.25×), vs vdirsyncer 0.21 syncing the same book into a filesystem
//! vdir (target ≥ 3× faster), and the number of requests of a pull with no changes (target 1).
//!
//! Run: `cargo bench --bench carddav_pull` (env `CARDS=N` for another size). Figures go to
//! `docs/BENCHMARKS.md`, section "CardDAV client pull".
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::names;
use cardbridge::dav::sync_collection::SyncCollection;
use cardbridge::providers::carddav::{Auth, CarddavProvider, Profile};
use cardbridge::providers::{Provider, RemoteChange};
use futures::StreamExt as _;
use url::Url;

fn card(i: usize) -> String {
    format!("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bench-{i:05}\r\nN:Person{i};Bench;;;\r\nFN:Bench Person{i}\r\nEMAIL;TYPE=INTERNET,WORK:bench{i}@example.com\r\nTEL;TYPE=CELL:+1555{i:07}\r\nORG:Example Corp;Sales\r\nADR;TYPE=WORK:;;{i} Main St;Springfield;;12345;USA\r\nNOTE:Benchmark card number {i}\r\nEND:VCARD\r\n")
}

async fn populate(book: &str, n: usize) {
    let client = reqwest::Client::new();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let r = client
                    .put(format!("{book}bench-{i:05}.vcf"))
                    .header("content-type", "text/vcard; charset=utf-8")
                    .body(card(i))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

/// Our provider: initial pull to completion; returns (time, cards, requests).
async fn ours(root: &str, book: &str) -> (Duration, usize, u64, Option<String>, CarddavProvider) {
    let p = CarddavProvider::connect(Url::parse(root).unwrap(), Auth::None, Profile::generic())
        .unwrap();
    let start = Instant::now();
    let mut cursor = None;
    let mut cards = 0;
    loop {
        let page = p.pull(book, cursor.as_deref()).await.unwrap();
        cards += page
            .changes
            .iter()
            .filter(|c| matches!(c, RemoteChange::Upsert(_)))
            .count();
        cursor = page.cursor;
        if page.complete {
            break;
        }
    }
    let t = start.elapsed();
    let reqs = p.client().request_count();
    (t, cards, reqs, cursor, p)
}

/// The bare fetch: one sync-collection, then multigets of 100, bodies read, nothing parsed
/// beyond the sync answer's hrefs.
async fn bare(book: &str) -> (Duration, usize) {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let sc = SyncCollection::new(None, &[names::GETETAG]);
    let body = client
        .request(reqwest::Method::from_bytes(b"REPORT").unwrap(), book)
        .header("content-type", names::CONTENT_TYPE_XML)
        .body(sc.body())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let result = SyncCollection::parse_response(&body).unwrap();
    let hrefs: Vec<String> = result
        .changed
        .iter()
        .map(|c| c.href.clone())
        .filter(|h| !h.ends_with('/'))
        .collect();
    let mut bytes = 0;
    for chunk in hrefs.chunks(100) {
        let mg = AddressbookMultiget::new(chunk.to_vec());
        let b = client
            .request(reqwest::Method::from_bytes(b"REPORT").unwrap(), book)
            .header("content-type", names::CONTENT_TYPE_XML)
            .body(mg.body())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        bytes += b.len();
    }
    assert!(bytes > 0);
    (start.elapsed(), hrefs.len())
}

fn vdirsyncer(book: &str) -> (Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let vdir = dir.path().join("vdir");
    std::fs::create_dir_all(&vdir).unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[general]\nstatus_path = \"{}/status/\"\n\n[pair bench]\na = \"bench_remote\"\nb = \"bench_local\"\ncollections = null\n\n[storage bench_remote]\ntype = \"carddav\"\nurl = \"{book}\"\n\n[storage bench_local]\ntype = \"filesystem\"\npath = \"{}\"\nfileext = \".vcf\"\n",
            dir.path().display(),
            vdir.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(support::vdirsyncer())
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vdirsyncer {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["discover"]);
    let start = Instant::now();
    run(&["sync"]);
    let t = start.elapsed();
    let n = std::fs::read_dir(&vdir).unwrap().count();
    (t, n)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n: usize = std::env::var("CARDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let x = support::Xandikos::start();
    let book = x.addressbook_url.clone();
    let t0 = Instant::now();
    rt.block_on(populate(&book, n));
    eprintln!("populated {n} cards in {:.1?}", t0.elapsed());

    // Warm the server once (git object cache), then measure.
    let _ = rt.block_on(bare(&book));
    let (t_bare, n_bare) = rt.block_on(bare(&book));
    let (t_ours, n_ours, reqs, cursor, p) = rt.block_on(ours(&x.url, &book));
    assert_eq!(n_bare, n);
    assert_eq!(n_ours, n);
    let before = p.client().request_count();
    let page = rt.block_on(p.pull(&book, cursor.as_deref())).unwrap();
    assert!(page.changes.is_empty() && page.complete);
    let nochange = p.client().request_count() - before;
    let (t_vds, n_vds) = vdirsyncer(&book);
    assert_eq!(n_vds, n, "vdirsyncer synced every card");

    let ratio_bare = t_ours.as_secs_f64() / t_bare.as_secs_f64();
    let ratio_vds = t_vds.as_secs_f64() / t_ours.as_secs_f64();
    println!("CardDAV client pull, Xandikos, {n} cards");
    println!("  bare sync-collection + multiget: {:>8.2?}", t_bare);
    println!("  cardbridge initial pull:         {:>8.2?}  ({reqs} requests, {ratio_bare:.2}x bare; target <= 1.25x)", t_ours);
    println!("  vdirsyncer 0.21 sync to a vdir:  {:>8.2?}  (cardbridge is {ratio_vds:.1}x faster; target >= 3x)", t_vds);
    println!("  no-change pull:                  {nochange} request(s) (target 1)");
}
