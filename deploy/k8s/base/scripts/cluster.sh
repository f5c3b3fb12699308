#!/bin/bash
# The one place where the pod scripts call the cluster CLI (sourced by learner-join.sh,
# prestop.sh and backup-job.sh). Written against the interface the cluster work promises:
# `mussikon cluster status|join|remove` and POST/DELETE /v1/cluster/members. The exact spelling
# below (positional id and address, --learner, --url, the admin token in MUSSIKON_TOKEN rather
# than a flag, so it never shows in the process list) is the assumption to check when that work
# lands: adjust it here only. Every call is bounded by `timeout`.

# admin_token SUBJECT TTL: a short-lived admin token signed with the mounted JWT secret.
admin_token() {
  mussikon token --sub "$1" --role admin --ttl "$2" \
    --secret-file "${MUSSIKON_AUTH_SECRET_FILE:-/etc/mussikon/secrets/jwt.secret}"
}
# cluster_join URL TOKEN ID ADDR: add node ID at ADDR (host:port) as a learner.
cluster_join() { MUSSIKON_TOKEN="$2" timeout 30 mussikon cluster join "$3" "$4" --learner --url "$1"; }
# cluster_remove URL TOKEN ID: remove node ID from the membership.
cluster_remove() { MUSSIKON_TOKEN="$2" timeout 10 mussikon cluster remove "$3" --url "$1"; }
# cluster_step_down URL TOKEN: ask the node at URL to hand leadership over, when the binary can.
cluster_step_down() {
  if mussikon cluster --help 2>/dev/null | grep -q 'step-down'; then
    MUSSIKON_TOKEN="$2" timeout 15 mussikon cluster step-down --url "$1"
  fi
}
