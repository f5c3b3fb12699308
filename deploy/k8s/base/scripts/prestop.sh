#!/bin/bash
# preStop of every MussikOn pod: drain, hand leadership over, leave (learners only).
# 1. Drain: the pod is already out of the Services' endpoints once terminating starts; wait for
#    the ingress controller and kube-proxy to notice (DRAIN_S, 5 s) before the server stops
#    accepting.
# 2. Leadership: if this node leads, it hands leadership over (`mussikon cluster step-down`), so
#    the next leader is elected before the SIGTERM, with no write failed, instead of after an
#    election timeout with the writes in flight failed.
# 3. Learners (pods mussikon-replica-*) remove themselves from the membership so the leader
#    stops replicating to them, then mark their data directory: a removed node's id is never
#    reused, so the next start on it clears it and draws a new id (MUSSIKON_NODE_ID=auto).
# Bounded: the whole hook finishes within 30 s of the 60 s termination grace period.
set -u
# shellcheck source=deploy/k8s/base/scripts/cluster.sh
. "$(dirname "$0")/cluster.sh"
sleep "${DRAIN_S:-5}"
token=$(admin_token "prestop-${HOSTNAME:-node}" 5m 2>/dev/null) || token=""
cluster_step_down "$LOCAL_URL" "$token" || true
case "${HOSTNAME:-}" in
  mussikon-replica-*)
    if node_id=$(data_dir_node_id) && cluster_remove "$CLUSTER_URL" "$token" "$node_id"; then
      mark_removed
    fi ;;
esac
exit 0
