-- The append path rebuilt (issue 14). Every function here replaces its whole
-- body; the wrappers around renamed copies (es.check_batch_00001,
-- es.lock_boundary_00001, es.save_snapshot_00001) are gone, so db/schema.sql
-- shows each function once, whole.
--
-- What changed, and why:
--  * The lock keys of a call are computed and taken in ONE statement
--    (es.lock_boundary), not in PL/pgSQL loops: the loop was 110-170 us of a
--    250 us append.
--  * The tenant is read once per append, under the locks (the drop race needs
--    that read; the one before the locks only duplicated it). The cheap
--    guard before any lock is the es.tenant_id comparison.
--  * es.find_appended (is this batch a retry?) no longer runs on every
--    Any/StreamExists append: only when a check fails, or when the batch's
--    last id is the stream's last event's (es.streams.last_event_id: the
--    retry of the latest append). A retry after later appends meets the
--    unique event id (23505), as DCB appends always did; the Go API answers
--    it with the first result.
--  * Stream order for every writer (ES012): subscriptions deliver in
--    (tx_id, position) order, and a transaction's id is fixed at its first
--    write. An append is refused when
--      (a) the stream's last event was written by a transaction with a larger
--          id than this one (v2 would be delivered before v1), or
--      (b) this transaction had an id before its first append to the tenant
--          (it wrote something else first) and an event of the tenant with a
--          larger id has committed since: a subscriber may already have
--          delivered past this transaction's id.
--    A transaction that gets its id at its append (every pool append of the
--    Go API) is never refused; the Go API retries ES012 in a new transaction.
--  * Invalid input is refused with the event's index: schema versions, event
--    id formats and duplicate ids within a batch are checked with the rest in
--    one jsonpath pass (es.check_batch); only a failing batch pays for
--    es.validate_events, which names the event.
--  * Every writer holds the tenant's "any event" key (shared) until it
--    commits, also when a big batch locks stripes instead of keys: a reader
--    can tell the tenant's in-flight writers from the lock table.
--
-- SQLSTATE ES012 is raised by the append path (above). es.dedicate_tenant_concurrently
-- (00011) raises and catches ES012 inside one block as a private signal; it
-- never reaches a client.

-- +goose Up

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.validate_events(p_events jsonb)
RETURNS int LANGUAGE plpgsql IMMUTABLE SET plan_cache_mode = auto AS $$
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
            WHEN ev ? 'id' AND count(*) OVER (PARTITION BY lower(replace(ev->>'id', '-', '')) ORDER BY ord) > 1
                THEN format('event id %s appears twice in the batch', ev->>'id')
            WHEN ev ? 'metadata' AND jsonb_typeof(ev->'metadata') <> 'object' THEN 'metadata is not a JSON object'
            WHEN ev @? '$.metadata.schema_version.type() ? (@ != "number")'
              OR ev @? '$.metadata.schema_version ? (@ < 1 || @ > 999999999 || @.floor() != @)'
                THEN 'metadata.schema_version is not an integer from 1 to 999999999'
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

-- es.check_batch returns the batch's length after one jsonpath pass over it
-- (C code, a few microseconds for one event). Only a batch that fails it
-- pays for es.validate_events, which names the bad event. The first test is
-- a plain expression (no subquery), which PL/pgSQL evaluates without the
-- executor; the two set-based tests run only when they could fail: tag
-- lengths when the batch is big enough to hold a 1001-character tag,
-- duplicate ids in batches of two or more.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.check_batch(p_events jsonb)
RETURNS int LANGUAGE plpgsql IMMUTABLE SET plan_cache_mode = auto AS $$
BEGIN
    IF jsonb_typeof(p_events) IS DISTINCT FROM 'array'
       OR jsonb_array_length(p_events) NOT BETWEEN 1 AND 100000
       OR p_events @? '$[*] ? (@.type() != "object"
              || !exists(@.type) || @.type.type() != "string" || @.type == "" || @.type starts with "$"
              || @.type like_regex "^.{200}." flag "s"
              || !exists(@.payload)
              || (exists(@.id) && (@.id.type() != "string"
                    || !(@.id like_regex "^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$" flag "i")))
              || (exists(@.metadata) && @.metadata.type() != "object")
              || (exists(@.metadata.schema_version) && (@.metadata.schema_version.type() != "number"
                    || @.metadata.schema_version < 1 || @.metadata.schema_version > 999999999
                    || @.metadata.schema_version.floor() != @.metadata.schema_version))
              || (exists(@.tags) && @.tags.type() != "array")
              || exists(@.tags[*] ? (@.type() != "string" || @ == "")))' THEN
        RETURN es.validate_events(p_events);
    END IF;
    -- pg_column_size is the stored size: a batch read from a table may be
    -- compressed far below its text.
    IF pg_column_size(p_events) > 1000 OR pg_column_compression(p_events) IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM jsonb_path_query(p_events, '$[*].tags[*]') t
                    WHERE length(t #>> '{}') > 1000 OR octet_length(t #>> '{}') > 2048) THEN
            RETURN es.validate_events(p_events);
        END IF;
    END IF;
    IF jsonb_array_length(p_events) > 1 THEN
        IF EXISTS (SELECT 1 FROM jsonb_path_query(p_events, '$[*].id') i
                    GROUP BY lower(replace(i #>> '{}', '-', '')) HAVING count(*) > 1) THEN
            RETURN es.validate_events(p_events);
        END IF;
    END IF;
    RETURN jsonb_array_length(p_events);
END $$;
-- +goose StatementEnd

-- es.lock_boundary takes, in one statement, the advisory locks that make
-- appends and DCB conditions see each other:
--  * a writer of p_events takes a SHARED lock on the key (es.lock_key) of
--    every distinct tag and type it writes, plus the tenant's "any event" key
--    (a read that hands out a head takes that one alone); writers never wait
--    for each other;
--  * a condition (or a read that hands out a head) on query p_query takes an
--    EXCLUSIVE lock on one key per query item: one of the item's tags (an
--    event matching the item carries them all), else each of its types, else
--    the "any event" key. It waits for every in-flight writer of a matching
--    event, and such writers wait for it;
--  * a batch with more than 32 write keys locks their stripes (512 coarse
--    buckets of keys) SHARED instead, since the lock table is bounded: one
--    lock per tag of a 10,000-tag batch could exhaust it. Such a batch still
--    takes the "any event" key itself. A condition takes the stripe of each
--    of its keys EXCLUSIVELY, so it waits for such batches and they for it.
--    Big batches never wait for each other (before 00012 they took their
--    stripes exclusively and queued behind each other: 100-event appends did
--    not scale past one client); the price is that two conditions whose keys
--    fall in one stripe (1 in 512) wait for each other.
-- All locks are taken stripes first, then keys, each in ascending order with
-- the strongest mode per lock, so lock waits cannot deadlock. The common
-- case (a writer of up to 32 keys, no condition) is one statement over a
-- sorted array: unnest and the aggregate keep its order. The general case
-- takes es.boundary_locks in its order.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.lock_boundary(p_tenant_id text, p_events jsonb, p_query jsonb)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
DECLARE
    v_write bigint[] := es.write_keys(p_tenant_id, p_events);
BEGIN
    IF p_query IS NULL AND cardinality(v_write) <= 32 THEN
        PERFORM count(pg_advisory_xact_lock_shared(k)) FROM unnest(v_write) k;
        RETURN;
    END IF;
    PERFORM count(CASE
                WHEN l.stripe IS NOT NULL AND l.x THEN pg_advisory_xact_lock(1163067393, l.stripe)
                WHEN l.stripe IS NOT NULL THEN pg_advisory_xact_lock_shared(1163067393, l.stripe)
                WHEN l.x THEN pg_advisory_xact_lock(l.k)
                ELSE pg_advisory_xact_lock_shared(l.k) END)
      FROM es.boundary_locks(p_tenant_id, v_write, p_query) l;
END $$;
-- +goose StatementEnd

-- es.try_boundary takes es.lock_boundary's locks without waiting, in the
-- same order, and stops at the first one held by another transaction:
-- false then, holding the ones before it (so that es.lock_boundary can take
-- the rest in order). A conditional append uses it to learn that its
-- boundary is busy before it queues.
-- +goose StatementBegin
CREATE FUNCTION es.try_boundary(p_tenant_id text, p_events jsonb, p_query jsonb)
RETURNS boolean LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
DECLARE
    l record;
BEGIN
    FOR l IN SELECT * FROM es.boundary_locks(p_tenant_id, es.write_keys(p_tenant_id, p_events), p_query) LOOP
        IF NOT (CASE
                WHEN l.stripe IS NOT NULL AND l.x THEN pg_try_advisory_xact_lock(1163067393, l.stripe)
                WHEN l.stripe IS NOT NULL THEN pg_try_advisory_xact_lock_shared(1163067393, l.stripe)
                WHEN l.x THEN pg_try_advisory_xact_lock(l.k)
                ELSE pg_try_advisory_xact_lock_shared(l.k) END) THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END $$;
-- +goose StatementEnd

-- es.write_keys: the sorted, distinct keys a writer of p_events locks
-- shared: the tenant's "any event" key, and one per type and tag.
-- PL/pgSQL, not SQL: a SQL function that cannot be inlined plans its body
-- at every call (measured: 290 us); PL/pgSQL caches the plan.
-- +goose StatementBegin
CREATE FUNCTION es.write_keys(p_tenant_id text, p_events jsonb)
RETURNS bigint[] LANGUAGE plpgsql IMMUTABLE SET plan_cache_mode = auto AS $$
BEGIN
    RETURN ARRAY(
        SELECT DISTINCT es.lock_key(p_tenant_id, kv.kind, kv.val)
          FROM (SELECT 'a' AS kind, '' AS val
                UNION ALL SELECT 'y', v #>> '{}' FROM jsonb_path_query(p_events, '$[*].type') v
                UNION ALL SELECT 't', v #>> '{}' FROM jsonb_path_query(p_events, '$[*].tags[*]') v) kv
         ORDER BY 1);
END $$;
-- +goose StatementEnd

-- es.boundary_locks lists the locks of a call (its writer's keys from
-- es.write_keys, computed once by the caller), in the order they are taken:
-- stripes (stripe set, k null), then keys (k set), ascending, each with its
-- strongest mode (x: exclusive).
-- +goose StatementBegin
CREATE FUNCTION es.boundary_locks(p_tenant_id text, p_write bigint[], p_query jsonb)
RETURNS TABLE (stripe int, k bigint, x boolean) LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
DECLARE
    v_any bigint := es.lock_key(p_tenant_id, 'a', '');
    v_write bigint[] := p_write; -- shared
    v_stripes int[];  -- shared (a batch of many keys)
    v_check bigint[]; -- exclusive, and exclusive on their stripes
BEGIN
    IF cardinality(v_write) > 32 THEN
        v_stripes := ARRAY(SELECT DISTINCT es.lock_stripe(w) FROM unnest(v_write) w ORDER BY 1);
        v_write := ARRAY[v_any];
    END IF;
    v_check := ARRAY(
        SELECT CASE
                   WHEN jsonb_array_length(coalesce(q->'tags', '[]')) > 0
                       THEN es.lock_key(p_tenant_id, 't', (SELECT min(t) FROM jsonb_array_elements_text(q->'tags') t))
                   WHEN jsonb_array_length(coalesce(q->'types', '[]')) = 0 THEN v_any END
          FROM jsonb_array_elements(coalesce(p_query, '[]')) q
        UNION
        SELECT es.lock_key(p_tenant_id, 'y', y)
          FROM jsonb_array_elements(coalesce(p_query, '[]')) q, jsonb_array_elements_text(q->'types') y
         WHERE jsonb_array_length(coalesce(q->'tags', '[]')) = 0);
    RETURN QUERY
        SELECT u.st, NULL::bigint, bool_or(u.x)
          FROM (SELECT st, false AS x FROM unnest(v_stripes) st
                UNION ALL SELECT es.lock_stripe(c), true FROM unnest(v_check) c WHERE c IS NOT NULL) u
         GROUP BY u.st
        UNION ALL
        SELECT NULL::int, u.k, bool_or(u.x)
          FROM (SELECT w AS k, false AS x FROM unnest(v_write) w
                UNION ALL SELECT c, true FROM unnest(v_check) c WHERE c IS NOT NULL) u
         GROUP BY u.k
        ORDER BY 1 NULLS LAST, 2;
END $$;
-- +goose StatementEnd

-- es.streams holds each stream's head: its version, the id of the
-- transaction that wrote its last event, and whether it is deleted. An
-- append moves it with one UPDATE of a small unpartitioned table, which
-- checks the expected version and the delivery order in its WHERE. No statement of the
-- stream append's fast path reads es.events, so none needs a custom plan: a
-- generic plan of a query on es.events would lock every partition at every
-- call (thousands with dedicated tenants), and planning each call anew cost
-- 40% of an append. Streams written before 00012, or by a bulk load that
-- bypasses the API, get their row from es.events at their next append
-- (es.lock_stream). The unique (tenant_id, stream_id, stream_version) of
-- es.events stays the last guard.
CREATE TABLE es.streams (
    tenant_id text    NOT NULL,
    stream_id text    NOT NULL,
    version   bigint  NOT NULL,
    last_tx   xid8    NOT NULL,
    -- The id of the stream's last event, when its append gave one: an
    -- append whose last id is this one is a retry, and takes the slow path.
    last_event_id uuid,
    deleted   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, stream_id)
) WITH (fillfactor = 70); -- room for HOT updates: every append updates its row
ALTER TABLE es.streams ENABLE ROW LEVEL SECURITY; -- no policy: the API's functions only

-- es.lock_stream locks a stream's row in es.streams and returns it, first
-- creating it from the stream's last event in es.events when it is missing.
-- version 0: no such stream.
-- +goose StatementBegin
CREATE FUNCTION es.lock_stream(p_tenant_id text, p_stream_id text, OUT version bigint, OUT last_tx xid8, OUT last_event_id uuid, OUT deleted boolean)
RETURNS record LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    LOOP
        SELECT s.version, s.last_tx, s.last_event_id, s.deleted INTO version, last_tx, last_event_id, deleted
          FROM es.streams s WHERE s.tenant_id = p_tenant_id AND s.stream_id = p_stream_id FOR UPDATE;
        IF FOUND THEN
            RETURN;
        END IF;
        SELECT e.stream_version, e.tx_id, e.event_id, e.event_type = '$tombstone' INTO version, last_tx, last_event_id, deleted
          FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.stream_id = p_stream_id
         ORDER BY e.stream_version DESC LIMIT 1;
        -- A concurrent creator's row wins; the next turn locks it.
        INSERT INTO es.streams (tenant_id, stream_id, version, last_tx, last_event_id, deleted)
        VALUES (p_tenant_id, p_stream_id, coalesce(version, 0), coalesce(last_tx, '0'), last_event_id, coalesce(deleted, false))
        ON CONFLICT DO NOTHING;
    END LOOP;
END $$;
-- +goose StatementEnd

-- es.check_order: case (b) of ES012 (see the top), for a transaction that
-- had an id before its first append to the tenant. Called under the
-- append's locks; two index probes on (tenant_id, tx_id, position). Under
-- REPEATABLE READ or SERIALIZABLE such a first append is refused outright:
-- the probe could not see the later transactions it looks for.
-- +goose StatementBegin
CREATE FUNCTION es.check_order(p_tenant_id text)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_me xid8 := pg_current_xact_id();
BEGIN
    IF EXISTS (SELECT 1 FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.tx_id = v_me) THEN
        RETURN; -- not its first append: it holds the tenant's writer lock since then
    END IF;
    -- Under REPEATABLE READ or SERIALIZABLE the probe below would see only
    -- the transaction's snapshot, not what committed since: refuse.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM es.raise('ES012', format(
            'this transaction (%s, %s) wrote before its first append to tenant %L: under this isolation level append first, or retry in a new transaction',
            v_me, current_setting('transaction_isolation'), p_tenant_id));
    END IF;
    IF EXISTS (SELECT 1 FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.tx_id > v_me) THEN
        PERFORM es.raise('ES012', format(
            'this transaction (%s) wrote before its first append to tenant %L, and a later transaction has appended since: retry in a new transaction, or append before other writes',
            v_me, p_tenant_id));
    END IF;
END $$;
-- +goose StatementEnd

-- es.write_events inserts a checked batch and returns the events' positions
-- in batch order; new events without an id get one. An id the tenant has
-- already is a unique violation (23505): the Go API then looks for the
-- batch (es.find_appended) and returns its first result, or ErrEventIDConflict.
-- (ON CONFLICT DO NOTHING would let SQL callers have that too, but its
-- speculative insertion cost 20-40 us per append, measured.) A generic
-- plan of an INSERT locks es.events alone (rows are routed to their leaf as
-- they come), so it may be cached.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.write_events(p_tenant_id text, p_stream_id text, p_base_version bigint, p_events jsonb)
RETURNS bigint[] LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
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
        RETURNING position)
    SELECT array_agg(position ORDER BY position) INTO v_positions FROM ins;
    RETURN v_positions;
END $$;
-- +goose StatementEnd

-- es.append_to_stream appends a batch to a stream if its version matches
-- p_expected_version: -1 any, 0 no stream, -2 the stream exists, n exactly n.
-- The fast path is: the tenant guard, the batch check, the stream's queue
-- lock, the boundary locks, one UPDATE of the stream's row (tenant active, version, order), one
-- INSERT. Everything else (a new stream, a failed check, a retry of the
-- latest append) takes the slow path, where a retry of an append that
-- succeeded (same event ids and content) returns its first result. Plans:
-- the default (see es.streams).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.append_to_stream(p_tenant_id text, p_stream_id text, p_expected_version bigint, p_events jsonb,
                                               OUT stream_version bigint, OUT positions bigint[])
RETURNS record LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = auto AS $$
DECLARE
    v_early boolean := pg_current_xact_id_if_assigned() IS NOT NULL;
    v_n int;
    v_me xid8;
    v_current bigint;
    v_head record;
    v_last_id uuid;
BEGIN
    IF p_tenant_id IS DISTINCT FROM current_setting('es.tenant_id', true) THEN
        PERFORM es.require_tenant(p_tenant_id); -- raises ES010
    END IF;
    IF p_stream_id IS NULL OR p_stream_id = '' OR length(p_stream_id) > 200 THEN
        PERFORM es.raise('ES004', 'stream id must be 1-200 characters');
    END IF;
    IF p_expected_version IS NULL OR p_expected_version < -2 OR p_expected_version > 4503599627370496 THEN
        PERFORM es.raise('ES004', format('invalid expected version %s: use -1 (any), 0 (no stream), -2 (stream exists) or a version from 1 to 2^52', p_expected_version));
    END IF;
    v_n := es.check_batch(p_events);
    v_last_id := (p_events->-1->>'id')::uuid;
    -- Appends to one stream queue here, before any other lock of the call,
    -- and take their transaction id only once it is their turn: a waiter
    -- that took an id first would carry a smaller one than the holder it
    -- waited for, and be refused (ES012). Advisory locks need no id; row
    -- locks do, so the stream's row is not the queue.
    PERFORM pg_advisory_xact_lock(es.lock_key(p_tenant_id, 's', p_stream_id));
    PERFORM es.lock_boundary(p_tenant_id, p_events, NULL);
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- A snapshot older than the locks would miss a drop that committed
        -- meanwhile; the row lock waits for it instead.
        PERFORM 1 FROM es.tenants t WHERE t.tenant_id = p_tenant_id FOR KEY SHARE;
    END IF;
    v_me := pg_current_xact_id();

    UPDATE es.streams s SET version = s.version + v_n, last_tx = v_me, last_event_id = v_last_id
     WHERE s.tenant_id = p_tenant_id AND s.stream_id = p_stream_id
       AND NOT s.deleted AND s.last_tx <= v_me AND s.version > 0
       AND (p_expected_version < 0 OR s.version = p_expected_version)
       AND (v_last_id IS NULL OR s.last_event_id IS DISTINCT FROM v_last_id)
       AND EXISTS (SELECT 1 FROM es.tenants t WHERE t.tenant_id = p_tenant_id AND t.status = 'active')
    RETURNING s.version - v_n INTO v_current;

    IF NOT FOUND THEN
        -- The slow path: say why, or take the stream's row from es.events.
        PERFORM es.check_tenant(p_tenant_id, true, false); -- raises ES005 or ES006
        v_head := es.lock_stream(p_tenant_id, p_stream_id);
        v_current := v_head.version;
        IF v_head.deleted OR v_head.last_event_id = v_last_id
           OR (p_expected_version = 0 AND v_current <> 0)
           OR (p_expected_version = -2 AND v_current = 0)
           OR (p_expected_version > 0 AND v_current <> p_expected_version) THEN
            -- A retry of an append that succeeded returns its first result.
            SELECT f.stream_version, f.positions INTO stream_version, positions
              FROM es.find_appended(p_tenant_id, p_stream_id, p_events) f;
            IF positions IS NOT NULL THEN
                RETURN;
            END IF;
            IF v_head.deleted THEN
                PERFORM es.raise('ES003', format('stream %L is deleted', p_stream_id));
            END IF;
            PERFORM es.raise('ES001',
                format('wrong expected version for stream %L: expected %s, actual %s', p_stream_id, p_expected_version, v_current),
                json_build_object('expected', p_expected_version, 'actual', v_current)::text);
        END IF;
        IF v_head.last_tx > v_me THEN
            PERFORM es.raise('ES012', format(
                'stream %L: its last event was written by a later transaction (%s) than this one (%s): retry the append in a new transaction',
                p_stream_id, v_head.last_tx, v_me));
        END IF;
        UPDATE es.streams s SET version = v_current + v_n, last_tx = v_me, last_event_id = v_last_id
         WHERE s.tenant_id = p_tenant_id AND s.stream_id = p_stream_id;
    END IF;
    IF v_early THEN
        PERFORM es.check_order(p_tenant_id);
    END IF;

    positions := es.write_events(p_tenant_id, p_stream_id, v_current, p_events);
    stream_version := v_current + v_n;
END $$;
-- +goose StatementEnd

-- es.append_events appends a batch without a stream (DCB). With p_fail_if,
-- it fails (ES008) if an event matching that query exists after position
-- p_after (0: any), checked under locks that make the check and the append
-- one step (READ COMMITTED only: the check must see every committed event).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.append_events(p_tenant_id text, p_events jsonb, p_fail_if jsonb DEFAULT NULL, p_after bigint DEFAULT NULL)
RETURNS bigint[] LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = auto AS $$
DECLARE
    v_early boolean := pg_current_xact_id_if_assigned() IS NOT NULL;
    v_conflict bigint;
    v_positions bigint[];
BEGIN
    IF p_tenant_id IS DISTINCT FROM current_setting('es.tenant_id', true) THEN
        PERFORM es.require_tenant(p_tenant_id); -- raises ES010
    END IF;
    PERFORM es.check_batch(p_events);
    IF p_after < 0 THEN
        PERFORM es.raise('ES004', format('invalid condition position %s: use 0 or more', p_after));
    END IF;
    IF p_fail_if IS NOT NULL THEN
        PERFORM es.check_query(p_fail_if);
        PERFORM es.require_read_committed();
    END IF;
    IF p_fail_if IS NULL THEN
        PERFORM es.lock_boundary(p_tenant_id, p_events, NULL);
    ELSIF NOT es.try_boundary(p_tenant_id, p_events, p_fail_if) THEN
        -- The boundary is busy: an append or a read of it is in flight. If
        -- what has committed already violates the condition, fail now
        -- instead of queueing behind it (a contended boundary's losers).
        v_conflict := es.first_match(p_tenant_id, p_fail_if, coalesce(p_after, 0));
        IF v_conflict IS NULL THEN
            PERFORM es.lock_boundary(p_tenant_id, p_events, p_fail_if);
        END IF;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM 1 FROM es.tenants t WHERE t.tenant_id = p_tenant_id FOR KEY SHARE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM es.tenants t WHERE t.tenant_id = p_tenant_id AND t.status = 'active') THEN
        PERFORM es.check_tenant(p_tenant_id, true, false); -- raises ES005 or ES006
    END IF;
    IF p_fail_if IS NOT NULL THEN
        -- Under the locks: every matching event has committed or is ours.
        v_conflict := coalesce(v_conflict, es.first_match(p_tenant_id, p_fail_if, coalesce(p_after, 0)));
        IF v_conflict IS NOT NULL THEN
            -- A retry of an append that succeeded returns its first result.
            SELECT f.positions INTO v_positions FROM es.find_appended(p_tenant_id, NULL, p_events) f;
            IF v_positions IS NOT NULL THEN
                RETURN v_positions;
            END IF;
            PERFORM es.raise('ES008',
                format('append condition violated: event at position %s matches the query after position %s', v_conflict, coalesce(p_after, 0)),
                json_build_object('position', v_conflict)::text);
        END IF;
    END IF;
    IF v_early THEN
        PERFORM es.check_order(p_tenant_id);
    END IF;
    RETURN es.write_events(p_tenant_id, NULL, 0, p_events);
END $$;
-- +goose StatementEnd

-- es.delete_stream appends the stream's tombstone: reads and appends then
-- fail with ES003. The head is read under the stream's row lock, so a
-- concurrent append is either before the tombstone or refused after it.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.delete_stream(p_tenant_id text, p_stream_id text, p_expected_version bigint DEFAULT -2)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = auto AS $$
DECLARE
    v_early boolean := pg_current_xact_id_if_assigned() IS NOT NULL;
    v_head record;
    v_tombstone jsonb := '[{"type": "$tombstone", "payload": {}}]';
BEGIN
    PERFORM es.check_tenant(p_tenant_id, true);
    IF p_expected_version IS NULL OR p_expected_version < -2 OR p_expected_version = 0 OR p_expected_version > 4503599627370496 THEN
        PERFORM es.raise('ES004', format('invalid expected version %s for a delete: use -1 (any), -2 (stream exists) or a version', p_expected_version));
    END IF;
    PERFORM pg_advisory_xact_lock(es.lock_key(p_tenant_id, 's', p_stream_id)); -- as es.append_to_stream
    PERFORM es.lock_boundary(p_tenant_id, v_tombstone, NULL);
    PERFORM es.recheck_tenant(p_tenant_id, true);
    v_head := es.lock_stream(p_tenant_id, p_stream_id);
    IF v_head.version = 0 THEN
        PERFORM es.raise('ES002', format('stream %L not found', p_stream_id));
    ELSIF v_head.deleted THEN
        RETURN v_head.version; -- deleting twice is not an error
    ELSIF p_expected_version > 0 AND v_head.version <> p_expected_version THEN
        PERFORM es.raise('ES001',
            format('wrong expected version for stream %L: expected %s, actual %s', p_stream_id, p_expected_version, v_head.version),
            json_build_object('expected', p_expected_version, 'actual', v_head.version)::text);
    ELSIF v_head.last_tx > pg_current_xact_id() THEN
        PERFORM es.raise('ES012', format(
            'stream %L: its last event was written by a later transaction (%s) than this one: retry the delete in a new transaction',
            p_stream_id, v_head.last_tx));
    END IF;
    IF v_early THEN
        PERFORM es.check_order(p_tenant_id);
    END IF;
    UPDATE es.streams s SET version = v_head.version + 1, last_tx = pg_current_xact_id(), last_event_id = NULL, deleted = true
     WHERE s.tenant_id = p_tenant_id AND s.stream_id = p_stream_id;
    PERFORM es.write_events(p_tenant_id, p_stream_id, v_head.version, v_tombstone);
    RETURN v_head.version + 1;
END $$;
-- +goose StatementEnd

-- es.save_snapshot stores a stream's state at a version, under the tenant's
-- "any event" key like a writer (a drop waits for it), replacing a snapshot
-- of that version.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.save_snapshot(p_tenant_id text, p_stream_id text, p_stream_version bigint, p_schema_version int, p_state jsonb)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_head record;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, true);
    IF p_state IS NULL OR p_schema_version IS NULL THEN
        PERFORM es.raise('ES004', 'snapshot state and schema version are required');
    END IF;
    PERFORM pg_advisory_xact_lock_shared(es.lock_key(p_tenant_id, 'a', ''));
    PERFORM es.recheck_tenant(p_tenant_id, true);
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

-- es.first_match returns the position of the first event after p_after that
-- matches p_query, or NULL: the condition check of a conditional append,
-- and the probe that lets a read of an empty boundary return at once
-- (00010). A custom plan of it cost 150 us of planning per call. For a
-- shared tenant it now runs cached generic plans on the shared partition,
-- whose 16 leaves are pruned at run time to the tenant's (they lock 17
-- tables, a fixed number, never a dedicated tenant's); a dedicated tenant's
-- lookups are planned per call, as before.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.first_match(p_tenant_id text, p_query jsonb, p_after bigint)
RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
DECLARE
    v_dedicated boolean := to_regclass(format('es.%I', 'events_' || p_tenant_id)) IS NOT NULL;
    v_item jsonb;
    v_tags text[];
    v_types text[];
    v_position bigint;
BEGIN
    FOR v_item IN SELECT value FROM jsonb_array_elements(p_query) LOOP
        v_tags := ARRAY(SELECT jsonb_array_elements_text(v_item->'tags'));
        v_types := ARRAY(SELECT jsonb_array_elements_text(v_item->'types'));
        IF v_dedicated THEN
            -- On es.events, not the partition itself: a drop of the tenant
            -- may remove that under a lock-free look (es.append_events).
            -- "+ 0" keeps the planner from ANDing a position range scan of
            -- the whole partition with the GIN lookup.
            EXECUTE format('SELECT e.position FROM es.events e WHERE e.tenant_id = $4 AND %s LIMIT 1', CASE
                WHEN cardinality(v_tags) > 0 THEN 'e.tags @> $1 AND e.position + 0 > $3 AND (cardinality($2) = 0 OR e.event_type = ANY ($2))'
                WHEN cardinality(v_types) > 0 THEN 'e.event_type = ANY ($2) AND e.position > $3'
                ELSE 'e.position > $3' END)
              INTO v_position USING v_tags, v_types, p_after, p_tenant_id;
        ELSIF cardinality(v_tags) > 0 THEN
            SELECT e.position INTO v_position FROM es."events$shared" e
             WHERE e.tenant_id = p_tenant_id AND e.tags @> v_tags AND e.position + 0 > p_after
               AND (cardinality(v_types) = 0 OR e.event_type = ANY (v_types))
             LIMIT 1;
        ELSIF cardinality(v_types) > 0 THEN
            SELECT e.position INTO v_position FROM es."events$shared" e
             WHERE e.tenant_id = p_tenant_id AND e.event_type = ANY (v_types) AND e.position > p_after
             LIMIT 1;
        ELSE
            SELECT e.position INTO v_position FROM es."events$shared" e
             WHERE e.tenant_id = p_tenant_id AND e.position > p_after
             LIMIT 1;
        END IF;
        IF v_position IS NOT NULL THEN
            RETURN v_position;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- es.check_query: as in 00002, and a query is bounded (issue 17): at most
-- 100 items and 100 types in all. A condition or a read head takes one lock
-- per item with tags, one per type of an item without, and one per such
-- key's stripe, so the largest legal call (99 tag items and one item of 100
-- types) holds at most 199 keys and 199 stripes, plus its writes' (at most
-- 32 keys and the "any event" key, or 512 stripes and the "any event" key)
-- and the notifier's key: about 715 locks, against 6,400 in the lock table
-- of a default server. Before, a 10,000-item query
-- held 10,513 locks and could exhaust it for everyone.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.check_query(p_query jsonb)
RETURNS void LANGUAGE plpgsql IMMUTABLE SET plan_cache_mode = auto AS $_$
DECLARE
    v_ord bigint;
    v_reason text;
BEGIN
    -- The common, well-formed query passes one jsonpath test.
    IF jsonb_typeof(p_query) = 'array' AND jsonb_array_length(p_query) BETWEEN 1 AND 100
       AND jsonb_array_length(jsonb_path_query_array(p_query, '$[*].types[*]')) <= 100
       AND NOT p_query @? '$[*] ? (@.type() != "object" || exists(@.keyvalue() ? (@.key != "types" && @.key != "tags"))
              || (exists(@.types) && @.types.type() != "array") || (exists(@.tags) && @.tags.type() != "array")
              || exists(@.types[*] ? (@.type() != "string" || @ == "" || @ like_regex "^.{200}." flag "s"))
              || exists(@.tags[*] ? (@.type() != "string" || @ == "")))'
       AND NOT EXISTS (SELECT 1 FROM jsonb_path_query(p_query, '$[*].tags[*]') t WHERE length(t #>> '{}') > 1000 OR octet_length(t #>> '{}') > 2048) THEN
        RETURN;
    END IF;
    IF jsonb_typeof(p_query) IS DISTINCT FROM 'array' OR jsonb_array_length(p_query) = 0 THEN
        PERFORM es.raise('ES004', 'a query is a non-empty JSON array of items {"types":[...],"tags":[...]}; [{}] matches all events');
    END IF;
    IF jsonb_array_length(p_query) > 100 OR jsonb_array_length(jsonb_path_query_array(p_query, '$[*].types[*]')) > 100 THEN
        PERFORM es.raise('ES004', format('a query has at most 100 items and 100 types in all (this one: %s items, %s types): each takes a lock',
                                         jsonb_array_length(p_query), jsonb_array_length(jsonb_path_query_array(p_query, '$[*].types[*]'))));
    END IF;
    SELECT ord, reason INTO v_ord, v_reason FROM (
        SELECT ord, CASE
            WHEN jsonb_typeof(q) <> 'object' THEN 'not a JSON object'
            WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(q) k WHERE k NOT IN ('types', 'tags')) THEN 'only "types" and "tags" are allowed'
            WHEN jsonb_typeof(coalesce(q->'types', '[]')) <> 'array' OR jsonb_typeof(coalesce(q->'tags', '[]')) <> 'array' THEN '"types" and "tags" must be arrays'
            WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(q->'types', '[]')) t
                          WHERE jsonb_typeof(t) <> 'string' OR t #>> '{}' = '' OR length(t #>> '{}') > 200) THEN 'a type is not a string of 1-200 characters'
            WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(q->'tags', '[]')) t
                          WHERE jsonb_typeof(t) <> 'string' OR t #>> '{}' = '' OR length(t #>> '{}') > 1000 OR octet_length(t #>> '{}') > 2048) THEN 'a tag is not a string of 1-1000 characters and at most 2048 bytes'
            END AS reason
          FROM jsonb_array_elements(p_query) WITH ORDINALITY AS i(q, ord)) bad
     WHERE reason IS NOT NULL ORDER BY ord LIMIT 1;
    IF v_reason IS NOT NULL THEN
        PERFORM es.raise('ES004', format('query item %s: %s', v_ord - 1, v_reason));
    END IF;
END $_$;
-- +goose StatementEnd


-- The runtime role writes only through the API (issue 17): it cannot choose
-- positions, transaction ids, stream versions or reserved types, nor bypass
-- es.streams; nor draw positions to learn every tenant's write volume. The
-- API's functions run as the owner and need neither privilege.
REVOKE INSERT ON es.events FROM es_runtime;
REVOKE USAGE ON SEQUENCE es.event_position FROM es_runtime;

-- es.drop_tenant: as in 00011, and the tenant's stream heads go too.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.drop_tenant(p_tenant_id text)
RETURNS boolean LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM es.tenants WHERE tenant_id = p_tenant_id) THEN
        RETURN false;
    END IF;
    PERFORM es.lock_tenant_writes(p_tenant_id);
    DELETE FROM es.tenants WHERE tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        RETURN false; -- dropped while this waited
    END IF;
    PERFORM es.drop_exclusion(p_tenant_id);
    IF es.is_dedicated(p_tenant_id) THEN
        EXECUTE format('DROP TABLE es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    ELSE
        DELETE FROM es.events WHERE tenant_id = p_tenant_id;
        DELETE FROM es.snapshots WHERE tenant_id = p_tenant_id;
    END IF;
    DELETE FROM es.streams WHERE tenant_id = p_tenant_id;
    RETURN true;
END $$;
-- +goose StatementEnd

-- es.import_events: as in 00011; the imported streams' heads are taken from
-- es.events again at their next append.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.import_events(p_tenant_id text, p_rows jsonb, p_merge boolean)
RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
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
    DELETE FROM es.streams s
     WHERE s.tenant_id = p_tenant_id
       AND s.stream_id IN (SELECT r->>'stream_id' FROM jsonb_array_elements(p_rows) r WHERE r ? 'stream_id');
    RETURN v_count;
END $$;
-- +goose StatementEnd

DROP FUNCTION es.save_snapshot_00001(text, text, bigint, int, jsonb);
DROP FUNCTION es.lock_boundary_00001(text, jsonb, jsonb);
DROP FUNCTION es.check_batch_00001(jsonb);
REVOKE EXECUTE ON FUNCTION es.check_order(text), es.lock_stream(text, text),
    es.try_boundary(text, jsonb, jsonb), es.write_keys(text, jsonb), es.boundary_locks(text, bigint[], jsonb) FROM PUBLIC;

-- +goose Down
-- Back to 00011: its bodies (as dumped from it), its wrappers around the
-- renamed copies and the runtime role's privileges; then the objects 00012
-- created go.
GRANT INSERT ON es.events TO es_runtime;
GRANT USAGE ON SEQUENCE es.event_position TO es_runtime;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.validate_events(p_events jsonb) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE
    SET plan_cache_mode TO 'auto'
    AS $_$
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
END $_$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION es.check_batch_00001(p_events jsonb) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE
    SET plan_cache_mode TO 'auto'
    AS $_$
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
END $_$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.check_batch(p_events jsonb) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE
    SET plan_cache_mode TO 'auto'
    AS $_$
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
END $_$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION es.lock_boundary_00001(p_tenant_id text, p_events jsonb, p_query jsonb) RETURNS void
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'auto'
    AS $_$
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
END $_$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.lock_boundary(p_tenant_id text, p_events jsonb, p_query jsonb) RETURNS void
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'auto'
    AS $$
BEGIN
    PERFORM es.lock_boundary_00001(p_tenant_id, p_events, p_query);
    PERFORM es.recheck_tenant(p_tenant_id, p_events IS NOT NULL);
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.write_events(p_tenant_id text, p_stream_id text, p_base_version bigint, p_events jsonb) RETURNS bigint[]
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.append_to_stream(p_tenant_id text, p_stream_id text, p_expected_version bigint, p_events jsonb, OUT stream_version bigint, OUT positions bigint[]) RETURNS record
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET plan_cache_mode TO 'force_custom_plan'
    AS $_$
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
END $_$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.append_events(p_tenant_id text, p_events jsonb, p_fail_if jsonb DEFAULT NULL::jsonb, p_after bigint DEFAULT NULL::bigint) RETURNS bigint[]
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_existing bigint[];
    v_conflict bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, true);
    PERFORM es.check_batch(p_events);
    IF p_after < 0 THEN
        PERFORM es.raise('ES004', format('invalid condition position %s: use 0 or more', p_after));
    END IF;
    IF p_fail_if IS NOT NULL THEN
        PERFORM es.check_query(p_fail_if);
        PERFORM es.require_read_committed();
    END IF;
    PERFORM es.lock_boundary(p_tenant_id, p_events, p_fail_if);
    IF p_fail_if IS NOT NULL THEN
        v_conflict := es.first_match(p_tenant_id, p_fail_if, coalesce(p_after, 0));
        IF v_conflict IS NOT NULL THEN
            -- A retry of an append that succeeded returns its first result.
            SELECT f.positions INTO v_existing FROM es.find_appended(p_tenant_id, NULL, p_events) f;
            IF v_existing IS NOT NULL THEN
                RETURN v_existing;
            END IF;
            PERFORM es.raise('ES008',
                format('append condition violated: event at position %s matches the query after position %s', v_conflict, coalesce(p_after, 0)),
                json_build_object('position', v_conflict)::text);
        END IF;
    END IF;
    RETURN es.write_events(p_tenant_id, NULL, 0, p_events);
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.delete_stream(p_tenant_id text, p_stream_id text, p_expected_version bigint DEFAULT '-2'::integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET plan_cache_mode TO 'force_custom_plan'
    AS $_$
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
END $_$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION es.save_snapshot_00001(p_tenant_id text, p_stream_id text, p_stream_version bigint, p_schema_version integer, p_state jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
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
CREATE OR REPLACE FUNCTION es.save_snapshot(p_tenant_id text, p_stream_id text, p_stream_version bigint, p_schema_version integer, p_state jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET plan_cache_mode TO 'auto'
    AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, true);
    PERFORM pg_advisory_xact_lock_shared(es.lock_key(p_tenant_id, 'a', ''));
    PERFORM es.recheck_tenant(p_tenant_id, true);
    PERFORM es.save_snapshot_00001(p_tenant_id, p_stream_id, p_stream_version, p_schema_version, p_state);
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.check_query(p_query jsonb) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET plan_cache_mode TO 'auto'
    AS $_$
DECLARE
    v_ord bigint;
    v_reason text;
BEGIN
    -- The common, well-formed query passes one jsonpath test.
    IF jsonb_typeof(p_query) = 'array' AND jsonb_array_length(p_query) > 0
       AND NOT p_query @? '$[*] ? (@.type() != "object" || exists(@.keyvalue() ? (@.key != "types" && @.key != "tags"))
              || (exists(@.types) && @.types.type() != "array") || (exists(@.tags) && @.tags.type() != "array")
              || exists(@.types[*] ? (@.type() != "string" || @ == "" || @ like_regex "^.{200}." flag "s"))
              || exists(@.tags[*] ? (@.type() != "string" || @ == "")))'
       AND NOT EXISTS (SELECT 1 FROM jsonb_path_query(p_query, '$[*].tags[*]') t WHERE length(t #>> '{}') > 1000 OR octet_length(t #>> '{}') > 2048) THEN
        RETURN;
    END IF;
    IF jsonb_typeof(p_query) IS DISTINCT FROM 'array' OR jsonb_array_length(p_query) = 0 THEN
        PERFORM es.raise('ES004', 'a query is a non-empty JSON array of items {"types":[...],"tags":[...]}; [{}] matches all events');
    END IF;
    SELECT ord, reason INTO v_ord, v_reason FROM (
        SELECT ord, CASE
            WHEN jsonb_typeof(q) <> 'object' THEN 'not a JSON object'
            WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(q) k WHERE k NOT IN ('types', 'tags')) THEN 'only "types" and "tags" are allowed'
            WHEN jsonb_typeof(coalesce(q->'types', '[]')) <> 'array' OR jsonb_typeof(coalesce(q->'tags', '[]')) <> 'array' THEN '"types" and "tags" must be arrays'
            WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(q->'types', '[]')) t
                          WHERE jsonb_typeof(t) <> 'string' OR t #>> '{}' = '' OR length(t #>> '{}') > 200) THEN 'a type is not a string of 1-200 characters'
            WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(q->'tags', '[]')) t
                          WHERE jsonb_typeof(t) <> 'string' OR t #>> '{}' = '' OR length(t #>> '{}') > 1000 OR octet_length(t #>> '{}') > 2048) THEN 'a tag is not a string of 1-1000 characters and at most 2048 bytes'
            END AS reason
          FROM jsonb_array_elements(p_query) WITH ORDINALITY AS i(q, ord)) bad
     WHERE reason IS NOT NULL ORDER BY ord LIMIT 1;
    IF v_reason IS NOT NULL THEN
        PERFORM es.raise('ES004', format('query item %s: %s', v_ord - 1, v_reason));
    END IF;
END $_$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.first_match(p_tenant_id text, p_query jsonb, p_after bigint) RETURNS bigint
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
DECLARE
    v_item jsonb;
    v_tags text[];
    v_types text[];
    v_position bigint;
BEGIN
    FOR v_item IN SELECT value FROM jsonb_array_elements(p_query) LOOP
        v_tags := ARRAY(SELECT jsonb_array_elements_text(v_item->'tags'));
        v_types := ARRAY(SELECT jsonb_array_elements_text(v_item->'types'));
        IF cardinality(v_tags) > 0 THEN
            -- "+ 0" keeps the planner from ANDing a position range scan
            -- of the whole partition with the GIN lookup.
            SELECT e.position INTO v_position FROM es.events e
             WHERE e.tenant_id = p_tenant_id AND e.tags @> v_tags AND e.position + 0 > p_after
               AND (cardinality(v_types) = 0 OR e.event_type = ANY (v_types))
             LIMIT 1;
        ELSIF cardinality(v_types) > 0 THEN
            SELECT e.position INTO v_position FROM es.events e
             WHERE e.tenant_id = p_tenant_id AND e.event_type = ANY (v_types) AND e.position > p_after
             LIMIT 1;
        ELSE
            SELECT e.position INTO v_position FROM es.events e
             WHERE e.tenant_id = p_tenant_id AND e.position > p_after
             LIMIT 1;
        END IF;
        IF v_position IS NOT NULL THEN
            RETURN v_position;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.drop_tenant(p_tenant_id text) RETURNS boolean
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM es.tenants WHERE tenant_id = p_tenant_id) THEN
        RETURN false;
    END IF;
    PERFORM es.lock_tenant_writes(p_tenant_id);
    DELETE FROM es.tenants WHERE tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        RETURN false; -- dropped while this waited
    END IF;
    PERFORM es.drop_exclusion(p_tenant_id);
    IF es.is_dedicated(p_tenant_id) THEN
        EXECUTE format('DROP TABLE es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    ELSE
        DELETE FROM es.events WHERE tenant_id = p_tenant_id;
        DELETE FROM es.snapshots WHERE tenant_id = p_tenant_id;
    END IF;
    RETURN true;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.import_events(p_tenant_id text, p_rows jsonb, p_merge boolean) RETURNS bigint
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
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
REVOKE ALL ON FUNCTION es.check_batch_00001(jsonb), es.lock_boundary_00001(text, jsonb, jsonb),
    es.save_snapshot_00001(text, text, bigint, integer, jsonb) FROM PUBLIC;
DROP FUNCTION es.try_boundary(text, jsonb, jsonb), es.boundary_locks(text, bigint[], jsonb), es.write_keys(text, jsonb),
    es.check_order(text), es.lock_stream(text, text);
DROP TABLE es.streams;
