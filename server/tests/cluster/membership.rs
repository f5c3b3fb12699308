//! Membership changes through `mussikon cluster join|remove`: 3 → 5 voters and back to 3,
//! removing the first leader on the way, with writes before, between and after.

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

#[tokio::test(flavor = "multi_thread")]
async fn three_voters_grow_to_five_and_shrink_back_to_three_without_losing_a_write() {
    let mut c = Cluster::start(3, &[]).await;
    let first_leader = c.wait_leader(&[1, 2, 3]).await;
    let mut acked = write_musicians(&c, &[1, 2, 3], "before", 30).await;

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

    // Shrink: remove node 1 and the first leader (or node 2 if that was node 1).
    let gone: Vec<u64> = if first_leader == 1 {
        vec![1, 2]
    } else {
        vec![1, first_leader]
    };
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
    c.wait_converged().await;
    assert_all_present(&c, &left, &acked).await;
}
