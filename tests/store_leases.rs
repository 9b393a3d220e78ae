//! Leased jobs on PostgreSQL (`store::leases`): three nodes (three stores, each with its own
//! connection pool) claiming concurrently get every due job exactly once per round; a node
//! that dies loses its jobs to the others once its lease expires, and its late completion is
//! refused; a manual refresh during a run is not lost.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod pg_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cardbridge::store::leases::{Lease, Leases};
use cardbridge::store::PgStore;

const JOBS: usize = 300;
const HOUR: Duration = Duration::from_secs(3600);

async fn nodes(schema: &str, n: usize) -> Vec<Leases> {
    let mut out = Vec::new();
    for _ in 0..n {
        let store = PgStore::open(&pg_support::settings(schema)).await.unwrap();
        out.push(Leases::new(Arc::new(store)));
    }
    out
}

/// Every node claims in small batches until nothing is due; returns (node, lease) pairs. Node
/// `i` of `nodes` is `node<first + i>`.
async fn claim_from(first: usize, nodes: &[Leases], lease: Duration) -> Vec<(usize, Lease)> {
    let mut tasks = Vec::new();
    for (i, leases) in nodes.iter().enumerate() {
        let i = first + i;
        let leases = leases.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = leases.claim(&format!("node{i}"), 7, lease).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|l| (i, l)));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn claim_until_empty(nodes: &[Leases], lease: Duration) -> Vec<(usize, Lease)> {
    claim_from(0, nodes, lease).await
}

fn assert_exactly_once(claims: &[(usize, Lease)], jobs: &BTreeSet<String>, round: &str) {
    let mut seen = BTreeSet::new();
    for (_, l) in claims {
        assert!(
            seen.insert(l.job.clone()),
            "{round}: {} claimed twice",
            l.job
        );
    }
    assert_eq!(&seen, jobs, "{round}: every due job is claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_claimers_get_each_due_job_exactly_once_per_round() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("leases");
    let nodes = nodes(&schema, 3).await;
    let jobs: BTreeSet<String> = (0..JOBS).map(|i| format!("conn-{i:03}")).collect();
    for j in &jobs {
        assert!(nodes[0].schedule(j, Duration::ZERO).await.unwrap());
    }
    assert!(
        !nodes[1].schedule("conn-000", Duration::ZERO).await.unwrap(),
        "scheduling a known job again is a no-op"
    );
    for round in 0..3 {
        let claims = claim_until_empty(&nodes, HOUR).await;
        assert_exactly_once(&claims, &jobs, &format!("round {round}"));
        let mut per_node = BTreeMap::new();
        for (n, _) in &claims {
            *per_node.entry(*n).or_insert(0) += 1;
        }
        eprintln!("round {round}: jobs per node {per_node:?}");
        // Held jobs are not claimable, by anyone, until completed.
        assert!(claim_until_empty(&nodes, HOUR).await.is_empty());
        for (n, l) in &claims {
            assert!(nodes[*n].complete(l, HOUR).await.unwrap());
        }
        // Completed jobs are due again only after the interval ...
        assert!(claim_until_empty(&nodes, HOUR).await.is_empty());
        // ... or when refreshed: the next round is every job refreshed by some node.
        for (i, j) in jobs.iter().enumerate() {
            assert!(nodes[i % 3].trigger(j).await.unwrap());
        }
    }
    assert!(!nodes[0].trigger("no-such-job").await.unwrap());
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_jobs_are_taken_over_after_its_lease_and_its_late_result_refused() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("takeover");
    let nodes = nodes(&schema, 3).await;
    let jobs: BTreeSet<String> = (0..100).map(|i| format!("conn-{i:03}")).collect();
    for j in &jobs {
        nodes[0].schedule(j, Duration::ZERO).await.unwrap();
    }
    // node0 claims everything with a short lease, then "dies": it never renews or completes.
    let short = Duration::from_millis(300);
    let dead: Vec<Lease> = nodes[0].claim("node0", JOBS, short).await.unwrap();
    assert_eq!(dead.len(), jobs.len());
    // While the lease runs, the others get nothing (they ask with a long lease).
    assert!(claim_from(1, &nodes[1..], HOUR).await.is_empty());
    // Once it expired (however long after), the survivors take every job over, exactly once.
    tokio::time::sleep(short * 2).await;
    let taken = claim_from(1, &nodes[1..], HOUR).await;
    assert_exactly_once(&taken, &jobs, "takeover");
    assert!(taken.iter().all(|(n, _)| *n >= 1), "only survivors claim");
    for (_, l) in &taken {
        let old = dead.iter().find(|d| d.job == l.job).unwrap();
        assert!(l.fence > old.fence, "a takeover is a new fence");
    }
    // The dead node comes back: it can neither renew nor complete its stale leases.
    for l in &dead {
        assert!(!nodes[0].renew(l, HOUR).await.unwrap());
        assert!(!nodes[0].complete(l, HOUR).await.unwrap());
    }
    // The new holders can.
    for (n, l) in &taken {
        assert!(nodes[*n].renew(l, HOUR).await.unwrap());
        assert!(nodes[*n].complete(l, HOUR).await.unwrap());
    }
    assert!(claim_until_empty(&nodes, HOUR).await.is_empty());
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_during_a_run_makes_the_job_due_again_right_after_it() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("refresh");
    let nodes = nodes(&schema, 2).await;
    nodes[0].schedule("conn", Duration::ZERO).await.unwrap();
    let held = nodes[0].claim("node0", 10, HOUR).await.unwrap();
    assert_eq!(held.len(), 1);
    // Another node receives the manual refresh while node0 runs the job.
    assert!(nodes[1].trigger("conn").await.unwrap());
    assert!(
        nodes[1].claim("node1", 10, HOUR).await.unwrap().is_empty(),
        "the running job stays with its holder"
    );
    assert!(nodes[0].complete(&held[0], HOUR).await.unwrap());
    let again = nodes[1].claim("node1", 10, HOUR).await.unwrap();
    assert_eq!(
        again.iter().map(|l| l.job.as_str()).collect::<Vec<_>>(),
        ["conn"],
        "due at once, not after the interval"
    );
    // Without a refresh, completion waits for the interval.
    assert!(nodes[1].complete(&again[0], HOUR).await.unwrap());
    assert!(nodes[0].claim("node0", 10, HOUR).await.unwrap().is_empty());
    nodes[0].remove("conn").await.unwrap();
    assert!(!nodes[0].trigger("conn").await.unwrap());
    drop(nodes);
}
