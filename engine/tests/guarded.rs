//! Guarded commands: version and owner conditions decided inside the one apply, fields kept
//! from the stored record, and idempotency keys recorded with the command (replayed after a
//! reopen, refused for another request, forgotten deterministically).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::codec::{self, RecordKind};
use mussikon_engine::*;

fn guarded(guard: Guard, command: Command) -> Command {
    Command::Guarded {
        guard,
        command: Box::new(command),
    }
}

fn if_version(v: Expected) -> Guard {
    Guard {
        version: Some(v),
        ..Guard::default()
    }
}

fn keyed(key: &str, fingerprint: u64, at_ms: i64) -> Guard {
    Guard {
        idempotency: Some(IdempotencyKey {
            key: key.into(),
            fingerprint,
            at_ms,
        }),
        ..Guard::default()
    }
}

fn conflict(o: &Outcome) -> &Conflict {
    match o {
        Outcome::Refused(Refusal::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn book(gig: &str, slot: i64, musician: &str) -> Command {
    Command::Book(Booking {
        gig_id: gig.into(),
        slot,
        musician_id: musician.into(),
    })
}

#[test]
fn a_version_condition_is_checked_in_the_same_apply() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let v1 = e.upsert_musician(musician_json("m-1")).unwrap().seq;
    let mut changed = musician_json("m-1");
    changed.name = "Ana B".into();
    let upsert = Command::UpsertMusician { musician: changed };

    // A stale version is refused, naming the current one; nothing changes.
    let stale = e
        .execute(&guarded(
            if_version(Expected::Versions(vec![v1 + 7])),
            upsert.clone(),
        ))
        .unwrap();
    assert_eq!(
        conflict(&stale.outcome),
        &Conflict::VersionMismatch {
            kind: "musician".into(),
            id: "m-1".into(),
            current: Some(v1)
        }
    );
    assert_eq!(
        e.musician("m-1").unwrap().unwrap().musician.name,
        "Ana Pérez"
    );

    // The current version applies.
    let ok = e
        .execute(&guarded(if_version(Expected::Versions(vec![v1])), upsert))
        .unwrap();
    assert!(ok.outcome.is_done());
    assert_eq!(e.musician("m-1").unwrap().unwrap().version, ok.seq);

    // `Exists` on a missing record, and an empty version list, never hold.
    let missing = e
        .execute(&guarded(
            if_version(Expected::Exists),
            Command::DeleteGig { id: "g-9".into() },
        ))
        .unwrap();
    assert_eq!(
        conflict(&missing.outcome),
        &Conflict::VersionMismatch {
            kind: "gig".into(),
            id: "g-9".into(),
            current: None
        }
    );
    let none = e
        .execute(&guarded(
            if_version(Expected::Versions(vec![])),
            Command::DeleteMusician { id: "m-1".into() },
        ))
        .unwrap();
    assert!(matches!(
        conflict(&none.outcome),
        Conflict::VersionMismatch { .. }
    ));
    assert!(e.musician("m-1").unwrap().is_some());
}

#[test]
fn an_owner_condition_refuses_other_owners_and_unowned_gigs() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let mut g = gig_json("g-1");
    g.owner = Some("org-a".into());
    assert!(e.upsert_gig(g).unwrap().outcome.is_done());
    assert!(e.upsert_gig(gig_json("g-2")).unwrap().outcome.is_done());
    assert!(e
        .upsert_musician(musician_json("m-1"))
        .unwrap()
        .outcome
        .is_done());
    let by = |owner: &str| Guard {
        owner: Some(owner.into()),
        ..Guard::default()
    };

    for gig in ["g-1", "g-2"] {
        let refused = e
            .execute(&guarded(by("org-b"), book(gig, 0, "m-1")))
            .unwrap();
        assert_eq!(
            conflict(&refused.outcome),
            &Conflict::NotOwner { gig_id: gig.into() }
        );
    }
    assert!(e.gig("g-1").unwrap().unwrap().bookings.is_empty());
    let ok = e
        .execute(&guarded(by("org-a"), book("g-1", 0, "m-1")))
        .unwrap();
    assert!(ok.outcome.is_done(), "{:?}", ok.outcome);

    // The owner is checked before the version, so a stranger never learns the version.
    let both = Guard {
        owner: Some("org-b".into()),
        version: Some(Expected::Versions(vec![0])),
        ..Guard::default()
    };
    let refused = e
        .execute(&guarded(both, Command::DeleteGig { id: "g-1".into() }))
        .unwrap();
    assert!(matches!(
        conflict(&refused.outcome),
        Conflict::NotOwner { .. }
    ));

    // A gig that does not exist yet passes the owner condition (it is being created).
    let mut new = gig_json("g-3");
    new.owner = Some("org-b".into());
    let created = e
        .execute(&guarded(by("org-b"), Command::UpsertGig { gig: new }))
        .unwrap();
    assert!(created.outcome.is_done());
}

#[test]
fn kept_fields_come_from_the_stored_record() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let mut m = musician_json("m-1");
    m.rating = None;
    let keep = Guard {
        keep_rating: true,
        ..Guard::default()
    };
    // A new profile gets no rating, whatever it claims.
    let mut claims = musician_json("m-1");
    claims.rating = Some(Rating {
        average: 5.0,
        count: 1000,
    });
    e.execute(&guarded(
        keep.clone(),
        Command::UpsertMusician {
            musician: claims.clone(),
        },
    ))
    .unwrap();
    assert_eq!(e.musician("m-1").unwrap().unwrap().musician.rating, None);
    e.execute(&Command::RateMusician {
        musician_id: "m-1".into(),
        stars: 3,
    })
    .unwrap();
    e.execute(&guarded(keep, Command::UpsertMusician { musician: claims }))
        .unwrap();
    let r = e.musician("m-1").unwrap().unwrap().musician.rating.unwrap();
    assert_eq!((r.average, r.count), (3.0, 1));

    let mut g = gig_json("g-1");
    g.owner = Some("org-a".into());
    e.upsert_gig(g).unwrap();
    let keep_owner = Guard {
        keep_owner: true,
        ..Guard::default()
    };
    e.execute(&guarded(
        keep_owner,
        Command::UpsertGig {
            gig: gig_json("g-1"),
        },
    ))
    .unwrap();
    assert_eq!(
        e.gig("g-1").unwrap().unwrap().gig.owner.as_deref(),
        Some("org-a")
    );
}

#[test]
fn malformed_guards_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    let cases = [
        (
            Guard {
                owner: Some("org-a".into()),
                ..Guard::default()
            },
            Command::DeleteMusician { id: "m-1".into() },
            "guard.owner",
        ),
        (
            if_version(Expected::Exists),
            Command::BulkUpsert {
                musicians: vec![],
                gigs: vec![],
            },
            "guard.version",
        ),
        (
            keyed("", 1, 0),
            Command::DeleteMusician { id: "m-1".into() },
            "guard.idempotency.key",
        ),
        (
            Guard::default(),
            guarded(Guard::default(), Command::DeleteGig { id: "g".into() }),
            "command",
        ),
    ];
    for (guard, cmd, field) in cases {
        let out = e.execute(&guarded(guard, cmd)).unwrap().outcome;
        match out {
            Outcome::Refused(Refusal::Invalid(v)) => {
                assert!(v.errors.iter().any(|f| f.field == field), "{v:?}")
            }
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
}

#[test]
fn an_idempotency_key_replays_the_first_outcome_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let e = open_engine(dir.path());
        e.upsert_gig(gig_json("g-1")).unwrap();
        e.upsert_musician(musician_json("m-1")).unwrap();
        first = e
            .execute(&guarded(keyed("k1", 42, 1_000), book("g-1", 0, "m-1")))
            .unwrap();
        assert!(first.outcome.is_done());
        // A refusal is recorded too: the retry gets the same refusal.
        let refused = e
            .execute(&guarded(keyed("k2", 7, 1_000), book("g-1", 9, "m-1")))
            .unwrap();
        assert!(matches!(refused.outcome, Outcome::Refused(_)));
        e.flush().unwrap();
    }
    let e = open_engine(dir.path());
    // The booking was cancelled meanwhile: a retry must still not book again.
    e.execute(&Command::CancelBooking {
        gig_id: "g-1".into(),
        musician_id: "m-1".into(),
    })
    .unwrap();
    let again = e
        .execute(&guarded(keyed("k1", 42, 2_000), book("g-1", 0, "m-1")))
        .unwrap();
    assert_eq!(
        again.outcome,
        Outcome::Replayed {
            first: Box::new(first.outcome.clone())
        }
    );
    assert!(e.gig("g-1").unwrap().unwrap().bookings.is_empty());
    let again = e
        .execute(&guarded(keyed("k2", 7, 2_000), book("g-1", 9, "m-1")))
        .unwrap();
    assert!(matches!(
        again.outcome,
        Outcome::Replayed { first } if matches!(*first, Outcome::Refused(Refusal::Conflict(Conflict::NoSuchSlot { slot: 9 })))
    ));
    // The same key for another request is refused and changes nothing.
    let other = e
        .execute(&guarded(keyed("k1", 43, 2_000), book("g-1", 0, "m-1")))
        .unwrap();
    assert_eq!(
        conflict(&other.outcome),
        &Conflict::IdempotencyKeyReused { key: "k1".into() }
    );
    assert!(e.gig("g-1").unwrap().unwrap().bookings.is_empty());
}

#[test]
fn keys_are_forgotten_by_the_time_carried_in_later_commands() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(dir.path());
    e.upsert_musician(musician_json("m-1")).unwrap();
    let rate = || Command::RateMusician {
        musician_id: "m-1".into(),
        stars: 4,
    };
    assert!(e
        .execute(&guarded(keyed("old", 1, 0), rate()))
        .unwrap()
        .outcome
        .is_done());
    // Within the retention window the key still replays.
    let within = e
        .execute(&guarded(keyed("old", 1, IDEMPOTENCY_TTL_MS), rate()))
        .unwrap();
    assert!(matches!(within.outcome, Outcome::Replayed { .. }));
    // A later keyed command past the window forgets it; the old key is then new again.
    e.execute(&guarded(keyed("later", 1, IDEMPOTENCY_TTL_MS + 1), rate()))
        .unwrap();
    let after = e
        .execute(&guarded(keyed("old", 1, IDEMPOTENCY_TTL_MS + 2), rate()))
        .unwrap();
    assert!(after.outcome.is_done(), "{:?}", after.outcome);
    assert_eq!(
        e.musician("m-1")
            .unwrap()
            .unwrap()
            .musician
            .rating
            .unwrap()
            .count,
        23 + 3,
        "three ratings applied on top of the profile's 23"
    );
}

#[test]
fn commands_encoded_before_guards_still_decode() {
    // `book` as the first format wrote it: version 2, kind 5 (command), variant 4, then the
    // booking's fields. Guards were appended after the existing variants, so this is unchanged.
    let old = [2u8, 5, 4, 3, b'g', b'-', b'1', 0, 3, b'm', b'-', b'1'];
    let cmd: Command = codec::decode(RecordKind::Command, &old).unwrap();
    assert_eq!(cmd, book("g-1", 0, "m-1"));
    assert_eq!(codec::encode(RecordKind::Command, &cmd).unwrap(), old);
    let g = guarded(keyed("k", 1, 2), book("g-1", 0, "m-1"));
    let bytes = codec::encode(RecordKind::Command, &g).unwrap();
    assert_eq!(
        codec::decode::<Command>(RecordKind::Command, &bytes).unwrap(),
        g
    );
}

#[test]
fn idempotency_keys_travel_in_snapshots_so_replicas_answer_a_retry_alike() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_engine(&dir.path().join("a"));
    e.upsert_gig(gig_json("g-1")).unwrap();
    e.upsert_musician(musician_json("m-1")).unwrap();
    let first = e
        .execute(&guarded(keyed("k1", 42, 1_000), book("g-1", 0, "m-1")))
        .unwrap();
    assert!(first.outcome.is_done());
    let mut snap = Vec::new();
    e.export(&mut snap).unwrap();

    // Restored into a closed directory, and installed into a running replica: both replay.
    let restored = dir.path().join("b");
    Engine::restore(&restored, snap.as_slice(), false).unwrap();
    let installed = open_engine(&dir.path().join("c"));
    installed.install(snap.as_slice(), b"annex").unwrap();
    for other in [open_engine(&restored), installed] {
        let retry = other
            .execute(&guarded(keyed("k1", 42, 2_000), book("g-1", 0, "m-1")))
            .unwrap();
        assert_eq!(
            retry.outcome,
            Outcome::Replayed {
                first: Box::new(first.outcome.clone())
            }
        );
        let reused = other
            .execute(&guarded(keyed("k1", 43, 2_000), book("g-1", 0, "m-1")))
            .unwrap();
        assert_eq!(
            conflict(&reused.outcome),
            &Conflict::IdempotencyKeyReused { key: "k1".into() }
        );
        // A new key runs its command: the copied window does not swallow it.
        let fresh = other
            .execute(&guarded(keyed("k2", 1, 2_000), book("g-1", 9, "m-1")))
            .unwrap();
        assert!(matches!(fresh.outcome, Outcome::Refused(_)), "{fresh:?}");
    }
}
