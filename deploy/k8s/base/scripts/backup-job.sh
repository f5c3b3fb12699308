#!/bin/bash
# Backup job (deploy/k8s/base/backup-cronjob.yaml): a consistent snapshot without stopping a
# serving node.
#   1. start a temporary node (BACKUP_NODE_ID) on an empty data directory;
#   2. add it to the cluster as a learner and wait until it has applied everything the leader
#      had committed when the job started;
#   3. remove it, stop it (SIGTERM: it flushes and exits), `mussikon export` its data directory;
#   4. keep the newest BACKUP_KEEP snapshots.
# Exits non-zero, leaving the previous backups untouched, when any step fails.
set -euo pipefail
# shellcheck source=deploy/k8s/base/scripts/cluster.sh
. "$(dirname "$0")/cluster.sh"
: "${BACKUP_DIR:?}" "${BACKUP_NODE_ID:?}" "${CLUSTER_URL:?}" "${POD_IP:?}" "${MUSSIKON_DATA_DIR:?}"
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

MUSSIKON_NODE_ID="$BACKUP_NODE_ID" mussikon serve >/tmp/serve.out 2>/tmp/serve.err &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' EXIT
until grep -q '^listening on ' /tmp/serve.out; do
  kill -0 "$pid" || { cat /tmp/serve.err >&2; exit 1; }
  sleep 0.5
done
cluster_join "$CLUSTER_URL" "$token" "$BACKUP_NODE_ID" "$POD_IP:8080"

deadline=$(( $(date +%s) + 1800 ))
while :; do
  applied=$(http_get "http://127.0.0.1:8080/metrics" | metric mussikon_raft_applied_index)
  [ "$applied" -ge "$target" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || { echo "learner stuck at $applied < $target" >&2; exit 1; }
  sleep 2
done
echo "caught up: applied $applied >= $target"
cluster_remove "$CLUSTER_URL" "$token" "$BACKUP_NODE_ID" || true
kill -TERM "$pid"; wait "$pid"; trap - EXIT

name="mussikon-$(date -u +%Y%m%dT%H%M%SZ).snap"
mussikon export --data-dir "$MUSSIKON_DATA_DIR" --out "$BACKUP_DIR/$name"
ls -1t "$BACKUP_DIR"/mussikon-*.snap | tail -n +"$((keep + 1))" | xargs -r rm -f
echo "backup written: $BACKUP_DIR/$name"
