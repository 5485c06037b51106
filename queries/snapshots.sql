-- name: SaveSnapshot :exec
SELECT es.save_snapshot(@tenant_id::text, @stream_id::text, @stream_version::bigint, @schema_version::int, @state::jsonb);

-- name: LoadSnapshot :many
SELECT stream_version, schema_version, state, created_at
FROM es.load_snapshot(@tenant_id::text, @stream_id::text);
