//! Log store figures, our segment log against a sled-backed log: entries/s with one durable
//! flush per batch, at batch sizes 1 and 64, and bytes on disk per entry, after the run and
//! after purging every entry, for a realistic command (an upsert of one musician). Prints a
//! table; asserts only correctness: every entry reads back as written, and purging empties the
//! log.
//!
//! The sled log is what a sled-based Raft store would do: one tree, key = big-endian u64 index,
//! value = the same bincode entry bytes the segment store writes (without its 8-byte record
//! header), `insert` each entry of a batch then one `flush()`; purge = `remove` of every purged
//! key, then `flush()`. On Linux, sled 0.34's `flush()` writes with `sync_file_range`, which
//! neither flushes the disk's write cache nor the file's size: sled calls a real `fsync` only
//! from its background flusher (every 500 ms). So the sled log is measured twice: as sled
//! does it, and with an `fdatasync` of its `db` file after each flush, the promise the segment
//! log keeps (a batch is on disk before openraft is told).
//!
//! `cargo test -p mussikon-cluster --release --test log_bench -- --nocapture`

use mussikon_cluster::types::encode;
use mussikon_cluster::{LogStore, Request, TypeConfig};
use mussikon_engine::generate::{GenConfig, Generator};
use mussikon_engine::Command;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::path::Path;
use std::time::Instant;

/// (batch size, entries): 300 flushes at batch 1, 100 at batch 64.
const RUNS: [(usize, usize); 2] = [(1, 300), (64, 6400)];
/// Each store is measured this many times, interleaved; the table shows the median.
const ROUNDS: usize = 5;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// Entries `1..=total`, cycling through the generated upserts.
fn entries(cmds: &[Command], total: usize) -> Vec<Entry<TypeConfig>> {
    (1..=total)
        .map(|i| Entry {
            log_id: log_id(i as u64),
            payload: EntryPayload::Normal(Request::from(cmds[i % cmds.len()].clone())),
        })
        .collect()
}

/// Bytes of every file below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

struct Row {
    store: &'static str,
    batch: usize,
    total: usize,
    secs: f64,
    bytes: u64,
    bytes_purged: u64,
}

async fn segment_log(batch: usize, all: &[Entry<TypeConfig>]) -> Row {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut log = LogStore::open(tmp.path()).expect("open");
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        log.append_durably(chunk.to_vec()).await.expect("append");
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = dir_bytes(tmp.path());
    let total = all.len() as u64;
    let back = log.try_get_log_entries(1..=total).await.expect("read");
    assert_eq!(back, all, "every entry reads back as written");
    log.purge(log_id(total)).await.expect("purge");
    assert!(
        log.try_get_log_entries(1..=total)
            .await
            .expect("read")
            .is_empty(),
        "purged entries are gone"
    );
    Row {
        store: "segment log",
        batch,
        total: all.len(),
        secs,
        bytes,
        bytes_purged: dir_bytes(tmp.path()),
    }
}

/// The sled log; with `fdatasync`, each batch's flush is followed by an `fdatasync` of sled's
/// data file.
fn sled_log(batch: usize, all: &[Entry<TypeConfig>], fdatasync: bool) -> Row {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = sled::open(tmp.path()).expect("open sled");
    let tree = db.open_tree("log").expect("tree");
    let file = std::fs::File::open(tmp.path().join("db")).expect("sled's db file");
    let values: Vec<Vec<u8>> = all.iter().map(|e| encode(e).expect("encode")).collect();
    let started = Instant::now();
    for (chunk, bytes) in all.chunks(batch).zip(values.chunks(batch)) {
        for (e, v) in chunk.iter().zip(bytes) {
            tree.insert(e.log_id.index.to_be_bytes(), v.as_slice())
                .expect("insert");
        }
        db.flush().expect("flush");
        if fdatasync {
            file.sync_data().expect("fdatasync");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = dir_bytes(tmp.path());
    let back: Vec<Vec<u8>> = tree
        .iter()
        .values()
        .map(|v| v.expect("read").to_vec())
        .collect();
    assert_eq!(back, values, "every entry reads back as written");
    for e in all {
        tree.remove(e.log_id.index.to_be_bytes()).expect("remove");
    }
    db.flush().expect("flush");
    assert!(tree.is_empty(), "purged entries are gone");
    let bytes_purged = dir_bytes(tmp.path());
    Row {
        store: if fdatasync {
            "sled, flush + fdatasync"
        } else {
            "sled, flush (sync_file_range)"
        },
        batch,
        total: all.len(),
        secs,
        bytes,
        bytes_purged,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_store_throughput_and_size() {
    let gen = Generator::new(GenConfig {
        musicians: 1000,
        gigs: 10,
        ..GenConfig::default()
    })
    .expect("generator");
    let cmds: Vec<Command> = gen
        .musicians()
        .map(|m| Command::UpsertMusician { musician: m })
        .collect();
    // Rounds interleave the stores, so a burst of other I/O on the machine (fsync latency
    // depends on everything the file system has pending) hits each of them alike.
    let mut rows: Vec<Row> = Vec::new();
    for _round in 0..ROUNDS {
        for (batch, total) in RUNS {
            let all = entries(&cmds, total);
            rows.push(segment_log(batch, &all).await);
            for fdatasync in [false, true] {
                let sled_entries = all.clone();
                rows.push(
                    tokio::task::spawn_blocking(move || sled_log(batch, &sled_entries, fdatasync))
                        .await
                        .expect("sled run"),
                );
            }
        }
    }
    let mean_entry = entries(&cmds, cmds.len())
        .iter()
        .map(|e| encode(e).map_or(0, |b| b.len()))
        .sum::<usize>()
        / cmds.len();
    println!(
        "mean encoded entry: {mean_entry} bytes; {ROUNDS} rounds, median (min–max) of entries/s"
    );
    println!("| store | batch | entries | entries/s | flushes/s | bytes/entry on disk | bytes on disk after purging all |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut keys: Vec<(usize, &str)> = rows.iter().map(|r| (r.batch, r.store)).collect();
    keys.dedup();
    keys.truncate(rows.len() / ROUNDS);
    for (batch, store) in keys {
        let mut same: Vec<&Row> = rows
            .iter()
            .filter(|r| r.batch == batch && r.store == store)
            .collect();
        same.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        let (fast, median, slow) = (same[0], same[same.len() / 2], same[same.len() - 1]);
        let rate = |r: &Row| r.total as f64 / r.secs;
        println!(
            "| {store} | {batch} | {} | {:.0} ({:.0}–{:.0}) | {:.0} | {} | {} |",
            median.total,
            rate(median),
            rate(slow),
            rate(fast),
            rate(median) / batch as f64,
            median.bytes / median.total as u64,
            median.bytes_purged
        );
    }
}
