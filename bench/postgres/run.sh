#!/usr/bin/env bash
# PostgreSQL store benchmark: validate, create and update through a
# SessionManager, beside `pgbench -S` (select-only) at the same concurrency
# against the same server. Bounded in time; loopback only.
#
#   bench/postgres/run.sh                      16 clients, 5 s per measurement
#   CONCURRENCY=32 SECONDS_EACH=10 bench/postgres/run.sh
#   BENCH_URL_OPTIONS='options=-c%20synchronous_commit%3Doff' bench/postgres/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

concurrency="${CONCURRENCY:-16}"
seconds="${SECONDS_EACH:-5}"
db=tessera_bench
host=127.0.0.1
port=5432

bash scripts/setup/postgres.sh >/dev/null
if ! psql -h "$host" -p "$port" -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql -h "$host" -p "$port" -U postgres -d postgres -qc "CREATE DATABASE $db"
fi
if ! psql -h "$host" -p "$port" -U postgres -d "$db" -Atc "SELECT to_regclass('pgbench_accounts') IS NOT NULL" | grep -q t; then
  pgbench -h "$host" -p "$port" -U postgres -i -s 10 -q "$db" >/dev/null 2>&1
fi

cargo build --release -q -p tessera-postgres --example pg_bench

echo "== pgbench -S (select-only), $concurrency clients, ${seconds}s"
pgbench -h "$host" -p "$port" -U postgres -S -c "$concurrency" -j 2 -T "$seconds" "$db" 2>/dev/null |
  grep -E '^(tps|latency average)'
echo "== pgbench -S -M prepared, $concurrency clients, ${seconds}s"
pgbench -h "$host" -p "$port" -U postgres -S -M prepared -c "$concurrency" -j 2 -T "$seconds" "$db" 2>/dev/null |
  grep -E '^(tps|latency average)'

url="postgres://postgres@$host:$port/$db"
[[ -n "${BENCH_URL_OPTIONS:-}" ]] && url="$url?$BENCH_URL_OPTIONS"
echo "== tessera-postgres, $concurrency concurrent, ${seconds}s each"
target/release/examples/pg_bench --url "$url" --concurrency "$concurrency" --seconds "$seconds"
