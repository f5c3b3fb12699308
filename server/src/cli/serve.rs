//! `mussikon serve`: open the engine, optionally fill an empty store with demo data, serve the
//! API, and shut down cleanly.
//!
//! Settings come from defaults < `--config FILE` < `MUSSIKON_*` environment < flags (see
//! [`crate::config::sources`]); the effective settings are logged at start with secrets
//! redacted. Without a token key the server runs only in development mode, with a WARN that
//! authentication is off; production mode refuses to start.
//!
//! Start-up order matters to callers: the engine is opened, the signal handlers are installed
//! and every listener is bound before the first stdout line, `listening on ADDR`, is printed,
//! so a supervisor (or a test) that reads that line can connect and can send SIGTERM at once.
//! A cluster node with `cluster.peer_listen` prints `peers listening on ADDR` as the second
//! line, in the same write as the first (a reader that stops after the first line never makes
//! the second one fail).
//!
//! Shutdown on SIGTERM or SIGINT: stop accepting API connections, let in-flight requests finish
//! (at most `--shutdown-grace` seconds, 10 by default), then stop the peer listener (it serves
//! the leader meanwhile, so a forwarded write in flight can still be applied here), flush the
//! store, exit 0. Every write acknowledged before the signal was already on disk
//! (Durability::Sync); the flush is a last safety net, not what durability rests on.

use crate::config::sources::{self, Settings};
use crate::config::{Mode, ServeConfig};
use crate::http::{self, app::App};
use crate::telemetry::SpanExport;
use anyhow::Context;
use clap::Args;
use mussikon_engine::generate::{GenConfig, Generator};
use mussikon_engine::{Command, Engine};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The long `--help` text of `mussikon serve`.
pub const SERVE_HELP: &str = "Serve the HTTP API over a data directory.\n\n\
    The first line on stdout is `listening on IP:PORT`; logs go to stderr. Stop with SIGTERM or \
    Ctrl-C: in-flight requests finish, the store is flushed, the exit code is 0.\n\n\
    Try: mussikon serve --demo 10000, then\n  \
    curl 'http://127.0.0.1:8080/v1/musicians/search?instrument=guitar&min_level=3&limit=3'";

/// `mussikon serve`.
///
/// Every flag here overrides the same setting from the environment and the config file (see
/// `deploy/config/mussikon.example.toml`); a flag left out leaves the setting to them.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (every key is documented in
    /// deploy/config/mussikon.example.toml). Environment variables and flags override it.
    #[arg(long, env = "MUSSIKON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// development (default: auth optional, no rate limits) or production (refuses to start
    /// without a token key).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// Address to listen on, as IP:PORT (default 127.0.0.1:8080). Port 0 picks a free port.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,

    /// Directory of the store and the index (default ./data); created if missing.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Fill an EMPTY store with N generated musicians and N/100 gigs (at least 10), so there is
    /// something to search at once. Ignored when the store already holds data.
    #[arg(long, value_name = "N")]
    pub demo: Option<usize>,

    /// Largest JSON request body, in bytes (default 1 MiB); larger ones get 413.
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Largest NDJSON body of POST /v1/musicians/bulk, in bytes (default 64 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_bulk_bytes: Option<usize>,

    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_grace: Option<u64>,

    /// Run as node N of a cluster (docs/cluster.md); without it the server runs single-node.
    /// `auto`: the id kept in the data directory, drawn at random on its first start (for read
    /// replicas that join with `mussikon cluster join`).
    #[arg(long, env = "MUSSIKON_NODE_ID", value_name = "N|auto")]
    pub node_id: Option<String>,

    /// The cluster's initial members as ID=HOST:PORT, comma-separated, each a node's peer
    /// address (its --peer-listen address, or its --listen address when it has none), e.g.
    /// 1=10.0.0.1:7000,2=10.0.0.2:7000,3=10.0.0.3:7000.
    #[arg(long, env = "MUSSIKON_PEERS", value_name = "ID=HOST:PORT,...")]
    pub peers: Option<String>,

    /// Serve the Raft peer RPCs (/raft/...) on their own listener at IP:PORT instead of the API
    /// listener, which then answers them 404 (cluster nodes only). The second stdout line is
    /// then `peers listening on IP:PORT`; port 0 picks a free port.
    #[arg(long, value_name = "IP:PORT")]
    pub peer_listen: Option<SocketAddr>,

    /// The secret every peer RPC carries (at least 16 bytes). Prefer the environment variable
    /// MUSSIKON_CLUSTER_SECRET: a flag shows in the process list.
    #[arg(long, value_name = "SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// Any setting by its dotted name, e.g. `--set auth.public_reads=true` or
    /// `--set rate_limit.writes.burst=5`; may be repeated. Secrets cannot be set this way.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

impl ServeArgs {
    /// The flags as `(setting name, value)` pairs, dedicated flags first, then `--set`.
    pub fn flag_pairs(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut push = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                pairs.push((name.to_string(), v));
            }
        };
        push("mode", self.mode.map(|m| m.to_string()));
        push("listen", self.listen.map(|a| a.to_string()));
        push(
            "data_dir",
            self.data_dir.as_ref().map(|p| p.display().to_string()),
        );
        push("demo", self.demo.map(|n| n.to_string()));
        push(
            "http.max_body_bytes",
            self.max_body_bytes.map(|n| n.to_string()),
        );
        push(
            "http.max_bulk_bytes",
            self.max_bulk_bytes.map(|n| n.to_string()),
        );
        push(
            "shutdown_grace_s",
            self.shutdown_grace.map(|n| n.to_string()),
        );
        push("cluster.node_id", self.node_id.clone());
        push("cluster.peers", self.peers.clone());
        push(
            "cluster.peer_listen",
            self.peer_listen.map(|a| a.to_string()),
        );
        for s in &self.set {
            let (name, value) = s.split_once('=').with_context(|| {
                format!("--set {s}: write NAME=VALUE, e.g. --set auth.public_reads=true")
            })?;
            pairs.push((name.trim().to_string(), value.to_string()));
        }
        Ok(pairs)
    }

    /// The settings from defaults, the config file, the environment and these flags, in that
    /// order of precedence; also the names of unknown `MUSSIKON_*` variables.
    pub fn settings(&self) -> anyhow::Result<(Settings, Vec<String>)> {
        let mut layers = Vec::new();
        if let Some(path) = &self.config {
            layers.push(sources::read_file_layer(path)?);
        }
        let (env, unknown) = sources::env_layer(std::env::vars())?;
        layers.push(env);
        layers.push(sources::flag_layer(&self.flag_pairs()?)?);
        let mut settings = Settings::from_layers(layers)?;
        if let Some(secret) = &self.cluster_secret {
            settings.cluster.secret = Some(secret.clone());
        }
        Ok((settings, unknown))
    }
}

/// Runs `mussikon serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (settings, unknown_env) = args.settings()?;
    for name in &unknown_env {
        tracing::warn!(
            variable = %name,
            "environment variable names no setting; ignored (see deploy/config/mussikon.example.toml)"
        );
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config_file = %args.config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none)".into()),
        config = %settings.redacted_json(),
        durability = "sync",
        "starting with this configuration"
    );
    let config = settings.resolve()?;
    if config.http.auth.key.is_none() {
        tracing::warn!(
            mode = %config.mode,
            "AUTHENTICATION IS OFF: every request may read and change everything. This is for \
             development only; set auth.secret_file (or MUSSIKON_AUTH_SECRET) or \
             auth.public_key_file to require tokens (production mode refuses to start without)"
        );
    }
    // The id is settled before the store opens: `auto` may clear a removed node's directory.
    let node_id = match &config.cluster {
        None => None,
        Some(c) => Some(
            mussikon_cluster::identity::settle(&config.data_dir, c.node_id)
                .context("could not settle this node's id")?,
        ),
    };
    let engine = match &config.cluster {
        None => super::open_engine_with(
            &config.data_dir,
            config.index.apply_to(super::engine_config()),
        )?,
        Some(_) => super::open_replica_engine(&config.data_dir, &config.index)?,
    };
    if config.demo > 0 && config.cluster.is_some() {
        tracing::warn!("--demo is ignored on a cluster node; load data through the API");
    } else if config.demo > 0 {
        fill_demo(&engine, config.demo)?;
    }
    let spans = SpanExport::start(&config.tracing)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mussikon")
        .build()
        .context("could not start the async runtime")?;
    let result = runtime.block_on(serve(engine.clone(), &config, node_id, spans.clone()));
    // Blocking engine calls of requests cut off by the grace period may still run; do not wait
    // for them forever.
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Some(spans) = spans {
        spans.shutdown();
    }
    result?;
    engine.flush().context(
        "the final flush of the store failed; writes acknowledged before it are on disk",
    )?;
    tracing::info!("store flushed; stopped");
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    engine: Engine,
    config: &ServeConfig,
    node_id: Option<u64>,
    spans: Option<SpanExport>,
) -> anyhow::Result<()> {
    let signals = Signals::install().context("could not install the SIGTERM/SIGINT handlers")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "could not listen on {}; is another server using the port? choose another with \
                 --listen or MUSSIKON_LISTEN (port 0 picks a free one)",
                config.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .context("could not read the bound address")?;
    let peer_listener = match config.cluster.as_ref().and_then(|c| c.peer_listen) {
        None => None,
        Some(at) => Some(tokio::net::TcpListener::bind(at).await.with_context(|| {
            format!(
                "could not listen for peers on {at}; is another server using the port? choose \
                 another with --peer-listen or MUSSIKON_CLUSTER_PEER_LISTEN (port 0 picks a free \
                 one)"
            )
        })?),
    };
    let peer_addr = match &peer_listener {
        None => None,
        Some(l) => Some(
            l.local_addr()
                .context("could not read the peer listener's bound address")?,
        ),
    };
    {
        // One write for both lines: a supervisor that reads only the first and closes the pipe
        // must not make the second fail.
        let mut lines = format!("listening on {addr}\n");
        if let Some(peer_addr) = peer_addr {
            lines.push_str(&format!("peers listening on {peer_addr}\n"));
        }
        let mut out = std::io::stdout().lock();
        out.write_all(lines.as_bytes())
            .context("could not write to stdout")?;
        out.flush().context("could not write to stdout")?;
    }
    tracing::info!(%addr, "listening");
    if let Some(peer_addr) = peer_addr {
        tracing::info!(
            addr = %peer_addr,
            "listening for peer RPCs (the API listener answers /raft/... 404 unless this \
             node's membership entry names its port)"
        );
    }
    let mut app = App::new(engine.clone(), config.http.clone())
        .context("could not load the token key")?
        .with_span_export(spans);
    let node = match (&config.cluster, node_id) {
        (None, _) | (_, None) => None,
        (Some(c), Some(node_id)) => {
            let node_config = mussikon_cluster::NodeConfig {
                snapshot_logs: c.snapshot_logs,
                keep_logs: c.keep_logs,
                ready_max_lag: c.ready_max_lag,
                heartbeat_ms: c.heartbeat_ms,
                election_ms: Some(c.election_ms),
                fault_injection: c.fault_injection,
                // The peers close idle connections after their header_read_timeout (the same
                // setting on every node): reuse one only well before that.
                peer_idle: config.http.connections.header_read_timeout / 2,
                ..mussikon_cluster::NodeConfig::new(
                    node_id,
                    c.peers.clone(),
                    String::from_utf8_lossy(c.secret.expose()).into_owned(),
                    config.data_dir.join("raft"),
                )
            };
            let node = mussikon_cluster::Node::start(node_config, engine)
                .await
                .context("could not start the cluster node")?;
            tracing::info!(node_id, peers = ?c.peers, "cluster node started");
            if let Some(peer_addr) = peer_addr {
                warn_if_listed_at_api_port(node_id, &c.peers, addr, peer_addr);
            }
            if c.fault_injection {
                tracing::warn!(
                    "FAULT INJECTION IS ON: admins can cut this node from its peers \
                     (/v1/cluster/faults); never run production like this"
                );
            }
            app = app.with_cluster(node.clone());
            Some(node)
        }
    };
    http::serve_with_peers(
        listener,
        peer_listener,
        app,
        signals.wait(),
        config.shutdown_grace,
    )
    .await;
    if let Some(node) = node {
        node.shutdown().await;
    }
    Ok(())
}

/// Warns when `peers` lists this node at its API port while its peer RPCs are served at
/// `peer_addr`: a new cluster's membership would then send them to the API port, which serves
/// them only as long as the membership names it; judged by the same rule as that
/// (`http::cluster::peer_rpcs_on_api_port`, for a cluster moving to peer ports). (A warning, not a refusal: behind port mappings the listed
/// port need not be the one bound; and a member's `--peers` entry only counts at first boot.)
fn warn_if_listed_at_api_port(
    node_id: u64,
    peers: &std::collections::BTreeMap<u64, String>,
    addr: SocketAddr,
    peer_addr: SocketAddr,
) {
    let Some(listed) = peers.get(&node_id) else {
        return;
    };
    let ports = http::cluster::ListenerPorts {
        api: addr.port(),
        peer: peer_addr.port(),
    };
    if http::cluster::peer_rpcs_on_api_port(Some(listed), ports) {
        tracing::warn!(
            node_id,
            %listed,
            peer_listen = %peer_addr,
            "cluster.peers lists this node at its API port, but it has a peer listener \
             (cluster.peer_listen): list every node at its peer port (a cluster first booted \
             this way keeps the API addresses in its membership, where the API port goes on \
             serving the peer RPCs; move each member with `mussikon cluster set-addr`)"
        );
    }
}

/// Generates demo data into an empty store.
fn fill_demo(engine: &Engine, musicians: usize) -> anyhow::Result<()> {
    let status = engine
        .status()
        .context("could not read the store's status")?;
    if status.musicians > 0 || status.gigs > 0 {
        tracing::info!(
            musicians = status.musicians,
            gigs = status.gigs,
            "the store holds data; --demo ignored"
        );
        return Ok(());
    }
    let gigs = (musicians / 100).max(10);
    let generator = Generator::new(GenConfig {
        musicians,
        gigs,
        ..GenConfig::default()
    })
    .context("could not set up the demo data generator")?;
    tracing::info!(musicians, gigs, "generating demo data");
    let mut all = generator.musicians().peekable();
    let mut first = true;
    const BATCH: usize = 10_000;
    while all.peek().is_some() || first {
        let batch: Vec<_> = all.by_ref().take(BATCH).collect();
        let cmd = Command::BulkUpsert {
            musicians: batch,
            gigs: if first {
                generator.gigs().collect()
            } else {
                Vec::new()
            },
        };
        first = false;
        let done = engine
            .execute(&cmd)
            .context("could not write the demo data")?;
        if !done.outcome.is_done() {
            anyhow::bail!("the engine refused the demo data: {:?}", done.outcome);
        }
    }
    // One index segment serves fastest; a bulk fill leaves several.
    engine
        .compact_index()
        .context("could not make the demo data searchable")?;
    tracing::info!(musicians, gigs, "demo data ready");
    Ok(())
}

/// SIGTERM and SIGINT, listened for from the moment of installation.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        {
            let name = tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutdown requested");
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "ctrl-c", "shutdown requested");
        }
    }
}
