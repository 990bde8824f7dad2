#!/usr/bin/env bash
# Every published crate packages and builds from its package alone (no file
# outside its folder, every dependency with a version): what `cargo publish`
# would upload. The demo, the examples and the benchmarks are not published.
set -euo pipefail
cd "$(dirname "$0")/../.."
crates=(tessera-core tessera-web tessera-axum tessera-actix tessera-embedded tessera-redis
  tessera-postgres tessera-import tessera-sessions tesserad)
# cargo verifies each package against the others through a registry of its
# own under target/package, unpacked into CARGO_HOME by path; a copy
# unpacked by an earlier run is not refreshed, so the packages of this
# checkout would be built against stale sources. Drop those copies first
# (only the local registry's, whose folder name starts with "-").
for crate in "${crates[@]}"; do
  rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/"$crate"-*
done
packages=()
for crate in "${crates[@]}"; do packages+=(-p "$crate"); done
cargo package --locked --allow-dirty "${packages[@]}"
