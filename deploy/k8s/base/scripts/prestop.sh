#!/bin/bash
# preStop of every MussikOn pod: drain, hand leadership over, leave (learners only).
# 1. Drain: the pod is already out of the Services' endpoints once terminating starts; wait for
#    the ingress controller and kube-proxy to notice (5 s) before the server stops accepting.
# 2. Leadership: if this node leads, ask it to step down (`mussikon cluster step-down`, when the
#    binary has it) so the next leader is elected before the SIGTERM, not after an election
#    timeout. Without the subcommand the server's own SIGTERM handling applies.
# 3. Learners (node id > 100) remove themselves from the membership so the leader stops
#    replicating to them.
# Bounded: the whole hook finishes within 30 s of the 60 s termination grace period.
set -u
# shellcheck source=deploy/k8s/base/scripts/cluster.sh
. "$(dirname "$0")/cluster.sh"
url="http://127.0.0.1:8080"
node_id=""
case "${HOSTNAME:-}" in
  mussikon-replica-*) node_id=$(( ${HOSTNAME##*-} + 101 )) ;;
  mussikon-*) node_id=$(( ${HOSTNAME##*-} + 1 )) ;;
esac
sleep 5
token=$(admin_token "prestop-${HOSTNAME:-node}" 5m 2>/dev/null) || token=""
cluster_step_down "$url" "$token" || true
if [ -n "$node_id" ] && [ "$node_id" -gt 100 ]; then
  cluster_remove "http://mussikon:8080" "$token" "$node_id" || true
fi
exit 0
