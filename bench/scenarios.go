package bench

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/eventstore-go/pges"
	"github.com/google/uuid"
)

// payload is the ~200-byte event body of shared/bench's pgbench baseline.
var payload = json.RawMessage(`{"course_id":"c-000123","student_id":"s-000456","amount": 1234,"currency":"EUR","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)

func event(client int, call int64, i int) pges.EventData {
	return pges.EventData{
		Type:    "Ev",
		Payload: payload,
		Tags:    []string{fmt.Sprintf("client:c%d", client), fmt.Sprintf("entity:e%d_%d", call, i)},
	}
}

const insertRaw = `INSERT INTO es_bench_raw_events (tenant_id, event_id, event_type, stream_id, stream_version, payload, metadata, tags)
VALUES ($1, $2, $3, $4, $5, $6, '{}', $7)`

// insertRawBatch inserts a batch given as the same jsonb the store receives.
const insertRawBatch = `INSERT INTO es_bench_raw_events (tenant_id, event_id, event_type, stream_id, stream_version, payload, metadata, tags)
SELECT $1, (e->>'id')::uuid, e->>'type', $2, $3 + ord, e->'payload', '{}', ARRAY(SELECT jsonb_array_elements_text(e->'tags'))
FROM jsonb_array_elements($4::jsonb) WITH ORDINALITY AS b(e, ord)`

var all = []scenario{
	{name: "stream-append-1", clients: []int{1, 8}, prepare: prepareAppend(1)},
	{name: "stream-append-100", clients: []int{1, 4}, prepare: prepareAppend(100)},
	{name: "read-stream-10000", clients: []int{1}, prepare: prepareReadStream},
}

// prepareAppend appends batchSize events per call, each client to its own
// stream with an exact expected version; the baseline inserts the same rows.
func prepareAppend(batchSize int) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		versions := make([]int64, clients)
		stream := func(c int) string { return fmt.Sprintf("%s-append%d-%dc-%d", r.runID, batchSize, clients, c) }
		storeOp := func(ctx context.Context, c int, call int64) (int, error) {
			batch := make([]pges.EventData, batchSize)
			for i := range batch {
				batch[i] = event(c, call, i)
			}
			res, err := r.store.AppendToStream(ctx, stream(c), pges.Exactly(versions[c]), batch...)
			if err != nil {
				return 0, err
			}
			versions[c] = res.StreamVersion
			return batchSize, nil
		}
		baseVersions := make([]int64, clients)
		baseOp := func(ctx context.Context, c int, call int64) (int, error) {
			if batchSize == 1 {
				e := event(c, call, 0)
				baseVersions[c]++
				_, err := r.pool.Exec(ctx, insertRaw, Tenant, uuid.Must(uuid.NewV7()), e.Type, stream(c), baseVersions[c], e.Payload, e.Tags)
				return 1, err
			}
			batch := make([]map[string]any, batchSize)
			for i := range batch {
				e := event(c, call, i)
				batch[i] = map[string]any{"id": uuid.Must(uuid.NewV7()), "type": e.Type, "payload": e.Payload, "tags": e.Tags}
			}
			b, _ := json.Marshal(batch)
			_, err := r.pool.Exec(ctx, insertRawBatch, Tenant, stream(c), baseVersions[c], b)
			baseVersions[c] += int64(batchSize)
			return batchSize, err
		}
		return storeOp, baseOp, nil
	}
}

// prepareReadStream writes a 10,000-event stream once and reads it whole per
// call with IterateStream; the baseline scans the same rows with one plain
// SELECT.
func prepareReadStream(ctx context.Context, r *runner, clients int) (op, op, error) {
	const n = 10_000
	stream := r.runID + "-read"
	for written := 0; written < n; written += 1000 {
		batch := make([]pges.EventData, 1000)
		for i := range batch {
			batch[i] = event(0, int64(written), i)
		}
		if _, err := r.store.AppendToStream(ctx, stream, pges.Any, batch...); err != nil {
			return nil, nil, err
		}
	}
	storeOp := func(ctx context.Context, c int, call int64) (int, error) {
		count := 0
		for _, err := range r.store.IterateStream(ctx, stream, 0) {
			if err != nil {
				return count, err
			}
			count++
		}
		if count != n {
			return count, fmt.Errorf("read %d events, want %d", count, n)
		}
		return count, nil
	}
	baseOp := func(ctx context.Context, c int, call int64) (int, error) {
		rows, err := r.pool.Query(ctx, `SELECT position, tx_id, event_id, event_type, stream_id, stream_version, payload, metadata, tags, recorded_at
			FROM es.events WHERE tenant_id = $1 AND stream_id = $2 ORDER BY stream_version`, Tenant, stream)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		count := 0
		for rows.Next() {
			if _, err := rows.Values(); err != nil {
				return count, err
			}
			count++
		}
		return count, rows.Err()
	}
	return storeOp, baseOp, nil
}
