-- The bench's baseline table: the same event row as es.events, in a plain
-- table with only a bigserial primary key (the shape of shared/bench's
-- pgbench baseline). Bench runs insert into it beside the store to measure
-- the machine's own limit in the same run. Kept apart from the store's schema
-- and its goose history (table es_bench_goose_version).

-- +goose Up
CREATE TABLE es_bench_raw_events (
    id             bigserial PRIMARY KEY,
    tenant_id      text NOT NULL,
    event_id       uuid NOT NULL,
    event_type     text NOT NULL,
    stream_id      text,
    stream_version bigint,
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    tags           text[] NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE es_bench_raw_events;
