-- Server-side mean per call of 300 calls, for the shared probe and its
-- dedicated twin, round-robin, 3 rounds.
CREATE OR REPLACE FUNCTION pg_temp.per_call(p_sql text, p_n int) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; BEGIN
  EXECUTE p_sql; -- warm
  t0 := clock_timestamp();
  FOR i IN 1 .. p_n LOOP EXECUTE p_sql; END LOOP;
  RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1000 / p_n, 3);
END $$;
CREATE TEMP TABLE calls(k int, name text, sql text);
INSERT INTO calls VALUES
 (1, 'condition check: c5 after the head (none newer)', $q$SELECT es.first_match('%s', '[{"tags":["course:c5"]}]', 9000000000)$q$),
 (2, 'condition check: empty boundary c5+s7', $q$SELECT es.first_match('%s', '[{"tags":["course:c5","student:s7"]}]', 0)$q$),
 (3, 'tag read course:c5 (10 events)', $q$SELECT count(*) FROM es.read_events('%s', '[{"tags":["course:c5"]}]', 0, NULL, 100, false)$q$),
 (4, 'tag read region:r3 (100 of 100)', $q$SELECT count(*) FROM es.read_events('%s', '[{"tags":["region:r3"]}]', 0, NULL, 100, false)$q$),
 (5, 'type read CourseDefined (100 of 250)', $q$SELECT count(*) FROM es.read_events('%s', '[{"types":["CourseDefined"]}]', 0, NULL, 100, false)$q$),
 (6, 'log read from the start (100)', $q$SELECT count(*) FROM es.read_log('%s', '0', 0, '{}', 100, NULL)$q$),
 (7, 'stream-less head for a decision (read_head c5)', $q$SELECT es.read_head('%s', '[{"tags":["course:c5"]}]')$q$);
CREATE TEMP TABLE res(round int, k int, tenant text, ms numeric);
DO $$
DECLARE c record; r int; t text;
BEGIN
  FOR r IN 1 .. 3 LOOP
    FOR c IN SELECT * FROM calls ORDER BY k LOOP
      FOREACH t IN ARRAY ARRAY['probe', 'probed'] LOOP
        PERFORM set_config('es.tenant_id', t, false);
        INSERT INTO res VALUES (r, c.k, t, pg_temp.per_call(format(c.sql, t), 300));
      END LOOP;
    END LOOP;
  END LOOP;
END $$;
SELECT c.k, c.name,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE tenant = 'probe') AS shared_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE tenant = 'probed') AS dedicated_ms,
       string_agg(ms::text, ' ' ORDER BY round) FILTER (WHERE tenant = 'probe') AS shared_rounds,
       string_agg(ms::text, ' ' ORDER BY round) FILTER (WHERE tenant = 'probed') AS dedicated_rounds
  FROM res JOIN calls c USING (k) GROUP BY c.k, c.name ORDER BY c.k;
