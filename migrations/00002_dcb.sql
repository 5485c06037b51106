-- Dynamic Consistency Boundaries (dcb.events): tag/type queries, reads that
-- hand out a safe head, and conditional appends, over the same es.events log
-- as aggregate streams.
--
-- A query is a JSON array of items, OR-ed: [{"types":[...],"tags":[...]}, ...].
-- An event matches an item when its type is one of the item's types (if any
-- are given) and it carries every tag of the item (if any are given); the
-- item {} matches every event. New error: ES008 append condition violated,
-- DETAIL {"position": n} names a matching event after the condition.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION es.check_query(p_query jsonb)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
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
END $$;
-- +goose StatementEnd

-- es.require_read_committed: conditions and heads are only safe when each
-- statement sees every transaction committed before it, i.e. under READ
-- COMMITTED; a REPEATABLE READ snapshot taken before the locks would miss
-- events committed while waiting for them (NOTES.md hazard 4).
-- +goose StatementBegin
CREATE FUNCTION es.require_read_committed()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM es.raise('ES004', format('conditional appends and read heads need READ COMMITTED, not %s',
                                         current_setting('transaction_isolation')));
    END IF;
END $$;
-- +goose StatementEnd

-- es.first_match returns the position of an event of the tenant matching
-- p_query after p_after, or NULL. One statement shape per kind of item, so
-- plans are cached and each uses its index: GIN on tags, btree on type.
-- VOLATILE: each statement takes a fresh snapshot, after the caller's locks.
-- +goose StatementBegin
CREATE FUNCTION es.first_match(p_tenant_id text, p_query jsonb, p_after bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
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

-- es.query_filter turns a checked query into a WHERE condition on alias e,
-- with every type and tag quoted as a literal (tags are user data: they can
-- never change the meaning of the SQL).
-- +goose StatementBegin
CREATE FUNCTION es.query_filter(p_query jsonb)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_item jsonb;
    v_parts text[] := '{}';
    v_conds text[];
BEGIN
    FOR v_item IN SELECT value FROM jsonb_array_elements(p_query) LOOP
        v_conds := '{}';
        IF jsonb_array_length(coalesce(v_item->'tags', '[]')) > 0 THEN
            v_conds := v_conds || format('e.tags @> %L::text[]', ARRAY(SELECT jsonb_array_elements_text(v_item->'tags')));
        END IF;
        IF jsonb_array_length(coalesce(v_item->'types', '[]')) > 0 THEN
            v_conds := v_conds || format('e.event_type = ANY (%L::text[])', ARRAY(SELECT jsonb_array_elements_text(v_item->'types')));
        END IF;
        v_parts := v_parts || coalesce('(' || nullif(array_to_string(v_conds, ' AND '), '') || ')', 'true');
    END LOOP;
    RETURN array_to_string(v_parts, ' OR ');
END $$;
-- +goose StatementEnd

-- es.read_head returns the tenant's head position for a read of p_query that
-- will back a decision: it first waits for every in-flight append of an
-- event matching p_query (the locks a condition takes), so no event matching
-- the query can later commit at or below the head (NOTES.md hazard 5). The
-- locks last until the end of the calling transaction: call it on its own.
-- +goose StatementBegin
CREATE FUNCTION es.read_head(p_tenant_id text, p_query jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    PERFORM es.check_query(p_query);
    PERFORM es.require_read_committed();
    PERFORM es.lock_boundary(p_tenant_id, NULL, p_query);
    RETURN coalesce((SELECT max(e.position) FROM es.events e WHERE e.tenant_id = p_tenant_id), 0);
END $$;
-- +goose StatementEnd

-- es.read_events returns up to p_limit events matching p_query with
-- p_after < position <= p_upto (NULL: no upper bound), in position order or,
-- with p_backwards, newest first.
-- +goose StatementBegin
CREATE FUNCTION es.read_events(p_tenant_id text, p_query jsonb, p_after bigint DEFAULT 0, p_upto bigint DEFAULT NULL,
                               p_limit int DEFAULT 1000, p_backwards boolean DEFAULT false)
RETURNS SETOF es.events LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    PERFORM es.check_query(p_query);
    IF p_limit IS NULL OR p_limit < 0 OR p_after < 0 THEN
        PERFORM es.raise('ES004', 'limit and after must be 0 or more');
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT * FROM es.events e
          WHERE e.tenant_id = $1 AND e.position > $2 AND e.position <= $3 AND (%s)
          ORDER BY e.position %s LIMIT $4',
        es.query_filter(p_query), CASE WHEN p_backwards THEN 'DESC' ELSE 'ASC' END)
    USING p_tenant_id, coalesce(p_after, 0), coalesce(p_upto, 9223372036854775807), p_limit;
END $$;
-- +goose StatementEnd

-- es.count_events counts the events matching p_query with
-- p_after < position <= p_upto (NULL: no upper bound).
-- +goose StatementBegin
CREATE FUNCTION es.count_events(p_tenant_id text, p_query jsonb, p_after bigint DEFAULT 0, p_upto bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    PERFORM es.check_query(p_query);
    EXECUTE format('SELECT count(*) FROM es.events e WHERE e.tenant_id = $1 AND e.position > $2 AND e.position <= $3 AND (%s)',
                   es.query_filter(p_query))
       INTO v_count USING p_tenant_id, coalesce(p_after, 0), coalesce(p_upto, 9223372036854775807);
    RETURN v_count;
END $$;
-- +goose StatementEnd

-- es.append_events appends events without a stream, atomically. With
-- p_fail_if, it fails with ES008 and writes nothing if any event matching that
-- query has a position after p_after (NULL or 0: any such event). Appending
-- the same event ids again with a condition returns the first positions;
-- without one, it fails with unique_violation (23505) and
-- es.find_appended(tenant, NULL, events) returns them (the Go API does so).
-- Looking ids up only then keeps a lookup off every DCB append.
-- +goose StatementBegin
CREATE FUNCTION es.append_events(p_tenant_id text, p_events jsonb, p_fail_if jsonb DEFAULT NULL, p_after bigint DEFAULT NULL)
RETURNS bigint[] LANGUAGE plpgsql AS $$
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

-- +goose Down
DROP FUNCTION es.append_events(text, jsonb, jsonb, bigint);
DROP FUNCTION es.count_events(text, jsonb, bigint, bigint);
DROP FUNCTION es.read_events(text, jsonb, bigint, bigint, int, boolean);
DROP FUNCTION es.read_head(text, jsonb);
DROP FUNCTION es.query_filter(jsonb);
DROP FUNCTION es.first_match(text, jsonb, bigint);
DROP FUNCTION es.require_read_committed();
DROP FUNCTION es.check_query(jsonb);
