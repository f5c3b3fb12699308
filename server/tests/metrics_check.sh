#!/usr/bin/env bash
# Lints a live /metrics scrape with `promtool check metrics` (Prometheus' own linter: HELP and
# TYPE on every family, counter names ending in _total, valid exposition format, units).
#
# Usage:
#   server/tests/metrics_check.sh                   # starts target/debug/mussikon on a free port
#   server/tests/metrics_check.sh http://HOST:PORT  # checks a server that is already running
#
# Installs promtool (Debian package prometheus) with apt-get when it is missing. Before the
# scrape it sends a few requests (a write, reads, a 404, a match) so that the per-route
# families and histograms have samples. Exits non-zero when promtool reports any problem.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
  "${apt_get[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq prometheus >/dev/null
fi

source server/tests/lib/serve.sh
url="${1:-}"
if [ -z "$url" ]; then
  bin="${CARGO_TARGET_DIR:-target}/debug/mussikon"
  [ -x "$bin" ] || cargo build -p mussikon-server --bin mussikon
  start_server "$bin" --demo 200
fi

musician='{"id":"m-check","name":"Check","instruments":[{"name":"guitar","level":4}],"location":{"lat":40.42,"lon":-3.70},"travel_radius_km":50,"fee":{"amount":10000,"currency":"EUR"}}'
curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' -d "$musician" "$url/v1/musicians/m-check"
curl -fsS -o /dev/null "$url/v1/musicians/m-check"
curl -fsS -o /dev/null "$url/v1/gigs?limit=1"
curl -fsS -o /dev/null "$url/health/ready"
curl -sS -o /dev/null "$url/v1/no-such-route" || true
gig="$(curl -fsS "$url/v1/gigs?limit=1" | python3 -c 'import json,sys; i=json.load(sys.stdin)["items"]; print(i[0]["gig"]["id"] if i else "")')"
[ -z "$gig" ] || curl -fsS -o /dev/null "$url/v1/gigs/$gig/matches?k=3"

curl -fsS "$url/metrics" >"$workdir/metrics"
families="$(grep -c '^# TYPE ' "$workdir/metrics" || true)"
if ! promtool check metrics <"$workdir/metrics" >"$workdir/lint" 2>&1; then
  echo "metrics_check: promtool found problems in $url/metrics:" >&2
  cat "$workdir/lint" >&2
  exit 1
fi
echo "metrics_check: $url/metrics passes promtool check metrics ($families families)"
