#!/usr/bin/env bash
# The session layer's cost over HTTP: wrk (64 connections) against the same
# axum app with Tessera's session layer on a memory store and without any
# sessions, route by route, on loopback. Bounded: DURATION per route and app
# (default 5s), so about 6 × DURATION in all.
#
#   bench/web/run.sh              # POST /login, GET /me, POST /incr
#   DURATION=10s bench/web/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${DURATION:-5s}"
connections="${CONNECTIONS:-64}"
port="${PORT:-7480}"
base="http://127.0.0.1:$port"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p tessera-bench-web
bin=target/release/tessera-bench-web

work=$(mktemp -d)
server=""
cleanup() {
  [[ -n "$server" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

start() {
  "$bin" --listen "127.0.0.1:$port" --sessions "$1" &
  server=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$base/csrf" && return 0
    sleep 0.1
  done
  echo "the bench server did not start" >&2
  exit 1
}

stop() {
  kill "$server" && wait "$server" 2>/dev/null || true
  server=""
}

# A wrk script sending METHOD with one of the prepared sessions per request
# (round-robin), or with no cookie when none were prepared.
script() {
  local method="$1" sessions="$2" out="$work/$method-$RANDOM.lua"
  {
    echo "wrk.method = \"$method\""
    echo "local sessions = {"
    [[ -s "$sessions" ]] && cat "$sessions"
    echo "}"
    cat <<'LUA'
local n = 0
request = function()
  if #sessions == 0 then return wrk.format() end
  n = n + 1
  local s = sessions[(n % #sessions) + 1]
  return wrk.format(nil, nil, { ["Cookie"] = s[1], ["X-CSRF-Token"] = s[2] })
end
LUA
  } >"$out"
  echo "$out"
}

# Signs in `connections` clients and records their cookie and CSRF token.
prepare() {
  local out="$work/sessions-$1.lua"
  : >"$out"
  for _ in $(seq "$connections"); do
    cookie=$(curl -s -D - -o /dev/null -X POST "$base/login" | tr -d '\r' \
      | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | tail -1)
    token=$(curl -s -H "Cookie: $cookie" "$base/csrf")
    echo "  {\"$cookie\", \"$token\"}," >>"$out"
  done
  echo "$out"
}

rps() {
  wrk -t2 -c"$connections" -d"$duration" -s "$2" "$base$1" | awk '/^Requests\/sec:/ {print $2}'
}

declare -A result
for app in none tessera; do
  start "$app"
  sessions=$(prepare "$app")
  result[$app,login]=$(rps /login "$(script POST /dev/null)")
  result[$app,me]=$(rps /me "$(script GET "$sessions")")
  result[$app,incr]=$(rps /incr "$(script POST "$sessions")")
  stop
done

printf '\n%-12s %14s %14s %8s\n' route "no sessions" "tessera" ratio
for route in login me incr; do
  none=${result[none,$route]}
  with=${result[tessera,$route]}
  ratio=$(awk -v a="$with" -v b="$none" 'BEGIN { printf "%.1f%%", 100 * a / b }')
  label=$([[ $route == me ]] && echo "GET /me" || echo "POST /$route")
  printf '%-12s %12s/s %12s/s %8s\n' "$label" "$none" "$with" "$ratio"
done
echo "(wrk -t2 -c$connections -d$duration on loopback; memory store)"
