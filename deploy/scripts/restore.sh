#!/usr/bin/env bash
# Restores a backup into a data directory and proves it:
#   deploy/scripts/restore.sh BACKUP.snap DATA_DIR [--force] [--cluster]
# Checks the SHA-256 sum when BACKUP.snap.sha256 exists, runs `mussikon restore` (which
# rebuilds the search index), then exports the restored directory and requires it to be
# byte-identical to the backup. The node using DATA_DIR must be stopped. For a cluster, pass
# --cluster and restore into ONE node's directory, the lowest id of MUSSIKON_PEERS: its first
# start begins a NEW cluster with the restored data; the other members start empty (or join)
# and receive it as a snapshot (docs/operations.md, "Restore from a backup").
set -euo pipefail
usage="usage: restore.sh BACKUP.snap DATA_DIR [--force] [--cluster]"
snap="${1:?$usage}"
data_dir="${2:?$usage}"
flags=()
for flag in "${@:3}"; do
  case "$flag" in
    --force | --cluster) flags+=("$flag") ;;
    *) echo "restore.sh: unknown option $flag; $usage" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${MUSSIKON_BIN:-$(command -v mussikon || echo "$here/target/release/mussikon")}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

if [ -f "$snap.sha256" ]; then
  (cd "$(dirname "$snap")" && sha256sum --check --quiet "$(basename "$snap").sha256")
fi
"$bin" restore --data-dir "$data_dir" --in "$snap" "${flags[@]}"
"$bin" export --data-dir "$data_dir" --out "$scratch/check.snap" >/dev/null
if ! cmp -s "$snap" "$scratch/check.snap"; then
  echo "restore.sh: $data_dir does not hold the state of $snap (its export differs)" >&2
  exit 1
fi
echo "restore.sh: $data_dir holds exactly the state of $snap (export identical)"
