#!/usr/bin/env bash
# Full benchmark: builds engine-bench in release and runs it at 1M musicians / 10k gigs,
# teeing the output to a log (with --explain 200: the pre-filter stage counts). Extra arguments are passed to engine-bench
# (e.g. `benches/run.sh --threads 2 --dir /var/tmp/mussikon-1m`).
#
# Uses its own target dir (CARGO_TARGET_DIR, default /tmp/target-bench) so it never competes
# with the workspace's target/ on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
log="${BENCH_LOG:-benches/engine-bench-$(date -u +%Y%m%dT%H%M%SZ).log}"
cargo build --release -p mussikon-benches --bin engine-bench
# The index settings `mussikon serve` and `mussikon import` give the engine (one indexing
# thread, a commit a second; the engine library's defaults are 2 threads and 250 ms).
"$CARGO_TARGET_DIR/release/engine-bench" --musicians 1000000 --gigs 10000 --queries 2000 --explain 200 \
  --index-threads 1 --commit-ms 1000 "$@" 2>&1 | tee "$log"
echo "log: $log"
