//! Crash safety: a child process applies commands with synchronous durability and is killed with
//! SIGKILL at a random moment; after reopening, every command it reported durable is present,
//! bookings are never doubled, and the index agrees with the store, match facts included (the
//! index is replayed from the store's change log, from where the facts overlay began, or
//! rebuilt).
//!
//! The child is this same test binary, re-run with `MUSSIKON_CRASH_CHILD` set: the
//! `crash_child_writer` test then acts as the writer instead of returning at once.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;
use std::io::{BufRead, BufReader};
use std::process::{Command as Proc, Stdio};

const CHILD_ENV: &str = "MUSSIKON_CRASH_CHILD";

/// Writer side: runs only in the child process.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cycle: usize = std::env::var("MUSSIKON_CRASH_CYCLE")
        .unwrap()
        .parse()
        .unwrap();
    let e = Engine::open(
        &dir,
        Config {
            durability: Durability::Sync,
            // Index commits every few writes, so that kills land between and during them, and
            // the last commit before a kill often has facts in the overlay.
            index_commit_interval: std::time::Duration::from_millis(5),
            ..Config::default()
        },
    )
    .unwrap();
    let mut g = gig_json(&format!("g-{cycle}"));
    g.date = format!("2027-01-{:02}", cycle % 28 + 1);
    g.slots[0].count = 20;
    g.slots[0].min_level = 1;
    e.upsert_gig(g).unwrap();
    for i in 0.. {
        let id = format!("m-{cycle}-{i}");
        let mut m = musician_json(&id);
        m.busy.clear();
        e.upsert_musician(m).unwrap();
        println!("musician {id}");
        if i % 2 == 1 {
            // A new fee and a rating for an earlier musician of this cycle: changes the index
            // keeps in its facts overlay, which is not on disk; after the kill the reopened
            // index must still agree with the store on them (check_consistency compares).
            let earlier = format!("m-{cycle}-{}", i / 2);
            let mut m = musician_json(&earlier);
            m.busy.clear();
            m.fee.amount = 10_000 + i as i64;
            e.upsert_musician(m).unwrap();
            e.execute(&Command::RateMusician {
                musician_id: earlier.clone(),
                stars: (i % 5 + 1) as i64,
            })
            .unwrap();
            println!("fee {earlier} {}", 10_000 + i);
        }
        if i % 3 == 0 {
            // Book an earlier cycle's musician on this cycle's gig (until the slot fills).
            let b = Booking {
                gig_id: format!("g-{cycle}"),
                slot: 0,
                musician_id: format!("m-0-{}", i / 3),
            };
            if e.book(b.clone()).unwrap().outcome.is_done() {
                println!("booked {} {}", b.gig_id, b.musician_id);
            }
        }
        if i % 50 == 49 {
            // A bulk command: atomic, so all or none of its musicians survive.
            let ms: Vec<Musician> = (0..200)
                .map(|k| musician_json(&format!("b-{cycle}-{i}-{k}")))
                .collect();
            e.execute(&Command::BulkUpsert {
                musicians: ms,
                gigs: vec![],
            })
            .unwrap();
            println!("bulk b-{cycle}-{i}");
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cycles: usize = std::env::var("MUSSIKON_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut acked_musicians = Vec::new();
    let mut acked_bookings = Vec::new();
    let mut acked_bulks = Vec::new();
    // Musician → the last fee acknowledged for it (a later, unacknowledged one may have landed).
    let mut acked_fees = std::collections::BTreeMap::<String, i64>::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ std::process::id() as u64;
    for cycle in 0..cycles {
        let mut child = Proc::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("MUSSIKON_CRASH_CYCLE", cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = 20 + (rng % 400) as usize;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(id) = line.strip_prefix("musician ") {
                acked_musicians.push(id.to_string());
            } else if let Some(rest) = line.strip_prefix("booked ") {
                let (g, m) = rest.split_once(' ').unwrap();
                acked_bookings.push((g.to_string(), m.to_string()));
            } else if let Some(prefix) = line.strip_prefix("bulk ") {
                acked_bulks.push(prefix.to_string());
            } else if let Some(rest) = line.strip_prefix("fee ") {
                let (m, fee) = rest.split_once(' ').unwrap();
                acked_fees.insert(m.to_string(), fee.parse::<i64>().unwrap());
            } else {
                continue;
            }
            seen += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Drain what the child printed before it died: acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("musician ") {
                acked_musicians.push(id.to_string());
            } else if let Some(rest) = line.strip_prefix("booked ") {
                let (g, m) = rest.split_once(' ').unwrap();
                acked_bookings.push((g.to_string(), m.to_string()));
            } else if let Some(prefix) = line.strip_prefix("bulk ") {
                acked_bulks.push(prefix.to_string());
            } else if let Some(rest) = line.strip_prefix("fee ") {
                let (m, fee) = rest.split_once(' ').unwrap();
                acked_fees.insert(m.to_string(), fee.parse::<i64>().unwrap());
            }
        }
        let e = Engine::open(dir.path(), Config::default()).unwrap();
        for id in &acked_musicians {
            assert!(
                e.musician(id).unwrap().is_some(),
                "cycle {cycle}: acknowledged musician {id} lost"
            );
        }
        for (g, m) in &acked_bookings {
            let view = e.gig(g).unwrap().unwrap();
            assert_eq!(
                view.bookings.iter().filter(|b| &b.musician_id == m).count(),
                1,
                "booking {g}/{m}"
            );
        }
        for prefix in &acked_bulks {
            for k in [0, 199] {
                assert!(
                    e.musician(&format!("{prefix}-{k}")).unwrap().is_some(),
                    "bulk {prefix} lost"
                );
            }
        }
        // Bulk commands are atomic: a bulk's musicians are all there or none.
        let all = e.list_musicians(None, usize::MAX).unwrap();
        let mut per_bulk = std::collections::BTreeMap::<String, usize>::new();
        for v in &all {
            if let Some(rest) = v.musician.id.strip_prefix("b-") {
                let prefix = rest.rsplit_once('-').unwrap().0.to_string();
                *per_bulk.entry(prefix).or_default() += 1;
            }
        }
        assert!(
            per_bulk.values().all(|n| *n == 200),
            "a torn bulk: {per_bulk:?}"
        );
        for (id, fee) in &acked_fees {
            let stored = e.musician(id).unwrap().unwrap().musician.fee.amount;
            assert!(
                stored >= *fee,
                "cycle {cycle}: {id}'s fee {fee} lost ({stored})"
            );
        }
        e.refresh().unwrap();
        let problems = e.check_consistency().unwrap();
        assert!(problems.is_empty(), "cycle {cycle}: {problems:?}");
    }
    assert!(!acked_fees.is_empty());
    assert!(acked_musicians.len() >= cycles * 10);
}
