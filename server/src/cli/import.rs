//! `mussikon import`: JSON Lines into a data directory, through the engine's `import_jsonl`
//! (the same validation as the API), with a progress bar on stderr and a report on stdout.
//!
//! Exit codes: 0 when the import ran (bad lines, if any, were skipped and listed); 1 when it
//! could not run, or when `--reject-all` was given and some line was bad (then nothing was
//! written).

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mussikon_engine::import::RecordKind;
use mussikon_engine::{ImportOptions, ImportReport, OnError};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

/// What the lines of the file hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Decide per line: a line with a "slots" key is a gig, any other a musician.
    Auto,
    /// Every line is a musician.
    Musicians,
    /// Every line is a gig.
    Gigs,
}

/// The long `--help` text of `mussikon import`.
pub const IMPORT_HELP: &str =
    "Load musicians and gigs from a JSON Lines file (one JSON object per line, in the \
    API's JSON form) into a data directory. Each line is validated like a PUT to the API. Bad \
    lines are skipped and listed with their line numbers, unless --reject-all is given.\n\n\
    Stop any `mussikon serve` using the data directory first.\n\n\
    Example: mussikon gen --out-dir demo && mussikon import demo/musicians.jsonl --data-dir ./data";

/// `mussikon import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The JSON Lines file to read; `-` reads standard input.
    pub file: PathBuf,

    /// The data directory to import into (created if missing).
    #[arg(long, env = "MUSSIKON_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Import nothing if any line is bad (the whole file is checked first), and exit 1.
    #[arg(long)]
    pub reject_all: bool,

    /// What the lines hold.
    #[arg(long, value_enum, default_value_t = Kind::Auto)]
    pub kind: Kind,

    /// Records written per atomic batch.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub batch: usize,
}

/// Runs `mussikon import`.
pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let (input, total): (Box<dyn BufRead>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(BufReader::new(std::io::stdin())), None)
    } else {
        let file = File::open(&args.file).with_context(|| {
            format!(
                "could not open {}; check the path (use `-` to read standard input)",
                args.file.display()
            )
        })?;
        let len = file.metadata().map(|m| m.len()).ok();
        (Box::new(BufReader::with_capacity(1 << 20, file)), len)
    };
    // The serving node's index settings (one indexing thread, a commit a second), not the
    // engine library's: on 2 cores a bulk load of 1M musicians runs at 62,000/s with them
    // against 54,000/s (docs/perf.md); what is searchable is exact either way.
    let index = crate::config::IndexConfig::default();
    let engine = super::open_engine_with(&args.data_dir, index.apply_to(super::engine_config()))?;
    let bar = match total {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner(),
    };
    let opts = ImportOptions {
        on_error: if args.reject_all {
            OnError::Reject
        } else {
            OnError::Skip
        },
        kind: match args.kind {
            Kind::Auto => RecordKind::Auto,
            Kind::Musicians => RecordKind::Musicians,
            Kind::Gigs => RecordKind::Gigs,
        },
        batch: args.batch.max(1),
        ..ImportOptions::default()
    };
    let report = engine
        .import_jsonl(input, &opts, |p| {
            bar.set_position(p.bytes);
            bar.set_message(format!("{} written, {} rejected", p.written, p.rejected));
        })
        .with_context(|| format!("the import of {} failed", args.file.display()))?;
    bar.finish_and_clear();
    if !report.aborted && report.musicians > 0 {
        // One index segment serves fastest; a bulk load leaves several. Not fatal: the data
        // is imported either way, and tantivy's own merges continue in later runs.
        if let Err(e) = engine.compact_index() {
            eprintln!("warning: the index could not be compacted after the import: {e}");
        }
    }
    print_report(&args, &report);
    Ok(if report.aborted {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(args: &ImportArgs, report: &ImportReport) {
    let file = args.file.display();
    if report.aborted {
        println!(
            "nothing imported from {file}: {} bad line(s) and --reject-all was given; fix them, \
             or run without --reject-all to import the good lines",
            report.rejected
        );
    } else {
        println!(
            "imported {} musicians and {} gigs from {file} into {} (applied sequence {})",
            report.musicians,
            report.gigs,
            args.data_dir.display(),
            report.applied_seq
        );
        if report.rejected > 0 {
            println!("skipped {} bad line(s):", report.rejected);
        }
    }
    for e in &report.errors {
        println!("  line {}: {}", e.line, e.error);
    }
    let unlisted = report.rejected.saturating_sub(report.errors.len() as u64);
    if unlisted > 0 {
        println!("  … and {unlisted} more");
    }
}
