#!/usr/bin/env bash
# What the loopback runs (run-as-image.sh, pod-scripts.sh) share: the binary to run, a scratch
# directory removed at exit (KEEP_WORK=1 keeps it) after the processes they started end,
# pass/fail counting, and free ports. Source it from the repository root, then call
# `mussikon_bin` and `scratch PREFIX` once each.
# shellcheck disable=SC2034 # bin, work, pids, passed and failed are the sourcing script's

# mussikon_bin: sets $bin to MUSSIKON_BIN's absolute path, by default target/release/mussikon,
# built first when missing.
mussikon_bin() {
  bin="${MUSSIKON_BIN:-$PWD/target/release/mussikon}"
  if [ ! -x "$bin" ]; then
    echo "building $bin"
    nice -n 19 cargo build --release -p mussikon-server --bin mussikon
  fi
  bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
}

# scratch PREFIX: makes $work (/tmp/PREFIX.XXXXXX) and the EXIT trap that SIGTERMs every pid
# in $pids, waits for them, then removes $work.
scratch() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 0755 "$work"
  pids=()
  trap harness_cleanup EXIT
}
harness_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -z "${KEEP_WORK:-}" ]; then rm -rf "$work"; else echo "scratch kept: $work"; fi
}
passed=0
failed=0
ok() { echo "  ok    $1"; passed=$((passed + 1)); }
ko() { echo "  FAIL  $1"; failed=$((failed + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else ko "$name"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# started NAME PID: records PID as node NAME's (pid_of[NAME], and in $pids for the exit trap),
# then waits until it prints `listening on` to $work/NAME.out; fails with the end of
# $work/NAME.err when it exits first, or after 60 s.
started() {
  local name=$1
  pid_of[$name]=$2
  pids+=("$2")
  for _ in $(seq 1 600); do
    grep -q '^listening on ' "$work/$name.out" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { tail -5 "$work/$name.err" >&2; return 1; }
    sleep 0.1
  done
  return 1
}
