-- name: CreateTenant :one
SELECT tenant_id, name, status, created_at FROM es.create_tenant(@tenant_id::text, @name::text);

-- name: GetTenant :one
SELECT tenant_id, name, status, created_at FROM es.tenants WHERE tenant_id = @tenant_id;

-- name: ListTenants :many
SELECT tenant_id, name, status, created_at FROM es.tenants ORDER BY tenant_id;
