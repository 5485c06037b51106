-- Custom plans in every function with statements on the partitioned
-- tables (bench/RESULTS.md, issue #4).
--
-- PL/pgSQL caches each statement's plan: five custom plans, then one
-- generic plan built to compare costs. A generic plan of a statement on
-- es.events or es.snapshots opens and locks every partition and its
-- indexes. With one partition per tenant, at 10,000 tenants that is about
-- 70,000 locks: on a new connection the 6th call of a function failed with
-- "out of shared memory" (the lock table holds max_locks_per_transaction x
-- max_connections, 6,400 by default; NOTES.md hazards 8 and 10), and every
-- later call failed again. From ~100 tenants on the cache rejects the
-- generic plan anyway, so forcing custom plans changes nothing there; with
-- one or two tenants it costs ~0.1 ms per statement that a generic plan
-- would have saved. Any new function on these tables must do the same
-- (TestPartitionedTableFunctionsUseCustomPlans checks the catalog).

-- +goose Up
ALTER FUNCTION es.append_to_stream(text, text, bigint, jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.count_events(text, jsonb, bigint, bigint) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.create_tenant(text, text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.delete_snapshots(text, text, bigint) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.delete_stream(text, text, bigint) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.find_appended(text, text, jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.first_match(text, jsonb, bigint) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.import_events(text, jsonb, boolean) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.import_snapshots(text, jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.import_subscriptions(text, jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.list_snapshots(text, text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.load_snapshot(text, text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.load_snapshot_upto(text, text, bigint) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.log_key_at(text, bigint, timestamp with time zone) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.park_event(text, text, bigint, text, integer) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.prune_snapshots(text, integer) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.read_events(text, jsonb, bigint, bigint, integer, boolean) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.read_head(text, jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.read_log(text, xid8, bigint, jsonb, integer, xid8) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.read_stream(text, text, bigint, integer, boolean) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.save_snapshot(text, text, bigint, integer, jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.stream_head(text, text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.subscription_status(text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.tenant_stats(text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.write_events(text, text, bigint, jsonb) SET plan_cache_mode = force_custom_plan;

-- A function's SET applies to the functions it calls too: the helpers
-- below have no statement on a partitioned table, and forced custom plans
-- made them plan every statement on every call (es.read_head took 0.75 ms
-- instead of 0.05). They keep the default.
ALTER FUNCTION es.raise(text, text, text) SET plan_cache_mode = auto;
ALTER FUNCTION es.require_tenant(text) SET plan_cache_mode = auto;
ALTER FUNCTION es.check_tenant(text, boolean, boolean) SET plan_cache_mode = auto;
ALTER FUNCTION es.validate_events(jsonb) SET plan_cache_mode = auto;
ALTER FUNCTION es.check_batch_00001(jsonb) SET plan_cache_mode = auto;
ALTER FUNCTION es.check_batch(jsonb) SET plan_cache_mode = auto;
ALTER FUNCTION es.lock_boundary(text, jsonb, jsonb) SET plan_cache_mode = auto;
ALTER FUNCTION es.check_query(jsonb) SET plan_cache_mode = auto;
ALTER FUNCTION es.require_read_committed() SET plan_cache_mode = auto;
ALTER FUNCTION es.query_filter(jsonb) SET plan_cache_mode = auto;
ALTER FUNCTION es.lock_tenant(text) SET plan_cache_mode = auto;
ALTER FUNCTION es.check_filter(jsonb) SET plan_cache_mode = auto;
ALTER FUNCTION es.notify_events() SET plan_cache_mode = auto;

-- +goose Down
ALTER FUNCTION es.raise(text, text, text) RESET plan_cache_mode;
ALTER FUNCTION es.require_tenant(text) RESET plan_cache_mode;
ALTER FUNCTION es.check_tenant(text, boolean, boolean) RESET plan_cache_mode;
ALTER FUNCTION es.validate_events(jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.check_batch_00001(jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.check_batch(jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.lock_boundary(text, jsonb, jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.check_query(jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.require_read_committed() RESET plan_cache_mode;
ALTER FUNCTION es.query_filter(jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.lock_tenant(text) RESET plan_cache_mode;
ALTER FUNCTION es.check_filter(jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.notify_events() RESET plan_cache_mode;
ALTER FUNCTION es.append_to_stream(text, text, bigint, jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.count_events(text, jsonb, bigint, bigint) RESET plan_cache_mode;
ALTER FUNCTION es.create_tenant(text, text) RESET plan_cache_mode;
ALTER FUNCTION es.delete_snapshots(text, text, bigint) RESET plan_cache_mode;
ALTER FUNCTION es.delete_stream(text, text, bigint) RESET plan_cache_mode;
ALTER FUNCTION es.find_appended(text, text, jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.first_match(text, jsonb, bigint) RESET plan_cache_mode;
ALTER FUNCTION es.import_events(text, jsonb, boolean) RESET plan_cache_mode;
ALTER FUNCTION es.import_snapshots(text, jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.import_subscriptions(text, jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.list_snapshots(text, text) RESET plan_cache_mode;
ALTER FUNCTION es.load_snapshot(text, text) RESET plan_cache_mode;
ALTER FUNCTION es.load_snapshot_upto(text, text, bigint) RESET plan_cache_mode;
ALTER FUNCTION es.log_key_at(text, bigint, timestamp with time zone) RESET plan_cache_mode;
ALTER FUNCTION es.park_event(text, text, bigint, text, integer) RESET plan_cache_mode;
ALTER FUNCTION es.prune_snapshots(text, integer) RESET plan_cache_mode;
ALTER FUNCTION es.read_events(text, jsonb, bigint, bigint, integer, boolean) RESET plan_cache_mode;
ALTER FUNCTION es.read_head(text, jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.read_log(text, xid8, bigint, jsonb, integer, xid8) RESET plan_cache_mode;
ALTER FUNCTION es.read_stream(text, text, bigint, integer, boolean) RESET plan_cache_mode;
ALTER FUNCTION es.save_snapshot(text, text, bigint, integer, jsonb) RESET plan_cache_mode;
ALTER FUNCTION es.stream_head(text, text) RESET plan_cache_mode;
ALTER FUNCTION es.subscription_status(text) RESET plan_cache_mode;
ALTER FUNCTION es.tenant_stats(text) RESET plan_cache_mode;
ALTER FUNCTION es.write_events(text, text, bigint, jsonb) RESET plan_cache_mode;
