#!/usr/bin/env bash
# Property-based API testing: schemathesis reads tesserad's own
# /openapi.json and throws generated requests at every operation. Fails on
# any 5xx and on any response that does not conform to the document
# (status code, content type, headers, body schema). Bounded to ~2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! python3 -c 'import schemathesis' 2>/dev/null; then
  python3 -m pip install -q schemathesis
fi
# The console script, found without relying on PATH shims being refreshed.
st="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/st"
[[ -x "$st" ]] || st=$(command -v st)

cargo build -q -p tesserad
work=$(mktemp -d)
key="tsk_schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
target/debug/tesserad serve --store memory: --data-dir "$work" --api-key "$key" \
  --listen 127.0.0.1:0 --log-level warn >"$work/out" 2>"$work/err" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^tesserad listening on \(http[^ ]*\).*/\1/p' "$work/out")
  [[ -n "$url" ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { echo "tesserad did not start" >&2; cat "$work/err" >&2; exit 1; }

"$st" run "$url/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-time 100 \
  --request-timeout 10 \
  --workers 2 \
  --suppress-health-check all \
  --no-color

curl -fsS "$url/readyz" >/dev/null
echo "schemathesis: no server errors, every response conforms; tesserad still ready"
