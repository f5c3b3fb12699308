//! The NDJSON bulk import (`Engine::import_jsonl`, which the server's `POST /v1/musicians/bulk`
//! calls on the body its per-line depth guard let through), fed through a `BufReader` whose
//! small, fuzzer-chosen capacity splits lines across reads.
//!
//! The oracle is written from the documented contract, independently of the engine's reader:
//! split on `\n`; a line longer than `max_line_bytes` (not counting its `\n`) is rejected, as is
//! one that is not UTF-8; blank lines are skipped but counted; every other line is parsed as a
//! gig when the kind says so (`Auto`: it has a `"slots"` key) or a musician, and validated.
//! Properties: the report's counts and the line numbers of its errors equal the oracle's; with
//! `Reject`, a file with a bad line writes nothing; with `Skip`, every good record is readable
//! afterwards exactly as validated.

use mussikon_engine::import::RecordKind;
use mussikon_engine::{
    validate_gig, validate_musician, Config, Durability, Engine, Gig, ImportOptions, Musician,
    OnError,
};
use std::io::BufReader;
use std::sync::OnceLock;

struct Shared {
    _dir: tempfile::TempDir,
    engine: Engine,
}

fn engine() -> &'static Engine {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    &SHARED
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = Config {
                durability: Durability::Periodic {
                    flush_every_ms: 60_000,
                },
                cache_bytes: 16 * 1024 * 1024,
                index_heap_bytes: 15 * 1024 * 1024,
                index_writer_threads: 1,
                ..Config::default()
            };
            let engine = Engine::open(dir.path(), config).expect("open engine");
            Shared { _dir: dir, engine }
        })
        .engine
}

enum Expected {
    Musician(Musician),
    Gig(Gig),
    Bad,
    Blank,
}

fn oracle_line(line: &[u8], opts: &ImportOptions) -> Expected {
    if line.len() > opts.max_line_bytes {
        return Expected::Bad;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Expected::Bad;
    };
    if text.trim().is_empty() {
        return Expected::Blank;
    }
    let text = text.trim_end_matches('\r');
    let as_gig = match opts.kind {
        RecordKind::Gigs => true,
        RecordKind::Musicians => false,
        RecordKind::Auto => text.contains("\"slots\""),
    };
    if as_gig {
        match serde_json::from_str::<Gig>(text).ok().map(validate_gig) {
            Some(Ok(g)) => Expected::Gig(g),
            _ => Expected::Bad,
        }
    } else {
        match serde_json::from_str::<Musician>(text)
            .ok()
            .map(validate_musician)
        {
            Some(Ok(m)) => Expected::Musician(m),
            _ => Expected::Bad,
        }
    }
}

/// Runs the import check on `data` (first four bytes: options and read size).
pub fn check(data: &[u8]) {
    let [a, b, c, d, rest @ ..] = data else {
        return;
    };
    let opts = ImportOptions {
        on_error: if a & 1 == 0 {
            OnError::Skip
        } else {
            OnError::Reject
        },
        kind: match (a >> 1) % 3 {
            0 => RecordKind::Auto,
            1 => RecordKind::Musicians,
            _ => RecordKind::Gigs,
        },
        batch: usize::from(b % 8) + 1,
        max_errors: usize::from(b >> 5),
        max_line_bytes: usize::from(*c) * 4 + 1,
    };
    let capacity = usize::from(*d % 64) + 1;

    let mut pieces: Vec<&[u8]> = rest.split(|x| *x == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop(); // the file ends with a newline (or is empty)
    }
    let expected: Vec<Expected> = pieces.iter().map(|l| oracle_line(l, &opts)).collect();
    let bad_lines: Vec<u64> = expected
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Expected::Bad))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let count = |f: fn(&Expected) -> bool| expected.iter().filter(|e| f(e)).count() as u64;
    let musicians = count(|e| matches!(e, Expected::Musician(_)));
    let gigs = count(|e| matches!(e, Expected::Gig(_)));

    let engine = engine();
    let before = engine.applied_seq().expect("applied");
    let report = engine
        .import_jsonl(BufReader::with_capacity(capacity, rest), &opts, |_| {})
        .expect("import from memory cannot fail on I/O");

    assert_eq!(report.rejected, bad_lines.len() as u64, "rejected count");
    let reported: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
    let want: Vec<u64> = bad_lines.iter().copied().take(opts.max_errors).collect();
    assert_eq!(reported, want, "line numbers of the reported errors");
    if opts.on_error == OnError::Reject && !bad_lines.is_empty() {
        assert!(report.aborted, "Reject with bad lines must abort");
        assert_eq!(
            (report.musicians, report.gigs),
            (0, 0),
            "Reject wrote records"
        );
        assert_eq!(
            engine.applied_seq().expect("applied"),
            before,
            "Reject wrote a command"
        );
        return;
    }
    assert!(!report.aborted);
    assert_eq!(
        (report.musicians, report.gigs),
        (musicians, gigs),
        "records written"
    );
    // The last record of each id wins; every id the file ends with must read back as validated.
    for e in expected.iter().rev() {
        match e {
            Expected::Musician(m) => {
                let stored = engine
                    .musician(&m.id)
                    .expect("read")
                    .expect("imported musician");
                if expected_last_musician(&expected, &m.id) == Some(m) {
                    assert_eq!(&stored.musician, m, "stored musician differs from the line");
                }
            }
            Expected::Gig(g) => {
                let stored = engine.gig(&g.id).expect("read").expect("imported gig");
                if expected_last_gig(&expected, &g.id) == Some(g) {
                    assert_eq!(&stored.gig, g, "stored gig differs from the line");
                }
            }
            Expected::Bad | Expected::Blank => {}
        }
    }
}

fn expected_last_musician<'a>(all: &'a [Expected], id: &str) -> Option<&'a Musician> {
    all.iter().rev().find_map(|e| match e {
        Expected::Musician(m) if m.id == id => Some(m),
        _ => None,
    })
}

fn expected_last_gig<'a>(all: &'a [Expected], id: &str) -> Option<&'a Gig> {
    all.iter().rev().find_map(|e| match e {
        Expected::Gig(g) if g.id == id => Some(g),
        _ => None,
    })
}
