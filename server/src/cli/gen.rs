//! `mussikon gen`: a seeded, realistic data set from the engine's generator, written as
//! `musicians.jsonl` and `gigs.jsonl` in the API's JSON form. The same seed and sizes always
//! give the same files.

use anyhow::Context;
use clap::Args;
use mussikon_engine::generate::{GenConfig, Generator};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The long `--help` text of `mussikon gen`.
pub const GEN_HELP: &str =
    "Generate a realistic, seeded data set (musicians placed around real cities, \
    gigs with slots and budgets) as two JSON Lines files, musicians.jsonl and gigs.jsonl, ready \
    for `mussikon import` or POST /v1/musicians/bulk.\n\nExample: mussikon gen --musicians 100000 \
    --gigs 1000 --out-dir demo";

/// `mussikon gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Musicians to generate.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub musicians: usize,

    /// Gigs to generate.
    #[arg(long, value_name = "M", default_value_t = 100)]
    pub gigs: usize,

    /// Seed: the same seed gives the same data.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,

    /// Directory to write musicians.jsonl and gigs.jsonl into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,

    /// First date of gigs and busy days, YYYY-MM-DD.
    #[arg(long, value_name = "DATE", default_value = "2026-12-01")]
    pub start_date: String,

    /// Days in the date window.
    #[arg(long, value_name = "DAYS", default_value_t = 180)]
    pub days: u32,
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let file =
        File::create(path).with_context(|| format!("could not create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    write(&mut out).with_context(|| format!("could not write {}", path.display()))?;
    out.flush()
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

/// Runs `mussikon gen`.
pub fn run(args: GenArgs) -> anyhow::Result<ExitCode> {
    let generator = Generator::new(GenConfig {
        seed: args.seed,
        musicians: args.musicians,
        gigs: args.gigs,
        start_date: args.start_date.clone(),
        days: args.days,
    })
    .context("check --start-date and --days")?;
    std::fs::create_dir_all(&args.out_dir).with_context(|| {
        format!(
            "could not create the output directory {}",
            args.out_dir.display()
        )
    })?;
    let musicians = args.out_dir.join("musicians.jsonl");
    let gigs = args.out_dir.join("gigs.jsonl");
    write_file(&musicians, |w| generator.write_musicians_jsonl(w))?;
    write_file(&gigs, |w| generator.write_gigs_jsonl(w))?;
    println!(
        "wrote {} musicians to {} and {} gigs to {} (seed {})",
        args.musicians,
        musicians.display(),
        args.gigs,
        gigs.display(),
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}
