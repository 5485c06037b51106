-- name: CreateTenant :one
SELECT tenant_id, name, status, created_at FROM es.create_tenant(@tenant_id::text, @name::text);

-- name: GetTenant :one
SELECT tenant_id, name, status, created_at FROM es.tenants WHERE tenant_id = @tenant_id;

-- name: ListTenants :many
SELECT tenant_id, name, status, created_at FROM es.tenants ORDER BY tenant_id;

-- name: SetTenantStatus :one
SELECT tenant_id, name, status, created_at FROM es.set_tenant_status(@tenant_id::text, @status::text);

-- name: TenantStats :one
SELECT s.events::bigint AS events, s.streams::bigint AS streams, s.snapshots::bigint AS snapshots,
       s.bytes::bigint AS bytes, s.last_event_at::timestamptz AS last_event_at, s.dedicated::boolean AS dedicated
FROM es.tenant_stats(@tenant_id::text) s;

-- name: DedicateTenantConcurrently :exec
CALL es.dedicate_tenant_concurrently(@tenant_id::text);

-- name: TenantIsDedicated :one
SELECT es.is_dedicated(@tenant_id::text)::boolean AS dedicated;

-- name: DropTenant :one
SELECT es.drop_tenant(@tenant_id::text)::boolean AS dropped;

-- name: ExportEvents :many
SELECT position, event_id, event_type, stream_id, stream_version, payload::text AS payload,
       metadata::text AS metadata, tags, recorded_at
FROM es.events WHERE tenant_id = @tenant_id AND position > @after ORDER BY position LIMIT @max_count;

-- name: ExportSnapshots :many
SELECT stream_id, stream_version, schema_version, state::text AS state, created_at
FROM es.snapshots WHERE tenant_id = @tenant_id ORDER BY stream_id, stream_version;

-- name: ImportEvents :one
SELECT es.import_events(@tenant_id::text, @rows::jsonb, @merge::boolean)::bigint AS imported;

-- name: LockTenant :exec
SELECT es.lock_tenant(@tenant_id::text);

-- name: ImportSnapshots :one
SELECT es.import_snapshots(@tenant_id::text, @rows::jsonb)::bigint AS imported;

-- name: CountTenantRows :one
SELECT (SELECT count(*) FROM es.events e WHERE e.tenant_id = @tenant_id::text)::bigint AS events,
       (SELECT count(*) FROM es.snapshots s WHERE s.tenant_id = @tenant_id::text)::bigint AS snapshots;

-- name: ExportSubscriptions :many
-- Each subscription with the last event up to which every event has been
-- delivered: the one before the lowest position after the checkpoint
-- ('' when none).
SELECT s.name, s.filter::text AS filter,
       coalesce((SELECT e.event_id::text FROM es.events e
         WHERE e.tenant_id = s.tenant_id
           AND e.position < coalesce((SELECT min(u.position) FROM es.events u
                                       WHERE u.tenant_id = s.tenant_id
                                         AND (u.tx_id, u.position) > (s.checkpoint_tx, s.checkpoint_position)),
                                     9223372036854775807)
         ORDER BY e.position DESC LIMIT 1), '')::text AS delivered_through,
       coalesce((SELECT jsonb_agg(jsonb_build_object('event_id', d.event_id, 'error', d.error, 'attempts', d.attempts,
                                                     'parked_at', d.parked_at) ORDER BY d.position)
                   FROM es.dead_letters d WHERE d.tenant_id = s.tenant_id AND d.subscription = s.name), '[]')::text AS dead_letters
FROM es.subscriptions s WHERE s.tenant_id = @tenant_id ORDER BY s.name;

-- name: ImportSubscriptions :one
SELECT es.import_subscriptions(@tenant_id::text, @rows::jsonb)::bigint AS imported;

-- name: UseCustomPlans :exec
-- For the rest of the transaction: the direct statements on es.events
-- below must never build a generic plan, which locks every partition
-- (migrations/00009_custom_plans.sql).
SELECT set_config('plan_cache_mode', 'force_custom_plan', true);
