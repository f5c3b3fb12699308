//! Gig chat messages through the apply path: ordering, refusals, validation, the cascade on
//! gig deletion, idempotent sequences, snapshots (both versions) and the consistency check.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mussikon_engine::codec::{self, RecordKind};
use mussikon_engine::snapshot::{Frame, MAGIC_V1};
use mussikon_engine::*;

fn post(gig: &str, author: &str, text: &str, at: Timestamp) -> Command {
    Command::PostMessage {
        gig_id: gig.into(),
        message_id: None,
        author: author.into(),
        text: text.into(),
        at,
    }
}

fn posted(o: &Outcome) -> &Message {
    match o {
        Outcome::Done(Effect::MessagePosted(m)) => m,
        other => panic!("expected a posted message, got {other:?}"),
    }
}

fn engine_with_gigs(dir: &std::path::Path, gigs: &[&str]) -> Engine {
    let e = open_engine(dir);
    for g in gigs {
        assert!(e.upsert_gig(gig_json(g)).unwrap().outcome.is_done());
    }
    e
}

#[test]
fn messages_are_numbered_per_gig_and_listed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_gigs(dir.path(), &["g-1", "g-2", "g-10"]);
    for i in 0..5 {
        let done = e
            .execute(&post(
                "g-1",
                "m-1",
                &format!("  hello {i}  "),
                Timestamp::Millis(i),
            ))
            .unwrap();
        let m = posted(&done.outcome);
        assert_eq!((m.seq, m.version), (i as u64 + 1, done.seq));
        assert_eq!(m.text, format!("hello {i}"), "text is stored trimmed");
    }
    // Other gigs have their own numbering, and "g-10" does not leak into "g-1".
    let m = e
        .execute(&post(
            "g-10",
            "m-2",
            "other thread",
            Timestamp::Rfc3339("2026-12-05T21:30:00.5+01:00".into()),
        ))
        .unwrap();
    let m = posted(&m.outcome);
    assert_eq!(m.seq, 1);
    assert_eq!(m.at, "2026-12-05T20:30:00.500Z");
    assert_eq!(m.at_ms, 1_796_502_600_500);

    let all = e.messages("g-1", None, 100).unwrap();
    let texts: Vec<&str> = all.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["hello 0", "hello 1", "hello 2", "hello 3", "hello 4"]
    );
    assert!(all.iter().all(|m| m.gig_id == "g-1"));
    let page = e.messages("g-1", Some(2), 2).unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(e.messages("g-1", Some(5), 10).unwrap().is_empty());
    assert!(e.messages("g-1", Some(u64::MAX), 10).unwrap().is_empty());
    assert!(e.messages("g-2", None, 10).unwrap().is_empty());
    assert!(matches!(
        e.messages("g-404", None, 10),
        Err(EngineError::NotFound { kind: "gig", .. })
    ));
    assert!(e.check_consistency().unwrap().is_empty());
}

#[test]
fn a_message_to_a_missing_gig_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_gigs(dir.path(), &["g-1"]);
    let before = e.applied_seq().unwrap();
    let done = e
        .execute(&post("g-404", "m-1", "anyone?", Timestamp::Millis(0)))
        .unwrap();
    assert_eq!(
        done.outcome,
        Outcome::Refused(Refusal::NotFound {
            kind: "gig".into(),
            id: "g-404".into()
        })
    );
    assert_eq!(
        e.applied_seq().unwrap(),
        before + 1,
        "only the sequence moves"
    );
    assert!(e.messages("g-1", None, 10).unwrap().is_empty());
    // Creating the gig afterwards starts an empty thread.
    e.upsert_gig(gig_json("g-404")).unwrap();
    assert!(e.messages("g-404", None, 10).unwrap().is_empty());
}

#[test]
fn invalid_messages_are_refused_with_every_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_gigs(dir.path(), &["g-1"]);
    let ok = Timestamp::Millis(1_000);
    let cases: Vec<(&str, Command, &[&str])> = vec![
        ("empty text", post("g-1", "m-1", "", ok.clone()), &["text"]),
        (
            "blank text",
            post("g-1", "m-1", " \n\t ", ok.clone()),
            &["text"],
        ),
        (
            "too long",
            post("g-1", "m-1", &"é".repeat(2001), ok.clone()),
            &["text"],
        ),
        (
            "bad author",
            post("g-1", "a b", "hi", ok.clone()),
            &["author"],
        ),
        (
            "empty author",
            post("g-1", "", "hi", ok.clone()),
            &["author"],
        ),
        (
            "bad gig id",
            post("g 1", "m-1", "hi", ok.clone()),
            &["gig_id"],
        ),
        (
            "negative millis",
            post("g-1", "m-1", "hi", Timestamp::Millis(-1)),
            &["at"],
        ),
        (
            "millis after 9999",
            post("g-1", "m-1", "hi", Timestamp::Millis(MAX_MS + 1)),
            &["at"],
        ),
        (
            "date without time",
            post("g-1", "m-1", "hi", Timestamp::Rfc3339("2026-12-05".into())),
            &["at"],
        ),
        (
            "no offset",
            post(
                "g-1",
                "m-1",
                "hi",
                Timestamp::Rfc3339("2026-12-05T10:00:00".into()),
            ),
            &["at"],
        ),
        (
            "bad message id",
            Command::PostMessage {
                gig_id: "g-1".into(),
                message_id: Some("x/y".into()),
                author: "m-1".into(),
                text: "hi".into(),
                at: ok.clone(),
            },
            &["message_id"],
        ),
        (
            "everything at once",
            post("", "", "", Timestamp::Millis(-5)),
            &["gig_id", "author", "text", "at"],
        ),
    ];
    for (name, cmd, fields) in cases {
        match e.execute(&cmd).unwrap().outcome {
            Outcome::Refused(Refusal::Invalid(v)) => {
                let got: Vec<&str> = v.errors.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(got, fields, "{name}");
            }
            other => panic!("{name}: expected a validation refusal, got {other:?}"),
        }
    }
    assert!(e.messages("g-1", None, 10).unwrap().is_empty());
    // The limits themselves are accepted.
    let longest = "é".repeat(2000);
    let m = e
        .execute(&post(
            "g-1",
            "m-1",
            &format!(" {longest} "),
            Timestamp::Millis(MAX_MS),
        ))
        .unwrap();
    assert_eq!(posted(&m.outcome).text, longest);
    assert_eq!(posted(&m.outcome).at, "9999-12-31T23:59:59.999Z");
}

const MAX_MS: i64 = mussikon_engine::validate::MAX_TIMESTAMP_MS;

#[test]
fn client_message_ids_are_unique_within_a_gig() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_gigs(dir.path(), &["g-1", "g-2"]);
    let with_id = |gig: &str, id: &str| Command::PostMessage {
        gig_id: gig.into(),
        message_id: Some(id.into()),
        author: "m-1".into(),
        text: "hi".into(),
        at: Timestamp::Millis(0),
    };
    assert_eq!(
        posted(&e.execute(&with_id("g-1", "c-1")).unwrap().outcome).message_id,
        Some("c-1".into())
    );
    assert_eq!(
        e.execute(&with_id("g-1", "c-1")).unwrap().outcome,
        Outcome::Refused(Refusal::Conflict(Conflict::MessageIdTaken {
            gig_id: "g-1".into(),
            message_id: "c-1".into()
        }))
    );
    assert!(e.execute(&with_id("g-2", "c-1")).unwrap().outcome.is_done());
    assert_eq!(e.messages("g-1", None, 10).unwrap().len(), 1);
}

#[test]
fn deleting_a_gig_deletes_its_messages_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_gigs(dir.path(), &["g-1", "g-2"]);
    for i in 0..30 {
        let cmd = Command::PostMessage {
            gig_id: if i % 3 == 0 { "g-2" } else { "g-1" }.into(),
            message_id: (i % 2 == 0).then(|| format!("c-{i}")),
            author: "m-1".into(),
            text: format!("message {i}"),
            at: Timestamp::Millis(i),
        };
        assert!(e.execute(&cmd).unwrap().outcome.is_done());
    }
    let g2_before = e.messages("g-2", None, 100).unwrap();
    assert_eq!(g2_before.len(), 10);
    assert!(e
        .execute(&Command::DeleteGig { id: "g-1".into() })
        .unwrap()
        .outcome
        .is_done());
    assert!(e.messages("g-1", None, 100).is_err());
    assert_eq!(e.messages("g-2", None, 100).unwrap(), g2_before);
    assert!(e.check_consistency().unwrap().is_empty());

    // A gig created again under the same id starts a fresh thread, and old client ids are free.
    e.upsert_gig(gig_json("g-1")).unwrap();
    assert!(e.messages("g-1", None, 100).unwrap().is_empty());
    let again = Command::PostMessage {
        gig_id: "g-1".into(),
        message_id: Some("c-2".into()),
        author: "m-1".into(),
        text: "back".into(),
        at: Timestamp::Millis(0),
    };
    assert_eq!(posted(&e.execute(&again).unwrap().outcome).seq, 1);
    assert!(e.check_consistency().unwrap().is_empty());
}

#[test]
fn reapplying_an_applied_sequence_posts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_gigs(dir.path(), &["g-1"]);
    let seq = e.applied_seq().unwrap() + 1;
    let cmd = post("g-1", "m-1", "once", Timestamp::Millis(7));
    assert!(e.apply(seq, &cmd).unwrap().outcome.is_done());
    for s in [seq, seq - 1] {
        assert_eq!(
            e.apply(s, &cmd).unwrap().outcome,
            Outcome::AlreadyApplied { applied: seq }
        );
    }
    assert_eq!(e.messages("g-1", None, 10).unwrap().len(), 1);
    // A later sequence with the same command is a new message.
    assert_eq!(posted(&e.apply(seq + 5, &cmd).unwrap().outcome).seq, 2);
}

#[test]
fn the_same_commands_give_the_same_thread_on_two_engines() {
    let cmds: Vec<Command> = std::iter::once(Command::UpsertGig {
        gig: gig_json("g-1"),
    })
    .chain((0..20).map(|i| {
        post(
            "g-1",
            &format!("m-{}", i % 3),
            &format!("t{i}"),
            Timestamp::Millis(i),
        )
    }))
    .collect();
    let threads: Vec<Vec<Message>> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let e = open_engine(dir.path());
            for c in &cmds {
                e.execute(c).unwrap();
            }
            e.messages("g-1", None, 100).unwrap()
        })
        .collect();
    assert_eq!(threads[0], threads[1]);
}

#[test]
fn snapshots_carry_messages_and_restore_them() {
    let src = tempfile::tempdir().unwrap();
    let e = engine_with_gigs(src.path(), &["g-1", "g-2"]);
    e.upsert_musician(musician_json("m-1")).unwrap();
    // More than one frame's worth (1000 per frame) in g-1.
    let mut cmds = Vec::new();
    for i in 0..1203 {
        cmds.push(Command::PostMessage {
            gig_id: if i % 100 == 0 { "g-2" } else { "g-1" }.into(),
            message_id: (i % 7 == 0).then(|| format!("c-{i}")),
            author: "m-1".into(),
            text: format!("message {i}"),
            at: Timestamp::Millis(i),
        });
    }
    for c in &cmds {
        assert!(e.execute(c).unwrap().outcome.is_done());
    }
    let mut snap = Vec::new();
    let summary = e.export(&mut snap).unwrap();
    assert!(snap.starts_with(b"MUSSNAP2"));
    assert_eq!((summary.gigs, summary.messages), (2, 1203));

    let dst = tempfile::tempdir().unwrap();
    assert_eq!(
        Engine::restore(dst.path(), &snap[..], false).unwrap(),
        summary
    );
    let e2 = open_engine(dst.path());
    for g in ["g-1", "g-2"] {
        assert_eq!(
            e.messages(g, None, 10_000).unwrap(),
            e2.messages(g, None, 10_000).unwrap()
        );
    }
    let mut again = Vec::new();
    e2.export(&mut again).unwrap();
    assert_eq!(
        snap, again,
        "export of the restore equals the original export"
    );
    e2.refresh().unwrap();
    assert!(e2.check_consistency().unwrap().is_empty());
    // Numbering and id uniqueness continue where they were.
    let next = e2
        .execute(&Command::PostMessage {
            gig_id: "g-1".into(),
            message_id: Some("c-7".into()),
            author: "m-1".into(),
            text: "dup".into(),
            at: Timestamp::Millis(0),
        })
        .unwrap();
    assert!(matches!(
        next.outcome,
        Outcome::Refused(Refusal::Conflict(Conflict::MessageIdTaken { .. }))
    ));
    let next = e2
        .execute(&post("g-1", "m-1", "after restore", Timestamp::Millis(0)))
        .unwrap();
    assert_eq!(posted(&next.outcome).seq, 1203 - 13 + 1);

    // A cut anywhere, or a flipped bit, is refused.
    for cut in [8, snap.len() / 2, snap.len() - 1] {
        let d = tempfile::tempdir().unwrap();
        assert!(
            Engine::restore(d.path(), &snap[..cut], false).is_err(),
            "cut at {cut}"
        );
    }
    let mut flipped = snap.clone();
    let at = flipped.len() - 200;
    flipped[at] ^= 0x01;
    let d = tempfile::tempdir().unwrap();
    assert!(Engine::restore(d.path(), &flipped[..], false).is_err());
}

/// FNV-1a 64, as the snapshot format specifies it.
fn fnv(frames: &[Vec<u8>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in frames {
        for b in f {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn stream(magic: &[u8], frames: &[Frame]) -> Vec<u8> {
    let mut out = magic.to_vec();
    for f in frames {
        let bytes = codec::encode(RecordKind::SnapshotFrame, f).unwrap();
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

fn encoded(frames: &[Frame]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|f| codec::encode(RecordKind::SnapshotFrame, f).unwrap())
        .collect()
}

#[test]
fn version_one_snapshots_without_messages_still_restore() {
    // A version-1 stream as the previous build wrote it: header, gigs, End.
    let src = tempfile::tempdir().unwrap();
    let e = engine_with_gigs(src.path(), &["g-1"]);
    let view = e.gig("g-1").unwrap().unwrap();
    let rec = GigRecord {
        gig: view.gig,
        version: view.version,
        bookings: vec![],
    };
    let body = vec![
        Frame::Header {
            format: codec::FORMAT_VERSION,
            applied_seq: 1,
        },
        Frame::Gigs(vec![rec]),
    ];
    let checksum = fnv(&encoded(&body));
    let mut frames = body.clone();
    frames.push(Frame::End {
        musicians: 0,
        gigs: 1,
        checksum,
    });
    let v1 = stream(MAGIC_V1, &frames);
    let dst = tempfile::tempdir().unwrap();
    let summary = Engine::restore(dst.path(), &v1[..], false).unwrap();
    assert_eq!((summary.gigs, summary.messages), (1, 0));
    let e2 = open_engine(dst.path());
    assert!(e2.messages("g-1", None, 10).unwrap().is_empty());
    assert!(e2.check_consistency().unwrap().is_empty());

    // A version-1 stream may not carry messages, nor end like version 2, and vice versa.
    let msg = Message {
        gig_id: "g-1".into(),
        seq: 1,
        message_id: None,
        author: "m-1".into(),
        text: "hi".into(),
        at: "1970-01-01T00:00:00.000Z".into(),
        at_ms: 0,
        version: 2,
    };
    let mut with_messages = body.clone();
    with_messages.push(Frame::Messages(vec![msg]));
    let checksum = fnv(&encoded(&with_messages));
    let mut frames = with_messages.clone();
    frames.push(Frame::End {
        musicians: 0,
        gigs: 1,
        checksum,
    });
    let d = tempfile::tempdir().unwrap();
    assert!(Engine::restore(d.path(), &stream(MAGIC_V1, &frames)[..], false).is_err());
    let checksum = fnv(&encoded(&body));
    let mut v2_ending_like_v1 = body.clone();
    v2_ending_like_v1.push(Frame::End {
        musicians: 0,
        gigs: 1,
        checksum,
    });
    let d = tempfile::tempdir().unwrap();
    assert!(Engine::restore(
        d.path(),
        &stream(snapshot::MAGIC, &v2_ending_like_v1)[..],
        false
    )
    .is_err());
}
