//! `engine-bench`: end-to-end figures for the MussikOn engine at scale.
//!
//! What it measures, in order, on one machine and one data directory:
//!
//! 1. generation of the seeded records with rayon (not counted as import);
//! 2. bulk import through `Command::BulkUpsert` in batches of 10,000, then the index commit
//!    (`Engine::refresh`) and a store flush: musicians per second, commit included;
//! 3. single-slot match latency (ad-hoc gig, first slot, one seat, k = 10);
//! 4. three-slot match latency with the optimal assignment;
//! 5. search latency (one instrument, 30 km around the gig, free on its date, top 20 by
//!    distance; `--search-radius-km` and `--search-any-instrument` change the radius and drop
//!    the instrument);
//! 6. get-by-id latency;
//! 7. shutdown, then `Engine::open` on the same directory until it serves (and one match);
//! 8. memory (VmRSS / VmHWM of this process, and of a fresh process that only opens the directory
//!    and serves one match) and bytes on disk, per musician, store and index apart.
//!
//! Latencies are sequential (one request at a time, the engine's own rayon fan-out inside each
//! request), recorded in microseconds in an HDR histogram after a short warm-up. The run ends with
//! a markdown table: figure, value, target, met?
//!
//! Run it (always in release, with your own target dir on a shared machine):
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-bench cargo run --release -p mussikon-benches --bin engine-bench -- --musicians 1000000
//! CARGO_TARGET_DIR=/tmp/target-bench cargo run --release -p mussikon-benches --bin engine-bench -- --smoke
//! ```
//!
//! `benches/run.sh` (full run, logged) and `benches/smoke.sh` (CI) wrap these.

/// The allocator `mussikon` ships with (server/src/main.rs), so the bench measures the engine
/// as the product runs it: the import allocates heavily (records, bincode buffers, sled's node
/// copies, tantivy's segment building). docs/perf.md has the figures with glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use mussikon_benches::host::{load_average, machine};
use mussikon_engine::generate::{GenConfig, Generator};
use mussikon_engine::{
    Command, Config, Durability, Engine, Gig, InstrumentFilter, MatchRequest, MatchResult,
    MatchTarget, Musician, Near, SearchQuery, Slot, SortBy,
};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Records per `BulkUpsert` command during the import.
const BATCH: usize = 10_000;
/// Requests run before each measured operation and not recorded.
const WARMUP: usize = 20;
/// Matches and searches the fresh `--probe-open` process serves before its second memory reading.
const PROBE_REQUESTS: usize = 500;
/// Most popular instruments of the generator, used to pad three-slot gigs.
const POPULAR: [&str; 5] = ["vocals", "guitar", "piano", "drums", "bass"];

#[derive(Parser, Debug)]
#[command(
    name = "engine-bench",
    about = "End-to-end benchmark of the MussikOn engine: import, match, search, get, reopen, memory, disk."
)]
struct Args {
    /// Musicians to generate and import.
    #[arg(long, default_value_t = 1_000_000, conflicts_with = "smoke")]
    musicians: usize,
    /// Gigs to generate and import (queries are drawn from them).
    #[arg(long, default_value_t = 10_000, conflicts_with = "smoke")]
    gigs: usize,
    /// Seed of the generated data set.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Data directory. Default: a fresh temporary directory, deleted at the end. If given, it is
    /// kept; if it already holds musicians, the import is skipped and the data reused.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Requests per measured operation (get-by-id runs 10 times as many).
    #[arg(long, default_value_t = 2000, conflicts_with = "smoke")]
    queries: usize,
    /// Size of the rayon pool (generation and the engine's parallel scoring). Default: all cores.
    #[arg(long)]
    threads: Option<usize>,
    /// tantivy indexing threads (the engine's `index_writer_threads`). Default: the engine's
    /// default; `mussikon serve` uses 1.
    #[arg(long)]
    index_threads: Option<usize>,
    /// Longest time a write waits to become searchable, ms (the engine's
    /// `index_commit_interval`). Default: the engine's default; `mussikon serve` uses 1000.
    #[arg(long)]
    commit_ms: Option<u64>,
    /// After the results, explain the single-slot match cost for this many gigs: how many
    /// musicians each stage of the index pre-filter admits versus how many are eligible
    /// (generates every musician again, so it needs about 1 GB per million). 0: off.
    #[arg(long, default_value_t = 0)]
    explain: usize,
    /// Radius of the measured searches around each gig, km.
    #[arg(long, default_value_t = SearchShape::DEFAULT.radius_km)]
    search_radius_km: f64,
    /// Measure searches near a point without an instrument (the `home` cover, not the
    /// instrument's `place` terms).
    #[arg(long)]
    search_any_instrument: bool,
    /// Small CI run: --musicians 20000 --gigs 500 --queries 200.
    #[arg(long)]
    smoke: bool,
    /// Internal: open --dir, serve one match, print a PROBE line and exit (used to measure the
    /// memory of a fresh serving process).
    #[arg(long, hide = true, requires = "dir")]
    probe_open: bool,
}

/// One row of the final table.
struct Row {
    figure: String,
    value: String,
    target: &'static str,
    met: Option<bool>,
}

/// Latency percentiles in microseconds.
struct Lat {
    n: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    mean: f64,
    /// CPU milliseconds per request, all threads (robust to other load on the machine).
    cpu_ms: f64,
}

impl Lat {
    fn of(h: &Histogram<u64>, cpu_secs: f64) -> Lat {
        Lat {
            cpu_ms: cpu_secs * 1000.0 / h.len().max(1) as f64,
            n: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        }
    }

    fn line(&self) -> String {
        format!(
            "p50 {} µs, p90 {} µs, p99 {} µs, max {} µs (mean {:.0} µs, n = {}); CPU {:.2} ms per request",
            self.p50, self.p90, self.p99, self.max, self.mean, self.n, self.cpu_ms
        )
    }
}

/// SplitMix64: a tiny seeded PRNG for picking ids, so the bench needs no `rand`.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn engine_config() -> Config {
    Config {
        durability: Durability::Periodic {
            flush_every_ms: 1000,
        },
        ..Default::default()
    }
}

/// [`engine_config`] with the index settings `--index-threads` and `--commit-ms` ask for.
fn engine_config_for(args: &Args) -> Config {
    let base = engine_config();
    Config {
        index_writer_threads: args.index_threads.unwrap_or(base.index_writer_threads),
        index_commit_interval: args
            .commit_ms
            .map_or(base.index_commit_interval, Duration::from_millis),
        ..base
    }
}

fn histogram() -> Result<Histogram<u64>> {
    // 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).context("creating a histogram")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Runs `op(i)` for `WARMUP` unrecorded then `n` recorded requests; returns the latencies and
/// the sum of the numbers `op` reports (e.g. candidates).
fn timed(n: usize, mut op: impl FnMut(usize) -> Result<f64>) -> Result<(Lat, f64)> {
    let mut h = histogram()?;
    for i in 0..WARMUP.min(n) {
        op(n + i)?;
    }
    let mut sum = 0.0;
    let cpu = Cpu::now();
    for i in 0..n {
        let t = Instant::now();
        let x = op(i)?;
        h.saturating_record(micros(t.elapsed()));
        sum += x;
    }
    Ok((Lat::of(&h, Cpu::now().since(&cpu)), sum))
}

/// `(VmRSS, VmHWM)` of this process in kB.
fn memory_kb() -> Result<(u64, u64)> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing from /proc/self/status"))?;
        line.trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .with_context(|| format!("parsing {line:?}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// CPU seconds (user + system) used so far, per thread kind and in total for the process.
/// Thread names are grouped with digits stripped (`thrd-tantivy-index0` and `…1` together).
/// Threads that have exited only count in the total.
#[derive(Clone, Default)]
struct Cpu {
    total: f64,
    threads: std::collections::BTreeMap<String, f64>,
}

/// `(comm, user + system seconds)` from the text of a `stat` file.
fn parse_stat(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the comm: state is field 3, utime field 14, stime field 15.
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / CLK_TCK))
}

impl Cpu {
    fn now() -> Cpu {
        let total = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t))
            .map_or(0.0, |(_, s)| s);
        let mut threads = std::collections::BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
                    continue;
                };
                if let Some((comm, secs)) = parse_stat(&text) {
                    let kind: String = comm.trim_end_matches(|c: char| c.is_ascii_digit()).into();
                    *threads.entry(kind).or_insert(0.0) += secs;
                }
            }
        }
        Cpu { total, threads }
    }

    /// CPU seconds used since `before`.
    fn since(&self, before: &Cpu) -> f64 {
        self.total - before.total
    }

    /// `"12.3 s: main 5.0, indexer 3.0, …"`: CPU used since `before`, by thread kind.
    fn breakdown(&self, before: &Cpu) -> String {
        let mut parts: Vec<(String, f64)> = self
            .threads
            .iter()
            .map(|(k, v)| (k.clone(), v - before.threads.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v >= 0.05)
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let listed: f64 = parts.iter().map(|p| p.1).sum();
        let mut out = format!("{:.1} CPU-s:", self.since(before));
        for (k, v) in &parts {
            out.push_str(&format!(" {k} {v:.1},"));
        }
        out.push_str(&format!(
            " threads since exited (tantivy indexing workers restart at every commit) {:.1}",
            (self.since(before) - listed).max(0.0)
        ));
        out
    }
}

/// Total size in bytes of the regular files under `path` (0 when it does not exist).
fn dir_bytes(path: &Path) -> Result<u64> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    if meta.is_file() {
        return Ok(meta.len());
    }
    if !meta.is_dir() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
        total += dir_bytes(&entry?.path())?;
    }
    Ok(total)
}

/// Segments listed in the index's `meta.json` (the last commit).
fn index_segments(dir: &Path) -> Result<usize> {
    let meta = std::fs::read_to_string(dir.join("index").join("meta.json"))
        .context("reading index/meta.json")?;
    Ok(meta.matches("\"segment_id\"").count())
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The gig cut down to its first slot, one seat.
fn single_slot(g: &Gig) -> Gig {
    let mut g = g.clone();
    g.slots.truncate(1);
    if let Some(s) = g.slots.first_mut() {
        s.count = 1;
    }
    g
}

/// The gig with exactly three slots of distinct instruments: its own first three, padded with
/// the most popular instruments it does not already ask for (one seat, any level).
fn three_slots(g: &Gig) -> Gig {
    let mut g = g.clone();
    g.slots.truncate(3);
    for p in POPULAR {
        if g.slots.len() == 3 {
            break;
        }
        if !g.slots.iter().any(|s| s.instrument == p) {
            g.slots.push(Slot {
                instrument: p.to_string(),
                count: 1,
                min_level: 1,
            });
        }
    }
    g
}

fn match_request(gig: Gig) -> MatchRequest {
    MatchRequest {
        target: MatchTarget::AdHoc(gig),
        k: Some(10),
        weights: None,
    }
}

/// What the measured searches ask (`--search-radius-km`, `--search-any-instrument`).
#[derive(Clone, Copy)]
struct SearchShape {
    radius_km: f64,
    any_instrument: bool,
}

impl SearchShape {
    const DEFAULT: SearchShape = SearchShape {
        radius_km: 30.0,
        any_instrument: false,
    };

    fn of(args: &Args) -> SearchShape {
        SearchShape {
            radius_km: args.search_radius_km,
            any_instrument: args.search_any_instrument,
        }
    }

    fn describe(self) -> String {
        let what = if self.any_instrument {
            "any instrument"
        } else {
            "instrument"
        };
        format!(
            "{what} + {} km + free on date, top 20 by distance",
            self.radius_km
        )
    }
}

fn search_query(g: &Gig, shape: SearchShape) -> SearchQuery {
    let instruments = if shape.any_instrument {
        Vec::new()
    } else {
        vec![InstrumentFilter {
            name: g
                .slots
                .first()
                .map_or_else(|| POPULAR[0].to_string(), |s| s.instrument.clone()),
            min_level: 1,
        }]
    };
    SearchQuery {
        instruments,
        near: Some(Near {
            lat: g.location.lat,
            lon: g.location.lon,
            radius_km: shape.radius_km,
        }),
        available_on: Some(g.date.clone()),
        limit: Some(20),
        sort: SortBy::Distance,
        ..SearchQuery::default()
    }
}

/// The bits of a match result that must not change across a restart.
fn fingerprint(r: &MatchResult) -> Vec<(usize, usize, Vec<String>)> {
    r.slots
        .iter()
        .map(|s| {
            (
                s.slot,
                s.eligible,
                s.candidates.iter().map(|c| c.musician_id.clone()).collect(),
            )
        })
        .collect()
}

/// Pace of the writer of [`export_while_writing`]: 2,000 writes/s.
const EXPORT_WRITE_EVERY: Duration = Duration::from_micros(500);

/// Exports the engine to `path` while a second thread upserts existing musicians (each with a
/// new fee) at [`EXPORT_WRITE_EVERY`]; answers the export's seconds, the writes applied during it and
/// their latency from the moment each was due (p50 / p99 / max). An export that held writes
/// back shows as a max near its own length.
fn export_while_writing(
    engine: &Engine,
    gen: &Generator,
    n_musicians: u64,
    path: &Path,
) -> Result<(f64, u64, String)> {
    let span = usize::try_from(n_musicians).unwrap_or(usize::MAX).max(1);
    let exporting = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|s| {
        let writer = s.spawn(|| -> Result<(u64, Histogram<u64>)> {
            let mut h = histogram()?;
            let mut rng = SplitMix(0x6578_706f_7274);
            let mut n = 0u64;
            let start = Instant::now();
            while exporting.load(std::sync::atomic::Ordering::Relaxed) {
                // Open loop: each write is due at its slot; its latency counts from then, so a
                // held-back writer is charged for every write that could not start.
                let due = start + EXPORT_WRITE_EVERY * u32::try_from(n).unwrap_or(u32::MAX);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut m = gen.musician(rng.below(span));
                m.fee.amount += 1 + (n % 100) as i64;
                engine.upsert_musician(m)?;
                h.record(micros(due.elapsed()))?;
                n += 1;
            }
            Ok((n, h))
        });
        let t = Instant::now();
        let file = std::fs::File::create(path).context("creating the export file")?;
        let exported = engine.export(std::io::BufWriter::with_capacity(1 << 20, file));
        let secs = t.elapsed().as_secs_f64();
        exporting.store(false, std::sync::atomic::Ordering::Relaxed);
        let (n, h) = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
        exported.context("exporting")?;
        let lat = format!(
            "p50 {} µs, p99 {} µs, max {:.1} ms",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max() as f64 / 1000.0
        );
        Ok((secs, n, lat))
    })
}

fn section(title: &str) {
    println!("\n== {title}");
}

/// `--probe-open`: open the directory in this fresh process, serve one match and report the
/// memory, then serve `n` more three-slot matches and `n` searches and report it again.
fn probe(dir: &Path, seed: u64, n: usize) -> Result<()> {
    let t = Instant::now();
    let engine = Engine::open(dir, engine_config()).context("opening the engine")?;
    let open = t.elapsed();
    let gen = Generator::new(GenConfig {
        seed,
        ..GenConfig::default()
    })?;
    let r = engine.match_gig(&match_request(single_slot(&gen.gig(0))))?;
    let (rss1, hwm1) = memory_kb()?;
    for j in 0..n {
        let g = gen.gig(j);
        engine.match_gig(&match_request(three_slots(&g)))?;
        engine.search(&search_query(&g, SearchShape::DEFAULT))?;
    }
    let (rss2, hwm2) = memory_kb()?;
    println!(
        "PROBE open_ms={} rss_kb={rss1} hwm_kb={hwm1} served_rss_kb={rss2} served_hwm_kb={hwm2} eligible={}",
        open.as_millis(),
        r.slots.first().map_or(0, |s| s.eligible)
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.musicians = 20_000;
        args.gigs = 500;
        args.queries = 200;
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = args.threads {
        pool = pool.num_threads(t);
    }
    pool.build_global().context("building the rayon pool")?;
    if args.probe_open {
        let dir = args.dir.as_deref().context("--probe-open needs --dir")?;
        return probe(dir, args.seed, args.queries.min(PROBE_REQUESTS));
    }
    ensure!(args.musicians > 0, "--musicians must be at least 1");
    ensure!(args.gigs > 0, "--gigs must be at least 1");
    ensure!(args.queries > 0, "--queries must be at least 1");
    ensure!(
        args.search_radius_km.is_finite()
            && args.search_radius_km > 0.0
            && args.search_radius_km <= mussikon_engine::validate::MAX_RADIUS_KM,
        "--search-radius-km must be a number in (0, {}]",
        mussikon_engine::validate::MAX_RADIUS_KM
    );
    run(&args)
}

fn run(args: &Args) -> Result<()> {
    let cmdline: Vec<String> = std::env::args().collect();
    println!("# engine-bench");
    println!("machine: {}", machine());
    println!("command: {}", cmdline.join(" "));
    println!("load average at start: {}", load_average());
    println!(
        "musicians {}, gigs {}, seed {}, queries {}, rayon threads {}",
        thousands(args.musicians as u64),
        thousands(args.gigs as u64),
        args.seed,
        args.queries,
        rayon::current_num_threads()
    );
    let defaults = engine_config_for(args);
    println!(
        "engine config: durability periodic 1000 ms, sled cache {}, index commit {} ms, {} index threads, index heap {}",
        mib(defaults.cache_bytes),
        defaults.index_commit_interval.as_millis(),
        defaults.index_writer_threads,
        mib(defaults.index_heap_bytes as u64)
    );

    let tmp;
    let dir: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("engine-bench-")
                .tempdir()
                .context("creating a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    println!("data dir: {}", dir.display());
    let mut rows: Vec<Row> = Vec::new();
    let q = args.queries;

    // 1. Generation.
    section("1. generate");
    let gen = Generator::new(GenConfig {
        seed: args.seed,
        musicians: args.musicians,
        gigs: args.gigs,
        ..GenConfig::default()
    })?;
    let t = Instant::now();
    let gigs: Vec<Gig> = (0..args.gigs).into_par_iter().map(|j| gen.gig(j)).collect();
    let gen_gigs = t.elapsed();
    println!(
        "{} gigs in {:.3} s",
        thousands(gigs.len() as u64),
        gen_gigs.as_secs_f64()
    );

    let mut engine = Engine::open(&dir, engine_config_for(args)).context("opening the engine")?;
    let existing = engine.status()?;
    let reuse = args.dir.is_some() && existing.musicians > 0;

    // 2. Import.
    section("2. bulk import");
    if reuse {
        println!(
            "reusing {}: {} musicians and {} gigs already stored; generation and import skipped",
            dir.display(),
            thousands(existing.musicians),
            thousands(existing.gigs)
        );
        rows.push(Row {
            figure: "Bulk import".into(),
            value: "skipped (reused --dir)".into(),
            target: "≥ 60,000 musicians/s",
            met: None,
        });
    } else {
        let t = Instant::now();
        let musicians: Vec<Musician> = (0..args.musicians)
            .into_par_iter()
            .map(|i| gen.musician(i))
            .collect();
        let gen_secs = t.elapsed().as_secs_f64();
        println!(
            "generated {} musicians in {:.2} s ({:.0}/s, rayon, not part of the import)",
            thousands(musicians.len() as u64),
            gen_secs,
            musicians.len() as f64 / gen_secs.max(1e-9)
        );
        let (rss, hwm) = memory_kb()?;
        println!(
            "memory after generation: VmRSS {} MiB, VmHWM {} MiB",
            rss / 1024,
            hwm / 1024
        );

        let cpu0 = Cpu::now();
        let started = Instant::now();
        let mut batches = Duration::ZERO;
        let mut slowest = Duration::ZERO;
        let mut per_batch: Vec<Duration> = Vec::new();
        let mut n_batches = 0usize;
        let mut it = musicians.into_iter();
        loop {
            let batch: Vec<Musician> = it.by_ref().take(BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let t = Instant::now();
            let done = engine.execute(&Command::BulkUpsert {
                musicians: batch,
                gigs: Vec::new(),
            })?;
            let took = t.elapsed();
            ensure!(
                done.outcome.is_done(),
                "bulk upsert refused: {:?}",
                done.outcome
            );
            batches += took;
            per_batch.push(took);
            slowest = slowest.max(took);
            n_batches += 1;
        }
        drop(it);
        let apply_m = started.elapsed();
        let t = Instant::now();
        for chunk in gigs.chunks(BATCH) {
            let done = engine.execute(&Command::BulkUpsert {
                musicians: Vec::new(),
                gigs: chunk.to_vec(),
            })?;
            ensure!(
                done.outcome.is_done(),
                "bulk upsert of gigs refused: {:?}",
                done.outcome
            );
        }
        let apply_g = t.elapsed();
        let t = Instant::now();
        engine.refresh()?;
        let refresh = t.elapsed();
        let t = Instant::now();
        engine.flush()?;
        let flush = t.elapsed();
        let total = started.elapsed();
        let cpu1 = Cpu::now();
        let t = Instant::now();
        let segments = engine.compact_index()?;
        let compact = t.elapsed();
        let rate = args.musicians as f64 / total.as_secs_f64().max(1e-9);
        println!(
            "musicians: {n_batches} commands of {BATCH} in {:.2} s (mean {:.0} ms, slowest {:.0} ms per command)",
            apply_m.as_secs_f64(),
            batches.as_secs_f64() * 1000.0 / n_batches.max(1) as f64,
            slowest.as_secs_f64() * 1000.0
        );
        let tenth = (per_batch.len() / 10).max(1);
        let mean_ms = |d: &[Duration]| {
            d.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / d.len().max(1) as f64
        };
        println!(
            "mean per command: first {tenth} commands {:.0} ms, last {tenth} commands {:.0} ms",
            mean_ms(&per_batch[..tenth.min(per_batch.len())]),
            mean_ms(&per_batch[per_batch.len().saturating_sub(tenth)..])
        );
        println!("gigs: {:.3} s", apply_g.as_secs_f64());
        println!(
            "index commit (refresh, waits for the indexer to catch up): {:.2} s",
            refresh.as_secs_f64()
        );
        println!("store flush: {:.2} s", flush.as_secs_f64());
        println!(
            "index compaction ({segments} segments merged into one, after the import figure): {:.2} s",
            compact.as_secs_f64()
        );
        println!(
            "total {:.2} s → {:.0} musicians/s (index commit and flush included)",
            total.as_secs_f64(),
            rate
        );
        let cpu_us = cpu1.since(&cpu0) * 1e6 / args.musicians as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("import {}", cpu1.breakdown(&cpu0));
        println!(
            "{cpu_us:.0} CPU-µs per musician: with all {cores} cores free the CPU alone would allow ≈ {:.0} musicians/s",
            cores as f64 * 1e6 / cpu_us.max(1e-9)
        );
        rows.push(Row {
            figure: "Bulk import, musicians/s (commit + flush included)".into(),
            value: format!(
                "{} ({:.1} s)",
                thousands(rate.round() as u64),
                total.as_secs_f64()
            ),
            target: "≥ 60,000 musicians/s",
            met: Some(rate >= 60_000.0),
        });
    }
    let status = engine.status()?;
    println!(
        "status: {} musicians, {} gigs, applied seq {}, index seq {}",
        thousands(status.musicians),
        thousands(status.gigs),
        status.applied_seq,
        status.index_seq
    );
    ensure!(
        status.musicians as usize >= args.musicians.min(1),
        "the store holds no musicians"
    );
    let n_musicians = status.musicians;
    println!("index segments after load: {}", index_segments(&dir)?);
    let (rss_load, hwm_load) = memory_kb()?;
    println!(
        "memory after load: VmRSS {} MiB, VmHWM {} MiB",
        rss_load / 1024,
        hwm_load / 1024
    );
    let gig = |i: usize| &gigs[i % gigs.len()];

    // 3. Single-slot match.
    section("3. single-slot match (k = 10)");
    let mut empty = 0usize;
    let (lat, eligible) = timed(q, |i| {
        let r = engine.match_gig(&match_request(single_slot(gig(i))))?;
        let e = r.slots.first().map_or(0, |s| s.eligible);
        if i < q && e == 0 {
            empty += 1;
        }
        Ok(e as f64)
    })?;
    let mean_single = eligible / q as f64;
    println!("{}", lat.line());
    println!("mean eligible candidates {mean_single:.1}; gigs with none: {empty} of {q}");
    rows.push(Row {
        figure: "Single-slot match p99".into(),
        value: format!("{:.2} ms", lat.p99 as f64 / 1000.0),
        target: "≤ 3 ms",
        met: Some(lat.p99 <= 3_000),
    });
    rows.push(Row {
        figure: "Single-slot match p50 / p90 / max".into(),
        value: format!(
            "{:.2} / {:.2} / {:.2} ms",
            lat.p50 as f64 / 1000.0,
            lat.p90 as f64 / 1000.0,
            lat.max as f64 / 1000.0
        ),
        target: "—",
        met: None,
    });
    rows.push(Row {
        figure: "Single-slot mean eligible candidates".into(),
        value: format!("{mean_single:.1}"),
        target: "—",
        met: None,
    });

    // 4. Three-slot match with assignment.
    section("4. three-slot match with assignment (k = 10)");
    let mut unfilled = 0usize;
    let mut seats = 0usize;
    let (lat, eligible) = timed(q, |i| {
        let g = three_slots(gig(i));
        ensure!(g.slots.len() == 3, "gig {} does not have 3 slots", g.id);
        let r = engine.match_gig(&match_request(g))?;
        if i < q {
            unfilled += r.assignment.unfilled;
            seats += r.assignment.seats.len();
        }
        Ok(r.slots.iter().map(|s| s.eligible).sum::<usize>() as f64)
    })?;
    let mean_three = eligible / (3 * q) as f64;
    println!("{}", lat.line());
    println!(
        "mean eligible candidates per slot {mean_three:.1}; seats {seats}, unfilled {unfilled}"
    );
    rows.push(Row {
        figure: "Three-slot match + assignment p99".into(),
        value: format!("{:.2} ms", lat.p99 as f64 / 1000.0),
        target: "≤ 8 ms",
        met: Some(lat.p99 <= 8_000),
    });
    rows.push(Row {
        figure: "Three-slot match p50 / p90 / max".into(),
        value: format!(
            "{:.2} / {:.2} / {:.2} ms",
            lat.p50 as f64 / 1000.0,
            lat.p90 as f64 / 1000.0,
            lat.max as f64 / 1000.0
        ),
        target: "—",
        met: None,
    });
    rows.push(Row {
        figure: "Three-slot mean eligible candidates per slot".into(),
        value: format!("{mean_three:.1}"),
        target: "—",
        met: None,
    });

    // 5. Search.
    let shape = SearchShape::of(args);
    section(&format!("5. search: {}", shape.describe()));
    let mut full_pages = 0usize;
    let (lat, hits) = timed(q, |i| {
        let page = engine.search(&search_query(gig(i), shape))?;
        if i < q && page.next_cursor.is_some() {
            full_pages += 1;
        }
        Ok(page.hits.len() as f64)
    })?;
    let mean_hits = hits / q as f64;
    println!("{}", lat.line());
    println!("mean hits {mean_hits:.1}; queries with more than one page: {full_pages} of {q}");
    rows.push(Row {
        figure: "Search top 20 p99".into(),
        value: format!("{:.2} ms", lat.p99 as f64 / 1000.0),
        target: "≤ 3 ms",
        met: Some(lat.p99 <= 3_000),
    });
    rows.push(Row {
        figure: "Search p50 / p90 / max".into(),
        value: format!(
            "{:.2} / {:.2} / {:.2} ms",
            lat.p50 as f64 / 1000.0,
            lat.p90 as f64 / 1000.0,
            lat.max as f64 / 1000.0
        ),
        target: "—",
        met: None,
    });
    rows.push(Row {
        figure: "Search mean hits".into(),
        value: format!("{mean_hits:.1}"),
        target: "—",
        met: None,
    });

    // 6. Get by id.
    section("6. get musician by id");
    let mut rng = SplitMix(args.seed ^ 0x6765_7462_7969_6421);
    let span = usize::try_from(n_musicians).unwrap_or(usize::MAX);
    let mut missing = 0usize;
    let (lat, _) = timed(10 * q, |_| {
        let id = format!("m-{:07}", rng.below(span));
        if engine.musician(&id)?.is_none() {
            missing += 1;
        }
        Ok(0.0)
    })?;
    println!("{}", lat.line());
    ensure!(missing == 0, "{missing} generated ids were not found");
    rows.push(Row {
        figure: "Get by id p50 / p99".into(),
        value: format!("{} / {} µs", lat.p50, lat.p99),
        target: "—",
        met: None,
    });

    // 6b. Export while writing.
    section("6b. export (snapshot, backup) while a writer changes musicians");
    let export_path = dir.join("bench-export.snap");
    let (export_secs, writes, write_lat) =
        export_while_writing(&engine, &gen, n_musicians, &export_path)?;
    let export_bytes = std::fs::metadata(&export_path)
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&export_path);
    println!(
        "export: {:.2} s, {}; writes applied meanwhile: {} ({:.0}/s); write latency during it: {}",
        export_secs,
        mib(export_bytes),
        thousands(writes),
        writes as f64 / export_secs.max(1e-9),
        write_lat,
    );
    rows.push(Row {
        figure: "Export of everything, while writing".into(),
        value: format!("{export_secs:.2} s; longest write {write_lat}"),
        target: "—",
        met: None,
    });

    // 7. Restart.
    section("7. shutdown and reopen");
    let probe_req = match_request(single_slot(gig(0)));
    let before = fingerprint(&engine.match_gig(&probe_req)?);
    let t = Instant::now();
    drop(engine);
    let shutdown = t.elapsed();
    println!(
        "drop (final index commit + store flush): {:.2} s",
        shutdown.as_secs_f64()
    );
    let t = Instant::now();
    engine = Engine::open(&dir, engine_config_for(args)).context("reopening the engine")?;
    let open = t.elapsed();
    let t = Instant::now();
    let after = fingerprint(&engine.match_gig(&probe_req)?);
    let first_match = t.elapsed();
    println!(
        "Engine::open: {:.3} s; first match after open: {:.2} ms",
        open.as_secs_f64(),
        first_match.as_secs_f64() * 1000.0
    );
    ensure!(
        before == after,
        "the match after reopening differs from the one before: {before:?} vs {after:?}"
    );
    println!("the match after reopening equals the one before");
    rows.push(Row {
        figure: "Reopen (Engine::open until ready)".into(),
        value: format!("{:.3} s", open.as_secs_f64()),
        target: "≤ 3 s",
        met: Some(open.as_secs_f64() <= 3.0),
    });
    rows.push(Row {
        figure: "First match after reopen".into(),
        value: format!("{:.2} ms", first_match.as_secs_f64() * 1000.0),
        target: "—",
        met: None,
    });

    // 8. Memory and disk.
    section("8. memory and disk");
    let (rss_now, hwm_now) = memory_kb()?;
    let t = Instant::now();
    drop(engine);
    let shutdown2 = t.elapsed();
    let store_bytes = dir_bytes(&dir.join("store"))?;
    let index_bytes = dir_bytes(&dir.join("index"))?;
    let segments = index_segments(&dir)?;
    let per = |b: u64| b as f64 / n_musicians.max(1) as f64;
    println!(
        "this process: after load VmRSS {} MiB (VmHWM {} MiB); after reopen VmRSS {} MiB (VmHWM {} MiB)",
        rss_load / 1024,
        hwm_load / 1024,
        rss_now / 1024,
        hwm_now / 1024
    );
    println!(
        "second drop: {:.2} s; index segments: {segments}",
        shutdown2.as_secs_f64()
    );
    let exe = std::env::current_exe().context("locating this executable")?;
    let out = std::process::Command::new(exe)
        .arg("--probe-open")
        .arg("--dir")
        .arg(&dir)
        .arg("--seed")
        .arg(args.seed.to_string())
        .arg("--queries")
        .arg(args.queries.to_string())
        .args(args.threads.map(|t| format!("--threads={t}")))
        .output()
        .context("running the --probe-open child")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the --probe-open child failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let probe_line = stdout
        .lines()
        .find(|l| l.starts_with("PROBE "))
        .context("the --probe-open child printed no PROBE line")?;
    let field = |k: &str| -> Result<u64> {
        probe_line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .with_context(|| format!("{k} missing from {probe_line:?}"))?
            .parse::<u64>()
            .with_context(|| format!("parsing {k} in {probe_line:?}"))
    };
    let (probe_open, probe_rss, probe_hwm) =
        (field("open_ms=")?, field("rss_kb=")?, field("hwm_kb=")?);
    let (served_rss, served_hwm) = (field("served_rss_kb=")?, field("served_hwm_kb=")?);
    let served_n = args.queries.min(PROBE_REQUESTS);
    println!(
        "fresh process: open {probe_open} ms; after one match VmRSS {} MiB (VmHWM {} MiB); after {served_n} three-slot matches and {served_n} searches VmRSS {} MiB (VmHWM {} MiB)",
        probe_rss / 1024,
        probe_hwm / 1024,
        served_rss / 1024,
        served_hwm / 1024
    );
    println!(
        "disk: store {} ({:.0} B/musician), index {} ({:.0} B/musician), total {}",
        mib(store_bytes),
        per(store_bytes),
        mib(index_bytes),
        per(index_bytes),
        mib(store_bytes + index_bytes)
    );
    rows.push(Row {
        figure: "RSS after load, this process (VmRSS / VmHWM)".into(),
        value: format!("{} / {} MiB", rss_load / 1024, hwm_load / 1024),
        target: "—",
        met: None,
    });
    rows.push(Row {
        figure: "RSS of a fresh process: after 1 match / after serving (VmHWM)".into(),
        value: format!(
            "{} / {} MiB ({} MiB)",
            probe_rss / 1024,
            served_rss / 1024,
            served_hwm / 1024
        ),
        target: "—",
        met: None,
    });
    rows.push(Row {
        figure: "Disk: store (dir/store)".into(),
        value: format!("{} ({:.0} B/musician)", mib(store_bytes), per(store_bytes)),
        target: "—",
        met: None,
    });
    rows.push(Row {
        figure: "Disk: index (dir/index)".into(),
        value: format!("{} ({:.0} B/musician)", mib(index_bytes), per(index_bytes)),
        target: "—",
        met: None,
    });

    println!("load average at end: {}", load_average());

    section("results");
    println!("| figure | value | target | met? |");
    println!("|---|---|---|---|");
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        println!("| {} | {} | {} | {met} |", r.figure, r.value, r.target);
    }
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.met == Some(false))
        .map(|r| r.figure.as_str())
        .collect();
    if missed.is_empty() {
        println!("\nall targets met");
    } else {
        println!("\ntargets not met: {}", missed.join("; "));
    }
    if args.explain > 0 {
        explain(&gen, args.musicians, &gigs, args.explain, &dir)?;
    }
    Ok(())
}

/// Stage counts of the single-slot pre-filter for one gig.
#[derive(Clone, Copy, Default)]
struct Stages {
    /// Plays the instrument at the level and is free that day (the `inst` and `unavail` terms).
    attributes: u64,
    /// … and home in the gig's cover (the `place` terms, or the 32 `home` cells of a wide
    /// circle): what the index admits and the collector scans from fast fields (the index also
    /// admits players below the slot's level, which the collector drops by their level terms).
    home: u64,
    /// … and active, same currency, fee within budget (the collector's column checks).
    columns: u64,
    /// Home within the gig's radius (exact), of those that pass `attributes`.
    in_gig_radius: u64,
    /// Eligible (`matching::evaluate`).
    eligible: u64,
}

impl std::ops::Add for Stages {
    type Output = Stages;
    fn add(self, o: Stages) -> Stages {
        Stages {
            attributes: self.attributes + o.attributes,
            home: self.home + o.home,
            columns: self.columns + o.columns,
            in_gig_radius: self.in_gig_radius + o.in_gig_radius,
            eligible: self.eligible + o.eligible,
        }
    }
}

/// `--explain`: replicates the engine's single-slot pre-filter (the index terms documented in
/// `engine/src/index.rs` and the slot query of `engine/src/engine.rs`: not busy, plays the
/// instrument with a home in the gig's `place` cover, or in its 32-cell `home` cover when the
/// circle is too wide for the place levels) over the generated musicians, to show how many documents each match scans
/// compared with how many are eligible. A diagnostic: if the engine's cell scheme changes, this
/// replica must follow it.
fn explain(gen: &Generator, n_musicians: usize, gigs: &[Gig], n: usize, dir: &Path) -> Result<()> {
    use mussikon_engine::geo::{
        cover_cells_at, haversine_km, home_cover, point_cells, PLACE_COVER_CELLS, PLACE_LEVELS,
    };
    use mussikon_engine::matching::evaluate;
    section("explain: single-slot pre-filter stages (replica of the index terms)");
    let t = Instant::now();
    let musicians: Vec<Musician> = (0..n_musicians)
        .into_par_iter()
        .map(|i| gen.musician(i))
        .collect();
    println!(
        "regenerated {} musicians in {:.1} s",
        thousands(musicians.len() as u64),
        t.elapsed().as_secs_f64()
    );
    let w = mussikon_engine::Weights::default()
        .normalized()
        .map_err(|e| anyhow::anyhow!("default weights: {e}"))?;
    let engine = Engine::open(dir, engine_config()).context("opening the engine")?;
    let n = n.min(gigs.len());
    let mut sum = Stages::default();
    let mut per_gig: Vec<(u64, u64)> = Vec::with_capacity(n);
    let mut mismatches = 0usize;
    for g in gigs.iter().take(n) {
        let gig = single_slot(g);
        let Some(slot) = gig.slots.first() else {
            continue;
        };
        // The engine's cover for the slot: `place` cells when they fit, else `home` cells.
        let cover: std::collections::HashSet<String> =
            cover_cells_at(gig.location, gig.radius_km, PLACE_COVER_CELLS, PLACE_LEVELS)
                .map(|(_, cells)| cells)
                .unwrap_or_else(|| home_cover(gig.location, gig.radius_km, 32))
                .into_iter()
                .collect();
        let st = musicians
            .par_iter()
            .map(|m| {
                let mut s = Stages::default();
                let attributes = m
                    .level_on(&slot.instrument)
                    .is_some_and(|l| l >= slot.min_level)
                    && !m.busy.contains(&gig.date);
                if !attributes {
                    return s;
                }
                s.attributes = 1;
                s.in_gig_radius =
                    u64::from(haversine_km(m.location, gig.location) <= gig.radius_km);
                if point_cells(m.location).iter().any(|c| cover.contains(c)) {
                    s.home = 1;
                    s.columns = u64::from(
                        m.active
                            && m.fee.currency == gig.budget.currency
                            && m.fee.amount <= gig.budget.max_fee,
                    );
                }
                s.eligible = u64::from(evaluate(&gig, slot, m, &[], &w).is_some());
                s
            })
            .reduce(Stages::default, |a, b| a + b);
        let engine_eligible = engine
            .match_gig(&match_request(gig.clone()))?
            .slots
            .first()
            .map_or(0, |s| s.eligible as u64);
        if engine_eligible != st.eligible {
            mismatches += 1;
        }
        per_gig.push((st.home, st.eligible));
        sum = sum + st;
    }
    let k = per_gig.len().max(1) as f64;
    println!(
        "over {} single-slot gigs, mean musicians per gig:",
        per_gig.len()
    );
    println!(
        "  pass the attribute terms (instrument@level, free): {:.0}",
        sum.attributes as f64 / k
    );
    println!(
        "    of which home within the gig's radius (exact): {:.0}",
        sum.in_gig_radius as f64 / k
    );
    println!(
        "  + home cell in the gig's cover = admitted, scanned from fast fields: {:.0}",
        sum.home as f64 / k
    );
    println!(
        "  + active, same currency, fee within budget (column checks): {:.0}",
        sum.columns as f64 / k
    );
    println!(
        "  eligible (scored candidates): {:.1}",
        sum.eligible as f64 / k
    );
    println!(
        "  scanned per eligible: {:.1}",
        sum.home as f64 / (sum.eligible as f64).max(1.0)
    );
    per_gig.sort_unstable();
    let pct = |q: f64| per_gig[((per_gig.len() - 1) as f64 * q) as usize].0;
    if !per_gig.is_empty() {
        println!(
            "  scanned per gig: p50 {}, p90 {}, p99 {}, max {}",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
    }
    println!("  gigs where the replica's eligible count differs from the engine's: {mismatches}");
    Ok(())
}
