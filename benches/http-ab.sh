#!/usr/bin/env bash
# A/B of `mussikon` binaries on one data directory: each binary in turn serves DATA_DIR (rate
# limits off) on 127.0.0.1:PORT, is warmed up with 3 s of match1, then benches/http.sh runs
# SCENARIOS against it and the open loop at RATES, printing the server's CPU ms per request
# beside each figure. Give the binaries alternated (A B A B) so that a change in the machine's
# load hits both alike; on a shared machine compare the CPU column first.
#
# With WRITES (an http.sh scenario, e.g. `rate`), each binary serves a fresh copy of DATA_DIR
# (so one run's writes never reach the next), and after SCENARIOS it runs WRITES for WRITE_DUR
# seconds, waits 3 s, prints the facts overlay's size and runs SCENARIOS again (no open loop):
# reads before and after a burst of writes.
#
# BIN=SCHEMA (which also serves a copy) rewrites the copy's index payload to that schema
# number, so that builds whose index differs only in its payload (before and after the facts
# overlay: 6 and 7) read the very same segment instead of rebuilding it; only for such builds.
#
# Usage:
#   benches/http-ab.sh DATA_DIR BIN_A BIN_B [BIN ...]
#   SCENARIOS="match1 search" RATES=5000 DUR=8 PORT=18080 benches/http-ab.sh /tmp/h1m /tmp/old /tmp/new /tmp/old /tmp/new
#   WRITES=rate WRITE_DUR=8 benches/http-ab.sh /tmp/h1m /tmp/old=6 /tmp/new=7
#
# DATA_DIR must already hold data (e.g. from `mussikon serve --demo 1000000 --data-dir DIR`,
# stopped). Each server is stopped (SIGTERM, by pid) before the next starts.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -lt 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
src="$1"
shift
port="${PORT:-18080}"
url="http://127.0.0.1:$port"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"' EXIT

for arg in "$@"; do
  bin="${arg%%=*}"
  schema=""
  [ "$arg" = "$bin" ] || schema="${arg#*=}"
  dir="$src"
  if [ -n "${WRITES:-}" ] || [ -n "$schema" ]; then
    rm -rf "$work/data"
    cp -a "$src" "$work/data"
    dir="$work/data"
    if [ -n "$schema" ]; then
      sed -i -E "s/(\\\\\"schema\\\\\":)[0-9]+/\\1$schema/" "$dir/index/meta.json"
    fi
  fi
  "$bin" serve --data-dir "$dir" --listen "127.0.0.1:$port" --set rate_limit.enabled=false \
    >"$work/serve.log" 2>&1 &
  pid=$!
  until curl -fs "$url/health/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.3
  done
  echo "== $arg (load $(cut -d' ' -f1 /proc/loadavg))"
  if [ -n "$schema" ] && grep -q 'rebuil' "$work/serve.log"; then
    echo "   (the index was rebuilt on open: not the same segment as the other builds)"
  fi
  OPEN_LOOP=0 SERVER_PID=$pid SCENARIOS=match1 DURATION=3 benches/http.sh "$url" >/dev/null 2>&1
  if [ -z "${WRITES:-}" ]; then
    SERVER_PID=$pid SCENARIOS="${SCENARIOS:-match1 search}" RATES="${RATES:-5000}" \
      DURATION="${DUR:-8}" benches/http.sh "$url" 2>&1 | grep -v '^(' | grep -v '^$'
  else
    bench() {
      OPEN_LOOP=0 SERVER_PID=$pid SCENARIOS="$1" DURATION="$2" benches/http.sh "$url" 2>&1 |
        grep -E '^[a-z0-9]+ +[0-9]' || true
    }
    bench "${SCENARIOS:-match1 search}" "${DUR:-8}"
    bench "$WRITES" "${WRITE_DUR:-8}"
    sleep 3
    curl -fs "$url/metrics" | grep '^mussikon_index_overlay_musicians' || true
    bench "${SCENARIOS:-match1 search}" "${DUR:-8}"
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
done
