#!/bin/bash
# Backup job (deploy/k8s/base/backup-cronjob.yaml): a consistent snapshot without stopping a
# serving node.
#   1. start a temporary node on an empty data directory, with a fresh id it draws itself
#      (MUSSIKON_NODE_ID=auto: a removed node's id is never reused, so each run needs a new one);
#   2. add it to the cluster as a learner (at the pod's IP and its peer port) and wait until it
#      has applied everything the leader had committed when the job started;
#   3. remove it, stop it (SIGTERM: it flushes and exits), `mussikon export` its data directory
#      and write the snapshot's SHA-256 sum beside it (NAME.snap.sha256);
#   4. keep the newest BACKUP_KEEP snapshots (and their sums).
# Exits non-zero, leaving the previous backups untouched, when any step fails.
set -euo pipefail
# shellcheck source=deploy/k8s/base/scripts/cluster.sh
. "$(dirname "$0")/cluster.sh"
: "${BACKUP_DIR:?}" "${CLUSTER_URL:?}" "${POD_IP:?}" "${MUSSIKON_DATA_DIR:?}"
keep="${BACKUP_KEEP:-14}"
token=$(admin_token backup-job 1h)

# GET a URL's body with bash's /dev/tcp (the image has no curl). Prints the body.
http_get() {
  local hostport=${1#http://}; hostport=${hostport%%/*}
  local path=/${1#http://*/}
  exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}"
  printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}
metric() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { v = $2 } END { printf "%d\n", v }'; }

target=$(http_get "$CLUSTER_URL/metrics" | metric mussikon_raft_commit_index)
echo "leader commit index at start: $target"

work="${BACKUP_WORK_DIR:-/tmp}"
MUSSIKON_NODE_ID=auto mussikon serve >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' EXIT
until grep -q '^listening on ' "$work/serve.out"; do
  kill -0 "$pid" || { cat "$work/serve.err" >&2; exit 1; }
  sleep 0.5
done
node_id=$(data_dir_node_id 10)
echo "temporary node $node_id joins as a learner"
cluster_join "$CLUSTER_URL" "$token" "$node_id" "$POD_IP:$(peer_port)"

deadline=$(( $(date +%s) + 1800 ))
while :; do
  applied=$(http_get "$LOCAL_URL/metrics" | metric mussikon_raft_applied_index)
  [ "$applied" -ge "$target" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || { echo "learner stuck at $applied < $target" >&2; exit 1; }
  sleep 2
done
echo "caught up: applied $applied >= $target"
cluster_remove "$CLUSTER_URL" "$token" "$node_id" || true
kill -TERM "$pid"; wait "$pid"; trap - EXIT

name="mussikon-$(date -u +%Y%m%dT%H%M%SZ).snap"
mussikon export --data-dir "$MUSSIKON_DATA_DIR" --out "$BACKUP_DIR/$name"
# Its SHA-256 sum beside it, which the restore job checks (deploy/k8s/restore/restore-job.sh).
(cd "$BACKUP_DIR" && sha256sum "$name" >"$name.sha256")
ls -1t "$BACKUP_DIR"/mussikon-*.snap | tail -n +"$((keep + 1))" | while IFS= read -r old; do
  rm -f "$old" "$old.sha256"
done
echo "backup written: $BACKUP_DIR/$name"
