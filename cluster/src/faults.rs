//! Fault injection for partition tests: a node can be told to act as if the network between it
//! and some peers were cut, both ways. Its RPCs to a cut peer fail as unreachable before any
//! byte is sent ([`crate::network::Dialer`]), and a cut peer's RPCs to it are refused
//! ([`crate::node::Node::admits_peer`]), so cutting the same pair on both nodes is a symmetric
//! partition. Client traffic is never cut: a client on the minority side sees what it would in
//! a real partition.
//!
//! Off unless the operator turns it on (`cluster.fault_injection = true`): a disabled set
//! refuses every change, and the admin route that drives it answers 404. Production
//! configurations leave it off.

use crate::types::NodeId;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

/// The peers this node is cut from. Cheap to clone; clones share the set.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    enabled: bool,
    cut: Arc<RwLock<BTreeSet<NodeId>>>,
}

/// Fault injection is off on this node.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("fault injection is off on this node (set cluster.fault_injection = true to use it)")]
pub struct FaultsDisabled;

impl Faults {
    /// A set that may be changed only when `enabled`.
    pub fn new(enabled: bool) -> Faults {
        Faults {
            enabled,
            cut: Arc::default(),
        }
    }

    /// Whether this node accepts fault injection.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Replaces the set of cut peers (empty heals every cut).
    pub fn set_cut(&self, peers: BTreeSet<NodeId>) -> Result<(), FaultsDisabled> {
        if !self.enabled {
            return Err(FaultsDisabled);
        }
        *self.cut.write().unwrap_or_else(|e| e.into_inner()) = peers;
        Ok(())
    }

    /// The peers cut now.
    pub fn cut(&self) -> BTreeSet<NodeId> {
        self.cut.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when traffic with `peer` is cut.
    pub fn is_cut(&self, peer: NodeId) -> bool {
        self.enabled
            && self
                .cut
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&peer)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_disabled_set_refuses_changes_and_cuts_nothing() {
        let f = Faults::new(false);
        assert!(f.set_cut([2].into()).is_err());
        assert!(!f.is_cut(2));
    }

    #[test]
    fn an_enabled_set_cuts_and_heals() {
        let f = Faults::new(true);
        let shared = f.clone();
        f.set_cut([2, 3].into()).unwrap();
        assert!(shared.is_cut(2) && shared.is_cut(3) && !shared.is_cut(1));
        f.set_cut(BTreeSet::new()).unwrap();
        assert!(!shared.is_cut(2));
    }
}
