#!/bin/bash
# postStart of a read replica: ask the cluster (through the voters' Service) to add this pod
# as a learner, retrying while the server starts. Node id: the one the server drew at its first
# start on this data directory (MUSSIKON_NODE_ID=auto) and keeps in it; address: the pod's
# stable DNS name on the headless Service mussikon-replica-peers (LEARNER_HOST overrides) with
# its peer port (7000 from the ConfigMap's MUSSIKON_CLUSTER_PEER_LISTEN). A learner that
# vanished without leaving at this address is replaced by this one.
# If the cluster refuses the id because it was removed before (the pod was stopped and its
# preStop could not mark the directory), the directory is marked and the hook fails: the
# container restarts, clears the directory and draws a new id.
set -u
# shellcheck source=deploy/k8s/base/scripts/cluster.sh
. "$(dirname "$0")/cluster.sh"
addr="${LEARNER_HOST:-${HOSTNAME}.mussikon-replica-peers.mussikon.svc.cluster.local}:$(peer_port)"
node_id=$(data_dir_node_id 120) || { echo "the server wrote no node id in $MUSSIKON_DATA_DIR" >&2; exit 1; }
token=$(admin_token "join-${HOSTNAME}" 10m) || exit 1
for _ in $(seq 1 60); do
  if out=$(cluster_join "$CLUSTER_URL" "$token" "$node_id" "$addr"); then
    echo "joined the cluster as learner $node_id ($addr)"
    exit 0
  fi
  case "$out" in
    *"never reused"*)
      echo "learner id $node_id was removed before: marking $MUSSIKON_DATA_DIR for a new id" >&2
      mark_removed
      exit 1 ;;
  esac
  sleep 2
done
echo "could not join the cluster as learner $node_id ($addr): $out" >&2
exit 1
