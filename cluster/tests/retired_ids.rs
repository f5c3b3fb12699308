//! The state machine remembers every node id a membership entry dropped, keeps the set across
//! restarts, and carries it to a node that installs a snapshot — so the leader can refuse to
//! add a removed node's id again.
#![allow(clippy::result_large_err)] // openraft fixes StorageError as the error type

use mussikon_cluster::{StateMachine, TypeConfig};
use mussikon_engine::{Engine, SnapshotSummary};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod support;

fn open(dir: &Path) -> StateMachine {
    let engine = support::replica_engine(&dir.join("engine"));
    StateMachine::open(engine, dir.join("snapshots")).expect("state machine")
}

/// A state machine in `dir` that applied `entries`, and the snapshot it then built.
async fn snapshot_after(dir: &Path, entries: Vec<Entry<TypeConfig>>) -> Snapshot<TypeConfig> {
    let mut sm = open(dir);
    sm.apply(entries).await.expect("apply");
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot")
}

/// The snapshot's file, what the engine's own reader (`Engine::restore`, a build that knows no
/// trailer) makes of it, and a fresh state machine in `dir` (checked to know no retired id)
/// that installed it.
async fn read_and_install(
    dir: &Path,
    snapshot: Snapshot<TypeConfig>,
) -> (Vec<u8>, SnapshotSummary, StateMachine) {
    let bytes = std::fs::read(&snapshot.snapshot.path).expect("snapshot file");
    let restored = tempfile::tempdir().expect("temp dir");
    let summary = Engine::restore(restored.path(), &bytes[..], true).expect("restores");
    let mut sm = open(dir);
    assert!(sm.retired().expect("retired").is_empty());
    sm.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    (bytes, summary, sm)
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn nodes(ids: &[u64]) -> BTreeMap<u64, BasicNode> {
    ids.iter()
        .map(|id| (*id, BasicNode::new(format!("127.0.0.1:{}", 9000 + id))))
        .collect()
}

/// A membership entry of `voters` (one config) or a joint one (two), with `learners` too.
fn membership(index: u64, configs: Vec<&[u64]>, all: &[u64]) -> Entry<TypeConfig> {
    let configs: Vec<BTreeSet<u64>> = configs
        .into_iter()
        .map(|c| c.iter().copied().collect())
        .collect();
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(Membership::new(configs, nodes(all))),
    }
}

fn blank(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Blank,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

#[test]
fn ids_a_membership_entry_drops_are_retired_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let mut sm = open(dir.path());
        assert!(sm.retired().expect("retired").is_empty());
        sm.apply(vec![
            membership(0, vec![&[1, 2, 3]], &[1, 2, 3]),
            blank(1),
            // Learner 7 joins, then 3 is removed through a joint config, then learner 7 leaves.
            membership(2, vec![&[1, 2, 3]], &[1, 2, 3, 7]),
            membership(3, vec![&[1, 2, 3], &[1, 2]], &[1, 2, 3, 7]),
        ])
        .await
        .expect("apply");
        assert!(
            sm.retired().expect("retired").is_empty(),
            "a joint config drops nobody yet"
        );
        sm.apply(vec![
            membership(4, vec![&[1, 2]], &[1, 2, 7]),
            membership(5, vec![&[1, 2]], &[1, 2]),
        ])
        .await
        .expect("apply");
        assert_eq!(sm.retired().expect("retired"), BTreeSet::from([3, 7]));
        let (applied, m) = sm.applied_state().await.expect("applied state");
        assert_eq!(applied, Some(log_id(5)));
        assert_eq!(m.log_id(), &Some(log_id(5)));
    });
    let sm = open(dir.path());
    assert_eq!(sm.retired().expect("retired"), BTreeSet::from([3, 7]));
}

#[test]
fn a_snapshot_carries_the_retired_ids_to_the_node_that_installs_it() {
    let leader_dir = tempfile::tempdir().expect("temp dir");
    let follower_dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let snapshot = snapshot_after(
            leader_dir.path(),
            vec![
                membership(0, vec![&[1, 2, 3, 4]], &[1, 2, 3, 4]),
                membership(1, vec![&[1, 2, 3]], &[1, 2, 3]),
            ],
        )
        .await;
        let (bytes, summary, mut follower) = read_and_install(follower_dir.path(), snapshot).await;
        assert!(bytes.ends_with(mussikon_cluster::state_machine::RETIRED_MAGIC));
        // A build that knows no trailer reads the export stream up to its end frame.
        assert_eq!(summary.applied_seq, 2);
        assert_eq!(follower.retired().expect("retired"), BTreeSet::from([4]));
        let (applied, m) = follower.applied_state().await.expect("applied state");
        assert_eq!(applied, Some(log_id(1)));
        assert_eq!(
            m.membership().voter_ids().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // Later drops add to the installed set.
        follower
            .apply(vec![membership(2, vec![&[1, 2]], &[1, 2])])
            .await
            .expect("apply");
        assert_eq!(follower.retired().expect("retired"), BTreeSet::from([3, 4]));
    });
}

#[test]
fn a_snapshot_without_retired_ids_is_a_plain_export_stream() {
    let leader_dir = tempfile::tempdir().expect("temp dir");
    let follower_dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let snapshot = snapshot_after(
            leader_dir.path(),
            vec![membership(0, vec![&[1, 2, 3]], &[1, 2, 3])],
        )
        .await;
        // The engine's own reader takes the file whole, as a build that knows no trailer does.
        let (bytes, _, follower) = read_and_install(follower_dir.path(), snapshot).await;
        assert!(!bytes.ends_with(mussikon_cluster::state_machine::RETIRED_MAGIC));
        assert!(follower.retired().expect("retired").is_empty());
    });
}
