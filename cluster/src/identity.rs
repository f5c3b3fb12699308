//! A node's id, kept with its data.
//!
//! The first start of a cluster node writes its id to `{data dir}/raft/node-id` (decimal text,
//! fsynced); a later start given another id is refused, so a data directory is never run as
//! two different members. `--node-id auto` reads the id written there, and on a directory
//! without one draws a fresh one: a uniformly random integer in [`AUTO_IDS`] (above any
//! hand-picked id, and exact as a JSON number). That is how read replicas whose data
//! directory lives as long as their pod get an id no removed node ever had (the leader refuses
//! a removed node's id in any case).
//!
//! `{data dir}/raft/retired` marks a directory whose node was removed from the cluster (the pod
//! scripts write it once the removal is acknowledged). Its id can never serve again: with
//! `auto` the directory is cleared (it is a replica's copy of the replicated data) and a new
//! id drawn; with a fixed id the start is refused.

use crate::types::NodeId;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The range `auto` ids are drawn from: 2^32 ..= 2^53 - 1.
pub const AUTO_IDS: std::ops::RangeInclusive<NodeId> = (1 << 32)..=((1 << 53) - 1);

/// Name of the id file in the raft directory.
pub const ID_FILE: &str = "node-id";
/// Name of the marker of a removed node's directory.
pub const RETIRED_FILE: &str = "retired";

/// How a node is told its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeIdSetting {
    /// This id (≥ 1).
    Fixed(NodeId),
    /// The id kept in the data directory, drawn on first start.
    Auto,
}

impl FromStr for NodeIdSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(NodeIdSetting::Auto);
        }
        match s.parse::<NodeId>() {
            Ok(id) if id >= 1 => Ok(NodeIdSetting::Fixed(id)),
            _ => Err(format!("`{s}` must be an integer ≥ 1 or `auto`")),
        }
    }
}

impl std::fmt::Display for NodeIdSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeIdSetting::Fixed(id) => write!(f, "{id}"),
            NodeIdSetting::Auto => f.write_str("auto"),
        }
    }
}

/// Why a node's id could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The directory belongs to another id.
    #[error(
        "cluster.node_id: the data directory {dir} belongs to node {kept}, not {asked}; start \
         node {asked} on its own directory (or give --node-id {kept})"
    )]
    Mismatch {
        /// The directory.
        dir: PathBuf,
        /// The id kept there.
        kept: NodeId,
        /// The id asked for.
        asked: NodeId,
    },
    /// The directory's node was removed and a fixed id was given.
    #[error(
        "cluster.node_id: node {id} was removed from the cluster ({marker} exists) and a \
         removed node's id is never reused; start the node on an empty data directory with a \
         new id, or with --node-id auto"
    )]
    Retired {
        /// The removed id.
        id: NodeId,
        /// The marker file.
        marker: PathBuf,
    },
    /// The id file holds something else than an id.
    #[error("{path}: not a node id ({found:?}); the file holds the node's id in decimal")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// Reading or writing the directory failed.
    #[error("{path}: {source}")]
    Io {
        /// What was being read or written.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The id kept in `raft_dir`, if any.
pub fn kept_id(raft_dir: &Path) -> Result<Option<NodeId>, IdentityError> {
    let path = raft_dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<NodeId>() {
            Ok(id) if id >= 1 => Ok(Some(id)),
            _ => Err(IdentityError::Corrupt {
                path,
                found: text.chars().take(40).collect(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Marks `raft_dir` (a data directory's `raft/`) as a removed node's: the next start settles
/// it as the module comment says.
pub fn mark_retired(raft_dir: &Path) -> Result<(), IdentityError> {
    let marker = raft_dir.join(RETIRED_FILE);
    crate::log_store::write_atomic(raft_dir, RETIRED_FILE, b"").map_err(io(&marker))
}

/// Settles this node's id for `data_dir` (whose raft state is in `data_dir/raft`): checks a
/// fixed id against the kept one, or reads or draws the `auto` one, clearing a removed
/// node's directory first (see the module comment). Writes the id durably before returning.
pub fn settle(data_dir: &Path, setting: NodeIdSetting) -> Result<NodeId, IdentityError> {
    let raft_dir = data_dir.join("raft");
    let marker = raft_dir.join(RETIRED_FILE);
    let kept = kept_id(&raft_dir)?;
    if marker.exists() {
        match setting {
            NodeIdSetting::Fixed(id) => return Err(IdentityError::Retired { id, marker }),
            NodeIdSetting::Auto => {
                tracing::warn!(
                    dir = %data_dir.display(),
                    removed = ?kept,
                    "this data directory's node was removed from the cluster: clearing it and \
                     drawing a new node id (--node-id auto)"
                );
                clear_dir(data_dir)?;
                return settle(data_dir, setting);
            }
        }
    }
    let id = match (setting, kept) {
        (NodeIdSetting::Fixed(asked), Some(kept)) if asked != kept => {
            return Err(IdentityError::Mismatch {
                dir: data_dir.to_path_buf(),
                kept,
                asked,
            })
        }
        (_, Some(kept)) => return Ok(kept),
        (NodeIdSetting::Fixed(id), None) => id,
        (NodeIdSetting::Auto, None) => draw_id().map_err(io(&raft_dir))?,
    };
    std::fs::create_dir_all(&raft_dir).map_err(io(&raft_dir))?;
    crate::log_store::write_atomic(&raft_dir, ID_FILE, format!("{id}\n").as_bytes())
        .map_err(io(&raft_dir.join(ID_FILE)))?;
    Ok(id)
}

/// Removes everything inside `dir` (not `dir` itself).
fn clear_dir(dir: &Path) -> Result<(), IdentityError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(&path))?;
    }
    Ok(())
}

/// A uniformly random id in [`AUTO_IDS`].
fn draw_id() -> std::io::Result<NodeId> {
    let span = AUTO_IDS.end() - AUTO_IDS.start() + 1; // 2^53 - 2^32: a power of two times odd
    loop {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        let n = u64::from_le_bytes(bytes) >> 11; // 53 random bits
        if n < span {
            return Ok(AUTO_IDS.start() + n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_an_id_of_at_least_one_or_auto() {
        assert_eq!("7".parse(), Ok(NodeIdSetting::Fixed(7)));
        assert_eq!(" Auto ".parse(), Ok(NodeIdSetting::Auto));
        for bad in ["0", "-1", "x", "", "1.5"] {
            let err = bad.parse::<NodeIdSetting>().expect_err(bad);
            assert!(err.contains("integer ≥ 1 or `auto`"), "{err}");
        }
    }

    #[test]
    fn a_fixed_id_is_kept_and_another_one_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            settle(dir.path(), NodeIdSetting::Fixed(3)).expect("first"),
            3
        );
        assert_eq!(
            settle(dir.path(), NodeIdSetting::Fixed(3)).expect("again"),
            3
        );
        assert_eq!(settle(dir.path(), NodeIdSetting::Auto).expect("auto"), 3);
        let err = settle(dir.path(), NodeIdSetting::Fixed(4)).expect_err("another id");
        assert!(
            matches!(
                err,
                IdentityError::Mismatch {
                    kept: 3,
                    asked: 4,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("cluster.node_id: "), "{err}");
        assert_eq!(kept_id(&dir.path().join("raft")).expect("read"), Some(3));
    }

    #[test]
    fn auto_draws_a_fresh_id_once_and_keeps_it() {
        let a = tempfile::tempdir().expect("temp dir");
        let b = tempfile::tempdir().expect("temp dir");
        let first = settle(a.path(), NodeIdSetting::Auto).expect("draw");
        assert!(AUTO_IDS.contains(&first), "{first}");
        assert_eq!(settle(a.path(), NodeIdSetting::Auto).expect("kept"), first);
        let other = settle(b.path(), NodeIdSetting::Auto).expect("draw");
        assert_ne!(first, other, "two directories draw two ids");
    }

    #[test]
    fn a_removed_nodes_directory_is_cleared_under_auto_and_refused_under_a_fixed_id() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = settle(dir.path(), NodeIdSetting::Auto).expect("draw");
        std::fs::create_dir_all(dir.path().join("store")).expect("store dir");
        std::fs::write(dir.path().join("store/data"), b"replicated").expect("data");
        mark_retired(&dir.path().join("raft")).expect("marker");
        let err = settle(dir.path(), NodeIdSetting::Fixed(old)).expect_err("retired");
        assert!(
            matches!(err, IdentityError::Retired { id, .. } if id == old),
            "{err}"
        );
        assert!(
            dir.path().join("store/data").exists(),
            "a refused start clears nothing"
        );
        let new = settle(dir.path(), NodeIdSetting::Auto).expect("redraw");
        assert_ne!(new, old);
        assert!(
            !dir.path().join("store").exists(),
            "the removed node's data is cleared"
        );
        assert!(!dir.path().join("raft").join(RETIRED_FILE).exists());
        assert_eq!(settle(dir.path(), NodeIdSetting::Auto).expect("kept"), new);
    }

    #[test]
    fn a_corrupt_id_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("raft")).expect("dir");
        std::fs::write(dir.path().join("raft").join(ID_FILE), b"abc").expect("file");
        let err = settle(dir.path(), NodeIdSetting::Auto).expect_err("corrupt");
        assert!(err.to_string().contains("node-id"), "{err}");
    }
}
