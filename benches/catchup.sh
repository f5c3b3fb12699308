#!/usr/bin/env bash
# Catch-up of a new node on a large cluster state (issue 4: a node must be able to join a
# cluster that holds 1,000,000 musicians, in 60 s at most).
#
# A one-voter cluster (node 1) is loaded with N generated musicians through the bulk NDJSON
# route (every batch of 1,000 a Raft entry, fsynced), with snapshots every `SNAPSHOT_LOGS` entries so
# that the log is purged and the new node can only catch up from a snapshot, as on a cluster
# that has run for a while. Then node 2 starts on an empty directory and
# `mussikon cluster join` adds it (learner, log caught up, promoted). Printed: the load rate,
# the time the join took (snapshot built or reused, streamed, installed with its index rebuilt,
# then the log tail replicated), the time until node 2 has also applied everything node 1 had
# committed (the catch-up), the snapshot's size, and node 2's musician count, which must
# equal N.
#
# Usage:
#   benches/catchup.sh              # 1,000,000 musicians (about 10 minutes here, 3 GB of /tmp)
#   benches/catchup.sh 20000        # smaller
#   benches/catchup.sh --smoke      # 2,000 musicians: the script works
#   MUSSIKON_BIN=/tmp/mussikon-old benches/catchup.sh   # a saved binary instead of this tree's build
# Env: CARGO_TARGET_DIR (default /tmp/target-bench), SNAPSHOT_LOGS (default N / 2,000),
# KEEP_WORK=1 keeps the data directories and logs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
n=1000000
case "${1:-}" in
  --smoke) n=2000 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) n=$1 ;;
esac
# The bulk route writes 1,000 musicians per Raft entry: a snapshot about twice during the load
# (each one exports the whole store), the log purged up to it (keep_logs=0).
snapshot_logs=${SNAPSHOT_LOGS:-$(( n / 2000 > 2 ? n / 2000 : 2 ))}

# CI builds with --locked; override with CARGO_BUILD_FLAGS= (empty) in a tree whose lock is in flux.
# MUSSIKON_BIN runs a saved mussikon binary instead of building one (to compare two builds).
if [ -n "${MUSSIKON_BIN:-}" ]; then
  bin="$MUSSIKON_BIN"
else
  # shellcheck disable=SC2086
  nice -n 19 cargo build --release ${CARGO_BUILD_FLAGS---locked} -p mussikon-server --bin mussikon
  bin="$CARGO_TARGET_DIR/release/mussikon"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
# start ID PEERS: starts node ID on its address with the given --peers.
start() {
  local id=$1 peers=$2
  env -u MUSSIKON_NODE_ID -u MUSSIKON_PEERS MUSSIKON_CLUSTER_SECRET="$secret" \
    "$bin" serve --listen "${addr[$id]}" --data-dir "$work/n$id" --node-id "$id" --peers "$peers" \
    --set rate_limit.enabled=false --set "cluster.snapshot_logs=$snapshot_logs" \
    --set cluster.keep_logs=0 --set http.max_bulk_bytes=1073741824 \
    >"$work/n$id.out" 2>"$work/n$id.err" &
  pids+=($!)
  for _ in $(seq 1 600); do
    grep -q '^listening on ' "$work/n$id.out" 2>/dev/null && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/n$id.err" >&2; exit 1; }
    sleep 0.1
  done
  echo "node $id did not listen within 60 s" >&2
  exit 1
}
# musicians_on ID: the musician count node ID's readiness check reports.
musicians_on() {
  curl -s --max-time 30 "http://${addr[$1]}/health/ready" |
    python3 -c 'import json, re, sys; d = json.load(sys.stdin); print(re.match(r"(\d+) musicians", d["checks"]["store"]["detail"]).group(1))'
}
# status_of ID FIELD: a number from node ID's /v1/cluster/status.
status_of() {
  curl -s --max-time 10 "http://${addr[$1]}/v1/cluster/status" |
    python3 -c 'import json, sys; print(int(json.load(sys.stdin).get(sys.argv[1]) or 0))' "$2"
}
metric() { curl -s --max-time 10 "http://${addr[$1]}/metrics" | awk -v m="$2" '$1 == m { v = $2 } END { printf "%d\n", v }'; }

secret="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
declare -A addr
addr[1]="127.0.0.1:$(free_port)"
addr[2]="127.0.0.1:$(free_port)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "generating $n musicians"
"$bin" gen --musicians "$n" --gigs 0 --out-dir "$work/gen" >/dev/null
echo "  $(du -h "$work/gen/musicians.jsonl" | cut -f1) of NDJSON"
# Batches of 100,000 lines, so that a failure shows where and the progress is visible.
split -l 100000 -d -a 3 "$work/gen/musicians.jsonl" "$work/gen/part-"
rm "$work/gen/musicians.jsonl"

start 1 "1=${addr[1]}"
t=$(now)
retries=0
for part in "$work"/gen/part-*; do
  # A 503 "outcome unknown" (a write waiting behind a snapshot build, which holds the engine's
  # writer lock) is retried: the part's upserts are idempotent.
  for attempt in 1 2 3 4; do
    answer=$(curl -sS --max-time 3600 -X POST -H 'content-type: application/x-ndjson' \
      --data-binary @"$part" "http://${addr[1]}/v1/musicians/bulk")
    if python3 -c 'import json, sys; d = json.loads(sys.argv[1]); sys.exit(0 if d.get("rejected", 1) == 0 else 1)' "$answer"; then
      break
    fi
    echo "  bulk part $(basename "$part"), attempt $attempt: $answer" >&2
    [ "$attempt" -lt 4 ] || { echo "bulk load failed" >&2; exit 1; }
    retries=$((retries + 1))
  done
done
load_s=$(since "$t")
loaded=$(musicians_on 1)
echo "loaded $loaded musicians into node 1 in ${load_s} s ($(python3 -c "print(f'{$n / $load_s:,.0f}')")/s through the Raft log; $retries parts retried)"
[ "$loaded" -eq "$n" ] || { echo "node 1 holds $loaded musicians, not $n" >&2; exit 1; }
echo "node 1 disk: $(du -sh "$work/n1" | cut -f1) (Raft log $(du -sh "$work/n1/raft/log" | cut -f1), snapshots $(du -sh "$work/n1/raft/snapshots" | cut -f1))"

start 2 "1=${addr[1]},2=${addr[2]}"
t=$(now)
"$bin" cluster --node "${addr[1]}" join --id 2 --addr "${addr[2]}" >"$work/join.out" 2>&1 ||
  { cat "$work/join.out" >&2; tail -n 20 "$work/n2.err" >&2; exit 1; }
join_s=$(since "$t")
# `join` promotes once the learner's log has caught up; applying it may take longer.
target=$(status_of 1 commit_index)
for _ in $(seq 1 6000); do
  [ "$(status_of 2 applied_index)" -ge "$target" ] && break
  sleep 0.1
done
applied_s=$(since "$t")
caught=$(musicians_on 2)
echo "node 2 joined (learner, log caught up, promoted) in ${join_s} s; applied up to node 1's commit index $target in ${applied_s} s; it holds $caught musicians"
echo "snapshot: $(metric 1 mussikon_raft_snapshot_bytes) bytes"
# Node 2's log lines about the snapshot, message and figures only.
python3 - "$work/n2.err" <<'PY2'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    f = d.get("fields", {})
    if d.get("target", "").startswith("mussikon") and "snapshot" in str(f.get("message", "")).lower():
        print("  node 2:", f.pop("message"), json.dumps(f)[:300])
PY2
[ "$caught" -eq "$n" ] || { echo "node 2 holds $caught musicians, not $n" >&2; exit 1; }
printf 'catchup: musicians=%s load_s=%s join_s=%s applied_s=%s\n' "$n" "$load_s" "$join_s" "$applied_s"
