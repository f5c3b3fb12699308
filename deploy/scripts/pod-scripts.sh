#!/usr/bin/env bash
# Runs the Kubernetes pods' scripts (deploy/k8s/base/scripts/) against a real cluster on
# loopback, each node started with the ConfigMap's environment (deploy/k8s/base/mussikon.env)
# as the StatefulSets give it:
#   deploy/scripts/pod-scripts.sh            (MUSSIKON_BIN overrides target/release/mussikon)
#
# The only rewrites are the loopback ones: MUSSIKON_LISTEN -> 127.0.0.1:<free port>,
# MUSSIKON_CLUSTER_PEER_LISTEN -> 127.0.0.1:<another free port> (each pod's peer port), the pod
# DNS names in MUSSIKON_PEERS -> 127.0.0.1:<peer port of N>, the data directory and the secret
# file -> paths under a scratch directory; the scripts run with their pod's environment and get
# CLUSTER_URL, LOCAL_URL, LEARNER_HOST, POD_IP and HOSTNAME as a pod would have them.
#
# Proves the read replica's life cycle: a replica (MUSSIKON_NODE_ID=auto, not in the peers)
# starts, learner-join.sh adds it as a learner under the id it drew, it serves what the voters
# hold; prestop.sh removes it and marks its directory; the next start on that directory clears
# it and draws a new id, which joins; the old id is refused; a replica lost without its preStop
# is replaced by the next pod at its address; the backup CronJob's script (backup-job.sh)
# writes a snapshot with every acknowledged write through a temporary learner of its own,
# which leaves; the leader's prestop.sh hands leadership over to another voter, and writes go on;
# the restore Job's script (deploy/k8s/restore/restore-job.sh) refuses without its confirmation
# and on another voter's volume, then restores the backup into pod 0's volume, and the three
# voters started as after `scale --replicas=3` (the others' volumes deleted) form a new cluster
# that serves exactly what the backup held.
# Prints "pod-scripts: N passed, M failed"; exit 0 only when nothing failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
# shellcheck source=deploy/scripts/harness.sh
. "$root/deploy/scripts/harness.sh"
mussikon_bin
scripts="$root/deploy/k8s/base/scripts"

scratch mussikon-pod-scripts

mkdir -p "$work/secrets" "$work/bin"
head -c 48 /dev/urandom | base64 >"$work/secrets/jwt.secret"
chmod 0400 "$work/secrets/jwt.secret"
# The scripts call `mussikon` from PATH, as in the image.
ln -s "$bin" "$work/bin/mussikon"
export PATH="$work/bin:$PATH"
export MUSSIKON_AUTH_SECRET_FILE="$work/secrets/jwt.secret"
cluster_secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
token=$(mussikon token --sub pod-scripts --role admin --ttl 1h --secret-file "$MUSSIKON_AUTH_SECRET_FILE")

# port[P]: the API port of pod P (a voter's node id, or a name); peer_port_of[P]: its peer port.
declare -A port peer_port_of pid_of
for n in 1 2 3; do port[$n]=$(free_port); peer_port_of[$n]=$(free_port); done
peers="1=127.0.0.1:${peer_port_of[1]},2=127.0.0.1:${peer_port_of[2]},3=127.0.0.1:${peer_port_of[3]}"
grep -q '^MUSSIKON_CLUSTER_PEER_LISTEN=' deploy/k8s/base/mussikon.env ||
  { echo "mussikon.env sets no MUSSIKON_CLUSTER_PEER_LISTEN: MUSSIKON_PEERS would name API ports" >&2; exit 1; }

# pod_env NAME PORT PEER_PORT DATA_DIR: the ConfigMap's environment with the loopback rewrites.
pod_env() {
  local name=$1 p=$2 pp=$3 dir=$4
  grep -E '^[A-Z_]+=' deploy/k8s/base/mussikon.env | while IFS= read -r line; do
    case "${line%%=*}" in
      MUSSIKON_LISTEN) echo "MUSSIKON_LISTEN=127.0.0.1:$p" ;;
      MUSSIKON_CLUSTER_PEER_LISTEN) echo "MUSSIKON_CLUSTER_PEER_LISTEN=127.0.0.1:$pp" ;;
      MUSSIKON_DATA_DIR) echo "MUSSIKON_DATA_DIR=$dir" ;;
      MUSSIKON_AUTH_SECRET_FILE) echo "MUSSIKON_AUTH_SECRET_FILE=$MUSSIKON_AUTH_SECRET_FILE" ;;
      MUSSIKON_PEERS) echo "MUSSIKON_PEERS=$peers" ;;
      *) echo "$line" ;;
    esac
  done >"$work/$name.env"
  echo "MUSSIKON_CLUSTER_SECRET=$cluster_secret" >>"$work/$name.env"
}
# The voters' command, from their StatefulSet (Kubernetes' $$ escape undone): it picks the
# pod's node id from VOTER_IDS by the ordinal in HOSTNAME.
voter_cmd=$(sed -n "s/^ *args: \['\(.*\)'\]\$/\1/p" deploy/k8s/base/statefulset-voters.yaml | sed 's/\$\$/$/g')
[ -n "$voter_cmd" ] || { echo "no voter command in statefulset-voters.yaml" >&2; exit 1; }
# start NAME PORT PEER_PORT DATA_DIR NODE_ID: starts a pod's server, waits for `listening on`.
# NODE_ID `voter`: the voters' StatefulSet command; otherwise MUSSIKON_NODE_ID (a number or
# auto) and `mussikon serve`, as the replicas' StatefulSet runs it.
start() {
  local name=$1 p=$2 pp=$3 dir=$4 id=$5 vars cmd
  pod_env "$name" "$p" "$pp" "$dir"
  mkdir -p "$dir"
  mapfile -t vars <"$work/$name.env"
  # Emptied here, not only by the background redirect: `started` polls this file for
  # `listening on`, and a restart could otherwise see the previous run's line before the new
  # process has settled its id (a restarted replica's old id was read that way under load).
  : >"$work/$name.out"
  if [ "$id" = voter ]; then cmd=(sh -c "$voter_cmd"); else cmd=(env MUSSIKON_NODE_ID="$id" mussikon serve); fi
  (exec env -i PATH="$PATH" HOSTNAME="$name" "${vars[@]}" "${cmd[@]}" \
    >"$work/$name.out" 2>>"$work/$name.err") &
  started "$name" $!
}
stop() { kill -TERM "${pid_of[$1]}" 2>/dev/null || true; wait "${pid_of[$1]}" 2>/dev/null || true; }
crash() { kill -KILL "${pid_of[$1]}" 2>/dev/null || true; wait "${pid_of[$1]}" 2>/dev/null || true; }
# pod_script NAME PORT DATA_DIR SCRIPT [VAR=VALUE...]: runs a pod script as pod NAME would:
# with the environment its server was started with (a hook's is the container's).
pod_script() {
  local name=$1 p=$2 dir=$3 script=$4 vars
  shift 4
  mapfile -t vars <"$work/$name.env"
  env "${vars[@]}" HOSTNAME="$name" MUSSIKON_DATA_DIR="$dir" CLUSTER_URL="http://127.0.0.1:${port[1]}" \
    LOCAL_URL="http://127.0.0.1:$p" LEARNER_HOST=127.0.0.1 DRAIN_S=0 "$@" \
    bash "$scripts/$script"
}
api() { curl -sS --max-time 30 -H "Authorization: Bearer $token" "$@"; }
members() { api "http://127.0.0.1:${port[1]}/v1/cluster/status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(" ".join("%s:%s" % (m["id"], m["role"]) for m in s["members"]))'; }
# role_of ID: the member's role, empty when it is none; fails when the status cannot be read.
role_of() { local m; m=$(members) || return 1; tr ' ' '\n' <<<"$m" | sed -n "s/^$1://p"; }
kept_id() { tr -d '[:space:]' <"$1/raft/node-id"; }
write() {
  local id=$1 code
  code=$(api -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    "http://127.0.0.1:${port[1]}/v1/musicians/$id" \
    --data "{\"id\":\"$id\",\"name\":\"Pod $id\",\"instruments\":[{\"name\":\"guitar\",\"level\":3}],\"location\":{\"lat\":40.4,\"lon\":-3.7},\"travel_radius_km\":50,\"fee\":{\"amount\":10000,\"currency\":\"EUR\"}}")
  [ "$code" = 201 ] || [ "$code" = 200 ]
}
# serves_all URL N: the node at URL serves musicians pod-1..pod-N (stale reads: its own copy).
serves_all() {
  local i
  for i in $(seq 1 "$2"); do
    [ "$(api -o /dev/null -w '%{http_code}' "$1/v1/musicians/pod-$i?consistency=stale")" = 200 ] || return 1
  done
}
# has_all URL N: serves_all, retried for up to 20 s while the node catches up.
has_all() {
  for _ in $(seq 1 200); do serves_all "$@" && return 0; sleep 0.1; done
  return 1
}
wait_role() {
  for _ in $(seq 1 100); do [ "$(role_of "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
gone() {
  local r
  for _ in $(seq 1 100); do r=$(role_of "$1") && [ -z "$r" ] && return 0; sleep 0.1; done
  return 1
}

echo "== three voters with the ConfigMap's environment"
for n in 1 2 3; do start "mussikon-$((n - 1))" "${port[$n]}" "${peer_port_of[$n]}" "$work/voter$n" voter; done
for _ in $(seq 1 100); do members >/dev/null 2>&1 && break; sleep 0.1; done
check "voters 1, 2, 3 elect a leader" wait_role 3 voter
check "pod mussikon-2 runs as node 3 (VOTER_IDS)" test "$(kept_id "$work/voter3")" = 3
writes=0
for i in 1 2 3 4 5; do write "pod-$i" && writes=$i; done
check "5 writes acknowledged" test "$writes" -eq 5

echo "== a read replica's life cycle"
rp=$(free_port)
rpp=$(free_port)
rdir="$work/replica0"
check "replica starts (MUSSIKON_NODE_ID=auto, not among the peers)" start mussikon-replica-0 "$rp" "$rpp" "$rdir" auto
first=$(kept_id "$rdir")
check "it drew an id above hand-picked ones ($first)" test "$first" -ge 4294967296
check "learner-join.sh adds it" pod_script mussikon-replica-0 "$rp" "$rdir" learner-join.sh
check "it is a learner" wait_role "$first" learner
check "at its peer port" eval 'api "http://127.0.0.1:${port[1]}/v1/cluster/status" | grep -q "\"addr\":\"127.0.0.1:$rpp\""'
check "its API port answers /raft/... 404" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$rp/raft/append")" = 404
check "it serves the voters' data" has_all "http://127.0.0.1:$rp" 5
check "prestop.sh removes it" pod_script mussikon-replica-0 "$rp" "$rdir" prestop.sh
check "it is no member" gone "$first"
check "its directory is marked removed" test -e "$rdir/raft/retired"
stop mussikon-replica-0
out=$(MUSSIKON_TOKEN="$token" mussikon cluster --node "127.0.0.1:${port[2]}" join --id "$first" --addr "127.0.0.1:$rpp" --learner 2>&1 || true)
check "its id is refused from then on" grep -q "never reused" <<<"$out"
check "the next start on its directory" start mussikon-replica-0 "$rp" "$rpp" "$rdir" auto
second=$(kept_id "$rdir")
check "draws a new id ($second)" test "$second" != "$first"
check "learner-join.sh adds the new id" pod_script mussikon-replica-0 "$rp" "$rdir" learner-join.sh
check "learner $second" wait_role "$second" learner
for i in 6 7; do write "pod-$i" && writes=$i; done
check "it serves every write, old and new" has_all "http://127.0.0.1:$rp" 7

echo "== a replica lost without its preStop"
crash mussikon-replica-0
rdir2="$work/replica0-new-pod"
check "a new pod at the same address starts" start mussikon-replica-0 "$rp" "$rpp" "$rdir2" auto
third=$(kept_id "$rdir2")
check "learner-join.sh adds it ($third)" pod_script mussikon-replica-0 "$rp" "$rdir2" learner-join.sh
check "it replaced the lost learner $second" gone "$second"
check "learner $third" wait_role "$third" learner

echo "== the backup CronJob's script"
bp=$(free_port)
bdir="$work/backup-data"
mkdir -p "$work/backups" "$work/backup-work"
pod_env backup "$bp" "$(free_port)" "$bdir"
mapfile -t bvars <"$work/backup.env"
if env -i PATH="$PATH" HOSTNAME=mussikon-backup "${bvars[@]}" BACKUP_DIR="$work/backups" \
  BACKUP_WORK_DIR="$work/backup-work" CLUSTER_URL="http://127.0.0.1:${port[1]}" \
  LOCAL_URL="http://127.0.0.1:$bp" POD_IP=127.0.0.1 \
  bash "$scripts/backup-job.sh" >"$work/backup.log" 2>&1; then
  ok "backup-job.sh exits 0"
else
  ko "backup-job.sh exits 0"; sed 's/^/        /' "$work/backup.log"
fi
snap=$(ls "$work/backups"/mussikon-*.snap 2>/dev/null | head -1 || true)
check "it wrote a snapshot" test -s "${snap:-/nonexistent}"
backup_id=$(sed -n 's/^temporary node \([0-9]*\) joins.*/\1/p' "$work/backup.log")
check "its temporary learner ($backup_id) drew a fresh id and left" gone "${backup_id:-0}"
restored="$work/restored"
if [ -n "$snap" ] && mussikon restore --data-dir "$restored" --in "$snap" >/dev/null 2>&1; then
  count=$(python3 - "$snap" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
print(sum(data.count(f"pod-{i}".encode()) > 0 for i in range(1, 8)))
PY
)
  check "it restores, and holds all 7 acknowledged writes ($count)" test "$count" -eq 7
else
  ko "the snapshot restores"
fi

echo "== a voter's preStop hands leadership over"
leader_id() { api "http://127.0.0.1:${port[1]}/v1/cluster/status" | python3 -c 'import json, sys; print(json.load(sys.stdin)["leader"] or "")'; }
# led_by_other OLD: a leader other than OLD is known.
led_by_other() {
  local l
  for _ in $(seq 1 100); do l=$(leader_id) && [ -n "$l" ] && [ "$l" != "$1" ] && return 0; sleep 0.1; done
  return 1
}
old_leader=$(leader_id)
if [ -n "$old_leader" ] && [ -n "${port[$old_leader]:-}" ]; then
  check "prestop.sh of the leader (node $old_leader) exits 0" pod_script "mussikon-$((old_leader - 1))" \
    "${port[$old_leader]}" "$work/voter$old_leader" prestop.sh
  check "another voter leads" led_by_other "$old_leader"
  check "writes go on" write pod-8
else
  ko "the leader is one of the voters ($old_leader)"
fi

echo "== the restore Job (deploy/k8s/restore) on the backup, as docs/operations.md says"
# Scale to 0, run the Job on pod 0's volume, delete the other voters' volumes, scale back to 3.
restore_job() {
  local dir=$1
  shift
  env -i PATH="$PATH" MUSSIKON_DATA_DIR="$dir" BACKUP_DIR="$work/backups" \
    RESTORE_WORK_DIR="$work/restore-work" "$@" bash "$root/deploy/k8s/restore/restore-job.sh"
}
mkdir -p "$work/restore-work"
for n in 1 2 3; do stop "mussikon-$((n - 1))"; done
for p in "${!pid_of[@]}"; do stop "$p"; done
mapfile -t restore_env < <(grep -E '^[A-Z_]+=' deploy/k8s/restore/restore.env)
check "without RESTORE_CONFIRM it refuses and changes nothing" eval \
  '! restore_job "$work/voter1" "${restore_env[@]}" 2>/dev/null && test -s "$work/voter1/raft/node-id"'
check "on another voter's volume it refuses" eval \
  '! restore_job "$work/voter2" "${restore_env[@]}" RESTORE_CONFIRM=wipe-data-mussikon-0 2>/dev/null'
check "backup-job.sh wrote a SHA-256 sum that holds" eval \
  '(cd "$work/backups" && sha256sum --check --quiet "$(basename "$snap").sha256")'
if restore_job "$work/voter1" "${restore_env[@]}" RESTORE_CONFIRM=wipe-data-mussikon-0 >"$work/restore.log" 2>&1; then
  ok "restore-job.sh restores the newest backup into pod 0's volume, export identical"
else
  ko "restore-job.sh restores the newest backup into pod 0's volume, export identical"
  sed 's/^/        /' "$work/restore.log"
fi
rm -rf "$work/voter2" "$work/voter3"
for n in 1 2 3; do start "mussikon-$((n - 1))" "${port[$n]}" "${peer_port_of[$n]}" "$work/voter$n" voter; done
for _ in $(seq 1 100); do members >/dev/null 2>&1 && break; sleep 0.1; done
# led: some voter leads (retried for up to 10 s).
led() {
  local l
  for _ in $(seq 1 100); do l=$(leader_id 2>/dev/null) && [ -n "$l" ] && return 0; sleep 0.1; done
  return 1
}
check "the new cluster elects a leader among voters 1, 2, 3" led
for n in 1 2 3; do
  check "voter $n serves the 7 writes the backup holds" has_all "http://127.0.0.1:${port[$n]}" 7
done
check "the write made after the backup is not there (the RPO)" test \
  "$(api -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[1]}/v1/musicians/pod-8")" = 404
check "writes go on in the new cluster" write pod-9

echo "pod-scripts: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
