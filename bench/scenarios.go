package bench

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/tenant"
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
		return prepareAppendTo(r.store, batchSize)(ctx, r, clients)
	}
}

// prepareAppendTo is prepareAppend through a store of the caller's.
func prepareAppendTo(store *pges.TenantStore, batchSize int) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		versions := make([]int64, clients)
		phase := r.phase()
		stream := func(c int) string { return fmt.Sprintf("%s-append%d-%dc-%d", phase, batchSize, clients, c) }
		storeOp := func(ctx context.Context, c int, call int64) (int, error) {
			batch := make([]pges.EventData, batchSize)
			for i := range batch {
				batch[i] = event(c, call, i)
			}
			res, err := store.AppendToStream(ctx, stream(c), pges.Exactly(versions[c]), batch...)
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
			s := stream(c)
			err := insertRawEvents(ctx, r, c, call, &s, baseVersions[c], batchSize)
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
	return storeOp, scanStream(r, stream), nil
}

// scanStream is the read baselines: one plain SELECT of a stream's rows,
// scanned into the same Go types the store decodes into.
func scanStream(r *runner, stream string) op {
	return func(ctx context.Context, c int, call int64) (int, error) {
		return readRows(ctx, r.pool, "SELECT "+eventColumns+" FROM es.events WHERE tenant_id = $1 AND stream_id = $2 ORDER BY stream_version",
			r.store.TenantID(), stream)
	}
}

func init() {
	all = append(all,
		scenario{name: "dcb-append-disjoint", clients: []int{1, 8}, prepare: prepareDCBDisjoint},
		scenario{name: "dcb-append-contended", clients: []int{8}, prepare: prepareDCBContended},
		scenario{name: "dcb-check-10k", clients: []int{1}, prepare: prepareCheckAtSize(10_000)},
		scenario{name: "dcb-check-1m", clients: []int{1}, prepare: prepareCheckAtSize(1_000_000)},
	)
}

// insertRawEvents inserts n event rows in one statement, from the same
// jsonb a store append sends; stream nil for events without a stream.
func insertRawEvents(ctx context.Context, r *runner, c int, call int64, stream *string, baseVersion int64, n int) error {
	batch := make([]map[string]any, n)
	for i := range batch {
		e := event(c, call, i)
		batch[i] = map[string]any{"id": uuid.Must(uuid.NewV7()), "type": e.Type, "payload": e.Payload, "tags": e.Tags}
	}
	b, _ := json.Marshal(batch)
	_, err := r.pool.Exec(ctx, insertRawBatch, Tenant, stream, baseVersion, b)
	return err
}

// insertBatch is the baseline of a batchSize-event append without a stream.
func insertBatch(r *runner, batchSize int) op {
	return func(ctx context.Context, c int, call int64) (int, error) {
		return batchSize, insertRawEvents(ctx, r, c, call, nil, 0, batchSize)
	}
}

// insertOne is the baseline of every one-event scenario: the same row,
// plain INSERT.
func insertOne(r *runner) op {
	return func(ctx context.Context, c int, call int64) (int, error) {
		e := event(c, call, 0)
		_, err := r.pool.Exec(ctx, insertRaw, Tenant, uuid.Must(uuid.NewV7()), e.Type, nil, nil, e.Payload, e.Tags)
		return 1, err
	}
}

// prepareDCBDisjoint: every call is a conditional append "fail if an event
// with my entity tag exists", on a boundary no other call shares.
func prepareDCBDisjoint(ctx context.Context, r *runner, clients int) (op, op, error) {
	phase := r.phase()
	storeOp := func(ctx context.Context, c int, call int64) (int, error) {
		e := event(c, call, 0)
		e.Tags[1] = fmt.Sprintf("entity:%s_%d", phase, call)
		_, err := r.store.Append(ctx, []pges.EventData{e}, &pges.AppendCondition{FailIfEventsMatch: pges.Tags(e.Tags[1])})
		return 1, err
	}
	return storeOp, insertOne(r), nil
}

// prepareDCBContended: all clients decide on one boundary: read it, then
// append conditioned on the read's head. Conflicts are counted, not failed.
func prepareDCBContended(ctx context.Context, r *runner, clients int) (op, op, error) {
	q := pges.Tags("contended:" + r.phase())
	storeOp := func(ctx context.Context, c int, call int64) (int, error) {
		res, err := r.store.Read(ctx, q, pges.QueryOptions{Backwards: true, Limit: 1})
		if err != nil {
			return 0, err
		}
		for _, err := range res.Events {
			if err != nil {
				return 0, err
			}
		}
		e := event(c, call, 0)
		e.Tags = append(e.Tags, q[0].Tags[0])
		_, err = r.store.Append(ctx, []pges.EventData{e}, &pges.AppendCondition{FailIfEventsMatch: q, After: res.Head})
		return 1, err
	}
	return storeOp, insertOne(r), nil
}

// prepareCheckAtSize fills a tenant of its own (bench_log_<size>) to size
// events once, then measures conditional appends whose check finds nothing:
// the condition check's latency as the log grows.
func prepareCheckAtSize(size int) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		ts, err := r.sizedTenant(ctx, size)
		if err != nil {
			return nil, nil, err
		}
		phase := r.phase()
		storeOp := func(ctx context.Context, c int, call int64) (int, error) {
			e := event(c, call, 0)
			e.Tags[1] = fmt.Sprintf("probe:%s_%d", phase, call)
			_, err := ts.Append(ctx, []pges.EventData{e}, &pges.AppendCondition{FailIfEventsMatch: pges.Tags(e.Tags[1])})
			return 1, err
		}
		return storeOp, insertOne(r), nil
	}
}

// sizedTenant returns a tenant of its own (bench_log_<size>), dedicated and
// filled to at least size events by Load; scenarios of the same size share
// it.
func (r *runner) sizedTenant(ctx context.Context, size int) (*pges.TenantStore, error) {
	id := fmt.Sprintf("%s_log_%d", Tenant, size)
	if _, err := tenant.NewManager(r.pool).Create(ctx, id, "bench: log of a fixed size"); err != nil {
		return nil, err
	}
	store, err := pges.New(r.pool, nil)
	if err != nil {
		return nil, err
	}
	ts := store.Tenant(id)
	return ts, fill(ctx, r, ts, size)
}

// fill tops a tenant up to size events with the scale study's loader
// (Load: realistic types, 2-4 tags per event from skewed distributions,
// streams of varied length), then analyzes it.
func fill(ctx context.Context, r *runner, ts *pges.TenantStore, size int) error {
	if _, err := Load(ctx, r.pool, ts.TenantID(), int64(size), r.cfg.Progress); err != nil {
		return err
	}
	// Measure with the statistics a long-lived log has, not a fresh load's.
	_, err := r.pool.Exec(ctx, "SELECT es.analyze_tenant($1)", ts.TenantID())
	return err
}
