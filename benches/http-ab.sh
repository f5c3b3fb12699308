#!/usr/bin/env bash
# A/B of `mussikon` binaries on one data directory: each binary in turn serves DATA_DIR (rate
# limits off) on 127.0.0.1:PORT, is warmed up with 3 s of match1, then benches/http.sh runs
# SCENARIOS against it and the open loop at RATES, printing the server's CPU ms per request
# beside each figure. Give the binaries alternated (A B A B) so that a change in the machine's
# load hits both alike; on a shared machine compare the CPU column first.
#
# Usage:
#   benches/http-ab.sh DATA_DIR BIN_A BIN_B [BIN ...]
#   SCENARIOS="match1 search" RATES=5000 DUR=8 PORT=18080 benches/http-ab.sh /tmp/h1m /tmp/old /tmp/new /tmp/old /tmp/new
#
# DATA_DIR must already hold data (e.g. from `mussikon serve --demo 1000000 --data-dir DIR`,
# stopped). Each server is stopped (SIGTERM, by pid) before the next starts.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -lt 2 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
dir="$1"
shift
port="${PORT:-18080}"
url="http://127.0.0.1:$port"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT

for bin in "$@"; do
  "$bin" serve --data-dir "$dir" --listen "127.0.0.1:$port" --set rate_limit.enabled=false \
    >"/tmp/http-ab-$$.log" 2>&1 &
  pid=$!
  until curl -fs "$url/health/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "/tmp/http-ab-$$.log" >&2; exit 1; }
    sleep 0.3
  done
  echo "== $bin (load $(cut -d' ' -f1 /proc/loadavg))"
  OPEN_LOOP=0 SERVER_PID=$pid SCENARIOS=match1 DURATION=3 benches/http.sh "$url" >/dev/null 2>&1
  SERVER_PID=$pid SCENARIOS="${SCENARIOS:-match1 search}" RATES="${RATES:-5000}" \
    DURATION="${DUR:-8}" benches/http.sh "$url" 2>&1 | grep -v '^(' | grep -v '^$'
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
done
rm -f "/tmp/http-ab-$$.log"
