-- name: SaveSnapshot :exec
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.save_snapshot(t.tenant_id, @stream_id::text, @stream_version::bigint, @schema_version::int, @state::jsonb) FROM t;

-- name: LoadSnapshot :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT s.stream_version, s.schema_version, s.state, s.created_at
FROM t, LATERAL es.load_snapshot(t.tenant_id, @stream_id::text) s;
