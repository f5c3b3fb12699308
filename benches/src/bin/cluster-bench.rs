//! `cluster-bench`: the same HTTP load against a 3-node MussikOn cluster or a 3-node etcd.
//!
//! N concurrent clients, each an HTTP/1.1 keep-alive connection per node and one request at a
//! time, run each workload for a fixed duration; latencies (µs, every answered request) go into
//! an HDR histogram. Before the workloads, every key is written once (the reads need them).
//!
//! | workload | MussikOn | etcd (v3 JSON gateway) |
//! | --- | --- | --- |
//! | `put-rr` | `PUT /v1/musicians/{id}`, nodes in turn (followers forward) | `POST /v3/kv/put`, members in turn |
//! | `put-leader` | the same, to the leader only | the same, to the leader only |
//! | `put-change` | as `put-rr`, each profile with a new fee: a change the search index takes in its facts overlay (ARCHITECTURE.md), without re-indexing the musician | as `put-rr`, the same changed JSON |
//! | `put-reindex` | as `put-change`, and a new bio too: a change of the musician's terms, which every node re-indexes | as `put-rr`, the same changed JSON |
//! | `get` | `GET /v1/musicians/{id}` (linearizable, the default), nodes in turn | `POST /v3/kv/range` (linearizable, the default) |
//! | `get-stale` | `GET /v1/musicians/{id}?consistency=stale` | `POST /v3/kv/range` with `serializable: true` |
//! | `book` | `POST /v1/gigs/{id}/bookings` of a random (gig, musician) pair: a check-and-write; refusals (409) counted apart | `POST /v3/kv/txn`: put `booking/{musician}/{date}` if it does not exist; `succeeded: false` counted as a refusal |
//!
//! `--handover` then has the leader hand leadership over under write load (MussikOn: `POST
//! /v1/cluster/step-down`; etcd: `POST /v3/maintenance/transfer-leadership` to the next member),
//! and `--failover` SIGKILLs the leader under write load; both time the recovery and count
//! the writes that failed.
//!
//! With `--pids` (the nodes' process ids), each workload also reports the CPU time all nodes
//! spent per request, from `/proc/PID/stat`: unlike the wall-clock figures, it hardly depends on
//! what else runs on the machine.
//!
//! Keys are generated musicians (`engine::generate`); etcd stores the very JSON body MussikOn
//! gets, under the musician's id, so values are the same size. Ids are drawn at random.
//!
//! ```text
//! cluster-bench --system mussikon --nodes 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
//! cluster-bench --system etcd --nodes 127.0.0.1:2379,... --clients 32 --duration-s 15
//! ```
//!
//! `benches/cluster.sh` starts both clusters and runs this against each.

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mussikon_benches::host::{load_1min, load_average, machine};
use mussikon_engine::generate::{GenConfig, Generator};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Above this 1-minute load at start, wall-clock figures are not comparable.
const LOAD_LIMIT: f64 = 1.5;
/// How long to wait for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest latency the histogram records, µs.
const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    Mussikon,
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    PutRr,
    PutLeader,
    PutChange,
    PutReindex,
    Get,
    GetStale,
    Book,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::PutRr => "put-rr",
            Workload::PutLeader => "put-leader",
            Workload::PutChange => "put-change",
            Workload::PutReindex => "put-reindex",
            Workload::Get => "get",
            Workload::GetStale => "get-stale",
            Workload::Book => "book",
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "cluster-bench",
    about = "HTTP load against a MussikOn cluster or an etcd cluster: the same clients and workloads."
)]
struct Args {
    /// What the nodes run.
    #[arg(long, value_enum)]
    system: System,
    /// The nodes' HTTP addresses (HOST:PORT), comma separated: MussikOn API addresses or etcd
    /// client URLs without the scheme.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// Workloads to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "put-rr,put-leader,get,get-stale,book"
    )]
    workloads: Vec<Workload>,
    /// Concurrent clients (one request in flight each).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per workload.
    #[arg(long, default_value_t = 15.0)]
    duration_s: f64,
    /// Distinct musicians (keys), all written before the workloads.
    #[arg(long, default_value_t = 5000)]
    keys: usize,
    /// Gigs stored for `book` (MussikOn; etcd uses their dates).
    #[arg(long, default_value_t = 500)]
    gigs: usize,
    /// Process ids of the nodes (comma separated): each workload then also reports the CPU
    /// time the nodes spent per answered request (all nodes together), the figure that
    /// does not depend on how busy the machine is.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Process ids of other processes of the system whose CPU time counts too (comma
    /// separated): a read replica the load does not address, which still applies every write.
    #[arg(long, value_delimiter = ',')]
    extra_pids: Vec<u32>,
    /// After the workloads, SIGKILL the leader (needs --pids, in --nodes order) while
    /// `--clients` writers keep writing to the other nodes, and report the failover: time to a
    /// new leader every survivor agrees on, time to the first acknowledged write sent after the
    /// kill, and the longest gap between acknowledged writes. The killed node stays down.
    #[arg(long)]
    failover: bool,
    /// After the workloads (before `--failover`), have the leader hand leadership over while
    /// `--clients` writers write to every node, and report the same figures as `--failover`
    /// (a planned restart's cost: MussikOn holds writes meanwhile, so none should fail).
    #[arg(long)]
    handover: bool,
    /// The handover's and failover's writers rate musicians (`POST /v1/musicians/{id}/ratings`)
    /// with an `Idempotency-Key` each, instead of rewriting profiles: writes a follower may
    /// submit again when the leader dies with them in flight (MussikOn only).
    #[arg(long)]
    keyed_failover: bool,
    /// Seed of the generated data and of the request choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Generated records, serialized once.
struct Data {
    ids: Vec<String>,
    /// Musician JSON, the PUT body (and etcd's value).
    musicians: Vec<Bytes>,
    /// The same musicians, for `put-change` to change.
    profiles: Vec<mussikon_engine::Musician>,
    /// (id, date, JSON).
    gigs: Vec<(String, String, Bytes)>,
}

impl Data {
    fn generate(args: &Args) -> Result<Data> {
        let gen = Generator::new(GenConfig {
            seed: args.seed,
            musicians: args.keys,
            gigs: args.gigs,
            ..GenConfig::default()
        })?;
        let mut ids = Vec::with_capacity(args.keys);
        let mut musicians = Vec::with_capacity(args.keys);
        let mut profiles = Vec::with_capacity(args.keys);
        for m in gen.musicians() {
            musicians.push(Bytes::from(serde_json::to_vec(&m)?));
            ids.push(m.id.clone());
            profiles.push(m);
        }
        let gigs = gen
            .gigs()
            .map(|g| {
                Ok((
                    g.id.clone(),
                    g.date.clone(),
                    Bytes::from(serde_json::to_vec(&g)?),
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Data {
            ids,
            musicians,
            profiles,
            gigs,
        })
    }
}

/// splitmix64: enough randomness to pick keys, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n.max(1) as u64) as usize
    }
}

/// One request to send.
struct Req {
    method: Method,
    url: String,
    body: Option<Bytes>,
}

/// How an answered request is counted.
enum Verdict {
    Ok,
    /// A correct refusal: a booking that conflicts, a txn whose compare failed.
    Refused,
    Error(String),
}

/// Who leads, as far as the nodes say.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Leadership {
    /// Index of the leader in `--nodes`.
    node: usize,
    term: u64,
}

/// The cluster under load: how to phrase each request for it and judge its answer.
struct Target {
    system: System,
    nodes: Vec<String>,
    http: Client,
}

fn b64(s: impl AsRef<[u8]>) -> String {
    B64.encode(s)
}

/// etcd's gateway prints 64-bit integers as strings.
fn json_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

impl Target {
    fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}{}", self.nodes[node], path)
    }

    /// The key (musician) `k` written in full.
    fn put(&self, node: usize, data: &Data, k: usize) -> Req {
        self.put_body(node, &data.ids[k], data.musicians[k].clone())
    }

    /// The key (musician) `k` written in full with the fee `fee` (in cents): unlike
    /// [`Target::put`], which rewrites a profile unchanged, a write the search index must take.
    fn put_changed(
        &self,
        node: usize,
        data: &Data,
        k: usize,
        fee: i64,
        bio: Option<u64>,
    ) -> Result<Req> {
        let mut m = data.profiles[k].clone();
        m.fee.amount = fee;
        if let Some(n) = bio {
            // A new word in the bio: new text terms, so the document is re-indexed.
            m.bio = Some(format!("{} Take {n}.", m.bio.unwrap_or_default()));
        }
        Ok(self.put_body(node, &data.ids[k], Bytes::from(serde_json::to_vec(&m)?)))
    }

    fn put_body(&self, node: usize, id: &str, body: Bytes) -> Req {
        match self.system {
            System::Mussikon => Req {
                method: Method::PUT,
                url: self.url(node, &format!("/v1/musicians/{id}")),
                body: Some(body),
            },
            System::Etcd => Req {
                method: Method::POST,
                url: self.url(node, "/v3/kv/put"),
                body: Some(Bytes::from(
                    json!({"key": b64(id), "value": b64(&body)}).to_string(),
                )),
            },
        }
    }

    fn get(&self, node: usize, data: &Data, k: usize, stale: bool) -> Req {
        match self.system {
            System::Mussikon => Req {
                method: Method::GET,
                url: self.url(
                    node,
                    &format!(
                        "/v1/musicians/{}{}",
                        data.ids[k],
                        if stale { "?consistency=stale" } else { "" }
                    ),
                ),
                body: None,
            },
            System::Etcd => Req {
                method: Method::POST,
                url: self.url(node, "/v3/kv/range"),
                body: Some(Bytes::from(
                    json!({"key": b64(&data.ids[k]), "serializable": stale}).to_string(),
                )),
            },
        }
    }

    /// A four-star rating of musician `k` (MussikOn only: `--keyed-failover`).
    fn rate(&self, node: usize, data: &Data, k: usize) -> Req {
        Req {
            method: Method::POST,
            url: self.url(node, &format!("/v1/musicians/{}/ratings", data.ids[k])),
            body: Some(Bytes::from_static(br#"{"stars":4}"#)),
        }
    }

    /// Musician `k` into gig `g`'s first slot.
    fn book(&self, node: usize, data: &Data, k: usize, g: usize) -> Req {
        let (gig, date, _) = &data.gigs[g];
        let booking = json!({"slot": 0, "musician_id": data.ids[k]}).to_string();
        match self.system {
            System::Mussikon => Req {
                method: Method::POST,
                url: self.url(node, &format!("/v1/gigs/{gig}/bookings")),
                body: Some(Bytes::from(booking)),
            },
            System::Etcd => {
                let key = b64(format!("booking/{}/{date}", data.ids[k]));
                let value = b64(format!("{gig} {booking}"));
                Req {
                    method: Method::POST,
                    url: self.url(node, "/v3/kv/txn"),
                    body: Some(Bytes::from(
                        json!({
                            "compare": [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
                            "success": [{"request_put": {"key": key, "value": value}}],
                        })
                        .to_string(),
                    )),
                }
            }
        }
    }

    fn store_gig(&self, node: usize, data: &Data, g: usize) -> Req {
        Req {
            method: Method::PUT,
            url: self.url(node, &format!("/v1/gigs/{}", data.gigs[g].0)),
            body: Some(data.gigs[g].2.clone()),
        }
    }

    fn judge(&self, workload: Option<Workload>, status: StatusCode, body: &[u8]) -> Verdict {
        let error = || {
            let text = String::from_utf8_lossy(&body[..body.len().min(160)]).to_string();
            Verdict::Error(format!("{} {text}", status.as_u16()))
        };
        match (self.system, workload) {
            (System::Mussikon, Some(Workload::Book)) if status == StatusCode::CONFLICT => {
                Verdict::Refused
            }
            (System::Mussikon, _) if status.is_success() => Verdict::Ok,
            (System::Etcd, _) if !status.is_success() => error(),
            (System::Etcd, Some(Workload::Get | Workload::GetStale)) => {
                if contains(body, b"\"kvs\"") {
                    Verdict::Ok
                } else {
                    Verdict::Error("range found no key".into())
                }
            }
            (System::Etcd, Some(Workload::Book)) => {
                if contains(body, b"\"succeeded\":true") {
                    Verdict::Ok
                } else {
                    Verdict::Refused
                }
            }
            (System::Etcd, _) => Verdict::Ok,
            (System::Mussikon, _) => error(),
        }
    }

    /// The leader and term, once every node names the same leader; `None` while they do not.
    async fn leadership(&self) -> Option<Leadership> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.leadership_among(&all).await
    }

    /// The leader and term, once the nodes `among` (indexes in `--nodes`) name the same leader
    /// and one of them is it; `None` while they do not.
    async fn leadership_among(&self, among: &[usize]) -> Option<Leadership> {
        let mut seen = Vec::new();
        for &node in among {
            let body = match self.system {
                System::Mussikon => self.http.get(self.url(node, "/v1/cluster/status")),
                System::Etcd => self
                    .http
                    .post(self.url(node, "/v3/maintenance/status"))
                    .body("{}"),
            }
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
            let v: Value = serde_json::from_slice(&body).ok()?;
            let (is_leader, leader, term) = match self.system {
                System::Mussikon => (
                    v["state"] == "leader",
                    json_u64(&v["leader"])?,
                    json_u64(&v["term"])?,
                ),
                System::Etcd => {
                    let leader = json_u64(&v["leader"])?;
                    (
                        json_u64(&v["header"]["member_id"]) == Some(leader),
                        leader,
                        json_u64(&v["raftTerm"]).or_else(|| json_u64(&v["header"]["raft_term"]))?,
                    )
                }
            };
            seen.push((is_leader, leader, term));
        }
        let at = seen.iter().position(|s| s.0)?;
        let (_, leader, term) = seen[at];
        seen.iter()
            .all(|s| s.1 == leader && s.2 == term)
            .then_some(Leadership {
                node: among[at],
                term,
            })
    }

    /// Asks the leader (`leader`, an index in `--nodes`) to hand leadership over: MussikOn's
    /// step-down, etcd's move-leader to the next member. Returns when the request is answered.
    async fn hand_over(&self, leader: usize) -> Result<()> {
        let req = match self.system {
            System::Mussikon => self.http.post(self.url(leader, "/v1/cluster/step-down")),
            System::Etcd => {
                let next = (leader + 1) % self.nodes.len();
                let body = self
                    .http
                    .post(self.url(next, "/v3/maintenance/status"))
                    .body("{}")
                    .send()
                    .await?
                    .bytes()
                    .await?;
                let status: Value = serde_json::from_slice(&body)?;
                let id = json_u64(&status["header"]["member_id"])
                    .context("etcd status without header.member_id")?;
                self.http
                    .post(self.url(leader, "/v3/maintenance/transfer-leadership"))
                    .body(json!({ "targetID": id.to_string() }).to_string())
            }
        };
        let r = req.timeout(FAILOVER_WAIT).send().await?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if !status.is_success() || body.contains("\"error\"") {
            bail!("the handover request was answered {status}: {body}");
        }
        Ok(())
    }

    async fn wait_leader(&self) -> Result<Leadership> {
        let started = Instant::now();
        loop {
            if let Some(l) = self.leadership().await {
                return Ok(l);
            }
            if started.elapsed() > LEADER_WAIT {
                bail!("no leader that every node agrees on after {LEADER_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What the clients of one phase saw.
struct Tally {
    latency_us: Histogram<u64>,
    ok: u64,
    refused: u64,
    errors: u64,
    /// Error kind → (count).
    kinds: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
            ok: 0,
            refused: 0,
            errors: 0,
            kinds: BTreeMap::new(),
        })
    }

    fn merge(&mut self, other: Tally) -> Result<()> {
        self.latency_us.add(&other.latency_us)?;
        self.ok += other.ok;
        self.refused += other.refused;
        self.errors += other.errors;
        for (k, n) in other.kinds {
            *self.kinds.entry(k).or_default() += n;
        }
        Ok(())
    }

    fn error(&mut self, kind: String) {
        self.errors += 1;
        *self.kinds.entry(kind).or_default() += 1;
    }
}

/// Sends one request and counts its outcome.
async fn send(
    target: &Target,
    client: &Client,
    workload: Option<Workload>,
    req: Req,
    idempotency_key: Option<&str>,
    tally: &mut Tally,
) -> Result<()> {
    let mut builder = client.request(req.method, &req.url);
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    if let Some(body) = req.body {
        builder = builder
            .header("content-type", "application/json")
            .body(body);
    }
    let started = Instant::now();
    let answer = match builder.send().await {
        Ok(r) => {
            let status = r.status();
            r.bytes().await.map(|b| (status, b))
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok((status, body)) => {
            let us = started.elapsed().as_micros() as u64;
            tally.latency_us.record(us.clamp(1, MAX_LATENCY_US))?;
            match target.judge(workload, status, &body) {
                Verdict::Ok => tally.ok += 1,
                Verdict::Refused => tally.refused += 1,
                Verdict::Error(kind) => tally.error(kind),
            }
        }
        Err(e) => tally.error(format!("transport: {e}")),
    }
    Ok(())
}

fn client() -> Result<Client> {
    Ok(Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Writes every key (and, for MussikOn, every gig) once, `clients` at a time, nodes in turn.
async fn preload(target: &Arc<Target>, data: &Arc<Data>, clients: usize) -> Result<Tally> {
    let next = Arc::new(AtomicUsize::new(0));
    let gigs = if target.system == System::Mussikon {
        data.gigs.len()
    } else {
        0
    };
    let total = data.ids.len() + gigs;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (target, data, next) = (target.clone(), data.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = client()?;
            let mut tally = Tally::new()?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(tally);
                }
                let node = i % target.nodes.len();
                let req = if i < data.ids.len() {
                    target.put(node, &data, i)
                } else {
                    target.store_gig(node, &data, i - data.ids.len())
                };
                send(&target, &client, None, req, None, &mut tally).await?;
            }
        }));
    }
    collect(tasks).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Result<Tally>>>) -> Result<Tally> {
    let mut all = Tally::new()?;
    for t in tasks {
        all.merge(t.await??)?;
    }
    Ok(all)
}

/// Runs `workload` with `clients` clients for `duration`.
async fn run(
    target: &Arc<Target>,
    data: &Arc<Data>,
    workload: Workload,
    leader: usize,
    args: &Args,
) -> Result<(Tally, f64)> {
    let duration = Duration::from_secs_f64(args.duration_s);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (target, data) = (target.clone(), data.clone());
        let mut rng = Rng(args.seed ^ ((c as u64 + 1) << 32) ^ workload as u64);
        tasks.push(tokio::spawn(async move {
            let client = client()?;
            let mut tally = Tally::new()?;
            let n = target.nodes.len();
            let mut turn = c;
            while Instant::now() < deadline {
                turn += 1;
                let node = turn % n;
                let k = rng.below(data.ids.len());
                let req = match workload {
                    Workload::PutRr => target.put(node, &data, k),
                    Workload::PutLeader => target.put(leader, &data, k),
                    Workload::PutChange => {
                        // 10.00 to 300.00: every write a new fee, whatever the key's last one.
                        let fee = 1_000 + rng.below(29_000) as i64;
                        target.put_changed(node, &data, k, fee, None)?
                    }
                    Workload::PutReindex => {
                        let fee = 1_000 + rng.below(29_000) as i64;
                        let take = rng.below(1_000_000) as u64;
                        target.put_changed(node, &data, k, fee, Some(take))?
                    }
                    Workload::Get => target.get(node, &data, k, false),
                    Workload::GetStale => target.get(node, &data, k, true),
                    Workload::Book => {
                        let g = rng.below(data.gigs.len());
                        target.book(node, &data, k, g)
                    }
                };
                send(&target, &client, Some(workload), req, None, &mut tally).await?;
            }
            Ok(tally)
        }));
    }
    let tally = collect(tasks).await?;
    Ok((tally, started.elapsed().as_secs_f64()))
}

/// What `--failover` or `--handover` did to the leader.
#[derive(Clone, Copy)]
enum Disruption {
    /// SIGKILL of the leader's process.
    Kill { pid: u32 },
    /// The leader asked to hand leadership over.
    Handover,
}

/// What `--failover` or `--handover` measured, in milliseconds from the kill or the request.
struct Failover {
    new_leader: Leadership,
    /// A new leader every survivor agrees on.
    elected_ms: f64,
    /// The first acknowledged write that was sent after the kill.
    first_write_ms: f64,
    /// How long the handover request took (`None` for a kill).
    request_ms: Option<f64>,
    /// The longest time without any acknowledged write, around the kill.
    longest_gap_ms: f64,
    tally: Tally,
}

/// How long `--failover` waits for writes to resume before calling it a failure.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);

/// Disrupts the leader while `clients` writers write (to the other nodes for a kill, to every
/// node for a handover); see `Args::failover` and `Args::handover`.
async fn failover(
    target: &Arc<Target>,
    data: &Arc<Data>,
    leader: usize,
    disruption: Disruption,
    args: &Args,
) -> Result<Failover> {
    let survivors: Vec<usize> = match disruption {
        Disruption::Kill { .. } => (0..target.nodes.len()).filter(|&n| n != leader).collect(),
        Disruption::Handover => (0..target.nodes.len()).collect(),
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Set at the kill; a writer whose write sent after it is acknowledged notifies `resumed`.
    let kill_time = Arc::new(std::sync::OnceLock::<Instant>::new());
    let resumed = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (target, data, stop, survivors, kill_time, resumed) = (
            target.clone(),
            data.clone(),
            stop.clone(),
            survivors.clone(),
            kill_time.clone(),
            resumed.clone(),
        );
        let mut rng = Rng(args.seed ^ ((c as u64 + 1) << 40));
        let keyed = args.keyed_failover;
        tasks.push(tokio::spawn(async move {
            let client = client()?;
            let mut tally = Tally::new()?;
            // (sent, acknowledged) of every acknowledged write.
            let mut acks = Vec::new();
            let mut turn = c;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let node = survivors[turn % survivors.len()];
                let k = rng.below(data.ids.len());
                let (req, key) = if keyed {
                    (
                        target.rate(node, &data, k),
                        Some(format!("bench-{c}-{turn}")),
                    )
                } else {
                    (target.put(node, &data, k), None)
                };
                let sent = Instant::now();
                let ok_before = tally.ok;
                send(&target, &client, None, req, key.as_deref(), &mut tally).await?;
                if tally.ok > ok_before {
                    acks.push((sent, Instant::now()));
                    if kill_time.get().is_some_and(|k| sent >= *k) {
                        resumed.notify_one();
                    }
                }
            }
            Ok::<_, anyhow::Error>((tally, acks))
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = *kill_time.get_or_init(Instant::now);
    let since_kill = |t: Instant| t.saturating_duration_since(killed_at).as_secs_f64() * 1000.0;
    let mut request_ms = None;
    match disruption {
        Disruption::Kill { pid } => {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .context("running kill")?;
            if !status.success() {
                stop.store(true, Ordering::Relaxed);
                bail!("kill -KILL {pid} failed");
            }
        }
        Disruption::Handover => {
            if let Err(e) = target.hand_over(leader).await {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
            request_ms = Some(since_kill(Instant::now()));
        }
    }
    let (new_leader, elected_ms) = loop {
        if let Some(l) = target
            .leadership_among(&survivors)
            .await
            .filter(|l| l.node != leader)
        {
            break (l, since_kill(Instant::now()));
        }
        if killed_at.elapsed() > FAILOVER_WAIT {
            stop.store(true, Ordering::Relaxed);
            bail!("no new leader {FAILOVER_WAIT:?} after the kill");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Wait for a write sent after the kill to be acknowledged (writers stuck on requests to
    // the dead leader may take seconds to get to send one: etcd's request timeout is about
    // 7 s), then let the writers run on for a second.
    let left = FAILOVER_WAIT.saturating_sub(killed_at.elapsed());
    let _ = tokio::time::timeout(left, resumed.notified()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::new()?;
    let mut acks = Vec::new();
    for t in tasks {
        let (part, a) = t.await??;
        tally.merge(part)?;
        acks.extend(a);
    }
    let first_write_ms = acks
        .iter()
        .filter(|(sent, _)| *sent >= killed_at)
        .map(|&(_, acked)| since_kill(acked))
        .min_by(f64::total_cmp)
        .context("no write sent after the kill was acknowledged")?;
    let mut times: Vec<Instant> = acks.iter().map(|&(_, acked)| acked).collect();
    times.sort();
    let longest_gap_ms = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    Ok(Failover {
        new_leader,
        elected_ms,
        first_write_ms,
        request_ms,
        longest_gap_ms,
        tally,
    })
}

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system) the processes have used so far; `None` without processes or
/// when one cannot be read.
fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / TICKS_PER_S)
}

/// Node CPU milliseconds per request between two readings, as a table cell.
fn cpu_per_request(before: Option<f64>, after: Option<f64>, requests: u64) -> String {
    match (before, after) {
        (Some(b), Some(a)) if requests > 0 => format!("{:.2}", (a - b) * 1000.0 / requests as f64),
        _ => "—".into(),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn print_errors(tally: &Tally) {
    for (kind, n) in &tally.kinds {
        eprintln!("    error x{n}: {kind}");
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.nodes.is_empty() || args.clients == 0 || args.keys == 0 || args.gigs == 0 {
        bail!("--nodes, --clients, --keys and --gigs must not be empty or zero");
    }
    if args.keyed_failover && matches!(args.system, System::Etcd) {
        bail!("--keyed-failover: etcd has no idempotency keys (MussikOn only)");
    }
    println!("machine: {}", machine());
    let load = load_average();
    println!("load average at start: {load}");
    if load_1min().is_some_and(|l| l > LOAD_LIMIT) {
        println!(
            "WARNING: load above {LOAD_LIMIT} at start: wall-clock figures are not comparable"
        );
    }
    println!(
        "system: {:?}, nodes: {}, clients: {}, {} s per workload, {} keys",
        args.system,
        args.nodes.join(","),
        args.clients,
        args.duration_s,
        args.keys
    );
    let data = Arc::new(Data::generate(&args)?);
    let mean_body =
        data.musicians.iter().map(Bytes::len).sum::<usize>() / data.musicians.len().max(1);
    println!("mean musician JSON (the value written): {mean_body} bytes");
    let target = Arc::new(Target {
        system: args.system,
        nodes: args.nodes.clone(),
        http: client()?,
    });
    let mut leadership = target.wait_leader().await.context("waiting for a leader")?;
    println!(
        "leader: {} (term {})",
        target.nodes[leadership.node], leadership.term
    );

    let cpu_pids: Vec<u32> = args.pids.iter().chain(&args.extra_pids).copied().collect();
    let started = Instant::now();
    let cpu_before = cpu_seconds(&cpu_pids);
    let loaded = preload(&target, &data, args.clients).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "preload: {} writes in {secs:.1} s ({:.0}/s), {} errors, node CPU ms per write: {}",
        loaded.ok + loaded.errors,
        loaded.ok as f64 / secs,
        loaded.errors,
        cpu_per_request(cpu_before, cpu_seconds(&cpu_pids), loaded.ok)
    );
    if loaded.errors > 0 {
        print_errors(&loaded);
        bail!("the preload had errors: the reads would miss keys");
    }

    let mut rows = Vec::new();
    let mut failed = false;
    for &workload in &args.workloads {
        let cpu_before = cpu_seconds(&cpu_pids);
        let (tally, secs) = run(&target, &data, workload, leadership.node, &args).await?;
        let cpu = cpu_per_request(
            cpu_before,
            cpu_seconds(&cpu_pids),
            tally.ok + tally.refused + tally.errors,
        );
        let h = &tally.latency_us;
        let row = format!(
            "| {} | {:.0} | {cpu} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |",
            workload.name(),
            (tally.ok + tally.refused) as f64 / secs,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            tally.refused,
            tally.errors,
        );
        println!("{row}");
        print_errors(&tally);
        failed |= tally.errors > 0 || tally.ok + tally.refused == 0;
        rows.push(row);
        let now = target.wait_leader().await?;
        if now != leadership {
            println!(
                "LEADER CHANGE during {}: {} (term {}) -> {} (term {})",
                workload.name(),
                target.nodes[leadership.node],
                leadership.term,
                target.nodes[now.node],
                now.term
            );
            leadership = now;
        }
    }
    println!();
    println!(
        "{:?}, {} clients, {} s per workload:",
        args.system, args.clients, args.duration_s
    );
    println!("| workload | ops/s | node CPU ms/op | p50 ms | p90 ms | p99 ms | max ms | refused | errors |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        println!("{row}");
    }
    if args.handover {
        println!();
        println!(
            "handover: the leader {} hands leadership over under {} writers to every node",
            target.nodes[leadership.node], args.clients
        );
        let f = failover(&target, &data, leadership.node, Disruption::Handover, &args).await?;
        println!(
            "| handover{} | new leader {} (term {}) after {:.0} ms (request answered after {:.0} ms) | first write sent after the request acknowledged after {:.0} ms | longest gap between acknowledged writes {:.0} ms | {} writes acknowledged, {} errors |",
            if args.keyed_failover { " (keyed ratings)" } else { "" },
            target.nodes[f.new_leader.node],
            f.new_leader.term,
            f.elected_ms,
            f.request_ms.unwrap_or(0.0),
            f.first_write_ms,
            f.longest_gap_ms,
            f.tally.ok,
            f.tally.errors
        );
        print_errors(&f.tally);
        leadership = target.wait_leader().await?;
    }
    if args.failover {
        let Some(&pid) = args.pids.get(leadership.node) else {
            bail!("--failover needs --pids, one per node in --nodes order");
        };
        if args.pids.len() != args.nodes.len() {
            bail!("--failover needs --pids, one per node in --nodes order");
        }
        println!();
        println!(
            "failover: SIGKILL of the leader {} (pid {pid}) under {} writers to the others",
            target.nodes[leadership.node], args.clients
        );
        let f = failover(
            &target,
            &data,
            leadership.node,
            Disruption::Kill { pid },
            &args,
        )
        .await?;
        println!(
            "| failover{} | new leader {} (term {}) after {:.0} ms | first write sent after the kill acknowledged after {:.0} ms | longest gap between acknowledged writes {:.0} ms | {} writes acknowledged, {} errors |",
            if args.keyed_failover { " (keyed ratings)" } else { "" },
            target.nodes[f.new_leader.node],
            f.new_leader.term,
            f.elected_ms,
            f.first_write_ms,
            f.longest_gap_ms,
            f.tally.ok,
            f.tally.errors
        );
        print_errors(&f.tally);
    }
    println!("load average at end: {}", load_average());
    if failed {
        bail!("a workload had errors or no successful request");
    }
    Ok(())
}
