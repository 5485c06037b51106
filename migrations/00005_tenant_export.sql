-- Tenant import (the admin path): rows of an export written back verbatim,
-- keeping their positions, or with new positions in the same order when
-- merging into a tenant that already has events (skipping the events it
-- already has). Export is a plain ordered
-- SELECT (tenant/export.go).

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION es.import_events(p_tenant_id text, p_rows jsonb, p_keep_positions boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
    v_max bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    WITH ins AS (
        INSERT INTO es.events (tenant_id, position, event_id, event_type, stream_id, stream_version,
                               payload, metadata, tags, recorded_at)
        SELECT p_tenant_id,
               CASE WHEN p_keep_positions THEN (r->>'position')::bigint ELSE nextval('es.event_position') END,
               (r->>'id')::uuid, r->>'type', r->>'stream_id', (r->>'stream_version')::bigint,
               r->'payload', coalesce(r->'metadata', '{}'),
               coalesce(ARRAY(SELECT jsonb_array_elements_text(r->'tags')), '{}'),
               (r->>'recorded_at')::timestamptz
          FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS x(r, ord)
         -- Merging skips events the tenant already has (same id).
         WHERE p_keep_positions OR NOT EXISTS (
               SELECT 1 FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.event_id = (r->>'id')::uuid)
         ORDER BY ord
        RETURNING position)
    SELECT count(*), max(position) INTO v_count, v_max FROM ins;
    -- Positions drawn later must stay above the imported ones.
    IF p_keep_positions AND v_max IS NOT NULL THEN
        PERFORM setval('es.event_position', greatest(v_max, (SELECT last_value FROM es.event_position)));
    END IF;
    RETURN v_count;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION es.import_snapshots(p_tenant_id text, p_rows jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
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

REVOKE EXECUTE ON FUNCTION es.import_events(text, jsonb, boolean), es.import_snapshots(text, jsonb) FROM PUBLIC;

-- +goose Down
DROP FUNCTION es.import_snapshots(text, jsonb);
DROP FUNCTION es.import_events(text, jsonb, boolean);
