#!/usr/bin/env bash
# Validates the served OpenAPI document with an independent validator (openapi-spec-validator,
# Python), as a second opinion next to the Rust tests in server/tests/api/openapi.rs.
#
# Usage:
#   server/tests/openapi_check.sh                 # starts target/debug/mussikon on a free port
#   server/tests/openapi_check.sh http://HOST:PORT  # checks a server that is already running
#
# Installs openapi-spec-validator with pip when it is missing (PyPI is reachable from CI).
# Exits non-zero when the document is invalid or cannot be fetched.
set -euo pipefail
cd "$(dirname "$0")/../.."

python3 -c 'import openapi_spec_validator' 2>/dev/null ||
  python3 -m pip install --quiet 'openapi-spec-validator>=0.7,<0.9'

source server/tests/lib/serve.sh
url="${1:-}"
if [ -z "$url" ]; then
  bin="${CARGO_TARGET_DIR:-target}/debug/mussikon"
  [ -x "$bin" ] || cargo build -p mussikon-server --bin mussikon
  start_server "$bin"
fi

python3 - "$url/openapi.json" <<'EOF'
import json, sys, urllib.request
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

url = sys.argv[1]
with urllib.request.urlopen(url, timeout=10) as resp:
    ctype = resp.headers.get("content-type", "")
    doc = json.load(resp)
if not ctype.startswith("application/json"):
    sys.exit(f"{url}: content-type is {ctype!r}, want application/json")
if not str(doc.get("openapi", "")).startswith("3.1"):
    sys.exit(f"{url}: openapi is {doc.get('openapi')!r}, want 3.1.x")
try:
    validate(doc)
except OpenAPIValidationError as e:
    sys.exit(f"{url}: invalid OpenAPI document: {e}")
ops = sum(1 for item in doc["paths"].values() for m in item if m in
          ("get", "put", "post", "delete", "patch", "head", "options", "trace"))
print(f"openapi_check: {url} is valid OpenAPI {doc['openapi']} ({len(doc['paths'])} paths, {ops} operations)")
EOF
