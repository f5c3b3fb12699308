#!/bin/bash
# The one place where the pod scripts call the cluster CLI (sourced by learner-join.sh,
# prestop.sh and backup-job.sh): `mussikon cluster --node HOST:PORT status|join|remove`
# (docs/cluster.md), the admin token in MUSSIKON_TOKEN rather than a flag, so it never shows in
# the process list. URLs are given as http://HOST:PORT and passed to --node without the
# scheme. Every call is bounded by `timeout`.

# admin_token SUBJECT TTL: a short-lived admin token signed with the mounted JWT secret.
admin_token() {
  mussikon token --sub "$1" --role admin --ttl "$2" \
    --secret-file "${MUSSIKON_AUTH_SECRET_FILE:-/etc/mussikon/secrets/jwt.secret}"
}
# cluster_join URL TOKEN ID ADDR: add node ID at ADDR (host:port) as a learner.
cluster_join() {
  MUSSIKON_TOKEN="$2" timeout 600 mussikon cluster --node "${1#http://}" join --id "$3" --addr "$4" --learner
}
# cluster_remove URL TOKEN ID: remove node ID from the membership.
cluster_remove() { MUSSIKON_TOKEN="$2" timeout 30 mussikon cluster --node "${1#http://}" remove --id "$3"; }
# cluster_step_down URL TOKEN: ask the node at URL to hand leadership over, when the binary can
# (openraft 0.9 has no leader transfer, so today's binary has no step-down: a stopping leader's
# followers elect a new one within 5-8 heartbeats).
cluster_step_down() {
  if mussikon cluster --help 2>/dev/null | grep -q 'step-down'; then
    MUSSIKON_TOKEN="$2" timeout 15 mussikon cluster --node "${1#http://}" step-down
  fi
}
