#!/usr/bin/env bash
# GET /me at a growing number of live sessions, with CPU per request and
# bytes per session, for the memory stores (Tessera against tower-sessions'
# MemoryStore) and the Redis stores (Tessera against actix-session's, with
# redis-server's `used_memory` per session). Adds the scaling table and
# curves to docs/benchmarks.md and docs/benchmarks.png.
#
#   bench/peers/scale.sh                                   # 10k, 100k, 1M
#   SIZES="10000 100000 1000000 10000000" bench/peers/scale.sh   # up to 10M
#
# Sessions are created by each app's bench-only `--preload N` flag (in
# process, as POST /login would; over HTTP a million take minutes), which
# also writes their cookies. wrk cycles through at most WRK_COOKIES of them,
# taken evenly from the whole file (every k-th line): each request still
# looks up one of N live sessions, while each wrk thread's Lua state (the
# file's text, plus every request it has sent, about 200 bytes each) stays
# under a few hundred MB.
#
# Bytes per session: (server RSS + redis-server RSS after the preload − the
# same for the contender started with no sessions) / N; for Redis also
# redis-server's `used_memory`, measured the same way (the empty run holds
# the server's connections and loaded scripts, so only sessions count).
# CPU per request as in run.sh (server + private redis-server).
#
# Memory: at 10 000 000 sessions the server holds them all (the memory
# stores measured about 500–650 bytes each in earlier runs: 5–7 GB), or
# redis-server does (Redis stores: a few hundred bytes each, 1–4 GB);
# contenders run one at a time, and the cookie file is streamed to disk
# (about 0.3–0.8 GB at 10M, deleted after each point). Before each point
# the script checks that MemAvailable covers N × MAX_BYTES_PER_SESSION
# [1500] plus 1 GiB, and while sessions are created it stops the server if
# MemAvailable falls under 1 GiB; such a point is rejected, not measured.
#
# Duration: the preload dominates. Each point costs the preload, plus
# WARMUP + DURATION seconds of wrk, plus wrk loading its cookies. The
# default sizes take about 10 minutes for the four contenders; the 10M
# point adds about 5–10 minutes per contender (see bench/peers/notes.md for
# the rates measured), so SIZES up to 10M takes roughly 40–60 minutes.
#
# Environment: SIZES ["10000 100000 1000000"], WRK_COOKIES [1000000],
# MAX_BYTES_PER_SESSION [1500], DURATION [10], WARMUP [2], CONNECTIONS [64],
# THREADS [2], ONLY (regex on contender names; report to stdout),
# SKIP_BUILD=1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SIZES=${SIZES:-10000 100000 1000000}
WRK_COOKIES=${WRK_COOKIES:-1000000}
MAX_BYTES_PER_SESSION=${MAX_BYTES_PER_SESSION:-1500}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
export THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-64}
ONLY=${ONLY:-}

bin=$bin_dir
# name | command (placeholders as in run.sh)
contenders=(
  "Tessera memory|$bin/bench-tessera --listen {listen} --store memory:"
  "tower-sessions memory|$bin/bench-tower-sessions --listen {listen} --store memory:"
  "Tessera Redis|$bin/bench-tessera --listen {listen} --store {redis}"
  "actix-session Redis|$bin/bench-actix-session --listen {listen} --store {redis}"
)

run_id=$(date +%Y%m%d-%H%M%S)
work="$work_root/scale-$run_id"
mkdir -p "$work"

# MemAvailable in bytes.
mem_available() {
  awk '/^MemAvailable:/ {print $2 * 1024}' /proc/meminfo
}

# Waits until the app on $1 answers HTTP, as wait_http does, for up to $3
# seconds; stops waiting (status 2) when MemAvailable falls under 1 GiB.
wait_http_guarded() {
  local port=$1 pid=$2 limit=$3 start=$SECONDS code
  while true; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/me" || true)
    [[ "$code" != 000 ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS - start < limit)) || return 1
    (($(mem_available) >= 1 << 30)) || return 2
    sleep 1
  done
}

# Starts the contender with N preloaded sessions and measures it; writes
# $dir/row.json.
#   measure NAME TEMPLATE N DIR MEASURE_WRK(0|1)
measure() {
  local name=$1 template=$2 sessions=$3 dir=$4 with_wrk=$5
  mkdir -p "$dir"
  redis_pid="" redis_port=""
  local rejected="" result="{}" preload_s=null
  local server_rss=null store_rss=null store_rss_before=null used_memory=null
  local needed=$((sessions * MAX_BYTES_PER_SESSION + (1 << 30)))
  if (($(mem_available) < needed)); then
    rejected="not enough memory: $(($(mem_available) >> 20)) MiB available, $((needed >> 20)) MiB needed"
  fi
  local pid="" store_process=-
  if [[ -z "$rejected" ]]; then
    local command=$template
    if [[ "$command" == *"{redis}"* ]]; then
      start_redis "$dir"
      command=${command//\{redis\}/redis://127.0.0.1:$redis_port}
      store_rss_before=$(rss_bytes "$redis_pid")
      store_process=$redis_pid
    fi
    command=${command//\{dir\}/$dir/data}
    local port
    port=$(free_port)
    command=${command//\{listen\}/127.0.0.1:$port}
    local started=$SECONDS
    # shellcheck disable=SC2086 # the command is split into its words on purpose
    $command --preload "$sessions" --cookies-out "$dir/cookies.txt" >"$dir/server.log" 2>&1 &
    pid=$!
    local waited=0
    wait_http_guarded "$port" "$pid" 7200 || waited=$?
    preload_s=$((SECONDS - started))
    if ((waited == 2)); then
      rejected="stopped: MemAvailable fell under 1 GiB while sessions were created"
    elif ((waited)); then
      rejected="the server did not start (see server.log)"
    else
      sleep 2
      server_rss=$(rss_bytes "$pid")
      if [[ -n "$redis_pid" ]]; then
        store_rss=$(rss_bytes "$redis_pid")
        used_memory=$(redis_used_memory "$redis_port")
      fi
      if [[ $with_wrk == 1 ]]; then
        local cookies="$dir/cookies.txt" lines
        lines=$(wc -l <"$cookies")
        if ((lines > WRK_COOKIES)); then
          local every=$(((lines + WRK_COOKIES - 1) / WRK_COOKIES))
          awk -v k="$every" 'NR % k == 1' "$cookies" >"$dir/cookies-wrk.txt"
          cookies="$dir/cookies-wrk.txt"
        fi
        run_wrk "$port" GET /me "$cookies" "$WARMUP" >/dev/null || true
        result=$(run_wrk_cpu "$pid" "$store_process" "$port" GET /me "$cookies" "$DURATION")
        if [[ -z "$result" ]]; then
          rejected="wrk gave no result"
          result="{}"
        elif ! python3 -c 'import json, sys
r = json.loads(sys.argv[1])
sys.exit(0 if r["requests"] > 0 and sum(r["errors"].values()) == 0 else 1)' "$result"; then
          rejected="GET /me: $result"
        fi
      fi
    fi
  fi
  stop_pid "$pid"
  stop_pid "$redis_pid"
  rm -f "$dir/cookies.txt" "$dir/cookies-wrk.txt"
  python3 - "$dir/row.json" "$name" "$sessions" "$server_rss" "$store_rss" \
    "$store_rss_before" "${used_memory:-null}" "$preload_s" "$result" "$rejected" <<'PY'
import json, sys
path, name, sessions, server, store, store_before, used, preload, result, rejected = sys.argv[1:]
num = lambda s: None if s in ("null", "") else int(s)
row = {"contender": name, "sessions": int(sessions), "server_rss_bytes": num(server),
       "store_rss_bytes": num(store), "store_rss_before": num(store_before),
       "redis_used_memory": num(used), "preload_s": num(preload)}
row.update(json.loads(result))
if rejected:
    row["rejected"] = rejected
json.dump(row, open(path, "w"))
PY
  [[ -n "$rejected" ]] && log "$name at $sessions: rejected: $rejected"
  return 0
}

ensure_tools
build_apps
machine_json >"$work/machine.json"
printf '{"duration_s":%s,"warmup_s":%s,"connections":%s,"threads":%s,"sizes":"%s","wrk_cookies":%s}\n' \
  "$DURATION" "$WARMUP" "$CONNECTIONS" "$THREADS" "$SIZES" "$WRK_COOKIES" >"$work/parameters.json"

index=0
for spec in "${contenders[@]}"; do
  IFS='|' read -r name template <<<"$spec"
  if [[ -n "$ONLY" ]] && ! [[ "$name" =~ $ONLY ]]; then continue; fi
  index=$((index + 1))
  log "== $name: empty store"
  measure "$name" "$template" 0 "$work/$(printf '%02d' "$index")-empty" 0
  empty="$work/$(printf '%02d' "$index")-empty/row.json"
  for sessions in $SIZES; do
    log "== $name: $sessions sessions"
    dir="$work/$(printf '%02d' "$index")-$(printf '%09d' "$sessions")"
    measure "$name" "$template" "$sessions" "$dir" 1
    python3 - "$dir/row.json" "$empty" <<'PY'
import json, sys
row, empty = (json.load(open(p)) for p in sys.argv[1:])
growth, known = 0, False
for key in ("server_rss_bytes", "store_rss_bytes"):
    if row.get(key) is not None and empty.get(key) is not None:
        growth += row[key] - empty[key]
        known = True
n = row["sessions"]
row["bytes_per_session"] = round(growth / n, 1) if n and known else None
used, used_empty = row.get("redis_used_memory"), empty.get("redis_used_memory")
row["used_memory_per_session"] = (
    round((used - used_empty) / n, 1) if n and used is not None and used_empty is not None else None)
json.dump(row, open(sys.argv[1], "w"))
keys = ("contender", "sessions", "preload_s", "requests_per_s", "p99_us", "bytes_per_session",
        "used_memory_per_session", "rejected")
shown = {k: row.get(k) for k in keys}
shown["cpu_us_per_request"] = (row.get("cpu") or {}).get("us_per_request")
print(json.dumps(shown))
PY
  done
  # The empty-store row served only as the baseline.
  rm -rf "$work/$(printf '%02d' "$index")-empty"
done
python=$(report_python)
if [[ -n "$ONLY" ]]; then
  "$python" "$peers_dir/tools/report.py" collect-scale --work "$work" --json "$work/scale.json"
  python3 -c 'import json, sys; [print(json.dumps(r)) for r in json.load(open(sys.argv[1]))["rows"]]' "$work/scale.json"
else
  "$python" "$peers_dir/tools/report.py" collect-scale --work "$work" --json "$peers_dir/results/scale.json"
  if [[ -f "$peers_dir/results/peers.json" ]]; then
    render_report "$python"
    log "wrote docs/benchmarks.md and docs/benchmarks.png"
  fi
fi
