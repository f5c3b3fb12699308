#!/usr/bin/env bash
# Context switches per second of each thread name of a running process (voluntary and not,
# summed over the threads that share a name), over SECONDS: how often each kind of thread is
# woken. Reads /proc/PID/task/*/status twice; threads that end meanwhile are left out.
#
# Usage:
#   benches/thread-wakeups.sh PID [SECONDS]     # e.g. a follower's pid during benches/cluster.sh
set -euo pipefail
pid="${1:?usage: thread-wakeups.sh PID [SECONDS]}"
secs="${2:-5}"
sample() {
  local t
  for t in /proc/"$pid"/task/*; do
    # A thread may end between the glob and the reads.
    { printf '%s ' "$(cat "$t/comm")"
      awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n }' "$t/status"; } 2>/dev/null || true
  done | awk 'NF == 2 { c[$1] += $2 } END { for (k in c) print k, c[k] }' | sort
}
a=$(mktemp)
b=$(mktemp)
trap 'rm -f "$a" "$b"' EXIT
sample >"$a"
sleep "$secs"
sample >"$b"
join "$a" "$b" | awk -v s="$secs" '{ printf "%-20s %8d/s\n", $1, ($3 - $2) / s }' | sort -k2 -nr
