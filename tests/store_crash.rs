//! Crash safety of the sled backend, for real: a child process commits numbered batches and
//! is killed with SIGKILL at random points; after each kill the parent reopens the directory
//! and checks that every acknowledged batch is there, entirely, and no other batch is there
//! in part.
//!
//! The child is this test binary itself, re-executed with [`CHILD_ENV`] set to run the
//! ignored test [`crash_writer_child`].
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cardbridge::store::{scan_all, Batch, SledStore, Store};
use rand::Rng;

/// Set (to the data directory) in the child process.
const CHILD_ENV: &str = "CARDBRIDGE_STORE_CRASH_CHILD_DIR";
/// Unique keys written by each batch.
const KEYS_PER_BATCH: u64 = 20;
/// Batch `k` deletes the keys of batch `k - DELETE_LAG`, so deletes are exercised too.
const DELETE_LAG: u64 = 3;
/// How many times the child is killed.
const ROUNDS: usize = 10;

const SPACE_BATCH: &str = "crash.batch";
const SPACE_SLOT: &str = "crash.slot";
const SPACE_CURSOR: &str = "crash.cursor";
const CURSOR_KEY: &[u8] = b"cursor";

fn batch_key(k: u64, i: u64) -> Vec<u8> {
    [k.to_be_bytes(), i.to_be_bytes()].concat()
}

fn batch_value(k: u64, i: u64) -> Vec<u8> {
    let mut v = format!("batch {k} key {i} ").into_bytes();
    v.resize(160, b'.');
    v
}

async fn read_cursor(store: &dyn Store) -> Option<u64> {
    store
        .get(SPACE_CURSOR, CURSOR_KEY)
        .await
        .unwrap()
        .map(|raw| u64::from_be_bytes(raw.as_slice().try_into().unwrap()))
}

/// The child: commits batch after batch until killed, printing `ACK k` after each commit
/// returned `Ok`.
#[test]
#[ignore = "helper process of sled_survives_sigkill_at_random_points; does nothing alone"]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SledStore::open(&dir).unwrap();
        let mut prev = read_cursor(&store).await;
        // libtest has printed "test crash_writer_child ... " without a newline: start a line.
        println!("\nSTART {}", prev.unwrap_or(0));
        loop {
            let k = prev.unwrap_or(0) + 1;
            let mut b = Batch::new();
            // Guard on the cursor: batches form one chain, as sync pages do.
            b.expect(
                SPACE_CURSOR,
                CURSOR_KEY,
                prev.map(|p| p.to_be_bytes().to_vec()),
            );
            for i in 0..KEYS_PER_BATCH {
                b.put(SPACE_BATCH, batch_key(k, i), batch_value(k, i));
                b.put(
                    SPACE_SLOT,
                    i.to_be_bytes().to_vec(),
                    k.to_be_bytes().to_vec(),
                );
                if k > DELETE_LAG {
                    b.delete(SPACE_BATCH, batch_key(k - DELETE_LAG, i));
                }
            }
            b.put(SPACE_CURSOR, CURSOR_KEY, k.to_be_bytes().to_vec());
            store.commit(b).await.unwrap();
            println!("ACK {k}");
            prev = Some(k);
        }
    });
}

/// Checks the invariants of the directory and returns the cursor.
async fn verify(dir: &Path, highest_ack: Option<u64>) -> u64 {
    let store = SledStore::open(dir).unwrap_or_else(|e| panic!("reopen after SIGKILL: {e}"));
    let cursor = read_cursor(&store).await.unwrap_or(0);
    if let Some(acked) = highest_ack {
        assert!(
            cursor >= acked,
            "acknowledged batch {acked} lost: cursor is {cursor}"
        );
        // At most the batch in flight at the kill may have landed without its ACK.
        assert!(
            cursor <= acked + 1,
            "cursor {cursor} beyond the batch in flight ({acked} + 1)"
        );
    }
    // Batches still present are exactly cursor-DELETE_LAG+1 ..= cursor, each complete.
    let mut per_batch = std::collections::BTreeMap::<u64, Vec<u64>>::new();
    for (key, value) in scan_all(&store, SPACE_BATCH, b"").await.unwrap() {
        let k = u64::from_be_bytes(key[..8].try_into().unwrap());
        let i = u64::from_be_bytes(key[8..].try_into().unwrap());
        assert_eq!(value, batch_value(k, i), "value of batch {k} key {i}");
        per_batch.entry(k).or_default().push(i);
    }
    let lowest = cursor.saturating_sub(DELETE_LAG - 1).max(1);
    let want: Vec<u64> = if cursor == 0 {
        vec![]
    } else {
        (lowest..=cursor).collect()
    };
    let present: Vec<u64> = per_batch.keys().copied().collect();
    assert_eq!(present, want, "batches present with cursor {cursor}");
    for (k, keys) in &per_batch {
        assert_eq!(
            keys,
            &(0..KEYS_PER_BATCH).collect::<Vec<_>>(),
            "batch {k} is partial"
        );
    }
    let slots = scan_all(&store, SPACE_SLOT, b"").await.unwrap();
    if cursor == 0 {
        assert!(slots.is_empty());
    } else {
        assert_eq!(slots.len() as u64, KEYS_PER_BATCH);
        for (slot, value) in slots {
            assert_eq!(
                value,
                cursor.to_be_bytes().to_vec(),
                "slot {slot:?} does not hold the cursor's batch"
            );
        }
    }
    cursor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_survives_sigkill_at_random_points() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut cursor = 0u64;
    let mut rounds_with_progress = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });

        // Most rounds kill while batches are being committed; some kill during open/recovery.
        let mut lines = Vec::new();
        if round % 4 == 3 {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..150)));
        } else {
            loop {
                let line = rx
                    .recv_timeout(Duration::from_secs(120))
                    .unwrap_or_else(|_| panic!("round {round}: child never started"));
                let started = line.starts_with("START ");
                lines.push(line);
                if started {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(20..600)));
        }
        if let Some(status) = child.try_wait().unwrap() {
            let err = err_reader.join().unwrap();
            panic!("round {round}: child exited on its own ({status}):\n{err}");
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        let _ = err_reader.join();
        lines.extend(rx.try_iter());

        let acks: Vec<u64> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("ACK "))
            .map(|n| n.trim().parse().unwrap())
            .collect();
        assert!(
            acks.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: ACKs not consecutive: {acks:?}"
        );
        if let Some(first) = acks.first() {
            assert_eq!(*first, cursor + 1, "round {round}: child resumed elsewhere");
            rounds_with_progress += 1;
        }
        let new_cursor = verify(dir.path(), acks.last().copied()).await;
        eprintln!(
            "round {round}: {} batches acknowledged (last {:?}), cursor after reopen {new_cursor}",
            acks.len(),
            acks.last()
        );
        assert!(new_cursor >= cursor, "round {round}: cursor went back");
        cursor = new_cursor;
    }
    assert!(
        rounds_with_progress >= ROUNDS / 2,
        "only {rounds_with_progress} of {ROUNDS} rounds committed anything: the test proved little"
    );
    assert!(cursor > 0);
}
