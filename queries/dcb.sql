-- name: AppendEvents :one
SELECT es.append_events(@tenant_id::text, @events::jsonb, sqlc.narg(fail_if)::jsonb, @after::bigint)::bigint[] AS positions;

-- name: ReadHead :one
SELECT es.read_head(@tenant_id::text, @query::jsonb)::bigint AS head;

-- name: ReadEvents :many
SELECT position, tx_id, event_id, event_type, stream_id, stream_version, payload, metadata, tags, recorded_at
FROM es.read_events(@tenant_id::text, @query::jsonb, @after::bigint, @upto::bigint, @max_count::int, @backwards::boolean);

-- name: FindAppended :one
SELECT f.positions::bigint[] AS positions FROM es.find_appended(@tenant_id::text, NULL, @events::jsonb) f;
