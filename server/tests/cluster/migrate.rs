//! A cluster first booted with its peers on the API ports moves to peer ports in place: each
//! node restarted with `--peer-listen` goes on answering the peer RPCs on its API port while its
//! membership entry names that port (the others still send them there), `cluster set-addr`
//! moves each entry to the peer port, and from then on the API ports answer `/raft/...` 404
//! while replication and failover go on over the peer ports. And the refusals of `set-addr`.

use crate::harness::*;
use mussikon_cluster::types::encode;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The status of a `whois` peer RPC (with the secret) for node `id` at `url`: 200 where the
/// node serves its peer RPCs, 404 where it does not.
async fn whois(c: &Cluster, url: String, id: u64) -> StatusCode {
    c.http
        .post(url)
        .header("x-mussikon-cluster-secret", SECRET)
        .header("x-mussikon-to-node-id", id.to_string())
        .body(encode(&id).unwrap())
        .send()
        .await
        .unwrap()
        .status()
}

/// The [`whois`] status of node `id` on its API port and on its peer port.
async fn served(c: &Cluster, id: u64) -> (StatusCode, StatusCode) {
    (
        whois(c, c.url(id, "/raft/whois"), id).await,
        whois(c, c.peer_url(id, "/raft/whois"), id).await,
    )
}

/// Member `id`'s address in node `on`'s view.
async fn member_addr(c: &Cluster, on: u64, id: u64) -> String {
    let s = c.status(on).await.unwrap();
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["addr"].as_str())
        .unwrap_or_else(|| panic!("node {on} does not list member {id}: {s}"))
        .to_string()
}

/// How often node `id` has logged `line`, once it has at least once (the log is written by a
/// task of its own, a moment after the membership changes).
async fn logged(c: &Cluster, id: u64, line: &str) -> usize {
    let started = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(c.nodes[&id].dir.with_extension("log")).unwrap();
        let n = log.matches(line).count();
        if n > 0 {
            return n;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "node {id} never logged {line:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `PUT /v1/cluster/members/{id}` with `body` through node `via`: status and JSON body.
async fn set_addr(c: &Cluster, via: u64, id: u64, body: Value) -> (StatusCode, Value) {
    let r = c
        .http
        .put(c.url(via, &format!("/v1/cluster/members/{id}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// The musicians every node of `on` lists (stale reads, after convergence): all equal, and
/// holding every id of `acked`.
async fn assert_same_everywhere(c: &Cluster, on: &[u64], acked: &[String]) {
    c.wait_converged().await;
    let mut lists = Vec::new();
    for id in on {
        let r = c
            .get(*id, "/v1/musicians?limit=1000&consistency=stale")
            .await;
        assert_eq!(r.status(), StatusCode::OK, "list on node {id}");
        lists.push(r.json::<Value>().await.unwrap());
    }
    for (id, list) in on.iter().zip(&lists) {
        assert_eq!(
            *list, lists[0],
            "node {id} lists other musicians than node {}",
            on[0]
        );
    }
    assert_all_present(c, on, acked).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_on_its_api_ports_moves_to_peer_ports_in_place() {
    let mut c = Cluster::start(3, &[]).await;
    let first_leader = c.wait_leader(&[1, 2, 3]).await;
    let mut acked = write_musicians(&c, &[1, 2, 3], "before", 12).await;
    let api: BTreeMap<u64, String> = c
        .nodes
        .iter()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();

    // The upgrade: every node restarted, one at a time, followers first and the leader last,
    // with a peer listener and the new deploy's --peers (which no longer matter: the
    // membership keeps the API addresses).
    let peer: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    c.peers = peer
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut order: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != first_leader)
        .collect();
    order.push(first_leader);
    for id in order {
        c.restart_with_peer_listen(id, peer[&id].clone()).await;
        c.wait_converged().await;
        assert_eq!(member_addr(&c, id, id).await, api[&id]);
        // Its entry names the API port, so the API port serves its peer RPCs; the peer port
        // does anyway.
        assert_eq!(served(&c, id).await, (StatusCode::OK, StatusCode::OK));
        // Once two nodes run this way, no quorum is left unless their API ports serve.
        acked.extend(write_musicians(&c, &[1, 2, 3], &format!("rolled-{id}"), 6).await);
    }
    assert_same_everywhere(&c, &[1, 2, 3], &acked).await;

    // Refusals first, while every entry is at the API port.
    let (status, body) = set_addr(&c, 1, 9, json!({"addr": peer[&1]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("node 9"),
        "{body}"
    );
    for bad in ["nope", "127.0.0.1:0", ":7000"] {
        let (status, body) = set_addr(&c, 1, 2, json!({ "addr": bad })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["errors"][0]["field"], "addr", "{bad}: {body}");
    }
    // Another member's address; an address where node 2 does not answer (nothing listens,
    // node 3's peer port, node 2's own API port is its current entry: nothing to do).
    let nobody = format!("127.0.0.1:{}", free_port());
    for (addr, why) in [
        (api[&3].clone(), "node 3's address"),
        (nobody, "does not answer"),
        (peer[&3].clone(), "does not answer"),
    ] {
        let (status, body) = set_addr(&c, 1, 2, json!({ "addr": addr })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{addr}: {body}");
        assert_eq!(body["errors"][0]["field"], "addr", "{addr}: {body}");
        let rule = body["errors"][0]["rule"].as_str().unwrap();
        assert!(rule.contains(why), "{addr}: {rule}");
    }
    let (status, body) = set_addr(&c, 1, 2, json!({"addr": api[&2]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for on in [1, 2, 3] {
        for id in [1, 2, 3] {
            assert_eq!(
                member_addr(&c, on, id).await,
                api[&id],
                "refused changes changed it"
            );
        }
    }

    // set-addr each member to its peer address: node 1 through the CLI, the others through
    // the admin endpoint, each asked of another node (forwarded when that one does not lead).
    for id in [1, 2, 3] {
        let via = id % 3 + 1;
        if id == 1 {
            let (ok, out) = c
                .cli(via, &["set-addr", "--id", "1", "--addr", &peer[&1]])
                .await;
            assert!(ok, "set-addr 1: {out}");
        } else {
            let (status, body) = set_addr(&c, via, id, json!({"addr": peer[&id]})).await;
            assert_eq!(status, StatusCode::OK, "set-addr {id}: {body}");
        }
        acked.extend(write_musicians(&c, &[1, 2, 3], &format!("moved-{id}"), 4).await);
    }
    c.wait_converged().await;
    for id in [1, 2, 3] {
        for on in [1, 2, 3] {
            assert_eq!(member_addr(&c, on, id).await, peer[&id], "on node {on}");
        }
        assert_eq!(
            served(&c, id).await,
            (StatusCode::NOT_FOUND, StatusCode::OK)
        );
    }
    // Each node said once that it served the peer RPCs on its API port too, and once that it
    // stopped.
    for id in [1, 2, 3] {
        for line in [
            "serving the peer RPCs on the API port as well",
            "no longer serving the peer RPCs on the API port",
        ] {
            assert_eq!(logged(&c, id, line).await, 1, "node {id}: {line:?}");
        }
    }
    acked.extend(write_musicians(&c, &[1, 2, 3], "after", 12).await);
    assert_same_everywhere(&c, &[1, 2, 3], &acked).await;

    // Failover over the peer ports.
    let leader = c.wait_leader(&[1, 2, 3]).await;
    c.sigkill(leader);
    let rest = c.alive();
    let new_leader = c.wait_leader(&rest).await;
    assert_ne!(new_leader, leader);
    acked.extend(write_musicians(&c, &rest, "failover", 10).await);
    c.restart(leader).await;
    assert_eq!(
        whois(&c, c.url(leader, "/raft/whois"), leader).await,
        StatusCode::NOT_FOUND
    );
    assert_same_everywhere(&c, &[1, 2, 3], &acked).await;
}
