#!/usr/bin/env bash
# What exporting request spans over OTLP costs: benches/http.sh three times on the same release
# build: without span export, exporting every request, and exporting a share SAMPLE_RATIO
# (default 0.1) of new traces; to a stand-in collector on loopback that reads each export
# request and answers 200, counting requests and bytes. Generator, server and collector share
# this machine's cores.
#
# Usage:
#   benches/otlp-overhead.sh                          # 100,000 musicians, 5 s per scenario
#   MUSICIANS=1000000 DURATION=10 SAMPLE_RATIO=0.01 benches/otlp-overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export MUSICIANS="${MUSICIANS:-100000}" DURATION="${DURATION:-5}"
SAMPLE_RATIO="${SAMPLE_RATIO:-0.1}"

sink_dir="$(mktemp -d)"
sink_pid=""
cleanup() {
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; fi
  rm -rf "$sink_dir"
}
trap cleanup EXIT

python3 - "$sink_dir" <<'PY' &
import http.server, sys, threading
out = sys.argv[1]
stats = {"requests": 0, "bytes": 0}
lock = threading.Lock()
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        with lock:
            stats["requests"] += 1
            stats["bytes"] += n
            with open(f"{out}/stats", "w") as f:
                f.write(f'{stats["requests"]} {stats["bytes"]}\n')
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
with open(f"{out}/port", "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY
sink_pid=$!
until [ -s "$sink_dir/port" ]; do sleep 0.1; done
port="$(cat "$sink_dir/port")"

echo "== span export off"
bash benches/http.sh
echo
for ratio in 1.0 "$SAMPLE_RATIO"; do
  echo "== span export on, sample_ratio $ratio (stand-in collector at 127.0.0.1:$port)"
  before=(0 0)
  [ -s "$sink_dir/stats" ] && read -r -a before < "$sink_dir/stats"
  SERVE_ARGS="--set tracing.otlp_endpoint=http://127.0.0.1:$port --set tracing.sample_ratio=$ratio" \
    bash benches/http.sh
  after=(0 0)
  [ -s "$sink_dir/stats" ] && read -r -a after < "$sink_dir/stats"
  echo "collector received $(( after[0] - before[0] )) export requests, $(( after[1] - before[1] )) bytes of spans"
  echo
done
