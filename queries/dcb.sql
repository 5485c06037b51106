-- name: AppendEvents :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.append_events(t.tenant_id, @events::jsonb, sqlc.narg(fail_if)::jsonb, @after::bigint)::bigint[] AS positions FROM t;

-- name: ReadHead :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.read_head(t.tenant_id, @query::jsonb)::bigint AS head FROM t;

-- name: ReadEvents :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT e.position, e.tx_id, e.event_id, e.event_type, e.stream_id, e.stream_version, e.payload, e.metadata, e.tags, e.recorded_at
FROM t, LATERAL es.read_events(t.tenant_id, @query::jsonb, @after::bigint, @upto::bigint, @max_count::int, @backwards::boolean) e;

-- name: FindAppended :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT coalesce(f.stream_version, 0)::bigint AS stream_version, f.positions::bigint[] AS positions
FROM t, LATERAL es.find_appended(t.tenant_id, sqlc.narg(stream_id)::text, @events::jsonb) f;

-- name: CountEvents :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.count_events(t.tenant_id, @query::jsonb, @after::bigint, @upto::bigint)::bigint AS count FROM t;
