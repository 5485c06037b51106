-- The indexes of 00001/00007 instead of 00011's, same data (the dedicated
-- partition's GIN index on tags becomes part of events_tags).
CREATE INDEX events_tags ON es.events USING gin (tags) WITH (fastupdate = off);
CREATE INDEX events_type ON es.events (event_type, position);
CREATE INDEX events_tx ON es.events (tx_id, position);
DROP INDEX es.events_shared_tags, es.events_tenant_type, es.events_tenant_tx;
VACUUM ANALYZE es.events;
