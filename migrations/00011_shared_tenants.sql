-- Shared and dedicated tenants (issue #4; bench/RESULTS.md, "Tenants").
--
-- One partition per tenant could not meet the goals at 10,000 tenants:
-- creating a tenant took 78-113 ms, and every statement on es.events paid
-- for the partition count. From now on a new tenant is "shared": it gets no
-- partition of its own, and its rows go to the DEFAULT partition of
-- es.events and es.snapshots, which is split by HASH (tenant_id) into 16
-- leaves. Creating a tenant inserts its registry row and runs no DDL. A
-- tenant that grows large is "dedicated" (es.dedicate_tenant): it gets its
-- own LIST partitions as before, and dropping it drops them. Tenants that
-- exist when this migration runs keep their partitions: they are dedicated.
--
-- The unique constraints all start with tenant_id, so each tenant lives in
-- one leaf and the leaf's unique indexes enforce them. The secondary
-- indexes used to be on (tags), (event_type, position) and (tx_id,
-- position): in a leaf shared by hundreds of tenants with the same tag
-- vocabulary, a condition check would read every tenant's matches of the
-- leaf and filter them by tenant (measured: 62,600 index entries read for
-- a tenant's 100). They now start with tenant_id, so a lookup reads only the
-- tenant's own entries: (tenant_id, event_type, position) and (tenant_id,
-- tx_id, position) on es.events, and (tenant_id, tags) on the shared
-- partition, a GIN index that needs btree_gin for its tenant_id column (a
-- contrib extension that PostgreSQL marks trusted: the database owner can
-- create it). A dedicated partition keeps a GIN index on (tags) alone.
--
-- Drop and its races: dropping a shared tenant deletes its rows, so a
-- writer that checked the registry before the drop could still insert
-- afterwards, and the DEFAULT partition now takes rows of any tenant id,
-- dropped or never created (with partitions only, such an INSERT failed for
-- want of a partition). Such rows would show up in a tenant created later
-- with the same id. So:
--  * es.drop_tenant first takes the tenant's "any event" lock (and its
--    stripe, which batches of more than 32 keys lock instead) exclusively:
--    every writer holds one of them shared until it commits (es.lock_boundary
--    for appends, es.save_snapshot, es.lock_tenant for imports);
--  * every writer checks the registry again once it holds that lock, in a
--    fresh snapshot; under REPEATABLE READ or SERIALIZABLE, where the
--    snapshot is the transaction's, it locks the registry row (FOR KEY
--    SHARE), which fails with a serialization error if a drop deleted it;
--  * the runtime role's own INSERTs must name a registered tenant (the
--    row-level security policies' WITH CHECK).
-- A writer behind a drop fails with "tenant not found" and writes nothing.
-- A drop or dedication of a tenant that races the same tenant's writes can
-- deadlock with them (the stream append locks es.events before the tenant
-- lock, the DCB append after it; DROP TABLE and ATTACH PARTITION need
-- ACCESS EXCLUSIVE on what the writer holds): PostgreSQL aborts one after
-- deadlock_timeout, and tenant.Manager retries Drop and Dedicate.
--
-- Upgrading a database that has many tenants: this migration rebuilds
-- three indexes on every existing partition in one transaction, holding
-- about 8 locks per tenant (2,415 for 300); with the default
-- max_locks_per_transaction (64) and max_connections (100) the lock table
-- holds 6,400, enough for about 750. Raise max_locks_per_transaction (a
-- restart) before migrating more.

-- +goose Up

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gin') THEN
        CREATE EXTENSION btree_gin WITH SCHEMA es;
    END IF;
END $$;
-- +goose StatementEnd

CREATE INDEX events_tenant_type ON es.events (tenant_id, event_type, position);
CREATE INDEX events_tenant_tx ON es.events (tenant_id, tx_id, position);
DROP INDEX es.events_type;
DROP INDEX es.events_tx;

-- The tags' GIN index is no longer one index of es.events: in a tenant's
-- own partition a tenant_id column would only cost (its GIN entry lists
-- every row, and a lookup read 358 pages of it at 10,000,000 events: 1.4
-- ms against 0.02), so dedicated partitions index (tags) as before, each
-- its own index, and the shared partition (tenant_id, tags), below. The
-- existing partitions' indexes belong to es.events_tags and go with it.
-- fastupdate off, as before (NOTES.md hazard 9).
DROP INDEX es.events_tags;
-- +goose StatementBegin
DO $$
DECLARE
    v_partition regclass;
BEGIN
    FOR v_partition IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'es.events'::regclass LOOP
        EXECUTE format('CREATE INDEX ON %s USING gin (tags) WITH (fastupdate = off)', v_partition);
    END LOOP;
END $$;
-- +goose StatementEnd

-- The shared partitions. Their names contain "$", which a tenant id cannot,
-- so they never collide with a dedicated tenant's events_<id>. Sixteen
-- leaves: a few, so that planning and locking stay cheap and
-- es.dedicate_tenant scans little; at 10,000 tenants each leaf holds ~625.
-- +goose StatementBegin
DO $$
BEGIN
    CREATE TABLE es."events$shared" PARTITION OF es.events DEFAULT PARTITION BY HASH (tenant_id);
    CREATE TABLE es."snapshots$shared" PARTITION OF es.snapshots DEFAULT PARTITION BY HASH (tenant_id);
    FOR i IN 0 .. 15 LOOP
        EXECUTE format('CREATE TABLE es.%I PARTITION OF es."events$shared" FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            'events$shared_' || lpad(i::text, 2, '0'), i);
        EXECUTE format('CREATE TABLE es.%I PARTITION OF es."snapshots$shared" FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            'snapshots$shared_' || lpad(i::text, 2, '0'), i);
    END LOOP;
END $$;
-- +goose StatementEnd
CREATE INDEX events_shared_tags ON es."events$shared" USING gin (tenant_id, tags) WITH (fastupdate = off);
-- No statistics on tenant_id in the shared partitions: the planner then
-- estimates any tenant at 0.5 % of a leaf's rows. With statistics, a tenant
-- absent from the last ANALYZE's sample (a new one, importing its history
-- faster than autovacuum re-analyzes) was estimated at one row, and the
-- planner looked its events up with whichever index had tenant_id first
-- and filtered the rest: 3,000 rows read per event of a 100-event batch.
ALTER TABLE es."events$shared" ALTER COLUMN tenant_id SET STATISTICS 0;
ALTER TABLE es."snapshots$shared" ALTER COLUMN tenant_id SET STATISTICS 0;

-- es.is_dedicated: whether the tenant has partitions of its own.
-- +goose StatementBegin
CREATE FUNCTION es.is_dedicated(p_tenant_id text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_inherits i
                    WHERE i.inhparent = 'es.events'::regclass
                      AND i.inhrelid = to_regclass(format('es.%I', 'events_' || p_tenant_id)))
$$;
-- +goose StatementEnd

-- es.shared_leaf: the leaf of p_parent (es."events$shared" or
-- es."snapshots$shared") that holds a shared tenant's rows.
-- +goose StatementBegin
CREATE FUNCTION es.shared_leaf(p_parent regclass, p_tenant_id text)
RETURNS regclass LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = p_parent
       AND satisfies_hash_partition(p_parent::oid, 16,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'remainder (\d+)')::int, p_tenant_id)
$$;
-- +goose StatementEnd

-- es.create_tenant: a registry row, no DDL. Same rules and answers as
-- before: creating an existing tenant with the same name returns it.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.create_tenant(p_tenant_id text, p_name text DEFAULT '')
RETURNS es.tenants LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_row es.tenants;
BEGIN
    IF p_tenant_id IS NULL OR p_tenant_id !~ '^[a-z0-9][a-z0-9_-]{0,39}$' THEN
        PERFORM es.raise('ES004', format('invalid tenant id %L: use 1-40 characters a-z, 0-9, "_" or "-", starting with a letter or digit', left(p_tenant_id, 80)));
    END IF;
    INSERT INTO es.tenants (tenant_id, name) VALUES (p_tenant_id, coalesce(p_name, ''))
    ON CONFLICT (tenant_id) DO NOTHING
    RETURNING * INTO v_row;
    IF v_row.tenant_id IS NOT NULL THEN
        -- Left by an interrupted es.dedicate_tenant_concurrently of a
        -- dropped tenant of this id.
        PERFORM es.drop_exclusion(p_tenant_id);
    ELSE
        SELECT * INTO v_row FROM es.tenants WHERE tenant_id = p_tenant_id;
        IF v_row.name IS DISTINCT FROM coalesce(p_name, '') THEN
            PERFORM es.raise('ES009', format('tenant %L exists with the name %L', p_tenant_id, v_row.name));
        END IF;
    END IF;
    RETURN v_row;
END $$;
-- +goose StatementEnd

-- es.lock_tenant_writes takes the locks that every writer of the tenant
-- holds shared, exclusively: the stripe of its "any event" key (shared
-- suffices: batches of more than 32 keys lock it exclusively), then the key,
-- in es.lock_boundary's order.
-- +goose StatementBegin
CREATE FUNCTION es.lock_tenant_writes(p_tenant_id text)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
DECLARE
    v_key bigint := es.lock_key(p_tenant_id, 'a', '');
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1163067393, es.lock_stripe(v_key));
    PERFORM pg_advisory_xact_lock(v_key);
END $$;
-- +goose StatementEnd

-- es.recheck_tenant: the registry once more, after a writer's locks (see
-- the top).
-- +goose StatementBegin
CREATE FUNCTION es.recheck_tenant(p_tenant_id text, p_for_write boolean)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM 1 FROM es.tenants WHERE tenant_id = p_tenant_id FOR KEY SHARE;
    END IF;
    PERFORM es.check_tenant(p_tenant_id, p_for_write, false);
END $$;
-- +goose StatementEnd

-- es.lock_tenant (imports, dedication): the tenant's writers wait, and a
-- tenant dropped while this waited is not found.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.lock_tenant(p_tenant_id text)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
BEGIN
    PERFORM es.lock_tenant_writes(p_tenant_id);
    PERFORM es.recheck_tenant(p_tenant_id, false);
END $$;
-- +goose StatementEnd

-- es.lock_boundary of 00001 stays under another name; the new one checks
-- the registry again after the locks, as es.lock_tenant does. Every append
-- takes the "any event" lock shared in there.
-- +goose StatementBegin
DO $$ BEGIN ALTER FUNCTION es.lock_boundary(text, jsonb, jsonb) RENAME TO lock_boundary_00001; END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.lock_boundary(p_tenant_id text, p_events jsonb, p_query jsonb)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
BEGIN
    PERFORM es.lock_boundary_00001(p_tenant_id, p_events, p_query);
    PERFORM es.recheck_tenant(p_tenant_id, p_events IS NOT NULL);
END $$;
-- +goose StatementEnd

-- es.save_snapshot of 00001 stays under another name, for the owner only;
-- the new one holds the "any event" lock shared like an append and checks
-- the registry under it first. (Renamed in a DO block, as above.)
-- +goose StatementBegin
DO $$ BEGIN ALTER FUNCTION es.save_snapshot(text, text, bigint, int, jsonb) RENAME TO save_snapshot_00001; END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.save_snapshot(p_tenant_id text, p_stream_id text, p_stream_version bigint,
                                 p_schema_version int, p_state jsonb)
RETURNS void LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = auto AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, true);
    PERFORM pg_advisory_xact_lock_shared(es.lock_key(p_tenant_id, 'a', ''));
    PERFORM es.recheck_tenant(p_tenant_id, true);
    PERFORM es.save_snapshot_00001(p_tenant_id, p_stream_id, p_stream_version, p_schema_version, p_state);
END $$;
-- +goose StatementEnd

-- es.drop_exclusion drops the CHECK constraints "dedicated$<id>" of
-- es.dedicate_tenant_concurrently, if there are any (looked up first: the
-- ALTER TABLE locks every shared leaf).
-- +goose StatementBegin
CREATE FUNCTION es.drop_exclusion(p_tenant_id text)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = auto
-- Behind a dedication's VALIDATE, the ALTER TABLE would queue every shared
-- tenant behind the scan: give up instead (tenant.Manager retries).
SET lock_timeout = '2s' AS $$
DECLARE
    v_table regclass;
BEGIN
    FOR v_table IN SELECT conrelid::regclass FROM pg_constraint
                    WHERE conname = 'dedicated$' || p_tenant_id
                      AND conrelid IN ('es."events$shared"'::regclass, 'es."snapshots$shared"'::regclass) LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', v_table, 'dedicated$' || p_tenant_id);
    END LOOP;
END $$;
-- +goose StatementEnd

-- es.tenant_has_rows: whether any event or snapshot of the tenant exists.
-- +goose StatementBegin
CREATE FUNCTION es.tenant_has_rows(p_tenant_id text)
RETURNS boolean LANGUAGE sql STABLE SET plan_cache_mode = force_custom_plan AS $$
    SELECT EXISTS (SELECT 1 FROM es.events WHERE tenant_id = p_tenant_id)
        OR EXISTS (SELECT 1 FROM es.snapshots WHERE tenant_id = p_tenant_id)
$$;
-- +goose StatementEnd

-- es.dedicate_tenant gives a shared tenant partitions of its own, moving its
-- rows into them; false when it has them already. The tenant's writers wait
-- (es.lock_tenant). Attaching a LIST partition makes PostgreSQL check that
-- the DEFAULT partition holds no row of the tenant: it scans every shared
-- leaf under an ACCESS EXCLUSIVE lock, so every shared tenant waits, for a
-- time that grows with all shared tenants' data; unless a validated CHECK
-- constraint on the shared partitions already excludes the tenant, which
-- es.dedicate_tenant_concurrently arranges for a tenant without rows (the
-- constraints "dedicated$<id>" are dropped here once the partitions are
-- attached).
-- +goose StatementBegin
CREATE FUNCTION es.dedicate_tenant(p_tenant_id text)
RETURNS boolean LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_events text := 'events_' || p_tenant_id;
    v_snapshots text := 'snapshots_' || p_tenant_id;
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    PERFORM es.lock_tenant(p_tenant_id);
    IF es.is_dedicated(p_tenant_id) THEN
        RETURN false;
    END IF;
    -- The CHECKs let ATTACH skip scanning the new tables themselves.
    EXECUTE format('CREATE TABLE es.%I (LIKE es.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS, CHECK (tenant_id = %L))', v_events, p_tenant_id);
    EXECUTE format('CREATE TABLE es.%I (LIKE es.snapshots INCLUDING DEFAULTS INCLUDING CONSTRAINTS, CHECK (tenant_id = %L))', v_snapshots, p_tenant_id);
    EXECUTE format('INSERT INTO es.%I SELECT * FROM es."events$shared" WHERE tenant_id = %L ORDER BY position', v_events, p_tenant_id);
    EXECUTE format('INSERT INTO es.%I SELECT * FROM es."snapshots$shared" WHERE tenant_id = %L', v_snapshots, p_tenant_id);
    DELETE FROM es."events$shared" WHERE tenant_id = p_tenant_id;
    DELETE FROM es."snapshots$shared" WHERE tenant_id = p_tenant_id;
    -- The tags' index of a dedicated partition (see the top); ATTACH adds
    -- the indexes of es.events.
    EXECUTE format('CREATE INDEX ON es.%I USING gin (tags) WITH (fastupdate = off)', v_events);
    EXECUTE format('ALTER TABLE es.events ATTACH PARTITION es.%I FOR VALUES IN (%L)', v_events, p_tenant_id);
    EXECUTE format('ALTER TABLE es.snapshots ATTACH PARTITION es.%I FOR VALUES IN (%L)', v_snapshots, p_tenant_id);
    PERFORM es.drop_exclusion(p_tenant_id);
    RETURN true;
END $$;
-- +goose StatementEnd

-- es.dedicate_tenant_concurrently dedicates a tenant that has no rows yet
-- (one just created) without making the shared tenants wait for a scan,
-- the way CREATE INDEX CONCURRENTLY does it: in three transactions, so CALL
-- it outside a transaction block. 1: a CHECK constraint on the shared
-- partitions excludes the tenant, NOT VALID (a brief ACCESS EXCLUSIVE lock:
-- new rows of the tenant can no longer go there). 2: the constraint is
-- validated, which scans the shared leaves under a SHARE UPDATE EXCLUSIVE
-- lock, beside every read and write. 3: es.dedicate_tenant, whose ATTACH
-- now skips its scan (the constraint proves it). Steps 1 and 3 give up after
-- lock_timeout 2 s rather than queue every shared tenant behind a long
-- transaction (lock_not_available: run it again); while they wait, the
-- shared tenants wait too, up to those 2 s. A tenant that has rows is
-- dedicated by es.dedicate_tenant alone, scan and all. If interrupted
-- between 1 and 3, the tenant cannot be written (check_violation) until
-- this, es.dedicate_tenant or es.drop_tenant runs again.
-- +goose StatementBegin
CREATE PROCEDURE es.dedicate_tenant_concurrently(p_tenant_id text)
LANGUAGE plpgsql AS $$
DECLARE
    v_constraint text := 'dedicated$' || p_tenant_id;
    v_has_rows boolean := false;
    v_lock_timeout text := current_setting('lock_timeout');
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    IF es.is_dedicated(p_tenant_id) THEN
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', '2s', true);
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'es."events$shared"'::regclass AND conname = v_constraint) THEN
            EXECUTE format('ALTER TABLE es."events$shared" ADD CONSTRAINT %I CHECK (tenant_id <> %L) NOT VALID', v_constraint, p_tenant_id);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'es."snapshots$shared"'::regclass AND conname = v_constraint) THEN
            EXECUTE format('ALTER TABLE es."snapshots$shared" ADD CONSTRAINT %I CHECK (tenant_id <> %L) NOT VALID', v_constraint, p_tenant_id);
        END IF;
        -- The constraint's lock waited for the writers in flight: whether
        -- the tenant has rows is settled. If it has, the constraints go
        -- with this block's rollback, and with their locks.
        IF es.tenant_has_rows(p_tenant_id) THEN
            RAISE EXCEPTION USING ERRCODE = 'ES012';
        END IF;
    EXCEPTION WHEN SQLSTATE 'ES012' THEN
        v_has_rows := true;
    END;
    IF v_has_rows THEN
        PERFORM set_config('lock_timeout', v_lock_timeout, true);
        PERFORM es.dedicate_tenant(p_tenant_id);
        RETURN;
    END IF;
    COMMIT;
    EXECUTE format('ALTER TABLE es."events$shared" VALIDATE CONSTRAINT %I', v_constraint);
    EXECUTE format('ALTER TABLE es."snapshots$shared" VALIDATE CONSTRAINT %I', v_constraint);
    COMMIT;
    PERFORM set_config('lock_timeout', '2s', true);
    PERFORM es.dedicate_tenant(p_tenant_id);
END $$;
-- +goose StatementEnd

-- es.drop_tenant removes a tenant and all its data: a dedicated tenant's
-- partitions are dropped (DROP TABLE locks es.events ACCESS EXCLUSIVE for a
-- moment), a shared tenant's rows deleted, which takes time in proportion
-- to them and leaves dead rows for vacuum. Both wait for the tenant's
-- writers in flight; writers that come later fail (see the top). Returns
-- false when the tenant did not exist.
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
    RETURN true;
END $$;
-- +goose StatementEnd

-- es.analyze_tenant: a dedicated tenant's partitions, or the leaves a
-- shared tenant shares with others.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.analyze_tenant(p_tenant_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    IF es.is_dedicated(p_tenant_id) THEN
        EXECUTE format('ANALYZE es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    ELSE
        EXECUTE format('ANALYZE %s, %s', es.shared_leaf('es."events$shared"', p_tenant_id),
            es.shared_leaf('es."snapshots$shared"', p_tenant_id));
    END IF;
END $$;
-- +goose StatementEnd

-- es.tenant_stats gains "dedicated". A dedicated tenant's bytes are its
-- partitions' size on disk, indexes included; a shared tenant's are the
-- size of its rows (pg_column_size), without index entries or free space.
DROP FUNCTION es.tenant_stats(text);
-- +goose StatementBegin
CREATE FUNCTION es.tenant_stats(p_tenant_id text,
    OUT events bigint, OUT streams bigint, OUT snapshots bigint, OUT bytes bigint, OUT last_event_at timestamptz,
    OUT dedicated boolean)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    SELECT count(*), count(DISTINCT e.stream_id), max(e.recorded_at) INTO events, streams, last_event_at
      FROM es.events e WHERE e.tenant_id = p_tenant_id;
    SELECT count(*) INTO snapshots FROM es.snapshots s WHERE s.tenant_id = p_tenant_id;
    dedicated := es.is_dedicated(p_tenant_id);
    IF dedicated THEN
        SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) INTO bytes
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'es' AND c.relname IN ('events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    ELSE
        SELECT coalesce((SELECT sum(pg_column_size(e.*)) FROM es.events e WHERE e.tenant_id = p_tenant_id), 0)
             + coalesce((SELECT sum(pg_column_size(s.*)) FROM es.snapshots s WHERE s.tenant_id = p_tenant_id), 0)
          INTO bytes;
    END IF;
END $$;
-- +goose StatementEnd

-- The runtime role's own INSERTs must name a registered tenant: the
-- DEFAULT partition would take any id (see the top).
ALTER POLICY tenant_isolation ON es.events
    WITH CHECK (tenant_id = current_setting('es.tenant_id', true)
                AND EXISTS (SELECT 1 FROM es.tenants t WHERE t.tenant_id = current_setting('es.tenant_id', true)));
ALTER POLICY tenant_isolation ON es.snapshots
    WITH CHECK (tenant_id = current_setting('es.tenant_id', true)
                AND EXISTS (SELECT 1 FROM es.tenants t WHERE t.tenant_id = current_setting('es.tenant_id', true)));

REVOKE EXECUTE ON PROCEDURE es.dedicate_tenant_concurrently(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION es.save_snapshot_00001(text, text, bigint, int, jsonb), es.lock_tenant_writes(text),
    es.recheck_tenant(text, boolean), es.drop_exclusion(text), es.tenant_has_rows(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION es.tenant_stats(text), es.dedicate_tenant(text), es.is_dedicated(text),
    es.shared_leaf(regclass, text), es.lock_boundary(text, jsonb, jsonb) FROM PUBLIC;
ALTER FUNCTION es.is_dedicated(text) SET plan_cache_mode = auto;
ALTER FUNCTION es.shared_leaf(regclass, text) SET plan_cache_mode = auto;

-- +goose Down
-- Every shared tenant gets its partitions back (dedicated), then the shared
-- partitions, functions and indexes of this migration go. Each dedication
-- scans the shared data and all of them run in one transaction, so this is
-- refused above 100 shared tenants: dedicate them first (esadmin tenant
-- dedicate), a few at a time.
-- +goose StatementBegin
DO $$
DECLARE
    v_tenant text;
    v_shared bigint;
BEGIN
    SELECT count(*) INTO v_shared FROM es.tenants t WHERE NOT es.is_dedicated(t.tenant_id);
    IF v_shared > 100 THEN
        RAISE EXCEPTION 'down of 00011: % shared tenants; dedicate all but 100 first', v_shared;
    END IF;
    FOR v_tenant IN SELECT tenant_id FROM es.tenants ORDER BY tenant_id LOOP
        PERFORM es.dedicate_tenant(v_tenant);
    END LOOP;
    DROP TABLE es."events$shared", es."snapshots$shared";
END $$;
-- +goose StatementEnd
ALTER POLICY tenant_isolation ON es.events WITH CHECK (tenant_id = current_setting('es.tenant_id', true));
ALTER POLICY tenant_isolation ON es.snapshots WITH CHECK (tenant_id = current_setting('es.tenant_id', true));
DROP FUNCTION es.lock_boundary(text, jsonb, jsonb);
-- +goose StatementBegin
DO $$ BEGIN ALTER FUNCTION es.lock_boundary_00001(text, jsonb, jsonb) RENAME TO lock_boundary; END $$;
-- +goose StatementEnd
DROP PROCEDURE es.dedicate_tenant_concurrently(text);
DROP FUNCTION es.dedicate_tenant(text);
DROP FUNCTION es.tenant_stats(text);
-- +goose StatementBegin
CREATE FUNCTION es.tenant_stats(p_tenant_id text,
    OUT events bigint, OUT streams bigint, OUT snapshots bigint, OUT bytes bigint, OUT last_event_at timestamptz)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    SELECT count(*), count(DISTINCT e.stream_id), max(e.recorded_at) INTO events, streams, last_event_at
      FROM es.events e WHERE e.tenant_id = p_tenant_id;
    SELECT count(*) INTO snapshots FROM es.snapshots s WHERE s.tenant_id = p_tenant_id;
    SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) INTO bytes
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'es' AND c.relname IN ('events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
END $$;
-- +goose StatementEnd
REVOKE EXECUTE ON FUNCTION es.tenant_stats(text) FROM PUBLIC;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.analyze_tenant(p_tenant_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    EXECUTE format('ANALYZE es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.drop_tenant(p_tenant_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM es.tenants WHERE tenant_id = p_tenant_id) THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    DELETE FROM es.tenants WHERE tenant_id = p_tenant_id;
    RETURN true;
END $$;
-- +goose StatementEnd
DROP FUNCTION es.save_snapshot(text, text, bigint, int, jsonb);
-- +goose StatementBegin
DO $$ BEGIN ALTER FUNCTION es.save_snapshot_00001(text, text, bigint, int, jsonb) RENAME TO save_snapshot; END $$;
-- +goose StatementEnd
GRANT EXECUTE ON FUNCTION es.save_snapshot(text, text, bigint, int, jsonb) TO PUBLIC;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.lock_tenant(p_tenant_id text)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(es.lock_key(p_tenant_id, 'a', ''));
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION es.create_tenant(p_tenant_id text, p_name text DEFAULT '')
RETURNS es.tenants LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_row es.tenants;
BEGIN
    IF p_tenant_id IS NULL OR p_tenant_id !~ '^[a-z0-9][a-z0-9_-]{0,39}$' THEN
        PERFORM es.raise('ES004', format('invalid tenant id %L: use 1-40 characters a-z, 0-9, "_" or "-", starting with a letter or digit', left(p_tenant_id, 80)));
    END IF;
    INSERT INTO es.tenants (tenant_id, name) VALUES (p_tenant_id, coalesce(p_name, ''))
    ON CONFLICT (tenant_id) DO NOTHING;
    IF NOT FOUND THEN
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
DROP FUNCTION es.recheck_tenant(text, boolean);
DROP FUNCTION es.lock_tenant_writes(text);
DROP FUNCTION es.drop_exclusion(text);
DROP FUNCTION es.tenant_has_rows(text);
DROP FUNCTION es.shared_leaf(regclass, text);
DROP FUNCTION es.is_dedicated(text);
-- Attaches the partitions' own (tags) indexes, which match.
CREATE INDEX events_tags ON es.events USING gin (tags) WITH (fastupdate = off);
CREATE INDEX events_type ON es.events (event_type, position);
CREATE INDEX events_tx ON es.events (tx_id, position);
DROP INDEX es.events_tenant_type;
DROP INDEX es.events_tenant_tx;
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gin' AND extnamespace = 'es'::regnamespace) THEN
        DROP EXTENSION btree_gin;
    END IF;
END $$;
-- +goose StatementEnd
