#!/usr/bin/env bash
# Load benchmark of tesserad (loopback only, bounded in time): validate,
# create and login with 64 connections, on each store, beside a bare axum
# hello-world built in the same run as the reference.
#
#   bench/server.sh                 memory (and embedded when built in), 10 s per case
#   DURATION=5s bench/server.sh     shorter runs
#   STORES="memory:" bench/server.sh
#   STORES="redis://127.0.0.1:6379 redis://127.0.0.1:6379#near-cache" bench/server.sh
#
# Prints one line per case: requests/s, p50 and p99 latency (from wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

cargo build -q --release -p tesserad --bin tesserad --example hello_axum
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

STORES="${STORES:-memory: embedded:$work/embedded}"

# Waits for "… listening on URL" in a log file; prints URL.
wait_url() {
  local file=$1 url=""
  for _ in $(seq 1 200); do
    url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$file" | head -n1)
    [[ -n "$url" ]] && { echo "$url"; return 0; }
    grep -q "^tesserad: " "$file" && break
    sleep 0.05
  done
  echo "server did not start: $(cat "$file")" >&2
  return 1
}

# Runs wrk and prints "name  req/s  p50  p99".
measure() {
  local name=$1 url=$2 script=${3:-}
  local args=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency)
  [[ -n "$script" ]] && args+=(-s "$script")
  local out
  out=$(wrk "${args[@]}" "$url")
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "$name: $(grep Non-2xx <<<"$out")" >&2
  fi
  printf '%-28s %12s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
}

post_script() {
  local file=$1 body=$2
  cat >"$file" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA
}

key="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

echo "wrk: $THREADS threads, $CONNECTIONS connections, $DURATION per case, loopback; $(nproc) cores shared with the server"

"$bin/examples/hello_axum" 127.0.0.1:0 >"$work/hello.log" 2>&1 &
pids+=($!)
hello=$(wait_url "$work/hello.log")
measure "axum hello-world (reference)" "$hello/"

for spec in $STORES; do
  # `URL#near-cache` runs the store with --near-cache.
  store=${spec%%#*}
  label=${store%%:*}
  flags=()
  if [[ "$spec" == *"#near-cache" ]]; then
    label="$label+near-cache"
    flags+=(--near-cache)
  fi
  mkdir -p "$work/$label-data"
  "$bin/tesserad" serve --store "$store" --data-dir "$work/$label-data" --api-key "$key" \
    --listen 127.0.0.1:0 --log-level warn --anonymous-per-minute 0 "${flags[@]}" >"$work/$label.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  if ! url=$(wait_url "$work/$label.log" 2>/dev/null); then
    echo "$label: skipped ($(tail -n1 "$work/$label.log"))"
    continue
  fi

  token=$(curl -fsS -X POST "$url/v1/sessions" -H "Authorization: Bearer $key" \
    -d '{"subject":"bench","data":{"theme":"dark","cart":[1,2,3]}}' |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  post_script "$work/validate.lua" "{\"token\":\"$token\"}"
  post_script "$work/create.lua" '{"data":{"theme":"dark"}}'
  cat >"$work/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/sessions/login", nil, '{"subject":"user-' .. (n % 10000) .. '"}')
end
LUA
  measure "$label validate" "$url/v1/sessions/validate" "$work/validate.lua"
  measure "$label create" "$url/v1/sessions" "$work/create.lua"
  measure "$label login" "$url/v1/sessions/login" "$work/login.lua"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
