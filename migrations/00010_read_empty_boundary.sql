-- A DCB read of a boundary that no event carries yet ("is this username
-- taken?", the first subscription to a course) scanned the whole partition
-- (bench/RESULTS.md, scale study): for ORDER BY position DESC LIMIT 1 the
-- planner estimates an unseen tag at a default rare-element frequency,
-- expects a match near the end and picks a backward scan of the primary
-- key, which reads every event when none matches: 60 s and 4.5 GB at
-- 10,000,000 events. es.read_events now first asks es.first_match, which
-- finds a match or its absence through the GIN index ("position + 0"); an
-- empty answer returns at once. Reads that have matches plan as before.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.read_events(p_tenant_id text, p_query jsonb, p_after bigint DEFAULT 0, p_upto bigint DEFAULT NULL,
                               p_limit int DEFAULT 1000, p_backwards boolean DEFAULT false)
RETURNS SETOF es.events LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    PERFORM es.check_query(p_query);
    IF p_limit IS NULL OR p_limit < 0 OR p_after < 0 THEN
        PERFORM es.raise('ES004', 'limit and after must be 0 or more');
    END IF;
    IF es.first_match(p_tenant_id, p_query, coalesce(p_after, 0)) IS NULL THEN
        RETURN; -- nothing matches after p_after
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT * FROM es.events e
          WHERE e.tenant_id = $1 AND e.position > $2 AND e.position <= $3 AND (%s)
          ORDER BY e.position %s LIMIT $4',
        es.query_filter(p_query), CASE WHEN p_backwards THEN 'DESC' ELSE 'ASC' END)
    USING p_tenant_id, coalesce(p_after, 0), coalesce(p_upto, 9223372036854775807), p_limit;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.read_events(p_tenant_id text, p_query jsonb, p_after bigint DEFAULT 0, p_upto bigint DEFAULT NULL,
                               p_limit int DEFAULT 1000, p_backwards boolean DEFAULT false)
RETURNS SETOF es.events LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
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
