package bench_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/bench"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// scratchPool returns a pool on a freshly migrated database of its own,
// dropped when the test ends: a hybrid layout converts the schema, so it
// must not touch the package database the other tests share.
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

func TestTenantScaleHybrid(t *testing.T) {
	ctx := context.Background()
	pool := scratchPool(t, "hybrid")
	cfg := bench.Config{Count: 5, Layout: bench.LayoutHybrid, HashPartitions: 4, LargeTenantEvents: 1500}
	results, err := bench.TenantScale(ctx, pool, cfg, []int{1, 3})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range results {
		names = append(names, r.Scenario)
		if r.Calls == 0 || r.P50 <= 0 {
			t.Errorf("%s: incomplete result %+v", r.Scenario, r)
		}
	}
	for _, want := range []string{"tenant-create (3 tenants, hybrid)", "stream-append-1 (3 tenants, hybrid)",
		"read-stream-100 (1 tenants, hybrid)", "tenant-drop (3 tenants, hybrid)", "tenant-dedicate (3 tenants, hybrid)",
		"tenant-drop-1500-events (3 tenants, hybrid)"} {
		if !strings.Contains(strings.Join(names, "\n"), want) {
			t.Errorf("no result %q in %q", want, names)
		}
	}
	// Only the bench tenants remain, all in the shared leaves: es.events has
	// one partition (the DEFAULT one) with four hash leaves.
	var tenants, listParts, leaves, events int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM es.tenants),
		(SELECT count(*) FROM pg_inherits WHERE inhparent = 'es.events'::regclass),
		(SELECT count(*) FROM pg_inherits WHERE inhparent = 'es."events$shared"'::regclass),
		(SELECT count(*) FROM es.events WHERE tenant_id NOT IN (SELECT tenant_id FROM es.tenants))`).Scan(&tenants, &listParts, &leaves, &events); err != nil {
		t.Fatal(err)
	}
	if tenants != 4 || listParts != 1 || leaves != 4 || events != 0 {
		t.Errorf("%d tenants, %d partitions, %d leaves, %d orphan events; want 4 (bench and 3), 1, 4, 0", tenants, listParts, leaves, events)
	}

	// Running again on the converted database measures again.
	if _, err := bench.TenantScale(ctx, pool, bench.Config{Count: 3, Layout: bench.LayoutHybrid, HashPartitions: 4}, []int{3}); err != nil {
		t.Fatalf("second hybrid run: %v", err)
	}
	// The per-tenant layout, or another leaf count, is refused there.
	if _, err := bench.TenantScale(ctx, pool, bench.Config{Count: 3}, []int{3}); err == nil || !strings.Contains(err.Error(), "hybrid") {
		t.Fatalf("per-tenant on a hybrid database: %v, want a refusal naming the hybrid layout", err)
	}
	if err := bench.ApplyLayout(ctx, pool, bench.LayoutHybrid, 16); err == nil || !strings.Contains(err.Error(), "4 hash partitions") {
		t.Fatalf("16 leaves on a 4-leaf database: %v, want a refusal", err)
	}
	if err := bench.ApplyLayout(ctx, pool, "hash", 0); err == nil || !strings.Contains(err.Error(), "unknown layout") {
		t.Fatalf("unknown layout: %v", err)
	}

	// The SQL API and its constraints work in the shared leaves and after
	// a tenant moves to its own partition.
	m := tenant.NewManager(pool)
	store, err := pges.New(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	acme := store.Tenant("acme")
	ev := pges.EventData{Type: "E", Payload: json.RawMessage(`{"n":1}`), Tags: []string{"k:1"}}
	if _, err := acme.AppendToStream(ctx, "s", pges.NoStream, ev, ev); err != nil {
		t.Fatal(err)
	}
	dup := `INSERT INTO es.events (tenant_id, position, event_id, event_type, stream_id, stream_version, payload)
		SELECT 'acme', nextval('es.event_position'), CASE WHEN $1 THEN event_id ELSE gen_random_uuid() END, 'E', 's', CASE WHEN $1 THEN 99 ELSE 1 END, '{}'
		FROM es.events WHERE tenant_id = 'acme' LIMIT 1`
	for _, sameID := range []bool{false, true} {
		_, err := pool.Exec(ctx, dup, sameID)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			t.Errorf("duplicate (same event id %v) in a shared leaf: %v, want unique_violation", sameID, err)
		}
	}
	var dedicated bool
	if err := pool.QueryRow(ctx, "SELECT es.dedicate_tenant('acme')").Scan(&dedicated); err != nil || !dedicated {
		t.Fatalf("dedicate: %v, %v", dedicated, err)
	}
	if _, err := acme.AppendToStream(ctx, "s", pges.Exactly(2), ev); err != nil {
		t.Fatal(err)
	}
	got, err := acme.ReadStream(ctx, "s", pges.ReadOptions{})
	if err != nil || len(got) != 3 {
		t.Fatalf("read after dedicate: %d events, %v", len(got), err)
	}
	if _, err := pool.Exec(ctx, dup, false); err == nil {
		t.Error("duplicate stream version in a dedicated partition was accepted")
	}
	if st, err := m.Stats(ctx, "acme"); err != nil || st.Events != 3 || st.Bytes == 0 {
		t.Errorf("stats: %+v, %v", st, err)
	}
	if _, err := m.Create(ctx, "shared1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Tenant("shared1").AppendToStream(ctx, "s", pges.NoStream, ev); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Stats(ctx, "shared1"); err != nil || st.Events != 1 || st.Bytes == 0 {
		t.Errorf("stats of a shared tenant: %+v, %v", st, err)
	}
	for _, id := range []string{"acme", "shared1"} {
		if dropped, err := m.Drop(ctx, id); err != nil || !dropped {
			t.Fatalf("drop %s: %v, %v", id, dropped, err)
		}
	}
	var left int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM es.events WHERE tenant_id IN ('acme', 'shared1')").Scan(&left); err != nil || left != 0 {
		t.Errorf("%d events left after the drops (%v)", left, err)
	}

	// hybrid-generic on top of hybrid; then plain hybrid is refused there.
	if err := bench.ApplyLayout(ctx, pool, bench.LayoutHybridGeneric, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.AppendToStream(ctx, "x", pges.NoStream, ev); !errors.Is(err, pges.ErrTenantNotFound) {
		t.Errorf("append to a dropped tenant: %v, want ErrTenantNotFound", err)
	}
	if err := bench.ApplyLayout(ctx, pool, bench.LayoutHybrid, 4); err == nil {
		t.Error("hybrid on a hybrid-generic database was accepted")
	}
}

// A database that already holds tenants is never converted.
func TestHybridRefusesDatabaseWithTenants(t *testing.T) {
	ctx := context.Background()
	pool := scratchPool(t, "refuse")
	if _, err := tenant.NewManager(pool).Create(ctx, "acme", ""); err != nil {
		t.Fatal(err)
	}
	err := bench.ApplyLayout(ctx, pool, bench.LayoutHybrid, 0)
	if err == nil || !strings.Contains(err.Error(), "scratch database") {
		t.Fatalf("hybrid on a database with a tenant: %v, want a refusal", err)
	}
	var parts int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'es.events'::regclass").Scan(&parts); err != nil || parts != 1 {
		t.Errorf("%d partitions of es.events after the refusal (%v), want acme's only", parts, err)
	}

	// Since migration 00009 the store forces custom plans itself:
	// per-tenant and per-tenant-custom are the same layout, and both apply
	// to a database with tenants.
	for _, layout := range []string{bench.LayoutPerTenantCustom, bench.LayoutPerTenant} {
		if err := bench.ApplyLayout(ctx, pool, layout, 0); err != nil {
			t.Fatalf("%s: %v", layout, err)
		}
	}
}
