#!/usr/bin/env bash
# Runs every check and test of the repository on a fresh machine:
# installs what is missing, starts the services the tests need, then runs
# formatting, lints, the whole test suite (unit, integration, doc tests) and
# the extra checks under scripts/checks/.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip scripts/checks/ (fuzzing, API schema checks)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

step() { printf '\n==> %s\n' "$*"; }

# Each file in scripts/setup/ installs one thing the tests need (packages,
# services) and is safe to run twice.
for setup in scripts/setup/*.sh; do
  [[ -e "$setup" ]] || continue
  step "setup: $(basename "$setup" .sh)"
  bash "$setup"
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "tests"
cargo test --workspace --all-features --locked --no-fail-fast 2>&1 | tee target/test-output.txt

# Tests marked `#[ignore = "needs root"]` run here when we are root (CI is);
# elsewhere they are reported as ignored by the run above.
if [[ $(id -u) -eq 0 ]]; then
  step "tests that need root"
  # --workspace: the same features as the run above, so nothing is rebuilt.
  cargo test --workspace --all-features --locked --test disk_full -- --ignored 2>&1 \
    | tee -a target/test-output.txt
fi
if grep -q '^test result: FAILED' target/test-output.txt; then
  echo "some tests failed" >&2
  exit 1
fi

if [[ $quick -eq 0 ]]; then
  for check in scripts/checks/*.sh; do
    [[ -e "$check" ]] || continue
    step "check: $(basename "$check" .sh)"
    bash "$check"
  done
fi

passed=$(grep -h '^test result:' target/test-output.txt | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ | bc)
failed=$(grep -h '^test result:' target/test-output.txt | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ | bc)
printf '\nall checks passed\n%s passed, %s failed\n' "$passed" "$failed"
