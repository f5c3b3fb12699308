#!/usr/bin/env bash
# Restores a backup into a data directory and proves it:
#   deploy/scripts/restore.sh BACKUP.snap DATA_DIR [--force]
# Checks the SHA-256 sum when BACKUP.snap.sha256 exists, runs `mussikon restore` (which
# rebuilds the search index), then exports the restored directory and requires it to be
# byte-identical to the backup. The node using DATA_DIR must be stopped. In a cluster, restore
# into ONE fresh node and start it alone as a new single-voter cluster, then add the others
# (docs/operations.md, "Restore from a backup").
set -euo pipefail
snap="${1:?usage: restore.sh BACKUP.snap DATA_DIR [--force]}"
data_dir="${2:?usage: restore.sh BACKUP.snap DATA_DIR [--force]}"
force=()
[ "${3:-}" = --force ] && force=(--force)
here="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${MUSSIKON_BIN:-$(command -v mussikon || echo "$here/target/release/mussikon")}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

if [ -f "$snap.sha256" ]; then
  (cd "$(dirname "$snap")" && sha256sum --check --quiet "$(basename "$snap").sha256")
fi
"$bin" restore --data-dir "$data_dir" --in "$snap" "${force[@]}"
"$bin" export --data-dir "$data_dir" --out "$scratch/check.snap" >/dev/null
if ! cmp -s "$snap" "$scratch/check.snap"; then
  echo "restore.sh: $data_dir does not hold the state of $snap (its export differs)" >&2
  exit 1
fi
echo "restore.sh: $data_dir holds exactly the state of $snap (export identical)"
