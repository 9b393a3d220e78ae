//! The PostgreSQL backend beyond the conformance suite: several stores ("nodes") on one schema,
//! migrations on open (concurrent, and refusing a newer schema), and
//! `cardbridge migrate --from sled --to postgres` run as the real binary.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod pg_support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use cardbridge::store::postgres::{PgStore, SCHEMA_VERSION};
use cardbridge::store::{scan_all, Batch, SledStore, Store, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_open_and_migrate_one_schema_at_once() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("nodes");
    let settings = pg_support::settings(&schema);
    let opens = (0..3).map(|_| {
        let s = settings.clone();
        tokio::spawn(async move { PgStore::open(&s).await })
    });
    let mut nodes = Vec::new();
    for h in opens {
        nodes.push(Arc::new(h.await.unwrap().unwrap()));
    }
    assert_eq!(nodes[0].schema_version().await.unwrap(), SCHEMA_VERSION);

    // Ids are distinct and increasing across nodes, not just within one.
    let mut tasks = Vec::new();
    for n in &nodes {
        let n = Arc::clone(n);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..100 {
                ids.push(n.next_id("seq").await.unwrap());
            }
            ids
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(all.len(), 300);
    assert_eq!(
        *all.last().unwrap(),
        300,
        "ids are contiguous on PostgreSQL"
    );

    // A guard written on one node is seen by another.
    let mut b = Batch::new();
    b.expect("kv", b"k".to_vec(), None);
    b.put("kv", b"k".to_vec(), b"node0".to_vec());
    nodes[0].commit(b).await.unwrap();
    let mut b = Batch::new();
    b.expect("kv", b"k".to_vec(), None);
    b.put("kv", b"k".to_vec(), b"node1".to_vec());
    assert!(matches!(
        nodes[1].commit(b).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        nodes[2].get("kv", b"k").await.unwrap(),
        Some(b"node0".to_vec())
    );
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    pg_support::require_server().await;
    let schema = pg_support::TempSchema::new("newer");
    let settings = pg_support::settings(&schema);
    let store = PgStore::open(&settings).await.unwrap();
    drop(store);
    // Pretend a newer build migrated the schema.
    let (client, conn) = tokio_postgres_connect().await;
    let task = tokio::spawn(conn);
    client
        .execute(
            &format!(
                "UPDATE \"{schema}\".cardbridge_meta SET value = value + 1 \
                 WHERE name = 'schema_version'"
            ),
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    match PgStore::open(&settings).await {
        Err(StoreError::Schema { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
}

async fn tokio_postgres_connect() -> (
    deadpool_postgres::tokio_postgres::Client,
    impl std::future::Future<Output = Result<(), deadpool_postgres::tokio_postgres::Error>>,
) {
    deadpool_postgres::tokio_postgres::connect(
        &pg_support::url(),
        deadpool_postgres::tokio_postgres::NoTls,
    )
    .await
    .unwrap()
}

type Entry = (Vec<u8>, Vec<u8>);

/// Entries written into the sled store of the migration test: several spaces, tricky keys,
/// the empty key and value, a 1 MiB value and 3000 entries in one space.
fn sample() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>, Vec<u8>)> = vec![
        ("crm.person", b"".to_vec(), b"root".to_vec()),
        ("crm.person", vec![0x00], b"".to_vec()),
        ("crm.person", vec![0xff, 0x00], vec![0xff; 3]),
        ("item", b"k".to_vec(), b"item".to_vec()),
        ("items", b"k".to_vec(), b"items".to_vec()),
        (
            "big",
            b"one".to_vec(),
            (0..(1usize << 20)).map(|i| (i % 251) as u8).collect(),
        ),
    ];
    for i in 0..3000u32 {
        out.push((
            "sync.item",
            i.to_be_bytes().to_vec(),
            format!("value {i}").into_bytes(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_a_sled_directory_and_verifies_it() {
    pg_support::require_server().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let last_sled_id = {
        let sled = SledStore::open(&db).unwrap();
        let mut b = Batch::new();
        for (space, k, v) in sample() {
            b.put(space, k, v);
        }
        sled.commit(b).await.unwrap();
        let mut last = 0;
        for _ in 0..5 {
            last = sled.next_id("crm.person").await.unwrap();
        }
        sled.next_id("changes").await.unwrap();
        last
    };
    let schema = pg_support::TempSchema::new("migrate");
    let run = |data: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_cardbridge"))
            .args(["migrate", "--from", "sled", "--to", "postgres", "--data"])
            .arg(data)
            .env_remove("CARDBRIDGE_CONFIG")
            .env_remove("CARDBRIDGE_DATA")
            .env("CARDBRIDGE_POSTGRES_URL", pg_support::url())
            .env("CARDBRIDGE_POSTGRES_SCHEMA", &*schema)
            .output()
            .unwrap()
    };
    let out = run(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "migrate failed:\n{stdout}\n{stderr}");
    // The per-keyspace counts are printed, and checked.
    for line in [
        "crm.person           3           3  ok",
        "sync.item         3000        3000  ok",
        "items                1           1  ok",
    ] {
        let want: Vec<&str> = line.split_whitespace().collect();
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == want),
            "no line {line:?} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("migrated 3006 entries"), "{stdout}");
    // stderr is not a terminal here: plain progress lines instead of a bar, one at least when
    // each keyspace is copied and when it is read back, with its counts.
    for line in [
        "cardbridge migrate: crm.person copied 3/3",
        "cardbridge migrate: sync.item copied 3000/3000",
        "cardbridge migrate: items copied 1/1",
        "cardbridge migrate: crm.person read back 3/3",
        "cardbridge migrate: sync.item read back 3000/3000",
        "cardbridge migrate: items read back 1/1",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(line)),
            "no progress line {line:?} in:\n{stderr}"
        );
    }
    assert!(
        stderr.lines().any(|l| l.ends_with("(3006/3006 in all)")),
        "{stderr}"
    );

    // Everything reads back through the Store API, byte for byte.
    let pg = PgStore::open(&pg_support::settings(&schema)).await.unwrap();
    let mut want: std::collections::BTreeMap<&str, Vec<Entry>> = Default::default();
    for (space, k, v) in sample() {
        want.entry(space).or_default().push((k, v));
    }
    for (space, mut entries) in want {
        entries.sort();
        assert_eq!(scan_all(&pg, space, b"").await.unwrap(), entries, "{space}");
    }
    // Sequences continue above every id sled handed out (sled reserved a block).
    let next = pg.next_id("crm.person").await.unwrap();
    assert!(
        next > last_sled_id,
        "next id {next} after sled's {last_sled_id}"
    );
    assert!(pg.next_id("changes").await.unwrap() > 1);
    assert_eq!(pg.next_id("fresh").await.unwrap(), 1);

    // A second run refuses to write into a schema that holds data, and changes nothing.
    let out = run(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(scan_all(&pg, "sync.item", b"").await.unwrap().len(), 3000);
    drop(pg);

    // A directory still in use by a running node is refused with a hint.
    let _running = SledStore::open(&db).unwrap();
    let other = pg_support::TempSchema::new("locked");
    let out = Command::new(env!("CARGO_BIN_EXE_cardbridge"))
        .args(["migrate", "--from", "sled", "--to", "postgres", "--data"])
        .arg(dir.path())
        .env_remove("CARDBRIDGE_CONFIG")
        .env("CARDBRIDGE_POSTGRES_URL", pg_support::url())
        .env("CARDBRIDGE_POSTGRES_SCHEMA", &*other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only --from sled --to postgres exists.
    let out = Command::new(env!("CARGO_BIN_EXE_cardbridge"))
        .args(["migrate", "--from", "postgres", "--to", "sled"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
