#!/usr/bin/env bash
# A 3-node MussikOn cluster against a 3-node etcd, driven by the same load generator
# (cluster-bench, benches/src/bin/cluster-bench.rs): writes to every node in turn and to the
# leader only, linearizable and stale reads, bookings (etcd: a create-if-absent txn), then a
# planned handover (the leader steps down; etcd: move-leader) and a failover (the leader
# SIGKILLed), both under write load (time to a new leader and to the next acknowledged write,
# the longest gap, failed writes). All
# processes run on 127.0.0.1 with ports chosen at run time, each node with its own data
# directory, fsync on; the generator shares the machine's cores with the nodes, and the two
# clusters run one after the other, never together.
#
# Usage:
#   benches/cluster.sh                 # 32 clients, 15 s per workload, 5,000 musicians; then etcd
#   benches/cluster.sh --no-etcd       # MussikOn only
#   benches/cluster.sh --smoke         # a few seconds, tiny data: the script and both clusters work
#   CLIENTS=64 DURATION=20 KEYS=10000 benches/cluster.sh
#   NODE_FLAGS="--set cluster.heartbeat_ms=50" benches/cluster.sh --no-etcd   # extra serve flags
#   WORKLOADS=put-rr,book NO_FAILOVER=1 benches/cluster.sh --no-etcd          # a subset, no handover or kill
#   KEYED_FAILOVER=1 benches/cluster.sh --no-etcd   # handover/failover writers send keyed ratings
#   SEARCH_REPLICA=1 benches/cluster.sh   # voters keep no search index; a 4th node, a learner,
#                                         # indexes (its CPU counts in CPU per request)
#   KEEP_WORK=1 benches/cluster.sh --no-etcd      # keep the data directories and node logs
#   MUSSIKON_BIN=/tmp/mussikon-old benches/cluster.sh --no-etcd   # a saved binary, not built here
#   NODE_THREADS=1 benches/cluster.sh  # size every node of both systems as a machine of that many
#                                      # cores: TOKIO_WORKER_THREADS for MussikOn, GOMAXPROCS for
#                                      # etcd (unset: each takes the machine's cores, as by default)
#
# etcd 3.4 comes from Debian (package etcd-server), installed with apt-get when missing. On a
# machine with systemd, the package also starts its own etcd service on 127.0.0.1:2379; this
# script neither uses nor stops it (its ports are 20000-31999).
#
# Exits non-zero if a cluster does not come up, the preload fails, or any request of a
# workload fails (refused bookings are counted apart, not as errors). Beside the wall-clock
# figures, each workload reports the nodes' CPU milliseconds per request (all three together),
# the figure to compare on a busy machine. Logs of the nodes are
# printed when one fails to start; all data directories are removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"

smoke=0
with_etcd=1
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    --no-etcd) with_etcd=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$smoke" = 1 ]; then
  CLIENTS="${CLIENTS:-4}" DURATION="${DURATION:-1}" KEYS="${KEYS:-100}" GIGS="${GIGS:-20}"
fi
CLIENTS="${CLIENTS:-32}"
DURATION="${DURATION:-15}"
KEYS="${KEYS:-5000}"
GIGS="${GIGS:-500}"
NODE_THREADS="${NODE_THREADS:-}"
if [ -n "$NODE_THREADS" ] && ! [[ "$NODE_THREADS" =~ ^[1-9][0-9]{0,2}$ ]]; then
  echo "NODE_THREADS must be a whole number from 1 to 999 (got '$NODE_THREADS')" >&2
  exit 2
fi

if [ "$with_etcd" = 1 ] && ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
  "${apt_get[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq etcd-server >/dev/null
fi

# CI builds with --locked; override with CARGO_BUILD_FLAGS= (empty) in a tree whose lock is in flux.
# MUSSIKON_BIN runs a saved mussikon binary instead of building one (benches/cluster-ab.sh).
if [ -n "${MUSSIKON_BIN:-}" ]; then
  # shellcheck disable=SC2086
  nice -n 19 cargo build --release ${CARGO_BUILD_FLAGS---locked} -p mussikon-benches --bin cluster-bench
  mussikon="$MUSSIKON_BIN"
else
  # shellcheck disable=SC2086
  nice -n 19 cargo build --release ${CARGO_BUILD_FLAGS---locked} -p mussikon-server --bin mussikon \
    -p mussikon-benches --bin cluster-bench
  mussikon="$CARGO_TARGET_DIR/release/mussikon"
fi
bench="$CARGO_TARGET_DIR/release/cluster-bench"

work="$(mktemp -d)"
pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Distinct ports in 20000-31999 (below the kernel's ephemeral range) where nothing listens.
taken=" "
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    case "$taken" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken="$taken$p "
      echo "$p"
      return
    fi
  done
}

# Waits until $1 (a process's stdout file) says "listening on"; fails with its stderr if the
# process ($2) exits first.
wait_listening() {
  local out="$1" pid="$2" err="${1%.out}.err"
  for _ in $(seq 1 600); do
    if grep -q '^listening on ' "$out" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "process $pid exited before listening:" >&2
      cat "$err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "process $pid did not listen within 60 s" >&2
  exit 1
}

bench_args=(--clients "$CLIENTS" --duration-s "$DURATION" --keys "$KEYS" --gigs "$GIGS")
[ -z "${WORKLOADS:-}" ] || bench_args+=(--workloads "$WORKLOADS")
[ -n "${NO_FAILOVER:-}" ] || bench_args+=(--handover --failover)
# KEYED_FAILOVER=1: MussikOn's handover and failover writers rate musicians with an
# Idempotency-Key each (writes a follower submits again when the leader dies with them in
# flight); etcd's run keeps plain puts.
mussikon_args=()
[ -z "${KEYED_FAILOVER:-}" ] || mussikon_args+=(--keyed-failover)
started=$SECONDS

echo "== MussikOn: 3 nodes${NODE_THREADS:+, TOKIO_WORKER_THREADS=$NODE_THREADS each} =="
secret="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
addrs=()
for _ in 1 2 3; do addrs+=("127.0.0.1:$(free_port)"); done
peers="1=${addrs[0]},2=${addrs[1]},3=${addrs[2]}"
voter_flags=()
[ -z "${SEARCH_REPLICA:-}" ] || voter_flags+=(--set index.enabled=false)
for i in 1 2 3; do
  env -u MUSSIKON_NODE_ID -u MUSSIKON_PEERS MUSSIKON_CLUSTER_SECRET="$secret" \
    ${NODE_THREADS:+TOKIO_WORKER_THREADS="$NODE_THREADS"} \
    "$mussikon" serve --listen "${addrs[$((i - 1))]}" --data-dir "$work/m$i" \
    --node-id "$i" --peers "$peers" --set rate_limit.enabled=false ${NODE_FLAGS:-} \
    ${voter_flags[@]+"${voter_flags[@]}"} >"$work/m$i.out" 2>"$work/m$i.err" &
  pids+=($!)
  wait_listening "$work/m$i.out" "$!"
done
nodes="$(IFS=,; echo "${addrs[*]}")"
if [ -n "${SEARCH_REPLICA:-}" ]; then
  # The read replica: node 4, with its index, added as a learner; the load addresses only the
  # voters, and its CPU counts in the figures (--extra-pids).
  addr4="127.0.0.1:$(free_port)"
  env -u MUSSIKON_NODE_ID -u MUSSIKON_PEERS MUSSIKON_CLUSTER_SECRET="$secret" \
    ${NODE_THREADS:+TOKIO_WORKER_THREADS="$NODE_THREADS"} \
    "$mussikon" serve --listen "$addr4" --data-dir "$work/m4" --node-id 4 --peers "$peers" \
    --set rate_limit.enabled=false ${NODE_FLAGS:-} >"$work/m4.out" 2>"$work/m4.err" &
  replica_pid=$!
  pids+=("$replica_pid")
  wait_listening "$work/m4.out" "$replica_pid"
  "$mussikon" cluster join --node "${addrs[0]}" --id 4 --addr "$addr4" --learner >/dev/null
  mussikon_args+=(--extra-pids "$replica_pid")
  echo "read replica: node 4 at $addr4 (learner, keeps the search index; the voters do not)"
fi
voter_pids="$(IFS=,; echo "${pids[*]:0:3}")"
if ! "$bench" --system mussikon --nodes "$nodes" --pids "$voter_pids" "${bench_args[@]}" ${mussikon_args[@]+"${mussikon_args[@]}"}; then
  for i in 1 2 3; do echo "-- node $i stderr (tail):" >&2; tail -n 20 "$work/m$i.err" >&2; done
  exit 1
fi
echo "disk after the run (log, snapshots, engine) per node: $(du -sh "$work"/m1 "$work"/m2 "$work"/m3 2>/dev/null | cut -f1 | tr '\n' ' ')"
stop_all

if [ "$with_etcd" = 1 ]; then
  echo
  echo "== etcd $(etcd --version | sed -n 's/^etcd Version: //p'): 3 members${NODE_THREADS:+, GOMAXPROCS=$NODE_THREADS each} =="
  client_ports=() peer_ports=()
  for _ in 1 2 3; do client_ports+=("$(free_port)"); peer_ports+=("$(free_port)"); done
  cluster="e1=http://127.0.0.1:${peer_ports[0]},e2=http://127.0.0.1:${peer_ports[1]},e3=http://127.0.0.1:${peer_ports[2]}"
  for i in 1 2 3; do
    c="${client_ports[$((i - 1))]}" p="${peer_ports[$((i - 1))]}"
    # env execs etcd: $! is etcd's pid.
    env ${NODE_THREADS:+GOMAXPROCS="$NODE_THREADS"} etcd --name "e$i" --data-dir "$work/e$i" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$cluster" --initial-cluster-token "bench-$$" --initial-cluster-state new \
      --logger zap --log-level warn >"$work/e$i.out" 2>"$work/e$i.err" &
    pids+=($!)
  done
  nodes="127.0.0.1:${client_ports[0]},127.0.0.1:${client_ports[1]},127.0.0.1:${client_ports[2]}"
  if ! "$bench" --system etcd --nodes "$nodes" --pids "$(IFS=,; echo "${pids[*]}")" "${bench_args[@]}"; then
    for i in 1 2 3; do echo "-- etcd e$i stderr (tail):" >&2; tail -n 20 "$work/e$i.err" >&2; done
    exit 1
  fi
  echo "disk after the run per member: $(du -sh "$work"/e1 "$work"/e2 "$work"/e3 | cut -f1 | tr '\n' ' ')"
  stop_all
fi
echo "cluster.sh: done in $((SECONDS - started)) s (build excluded)"
