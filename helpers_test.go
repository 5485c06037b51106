package pges_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/jackc/pgx/v5/pgxpool"
)

// newTenant returns a store scoped to a fresh tenant of the test's own,
// connected as the runtime role (row-level security applies), and an admin
// pool (the schema owner) for setup and for counting rows behind its back.
func newTenant(t *testing.T) (*pges.TenantStore, *pgxpool.Pool) {
	t.Helper()
	admin := testdb.Pool(t)
	store, err := pges.New(testdb.RuntimePool(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return store.Tenant(testdb.NewTenant(t, admin)), admin
}

func testdbPool(t *testing.T) *pgxpool.Pool { return testdb.Pool(t) }

func newTenantID(t *testing.T, pool *pgxpool.Pool) string { return testdb.NewTenant(t, pool) }

func ev(typ string, payload any) pges.EventData {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return pges.EventData{Type: typ, Payload: b}
}

// countEvents counts a tenant's rows straight from the table.
func countEvents(t *testing.T, pool *pgxpool.Pool, tenant string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM es.events WHERE tenant_id = $1", tenant).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustAppend(t *testing.T, ts *pges.TenantStore, stream string, expected pges.ExpectedVersion, events ...pges.EventData) pges.AppendResult {
	t.Helper()
	res, err := ts.AppendToStream(context.Background(), stream, expected, events...)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

func numbered(typ string, n int) []pges.EventData {
	out := make([]pges.EventData, n)
	for i := range out {
		out[i] = ev(typ, map[string]int{"n": i + 1})
	}
	return out
}

func types(events []pges.RecordedEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = fmt.Sprintf("%s@%d", e.Type, e.StreamVersion)
	}
	return out
}
