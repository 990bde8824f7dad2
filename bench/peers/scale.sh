#!/usr/bin/env bash
# GET /me at 10 000, 100 000 and 1 000 000 live sessions, and resident bytes
# per session, for Tessera's memory and Redis stores and tower-sessions'
# MemoryStore. Adds the scaling table to docs/benchmarks.md.
#
#   bench/peers/scale.sh
#
# Sessions are created by each app's bench-only `--preload N` flag (in
# process, as POST /login would; over HTTP a million take minutes), which
# also writes their cookies for the wrk script. Resident memory per session:
# (server RSS + store RSS after the preload − the same with no sessions) / N.
#
# Environment: SIZES ["10000 100000 1000000"], DURATION [10], WARMUP [2],
# CONNECTIONS [64], THREADS [2], ONLY (regex on contender names; report to
# stdout), SKIP_BUILD=1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SIZES=${SIZES:-10000 100000 1000000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
export THREADS=${THREADS:-2} CONNECTIONS=${CONNECTIONS:-64}
ONLY=${ONLY:-}

bin=$bin_dir
# name | command (placeholders as in run.sh)
contenders=(
  "Tessera memory|$bin/bench-tessera --listen {listen} --store memory:"
  "Tessera Redis|$bin/bench-tessera --listen {listen} --store {redis}"
  "tower-sessions memory|$bin/bench-tower-sessions --listen {listen} --store memory:"
)

run_id=$(date +%Y%m%d-%H%M%S)
work="$work_root/scale-$run_id"
mkdir -p "$work"

# Starts the contender with N preloaded sessions and measures it; writes
# $dir/row.json. Sets nothing global.
#   measure NAME TEMPLATE N DIR MEASURE_WRK(0|1)
measure() {
  local name=$1 template=$2 sessions=$3 dir=$4 with_wrk=$5
  mkdir -p "$dir"
  redis_pid="" redis_port=""
  local command=$template store_rss_before=null
  if [[ "$command" == *"{redis}"* ]]; then
    start_redis "$dir"
    command=${command//\{redis\}/redis://127.0.0.1:$redis_port}
    store_rss_before=$(rss_bytes "$redis_pid")
  fi
  command=${command//\{dir\}/$dir/data}
  local port
  port=$(free_port)
  command=${command//\{listen\}/127.0.0.1:$port}
  # shellcheck disable=SC2086 # the command is split into its words on purpose
  $command --preload "$sessions" --cookies-out "$dir/cookies.txt" >"$dir/server.log" 2>&1 &
  local pid=$!
  local rejected="" result="{}"
  if ! wait_http "$port" "$pid" 1800; then
    rejected="the server did not start (see server.log)"
  else
    sleep 2
    local server_rss store_rss=null
    server_rss=$(rss_bytes "$pid")
    [[ -n "$redis_pid" ]] && store_rss=$(rss_bytes "$redis_pid")
    if [[ $with_wrk == 1 ]]; then
      run_wrk "$port" GET /me "$dir/cookies.txt" "$WARMUP" >/dev/null || true
      result=$(run_wrk "$port" GET /me "$dir/cookies.txt" "$DURATION" || true)
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
  stop_pid "$pid"
  stop_pid "$redis_pid"
  python3 - "$dir/row.json" "$name" "$sessions" "${server_rss:-null}" "${store_rss:-null}" \
    "$store_rss_before" "$result" "$rejected" <<'PY'
import json, sys
path, name, sessions, server, store, store_before, result, rejected = sys.argv[1:]
num = lambda s: None if s == "null" else int(s)
row = {"contender": name, "sessions": int(sessions), "server_rss_bytes": num(server),
       "store_rss_bytes": num(store), "store_rss_before": num(store_before)}
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
printf '{"duration_s":%s,"warmup_s":%s,"connections":%s,"threads":%s,"sizes":"%s"}\n' \
  "$DURATION" "$WARMUP" "$CONNECTIONS" "$THREADS" "$SIZES" >"$work/parameters.json"

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
    dir="$work/$(printf '%02d' "$index")-$sessions"
    measure "$name" "$template" "$sessions" "$dir" 1
    python3 - "$dir/row.json" "$empty" <<'PY'
import json, sys
row, empty = (json.load(open(p)) for p in sys.argv[1:])
growth = 0
for key, base in (("server_rss_bytes", "server_rss_bytes"), ("store_rss_bytes", "store_rss_bytes")):
    if row.get(key) is not None and empty.get(base) is not None:
        growth += row[key] - empty[base]
row["bytes_per_session"] = growth / row["sessions"] if row["sessions"] else None
json.dump(row, open(sys.argv[1], "w"))
print(json.dumps({k: row.get(k) for k in ("contender", "sessions", "requests_per_s", "p99_us", "bytes_per_session", "rejected")}))
PY
    rm -f "$dir/cookies.txt"
  done
  rm -rf "$work/$(printf '%02d' "$index")-empty"
done
# The empty-store rows served only as the baseline.
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
