#!/usr/bin/env bash
# The Node and Python client libraries of tesserad (clients/): installs
# their dependencies (npm ci from the committed lock file; a virtualenv in
# clients/python/.venv), then runs both test suites against a real tesserad
# and a private redis-server. Exits non-zero if either suite fails.
#
# tesserad: $TESSERAD_BIN, else target/debug/tesserad, else built with cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

step() { printf '\n--> %s\n' "$*"; }

if [[ -n "${TESSERAD_BIN:-}" ]]; then
  [[ -x "$TESSERAD_BIN" ]] || { echo "TESSERAD_BIN=$TESSERAD_BIN is not an executable" >&2; exit 1; }
elif [[ -x target/debug/tesserad ]]; then
  TESSERAD_BIN="$root/target/debug/tesserad"
else
  step "building tesserad"
  cargo build -q -p tesserad --bin tesserad
  TESSERAD_BIN="$root/target/debug/tesserad"
fi
TESSERAD_BIN=$(cd "$(dirname "$TESSERAD_BIN")" && pwd)/$(basename "$TESSERAD_BIN")
export TESSERAD_BIN
echo "tesserad: $TESSERAD_BIN ($("$TESSERAD_BIN" --version))"
command -v redis-server >/dev/null || { echo "redis-server is needed (scripts/setup/redis.sh installs it)" >&2; exit 1; }
command -v node >/dev/null || { echo "node (20 or later) is needed" >&2; exit 1; }

failed=()

step "node: npm ci"
(cd clients/node && npm ci --no-audit --no-fund --loglevel=error)
step "node: tests"
if ! (cd clients/node && npm test); then
  failed+=(node)
fi

step "python: virtualenv and pip install -e .[test]"
python=${PYTHON:-python3}
venv=clients/python/.venv
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e 'clients/python[test]'
step "python: mypy --strict"
if ! (cd clients/python && .venv/bin/mypy src examples); then
  failed+=(python-types)
fi
step "python: tests"
if ! (cd clients/python && .venv/bin/pytest -q -p no:cacheprovider); then
  failed+=(python)
fi

if ((${#failed[@]})); then
  echo "clients: failed: ${failed[*]}" >&2
  exit 1
fi
echo "clients: Node and Python suites passed"
