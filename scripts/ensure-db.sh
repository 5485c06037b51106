#!/usr/bin/env bash
# Creates the database a URL names if it does not exist, through the
# server's postgres database (which is otherwise left alone).
set -euo pipefail
url=${1:?usage: ensure-db.sh DATABASE_URL}
admin_url=$(echo "$url" | sed -E 's#/[^/?]+(\?|$)#/postgres\1#')
dbname=$(echo "$url" | sed -E 's#^.*/([^/?]+)(\?.*)?$#\1#')
if ! psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$dbname'" | grep -q 1; then
  psql "$admin_url" -qc "CREATE DATABASE \"$dbname\""
fi
