#!/usr/bin/env bash
# Runs a command while another database of the same server holds a
# transaction with an assigned id open for the whole run, as a forgotten
# BEGIN in a psql session does on a shared server (issue 15). Nothing the
# command tests may wait for that transaction: the store's delivery horizon
# is held back only by the tenant's own writers.
#   scripts/hold-xid.sh make test
# Uses the server of TEST_DATABASE_URL, else the local one; the stranger's
# database is created for the run and dropped after it.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
db=pges_stranger_$$
admin_url=$(echo "$base" | sed -E 's#/[^/?]+(\?|$)#/postgres\1#')
url=$(echo "$base" | sed -E "s#/[^/?]+(\?|\$)#/$db\1#")
psql "$admin_url" -qc "CREATE DATABASE $db"
psql "$url" -qAt -c "BEGIN; SELECT pg_current_xact_id(); SELECT pg_sleep(86400)" >/dev/null 2>&1 &
holder=$!
cleanup() {
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
held() {
  psql "$admin_url" -qAt -c "SELECT backend_xid FROM pg_stat_activity WHERE datname = '$db' AND backend_xid IS NOT NULL"
}
for _ in $(seq 100); do
  xid=$(held)
  [ -n "$xid" ] && break
  sleep 0.1
done
if [ -z "$xid" ]; then
  echo "hold-xid: could not open the stranger's transaction" >&2
  exit 1
fi
echo "hold-xid: database $db holds transaction $xid open" >&2
rc=0
"$@" || rc=$?
if [ "$(held)" != "$xid" ]; then
  echo "hold-xid: the stranger's transaction $xid ended before the command did" >&2
  [ "$rc" -eq 0 ] && rc=1
fi
exit "$rc"
