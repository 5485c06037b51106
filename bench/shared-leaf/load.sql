-- The shared-leaf study of bench/RESULTS.md ("Adopted: shared and dedicated
-- tenants"): run with psql on a fresh database after `esadmin migrate up`.
-- 625 tenants in the probe's leaf, 1,000 events each with one tag vocabulary.
SELECT es.create_tenant('probe'), es.create_tenant('probed');
CREATE TABLE leafmates AS
SELECT id FROM (SELECT 'n' || i AS id FROM generate_series(1, 30000) i) c
 WHERE es.shared_leaf('es."events$shared"', id) = es.shared_leaf('es."events$shared"', 'probe') LIMIT 625;
SELECT count(es.create_tenant(id)) FROM leafmates;
SET es.push = 'off';
INSERT INTO es.events (tenant_id, position, event_id, event_type, payload, tags)
SELECT t, nextval('es.event_position'), gen_random_uuid(),
       (ARRAY['StudentSubscribed','StudentUnsubscribed','CourseDefined','CourseCapacityChanged'])[1 + (n % 4)],
       jsonb_build_object('n', n, 'pad', repeat('x', 150)),
       ARRAY['course:c' || (n % 100), 'student:s' || (n % 1000), 'region:r' || (n % 10)]
  FROM generate_series(1, 1000) n,
       (SELECT id AS t FROM leafmates UNION ALL SELECT 'probe' UNION ALL SELECT 'probed') ts
 ORDER BY n, t;
\timing on
SELECT es.dedicate_tenant('probed');
\timing off
VACUUM ANALYZE es.events;
SELECT es.shared_leaf('es."events$shared"', 'probe') AS leaf, (SELECT count(*) FROM leafmates) AS mates;
