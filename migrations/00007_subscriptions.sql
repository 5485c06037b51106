-- Subscriptions: reading the log in an order a late commit cannot slip
-- behind, push wake-ups through LISTEN/NOTIFY that keep appends' throughput,
-- durable checkpoints with leases, and a dead-letter table.
--
-- Delivery order. Positions are drawn before commit, so position order is
-- not commit order (NOTES.md hazard 2). Subscribers read by the key
-- (tx_id, position) and only below the horizon pg_snapshot_xmin of a
-- snapshot: every transaction with an id below it has ended, and every
-- transaction that ends later has a larger id, so its events sort after
-- anything already delivered. The price: a transaction that stays open
-- anywhere in the cluster holds delivery back until it ends (nothing is
-- skipped; lag shows it).
--
-- Wake-ups. NOTIFY takes a cluster-wide lock from the queue insert until
-- after the commit record is flushed, so a NOTIFY on every append
-- serializes commits (NOTES.md hazard 1). The trigger below lets one
-- transaction per tenant at a time notify: the one holding an advisory
-- "notifier" lock. A writer that finds it taken skips NOTIFY; it has
-- written (and so holds a transaction id) when the holder commits, so its
-- id is below the next transaction id that the read caused by that
-- notification sees, and subscribers keep polling (with backoff) until
-- their horizon passes that id. Payload: the tenant id, or '' when the
-- writer set none (the admin import): wake every subscriber.
--
-- New error: ES011 the subscription's lease is held by another consumer.

-- +goose Up

CREATE INDEX events_tx ON es.events (tx_id, position);

-- +goose StatementBegin
CREATE FUNCTION es.notify_events()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_tenant text := coalesce(current_setting('es.tenant_id', true), '');
BEGIN
    -- es.push = off skips the notification for this session or transaction
    -- (bulk loads, the bench's push-off phase); subscribers still poll.
    IF current_setting('es.push', true) = 'off' THEN
        RETURN NULL;
    END IF;
    IF pg_try_advisory_xact_lock(es.lock_key(v_tenant, 'n', '')) THEN
        PERFORM pg_notify('es_events', v_tenant);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER events_notify AFTER INSERT ON es.events
    FOR EACH STATEMENT EXECUTE FUNCTION es.notify_events();

-- Subscriptions are few per tenant: one table, not a partition per tenant.
-- The checkpoint is the key (tx_id, position) of the last event delivered,
-- or a horizon (position 0) below which nothing matching is left.
-- last_position is the position of the last event delivered, for people.
CREATE TABLE es.subscriptions (
    tenant_id           text        NOT NULL REFERENCES es.tenants ON DELETE CASCADE,
    name                text        NOT NULL
                        CONSTRAINT subscription_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}(\[[0-9]+/[0-9]+\])?$'),
    filter              jsonb       NOT NULL DEFAULT '{}',
    checkpoint_tx       xid8        NOT NULL DEFAULT '0',
    checkpoint_position bigint      NOT NULL DEFAULT 0,
    last_position       bigint      NOT NULL DEFAULT 0,
    owner               text,
    lease_expires_at    timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- Events a subscription gave up on (after its handler failed them the
-- configured number of times) and skipped.
CREATE TABLE es.dead_letters (
    tenant_id    text        NOT NULL,
    subscription text        NOT NULL,
    position     bigint      NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    error        text        NOT NULL,
    attempts     int         NOT NULL,
    parked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subscription, position),
    FOREIGN KEY (tenant_id, subscription) REFERENCES es.subscriptions ON DELETE CASCADE
);

-- es.check_filter validates a subscription filter:
--   {"types":[...], "tags":[...], "stream":"id", "stream_prefix":"p",
--    "group":{"members":N, "member":i, "key":"stream" | "tag:<prefix>"}}
-- Every field is optional and they are AND-ed: the type is one of types,
-- the event carries every tag, its stream is stream or starts with
-- stream_prefix, and the hash of its group key (the stream id, or its first
-- tag starting with <prefix>; '' when it has none) modulo members is member.
-- +goose StatementBegin
CREATE FUNCTION es.check_filter(p_filter jsonb)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_reason text;
BEGIN
    v_reason := CASE
        WHEN jsonb_typeof(p_filter) IS DISTINCT FROM 'object' THEN 'a filter is a JSON object'
        WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(p_filter) k WHERE k NOT IN ('types', 'tags', 'stream', 'stream_prefix', 'group'))
            THEN 'only "types", "tags", "stream", "stream_prefix" and "group" are allowed'
        WHEN jsonb_typeof(coalesce(p_filter->'types', '[]')) <> 'array' OR jsonb_typeof(coalesce(p_filter->'tags', '[]')) <> 'array'
            THEN '"types" and "tags" must be arrays'
        WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(p_filter->'types', '[]')) t
                      WHERE jsonb_typeof(t) <> 'string' OR t #>> '{}' = '' OR length(t #>> '{}') > 200) THEN 'a type is not a string of 1-200 characters'
        WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(p_filter->'tags', '[]')) t
                      WHERE jsonb_typeof(t) <> 'string' OR t #>> '{}' = '' OR length(t #>> '{}') > 1000) THEN 'a tag is not a string of 1-1000 characters'
        WHEN jsonb_typeof(coalesce(p_filter->'stream', '"x"')) <> 'string' OR p_filter->>'stream' = ''
            THEN '"stream" must be a non-empty string'
        WHEN jsonb_typeof(coalesce(p_filter->'stream_prefix', '"x"')) <> 'string' OR p_filter->>'stream_prefix' = ''
            THEN '"stream_prefix" must be a non-empty string'
        WHEN p_filter ? 'group' AND NOT (
                jsonb_typeof(p_filter->'group') = 'object'
                AND jsonb_typeof(p_filter->'group'->'members') = 'number' AND jsonb_typeof(p_filter->'group'->'member') = 'number'
                AND (p_filter->'group'->>'members') ~ '^[0-9]{1,4}$' AND (p_filter->'group'->>'member') ~ '^[0-9]{1,4}$'
                AND (p_filter->'group'->>'members')::int >= 1
                AND (p_filter->'group'->>'member')::int < (p_filter->'group'->>'members')::int
                AND coalesce(p_filter->'group'->>'key', 'stream') ~ '^(stream|tag:.+)$')
            THEN '"group" must be {"members": N >= 1, "member": 0..N-1, "key": "stream" or "tag:<prefix>"}'
        END;
    IF v_reason IS NOT NULL THEN
        PERFORM es.raise('ES004', 'invalid subscription filter: ' || v_reason);
    END IF;
END $$;
-- +goose StatementEnd

-- es.read_log returns up to p_limit events of the tenant matching p_filter
-- whose key (tx_id, position) is after (p_after_tx, p_after_position) and
-- whose tx_id is below p_horizon, in key order. p_horizon NULL: this
-- statement's pg_snapshot_xmin. A horizon taken earlier than the scan is
-- always safe (the scan sees every transaction that ended before it); one
-- taken later is not. When fewer than p_limit events come back, nothing
-- matching is left below the horizon: the caller may move its checkpoint to
-- (horizon, 0).
-- +goose StatementBegin
CREATE FUNCTION es.read_log(p_tenant_id text, p_after_tx xid8, p_after_position bigint, p_filter jsonb,
                            p_limit int DEFAULT 1000, p_horizon xid8 DEFAULT NULL)
RETURNS SETOF es.events LANGUAGE plpgsql STABLE AS $$
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

-- es.log_key_at returns the checkpoint from which every event at or after
-- position p_position is delivered: just before the smallest tx_id among
-- them, and never above the current horizon, since an open transaction may
-- still commit such an event (a few events just before p_position may be
-- delivered again). With p_time instead, the events recorded at or after
-- p_time. No such event: the current horizon. Scans the tenant's events from there: an admin
-- operation.
-- +goose StatementBegin
CREATE FUNCTION es.log_key_at(p_tenant_id text, p_position bigint, p_time timestamptz,
                              OUT tx_id xid8, OUT "position" bigint)
LANGUAGE plpgsql STABLE AS $$
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

-- es.subscribe registers a subscription (or updates its filter) and returns
-- it. p_start applies only to a new subscription: 'beginning', 'end' (the
-- current horizon: events committed from now on, and possibly a few just
-- before) or a position (its event and everything after it).
-- +goose StatementBegin
CREATE FUNCTION es.subscribe(p_tenant_id text, p_name text, p_filter jsonb, p_start text DEFAULT 'beginning')
RETURNS es.subscriptions LANGUAGE plpgsql AS $$
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

-- es.acquire_subscription takes or renews the lease of a subscription for
-- p_owner until now() + p_ttl. Returns the subscription when p_owner holds
-- the lease, NULL when another live consumer does.
-- +goose StatementBegin
CREATE FUNCTION es.acquire_subscription(p_tenant_id text, p_name text, p_owner text, p_ttl interval)
RETURNS es.subscriptions LANGUAGE plpgsql AS $$
DECLARE
    v_row es.subscriptions;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    IF p_owner IS NULL OR p_owner = '' OR p_ttl IS NULL OR p_ttl <= interval '0' THEN
        PERFORM es.raise('ES004', 'a lease needs an owner and a positive time to live');
    END IF;
    UPDATE es.subscriptions s SET owner = p_owner, lease_expires_at = clock_timestamp() + p_ttl
     WHERE s.tenant_id = p_tenant_id AND s.name = p_name
       AND (s.owner IS NULL OR s.owner = p_owner OR s.lease_expires_at < clock_timestamp())
    RETURNING * INTO v_row;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id AND s.name = p_name) THEN
        PERFORM es.raise('ES004', format('subscription %L not found', left(p_name, 120)));
    END IF;
    RETURN v_row;
END $$;
-- +goose StatementEnd

-- es.release_subscription gives the lease up, so another consumer can take
-- over at once.
-- +goose StatementBegin
CREATE FUNCTION es.release_subscription(p_tenant_id text, p_name text, p_owner text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    UPDATE es.subscriptions s SET owner = NULL, lease_expires_at = NULL
     WHERE s.tenant_id = p_tenant_id AND s.name = p_name AND s.owner = p_owner;
END $$;
-- +goose StatementEnd

-- es.commit_checkpoint moves the checkpoint of a subscription whose lease
-- p_owner holds, and renews the lease. It fails with ES011 when the lease
-- was lost (taken over, or reset), or when a batch (p_last_position > 0)
-- does not move the checkpoint forward (it was committed already, e.g. by a
-- COMMIT whose answer was lost): the caller's transaction, with whatever its
-- handler wrote, must roll back. A renewal (p_last_position 0) may keep the
-- checkpoint where it is. Run it last, in the transaction of the
-- handler's effects: the row lock it takes fences a consumer that takes
-- the lease over.
-- +goose StatementBegin
CREATE FUNCTION es.commit_checkpoint(p_tenant_id text, p_name text, p_owner text, p_ttl interval,
                                     p_tx xid8, p_position bigint, p_last_position bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    UPDATE es.subscriptions s
       SET checkpoint_tx = p_tx, checkpoint_position = p_position,
           last_position = greatest(s.last_position, coalesce(p_last_position, 0)),
           lease_expires_at = clock_timestamp() + p_ttl, updated_at = now()
     WHERE s.tenant_id = p_tenant_id AND s.name = p_name AND s.owner = p_owner
       AND ((s.checkpoint_tx, s.checkpoint_position) < (p_tx, p_position)
            OR coalesce(p_last_position, 0) = 0 AND (s.checkpoint_tx, s.checkpoint_position) = (p_tx, p_position));
    IF NOT FOUND THEN
        PERFORM es.raise('ES011', format('subscription %L: the lease of %L was lost (taken over or reset), or the batch was committed already', p_name, p_owner));
    END IF;
END $$;
-- +goose StatementEnd

-- es.park_event records an event a subscription gives up on.
-- +goose StatementBegin
CREATE FUNCTION es.park_event(p_tenant_id text, p_name text, p_position bigint, p_error text, p_attempts int)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    INSERT INTO es.dead_letters (tenant_id, subscription, position, event_id, event_type, error, attempts)
    SELECT p_tenant_id, p_name, e.position, e.event_id, e.event_type, left(coalesce(p_error, ''), 4000), p_attempts
      FROM es.events e WHERE e.tenant_id = p_tenant_id AND e.position = p_position
    ON CONFLICT (tenant_id, subscription, position) DO UPDATE
       SET error = excluded.error, attempts = excluded.attempts, parked_at = excluded.parked_at;
END $$;
-- +goose StatementEnd

-- es.reset_subscription moves a subscription's checkpoint (back or forward)
-- so that every event at or after p_position, or recorded at or after
-- p_time, is delivered again; both NULL: from the beginning. It ends the
-- current lease: the consumer's next checkpoint fails (ES011) and it
-- resumes from the new one. Returns false when there is no such
-- subscription.
-- +goose StatementBegin
CREATE FUNCTION es.reset_subscription(p_tenant_id text, p_name text, p_position bigint DEFAULT NULL, p_time timestamptz DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_tx xid8 := '0';
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    IF p_position < 0 THEN
        PERFORM es.raise('ES004', 'a position is 0 or more');
    END IF;
    IF p_position IS NOT NULL OR p_time IS NOT NULL THEN
        SELECT k.tx_id INTO v_tx FROM es.log_key_at(p_tenant_id, p_position, p_time) k;
    END IF;
    UPDATE es.subscriptions s
       SET checkpoint_tx = v_tx, checkpoint_position = 0, owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE s.tenant_id = p_tenant_id AND s.name = p_name;
    RETURN FOUND;
END $$;
-- +goose StatementEnd

-- es.delete_subscription removes a subscription, its checkpoint and its
-- dead letters.
-- +goose StatementBegin
CREATE FUNCTION es.delete_subscription(p_tenant_id text, p_name text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    DELETE FROM es.subscriptions s WHERE s.tenant_id = p_tenant_id AND s.name = p_name;
    RETURN FOUND;
END $$;
-- +goose StatementEnd

-- es.subscription_status lists the tenant's subscriptions with their lag:
-- the events in the log after the checkpoint (whatever the filter), the age
-- of the oldest of them, and the parked events.
-- +goose StatementBegin
CREATE FUNCTION es.subscription_status(p_tenant_id text)
RETURNS TABLE (name text, filter jsonb, last_position bigint, head bigint, lag_events bigint, lag_seconds double precision,
               owner text, lease_expires_at timestamptz, dead_letters bigint, updated_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
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

-- es.list_dead_letters lists the events a subscription parked.
-- +goose StatementBegin
CREATE FUNCTION es.list_dead_letters(p_tenant_id text, p_name text)
RETURNS SETOF es.dead_letters LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    RETURN QUERY SELECT * FROM es.dead_letters d
                  WHERE d.tenant_id = p_tenant_id AND d.subscription = p_name ORDER BY d.position;
END $$;
-- +goose StatementEnd

-- es.subscription_next is the poll for consumers that are not the Go API:
-- the next batch after the subscription's checkpoint, in delivery order,
-- with its filter. Process the events, then call es.subscription_ack with
-- the last one's tx_id and position, in one transaction with the effects
-- for exactly-once. When nothing is left below the horizon, it moves the
-- checkpoint to the horizon itself (nothing is skipped) so that a sparse
-- filter does not rescan the same events on every poll. Consumers that
-- share a subscription must take its lease (es.acquire_subscription).
-- +goose StatementBegin
CREATE FUNCTION es.subscription_next(p_tenant_id text, p_name text, p_limit int DEFAULT 100)
RETURNS SETOF es.events LANGUAGE plpgsql AS $$
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

-- es.subscription_ack moves the checkpoint of a subscription forward to the
-- event (p_tx, p_position); never backward. Returns false when it did not
-- move (an ack of an older event, or no such subscription).
-- +goose StatementBegin
CREATE FUNCTION es.subscription_ack(p_tenant_id text, p_name text, p_tx xid8, p_position bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false);
    UPDATE es.subscriptions s
       SET checkpoint_tx = p_tx, checkpoint_position = p_position,
           last_position = greatest(s.last_position, p_position), updated_at = now()
     WHERE s.tenant_id = p_tenant_id AND s.name = p_name
       AND (s.checkpoint_tx, s.checkpoint_position) < (p_tx, p_position);
    RETURN FOUND;
END $$;
-- +goose StatementEnd

-- es.import_subscriptions creates the subscriptions of a tenant export
-- (admin path, run by tenant.Manager.Import in the import's transaction):
-- p_rows is a JSON array of {"name", "filter", "delivered_through"}, the id
-- of the last event of the exporting database up to which every event had
-- been delivered (null: none). Transaction ids do not travel between
-- databases, so the checkpoint becomes that event's key here: a
-- subscription resumes with the events after it, and events the source had
-- delivered out of position order past it are delivered again
-- (at-least-once). Subscriptions the tenant already has are left as they
-- are. Returns how many were created.
-- +goose StatementBegin
CREATE FUNCTION es.import_subscriptions(p_tenant_id text, p_rows jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
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

-- Tenant isolation as in 00004: row-level security for the runtime role,
-- the API as SECURITY DEFINER checking its tenant argument.
GRANT SELECT ON es.subscriptions, es.dead_letters TO es_runtime;
ALTER TABLE es.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE es.dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON es.subscriptions
    USING (tenant_id = current_setting('es.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('es.tenant_id', true));
CREATE POLICY tenant_isolation ON es.dead_letters
    USING (tenant_id = current_setting('es.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('es.tenant_id', true));

ALTER FUNCTION es.read_log(text, xid8, bigint, jsonb, int, xid8) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.subscribe(text, text, jsonb, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.acquire_subscription(text, text, text, interval) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.release_subscription(text, text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.commit_checkpoint(text, text, text, interval, xid8, bigint, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.park_event(text, text, bigint, text, int) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.reset_subscription(text, text, bigint, timestamptz) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.delete_subscription(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.subscription_status(text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.list_dead_letters(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.subscription_next(text, text, int) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.subscription_ack(text, text, xid8, bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION es.log_key_at(text, bigint, timestamptz) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION es.notify_events(), es.check_filter(jsonb), es.import_subscriptions(text, jsonb) FROM PUBLIC;

-- +goose Down
DROP FUNCTION es.import_subscriptions(text, jsonb);
DROP FUNCTION es.subscription_ack(text, text, xid8, bigint);
DROP FUNCTION es.subscription_next(text, text, int);
DROP FUNCTION es.list_dead_letters(text, text);
DROP FUNCTION es.subscription_status(text);
DROP FUNCTION es.delete_subscription(text, text);
DROP FUNCTION es.reset_subscription(text, text, bigint, timestamptz);
DROP FUNCTION es.park_event(text, text, bigint, text, int);
DROP FUNCTION es.commit_checkpoint(text, text, text, interval, xid8, bigint, bigint);
DROP FUNCTION es.release_subscription(text, text, text);
DROP FUNCTION es.acquire_subscription(text, text, text, interval);
DROP FUNCTION es.subscribe(text, text, jsonb, text);
DROP FUNCTION es.log_key_at(text, bigint, timestamptz);
DROP FUNCTION es.read_log(text, xid8, bigint, jsonb, int, xid8);
DROP FUNCTION es.check_filter(jsonb);
DROP TABLE es.dead_letters;
DROP TABLE es.subscriptions;
DROP TRIGGER events_notify ON es.events;
DROP FUNCTION es.notify_events();
DROP INDEX es.events_tx;
