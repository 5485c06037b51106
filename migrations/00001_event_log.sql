-- The unified event log: tenants, events (aggregate streams and DCB tags in one
-- table), snapshots, and the SQL API that both psql users and the Go API call.
--
-- Errors raised by the SQL API use SQLSTATEs of class ES so clients can match
-- them; the Go package translates them in one place (errors.go):
--   ES001 wrong expected version   DETAIL {"expected":n,"actual":n}
--   ES002 stream not found         ES003 stream deleted
--   ES004 invalid argument/event   ES005 tenant not found
--   ES006 tenant suspended         ES007 event id reused with other content
--   ES009 tenant exists with other settings
--   ES010 the tenant argument is not the transaction's (es.tenant_id)

-- +goose Up
CREATE SCHEMA es;

CREATE TABLE es.tenants (
    tenant_id  text PRIMARY KEY
               CONSTRAINT tenant_id_format CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    name       text NOT NULL DEFAULT '',
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Positions come from one sequence shared by all tenants: strictly increasing
-- within a tenant, with gaps. CACHE 1 keeps nextval order equal to call order,
-- which the DCB read head relies on.
CREATE SEQUENCE es.event_position AS bigint CACHE 1;

-- tx_id records the writing transaction so subscribers can read in an order
-- that a late commit can never slip behind (NOTES.md hazard 2): readers only
-- consume tx_id < pg_snapshot_xmin(pg_current_snapshot()).
CREATE TABLE es.events (
    tenant_id      text        NOT NULL,
    position       bigint      NOT NULL,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    stream_id      text,
    stream_version bigint,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    tags           text[]      NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, position),
    UNIQUE (tenant_id, event_id),
    UNIQUE (tenant_id, stream_id, stream_version),
    CHECK ((stream_id IS NULL) = (stream_version IS NULL)),
    -- The last guard of the documented limits; es.validate_events reports
    -- them with the offending event's index before they are reached.
    CONSTRAINT event_type_1_to_200_characters CHECK (length(event_type) BETWEEN 1 AND 200),
    CONSTRAINT stream_id_1_to_200_characters CHECK (length(stream_id) BETWEEN 1 AND 200),
    CONSTRAINT payload_at_most_1_mib CHECK (pg_column_size(payload) <= 1048576),
    CONSTRAINT metadata_is_an_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT tags_not_empty_strings CHECK (array_position(tags, '') IS NULL AND array_position(tags, NULL) IS NULL)
) PARTITION BY LIST (tenant_id);

-- fastupdate off: a pending list is scanned by every lookup and makes the
-- condition check slower as the log grows (NOTES.md hazard 9).
CREATE INDEX events_tags ON es.events USING gin (tags) WITH (fastupdate = off);
-- Query items that name types but no tags.
CREATE INDEX events_type ON es.events (event_type, position);

CREATE TABLE es.snapshots (
    tenant_id      text        NOT NULL,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL CHECK (stream_version >= 1),
    schema_version int         NOT NULL,
    state          jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, stream_id, stream_version)
) PARTITION BY LIST (tenant_id);

-- es.raise raises one of the store's errors; usable inside expressions.
-- +goose StatementBegin
CREATE FUNCTION es.raise(p_code text, p_message text, p_detail text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = p_message, DETAIL = coalesce(p_detail, '');
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION es.create_tenant(p_tenant_id text, p_name text DEFAULT '')
RETURNS es.tenants LANGUAGE plpgsql AS $$
DECLARE
    v_row es.tenants;
BEGIN
    IF p_tenant_id IS NULL OR p_tenant_id !~ '^[a-z0-9][a-z0-9_-]{0,39}$' THEN
        PERFORM es.raise('ES004', format('invalid tenant id %L: use 1-40 characters a-z, 0-9, "_" or "-", starting with a letter or digit', left(p_tenant_id, 80)));
    END IF;
    INSERT INTO es.tenants (tenant_id, name) VALUES (p_tenant_id, coalesce(p_name, ''))
    ON CONFLICT (tenant_id) DO NOTHING;
    IF NOT FOUND THEN
        -- Creating an existing tenant is idempotent with the same settings.
        SELECT * INTO v_row FROM es.tenants WHERE tenant_id = p_tenant_id;
        IF v_row.name IS DISTINCT FROM coalesce(p_name, '') THEN
            PERFORM es.raise('ES009', format('tenant %L exists with the name %L', p_tenant_id, v_row.name));
        END IF;
        RETURN v_row;
    END IF;
    EXECUTE format('CREATE TABLE es.%I PARTITION OF es.events FOR VALUES IN (%L)', 'events_' || p_tenant_id, p_tenant_id);
    EXECUTE format('CREATE TABLE es.%I PARTITION OF es.snapshots FOR VALUES IN (%L)', 'snapshots_' || p_tenant_id, p_tenant_id);
    SELECT * INTO v_row FROM es.tenants WHERE tenant_id = p_tenant_id;
    RETURN v_row;
END $$;
-- +goose StatementEnd

-- es.analyze_tenant refreshes the planner statistics of a tenant's
-- partitions, e.g. after a bulk load (autovacuum does it eventually).
-- +goose StatementBegin
CREATE FUNCTION es.analyze_tenant(p_tenant_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    EXECUTE format('ANALYZE es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
END $$;
-- +goose StatementEnd

-- es.require_tenant fails unless p_tenant_id is the tenant this transaction
-- is scoped to (the setting es.tenant_id). The SQL API's functions run as
-- the schema owner (SECURITY DEFINER, so that row-level security does not
-- keep non-leakproof operators such as the tags' @> from using indexes) and
-- check their tenant argument against the setting instead.
-- +goose StatementBegin
CREATE FUNCTION es.require_tenant(p_tenant_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_tenant_id IS DISTINCT FROM current_setting('es.tenant_id', true) THEN
        PERFORM es.raise('ES010', format(
            'tenant %L is not the tenant of this transaction: SELECT set_config(''es.tenant_id'', %L, false) first',
            left(p_tenant_id, 80), left(p_tenant_id, 80)));
    END IF;
END $$;
-- +goose StatementEnd

-- es.check_tenant fails unless the tenant exists and may be written to, and,
-- when p_scoped (the SQL API; not the admin path), is this transaction's.
-- +goose StatementBegin
CREATE FUNCTION es.check_tenant(p_tenant_id text, p_for_write boolean, p_scoped boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_status text;
BEGIN
    IF p_scoped THEN
        PERFORM es.require_tenant(p_tenant_id);
    END IF;
    SELECT status INTO v_status FROM es.tenants WHERE tenant_id = p_tenant_id;
    IF v_status IS NULL THEN
        PERFORM es.raise('ES005', format('tenant %L not found', left(p_tenant_id, 80)));
    ELSIF p_for_write AND v_status <> 'active' THEN
        PERFORM es.raise('ES006', format('tenant %L is %s', p_tenant_id, v_status));
    END IF;
END $$;
-- +goose StatementEnd

-- es.validate_events checks a batch given as a JSON array of
-- {"id","type","payload","metadata","tags"} and returns its length.
-- Limits (documented in README): at most 100000 events, type 1-200
-- characters and not starting with "$" (reserved), payload at most 1 MiB
-- (jsonb), metadata a JSON object, tags an array of 1-1000 character strings.
-- +goose StatementBegin
CREATE FUNCTION es.validate_events(p_events jsonb)
RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_n int;
    v_ord bigint;
    v_reason text;
BEGIN
    IF p_events IS NULL OR jsonb_typeof(p_events) <> 'array' THEN
        PERFORM es.raise('ES004', 'events must be a JSON array');
    END IF;
    v_n := jsonb_array_length(p_events);
    IF v_n = 0 THEN
        PERFORM es.raise('ES004', 'empty batch: append at least one event');
    ELSIF v_n > 100000 THEN
        PERFORM es.raise('ES004', format('batch of %s events is over the limit of 100000', v_n));
    END IF;
    SELECT ord, reason INTO v_ord, v_reason FROM (
        SELECT ord, CASE
            WHEN jsonb_typeof(ev) <> 'object' THEN 'event is not a JSON object'
            WHEN jsonb_typeof(ev->'type') IS DISTINCT FROM 'string' OR ev->>'type' = '' THEN 'event type is empty'
            WHEN length(ev->>'type') > 200 THEN 'event type is longer than 200 characters'
            WHEN left(ev->>'type', 1) = '$' THEN 'event types starting with "$" are reserved'
            WHEN ev->'payload' IS NULL THEN 'payload is missing'
            WHEN pg_column_size(ev->'payload') > 1048576 THEN 'payload is larger than 1 MiB'
            WHEN ev ? 'id' AND (jsonb_typeof(ev->'id') <> 'string' OR ev->>'id' !~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$')
                THEN 'event id is not a UUID'
            WHEN ev ? 'metadata' AND jsonb_typeof(ev->'metadata') <> 'object' THEN 'metadata is not a JSON object'
            WHEN ev ? 'tags' AND jsonb_typeof(ev->'tags') <> 'array' THEN 'tags is not a JSON array'
            WHEN ev ? 'tags' AND EXISTS (
                SELECT 1 FROM jsonb_array_elements(ev->'tags') t
                WHERE jsonb_typeof(t) <> 'string' OR t #>> '{}' = '' OR length(t #>> '{}') > 1000 OR octet_length(t #>> '{}') > 2048)
                THEN 'a tag is not a string of 1-1000 characters and at most 2048 bytes'
            END AS reason
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(ev, ord)
    ) bad WHERE reason IS NOT NULL ORDER BY ord LIMIT 1;
    IF v_reason IS NOT NULL THEN
        PERFORM es.raise('ES004', format('event %s: %s', v_ord - 1, v_reason), json_build_object('index', v_ord - 1)::text);
    END IF;
    RETURN v_n;
END $$;
-- +goose StatementEnd

-- es.check_batch returns the batch's length after a fast check of the rules
-- es.validate_events enforces (one jsonpath pass in C); only a batch that
-- fails it pays for es.validate_events, which names the bad event. The
-- event id's format and the payload's size are left to the insert (a cast
-- error, a table constraint), which reports them without an index.
-- +goose StatementBegin
CREATE FUNCTION es.check_batch(p_events jsonb)
RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(p_events) IS DISTINCT FROM 'array'
       OR jsonb_array_length(p_events) NOT BETWEEN 1 AND 100000
       OR p_events @? '$[*] ? (@.type() != "object"
              || !exists(@.type) || @.type.type() != "string" || @.type == "" || @.type starts with "$"
              || @.type like_regex "^.{200}." flag "s"
              || !exists(@.payload)
              || (exists(@.id) && @.id.type() != "string")
              || (exists(@.metadata) && @.metadata.type() != "object")
              || (exists(@.tags) && @.tags.type() != "array")
              || exists(@.tags[*] ? (@.type() != "string" || @ == "")))'
       OR EXISTS (SELECT 1 FROM jsonb_path_query(p_events, '$[*].tags[*]') t WHERE length(t #>> '{}') > 1000 OR octet_length(t #>> '{}') > 2048) THEN
        RETURN es.validate_events(p_events);
    END IF;
    RETURN jsonb_array_length(p_events);
END $$;
-- +goose StatementEnd

-- es.lock_boundary takes the advisory locks that make appends and DCB
-- conditions see each other (NOTES.md hazards 3 and 8):
--  * a writer of p_events takes a SHARED lock on the key (es.lock_key) of
--    every distinct tag and type it writes, plus the tenant's "any event" key
--    (a read for a head takes that one too); writers never wait for each
--    other;
--  * a condition (or a read that hands out a head) on query p_query takes
--    an EXCLUSIVE lock on one key per query item: one of the item's tags (an
--    event matching the item carries them all), else each of its types, else
--    the "any event" key. It waits for every in-flight writer of a matching
--    event, and such writers wait for it;
--  * a batch with more than 32 write keys locks their 512 coarse stripes
--    EXCLUSIVELY instead, and conditions also take a SHARED lock on the stripe
--    of each of their keys, so a 10,000-tag batch takes at most 512 locks
--    while conditions on disjoint keys still never wait for each other.
-- Every caller takes all its locks here, in ascending (stripe, key) order
-- with the strongest mode per lock, so lock waits cannot deadlock. One
-- statement computes each key set; the locks are taken by simple expressions
-- in loops (a few microseconds each).
-- +goose StatementBegin
CREATE FUNCTION es.lock_boundary(p_tenant_id text, p_events jsonb, p_query jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_write bigint[] := '{}';   -- sorted, distinct: shared (exclusive stripes if many)
    v_check bigint[] := '{}';   -- sorted, distinct: exclusive
    v_check_stripes int[] := '{}';
    v_many boolean;
    v_stripe int;
    v_exclusive boolean;
    i int := 1;
    j int := 1;
BEGIN
    IF p_events IS NOT NULL THEN
        v_write := ARRAY(
            SELECT DISTINCT es.lock_key(p_tenant_id, kind, val) AS k
              FROM (SELECT 'a' AS kind, '' AS val
                    UNION ALL SELECT 'y', v #>> '{}' FROM jsonb_path_query(p_events, '$[*].type') v
                    UNION ALL SELECT 't', v #>> '{}' FROM jsonb_path_query(p_events, '$[*].tags[*]') v) kv
             ORDER BY k);
    ELSE
        -- A read that hands out a head takes the "any event" key shared like
        -- a writer, so it waits for a tenant import (es.lock_tenant).
        v_write := ARRAY[es.lock_key(p_tenant_id, 'a', '')];
    END IF;
    IF p_query IS NOT NULL THEN
        SELECT coalesce(array_agg(DISTINCT k ORDER BY k), '{}'),
               coalesce(array_agg(DISTINCT es.lock_stripe(k) ORDER BY es.lock_stripe(k)), '{}')
          INTO v_check, v_check_stripes
          FROM (SELECT CASE
                    WHEN jsonb_array_length(coalesce(q->'tags', '[]')) > 0
                        THEN es.lock_key(p_tenant_id, 't', (SELECT min(t) FROM jsonb_array_elements_text(q->'tags') t))
                    WHEN jsonb_array_length(coalesce(q->'types', '[]')) = 0
                        THEN es.lock_key(p_tenant_id, 'a', '') END AS k
                  FROM jsonb_array_elements(p_query) q
                UNION ALL
                SELECT es.lock_key(p_tenant_id, 'y', y)
                  FROM jsonb_array_elements(p_query) q, jsonb_array_elements_text(q->'types') y
                 WHERE jsonb_array_length(coalesce(q->'tags', '[]')) = 0) items
         WHERE k IS NOT NULL;
    END IF;
    v_many := cardinality(v_write) > 32;

    -- Stripes first, ascending.
    IF v_many THEN
        FOR v_stripe, v_exclusive IN
            SELECT st, bool_or(x) FROM (
                SELECT es.lock_stripe(k) AS st, true AS x FROM unnest(v_write) k
                UNION ALL SELECT st, false FROM unnest(v_check_stripes) st) s
            GROUP BY st ORDER BY st
        LOOP
            IF v_exclusive THEN
                PERFORM pg_advisory_xact_lock(1163067393, v_stripe);
            ELSE
                PERFORM pg_advisory_xact_lock_shared(1163067393, v_stripe);
            END IF;
        END LOOP;
        v_write := '{}';
    ELSE
        FOREACH v_stripe IN ARRAY v_check_stripes LOOP
            PERFORM pg_advisory_xact_lock_shared(1163067393, v_stripe);
        END LOOP;
    END IF;

    -- Then the keys, ascending: a merge of the two sorted arrays, exclusive
    -- where a key is in both.
    WHILE i <= cardinality(v_check) OR j <= cardinality(v_write) LOOP
        IF j > cardinality(v_write) OR (i <= cardinality(v_check) AND v_check[i] <= v_write[j]) THEN
            PERFORM pg_advisory_xact_lock(v_check[i]);
            IF j <= cardinality(v_write) AND v_write[j] = v_check[i] THEN
                j := j + 1;
            END IF;
            i := i + 1;
        ELSE
            PERFORM pg_advisory_xact_lock_shared(v_write[j]);
            j := j + 1;
        END IF;
    END LOOP;
END $$;
-- +goose StatementEnd

-- es.lock_key is the advisory lock key of a tag ('t'), a type ('y') or the
-- whole tenant ('a'). chr(31) cannot occur in a tenant id.
-- +goose StatementBegin
CREATE FUNCTION es.lock_key(p_tenant_id text, p_kind text, p_value text)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended(p_kind || p_tenant_id || chr(31) || p_value, 0)
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION es.lock_stripe(p_key bigint)
RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (p_key & 511)::int
$$;
-- +goose StatementEnd

-- es.find_appended returns the result of an earlier append of the same event
-- ids (idempotent retry), nothing when none of the ids exist, and fails with
-- ES007 when some exist with other content or only part of the batch exists.
-- +goose StatementBegin
CREATE FUNCTION es.find_appended(p_tenant_id text, p_stream_id text, p_events jsonb,
                                 OUT stream_version bigint, OUT positions bigint[])
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_n int := jsonb_array_length(p_events);
    v_found int;
    v_same int;
BEGIN
    PERFORM es.require_tenant(p_tenant_id);
    SELECT count(*), count(*) FILTER (WHERE
               e.event_type = n.ev->>'type'
           AND e.payload = n.ev->'payload'
           AND e.metadata = coalesce(n.ev->'metadata', '{}')
           AND e.tags = coalesce(ARRAY(SELECT jsonb_array_elements_text(n.ev->'tags')), '{}')
           AND e.stream_id IS NOT DISTINCT FROM p_stream_id),
           max(e.stream_version), array_agg(e.position ORDER BY e.position)
      INTO v_found, v_same, stream_version, positions
      FROM jsonb_array_elements(p_events) AS n(ev)
      JOIN es.events e ON e.tenant_id = p_tenant_id AND e.event_id = (n.ev->>'id')::uuid
     WHERE n.ev ? 'id';
    IF v_found = 0 THEN
        stream_version := NULL;
        positions := NULL;
    ELSIF v_found <> v_n OR v_same <> v_n THEN
        PERFORM es.raise('ES007', 'event ids were appended before with other content; use new ids for new events');
    END IF;
END $$;
-- +goose StatementEnd

-- es.append_to_stream appends a batch to a stream atomically.
-- p_expected_version: -1 any, 0 the stream must not exist, -2 the stream must
-- exist, n >= 1 the stream's current version must be n. Returns the new stream
-- version and the events' positions. Retrying with the same event ids returns
-- the first result. Two appends racing for the same version: one wins, the
-- other fails with ES001 or, if both passed the check at once, unique_violation
-- (23505): both mean "reload and retry".
-- +goose StatementBegin
CREATE FUNCTION es.append_to_stream(p_tenant_id text, p_stream_id text, p_expected_version bigint, p_events jsonb,
                                    OUT stream_version bigint, OUT positions bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_n int;
    v_status text;
    v_current bigint;
    v_last_type text;
BEGIN
    PERFORM es.require_tenant(p_tenant_id);
    IF p_stream_id IS NULL OR p_stream_id = '' OR length(p_stream_id) > 200 THEN
        PERFORM es.raise('ES004', 'stream id must be 1-200 characters');
    END IF;
    IF p_expected_version IS NULL OR p_expected_version < -2 OR p_expected_version > 4503599627370496 THEN
        PERFORM es.raise('ES004', format('invalid expected version %s: use -1 (any), 0 (no stream), -2 (stream exists) or a version from 1 to 2^52', p_expected_version));
    END IF;
    v_n := es.check_batch(p_events);
    -- Appends that take "whatever version is next" queue per stream instead
    -- of racing for it (and retrying) under contention. Exact versions
    -- fail fast instead. Taken before any other lock of this call.
    IF p_expected_version IN (-1, -2) THEN
        PERFORM pg_advisory_xact_lock(es.lock_key(p_tenant_id, 's', p_stream_id));
    END IF;

    -- The tenant's status and the stream's head in one statement.
    SELECT t.status, h.stream_version, h.event_type INTO v_status, v_current, v_last_type
      FROM es.tenants t
      LEFT JOIN LATERAL (
            SELECT e.stream_version, e.event_type FROM es.events e
             WHERE e.tenant_id = p_tenant_id AND e.stream_id = p_stream_id
             ORDER BY e.stream_version DESC LIMIT 1) h ON true
     WHERE t.tenant_id = p_tenant_id;
    IF v_status IS DISTINCT FROM 'active' THEN
        PERFORM es.check_tenant(p_tenant_id, true); -- raises the right error
    END IF;
    v_current := coalesce(v_current, 0);

    IF v_last_type = '$tombstone'
       OR (p_expected_version = 0 AND v_current <> 0)
       OR (p_expected_version = -2 AND v_current = 0)
       OR (p_expected_version > 0 AND v_current <> p_expected_version)
       OR p_expected_version IN (-1, -2) THEN
        -- Either the check fails or it cannot tell a retry from a new append:
        -- a retry of an append that succeeded returns its first result.
        SELECT f.stream_version, f.positions INTO stream_version, positions
          FROM es.find_appended(p_tenant_id, p_stream_id, p_events) f;
        IF positions IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    IF v_last_type = '$tombstone' THEN
        PERFORM es.raise('ES003', format('stream %L is deleted', p_stream_id));
    END IF;
    IF (p_expected_version = 0 AND v_current <> 0)
       OR (p_expected_version = -2 AND v_current = 0)
       OR (p_expected_version > 0 AND v_current <> p_expected_version) THEN
        PERFORM es.raise('ES001',
            format('wrong expected version for stream %L: expected %s, actual %s', p_stream_id, p_expected_version, v_current),
            json_build_object('expected', p_expected_version, 'actual', v_current)::text);
    END IF;

    PERFORM es.lock_boundary(p_tenant_id, p_events, NULL);
    stream_version := v_current + v_n;
    positions := es.write_events(p_tenant_id, p_stream_id, v_current, p_events);
END $$;
-- +goose StatementEnd

-- es.write_events inserts a checked batch and returns the positions in batch
-- order. The caller has taken the batch's locks (es.lock_boundary) first:
-- positions must be drawn after them. p_stream_id NULL writes events without
-- a stream (DCB).
-- +goose StatementBegin
CREATE FUNCTION es.write_events(p_tenant_id text, p_stream_id text, p_base_version bigint, p_events jsonb)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_positions bigint[];
BEGIN
    WITH ins AS (
        INSERT INTO es.events (tenant_id, position, event_id, event_type, stream_id, stream_version, payload, metadata, tags)
        SELECT p_tenant_id, nextval('es.event_position'), coalesce((ev->>'id')::uuid, gen_random_uuid()), ev->>'type',
               p_stream_id, CASE WHEN p_stream_id IS NOT NULL THEN p_base_version + ord END,
               ev->'payload', coalesce(ev->'metadata', '{}'),
               coalesce(ARRAY(SELECT jsonb_array_elements_text(ev->'tags')), '{}')
          FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(ev, ord)
         ORDER BY ord
        RETURNING position
    )
    SELECT array_agg(position ORDER BY position) INTO v_positions FROM ins;
    RETURN v_positions;
END $$;
-- +goose StatementEnd

-- es.delete_stream soft-deletes a stream by appending a tombstone event: its
-- events stay in the log (subscribers see the deletion), reads of the stream
-- fail with ES003 and so do appends. Returns the tombstone's stream version.
-- +goose StatementBegin
CREATE FUNCTION es.delete_stream(p_tenant_id text, p_stream_id text, p_expected_version bigint DEFAULT -2)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_current bigint;
    v_last_type text;
    v_tombstone jsonb;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, true);
    IF p_expected_version IS NULL OR p_expected_version < -2 OR p_expected_version = 0 OR p_expected_version > 4503599627370496 THEN
        PERFORM es.raise('ES004', format('invalid expected version %s for a delete: use -1 (any), -2 (stream exists) or a version', p_expected_version));
    END IF;
    SELECT e.stream_version, e.event_type INTO v_current, v_last_type
      FROM es.events e
     WHERE e.tenant_id = p_tenant_id AND e.stream_id = p_stream_id
     ORDER BY e.stream_version DESC LIMIT 1;
    IF v_current IS NULL THEN
        PERFORM es.raise('ES002', format('stream %L not found', p_stream_id));
    ELSIF v_last_type = '$tombstone' THEN
        RETURN v_current; -- deleting twice is not an error
    ELSIF p_expected_version > 0 AND v_current <> p_expected_version THEN
        PERFORM es.raise('ES001',
            format('wrong expected version for stream %L: expected %s, actual %s', p_stream_id, p_expected_version, v_current),
            json_build_object('expected', p_expected_version, 'actual', v_current)::text);
    END IF;
    v_tombstone := jsonb_build_array(jsonb_build_object('type', '$tombstone', 'payload', '{}'::jsonb));
    PERFORM es.lock_boundary(p_tenant_id, v_tombstone, NULL);
    PERFORM es.write_events(p_tenant_id, p_stream_id, v_current, v_tombstone);
    RETURN v_current + 1;
END $$;
-- +goose StatementEnd

-- es.stream_head returns a stream's current version (0 when it has no events)
-- and whether it is deleted. PL/pgSQL, not SQL: a SQL function's query is
-- planned with its arguments as parameters, so the planner cannot prune
-- es.events' partitions and plans all of them (NOTES.md hazard 10: ~2 ms at
-- 30 tenants, growing with the tenant count); PL/pgSQL's custom plans prune
-- to the tenant's partition.
-- +goose StatementBegin
CREATE FUNCTION es.stream_head(p_tenant_id text, p_stream_id text, OUT version bigint, OUT deleted boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM es.require_tenant(p_tenant_id);
    SELECT e.stream_version, e.event_type = '$tombstone' INTO version, deleted
      FROM es.events e
     WHERE e.tenant_id = p_tenant_id AND e.stream_id = p_stream_id
     ORDER BY e.stream_version DESC LIMIT 1;
    version := coalesce(version, 0);
    deleted := coalesce(deleted, false);
END $$;
-- +goose StatementEnd

-- es.read_stream reads up to p_limit events of a stream starting at
-- p_from_version (inclusive), forwards or backwards. A p_from_version of
-- 0 (forwards) means the first event and -1 (backwards) the last one.
-- +goose StatementBegin
CREATE FUNCTION es.read_stream(p_tenant_id text, p_stream_id text, p_from_version bigint DEFAULT 0,
                               p_limit int DEFAULT 1000, p_backwards boolean DEFAULT false)
RETURNS SETOF es.events LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_head record;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    IF p_limit IS NULL OR p_limit < 0 THEN
        PERFORM es.raise('ES004', 'limit must be 0 or more');
    END IF;
    v_head := es.stream_head(p_tenant_id, p_stream_id);
    IF v_head.version = 0 THEN
        PERFORM es.raise('ES002', format('stream %L not found', p_stream_id));
    ELSIF v_head.deleted THEN
        PERFORM es.raise('ES003', format('stream %L is deleted', p_stream_id));
    END IF;
    IF p_backwards THEN
        RETURN QUERY SELECT * FROM es.events e
         WHERE e.tenant_id = p_tenant_id AND e.stream_id = p_stream_id
           AND (p_from_version < 0 OR e.stream_version <= p_from_version)
         ORDER BY e.stream_version DESC LIMIT p_limit;
    ELSE
        RETURN QUERY SELECT * FROM es.events e
         WHERE e.tenant_id = p_tenant_id AND e.stream_id = p_stream_id
           AND e.stream_version >= p_from_version
         ORDER BY e.stream_version LIMIT p_limit;
    END IF;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION es.save_snapshot(p_tenant_id text, p_stream_id text, p_stream_version bigint,
                                 p_schema_version int, p_state jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_head record;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, true);
    IF p_state IS NULL OR p_schema_version IS NULL THEN
        PERFORM es.raise('ES004', 'snapshot state and schema version are required');
    END IF;
    v_head := es.stream_head(p_tenant_id, p_stream_id);
    IF v_head.version = 0 THEN
        PERFORM es.raise('ES002', format('stream %L not found', p_stream_id));
    ELSIF p_stream_version IS NULL OR p_stream_version < 1 OR p_stream_version > v_head.version THEN
        PERFORM es.raise('ES004', format('snapshot version %s is outside the stream (1-%s)', p_stream_version, v_head.version));
    END IF;
    INSERT INTO es.snapshots (tenant_id, stream_id, stream_version, schema_version, state)
    VALUES (p_tenant_id, p_stream_id, p_stream_version, p_schema_version, p_state)
    ON CONFLICT (tenant_id, stream_id, stream_version)
    DO UPDATE SET schema_version = excluded.schema_version, state = excluded.state, created_at = now();
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION es.load_snapshot(p_tenant_id text, p_stream_id text)
RETURNS SETOF es.snapshots LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    RETURN QUERY SELECT * FROM es.snapshots s
     WHERE s.tenant_id = p_tenant_id AND s.stream_id = p_stream_id
     ORDER BY s.stream_version DESC LIMIT 1;
END $$;
-- +goose StatementEnd

-- +goose Down
DROP SCHEMA es CASCADE;
