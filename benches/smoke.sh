#!/usr/bin/env bash
# CI smoke run of engine-bench: 20k musicians, 500 gigs, 200 queries per operation.
# Fails (non-zero exit) if any step errors, e.g. a refused import or a match that changes across
# a restart; missed latency targets are reported, not fatal.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
# CI builds with --locked; override with CARGO_BUILD_FLAGS= (empty) in a tree whose lock is in flux.
cargo build --release ${CARGO_BUILD_FLAGS---locked} -p mussikon-benches --bin engine-bench
"$CARGO_TARGET_DIR/release/engine-bench" --smoke "$@"
