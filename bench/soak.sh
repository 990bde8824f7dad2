#!/usr/bin/env bash
# Soak test of tesserad (loopback only, bounded in time): for each store, a
# fresh server, 100 000 live sessions, then a mixed workload of 80 %
# validate, 10 % update, 5 % login and 5 % logout (each logout followed by a
# create, so the number of live sessions stays constant) for SECONDS_EACH.
# Sessions live LIFETIME (default 1m) and are replaced when they expire.
# Zero errors are required; resident memory and p99 latency are sampled
# every second and plotted to docs/soak.png.
#
#   bench/soak.sh                               embedded and Redis, 10 minutes each
#   SECONDS_EACH=60 STORES="embedded" bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${SECONDS_EACH:-600}"
SESSIONS="${SESSIONS:-100000}"
CONCURRENCY="${CONCURRENCY:-64}"
LIFETIME="${LIFETIME:-1m}"
STORES="${STORES:-embedded redis}"
OUT="${OUT:-target/soak}"
PLOT="${PLOT:-docs/soak.png}"
KEY="soak-api-key-0123456789-abcdefghijkl"

cargo build -q --release -p tesserad --bin tesserad
(cd bench/soak && cargo build -q --release)
python3 -c 'import matplotlib' 2>/dev/null || pip install -q matplotlib

mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_url() {
  local file=$1 url=""
  for _ in $(seq 1 400); do
    url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$file" | head -n1)
    [[ -n "$url" ]] && { echo "$url"; return 0; }
    sleep 0.05
  done
  echo "server did not start: $(cat "$file")" >&2
  return 1
}

lifetime_seconds=$(python3 -c "
import re, sys
n, unit = re.fullmatch(r'(\d+)([smh])', sys.argv[1]).groups()
print(int(n) * {'s': 1, 'm': 60, 'h': 3600}[unit])" "$LIFETIME")
status=0
csvs=()
for store in $STORES; do
  case "$store" in
    embedded) url="embedded:$work/embedded" ;;
    redis)
      port=$(free_port)
      redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
      pids+=($!)
      for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
      url="redis://127.0.0.1:$port" ;;
    *) url="$store" ;;
  esac
  log="$work/tesserad-$store.log"
  # Short lifetimes, so that within the run sessions renew (every 20 s),
  # expire (after 1 min; the driver then creates a new one in their place)
  # and are swept (5 min after their deadline): memory reaches its steady
  # state after about 6 minutes and must stay flat from then on.
  target/release/tesserad serve --listen 127.0.0.1:0 --store "$url" --api-key "$KEY" \
    --data-dir "$work/data-$store" --renew-after 20s --rotation-grace 5s --touch-after 5s \
    --idle-timeout "$LIFETIME" --absolute-timeout "$LIFETIME" --anonymous-per-minute 0 --log-level warn >"$log" 2>&1 &
  server=$!
  pids+=($server)
  base=$(wait_url "$log")
  echo "== $store ($url): $SESSIONS sessions, $CONCURRENCY clients, ${SECONDS_EACH}s"
  csv="$OUT/soak-$store.csv"
  if ! bench/soak/target/release/tessera-soak --server "$base" --api-key "$KEY" --pid "$server" \
      --sessions "$SESSIONS" --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH" \
      --lifetime-seconds "$lifetime_seconds" --csv "$csv"; then
    status=1
  fi
  csvs+=("$store=$csv")
  kill "$server"; wait "$server" 2>/dev/null || true
done

python3 bench/soak-plot.py "$PLOT" $((lifetime_seconds + 300)) "${csvs[@]}"
exit $status
