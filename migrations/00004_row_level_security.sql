-- Tenant isolation enforced by PostgreSQL. The application connects as a role
-- that is a member of es_runtime: not the owner of the tables, so row-level
-- security applies to it. Every statement of the Go API first sets
-- es.tenant_id for its transaction (set_config(..., true)); the policies
-- show and accept only that tenant's rows, and nothing when it is not set.
-- es_runtime may read and append events and manage snapshots; it cannot
-- update or delete events, touch partitions directly, or run the admin
-- functions (tenant lifecycle, migrations), which need the owner.

-- +goose Up

-- Roles are shared by the whole cluster, and other databases may have
-- created it already (possibly at this very moment).
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'es_runtime') THEN
        CREATE ROLE es_runtime NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;
-- +goose StatementEnd

GRANT USAGE ON SCHEMA es TO es_runtime;
GRANT SELECT ON es.tenants TO es_runtime;
GRANT SELECT, INSERT ON es.events TO es_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON es.snapshots TO es_runtime;
GRANT USAGE ON SEQUENCE es.event_position TO es_runtime;

-- The admin functions stay with the owner.
REVOKE EXECUTE ON FUNCTION es.create_tenant(text, text), es.drop_tenant(text),
    es.set_tenant_status(text, text), es.analyze_tenant(text) FROM PUBLIC;

ALTER TABLE es.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE es.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE es.snapshots ENABLE ROW LEVEL SECURITY;

-- current_setting(..., true) is NULL or '' when no tenant is set: no row
-- matches.
CREATE POLICY tenant_isolation ON es.tenants
    USING (tenant_id = current_setting('es.tenant_id', true));
CREATE POLICY tenant_isolation ON es.events
    USING (tenant_id = current_setting('es.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('es.tenant_id', true));
CREATE POLICY tenant_isolation ON es.snapshots
    USING (tenant_id = current_setting('es.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('es.tenant_id', true));

-- +goose Down
DROP POLICY tenant_isolation ON es.snapshots;
DROP POLICY tenant_isolation ON es.events;
DROP POLICY tenant_isolation ON es.tenants;
ALTER TABLE es.snapshots DISABLE ROW LEVEL SECURITY;
ALTER TABLE es.events DISABLE ROW LEVEL SECURITY;
ALTER TABLE es.tenants DISABLE ROW LEVEL SECURITY;
GRANT EXECUTE ON FUNCTION es.create_tenant(text, text), es.drop_tenant(text),
    es.set_tenant_status(text, text), es.analyze_tenant(text) TO PUBLIC;
REVOKE ALL ON es.tenants, es.events, es.snapshots FROM es_runtime;
REVOKE ALL ON SEQUENCE es.event_position FROM es_runtime;
REVOKE USAGE ON SCHEMA es FROM es_runtime;
