#!/usr/bin/env bash
# Measures redb against SQLite on the embedded store's workload (durable
# create, load, compare-and-swap update, rotate), the measurement behind the
# embedded store's choice of database. Bounded: about 2 s per phase, 5 phases,
# 2 rounds per database. Data goes to a temporary directory under BENCH_DIR
# (default: the current directory, so the disk is the one under test).
#
#   bench/embedded-choice.sh            PHASE_SECS=2 by default
set -euo pipefail
cd "$(dirname "$0")/embedded-choice"
cargo build --release --quiet
PHASE_SECS="${PHASE_SECS:-2}" ./target/release/embedded-choice
