#!/usr/bin/env bash
# PostgreSQL for the tests: a server answering on 127.0.0.1:5432 with trust
# authentication for the user `postgres`, and a database named `test`.
# Uses what answers there already; otherwise starts the machine's cluster, or
# creates one in a temporary directory; installs PostgreSQL only when its
# programs are missing. Safe to run twice.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
port="${TESSERA_PG_PORT:-5432}"

bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -n "$dir" && -x "$dir/initdb" ]]; then
    echo "$dir"
  elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
  fi
}

answers() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h 127.0.0.1 -p "$port" -t 2
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The tests connect over TCP as `postgres` without a password.
trust_loopback() {
  if ! grep -Eq '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$1/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$1/pg_hba.conf"
  fi
}

if [[ -z "$(bin_dir)" ]] || ! command -v psql >/dev/null || ! command -v pgbench >/dev/null; then
  apt-get update -qq
  # postgresql-contrib holds pgbench on older releases; the server package on newer ones.
  apt-get install -y -qq postgresql postgresql-client postgresql-contrib >/dev/null
fi
BIN=$(bin_dir)

if ! answers; then
  started=0
  if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
    for version in $(ls /etc/postgresql | sort -V); do
      conf="/etc/postgresql/$version/main"
      [[ -f "$conf/postgresql.conf" ]] || continue
      trust_loopback "$conf"
      if grep -Eq "^\s*port\s*=\s*$port\b" "$conf/postgresql.conf" || ! grep -Eq '^\s*port\s*=' "$conf/postgresql.conf"; then
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        for _ in $(seq 1 30); do answers && break; sleep 1; done
        if answers; then started=1; break; fi
      fi
    done
  fi
  if [[ $started -eq 0 ]]; then
    # No usable system cluster: make one in a temporary directory.
    data="/tmp/tessera-postgres-$port"
    if [[ ! -f "$data/PG_VERSION" ]]; then
      mkdir -p "$data"
      [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$data"
      as_postgres "$BIN/initdb" -D "$data" -A trust -U postgres -E UTF8 >/dev/null
    fi
    as_postgres "$BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  fi
fi
answers || { echo "PostgreSQL does not answer on 127.0.0.1:$port" >&2; exit 1; }

# A server that asks for a password: trust loopback connections instead.
if ! psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -w -Atc 'SELECT 1' >/dev/null 2>&1; then
  for conf in /etc/postgresql/*/main; do
    [[ -f "$conf/pg_hba.conf" ]] || continue
    trust_loopback "$conf"
    version=$(basename "$(dirname "$conf")")
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
  done
  sleep 1
fi

if ! psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
  psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc 'CREATE DATABASE test'
fi
echo "PostgreSQL answers on 127.0.0.1:$port; database test is there"
