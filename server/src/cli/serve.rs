//! `mussikon serve`: open the engine, optionally fill an empty store with demo data, serve the
//! API, and shut down cleanly.
//!
//! Start-up order matters to callers: the engine is opened and the signal handlers are
//! installed before the first stdout line, `listening on ADDR`, is printed, so a supervisor (or
//! a test) that reads that line can connect and can send SIGTERM at once.
//!
//! Shutdown on SIGTERM or SIGINT: stop accepting connections, let in-flight requests finish
//! (at most `--shutdown-grace` seconds, 10 by default), flush the store, exit 0. Every write
//! acknowledged before the signal was already on disk (Durability::Sync); the flush is a last
//! safety net, not what durability rests on.

use crate::config::{HttpConfig, ServeConfig};
use crate::http::{self, app::App};
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
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, as IP:PORT. Port 0 picks a free port.
    #[arg(long, env = "MUSSIKON_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the store and the index; created if missing.
    #[arg(long, env = "MUSSIKON_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Fill an EMPTY store with N generated musicians and N/100 gigs (at least 10), so there is
    /// something to search at once. Ignored when the store already holds data.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub demo: usize,

    /// Largest JSON request body, in bytes; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = crate::config::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Largest NDJSON body of POST /v1/musicians/bulk, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::config::DEFAULT_MAX_BULK_BYTES)]
    pub max_bulk_bytes: usize,

    /// Idempotency keys remembered in memory (least recently used forgotten first; lost on
    /// restart).
    #[arg(long, value_name = "N", default_value_t = crate::config::DEFAULT_IDEMPOTENCY_KEYS)]
    pub idempotency_keys: usize,

    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub shutdown_grace: u64,
}

impl ServeArgs {
    fn config(&self) -> ServeConfig {
        ServeConfig {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            demo: self.demo,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            http: HttpConfig {
                max_body_bytes: self.max_body_bytes,
                max_bulk_bytes: self.max_bulk_bytes,
                idempotency_keys: self.idempotency_keys,
                ..HttpConfig::default()
            },
        }
    }
}

/// Runs `mussikon serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.config();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        demo = config.demo,
        durability = "sync",
        shutdown_grace_s = config.shutdown_grace.as_secs_f64(),
        max_body_bytes = config.http.max_body_bytes,
        max_bulk_bytes = config.http.max_bulk_bytes,
        idempotency_keys = config.http.idempotency_keys,
        "starting with this configuration"
    );
    let engine = super::open_engine(&config.data_dir)?;
    if config.demo > 0 {
        fill_demo(&engine, config.demo)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mussikon")
        .build()
        .context("could not start the async runtime")?;
    let result = runtime.block_on(serve(engine.clone(), &config));
    // Blocking engine calls of requests cut off by the grace period may still run; do not wait
    // for them forever.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result?;
    engine.flush().context(
        "the final flush of the store failed; writes acknowledged before it are on disk",
    )?;
    tracing::info!("store flushed; stopped");
    Ok(ExitCode::SUCCESS)
}

async fn serve(engine: Engine, config: &ServeConfig) -> anyhow::Result<()> {
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
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("could not write to stdout")?;
        out.flush().context("could not write to stdout")?;
    }
    tracing::info!(%addr, "listening");
    let app = App::new(engine, config.http.clone());
    http::serve(listener, app, signals.wait(), config.shutdown_grace).await;
    Ok(())
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
    engine
        .refresh()
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
