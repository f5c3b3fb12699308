//! A linearizability check of one register (`/v1/musicians/reg`, its value the `name`) against
//! histories that concurrent clients record on a 3-node cluster: calm, with the leader killed
//! midway, and with the leader cut from both followers (a partition) and then healed.
//!
//! The checker is Wing & Gong's search with Lowe's memoization (as in Knossos and Porcupine):
//! depth first, it picks an operation that may take effect next (no operation still to place
//! completed before it was invoked), applies it to the register model, and never visits the same
//! (set of placed operations, register value) twice. A write whose answer was an error, a
//! timeout or a 503 is indeterminate: it completes at +infinity, so it may take effect anywhere
//! after its invocation or not at all. A read that failed constrains nothing and is dropped.

use crate::harness::*;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an operation did to, or saw of, the register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write(String),
    /// `None`: the register was never written (404).
    Read(Option<String>),
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Entry {
    pub client: usize,
    pub op: Op,
    /// Taken from the shared clock right before the request was sent.
    pub invoke: u64,
    /// Taken from the shared clock right after the answer was read; `None`: a write whose
    /// outcome is unknown (it completes at +infinity).
    pub complete: Option<u64>,
    /// Where and how it ran (node, consistency, error), for reports only.
    pub note: String,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match &self.op {
            Op::Write(v) => format!("write({v})"),
            Op::Read(Some(v)) => format!("read() -> {v}"),
            Op::Read(None) => "read() -> None".to_string(),
        };
        let complete = self
            .complete
            .map_or_else(|| "unknown".to_string(), |c| c.to_string());
        write!(
            f,
            "client {} {op} [{}, {complete}] {}",
            self.client, self.invoke, self.note
        )
    }
}

/// Why a history is not linearizable: at the longest order the search found, `op` (the first
/// to complete of the operations left) could not be placed: no order of it and the operations
/// that may go before it fits the register from there.
#[derive(Debug)]
pub struct Violation {
    pub op: Entry,
    /// The register's value after the longest order found.
    pub state: Option<String>,
    /// How many operations that order placed, of how many that had to be.
    pub placed: usize,
    pub required: usize,
    /// The operations that could have gone next there (`op` among them).
    pub candidates: Vec<Entry>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "not linearizable: {} cannot take effect after the longest order found \
             ({} of {} operations placed, register = {:?}); could go next:",
            self.op, self.placed, self.required, self.state
        )?;
        for c in &self.candidates {
            writeln!(f, "  {c}")?;
        }
        Ok(())
    }
}

/// An operation as the search sees it: values as small numbers (0 = `None`).
struct Prepared {
    entry: Entry,
    write: bool,
    value: u32,
    complete: u64,
}

/// Checks `history` against a register that starts as `None`.
pub fn check(history: &[Entry]) -> Result<(), Box<Violation>> {
    // Failed reads say nothing. An indeterminate write nobody read can always take effect
    // last, where it changes nothing observed: leaving it out is exact and keeps the search
    // small.
    let read: HashSet<&str> = history
        .iter()
        .filter(|e| e.complete.is_some())
        .filter_map(|e| match &e.op {
            Op::Read(Some(v)) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let mut kept: Vec<&Entry> = history
        .iter()
        .filter(|e| match &e.op {
            Op::Read(_) => e.complete.is_some(),
            Op::Write(v) => e.complete.is_some() || read.contains(v.as_str()),
        })
        .collect();
    kept.sort_by_key(|e| e.invoke);
    let mut values: HashMap<&str, u32> = HashMap::new();
    let mut ops = Vec::with_capacity(kept.len());
    for e in kept {
        let (write, value) = match &e.op {
            Op::Write(v) => (true, Some(v)),
            Op::Read(v) => (false, v.as_ref()),
        };
        let value = value.map_or(0, |v| {
            let next = values.len() as u32 + 1;
            *values.entry(v.as_str()).or_insert(next)
        });
        ops.push(Prepared {
            entry: e.clone(),
            write,
            value,
            complete: e.complete.unwrap_or(u64::MAX),
        });
    }
    let names: HashMap<u32, &str> = values.iter().map(|(k, v)| (*v, *k)).collect();
    Search::new(&ops).run().map_err(|(placed, state, done)| {
        let required = ops.iter().filter(|o| o.complete != u64::MAX).count();
        let (horizon, candidates) = frontier(&ops, &done);
        // Left with a determinate operation to place, the horizon is its completion.
        let (_, stuck) = ops
            .iter()
            .enumerate()
            .find(|(i, o)| !done.get(*i) && o.complete == horizon)
            .unwrap();
        Box::new(Violation {
            op: stuck.entry.clone(),
            state: names.get(&state).map(|s| s.to_string()),
            placed,
            required,
            candidates: candidates
                .into_iter()
                .map(|i| ops[i].entry.clone())
                .collect(),
        })
    })
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize, on: bool) {
        if on {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
}

/// The earliest completion among the operations not yet placed, and the operations that may
/// take effect next: not placed, invoked no later than that completion. Operations are sorted
/// by invocation, so the scan stops at the first one invoked after the running minimum (it
/// and all after it complete later still).
fn frontier(ops: &[Prepared], done: &Bits) -> (u64, Vec<usize>) {
    let mut horizon = u64::MAX;
    let mut candidates = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        if done.get(i) {
            continue;
        }
        if o.entry.invoke > horizon {
            break;
        }
        horizon = horizon.min(o.complete);
        candidates.push(i);
    }
    candidates.retain(|i| ops[*i].entry.invoke <= horizon);
    (horizon, candidates)
}

struct Search<'a> {
    ops: &'a [Prepared],
    /// (placed set, register value) already explored.
    seen: HashSet<(Bits, u32)>,
    /// The longest order found: operations placed (determinate ones), value, placed set.
    best: (usize, u32, Bits),
}

impl<'a> Search<'a> {
    fn new(ops: &'a [Prepared]) -> Search<'a> {
        Search {
            ops,
            seen: HashSet::new(),
            best: (0, 0, Bits::new(ops.len())),
        }
    }

    /// Iterative depth-first search; `Err` carries the longest order found.
    fn run(mut self) -> Result<(), (usize, u32, Bits)> {
        let required = self.ops.iter().filter(|o| o.complete != u64::MAX).count();
        let mut done = Bits::new(self.ops.len());
        let mut state = 0u32;
        let mut placed = 0usize;
        // (operation placed, value before it) for each step taken; and where to resume.
        let mut stack: Vec<(usize, u32)> = Vec::new();
        let mut from = 0usize;
        loop {
            if placed == required {
                return Ok(());
            }
            if placed > self.best.0 {
                self.best = (placed, state, done.clone());
            }
            let (_, candidates) = frontier(self.ops, &done);
            let next = candidates.into_iter().filter(|i| *i >= from).find(|i| {
                let o = &self.ops[*i];
                if !o.write && o.value != state {
                    return false;
                }
                let after = if o.write { o.value } else { state };
                let mut d = done.clone();
                d.set(*i, true);
                self.seen.insert((d, after))
            });
            match next {
                Some(i) => {
                    let o = &self.ops[i];
                    stack.push((i, state));
                    done.set(i, true);
                    if o.write {
                        state = o.value;
                    }
                    if o.complete != u64::MAX {
                        placed += 1;
                    }
                    from = 0;
                }
                None => {
                    let Some((i, before)) = stack.pop() else {
                        return Err(self.best);
                    };
                    done.set(i, false);
                    state = before;
                    if self.ops[i].complete != u64::MAX {
                        placed -= 1;
                    }
                    from = i + 1;
                }
            }
        }
    }
}

mod checker {
    //! The checker on small hand-made histories (clock ticks as numbers).

    use super::*;

    fn w(client: usize, v: &str, invoke: u64, complete: u64) -> Entry {
        Entry {
            client,
            op: Op::Write(v.into()),
            invoke,
            complete: Some(complete),
            note: String::new(),
        }
    }

    /// A write whose answer never came.
    fn w_unknown(client: usize, v: &str, invoke: u64) -> Entry {
        Entry {
            complete: None,
            ..w(client, v, invoke, 0)
        }
    }

    fn r(client: usize, v: Option<&str>, invoke: u64, complete: u64) -> Entry {
        Entry {
            client,
            op: Op::Read(v.map(str::to_string)),
            invoke,
            complete: Some(complete),
            note: String::new(),
        }
    }

    fn fails_at(history: &[Entry], op: &Entry) {
        match check(history) {
            Ok(()) => panic!("accepted a non-linearizable history: {history:#?}"),
            Err(v) => {
                assert_eq!(
                    (v.op.client, &v.op.op, v.op.invoke),
                    (op.client, &op.op, op.invoke),
                    "{v}"
                );
            }
        }
    }

    fn passes(history: &[Entry]) {
        if let Err(v) = check(history) {
            panic!("{v}");
        }
    }

    #[test]
    fn a_linearizable_history_passes() {
        passes(&[
            r(0, None, 1, 2),
            w(1, "a", 3, 4),
            r(0, Some("a"), 5, 6),
            w(1, "b", 7, 12),
            // Concurrent with write(b): either value.
            r(0, Some("a"), 8, 9),
            r(2, Some("b"), 10, 11),
            r(0, Some("b"), 13, 14),
        ]);
        passes(&[]);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let stale = r(2, Some("a"), 5, 6);
        fails_at(&[w(0, "a", 1, 2), w(1, "b", 3, 4), stale.clone()], &stale);
        let initial = r(2, None, 3, 4);
        fails_at(&[w(0, "a", 1, 2), initial.clone()], &initial);
    }

    #[test]
    fn concurrent_writes_may_take_effect_in_either_order_but_only_one() {
        let writes = [w(0, "a", 1, 10), w(1, "b", 2, 9)];
        passes(&[
            writes[0].clone(),
            writes[1].clone(),
            r(2, Some("a"), 11, 12),
        ]);
        passes(&[
            writes[0].clone(),
            writes[1].clone(),
            r(2, Some("b"), 11, 12),
        ]);
        // Both orders, seen while they run: b then a (the search must undo its first choice).
        passes(&[
            writes[0].clone(),
            writes[1].clone(),
            r(2, Some("b"), 3, 4),
            r(2, Some("a"), 5, 6),
            r(2, Some("a"), 12, 13),
        ]);
        // Once both completed, the register does not flip back.
        let flip = r(2, Some("a"), 13, 14);
        fails_at(
            &[
                writes[0].clone(),
                writes[1].clone(),
                r(2, Some("a"), 3, 4),
                r(2, Some("b"), 11, 12),
                flip.clone(),
            ],
            &flip,
        );
    }

    #[test]
    fn an_indeterminate_write_may_take_effect_late_or_never() {
        // Observed long after its (lost) answer should have come.
        passes(&[
            w(0, "a", 1, 2),
            w_unknown(1, "b", 3),
            r(2, Some("a"), 4, 5),
            r(2, Some("b"), 20, 21),
        ]);
        // Never observed: as if it had not happened.
        passes(&[
            w(0, "a", 1, 2),
            w_unknown(1, "b", 3),
            r(2, Some("a"), 20, 21),
        ]);
        // Once observed it stays (nothing else was written).
        let undone = r(2, Some("a"), 22, 23);
        fails_at(
            &[
                w(0, "a", 1, 2),
                w_unknown(1, "b", 3),
                r(2, Some("b"), 20, 21),
                undone.clone(),
            ],
            &undone,
        );
        // But it cannot take effect before it was sent.
        let early = r(2, Some("b"), 3, 4);
        fails_at(
            &[w(0, "a", 1, 2), early.clone(), w_unknown(1, "b", 5)],
            &early,
        );
    }

    #[test]
    fn a_read_of_a_value_never_written_fails() {
        let ghost = r(1, Some("z"), 3, 4);
        fails_at(&[w(0, "a", 1, 2), ghost.clone()], &ghost);
        // Nor of one written only after the read completed.
        let future = r(1, Some("a"), 1, 2);
        fails_at(&[future.clone(), w(0, "a", 3, 4)], &future);
    }

    #[test]
    fn failed_reads_are_dropped() {
        let mut lost = r(2, Some("z"), 3, 4);
        lost.complete = None;
        passes(&[w(0, "a", 1, 2), lost]);
    }
}

// ---------------------------------------------------------------------------------------------
// Histories from the cluster.

/// The register: one musician whose `name` is the value.
const REG: &str = "reg";

/// A small xorshift generator (no `rand` in the workspace); the seed is printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A read's consistency level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    /// The route's default (linearizable for a get by id).
    Default,
    Linearizable,
    Leader,
    Stale,
}

impl Level {
    fn query(self) -> &'static str {
        match self {
            Level::Default => "",
            Level::Linearizable => "?consistency=linearizable",
            Level::Leader => "?consistency=leader",
            Level::Stale => "?consistency=stale",
        }
    }
}

/// One client operation as recorded: `level` is `None` for writes; `entry` is `None` for a
/// failed read; `failure` says why a read failed or a write is indeterminate.
struct Record {
    level: Option<Level>,
    entry: Option<Entry>,
    failure: Option<String>,
}

/// What the clients share: the nodes' base URLs, the clock, the stop flag and a count of
/// finished operations.
struct Shared {
    urls: Vec<String>,
    http: reqwest::Client,
    clock: AtomicU64,
    stop: AtomicBool,
    finished: AtomicUsize,
    started: Instant,
    /// Answers no scenario should produce (a test bug or a server bug), with what came.
    unexpected: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    fn new(c: &Cluster) -> Arc<Shared> {
        Arc::new(Shared {
            urls: c.nodes.keys().map(|id| c.url(*id, "")).collect(),
            http: api_client(Duration::from_secs(10)),
            clock: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            finished: AtomicUsize::new(0),
            started: Instant::now(),
            unexpected: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn note(&self, node: usize, what: &str) -> String {
        format!(
            "(node {}, {what}, {:.3} s)",
            node + 1,
            self.started.elapsed().as_secs_f64()
        )
    }

    fn unexpected(&self, what: String) {
        self.unexpected.lock().unwrap().push(what);
    }
}

/// Why a 503 came: the problem's detail, numbers (addresses, indexes) as `#`.
fn unavailable(text: &str) -> String {
    let detail = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.to_string());
    let mut out = String::from("503 ");
    for c in detail.chars() {
        match c {
            '0'..='9' if out.ends_with('#') => {}
            '0'..='9' => out.push('#'),
            '.' | ':' if out.ends_with('#') => {}
            c => out.push(c),
        }
    }
    out
}

/// Why a request got no answer.
fn lost(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connect failed"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "connection lost"
    };
    kind.to_string()
}

async fn write_op(sh: &Shared, client: usize, node: usize, n: usize) -> Record {
    let value = format!("w-{client}-{n}");
    let mut body = musician(REG);
    body["name"] = json!(value);
    let url = format!("{}/v1/musicians/{REG}", sh.urls[node]);
    let invoke = sh.tick();
    let answer = sh.http.put(url).json(&body).send().await;
    let (complete, failure) = match answer {
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            let t = sh.tick();
            match status {
                StatusCode::OK | StatusCode::CREATED => (Some(t), None),
                StatusCode::SERVICE_UNAVAILABLE => (None, Some(unavailable(&text))),
                other => {
                    sh.unexpected(format!("write {value}: {other} {text}"));
                    (None, Some(other.to_string()))
                }
            }
        }
        Err(e) => (None, Some(lost(&e))),
    };
    let how = failure.clone().unwrap_or_else(|| "acknowledged".into());
    Record {
        level: None,
        entry: Some(Entry {
            client,
            op: Op::Write(value),
            invoke,
            complete,
            note: sh.note(node, &how),
        }),
        failure,
    }
}

async fn read_op(sh: &Shared, client: usize, node: usize, level: Level) -> Record {
    let url = format!("{}/v1/musicians/{REG}{}", sh.urls[node], level.query());
    let invoke = sh.tick();
    let answer = sh.http.get(url).send().await;
    let seen = match answer {
        Ok(r) => {
            let status = r.status();
            let text = r.text().await;
            let complete = sh.tick();
            match (status, text) {
                (StatusCode::OK, Ok(text)) => {
                    let name = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["musician"]["name"].as_str().map(str::to_string));
                    match name {
                        Some(n) => Ok((Some(n), complete)),
                        None => {
                            sh.unexpected(format!("read: 200 without a name: {text}"));
                            Err("no name".to_string())
                        }
                    }
                }
                (StatusCode::NOT_FOUND, _) => Ok((None, complete)),
                (StatusCode::SERVICE_UNAVAILABLE, Ok(text)) => Err(unavailable(&text)),
                (_, Err(e)) => Err(lost(&e)),
                (other, Ok(text)) => {
                    sh.unexpected(format!("read: {other} {text}"));
                    Err(other.to_string())
                }
            }
        }
        Err(e) => Err(lost(&e)),
    };
    Record {
        level: Some(level),
        failure: seen.as_ref().err().cloned(),
        entry: seen.ok().map(|(value, complete)| Entry {
            client,
            op: Op::Read(value),
            invoke,
            complete: Some(complete),
            note: sh.note(node, &format!("{level:?}")),
        }),
    }
}

/// One client: up to `max_ops` operations on random nodes until told to stop; 40% writes,
/// 40% linearizable reads (half of them by the route's default), 10% leader and 10% stale reads.
async fn client(sh: Arc<Shared>, client: usize, max_ops: usize, seed: u64) -> Vec<Record> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for n in 0..max_ops {
        if sh.stop.load(Ordering::SeqCst) {
            break;
        }
        let node = rng.below(sh.urls.len() as u64) as usize;
        let rec = match rng.below(10) {
            0..=3 => write_op(&sh, client, node, n).await,
            4 | 5 => read_op(&sh, client, node, Level::Linearizable).await,
            6 | 7 => read_op(&sh, client, node, Level::Default).await,
            8 => read_op(&sh, client, node, Level::Leader).await,
            _ => read_op(&sh, client, node, Level::Stale).await,
        };
        let failed = rec.entry.as_ref().is_none_or(|e| e.complete.is_none());
        out.push(rec);
        sh.finished.fetch_add(1, Ordering::SeqCst);
        if failed {
            // As a client would: back off a little before the next try.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    out
}

/// Starts `clients` clients of up to `max_ops` operations each.
fn spawn_clients(
    sh: &Arc<Shared>,
    clients: usize,
    max_ops: usize,
) -> Vec<tokio::task::JoinHandle<Vec<Record>>> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    (0..clients)
        .map(|i| {
            let seed = seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            tokio::spawn(client(sh.clone(), i, max_ops, seed))
        })
        .collect()
}

/// Waits until `n` operations have finished (or the clients are done).
async fn wait_finished(sh: &Shared, n: usize) {
    let started = Instant::now();
    while sh.finished.load(Ordering::SeqCst) < n {
        assert!(started.elapsed() < DEADLINE, "clients stuck below {n} ops");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The figures of one run, printed and returned for assertions.
struct Summary {
    history: Vec<Entry>,
    checked: usize,
    writes_acked: usize,
    writes_unknown: usize,
    reads_failed: usize,
}

/// Gathers the clients' records, checks the writes and linearizable reads, reports how many
/// leader and stale reads would not have been linearizable, and panics on a violation with the
/// history around it.
async fn check_clients(
    name: &str,
    sh: &Shared,
    tasks: Vec<tokio::task::JoinHandle<Vec<Record>>>,
) -> Summary {
    let mut records = Vec::new();
    for t in tasks {
        records.extend(t.await.unwrap());
    }
    let ran = sh.started.elapsed();
    let unexpected = sh.unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let mut history = Vec::new();
    let mut weak = Vec::new();
    let mut reads_failed = 0;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for rec in records {
        if let Some(f) = &rec.failure {
            let op = if rec.level.is_some() { "read" } else { "write" };
            *failures.entry(format!("{op}: {f}")).or_default() += 1;
        }
        match (rec.level, rec.entry) {
            (_, None) => reads_failed += 1,
            (None | Some(Level::Default | Level::Linearizable), Some(e)) => history.push(e),
            (Some(level), Some(e)) => weak.push((level, e)),
        }
    }
    let writes_acked = history
        .iter()
        .filter(|e| matches!(e.op, Op::Write(_)) && e.complete.is_some())
        .count();
    let writes_unknown = history.iter().filter(|e| e.complete.is_none()).count();
    // Indeterminate writes a linearizable read saw: they took effect after all.
    let seen: HashSet<&str> = history
        .iter()
        .filter_map(|e| match &e.op {
            Op::Read(Some(v)) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let unknown_seen = history
        .iter()
        .filter(|e| e.complete.is_none() && value_of(e).is_some_and(|v| seen.contains(v)))
        .count();
    let checking = Instant::now();
    if let Err(v) = check(&history) {
        panic!(
            "{name}: {v}\nthe history around it:\n{}",
            excerpt(&history, &v)
        );
    }
    let took = checking.elapsed();
    let mut weak_bad: HashMap<&str, (usize, usize)> = HashMap::new();
    for (level, e) in &weak {
        let mut with = history.clone();
        with.push(e.clone());
        let label = if *level == Level::Leader {
            "leader"
        } else {
            "stale"
        };
        let counts = weak_bad.entry(label).or_default();
        counts.0 += 1;
        if check(&with).is_err() {
            counts.1 += 1;
        }
    }
    let summary = Summary {
        checked: history.len(),
        history,
        writes_acked,
        writes_unknown,
        reads_failed,
    };
    let reads = summary.checked - summary.writes_acked - summary.writes_unknown;
    println!(
        "{name}: {} ops checked in {} ms: {} acknowledged writes, {} indeterminate writes \
         ({unknown_seen} of them read later), {reads} linearizable reads; {} failed reads \
         dropped; the clients ran {:.1} s",
        summary.checked,
        took.as_millis(),
        summary.writes_acked,
        summary.writes_unknown,
        summary.reads_failed,
        ran.as_secs_f64(),
    );
    println!("{name}: failures: {failures:?}");
    for (label, (made, bad)) in &weak_bad {
        println!("{name}: {label} reads (not asserted): {bad} of {made} not linearizable");
    }
    // Enough happened for the check to mean something.
    assert!(
        summary.checked >= 150,
        "{name}: too few operations to check"
    );
    assert!(
        summary.writes_acked >= 30,
        "{name}: too few acknowledged writes"
    );
    summary
}

/// The operations overlapping the violating one, and the writes of the values involved.
fn excerpt(history: &[Entry], v: &Violation) -> String {
    let from = v.op.invoke.saturating_sub(40);
    let to = v.op.complete.unwrap_or(u64::MAX);
    let mut values: Vec<&str> = v.candidates.iter().filter_map(value_of).collect();
    values.extend(v.state.as_deref());
    let mut lines: Vec<&Entry> = history
        .iter()
        .filter(|e| {
            let overlaps = e.invoke <= to && e.complete.is_none_or(|c| c >= from);
            let writes = matches!(&e.op, Op::Write(x) if values.contains(&x.as_str()));
            overlaps || writes
        })
        .collect();
    lines.sort_by_key(|e| e.invoke);
    lines.iter().map(|e| format!("  {e}\n")).collect::<String>()
}

fn value_of(e: &Entry) -> Option<&str> {
    match &e.op {
        Op::Write(v) | Op::Read(Some(v)) => Some(v.as_str()),
        Op::Read(None) => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_clients_on_three_nodes_see_a_linearizable_register() {
    let c = Cluster::start(3, &[]).await;
    let term = |s: Option<serde_json::Value>| s.and_then(|s| s["term"].as_u64());
    let before = term(c.status(1).await);
    let sh = Shared::new(&c);
    let tasks = spawn_clients(&sh, 6, 50);
    check_clients("three nodes", &sh, tasks).await;
    // Informative: a term change means an election the calm run did not ask for.
    println!(
        "three nodes: term {before:?} before, {:?} after",
        term(c.status(1).await)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_register_stays_linearizable_when_the_leader_is_killed_and_restarted() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let sh = Shared::new(&c);
    let tasks = spawn_clients(&sh, 6, 1000);
    wait_finished(&sh, 80).await;
    let killed = sh.tick();
    let killed_at = sh.started.elapsed().as_secs_f64();
    c.sigkill(leader);
    let rest = c.alive();
    let new_leader = c.wait_leader(&rest).await;
    println!(
        "killed leader {leader} at tick {killed} ({killed_at:.3} s); node {new_leader} leads at \
         {:.3} s",
        sh.started.elapsed().as_secs_f64()
    );
    wait_finished(&sh, sh.finished.load(Ordering::SeqCst) + 60).await;
    c.restart(leader).await;
    let restarted = sh.tick();
    let now_leader = c.wait_leader(&[1, 2, 3]).await;
    println!(
        "restarted node {leader} at tick {restarted}; node {now_leader} leads at {:.3} s",
        sh.started.elapsed().as_secs_f64()
    );
    wait_finished(&sh, sh.finished.load(Ordering::SeqCst) + 100).await;
    sh.stop.store(true, Ordering::SeqCst);
    let s = check_clients("leader killed", &sh, tasks).await;
    // The clients went on through the failover and after the restart.
    assert_progress_after(&s, &[(killed, "the kill"), (restarted, "the restart")]);
}

/// The partition case: the old leader keeps taking requests on its side (writes it cannot
/// commit, linearizable reads it cannot confirm) while the majority elects a new leader and goes
/// on; after healing, every answer of both sides must still fit one linearizable history.
#[tokio::test(flavor = "multi_thread")]
async fn the_register_stays_linearizable_when_the_leader_is_partitioned_and_healed() {
    use crate::partition::{cut, heal_all, FAULTS};
    let c = Cluster::start(3, FAULTS).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let majority: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    let sh = Shared::new(&c);
    let tasks = spawn_clients(&sh, 6, 1000);
    wait_finished(&sh, 80).await;
    let cut_tick = sh.tick();
    cut(&c, leader, &majority).await;
    for id in &majority {
        cut(&c, *id, &[leader]).await;
    }
    let new_leader = c.wait_leader(&majority).await;
    println!(
        "cut leader {leader} at tick {cut_tick}; node {new_leader} leads the majority at {:.3} s",
        sh.started.elapsed().as_secs_f64()
    );
    wait_finished(&sh, sh.finished.load(Ordering::SeqCst) + 40).await;
    heal_all(&c).await;
    let healed = sh.tick();
    let now_leader = c.wait_leader(&[1, 2, 3]).await;
    println!(
        "healed at tick {healed}; node {now_leader} leads at {:.3} s",
        sh.started.elapsed().as_secs_f64()
    );
    wait_finished(&sh, sh.finished.load(Ordering::SeqCst) + 80).await;
    sh.stop.store(true, Ordering::SeqCst);
    let s = check_clients("leader partitioned", &sh, tasks).await;
    assert_progress_after(&s, &[(cut_tick, "the cut"), (healed, "the heal")]);
}

/// Handovers: leadership moves twice (to a follower, then on to the third node) while the
/// clients run; the history stays linearizable, no write's outcome is unknown and no read
/// fails: the leader holds writes and reads instead of dropping them, and a read the old leader
/// can no longer serve is asked again of the new one.
#[tokio::test(flavor = "multi_thread")]
async fn the_register_stays_linearizable_while_leadership_is_handed_over() {
    let c = Cluster::start(3, &[]).await;
    let first = c.wait_leader(&[1, 2, 3]).await;
    let sh = Shared::new(&c);
    let tasks = spawn_clients(&sh, 6, 1000);
    let mut marks = Vec::new();
    let mut leader = first;
    for step in 0..2 {
        wait_finished(&sh, sh.finished.load(Ordering::SeqCst) + 60).await;
        let target = [1, 2, 3]
            .into_iter()
            .find(|n| *n != leader && (step == 0 || *n != first))
            .unwrap();
        marks.push(sh.tick());
        let (ok, out) = c
            .cli(leader, &["transfer-leader", "--to", &target.to_string()])
            .await;
        assert!(ok, "handover {leader} → {target}: {out}");
        leader = c.wait_leader(&[1, 2, 3]).await;
        assert_eq!(leader, target);
        println!(
            "handed over to node {target} at {:.3} s",
            sh.started.elapsed().as_secs_f64()
        );
    }
    wait_finished(&sh, sh.finished.load(Ordering::SeqCst) + 60).await;
    sh.stop.store(true, Ordering::SeqCst);
    let s = check_clients("handovers", &sh, tasks).await;
    assert_eq!(
        s.writes_unknown, 0,
        "a write's outcome was lost in a handover"
    );
    assert_progress_after(&s, &[(marks[0], "the first"), (marks[1], "the second")]);
}

/// Asserts that, after each marked tick, some write was acknowledged and some linearizable read
/// answered: the clients went on through the fault.
fn assert_progress_after(s: &Summary, marks: &[(u64, &str)]) {
    for &(since, what) in marks {
        let acked = |read: bool| {
            s.history
                .iter()
                .filter(|e| e.invoke > since && e.complete.is_some())
                .filter(|e| matches!(e.op, Op::Read(_)) == read)
                .count()
        };
        assert!(acked(false) > 0, "no acknowledged write after {what}");
        assert!(acked(true) > 0, "no linearizable read after {what}");
    }
}
