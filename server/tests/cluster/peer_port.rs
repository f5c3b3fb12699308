//! Nodes that serve the peer RPCs on a listener of their own (`--peer-listen`): the API port
//! refusing `/raft/...`, the peer port refusing everything else and RPCs without the secret,
//! port 0 and a join at the printed peer address, shutdown of both listeners, and a single node
//! refusing the setting. Replication, forwarding and failover over peer ports are the
//! `replication` tests run with [`PeerPort::Separate`].

use crate::harness::*;
use mussikon_cluster::types::encode;
use mussikon_cluster::Request;
use mussikon_engine::{Command, Musician};
use reqwest::StatusCode;

/// The bincode body of a `POST /raft/write` that upserts musician `id`: what a follower sends
/// its leader when it forwards a client's write.
fn forwarded_upsert(id: &str) -> Vec<u8> {
    let musician: Musician = serde_json::from_value(musician(id)).unwrap();
    encode(&Request::from(Command::UpsertMusician { musician })).unwrap()
}

/// `POST url` with `body`, carrying `secret` as the cluster secret header when given.
async fn post_rpc(
    c: &Cluster,
    url: String,
    secret: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = c.http.post(url);
    if let Some(secret) = secret {
        req = req.header("x-mussikon-cluster-secret", secret);
    }
    req.body(body).send().await.unwrap()
}

/// Whether anything accepts a TCP connection at `addr`.
async fn accepts(addr: &str) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

/// Shutdown stops both listeners. (Replication, forwarding and failover over the peer ports are
/// the `replication` tests run with [`PeerPort::Separate`].)
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_api_and_the_peer_listener() {
    let mut c = Cluster::start_with(3, &[], PeerPort::Separate).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = *c.alive().iter().find(|i| **i != leader).unwrap();
    let node = &c.nodes[&follower];
    let (addr, peer_addr) = (node.addr.clone(), node.peer_addr.clone());
    assert_ne!(addr, peer_addr);
    assert!(accepts(&addr).await && accepts(&peer_addr).await);
    // `stop` waits for the exit and asserts it is a success.
    c.stop(follower).await;
    assert!(!accepts(&addr).await, "the API port still accepts");
    assert!(!accepts(&peer_addr).await, "the peer port still accepts");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_port_refuses_peer_rpcs_and_the_peer_port_serves_nothing_else() {
    let c = Cluster::start_with(3, &[], PeerPort::Separate).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let before = c.status(leader).await.unwrap();

    // A forwarded write, with the secret, on the API port: 404 problem, and nothing written.
    let write = forwarded_upsert("via-api-port");
    let r = post_rpc(&c, c.url(leader, "/raft/write"), Some(SECRET), write).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    for rpc in ["append", "vote", "snapshot", "members", "whois"] {
        let url = c.url(leader, &format!("/raft/{rpc}"));
        let r = post_rpc(&c, url, Some(SECRET), vec![1u8, 2, 3]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{rpc} on the API port");
    }
    let r = c
        .get(
            leader,
            "/v1/musicians/via-api-port?consistency=linearizable",
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the write went through");
    let after = c.status(leader).await.unwrap();
    assert_eq!(before["term"], after["term"]);
    assert_eq!(before["last_log_index"], after["last_log_index"]);

    // The same request on the peer port is served: the write takes effect. (So the 404 above
    // is the API port's refusal, not a bad request.)
    let write = forwarded_upsert("via-peer-port");
    let r = post_rpc(&c, c.peer_url(leader, "/raft/write"), Some(SECRET), write).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(leader, "/v1/musicians/via-peer-port").await;
    assert_eq!(r.status(), StatusCode::OK);

    // Without the secret, or with a wrong one, the peer port answers 401 and changes nothing.
    let before = c.status(leader).await.unwrap();
    for secret in [None, Some("wrong-secret-wrong-secret")] {
        for rpc in ["append", "vote", "write", "snapshot", "members"] {
            let body = if rpc == "write" {
                forwarded_upsert("no-secret")
            } else {
                vec![1u8, 2, 3]
            };
            let r = post_rpc(
                &c,
                c.peer_url(leader, &format!("/raft/{rpc}")),
                secret,
                body,
            )
            .await;
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{rpc}, secret {secret:?}"
            );
        }
    }
    let r = c.get(leader, "/v1/musicians/no-secret").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let after = c.status(leader).await.unwrap();
    assert_eq!(before["term"], after["term"]);
    assert_eq!(before["last_log_index"], after["last_log_index"]);

    // The peer port serves nothing but the peer RPCs: the API, health, metrics and a GET of
    // an RPC's path are 404 problems there.
    for path in [
        "/health",
        "/metrics",
        "/v1/musicians/via-peer-port",
        "/raft/append",
    ] {
        let r = c.http.get(c.peer_url(leader, path)).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "GET {path} on the peer port"
        );
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    // And the API port serves the API as before.
    let r = c.get(leader, "/health").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_on_peer_port_zero_prints_its_peer_address_and_joins_at_it() {
    let mut c = Cluster::start_with(3, &[], PeerPort::Separate).await;
    c.wait_leader(&[1, 2, 3]).await;
    let acked = write_musicians(&c, &[1], "early", 5).await;
    let dir = c._tmp.path().join("replica");
    let addr = format!("127.0.0.1:{}", free_port());
    let (child, peer_addr) =
        spawn_listening("auto", &addr, Some("127.0.0.1:0"), &dir, &c.peers, &c.extra).await;
    let port: u16 = peer_addr
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("printed peer address {peer_addr}"));
    assert_ne!(port, 0);
    assert_ne!(peer_addr, addr);
    let id: u64 = std::fs::read_to_string(dir.join("raft/node-id"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    c.nodes.insert(
        id,
        NodeProc {
            id,
            addr,
            peer_addr: peer_addr.clone(),
            dir,
            child: Some(child),
        },
    );
    let joined = id.to_string();
    let (ok, out) = c
        .cli(
            1,
            &["join", "--id", &joined, "--addr", &peer_addr, "--learner"],
        )
        .await;
    assert!(ok, "{out}");
    assert_eq!(c.roles(1).await[&id], "learner");
    c.wait_converged().await;
    assert_all_present(&c, &[id], &acked).await;
    // It takes writes too: forwarded from its API port to the leader's peer port.
    let r = c.put(id, "/v1/musicians/late", &musician("late")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_refuses_a_peer_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = mussikon(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--peer-listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir.path().display().to_string(),
    ])
    .await;
    assert!(!ok, "a single node started with --peer-listen: {out}");
    assert!(
        out.contains("cluster.peer_listen") && out.contains("cluster.node_id"),
        "{out}"
    );
    assert!(!out.contains("listening on"), "{out}");
}
