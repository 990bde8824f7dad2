#!/usr/bin/env bash
# How fast a logout takes effect and whether sessions are shared, for each of
# Tessera's storage strategies, with two servers of one deployment (A and B)
# on loopback: log in on A, try the cookie on B, log out on A, replay the old
# cookie on A and B until each refuses it. Writes bench/peers/results/revocation.json
# (used by docs/storage-strategies.md).
#
#   bench/peers/revocation.sh        (SKIP_BUILD=1 to use the apps already built)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin=$bin_dir
key=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')
# name | command for both servers ({redis}, {postgres}, {dir} shared by A and B
# unless the store cannot be shared; {node} is a or b)
setups=(
  "memory|$bin/bench-tessera --listen {listen} --store memory:"
  "embedded (one directory per server)|$bin/bench-tessera --listen {listen} --store embedded:{dir}/{node}"
  "Redis|$bin/bench-tessera --listen {listen} --store {redis}"
  "Redis + near cache|$bin/bench-tessera --listen {listen} --store {redis} --near-cache"
  "PostgreSQL|$bin/bench-tessera --listen {listen} --store {postgres}"
  "sealed cookie, epochs in memory|$bin/bench-tessera --listen {listen} --store memory: --sealed --sealing-key $key"
  "sealed cookie, epochs in Redis|$bin/bench-tessera --listen {listen} --store {redis} --sealed --sealing-key $key"
)

ensure_tools
build_apps
run_id=$(date +%Y%m%d-%H%M%S)
work="$work_root/revocation-$run_id"
mkdir -p "$work"
schema="bench_revocation_${run_id//-/_}"
results=()

for spec in "${setups[@]}"; do
  IFS='|' read -r name template <<<"$spec"
  log "== $name"
  dir="$work/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')"
  mkdir -p "$dir"
  redis_pid=""
  command=$template
  if [[ "$command" == *"{redis}"* ]]; then
    start_redis "$dir"
    command=${command//\{redis\}/redis://127.0.0.1:$redis_port}
  fi
  if [[ "$command" == *"{postgres}"* ]]; then
    if ! postgres_available; then
      log "skipped: PostgreSQL is not reachable on 127.0.0.1:5432"
      results+=("{\"setup\":\"$name\",\"skipped\":\"no PostgreSQL\"}")
      continue
    fi
    command=${command//\{postgres\}/postgres://postgres@127.0.0.1:5432/test?schema=$schema}
  fi
  command=${command//\{dir\}/$dir}
  pids=() ports=()
  for node in a b; do
    port=$(free_port)
    node_command=${command//\{listen\}/127.0.0.1:$port}
    node_command=${node_command//\{node\}/$node}
    # shellcheck disable=SC2086 # split into words on purpose
    $node_command >"$dir/server-$node.log" 2>&1 &
    pids+=($!)
    ports+=("$port")
    wait_http "$port" "${pids[-1]}" 60 || die "$name: server $node did not start (see $dir/server-$node.log)"
  done
  result=$(python3 "$peers_dir/tools/revocation.py" --a "http://127.0.0.1:${ports[0]}" \
    --b "http://127.0.0.1:${ports[1]}")
  log "$result"
  results+=("{\"setup\":\"$name\",${result#\{}")
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  stop_pid "$redis_pid"
done
if postgres_available; then
  psql -h 127.0.0.1 -p 5432 -U postgres -d test -qc "drop schema if exists $schema cascade" >/dev/null 2>&1 || true
fi
mkdir -p "$peers_dir/results"
(IFS=,; echo "[${results[*]}]") | python3 -m json.tool >"$peers_dir/results/revocation.json"
log "wrote bench/peers/results/revocation.json"
