//! The scheduler on several nodes sharing one PostgreSQL lease table (issue #9): three nodes,
//! each with its own runtime and connection pool, schedule 300 connections. Every connection
//! runs on schedule exactly once per interval (counted from the run records the runs commit to
//! the shared store), and when a node dies mid-run its jobs move to the others once its lease
//! expires, each run exactly once.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod pg_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cardbridge::scheduler::{
    Cluster, ConnectionId, JobOutcome, JobRunner, JobSpec, RunId, Scheduler, SchedulerConfig,
    Trigger,
};
use cardbridge::store::leases::Leases;
use cardbridge::store::{scan_all, Batch, PgStore, Store};

const CONNECTIONS: u64 = 300;
/// Where the fake runs record themselves: connection (8 bytes BE) + run id (8 bytes BE) → JSON.
const RUNS: &str = "test.runs";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RunRow {
    node: String,
    start_ms: u64,
    end_ms: u64,
}

/// A provider stand-in: a run takes `work`, then commits its record; on a node that "hangs"
/// a run never ends.
struct FakeRunner {
    node: String,
    store: Arc<dyn Store>,
    work: Duration,
    hang: bool,
    started: Arc<Mutex<Vec<(String, ConnectionId, u64)>>>,
}

#[async_trait]
impl JobRunner for FakeRunner {
    async fn run(&self, id: ConnectionId, run_id: RunId, _t: Trigger) -> JobOutcome {
        let start_ms = now_ms();
        self.started
            .lock()
            .unwrap()
            .push((self.node.clone(), id, start_ms));
        if self.hang {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.work).await;
        let row = RunRow {
            node: self.node.clone(),
            start_ms,
            end_ms: now_ms(),
        };
        let mut k = id.to_be_bytes().to_vec();
        k.extend_from_slice(&run_id.to_be_bytes());
        let mut b = Batch::new();
        b.put(RUNS, k, serde_json::to_vec(&row).unwrap());
        match self.store.commit(b).await {
            Ok(()) => JobOutcome::Succeeded,
            Err(e) => JobOutcome::Failed {
                message: e.to_string(),
                retry_after_secs: None,
                transient: true,
            },
        }
    }
}

struct NodeSpec {
    name: String,
    interval: Duration,
    work: Duration,
    hang: bool,
    lease: Duration,
    max_concurrent: usize,
    /// Registers every connection (as `serve` does at start); the others learn them by claim.
    upsert_all: bool,
}

/// A node on a thread of its own; dropping `stop` (or sending) ends its runtime at once, which
/// drops its runs mid-flight: a killed process, as far as the database can tell.
struct Node {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(
        schema: &str,
        spec: NodeSpec,
        started: Arc<Mutex<Vec<(String, ConnectionId, u64)>>>,
    ) -> Node {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let settings = pg_support::settings(schema);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let pg = Arc::new(PgStore::open(&settings).await.unwrap());
                let store: Arc<dyn Store> = pg.clone();
                let runner = Arc::new(FakeRunner {
                    node: spec.name.clone(),
                    store: store.clone(),
                    work: spec.work,
                    hang: spec.hang,
                    started,
                });
                let config = SchedulerConfig {
                    default_interval: spec.interval,
                    jitter: Duration::ZERO,
                    backoff_base: Duration::from_secs(1),
                    backoff_max: Duration::from_secs(1),
                    max_concurrent: spec.max_concurrent,
                    max_per_account: spec.max_concurrent,
                };
                let cluster = Cluster {
                    node: spec.name.clone(),
                    lease: spec.lease,
                    poll: Duration::from_millis(200),
                    ..Cluster::new(Arc::new(Leases::new(pg)))
                };
                let sched = Scheduler::with_cluster(config, runner, store, cluster);
                if spec.upsert_all {
                    for id in 1..=CONNECTIONS {
                        sched
                            .upsert(JobSpec {
                                connection_id: id,
                                account: format!("acct-{id}"),
                                interval: None,
                            })
                            .await
                            .unwrap();
                    }
                }
                ready_tx.send(()).unwrap();
                sched.start();
                let _ = stopped.await;
            });
            // Dropping the runtime drops every task of the node where it stands.
            drop(rt);
        });
        ready_rx.recv().unwrap();
        Node {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn runs(store: &PgStore) -> BTreeMap<ConnectionId, Vec<RunRow>> {
    let mut out: BTreeMap<ConnectionId, Vec<RunRow>> = BTreeMap::new();
    for (k, v) in scan_all(store, RUNS, b"").await.unwrap() {
        let id = u64::from_be_bytes(k[..8].try_into().unwrap());
        out.entry(id)
            .or_default()
            .push(serde_json::from_slice(&v).unwrap());
    }
    for v in out.values_mut() {
        v.sort_by_key(|r| r.start_ms);
    }
    out
}

fn node(name: &str, interval: Duration, work: Duration, lease: Duration, upsert: bool) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        interval,
        work,
        hang: false,
        lease,
        max_concurrent: 24,
        upsert_all: upsert,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_run_every_connection_once_per_interval() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("sched3");
    let check = PgStore::open(&pg_support::settings(&schema)).await.unwrap();
    let interval = Duration::from_secs(3);
    let work = Duration::from_millis(20);
    let lease = Duration::from_secs(10);
    let started = Arc::new(Mutex::new(Vec::new()));
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            Node::start(
                &schema,
                node(&format!("node{i}"), interval, work, lease, i == 0),
                started.clone(),
            )
        })
        .collect();
    // Node 0 registered the connections before starting; every node was up by now.
    let t0 = now_ms();
    tokio::time::sleep(Duration::from_millis(8_000)).await;
    for n in &mut nodes {
        n.kill();
    }
    let runs = runs(&check).await;
    assert_eq!(runs.len() as u64, CONNECTIONS, "every connection ran");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (id, rs) in &runs {
        // Due at start, then 3 s after each run's end: two or three runs in the 8 s after all
        // nodes were up (three when the first round ran before then).
        assert!(
            (2..=4).contains(&rs.len()),
            "connection {id} ran {} times in 8 s at a 3 s interval: {rs:?}",
            rs.len()
        );
        assert!(
            rs[0].start_ms < t0 + 2_000,
            "connection {id} first ran late: {rs:?}"
        );
        for w in rs.windows(2) {
            let gap = w[1].start_ms - w[0].end_ms;
            assert!(
                gap + 5 >= interval.as_millis() as u64,
                "connection {id} ran twice within one interval: {w:?}"
            );
            assert!(
                gap <= interval.as_millis() as u64 + 3_000,
                "connection {id} ran late ({gap} ms after the previous run): {w:?}"
            );
        }
        for r in rs {
            *per_node.entry(r.node.clone()).or_default() += 1;
        }
    }
    assert_eq!(per_node.len(), 3, "every node ran some: {per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_jobs_move_to_the_others_within_the_lease() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("schedkill");
    let check = PgStore::open(&pg_support::settings(&schema)).await.unwrap();
    let interval = Duration::from_secs(600);
    let work = Duration::from_millis(100);
    let lease = Duration::from_secs(2);
    let started = Arc::new(Mutex::new(Vec::new()));
    // node2 hangs in every run it starts (a node stuck mid-run), then is killed.
    let mut doomed = Node::start(
        &schema,
        NodeSpec {
            hang: true,
            ..node("node2", interval, work, lease, true)
        },
        started.clone(),
    );
    let held: Vec<ConnectionId> = loop {
        let got: Vec<_> = started
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, _)| n == "node2")
            .map(|(_, id, _)| *id)
            .collect();
        if got.len() == 24 {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let others: Vec<Node> = (0..2)
        .map(|i| {
            Node::start(
                &schema,
                node(&format!("node{i}"), interval, work, lease, false),
                started.clone(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = now_ms();
    doomed.kill();
    let deadline = now_ms() + 30_000;
    let runs = loop {
        let runs = runs(&check).await;
        if runs.len() as u64 == CONNECTIONS || now_ms() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(others);
    assert_eq!(runs.len() as u64, CONNECTIONS, "every connection ran");
    for (id, rs) in &runs {
        assert_eq!(rs.len(), 1, "connection {id} ran more than once: {rs:?}");
        assert_ne!(rs[0].node, "node2");
    }
    for id in &held {
        let r = &runs[id][0];
        assert!(
            r.start_ms <= killed_at + lease.as_millis() as u64 + 1_500,
            "connection {id}, held by the dead node, was taken over {} ms after the kill \
             (lease {lease:?})",
            r.start_ms - killed_at
        );
    }
}
