-- name: SaveSnapshot :exec
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.save_snapshot(t.tenant_id, @stream_id::text, @stream_version::bigint, @schema_version::int, @state::jsonb) FROM t;

-- name: LoadSnapshotUpto :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT s.stream_version, s.schema_version, s.state, s.created_at
FROM t, LATERAL es.load_snapshot_upto(t.tenant_id, @stream_id::text, @max_version::bigint) s;

-- name: ListSnapshots :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT s.stream_id::text AS stream_id, s.stream_version::bigint AS stream_version, s.schema_version::int AS schema_version,
       s.bytes::int AS bytes, s.created_at::timestamptz AS created_at
FROM t, LATERAL es.list_snapshots(t.tenant_id, sqlc.narg(stream_id)::text) s;

-- name: DeleteSnapshots :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.delete_snapshots(t.tenant_id, @stream_id::text, sqlc.narg(version)::bigint)::bigint AS deleted FROM t;

-- name: PruneSnapshots :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.prune_snapshots(t.tenant_id, @keep::int)::bigint AS deleted FROM t;
