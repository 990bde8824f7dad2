#!/usr/bin/env bash
# Licences, banned/duplicate versions and dependency sources, offline.
# Advisories need the RustSec database from the network: run
# `cargo deny check advisories` (or `cargo audit`) where you have access.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
# The offline check reads every platform's dependencies (e.g. Windows- or
# Redox-only crates of a database driver); make sure they are downloaded.
cargo fetch --locked -q
if ! out=$(cargo deny --offline check licenses bans sources 2>&1); then
  echo "$out" | grep -E -A12 '^error' >&2
  exit 1
fi
echo "$out" | tail -1
