//! The `mussikon` command line: one subcommand per file, parsed with clap, run by [`run`].
//!
//! Promises: every subcommand has `--help` written for a person; a failure prints one message
//! that says what went wrong and what to do, and exits non-zero; nothing here panics on bad
//! input. Command output goes to stdout, logs and progress bars to stderr.

pub mod check;
pub mod cluster;
pub mod gen;
pub mod healthcheck;
pub mod import;
pub mod serve;
pub mod snapshot;
pub mod token;

use crate::logging::{self, LogFormat};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// MussikOn: match musicians to gigs.
///
/// Start with `mussikon serve --demo 10000` and open http://127.0.0.1:8080/v1/musicians?limit=5.
#[derive(Debug, Parser)]
#[command(name = "mussikon", version, propagate_version = true)]
pub struct Cli {
    /// How log lines are written: auto (text on a terminal, JSON otherwise), json or text. The
    /// level comes from MUSSIKON_LOG (e.g. `debug`, `info,mussikon_engine=debug`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Auto,
        env = "MUSSIKON_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API over a data directory.
    #[command(long_about = serve::SERVE_HELP)]
    Serve(serve::ServeArgs),
    /// Load musicians and gigs from a JSON Lines file into a data directory.
    #[command(long_about = import::IMPORT_HELP)]
    Import(import::ImportArgs),
    /// Write a snapshot of a data directory to a file (also spelled `backup`).
    #[command(long_about = snapshot::EXPORT_HELP, visible_alias = "backup")]
    Export(snapshot::ExportArgs),
    /// Replace the contents of a data directory with a snapshot.
    #[command(long_about = snapshot::RESTORE_HELP)]
    Restore(snapshot::RestoreArgs),
    /// Generate a realistic data set as JSON Lines files.
    #[command(long_about = gen::GEN_HELP)]
    Gen(gen::GenArgs),
    /// Ask a running server whether it is ready (exit 0) or not (exit 1).
    #[command(long_about = healthcheck::HEALTHCHECK_HELP)]
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Mint an HS256 bearer token for the API and print it.
    #[command(long_about = token::TOKEN_HELP)]
    Token(token::TokenArgs),
    /// Look at and change a running cluster (status, join, remove).
    #[command(long_about = cluster::CLUSTER_HELP)]
    Cluster(cluster::ClusterArgs),
    /// Check a stopped data directory's invariants (bookings, messages, index).
    #[command(long_about = check::CHECK_HELP)]
    Check(check::CheckArgs),
    /// Print the version and the storage format.
    Version,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // tantivy reports every segment commit at info: useful when debugging the index only.
    let level = match cli.command {
        Command::Serve(_) => "info,tantivy=warn",
        _ => "warn,tantivy=error",
    };
    logging::init(cli.log_format, level);
    logging::log_panics();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Import(args) => import::run(args),
        Command::Export(args) => snapshot::export(args),
        Command::Restore(args) => snapshot::restore(args),
        Command::Gen(args) => gen::run(args),
        Command::Healthcheck(args) => healthcheck::run(args),
        Command::Token(args) => token::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Check(args) => check::run(args),
        Command::Version => {
            println!(
                "mussikon {} (storage and snapshot format {})",
                env!("CARGO_PKG_VERSION"),
                mussikon_engine::codec::FORMAT_VERSION
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The engine settings every command opens a data directory with: the defaults, with
/// `Durability::Sync` stated rather than inherited, since the API promises that an acknowledged
/// write is on disk.
pub fn engine_config() -> mussikon_engine::Config {
    mussikon_engine::Config {
        durability: mussikon_engine::Durability::Sync,
        ..mussikon_engine::Config::default()
    }
}

/// What to say when the engine cannot open `dir`.
fn cannot_open(dir: &std::path::Path) -> String {
    format!(
        "could not open the data directory {}; if a `mussikon serve` is using it, stop it \
         first (a data directory serves one process at a time)",
        dir.display()
    )
}

/// Opens the engine on `dir` with a message that says what to do when it cannot.
pub fn open_engine(dir: &std::path::Path) -> anyhow::Result<mussikon_engine::Engine> {
    open_engine_with(dir, engine_config())
}

/// [`open_engine`] with a given configuration.
pub fn open_engine_with(
    dir: &std::path::Path,
    config: mussikon_engine::Config,
) -> anyhow::Result<mussikon_engine::Engine> {
    use anyhow::Context;
    mussikon_engine::Engine::open(dir, config).with_context(|| cannot_open(dir))
}

/// Opens the engine of a cluster node on `dir`: periodic flushes (the Raft log is the durable
/// copy; docs/cluster.md says exactly when a write is on disk), and an index left behind by an
/// interrupted snapshot install rebuilt.
pub fn open_replica_engine(
    dir: &std::path::Path,
    index: &crate::config::IndexConfig,
) -> anyhow::Result<mussikon_engine::Engine> {
    use anyhow::Context;
    let config = index.apply_to(mussikon_engine::Config {
        durability: mussikon_engine::Durability::Periodic {
            flush_every_ms: 1000,
        },
        ..mussikon_engine::Config::default()
    });
    mussikon_engine::Engine::open_replica(dir, config).with_context(|| cannot_open(dir))
}
