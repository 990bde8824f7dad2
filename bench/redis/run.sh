#!/usr/bin/env bash
# Redis store benchmark (loopback only, bounded in time), all in one run
# against one private redis-server:
#   1. redis-benchmark GET at 64 connections: the ceiling;
#   2. SessionManager validate and update at 64 tasks over 10 000 sessions,
#      library-level, on the memory store, on Redis, and on Redis behind the
#      near cache;
#   3. the same through tesserad (wrk, 64 connections): validate on Redis,
#      with and without --near-cache, and on memory:.
#
#   bench/redis/run.sh                 5 s per measurement
#   SECONDS_EACH=10 bench/redis/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_EACH="${SECONDS_EACH:-5}"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

cargo build -q --release -p tessera-redis --example validate_throughput

echo "== redis-benchmark -c 64 GET (${SECONDS_EACH}s worth of requests)"
redis-cli -p "$port" set key:__rand_int__ x >/dev/null
redis-benchmark -p "$port" -c 64 -t get -n $((SECONDS_EACH * 60000)) -q

echo "== library, 64 tasks, 10 000 sessions"
target/release/examples/validate_throughput "redis://127.0.0.1:$port" "$SECONDS_EACH"

if [[ "${SERVER:-1}" == 1 ]]; then
  echo "== through tesserad (bench/server.sh)"
  DURATION="${SECONDS_EACH}s" STORES="memory: redis://127.0.0.1:$port redis://127.0.0.1:$port#near-cache" \
    bash bench/server.sh
fi
