#!/usr/bin/env bash
# Does push notification slow appends down (NOTES.md hazard 1)? pgbench
# appends one event per transaction through the SQL API (es.append_to_stream,
# each client to its own stream) to the bench tenant, alternating rounds:
#   off         the session sets es.push = off: the trigger sends nothing
#   listened    notifications on
#   subscribed  notifications on, and a live subscription (esadmin events
#               tail) reading the log on every wake-up
# with one connection LISTENing and draining notifications in every mode, so
# that off and listened differ only by the notifications themselves
# and, in every round, the same-run baseline: a plain INSERT of the same row
# into es_bench_raw_events. pgbench drives the server without a Go client, so
# the comparison is the server's. Needs `make build` and a database migrated
# with the bench set up (esadmin bench has run once).
#
#   bench/push-pgbench.sh postgres://postgres@127.0.0.1:5432/pges_bench [seconds] [rounds]
set -euo pipefail
url=${1:?usage: push-pgbench.sh DATABASE_URL [seconds] [rounds]}
secs=${2:-10}
rounds=${3:-3}
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"; kill $(jobs -p) 2>/dev/null || true' EXIT

payload='{"course_id":"c-000123","student_id":"s-000456","amount": 1234,"currency":"EUR","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
cat > "$dir/append.sql" <<EOF
SELECT es.append_to_stream(set_config('es.tenant_id', 'bench', true), 'push-' || :client_id, -1,
  '[{"type":"Ev","payload":$payload,"tags":["client:c1","entity:e1"]}]'::jsonb);
EOF
cat > "$dir/insert.sql" <<EOF
INSERT INTO es_bench_raw_events (tenant_id, event_id, event_type, payload, tags)
VALUES ('bench', gen_random_uuid(), 'Ev', '$payload'::jsonb, '{client:c1,entity:e1}');
EOF

tps() { # clients script [extra env]
  env "${@:3}" pgbench -n -c "$1" -j 2 -T "$secs" -f "$2" "$url" 2>&1 | awk '/^tps/ { printf "%d", $3 }'
}

# A listener that drains notifications: psql runs a trivial query every
# 20 ms and takes in what arrived meanwhile.
printf 'LISTEN es_events;\nSELECT 1 \\watch 0.02\n' | psql -q "$url" >/dev/null 2>&1 &
sleep 0.5

echo "| round | clients | plain INSERT tps | off tps | listened tps | subscribed tps | listened / off | subscribed / off | off / INSERT |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
measure() { # mode clients
  case $1 in
    off) tps "$2" "$dir/append.sql" PGOPTIONS="-c es.push=off" ;;
    listened) tps "$2" "$dir/append.sql" ;;
    subscribed)
      ./bin/esadmin --database-url "$url" events tail -t bench --type NoSuchType >/dev/null 2>&1 &
      local tail=$!; sleep 0.5
      tps "$2" "$dir/append.sql"
      kill -INT "$tail" 2>/dev/null || true
      wait "$tail" 2>/dev/null || true ;;
  esac
}

# Each round runs the three modes in another order, so that nothing that
# drifts during a run (autovacuum, checkpoints, the table growing) favours one.
orders=("off listened subscribed" "listened subscribed off" "subscribed off listened")
for round in $(seq "$rounds"); do
  for c in 8 16; do
    declare -A got=()
    base=$(tps "$c" "$dir/insert.sql")
    for mode in ${orders[$(( (round - 1) % 3 ))]}; do
      got[$mode]=$(measure "$mode" "$c")
    done
    awk -v r="$round" -v c="$c" -v b="$base" -v o="${got[off]}" -v l="${got[listened]}" -v s="${got[subscribed]}" \
      'BEGIN { printf "| %d | %d | %d | %d | %d | %d | %.2f | %.2f | %.2f |\n", r, c, b, o, l, s, l/o, s/o, o/b }'
  done
done
