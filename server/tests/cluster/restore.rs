//! A cluster's backup restored into a new cluster: `mussikon restore --cluster` marks the
//! directory, its node (the lowest id of `--peers`) starts a new cluster whose first state is
//! the restored data, and the other members (empty static peers, or joined) receive it as a
//! snapshot. Without the flag, or against Raft state, or on another id than the lowest, the
//! start or the restore is refused with a message naming the rule.

use crate::harness::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;

fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `GET path` on node `id` (a list route, one page), as JSON.
async fn list(c: &Cluster, id: u64, path: &str) -> Value {
    let r = c.get(id, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path} on node {id}");
    r.json().await.unwrap()
}

/// `mussikon export` of node `id`'s (stopped) data directory into `out`.
async fn export(c: &Cluster, id: u64, out: &Path) {
    let (ok, log) = mussikon(&[
        "export",
        "--data-dir",
        text(&c.nodes[&id].dir),
        "--out",
        text(out),
    ])
    .await;
    assert!(ok, "export of node {id}: {log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_backup_restored_with_cluster_starts_a_new_cluster_holding_every_acknowledged_write(
) {
    // The old cluster: writes through every node, a gig and a booking.
    let mut old = Cluster::start(3, &[]).await;
    let acked = write_musicians(&old, &[1, 2, 3], "m", 30).await;
    let r = old.put(2, "/v1/gigs/g-1", &gig("g-1", "2026-12-05")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(old.book(3, "g-1", "m-0").await, StatusCode::CREATED);
    let leader = old.wait_converged().await;
    let musicians = list(&old, leader, "/v1/musicians?limit=1000").await;
    let gigs = list(&old, leader, "/v1/gigs?limit=1000").await;
    assert_eq!(musicians["items"].as_array().unwrap().len(), 30);

    // The backup, as backup.sh takes it: a follower stopped (the other two keep the quorum),
    // its data directory exported.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    old.stop(follower).await;
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("backup.snap");
    export(&old, follower, &backup).await;

    // Disaster: the old cluster is gone. The backup is restored for a new cluster into the
    // directory of its node 1; nodes 2 and 3 start empty with the same static peers (the
    // StatefulSet's way), and node 4 joins later (`mussikon cluster join`).
    drop(old);
    let root = tempfile::tempdir().unwrap();
    let (ok, out) = mussikon(&[
        "restore",
        "--cluster",
        "--data-dir",
        text(&root.path().join("node1")),
        "--in",
        text(&backup),
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("marked to start a NEW cluster"), "{out}");
    let mut new = Cluster::start_in(root, 3, &[]).await;
    new.wait_converged().await;
    assert!(
        !new.nodes[&1].dir.join("raft/bootstrap").exists(),
        "the bootstrap marker is consumed by the first start"
    );
    let log = std::fs::read_to_string(new.nodes[&1].dir.with_extension("log")).unwrap();
    assert!(
        log.contains("starting a new cluster from restored data"),
        "node 1 did not log its bootstrap"
    );
    for id in [2, 3] {
        // The empty peers received the restored data as a snapshot, not as log entries.
        new.wait_metric(id, "mussikon_raft_snapshot_bytes", 1.0)
            .await;
    }
    assert_all_present(&new, &[1, 2, 3], &acked).await;
    for id in 1..=3 {
        assert_eq!(
            list(&new, id, "/v1/musicians?limit=1000").await,
            musicians,
            "node {id}: the musicians (with their versions) as the old cluster had them"
        );
        assert_eq!(
            list(&new, id, "/v1/gigs?limit=1000").await,
            gigs,
            "node {id}: the gigs and their bookings as the old cluster had them"
        );
    }

    // The new cluster takes writes, grows, and every node ends with the same state.
    new.spawn_new(4).await;
    let addr = new.nodes[&4].peer_addr.clone();
    let (ok, out) = new.cli(2, &["join", "--id", "4", "--addr", &addr]).await;
    assert!(ok, "join 4: {out}");
    let mut all = acked.clone();
    all.extend(write_musicians(&new, &[4, 2, 3, 1], "after", 20).await);
    assert_eq!(
        new.book(4, "g-1", "m-0").await,
        StatusCode::CONFLICT,
        "the restored booking still holds the seat"
    );
    let leader = new.wait_converged().await;
    assert_all_present(&new, &[1, 2, 3, 4], &all).await;
    // Followers first, the leader last, so that no election appends an entry on some only.
    let mut order: Vec<u64> = (1..=4).filter(|id| *id != leader).collect();
    order.push(leader);
    for id in order {
        new.stop(id).await;
    }
    let dir = new._tmp.path().to_path_buf();
    for id in 1..=4 {
        export(&new, id, &dir.join(format!("n{id}.snap"))).await;
    }
    let first = std::fs::read(dir.join("n1.snap")).unwrap();
    for id in 2..=4 {
        assert!(
            std::fs::read(dir.join(format!("n{id}.snap"))).unwrap() == first,
            "the exports of nodes 1 and {id} differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_backup_starts_a_cluster_only_when_restored_for_one_and_as_its_lowest_id() {
    let mut old = Cluster::start(1, &[]).await;
    let acked = write_musicians(&old, &[1], "m", 3).await;
    old.stop(1).await;
    let tmp = old._tmp.path().to_path_buf();
    let backup = tmp.join("backup.snap");
    export(&old, 1, &backup).await;
    let restore = |dir: &Path, cluster: bool| {
        let dir = dir.to_path_buf();
        let backup = backup.clone();
        async move {
            let mut args = vec!["restore", "--data-dir", text(&dir), "--in", text(&backup)];
            if cluster {
                args.push("--cluster");
            }
            mussikon(&args).await
        }
    };
    let addr = format!("127.0.0.1:{}", free_port());

    // Restored without --cluster: a cluster node refuses it, and says how to do it.
    let plain = tmp.join("plain");
    let (ok, out) = restore(&plain, false).await;
    assert!(ok, "{out}");
    let err = serve_refused("1", &addr, &plain, &format!("1={addr}")).await;
    assert!(
        err.contains("holds single-node data") && err.contains("mussikon restore --cluster"),
        "{err}"
    );

    // --cluster into a directory with Raft state (the old node's): refused, nothing replaced.
    let (ok, out) = mussikon(&[
        "restore",
        "--cluster",
        "--force",
        "--data-dir",
        text(&old.nodes[&1].dir),
        "--in",
        text(&backup),
    ])
    .await;
    assert!(!ok, "restored over Raft state: {out}");
    assert!(
        out.contains("--cluster") && out.contains("holds Raft state (a Raft log)"),
        "{out}"
    );

    // Restored for a cluster, started as another id than the lowest of --peers: refused.
    let marked = tmp.join("marked");
    let (ok, out) = restore(&marked, true).await;
    assert!(ok, "{out}");
    let other = format!("127.0.0.1:{}", free_port());
    let err = serve_refused("2", &addr, &marked, &format!("1={other},2={addr}")).await;
    assert!(
        err.contains("cluster.peers") && err.contains("lowest id"),
        "{err}"
    );

    // Restored for a cluster and started as a one-voter cluster (its own lowest id): it serves
    // the backup, takes writes, and a restart does not start a new cluster again.
    let root = tempfile::tempdir().unwrap();
    let (ok, out) = restore(&root.path().join("node1"), true).await;
    assert!(ok, "{out}");
    let mut c = Cluster::start_in(root, 1, &[]).await;
    assert_all_present(&c, &[1], &acked).await;
    let mut all = acked.clone();
    all.extend(write_musicians(&c, &[1], "after", 3).await);
    assert!(!c.nodes[&1].dir.join("raft/bootstrap").exists());
    c.stop(1).await;
    c.restart(1).await;
    c.wait_leader(&[1]).await;
    assert_all_present(&c, &[1], &all).await;
}
