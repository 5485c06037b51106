-- Every tenant-scoped statement first sets es.tenant_id for its own
-- transaction (row-level security, migrations/00004) and passes the value
-- set_config returns to the function, which therefore runs after it.

-- name: AppendToStream :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT r.stream_version::bigint AS stream_version, r.positions::bigint[] AS positions
FROM t, LATERAL es.append_to_stream(t.tenant_id, @stream_id::text, @expected_version::bigint, @events::jsonb) r;

-- name: DeleteStream :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.delete_stream(t.tenant_id, @stream_id::text, @expected_version::bigint)::bigint AS stream_version FROM t;

-- name: StreamHead :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT h.version::bigint AS version, h.deleted::boolean AS deleted
FROM t, LATERAL es.stream_head(t.tenant_id, @stream_id::text) h;

-- name: ReadStream :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT e.position, e.tx_id, e.event_id, e.event_type, e.stream_id, e.stream_version, e.payload, e.metadata, e.tags, e.recorded_at
FROM t, LATERAL es.read_stream(t.tenant_id, @stream_id::text, @from_version::bigint, @max_count::int, @backwards::boolean) e;
