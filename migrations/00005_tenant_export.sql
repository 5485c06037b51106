-- Tenant import (the admin path): the rows of an export written back in
-- their exported order with positions drawn anew from es.event_position
-- (positions of another database would have to move the shared sequence,
-- and moving a sequence backwards breaks every tenant's order), skipping
-- events the tenant already has when merging. Export is a plain ordered
-- SELECT in one snapshot (tenant/export.go).
--
-- An import holds the tenant's "any event" lock exclusively (es.lock_tenant)
-- until it commits: the tenant's appends, which take it shared, and reads
-- that hand out a head, which take it shared too (es.lock_boundary), wait
-- for the import instead of deciding on a log that is being rewritten.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION es.lock_tenant(p_tenant_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(es.lock_key(p_tenant_id, 'a', ''));
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION es.import_events(p_tenant_id text, p_rows jsonb, p_merge boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    PERFORM es.lock_tenant(p_tenant_id);
    WITH ins AS (
        INSERT INTO es.events (tenant_id, position, event_id, event_type, stream_id, stream_version,
                               payload, metadata, tags, recorded_at)
        SELECT p_tenant_id, nextval('es.event_position'),
               (r->>'id')::uuid, r->>'type', r->>'stream_id', (r->>'stream_version')::bigint,
               r->'payload', coalesce(r->'metadata', '{}'),
               coalesce(ARRAY(SELECT jsonb_array_elements_text(r->'tags')), '{}'),
               (r->>'recorded_at')::timestamptz
          FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS x(r, ord)
         -- Merging skips events the tenant already has (same id).
         WHERE NOT p_merge OR NOT EXISTS (
               SELECT 1 FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.event_id = (r->>'id')::uuid)
         ORDER BY ord
        RETURNING 1)
    SELECT count(*) INTO v_count FROM ins;
    RETURN v_count;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION es.import_snapshots(p_tenant_id text, p_rows jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    INSERT INTO es.snapshots (tenant_id, stream_id, stream_version, schema_version, state, created_at)
    SELECT p_tenant_id, r->>'stream_id', (r->>'stream_version')::bigint, (r->>'schema_version')::int,
           r->'state', (r->>'created_at')::timestamptz
      FROM jsonb_array_elements(p_rows) r
    ON CONFLICT (tenant_id, stream_id, stream_version) DO UPDATE
       SET schema_version = excluded.schema_version, state = excluded.state, created_at = excluded.created_at;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;
-- +goose StatementEnd

REVOKE EXECUTE ON FUNCTION es.import_events(text, jsonb, boolean), es.import_snapshots(text, jsonb),
    es.lock_tenant(text) FROM PUBLIC;

-- +goose Down
DROP FUNCTION es.import_snapshots(text, jsonb);
DROP FUNCTION es.import_events(text, jsonb, boolean);
DROP FUNCTION es.lock_tenant(text);
