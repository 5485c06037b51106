-- name: ReadLog :many
-- The Go subscriber's read: es.read_log's query without PL/pgSQL, whose
-- RETURN QUERY copies every row into a tuplestore before sending it (about
-- 2 us per event, five times the scan). It runs on a connection whose
-- session is scoped to the tenant (ScopeSession): row-level security
-- evaluates es.tenant_id when the statement starts. Every comparison the
-- index scan needs (xid8, bigint, text) is leakproof, so it uses the index
-- under row-level security too. The group expression must stay the same as
-- es.read_log's, so that Go and SQL consumers split a group alike.
--
-- One statement: the horizon, the next transaction id and the batch below
-- the horizon, all from this statement's snapshot; one row with position 0
-- when the batch is empty.
-- horizon, oldest_writer: es.log_horizon (migration 00013); only the
-- tenant's writers hold the horizon back. oldest_writer: max int8 when no
-- writer is in flight. An empty read moves the checkpoint to the safe bound
-- of an earlier LogSafe, never to the horizon.
-- next_xid: the next transaction id to be assigned, so every transaction
-- that has written anything is below it. (The snapshot's xmax is not that
-- bound: it is the last completed id + 1, and running transactions above
-- it do not show.) age() of a normal xid counts from the next xid of a
-- transaction that has none of its own; the xmax's low 32 bits are normal
-- except within 3 ids of a wraparound, where the bound falls back to
-- xmax + 3.
WITH h AS MATERIALIZED (
    SELECT l.horizon, l.safe, l.oldest_writer,
           pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
      FROM es.log_horizon(@tenant_id::text, false) AS l(horizon, safe, oldest_writer))
SELECT h.horizon::text::bigint AS horizon,
       coalesce(h.oldest_writer::text::bigint, 9223372036854775807)::bigint AS oldest_writer,
       (h.xmax + CASE WHEN (h.xmax & 4294967295) >= 3 THEN age(((h.xmax & 4294967295)::text)::xid) ELSE 3 END)::bigint AS next_xid,
       coalesce(e.tx_id::text::bigint, 0)::bigint AS tx_id, coalesce(e.position, 0)::bigint AS position,
       coalesce(e.event_id, '00000000-0000-0000-0000-000000000000')::uuid AS event_id, coalesce(e.event_type, '')::text AS event_type,
       e.stream_id, e.stream_version, coalesce(e.payload, 'null')::jsonb AS payload, coalesce(e.metadata, '{}')::jsonb AS metadata,
       coalesce(e.tags, '{}')::text[] AS tags, e.recorded_at
FROM h LEFT JOIN LATERAL (
    SELECT * FROM es.events e
     WHERE e.tenant_id = @tenant_id::text
       AND (e.tx_id, e.position) > (CAST(CAST(@after_tx::bigint AS text) AS xid8), @after_position::bigint)
       AND e.tx_id < h.horizon
       AND (sqlc.narg(types)::text[] IS NULL OR e.event_type = ANY (sqlc.narg(types)::text[]))
       AND (sqlc.narg(tags)::text[] IS NULL OR e.tags @> sqlc.narg(tags)::text[])
       AND (sqlc.narg(stream_id)::text IS NULL OR e.stream_id = sqlc.narg(stream_id)::text)
       AND (sqlc.narg(stream_prefix)::text IS NULL OR left(e.stream_id, length(sqlc.narg(stream_prefix)::text)) = sqlc.narg(stream_prefix)::text)
       AND (@members::int <= 1 OR abs(hashtextextended(coalesce(
               CASE WHEN sqlc.narg(tag_prefix)::text IS NULL THEN e.stream_id
                    ELSE (SELECT t FROM unnest(e.tags) t WHERE left(t, length(sqlc.narg(tag_prefix)::text)) = sqlc.narg(tag_prefix)::text LIMIT 1) END,
               ''), 0) % @members::int) = @member::int)
     ORDER BY e.tx_id, e.position
     LIMIT @max_count::int) e ON true;

-- name: LogSafe :one
-- es.log_horizon's safe bound (reading pg_stat_get_activity, which ReadLog
-- skips): a read that starts after this statement and finds nothing more
-- lets the checkpoint move to it.
SELECT coalesce(h.safe::text::bigint, 0)::bigint AS safe
FROM es.log_horizon(@tenant_id::text, true) AS h(horizon, safe, oldest_writer);

-- name: ScopeSession :one
-- Scopes a connection's session to a tenant for ReadLog, with custom plans
-- only (a generic plan over es.events would lock every tenant's partition
-- on each execution), and, unless the filter has tags to look up, without
-- bitmap scans: in a shared leaf, which keeps no statistics on tenant_id,
-- the planner chose a bitmap scan of the tenant's whole backlog after the
-- checkpoint, and a sort, for every batch (quadratic catch-up), where the
-- (tenant_id, tx_id, position) index gives the batch in order. Returns
-- both settings' previous values; handler batches restore the bitmap scans
-- for their own statements (ScopeBatch).
WITH p AS MATERIALIZED (SELECT current_setting('plan_cache_mode') AS previous, current_setting('enable_bitmapscan') AS bitmapscan)
SELECT p.previous::text AS previous, p.bitmapscan::text AS bitmapscan FROM p,
       LATERAL (SELECT set_config('es.tenant_id', @tenant_id::text, false), set_config('plan_cache_mode', 'force_custom_plan', false),
                       set_config('enable_bitmapscan', CASE WHEN @keep_bitmapscan::boolean THEN p.bitmapscan ELSE 'off' END, false)) s;

-- name: UnscopeSession :exec
SELECT set_config('es.tenant_id', '', false), set_config('plan_cache_mode', @plan_cache_mode::text, false),
       set_config('enable_bitmapscan', @bitmapscan::text, false);

-- name: ScopeBatch :exec
-- Scopes the rest of a subscriber's batch transaction to its tenant
-- (row-level security and the SQL API's tenant check, for handlers that
-- query in it), and gives the handler's statements the session's bitmap
-- scans back (ScopeSession turned them off for the reader's own reads).
SELECT set_config('es.tenant_id', @tenant_id::text, true), set_config('enable_bitmapscan', @bitmapscan::text, true);

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
       s.lag_events::bigint AS lag_events, s.lag_capped::boolean AS lag_capped, coalesce(s.lag_seconds, 0)::float8 AS lag_seconds,
       coalesce(s.owner, '')::text AS owner, s.lease_expires_at::timestamptz AS lease_expires_at,
       s.dead_letters::bigint AS dead_letters, s.updated_at::timestamptz AS updated_at,
       coalesce(s.held_by_xid::text::bigint, 0)::bigint AS held_by_xid, coalesce(s.held_by_pid, 0)::int AS held_by_pid,
       coalesce(s.held_by_database, '')::text AS held_by_database, coalesce(s.held_by_seconds, 0)::float8 AS held_by_seconds,
       coalesce(s.held_by_state, '')::text AS held_by_state
FROM t, LATERAL es.subscription_status(t.tenant_id) s;

-- name: ListDeadLetters :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT d.position, d.event_id, d.event_type, d.error, d.attempts, d.parked_at
FROM t, LATERAL es.list_dead_letters(t.tenant_id, @name::text) d;

-- name: LogKeyAt :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT k.tx_id::text::bigint AS tx_id FROM t, LATERAL es.log_key_at(t.tenant_id, sqlc.narg(position)::bigint, sqlc.narg(at_time)::timestamptz) k;

-- name: RetryDeadLetters :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.retry_dead_letters(t.tenant_id, @name::text, sqlc.narg(positions)::bigint[])::bigint AS marked FROM t;

-- name: DiscardDeadLetters :one
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.discard_dead_letters(t.tenant_id, @name::text, sqlc.narg(positions)::bigint[])::bigint AS discarded FROM t;

-- name: DeadLettersToRetry :many
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT e.position::bigint AS position, e.event_id::uuid AS event_id, e.event_type::text AS event_type, e.stream_id, e.stream_version,
       e.payload::jsonb AS payload, e.metadata::jsonb AS metadata, e.tags::text[] AS tags, e.recorded_at
FROM t, LATERAL es.dead_letters_to_retry(t.tenant_id, @name::text, @max_count::int) e;

-- name: DeadLetterRetried :exec
WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', @tenant_id::text, true) AS tenant_id)
SELECT es.dead_letter_retried(t.tenant_id, @name::text, @position::bigint, sqlc.narg(error)::text) FROM t;
