//! `mussikon check`: verify a (stopped) data directory's invariants with the engine's
//! `check_consistency`, for operators after a crash and for the kill -9 loop
//! (`server/tests/kill_loop.py`).
//!
//! Opening the directory replays the index from the store's change log (as `serve` would), the
//! index is then committed, and the check runs: both sides of every booking agree, every
//! gig's messages are numbered without gaps, and every stored musician is indexed exactly once,
//! with the match facts searches read (through the index's facts overlay) equal to its record's.
//! Exit 0 and one summary line when consistent; exit 1 and one line per violation otherwise.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// The long `--help` text of `mussikon check`.
pub const CHECK_HELP: &str = "Check a data directory's invariants: bookings recorded on both the \
    gig and the musician, message threads numbered without gaps, and the search index holding \
    every stored musician exactly once, with the fee, rating, radius and active flag it \
    searches by equal to the stored ones. Stop any `mussikon serve` using the directory first. \
    Exits 1 and prints each violation when one is found.\n\nExample: mussikon check --data-dir ./data";

/// `mussikon check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The data directory to check.
    #[arg(long, env = "MUSSIKON_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Runs `mussikon check`.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if !args.data_dir.exists() {
        anyhow::bail!(
            "the data directory {} does not exist; check --data-dir",
            args.data_dir.display()
        );
    }
    let engine = super::open_engine(&args.data_dir)?;
    engine.refresh()?;
    let problems = engine.check_consistency()?;
    let status = engine.status()?;
    if problems.is_empty() {
        println!(
            "consistent: {} musicians, {} gigs, applied sequence {}",
            status.musicians, status.gigs, status.applied_seq
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("inconsistent: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}
