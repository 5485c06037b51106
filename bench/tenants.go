package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TenantScale measures how the store behaves as the number of tenants (one
// partition of each tenant table per tenant) grows: for each count it tops
// the bench tenants (bench_t_00001, ...) up to that count, timing every
// create, then measures a one-event stream append and a 100-event stream
// read on one tenant beside their plain-SQL baselines, and the drop of ten
// extra tenants. The tenants stay for the next, larger count.
func TenantScale(ctx context.Context, pool *pgxpool.Pool, cfg Config, counts []int) ([]Result, error) {
	r, err := newRunner(ctx, pool, cfg)
	if err != nil {
		return nil, err
	}
	m := tenant.NewManager(r.pool)
	var results []Result
	have := 0
	if err := r.pool.QueryRow(ctx, "SELECT count(*) FROM es.tenants WHERE tenant_id LIKE 'bench\\_t\\_%'").Scan(&have); err != nil {
		return nil, err
	}
	for _, n := range counts {
		var creates []time.Duration
		start := time.Now()
		for have < n {
			have++
			t0 := time.Now()
			if _, err := m.Create(ctx, fmt.Sprintf("%s_t_%05d", Tenant, have), ""); err != nil {
				return results, err
			}
			creates = append(creates, time.Since(t0))
			if cfg.Progress != nil && have%1000 == 0 {
				fmt.Fprintf(cfg.Progress, "  %d bench tenants created\n", have)
			}
		}
		if len(creates) > 0 {
			results = append(results, timings(fmt.Sprintf("tenant-create (%d tenants)", n), creates, time.Since(start)))
		}

		// One tenant among n: append and read, beside the baselines.
		id := fmt.Sprintf("%s_t_%05d", Tenant, max(1, n/2))
		store, err := pges.New(r.pool, nil)
		if err != nil {
			return results, err
		}
		sub := &runner{pool: r.pool, store: store.Tenant(id), cfg: cfg, runID: r.runID}
		for _, s := range []scenario{
			{name: "stream-append-1", prepare: prepareAppend(1)},
			{name: "read-stream-100", prepare: prepareReadSmall},
		} {
			storeOp, baseOp, err := s.prepare(ctx, sub, 1)
			if err != nil {
				return results, err
			}
			name := fmt.Sprintf("%s (%d tenants)", s.name, n)
			base, err := sub.measure(ctx, name+" (baseline)", 1, baseOp)
			if err != nil {
				return results, err
			}
			res, err := sub.measure(ctx, name, 1, storeOp)
			if err != nil {
				return results, err
			}
			res.Baseline, res.Ratio = &base, res.EventsPerSec/base.EventsPerSec
			results = append(results, res)
		}

		// Drops: ten extra tenants holding ten events each.
		var drops []time.Duration
		start = time.Now()
		for i := 0; i < 10; i++ {
			id := fmt.Sprintf("%s_drop_%d", Tenant, i)
			if _, err := m.Create(ctx, id, ""); err != nil {
				return results, err
			}
			batch := make([]pges.EventData, 10)
			for k := range batch {
				batch[k] = event(0, int64(k), k)
			}
			if _, err := store.Tenant(id).Append(ctx, batch, nil); err != nil {
				return results, err
			}
			t0 := time.Now()
			if _, err := m.Drop(ctx, id); err != nil {
				return results, err
			}
			drops = append(drops, time.Since(t0))
		}
		results = append(results, timings(fmt.Sprintf("tenant-drop (%d tenants)", n), drops, time.Since(start)))
	}
	return results, nil
}

// timings summarizes one-off operations (creates, drops) as a Result whose
// "events" are the operations.
func timings(name string, d []time.Duration, elapsed time.Duration) Result {
	slices.Sort(d)
	return Result{Scenario: name, Clients: 1, Calls: int64(len(d)), Events: int64(len(d)), Elapsed: elapsed,
		P50: percentile(d, 0.5), P95: percentile(d, 0.95), P99: percentile(d, 0.99),
		EventsPerSec: float64(len(d)) / elapsed.Seconds()}
}

// prepareReadSmall writes a 100-event stream and reads it whole per call;
// the baseline selects the same rows.
func prepareReadSmall(ctx context.Context, r *runner, clients int) (op, op, error) {
	stream := r.phase() + "-read100"
	batch := make([]pges.EventData, 100)
	for i := range batch {
		batch[i] = event(0, 0, i)
	}
	if _, err := r.store.AppendToStream(ctx, stream, pges.NoStream, batch...); err != nil {
		return nil, nil, err
	}
	storeOp := func(ctx context.Context, c int, call int64) (int, error) {
		events, err := r.store.ReadStream(ctx, stream, pges.ReadOptions{})
		return len(events), err
	}
	return storeOp, scanStream(r, stream), nil
}
