//! Log store figures: entries/s with one fsync per batch, at batch sizes 1 and 64, and bytes on
//! disk per entry, for a realistic command (an upsert of one musician). Prints a table; asserts
//! only that every entry reads back and that purging frees the disk.
//!
//! `cargo test -p mussikon-cluster --release --test log_bench -- --nocapture`

use mussikon_cluster::{LogStore, Request, TypeConfig};
use mussikon_engine::generate::{GenConfig, Generator};
use mussikon_engine::Command;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::time::Instant;

fn entry(index: u64, cmd: &Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request(cmd.clone())),
    }
}

async fn append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    log.append_durably(entries).await.expect("append");
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
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
    println!("| batch | entries | entries/s | fsyncs/s | bytes/entry on disk |");
    println!("| --- | --- | --- | --- | --- |");
    for (batch, total) in [(1usize, 300usize), (64, 6400)] {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut log = LogStore::open(tmp.path()).expect("open");
        let started = Instant::now();
        let mut index = 1u64;
        while (index as usize) <= total {
            let entries = (0..batch)
                .map(|i| entry(index + i as u64, &cmds[(index as usize + i) % cmds.len()]))
                .collect();
            append(&mut log, entries).await;
            index += batch as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        let bytes = dir_bytes(tmp.path());
        println!(
            "| {batch} | {total} | {:.0} | {:.0} | {} |",
            total as f64 / secs,
            (total / batch) as f64 / secs,
            bytes / total as u64
        );
        let back = log
            .try_get_log_entries(1..=total as u64)
            .await
            .expect("read");
        assert_eq!(back.len(), total);
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), total as u64))
            .await
            .expect("purge");
        assert!(dir_bytes(tmp.path()) < 4096, "purge frees the segments");
    }
}
