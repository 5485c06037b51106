-- The scale study's loader (issue #7): fills a tenant's partition of
-- es.events with synthetic but realistic events in one set-based statement
-- per chunk, as the owner, instead of through the SQL API (which would spend
-- most of its time on per-call checks and locks that a load does not need).
--
-- Every row is one the store could have written: positions from the
-- sequence es.event_position (in the order the rows are inserted), tx_id and
-- recorded_at of the loading transaction (their defaults), event ids that are
-- time-ordered UUIDv7 like the Go API's, and stream versions 1..n per stream,
-- increasing with position. Per chunk of p_n events:
--
--  * 80 % belong to streams, 20 % have no stream (DCB events). Stream
--    lengths are log-uniform from 1 to 249 events (median ~16, mean ~45);
--    a stream lives in one chunk, and its events are spread over the
--    chunk's positions, interleaved with other streams'. 70 % of streams
--    are orders (OrderPlaced, then ItemAdded, ItemRemoved, PriceChanged,
--    OrderPaid, OrderShipped), 30 % customers (CustomerRegistered, then
--    AddressChanged, EmailChanged, LoyaltyPointsEarned). DCB events are
--    course and invoice decisions (StudentSubscribed, StudentUnsubscribed,
--    CourseDefined, CourseCapacityChanged, InvoiceIssued).
--  * 2-4 tags per event (2.75 on average): the entity (order:<chunk>-<n>,
--    customer:<chunk>-<n>, or course:<k> with k Zipf-like over 10,000),
--    then customer:<k> (or student:<k>) over 100,000, product:<k> over
--    20,000 on half of the events, region:<k> over 50 on a quarter. "Zipf-
--    like": k = floor(exp(u * ln K)), so P(k) ~ 1/k (the top customer is on
--    ~6 % of events).
--  * payloads of ~200 bytes of jsonb with varied values.
--
-- The random numbers are seeded by p_chunk, so a chunk is the same each
-- time (but for ids, positions and times). Returns the number of events
-- written (p_n, unless the stream lengths fell short: the caller loops).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION es_bench_load(p_tenant text, p_n int, p_chunk bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_streamed int := (p_n * 0.8)::int;
    v_written bigint;
    v_gin regclass;
BEGIN
    PERFORM setseed(((p_chunk * 7919) % 100003)::float8 / 100003);
    -- A load does not wake subscribers (they poll); see es.notify_events.
    PERFORM set_config('es.push', 'off', true);
    PERFORM set_config('work_mem', '64MB', true);
    PERFORM set_config('maintenance_work_mem', '256MB', true);
    -- The tags' GIN index (fastupdate = off) costs two thirds of an insert,
    -- one posting-list update per tag and row. For the chunk, collect its
    -- entries in the pending list and merge them in one sorted pass at the
    -- end (gin_clean_pending_list): about twice as fast. Both reloption
    -- changes are part of this transaction: if the load fails, the index
    -- never stays with fastupdate on, and after it no pending entry is left.
    SELECT x.indexrelid::regclass INTO STRICT v_gin
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am a ON a.oid = i.relam
     WHERE x.indrelid = format('es.%I', 'events_' || p_tenant)::regclass AND a.amname = 'gin';
    EXECUTE format('ALTER INDEX %s SET (fastupdate = on, gin_pending_list_limit = 1048576)', v_gin);
    WITH lens AS (
        SELECT s, floor(exp(random() * ln(250)))::int AS len
          FROM generate_series(1, (v_streamed / 45.0 * 1.6)::int + 20) s
    ), cum AS (
        SELECT s, len, sum(len) OVER (ORDER BY s) AS upto FROM lens
    ), stream_events AS (
        SELECT c.s, random() AS k
          FROM cum c, generate_series(1, c.len) v
         WHERE c.upto - c.len + v <= v_streamed
    ), evs AS (
        SELECT s, row_number() OVER (PARTITION BY s ORDER BY k) AS ver, k FROM stream_events
        UNION ALL
        SELECT NULL, NULL, random() FROM generate_series(1, p_n - v_streamed)
    ), ordered AS (
        -- one row per event, in position order, with its random draws
        SELECT s, ver, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5, random() AS r6,
               random() AS r7, random() AS r8
          FROM evs ORDER BY k
    ), shaped AS (
        SELECT o.*,
               CASE WHEN o.s IS NULL THEN 'dcb' WHEN o.s % 10 < 7 THEN 'order' ELSE 'customer' END AS kind,
               floor(exp(o.r2 * ln(100000)))::int AS cust,
               floor(exp(o.r3 * ln(20000)))::int AS product,
               floor(exp(o.r4 * ln(50)))::int AS region
          FROM ordered o
    ), rows AS (
        SELECT nextval('es.event_position') AS position, sh.*,
               overlay(uuid_send(gen_random_uuid()) PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6) AS id
          FROM shaped sh
    )
    INSERT INTO es.events (tenant_id, position, event_id, event_type, stream_id, stream_version, payload, metadata, tags)
    SELECT p_tenant, position,
           encode(set_byte(id, 6, (get_byte(id, 6) & 15) | 112), 'hex')::uuid,
           CASE kind
               WHEN 'order' THEN CASE WHEN ver = 1 THEN 'OrderPlaced'
                                      WHEN r1 < 0.50 THEN 'ItemAdded' WHEN r1 < 0.65 THEN 'ItemRemoved'
                                      WHEN r1 < 0.75 THEN 'PriceChanged' WHEN r1 < 0.90 THEN 'OrderPaid'
                                      ELSE 'OrderShipped' END
               WHEN 'customer' THEN CASE WHEN ver = 1 THEN 'CustomerRegistered'
                                         WHEN r1 < 0.40 THEN 'AddressChanged' WHEN r1 < 0.60 THEN 'EmailChanged'
                                         ELSE 'LoyaltyPointsEarned' END
               ELSE CASE WHEN r1 < 0.60 THEN 'StudentSubscribed' WHEN r1 < 0.75 THEN 'StudentUnsubscribed'
                         WHEN r1 < 0.80 THEN 'CourseDefined' WHEN r1 < 0.85 THEN 'CourseCapacityChanged'
                         ELSE 'InvoiceIssued' END
           END,
           CASE WHEN kind <> 'dcb' THEN format('%s-%s-%s', kind, p_chunk, s) END,
           ver,
           jsonb_build_object(
               'customer_id', format('c-%s', cust),
               'product_id', format('p-%s', product),
               'quantity', 1 + (r5 * 9)::int,
               'amount', round((r6 * 50000)::numeric / 100, 2),
               'currency', (ARRAY['EUR', 'USD', 'GBP', 'CHF'])[1 + (r6 * 1000)::int % 4],
               'region', region,
               'note', left(md5(r5::text) || md5(r6::text), 48 + (r1 * 60)::int)),
           '{}',
           ARRAY[CASE kind WHEN 'dcb' THEN format('course:%s', floor(exp(r5 * ln(10000)))::int)
                           ELSE format('%s:%s-%s', kind, p_chunk, s) END,
                 format('%s:%s', CASE kind WHEN 'dcb' THEN 'student' ELSE 'customer' END, cust)]
             || CASE WHEN r7 < 0.5 THEN ARRAY[format('product:%s', product)] ELSE '{}' END
             || CASE WHEN r8 < 0.25 THEN ARRAY[format('region:%s', region)] ELSE '{}' END
      FROM rows
     ORDER BY position;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    PERFORM gin_clean_pending_list(v_gin);
    EXECUTE format('ALTER INDEX %s RESET (gin_pending_list_limit)', v_gin);
    EXECUTE format('ALTER INDEX %s SET (fastupdate = off)', v_gin);
    RETURN v_written;
END $$;
-- +goose StatementEnd

-- es_bench_sizes returns the size on disk of a tenant's partition of
-- es.events: the heap (with its TOAST table) and each index.
-- +goose StatementBegin
CREATE FUNCTION es_bench_sizes(p_tenant text)
RETURNS TABLE (relation text, kind text, bytes bigint) LANGUAGE sql STABLE AS $$
    SELECT c.relname::text, 'table', pg_table_size(c.oid)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'es' AND c.relname = 'events_' || p_tenant
    UNION ALL
    SELECT i.relname::text, 'index', pg_relation_size(i.oid)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
     WHERE n.nspname = 'es' AND c.relname = 'events_' || p_tenant
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION es_bench_sizes(text);
DROP FUNCTION es_bench_load(text, int, bigint);
