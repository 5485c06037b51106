-- EXPLAIN (ANALYZE, BUFFERS) of the statements behind the scale study's
-- goals (bench/RESULTS.md, "Scale study"), on the study's tenant after
-- esadmin bench --scale. Appends are rolled back. Run as the owner
-- (auto_explain needs a superuser to LOAD):
--
--   psql 'postgres://postgres@127.0.0.1:5432/pges_scale' -v tag=product:5000 -f bench/scale-explain.sql
--
-- :tag is the tag the study queried at that size (its "Loads" table).
-- Statements inside the SQL API's PL/pgSQL functions are shown by
-- auto_explain as NOTICEs (nested statements, with buffers).

\set ON_ERROR_STOP on
\pset pager off
SELECT set_config('es.tenant_id', 'bench_scale', false) AS tenant;
SELECT name, setting, unit FROM pg_settings
 WHERE name IN ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'effective_cache_size', 'synchronous_commit',
                'fsync', 'full_page_writes', 'wal_level', 'max_wal_size', 'checkpoint_timeout', 'random_page_cost',
                'max_connections', 'max_locks_per_transaction', 'default_statistics_target', 'jit')
 ORDER BY name;
SELECT count(*) AS events, pg_size_pretty(pg_table_size('es.events_bench_scale')) AS heap,
       pg_size_pretty(pg_indexes_size('es.events_bench_scale')) AS indexes
  FROM es.events WHERE tenant_id = 'bench_scale';

\echo '== 1. The tag query as plain SQL (the baseline), twice'
EXPLAIN (ANALYZE, BUFFERS) SELECT position, event_id, event_type, stream_id, stream_version, payload, metadata, tags, recorded_at
  FROM es.events WHERE tenant_id = 'bench_scale' AND tags @> ARRAY[:'tag'] ORDER BY position LIMIT 100;
EXPLAIN (ANALYZE, BUFFERS) SELECT position, event_id, event_type, stream_id, stream_version, payload, metadata, tags, recorded_at
  FROM es.events WHERE tenant_id = 'bench_scale' AND tags @> ARRAY[:'tag'] ORDER BY position LIMIT 100;

LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;

\echo '== 2. The tag query through the SQL API, as Read sends it: es.read_head, then es.read_events'
SELECT es.read_head('bench_scale', jsonb_build_array(jsonb_build_object('tags', jsonb_build_array(:'tag')))) AS head;
SELECT count(*) FROM es.read_events('bench_scale', jsonb_build_array(jsonb_build_object('tags', jsonb_build_array(:'tag'))), 0, NULL, 100, false);

\echo '== 3. A one-event stream append (rolled back)'
BEGIN;
SELECT es.append_to_stream('bench_scale', 'explain-stream', 0,
  '[{"type":"Ev","payload":{"course_id":"c-000123","student_id":"s-000456","amount":1234,"currency":"EUR","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"tags":["client:c0","entity:explain-1"]}]');
ROLLBACK;

\echo '== 4. A conditional append on a disjoint boundary (rolled back)'
BEGIN;
SELECT es.append_events('bench_scale',
  '[{"type":"Ev","payload":{"course_id":"c-000123","student_id":"s-000456","amount":1234,"currency":"EUR","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"tags":["client:c0","entity:explain-2"]}]',
  '[{"tags":["entity:explain-2"]}]', 0);
ROLLBACK;

\echo '== 5. A DCB Read of a boundary that no event carries yet (the contended scenario first reads one): plain SQL, backwards and forwards'
RESET client_min_messages;
SET auto_explain.log_min_duration = -1;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM es.events e
 WHERE e.tenant_id = 'bench_scale' AND e.position > 0 AND e.position <= 9223372036854775807 AND (e.tags @> '{contended:none-yet}'::text[])
 ORDER BY e.position DESC LIMIT 1;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM es.events e
 WHERE e.tenant_id = 'bench_scale' AND e.position > 0 AND e.position <= 9223372036854775807 AND (e.tags @> '{contended:none-yet}'::text[])
 ORDER BY e.position LIMIT 100;
\echo '== 6. The same with the order hidden from the planner (position + 0): the GIN index answers'
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM es.events e
 WHERE e.tenant_id = 'bench_scale' AND e.position > 0 AND e.position <= 9223372036854775807 AND (e.tags @> '{contended:none-yet}'::text[])
 ORDER BY e.position + 0 DESC LIMIT 1;
