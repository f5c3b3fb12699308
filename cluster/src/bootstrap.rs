//! A new cluster started from a restored backup.
//!
//! A backup (`mussikon export`, the backup job's) is the engine's export stream: the data and
//! its applied sequence `S`, without the Raft annex. A cluster node refuses such a directory
//! unless it was restored *for* a cluster: `mussikon restore --cluster` writes the marker
//! `{data dir}/raft/bootstrap` ([`BOOTSTRAP_FILE`]), after checking the directory holds no Raft
//! state ([`check_no_raft_state`]). The marker holds the node ids retired in the backed-up
//! cluster, when the backup carries them (a Raft snapshot file's trailer; `mussikon export`
//! writes none), one decimal id per line, `#` lines being comments.
//!
//! The first start of a marked directory ([`settle`]) makes the restored data the new cluster's
//! first state, without replaying anything: in one engine transaction
//! ([`Engine::advance`]) the applied sequence goes from `S` to `S + 1` and the annex says that
//! log index `S` (engine sequence = index + 1), term 0, is applied, with the membership of the
//! initial members (`--peers`) as of that index and the carried retired ids. Then the marker
//! is removed. openraft, starting on an empty log whose state machine is at index `S`, purges
//! its log up to `S` and builds a snapshot of the state (`StateMachine::build`): every other
//! node — an empty static peer, or one added with `mussikon cluster join` — receives that
//! snapshot and installs it before the log's next entries. The node campaigns like any member
//! after its election timeout; writes go on at index `S + 1`, so versions keep growing past
//! the backup's.
//!
//! Rules, each refused with a message naming it: the marked node must be the lowest id of
//! `--peers` (the only one that may initialize a cluster: an empty lower one would otherwise
//! initialize a cluster of its own), its log must be empty (no vote, entries or purge), and
//! no initial member may have a retired id. A crash after the transaction but before the marker
//! is removed leaves both: the next start finds the annex already written and only removes the
//! marker.

use crate::log_store::{sync_dir, write_atomic, LogStore};
use crate::node::{NodeConfig, StartError};
use crate::state_machine::encode_annex;
use crate::types::NodeId;
use mussikon_engine::Engine;
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Name of the marker, in the raft directory, of a directory restored for a new cluster.
pub const BOOTSTRAP_FILE: &str = "bootstrap";

/// Why a directory cannot be marked, or its marker not read.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The directory already belongs to a cluster node.
    #[error(
        "{dir} holds Raft state ({what}): a new cluster starts from a directory without it; \
         restore into an empty data directory, or remove {dir} first (its log and snapshots \
         belong to the old cluster; the restore replaces the data anyway)"
    )]
    RaftState {
        /// The raft directory.
        dir: PathBuf,
        /// What was found.
        what: String,
    },
    /// A marker line is not a node id.
    #[error("{path}, line {line}: not a node id ({found:?}); the file lists retired node ids in decimal, one per line")]
    Corrupt {
        /// The marker.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What it holds.
        found: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// What was being read or written.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses a raft directory (a data directory's `raft/`) that holds Raft state: a log with a
/// vote, entries or a purge point, snapshots, or a removed node's marker. The node id file
/// alone is not state (the id is kept with the data and checked at start), nor is a marker.
pub fn check_no_raft_state(raft_dir: &Path) -> Result<(), BootstrapError> {
    let refuse = |what: &str| {
        Err(BootstrapError::RaftState {
            dir: raft_dir.to_path_buf(),
            what: what.to_string(),
        })
    };
    if raft_dir.join(crate::identity::RETIRED_FILE).exists() {
        return refuse("a removed node's marker");
    }
    let log_dir = raft_dir.join("log");
    if log_dir.exists() {
        let log = LogStore::open(&log_dir).map_err(|e| BootstrapError::Io {
            path: log_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if !log.is_fresh() {
            return refuse("a Raft log");
        }
    }
    let snapshots = raft_dir.join("snapshots");
    if snapshots.exists()
        && std::fs::read_dir(&snapshots)
            .map_err(io(&snapshots))?
            .next()
            .is_some()
    {
        return refuse("Raft snapshots");
    }
    Ok(())
}

/// Marks `raft_dir` as holding restored data that starts a new cluster, with the node ids
/// `retired` in the backed-up cluster (written durably).
pub fn mark(raft_dir: &Path, retired: &BTreeSet<NodeId>) -> Result<(), BootstrapError> {
    std::fs::create_dir_all(raft_dir).map_err(io(raft_dir))?;
    let mut text = String::from(
        "# mussikon restore --cluster: the first start of this directory begins a new cluster\n\
         # with the restored data as its first state. Node ids retired in the backed-up cluster:\n",
    );
    for id in retired {
        text.push_str(&format!("{id}\n"));
    }
    write_atomic(raft_dir, BOOTSTRAP_FILE, text.as_bytes())
        .map_err(io(&raft_dir.join(BOOTSTRAP_FILE)))
}

/// The retired ids of `raft_dir`'s marker, or `None` when it is not marked.
pub fn marked(raft_dir: &Path) -> Result<Option<BTreeSet<NodeId>>, BootstrapError> {
    let path = raft_dir.join(BOOTSTRAP_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut retired = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<NodeId>() {
            Ok(id) if id >= 1 => {
                retired.insert(id);
            }
            _ => {
                return Err(BootstrapError::Corrupt {
                    path,
                    line: n + 1,
                    found: line.chars().take(40).collect(),
                })
            }
        }
    }
    Ok(Some(retired))
}

fn unmark(raft_dir: &Path) -> Result<(), BootstrapError> {
    let path = raft_dir.join(BOOTSTRAP_FILE);
    std::fs::remove_file(&path).map_err(io(&path))?;
    sync_dir(raft_dir).map_err(io(raft_dir))
}

/// The refusal of a directory with engine data and no Raft state that was not restored for a
/// cluster.
fn single_node_data() -> StartError {
    StartError::Config(
        "the data directory holds single-node data; a cluster node starts from an empty \
         directory (load data through the cluster once it runs), or from a backup restored with \
         `mussikon restore --cluster` to start a new cluster (docs/operations.md, \"Restore from \
         a backup\")"
            .into(),
    )
}

fn storage(e: impl std::fmt::Display) -> StartError {
    StartError::Storage(e.to_string())
}

/// Settles the engine data a node starts on, before openraft opens it: refuses single-node
/// data that was not restored for a cluster, and makes data restored for one the new cluster's
/// first state (see the module comment). `log` is the node's log, opened.
pub(crate) fn settle(
    config: &NodeConfig,
    engine: &Engine,
    log: &LogStore,
) -> Result<(), StartError> {
    let marker = marked(&config.dir).map_err(|e| StartError::Config(e.to_string()))?;
    let annex = engine.annex().map_err(storage)?;
    let applied = engine.applied_seq().map_err(storage)?;
    let Some(retired) = marker else {
        if annex.is_none() && applied > 0 {
            return Err(single_node_data());
        }
        return Ok(());
    };
    let file = config.dir.join(BOOTSTRAP_FILE);
    if !log.is_fresh() {
        return Err(StartError::Config(format!(
            "{}: the directory was restored to start a new cluster, but its Raft log is not \
             empty; restore the backup again into an empty data directory with `mussikon \
             restore --cluster`",
            file.display()
        )));
    }
    if annex.is_some() {
        tracing::info!(
            "the restored data was already made the new cluster's first state (the start was \
             interrupted): removing the bootstrap marker"
        );
        return unmark(&config.dir).map_err(|e| StartError::Storage(e.to_string()));
    }
    let lowest = config.peers.keys().next().copied();
    if lowest != Some(config.id) {
        return Err(StartError::Config(format!(
            "cluster.peers: node {} holds data restored to start a new cluster (`mussikon \
             restore --cluster`), so it must be the lowest id of the initial members, the one \
             that initializes the cluster; the lowest is {}. Restore into that node's directory, \
             or list the peers so that this node has the lowest id",
            config.id,
            lowest.map_or_else(|| "none".to_string(), |l| l.to_string()),
        )));
    }
    if let Some(id) = config.peers.keys().find(|id| retired.contains(id)) {
        return Err(StartError::Config(format!(
            "cluster.peers: node {id} was removed from the backed-up cluster, and a removed \
             node's id is never reused; give that member a new id"
        )));
    }
    // The restored data becomes log index `applied` (engine sequence `applied + 1`): one entry
    // past the backup, whose annex holds the first membership.
    let log_id = LogId::new(CommittedLeaderId::new(0, 0), applied);
    let nodes: BTreeMap<NodeId, BasicNode> = config
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    let voters: BTreeSet<NodeId> = nodes.keys().copied().collect();
    let membership = StoredMembership::new(Some(log_id), Membership::new(vec![voters], nodes));
    let annex = encode_annex(Some(log_id), membership, &retired).map_err(storage)?;
    engine.advance(applied + 1, &annex).map_err(storage)?;
    engine.flush().map_err(storage)?;
    unmark(&config.dir).map_err(|e| StartError::Storage(e.to_string()))?;
    tracing::info!(
        node_id = config.id,
        applied_seq = applied,
        members = ?config.peers,
        retired = ?retired,
        "starting a new cluster from restored data (its first state is log index {applied})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_keeps_the_retired_ids_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let raft = dir.path().join("raft");
        assert!(marked(&raft).expect("unmarked").is_none());
        mark(&raft, &BTreeSet::from([4, 9])).expect("mark");
        assert_eq!(marked(&raft).expect("marked"), Some(BTreeSet::from([4, 9])));
        std::fs::write(raft.join(BOOTSTRAP_FILE), "# c\n4\nfour\n").expect("write");
        let err = marked(&raft).expect_err("corrupt");
        assert!(
            matches!(err, BootstrapError::Corrupt { line: 3, .. }),
            "{err}"
        );
        unmark(&raft).expect("unmark");
        assert!(marked(&raft).expect("unmarked").is_none());
    }

    #[test]
    fn raft_state_is_refused_but_a_node_id_alone_is_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let raft = dir.path().join("raft");
        check_no_raft_state(&raft).expect("missing dir");
        crate::identity::settle(dir.path(), crate::identity::NodeIdSetting::Fixed(1)).expect("id");
        LogStore::open(raft.join("log")).expect("empty log");
        check_no_raft_state(&raft).expect("id and an empty log");
        std::fs::create_dir_all(raft.join("snapshots")).expect("dir");
        std::fs::write(raft.join("snapshots").join("x.snap"), b"x").expect("file");
        let err = check_no_raft_state(&raft).expect_err("snapshots");
        assert!(err.to_string().contains("Raft snapshots"), "{err}");
    }
}
