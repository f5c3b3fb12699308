#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), starting from its committed seed corpus
# (fuzz/corpus/TARGET, never modified: new inputs go to a scratch directory), and fails on the
# first crash, leak or timeout. A crashing input is saved under fuzz/artifacts/TARGET/; replay it
# with `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...`.
#
# Usage: bash fuzz/run.sh [SECONDS] [TARGET...]
# Env: FUZZ_PROFILE (release|dev, see below), FUZZ_SANITIZER (none|address, default none: the targets are safe Rust, so the smoke run
#      skips ASan's build and run cost; the long campaign uses address), FUZZ_KEEP (directory
#      to keep the grown corpora and logs in).
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets this stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}
shift || true
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}
# FUZZ_PROFILE=dev builds without optimizations (cargo fuzz --dev): a much cheaper fresh build,
# slower runs; what the CI smoke uses. Default: release (the campaigns).
profile=()
[ "${FUZZ_PROFILE:-release}" = dev ] && profile=(--dev)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build "${profile[@]}" -s "$sanitizer" --debug-assertions
scratch=${FUZZ_KEEP:-$(mktemp -d)}
status=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  # raft_rpc: the wire codec's memory limit follows the input (16 bytes per input byte, at
  # least 64 KiB; cluster/src/types.rs), so a small body never allocates a large declared length.
  malloc=512
  [ "$t" != raft_rpc ] || malloc=64
  mkdir -p "corpus/$t"
  printf '%-16s %4ss ... ' "$t" "$secs"
  if cargo fuzz run "${profile[@]}" -s "$sanitizer" --debug-assertions "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=60 -rss_limit_mb=2048 -malloc_limit_mb="$malloc" \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{print $2}' | tail -n 1)
    echo "ok ($runs runs)"
  else
    echo "FAILED"
    tail -n 40 "$log"
    status=1
  fi
done
[ -n "${FUZZ_KEEP:-}" ] || rm -rf "$scratch"
exit $status
