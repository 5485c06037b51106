-- Event schema versions and temporal snapshot reads.
--
-- An event's schema version is the version of its payload's shape, recorded
-- at append as the metadata key "schema_version": a positive integer, absent
-- meaning 1 (every event written before versions existed). It lives in the
-- metadata rather than a column so that every path that already carries an
-- event (reads, subscriptions, es.read_log, export and import) carries it
-- unchanged; SQL readers tell versions apart with es.event_schema_version.
-- Stored events are never rewritten: readers upcast old versions on read.

-- +goose Up

-- NOT VALID: checked for every new row, without a scan of the existing
-- log under lock (before this migration no writer set the key; run
-- ALTER TABLE es.events VALIDATE CONSTRAINT ... to prove it).
ALTER TABLE es.events ADD CONSTRAINT metadata_schema_version_is_a_positive_integer CHECK (
    NOT (metadata ? 'schema_version')
    OR (jsonb_typeof(metadata->'schema_version') = 'number'
        AND (metadata->>'schema_version') ~ '^[1-9][0-9]{0,8}$')) NOT VALID;

-- es.event_schema_version returns the schema version an event was written
-- with: SELECT es.event_schema_version(metadata) FROM es.events ...
-- +goose StatementBegin
CREATE FUNCTION es.event_schema_version(p_metadata jsonb)
RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce((p_metadata->>'schema_version')::int, 1)
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
ALTER TABLE es.events DROP CONSTRAINT metadata_schema_version_is_a_positive_integer;
