-- name: AppendToStream :one
SELECT r.stream_version::bigint AS stream_version, r.positions::bigint[] AS positions
FROM es.append_to_stream(@tenant_id::text, @stream_id::text, @expected_version::bigint, @events::jsonb) r;

-- name: DeleteStream :one
SELECT es.delete_stream(@tenant_id::text, @stream_id::text, @expected_version::bigint)::bigint AS stream_version;

-- name: StreamHead :one
SELECT h.version::bigint AS version, h.deleted::boolean AS deleted
FROM es.stream_head(@tenant_id::text, @stream_id::text) h;

-- name: ReadStream :many
SELECT position, tx_id, event_id, event_type, stream_id, stream_version, payload, metadata, tags, recorded_at
FROM es.read_stream(@tenant_id::text, @stream_id::text, @from_version::bigint, @max_count::int, @backwards::boolean);
