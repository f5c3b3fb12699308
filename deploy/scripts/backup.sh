#!/usr/bin/env bash
# Takes a verified backup of a STOPPED node's data directory:
#   deploy/scripts/backup.sh DATA_DIR OUT.snap
# 1. `mussikon export` writes the snapshot atomically (temp file, fsync, rename);
# 2. verification: the snapshot is restored into a scratch directory and exported again, and
#    the two exports must be byte-identical (export is deterministic: same state, same bytes),
#    so a backup that would not restore to the same state is reported, not kept;
# 3. a SHA-256 sum is written beside it (OUT.snap.sha256).
# A data directory serves one process at a time: stop the node first (in a 3-node cluster stop
# one follower: two voters keep the quorum; docs/operations.md, "Backups"). Without stopping any
# node, the Kubernetes CronJob uses a temporary learner instead (deploy/k8s/base/scripts).
# MUSSIKON_BIN overrides the binary (default: mussikon on PATH, else target/release/mussikon).
set -euo pipefail
data_dir="${1:?usage: backup.sh DATA_DIR OUT.snap}"
out="${2:?usage: backup.sh DATA_DIR OUT.snap}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${MUSSIKON_BIN:-$(command -v mussikon || echo "$here/target/release/mussikon")}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

"$bin" export --data-dir "$data_dir" --out "$out"
"$bin" restore --data-dir "$scratch/data" --in "$out" >/dev/null
"$bin" export --data-dir "$scratch/data" --out "$scratch/check.snap" >/dev/null
if ! cmp -s "$out" "$scratch/check.snap"; then
  echo "backup.sh: $out does not restore to the same state (the re-export differs); not kept" >&2
  rm -f "$out"
  exit 1
fi
(cd "$(dirname "$out")" && sha256sum "$(basename "$out")" >"$(basename "$out").sha256")
echo "backup.sh: $out verified (restore + re-export identical, $(wc -c <"$out") bytes)"
