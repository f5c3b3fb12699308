//! An export runs while writes go on (it holds the writer lock only to pick its moment): the
//! stream it writes is still exactly the state at its applied sequence, byte for byte, whatever
//! the writes in between change, create or delete; and the writes are not held up.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::*;
use std::io::Write;

fn post(gig: &str, n: i64) -> Command {
    Command::PostMessage {
        gig_id: gig.into(),
        message_id: None,
        author: "a-1".into(),
        text: format!("message {n}"),
        at: Timestamp::Millis(n),
    }
}

/// A world large enough that the export writes several frames of musicians (1,000 a frame),
/// with gigs, bookings and messages.
fn world(e: &Engine) {
    for chunk in (0..2_500).collect::<Vec<_>>().chunks(500) {
        let musicians = chunk
            .iter()
            .map(|i| musician_json(&format!("m-{i:05}")))
            .collect();
        let cmd = Command::BulkUpsert {
            musicians,
            gigs: Vec::new(),
        };
        assert!(e
            .apply(e.applied_seq().unwrap() + 1, &cmd)
            .unwrap()
            .outcome
            .is_done());
    }
    for g in 0..40 {
        let id = format!("g-{g:03}");
        assert!(e.upsert_gig(gig_json(&id)).unwrap().outcome.is_done());
        for n in 0..3 {
            assert!(e
                .apply(e.applied_seq().unwrap() + 1, &post(&id, n))
                .unwrap()
                .outcome
                .is_done());
        }
    }
    let book = Command::Book(Booking {
        gig_id: "g-001".into(),
        slot: 0,
        musician_id: "m-00010".into(),
    });
    assert!(e
        .apply(e.applied_seq().unwrap() + 1, &book)
        .unwrap()
        .outcome
        .is_done());
}

/// Every kind of change an export must not see: an update, a delete and a re-create of keys
/// the export has passed and of keys it has not, new keys before and after its position, a
/// booking (two records), a gig deleted with its messages, and new messages.
fn meddle(e: &Engine, round: usize) {
    let mut cmds = vec![
        Command::DeleteMusician {
            id: format!("m-{:05}", 3 + round),
        },
        Command::DeleteMusician {
            id: format!("m-{:05}", 2_400 - round),
        },
        Command::UpsertMusician {
            musician: musician_json(&format!("m-{:05}", 1_200 + round)),
        },
        Command::UpsertMusician {
            musician: musician_json(&format!("m-{:05}a", round)),
        },
        Command::UpsertMusician {
            musician: musician_json(&format!("z-{round}")),
        },
        Command::RateMusician {
            musician_id: format!("m-{:05}", 2_000 + round),
            stars: 1,
        },
        Command::DeleteGig {
            id: format!("g-{:03}", 10 + round),
        },
        post("g-020", 100 + round as i64),
        Command::UpsertGig {
            gig: gig_json(&format!("g-{:03}b", round)),
        },
        Command::Book(Booking {
            gig_id: "g-002".into(),
            slot: 0,
            musician_id: format!("m-{:05}", 20 + round),
        }),
    ];
    if round == 0 {
        // Deleted, then created again: it must read as it was, not as absent or new.
        cmds.push(Command::UpsertMusician {
            musician: musician_json("m-00003"),
        });
    }
    for cmd in cmds {
        let seq = e.applied_seq().unwrap() + 1;
        e.apply(seq, &cmd).unwrap();
    }
}

/// A sink that, once the export has written past each of `at` (bytes), makes the writes of one
/// round of [`meddle`] before taking more.
struct Meddling<'a> {
    engine: &'a Engine,
    out: Vec<u8>,
    at: Vec<usize>,
    rounds: usize,
}

impl Write for Meddling<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(buf);
        while self.at.first().is_some_and(|&a| self.out.len() >= a) {
            self.at.remove(0);
            meddle(self.engine, self.rounds);
            self.rounds += 1;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_export_is_the_state_at_its_sequence_whatever_is_written_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    world(&e);
    let seq_before = e.applied_seq().unwrap();
    let mut quiet = Vec::new();
    let quiet_summary = e.export(&mut quiet).unwrap();

    // Writes at the start of the stream, between musician frames, among the gigs, and
    // at its end.
    let len = quiet.len();
    let mut sink = Meddling {
        engine: &e,
        out: Vec::new(),
        at: vec![1, len / 4, len / 2, len * 3 / 4, len - 64],
        rounds: 0,
    };
    let summary = e.export(&mut sink).unwrap();
    assert!(
        sink.rounds >= 4,
        "the writes ran during the export ({} rounds)",
        sink.rounds
    );
    assert!(
        e.applied_seq().unwrap() > seq_before + 40,
        "the writes were applied while the export ran"
    );
    assert_eq!(summary, quiet_summary);
    assert!(
        sink.out == quiet,
        "the export written while writing differs from the quiet one"
    );

    // And the writes are all there afterwards: the state moved on.
    let mut after = Vec::new();
    e.export(&mut after).unwrap();
    assert!(after != quiet);
    assert!(e.musician("z-0").unwrap().is_some());
    assert!(e.musician("m-02400").unwrap().is_none());
}

#[test]
fn an_export_restores_to_the_state_at_its_sequence_after_writes_during_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    world(&e);
    let mut quiet = Vec::new();
    e.export(&mut quiet).unwrap();
    let mut sink = Meddling {
        engine: &e,
        out: Vec::new(),
        at: vec![quiet.len() / 3, quiet.len() * 2 / 3],
        rounds: 0,
    };
    e.export(&mut sink).unwrap();

    let restored = tempfile::tempdir().unwrap();
    Engine::restore(restored.path(), sink.out.as_slice(), false).unwrap();
    let r = open_engine(restored.path());
    let mut again = Vec::new();
    r.export(&mut again).unwrap();
    assert!(
        again == quiet,
        "the restored copy is the state at the export's sequence"
    );
    assert!(
        r.check_consistency().unwrap().is_empty(),
        "bookings and messages are consistent"
    );
}

/// The command of sequence `seq` in a deterministic stream of writes over a fixed set of keys.
fn nth_command(seq: u64) -> Command {
    let k = seq % 97;
    match seq % 6 {
        0 => Command::DeleteMusician {
            id: format!("m-{:05}", k * 7),
        },
        1 | 2 => Command::UpsertMusician {
            musician: musician_json(&format!("m-{:05}", k * 7)),
        },
        3 => Command::RateMusician {
            musician_id: format!("m-{:05}", k * 7 + 1),
            stars: (seq % 5 + 1) as i64,
        },
        4 => post(&format!("g-{:03}", k % 40), seq as i64),
        _ => Command::UpsertMusician {
            musician: musician_json(&format!("n-{seq}")),
        },
    }
}

#[test]
fn an_export_racing_a_writer_thread_is_the_state_at_its_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    world(&e);
    let base = e.applied_seq().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (exported, summary, written_during) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut seq = base;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seq += 1;
                e.apply(seq, &nth_command(seq)).unwrap();
            }
            seq
        });
        while e.applied_seq().unwrap() < base + 200 {
            std::thread::yield_now();
        }
        let mut out = Vec::new();
        let summary = e.export(&mut out).unwrap();
        let after = e.applied_seq().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let last = writer.join().unwrap();
        assert!(last >= after);
        let during = after - summary.applied_seq;
        (out, summary, during)
    });
    eprintln!("{written_during} writes were applied while the export ran");

    // The same world and the same writes up to the export's sequence, with no export running.
    let replay_dir = tempfile::tempdir().unwrap();
    let replay = open_engine(replay_dir.path());
    world(&replay);
    assert_eq!(replay.applied_seq().unwrap(), base);
    for seq in base + 1..=summary.applied_seq {
        replay.apply(seq, &nth_command(seq)).unwrap();
    }
    let mut expected = Vec::new();
    assert_eq!(replay.export(&mut expected).unwrap(), summary);
    assert!(
        exported == expected,
        "the export is the state at its sequence"
    );
}
