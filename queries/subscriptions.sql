-- name: LogHorizon :one
-- horizon: this statement's pg_snapshot_xmin; every transaction below it
-- has ended. next_xid: the next transaction id to be assigned, so every
-- transaction that has written anything is below it. (The snapshot's xmax
-- is not that bound: it is the last completed id + 1, and running
-- transactions above it do not show.) age() of a normal xid counts from
-- the next xid of a transaction that has none of its own; the xmax's low
-- 32 bits are normal except within 3 ids of a wraparound, where the bound
-- falls back to xmax + 3.
WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
                  pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax)
SELECT s.xmin AS horizon,
       (s.xmax + CASE WHEN (s.xmax & 4294967295) >= 3 THEN age(((s.xmax & 4294967295)::text)::xid) ELSE 3 END)::bigint AS next_xid
FROM s;

-- name: ReadLog :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT e.tx_id::text::bigint AS tx_id, e.position, e.event_id, e.event_type, e.stream_id, e.stream_version, e.payload, e.metadata, e.tags, e.recorded_at
FROM t, LATERAL es.read_log(t.tenant_id, CAST(CAST(@after_tx::bigint AS text) AS xid8), @after_position::bigint, @filter::jsonb, @max_count::int, CAST(CAST(@horizon::bigint AS text) AS xid8)) e;

-- name: Subscribe :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT s.checkpoint_tx::text::bigint AS checkpoint_tx, s.checkpoint_position, s.last_position
FROM t, LATERAL es.subscribe(t.tenant_id, @name::text, @filter::jsonb, @start::text) s;

-- name: AcquireSubscription :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT (s.owner IS NOT NULL)::boolean AS acquired, coalesce(s.checkpoint_tx::text::bigint, 0)::bigint AS checkpoint_tx,
       coalesce(s.checkpoint_position, 0)::bigint AS checkpoint_position
FROM t, LATERAL es.acquire_subscription(t.tenant_id, @name::text, @owner::text, make_interval(secs => @ttl_seconds::float8)) s;

-- name: ReleaseSubscription :exec
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.release_subscription(t.tenant_id, @name::text, @owner::text) FROM t;

-- name: CommitCheckpoint :exec
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.commit_checkpoint(t.tenant_id, @name::text, @owner::text, make_interval(secs => @ttl_seconds::float8),
                            CAST(CAST(@checkpoint_tx::bigint AS text) AS xid8), @checkpoint_position::bigint, @last_position::bigint) FROM t;

-- name: ParkEvent :exec
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.park_event(t.tenant_id, @name::text, @position::bigint, @error::text, @attempts::int) FROM t;

-- name: ResetSubscription :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.reset_subscription(t.tenant_id, @name::text, sqlc.narg(position)::bigint, sqlc.narg(at_time)::timestamptz)::boolean AS found FROM t;

-- name: DeleteSubscription :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.delete_subscription(t.tenant_id, @name::text)::boolean AS found FROM t;

-- name: SubscriptionStatus :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT s.name::text AS name, s.filter::jsonb AS filter, s.last_position::bigint AS last_position, s.head::bigint AS head,
       s.lag_events::bigint AS lag_events, coalesce(s.lag_seconds, 0)::float8 AS lag_seconds,
       coalesce(s.owner, '')::text AS owner, s.lease_expires_at::timestamptz AS lease_expires_at,
       s.dead_letters::bigint AS dead_letters, s.updated_at::timestamptz AS updated_at
FROM t, LATERAL es.subscription_status(t.tenant_id) s;

-- name: ListDeadLetters :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT d.position, d.event_id, d.event_type, d.error, d.attempts, d.parked_at
FROM t, LATERAL es.list_dead_letters(t.tenant_id, @name::text) d;

-- name: LogKeyAt :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT k.tx_id::text::bigint AS tx_id FROM t, LATERAL es.log_key_at(t.tenant_id, sqlc.narg(position)::bigint, sqlc.narg(at_time)::timestamptz) k;

-- name: SetTenant :exec
-- Scopes the rest of the transaction to a tenant (row-level security and
-- the SQL API's tenant check), for handlers that query in the store's
-- transaction.
SELECT set_config('es.tenant_id', @tenant_id::text, true);
