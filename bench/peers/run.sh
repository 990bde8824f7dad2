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
# server's resident memory (and the private redis-server's `used_memory`
# before and after, per session), then drive each route with wrk (CONNECTIONS
# connections, a Lua script round-robining the cookies): WARMUP seconds
# discarded, then DURATION seconds measured. A run with socket errors or
# error answers is rejected, not reported.
#
# CPU per request: the CPU time (utime + stime from /proc/PID/stat) of the
# server process and of the store's process, sampled right before and right
# after the measured wrk run, divided by the requests wrk counted. The
# store's process is the private redis-server; for PostgreSQL, every
# `postgres` process of the shared server (so other clients of that server
# count too); none for the memory, embedded and cookie stores, which live in
# the server's process. wrk's own CPU is not counted.
#
# When the PostgreSQL contender runs, `pgbench -S` (select-only, scale 1, in
# a scratch schema of database test) runs at the same concurrency for its
# target, when pgbench is installed.
#
# Environment (defaults in brackets):
#   DURATION [10]  WARMUP [2]  CONNECTIONS [64]  THREADS [2]  SESSIONS [10000]
#   ONLY           regex: run only the contenders whose name matches; the
#                  report then goes to stdout, docs/ stay untouched
#   SKIP_BUILD=1   use the apps already built
#   SCALE=1        also run bench/peers/scale.sh (see there for its sizes)
#
# A full run takes about 16 contenders × (start and session creation, 10–15 s,
# + 3 routes × (WARMUP + DURATION)) + pgbench ≈ 15 minutes at the defaults,
# plus the build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SESSIONS=${SESSIONS:-10000}
export THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-64}
ONLY=${ONLY:-}

bin=$bin_dir
node_app="node $peers_dir/express/app.js"
# name | library | store | compared with (the peer its targets name) | command
# Placeholders: {listen} address, {redis} URL of a private redis-server,
# {postgres} URL of database test, {dir} a fresh data directory.
contenders=(
  "bare axum|axum|none|-|$bin/bench-bare-axum --listen {listen} --store none:"
  "tower-sessions memory|tower-sessions|memory|-|$bin/bench-tower-sessions --listen {listen} --store memory:"
  "Tessera memory|Tessera|memory|tower-sessions memory|$bin/bench-tessera --listen {listen} --store memory:"
  "Tessera embedded|Tessera|embedded|-|$bin/bench-tessera --listen {listen} --store embedded:{dir}"
  "tower-sessions Redis|tower-sessions|redis|-|$bin/bench-tower-sessions --listen {listen} --store {redis}"
  "actix-session Redis|actix-session|redis|tower-sessions Redis|$bin/bench-actix-session --listen {listen} --store {redis}"
  "Tessera Redis|Tessera|redis|actix-session Redis|$bin/bench-tessera --listen {listen} --store {redis}"
  "Tessera Redis near cache|Tessera|redis|actix-session Redis|$bin/bench-tessera --listen {listen} --store {redis} --near-cache"
  "Tessera PostgreSQL|Tessera|postgres|-|$bin/bench-tessera --listen {listen} --store {postgres}"
  "actix-session cookie|actix-session|cookie|-|$bin/bench-actix-session --listen {listen} --store cookie:"
  "Tessera sealed cookie|Tessera|cookie|actix-session cookie|$bin/bench-tessera --listen {listen} --store memory: --sealed"
  "Tessera actix-web memory|Tessera|memory|-|$bin/bench-tessera-actix --listen {listen} --store memory:"
  "Tessera actix-web Redis|Tessera|redis|actix-session Redis|$bin/bench-tessera-actix --listen {listen} --store {redis}"
  "Tessera actix-web sealed cookie|Tessera|cookie|actix-session cookie|$bin/bench-tessera-actix --listen {listen} --store memory: --sealed"
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
  # The process whose CPU counts as the store's (see store_cpu_ticks).
  local store_process=-
  local command=$template
  if [[ "$command" == *"{redis}"* ]]; then
    start_redis "$dir"
    command=${command//\{redis\}/redis://127.0.0.1:$redis_port}
    store_process=$redis_pid
  fi
  if [[ "$command" == *"{postgres}"* ]]; then
    if ! postgres_available; then
      echo "PostgreSQL is not reachable on 127.0.0.1:5432 (database test)" >"$dir/skipped"
      log "skipped: $(cat "$dir/skipped")"
      return
    fi
    postgres_url "$dir"
    command=${command//\{postgres\}/$postgres_url_value}
    store_process=postgres
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

  local used_before=null used_after=null
  [[ -n "$redis_pid" ]] && used_before=$(redis_used_memory "$redis_port")
  if ! python3 "$peers_dir/tools/load_sessions.py" --url "http://127.0.0.1:$port" \
    --count "$SESSIONS" --out "$dir/cookies.txt" >"$dir/load.json" 2>"$dir/load.err"; then
    cp "$dir/load.err" "$dir/rejected"
    log "rejected: $(cat "$dir/rejected")"
    stop_pid "$pid"; stop_pid "$redis_pid"; drop_postgres_schema
    return
  fi
  sleep 1
  [[ -n "$redis_pid" ]] && used_after=$(redis_used_memory "$redis_port")
  python3 - "$(rss_bytes "$pid")" "$([[ -n "$redis_pid" ]] && rss_bytes "$redis_pid" || echo null)" \
    "${used_before:-null}" "${used_after:-null}" "$SESSIONS" >"$dir/memory.json" <<'PY'
import json, sys
num = lambda s: None if s in ("null", "") else int(s)
server, store, before, after, sessions = (num(s) for s in sys.argv[1:])
print(json.dumps({
    "server_rss_bytes": server,
    "store_rss_bytes": store,
    "redis_used_memory_before": before,
    "redis_used_memory": after,
    "redis_used_memory_per_session":
        round((after - before) / sessions, 1) if None not in (before, after) and sessions else None,
}))
PY

  local route method path cookies result
  for route in me incr login; do
    case $route in
      me) method=GET path=/me cookies="$dir/cookies.txt" ;;
      incr) method=POST path=/incr cookies="$dir/cookies.txt" ;;
      login) method=POST path=/login cookies=- ;;
    esac
    run_wrk "$port" "$method" "$path" "$cookies" "$WARMUP" >/dev/null || true
    result=$(run_wrk_cpu "$pid" "$store_process" "$port" "$method" "$path" "$cookies" "$DURATION")
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

# pgbench -S at the load's concurrency, for the PostgreSQL target: scale 1
# (100 000 accounts) in a scratch schema, WARMUP then DURATION seconds.
# Writes $work/pgbench.json (or nothing, with a log line, when it cannot run).
run_pgbench() {
  if ! command -v pgbench >/dev/null || ! postgres_available; then
    log "pgbench skipped: pgbench or PostgreSQL on 127.0.0.1:5432 is missing"
    return 0
  fi
  log "== pgbench -S"
  local schema="bench_pgbench_${run_id//-/_}" out="$work/pgbench"
  mkdir -p "$out"
  local -a connect=(-h 127.0.0.1 -p 5432 -U postgres)
  psql "${connect[@]}" -d test -qc "create schema $schema" >/dev/null
  local ok=1 before after
  PGOPTIONS="-c search_path=$schema" pgbench "${connect[@]}" -i -s 1 -q test >"$out/init.log" 2>&1 || ok=0
  if ((ok)); then
    PGOPTIONS="-c search_path=$schema" pgbench "${connect[@]}" -n -S -c "$CONNECTIONS" -j "$THREADS" \
      -T "$WARMUP" test >/dev/null 2>&1 || true
    before=$(postgres_cpu_ticks)
    PGOPTIONS="-c search_path=$schema" pgbench "${connect[@]}" -n -S -c "$CONNECTIONS" -j "$THREADS" \
      -T "$DURATION" test >"$out/run.log" 2>&1 || ok=0
    after=$(postgres_cpu_ticks)
  fi
  psql "${connect[@]}" -d test -qc "drop schema if exists $schema cascade" >/dev/null 2>&1 || true
  if ((ok == 0)); then
    log "pgbench failed (see $out)"
    return 0
  fi
  python3 - "$out/run.log" "$((after - before))" "$(clk_tck)" "$CONNECTIONS" "$THREADS" \
    >"$work/pgbench.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
ticks, hz, clients, threads = (int(x) for x in sys.argv[2:])
tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
done = re.search(r"number of transactions actually processed: (\d+)", text)
tps = float(tps.group(1)) if tps else None
done = int(done.group(1)) if done else None
print(json.dumps({
    "mode": "select-only (-S), scale 1", "clients": clients, "threads": threads,
    "tps": tps, "transactions": done,
    "postgres_us_per_transaction": round(ticks * 1e6 / hz / done, 2) if done else None,
}))
PY
  log "pgbench -S: $(cat "$work/pgbench.json")"
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
  if [[ "$name" == "Tessera PostgreSQL" ]]; then run_pgbench; fi
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
