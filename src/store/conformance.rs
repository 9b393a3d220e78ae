//! The conformance suite: the executable specification of [`Store`]. Every backend runs it
//! unchanged (`tests/store_conformance.rs` for memory and sled; the PostgreSQL backend of
//! issue #9 adds its own factory).
//!
//! A backend provides a [`StoreFactory`]; [`run_all`] runs every [`Check`] in [`CHECKS`] and
//! panics with the list of failures. Checks that need to reopen the same data (durability,
//! sequences across restarts) are skipped, and reported as skipped, when the factory says
//! it cannot reopen ([`StoreFactory::can_reopen`]). [`run_checks`] returns the outcomes
//! instead of panicking; `tests/store_conformance.rs` uses it to show that deliberately
//! broken stores fail the checks meant to catch them.
//!
//! Concurrency checks spawn tokio tasks, so the suite must run inside a multi-threaded tokio
//! runtime (`#[tokio::test(flavor = "multi_thread")]`).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{Batch, Store, StoreError};

/// Creates stores for the suite.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// The backend's name, for reports.
    fn name(&self) -> &str;
    /// Whether [`StoreFactory::reopen`] is supported (a persistent backend must say yes).
    fn can_reopen(&self) -> bool;
    /// A fresh, empty store. `id` is unique within one run of the suite (the check name); a
    /// persistent backend keys its directory / schema by it.
    async fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError>;
    /// Closes `old` (the suite hands over its last handle) and opens the data of
    /// `open(id)` again, as a restarted process would.
    async fn reopen(&self, id: &str, old: Arc<dyn Store>) -> Result<Arc<dyn Store>, StoreError>;
}

/// What one check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend behaved as specified.
    Passed,
    /// Not run: the factory lacks a capability the check needs.
    Skipped(String),
    /// The backend violated the contract; the message says how.
    Failed(String),
}

/// The result type of one check body.
pub type CheckResult = Result<(), String>;
/// A check body.
pub type CheckFn = for<'a> fn(&'a dyn StoreFactory) -> BoxFuture<'a, CheckResult>;

/// One named check of the suite.
pub struct Check {
    /// Stable name, also used as the store id passed to [`StoreFactory::open`].
    pub name: &'static str,
    /// Needs [`StoreFactory::reopen`].
    pub needs_reopen: bool,
    /// The body.
    pub run: CheckFn,
}

/// Every check of the suite, in the order [`run_all`] runs them.
pub const CHECKS: &[Check] = &[
    Check {
        name: "get_put_delete",
        needs_reopen: false,
        run: get_put_delete,
    },
    Check {
        name: "values_are_opaque_bytes",
        needs_reopen: false,
        run: values_are_opaque_bytes,
    },
    Check {
        name: "spaces_are_isolated",
        needs_reopen: false,
        run: spaces_are_isolated,
    },
    Check {
        name: "invalid_space_is_an_error",
        needs_reopen: false,
        run: invalid_space_is_an_error,
    },
    Check {
        name: "scan_orders_bytewise_and_filters_prefix",
        needs_reopen: false,
        run: scan_orders_bytewise_and_filters_prefix,
    },
    Check {
        name: "scan_pages_with_after_and_limit",
        needs_reopen: false,
        run: scan_pages_with_after_and_limit,
    },
    Check {
        name: "batch_applies_writes_in_order",
        needs_reopen: false,
        run: batch_applies_writes_in_order,
    },
    Check {
        name: "failed_guard_writes_nothing",
        needs_reopen: false,
        run: failed_guard_writes_nothing,
    },
    Check {
        name: "cas_semantics",
        needs_reopen: false,
        run: cas_semantics,
    },
    Check {
        name: "concurrent_cas_counter",
        needs_reopen: false,
        run: concurrent_cas_counter,
    },
    Check {
        name: "large_batch",
        needs_reopen: false,
        run: large_batch,
    },
    Check {
        name: "next_id_starts_at_one_and_increases",
        needs_reopen: false,
        run: next_id_starts_at_one_and_increases,
    },
    Check {
        name: "next_id_concurrent_distinct",
        needs_reopen: false,
        run: next_id_concurrent_distinct,
    },
    Check {
        name: "next_id_survives_reopen",
        needs_reopen: true,
        run: next_id_survives_reopen,
    },
    Check {
        name: "commits_survive_reopen",
        needs_reopen: true,
        run: commits_survive_reopen,
    },
];

/// Runs every check and returns `(name, outcome)` in [`CHECKS`] order.
pub async fn run_checks(factory: &dyn StoreFactory) -> Vec<(&'static str, Outcome)> {
    let mut out = Vec::with_capacity(CHECKS.len());
    for check in CHECKS {
        out.push((check.name, run_check(factory, check).await));
    }
    out
}

/// Runs one check, honouring the factory's capabilities.
pub async fn run_check(factory: &dyn StoreFactory, check: &Check) -> Outcome {
    if check.needs_reopen && !factory.can_reopen() {
        return Outcome::Skipped(format!("{} cannot reopen a store", factory.name()));
    }
    match (check.run)(factory).await {
        Ok(()) => Outcome::Passed,
        Err(msg) => Outcome::Failed(msg),
    }
}

/// Runs the whole suite and panics, listing every failed check, if the backend does not
/// conform. Skipped checks are printed (to stderr) but do not fail the run.
pub async fn run_all(factory: &dyn StoreFactory) {
    let outcomes = run_checks(factory).await;
    let mut failures = Vec::new();
    for (name, outcome) in &outcomes {
        match outcome {
            Outcome::Passed => {}
            Outcome::Skipped(why) => eprintln!("[{}] {name}: skipped ({why})", factory.name()),
            Outcome::Failed(msg) => failures.push(format!("{name}: {msg}")),
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} fails {} of {} conformance checks:\n  {}",
            factory.name(),
            failures.len(),
            outcomes.len(),
            failures.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!("{}: got {:?}, want {:?}", format!($($fmt)+), l, r));
        }
    }};
}

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Ctx<T> for Result<T, StoreError> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: unexpected error {e}"))
    }
}

async fn put(store: &dyn Store, space: &'static str, key: &[u8], value: &[u8]) -> CheckResult {
    let mut b = Batch::new();
    b.put(space, key.to_vec(), value.to_vec());
    store.commit(b).await.ctx(&format!("put {space}/{key:?}"))
}

/// Every entry under `prefix`, like [`super::scan_all`], but refusing to loop forever on a
/// backend whose `next_after` does not advance.
async fn scan_all(
    store: &dyn Store,
    space: &'static str,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan(space, prefix, after.as_deref(), 1024)
            .await
            .ctx(&format!("scan {space}"))?;
        out.extend(page.entries);
        match page.next_after {
            Some(next) => {
                if after.as_ref().is_some_and(|a| next <= *a) {
                    return Err(format!(
                        "scan of {space}: next_after {next:?} does not advance past {after:?}"
                    ));
                }
                after = Some(next);
            }
            None => return Ok(out),
        }
    }
}

async fn keys(
    store: &dyn Store,
    space: &'static str,
    prefix: &[u8],
) -> Result<Vec<Vec<u8>>, String> {
    Ok(scan_all(store, space, prefix)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect())
}

fn is_conflict<T>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

fn describe<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e:?})"),
    }
}

/// Keys that exercise bytewise ordering: NUL, 0x7F/0x80 (sign confusion), 0xFF, and
/// prefixes of each other.
fn tricky_keys() -> Vec<Vec<u8>> {
    vec![
        vec![0xff, 0xff],
        vec![0x00],
        b"a".to_vec(),
        vec![0x80],
        vec![0xff],
        vec![0x00, 0x00],
        vec![0x7f],
        vec![0xff, 0x00],
        b"a\x00b".to_vec(),
        vec![0x01],
        b"ab".to_vec(),
        vec![],
    ]
}

// ---------------------------------------------------------------------------------------------
// checks

fn get_put_delete(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f.open("get_put_delete").await.ctx("open")?;
        let s = s.as_ref();
        ensure_eq!(s.get("kv", b"k").await.ctx("get")?, None, "missing key");
        put(s, "kv", b"k", b"v1").await?;
        ensure_eq!(
            s.get("kv", b"k").await.ctx("get")?,
            Some(b"v1".to_vec()),
            "after put"
        );
        put(s, "kv", b"k", b"v2").await?;
        ensure_eq!(
            s.get("kv", b"k").await.ctx("get")?,
            Some(b"v2".to_vec()),
            "after overwrite"
        );
        let mut b = Batch::new();
        b.delete("kv", b"k".to_vec());
        s.commit(b).await.ctx("delete")?;
        ensure_eq!(s.get("kv", b"k").await.ctx("get")?, None, "after delete");
        let mut b = Batch::new();
        b.delete("kv", b"never-there".to_vec());
        s.commit(b)
            .await
            .ctx("deleting a missing key is not an error")?;
        s.commit(Batch::new()).await.ctx("empty batch")?;
        ensure_eq!(
            keys(s, "kv", b"").await?,
            Vec::<Vec<u8>>::new(),
            "space is empty again"
        );
        Ok(())
    })
}

fn values_are_opaque_bytes(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f.open("values_are_opaque_bytes").await.ctx("open")?;
        let s = s.as_ref();
        // An empty value is present, not absent.
        put(s, "kv", b"empty", b"").await?;
        ensure_eq!(
            s.get("kv", b"empty").await.ctx("get")?,
            Some(Vec::new()),
            "empty value"
        );
        // The empty key is a key.
        put(s, "kv", b"", b"root").await?;
        ensure_eq!(
            s.get("kv", b"").await.ctx("get")?,
            Some(b"root".to_vec()),
            "empty key"
        );
        let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        put(s, "kv", &[0, 0xff, 0], &binary).await?;
        ensure_eq!(
            s.get("kv", &[0, 0xff, 0]).await.ctx("get")?,
            Some(binary.clone()),
            "binary key and value"
        );
        let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
        put(s, "kv", b"big", &big).await?;
        let got = s.get("kv", b"big").await.ctx("get big")?;
        ensure!(got.as_ref() == Some(&big), "1 MiB value did not round-trip");
        Ok(())
    })
}

fn spaces_are_isolated(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f.open("spaces_are_isolated").await.ctx("open")?;
        let s = s.as_ref();
        put(s, "item", b"k", b"in item").await?;
        put(s, "items", b"k", b"in items").await?;
        // A naive `space ++ key` encoding would make these two the same stored key.
        put(s, "item", b"sk", b"item/sk").await?;
        put(s, "items", b"x", b"items/x").await?;
        ensure_eq!(
            s.get("item", b"k").await.ctx("get")?,
            Some(b"in item".to_vec()),
            "item/k"
        );
        ensure_eq!(
            s.get("items", b"k").await.ctx("get")?,
            Some(b"in items".to_vec()),
            "items/k"
        );
        ensure_eq!(s.get("items", b"sk").await.ctx("get")?, None, "items/sk");
        ensure_eq!(s.get("item", b"sx").await.ctx("get")?, None, "item/sx");
        ensure_eq!(
            keys(s, "item", b"").await?,
            vec![b"k".to_vec(), b"sk".to_vec()],
            "scan of item sees only item"
        );
        ensure_eq!(
            keys(s, "items", b"").await?,
            vec![b"k".to_vec(), b"x".to_vec()],
            "scan of items sees only items"
        );
        ensure_eq!(
            keys(s, "ite", b"").await?,
            Vec::<Vec<u8>>::new(),
            "scan of a space that is a prefix of others"
        );
        let mut b = Batch::new();
        b.delete("item", b"k".to_vec());
        s.commit(b).await.ctx("delete")?;
        ensure_eq!(
            s.get("items", b"k").await.ctx("get")?,
            Some(b"in items".to_vec()),
            "delete in item leaves items alone"
        );
        // A guard in one space does not see the same key in another.
        let mut b = Batch::new();
        b.expect("item", b"k".to_vec(), None);
        s.commit(b).await.ctx("guard on item/k absent")?;
        Ok(())
    })
}

fn invalid_space_is_an_error(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f.open("invalid_space_is_an_error").await.ctx("open")?;
        let s = s.as_ref();
        let r = s.get("bad\0space", b"k").await;
        ensure!(r.is_err(), "get with NUL in space: {}", describe(&r));
        let mut b = Batch::new();
        b.put("", b"k".to_vec(), b"v".to_vec());
        let r = s.commit(b).await;
        ensure!(r.is_err(), "put into empty space name: {}", describe(&r));
        let mut b = Batch::new();
        b.put("ok", b"k".to_vec(), b"v".to_vec());
        b.put("no\0good", b"k".to_vec(), b"v".to_vec());
        let r = s.commit(b).await;
        ensure!(r.is_err(), "batch with one invalid space: {}", describe(&r));
        ensure_eq!(
            s.get("ok", b"k").await.ctx("get")?,
            None,
            "a batch refused for an invalid space writes nothing"
        );
        let r = s.next_id("bad\0seq").await;
        ensure!(r.is_err(), "next_id with NUL in name: {}", describe(&r));
        Ok(())
    })
}

fn scan_orders_bytewise_and_filters_prefix(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f
            .open("scan_orders_bytewise_and_filters_prefix")
            .await
            .ctx("open")?;
        let s = s.as_ref();
        let all = tricky_keys();
        for k in &all {
            put(s, "scan", k, k).await?;
        }
        let mut sorted = all.clone();
        sorted.sort();
        let page = s.scan("scan", b"", None, 100).await.ctx("scan")?;
        let got: Vec<Vec<u8>> = page.entries.iter().map(|(k, _)| k.clone()).collect();
        ensure_eq!(got, sorted, "full scan order");
        ensure!(
            page.entries.iter().all(|(k, v)| k == v),
            "values travel with their keys"
        );
        ensure_eq!(page.next_after, None, "nothing follows a complete page");
        let by_prefix = |p: &[u8]| -> Vec<Vec<u8>> {
            sorted
                .iter()
                .filter(|k| k.starts_with(p))
                .cloned()
                .collect()
        };
        for prefix in [
            vec![0xff],
            vec![0x00],
            b"a".to_vec(),
            b"a\x00".to_vec(),
            vec![0xfe],
            vec![0xff, 0xff, 0xff],
        ] {
            ensure_eq!(
                keys(s, "scan", &prefix).await?,
                by_prefix(&prefix),
                "prefix {prefix:?}"
            );
        }
        Ok(())
    })
}

fn scan_pages_with_after_and_limit(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f
            .open("scan_pages_with_after_and_limit")
            .await
            .ctx("open")?;
        let s = s.as_ref();
        let mut b = Batch::new();
        let mut want = Vec::new();
        for i in 0..25u32 {
            let k = [b"p/".as_slice(), &i.to_be_bytes()].concat();
            b.put("page", k.clone(), i.to_be_bytes().to_vec());
            want.push(k);
        }
        // Neighbours outside the prefix on both sides.
        b.put("page", b"p.".to_vec(), b"before".to_vec());
        b.put("page", b"p0".to_vec(), b"after".to_vec());
        s.commit(b).await.ctx("fill")?;

        for limit in [1usize, 5, 7, 25, 26, 100] {
            let mut got = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            let mut pages = 0;
            loop {
                let page = s
                    .scan("page", b"p/", after.as_deref(), limit)
                    .await
                    .ctx("scan page")?;
                pages += 1;
                ensure!(pages <= 30, "limit {limit}: paging does not terminate");
                ensure!(
                    page.entries.len() <= limit,
                    "limit {limit}: page of {} entries",
                    page.entries.len()
                );
                let last = page.entries.last().map(|(k, _)| k.clone());
                got.extend(page.entries.into_iter().map(|(k, _)| k));
                match page.next_after {
                    Some(n) => {
                        ensure_eq!(
                            Some(n.clone()),
                            last,
                            "limit {limit}: next_after is the last key of the page"
                        );
                        after = Some(n);
                    }
                    None => break,
                }
            }
            ensure_eq!(got, want, "limit {limit}: pages concatenate to the prefix");
            let expected_pages = want.len().div_ceil(limit).max(1);
            ensure_eq!(
                pages,
                expected_pages,
                "limit {limit}: no empty trailing page when the last page is exactly full"
            );
        }

        let zero = s.scan("page", b"p/", None, 0).await.ctx("limit 0")?;
        ensure!(
            zero.entries.is_empty() && zero.next_after.is_none(),
            "limit 0 returns an empty page without next_after, got {zero:?}"
        );
        // `after` that is not a stored key: strictly after it.
        let mid = [b"p/".as_slice(), &[0, 0, 0, 9, 0]].concat();
        let page = s.scan("page", b"p/", Some(&mid), 2).await.ctx("scan")?;
        let got: Vec<Vec<u8>> = page.entries.into_iter().map(|(k, _)| k).collect();
        ensure_eq!(got, want[10..12].to_vec(), "after between keys");
        // `after` equal to a stored key excludes it.
        let page = s.scan("page", b"p/", Some(&want[3]), 1).await.ctx("scan")?;
        ensure_eq!(
            page.entries.first().map(|(k, _)| k.clone()),
            Some(want[4].clone()),
            "after is exclusive"
        );
        // `after` below the prefix starts at the prefix; above it yields nothing.
        let page = s.scan("page", b"p/", Some(b"a"), 1).await.ctx("scan")?;
        ensure_eq!(
            page.entries.first().map(|(k, _)| k.clone()),
            Some(want[0].clone()),
            "after below the prefix"
        );
        let page = s.scan("page", b"p/", Some(b"q"), 10).await.ctx("scan")?;
        ensure!(
            page.entries.is_empty() && page.next_after.is_none(),
            "after above the prefix: {page:?}"
        );
        let page = s
            .scan("page", b"p/", Some(&want[24]), 10)
            .await
            .ctx("scan")?;
        ensure!(
            page.entries.is_empty() && page.next_after.is_none(),
            "after the last key: {page:?}"
        );
        Ok(())
    })
}

fn batch_applies_writes_in_order(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f.open("batch_applies_writes_in_order").await.ctx("open")?;
        let s = s.as_ref();
        let mut b = Batch::new();
        b.put("ord", b"a".to_vec(), b"1".to_vec())
            .put("ord", b"a".to_vec(), b"2".to_vec())
            .put("ord", b"b".to_vec(), b"1".to_vec())
            .delete("ord", b"b".to_vec())
            .delete("ord", b"c".to_vec())
            .put("ord", b"c".to_vec(), b"3".to_vec())
            .put("other", b"a".to_vec(), b"x".to_vec());
        s.commit(b).await.ctx("commit")?;
        ensure_eq!(
            s.get("ord", b"a").await.ctx("get")?,
            Some(b"2".to_vec()),
            "later put wins"
        );
        ensure_eq!(
            s.get("ord", b"b").await.ctx("get")?,
            None,
            "put then delete"
        );
        ensure_eq!(
            s.get("ord", b"c").await.ctx("get")?,
            Some(b"3".to_vec()),
            "delete then put"
        );
        ensure_eq!(
            s.get("other", b"a").await.ctx("get")?,
            Some(b"x".to_vec()),
            "a batch spans spaces"
        );
        Ok(())
    })
}

fn failed_guard_writes_nothing(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f.open("failed_guard_writes_nothing").await.ctx("open")?;
        let s = s.as_ref();
        put(s, "atom", b"keep", b"old").await?;
        put(s, "atom", b"guard", b"g1").await?;
        let mut b = Batch::new();
        b.expect("atom", b"guard".to_vec(), Some(b"g1".to_vec()));
        b.put("atom", b"new1".to_vec(), b"x".to_vec())
            .put("atom", b"keep".to_vec(), b"overwritten".to_vec())
            .delete("atom", b"guard".to_vec())
            .put("elsewhere", b"new2".to_vec(), b"x".to_vec());
        // The failing guard comes last, after one that holds.
        b.expect("atom", b"absent".to_vec(), Some(b"anything".to_vec()));
        let r = s.commit(b).await;
        ensure!(is_conflict(&r), "failing guard: {}", describe(&r));
        if let Err(StoreError::Conflict { space, key }) = &r {
            ensure!(
                space == "atom" && key == "absent",
                "the conflict names the failed guard, got {space}/{key}"
            );
        }
        ensure_eq!(s.get("atom", b"new1").await.ctx("get")?, None, "no new key");
        ensure_eq!(
            s.get("atom", b"keep").await.ctx("get")?,
            Some(b"old".to_vec()),
            "no overwrite"
        );
        ensure_eq!(
            s.get("atom", b"guard").await.ctx("get")?,
            Some(b"g1".to_vec()),
            "no delete"
        );
        ensure_eq!(
            s.get("elsewhere", b"new2").await.ctx("get")?,
            None,
            "no write in another space"
        );
        Ok(())
    })
}

fn cas_semantics(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f.open("cas_semantics").await.ctx("open")?;
        let s = s.as_ref();
        let cas = |expected: Option<&[u8]>, new: &[u8]| {
            let mut b = Batch::new();
            b.expect("cas", b"k".to_vec(), expected.map(<[u8]>::to_vec));
            b.put("cas", b"k".to_vec(), new.to_vec());
            b
        };
        s.commit(cas(None, b"v1"))
            .await
            .ctx("expected absent, is absent")?;
        let r = s.commit(cas(None, b"v2")).await;
        ensure!(
            is_conflict(&r),
            "expected absent, is present: {}",
            describe(&r)
        );
        let r = s.commit(cas(Some(b"v0"), b"v2")).await;
        ensure!(is_conflict(&r), "expected a wrong value: {}", describe(&r));
        let r = s.commit(cas(Some(b""), b"v2")).await;
        ensure!(
            is_conflict(&r),
            "expected the empty value: {}",
            describe(&r)
        );
        ensure_eq!(
            s.get("cas", b"k").await.ctx("get")?,
            Some(b"v1".to_vec()),
            "failed CAS left the value"
        );
        s.commit(cas(Some(b"v1"), b"v2"))
            .await
            .ctx("expected the current value")?;
        ensure_eq!(
            s.get("cas", b"k").await.ctx("get")?,
            Some(b"v2".to_vec()),
            "CAS applied"
        );
        // Some(v) never matches an absent key; Some(empty) is not None.
        let mut b = Batch::new();
        b.expect("cas", b"gone".to_vec(), Some(Vec::new()));
        let r = s.commit(b).await;
        ensure!(
            is_conflict(&r),
            "Some(empty) on an absent key: {}",
            describe(&r)
        );
        put(s, "cas", b"empty", b"").await?;
        let mut b = Batch::new();
        b.expect("cas", b"empty".to_vec(), None);
        let r = s.commit(b).await;
        ensure!(is_conflict(&r), "None on an empty value: {}", describe(&r));
        let mut b = Batch::new();
        b.expect("cas", b"empty".to_vec(), Some(Vec::new()));
        s.commit(b).await.ctx("Some(empty) on an empty value")?;
        // A guard-only batch checks without writing.
        let mut b = Batch::new();
        b.expect("cas", b"k".to_vec(), Some(b"v1".to_vec()));
        let r = s.commit(b).await;
        ensure!(is_conflict(&r), "guard-only batch: {}", describe(&r));
        // Delete guarded by value; then the key is absent for the next guard.
        let mut b = Batch::new();
        b.expect("cas", b"k".to_vec(), Some(b"v2".to_vec()));
        b.delete("cas", b"k".to_vec());
        s.commit(b).await.ctx("guarded delete")?;
        s.commit(cas(None, b"v3"))
            .await
            .ctx("absent after guarded delete")?;
        Ok(())
    })
}

fn concurrent_cas_counter(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 25;
    Box::pin(async move {
        let s = f.open("concurrent_cas_counter").await.ctx("open")?;
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let s = Arc::clone(&s);
            handles.push(tokio::spawn(async move {
                let mut conflicts = 0u64;
                for i in 0..PER_TASK {
                    loop {
                        let current = s.get("ctr", b"n").await.ctx("get")?;
                        let n = match &current {
                            None => 0,
                            Some(raw) => u64::from_be_bytes(
                                raw.as_slice()
                                    .try_into()
                                    .map_err(|_| format!("counter is garbled: {raw:?}"))?,
                            ),
                        };
                        // Widen the read-modify-write window, as a network backend would,
                        // so that a store without real guards loses updates here.
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        let mut b = Batch::new();
                        b.expect("ctr", b"n".to_vec(), current);
                        b.put("ctr", b"n".to_vec(), (n + 1).to_be_bytes().to_vec());
                        // Each success also records who won which value: a value won twice
                        // would mean two commits saw the same counter.
                        b.put(
                            "ctr.won",
                            (n + 1).to_be_bytes().to_vec(),
                            format!("{t}/{i}").into_bytes(),
                        );
                        match s.commit(b).await {
                            Ok(()) => break,
                            Err(StoreError::Conflict { .. }) => {
                                conflicts += 1;
                                tokio::task::yield_now().await;
                            }
                            Err(e) => return Err(format!("commit: {e}")),
                        }
                    }
                }
                Ok::<u64, String>(conflicts)
            }));
        }
        for h in handles {
            h.await.map_err(|e| format!("task panicked: {e}"))??;
        }
        let total = TASKS * PER_TASK;
        ensure_eq!(
            s.get("ctr", b"n").await.ctx("get")?,
            Some(total.to_be_bytes().to_vec()),
            "counter after {total} guarded increments"
        );
        let won = scan_all(s.as_ref(), "ctr.won", b"").await?;
        ensure_eq!(
            won.len() as u64,
            total,
            "each counter value is won by exactly one commit"
        );
        let winners: BTreeSet<Vec<u8>> = won.into_iter().map(|(_, v)| v).collect();
        ensure_eq!(
            winners.len() as u64,
            total,
            "no increment is recorded twice"
        );
        Ok(())
    })
}

fn large_batch(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f.open("large_batch").await.ctx("open")?;
        let s = s.as_ref();
        let mut b = Batch::new();
        for i in 0..5000u32 {
            b.put("big", i.to_be_bytes().to_vec(), vec![b'x'; 200]);
        }
        s.commit(b).await.ctx("commit 5000 writes")?;
        let all = scan_all(s, "big", b"").await?;
        ensure_eq!(all.len(), 5000, "entries after a 5000-write batch");
        ensure!(
            all.iter()
                .enumerate()
                .all(|(i, (k, _))| k.as_slice() == (i as u32).to_be_bytes()),
            "big-endian keys come back in numeric order"
        );
        Ok(())
    })
}

fn next_id_starts_at_one_and_increases(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let s = f
            .open("next_id_starts_at_one_and_increases")
            .await
            .ctx("open")?;
        let s = s.as_ref();
        ensure_eq!(s.next_id("seq.a").await.ctx("next_id")?, 1, "first id");
        let mut prev = 1;
        for _ in 0..50 {
            let id = s.next_id("seq.a").await.ctx("next_id")?;
            ensure!(id > prev, "id {id} after {prev}");
            prev = id;
        }
        ensure_eq!(
            s.next_id("seq.b").await.ctx("next_id")?,
            1,
            "sequences are independent"
        );
        ensure_eq!(
            keys(s, "seq.a", b"").await?,
            Vec::<Vec<u8>>::new(),
            "sequences do not show up as keyspaces"
        );
        Ok(())
    })
}

fn next_id_concurrent_distinct(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    const TASKS: usize = 8;
    const PER_TASK: usize = 200;
    Box::pin(async move {
        let s = f.open("next_id_concurrent_distinct").await.ctx("open")?;
        let mut handles = Vec::new();
        for _ in 0..TASKS {
            let s = Arc::clone(&s);
            handles.push(tokio::spawn(async move {
                let mut ids = Vec::with_capacity(PER_TASK);
                for _ in 0..PER_TASK {
                    ids.push(s.next_id("seq").await.ctx("next_id")?);
                }
                Ok::<Vec<u64>, String>(ids)
            }));
        }
        let mut all = BTreeSet::new();
        for h in handles {
            let ids = h.await.map_err(|e| format!("task panicked: {e}"))??;
            ensure!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "one task saw ids go backwards: {ids:?}"
            );
            for id in ids {
                ensure!(id >= 1, "id 0 handed out");
                ensure!(all.insert(id), "id {id} handed out twice");
            }
        }
        ensure_eq!(all.len(), TASKS * PER_TASK, "distinct ids");
        let after = s.next_id("seq").await.ctx("next_id")?;
        let max = all.last().copied().unwrap_or(0);
        ensure!(after > max, "id {after} after concurrent max {max}");
        Ok(())
    })
}

fn next_id_survives_reopen(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let id = "next_id_survives_reopen";
        let mut s = f.open(id).await.ctx("open")?;
        let mut max = 0;
        for round in 0..3 {
            for _ in 0..10 {
                let v = s.next_id("seq").await.ctx("next_id")?;
                ensure!(v > max, "round {round}: id {v} after {max}");
                max = v;
            }
            s = f.reopen(id, s).await.ctx("reopen")?;
        }
        let v = s.next_id("seq").await.ctx("next_id")?;
        ensure!(v > max, "after the last reopen: id {v} after {max}");
        Ok(())
    })
}

fn commits_survive_reopen(f: &dyn StoreFactory) -> BoxFuture<'_, CheckResult> {
    Box::pin(async move {
        let id = "commits_survive_reopen";
        let s = f.open(id).await.ctx("open")?;
        for i in 0..10u8 {
            put(s.as_ref(), "dur", &[i], &[i; 3]).await?;
        }
        let mut b = Batch::new();
        b.delete("dur", vec![3u8])
            .put("dur", vec![4u8], b"four".to_vec())
            .put("dur.other", b"x".to_vec(), b"y".to_vec());
        s.commit(b).await.ctx("commit")?;
        let before = scan_all(s.as_ref(), "dur", b"").await?;
        let s = f.reopen(id, s).await.ctx("reopen")?;
        let after = scan_all(s.as_ref(), "dur", b"").await?;
        ensure_eq!(after, before, "space after reopen");
        ensure_eq!(
            s.get("dur.other", b"x").await.ctx("get")?,
            Some(b"y".to_vec()),
            "other space after reopen"
        );
        // The reopened store keeps working and keeps guards meaningful.
        let mut b = Batch::new();
        b.expect("dur", vec![4u8], Some(b"four".to_vec()));
        b.put("dur", vec![4u8], b"FOUR".to_vec());
        s.commit(b).await.ctx("CAS after reopen")?;
        let s = f.reopen(id, s).await.ctx("second reopen")?;
        ensure_eq!(
            s.get("dur", &[4u8]).await.ctx("get")?,
            Some(b"FOUR".to_vec()),
            "write after a reopen survives the next"
        );
        Ok(())
    })
}
