package bench_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/bench"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5/pgxpool"
)

// scratchPool returns a pool on a freshly migrated database of its own,
// dropped when the test ends: TenantScale leaves its bench tenants behind,
// and a run refuses bench tenants of the other layout.
func scratchPool(t *testing.T, suffix string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	server := testdb.ServerURL()
	admin, err := pgxpool.New(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	name := fmt.Sprintf("pges_test_bench_layout_%s_%d", suffix, os.Getpid())
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme == "" {
		t.Skipf("scratch databases need a URL-form server address, got %q", server)
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	if err := pges.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// Each layout measures every scenario under its own names, leaves its bench
// tenants shared or dedicated, and drops every extra tenant with its rows.
func TestTenantScaleLayouts(t *testing.T) {
	for _, layout := range bench.Layouts() {
		t.Run(layout, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := scratchPool(t, layout)
			dedicated := layout == bench.LayoutDedicated
			sfx := ""
			if dedicated {
				sfx = ", dedicated"
			}
			results, err := bench.TenantScale(ctx, pool, bench.Config{Count: 5, Layout: layout, LargeTenantEvents: 1500}, []int{1, 3})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, n := range []int{1, 3} {
				for _, s := range []string{"tenant-create", "stream-append-1", "read-stream-100", "tenant-drop", "tenant-dedicate"} {
					want = append(want, fmt.Sprintf("%s (%d tenants%s)", s, n, sfx))
				}
			}
			want = append(want, "tenant-drop-1500-events (3 tenants, shared)", "tenant-drop-1500-events (3 tenants, dedicated)")
			var names []string
			calls := map[string]int64{}
			for _, r := range results {
				names = append(names, r.Scenario)
				calls[strings.SplitN(r.Scenario, " (", 2)[0]] += r.Calls
				if r.Calls == 0 || r.P50 <= 0 {
					t.Errorf("%s: incomplete result %+v", r.Scenario, r)
				}
			}
			if !slices.Equal(names, want) {
				t.Fatalf("scenarios\n%q\nwant\n%q", names, want)
			}
			// 1 + 2 creates, 10 drops and 3 dedications per count, one drop
			// of each large tenant.
			if calls["tenant-create"] != 3 || calls["tenant-drop"] != 20 || calls["tenant-dedicate"] != 6 || calls["tenant-drop-1500-events"] != 2 {
				t.Errorf("calls %v", calls)
			}

			// Left: the bench tenant (shared) and bench_t_00001-3, which
			// have partitions of their own in the dedicated layout only; no
			// partition and no row of a dropped tenant.
			var tenants, parts, benchParts, sharedRows, orphans int
			var position int64
			if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM es.tenants),
				(SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
				  WHERE i.inhparent IN ('es.events'::regclass, 'es.snapshots'::regclass) AND c.relname NOT LIKE '%$shared'),
				(SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
				  WHERE i.inhparent IN ('es.events'::regclass, 'es.snapshots'::regclass) AND c.relname ~ '^(events|snapshots)_bench_t_0000[1-3]$'),
				(SELECT count(*) FROM es."events$shared" WHERE tenant_id LIKE 'bench\_t\_%'),
				(SELECT count(*) FROM es.events WHERE tenant_id NOT IN (SELECT tenant_id FROM es.tenants))
				  + (SELECT count(*) FROM es.snapshots WHERE tenant_id NOT IN (SELECT tenant_id FROM es.tenants)),
				(SELECT last_value FROM es.event_position)`).Scan(&tenants, &parts, &benchParts, &sharedRows, &orphans, &position); err != nil {
				t.Fatal(err)
			}
			wantParts, wantShared := 0, true
			if dedicated {
				wantParts, wantShared = 6, false
			}
			if tenants != 4 || parts != wantParts || benchParts != wantParts || (sharedRows > 0) != wantShared || orphans != 0 || position < 3000 {
				t.Errorf("%d tenants, %d partitions (%d of bench_t_*), %d bench_t_* rows in the shared leaves, %d rows of dropped tenants, position %d; want 4, %d, %d, shared rows %v, 0, >= 3000",
					tenants, parts, benchParts, sharedRows, orphans, position, wantParts, wantParts, wantShared)
			}
			m := tenant.NewManager(pool)
			for i := 1; i <= 3; i++ {
				id := fmt.Sprintf("bench_t_%05d", i)
				if st, err := m.Stats(ctx, id); err != nil || st.Dedicated != dedicated {
					t.Errorf("stats of %s: %+v, %v; want dedicated %v", id, st, err, dedicated)
				}
			}

			// Another run in the same layout tops the tenants up; one in the
			// other layout, or an unknown layout, is refused.
			results, err = bench.TenantScale(ctx, pool, bench.Config{Count: 2, Layout: layout}, []int{4})
			if err != nil || len(results) != 5 || results[0].Scenario != "tenant-create (4 tenants"+sfx+")" || results[0].Calls != 1 {
				t.Fatalf("second run: %d results (%v), %v", len(results), results, err)
			}
			if st, err := m.Stats(ctx, "bench_t_00004"); err != nil || st.Dedicated != dedicated {
				t.Errorf("stats of bench_t_00004: %+v, %v; want dedicated %v", st, err, dedicated)
			}
			other := bench.LayoutDedicated
			if dedicated {
				other = bench.LayoutShared
			}
			if _, err := bench.TenantScale(ctx, pool, bench.Config{Count: 2, Layout: other}, []int{4}); err == nil || !strings.Contains(err.Error(), "bench tenants") {
				t.Errorf("layout %s after %s: %v, want a refusal", other, layout, err)
			}
			if _, err := bench.TenantScale(ctx, pool, bench.Config{Count: 2, Layout: "hybrid"}, []int{4}); err == nil || !strings.Contains(err.Error(), "unknown layout") {
				t.Errorf("layout hybrid: %v, want unknown layout", err)
			}
		})
	}
}
