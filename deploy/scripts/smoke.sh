#!/usr/bin/env bash
# Smoke test of a running MussikOn node or cluster, through any base URL:
#   deploy/scripts/smoke.sh http://127.0.0.1:8080
# Checks: GET /health is 200 healthy; GET /health/ready is 200; a write (PUT of a musician with a
# unique id, read back); a match (POST /v1/match of an ad-hoc gig placed where only that
# musician can play it, which must rank them first); GET /metrics exposes the request counter.
# Then deletes the musician (SMOKE_KEEP=1 keeps it, e.g. to check replication elsewhere).
# A bearer token, when the server requires one, comes from MUSSIKON_TOKEN (never printed).
# Needs curl and python3. Exit 0 only when every check passed.
set -euo pipefail
base="${1:?usage: smoke.sh BASE_URL}"
base="${base%/}"
id="${SMOKE_ID:-smoke-$(date -u +%s)-$$}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { echo "  ok    $1"; passed=$((passed + 1)); }
ko() { echo "  FAIL  $1"; failed=$((failed + 1)); }
auth=()
if [ -n "${MUSSIKON_TOKEN:-}" ]; then
  printf 'header = "Authorization: Bearer %s"\n' "$MUSSIKON_TOKEN" >"$work/auth.curlrc"
  auth=(--config "$work/auth.curlrc")
fi
# req METHOD PATH [BODY]: prints the status; the body is in $work/body.
req() {
  local args=(-sS -o "$work/body" -w '%{http_code}' --max-time 10 -X "$1" "${auth[@]}")
  [ $# -ge 3 ] && args+=(-H 'content-type: application/json' --data-binary "$3")
  curl "${args[@]}" "$base$2" || echo 000
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$work/body" "$1" 2>/dev/null || true; }

echo "smoke test of $base (musician $id)"
s=$(req GET /health)
[ "$s" = 200 ] && [ "$(field 'd["status"]')" = healthy ] && ok "GET /health" || ko "GET /health: $s $(head -c 300 "$work/body")"
s=$(req GET /health/ready)
[ "$s" = 200 ] && ok "GET /health/ready ($(field 'd["status"]'))" || ko "GET /health/ready: $s $(head -c 300 "$work/body")"

# Tierra del Fuego: far from any generated demo musician, so the match below has one candidate.
musician=$(cat <<JSON
{"id": "$id", "name": "Smoke Test", "instruments": [{"name": "guitar", "level": 5}],
 "genres": ["jazz"], "location": {"lat": -54.8019, "lon": -68.3030}, "city": "Ushuaia",
 "travel_radius_km": 20, "fee": {"amount": 10000, "currency": "EUR"}}
JSON
)
s=$(req PUT "/v1/musicians/$id" "$musician")
if [ "$s" = 200 ] || [ "$s" = 201 ]; then
  s=$(req GET "/v1/musicians/$id")
  [ "$s" = 200 ] && [ "$(field 'd["musician"]["name"]')" = "Smoke Test" ] && ok "write: PUT /v1/musicians/$id, read back" \
    || ko "read back /v1/musicians/$id: $s $(head -c 300 "$work/body")"
else
  ko "write: PUT /v1/musicians/$id: $s $(head -c 300 "$work/body")"
fi

date=$(date -u -d '+30 days' +%F 2>/dev/null || date -u -v+30d +%F)
gig=$(cat <<JSON
{"gig": {"id": "smoke-gig", "title": "Smoke test gig", "date": "$date",
 "location": {"lat": -54.80, "lon": -68.30}, "radius_km": 10,
 "slots": [{"instrument": "guitar", "count": 1, "min_level": 3}], "genres": ["jazz"],
 "budget": {"max_fee": 20000, "currency": "EUR"}}, "k": 5}
JSON
)
# The index makes a write searchable within 250 ms: ask again for up to 5 s.
first=""
for _ in $(seq 1 20); do
  s=$(req POST /v1/match "$gig")
  first=$(field 'd["slots"][0]["candidates"][0]["musician_id"]')
  [ "$s" = 200 ] && [ "$first" = "$id" ] && break
  sleep 0.25
done
[ "$s" = 200 ] && [ "$first" = "$id" ] && ok "match: POST /v1/match ranks $id first" \
  || ko "match: POST /v1/match: $s, first candidate '${first}' $(head -c 300 "$work/body")"

s=$(req GET /metrics)
[ "$s" = 200 ] && grep -q '^http_requests_total{' "$work/body" && ok "GET /metrics (http_requests_total present)" \
  || ko "GET /metrics: $s"

if [ -z "${SMOKE_KEEP:-}" ]; then
  s=$(req DELETE "/v1/musicians/$id")
  case "$s" in 200 | 204) ok "cleanup: DELETE /v1/musicians/$id" ;; *) ko "cleanup: DELETE /v1/musicians/$id: $s" ;; esac
fi
echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
