//! The test cluster: real `mussikon serve --node-id` processes on 127.0.0.1 (ports chosen at
//! run time), each with its own data directory, and the HTTP calls the tests make on them.
//! Each node serves the peer RPCs on its API listener, or ([`PeerPort::Separate`]) on a
//! listener of its own (`--peer-listen`); `--peers` and joins name the peer addresses.

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

pub const BIN: &str = env!("CARGO_BIN_EXE_mussikon");
pub const SECRET: &str = "test-cluster-secret-0123456789";
/// Longest any cluster event (election, catch-up) may take in these tests.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn musician(id: &str) -> Value {
    json!({
        "id": id, "name": format!("Musician {id}"),
        "instruments": [{"name": "guitar", "level": 4}],
        "location": {"lat": 40.4168, "lon": -3.7038},
        "travel_radius_km": 50, "fee": {"amount": 15000, "currency": "EUR"}
    })
}

pub fn gig(id: &str, date: &str) -> Value {
    json!({
        "id": id, "title": format!("Gig {id}"), "date": date,
        "location": {"lat": 40.42, "lon": -3.70}, "radius_km": 30,
        "slots": [{"instrument": "guitar", "count": 2, "min_level": 3}],
        "budget": {"max_fee": 20000, "currency": "EUR"}
    })
}

/// An HTTP client for the nodes' API with `timeout` per request. It keeps an idle connection
/// for at most 5 s, half the nodes' `http.header_read_timeout_s` (10 s), after which a node
/// closes it: a connection reused just as the node closed it fails its request with a reset
/// (the partition test met it once in CI). The nodes' own peer clients keep the same rule.
pub fn api_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A free port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the nodes of a test cluster serve the peer RPCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerPort {
    /// On the API listener (no `--peer-listen`): one address per node.
    Shared,
    /// On a listener of their own (`--peer-listen`), at another port.
    Separate,
}

impl PeerPort {
    /// A node's peer address beside its API address `addr`.
    fn addr_beside(self, addr: &str) -> String {
        match self {
            PeerPort::Shared => addr.to_string(),
            PeerPort::Separate => format!("127.0.0.1:{}", free_port()),
        }
    }
}

pub struct NodeProc {
    pub id: u64,
    /// The API address (`--listen`).
    pub addr: String,
    /// The peer address: what `--peers` and joins name (`addr` unless [`PeerPort::Separate`]).
    pub peer_addr: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl NodeProc {
    /// Starts node `id` at `addr` (peers at `peer_addr`) with its data in `root/node{id}`.
    async fn spawn(
        id: u64,
        (addr, peer_addr): (String, String),
        root: &Path,
        peers: &str,
        extra: &[String],
    ) -> NodeProc {
        let dir = root.join(format!("node{id}"));
        let child = spawn_listening(
            &id.to_string(),
            &addr,
            separate(&addr, &peer_addr),
            &dir,
            peers,
            extra,
        )
        .await
        .0;
        NodeProc {
            id,
            addr,
            peer_addr,
            dir,
            child: Some(child),
        }
    }
}

/// `peer_addr` as a `--peer-listen` value: `None` when it is the API address `addr`.
fn separate<'a>(addr: &str, peer_addr: &'a str) -> Option<&'a str> {
    (addr != peer_addr).then_some(peer_addr)
}

/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 25;

impl Drop for Cluster {
    /// On a failing test (a panic), prints the end of every node's log, so that CI output says
    /// what the nodes were doing.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for node in self.nodes.values() {
            let text = std::fs::read_to_string(log_path(&node.dir)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "--- node {} log ({} lines, last {}):",
                node.id,
                lines.len(),
                LOG_TAIL_LINES.min(lines.len())
            );
            for line in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
                let cut: String = line.chars().take(400).collect();
                eprintln!("{cut}");
            }
        }
    }
}

pub struct Cluster {
    pub _tmp: tempfile::TempDir,
    pub peers: String,
    pub nodes: BTreeMap<u64, NodeProc>,
    pub extra: Vec<String>,
    pub http: reqwest::Client,
    /// Where the nodes serve the peer RPCs (also those started later).
    pub peer_port: PeerPort,
}

/// Where node `dir`'s log goes: `node{id}.log` beside its data directory, appended across
/// restarts (printed when a test fails: see `Drop for Cluster`).
fn log_path(dir: &Path) -> PathBuf {
    dir.with_extension("log")
}

pub async fn spawn_node(id: u64, addr: &str, dir: &Path, peers: &str, extra: &[String]) -> Child {
    spawn_node_as(&id.to_string(), addr, dir, peers, extra).await
}

/// `mussikon serve --node-id NODE_ID --peers PEERS` at `addr` on `dir`, with the cluster's
/// secret and no node id or peers from the test's own environment.
fn serve_command(node_id: &str, addr: &str, dir: &Path, peers: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", addr, "--data-dir"])
        .arg(dir)
        .args(["--node-id", node_id, "--peers", peers])
        .env("MUSSIKON_CLUSTER_SECRET", SECRET)
        .env_remove("MUSSIKON_NODE_ID")
        .env_remove("MUSSIKON_PEERS");
    command
}

/// Starts `mussikon serve --node-id NODE_ID` (a number or `auto`) and waits until it listens.
pub async fn spawn_node_as(
    node_id: &str,
    addr: &str,
    dir: &Path,
    peers: &str,
    extra: &[String],
) -> Child {
    spawn_listening(node_id, addr, None, dir, peers, extra)
        .await
        .0
}

/// Starts `mussikon serve --node-id NODE_ID` with `--peer-listen PEER_LISTEN` when given and
/// waits until it listens: its process and the peer address it printed (`peers listening on
/// ADDR`, the second stdout line; what port 0 became), or `addr` without a peer listener.
pub async fn spawn_listening(
    node_id: &str,
    addr: &str,
    peer_listen: Option<&str>,
    dir: &Path,
    peers: &str,
    extra: &[String],
) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir))
        .unwrap();
    let mut command = serve_command(node_id, addr, dir, peers);
    if let Some(peer_listen) = peer_listen {
        command.args(["--peer-listen", peer_listen]);
    }
    let mut child = command
        .args(extra)
        .env("MUSSIKON_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    lines.read_line(&mut line).await.unwrap();
    assert_eq!(
        line.trim(),
        format!("listening on {addr}"),
        "node {node_id}"
    );
    let Some(peer_listen) = peer_listen else {
        return (child, addr.to_string());
    };
    line.clear();
    lines.read_line(&mut line).await.unwrap();
    let printed = line
        .trim()
        .strip_prefix("peers listening on ")
        .unwrap_or_else(|| panic!("node {node_id}: no peer listener line, got {line:?}"))
        .to_string();
    if !peer_listen.ends_with(":0") {
        assert_eq!(printed, peer_listen, "node {node_id}");
    }
    (child, printed)
}

/// Runs `mussikon serve --node-id NODE_ID --peers PEERS` at `addr` on `dir`, expecting it to
/// refuse to start; its stderr.
pub async fn serve_refused(node_id: &str, addr: &str, dir: &Path, peers: &str) -> String {
    let out = serve_command(node_id, addr, dir, peers)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "node {node_id} on {} must not start: {err}",
        dir.display()
    );
    err
}

/// Runs `command` to its end; its exit success and output (stdout, then stderr).
async fn outcome(command: &mut Command) -> (bool, String) {
    let out = command.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `mussikon ARGS…` (export, restore, …); its exit success and output.
pub async fn mussikon(args: &[&str]) -> (bool, String) {
    outcome(Command::new(BIN).args(args).env_remove("MUSSIKON_DATA_DIR")).await
}

impl Cluster {
    pub async fn start(n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, extra, PeerPort::Shared).await
    }

    /// [`Cluster::start`] with the peer RPCs served as `peer_port` says.
    pub async fn start_with(n: u64, extra: &[&str], peer_port: PeerPort) -> Cluster {
        Cluster::start_in_with(tempfile::tempdir().unwrap(), n, extra, peer_port).await
    }

    /// [`Cluster::start`] with the nodes' data directories in `tmp` (`node{id}`), which may
    /// already hold data (a restored backup).
    pub async fn start_in(tmp: tempfile::TempDir, n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_in_with(tmp, n, extra, PeerPort::Shared).await
    }

    async fn start_in_with(
        tmp: tempfile::TempDir,
        n: u64,
        extra: &[&str],
        peer_port: PeerPort,
    ) -> Cluster {
        let addrs: BTreeMap<u64, (String, String)> = (1..=n)
            .map(|id| {
                let addr = format!("127.0.0.1:{}", free_port());
                let peer_addr = peer_port.addr_beside(&addr);
                (id, (addr, peer_addr))
            })
            .collect();
        let peers = addrs
            .iter()
            .map(|(id, (_, peer_addr))| format!("{id}={peer_addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut nodes = BTreeMap::new();
        for (id, addrs) in addrs {
            let node = NodeProc::spawn(id, addrs, tmp.path(), &peers, &extra).await;
            nodes.insert(id, node);
        }
        let c = Cluster {
            _tmp: tmp,
            peers,
            nodes,
            extra,
            http: api_client(Duration::from_secs(30)),
            peer_port,
        };
        c.wait_leader(&c.alive()).await;
        c
    }

    pub fn alive(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("http://{}{}", self.nodes[&id].addr, path)
    }

    /// `path` at node `id`'s peer address.
    pub fn peer_url(&self, id: u64, path: &str) -> String {
        format!("http://{}{}", self.nodes[&id].peer_addr, path)
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        let r = self
            .http
            .get(self.url(id, "/v1/cluster/status"))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until every node of `ids` names the same leader, one of `ids`; returns it.
    pub async fn wait_leader(&self, ids: &[u64]) -> u64 {
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

    /// Waits until every running node names one leader and has applied what it had applied;
    /// returns the leader.
    pub async fn wait_converged(&self) -> u64 {
        let alive = self.alive();
        let leader = self.wait_leader(&alive).await;
        let target = self.status(leader).await.unwrap()["applied_index"]
            .as_u64()
            .unwrap();
        for id in alive {
            self.wait_applied(id, target).await;
        }
        leader
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
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

    /// Resident set of node `id`'s process, bytes.
    pub fn rss(&self, id: u64) -> u64 {
        let pid = self.nodes[&id]
            .child
            .as_ref()
            .and_then(|c| c.id())
            .expect("node is running");
        crate::rss::rss_of(&pid.to_string())
    }

    pub fn sigkill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        let child = node.child.take().unwrap();
        kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
        drop(child);
    }

    /// Stops node `id` with SIGTERM and waits until it has exited (its store flushed), which
    /// must be a success.
    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        let mut child = node.child.take().unwrap();
        kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let status = child.wait().await.unwrap();
        assert!(status.success(), "node {id} stopped with {status}");
    }

    pub async fn restart(&mut self, id: u64) {
        self.restart_with(id, &[]).await;
    }

    /// [`Cluster::restart`] with `more` serve flags after the cluster's (this start only).
    pub async fn restart_with(&mut self, id: u64, more: &[&str]) {
        let node = &self.nodes[&id];
        let peer_listen = separate(&node.addr, &node.peer_addr);
        let flags: Vec<String> = self
            .extra
            .iter()
            .cloned()
            .chain(more.iter().map(|s| s.to_string()))
            .collect();
        let (child, _) = spawn_listening(
            &id.to_string(),
            &node.addr,
            peer_listen,
            &node.dir,
            &self.peers,
            &flags,
        )
        .await;
        self.nodes.get_mut(&id).unwrap().child = Some(child);
    }

    /// Stops node `id` (SIGTERM) and starts it again with a peer listener of its own at
    /// `peer_addr` (`--peer-listen`), as a deploy that turns `cluster.peer_listen` on does. Its
    /// membership entry keeps the address it had until `cluster set-addr` moves it; here
    /// `peer_addr` is its peer address from now on, and later restarts keep the listener.
    pub async fn restart_with_peer_listen(&mut self, id: u64, peer_addr: String) {
        self.stop(id).await;
        self.nodes.get_mut(&id).unwrap().peer_addr = peer_addr;
        self.restart(id).await;
    }

    /// Starts a new node `id` that is not a member yet: its `--peers` are the cluster's plus
    /// itself (a higher id than the initializer, so it waits to be joined).
    pub async fn spawn_new(&mut self, id: u64) {
        let addr = format!("127.0.0.1:{}", free_port());
        let peer_addr = self.peer_port.addr_beside(&addr);
        self.peers = format!("{},{id}={peer_addr}", self.peers);
        let node = NodeProc::spawn(
            id,
            (addr, peer_addr),
            self._tmp.path(),
            &self.peers,
            &self.extra,
        )
        .await;
        self.nodes.insert(id, node);
    }

    /// Runs `mussikon serve --node-id NODE_ID` at `addr` on `dir` with the cluster's peers,
    /// expecting it to refuse to start; its stderr.
    pub async fn serve_refused(&self, node_id: &str, addr: &str, dir: &Path) -> String {
        serve_refused(node_id, addr, dir, &self.peers).await
    }

    /// The value of the series `name` (with its labels, as exposed) on node `id`'s `/metrics`;
    /// 0 when absent or the node does not answer.
    pub async fn metric(&self, id: u64, name: &str) -> f64 {
        let text = match self.http.get(self.url(id, "/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// Waits until node `id`'s `/metrics` shows the series `name` (with its labels, as exposed,
    /// e.g. `m{peer="3"}`) at least `at_least`.
    pub async fn wait_metric(&self, id: u64, name: &str, at_least: f64) {
        let started = Instant::now();
        loop {
            let value = self.metric(id, name).await;
            if value >= at_least {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "node {id}: {name} = {value} < {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a read replica with `--node-id auto` at `addr` on data directory `dir` (under the
    /// cluster's temporary directory), not a member yet; its drawn id, read from the data
    /// directory, names it from then on. It serves the peer RPCs on its API listener (`addr` is
    /// also its peer address), whatever the cluster's [`PeerPort`].
    pub async fn spawn_auto(&mut self, dir: &str, addr: &str) -> u64 {
        let dir = self._tmp.path().join(dir);
        let child = spawn_node_as("auto", addr, &dir, &self.peers, &self.extra).await;
        let text = std::fs::read_to_string(dir.join("raft/node-id")).unwrap();
        let id: u64 = text.trim().parse().unwrap();
        let node = NodeProc {
            id,
            addr: addr.to_string(),
            peer_addr: addr.to_string(),
            dir,
            child: Some(child),
        };
        self.nodes.insert(id, node);
        id
    }

    /// Runs `mussikon cluster --node <node id's address> ARGS…`; its exit success and output.
    pub async fn cli(&self, via: u64, args: &[&str]) -> (bool, String) {
        outcome(
            Command::new(BIN)
                .args(["cluster", "--node", &self.nodes[&via].addr])
                .args(args)
                .env_remove("MUSSIKON_NODE")
                .env_remove("MUSSIKON_TOKEN"),
        )
        .await
    }

    /// Voters and learners in node `id`'s view, by role.
    pub async fn roles(&self, id: u64) -> BTreeMap<u64, String> {
        let s = self.status(id).await.unwrap();
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_u64().unwrap(),
                    m["role"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    pub async fn put(&self, id: u64, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.url(id, path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, id: u64, path: &str) -> reqwest::Response {
        self.http.get(self.url(id, path)).send().await.unwrap()
    }

    /// POSTs a booking of `musician` into slot 0 of `gig` through node `via`; its status.
    pub async fn book(&self, via: u64, gig: &str, musician: &str) -> reqwest::StatusCode {
        self.http
            .post(self.url(via, &format!("/v1/gigs/{gig}/bookings")))
            .json(&serde_json::json!({"slot": 0, "musician_id": musician}))
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// A steady writer through `bases` (node URLs) until `stop`, of musicians `{prefix}-{i}`: the
/// ids whose PUT was answered
/// 201, and how many other answers it got (a 503 while the leader changes is "outcome
/// unknown", neither acknowledged nor checked).
pub fn steady_writer(
    prefix: &str,
    bases: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<String>, usize)> {
    let prefix = prefix.to_string();
    tokio::spawn(async move {
        let http = api_client(Duration::from_secs(30));
        let (mut acked, mut other) = (Vec::new(), 0);
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let id = format!("{prefix}-{i}");
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

/// PUTs musicians `{prefix}-0..n` through the nodes `via` in turn, each answered 201; their ids.
pub async fn write_musicians(c: &Cluster, via: &[u64], prefix: &str, n: usize) -> Vec<String> {
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

/// Every id of `ids` reads back 200 (stale) from every node of `on`.
pub async fn assert_all_present(c: &Cluster, on: &[u64], ids: &[String]) {
    for node in on {
        for id in ids {
            let r = c
                .get(*node, &format!("/v1/musicians/{id}?consistency=stale"))
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{id} on node {node}");
        }
    }
}
