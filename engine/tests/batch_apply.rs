//! `Engine::apply_batch_annexed` (one store transaction per batch, what a Raft state machine
//! calls) against `Engine::apply_annexed` one command at a time: for any sequence of commands,
//! cut into any batches with command-less entries in between, the outcomes, the exported state,
//! the annex and the search results are the same. The commands touch the same few records
//! again and again, so later steps of a batch depend on what earlier steps of the same batch
//! wrote (a booking of a musician upserted two steps before, a delete of a gig just booked, a
//! replayed idempotency key).
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use mussikon_engine::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Upsert(usize),
    Delete(usize),
    UpsertGig(usize),
    DeleteGig(usize),
    Book(usize, usize, usize),
    Cancel(usize, usize),
    Rate(usize, i64),
    /// A booking under an idempotency key (key index, fingerprint): the same key with the same
    /// fingerprint replays, with another one conflicts.
    KeyedBook(usize, usize, usize, u64),
    /// A musician that fails validation: refused, and still advances the sequence.
    Invalid,
    /// A Raft entry without a command (blank or membership).
    NoCommand,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..6).prop_map(Op::Upsert),
        1 => (0usize..6).prop_map(Op::Delete),
        2 => (0usize..3).prop_map(Op::UpsertGig),
        1 => (0usize..3).prop_map(Op::DeleteGig),
        4 => (0usize..6, 0usize..3, 0usize..2).prop_map(|(m, g, s)| Op::Book(m, g, s)),
        1 => (0usize..6, 0usize..3).prop_map(|(m, g)| Op::Cancel(m, g)),
        1 => (0usize..6, -1i64..7).prop_map(|(m, s)| Op::Rate(m, s)),
        2 => (0usize..6, 0usize..3, 0usize..2, 0u64..2).prop_map(|(m, g, k, f)| Op::KeyedBook(m, g, k, f)),
        1 => Just(Op::Invalid),
        1 => Just(Op::NoCommand),
    ]
}

fn command(op: &Op, ms: &[Musician], gs: &[Gig]) -> Option<Command> {
    let mid = |m: usize| ms[m % ms.len()].id.clone();
    let gid = |g: usize| gs[g % gs.len()].id.clone();
    Some(match op {
        Op::Upsert(m) => Command::UpsertMusician {
            musician: ms[m % ms.len()].clone(),
        },
        Op::Delete(m) => Command::DeleteMusician { id: mid(*m) },
        Op::UpsertGig(g) => Command::UpsertGig {
            gig: gs[g % gs.len()].clone(),
        },
        Op::DeleteGig(g) => Command::DeleteGig { id: gid(*g) },
        Op::Book(m, g, s) => Command::Book(Booking {
            gig_id: gid(*g),
            slot: *s as i64,
            musician_id: mid(*m),
        }),
        Op::Cancel(m, g) => Command::CancelBooking {
            gig_id: gid(*g),
            musician_id: mid(*m),
        },
        Op::Rate(m, stars) => Command::RateMusician {
            musician_id: mid(*m),
            stars: *stars,
        },
        Op::KeyedBook(m, g, k, f) => Command::Guarded {
            guard: Guard {
                idempotency: Some(IdempotencyKey {
                    key: format!("key-{k}"),
                    fingerprint: *f,
                    at_ms: 1_000,
                }),
                ..Guard::default()
            },
            command: Box::new(Command::Book(Booking {
                gig_id: gid(*g),
                slot: 0,
                musician_id: mid(*m),
            })),
        },
        Op::Invalid => {
            let mut bad = ms[0].clone();
            bad.name = String::new();
            Command::UpsertMusician { musician: bad }
        }
        Op::NoCommand => return None,
    })
}

fn export(engine: &Engine) -> Vec<u8> {
    let mut out = Vec::new();
    engine.export(&mut out).expect("export");
    out
}

fn all_ids(engine: &Engine) -> Vec<String> {
    engine.refresh().expect("refresh");
    let page = engine
        .search(&SearchQuery {
            limit: Some(100),
            ..SearchQuery::default()
        })
        .expect("search");
    let mut ids: Vec<String> = page.hits.into_iter().map(|h| h.musician.id).collect();
    ids.sort();
    ids
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_applies_exactly_as_its_steps_one_by_one(
        ms in musicians(6..7),
        gs in gigs(3..4),
        ops in prop::collection::vec(op(), 1..60),
        cuts in prop::collection::vec(1usize..12, 1..60),
        replay_from in 0usize..20,
    ) {
        let one_dir = tempfile::tempdir().unwrap();
        let batch_dir = tempfile::tempdir().unwrap();
        let one = open_engine(one_dir.path());
        let batched = open_engine(batch_dir.path());
        let cmds: Vec<Option<Command>> = ops.iter().map(|o| command(o, &ms, &gs)).collect();

        // One by one: a command through apply_annexed, a command-less entry through advance.
        let mut expected = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            let seq = i as u64 + 1;
            let annex = format!("entry {seq}");
            expected.push(match cmd {
                Some(c) => Some(one.apply_annexed(seq, c, annex.as_bytes()).unwrap().outcome),
                None => {
                    one.advance(seq, annex.as_bytes()).unwrap();
                    None
                }
            });
        }

        // In batches of the generated sizes, each with the annex of its last entry; then the
        // tail once more from `replay_from` (a restart re-delivering entries already applied:
        // those must be no-ops, and the rest applied).
        let mut got = Vec::new();
        let mut start = 0;
        let mut cut = cuts.iter().cycle();
        while start < cmds.len() {
            let end = (start + cut.next().copied().unwrap_or(1)).min(cmds.len());
            let steps: Vec<(u64, Option<&Command>)> = (start..end)
                .map(|i| (i as u64 + 1, cmds[i].as_ref()))
                .collect();
            let annex = format!("entry {end}");
            let out = batched.apply_batch_annexed(&steps, annex.as_bytes()).unwrap();
            prop_assert_eq!(out.len(), steps.len());
            for (o, (seq, _)) in out.iter().zip(&steps) {
                if let Some(e) = o {
                    prop_assert_eq!(e.seq, *seq);
                }
            }
            got.extend(out.into_iter().map(|o| o.map(|e| e.outcome)));
            start = end;
        }
        prop_assert_eq!(&got, &expected);

        let replay: Vec<(u64, Option<&Command>)> = (replay_from.min(cmds.len())..cmds.len())
            .map(|i| (i as u64 + 1, cmds[i].as_ref()))
            .collect();
        let before = export(&batched);
        let again = batched.apply_batch_annexed(&replay, b"not written").unwrap();
        for o in again.iter().flatten() {
            prop_assert!(matches!(o.outcome, Outcome::AlreadyApplied { .. }), "{:?}", o.outcome);
        }
        prop_assert_eq!(export(&batched), before, "a replayed batch changed the state");

        prop_assert_eq!(export(&batched), export(&one));
        prop_assert_eq!(batched.annex().unwrap(), one.annex().unwrap());
        prop_assert_eq!(batched.applied_seq().unwrap(), cmds.len() as u64);
        prop_assert_eq!(all_ids(&batched), all_ids(&one));
    }
}

#[test]
fn a_batch_that_is_all_already_applied_writes_nothing_not_even_the_annex() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let m = musician_json("m-1");
    let put = Command::UpsertMusician { musician: m };
    engine
        .apply_batch_annexed(&[(1, Some(&put)), (2, None)], b"first")
        .unwrap();
    let out = engine
        .apply_batch_annexed(&[(1, Some(&put)), (2, None)], b"second")
        .unwrap();
    assert!(matches!(
        out[0].as_ref().map(|e| &e.outcome),
        Some(Outcome::AlreadyApplied { applied: 2 })
    ));
    assert!(out[1].is_none());
    assert_eq!(engine.annex().unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(engine.applied_seq().unwrap(), 2);
}

#[test]
fn steps_out_of_order_within_a_batch_are_no_ops_after_the_highest() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let a = Command::UpsertMusician {
        musician: musician_json("m-a"),
    };
    let b = Command::UpsertMusician {
        musician: musician_json("m-b"),
    };
    let out = engine
        .apply_batch_annexed(&[(5, Some(&a)), (3, Some(&b))], b"x")
        .unwrap();
    assert!(out[0].as_ref().unwrap().outcome.is_done());
    assert!(matches!(
        out[1].as_ref().unwrap().outcome,
        Outcome::AlreadyApplied { applied: 5 }
    ));
    assert!(engine.musician("m-b").unwrap().is_none());
    assert_eq!(engine.applied_seq().unwrap(), 5);
}

#[test]
fn a_batch_command_answers_each_command_in_order_and_shares_one_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let m = musician_json("m-1");
    let mut bad = musician_json("m-2");
    bad.name = String::new();
    let batch = Command::Batch {
        commands: vec![
            Command::UpsertMusician { musician: m },
            Command::UpsertMusician { musician: bad },
            Command::RateMusician {
                musician_id: "m-1".into(),
                stars: 5,
            },
            Command::DeleteMusician { id: "m-404".into() },
        ],
    };
    let done = engine.execute(&batch).unwrap();
    let Outcome::Batch { outcomes } = done.outcome else {
        panic!("a batch answers Outcome::Batch, got {:?}", done.outcome);
    };
    assert_eq!(outcomes.len(), 4);
    assert!(outcomes[0].is_done());
    assert!(
        matches!(&outcomes[1], Outcome::Refused(Refusal::Invalid(e)) if e.errors.iter().any(|f| f.field == "name")),
        "{:?}",
        outcomes[1]
    );
    assert!(outcomes[2].is_done(), "the rating saw the upsert before it");
    assert!(matches!(outcomes[3], Outcome::Refused(_)));
    assert_eq!(engine.applied_seq().unwrap(), done.seq);
    let view = engine.musician("m-1").unwrap().unwrap();
    assert_eq!(
        view.version, done.seq,
        "records changed by a batch get its sequence"
    );
    assert!(engine.musician("m-2").unwrap().is_none());
}

#[test]
fn malformed_batches_are_refused_whole_and_change_nothing_but_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    let put = Command::UpsertMusician {
        musician: musician_json("m-1"),
    };
    let empty = Command::Batch { commands: vec![] };
    let too_many = Command::Batch {
        commands: vec![put.clone(); MAX_BATCH + 1],
    };
    let guarded = Command::Guarded {
        guard: Guard::default(),
        command: Box::new(Command::Batch {
            commands: vec![put.clone()],
        }),
    };
    for cmd in [&empty, &too_many, &guarded] {
        let done = engine.execute(cmd).unwrap();
        assert!(
            matches!(done.outcome, Outcome::Refused(Refusal::Invalid(_))),
            "{cmd:?} gave {:?}",
            done.outcome
        );
    }
    // A batch inside a batch: the inner one is refused, the others apply.
    let nested = Command::Batch {
        commands: vec![
            Command::Batch {
                commands: vec![put.clone()],
            },
            put,
        ],
    };
    let Outcome::Batch { outcomes } = engine.execute(&nested).unwrap().outcome else {
        panic!("a batch answers Outcome::Batch");
    };
    assert!(matches!(outcomes[0], Outcome::Refused(Refusal::Invalid(_))));
    assert!(outcomes[1].is_done());
    assert_eq!(engine.status().unwrap().musicians, 1);
}
