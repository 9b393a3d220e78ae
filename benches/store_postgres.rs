//! Throughput of the PostgreSQL store for one node and for three nodes on one database, with
//! sled as the one-node reference, and of lease claiming (docs/SCALING.md, "Measured").
//!
//! A "node" is one `PgStore` (its own pool of 16 connections) driven by 16 workers; each worker
//! plays one connection's sync, committing pages: one guard on its cursor (compare-and-swap)
//! plus 50 item writes of 300 bytes, the shape of `sync_state::Stage`. Three nodes run in this
//! one process against the same schema: the database, not the process, is what is shared.
//!
//! Run: `cargo bench --bench store_postgres` (env `SECS=N` per measurement, default 5;
//! `CARDBRIDGE_TEST_POSTGRES_URL` for another server). On the shared dev machine use
//! `--profile dev`: the figures are bound by PostgreSQL round trips and fsyncs, not by our code.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cardbridge::store::leases::Leases;
use cardbridge::store::postgres::{drop_schema, PgSettings, PgStore};
use cardbridge::store::{Batch, SledStore, Store};

const WORKERS: usize = 16;
const ITEMS: usize = 50;

fn url() -> String {
    std::env::var("CARDBRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn schema(what: &str) -> String {
    format!("cbb_{what}_{}", std::process::id())
}

/// Runs `WORKERS` page-committing workers per store for `secs`; returns committed pages.
async fn pages(stores: &[Arc<dyn Store>], secs: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for w in 0..WORKERS {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let conn = format!("n{n}w{w}").into_bytes();
                let mut cursor: Option<Vec<u8>> = None;
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let next = (done + 1).to_be_bytes().to_vec();
                    let mut b = Batch::new();
                    b.expect("bench.cursor", conn.clone(), cursor.clone());
                    b.put("bench.cursor", conn.clone(), next.clone());
                    for i in 0..ITEMS {
                        let key = [conn.as_slice(), &(i as u32).to_be_bytes()].concat();
                        b.put("bench.item", key, vec![b'x'; 300]);
                    }
                    store.commit(b).await.unwrap();
                    cursor = Some(next);
                    done += 1;
                }
                done
            }));
        }
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

fn report(name: &str, pages: u64, secs: u64) {
    let rate = pages as f64 / secs as f64;
    println!(
        "{name:<28} {rate:>8.0} pages/s  {:>9.0} items/s",
        rate * ITEMS as f64
    );
}

async fn claims(nodes: &[Leases], jobs: usize) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, leases) in nodes.iter().enumerate() {
        let leases = leases.clone();
        tasks.push(tokio::spawn(async move {
            let node = format!("node{i}");
            loop {
                let batch = leases
                    .claim(&node, 10, Duration::from_secs(60))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return;
                }
                for l in &batch {
                    assert!(leases.complete(l, Duration::from_secs(3600)).await.unwrap());
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let _ = jobs;
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let secs: u64 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let url = url();

    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    report("sled, 1 node", pages(&[sled], secs).await, secs);

    for n in [1usize, 3] {
        let s = schema(&format!("pages{n}"));
        let settings = PgSettings::new(url.clone()).with_schema(s.clone());
        let mut stores: Vec<Arc<dyn Store>> = Vec::new();
        for _ in 0..n {
            stores.push(Arc::new(PgStore::open(&settings).await.unwrap()));
        }
        let done = pages(&stores, secs).await;
        report(&format!("postgres, {n} node(s)"), done, secs);
        drop(stores);
        drop_schema(&url, &s).await.unwrap();
    }

    const JOBS: usize = 3000;
    for n in [1usize, 3] {
        let s = schema(&format!("leases{n}"));
        let settings = PgSettings::new(url.clone()).with_schema(s.clone());
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(Leases::new(Arc::new(
                PgStore::open(&settings).await.unwrap(),
            )));
        }
        for j in 0..JOBS {
            nodes[0]
                .schedule(&format!("conn-{j}"), Duration::ZERO)
                .await
                .unwrap();
        }
        let took = claims(&nodes, JOBS).await;
        println!(
            "{:<28} {:>8.0} jobs/s (claim + complete, {JOBS} jobs)",
            format!("leases, {n} claimer(s)"),
            JOBS as f64 / took.as_secs_f64()
        );
        drop(nodes);
        drop_schema(&url, &s).await.unwrap();
    }
}
