//! Fencing of leased runs on PostgreSQL (issue #9): a node whose run stalled past its lease
//! (a paused process, a partition) and was taken over by another node cannot commit anything
//! more for that run. Two nodes (own pool each) share one schema; node A claims a connection's
//! job, commits a page, "pauses" past the lease; node B claims the job (a higher fence) and
//! commits; A resumes and its next commit is refused, leaving B's write in place. The same
//! stale commit through the bare store lands, which is the hole the fence closes.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod pg_support;

use std::sync::Arc;
use std::time::Duration;

use cardbridge::scheduler::{run_fenced, FencedStore, SCHED_FENCE};
use cardbridge::store::leases::Leases;
use cardbridge::store::{Batch, PgStore, Store, StoreError};

const PAGES: &str = "test.pages";
const JOB: u64 = 7;

fn page(value: &str) -> Batch {
    let mut b = Batch::new();
    b.put(PAGES, JOB.to_be_bytes().to_vec(), value.as_bytes().to_vec());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_taken_over_after_its_lease_expired_cannot_commit() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("fence");
    let a_pg = Arc::new(PgStore::open(&pg_support::settings(&schema)).await.unwrap());
    let b_pg = Arc::new(PgStore::open(&pg_support::settings(&schema)).await.unwrap());
    let (la, lb) = (Leases::new(a_pg.clone()), Leases::new(b_pg.clone()));
    let a: Arc<dyn Store> = Arc::new(FencedStore::new(a_pg.clone()));
    let b: Arc<dyn Store> = Arc::new(FencedStore::new(b_pg.clone()));
    let lease = Duration::from_millis(400);

    la.schedule(&JOB.to_string(), Duration::ZERO).await.unwrap();
    let held_a = la.claim("A", 1, lease).await.unwrap().pop().unwrap();

    // A's run: one page, then a pause (until told to go on), then another page.
    let (paused_tx, paused_rx) = tokio::sync::oneshot::channel();
    let (resume_tx, resume_rx) = tokio::sync::oneshot::channel::<()>();
    let (a_enter, a_run) = (a.clone(), a.clone());
    let fence_a = held_a.fence;
    let run_a = tokio::spawn(async move {
        run_fenced(a_enter.as_ref(), JOB, fence_a, async move {
            a_run.commit(page("a1")).await.unwrap();
            paused_tx.send(()).unwrap();
            resume_rx.await.unwrap();
            a_run.commit(page("a2")).await
        })
        .await
    });
    paused_rx.await.unwrap();
    assert_eq!(
        a_pg.get(PAGES, &JOB.to_be_bytes()).await.unwrap().unwrap(),
        b"a1"
    );

    // A's lease runs out; B takes the job over and runs it.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let held_b = lb.claim("B", 1, lease).await.unwrap().pop().unwrap();
    assert!(held_b.fence > held_a.fence);
    let b_run = b.clone();
    run_fenced(b.as_ref(), JOB, held_b.fence, async move {
        b_run.commit(page("b1")).await
    })
    .await
    .unwrap()
    .unwrap();

    // A wakes up: its commit is refused, as a backend error nobody retries as a lost race.
    resume_tx.send(()).unwrap();
    let late = run_a.await.unwrap().unwrap();
    match late {
        Err(StoreError::Backend(m)) => assert!(m.contains("taken over"), "{m}"),
        other => panic!("the stale run's commit must be refused: {other:?}"),
    }
    assert_eq!(
        b_pg.get(PAGES, &JOB.to_be_bytes()).await.unwrap().unwrap(),
        b"b1"
    );
    assert!(!la.complete(&held_a, Duration::ZERO).await.unwrap());
    // A cannot start a run under its old fence either.
    let again = run_fenced(a.as_ref(), JOB, held_a.fence, async {}).await;
    assert!(matches!(again, Err(StoreError::Backend(_))), "{again:?}");
    // The fence recorded is B's.
    assert_eq!(
        a_pg.get(SCHED_FENCE, &JOB.to_be_bytes())
            .await
            .unwrap()
            .unwrap(),
        held_b.fence.to_be_bytes().to_vec()
    );
    // B is unaffected, and commits outside a fenced run pass unchanged.
    assert!(lb.complete(&held_b, Duration::from_secs(60)).await.unwrap());
    a.commit(page("outside")).await.unwrap();
    // Without the fence, the stale write would have landed over B's.
    a_pg.commit(page("a2")).await.unwrap();
    assert_eq!(
        b_pg.get(PAGES, &JOB.to_be_bytes()).await.unwrap().unwrap(),
        b"a2"
    );
}
