//! Membership changes through `mussikon cluster join|remove`: 3 → 5 voters and back to 3,
//! removing the first leader on the way, with writes before, between and after and a steady
//! writer throughout; a learner as a read replica.

use crate::harness::*;
use reqwest::StatusCode;

async fn write_musicians(c: &Cluster, via: &[u64], prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let r = c
            .put(
                via[i % via.len()],
                &format!("/v1/musicians/{id}"),
                &musician(&id),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{id}");
        ids.push(id);
    }
    ids
}

async fn assert_all_present(c: &Cluster, on: &[u64], ids: &[String]) {
    for node in on {
        for id in ids {
            let r = c
                .get(*node, &format!("/v1/musicians/{id}?consistency=stale"))
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{id} on node {node}");
        }
    }
}

/// A steady writer through `bases` (node URLs) until `stop`: the ids whose PUT was answered
/// 201, and how many other answers it got (a 503 while the leader changes is "outcome
/// unknown", neither acknowledged nor checked).
fn steady_writer(
    bases: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let (mut acked, mut other) = (Vec::new(), 0);
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let id = format!("steady-{i}");
            let url = format!("{}/v1/musicians/{id}", bases[i % bases.len()]);
            match http.put(url).json(&musician(&id)).send().await {
                Ok(r) if r.status() == StatusCode::CREATED => acked.push(id),
                _ => other += 1,
            }
            i += 1;
        }
        (acked, other)
    })
}

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
    let writer = steady_writer(stays, stop.clone());

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
                    &c.nodes[&id].addr.clone(),
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
    let addr = c.nodes[&4].addr.clone();
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
