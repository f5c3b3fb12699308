//! Leadership handover (`mussikon cluster transfer-leader|step-down`, `POST
//! /v1/cluster/leader|step-down`): leadership moves to the voter asked for, asked through any
//! node, while writers go on through every node and none of their writes fails (with three
//! voters and with five); a follower's step-down changes nothing; a handover that cannot happen
//! is refused and leaves the leader leading.

use crate::harness::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn term(status: &Value) -> u64 {
    status["term"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn leadership_moves_to_the_voter_asked_for_and_no_write_fails_meanwhile() {
    let c = Cluster::start(3, &[]).await;
    let first = c.wait_leader(&[1, 2, 3]).await;
    let term_before = term(&c.status(first).await.unwrap());
    let bases: Vec<String> = [1, 2, 3].iter().map(|id| c.url(*id, "")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| steady_writer(&format!("w{w}"), bases.clone(), stop.clone()))
        .collect();
    // Two handovers, each asked through a node that is neither leader nor target, while the
    // writers go on: to one follower, then back to the first leader.
    let mut leader = first;
    for target in [if first == 1 { 2 } else { 1 }, first] {
        let via = [1, 2, 3]
            .into_iter()
            .find(|n| *n != leader && *n != target)
            .unwrap();
        let (ok, out) = c
            .cli(via, &["transfer-leader", "--to", &target.to_string()])
            .await;
        assert!(ok, "transfer-leader to {target} via {via}: {out}");
        assert_eq!(c.wait_leader(&[1, 2, 3]).await, target, "{out}");
        leader = target;
    }
    let term_after = term(&c.status(leader).await.unwrap());
    assert!(
        term_after >= term_before + 2,
        "{term_before} → {term_after}"
    );
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        let (ids, other) = w.await.unwrap();
        assert_eq!(other, 0, "a write failed during a handover");
        acked.extend(ids);
    }
    assert!(acked.len() >= 4, "the writers made no progress: {acked:?}");
    c.wait_converged().await;
    for node in [1, 2, 3] {
        for id in &acked {
            let r = c
                .get(node, &format!("/v1/musicians/{id}?consistency=stale"))
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{id} on node {node}");
        }
    }
    let handovers = "mussikon_raft_leader_handovers_total{outcome=\"ok\"}";
    c.wait_metric(first, handovers, 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn step_down_hands_over_only_from_the_leader_and_impossible_handovers_are_refused() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|n| *n != leader).unwrap();
    let term_before = term(&c.status(leader).await.unwrap());

    // A follower has nothing to hand over: same leader, same term.
    let (ok, out) = c.cli(follower, &["step-down"]).await;
    assert!(ok, "{out}");
    let after: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(after["leader"].as_u64(), Some(leader), "{out}");
    assert_eq!(term(&after), term_before, "{out}");

    // Not a voter: refused with the field and the rule; the leader still leads.
    let (ok, out) = c.cli(follower, &["transfer-leader", "--to", "99"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("422") && out.contains("not a voter"), "{out}");
    assert_eq!(c.wait_leader(&[1, 2, 3]).await, leader);

    // A body the API's decoder refuses: 422 naming the field, as on every route.
    let r = c
        .http
        .post(c.url(follower, "/v1/cluster/leader"))
        .header("content-type", "application/json")
        .body(r#"{"node_id":"two"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("node_id"));

    // A target that is down cannot catch up: refused (503), and the leader keeps leading and
    // writing.
    let down = [1, 2, 3]
        .into_iter()
        .find(|n| *n != leader && *n != follower)
        .unwrap();
    c.sigkill(down);
    let r = c
        .put(leader, "/v1/musicians/while-down", &musician("while-down"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (ok, out) = c
        .cli(follower, &["transfer-leader", "--to", &down.to_string()])
        .await;
    assert!(!ok, "{out}");
    assert!(out.contains("503") && out.contains("catch up"), "{out}");
    assert_eq!(c.wait_leader(&[leader, follower]).await, leader);
    let r = c
        .put(
            follower,
            "/v1/musicians/after-refusal",
            &musician("after-refusal"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    c.restart(down).await;
    c.wait_converged().await;

    // The leader steps down: someone else leads, and writes through it go on.
    let (ok, out) = c.cli(leader, &["step-down"]).await;
    assert!(ok, "{out}");
    let next = c.wait_leader(&[1, 2, 3]).await;
    assert_ne!(next, leader, "{out}");
    let r = c
        .put(
            leader,
            "/v1/musicians/after-step-down",
            &musician("after-step-down"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// With five voters the target needs two followers' votes besides the leader's: its first round
/// gets only the leader's (the followers heard a heartbeat within their lease), and a later
/// round wins once the old leader, a follower by then, has stopped heartbeating and their
/// leases have run out, before any of them stands itself.
#[tokio::test(flavor = "multi_thread")]
async fn with_five_voters_leadership_moves_to_the_voter_asked_for() {
    let c = Cluster::start(5, &[]).await;
    let all = [1, 2, 3, 4, 5];
    let first = c.wait_leader(&all).await;
    let bases: Vec<String> = all.iter().map(|id| c.url(*id, "")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer("five", bases, stop.clone());
    let target = all.into_iter().find(|n| *n != first).unwrap();
    let (ok, out) = c
        .cli(first, &["transfer-leader", "--to", &target.to_string()])
        .await;
    assert!(ok, "transfer-leader to {target}: {out}");
    assert_eq!(c.wait_leader(&all).await, target, "{out}");
    stop.store(true, Ordering::Relaxed);
    let (acked, other) = writer.await.unwrap();
    assert_eq!(other, 0, "a write failed during the handover");
    assert!(!acked.is_empty());
}

/// When the leader dies, the first follower to stand may be the one whose log is behind. The
/// other refuses it for its log and, rather than wait for its own election timer (and then lose
/// a tie at the candidate's term to the greater id, a second round), stands at once at a term
/// that wins (`mussikon_cluster::election`). Here the follower with the longer log has the
/// smaller id and a long election timeout (a 3.1 s lease; its own timer would fire 6 s after
/// the leader's last heartbeat and lose that tie), and the other is cut from the leader, so its
/// log falls behind and it stands again and again, refused while the leader lives. After the
/// leader is killed, the longer log leads, by an early election (its counter), with every
/// acknowledged write.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_with_the_longer_log_outruns_a_candidate_whose_log_is_behind() {
    use crate::partition::{cut, FAULTS};
    let mut c = Cluster::start(3, FAULTS).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
    let (longer, behind) = (followers[0], followers[1]);
    c.stop(longer).await;
    c.restart_with(
        longer,
        &[
            "--set",
            "cluster.election_min_ms=3000",
            "--set",
            "cluster.election_max_ms=3100",
        ],
    )
    .await;
    c.wait_converged().await;

    cut(&c, behind, &[leader]).await;
    cut(&c, leader, &[behind]).await;
    let acked = write_musicians(&c, &[leader, longer], "while-behind", 20).await;
    let applied = |s: Option<Value>| s.unwrap()["applied_index"].as_u64().unwrap();
    let committed = applied(c.status(leader).await);
    c.wait_applied(longer, committed).await;
    assert!(
        applied(c.status(behind).await) < committed,
        "the cut follower's log is behind"
    );

    c.sigkill(leader);
    assert_eq!(c.wait_leader(&[longer, behind]).await, longer);
    c.wait_metric(longer, "mussikon_raft_early_elections_total", 1.0)
        .await;
    assert_all_present(&c, &[longer, behind], &acked).await;
}
