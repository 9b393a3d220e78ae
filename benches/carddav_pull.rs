//! Benchmark of the CardDAV client's pull against a live Xandikos 0.4 with 10,000 cards, in one run:
//! our initial pull vs a bare `sync-collection` + `addressbook-multiget` fetch done here with
//! plain reqwest (target ≤ 1.25×), vs vdirsyncer 0.21 syncing the same book into a filesystem
//! vdir (target ≥ 3× faster), and the number of requests of a pull with no changes (target 1).
//!
//! The corpus is benches/common/corpus.rs (shared with the other benches); Xandikos is filled by
//! one git commit (benches/common/fill.rs) and checked to serve every card before timing. The
//! three contenders run alternately, `REPS` times (default 5); medians with min and max.
//!
//! Run: `cargo bench --bench carddav_pull` (env `CARDS=N` for another size). Figures go to
//! `docs/BENCHMARKS.md`, section "CardDAV client pull".
#![allow(clippy::unwrap_used)]

#[path = "common/corpus.rs"]
mod corpus;
#[path = "common/fill.rs"]
mod fill;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use cardbridge::dav::multiget::AddressbookMultiget;
use cardbridge::dav::names;
use cardbridge::dav::sync_collection::SyncCollection;
use cardbridge::providers::carddav::{Auth, CarddavProvider, Profile};
use cardbridge::providers::{Provider, RemoteChange};
use url::Url;

/// Our provider: initial pull to completion; returns (time, cards, requests).
async fn ours(root: &str, book: &str) -> (Duration, usize, u64, Option<String>, CarddavProvider) {
    let mut profile = Profile::generic();
    // MULTIGET_CONCURRENCY overrides the generic profile's multigets in flight.
    if let Some(c) = std::env::var("MULTIGET_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        profile.multiget_concurrency = c;
    }
    let p = CarddavProvider::connect(Url::parse(root).unwrap(), Auth::None, profile).unwrap();
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

/// Median, min and max of some durations.
fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt((med, min, max): (Duration, Duration, Duration)) -> String {
    format!(
        "{:.2} s (min {:.2}, max {:.2})",
        med.as_secs_f64(),
        min.as_secs_f64(),
        max.as_secs_f64()
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and runs it small.
    let n: usize = std::env::var("CARDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let x = support::Xandikos::start();
    let book = x.addressbook_url.clone();
    let t0 = Instant::now();
    let cards = corpus::cards(n);
    fill::xandikos(&x, &cards);
    let served = rt.block_on(fill::count_served(&reqwest::Client::new(), &book, None));
    assert_eq!(served, n, "Xandikos serves {served} of {n} cards");
    eprintln!(
        "Xandikos filled with {n} cards (one git commit) in {:.1?}",
        t0.elapsed()
    );

    // Warm the server once (git object cache), then alternate the contenders so that load
    // changes on the shared machine hit all of them alike.
    let _ = rt.block_on(bare(&book));
    let (mut t_bare, mut t_ours, mut t_vds) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for rep in 0..reps {
        let (t, got) = rt.block_on(bare(&book));
        assert_eq!(got, n);
        t_bare.push(t);
        let (t, got, reqs, cursor, p) = rt.block_on(ours(&x.url, &book));
        assert_eq!(got, n);
        t_ours.push(t);
        let (t, got) = vdirsyncer(&book);
        assert_eq!(got, n, "vdirsyncer synced every card");
        t_vds.push(t);
        eprintln!(
            "rep {rep}: bare {:.2?}, cardbridge {:.2?} ({reqs} requests), vdirsyncer {:.2?}",
            t_bare[rep], t_ours[rep], t_vds[rep]
        );
        last = Some((reqs, cursor, p));
    }
    let (reqs, cursor, p) = last.unwrap();
    let before = p.client().request_count();
    let page = rt.block_on(p.pull(&book, cursor.as_deref())).unwrap();
    assert!(page.changes.is_empty() && page.complete);
    let nochange = p.client().request_count() - before;

    let (b, o, v) = (stats(t_bare), stats(t_ours), stats(t_vds));
    let ratio_bare = o.0.as_secs_f64() / b.0.as_secs_f64();
    let ratio_vds = v.0.as_secs_f64() / o.0.as_secs_f64();
    println!("CardDAV client pull, Xandikos 0.4, {n} cards, median of {reps} (min, max)");
    println!("| | time | |");
    println!("|---|---|---|");
    println!("| bare sync-collection + multiget | {} | |", fmt(b));
    println!(
        "| cardbridge initial pull ({reqs} requests) | {} | {ratio_bare:.2}× bare (target ≤ 1.25×) |",
        fmt(o)
    );
    println!(
        "| vdirsyncer 0.21 → vdir | {} | cardbridge {ratio_vds:.1}× faster (target ≥ 3×) |",
        fmt(v)
    );
    println!("| no-change pull | {nochange} request(s) | target 1 |");
}
