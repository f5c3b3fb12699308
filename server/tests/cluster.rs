//! Real `mussikon serve --node-id` processes on 127.0.0.1, each with its own data directory,
//! talking over sockets: replication, leader failure, catch-up from the log and from a
//! snapshot, concurrent bookings, and the secret on peer RPCs.
#![allow(clippy::unwrap_used)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_mussikon");
const SECRET: &str = "test-cluster-secret-0123456789";
/// Longest any cluster event (election, catch-up) may take in these tests.
const DEADLINE: Duration = Duration::from_secs(60);

fn musician(id: &str) -> Value {
    json!({
        "id": id, "name": format!("Musician {id}"),
        "instruments": [{"name": "guitar", "level": 4}],
        "location": {"lat": 40.4168, "lon": -3.7038},
        "travel_radius_km": 50, "fee": {"amount": 15000, "currency": "EUR"}
    })
}

fn gig(id: &str, date: &str) -> Value {
    json!({
        "id": id, "title": format!("Gig {id}"), "date": date,
        "location": {"lat": 40.42, "lon": -3.70}, "radius_km": 30,
        "slots": [{"instrument": "guitar", "count": 2, "min_level": 3}],
        "budget": {"max_fee": 20000, "currency": "EUR"}
    })
}

/// A free port on 127.0.0.1 (bound, read and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct NodeProc {
    id: u64,
    addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    _tmp: tempfile::TempDir,
    peers: String,
    nodes: BTreeMap<u64, NodeProc>,
    extra: Vec<String>,
    http: reqwest::Client,
}

async fn spawn_node(id: u64, addr: &str, dir: &Path, peers: &str, extra: &[String]) -> Child {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", addr, "--data-dir"])
        .arg(dir)
        .args(["--node-id", &id.to_string(), "--peers", peers])
        .args(extra)
        .env("MUSSIKON_CLUSTER_SECRET", SECRET)
        .env("MUSSIKON_LOG_FORMAT", "json")
        .env_remove("MUSSIKON_NODE_ID")
        .env_remove("MUSSIKON_PEERS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    assert_eq!(line.trim(), format!("listening on {addr}"), "node {id}");
    child
}

impl Cluster {
    async fn start(n: u64, extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let addrs: BTreeMap<u64, String> = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let peers = addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut nodes = BTreeMap::new();
        for (id, addr) in addrs {
            let dir = tmp.path().join(format!("node{id}"));
            let child = spawn_node(id, &addr, &dir, &peers, &extra).await;
            nodes.insert(
                id,
                NodeProc {
                    id,
                    addr,
                    dir,
                    child: Some(child),
                },
            );
        }
        let c = Cluster {
            _tmp: tmp,
            peers,
            nodes,
            extra,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        c.wait_leader(&c.alive()).await;
        c
    }

    fn alive(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    fn url(&self, id: u64, path: &str) -> String {
        format!("http://{}{}", self.nodes[&id].addr, path)
    }

    async fn status(&self, id: u64) -> Option<Value> {
        let r = self
            .http
            .get(self.url(id, "/v1/cluster/status"))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until every node of `ids` names the same leader, one of `ids`; returns it.
    async fn wait_leader(&self, ids: &[u64]) -> u64 {
        let started = Instant::now();
        loop {
            let mut leaders = Vec::new();
            for id in ids {
                leaders.push(self.status(*id).await.and_then(|s| s["leader"].as_u64()));
            }
            if let Some(Some(l)) = leaders.first() {
                if ids.contains(l) && leaders.iter().all(|x| *x == Some(*l)) {
                    return *l;
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no common leader among {ids:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until node `id` has applied at least `index`.
    async fn wait_applied(&self, id: u64, index: u64) {
        let started = Instant::now();
        loop {
            let applied = self
                .status(id)
                .await
                .and_then(|s| s["applied_index"].as_u64())
                .unwrap_or(0);
            if applied >= index {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "node {id} applied {applied} < {index}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sigkill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        let child = node.child.take().unwrap();
        kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
        drop(child);
    }

    async fn restart(&mut self, id: u64) {
        let node = &self.nodes[&id];
        let child = spawn_node(id, &node.addr, &node.dir, &self.peers, &self.extra).await;
        self.nodes.get_mut(&id).unwrap().child = Some(child);
    }

    async fn put(&self, id: u64, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.url(id, path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, id: u64, path: &str) -> reqwest::Response {
        self.http.get(self.url(id, path)).send().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_replicate_writes_and_every_node_reads_them() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = *c.alive().iter().find(|i| **i != leader).unwrap();
    // A write sent to a follower is forwarded and answered like on one node.
    let r = c.put(follower, "/v1/musicians/m-1", &musician("m-1")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["x-mussikon-leader"].to_str().unwrap(),
        c.nodes[&leader].addr
    );
    let r = c.put(follower, "/v1/musicians/m-1", &musician("m-1")).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a replace is 200 as on one node"
    );
    // Linearizable (default) reads from every node see it at once.
    for id in [1, 2, 3] {
        let r = c.get(id, "/v1/musicians/m-1").await;
        assert_eq!(r.status(), StatusCode::OK, "node {id}");
        let r = c.get(id, "/v1/musicians/m-1?consistency=leader").await;
        assert_eq!(r.status(), StatusCode::OK, "node {id}, leader read");
    }
    let r = c.get(1, "/v1/musicians/m-1?consistency=sometimes").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Refusals keep their single-node status codes through forwarding.
    let r = c
        .http
        .post(c.url(follower, "/v1/gigs/nope/bookings"))
        .json(&json!({"slot": 0, "musician_id": "m-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The status lists three voters with one leader.
    let s = c.status(leader).await.unwrap();
    let roles: Vec<&str> = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{s}");
    assert_eq!(roles.len(), 3, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_rpcs_without_the_cluster_secret_get_401_and_change_nothing() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let before = c.status(leader).await.unwrap();
    for rpc in ["append", "vote", "write", "snapshot", "members"] {
        let r = c
            .http
            .post(c.url(leader, &format!("/raft/{rpc}")))
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{rpc}");
        let r = c
            .http
            .post(c.url(leader, &format!("/raft/{rpc}")))
            .header("x-mussikon-cluster-secret", "wrong-secret-wrong-secret")
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{rpc}");
    }
    let after = c.status(leader).await.unwrap();
    assert_eq!(before["term"], after["term"]);
    assert_eq!(before["last_log_index"], after["last_log_index"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_elects_another_and_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let id = format!("m-{i}");
        let via = c.alive()[i % 3];
        let r = c
            .put(via, &format!("/v1/musicians/{id}"), &musician(&id))
            .await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "write {i} via node {via}: {body}"
        );
        acked.push(id);
    }
    c.sigkill(leader);
    let rest = c.alive();
    let new_leader = c.wait_leader(&rest).await;
    assert_ne!(new_leader, leader);
    for i in 20..40 {
        let id = format!("m-{i}");
        let via = rest[i % 2];
        let r = c
            .put(via, &format!("/v1/musicians/{id}"), &musician(&id))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "write {i} after failover");
        acked.push(id);
    }
    for id in &rest {
        for m in &acked {
            let r = c.get(*id, &format!("/v1/musicians/{m}")).await;
            assert_eq!(r.status(), StatusCode::OK, "{m} on node {id}");
        }
    }
    // The old leader comes back as a follower and catches up.
    c.restart(leader).await;
    let l = c.wait_leader(&[1, 2, 3]).await;
    let target = c.status(l).await.unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    c.wait_applied(leader, target).await;
    for m in &acked {
        let r = c
            .get(leader, &format!("/v1/musicians/{m}?consistency=stale"))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{m} on the restarted node");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_down_during_writes_catches_up_from_a_snapshot() {
    let mut c = Cluster::start(
        3,
        &[
            "--set",
            "cluster.snapshot_logs=40",
            "--set",
            "cluster.keep_logs=5",
        ],
    )
    .await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let down = *c.alive().iter().find(|i| **i != leader).unwrap();
    c.sigkill(down);
    let n = 300;
    for i in 0..n {
        let id = format!("m-{i}");
        let r = c
            .put(leader, &format!("/v1/musicians/{id}"), &musician(&id))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // The leader has snapshotted and purged its log past what the follower holds.
    let snap_dir = c.nodes[&leader].dir.join("raft/snapshots");
    assert!(
        std::fs::read_dir(&snap_dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".snap")),
        "no snapshot in {}",
        snap_dir.display()
    );
    c.restart(down).await;
    let target = c.status(leader).await.unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    c.wait_applied(down, target).await;
    for i in 0..n {
        let r = c
            .get(down, &format!("/v1/musicians/m-{i}?consistency=stale"))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "m-{i} on the restarted node");
    }
    // And it takes part again: a write through it succeeds.
    let r = c
        .put(down, "/v1/musicians/m-last", &musician("m-last"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_bookings_of_one_musician_and_date_through_all_nodes_succeed_once() {
    let c = Cluster::start(3, &[]).await;
    c.wait_leader(&[1, 2, 3]).await;
    let r = c.put(1, "/v1/musicians/m-1", &musician("m-1")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for g in 0..6 {
        let id = format!("g-{g}");
        let r = c
            .put(1, &format!("/v1/gigs/{id}"), &gig(&id, "2026-12-05"))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut tasks = Vec::new();
    for g in 0..6u64 {
        let url = c.url(1 + g % 3, &format!("/v1/gigs/g-{g}/bookings"));
        let http = c.http.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({"slot": 0, "musician_id": "m-1"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let won = codes.iter().filter(|s| **s == StatusCode::CREATED).count();
    let lost = codes.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!((won, lost), (1, 5), "{codes:?}");
    let m: Value = c.get(3, "/v1/musicians/m-1").await.json().await.unwrap();
    assert_eq!(m["booked"].as_array().unwrap().len(), 1, "{m}");
}
