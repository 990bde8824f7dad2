#!/usr/bin/env bash
# A new axum app written from the docs alone builds: its dependency line is
# copied from docs/getting-started.md as written, its code is the README's
# axum example, and only a [patch] points the package at this checkout
# instead of crates.io.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
app=$(mktemp -d)
trap 'rm -rf "$app"' EXIT

dependency=$(grep -m1 '^tessera = ' docs/getting-started.md)
[[ -n "$dependency" ]] || { echo "no 'tessera = …' line in docs/getting-started.md" >&2; exit 1; }
mkdir -p "$app/src"
cat > "$app/Cargo.toml" <<TOML
[package]
name = "fresh-app"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
$dependency
axum = "0.8"
tokio = { version = "1", features = ["macros", "rt-multi-thread", "net"] }

[patch.crates-io]
tessera-sessions = { path = "$root/crates/tessera" }
TOML
# The README's first Rust example (the axum app), and a main that serves it.
awk '/^## In an axum app/ {inside=1} inside && /^```rust/ {code=1; next} code && /^```/ {exit} code {print}' \
  README.md > "$app/src/main.rs"
[[ -s "$app/src/main.rs" ]] || { echo "no Rust example under 'In an axum app' in README.md" >&2; exit 1; }
cat >> "$app/src/main.rs" <<'RUST'

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = SessionManager::builder(tessera::MemoryStore::new()).build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    drop((listener, app(manager)));
    Ok(())
}
RUST
# The workspace's lock file pins the same versions, so the build reuses its artifacts.
cp Cargo.lock "$app/Cargo.lock"
CARGO_TARGET_DIR="$root/target" cargo build --manifest-path "$app/Cargo.toml"
echo "a fresh axum app from the docs builds"
