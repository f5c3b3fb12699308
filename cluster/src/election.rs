//! Standing for election at once when a candidate that cannot win asks for this node's vote.
//!
//! openraft 0.9 lets a follower stand only when its own timer fires: the leader lease (the
//! greater election timeout) plus a random election timeout after it last heard from its
//! leader. When the leader dies, the first timer to fire may be that of a follower whose log is
//! behind. The other follower refuses it (its own log is longer) and waits for its own timer;
//! it then stands at the candidate's term, where openraft orders the votes of one term by node
//! id, so a candidate with the greater id refuses it in turn, and a second round follows. That
//! second round made about one SIGKILL failover in six take 1.3 s instead of 0.8 s
//! (docs/perf.md, "Failover").
//!
//! Promises:
//! - [`stand_term`] answers a term only when the vote was refused, this node's log is longer
//!   than the candidate's, this node followed a leader (a committed vote) it has not heard from
//!   for longer than the leader lease, and the candidate stands at a greater term than this
//!   node's: exactly when this node would stand anyway once its timer fires, and when the
//!   candidate cannot win without it. The term answered is the least that wins over the
//!   candidate's vote.
//! - The node stands only when, besides, the leader it followed cannot be reached at all
//!   (`Node::leader_is_gone`: connection refused, another node at its address, or cut by
//!   fault injection). A leader that is only slow, a starved process that still accepts
//!   connections, is left to the election timers as before, so a starved moment does not
//!   turn into a leader change any sooner than it did.
//! - [`stand_at`] grants no vote to another node and writes no log: it stands through
//!   openraft's own election (a vote for itself, persisted by openraft, then
//!   `trigger().elect()`), so Raft's safety stays openraft's; only the moment changes.
//! - [`LeaderContact`] is when this node last heard from a leader, as the peer RPCs it
//!   served saw it; it never makes a leader look alive for longer than openraft thinks it is,
//!   to within the time an RPC takes.

use crate::types::{NodeId, Raft};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::Vote;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Elections this node stood at once, refusing a candidate whose log was behind.
pub const EARLY_ELECTIONS_TOTAL: &str = "mussikon_raft_early_elections_total";

/// When this node last heard from a leader: an append-entries (heartbeats are empty ones) or
/// a snapshot it did not refuse for a higher vote.
#[derive(Debug, Default)]
pub(crate) struct LeaderContact(Mutex<Option<Instant>>);

impl LeaderContact {
    /// Records contact from a leader now.
    pub(crate) fn heard(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether no leader has been heard from for longer than `lease` (or ever, since start).
    pub(crate) fn silent_for_longer_than(&self, lease: Duration) -> bool {
        self.silent_at(lease, Instant::now())
    }

    /// [`LeaderContact::silent_for_longer_than`] as of `now`.
    fn silent_at(&self, lease: Duration, now: Instant) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|at| now.saturating_duration_since(at) > lease)
    }
}

/// The term at which node `me` should stand at once, having answered `resp` to the vote
/// request `req`, or `None` when it should wait for its own timer (see the module's promises).
/// `leader_silent`: no leader heard from for longer than the lease.
pub(crate) fn stand_term(
    me: NodeId,
    req: &VoteRequest<NodeId>,
    resp: &VoteResponse<NodeId>,
    leader_silent: bool,
) -> Option<u64> {
    let mine = resp.vote.leader_id();
    let candidate = req.vote.leader_id();
    let refused_for_its_log = !resp.vote_granted && resp.last_log_id > req.last_log_id;
    // An uncommitted vote: this node is itself standing, or voted in this election already
    // (for a candidate whose log is at least its own); let that election run.
    if !refused_for_its_log || !resp.vote.is_committed() || !leader_silent {
        return None;
    }
    if candidate.term <= mine.term || candidate.node_id == me {
        return None;
    }
    // Votes of one term are ordered by node id: at the candidate's term this node wins only
    // over a smaller id.
    if me > candidate.node_id {
        Some(candidate.term)
    } else {
        candidate.term.checked_add(1)
    }
}

/// Stands for election at `term` (greater than this node's): votes for itself at `term - 1`
/// when that is above its current term, then asks openraft to elect, which stands at the next
/// term. `resp` is the answer this node just gave, whose last log id its self-vote carries.
pub(crate) async fn stand_at(
    raft: &Raft,
    me: NodeId,
    term: u64,
    resp: &VoteResponse<NodeId>,
) -> Result<(), String> {
    let mine = resp.vote.leader_id().term;
    let before = term.saturating_sub(1);
    if before > mine {
        let own = VoteRequest::new(Vote::new(before, me), resp.last_log_id);
        let answer = raft.vote(own).await.map_err(|e| e.to_string())?;
        if !answer.vote_granted {
            return Err(format!(
                "openraft refused this node's vote for itself at term {before} (vote now {})",
                answer.vote
            ));
        }
    }
    raft.trigger().elect().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    /// One vote request and this node's answer: node `me` followed leader 1 at term 5 (its vote
    /// committed or not) and holds the log to 5-100; `candidate` asked at `term` with its log
    /// ending at `cand_log`.
    struct Case {
        why: &'static str,
        me: NodeId,
        candidate: NodeId,
        term: u64,
        cand_log: Option<LogId<NodeId>>,
        granted: bool,
        committed: bool,
        silent: bool,
        stands_at: Option<u64>,
    }

    /// The failover case (candidate 3 at term 6, its log behind, the leader silent), which each
    /// case below changes in one respect.
    fn failover() -> Case {
        Case {
            why: "node 2 loses a tie at term 6 to node 3: it stands at 7",
            me: 2,
            candidate: 3,
            term: 6,
            cand_log: log(5, 90),
            granted: false,
            committed: true,
            silent: true,
            stands_at: Some(7),
        }
    }

    #[test]
    fn stands_only_against_a_refused_candidate_with_a_shorter_log_after_the_leader_fell_silent() {
        let cases = [
            failover(),
            Case {
                why: "node 4 wins the tie: 6 is enough",
                me: 4,
                stands_at: Some(6),
                ..failover()
            },
            Case {
                why: "a candidate whose term ran ahead: above its term",
                term: 9,
                stands_at: Some(10),
                ..failover()
            },
            Case {
                why: "an empty log is behind",
                cand_log: None,
                ..failover()
            },
            Case {
                why: "the leader was heard from within the lease: wait",
                silent: false,
                stands_at: None,
                ..failover()
            },
            Case {
                why: "granted: the candidate can win",
                granted: true,
                stands_at: None,
                ..failover()
            },
            Case {
                why: "equal logs: not refused for its log",
                cand_log: log(5, 100),
                stands_at: None,
                ..failover()
            },
            Case {
                why: "the candidate's log is longer",
                cand_log: log(6, 101),
                stands_at: None,
                ..failover()
            },
            Case {
                why: "an uncommitted vote: an election is under way",
                committed: false,
                stands_at: None,
                ..failover()
            },
            Case {
                why: "the candidate's term is not above this node's",
                term: 5,
                stands_at: None,
                ..failover()
            },
            Case {
                why: "a request in its own name (stand_at's vote for itself)",
                candidate: 2,
                stands_at: None,
                ..failover()
            },
            Case {
                why: "no term beyond u64",
                term: u64::MAX,
                stands_at: None,
                ..failover()
            },
        ];
        for c in cases {
            let mut vote = Vote::new(5, 1);
            if c.committed {
                vote.commit();
            }
            let req = VoteRequest::new(Vote::new(c.term, c.candidate), c.cand_log);
            let resp = VoteResponse::new(vote, log(5, 100), c.granted);
            assert_eq!(
                stand_term(c.me, &req, &resp, c.silent),
                c.stands_at,
                "{}",
                c.why
            );
        }
    }

    #[test]
    fn leader_contact_is_silent_until_heard_and_again_after_the_lease() {
        let c = LeaderContact::default();
        assert!(c.silent_for_longer_than(Duration::from_secs(3600)));
        c.heard();
        assert!(!c.silent_for_longer_than(Duration::from_secs(3600)));
        let lease = Duration::from_millis(400);
        let later = Instant::now() + Duration::from_secs(2);
        assert!(c.silent_at(lease, later));
        assert!(!c.silent_at(Duration::from_secs(3), later));
    }
}
