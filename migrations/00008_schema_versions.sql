-- Event schema versions and temporal snapshot reads.
--
-- An event's schema version is the version of its payload's shape, recorded
-- at append as the metadata key "schema_version": an integer from 1 to
-- 999999999, absent meaning 1 (every event written before versions
-- existed). It lives in the metadata rather than a column so that every
-- path that already carries an event (reads, subscriptions, es.read_log,
-- export and import) carries it unchanged; SQL readers tell versions apart
-- with es.event_schema_version. Stored events are never rewritten: readers
-- upcast old versions on read.
--
-- The rule is checked on the append path (es.check_batch), not by a table
-- constraint: adding a constraint to es.events takes an ACCESS EXCLUSIVE
-- lock on every tenant's partition at once, which at 10,000 tenants
-- overflows the lock table (NOTES.md hazards 8 and 10) and stops every
-- tenant's appends while it waits.

-- +goose Up

-- The checks of 00001 stay as they are, under another name; the new
-- es.check_batch runs them, then the schema version rule. (The rename is
-- in a DO block and the new function a CREATE OR REPLACE because sqlc's
-- schema parser knows no ALTER FUNCTION ... RENAME.)
-- +goose StatementBegin
DO $$ BEGIN ALTER FUNCTION es.check_batch(jsonb) RENAME TO check_batch_00001; END $$;
-- +goose StatementEnd

-- Two jsonpath tests: in lax mode a filter would unwrap an array ([2]), so
-- the type is tested through .type(), which does not.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.check_batch(p_events jsonb)
RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_n int := es.check_batch_00001(p_events);
    v_bad bigint;
BEGIN
    IF p_events @? '$[*].metadata.schema_version.type() ? (@ != "number")'
       OR p_events @? '$[*].metadata.schema_version ? (@ < 1 || @ > 999999999 || @.floor() != @)' THEN
        SELECT ord - 1 INTO v_bad FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(ev, ord)
         WHERE ev @? '$.metadata.schema_version.type() ? (@ != "number")'
            OR ev @? '$.metadata.schema_version ? (@ < 1 || @ > 999999999 || @.floor() != @)'
         ORDER BY ord LIMIT 1;
        PERFORM es.raise('ES004', format('event %s: metadata.schema_version is not an integer from 1 to 999999999', v_bad),
                         json_build_object('index', v_bad)::text);
    END IF;
    RETURN v_n;
END $$;
-- +goose StatementEnd

-- A helper of the API, not the caller's (as in 00004).
REVOKE EXECUTE ON FUNCTION es.check_batch(jsonb) FROM PUBLIC;

-- es.event_schema_version returns the schema version an event was written
-- with: SELECT es.event_schema_version(metadata) FROM es.events ...
-- NULL for a value that is not one (only a SQL client could have stored
-- it, before this migration).
-- +goose StatementBegin
CREATE FUNCTION es.event_schema_version(p_metadata jsonb)
RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN NOT p_metadata ? 'schema_version' THEN 1
        WHEN jsonb_typeof(p_metadata->'schema_version') = 'number' THEN (
            SELECT CASE WHEN v BETWEEN 1 AND 999999999 AND v = floor(v) THEN v::int END
              FROM (SELECT (p_metadata->>'schema_version')::numeric AS v) n)
    END
$$;
-- +goose StatementEnd

-- es.load_snapshot_upto returns a stream's latest snapshot at or below a
-- stream version: the starting point of a temporal read (state as of
-- version N) that does not replay the stream from its start.
-- +goose StatementBegin
CREATE FUNCTION es.load_snapshot_upto(p_tenant_id text, p_stream_id text, p_max_version bigint)
RETURNS SETOF es.snapshots LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    RETURN QUERY SELECT * FROM es.snapshots s
     WHERE s.tenant_id = p_tenant_id AND s.stream_id = p_stream_id AND s.stream_version <= p_max_version
     ORDER BY s.stream_version DESC LIMIT 1;
END $$;
-- +goose StatementEnd

-- As the other read functions (00004): the owner's rights, the caller's
-- tenant checked by es.check_tenant.
ALTER FUNCTION es.load_snapshot_upto(text, text, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- +goose Down
DROP FUNCTION es.load_snapshot_upto(text, text, bigint);
DROP FUNCTION es.event_schema_version(jsonb);
DROP FUNCTION es.check_batch(jsonb);
ALTER FUNCTION es.check_batch_00001(jsonb) RENAME TO check_batch;
