//! Helpers shared by the benchmark binaries (`engine-bench`, `cluster-bench`).

pub mod host;
