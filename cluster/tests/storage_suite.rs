//! openraft's storage conformance suite over the segment log and the engine state machine.
#![allow(clippy::result_large_err)] // openraft fixes StorageError as the error type

use mussikon_cluster::{LogStore, StateMachine, TypeConfig};
use mussikon_engine::{Config, Durability, Engine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(dir.path().join("log"))?;
        let engine = Engine::open_replica(
            dir.path().join("engine"),
            Config {
                durability: Durability::Periodic {
                    flush_every_ms: 1000,
                },
                index_heap_bytes: 15_000_000,
                index_writer_threads: 1,
                ..Config::default()
            },
        )
        .expect("engine");
        let sm = StateMachine::open(engine, dir.path().join("snapshots"))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn the_log_store_and_state_machine_pass_openraft_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder)
}
