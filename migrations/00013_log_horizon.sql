-- A delivery horizon that only the tenant's own writers hold back (issue 15).
--
-- Until now delivery stopped at pg_snapshot_xmin, which is cluster-wide:
-- any transaction with an id left open anywhere on the server (another
-- database, or a session here that wrote an unrelated table) held back
-- every subscription of every tenant until it ended.
--
-- es.log_horizon(tenant) computes, from the calling statement's snapshot S,
-- the bound below which that statement may deliver the tenant's events in
-- (tx_id, position) order:
--
--   horizon = least(xmax(S), the smallest id in S's in-progress list that
--             either holds (or awaits) the tenant's writer lock now, or has
--             committed since S)
--
-- where "the tenant's writer lock" is the advisory key
-- es.lock_key(tenant, 'a', '') that every writer of the tenant's events
-- holds from before its INSERT until it ends (stream and DCB appends,
-- deletes, imports), or the lock stripe of that key, which big batches took
-- instead before 00012 (counting it too only ever waits for more).
--
-- Why it is safe. Take an event E of the tenant with tx_id x < horizon that
-- S cannot see (it commits later). x is below xmax(S), so x was running
-- when S was taken: x is in S's in-progress list. It neither held the lock
-- when it was read (after S), nor had it committed when its status was read
-- (after the lock). So x took the lock, inserted E and committed after the
-- lock was read, i.e. after S. Every event this statement delivers is
-- visible to S, so it committed before S, before x's append. If one of them
-- has a larger id than x, the append of x is refused (ES012: a transaction
-- that had an id before its first append may not append after an event
-- with a larger id committed); so every event delivered sorts before E, and
-- E is delivered later. The lock must be read before the statuses (a writer
-- that commits between the two is then seen by the status); the function
-- reads them in two statements, in that order, under the caller's snapshot
-- (it is STABLE). Transactions of other databases never hold this
-- database's advisory locks: they do not delay delivery at all.
--
-- The checkpoint never moves to the horizon itself: a running transaction
-- below it that has not appended yet may still append with no larger event
-- committed, and ES012 would then not refuse it. "safe" is the bound for
-- that (an empty poll's checkpoint, a subscription's or a reset's start):
--
--   safe = least(horizon, the smallest id in S's in-progress list that is
--          neither aborted nor known to belong to another database)
--
-- Every event that will ever commit with a key below (safe, 0) is visible to
-- S. A session in this database that keeps a transaction open holds "safe"
-- back (empty polls of a sparse filter then rescan from there), never the
-- horizon; one in another database holds back neither.
--
-- oldest_writer is the smallest id among the writers holding the tenant's
-- lock now (mapped to xid8 around xmax(S)) and the in-progress ids that
-- committed since S, or NULL: the Go subscriber keeps polling after a
-- wake-up while a writer in flight at the wake-up has not ended.
--
-- pg_lock_status() copies the lock table (its granted locks and waiters);
-- the Go subscriber calls this once per read, on wake-ups and fallback
-- polls only (bench/RESULTS.md, issue 15).

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION es.log_horizon(p_tenant_id text, p_with_safe boolean DEFAULT true,
                               OUT horizon xid8, OUT safe xid8, OUT oldest_writer xid8)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_snap pg_snapshot := pg_current_snapshot();
    v_xmax xid8 := pg_snapshot_xmax(v_snap);
    v_xmax64 bigint := pg_snapshot_xmax(v_snap)::text::bigint;
    v_key bigint := es.lock_key(p_tenant_id, 'a', '');
    v_db oid;
    v_writers bigint[];   -- the writers' 32-bit transaction ids
BEGIN
    -- A session's transactions show in pg_locks to anyone; still, a
    -- tenant's horizon is asked for by its own scope only.
    PERFORM es.require_tenant(p_tenant_id);
    SELECT d.oid INTO v_db FROM pg_database d WHERE d.datname = current_database();
    -- First the lock table (one consistent copy): the tenant's writers now.
    WITH l AS MATERIALIZED (
        SELECT l.locktype, l.database, l.classid, l.objid, l.objsubid, l.virtualtransaction, l.transactionid, l.mode, l.granted
          FROM pg_lock_status() l
         WHERE l.locktype IN ('advisory', 'transactionid'))
    SELECT coalesce(array_agg(DISTINCT x.transactionid::text::bigint), '{}') INTO v_writers
      FROM l a JOIN l x ON x.virtualtransaction = a.virtualtransaction
     WHERE a.locktype = 'advisory' AND a.database = v_db
       AND (a.objsubid = 1 AND a.classid = ((v_key >> 32) & 4294967295)::oid AND a.objid = (v_key & 4294967295)::oid
            OR a.objsubid = 2 AND a.classid = 1163067393::oid AND a.objid = es.lock_stripe(v_key)::oid)
       AND x.locktype = 'transactionid' AND x.mode = 'ExclusiveLock' AND x.granted;
    -- Then the statuses of S's in-progress ids.
    SELECT least(v_xmax, min(x) FILTER (WHERE (x::text::bigint & 4294967295) = ANY (v_writers) OR pg_xact_status(x) = 'committed'))
      INTO horizon
      FROM pg_snapshot_xip(v_snap) x;
    oldest_writer := CASE WHEN horizon < v_xmax THEN horizon END;
    -- Which database an id is in matters to "safe" only; reading
    -- pg_stat_get_activity for it costs about as much as the lock table,
    -- so p_with_safe false skips it (safe is then NULL). A committed id
    -- here may be of another database: it only ever lowers the horizon.
    IF p_with_safe THEN
        WITH elsewhere AS MATERIALIZED (
            SELECT a.backend_xid::text::bigint AS xid FROM pg_stat_get_activity(NULL) a
             WHERE a.backend_xid IS NOT NULL AND a.datid <> v_db
            UNION
            SELECT p.transaction::text::bigint FROM pg_prepared_xact() p WHERE p.dbid <> v_db)
        SELECT least(horizon, min(x) FILTER (WHERE pg_xact_status(x) <> 'aborted'
                                                 AND (x::text::bigint & 4294967295) NOT IN (SELECT e.xid FROM elsewhere e)))
          INTO safe
          FROM pg_snapshot_xip(v_snap) x;
    END IF;
    SELECT least(oldest_writer, min((v_xmax64 + (((w - (v_xmax64 & 4294967295)) + 2147483648) & 4294967295) - 2147483648)::text::xid8))
      INTO oldest_writer
      FROM unnest(v_writers) w;
END $$;
-- +goose StatementEnd

-- es.log_filter returns the conditions (each starting with AND) on es.events
-- e that select a subscription filter's events, for es.read_log and
-- es.subscription_status. The group expression must stay the same as the Go
-- subscriber's (queries/subscriptions.sql), so that Go and SQL consumers
-- split a group alike.
-- +goose StatementBegin
CREATE FUNCTION es.log_filter(p_filter jsonb)
RETURNS text LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_group jsonb := p_filter->'group';
    v_key text := coalesce(p_filter->'group'->>'key', 'stream');
BEGIN
    RETURN format('%s %s %s %s %s',
        CASE WHEN p_filter ? 'types' THEN format('AND e.event_type = ANY (%L::text[])', ARRAY(SELECT jsonb_array_elements_text(p_filter->'types'))) ELSE '' END,
        CASE WHEN p_filter ? 'tags' THEN format('AND e.tags @> %L::text[]', ARRAY(SELECT jsonb_array_elements_text(p_filter->'tags'))) ELSE '' END,
        CASE WHEN p_filter ? 'stream' THEN format('AND e.stream_id = %L', p_filter->>'stream') ELSE '' END,
        CASE WHEN p_filter ? 'stream_prefix' THEN format('AND left(e.stream_id, %s) = %L', length(p_filter->>'stream_prefix'), p_filter->>'stream_prefix') ELSE '' END,
        CASE WHEN v_group IS NULL OR (v_group->>'members')::int = 1 THEN ''
             ELSE format('AND abs(hashtextextended(coalesce(%s, %L), 0) %% %s) = %s',
                         CASE WHEN v_key = 'stream' THEN 'e.stream_id'
                              ELSE format('(SELECT t FROM unnest(e.tags) t WHERE left(t, %s) = %L LIMIT 1)', length(v_key) - 4, substr(v_key, 5)) END,
                         '', (v_group->>'members')::int, (v_group->>'member')::int) END);
END $$;
-- +goose StatementEnd

-- es.read_log returns up to p_limit events of the tenant matching p_filter
-- whose key (tx_id, position) is after (p_after_tx, p_after_position) and
-- whose tx_id is below p_horizon, in key order. p_horizon NULL: the horizon
-- of es.log_horizon for this statement's snapshot. A p_horizon of the
-- caller's must be pg_snapshot_xmin of a snapshot taken no later than this
-- statement's (es.log_horizon's horizon holds only for its own statement).
-- When fewer than p_limit events come back, nothing matching is left below
-- the horizon; the checkpoint may still move only to es.log_horizon's
-- "safe" bound (see es.subscription_next).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.read_log(p_tenant_id text, p_after_tx xid8, p_after_position bigint, p_filter jsonb,
                                       p_limit int DEFAULT 1000, p_horizon xid8 DEFAULT NULL)
RETURNS SETOF es.events LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_horizon xid8 := p_horizon;
    v_bitmapscan text := current_setting('enable_bitmapscan'); -- the caller's, restored
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    PERFORM es.check_filter(p_filter);
    IF p_limit IS NULL OR p_limit < 1 OR p_after_tx IS NULL OR p_after_position IS NULL THEN
        PERFORM es.raise('ES004', 'read_log needs a checkpoint and a limit of 1 or more');
    END IF;
    -- STABLE: this and the scan below share the caller's snapshot.
    IF v_horizon IS NULL THEN
        SELECT h.horizon INTO v_horizon FROM es.log_horizon(p_tenant_id, false) h;
    END IF;
    -- Without tags to look up, the batch is the next rows of the
    -- (tenant_id, tx_id, position) index in its order. In a shared leaf,
    -- which keeps no statistics on tenant_id, the planner chose a bitmap
    -- scan of every event after the checkpoint and a sort instead: each
    -- batch read the whole backlog (50,000 rows for 1,000), and catch-up
    -- was quadratic (measured with the relay: 15,000-34,000 events/s, and
    -- 52,000-107,000 without bitmap scans). Tag filters keep the GIN path.
    IF NOT p_filter ? 'tags' THEN
        PERFORM set_config('enable_bitmapscan', 'off', true);
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT * FROM es.events e
          WHERE e.tenant_id = $1 AND (e.tx_id, e.position) > ($2, $3) AND e.tx_id < $4 %s
          ORDER BY e.tx_id, e.position LIMIT $5', es.log_filter(p_filter))
    USING p_tenant_id, p_after_tx, p_after_position, v_horizon, p_limit;
    PERFORM set_config('enable_bitmapscan', v_bitmapscan, true);
END $$;
-- +goose StatementEnd

-- es.subscription_next: as in 00007, but the batch is read below the
-- tenant's horizon (es.read_log's own statement computes it), and an empty
-- poll moves the checkpoint only to "safe", taken before the scan: every
-- event below it that will ever commit was visible to the scan.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.subscription_next(p_tenant_id text, p_name text, p_limit int DEFAULT 100)
RETURNS SETOF es.events LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_sub es.subscriptions;
    v_safe xid8;
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    SELECT h.safe INTO v_safe FROM es.log_horizon(p_tenant_id) h;
    SELECT * INTO v_sub FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id AND s.name = p_name;
    IF NOT FOUND THEN
        PERFORM es.raise('ES004', format('subscription %L not found: create it with es.subscribe', left(p_name, 120)));
    END IF;
    RETURN QUERY SELECT * FROM es.read_log(p_tenant_id, v_sub.checkpoint_tx, v_sub.checkpoint_position, v_sub.filter, p_limit, NULL);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 AND (v_sub.checkpoint_tx, v_sub.checkpoint_position) < (v_safe, 0::bigint) THEN
        UPDATE es.subscriptions s SET checkpoint_tx = v_safe, checkpoint_position = 0, updated_at = now()
         WHERE s.tenant_id = p_tenant_id AND s.name = p_name
           AND (s.checkpoint_tx, s.checkpoint_position) = (v_sub.checkpoint_tx, v_sub.checkpoint_position);
    END IF;
END $$;
-- +goose StatementEnd

-- es.log_key_at: a start or reset point never above "safe" (was: the
-- cluster-wide pg_snapshot_xmin).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.log_key_at(p_tenant_id text, p_position bigint, p_time timestamptz, OUT tx_id xid8, OUT "position" bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    IF p_position IS NOT NULL THEN
        SELECT min(e.tx_id) INTO tx_id FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.position >= p_position;
    ELSE
        SELECT min(e.tx_id) INTO tx_id FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.recorded_at >= p_time;
    END IF;
    -- A transaction still open can hold an event at or after p_position
    -- with a smaller id than any visible one: never start above "safe".
    tx_id := least(tx_id, (SELECT h.safe FROM es.log_horizon(p_tenant_id) h));
    "position" := 0;
END $$;
-- +goose StatementEnd

-- es.subscribe: a subscription that starts at the end starts at "safe".
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.subscribe(p_tenant_id text, p_name text, p_filter jsonb, p_start text DEFAULT 'beginning')
RETURNS es.subscriptions LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row es.subscriptions;
    v_tx xid8 := '0';
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    PERFORM es.check_filter(p_filter);
    IF p_name IS NULL OR p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}(\[[0-9]+/[0-9]+\])?$' THEN
        PERFORM es.raise('ES004', format('invalid subscription name %L: use 1-100 characters A-Z, a-z, 0-9, "_", ".", ":" or "-", starting with a letter or digit', left(p_name, 120)));
    END IF;
    IF p_start IS NULL OR p_start !~ '^(beginning|end|[0-9]{1,18})$' THEN
        PERFORM es.raise('ES004', format('invalid start %L: use beginning, end or a position', left(p_start, 40)));
    END IF;
    UPDATE es.subscriptions s SET filter = p_filter, updated_at = now()
     WHERE s.tenant_id = p_tenant_id AND s.name = p_name AND s.filter IS DISTINCT FROM p_filter;
    SELECT * INTO v_row FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id AND s.name = p_name;
    IF FOUND THEN
        RETURN v_row;
    END IF;
    IF p_start = 'end' THEN
        SELECT h.safe INTO v_tx FROM es.log_horizon(p_tenant_id) h;
    ELSIF p_start <> 'beginning' THEN
        SELECT k.tx_id INTO v_tx FROM es.log_key_at(p_tenant_id, p_start::bigint, NULL) k;
    END IF;
    INSERT INTO es.subscriptions (tenant_id, name, filter, checkpoint_tx, checkpoint_position)
    VALUES (p_tenant_id, p_name, p_filter, v_tx, 0)
    ON CONFLICT (tenant_id, name) DO NOTHING;
    SELECT * INTO v_row FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id AND s.name = p_name;
    RETURN v_row;
END $$;
-- +goose StatementEnd

-- es.subscription_status lists the tenant's subscriptions with their lag,
-- now counted by each subscription's filter, and cheap: among at most the
-- 10,000 events after the checkpoint (lag_capped: there are more; the
-- count is then a lower bound). lag_seconds is the age of the oldest
-- matching one of them. held_by_* name the transaction that holds the
-- tenant's delivery back right now (es.log_horizon's oldest_writer: the
-- oldest writer of the tenant in flight): its pid, database, id, age and
-- state (null where pg_stat_activity does not show them to the function's
-- owner).
-- +goose StatementBegin
DROP FUNCTION es.subscription_status(text);
CREATE FUNCTION es.subscription_status(p_tenant_id text)
RETURNS TABLE (name text, filter jsonb, last_position bigint, head bigint, lag_events bigint, lag_capped boolean,
               lag_seconds double precision, owner text, lease_expires_at timestamptz, dead_letters bigint, updated_at timestamptz,
               held_by_pid int, held_by_database text, held_by_xid xid8, held_by_seconds double precision, held_by_state text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_head bigint;
    v_horizon xid8; -- the oldest writer in flight
    v_sub es.subscriptions;
    v_oldest timestamptz;
    v_cap constant int := 10000;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    SELECT coalesce(max(e.position), 0) INTO v_head FROM es.events e WHERE e.tenant_id = p_tenant_id;
    SELECT h.oldest_writer INTO v_horizon FROM es.log_horizon(p_tenant_id, false) h;
    IF v_horizon IS NOT NULL THEN
        held_by_xid := v_horizon;
        SELECT a.pid, a.datname::text, extract(epoch FROM clock_timestamp() - a.xact_start)::float8, a.state
          INTO held_by_pid, held_by_database, held_by_seconds, held_by_state
          FROM pg_stat_activity a
         WHERE a.backend_xid IS NOT NULL AND a.backend_xid::text::bigint = v_horizon::text::bigint & 4294967295
         LIMIT 1;
        IF NOT FOUND THEN
            SELECT NULL::int, p.database::text, extract(epoch FROM clock_timestamp() - p.prepared)::float8, 'prepared'
              INTO held_by_pid, held_by_database, held_by_seconds, held_by_state
              FROM pg_prepared_xacts p WHERE p.transaction::text::bigint = v_horizon::text::bigint & 4294967295;
        END IF;
    END IF;
    head := v_head;
    FOR v_sub IN SELECT * FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id ORDER BY s.name LOOP
        name := v_sub.name;
        filter := v_sub.filter;
        last_position := v_sub.last_position;
        EXECUTE format(
            'SELECT count(*) FILTER (WHERE w.m), count(*) = $4, min(w.recorded_at) FILTER (WHERE w.m)
               FROM (SELECT e.recorded_at, (true %s) AS m FROM es.events e
                      WHERE e.tenant_id = $1 AND (e.tx_id, e.position) > ($2, $3)
                      ORDER BY e.tx_id, e.position LIMIT $4) w', es.log_filter(v_sub.filter))
           INTO lag_events, lag_capped, v_oldest
          USING p_tenant_id, v_sub.checkpoint_tx, v_sub.checkpoint_position, v_cap;
        lag_seconds := extract(epoch FROM now() - v_oldest);
        owner := CASE WHEN v_sub.lease_expires_at > clock_timestamp() THEN v_sub.owner END;
        lease_expires_at := CASE WHEN v_sub.lease_expires_at > clock_timestamp() THEN v_sub.lease_expires_at END;
        SELECT count(*) INTO dead_letters FROM es.dead_letters d WHERE d.tenant_id = p_tenant_id AND d.subscription = v_sub.name;
        updated_at := v_sub.updated_at;
        RETURN NEXT;
    END LOOP;
END $$;
-- +goose StatementEnd

-- Dead letters can be retried and discarded (issue 15). A retry marks the
-- parked events (retry_requested_at) and wakes the tenant's subscribers; the
-- Go consumer of the subscription delivers each marked event to its handler
-- once more, in a transaction that also removes the dead letter (and renews
-- the lease: a consumer that lost it cannot commit), or, if the handler
-- fails again, records the error and clears the mark. Dead letters travel
-- with a tenant export (by event id).
ALTER TABLE es.dead_letters ADD COLUMN retry_requested_at timestamptz;

-- +goose StatementBegin
CREATE FUNCTION es.retry_dead_letters(p_tenant_id text, p_name text, p_positions bigint[] DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    UPDATE es.dead_letters d SET retry_requested_at = now()
     WHERE d.tenant_id = p_tenant_id AND d.subscription = p_name AND (p_positions IS NULL OR d.position = ANY (p_positions));
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        PERFORM pg_notify('es_events', p_tenant_id);
    END IF;
    RETURN v_count;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION es.discard_dead_letters(p_tenant_id text, p_name text, p_positions bigint[] DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    DELETE FROM es.dead_letters d
     WHERE d.tenant_id = p_tenant_id AND d.subscription = p_name AND (p_positions IS NULL OR d.position = ANY (p_positions));
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;
-- +goose StatementEnd

-- es.dead_letters_to_retry: the parked events marked for a retry, in
-- position order (the Go consumer's).
-- +goose StatementBegin
CREATE FUNCTION es.dead_letters_to_retry(p_tenant_id text, p_name text, p_limit int)
RETURNS SETOF es.events LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    RETURN QUERY SELECT e.* FROM es.dead_letters d
                   JOIN es.events e ON e.tenant_id = d.tenant_id AND e.position = d.position
                  WHERE d.tenant_id = p_tenant_id AND d.subscription = p_name AND d.retry_requested_at IS NOT NULL
                  ORDER BY d.position LIMIT p_limit;
END $$;
-- +goose StatementEnd

-- es.dead_letter_retried records a retry's outcome: p_error NULL, the event
-- was delivered (the dead letter goes); else the handler failed again.
-- +goose StatementBegin
CREATE FUNCTION es.dead_letter_retried(p_tenant_id text, p_name text, p_position bigint, p_error text)
RETURNS void LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    IF p_error IS NULL THEN
        DELETE FROM es.dead_letters d WHERE d.tenant_id = p_tenant_id AND d.subscription = p_name AND d.position = p_position;
    ELSE
        UPDATE es.dead_letters d
           SET error = left(p_error, 4000), attempts = d.attempts + 1, parked_at = now(), retry_requested_at = NULL
         WHERE d.tenant_id = p_tenant_id AND d.subscription = p_name AND d.position = p_position;
    END IF;
END $$;
-- +goose StatementEnd

-- es.import_subscriptions: as in 00007, and each subscription's
-- "dead_letters" ([{"event_id", "error", "attempts", "parked_at"}]) are
-- parked again here, by event id.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.import_subscriptions(p_tenant_id text, p_rows jsonb)
RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_row jsonb;
    v_dead jsonb;
    v_tx xid8;
    v_position bigint;
    v_count bigint := 0;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    FOR v_row IN SELECT value FROM jsonb_array_elements(p_rows) LOOP
        PERFORM es.check_filter(v_row->'filter');
        v_tx := '0';
        v_position := 0;
        IF v_row->>'delivered_through' IS NOT NULL THEN
            SELECT e.tx_id, e.position INTO v_tx, v_position FROM es.events e
             WHERE e.tenant_id = p_tenant_id AND e.event_id = (v_row->>'delivered_through')::uuid;
            IF NOT FOUND THEN
                PERFORM es.raise('ES004', format('subscription %L: its last delivered event %s is not in the import',
                                                 v_row->>'name', v_row->>'delivered_through'));
            END IF;
        END IF;
        INSERT INTO es.subscriptions (tenant_id, name, filter, checkpoint_tx, checkpoint_position, last_position)
        VALUES (p_tenant_id, v_row->>'name', v_row->'filter', v_tx, v_position, v_position)
        ON CONFLICT (tenant_id, name) DO NOTHING;
        IF FOUND THEN
            v_count := v_count + 1;
            FOR v_dead IN SELECT value FROM jsonb_array_elements(coalesce(v_row->'dead_letters', '[]')) LOOP
                INSERT INTO es.dead_letters (tenant_id, subscription, position, event_id, event_type, error, attempts, parked_at)
                SELECT p_tenant_id, v_row->>'name', e.position, e.event_id, e.event_type, left(coalesce(v_dead->>'error', ''), 4000),
                       coalesce((v_dead->>'attempts')::int, 0), coalesce((v_dead->>'parked_at')::timestamptz, now())
                  FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.event_id = (v_dead->>'event_id')::uuid;
                IF NOT FOUND THEN
                    PERFORM es.raise('ES004', format('subscription %L: its dead letter %s is not in the import',
                                                     v_row->>'name', v_dead->>'event_id'));
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    RETURN v_count;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.import_subscriptions(p_tenant_id text, p_rows jsonb)
RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_row jsonb;
    v_tx xid8;
    v_position bigint;
    v_count bigint := 0;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    FOR v_row IN SELECT value FROM jsonb_array_elements(p_rows) LOOP
        PERFORM es.check_filter(v_row->'filter');
        v_tx := '0';
        v_position := 0;
        IF v_row->>'delivered_through' IS NOT NULL THEN
            SELECT e.tx_id, e.position INTO v_tx, v_position FROM es.events e
             WHERE e.tenant_id = p_tenant_id AND e.event_id = (v_row->>'delivered_through')::uuid;
            IF NOT FOUND THEN
                PERFORM es.raise('ES004', format('subscription %L: its last delivered event %s is not in the import',
                                                 v_row->>'name', v_row->>'delivered_through'));
            END IF;
        END IF;
        INSERT INTO es.subscriptions (tenant_id, name, filter, checkpoint_tx, checkpoint_position, last_position)
        VALUES (p_tenant_id, v_row->>'name', v_row->'filter', v_tx, v_position, v_position)
        ON CONFLICT (tenant_id, name) DO NOTHING;
        IF FOUND THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;
    RETURN v_count;
END $$;
-- +goose StatementEnd

DROP FUNCTION es.dead_letter_retried(text, text, bigint, text);
DROP FUNCTION es.dead_letters_to_retry(text, text, int);
DROP FUNCTION es.discard_dead_letters(text, text, bigint[]);
DROP FUNCTION es.retry_dead_letters(text, text, bigint[]);
ALTER TABLE es.dead_letters DROP COLUMN retry_requested_at;

-- +goose StatementBegin
DROP FUNCTION es.subscription_status(text);
CREATE FUNCTION es.subscription_status(p_tenant_id text)
RETURNS TABLE (name text, filter jsonb, last_position bigint, head bigint, lag_events bigint, lag_seconds double precision,
               owner text, lease_expires_at timestamptz, dead_letters bigint, updated_at timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_head bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    SELECT coalesce(max(e.position), 0) INTO v_head FROM es.events e WHERE e.tenant_id = p_tenant_id;
    RETURN QUERY
    SELECT s.name, s.filter, s.last_position, v_head, l.n, extract(epoch FROM now() - l.oldest)::double precision,
           CASE WHEN s.lease_expires_at > clock_timestamp() THEN s.owner END,
           CASE WHEN s.lease_expires_at > clock_timestamp() THEN s.lease_expires_at END,
           (SELECT count(*) FROM es.dead_letters d WHERE d.tenant_id = s.tenant_id AND d.subscription = s.name),
           s.updated_at
      FROM es.subscriptions s,
           LATERAL (SELECT count(*) AS n, min(e.recorded_at) AS oldest FROM es.events e
                     WHERE e.tenant_id = s.tenant_id AND (e.tx_id, e.position) > (s.checkpoint_tx, s.checkpoint_position)) l
     WHERE s.tenant_id = p_tenant_id
     ORDER BY s.name;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.subscribe(p_tenant_id text, p_name text, p_filter jsonb, p_start text DEFAULT 'beginning')
RETURNS es.subscriptions LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_row es.subscriptions;
    v_tx xid8 := '0';
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    PERFORM es.check_filter(p_filter);
    IF p_name IS NULL OR p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}(\[[0-9]+/[0-9]+\])?$' THEN
        PERFORM es.raise('ES004', format('invalid subscription name %L: use 1-100 characters A-Z, a-z, 0-9, "_", ".", ":" or "-", starting with a letter or digit', left(p_name, 120)));
    END IF;
    IF p_start IS NULL OR p_start !~ '^(beginning|end|[0-9]{1,18})$' THEN
        PERFORM es.raise('ES004', format('invalid start %L: use beginning, end or a position', left(p_start, 40)));
    END IF;
    UPDATE es.subscriptions s SET filter = p_filter, updated_at = now()
     WHERE s.tenant_id = p_tenant_id AND s.name = p_name AND s.filter IS DISTINCT FROM p_filter;
    SELECT * INTO v_row FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id AND s.name = p_name;
    IF FOUND THEN
        RETURN v_row;
    END IF;
    IF p_start = 'end' THEN
        v_tx := pg_snapshot_xmin(pg_current_snapshot());
    ELSIF p_start <> 'beginning' THEN
        SELECT k.tx_id INTO v_tx FROM es.log_key_at(p_tenant_id, p_start::bigint, NULL) k;
    END IF;
    INSERT INTO es.subscriptions (tenant_id, name, filter, checkpoint_tx, checkpoint_position)
    VALUES (p_tenant_id, p_name, p_filter, v_tx, 0)
    ON CONFLICT (tenant_id, name) DO NOTHING;
    SELECT * INTO v_row FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id AND s.name = p_name;
    RETURN v_row;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.log_key_at(p_tenant_id text, p_position bigint, p_time timestamptz, OUT tx_id xid8, OUT "position" bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    IF p_position IS NOT NULL THEN
        SELECT min(e.tx_id) INTO tx_id FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.position >= p_position;
    ELSE
        SELECT min(e.tx_id) INTO tx_id FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.recorded_at >= p_time;
    END IF;
    -- A transaction still open can hold an event at or after p_position
    -- with a smaller id than any visible one: never start above the horizon.
    tx_id := least(tx_id, pg_snapshot_xmin(pg_current_snapshot()));
    "position" := 0;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.subscription_next(p_tenant_id text, p_name text, p_limit int DEFAULT 100)
RETURNS SETOF es.events LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_sub es.subscriptions;
    v_horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
    v_count bigint;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    SELECT * INTO v_sub FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id AND s.name = p_name;
    IF NOT FOUND THEN
        PERFORM es.raise('ES004', format('subscription %L not found: create it with es.subscribe', left(p_name, 120)));
    END IF;
    RETURN QUERY SELECT * FROM es.read_log(p_tenant_id, v_sub.checkpoint_tx, v_sub.checkpoint_position, v_sub.filter, p_limit, v_horizon);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 AND (v_sub.checkpoint_tx, v_sub.checkpoint_position) < (v_horizon, 0::bigint) THEN
        UPDATE es.subscriptions s SET checkpoint_tx = v_horizon, checkpoint_position = 0, updated_at = now()
         WHERE s.tenant_id = p_tenant_id AND s.name = p_name
           AND (s.checkpoint_tx, s.checkpoint_position) = (v_sub.checkpoint_tx, v_sub.checkpoint_position);
    END IF;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.read_log(p_tenant_id text, p_after_tx xid8, p_after_position bigint, p_filter jsonb,
                                       p_limit int DEFAULT 1000, p_horizon xid8 DEFAULT NULL)
RETURNS SETOF es.events LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_group jsonb := p_filter->'group';
    v_key text := coalesce(p_filter->'group'->>'key', 'stream');
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    PERFORM es.check_filter(p_filter);
    IF p_limit IS NULL OR p_limit < 1 OR p_after_tx IS NULL OR p_after_position IS NULL THEN
        PERFORM es.raise('ES004', 'read_log needs a checkpoint and a limit of 1 or more');
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT * FROM es.events e
          WHERE e.tenant_id = $1 AND (e.tx_id, e.position) > ($2, $3) AND e.tx_id < $4 %s %s %s %s %s
          ORDER BY e.tx_id, e.position LIMIT $5',
        CASE WHEN p_filter ? 'types' THEN format('AND e.event_type = ANY (%L::text[])', ARRAY(SELECT jsonb_array_elements_text(p_filter->'types'))) ELSE '' END,
        CASE WHEN p_filter ? 'tags' THEN format('AND e.tags @> %L::text[]', ARRAY(SELECT jsonb_array_elements_text(p_filter->'tags'))) ELSE '' END,
        CASE WHEN p_filter ? 'stream' THEN format('AND e.stream_id = %L', p_filter->>'stream') ELSE '' END,
        CASE WHEN p_filter ? 'stream_prefix' THEN format('AND left(e.stream_id, %s) = %L', length(p_filter->>'stream_prefix'), p_filter->>'stream_prefix') ELSE '' END,
        CASE WHEN v_group IS NULL OR (v_group->>'members')::int = 1 THEN ''
             ELSE format('AND abs(hashtextextended(coalesce(%s, %L), 0) %% %s) = %s',
                         CASE WHEN v_key = 'stream' THEN 'e.stream_id'
                              ELSE format('(SELECT t FROM unnest(e.tags) t WHERE left(t, %s) = %L LIMIT 1)', length(v_key) - 4, substr(v_key, 5)) END,
                         '', (v_group->>'members')::int, (v_group->>'member')::int) END)
    USING p_tenant_id, p_after_tx, p_after_position, coalesce(p_horizon, pg_snapshot_xmin(pg_current_snapshot())), p_limit;
END $$;
-- +goose StatementEnd

DROP FUNCTION es.log_filter(jsonb);
DROP FUNCTION es.log_horizon(text, boolean);
