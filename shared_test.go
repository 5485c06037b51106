package pges_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/db"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sameLeafTenants returns two new shared tenants whose rows sit in the same
// hash leaf.
func sameLeafTenants(t *testing.T, admin *pgxpool.Pool) (string, string) {
	t.Helper()
	ctx := context.Background()
	leaf := func(id string) string {
		var l string
		if err := admin.QueryRow(ctx, `SELECT es.shared_leaf('es."events$shared"', $1)::text`, id).Scan(&l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	a := testdb.NewTenant(t, admin)
	for range 300 {
		b := testdb.NewTenant(t, admin)
		if leaf(b) == leaf(a) {
			return a, b
		}
		if _, err := admin.Exec(ctx, "SELECT es.drop_tenant($1)", b); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no two tenants in one leaf among 300")
	return "", ""
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node this test reads.
type planNode struct {
	NodeType      string     `json:"Node Type"`
	Relation      string     `json:"Relation Name"`
	Index         string     `json:"Index Name"`
	ActualRows    float64    `json:"Actual Rows"`
	RemovedFilter float64    `json:"Rows Removed by Filter"`
	RemovedCheck  float64    `json:"Rows Removed by Index Recheck"`
	Plans         []planNode `json:"Plans"`
}

// explained runs calls on a new connection scoped to tenant, with
// auto_explain reporting the plan of every statement, nested ones included,
// and returns each plan's statement text and root node.
func explained(t *testing.T, tenant string, calls []string) map[string][]planNode {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if strings.HasPrefix(n.Message, "duration:") {
			mu.Lock()
			plans = append(plans, n.Message)
			mu.Unlock()
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LOAD 'auto_explain'"); err != nil {
		t.Skipf("auto_explain cannot be loaded here: %v", err)
	}
	for _, set := range []string{
		"SET auto_explain.log_min_duration = 0", "SET auto_explain.log_analyze = on",
		"SET auto_explain.log_nested_statements = on", "SET auto_explain.log_format = 'json'",
		"SET auto_explain.log_level = 'notice'", "SET client_min_messages = 'notice'",
	} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false)", tenant); err != nil {
		t.Fatal(err)
	}
	for _, sql := range calls {
		if _, err := conn.Exec(ctx, sql, tenant); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// The Go subscriber's own read.
	if _, err := db.New().ReadLog(ctx, conn, db.ReadLogParams{TenantID: tenant, Members: 1, MaxCount: 5}); err != nil {
		t.Fatalf("ReadLog: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(plans) < len(calls)*3 {
		t.Fatalf("auto_explain reported %d plans for %d calls", len(plans), len(calls))
	}
	out := map[string][]planNode{}
	for _, p := range plans {
		var e struct {
			Text string   `json:"Query Text"`
			Plan planNode `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(p[strings.IndexByte(p, '{'):]), &e); err != nil {
			t.Fatalf("plan %q: %v", p, err)
		}
		out[e.Text] = append(out[e.Text], e.Plan)
	}
	return out
}

// walkPlans calls f on every node of every plan.
func walkPlans(plans map[string][]planNode, f func(stmt string, n planNode)) {
	var walk func(stmt string, n planNode)
	walk = func(stmt string, n planNode) {
		f(stmt, n)
		for _, c := range n.Plans {
			walk(stmt, c)
		}
	}
	for stmt, roots := range plans {
		for _, n := range roots {
			walk(stmt, n)
		}
	}
}

// A shared leaf holds hundreds of tenants, and one application's tenants
// use the same tags and types. The indexes lead with tenant_id, so a
// tenant's condition checks, tag and type reads and log reads visit its own
// entries only. Checked on every statement's plan (nested ones included,
// through auto_explain) with a neighbour in the same leaf whose events
// carry the same tags and type. With the indexes of 00001 (tags alone, type
// then position, tx_id then position) these plans read the neighbour's
// entries and filter them out.
func TestSharedLeafLookupsReadOnlyTheTenantsEntries(t *testing.T) {
	ctx := context.Background()
	admin := testdb.Pool(t)
	store, _ := pges.New(admin, nil)
	batch := func(n int, typ, course, region string) []pges.EventData {
		out := make([]pges.EventData, n)
		for i := range out {
			out[i] = pges.EventData{Type: typ, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), Tags: []string{course, region}}
		}
		return out
	}
	// setup writes the neighbour's events first, so that they come first in
	// every index order, then the tenant's.
	setup := func(neighbour, own []pges.EventData) string {
		a, b := sameLeafTenants(t, admin)
		for tenant, events := range map[string][]pges.EventData{b: neighbour, a: own} {
			if _, err := store.Tenant(tenant).Append(ctx, events, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := admin.Exec(ctx, "SELECT es.analyze_tenant($1)", a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	calls := []string{
		`SELECT count(*) FROM es.read_events($1, '[{"tags":["course:c1","region:r1"]}]', 0, NULL, 5, false)`,
		`SELECT count(*) FROM es.read_events($1, '[{"tags":["course:c1","region:r2"]}]', 0, NULL, 5, false)`,
		`SELECT count(*) FROM es.read_events($1, '[{"types":["Subscribed"]}]', 0, NULL, 5, false)`,
		`SELECT es.count_events($1, '[{"tags":["course:c1"]}]')`,
		`SELECT es.append_events($1, '[{"type":"Subscribed","payload":{},"tags":["course:c1"]}]', '[{"tags":["course:c1","region:r9"]},{"types":["Unsubscribed"]}]', 0)`,
		`SELECT count(*) FROM es.read_log($1, '0', 0, '{}', 5, NULL)`,
	}

	// A small tenant (50 events, 10 with the tags) beside 2,000 events:
	// plans may read all of the tenant's rows, never the neighbour's.
	a := setup(batch(2000, "Subscribed", "course:c1", "region:r1"),
		append(batch(10, "Subscribed", "course:c1", "region:r1"), batch(40, "Other", "course:c2", "region:r2")...))
	walkPlans(explained(t, a, calls), func(stmt string, n planNode) {
		if !strings.Contains(n.Relation+n.Index, "$shared_") {
			return // es.tenants lookups, jsonb functions: not the tenant's log
		}
		if n.ActualRows > 60 || n.RemovedFilter > 60 || n.RemovedCheck > 60 {
			t.Errorf("small tenant: %s %s %s: %v rows, %v removed by filter, %v by recheck; statement:\n%s",
				n.NodeType, n.Relation, n.Index, n.ActualRows, n.RemovedFilter, n.RemovedCheck, stmt)
		}
	})

	// A large tenant with few events carrying the tags (3,000 events, 10
	// with them) beside 1,000 events with them: the tags' index is the plan
	// for its tag lookups, and must return the tenant's matches alone.
	a = setup(batch(1000, "Subscribed", "course:c1", "region:r1"),
		append(batch(10, "Subscribed", "course:c1", "region:r1"), batch(2990, "Other", "course:c2", "region:r2")...))
	tagScans := 0
	walkPlans(explained(t, a, calls[:2]), func(stmt string, n planNode) {
		if n.NodeType == "Bitmap Index Scan" && strings.Contains(n.Index, "tags") {
			tagScans++
			if n.ActualRows > 10 {
				t.Errorf("large tenant: %s on %s: %v entries for the tenant's 10 matches; statement:\n%s", n.NodeType, n.Index, n.ActualRows, stmt)
			}
		}
	})
	if tagScans == 0 {
		t.Error("large tenant: no tag lookup used the tags' index")
	}
}

// Dropping a tenant races its writers. A writer that read the registry
// before the drop and wrote after it would leave rows behind: in a shared
// leaf nothing else stops it, and those rows would reappear in a tenant
// created later with the same id. es.drop_tenant takes the tenant's lock
// that writers hold, and writers check the registry again under it: each
// writer here, started while a drop is open and blocked behind it, fails
// with ErrTenantNotFound once the drop commits, and no row of the tenant
// is left. Without the check under the lock the append's rows stay; a
// batch of more than 32 lock keys (which locks stripes, not keys) is among
// the writers.
func TestDropWaitsForWritersThatThenFail(t *testing.T) {
	for _, dedicated := range []bool{false, true} {
		t.Run(fmt.Sprintf("dedicated=%v", dedicated), func(t *testing.T) {
			ctx := context.Background()
			admin := testdb.Pool(t)
			id := testdb.NewTenant(t, admin)
			if dedicated {
				if _, err := admin.Exec(ctx, "SELECT es.dedicate_tenant($1)", id); err != nil {
					t.Fatal(err)
				}
			}
			store, _ := pges.New(testdb.RuntimePool(t), nil)
			ts := store.Tenant(id)
			mustAppend(t, ts, "s", pges.NoStream, ev("E", map[string]int{"n": 1}))

			drop, err := admin.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer drop.Rollback(ctx)
			var dropped bool
			if err := drop.QueryRow(ctx, "SELECT es.drop_tenant($1)", id).Scan(&dropped); err != nil || !dropped {
				t.Fatalf("drop: %v %v", dropped, err)
			}

			writers := map[string]func() error{
				"AppendToStream": func() error {
					_, err := ts.AppendToStream(ctx, "s", pges.Any, ev("E", map[string]int{"n": 2}))
					return err
				},
				"Append": func() error {
					_, err := ts.Append(ctx, []pges.EventData{{Type: "E", Payload: json.RawMessage(`{}`), Tags: []string{"k"}}},
						&pges.AppendCondition{FailIfEventsMatch: pges.Tags("k"), After: 1})
					return err
				},
				"SaveSnapshot": func() error { return ts.SaveSnapshot(ctx, "s", 1, 1, json.RawMessage(`{}`)) },
				// More than 32 lock keys: the batch locks stripes instead.
				"Append of 40 tags": func() error {
					tags := make([]string, 40)
					for i := range tags {
						tags[i] = fmt.Sprintf("tag-%d", i)
					}
					_, err := ts.Append(ctx, []pges.EventData{{Type: "E", Payload: json.RawMessage(`{}`), Tags: tags}}, nil)
					return err
				},
			}
			errs := make(chan error, len(writers))
			names := make(chan string, len(writers))
			for name, write := range writers {
				go func() {
					names <- name
					errs <- fmt.Errorf("%s: %w", name, write())
				}()
			}
			// Every writer waits behind the drop: on the tenant's lock, or on
			// a dedicated tenant's partition, which DROP TABLE locks.
			deadline := time.Now().Add(10 * time.Second)
			for {
				var waiting int
				if err := admin.QueryRow(ctx, `SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted
					AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				if waiting == len(writers) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d writers wait behind the drop", waiting, len(writers))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := drop.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			for range writers {
				<-names
				if err := <-errs; !errors.Is(err, pges.ErrTenantNotFound) {
					t.Errorf("writer after the drop: %v, want ErrTenantNotFound", err)
				}
			}
			var left int
			if err := admin.QueryRow(ctx, "SELECT (SELECT count(*) FROM es.events WHERE tenant_id = $1) + (SELECT count(*) FROM es.snapshots WHERE tenant_id = $1)", id).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left != 0 {
				t.Fatalf("%d rows of the dropped tenant remain", left)
			}
		})
	}
}

// Under REPEATABLE READ a writer's snapshot is its transaction's: a check
// of the registry would still see a tenant dropped since. The writer locks
// the registry row instead, which fails once the drop has deleted it.
func TestDropBeforeARepeatableReadWriterLeavesNoRows(t *testing.T) {
	ctx := context.Background()
	admin := testdb.Pool(t)
	id := testdb.NewTenant(t, admin)
	store, _ := pges.New(admin, nil)
	mustAppend(t, store.Tenant(id), "s", pges.NoStream, ev("E", map[string]int{"n": 1}))

	conn, err := testdb.RuntimePool(t).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT set_config('es.tenant_id', $1, true)", id); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM es.tenants").Scan(&n); err != nil || n != 1 {
		t.Fatalf("the writer's snapshot sees %d tenants (%v)", n, err)
	}
	if _, err := admin.Exec(ctx, "SELECT es.drop_tenant($1)", id); err != nil {
		t.Fatal(err)
	}
	for _, write := range []string{
		`SELECT es.append_to_stream($1, 's', -1, '[{"type":"E","payload":{}}]')`,
		`SELECT es.save_snapshot($1, 's', 1, 1, '{}')`,
	} {
		_, err = tx.Exec(ctx, "SAVEPOINT w")
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, write, id)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40001" && pgErr.Code != "ES005") {
			t.Errorf("%s after the drop, under REPEATABLE READ: %v, want a serialization failure or tenant not found", write, err)
		}
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT w"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, admin, id); n != 0 {
		t.Fatalf("%d events of the dropped tenant remain", n)
	}
}

// The stream append locks es.events before it waits for the tenant's
// lock; dropping a dedicated tenant takes that lock, then needs es.events
// exclusively: a deadlock, which PostgreSQL breaks by aborting one side
// (the drop, which waited first). tenant.Manager's Drop tries again and
// succeeds once the writer is done, and nothing of the tenant is left.
func TestDropRetriesAfterADeadlockWithAWriter(t *testing.T) {
	ctx := context.Background()
	admin := testdb.Pool(t)
	id := testdb.NewTenant(t, admin)
	if _, err := admin.Exec(ctx, "SELECT es.dedicate_tenant($1)", id); err != nil {
		t.Fatal(err)
	}
	store, _ := pges.New(admin, nil)
	mustAppend(t, store.Tenant(id), "s", pges.NoStream, ev("E", map[string]int{"n": 1}))

	// The writer, as append_to_stream starts: es.events locked by a read.
	writer, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback(ctx)
	if _, err := writer.Exec(ctx, "SELECT set_config('es.tenant_id', $1, true)", id); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Exec(ctx, "SELECT * FROM es.stream_head($1, 's')", id); err != nil {
		t.Fatal(err)
	}
	type result struct {
		dropped bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		dropped, err := tenant.NewManager(admin).Drop(ctx, id)
		done <- result{dropped, err}
	}()
	// The drop holds the tenant's lock and waits for es.events.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'relation'
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the drop never waited for the writer's lock on es.events")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The append closes the cycle; one side is aborted after deadlock_timeout.
	_, appendErr := writer.Exec(ctx, `SELECT es.append_to_stream($1, 's', -1, '[{"type":"E","payload":{}}]')`, id)
	if appendErr != nil {
		var pgErr *pgconn.PgError
		if !errors.As(appendErr, &pgErr) || pgErr.Code != "40P01" {
			t.Fatalf("the writer: %v, want success or a deadlock", appendErr)
		}
		_ = writer.Rollback(ctx)
	} else if err := writer.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || !r.dropped {
			t.Fatalf("Drop = %v, %v; want true after its retries", r.dropped, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Drop did not finish")
	}
	if n := countEvents(t, admin, id); n != 0 {
		t.Fatalf("%d events of the dropped tenant remain", n)
	}
}

// In a shared leaf the planner's statistics may predate a tenant's rows
// (the tenant is not in the last ANALYZE's sample: a new tenant writing a
// large history). With statistics on tenant_id it was then estimated at
// one row, and an append with event ids looked them up through an index on
// tenant_id alone, reading every row of the tenant once per event of the
// batch. Without them (migration 00011) no plan node handles more rows than
// the batch has events.
func TestAppendWithIdsDoesNotDependOnTheLeafsStatistics(t *testing.T) {
	ctx := context.Background()
	admin := testdb.Pool(t)
	a, b := sameLeafTenants(t, admin)
	store, _ := pges.New(admin, nil)
	batch := make([]pges.EventData, 3000)
	for i := range batch {
		batch[i] = ev("E", map[string]int{"n": i})
	}
	// The leaf's statistics are taken while only the neighbour has rows.
	mustAppend(t, store.Tenant(b), "s", pges.NoStream, batch[:2000]...)
	if _, err := admin.Exec(ctx, "SELECT es.analyze_tenant($1)", b); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, store.Tenant(a), "s", pges.NoStream, batch...)
	append100 := `SELECT es.append_to_stream($1, 's', -1,
		(SELECT jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'type', 'E', 'payload', jsonb_build_object('n', i)))
		   FROM generate_series(1, 100) i))`
	walkPlans(explained(t, a, []string{append100}), func(stmt string, n planNode) {
		if !strings.Contains(n.Relation+n.Index, "$shared_") {
			return
		}
		if n.ActualRows > 200 || n.RemovedFilter > 200 {
			t.Errorf("%s %s %s: %v rows, %v removed by filter, for a batch of 100; statement:\n%s",
				n.NodeType, n.Relation, n.Index, n.ActualRows, n.RemovedFilter, stmt)
		}
	})
}
