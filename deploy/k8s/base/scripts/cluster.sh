#!/bin/bash
# The one place where the pod scripts call the cluster CLI (sourced by learner-join.sh,
# prestop.sh and backup-job.sh): `mussikon cluster --node HOST:PORT status|join|remove|step-down`
# (docs/cluster.md), the admin token in MUSSIKON_TOKEN rather than a flag, so it never shows in
# the process list. URLs are given as http://HOST:PORT and passed to --node without the
# scheme. Every call is bounded by `timeout`.
#
# Where things are (Kubernetes defaults; deploy/scripts/pod-scripts.sh sets them
# to run these scripts against a cluster on 127.0.0.1):
#   CLUSTER_URL  the voters' client Service            (http://mussikon:8080)
#   LOCAL_URL    this pod's own server's API           (http://127.0.0.1:8080)
#   MUSSIKON_CLUSTER_PEER_LISTEN  where this pod's server takes peer RPCs (the ConfigMap's
#                0.0.0.0:7000); unset: on its API port
#   MUSSIKON_DATA_DIR  this pod's data directory       (/var/lib/mussikon)
# The CLI's --node is always an API address; a join's --addr is always a peer address.
CLUSTER_URL="${CLUSTER_URL:-http://mussikon:8080}"
LOCAL_URL="${LOCAL_URL:-http://127.0.0.1:8080}"
MUSSIKON_DATA_DIR="${MUSSIKON_DATA_DIR:-/var/lib/mussikon}"

# peer_port: the port at which the other nodes reach this pod's server with peer RPCs: that of
# MUSSIKON_CLUSTER_PEER_LISTEN, else the API's (LOCAL_URL's).
peer_port() {
  if [ -n "${MUSSIKON_CLUSTER_PEER_LISTEN:-}" ]; then
    echo "${MUSSIKON_CLUSTER_PEER_LISTEN##*:}"
  else
    echo "${LOCAL_URL##*:}"
  fi
}

# admin_token SUBJECT TTL: a short-lived admin token signed with the mounted JWT secret.
admin_token() {
  mussikon token --sub "$1" --role admin --ttl "$2" \
    --secret-file "${MUSSIKON_AUTH_SECRET_FILE:-/etc/mussikon/secrets/jwt.secret}"
}
# cluster_join URL TOKEN ID ADDR: add node ID at peer address ADDR (host:port) as a learner,
# asking the node at URL (an API address). Prints the
# CLI's output; a refusal because ID was removed before says "never reused".
cluster_join() {
  MUSSIKON_TOKEN="$2" timeout 600 mussikon cluster --node "${1#http://}" join --id "$3" --addr "$4" --learner 2>&1
}
# cluster_remove URL TOKEN ID: remove node ID from the membership.
cluster_remove() { MUSSIKON_TOKEN="$2" timeout 30 mussikon cluster --node "${1#http://}" remove --id "$3"; }
# cluster_step_down URL TOKEN: if the node at URL leads, it hands leadership over to the
# best-placed voter (writes wait meanwhile, none fails) and answers once the new leader is
# known; otherwise nothing to do.
cluster_step_down() { MUSSIKON_TOKEN="$2" timeout 15 mussikon cluster --node "${1#http://}" step-down; }
# data_dir_node_id [WAIT_S]: the node id this pod's server keeps in its data directory (written
# at its start; with MUSSIKON_NODE_ID=auto, drawn there), waiting up to WAIT_S seconds (default
# 0) for the server to write it. Fails when there is none.
data_dir_node_id() {
  local file="$MUSSIKON_DATA_DIR/raft/node-id" waited=0
  until [ -s "$file" ]; do
    [ "$waited" -lt "${1:-0}" ] || return 1
    sleep 1; waited=$((waited + 1))
  done
  tr -d '[:space:]' <"$file"
}
# mark_removed: mark this pod's data directory as a removed node's, so the next start under
# MUSSIKON_NODE_ID=auto clears it and draws a new id (a removed node's id is never reused).
mark_removed() { : >"$MUSSIKON_DATA_DIR/raft/retired"; }
