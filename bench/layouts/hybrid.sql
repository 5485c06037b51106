-- Hybrid tenant layout: an EXPERIMENT for issue #4, applied by
-- `esadmin bench --layout hybrid` to a freshly migrated scratch database. It
-- is not a migration and the store does not use it.
--
-- es.events and es.snapshots stay PARTITION BY LIST (tenant_id). Ordinary
-- ("shared") tenants get no partition of their own: their rows fall into
-- the DEFAULT partition, es."events$shared" / es."snapshots$shared", which is
-- itself PARTITION BY HASH (tenant_id) into a fixed number of leaves (the
-- setting pges_bench.hash_partitions, default 16). A tenant can be given its
-- own LIST partition, as today, with es.dedicate_tenant ("dedicated").
-- Partition names use "$", which a tenant id cannot contain, so they never
-- collide with a dedicated tenant's events_<id> / snapshots_<id>.
--
-- Every unique constraint of es.events (tenant_id, position),
-- (tenant_id, event_id), (tenant_id, stream_id, stream_version) and of
-- es.snapshots includes tenant_id, the key of both levels, so each tenant's
-- rows sit in exactly one leaf and the leaf's unique index enforces them.
--
-- Replaced: es.create_tenant (a registry row only), es.drop_tenant (DROP of
-- a dedicated tenant's partitions, DELETE of a shared tenant's rows, in the
-- same transaction as the registry delete), es.analyze_tenant and
-- es.tenant_stats (they named the tenant's partitions). Every other SQL API
-- function addresses es.events / es.snapshots and works unchanged.

DO $$
DECLARE
    n int := coalesce(nullif(current_setting('pges_bench.hash_partitions', true), '')::int, 16);
    have int;
BEGIN
    IF to_regclass('es."events$shared"') IS NOT NULL THEN
        SELECT count(*) INTO have FROM pg_inherits WHERE inhparent = 'es."events$shared"'::regclass;
        IF have <> n THEN
            RAISE EXCEPTION 'this database already has the hybrid layout with % hash partitions, not %', have, n;
        END IF;
        RETURN; -- already converted: only the functions below are (re)defined
    END IF;
    IF n NOT BETWEEN 1 AND 1024 THEN
        RAISE EXCEPTION 'pges_bench.hash_partitions must be 1-1024, not %', n;
    END IF;
    -- Converting a database that holds tenants would strand their data in
    -- the layout they were created with: scratch databases only.
    IF EXISTS (SELECT 1 FROM es.tenants) THEN
        RAISE EXCEPTION 'the hybrid layout is for a freshly migrated scratch database; this one has % tenants',
            (SELECT count(*) FROM es.tenants);
    END IF;
    CREATE TABLE es."events$shared" PARTITION OF es.events DEFAULT PARTITION BY HASH (tenant_id);
    CREATE TABLE es."snapshots$shared" PARTITION OF es.snapshots DEFAULT PARTITION BY HASH (tenant_id);
    FOR i IN 0 .. n - 1 LOOP
        EXECUTE format('CREATE TABLE es.%I PARTITION OF es."events$shared" FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
            'events$shared_' || lpad(i::text, 4, '0'), n, i);
        EXECUTE format('CREATE TABLE es.%I PARTITION OF es."snapshots$shared" FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
            'snapshots$shared_' || lpad(i::text, 4, '0'), n, i);
    END LOOP;
END $$;

-- es.shared_leaf returns the hash leaf of p_parent (es."events$shared" or
-- es."snapshots$shared") that holds a shared tenant's rows.
CREATE OR REPLACE FUNCTION es.shared_leaf(p_parent regclass, p_tenant_id text)
RETURNS regclass LANGUAGE sql STABLE AS $$
    SELECT i.inhrelid::regclass
      FROM pg_inherits i
     WHERE i.inhparent = p_parent
       AND satisfies_hash_partition(p_parent::oid, (SELECT count(*)::int FROM pg_inherits WHERE inhparent = p_parent),
               substring(i.inhrelid::regclass::text FROM '_(\d+)"?$')::int, p_tenant_id)
$$;

-- es.is_dedicated: whether the tenant has its own LIST partition.
CREATE OR REPLACE FUNCTION es.is_dedicated(p_tenant_id text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_inherits i
                    WHERE i.inhparent = 'es.events'::regclass
                      AND i.inhrelid = to_regclass(format('es.%I', 'events_' || p_tenant_id)))
$$;

CREATE OR REPLACE FUNCTION es.create_tenant(p_tenant_id text, p_name text DEFAULT '')
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
        SELECT * INTO v_row FROM es.tenants WHERE tenant_id = p_tenant_id;
        IF v_row.name IS DISTINCT FROM coalesce(p_name, '') THEN
            PERFORM es.raise('ES009', format('tenant %L exists with the name %L', p_tenant_id, v_row.name));
        END IF;
        RETURN v_row;
    END IF;
    -- No DDL: the tenant's rows go to its hash leaf of the DEFAULT partition.
    SELECT * INTO v_row FROM es.tenants WHERE tenant_id = p_tenant_id;
    RETURN v_row;
END $$;

-- es.dedicate_tenant gives a tenant its own LIST partitions, moving its rows
-- out of the shared leaves. Returns false when it already had them. Adding a
-- LIST partition makes PostgreSQL check that the DEFAULT partition holds no
-- row of the new value: it scans every shared leaf under an ACCESS
-- EXCLUSIVE lock, so the time grows with all shared tenants' data (dedicate
-- large tenants early, or at creation).
CREATE OR REPLACE FUNCTION es.dedicate_tenant(p_tenant_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    IF es.is_dedicated(p_tenant_id) THEN
        RETURN false;
    END IF;
    -- Appends and head reads of the tenant wait (es.lock_boundary).
    PERFORM es.lock_tenant(p_tenant_id);
    EXECUTE format('LOCK TABLE %s, %s IN ACCESS EXCLUSIVE MODE',
        es.shared_leaf('es."events$shared"', p_tenant_id), es.shared_leaf('es."snapshots$shared"', p_tenant_id));
    EXECUTE format('CREATE TABLE es.%I (LIKE es.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', 'events_' || p_tenant_id);
    EXECUTE format('CREATE TABLE es.%I (LIKE es.snapshots INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', 'snapshots_' || p_tenant_id);
    EXECUTE format('INSERT INTO es.%I SELECT * FROM es."events$shared" WHERE tenant_id = %L', 'events_' || p_tenant_id, p_tenant_id);
    EXECUTE format('INSERT INTO es.%I SELECT * FROM es."snapshots$shared" WHERE tenant_id = %L', 'snapshots_' || p_tenant_id, p_tenant_id);
    DELETE FROM es."events$shared" WHERE tenant_id = p_tenant_id;
    DELETE FROM es."snapshots$shared" WHERE tenant_id = p_tenant_id;
    EXECUTE format('ALTER TABLE es.events ATTACH PARTITION es.%I FOR VALUES IN (%L)', 'events_' || p_tenant_id, p_tenant_id);
    EXECUTE format('ALTER TABLE es.snapshots ATTACH PARTITION es.%I FOR VALUES IN (%L)', 'snapshots_' || p_tenant_id, p_tenant_id);
    RETURN true;
END $$;

-- es.drop_tenant: a dedicated tenant's partitions are dropped as before; a
-- shared tenant's rows are deleted, in the transaction that deletes its
-- registry row (subscriptions cascade). The time of a DELETE grows with the
-- tenant's rows. The shared tenant's two hash leaves are locked ACCESS
-- EXCLUSIVE first, as DROP TABLE locks the parent: an append that is in
-- flight (it read the registry already) finishes first, and one that comes
-- later waits and then finds no tenant, so no row can be left behind. The
-- lock stops the tenants that share those leaves (1/N of the shared
-- tenants) for the length of the DELETE.
CREATE OR REPLACE FUNCTION es.drop_tenant(p_tenant_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM es.tenants WHERE tenant_id = p_tenant_id) THEN
        RETURN false;
    END IF;
    IF es.is_dedicated(p_tenant_id) THEN
        EXECUTE format('DROP TABLE IF EXISTS es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    ELSE
        EXECUTE format('LOCK TABLE %s, %s IN ACCESS EXCLUSIVE MODE',
            es.shared_leaf('es."events$shared"', p_tenant_id), es.shared_leaf('es."snapshots$shared"', p_tenant_id));
        DELETE FROM es.events WHERE tenant_id = p_tenant_id;
        DELETE FROM es.snapshots WHERE tenant_id = p_tenant_id;
    END IF;
    DELETE FROM es.tenants WHERE tenant_id = p_tenant_id;
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION es.analyze_tenant(p_tenant_id text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    IF es.is_dedicated(p_tenant_id) THEN
        EXECUTE format('ANALYZE es.%I, es.%I', 'events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    ELSE
        -- The leaves the tenant shares with others.
        EXECUTE format('ANALYZE %s, %s',
            es.shared_leaf('es."events$shared"', p_tenant_id), es.shared_leaf('es."snapshots$shared"', p_tenant_id));
    END IF;
END $$;

-- es.tenant_stats: for a shared tenant, bytes are the size of its rows
-- (pg_column_size), without index entries or free space.
CREATE OR REPLACE FUNCTION es.tenant_stats(p_tenant_id text,
    OUT events bigint, OUT streams bigint, OUT snapshots bigint, OUT bytes bigint, OUT last_event_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM es.check_tenant(p_tenant_id, false, false);
    SELECT count(*), count(DISTINCT e.stream_id), max(e.recorded_at) INTO events, streams, last_event_at
      FROM es.events e WHERE e.tenant_id = p_tenant_id;
    SELECT count(*) INTO snapshots FROM es.snapshots s WHERE s.tenant_id = p_tenant_id;
    IF es.is_dedicated(p_tenant_id) THEN
        SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) INTO bytes
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'es' AND c.relname IN ('events_' || p_tenant_id, 'snapshots_' || p_tenant_id);
    ELSE
        SELECT coalesce((SELECT sum(pg_column_size(e.*)) FROM es.events e WHERE e.tenant_id = p_tenant_id), 0)
             + coalesce((SELECT sum(pg_column_size(s.*)) FROM es.snapshots s WHERE s.tenant_id = p_tenant_id), 0)
          INTO bytes;
    END IF;
END $$;

REVOKE EXECUTE ON FUNCTION es.shared_leaf(regclass, text), es.is_dedicated(text),
    es.dedicate_tenant(text) FROM PUBLIC;
