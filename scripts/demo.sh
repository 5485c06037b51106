#!/usr/bin/env bash
# make demo: migrate a demo database, create a tenant, append to a stream and
# by DCB, show optimistic concurrency, read, tail a live subscription while
# events arrive, replay, snapshots, subscriptions and a short bench, through
# esadmin (and psql and the Go quickstart for the SQL and Go APIs).
set -euo pipefail
url=${1:?usage: demo.sh DATABASE_URL}
es() { echo "\$ esadmin $*" >&2; ./bin/esadmin --database-url "$url" "$@"; }

./scripts/ensure-db.sh "$url"

es migrate up
es migrate status
es tenant create --name "Demo tenant" demo
stream="order-$(date +%s)"
echo '--- append two events to a new stream (expected version: no stream)' >&2
printf '%s\n' \
  '{"type":"OrderPlaced","payload":{"total":42},"tags":["customer:7"],"metadata":{"correlation_id":"req-1","user":"alice"}}' \
  '{"type":"ItemAdded","payload":{"sku":"A-1","qty":2},"tags":["customer:7","sku:A-1"]}' \
  | es events append -t demo --stream "$stream" --expected-version no-stream
echo '--- a stale writer (expected version 1) is refused with exit code 3' >&2
set +e
echo '{"type":"OrderCancelled","payload":{}}' | es events append -t demo --stream "$stream" --expected-version 1
echo "exit code: $?" >&2
set -e
echo '--- append at the right version' >&2
echo '{"type":"OrderPaid","payload":{"amount":42}}' | es events append -t demo --stream "$stream" --expected-version 2
echo '--- read the stream' >&2
es events read -t demo --stream "$stream"
echo '--- newest first, one event' >&2
es events read -t demo --stream "$stream" --backwards --limit 1
echo '--- DCB: a conditional append (fail if the username is taken), then the same one refused with exit code 3' >&2
user="username:alice-$(date +%s%N)"
echo "{\"type\":\"UserRegistered\",\"payload\":{},\"tags\":[\"$user\"]}" | es events append -t demo --fail-if-tag "$user"
set +e
echo "{\"type\":\"UserRegistered\",\"payload\":{},\"tags\":[\"$user\"]}" | es events append -t demo --fail-if-tag "$user"
echo "exit code: $?" >&2
set -e
es events read -t demo --tag "$user"
echo '--- the same through psql (the SQL API)' >&2
course="course:$(date +%s%N)"
q="[{\"tags\":[\"$course\"]}]"
psql "$url" -Atqc "SELECT set_config('es.tenant_id', 'demo', false)" -c "SELECT 'positions ' || es.append_events('demo', '[{\"type\":\"CourseDefined\",\"payload\":{\"capacity\":1},\"tags\":[\"$course\"]}]', '$q', 0)::text"
psql "$url" -Atqc "SELECT set_config('es.tenant_id', 'demo', false)" -c "SELECT es.append_events('demo', '[{\"type\":\"CourseDefined\",\"payload\":{},\"tags\":[\"$course\"]}]', '$q', 0)" 2>&1 | head -1 || true
echo '--- tail: follow the order streams live while three events arrive' >&2
echo "\$ esadmin events tail -t demo --stream-prefix order- --limit 3 &" >&2
./bin/esadmin --database-url "$url" events tail -t demo --stream-prefix order- --limit 3 &
tail_pid=$!
sleep 1
for i in 1 2 3; do
  echo "{\"type\":\"ItemAdded\",\"payload\":{\"sku\":\"B-$i\",\"qty\":1}}" | ./bin/esadmin --database-url "$url" events append -t demo --stream "$stream" >/dev/null
done
wait "$tail_pid"
echo '--- replay the stream as JSON Lines (a progress bar appears on a terminal)' >&2
es replay -t demo --stream "$stream"
echo '--- the Go quickstart (examples/quickstart): streams, snapshot, typed events, a DCB decision, a subscription' >&2
DATABASE_URL="$url" go run ./examples/quickstart
es snapshot list -t acme
es subscription list -t acme
echo '--- a short benchmark against the same-run plain INSERT' >&2
es bench --duration 1s --scenarios stream-append-1,read-stream-10000
