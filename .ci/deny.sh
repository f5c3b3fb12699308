#!/usr/bin/env bash
# Supply-chain check with cargo-deny (deny.toml at the repo root): RustSec advisories from the
# offline database, the license allow-list, duplicate versions (warnings), and sources.
#
# The advisory database cannot be fetched from these machines: it comes from the git bundle in
# ../shared/security (see its README), cloned once into cargo-deny's db-path under the folder
# name cargo-deny derives from the default database URL. A clean report therefore means "no
# advisory known as of the bundle's date" (printed below).
# Usage: bash .ci/deny.sh        Env: ADVISORY_DB_BUNDLE (path of the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${ADVISORY_DB_BUNDLE:-../shared/security/advisory-db.bundle}
db="$HOME/.cargo/advisory-dbs"
clone="$db/advisory-db-3157b0e258782691"
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
if [ ! -d "$clone" ]; then
  [ -f "$bundle" ] || { echo "advisory database bundle not found at $bundle (set ADVISORY_DB_BUNDLE)" >&2; exit 1; }
  mkdir -p "$db"
  git clone -q "$bundle" "$clone"
fi
echo "advisory database: $(git -C "$clone" log -1 --format=%s)"
cargo fetch --locked >/dev/null
cargo deny --offline check advisories licenses bans sources
