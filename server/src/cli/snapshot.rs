//! `mussikon export` and `mussikon restore`: whole-store snapshots in the engine's format.
//!
//! Export writes to a temporary file beside the target, syncs it, and renames it into place, so
//! the target is either the old file or a complete snapshot, never a torn one. Restore replaces
//! a closed data directory's contents (refusing a non-empty one without `--force`) and then
//! opens it once, which rebuilds the search index, so the directory is ready to serve. With
//! `--cluster` it also marks the directory to start a new cluster from the restored data
//! (`mussikon_cluster::bootstrap`), after checking it holds no Raft state.

use anyhow::Context;
use clap::Args;
use mussikon_engine::Engine;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// The long `--help` text of `mussikon export`.
pub const EXPORT_HELP: &str = "Write a consistent snapshot of a data directory to a file (the engine's \
    checksummed snapshot format; restore it with `mussikon restore`). Stop any `mussikon serve` \
    using the data directory first.\n\nExample: mussikon export --data-dir ./data --out backup.snap";

/// `mussikon export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The data directory to read.
    #[arg(long, env = "MUSSIKON_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The snapshot file to write (replaced atomically if it exists).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// The long `--help` text of `mussikon restore`.
pub const RESTORE_HELP: &str = "Replace the contents of a data directory with a snapshot written \
    by `mussikon export`. Refuses a data directory that holds data unless --force is given. Stop \
    any `mussikon serve` using the data directory first. With --cluster, the directory starts a \
    NEW cluster: start it as the lowest id of --peers, and start the other members empty (or \
    join them); they receive the restored data as a snapshot.\n\nExamples: mussikon restore \
    --data-dir ./data --in backup.snap --force\n  mussikon restore --cluster --data-dir ./data \
    --in backup.snap";

/// `mussikon restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The data directory to restore into (created if missing).
    #[arg(long, env = "MUSSIKON_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The snapshot file to read.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,

    /// Replace a data directory that already holds data.
    #[arg(long)]
    pub force: bool,

    /// Restore for a new cluster: the first start of the directory as a cluster node (the
    /// lowest id of its --peers) begins a new cluster whose first state is the restored data;
    /// the other members start empty or join, and receive it as a snapshot. Refuses a
    /// directory that holds Raft state.
    #[arg(long)]
    pub cluster: bool,
}

/// Runs `mussikon export`.
pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    if !args.data_dir.exists() {
        anyhow::bail!(
            "the data directory {} does not exist; check --data-dir",
            args.data_dir.display()
        );
    }
    let engine = super::open_engine(&args.data_dir)?;
    let name = args
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "snapshot".into());
    let tmp = args.out.with_file_name(format!(".{name}.partial"));
    let file = File::create(&tmp).with_context(|| {
        format!(
            "could not create {}; check that the directory exists and is writable",
            tmp.display()
        )
    })?;
    let mut out = BufWriter::new(file);
    let summary = engine
        .export(&mut out)
        .with_context(|| format!("could not write the snapshot to {}", tmp.display()))?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("could not write {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("could not sync {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("could not move the snapshot to {}", args.out.display()))?;
    println!(
        "exported {} musicians and {} gigs, {} messages (applied sequence {}) to {}",
        summary.musicians,
        summary.gigs,
        summary.messages,
        summary.applied_seq,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `mussikon restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let mut file = File::open(&args.input)
        .with_context(|| format!("could not open {}; check --in", args.input.display()))?;
    let raft_dir = args.data_dir.join("raft");
    // For a cluster: checked before anything is replaced, so a refusal changes nothing. The
    // retired ids a Raft snapshot file carries in its trailer go with the data.
    let retired = if args.cluster {
        mussikon_cluster::bootstrap::check_no_raft_state(&raft_dir).context("--cluster")?;
        let (retired, _) = mussikon_cluster::state_machine::read_trailer(&mut file)
            .with_context(|| format!("could not read {}; check --in", args.input.display()))?;
        Some(retired)
    } else {
        None
    };
    let summary =
        Engine::restore(&args.data_dir, BufReader::new(file), args.force).map_err(|e| match e {
            mussikon_engine::EngineError::NotEmpty { musicians, gigs } => anyhow::anyhow!(
                "{} already holds {musicians} musicians and {gigs} gigs; pass --force to replace \
                 them with the snapshot",
                args.data_dir.display()
            ),
            other => anyhow::Error::new(other).context(format!(
                "could not restore {} into {}; if a `mussikon serve` uses the data directory, \
                 stop it first",
                args.input.display(),
                args.data_dir.display()
            )),
        })?;
    let engine = super::open_engine(&args.data_dir)
        .context("the snapshot was restored but the index could not be rebuilt")?;
    engine
        .refresh()
        .context("the snapshot was restored but the index could not be rebuilt")?;
    drop(engine);
    if let Some(retired) = &retired {
        mussikon_cluster::bootstrap::mark(&raft_dir, retired).context(
            "the snapshot was restored but the directory could not be marked for a cluster",
        )?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "restored {} musicians and {} gigs, {} messages (applied sequence {}) into {}",
        summary.musicians,
        summary.gigs,
        summary.messages,
        summary.applied_seq,
        args.data_dir.display()
    )
    .context("could not write to stdout")?;
    if retired.is_some() {
        writeln!(
            out,
            "marked to start a NEW cluster: start it as the lowest id of --peers (MUSSIKON_PEERS); \
             start the other members on empty directories, or join them with `mussikon cluster join`"
        )
        .context("could not write to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}
