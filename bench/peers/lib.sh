# Shell functions shared by bench/peers/run.sh and bench/peers/scale.sh.
# Sourced, not run. Everything listens on 127.0.0.1 only.

peers_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$peers_dir/../.." && pwd)
bin_dir="$peers_dir/target/release"
work_root="$peers_dir/results/work"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs what the benchmark needs and the machine lacks (Debian packages).
ensure_tools() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v curl >/dev/null || need+=(curl)
  command -v python3 >/dev/null || need+=(python3 python3-venv)
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# Builds every Rust benchmark app in release mode (one build tree).
build_apps() {
  if [[ "${SKIP_BUILD:-0}" == 1 ]]; then return; fi
  log "building the benchmark apps (release)"
  cargo build --release --quiet --manifest-path "$peers_dir/Cargo.toml" --workspace
}

# Installs express, express-session, connect-redis and redis from npm.
install_node_apps() {
  if [[ -d "$peers_dir/express/node_modules/express-session" && "${SKIP_BUILD:-0}" == 1 ]]; then return; fi
  log "installing the express app's packages from npm"
  (cd "$peers_dir/express" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Resident memory of a process in bytes (VmRSS).
rss_bytes() {
  awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status" 2>/dev/null || echo 0
}

# CPU time a process has used so far, in clock ticks: utime + stime (fields
# 14 and 15 of /proc/PID/stat, counted after the `)` that ends the command
# name, which may itself hold spaces). Every thread of the process counts.
# 0 when there is no such process.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  local -a fields
  read -ra fields <<<"${stat##*) }"
  # fields[0] is field 3 (the state).
  echo $((fields[11] + fields[12]))
}

# CPU ticks of every process named `postgres` (the postmaster, its
# backends, its background workers): utime + stime, plus cutime + cstime
# (fields 16 and 17) so that backends which exit during a measurement still
# count, their time having passed to the postmaster when it reaped them.
postgres_cpu_ticks() {
  local total=0 file stat rest
  local -a fields
  for file in /proc/[0-9]*/stat; do
    stat=$(cat "$file" 2>/dev/null) || continue
    [[ "$stat" == *" (postgres) "* ]] || continue
    rest=${stat##*) }
    read -ra fields <<<"$rest"
    total=$((total + fields[11] + fields[12] + fields[13] + fields[14]))
  done
  echo "$total"
}

# CPU ticks of a contender's store process: the private redis-server (pid
# given), every postgres process (`postgres`), or none (`-`: the store lives
# in the server's process, or in the cookie).
store_cpu_ticks() {
  case $1 in
    -) echo 0 ;;
    postgres) postgres_cpu_ticks ;;
    *) cpu_ticks "$1" ;;
  esac
}

# Clock ticks per second of /proc/PID/stat.
clk_tck() { getconf CLK_TCK; }

# A redis-server's `used_memory` (INFO memory), in bytes.
redis_used_memory() {
  redis-cli -p "$1" info memory 2>/dev/null | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}'
}

# Runs wrk on one route as run_wrk does, sampling the CPU ticks of the
# server ($1) and of its store ($2, as store_cpu_ticks takes it) right
# before and right after; prints wrk's result with a `cpu` object added:
# ticks of each, and microseconds of CPU per request (server, store, total)
# over the requests wrk counted.
#   run_wrk_cpu SERVER_PID STORE PORT METHOD PATH COOKIES SECONDS
run_wrk_cpu() {
  local server_pid=$1 store=$2
  shift 2
  local server_before store_before server_after store_after result
  server_before=$(cpu_ticks "$server_pid")
  store_before=$(store_cpu_ticks "$store")
  result=$(run_wrk "$@" || true)
  server_after=$(cpu_ticks "$server_pid")
  store_after=$(store_cpu_ticks "$store")
  [[ -n "$result" ]] || return 0
  python3 - "$result" "$((server_after - server_before))" "$((store_after - store_before))" \
    "$(clk_tck)" "$([[ "$store" == - ]] && echo 0 || echo 1)" <<'PY'
import json, sys
result = json.loads(sys.argv[1])
server, store, hz, has_store = (int(x) for x in sys.argv[2:])
requests = result.get("requests") or 0
per = lambda ticks: round(ticks * 1e6 / hz / requests, 2) if requests else None
cpu = {"clk_tck": hz, "server_ticks": server, "store_ticks": store if has_store else None,
       "server_us_per_request": per(server),
       "store_us_per_request": per(store) if has_store else None,
       "us_per_request": per(server + store)}
result["cpu"] = cpu
print(json.dumps(result))
PY
}

# Waits until the app on $1 answers HTTP (any status); $2 the pid, $3 seconds.
wait_http() {
  local port=$1 pid=$2 limit=${3:-60} waited=0
  while true; do
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/me" || true)
    [[ "$code" != 000 ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    ((waited++ >= limit * 10)) && return 1
    sleep 0.1
  done
}

# Starts a private redis-server on a free port; sets redis_port and redis_pid.
start_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --protected-mode yes --dir "${1:-/tmp}" >"${1:-/tmp}/redis.log" 2>&1 &
  redis_pid=$!
  local tries=0
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do
    ((tries++ < 100)) || die "redis-server did not start (see ${1:-/tmp}/redis.log)"
    sleep 0.1
  done
}

# Stops a process we started, by its id, and waits for it.
stop_pid() {
  local pid=$1
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Whether PostgreSQL answers on 127.0.0.1:5432 (database test, user postgres).
postgres_available() {
  command -v psql >/dev/null &&
    psql -h 127.0.0.1 -p 5432 -U postgres -d test -qAtc 'select 1' >/dev/null 2>&1
}

# Runs wrk on one route and prints its WRK_RESULT line.
#   run_wrk PORT METHOD PATH COOKIES SECONDS
run_wrk() {
  local port=$1 method=$2 path=$3 cookies=$4 seconds=$5
  wrk -t "${THREADS:-2}" -c "${CONNECTIONS:-64}" -d "${seconds}s" --timeout 5s \
    -s "$peers_dir/wrk/sessions.lua" "http://127.0.0.1:$port" \
    -- "$method" "$path" "$cookies" "${THREADS:-2}" | grep '^WRK_RESULT ' | sed 's/^WRK_RESULT //'
}

# The python with matplotlib for the report (a venv under bench/peers/.venv
# when the system's python lacks it).
report_python() {
  if python3 -c 'import matplotlib' 2>/dev/null; then
    echo python3
    return
  fi
  local venv="$peers_dir/.venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv" 2>/dev/null || {
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    }
  fi
  if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib from PyPI into $venv"
    "$venv/bin/pip" install --quiet matplotlib >&2
  fi
  echo "$venv/bin/python"
}

# Facts about the machine and tools, as JSON.
machine_json() {
  python3 - "$@" <<'PY'
import json, os, platform, subprocess, sys, datetime
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except Exception:
        return "unknown"
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
print(json.dumps({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "cpu": cpu,
    "cpus": os.cpu_count(),
    "kernel": platform.release(),
    "load_average": os.getloadavg()[0],
    "rustc": out("rustc", "--version"),
    "node": out("node", "--version"),
    "redis": out("redis-server", "--version"),
    "wrk": out("wrk", "--version"),
}))
PY
}

# Renders docs/benchmarks.md and docs/benchmarks.png from the stored results
# (bench/peers/results/peers.json, and scale.json when present).
render_report() {
  local python=$1 results="$peers_dir/results"
  local scale=()
  [[ -f "$results/scale.json" ]] && scale=(--scale "$results/scale.json")
  "$python" "$peers_dir/tools/report.py" render --peers "$results/peers.json" "${scale[@]}" \
    --notes "$peers_dir/notes.md" \
    --out "$repo_dir/docs/benchmarks.md" --chart "$repo_dir/docs/benchmarks.png"
}
