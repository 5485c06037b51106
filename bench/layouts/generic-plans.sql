-- Generic plans for the SQL API: an EXPERIMENT for issue #4, applied after
-- hybrid.sql by `esadmin bench --layout hybrid-generic`. Not a migration.
--
-- With more than a few partitions PL/pgSQL's plan cache never settles on a
-- generic plan for a statement on es.events: the generic plan's estimated
-- cost sums every partition's scan and loses to the custom plan, so every
-- call plans again (bench/RESULTS.md, issue #4). Forcing generic plans in the
-- functions that read or write es.events plans each statement once per
-- connection; the tenant's partition is chosen at executor start (run-time
-- pruning). In PostgreSQL 15 a generic plan still locks every partition it
-- could prune at executor start, so this is only sane with few partitions
-- (the hybrid layout's hash leaves plus the dedicated tenants), never with one
-- partition per tenant at 10,000 tenants.
ALTER FUNCTION es.append_to_stream(text, text, bigint, jsonb) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION es.delete_stream(text, text, bigint) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION es.stream_head(text, text) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION es.read_stream(text, text, bigint, int, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION es.save_snapshot(text, text, bigint, int, jsonb) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION es.load_snapshot(text, text) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION es.find_appended(text, text, jsonb) SET plan_cache_mode = force_generic_plan;
