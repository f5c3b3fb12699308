#!/usr/bin/env bash
# A/B of saved `mussikon` binaries through benches/cluster.sh (MussikOn only): each binary in
# turn runs the same 3-node load (MUSSIKON_BIN), after COOL seconds of rest so that the previous
# run's load has settled, and the workload rows are printed under its name with the load at its
# start. Give the binaries alternated (A B A B ...) so that a drift in the machine's load hits
# both alike; on a shared machine compare the node-CPU-ms-per-op column first.
#
# Usage:
#   benches/cluster-ab.sh BIN_A BIN_B [BIN ...]
#   WORKLOADS=put-rr DURATION=10 CLIENTS=64 COOL=20 benches/cluster-ab.sh /tmp/old /tmp/new /tmp/old /tmp/new
#
# Save a build's binary first, e.g. `cp /tmp/target-bench/release/mussikon /tmp/mussikon-COMMIT`.
# Other variables (KEYS, NODE_FLAGS, ...) pass through to benches/cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -lt 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
export WORKLOADS="${WORKLOADS:-put-rr,put-change}" DURATION="${DURATION:-10}" CLIENTS="${CLIENTS:-64}"
export NO_FAILOVER=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for bin in "$@"; do
  sleep "${COOL:-20}"
  MUSSIKON_BIN="$bin" benches/cluster.sh --no-etcd >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  echo "== $bin (load at start: $(sed -n 's/^load average at start: //p' "$log"))"
  grep -E '^\| (put|get|book|read)' "$log" | awk '!seen[$0]++'
done
