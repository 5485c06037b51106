-- Tenant isolation enforced by PostgreSQL. The application connects as a role
-- that is a member of es_runtime: not the owner of the tables, so row-level
-- security applies to it. Every statement of the Go API first sets
-- es.tenant_id for its transaction (set_config(..., true)); the policies
-- show and accept only that tenant's rows, and nothing when it is not set,
-- and the SQL API refuses any other tenant (es.require_tenant).
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

-- The SQL API runs as the owner (SECURITY DEFINER) and checks its tenant
-- argument against es.tenant_id itself (es.require_tenant). Run as the
-- runtime role, row-level security would only let leakproof operators use
-- indexes, and the tags' @> is not leakproof: every condition check and tag
-- query would scan the tenant's partition. The policies still bind every
-- statement the runtime role writes itself. search_path is pinned, as for
-- any SECURITY DEFINER function.
ALTER FUNCTION es.append_to_stream(text, text, bigint, jsonb) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.delete_stream(text, text, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.stream_head(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.read_stream(text, text, bigint, int, boolean) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.save_snapshot(text, text, bigint, int, jsonb) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.load_snapshot(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.find_appended(text, text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.read_head(text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.read_events(text, jsonb, bigint, bigint, int, boolean) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.count_events(text, jsonb, bigint, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.append_events(text, jsonb, jsonb, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- The helpers are the API's, not the caller's: without EXECUTE the runtime
-- role cannot, say, write events past the checks (es.write_events) or take
-- another tenant's locks (es.lock_boundary).
REVOKE EXECUTE ON FUNCTION es.raise(text, text, text),
    es.require_tenant(text),
    es.check_tenant(text, boolean, boolean),
    es.validate_events(jsonb),
    es.check_batch(jsonb),
    es.lock_boundary(text, jsonb, jsonb),
    es.lock_key(text, text, text),
    es.lock_stripe(bigint),
    es.write_events(text, text, bigint, jsonb),
    es.check_query(jsonb),
    es.require_read_committed(),
    es.first_match(text, jsonb, bigint),
    es.query_filter(jsonb),
    es.tenant_stats(text) FROM PUBLIC;

-- +goose Down
GRANT EXECUTE ON FUNCTION es.raise(text, text, text),
    es.require_tenant(text),
    es.check_tenant(text, boolean, boolean),
    es.validate_events(jsonb),
    es.check_batch(jsonb),
    es.lock_boundary(text, jsonb, jsonb),
    es.lock_key(text, text, text),
    es.lock_stripe(bigint),
    es.write_events(text, text, bigint, jsonb),
    es.check_query(jsonb),
    es.require_read_committed(),
    es.first_match(text, jsonb, bigint),
    es.query_filter(jsonb),
    es.tenant_stats(text) TO PUBLIC;
ALTER FUNCTION es.append_to_stream(text, text, bigint, jsonb) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.delete_stream(text, text, bigint) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.stream_head(text, text) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.read_stream(text, text, bigint, int, boolean) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.save_snapshot(text, text, bigint, int, jsonb) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.load_snapshot(text, text) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.find_appended(text, text, jsonb) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.read_head(text, jsonb) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.read_events(text, jsonb, bigint, bigint, int, boolean) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.count_events(text, jsonb, bigint, bigint) SECURITY INVOKER RESET search_path;
ALTER FUNCTION es.append_events(text, jsonb, jsonb, bigint) SECURITY INVOKER RESET search_path;

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
