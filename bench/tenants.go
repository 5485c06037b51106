package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TenantScale measures how the store behaves as the number of tenants
// grows, in the tenant layout cfg.Layout (Layouts; empty is LayoutShared):
// for each count it tops the bench tenants (bench_t_00001, ...) up to that
// count, timing every create (in LayoutDedicated, Create and Dedicate), then
// measures a one-event stream append and a 100-event stream read on one
// tenant beside their plain-SQL baselines, the drop of ten extra tenants of
// the layout's kind holding ten events each, and the dedication of three
// shared tenants of ten events (a scan of the shared leaves). The tenants
// stay for the next, larger count; bench tenants of an earlier run in the
// other layout make it fail. With cfg.LargeTenantEvents it ends, whatever
// the layout, with the drop of a shared and of a dedicated tenant holding
// that many events: those results are named after the dropped tenant's
// kind ("tenant-drop-<N>-events (<count> tenants, shared)").
func TenantScale(ctx context.Context, pool *pgxpool.Pool, cfg Config, counts []int) ([]Result, error) {
	layout, err := checkLayout(cfg.Layout)
	if err != nil {
		return nil, err
	}
	dedicated := layout == LayoutDedicated
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
	var have, haveDedicated int
	if err := r.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE es.is_dedicated(tenant_id))
		FROM es.tenants WHERE tenant_id LIKE 'bench\_t\_%'`).Scan(&have, &haveDedicated); err != nil {
		return nil, err
	}
	if dedicated && haveDedicated < have || !dedicated && haveDedicated > 0 {
		return nil, fmt.Errorf("layout %s: %d of the %d bench tenants (%s_t_*) of an earlier run are dedicated: use another database, or drop them",
			layout, haveDedicated, have, Tenant)
	}
	// create makes a shared tenant, dedicated right away if asked.
	create := func(id string, dedicate bool) error {
		if _, err := m.Create(ctx, id, ""); err != nil {
			return err
		}
		if dedicate {
			if _, err := m.Dedicate(ctx, id); err != nil {
				return fmt.Errorf("dedicate %s: %w", id, err)
			}
		}
		return nil
	}
	// withEvents makes a fresh tenant (dropping one an interrupted run
	// left) holding n events.
	withEvents := func(id string, dedicate bool, n int) error {
		if _, err := m.Drop(ctx, id); err != nil {
			return err
		}
		if err := create(id, dedicate); err != nil {
			return err
		}
		return writeEvents(ctx, r.pool, id, n)
	}
	name := func(scenario string, n int) string {
		if dedicated {
			return fmt.Sprintf("%s (%d tenants, %s)", scenario, n, layout)
		}
		return fmt.Sprintf("%s (%d tenants)", scenario, n)
	}
	for _, n := range counts {
		var creates []time.Duration
		start := time.Now()
		for have < n {
			have++
			t0 := time.Now()
			if err := create(fmt.Sprintf("%s_t_%05d", Tenant, have), dedicated); err != nil {
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

		// Drops: ten extra tenants of the layout's kind, ten events each.
		var drops []time.Duration
		start = time.Now()
		for i := 0; i < 10; i++ {
			id := fmt.Sprintf("%s_drop_%d", Tenant, i)
			if err := withEvents(id, dedicated, 10); err != nil {
				return results, err
			}
			t0 := time.Now()
			if _, err := m.Drop(ctx, id); err != nil {
				return results, err
			}
			drops = append(drops, time.Since(t0))
		}
		results = append(results, timings(name("tenant-drop", n), drops, time.Since(start)))

		// Dedicating: three shared tenants of ten events move to their own
		// partitions, then are dropped.
		var dedicates []time.Duration
		start = time.Now()
		for i := 0; i < 3; i++ {
			id := fmt.Sprintf("%s_dedicate_%d", Tenant, i)
			if err := withEvents(id, false, 10); err != nil {
				return results, err
			}
			t0 := time.Now()
			if moved, err := m.Dedicate(ctx, id); err != nil {
				return results, fmt.Errorf("dedicate %s: %w", id, err)
			} else if !moved {
				return results, fmt.Errorf("dedicate %s: it was dedicated already", id)
			}
			dedicates = append(dedicates, time.Since(t0))
			if _, err := m.Drop(ctx, id); err != nil {
				return results, err
			}
		}
		results = append(results, timings(name("tenant-dedicate", n), dedicates, time.Since(start)))
	}
	if cfg.LargeTenantEvents > 0 && len(counts) > 0 {
		for _, kind := range []string{LayoutShared, LayoutDedicated} {
			id := Tenant + "_large_" + kind
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "  writing %d events to %s\n", cfg.LargeTenantEvents, id)
			}
			if err := withEvents(id, kind == LayoutDedicated, cfg.LargeTenantEvents); err != nil {
				return results, err
			}
			t0 := time.Now()
			if _, err := m.Drop(ctx, id); err != nil {
				return results, err
			}
			d := time.Since(t0)
			results = append(results, timings(fmt.Sprintf("tenant-drop-%d-events (%d tenants, %s)",
				cfg.LargeTenantEvents, counts[len(counts)-1], kind), []time.Duration{d}, d))
		}
	}
	return results, nil
}

// writeEvents writes n events without a stream to an existing tenant as
// the owner, one INSERT per million: the rows es.write_events would write
// (positions from es.event_position, random event ids, the transaction's
// tx_id and time) with the bench's ~200-byte payload and 2-3 tags, without
// the SQL API's per-event work.
func writeEvents(ctx context.Context, pool *pgxpool.Pool, id string, n int) error {
	const chunk = 1_000_000
	for done := 0; done < n; done += chunk {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			// No NOTIFY to subscribers (es.notify_events). The tenant's
			// "any event" key, as every writer holds it (see Load).
			if _, err := tx.Exec(ctx, "SET LOCAL es.push = off"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared(es.lock_key($1, 'a', ''))", id); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO es.events (tenant_id, position, event_id, event_type, payload, tags)
				SELECT $1, nextval('es.event_position'), gen_random_uuid(), 'Ev', $2::jsonb,
				       ARRAY['client:c0', 'entity:e' || g] || CASE WHEN g % 2 = 0 THEN ARRAY['region:' || g % 50] ELSE '{}' END
				  FROM generate_series($3::int, $4::int) g`, id, string(payload), done+1, min(n, done+chunk))
			return err
		})
		if err != nil {
			return fmt.Errorf("write %d events to %s: %w", n, id, err)
		}
	}
	return nil
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
