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
       s.bytes::bigint AS bytes, s.last_event_at::timestamptz AS last_event_at
FROM es.tenant_stats(@tenant_id::text) s;

-- name: DropTenant :one
SELECT es.drop_tenant(@tenant_id::text)::boolean AS dropped;
