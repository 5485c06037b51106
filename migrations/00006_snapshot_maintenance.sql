-- Snapshot maintenance, scoped to one tenant like every other path (the
-- maintenance paths are where cross-tenant writes slipped into other stores:
-- NOTES.md hazard 11). Under row-level security the runtime role can only
-- ever touch the tenant it has set.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION es.list_snapshots(p_tenant_id text, p_stream_id text DEFAULT NULL)
RETURNS TABLE (stream_id text, stream_version bigint, schema_version int, bytes int, created_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    RETURN QUERY
        SELECT s.stream_id, s.stream_version, s.schema_version, pg_column_size(s.state), s.created_at
          FROM es.snapshots s
         WHERE s.tenant_id = p_tenant_id AND (p_stream_id IS NULL OR s.stream_id = p_stream_id)
         ORDER BY s.stream_id, s.stream_version;
END $$;
-- +goose StatementEnd

-- es.delete_snapshots deletes a stream's snapshot at p_version, or all of
-- the stream's snapshots when p_version is NULL. Returns how many.
-- +goose StatementBegin
CREATE FUNCTION es.delete_snapshots(p_tenant_id text, p_stream_id text, p_version bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    DELETE FROM es.snapshots s
     WHERE s.tenant_id = p_tenant_id AND s.stream_id = p_stream_id
       AND (p_version IS NULL OR s.stream_version = p_version);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;
-- +goose StatementEnd

-- es.prune_snapshots keeps the p_keep latest snapshots of every stream of
-- the tenant and deletes the others. Returns how many it deleted.
-- +goose StatementBegin
CREATE FUNCTION es.prune_snapshots(p_tenant_id text, p_keep int DEFAULT 1)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    IF p_keep IS NULL OR p_keep < 1 THEN
        PERFORM es.raise('ES004', 'keep at least 1 snapshot per stream');
    END IF;
    DELETE FROM es.snapshots s
     USING (SELECT x.stream_id, x.stream_version,
                   row_number() OVER (PARTITION BY x.stream_id ORDER BY x.stream_version DESC) AS rn
              FROM es.snapshots x WHERE x.tenant_id = p_tenant_id) old
     WHERE s.tenant_id = p_tenant_id AND s.stream_id = old.stream_id
       AND s.stream_version = old.stream_version AND old.rn > p_keep;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;
-- +goose StatementEnd

-- Like the rest of the SQL API: run as the owner, scoped by es.require_tenant.
ALTER FUNCTION es.list_snapshots(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.delete_snapshots(text, text, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.prune_snapshots(text, int) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- +goose Down
DROP FUNCTION es.prune_snapshots(text, int);
DROP FUNCTION es.delete_snapshots(text, text, bigint);
DROP FUNCTION es.list_snapshots(text, text);
