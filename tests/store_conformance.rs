//! Runs the `Store` conformance suite against every backend of this crate (memory, sled), and
//! checks the suite itself: deliberately broken stores must fail the checks meant to catch
//! them, so that a passing run means something.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cardbridge::store::conformance::{self, Outcome, StoreFactory};
use cardbridge::store::{
    check_space, Batch, MemoryStore, ScanPage, SledStore, Space, Store, StoreError, Write,
};

struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    fn name(&self) -> &str {
        "memory"
    }
    fn can_reopen(&self) -> bool {
        false
    }
    async fn open(&self, _id: &str) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(MemoryStore::new()))
    }
    async fn reopen(&self, _id: &str, _old: Arc<dyn Store>) -> Result<Arc<dyn Store>, StoreError> {
        Err(StoreError::Backend("memory store cannot reopen".into()))
    }
}

struct SledFactory {
    dir: tempfile::TempDir,
}

impl SledFactory {
    fn new() -> Self {
        SledFactory {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }
}

#[async_trait]
impl StoreFactory for SledFactory {
    fn name(&self) -> &str {
        "sled"
    }
    fn can_reopen(&self) -> bool {
        true
    }
    async fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
        let path = self.path(id);
        if path.exists() {
            return Err(StoreError::Backend(format!(
                "{} already used",
                path.display()
            )));
        }
        Ok(Arc::new(SledStore::open(path)?))
    }
    async fn reopen(&self, id: &str, old: Arc<dyn Store>) -> Result<Arc<dyn Store>, StoreError> {
        if Arc::strong_count(&old) != 1 {
            return Err(StoreError::Backend(
                "the suite still holds other handles of the store".into(),
            ));
        }
        drop(old);
        Ok(Arc::new(SledStore::open(self.path(id))?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    let outcomes = conformance::run_checks(&MemoryFactory).await;
    // Durability checks are skipped, explicitly, and everything else passes.
    for (name, outcome) in &outcomes {
        let needs_reopen = conformance::CHECKS
            .iter()
            .any(|c| c.name == *name && c.needs_reopen);
        if needs_reopen {
            assert!(
                matches!(outcome, Outcome::Skipped(_)),
                "{name}: {outcome:?}"
            );
        } else {
            assert_eq!(outcome, &Outcome::Passed, "{name}");
        }
    }
    conformance::run_all(&MemoryFactory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_store_conforms() {
    let factory = SledFactory::new();
    let outcomes = conformance::run_checks(&factory).await;
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| *o != Outcome::Passed)
        .collect();
    assert!(failed.is_empty(), "sled: {failed:#?}");
}

// ---------------------------------------------------------------------------------------------
// The suite must catch broken backends. `Broken` is a memory store with one injected fault.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// No fault: the control, which must pass everything.
    Nothing,
    /// Guards are not checked at all.
    IgnoreGuards,
    /// Writes before the failing guard are applied (guards checked one by one, interleaved).
    PartialBatch,
    /// Keys are stored as `space ++ key` without a separator.
    NoSeparator,
    /// `after` is ignored by scans.
    ScanIgnoresAfter,
    /// Scans return one entry more than `limit`.
    ScanOffByOne,
    /// Scans return entries in insertion order rather than key order.
    ScanUnordered,
    /// `next_after` is always set when the page is full, even when nothing follows.
    AlwaysNextAfter,
    /// Reads and writes of a CAS are not atomic (the lock is released between check and write).
    RacyCas,
    /// Sequences start again at 1 after a reopen.
    SequenceResets,
    /// Reopen loses everything.
    ForgetsOnReopen,
    /// Space names are not validated.
    AcceptsBadSpace,
    /// The empty value reads as absent.
    EmptyIsAbsent,
}

#[derive(Default)]
struct Data {
    // stored key -> (insertion counter, value)
    kv: BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
    counter: u64,
    seqs: HashMap<String, u64>,
}

struct Broken {
    fault: Fault,
    data: Arc<Mutex<Data>>,
}

impl Broken {
    fn enc(&self, space: &str, key: &[u8]) -> Vec<u8> {
        let mut v = space.as_bytes().to_vec();
        if self.fault != Fault::NoSeparator {
            v.push(0);
        }
        v.extend_from_slice(key);
        v
    }
    fn check(&self, space: &str) -> Result<(), StoreError> {
        if self.fault == Fault::AcceptsBadSpace {
            Ok(())
        } else {
            check_space(space)
        }
    }
    fn apply(&self, d: &mut Data, w: &Write) {
        match w {
            Write::Put { space, key, value } => {
                d.counter += 1;
                let c = d.counter;
                d.kv.insert(self.enc(space, key), (c, value.clone()));
            }
            Write::Delete { space, key } => {
                d.kv.remove(&self.enc(space, key));
            }
        }
    }
}

#[async_trait]
impl Store for Broken {
    async fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check(space)?;
        let d = self.data.lock().unwrap();
        let v = d.kv.get(&self.enc(space, key)).map(|(_, v)| v.clone());
        if self.fault == Fault::EmptyIsAbsent && v.as_deref() == Some(&[][..]) {
            return Ok(None);
        }
        Ok(v)
    }

    async fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        self.check(space)?;
        let d = self.data.lock().unwrap();
        let full = self.enc(space, prefix);
        let strip = self.enc(space, b"").len();
        let mut matching: Vec<(u64, Vec<u8>, Vec<u8>)> =
            d.kv.iter()
                .filter(|(k, _)| k.starts_with(&full))
                .map(|(k, (c, v))| (*c, k[strip..].to_vec(), v.clone()))
                .collect();
        if self.fault == Fault::ScanUnordered {
            matching.sort_by_key(|(c, _, _)| *c);
        }
        if self.fault != Fault::ScanIgnoresAfter {
            if let Some(a) = after {
                matching.retain(|(_, k, _)| k.as_slice() > a);
            }
        }
        let take = if self.fault == Fault::ScanOffByOne {
            limit + 1
        } else {
            limit
        };
        let more = matching.len() > take;
        let entries: Vec<(Vec<u8>, Vec<u8>)> = matching
            .into_iter()
            .take(take)
            .map(|(_, k, v)| (k, v))
            .collect();
        let full_page = !entries.is_empty() && entries.len() == take;
        let next_after = if more || (self.fault == Fault::AlwaysNextAfter && full_page) {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(ScanPage {
            entries,
            next_after,
        })
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        for e in &batch.expects {
            self.check(e.space)?;
        }
        for w in &batch.writes {
            match w {
                Write::Put { space, .. } | Write::Delete { space, .. } => self.check(space)?,
            }
        }
        let conflict = |e: &cardbridge::store::Expect| StoreError::Conflict {
            space: e.space.to_string(),
            key: String::from_utf8_lossy(&e.key).into_owned(),
        };
        let holds = |d: &Data, e: &cardbridge::store::Expect| {
            d.kv.get(&self.enc(e.space, &e.key)).map(|(_, v)| v) == e.expected.as_ref()
        };
        match self.fault {
            Fault::IgnoreGuards => {}
            Fault::PartialBatch => {
                let mut d = self.data.lock().unwrap();
                for (i, w) in batch.writes.iter().enumerate() {
                    if let Some(e) = batch.expects.get(i) {
                        if !holds(&d, e) {
                            return Err(conflict(e));
                        }
                    }
                    self.apply(&mut d, w);
                }
                for e in batch.expects.iter().skip(batch.writes.len()) {
                    if !holds(&d, e) {
                        return Err(conflict(e));
                    }
                }
                return Ok(());
            }
            Fault::RacyCas => {
                {
                    let d = self.data.lock().unwrap();
                    for e in &batch.expects {
                        if !holds(&d, e) {
                            return Err(conflict(e));
                        }
                    }
                }
                tokio::task::yield_now().await;
            }
            _ => {
                let d = self.data.lock().unwrap();
                for e in &batch.expects {
                    if !holds(&d, e) {
                        return Err(conflict(e));
                    }
                }
            }
        }
        let mut d = self.data.lock().unwrap();
        for w in &batch.writes {
            self.apply(&mut d, w);
        }
        Ok(())
    }

    async fn next_id(&self, sequence: Space) -> Result<u64, StoreError> {
        self.check(sequence)?;
        let mut d = self.data.lock().unwrap();
        let n = d.seqs.entry(sequence.to_string()).or_insert(0);
        *n += 1;
        Ok(*n)
    }
}

struct BrokenFactory {
    fault: Fault,
    data: Mutex<HashMap<String, Arc<Mutex<Data>>>>,
}

#[async_trait]
impl StoreFactory for BrokenFactory {
    fn name(&self) -> &str {
        "broken"
    }
    fn can_reopen(&self) -> bool {
        true
    }
    async fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
        let data = Arc::new(Mutex::new(Data::default()));
        self.data
            .lock()
            .unwrap()
            .insert(id.to_string(), Arc::clone(&data));
        Ok(Arc::new(Broken {
            fault: self.fault,
            data,
        }))
    }
    async fn reopen(&self, id: &str, _old: Arc<dyn Store>) -> Result<Arc<dyn Store>, StoreError> {
        let data = match self.fault {
            Fault::ForgetsOnReopen => Arc::new(Mutex::new(Data::default())),
            _ => Arc::clone(self.data.lock().unwrap().get(id).unwrap()),
        };
        if self.fault == Fault::SequenceResets {
            data.lock().unwrap().seqs.clear();
        }
        Ok(Arc::new(Broken {
            fault: self.fault,
            data,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_suite_catches_broken_stores() {
    let cases: &[(Fault, &[&str])] = &[
        (
            Fault::IgnoreGuards,
            &[
                "failed_guard_writes_nothing",
                "cas_semantics",
                "concurrent_cas_counter",
            ],
        ),
        (Fault::PartialBatch, &["failed_guard_writes_nothing"]),
        (Fault::NoSeparator, &["spaces_are_isolated"]),
        (
            Fault::ScanIgnoresAfter,
            &["scan_pages_with_after_and_limit"],
        ),
        (Fault::ScanOffByOne, &["scan_pages_with_after_and_limit"]),
        (
            Fault::ScanUnordered,
            &["scan_orders_bytewise_and_filters_prefix"],
        ),
        (Fault::AlwaysNextAfter, &["scan_pages_with_after_and_limit"]),
        (Fault::RacyCas, &["concurrent_cas_counter"]),
        (Fault::SequenceResets, &["next_id_survives_reopen"]),
        (Fault::ForgetsOnReopen, &["commits_survive_reopen"]),
        (Fault::AcceptsBadSpace, &["invalid_space_is_an_error"]),
        (Fault::EmptyIsAbsent, &["values_are_opaque_bytes"]),
    ];
    for (fault, must_fail) in cases {
        let factory = BrokenFactory {
            fault: *fault,
            data: Mutex::new(HashMap::new()),
        };
        let outcomes = conformance::run_checks(&factory).await;
        for name in *must_fail {
            let outcome = outcomes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, o)| o.clone())
                .unwrap();
            assert!(
                matches!(outcome, Outcome::Failed(_)),
                "{fault:?} should fail {name}, got {outcome:?}"
            );
        }
    }
    // And the fault-free variant of the same harness passes, so the failures above come from
    // the faults, not from the harness.
    let control = BrokenFactory {
        fault: Fault::Nothing,
        data: Mutex::new(HashMap::new()),
    };
    let outcomes = conformance::run_checks(&control).await;
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| *o != Outcome::Passed)
        .collect();
    assert!(failed.is_empty(), "control: {failed:#?}");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: the same suite, each store in a fresh schema of its own, all dropped at the end.

#[cfg(feature = "postgres")]
mod pg_support;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use cardbridge::store::postgres::{PgSettings, PgStore};

    /// Opens id number `i` in schema `<prefix>_<i>` (schema names are limited to 63 bytes and
    /// check names are longer).
    pub struct PgFactory {
        prefix: String,
        ids: Mutex<Vec<String>>,
    }

    impl PgFactory {
        pub fn new(what: &str) -> Self {
            PgFactory {
                prefix: pg_support::unique_schema(what),
                ids: Mutex::new(Vec::new()),
            }
        }
        fn settings(&self, id: &str) -> PgSettings {
            let mut ids = self.ids.lock().unwrap();
            let n = match ids.iter().position(|i| i == id) {
                Some(n) => n,
                None => {
                    ids.push(id.to_string());
                    ids.len() - 1
                }
            };
            pg_support::settings(&format!("{}_{n}", self.prefix))
        }
        /// Drops every schema this factory created.
        pub async fn cleanup(&self) {
            let n = self.ids.lock().unwrap().len();
            for i in 0..n {
                pg_support::remove(&format!("{}_{i}", self.prefix)).await;
            }
        }
    }

    #[async_trait]
    impl StoreFactory for PgFactory {
        fn name(&self) -> &str {
            "postgres"
        }
        fn can_reopen(&self) -> bool {
            true
        }
        async fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
            Ok(Arc::new(PgStore::open(&self.settings(id)).await?))
        }
        async fn reopen(
            &self,
            id: &str,
            old: Arc<dyn Store>,
        ) -> Result<Arc<dyn Store>, StoreError> {
            if Arc::strong_count(&old) != 1 {
                return Err(StoreError::Backend(
                    "the suite still holds other handles of the store".into(),
                ));
            }
            // Closes the pool: every connection of the old store goes away.
            drop(old);
            Ok(Arc::new(PgStore::open(&self.settings(id)).await?))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_store_conforms() {
        pg_support::require_server().await;
        let factory = PgFactory::new("conf");
        let outcomes = conformance::run_checks(&factory).await;
        factory.cleanup().await;
        let failed: Vec<_> = outcomes
            .iter()
            .filter(|(_, o)| *o != Outcome::Passed)
            .collect();
        assert!(failed.is_empty(), "postgres: {failed:#?}");
    }
}
