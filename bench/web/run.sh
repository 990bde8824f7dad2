#!/usr/bin/env bash
# The session layer's cost over HTTP: wrk (64 connections) against the same
# axum app with Tessera's session layer on a memory store and without any
# sessions, route by route, on loopback. Both apps run side by side and the
# runs alternate between them (ROUNDS times, median reported), so load from
# elsewhere on the machine hits both alike. Bounded: 2 × 4 routes × ROUNDS
# runs of DURATION (defaults 3 × 3s: about 1.5 minutes).
#
#   bench/web/run.sh              # GET /hello (session untouched), POST /login, GET /me, POST /incr
#   DURATION=10s ROUNDS=5 bench/web/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${DURATION:-3s}"
rounds="${ROUNDS:-3}"
connections="${CONNECTIONS:-64}"
port="${PORT:-7480}"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p tessera-bench-web
bin=target/release/tessera-bench-web

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

declare -A base=([none]="http://127.0.0.1:$port" [tessera]="http://127.0.0.1:$((port + 1))")
declare -A server_pid=()
tick=$(getconf CLK_TCK)

start() {
  local app="$1" url="${base[$1]}"
  "$bin" --listen "${url#http://}" --sessions "$app" &
  pids+=($!)
  server_pid[$app]=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$url/csrf" && return 0
    sleep 0.1
  done
  echo "the $app bench server did not start" >&2
  exit 1
}

# Signs in `connections` clients and writes their cookie and CSRF token as
# Lua table entries.
prepare() {
  local url="${base[$1]}" out="$work/sessions-$1.lua"
  : >"$out"
  for _ in $(seq "$connections"); do
    cookie=$(curl -s -D - -o /dev/null -X POST "$url/login" | tr -d '\r' \
      | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | tail -1)
    token=$(curl -s -H "Cookie: $cookie" "$url/csrf")
    echo "  {\"$cookie\", \"$token\"}," >>"$out"
  done
}

# A wrk script sending METHOD, with the app's prepared sessions round-robin
# when `with_sessions` is 1, else with no cookie.
script() {
  local app="$1" method="$2" with_sessions="$3"
  local out="$work/$app-$method-$with_sessions.lua"
  {
    echo "wrk.method = \"$method\""
    echo "local sessions = {"
    if [[ $with_sessions == 1 ]]; then cat "$work/sessions-$app.lua"; fi
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

# One wrk run: "REQUESTS_PER_SECOND SERVER_CPU_MICROSECONDS_PER_REQUEST".
# The CPU time the server spent per request is steadier than throughput on
# a shared machine. Refuses a run with failed requests.
measure() {
  local app="$1" path="$2" lua="$3" report before after
  before=$(awk '{ print $14 + $15 }' "/proc/${server_pid[$app]}/stat")
  report=$(wrk -t2 -c"$connections" -d"$duration" -s "$lua" "${base[$app]}$path")
  after=$(awk '{ print $14 + $15 }' "/proc/${server_pid[$app]}/stat")
  if grep -qE 'Non-2xx|Socket errors' <<<"$report"; then
    echo "wrk saw failed requests on $app $path:" >&2
    echo "$report" >&2
    exit 1
  fi
  awk -v cpu=$((after - before)) -v tick="$tick" '
    /requests in/ { n = $1 }
    /^Requests\/sec:/ { rps = $2 }
    END { printf "%s %.2f\n", rps, cpu / tick * 1e6 / n }' <<<"$report"
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for app in none tessera; do
  start "$app"
  prepare "$app"
done

printf '\n%-12s %13s %13s %7s   %s\n' route "no sessions" tessera ratio "server CPU per request (none / tessera)"
for route in "GET /hello 1" "POST /login 0" "GET /me 1" "POST /incr 1"; do
  read -r method path with_sessions <<<"$route"
  declare -A rps=([none]="" [tessera]="") cpu=([none]="" [tessera]="")
  for _ in $(seq "$rounds"); do
    for app in none tessera; do
      read -r r c <<<"$(measure "$app" "$path" "$(script "$app" "$method" "$with_sessions")")"
      rps[$app]+=" $r"
      cpu[$app]+=" $c"
    done
  done
  none=$(median <<<"${rps[none]}")
  with=$(median <<<"${rps[tessera]}")
  ratio=$(awk -v a="$with" -v b="$none" 'BEGIN { printf "%.1f%%", 100 * a / b }')
  printf '%-12s %11s/s %11s/s %7s   %s µs / %s µs\n' "$method $path" "$none" "$with" "$ratio" \
    "$(median <<<"${cpu[none]}")" "$(median <<<"${cpu[tessera]}")"
done
echo "(medians of $rounds alternating wrk -t2 -c$connections -d$duration runs per app, loopback, memory store)"
