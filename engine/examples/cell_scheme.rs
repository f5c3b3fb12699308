//! Measures the location cell scheme: for several cover sizes, how many terms each musician's
//! travel circle costs in the index and how many candidates a gig's point lookup returns
//! compared with the musicians actually within reach (the exact distance check removes the
//! rest). The figures justify `index::REACH_MAX_CELLS`; they are recorded in docs/perf.md.
//!
//! Run: `cargo run -p mussikon-engine --release --example cell_scheme -- [MUSICIANS] [GIGS]`

use mussikon_engine::generate::{GenConfig, Generator};
use mussikon_engine::geo::{cover_cells, haversine_km, point_cells};
use std::collections::HashMap;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let gigs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2_000);
    let gen = Generator::new(GenConfig {
        musicians: n,
        gigs,
        ..GenConfig::default()
    })?;
    let musicians: Vec<_> = gen.musicians().collect();
    let gigs: Vec<_> = gen.gigs().collect();
    println!("{n} musicians, {} gigs", gigs.len());
    println!("| max cells | terms/musician | candidates/gig | within reach/gig | candidates per true match |");
    println!("|---|---|---|---|---|");
    for max_cells in [4usize, 8, 16, 32, 64] {
        let mut postings: HashMap<String, Vec<u32>> = HashMap::new();
        let mut terms = 0usize;
        for (i, m) in musicians.iter().enumerate() {
            for c in cover_cells(m.location, m.travel_radius_km, max_cells) {
                terms += 1;
                postings.entry(c).or_default().push(i as u32);
            }
        }
        let (mut cands, mut hits) = (0usize, 0usize);
        for g in &gigs {
            let mut found: Vec<u32> = point_cells(g.location)
                .iter()
                .filter_map(|c| postings.get(c))
                .flatten()
                .copied()
                .collect();
            found.sort_unstable();
            found.dedup();
            cands += found.len();
            hits += found
                .iter()
                .filter(|i| {
                    let m = &musicians[**i as usize];
                    haversine_km(m.location, g.location) <= m.travel_radius_km
                })
                .count();
        }
        let per = |x: usize| x as f64 / gigs.len() as f64;
        println!(
            "| {max_cells} | {:.1} | {:.1} | {:.1} | {:.2} |",
            terms as f64 / n as f64,
            per(cands),
            per(hits),
            cands as f64 / hits.max(1) as f64
        );
    }
    Ok(())
}
