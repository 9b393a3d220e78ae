//! Throughput of the PostgreSQL store for one node and for three nodes on one database, with
//! sled as the one-node reference, and of lease claiming (docs/SCALING.md, "Measured").
//!
//! A "node" is one `PgStore` (its own pool of 16 connections) driven by 16 workers; each worker
//! plays one connection's sync, committing pages: one guard on its cursor (compare-and-swap)
//! plus 50 item writes of 300 bytes, the shape of `sync_state::Stage`. Three nodes run in this
//! one process against the same schema: the database, not the process, is what is shared.
//!
//! The last part is the scheduler end to end: `n` nodes, each a `Scheduler::with_cluster` on
//! its own `PgStore`, share 1,000 due connections through the lease table; a run is one sync
//! page (the same guarded 50-item commit) plus its run record, and the figure is runs per
//! second until every connection has run once (claims, renewals and completions included).
//!
//! Run: `cargo bench --bench store_postgres` (`ONLY=scheduler` for the last part only) (env `SECS=N` per measurement, default 5;
//! `CARDBRIDGE_TEST_POSTGRES_URL` for another server). On the shared dev machine use
//! `--profile dev`: the figures are bound by PostgreSQL round trips and fsyncs, not by our code.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cardbridge::scheduler::{
    Cluster, ConnectionId, JobOutcome, JobRunner, JobSpec, RunId, Scheduler, SchedulerConfig,
    Trigger,
};
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

/// One sync page per run, counted.
struct PageRunner {
    store: Arc<dyn Store>,
    done: Arc<std::sync::atomic::AtomicU64>,
}

#[async_trait]
impl JobRunner for PageRunner {
    async fn run(&self, id: ConnectionId, run_id: RunId, _t: Trigger) -> JobOutcome {
        let cursor = id.to_be_bytes().to_vec();
        let old = self.store.get("bench.cursor", &cursor).await.unwrap();
        let mut b = Batch::new();
        b.expect("bench.cursor", cursor.clone(), old);
        b.put("bench.cursor", cursor, run_id.to_be_bytes().to_vec());
        for i in 0..ITEMS {
            let mut k = id.to_be_bytes().to_vec();
            k.extend_from_slice(&(i as u64).to_be_bytes());
            b.put("bench.items", k, vec![b'x'; 300]);
        }
        b.put(
            "bench.runs",
            run_id.to_be_bytes().to_vec(),
            id.to_be_bytes().to_vec(),
        );
        match self.store.commit(b).await {
            Ok(()) => {
                self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                JobOutcome::Succeeded
            }
            Err(e) => JobOutcome::Failed {
                message: e.to_string(),
                retry_after_secs: None,
                transient: true,
            },
        }
    }
}

/// `n` scheduler nodes run `conns` due connections once each; returns the elapsed time.
async fn scheduled(url: &str, n: usize, conns: u64) -> Duration {
    let s = schema(&format!("sched{n}"));
    let settings = PgSettings::new(url.to_string()).with_schema(s.clone());
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let config = SchedulerConfig {
        default_interval: Duration::from_secs(3600),
        jitter: Duration::ZERO,
        max_concurrent: WORKERS,
        max_per_account: WORKERS,
        ..SchedulerConfig::default()
    };
    let mut nodes = Vec::new();
    for i in 0..n {
        let pg = Arc::new(PgStore::open(&settings).await.unwrap());
        let store: Arc<dyn Store> = pg.clone();
        let runner = Arc::new(PageRunner {
            store: store.clone(),
            done: done.clone(),
        });
        let cluster = Cluster {
            node: format!("bench{i}"),
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(100),
            ..Cluster::new(Arc::new(Leases::new(pg)))
        };
        nodes.push(Scheduler::with_cluster(
            config.clone(),
            runner,
            store,
            cluster,
        ));
    }
    for id in 1..=conns {
        nodes[0]
            .upsert(JobSpec {
                connection_id: id,
                account: format!("a{id}"),
                interval: None,
            })
            .await
            .unwrap();
    }
    let start = Instant::now();
    for node in &nodes {
        node.start();
    }
    while done.load(std::sync::atomic::Ordering::Relaxed) < conns {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    for node in &nodes {
        node.shutdown().await;
    }
    drop(nodes);
    drop_schema(url, &s).await.unwrap();
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    if std::env::var("ONLY").as_deref() == Ok("scheduler") {
        return scheduler_part(&url()).await;
    }
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
    scheduler_part(&url).await;
}

async fn scheduler_part(url: &str) {
    const CONNS: u64 = 1000;
    for n in [1usize, 3] {
        let took = scheduled(url, n, CONNS).await;
        println!(
            "{:<28} {:>8.0} runs/s (1 page of {ITEMS} items + run record each, {CONNS} connections)",
            format!("scheduler, {n} node(s)"),
            CONNS as f64 / took.as_secs_f64()
        );
    }
}
