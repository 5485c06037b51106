#!/usr/bin/env bash
# Makes a PostgreSQL server reachable for tests and the demo.
# TEST_DATABASE_URL (or DATABASE_URL) set: use that server and do nothing.
# Otherwise: the local server on 127.0.0.1:5432 as user postgres with trust
# auth; start it if it is down, install Debian's postgresql if it is absent.
set -euo pipefail

if [ -n "${TEST_DATABASE_URL:-}${DATABASE_URL:-}" ]; then
  exit 0
fi

ready() { pg_isready -q -h 127.0.0.1 -p 5432 -U postgres 2>/dev/null; }
sudo_maybe() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if command -v pg_isready >/dev/null 2>&1 && ready; then
  exit 0
fi

installed_now=no
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "ensure-postgres: installing Debian's postgresql" >&2
  sudo_maybe apt-get update -qq
  sudo_maybe env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  installed_now=yes
fi

version=$(ls /etc/postgresql | sort -n | tail -n 1)
version=${version:-15}
if [ "$installed_now" = yes ]; then
  # A fresh install asks for passwords over TCP; the test server trusts
  # local connections, as the README says. Only done on a server we installed.
  hba=/etc/postgresql/$version/main/pg_hba.conf
  sudo_maybe sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  sudo_maybe sed -i -E 's/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$hba"
fi

if ! ready; then
  echo "ensure-postgres: starting PostgreSQL $version" >&2
  sudo_maybe pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  if [ "$installed_now" = yes ]; then
    sudo_maybe pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
  fi
fi

for _ in $(seq 1 30); do
  ready && exit 0
  sleep 1
done
echo "ensure-postgres: PostgreSQL did not become ready on 127.0.0.1:5432" >&2
exit 1
