-- Custom plans for the SQL API's stream functions in the per-tenant layout:
-- an EXPERIMENT for issue #4, applied by `esadmin bench --layout
-- per-tenant-custom`. Not a migration.
--
-- In the per-tenant layout at 10,000 tenants a NEW connection cannot run the
-- stream functions: PL/pgSQL's plan cache custom-plans a statement five
-- times, then builds the generic plan once to compare its cost, and the
-- generic plan of a statement on es.events opens and locks all 10,000
-- partitions and their indexes. With the default max_locks_per_transaction
-- (64) that fails with "out of shared memory" after ~2 s, and again on every
-- later call (bench/RESULTS.md, issue #4). Connections opened while there
-- were few tenants had built that generic plan then and keep its cost, which
-- is why a bench that grows from 1 to 10,000 tenants on one pool does not
-- see it. Forcing custom plans in these functions never builds the generic
-- plan: each call plans for its tenant, as the cache does anyway from ~100
-- tenants on.
ALTER FUNCTION es.append_to_stream(text, text, bigint, jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.delete_stream(text, text, bigint) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.stream_head(text, text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.read_stream(text, text, bigint, int, boolean) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.save_snapshot(text, text, bigint, int, jsonb) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.load_snapshot(text, text) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION es.find_appended(text, text, jsonb) SET plan_cache_mode = force_custom_plan;
