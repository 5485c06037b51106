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

// TenantScale measures how the store behaves as the number of tenants
// grows, in the tenant layout cfg.Layout (ApplyLayout; the default is one
// partition of each tenant table per tenant): for each count it tops the
// bench tenants (bench_t_00001, ...) up to that count, timing every create,
// then measures a one-event stream append and a 100-event stream read on one
// tenant beside their plain-SQL baselines, and the drop of ten extra tenants
// holding ten events each. In a hybrid layout those tenants share the hash
// leaves (their drop is a DELETE), and it also times giving three tenants
// of ten events their own partitions (es.dedicate_tenant). The tenants stay
// for the next, larger count. With cfg.LargeTenantEvents it ends with the
// drop of one tenant holding that many events.
func TenantScale(ctx context.Context, pool *pgxpool.Pool, cfg Config, counts []int) ([]Result, error) {
	if err := ApplyLayout(ctx, pool, cfg.Layout, cfg.HashPartitions); err != nil {
		return nil, err
	}
	layout := cfg.Layout
	if layout == "" {
		layout = LayoutPerTenant
	}
	hybrid := layout == LayoutHybrid || layout == LayoutHybridGeneric
	r, err := newRunner(ctx, pool, cfg)
	if err != nil {
		return nil, err
	}
	m := tenant.NewManager(r.pool)
	store, err := pges.New(r.pool, nil)
	if err != nil {
		return nil, err
	}
	var results []Result
	have := 0
	if err := r.pool.QueryRow(ctx, "SELECT count(*) FROM es.tenants WHERE tenant_id LIKE 'bench\\_t\\_%'").Scan(&have); err != nil {
		return nil, err
	}
	// withEvents creates a tenant holding n events (batches of at most 1,000).
	withEvents := func(id string, n int) error {
		if _, err := m.Create(ctx, id, ""); err != nil {
			return err
		}
		for written := 0; written < n; written += 1000 {
			batch := make([]pges.EventData, min(1000, n-written))
			for k := range batch {
				batch[k] = event(0, int64(written), k)
			}
			if _, err := store.Tenant(id).Append(ctx, batch, nil); err != nil {
				return err
			}
		}
		return nil
	}
	name := func(scenario string, n int) string {
		if layout == LayoutPerTenant {
			return fmt.Sprintf("%s (%d tenants)", scenario, n)
		}
		return fmt.Sprintf("%s (%d tenants, %s)", scenario, n, layout)
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
			results = append(results, timings(name("tenant-create", n), creates, time.Since(start)))
		}

		// One tenant among n: append and read, beside the baselines.
		id := fmt.Sprintf("%s_t_%05d", Tenant, max(1, n/2))
		// Streams named per count: two counts may pick the same tenant.
		sub := &runner{pool: r.pool, store: store.Tenant(id), cfg: cfg, runID: fmt.Sprintf("%s_n%d", r.runID, n)}
		for _, s := range []scenario{
			{name: "stream-append-1", prepare: prepareAppend(1)},
			{name: "read-stream-100", prepare: prepareReadSmall},
		} {
			storeOp, baseOp, err := s.prepare(ctx, sub, 1)
			if err != nil {
				return results, err
			}
			name := name(s.name, n)
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
			if err := withEvents(id, 10); err != nil {
				return results, err
			}
			t0 := time.Now()
			if _, err := m.Drop(ctx, id); err != nil {
				return results, err
			}
			drops = append(drops, time.Since(t0))
		}
		results = append(results, timings(name("tenant-drop", n), drops, time.Since(start)))

		if hybrid {
			// Dedicating: three tenants of ten events move to their own
			// partitions (a scan of the shared leaves), then are dropped.
			var dedicates []time.Duration
			start = time.Now()
			for i := 0; i < 3; i++ {
				id := fmt.Sprintf("%s_dedicated_%d", Tenant, i)
				if err := withEvents(id, 10); err != nil {
					return results, err
				}
				t0 := time.Now()
				if _, err := r.pool.Exec(ctx, "SELECT es.dedicate_tenant($1)", id); err != nil {
					return results, fmt.Errorf("dedicate %s: %w", id, err)
				}
				dedicates = append(dedicates, time.Since(t0))
				if _, err := m.Drop(ctx, id); err != nil {
					return results, err
				}
			}
			results = append(results, timings(name("tenant-dedicate", n), dedicates, time.Since(start)))
		}
	}
	if cfg.LargeTenantEvents > 0 && len(counts) > 0 {
		id := Tenant + "_large"
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "  writing %d events to %s\n", cfg.LargeTenantEvents, id)
		}
		if err := withEvents(id, cfg.LargeTenantEvents); err != nil {
			return results, err
		}
		t0 := time.Now()
		if _, err := m.Drop(ctx, id); err != nil {
			return results, err
		}
		d := time.Since(t0)
		res := timings(name(fmt.Sprintf("tenant-drop-%d-events", cfg.LargeTenantEvents), counts[len(counts)-1]), []time.Duration{d}, d)
		results = append(results, res)
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
