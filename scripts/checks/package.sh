#!/usr/bin/env bash
# Every published crate packages and builds from its package alone (no file
# outside its folder, every dependency with a version): what `cargo publish`
# would upload. The demo, the examples and the benchmarks are not published.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo package --locked --allow-dirty \
  -p tessera-core -p tessera-web -p tessera-axum -p tessera-embedded \
  -p tessera-redis -p tessera-postgres -p tessera-actix -p tessera-sessions -p tesserad
