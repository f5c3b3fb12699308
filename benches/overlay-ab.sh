#!/usr/bin/env bash
# Reads before and after a burst of facts-only writes (ratings), for saved `mussikon` binaries:
# each binary in turn serves a fresh copy of DATA_DIR (so one run's writes never reach the next)
# on 127.0.0.1 (rate limits off), is warmed up with 3 s of match1, then benches/http.sh runs
# SCENARIOS, then WRITES for WRITE_DUR seconds, then (3 s later) SCENARIOS again, printing the
# server's CPU ms per request beside each figure and the facts overlay's size. Give the binaries
# alternated (A B A B).
#
# Usage:
#   benches/overlay-ab.sh DATA_DIR BIN[=SCHEMA] [BIN[=SCHEMA] ...]
#   SCENARIOS="match1 search" WRITES=rate DUR=8 WRITE_DUR=8 benches/overlay-ab.sh /tmp/h1m /tmp/old=6 /tmp/new=7
#
# DATA_DIR must hold data and a built index (e.g. `mussikon serve --demo 1000000 --data-dir DIR`,
# stopped). BIN=SCHEMA rewrites the copy's index payload to that schema number, so that builds
# whose index differs only in its payload (as before and after the facts overlay, 6 and 7) read
# the very same segment instead of rebuilding it; only for such builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -lt 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
src="$1"
shift
[ -f "$src/index/meta.json" ] || { echo "overlay-ab: $src has no index" >&2; exit 2; }
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for arg in "$@"; do
  bin="${arg%%=*}"
  schema=""
  [ "$arg" = "$bin" ] || schema="${arg#*=}"
  rm -rf "$work/data"
  cp -a "$src" "$work/data"
  if [ -n "$schema" ]; then
    sed -i -E "s/(\\\\\"schema\\\\\":)[0-9]+/\\1$schema/" "$work/data/index/meta.json"
  fi
  url="http://127.0.0.1:$(port)"
  "$bin" serve --data-dir "$work/data" --listen "${url#http://}" --set rate_limit.enabled=false \
    >"$work/serve.log" 2>&1 &
  pid=$!
  until curl -fs "$url/health/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.3
  done
  echo "== $arg (load $(cut -d' ' -f1 /proc/loadavg))"
  if grep -q 'rebuil' "$work/serve.log"; then
    echo "   (the index was rebuilt on open: not the same segment as the other builds)"
  fi
  bench() {
    SERVER_PID=$pid OPEN_LOOP=0 MUSICIANS="${MUSICIANS:-1000000}" SCENARIOS="$1" DURATION="$2" \
      benches/http.sh "$url" 2>&1 | grep -E '^[a-z0-9]+ +[0-9]' || true
  }
  bench match1 3 >/dev/null
  bench "${SCENARIOS:-match1 search}" "${DUR:-8}"
  bench "${WRITES:-rate}" "${WRITE_DUR:-8}"
  sleep 3
  curl -fs "$url/metrics" | grep '^mussikon_index_overlay_musicians' || true
  bench "${SCENARIOS:-match1 search}" "${DUR:-8}"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
done
