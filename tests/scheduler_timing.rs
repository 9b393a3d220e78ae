//! The scheduler on tokio's paused clock with fake runners: exponential backoff with its cap,
//! Retry-After, parking on failures that need a human, coalescing of manual refreshes, the
//! global and per-account limits, persisted next-run times across a restart, and fairness with
//! 1,000 connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_support::MapStore;
use async_trait::async_trait;
use cardbridge::scheduler::{
    ConnectionId, JobOutcome, JobRunner, JobSpec, RunId, Scheduler, SchedulerConfig, Trigger,
};
use cardbridge::store::Store;
use tokio::time::Instant;

type Script = Box<dyn Fn(ConnectionId, usize) -> JobOutcome + Send + Sync>;

/// Records every run; each run lasts `took`; the outcome comes from `script(conn, nth)`.
struct FakeRunner {
    took: Duration,
    script: Script,
    starts: Mutex<Vec<(ConnectionId, Instant, Trigger, RunId)>>,
    account_of: HashMap<ConnectionId, String>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    per_account: Mutex<HashMap<String, usize>>,
    max_per_account: AtomicUsize,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl FakeRunner {
    fn new(took: Duration, script: Script) -> Self {
        Self {
            took,
            script,
            starts: Mutex::default(),
            account_of: HashMap::new(),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            per_account: Mutex::default(),
            max_per_account: AtomicUsize::new(0),
            gate: None,
        }
    }
    fn starts_of(&self, id: ConnectionId) -> Vec<Instant> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.0 == id)
            .map(|s| s.1)
            .collect()
    }
}

#[async_trait]
impl JobRunner for FakeRunner {
    async fn run(&self, id: ConnectionId, run: RunId, trigger: Trigger) -> JobOutcome {
        let nth = {
            let mut s = self.starts.lock().unwrap();
            s.push((id, Instant::now(), trigger, run));
            s.iter().filter(|x| x.0 == id).count()
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let account = self.account_of.get(&id).cloned().unwrap_or_default();
        {
            let mut pa = self.per_account.lock().unwrap();
            let n = pa.entry(account.clone()).or_default();
            *n += 1;
            self.max_per_account.fetch_max(*n, Ordering::SeqCst);
        }
        if let Some(g) = &self.gate {
            g.acquire().await.unwrap().forget();
        }
        tokio::time::sleep(self.took).await;
        *self.per_account.lock().unwrap().get_mut(&account).unwrap() -= 1;
        self.running.fetch_sub(1, Ordering::SeqCst);
        (self.script)(id, nth)
    }
}

fn cfg() -> SchedulerConfig {
    SchedulerConfig {
        default_interval: Duration::from_secs(100),
        jitter: Duration::ZERO,
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(25),
        max_concurrent: 8,
        max_per_account: 4,
    }
}

fn spec(id: ConnectionId, account: &str) -> JobSpec {
    JobSpec {
        connection_id: id,
        account: account.into(),
        interval: None,
    }
}

fn failed(retry_after_secs: Option<u64>, transient: bool) -> JobOutcome {
    JobOutcome::Failed {
        message: "boom".into(),
        retry_after_secs,
        transient,
    }
}

fn gaps(starts: &[Instant]) -> Vec<u64> {
    starts.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect()
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_cap_then_the_interval_resumes() {
    // Fails 4 times, then succeeds.
    let runner = Arc::new(FakeRunner::new(
        Duration::ZERO,
        Box::new(|_, nth| {
            if nth <= 4 {
                failed(None, true)
            } else {
                JobOutcome::Succeeded
            }
        }),
    ));
    let s = Scheduler::new(cfg(), runner.clone(), Arc::new(MapStore::default()));
    s.start();
    s.upsert(spec(1, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(400)).await;
    let g = gaps(&runner.starts_of(1));
    // 10, 20, then the 25 s cap twice; after the success the 100 s interval.
    assert_eq!(&g[..5], &[10, 20, 25, 25, 100], "{g:?}");
    assert_eq!(s.status(1).unwrap().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_even_beyond_the_cap() {
    let runner = Arc::new(FakeRunner::new(
        Duration::ZERO,
        Box::new(|_, nth| match nth {
            1 => failed(Some(300), true), // longer than backoff and cap: wins
            2 => failed(Some(1), true),   // shorter than the backoff (20 s): backoff wins
            _ => JobOutcome::Succeeded,
        }),
    ));
    let s = Scheduler::new(cfg(), runner.clone(), Arc::new(MapStore::default()));
    s.start();
    s.upsert(spec(1, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(400)).await;
    let g = gaps(&runner.starts_of(1));
    assert_eq!(&g[..2], &[300, 20], "{g:?}");
}

#[tokio::test(start_paused = true)]
async fn failures_that_need_a_human_park_until_upsert_or_refresh() {
    let runner = Arc::new(FakeRunner::new(
        Duration::ZERO,
        Box::new(|_, nth| {
            if nth == 1 {
                failed(None, false)
            } else {
                JobOutcome::Succeeded
            }
        }),
    ));
    let s = Scheduler::new(cfg(), runner.clone(), Arc::new(MapStore::default()));
    s.start();
    s.upsert(spec(1, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1000)).await;
    assert_eq!(runner.starts_of(1).len(), 1, "parked: no retry loop");
    let st = s.status(1).unwrap();
    assert!(st.parked && st.next_run_in_secs.is_none());
    // New credentials → upsert → runs again.
    s.upsert(spec(1, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runner.starts_of(1).len(), 2);
    assert!(!s.status(1).unwrap().parked);
}

#[tokio::test(start_paused = true)]
async fn manual_refresh_joins_the_running_or_queued_run() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut r = FakeRunner::new(Duration::ZERO, Box::new(|_, _| JobOutcome::Succeeded));
    r.gate = Some(gate.clone());
    let runner = Arc::new(r);
    let mut c = cfg();
    c.max_concurrent = 1;
    let s = Scheduler::new(c, runner.clone(), Arc::new(MapStore::default()));
    s.start();
    s.upsert(spec(1, "a")).await.unwrap();
    s.upsert(spec(2, "b")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One of them runs (blocked on the gate); the other is due but queued behind the limit.
    let running_id = runner.starts.lock().unwrap()[0].0;
    let queued_id = if running_id == 1 { 2 } else { 1 };
    assert_eq!(s.queue_depth(), 1);

    let t1 = s.refresh(running_id).await.unwrap();
    let t2 = s.refresh(running_id).await.unwrap();
    assert!(t1.joined && t2.joined, "joins the running run");
    assert_eq!(t1.run_id, t2.run_id);
    assert_eq!(Some(t1.run_id), s.status(running_id).unwrap().running);

    // The queued connection: the first refresh queues a manual run, the second joins it.
    let q1 = s.refresh(queued_id).await.unwrap();
    let q2 = s.refresh(queued_id).await.unwrap();
    assert!(!q1.joined && q2.joined);
    assert_eq!(q1.run_id, q2.run_id);

    gate.add_permits(10);
    assert_eq!(t1.wait().await, JobOutcome::Succeeded);
    assert_eq!(t2.wait().await, JobOutcome::Succeeded);
    assert_eq!(q2.wait().await, JobOutcome::Succeeded);
    let starts = runner.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 2, "two runs in all: {starts:?}");
    assert_eq!(
        starts[1],
        (queued_id, starts[1].1, Trigger::Manual, q1.run_id)
    );
}

#[tokio::test(start_paused = true)]
async fn manual_refresh_of_an_unscheduled_connection_is_refused() {
    let runner = Arc::new(FakeRunner::new(
        Duration::ZERO,
        Box::new(|_, _| JobOutcome::Succeeded),
    ));
    let s = Scheduler::new(cfg(), runner, Arc::new(MapStore::default()));
    s.start();
    assert!(s.refresh(42).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn per_account_limit_binds_without_blocking_other_accounts() {
    let runner = {
        let mut r = FakeRunner::new(
            Duration::from_secs(10),
            Box::new(|_, _| JobOutcome::Succeeded),
        );
        for id in 1..=20 {
            r.account_of.insert(id, "graph:big@example.com".into());
        }
        r.account_of.insert(100, "graph:small@example.com".into());
        Arc::new(r)
    };
    let s = Scheduler::new(cfg(), runner.clone(), Arc::new(MapStore::default()));
    s.start();
    for id in 1..=20 {
        s.upsert(spec(id, "graph:big@example.com")).await.unwrap();
    }
    s.upsert(spec(100, "graph:small@example.com"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.running(), 5, "4 of the big account + the small one");
    assert_eq!(
        runner.starts_of(100).len(),
        1,
        "the small account is not starved"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(runner.max_per_account.load(Ordering::SeqCst), 4);
    assert!(runner.max_running.load(Ordering::SeqCst) <= 8);
}

#[tokio::test(start_paused = true)]
async fn next_run_times_survive_a_restart() {
    let store: Arc<dyn Store> = Arc::new(MapStore::default());
    let runner = Arc::new(FakeRunner::new(
        Duration::ZERO,
        Box::new(|_, _| JobOutcome::Succeeded),
    ));
    let mut c = cfg();
    c.default_interval = Duration::from_secs(3600);
    let s = Scheduler::new(c.clone(), runner.clone(), store.clone());
    let h = s.start();
    s.upsert(spec(1, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runner.starts_of(1).len(), 1);
    s.shutdown().await;
    h.await.unwrap();

    // A new scheduler over the same store: not due now, but in about an hour.
    let runner2 = Arc::new(FakeRunner::new(
        Duration::ZERO,
        Box::new(|_, _| JobOutcome::Succeeded),
    ));
    let s2 = Scheduler::new(c, runner2.clone(), store.clone());
    s2.start();
    s2.upsert(spec(1, "a")).await.unwrap();
    let next = s2.status(1).unwrap().next_run_in_secs.unwrap();
    assert!((3500..=3600).contains(&next), "{next}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        runner2.starts_of(1).is_empty(),
        "did not run again on restart"
    );
    // An unknown connection is due at once.
    s2.upsert(spec(2, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runner2.starts_of(2).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_running_syncs() {
    let runner = Arc::new(FakeRunner::new(
        Duration::from_secs(30),
        Box::new(|_, _| JobOutcome::Succeeded),
    ));
    let s = Scheduler::new(cfg(), runner.clone(), Arc::new(MapStore::default()));
    s.start();
    s.upsert(spec(1, "a")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.running(), 1);
    let t0 = Instant::now();
    s.shutdown().await;
    assert!(
        t0.elapsed() >= Duration::from_secs(28),
        "waited for the run"
    );
    assert_eq!(s.running(), 0);
    assert!(s.refresh(1).await.is_err(), "no new runs after shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_thousand_connections_are_served_fairly() {
    const N: u64 = 1000;
    let runner = {
        let mut r = FakeRunner::new(
            Duration::from_secs(1),
            Box::new(|_, _| JobOutcome::Succeeded),
        );
        for id in 1..=N {
            r.account_of.insert(id, format!("acct{}", id % 10));
        }
        Arc::new(r)
    };
    let mut c = cfg();
    c.default_interval = Duration::from_secs(60);
    c.jitter = Duration::from_secs(5);
    let s = Scheduler::new(c, runner.clone(), Arc::new(MapStore::default()));
    s.start();
    for id in 1..=N {
        s.upsert(spec(id, &format!("acct{}", id % 10)))
            .await
            .unwrap();
    }
    // Overloaded on purpose: 8 slots × 1 s runs = 8 runs/s, while 1,000 connections with a
    // 60 s interval would want ~16/s. Everyone must still take turns.
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(1800)).await;
    let starts = runner.starts.lock().unwrap().clone();
    let mut per: HashMap<ConnectionId, Vec<Instant>> = HashMap::new();
    for (id, at, _, _) in &starts {
        per.entry(*id).or_default().push(*at);
    }
    assert_eq!(per.len() as u64, N, "every connection ran");
    let counts: Vec<usize> = per.values().map(Vec::len).collect();
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(max - min <= 2, "even share: min {min}, max {max}");
    assert!(
        min >= 12,
        "1800 s / (1000/8 s per round) ≈ 14 rounds; min {min}"
    );
    // No connection waited much longer than one round (125 s) plus slack.
    let worst_gap = per
        .values()
        .flat_map(|v| {
            let mut v = v.clone();
            v.insert(0, t0);
            gaps(&v)
        })
        .max()
        .unwrap();
    assert!(worst_gap <= 140, "worst wait {worst_gap} s");
    assert!(runner.max_running.load(Ordering::SeqCst) <= 8);
    assert!(runner.max_per_account.load(Ordering::SeqCst) <= 4);
    assert!(s.queue_depth() > 0, "still overloaded, still queueing");
}
