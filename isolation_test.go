package pges_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/jackc/pgx/v5/pgxpool"
)

// fingerprint is everything tenant holds, as the owner sees it.
func fingerprint(t *testing.T, admin *pgxpool.Pool, tenant string) string {
	t.Helper()
	var s string
	err := admin.QueryRow(context.Background(), `
		SELECT coalesce((SELECT string_agg(md5(e::text), ',' ORDER BY position) FROM es.events e WHERE tenant_id = $1), '')
		    || '|' || coalesce((SELECT string_agg(md5(s::text), ',' ORDER BY stream_id, stream_version) FROM es.snapshots s WHERE tenant_id = $1), '')
		    || '|' || coalesce((SELECT status FROM es.tenants WHERE tenant_id = $1), 'gone')`, tenant).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// As the runtime role with tenant A set, no statement however written reads
// or changes tenant B's rows; with no tenant set, nothing is visible at all.
func TestTenantIsolationAsRuntimeRole(t *testing.T) {
	ctx := context.Background()
	admin := testdb.Pool(t)
	a, b := testdb.NewTenant(t, admin), testdb.NewTenant(t, admin)
	store, _ := pges.New(admin, nil)
	for _, id := range []string{a, b} {
		ts := store.Tenant(id)
		mustAppend(t, ts, "s", pges.NoStream, tagged("Secret", "shared-tag"))
		if err := ts.SaveSnapshot(ctx, "s", 1, 1, json.RawMessage(`{"secret":true}`)); err != nil {
			t.Fatal(err)
		}
	}
	// B's rows sit in a hash leaf of the shared partition, which other
	// tenants may share; a dedicated tenant's in partitions of its own.
	// Neither kind of table is open to the runtime role.
	var leafB string
	if err := admin.QueryRow(ctx, `SELECT es.shared_leaf('es."events$shared"', $1)::text`, b).Scan(&leafB); err != nil {
		t.Fatal(err)
	}
	c := testdb.NewTenant(t, admin)
	if _, err := admin.Exec(ctx, "SELECT es.dedicate_tenant($1)", c); err != nil {
		t.Fatal(err)
	}
	beforeB := fingerprint(t, admin, b)

	conn, err := testdb.RuntimePool(t).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false)", a); err != nil {
		t.Fatal(err)
	}
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	if n := count("SELECT count(*) FROM es.events"); n != 1 {
		t.Fatalf("tenant A sees %d events, want its own 1", n)
	}
	for _, q := range []string{
		"SELECT count(*) FROM es.events WHERE tenant_id = $1",
		"SELECT count(*) FILTER (WHERE tenant_id = $1) FROM es.events WHERE true OR tenant_id <> $1",
		"SELECT count(*) FROM es.snapshots WHERE tenant_id = $1",
		"SELECT count(*) FROM es.tenants WHERE tenant_id = $1",
		"SELECT count(*) FROM es.events WHERE tags @> ARRAY['shared-tag'] AND tenant_id = $1",
	} {
		if n := count(q, b); n != 0 {
			t.Errorf("%s with tenant B's id: %d rows visible", q, n)
		}
	}

	// Every attempt on B's rows is refused or changes nothing.
	refused := []struct{ sql, want string }{
		{"SELECT count(*) FROM " + leafB, "permission denied"},
		{`SELECT count(*) FROM es."events$shared"`, "permission denied"},
		{"SELECT count(*) FROM es.events_" + c, "permission denied"},
		{"SELECT count(*) FROM es.snapshots_" + c, "permission denied"},
		{"SELECT es.dedicate_tenant($1)", "permission denied"},
		{"SELECT es.analyze_tenant($1)", "permission denied"},
		{"UPDATE es.events SET payload = '{}' WHERE tenant_id = $1", "permission denied"},
		{"DELETE FROM es.events WHERE tenant_id = $1", "permission denied"},
		{"UPDATE es.events SET payload = '{}'", "permission denied"}, // events are immutable, A's too
		{"INSERT INTO es.events (tenant_id, position, event_id, event_type, payload) VALUES ($1, 1, gen_random_uuid(), 'X', '{}')", "permission denied"},
		{"INSERT INTO es.snapshots (tenant_id, stream_id, stream_version, schema_version, state) VALUES ($1, 's', 1, 1, '{}')", "row-level security"},
		{"SELECT * FROM es.append_to_stream($1, 's', -1, '[{\"type\":\"X\",\"payload\":{}}]')", "not the tenant of this transaction"},
		{"SELECT * FROM es.append_events($1, '[{\"type\":\"X\",\"payload\":{}}]')", "not the tenant of this transaction"},
		{"SELECT * FROM es.read_stream($1, 's')", "not the tenant of this transaction"},
		{"SELECT * FROM es.read_events($1, '[{}]')", "not the tenant of this transaction"},
		{"SELECT es.read_head($1, '[{}]')", "not the tenant of this transaction"},
		{"SELECT es.save_snapshot($1, 's', 1, 1, '{}')", "not the tenant of this transaction"},
		{"SELECT * FROM es.load_snapshot($1, 's')", "not the tenant of this transaction"},
		{"SELECT es.delete_stream($1, 's', -1)", "not the tenant of this transaction"},
		{"SELECT es.set_tenant_status($1, 'suspended')", "permission denied"},
		{"SELECT es.drop_tenant($1)", "permission denied"},
		{"SELECT es.create_tenant('evil')", "permission denied"},
	}
	for _, r := range refused {
		args := []any{b}
		if !strings.Contains(r.sql, "$1") {
			args = nil
		}
		_, err := conn.Exec(ctx, r.sql, args...)
		if err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("%s: err %v, want %q", r.sql, err, r.want)
		}
	}
	for _, sql := range []string{
		"UPDATE es.snapshots SET state = '{}' WHERE tenant_id = $1",
		"DELETE FROM es.snapshots WHERE tenant_id = $1",
		"UPDATE es.snapshots SET tenant_id = $1",
	} {
		tag, err := conn.Exec(ctx, sql, b)
		if err == nil && tag.RowsAffected() != 0 && strings.Contains(sql, "WHERE") {
			t.Errorf("%s changed %d rows", sql, tag.RowsAffected())
		}
		if err != nil && !strings.Contains(err.Error(), "row-level security") {
			t.Errorf("%s: %v", sql, err)
		}
	}
	if after := fingerprint(t, admin, b); after != beforeB {
		t.Fatal("tenant B's data changed through a connection scoped to tenant A")
	}

	// With no tenant set: nothing is visible and nothing can be written.
	if _, err := conn.Exec(ctx, "RESET es.tenant_id"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SELECT count(*) FROM es.events", "SELECT count(*) FROM es.snapshots", "SELECT count(*) FROM es.tenants"} {
		if n := count(q); n != 0 {
			t.Errorf("no tenant set: %s = %d", q, n)
		}
	}
	beforeA := fingerprint(t, admin, a)
	if _, err := conn.Exec(ctx, "SELECT * FROM es.append_to_stream($1, 's', -1, '[{\"type\":\"X\",\"payload\":{}}]')", a); err == nil {
		t.Error("no tenant set: an append succeeded")
	}
	if fingerprint(t, admin, a) != beforeA || fingerprint(t, admin, b) != beforeB {
		t.Fatal("no tenant set: data changed")
	}

	// A tenant id that is not registered: the shared partition would take
	// its rows, to be seen by a tenant created later with that id. The
	// policies refuse them.
	ghost := "ghost-" + a
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false)", ghost); err != nil {
		t.Fatal(err)
	}
	for sql, want := range map[string]string{
		"INSERT INTO es.events (tenant_id, position, event_id, event_type, payload) VALUES ($1, 1, gen_random_uuid(), 'X', '{}')": "permission denied",
		"INSERT INTO es.snapshots (tenant_id, stream_id, stream_version, schema_version, state) VALUES ($1, 's', 1, 1, '{}')":     "row-level security",
	} {
		if _, err := conn.Exec(ctx, sql, ghost); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("unregistered tenant: %s: %v, want %q", sql, err, want)
		}
	}
	if n := countEvents(t, admin, ghost); n != 0 {
		t.Errorf("%d events of an unregistered tenant", n)
	}
}

// The Go API scopes every statement itself: a runtime-role store reads and
// writes exactly the tenant of its handle.
func TestStoreSetsTheTenantPerStatement(t *testing.T) {
	ctx := context.Background()
	admin := testdb.Pool(t)
	a, b := testdb.NewTenant(t, admin), testdb.NewTenant(t, admin)
	store, _ := pges.New(testdb.RuntimePool(t), nil)
	mustAppend(t, store.Tenant(a), "s", pges.NoStream, tagged("A", "k"))
	mustAppend(t, store.Tenant(b), "s", pges.NoStream, tagged("B", "k"), tagged("B", "k"))
	for id, want := range map[string]int{a: 1, b: 2} {
		events, _, err := store.Tenant(id).ReadAll(ctx, pges.Tags("k"), pges.QueryOptions{})
		if err != nil || len(events) != want {
			t.Fatalf("tenant %s: %d events, %v; want %d", id, len(events), err, want)
		}
		for _, e := range events {
			if e.Type != map[string]string{a: "A", b: "B"}[id] {
				t.Fatalf("tenant %s read an event of the other tenant", id)
			}
		}
	}
}

// The runtime role cannot forge its own tenant's log (issue 17): no row
// reaches es.events but through the API's checks, which choose positions,
// transaction ids and versions and refuse reserved types. Before migration
// 00012 each of these INSERTs was accepted. Nor can it draw positions to
// learn every tenant's write volume.
func TestRuntimeRoleCannotForgeTheLog(t *testing.T) {
	ctx := context.Background()
	admin := testdb.Pool(t)
	a := testdb.NewTenant(t, admin)
	store, _ := pges.New(admin, nil)
	mustAppend(t, store.Tenant(a), "s", pges.NoStream, tagged("Real", "k"))
	before := fingerprint(t, admin, a)
	conn, err := testdb.RuntimePool(t).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false)", a); err != nil {
		t.Fatal(err)
	}
	insert := "INSERT INTO es.events (tenant_id, position, tx_id, event_id, event_type, stream_id, stream_version, payload) VALUES ($1, %s, %s, gen_random_uuid(), %s, %s, %s, '{}')"
	for name, sql := range map[string]string{
		"position 2^62":       fmt.Sprintf(insert, "4611686018427387904", "pg_current_xact_id()", "'X'", "NULL", "NULL"),
		"an old tx_id":        fmt.Sprintf(insert, "1000000000", "'3'::xid8", "'X'", "NULL", "NULL"),
		"type $tombstone":     fmt.Sprintf(insert, "1000000001", "pg_current_xact_id()", "'$tombstone'", "'s'", "2"),
		"a version gap":       fmt.Sprintf(insert, "1000000002", "pg_current_xact_id()", "'X'", "'s'", "7"),
		"a stream's position": fmt.Sprintf(insert, "1000000003", "pg_current_xact_id()", "'X'", "'t'", "1"),
	} {
		if _, err := conn.Exec(ctx, sql, a); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("forged row (%s): %v, want permission denied", name, err)
		}
	}
	for _, sql := range []string{"SELECT nextval('es.event_position')", "SELECT currval('es.event_position')",
		"SELECT last_value FROM es.event_position", "SELECT * FROM es.streams"} {
		if _, err := conn.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s: %v, want permission denied", sql, err)
		}
	}
	if fingerprint(t, admin, a) != before {
		t.Fatal("the tenant's log changed")
	}
	// The API still writes for it.
	if _, err := conn.Exec(ctx, `SELECT es.append_to_stream($1, 's', 1, '[{"type":"X","payload":{}}]')`, a); err != nil {
		t.Fatalf("API append as the runtime role: %v", err)
	}
}

// A query is bounded (100 items, 100 types in all): one call cannot fill
// the lock table, whose default holds 6,400 locks (issue 17).
func TestQueriesAreBounded(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	big := make(pges.Query, 101)
	for i := range big {
		big[i] = pges.QueryItem{Tags: []string{fmt.Sprintf("t%d", i)}}
	}
	manyTypes := pges.Query{{Types: make([]string, 101)}}
	for i := range manyTypes[0].Types {
		manyTypes[0].Types[i] = fmt.Sprintf("T%d", i)
	}
	for name, q := range map[string]pges.Query{"101 items": big, "101 types": manyTypes} {
		if _, err := ts.Read(ctx, q, pges.QueryOptions{}); !errors.Is(err, pges.ErrInvalidEvent) {
			t.Errorf("read of %s: %v, want ErrInvalidEvent", name, err)
		}
		if _, err := ts.Append(ctx, []pges.EventData{tagged("X", "k")}, &pges.AppendCondition{FailIfEventsMatch: q}); !errors.Is(err, pges.ErrInvalidEvent) {
			t.Errorf("condition of %s: %v, want ErrInvalidEvent", name, err)
		}
	}
	if n := countEvents(t, pool, ts.TenantID()); n != 0 {
		t.Fatalf("%d events written", n)
	}
	// The largest legal query works.
	if _, err := ts.Read(ctx, big[:100], pges.QueryOptions{}); err != nil {
		t.Fatalf("100 items: %v", err)
	}
}
