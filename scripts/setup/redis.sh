#!/usr/bin/env bash
# redis-server and redis-cli for the Redis store's tests. The tests start
# their own servers and clusters on free loopback ports, so no service is
# started here (and the system's own redis-server, if any, is left alone).
# Installs the Debian package only when the programs are missing. Safe to
# run twice.
set -euo pipefail

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  echo "redis: $(redis-server --version | cut -d' ' -f3)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: no need for the package's service to be set up
# beyond what the package does by itself.
apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
# The package may start its service; the tests do not use it.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server || true
fi
echo "redis: $(redis-server --version | cut -d' ' -f3)"
