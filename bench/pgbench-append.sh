#!/usr/bin/env bash
# The SQL API's append beside the machine's limit, without Go in the loop
# (issue 14). pgbench runs, in alternating rounds, each at 1 and 8 clients:
#   plain    INSERT of the event-shaped row into a table with only a bigserial
#            key (es_bench_raw_events): the machine's limit
#   direct   INSERT of the same row straight into es.events (partition
#            routing, the log's indexes and checks): the schema's own ceiling
#   stream   es.append_to_stream, 1 event, expected version Any, each
#            client to its own stream
#   dcb      es.append_events, 1 event with two tags, no condition
#   cond     es.append_events with a condition on the event's own tag
#            (disjoint boundaries: every call a new tag)
# and prints transactions/s with the ratio to plain of the same round.
#
#   bench/pgbench-append.sh DATABASE_URL [seconds] [rounds] [clients...]
# The database must be migrated with the bench set up (`esadmin bench` has run
# once there, or `make bench`). Tenant: bench. (pgbench substitutes ":name"
# even inside quotes, hence the split literals such as 'client:' || 'c'.)
set -euo pipefail
url=${1:?usage: pgbench-append.sh DATABASE_URL [seconds] [rounds] [clients...]}
secs=${2:-10}
rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(1 8)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

payload='{"course_id":"c-000123","student_id":"s-000456","amount": 1234,"currency":"EUR","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
cat > "$dir/plain.sql" <<SQL
\set k random(1, 1000000000000)
INSERT INTO es_bench_raw_events (tenant_id, event_id, event_type, stream_id, stream_version, payload, tags)
VALUES ('bench', gen_random_uuid(), 'Ev', 'plain-' || CAST(:client_id AS text), CAST(:k AS bigint), '$payload'::jsonb, ARRAY['client:' || 'c' || CAST(:client_id AS text), 'entity:' || 'e' || CAST(:k AS text)]);
SQL
cat > "$dir/direct.sql" <<SQL
\set k random(1, 1000000000000)
SELECT set_config('es.tenant_id', 'bench', false);
INSERT INTO es.events (tenant_id, position, event_id, event_type, stream_id, stream_version, payload, tags)
VALUES ('bench', nextval('es.event_position'), gen_random_uuid(), 'Ev', 'direct-' || CAST(:client_id AS text) || '-' || CAST(:k AS text), 1,
        '$payload'::jsonb, ARRAY['client:' || 'c' || CAST(:client_id AS text), 'entity:' || 'e' || CAST(:k AS text)]);
SQL
cat > "$dir/stream.sql" <<SQL
\set k random(1, 1000000000000)
SELECT es.append_to_stream(set_config('es.tenant_id', 'bench', true), 'pgb-' || CAST(:client_id AS text), -1,
  jsonb_build_array(jsonb_build_object('type', 'Ev', 'payload', '$payload'::jsonb, 'tags', jsonb_build_array('client:' || 'c' || CAST(:client_id AS text), 'entity:' || 'e' || CAST(:k AS text)))));
SQL
cat > "$dir/dcb.sql" <<SQL
\set k random(1, 1000000000000)
SELECT es.append_events(set_config('es.tenant_id', 'bench', true),
  jsonb_build_array(jsonb_build_object('type', 'Ev', 'payload', '$payload'::jsonb, 'tags', jsonb_build_array('client:' || 'c' || CAST(:client_id AS text), 'entity:' || 'e' || CAST(:k AS text)))));
SQL
cat > "$dir/cond.sql" <<SQL
\set k random(1, 1000000000000)
SELECT es.append_events(set_config('es.tenant_id', 'bench', true),
  jsonb_build_array(jsonb_build_object('type', 'Ev', 'payload', '$payload'::jsonb, 'tags', jsonb_build_array('client:' || 'c' || CAST(:client_id AS text), 'entity:' || 'e' || CAST(:k AS text)))),
  jsonb_build_array(jsonb_build_object('tags', jsonb_build_array('entity:' || 'e' || CAST(:k AS text)))), 0);
SQL

tps() { # script clients
  pgbench -n -M prepared -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" -T "$secs" -f "$dir/$1.sql" "$url" 2>&1 \
    | awk '/^tps/ { printf "%d", $3 }'
}
scenarios=${SCENARIOS:-"plain direct stream dcb cond"}
printf '%-6s %-8s %7s %8s %6s\n' round scenario clients tps ratio
for r in $(seq 1 "$rounds"); do
  for c in "${clients[@]}"; do
    base=0
    # Alternate the order each round so that drift favours no scenario.
    list=$scenarios
    if (( r % 2 == 0 )); then list=$(echo $scenarios | tr ' ' '\n' | tac | tr '\n' ' '); fi
    declare -A got=()
    for s in $list; do got[$s]=$(tps "$s" "$c"); done
    base=${got[plain]:-0}
    for s in $scenarios; do
      ratio=$(awk -v a="${got[$s]}" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
      printf '%-6s %-8s %7s %8s %6s\n' "$r" "$s" "$c" "${got[$s]}" "$ratio"
    done
    unset got
  done
done
