//! Membership changes through `mussikon cluster join|remove`: 3 → 5 voters and back to 3,
//! removing the first leader on the way, with writes before, between and after and a steady
//! writer throughout; a learner as a read replica.

use crate::harness::*;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn three_voters_grow_to_five_and_shrink_back_to_three_without_losing_a_write() {
    let mut c = Cluster::start(3, &[]).await;
    let first_leader = c.wait_leader(&[1, 2, 3]).await;
    let mut acked = write_musicians(&c, &[1, 2, 3], "before", 30).await;
    // Shrinking will remove node 1 and the first leader (or node 2 if that was node 1); a
    // steady writer goes through the original nodes that stay, during every change.
    let gone: Vec<u64> = if first_leader == 1 {
        vec![1, 2]
    } else {
        vec![1, first_leader]
    };
    let stays: Vec<String> = [1, 2, 3]
        .into_iter()
        .filter(|id| !gone.contains(id))
        .map(|id| c.url(id, ""))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = steady_writer("steady", stays, stop.clone());

    // Grow: each new node joins as learner, catches up, and is promoted.
    for id in [4, 5] {
        c.spawn_new(id).await;
        let (ok, out) = c
            .cli(
                1,
                &[
                    "join",
                    "--id",
                    &id.to_string(),
                    "--addr",
                    &c.nodes[&id].peer_addr.clone(),
                ],
            )
            .await;
        assert!(ok, "join {id}: {out}");
    }
    let leader = c.wait_converged().await;
    let roles = c.roles(leader).await;
    assert_eq!(roles.len(), 5, "{roles:?}");
    assert!(
        roles.values().all(|r| r == "leader" || r == "voter"),
        "{roles:?}"
    );
    assert_all_present(&c, &[4, 5], &acked).await;
    acked.extend(write_musicians(&c, &[4, 5], "five", 10).await);

    // Joining a member again changes nothing; removing a stranger is refused.
    let (ok, out) = c.cli(2, &["remove", "--id", "99"]).await;
    assert!(!ok, "removing a non-member must fail: {out}");
    assert!(out.contains("not a member"), "{out}");

    // Shrink.
    for id in &gone {
        let (ok, out) = c.cli(5, &["remove", "--id", &id.to_string()]).await;
        assert!(ok, "remove {id}: {out}");
        c.sigkill(*id);
    }
    let left: Vec<u64> = c.alive();
    assert_eq!(left.len(), 3);
    let leader = c.wait_converged().await;
    assert!(left.contains(&leader));
    let roles = c.roles(leader).await;
    assert_eq!(
        roles.keys().copied().collect::<Vec<_>>(),
        left,
        "the removed nodes are gone from the membership"
    );
    acked.extend(write_musicians(&c, &left, "three", 10).await);
    // A removed node has no address to change (checked before the address is dialed).
    let (ok, out) = c
        .cli(
            left[0],
            &[
                "set-addr",
                "--id",
                &gone[0].to_string(),
                "--addr",
                "127.0.0.1:1",
            ],
        )
        .await;
    assert!(!ok, "set-addr of a removed node must fail: {out}");
    assert!(out.contains("422") && out.contains("was removed"), "{out}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (steady, other) = writer.await.unwrap();
    assert!(
        steady.len() >= 10,
        "the steady writer got {} writes acknowledged ({other} other answers)",
        steady.len()
    );
    acked.extend(steady);
    c.wait_converged().await;
    assert_all_present(&c, &left, &acked).await;
}

/// A learner is a read replica: it receives the log without voting, serves stale and
/// linearizable reads, forwards writes, and the voters commit without it.
#[tokio::test(flavor = "multi_thread")]
async fn a_learner_serves_reads_and_forwards_writes_without_voting() {
    let mut c = Cluster::start(3, &[]).await;
    c.wait_leader(&[1, 2, 3]).await;
    let mut acked = write_musicians(&c, &[1, 2, 3], "before", 10).await;

    c.spawn_new(4).await;
    let addr = c.nodes[&4].peer_addr.clone();
    let (ok, out) = c
        .cli(2, &["join", "--id", "4", "--addr", &addr, "--learner"])
        .await;
    assert!(ok, "join --learner: {out}");
    let leader = c.wait_converged().await;
    assert_ne!(leader, 4);
    let roles = c.roles(leader).await;
    assert_eq!(
        roles.get(&4).map(String::as_str),
        Some("learner"),
        "{roles:?}"
    );
    assert_eq!(
        roles
            .values()
            .filter(|r| *r == "leader" || *r == "voter")
            .count(),
        3,
        "{roles:?}"
    );
    assert_eq!(c.status(4).await.unwrap()["state"], "learner");
    // What was written before it joined reached it.
    assert_all_present(&c, &[4], &acked).await;

    // A write acknowledged by the leader is seen by a linearizable read (the default) on the
    // learner at once: no waiting for replication.
    for i in 0..5 {
        let id = format!("lin-{i}");
        let r = c
            .put(leader, &format!("/v1/musicians/{id}"), &musician(&id))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{id}");
        let r = c.get(4, &format!("/v1/musicians/{id}")).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{id} read linearizably on the learner"
        );
        acked.push(id);
    }
    // Writes sent to the learner are forwarded to the leader.
    acked.extend(write_musicians(&c, &[4], "via-learner", 5).await);

    // The voters commit without it.
    c.sigkill(4);
    acked.extend(write_musicians(&c, &[1, 2, 3], "learner-down", 10).await);
    c.restart(4).await;
    c.wait_converged().await;
    assert_all_present(&c, &[1, 2, 3, 4], &acked).await;
    assert_eq!(
        c.roles(leader).await.get(&4).map(String::as_str),
        Some("learner")
    );
}

/// `mussikon cluster join --id ID --addr ADDR --learner` through node `via`.
async fn join_learner(c: &Cluster, via: u64, id: u64, addr: &str) -> (bool, String) {
    let id = id.to_string();
    c.cli(via, &["join", "--id", &id, "--addr", addr, "--learner"])
        .await
}

/// Read replicas started with `--node-id auto` draw ids no node had; a removed node's id is
/// never taken back (also after a restart of its directory, which then draws a new one); a
/// replica that vanished without leaving is replaced by the next node at its address.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_draw_fresh_ids_and_a_removed_nodes_id_is_never_reused() {
    let mut c = Cluster::start(3, &[]).await;
    let mut acked = write_musicians(&c, &[1, 2, 3], "before", 5).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let first = c.spawn_auto("replica", &addr).await;
    assert!(
        first >= 1 << 32,
        "an auto id lies above hand-picked ones: {first}"
    );
    let (ok, out) = join_learner(&c, 2, first, &addr).await;
    assert!(ok, "join {first}: {out}");
    let leader = c.wait_converged().await;
    assert_eq!(
        c.roles(leader).await.get(&first).map(String::as_str),
        Some("learner")
    );
    assert_all_present(&c, &[first], &acked).await;

    // Removed (as the pod's preStop does), its id is refused from then on, through any node.
    let (ok, out) = c.cli(3, &["remove", "--id", &first.to_string()]).await;
    assert!(ok, "remove {first}: {out}");
    c.sigkill(first);
    for via in [1, 2, 3] {
        let (ok, out) = join_learner(&c, via, first, &addr).await;
        assert!(
            !ok,
            "re-adding removed node {first} via {via} must fail: {out}"
        );
        assert!(out.contains("never reused"), "{out}");
    }
    // The refusal changed nothing.
    let leader = c.wait_converged().await;
    assert!(!c.roles(leader).await.contains_key(&first));

    // Its directory, marked as the pod scripts mark it, cannot start under its old id, and
    // under `auto` is cleared and draws a new one, which may join.
    let dir = c.nodes[&first].dir.clone();
    std::fs::write(dir.join("raft/retired"), b"").unwrap();
    let err = c.serve_refused(&first.to_string(), &addr, &dir).await;
    assert!(
        err.contains("cluster.node_id") && err.contains("never reused"),
        "{err}"
    );
    let second = c.spawn_auto("replica", &addr).await;
    assert_ne!(second, first);
    let (ok, out) = join_learner(&c, 1, second, &addr).await;
    assert!(ok, "join {second}: {out}");
    acked.extend(write_musicians(&c, &[1, 2, 3], "after", 5).await);
    c.wait_converged().await;
    assert_all_present(&c, &[second], &acked).await;

    // A replica that vanished without leaving (SIGKILL, its directory lost) is replaced by
    // the node that next joins at its address; the old id is retired with it.
    c.sigkill(second);
    let third = c.spawn_auto("replica-new-pod", &addr).await;
    // Until it is replaced, the leader keeps replicating to the lost learner's address: the
    // new node refuses what is for another node (an openraft leader panics on a "follower"
    // whose log went backwards), and counts it.
    c.wait_metric(third, "mussikon_raft_misdirected_rpcs_total", 1.0)
        .await;
    let (ok, out) = join_learner(&c, 2, third, &addr).await;
    assert!(ok, "join {third} at {addr}: {out}");
    let leader = c.wait_converged().await;
    let roles = c.roles(leader).await;
    assert_eq!(
        roles.get(&third).map(String::as_str),
        Some("learner"),
        "{roles:?}"
    );
    assert!(!roles.contains_key(&second), "{roles:?}");
    assert_all_present(&c, &[third], &acked).await;
    let (ok, out) = join_learner(&c, 2, second, &addr).await;
    assert!(!ok && out.contains("never reused"), "{out}");
    // A voter's address is not taken over.
    let voter_addr = c.nodes[&3].addr.clone();
    let (ok, out) = c
        .cli(
            1,
            &["join", "--id", "77", "--addr", &voter_addr, "--learner"],
        )
        .await;
    assert!(!ok && out.contains("voter 3"), "{out}");
}

/// A voter cannot come back under its id once its data is gone (the leader has replicated to
/// that id: its view of the node's log would go backwards), nor once it was removed (its data
/// kept): each start is refused with what to do, the cluster keeps serving, and the node joins
/// under a new id drawn with `--node-id auto`.
#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_or_removed_voter_cannot_come_back_under_its_id() {
    let mut c = Cluster::start(3, &[]).await;
    let mut acked = write_musicians(&c, &[1, 2, 3], "before", 5).await;
    let leader = c.wait_converged().await;
    let victim = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let dir = c.nodes[&victim].dir.clone();
    let addr = c.nodes[&victim].addr.clone();

    // Its disk is lost: the same id on an empty directory is refused.
    c.sigkill(victim);
    let saved = dir.with_extension("saved");
    std::fs::rename(&dir, &saved).unwrap();
    let err = c.serve_refused(&victim.to_string(), &addr, &dir).await;
    assert!(
        err.contains("lost or wiped") && err.contains(&format!("cluster remove {victim}")),
        "{err}"
    );
    let others: Vec<u64> = c.alive();
    acked.extend(write_musicians(&c, &others, "wiped", 5).await);

    // Removed, its id is refused even with its old data back in place.
    let (ok, out) = c
        .cli(others[0], &["remove", "--id", &victim.to_string()])
        .await;
    assert!(ok, "remove {victim}: {out}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&saved, &dir).unwrap();
    let err = c.serve_refused(&victim.to_string(), &addr, &dir).await;
    assert!(err.contains("never reused"), "{err}");

    // Under `auto` the directory (marked by the refusal) is cleared and gets a new id, which
    // joins as a voter and holds everything.
    assert!(dir.join("raft/retired").exists());
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let fresh = c.spawn_auto(&name, &addr).await;
    assert_ne!(fresh, victim);
    let id = fresh.to_string();
    let (ok, out) = c
        .cli(others[1], &["join", "--id", &id, "--addr", &addr])
        .await;
    assert!(ok, "join {fresh}: {out}");
    acked.extend(write_musicians(&c, &[fresh], "rejoined", 5).await);
    let leader = c.wait_converged().await;
    let roles = c.roles(leader).await;
    assert_eq!(roles.len(), 3, "{roles:?}");
    assert!(
        matches!(
            roles.get(&fresh).map(String::as_str),
            Some("voter" | "leader")
        ),
        "{roles:?}"
    );
    assert_all_present(&c, &[fresh], &acked).await;
}

/// A voter whose data was wiped and that starts under its old id anyway (its start check could
/// not reach the cluster) does not crash the leader, whose openraft task panics on a follower
/// whose log went backwards: the leader stops replicating to it, counts it and goes on leading.
#[tokio::test(flavor = "multi_thread")]
async fn a_voter_whose_log_went_backwards_does_not_crash_the_leader() {
    let mut c = Cluster::start(3, &[]).await;
    let mut acked = write_musicians(&c, &[1, 2, 3], "before", 5).await;
    let leader = c.wait_converged().await;
    let term = c.status(leader).await.unwrap()["term"].clone();
    // A follower other than node 1, so a peer list naming 1 first never makes it initialize.
    let victim = [3, 2].into_iter().find(|id| *id != leader).unwrap();
    let dir = c.nodes[&victim].dir.clone();
    let addr = c.nodes[&victim].addr.clone();
    c.sigkill(victim);
    std::fs::remove_dir_all(&dir).unwrap();
    // Its start check asks node 1 at an address where nobody listens: no answer, no refusal.
    let hidden = format!("1=127.0.0.1:{},{victim}={addr}", free_port());
    let child = spawn_node(victim, &addr, &dir, &hidden, &[]).await;
    c.nodes.get_mut(&victim).unwrap().child = Some(child);
    let reverted = format!("mussikon_raft_peer_log_reverted_total{{peer=\"{victim}\"}}");
    c.wait_metric(leader, &reverted, 1.0).await;

    let other = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader && *id != victim)
        .unwrap();
    acked.extend(write_musicians(&c, &[leader, other], "after", 5).await);
    let s = c.status(leader).await.unwrap();
    assert_eq!(s["leader"], leader, "{s}");
    assert_eq!(s["term"], term, "the leader kept leading: {s}");
    assert_all_present(&c, &[leader, other], &acked).await;
}

/// The last voter cannot be removed: the cluster would have no one to commit. The refusal is
/// a 422 naming the rule (openraft's `EmptyMembership`, once a 500), and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_last_voter_is_refused_and_changes_nothing() {
    let c = Cluster::start(1, &[]).await; // returns once node 1 leads
    let r = c
        .http
        .delete(c.url(1, "/v1/cluster/members/1"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "node_id", "{body}");
    assert!(
        body["errors"][0]["rule"]
            .as_str()
            .is_some_and(|r| r.contains("at least one voter")),
        "{body}"
    );
    let (ok, out) = c.cli(1, &["remove", "--id", "1"]).await;
    assert!(!ok && out.contains("at least one voter"), "{out}");
    assert_eq!(c.roles(1).await.len(), 1);
    let acked = write_musicians(&c, &[1], "after", 3).await;
    assert_all_present(&c, &[1], &acked).await;
}
