//! What the cluster crate's tests share: an engine opened as a node opens it.

use mussikon_engine::{Config, Durability, Engine};
use std::path::Path;

/// A replica engine at `path` with the small index heap and periodic flush of the tests.
pub fn replica_engine(path: &Path) -> Engine {
    Engine::open_replica(
        path,
        Config {
            durability: Durability::Periodic {
                flush_every_ms: 1000,
            },
            index_heap_bytes: 15_000_000,
            index_writer_threads: 1,
            ..Config::default()
        },
    )
    .expect("engine")
}
