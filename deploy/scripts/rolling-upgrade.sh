#!/usr/bin/env bash
# Rolling upgrade (or restart) of a Raft cluster, one node at a time, never below quorum:
#   deploy/scripts/rolling-upgrade.sh --nodes "1=http://h1:8080,2=http://h2:8080,3=http://h3:8080" \
#     --restart 'COMMAND {id}'
# COMMAND replaces node {id} with the new version and returns once it is started, e.g. with
# Compose (after setting the new MUSSIKON_IMAGE in deploy/compose/.env):
#   --restart 'docker compose -f deploy/compose/compose.prod.yml up -d --no-deps --force-recreate mussikon-{id}'
# (On Kubernetes the StatefulSet's RollingUpdate does the same, guarded by the PDB.)
#
# Order: followers first, the leader last (one election instead of up to three); with
# MUSSIKON_TOKEN (admin) set, the leader first hands leadership over (POST
# /v1/cluster/step-down), so no write fails while it restarts. Before each
# node: every node knows a leader and the others are healthy; after it: the node answers
# /health/ready and has applied everything the leader had committed before the restart. Any
# check failing within its timeout stops the upgrade there, with at most one node affected.
# The leader is found from the contract metrics (mussikon_raft_has_leader, and
# mussikon_raft_commit_index highest among those that know it) or GET /v1/cluster/status
# (field leader_id or leader) when MUSSIKON_TOKEN is set.
set -euo pipefail
nodes="" restart=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --restart) restart=$2; shift 2 ;;
    *) echo "rolling-upgrade.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$nodes" ] && [ -n "$restart" ] || { sed -n '2,6p' "$0" >&2; exit 2; }
declare -A url
ids=()
IFS=',' read -ra pairs <<<"$nodes"
for p in "${pairs[@]}"; do url[${p%%=*}]=${p#*=}; ids+=("${p%%=*}"); done

metric() { curl -s --max-time 5 "$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { v = $2 } END { printf "%d\n", v }'; }
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1/health/ready")" = 200 ]; }
wait_for() { # SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2
  for _ in $(seq 1 $((t * 2))); do "$@" && return 0; sleep 0.5; done
  echo "rolling-upgrade.sh: timed out after ${t}s waiting for: $what; stopping here" >&2
  return 1
}
all_have_leader() { local i; for i in "${ids[@]}"; do [ "$(metric "${url[$i]}" mussikon_raft_has_leader)" = 1 ] || return 1; done; }
others_ready() { local i; for i in "${ids[@]}"; do [ "$i" = "$1" ] || ready "${url[$i]}" || return 1; done; }
leader() {
  if [ -n "${MUSSIKON_TOKEN:-}" ]; then
    local l
    l=$(admin_curl -s --max-time 5 "${url[${ids[0]}]}/v1/cluster/status" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("leader_id", d.get("leader", "")))' 2>/dev/null || true)
    if [ -n "$l" ] && [ -n "${url[$l]:-}" ]; then echo "$l"; return; fi
  fi
  # Fallback: the last node in the list (order then only saves nothing; safety is unchanged).
  echo "${ids[-1]}"
}
# admin_curl ARGS...: curl with the admin token, given as a config on stdin rather than a flag
# (a flag shows in the process list; smoke.sh does the same with a config file).
admin_curl() { curl -K - "$@" <<<"header = \"Authorization: Bearer $MUSSIKON_TOKEN\""; }
applied_at_least() { [ "$(metric "$1" mussikon_raft_applied_index)" -ge "$2" ]; }

lead=$(leader)
order=()
for i in "${ids[@]}"; do [ "$i" = "$lead" ] || order+=("$i"); done
order+=("$lead")
echo "rolling-upgrade.sh: order ${order[*]} (leader $lead last)"
for i in "${order[@]}"; do
  wait_for 60 "every node to know a leader" all_have_leader
  wait_for 60 "the nodes other than $i to be ready" others_ready "$i"
  target=0
  for j in "${ids[@]}"; do
    c=$(metric "${url[$j]}" mussikon_raft_commit_index)
    [ "$c" -gt "$target" ] && target=$c
  done
  start=$(date +%s)
  echo "rolling-upgrade.sh: node $i (commit index $target)"
  if [ -n "${MUSSIKON_TOKEN:-}" ]; then
    # Nothing to do unless it leads; a failed handover only costs the election it avoids.
    admin_curl -s -o /dev/null --max-time 15 -X POST "${url[$i]}/v1/cluster/step-down" || true
  fi
  sh -c "${restart//\{id\}/$i}"
  wait_for 120 "node $i to answer /health/ready" ready "${url[$i]}"
  wait_for 120 "node $i to apply index $target" applied_at_least "${url[$i]}" "$target"
  echo "rolling-upgrade.sh: node $i done in $(( $(date +%s) - start ))s"
done
wait_for 60 "every node to know a leader" all_have_leader
echo "rolling-upgrade.sh: all ${#ids[@]} nodes replaced"
