# Sourced by the shell checks and benches: start `mussikon serve` on a free port over a fresh
# data directory, and stop it on exit.
#
#   source server/tests/lib/serve.sh
#   start_server target/debug/mussikon --demo 200   # sets $url, $server_pid, $workdir
#
# The first stdout line of the server is `listening on IP:PORT`; a server that exits before
# saying so has its stderr printed and fails the script. `--demo` fills before listening, so a
# large N may take minutes: the wait is bounded by $SERVE_WAIT_S (default 3600).

server_pid=""
workdir="$(mktemp -d)"
cleanup_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup_server EXIT

start_server() {
  local bin="$1"
  shift
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$workdir/data" "$@" >"$workdir/out" 2>"$workdir/err" &
  server_pid=$!
  local tries=$(( ${SERVE_WAIT_S:-3600} * 10 ))
  for _ in $(seq 1 "$tries"); do
    if grep -q '^listening on ' "$workdir/out" 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$workdir/err" >&2; exit 1; fi
    sleep 0.1
  done
  local addr
  addr="$(sed -n 's/^listening on //p' "$workdir/out" | head -n 1)"
  [ -n "$addr" ] || { echo "the server did not say where it listens" >&2; exit 1; }
  url="http://$addr"
}
