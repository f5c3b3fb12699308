//! Opens a store, imports generated data, and prints the matches of a gig.
//!
//! Run: `cargo run -p mussikon-engine --release --example match_a_gig -- [MUSICIANS] [DIR]`
//! (defaults: 20,000 musicians in a temporary directory).

use mussikon_engine::generate::{GenConfig, Generator};
use mussikon_engine::{Config, Engine, MatchRequest, MatchTarget};
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let musicians: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());

    let engine = Engine::open(&dir, Config::default())?;
    let gen = Generator::new(GenConfig {
        musicians,
        gigs: 100,
        ..GenConfig::default()
    })?;
    let started = std::time::Instant::now();
    let mut jsonl = Vec::new();
    gen.write_musicians_jsonl(&mut jsonl)?;
    gen.write_gigs_jsonl(&mut jsonl)?;
    let report = engine.import_jsonl(&jsonl[..], &Default::default(), |p| {
        eprint!("\rimported {} records", p.written);
    })?;
    engine.refresh()?;
    eprintln!(
        "\n{} musicians and {} gigs in {:.2} s",
        report.musicians,
        report.gigs,
        started.elapsed().as_secs_f64()
    );

    // Show the gig with the most eligible musicians: small data sets leave many gigs empty.
    let mut best = None;
    for gig in gen.gigs() {
        let result = engine.match_gig(&MatchRequest {
            target: MatchTarget::Stored(gig.id.clone()),
            k: Some(5),
            weights: None,
        })?;
        let eligible: usize = result.slots.iter().map(|s| s.eligible).sum();
        if best.as_ref().is_none_or(|(e, _, _)| eligible > *e) {
            best = Some((eligible, gig, result));
        }
    }
    let Some((_, gig, result)) = best else {
        return Err("no gigs generated".into());
    };
    println!(
        "{} — {} on {} ({} slots)",
        gig.id,
        gig.title,
        gig.date,
        gig.slots.len()
    );
    for s in &result.slots {
        println!(
            "slot {} ({}, {} open, {} eligible):",
            s.slot, s.instrument, s.open_seats, s.eligible
        );
        for c in &s.candidates {
            println!(
                "  {:<12} score {:.4}  {:>6.1} km",
                c.musician_id, c.score, c.distance_km
            );
        }
    }
    println!(
        "assignment (total {:.4}, {} unfilled):",
        result.assignment.total_score, result.assignment.unfilled
    );
    for seat in &result.assignment.seats {
        println!(
            "  slot {} seat {}: {}",
            seat.slot,
            seat.seat,
            seat.musician_id.as_deref().unwrap_or("—")
        );
    }
    Ok(())
}
