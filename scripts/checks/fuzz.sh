#!/usr/bin/env bash
# Runs every cargo-fuzz target briefly (FUZZ_SECONDS each, default 20) so a
# parser regression fails CI. Longer runs: FUZZ_SECONDS=600 scripts/checks/fuzz.sh
# Uses the stable toolchain with RUSTC_BOOTSTRAP for the address sanitizer.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd fuzz
targets=$(cargo fuzz list)
cargo fuzz build -O
for target in $targets; do
  corpus="corpus/$target"
  mkdir -p "$corpus"
  [[ -d "seeds/$target" ]] && cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  # api_bodies keeps one router and store across inputs on purpose, so every
  # input "leaks" and the leak check would scan the heap after each one.
  extra=()
  [[ "$target" == api_bodies ]] && extra=(-detect_leaks=0)
  echo "fuzzing $target for ${seconds}s"
  cargo fuzz run -O "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 "${extra[@]}" 2>&1 \
    | grep -E '^(Done|==[0-9]+==|SUMMARY|thread .* panicked|Failing input)' || true
  if compgen -G "artifacts/$target/crash-*" >/dev/null; then
    echo "fuzz target $target found a crash: see fuzz/artifacts/$target" >&2
    exit 1
  fi
done
echo "all fuzz targets ran ${seconds}s without a crash"
