#!/bin/bash
# postStart of a read replica: ask the cluster (through the voters' Service) to add this pod
# as a learner, retrying while the server starts. Node id = ordinal + 101; address = the pod's
# stable DNS name on the headless Service mussikon-replica-peers.
set -u
# shellcheck source=deploy/k8s/base/scripts/cluster.sh
. "$(dirname "$0")/cluster.sh"
node_id=$(( ${HOSTNAME##*-} + 101 ))
addr="${HOSTNAME}.mussikon-replica-peers.mussikon.svc.cluster.local:8080"
token=$(admin_token "join-${HOSTNAME}" 10m) || exit 1
for _ in $(seq 1 60); do
  if cluster_join "http://mussikon:8080" "$token" "$node_id" "$addr"; then
    exit 0
  fi
  sleep 2
done
echo "could not join the cluster as learner $node_id ($addr)" >&2
exit 1
