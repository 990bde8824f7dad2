#!/usr/bin/env bash
# Counts the CPU instructions of Tessera's core operations (create, validate,
# update, rotate) on the memory store with valgrind's callgrind, and writes
# them to bench/instructions.txt. Instruction counts barely move between runs
# or machines of one architecture, so a change that makes the hot path
# costlier shows up in the diff of that file even when wall-clock benchmarks
# are too noisy to tell.
#
#   bench/instructions.sh            measure and rewrite bench/instructions.txt
#   bench/instructions.sh --check    measure and fail if an operation costs
#                                    more than 5 % above bench/instructions.txt
#
# Environment: OPS (operations measured, default 10000), SESSIONS (live
# sessions already in the store, default 10000).
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[[ "${1:-}" == "--check" ]] && check=1
ops="${OPS:-10000}"
sessions="${SESSIONS:-10000}"
out=bench/instructions.txt

if ! command -v valgrind >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi

cargo build --release --quiet -p tessera-bench-instructions
binary=target/release/tessera-bench-instructions
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A per_op
for op in create validate update validate_update rotate; do
  valgrind --tool=callgrind --callgrind-out-file="$work/$op.out" \
    --collect-atstart=no "--toggle-collect=tessera_bench_instructions::measure_$op" \
    "$binary" "$op" --ops "$ops" --sessions "$sessions" 2>"$work/$op.log" || {
    cat "$work/$op.log" >&2
    exit 1
  }
  total=$(awk '/^totals:/ {print $2}' "$work/$op.out")
  if [[ -z "$total" || "$total" -eq 0 ]]; then
    echo "callgrind counted nothing for $op (was measure_$op inlined?)" >&2
    exit 1
  fi
  per_op[$op]=$((total / ops))
done

report=$(
  printf '# Instructions per operation (callgrind Ir) in tessera-core with the memory store.\n'
  printf '# %s warm sessions in the store, %s operations of each kind, payload {"user_id":n,"counter":c}.\n' "$sessions" "$ops"
  printf '# update = DataChange::Replace by token; validate_update = validate, then update_validated\n'
  printf '# (what a web request that writes costs); rotate = SessionManager::rotate; validate = no touch, no renewal.\n'
  printf '# Regenerate with bench/instructions.sh; %s, %s.\n' "$(rustc --version)" "$(uname -m)"
  printf '%-16s %12s\n' operation instructions
  for op in create validate update validate_update rotate; do
    printf '%-16s %12s\n' "$op" "${per_op[$op]}"
  done
)

if [[ $check -eq 1 ]]; then
  [[ -f "$out" ]] || { echo "$out is missing; run bench/instructions.sh first" >&2; exit 1; }
  status=0
  for op in create validate update validate_update rotate; do
    stored=$(awk -v op="$op" '$1 == op {print $2}' "$out")
    now=${per_op[$op]}
    printf '%-16s stored %10s  now %10s\n' "$op" "${stored:-?}" "$now"
    if [[ -n "$stored" && $((now * 100)) -gt $((stored * 105)) ]]; then
      echo "  $op costs more than 5 % above the stored count" >&2
      status=1
    fi
  done
  exit $status
fi

printf '%s\n' "$report" >"$out"
cat "$out"
