#!/usr/bin/env bash
# Side-by-side benchmark of Tessera against peer session libraries: the same
# three routes (POST /login, GET /me, POST /incr) on every contender, the
# same load, the same machine, one run. Writes docs/benchmarks.md and
# docs/benchmarks.png.
#
#   bench/peers/run.sh
#
# For each contender in turn: start its server (and its own redis-server on a
# free port when it needs one; PostgreSQL from 127.0.0.1:5432, database test),
# create SESSIONS sessions over HTTP collecting their cookies, record the
# server's resident memory, then drive each route with wrk (CONNECTIONS
# connections, a Lua script round-robining the cookies): WARMUP seconds
# discarded, then DURATION seconds measured. A run with socket errors or
# error answers is rejected, not reported.
#
# Environment (defaults in brackets):
#   DURATION [10]  WARMUP [2]  CONNECTIONS [64]  THREADS [2]  SESSIONS [10000]
#   ONLY           regex: run only the contenders whose name matches; the
#                  report then goes to stdout, docs/ stay untouched
#   SKIP_BUILD=1   use the apps already built
#   SCALE=1        also run bench/peers/scale.sh (sessions 10k/100k/1M)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SESSIONS=${SESSIONS:-10000}
export THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-64}
ONLY=${ONLY:-}

bin=$bin_dir
node_app="node $peers_dir/express/app.js"
# name | library | store | compared with (tower-sessions on the same store) | command
# Placeholders: {listen} address, {redis} URL of a private redis-server,
# {postgres} URL of database test, {dir} a fresh data directory.
contenders=(
  "bare axum|axum|none|-|$bin/bench-bare-axum --listen {listen} --store none:"
  "tower-sessions memory|tower-sessions|memory|-|$bin/bench-tower-sessions --listen {listen} --store memory:"
  "Tessera memory|Tessera|memory|tower-sessions memory|$bin/bench-tessera --listen {listen} --store memory:"
  "Tessera embedded|Tessera|embedded|-|$bin/bench-tessera --listen {listen} --store embedded:{dir}"
  "tower-sessions Redis|tower-sessions|redis|-|$bin/bench-tower-sessions --listen {listen} --store {redis}"
  "actix-session Redis|actix-session|redis|tower-sessions Redis|$bin/bench-actix-session --listen {listen} --store {redis}"
  "Tessera Redis|Tessera|redis|tower-sessions Redis|$bin/bench-tessera --listen {listen} --store {redis}"
  "Tessera Redis near cache|Tessera|redis|tower-sessions Redis|$bin/bench-tessera --listen {listen} --store {redis} --near-cache"
  "Tessera PostgreSQL|Tessera|postgres|-|$bin/bench-tessera --listen {listen} --store {postgres}"
  "actix-session cookie|actix-session|cookie|-|$bin/bench-actix-session --listen {listen} --store cookie:"
  "Tessera sealed cookie|Tessera|cookie|actix-session cookie|$bin/bench-tessera --listen {listen} --store memory: --sealed"
  "express-session memory|express-session|memory|tower-sessions memory|$node_app --listen {listen} --store memory:"
  "express-session Redis|express-session|redis|tower-sessions Redis|$node_app --listen {listen} --store {redis}"
)

run_id=$(date +%Y%m%d-%H%M%S)
work="$work_root/$run_id"
mkdir -p "$work"

# Runs one contender; its results go to $work/<n>/.
run_contender() {
  local index=$1 spec=$2
  local name library store baseline template
  IFS='|' read -r name library store baseline template <<<"$spec"
  local dir="$work/$(printf '%02d' "$index")"
  mkdir -p "$dir"
  printf '{"name":"%s","library":"%s","store":"%s","baseline":"%s","order":%d}\n' \
    "$name" "$library" "$store" "$baseline" "$index" >"$dir/meta.json"
  log "== $name"

  redis_pid="" redis_port=""
  local command=$template
  if [[ "$command" == *"{redis}"* ]]; then
    start_redis "$dir"
    command=${command//\{redis\}/redis://127.0.0.1:$redis_port}
  fi
  if [[ "$command" == *"{postgres}"* ]]; then
    if ! postgres_available; then
      echo "PostgreSQL is not reachable on 127.0.0.1:5432 (database test)" >"$dir/skipped"
      log "skipped: $(cat "$dir/skipped")"
      return
    fi
    postgres_url "$dir"
    command=${command//\{postgres\}/$postgres_url_value}
  fi
  command=${command//\{dir\}/$dir/data}
  local port
  port=$(free_port)
  command=${command//\{listen\}/127.0.0.1:$port}

  # shellcheck disable=SC2086 # the command is split into its words on purpose
  $command >"$dir/server.log" 2>&1 &
  local pid=$!
  if ! wait_http "$port" "$pid" 60; then
    echo "the server did not start (see server.log)" >"$dir/rejected"
    log "rejected: $(cat "$dir/rejected")"
    tail -5 "$dir/server.log" >&2 || true
    stop_pid "$pid"; stop_pid "$redis_pid"; drop_postgres_schema
    return
  fi

  if ! python3 "$peers_dir/tools/load_sessions.py" --url "http://127.0.0.1:$port" \
    --count "$SESSIONS" --out "$dir/cookies.txt" >"$dir/load.json" 2>"$dir/load.err"; then
    cp "$dir/load.err" "$dir/rejected"
    log "rejected: $(cat "$dir/rejected")"
    stop_pid "$pid"; stop_pid "$redis_pid"; drop_postgres_schema
    return
  fi
  sleep 1
  printf '{"server_rss_bytes":%s,"store_rss_bytes":%s}\n' "$(rss_bytes "$pid")" \
    "$([[ -n "$redis_pid" ]] && rss_bytes "$redis_pid" || echo null)" >"$dir/memory.json"

  local route method path cookies result
  for route in me incr login; do
    case $route in
      me) method=GET path=/me cookies="$dir/cookies.txt" ;;
      incr) method=POST path=/incr cookies="$dir/cookies.txt" ;;
      login) method=POST path=/login cookies=- ;;
    esac
    run_wrk "$port" "$method" "$path" "$cookies" "$WARMUP" >/dev/null || true
    result=$(run_wrk "$port" "$method" "$path" "$cookies" "$DURATION" || true)
    if [[ -z "$result" ]]; then
      echo "wrk gave no result for $method $path" >"$dir/rejected"
      break
    fi
    echo "$result" >"$dir/$route.json"
    if ! python3 -c 'import json, sys
r = json.loads(sys.argv[1])
sys.exit(0 if r["requests"] > 0 and sum(r["errors"].values()) == 0 else 1)' "$result"; then
      echo "$method $path: $result" >"$dir/rejected"
      break
    fi
    log "$method $path: $result"
    kill -0 "$pid" 2>/dev/null || { echo "the server died during $method $path" >"$dir/rejected"; break; }
  done
  [[ -f "$dir/rejected" ]] && log "rejected: $(cat "$dir/rejected")"
  stop_pid "$pid"
  stop_pid "$redis_pid"
  drop_postgres_schema
}

# A fresh schema in database test for one run of the PostgreSQL contender
# (the store creates it; drop_postgres_schema removes it afterwards).
postgres_schema=""
postgres_url_value=""
postgres_url() {
  postgres_schema="bench_peers_${run_id//-/_}_$(basename "$1")"
  postgres_url_value="postgres://postgres@127.0.0.1:5432/test?schema=$postgres_schema"
}
drop_postgres_schema() {
  [[ -n "$postgres_schema" ]] || return 0
  psql -h 127.0.0.1 -p 5432 -U postgres -d test -qc "drop schema if exists $postgres_schema cascade" >/dev/null 2>&1 || true
  postgres_schema=""
}

ensure_tools
build_apps
install_node_apps
machine_json >"$work/machine.json"
printf '{"duration_s":%s,"warmup_s":%s,"connections":%s,"threads":%s,"sessions":%s}\n' \
  "$DURATION" "$WARMUP" "$CONNECTIONS" "$THREADS" "$SESSIONS" >"$work/parameters.json"

index=0
for spec in "${contenders[@]}"; do
  index=$((index + 1))
  name=${spec%%|*}
  if [[ -n "$ONLY" ]] && ! [[ "$name" =~ $ONLY ]]; then continue; fi
  run_contender "$index" "$spec"
done

python=$(report_python)
results="$peers_dir/results"
if [[ -n "$ONLY" ]]; then
  "$python" "$peers_dir/tools/report.py" collect-peers --work "$work" --json "$work/peers.json"
  "$python" "$peers_dir/tools/report.py" render --peers "$work/peers.json"
else
  "$python" "$peers_dir/tools/report.py" collect-peers --work "$work" --json "$results/peers.json"
  render_report "$python"
  log "wrote docs/benchmarks.md and docs/benchmarks.png"
fi
if [[ "${SCALE:-0}" == 1 ]]; then
  SKIP_BUILD=1 "$peers_dir/scale.sh"
fi
