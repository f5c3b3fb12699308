#!/bin/bash
# Restore job (deploy/k8s/restore/): makes the data directory it mounts, the lowest voter's
# volume, the first state of a NEW cluster from a backup (docs/operations.md, "Restore from a
# backup"; the same steps as deploy/scripts/restore.sh --cluster --force):
#   1. refuses unless RESTORE_CONFIRM is `wipe-data-mussikon-0`, and unless the directory is
#      empty or belongs to the lowest id of VOTER_IDS (raft/node-id): the node that restores
#      must be the one whose first start begins the new cluster;
#   2. picks BACKUP_FILE in BACKUP_DIR (`latest`: the newest mussikon-*.snap) and checks its
#      SHA-256 sum when a .sha256 file is beside it;
#   3. removes the directory's Raft state (raft/), runs `mussikon restore --cluster --force`
#      (which rebuilds the search index and marks the directory for the new cluster's first
#      start), exports the result and requires it byte-identical to the backup.
# Exits non-zero, naming what is wrong, when any step fails; the directory is untouched when
# step 1 or 2 fails.
set -euo pipefail
: "${MUSSIKON_DATA_DIR:?}" "${BACKUP_DIR:?}"
data=$MUSSIKON_DATA_DIR
work="${RESTORE_WORK_DIR:-/tmp}"
fail() { echo "restore-job: $*" >&2; exit 1; }

[ "${RESTORE_CONFIRM:-}" = wipe-data-mussikon-0 ] ||
  fail "RESTORE_CONFIRM is not wipe-data-mussikon-0: set it in restore.env to replace the data of $data"
lowest=$(tr ',' '\n' <<<"${VOTER_IDS:-1,2,3}" | sort -n | head -1)
if [ -f "$data/raft/node-id" ]; then
  id=$(tr -d '[:space:]' <"$data/raft/node-id")
  [ "$id" = "$lowest" ] ||
    fail "$data belongs to node $id, not to node $lowest (the lowest of VOTER_IDS): mount that node's volume"
fi

case "${BACKUP_FILE:-latest}" in
  latest) snap=$(ls -1t "$BACKUP_DIR"/mussikon-*.snap 2>/dev/null | head -1 || true) ;;
  */*) fail "BACKUP_FILE is a file name in $BACKUP_DIR, not a path: ${BACKUP_FILE}" ;;
  *) snap="$BACKUP_DIR/$BACKUP_FILE" ;;
esac
[ -n "$snap" ] && [ -f "$snap" ] || fail "no backup ${BACKUP_FILE:-latest} in $BACKUP_DIR"
if [ -f "$snap.sha256" ]; then
  (cd "$(dirname "$snap")" && sha256sum --check --quiet "$(basename "$snap").sha256") ||
    fail "$snap does not match its SHA-256 sum"
  echo "checksum of $snap verified"
fi

echo "restoring $snap into $data as the first state of a new cluster (node $lowest)"
rm -rf "$data/raft"
mussikon restore --data-dir "$data" --in "$snap" --force --cluster
check="$work/restore-check.snap"
mussikon export --data-dir "$data" --out "$check" >/dev/null
if ! cmp -s "$snap" "$check"; then
  rm -f "$check"
  fail "$data does not hold the state of $snap (its export differs)"
fi
rm -f "$check"
echo "restored: $data holds exactly the state of $snap; delete the other voters' PVCs, then scale the StatefulSet mussikon back up"
