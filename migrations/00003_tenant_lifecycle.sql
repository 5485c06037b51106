-- Tenant lifecycle: suspend, resume, statistics and drop. A tenant's data
-- lives in its own partitions, so dropping a tenant drops them: the time
-- does not depend on how much data the tenant holds.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION es.set_tenant_status(p_tenant_id text, p_status text)
RETURNS es.tenants LANGUAGE plpgsql AS $$
DECLARE
    v_row es.tenants;
BEGIN
    IF p_status NOT IN ('active', 'suspended') THEN
        PERFORM es.raise('ES004', format('invalid tenant status %L: use active or suspended', p_status));
    END IF;
    UPDATE es.tenants SET status = p_status WHERE tenant_id = p_tenant_id RETURNING * INTO v_row;
    IF v_row.tenant_id IS NULL THEN
        PERFORM es.raise('ES005', format('tenant %L not found', left(p_tenant_id, 80)));
    END IF;
    RETURN v_row;
END $$;
-- +goose StatementEnd

-- es.tenant_stats: what a tenant holds.
-- +goose StatementBegin
CREATE FUNCTION es.tenant_stats(p_tenant_id text,
    OUT events bigint, OUT streams bigint, OUT snapshots bigint, OUT bytes bigint, OUT last_event_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    SELECT count(*), count(DISTINCT e.stream_id), max(e.recorded_at) INTO events, streams, last_event_at
      FROM es.events e WHERE e.tenant_id = p_tenant_id;
    SELECT count(*) INTO snapshots FROM es.snapshots s WHERE s.tenant_id = p_tenant_id;
    SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) INTO bytes
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'es' AND c.relname IN ('events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
END $$;
-- +goose StatementEnd

-- es.drop_tenant removes a tenant and all its data by dropping its
-- partitions. Dropping a partition briefly takes an ACCESS EXCLUSIVE lock on
-- the parent table, so it waits for statements in flight on any tenant.
-- Returns false when the tenant did not exist.
-- +goose StatementBegin
CREATE FUNCTION es.drop_tenant(p_tenant_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM es.tenants WHERE tenant_id = p_tenant_id) THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    DELETE FROM es.tenants WHERE tenant_id = p_tenant_id;
    RETURN true;
END $$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION es.drop_tenant(text);
DROP FUNCTION es.tenant_stats(text);
DROP FUNCTION es.set_tenant_status(text, text);
