package pges_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The delivery horizon (migration 00013) is held back only by
// the tenant's own writers. These tests use prompt deadlines (2 s) with no
// fallback poll: before 00013 each of the first three waited for the
// stranger's transaction to end, which here is never.

// clusterXmin is the horizon before 00013: pg_snapshot_xmin, cluster-wide.
func clusterXmin(t *testing.T, pool *pgxpool.Pool) uint64 {
	t.Helper()
	var x uint64
	if err := pool.QueryRow(context.Background(), "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").Scan(&x); err != nil {
		t.Fatal(err)
	}
	return x
}

// sqlPoller polls a subscription through the SQL API (es.subscription_next
// and es.subscription_ack) on a connection scoped to the tenant.
type sqlPoller struct {
	t      *testing.T
	conn   *pgxpool.Conn
	tenant string
	name   string
}

func newSQLPoller(t *testing.T, admin *pgxpool.Pool, tenant, name string) *sqlPoller {
	t.Helper()
	ctx := context.Background()
	conn, err := admin.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = conn.Exec(ctx, "RESET es.tenant_id"); conn.Release() })
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false), es.subscribe($1, $2, '{}')", tenant, name); err != nil {
		t.Fatal(err)
	}
	return &sqlPoller{t: t, conn: conn, tenant: tenant, name: name}
}

// next returns the positions of the next batch and acknowledges it.
func (p *sqlPoller) next() []int64 {
	p.t.Helper()
	ctx := context.Background()
	rows, err := p.conn.Query(ctx, "SELECT tx_id::text::bigint, position FROM es.subscription_next($1, $2, 100)", p.tenant, p.name)
	if err != nil {
		p.t.Fatal(err)
	}
	var lastTx, lastPos int64
	var out []int64
	for rows.Next() {
		if err := rows.Scan(&lastTx, &lastPos); err != nil {
			p.t.Fatal(err)
		}
		out = append(out, lastPos)
	}
	if err := rows.Err(); err != nil {
		p.t.Fatal(err)
	}
	if len(out) > 0 {
		if _, err := p.conn.Exec(ctx, "SELECT es.subscription_ack($1, $2, $3::bigint::text::xid8, $4)", p.tenant, p.name, lastTx, lastPos); err != nil {
			p.t.Fatal(err)
		}
	}
	return out
}

// checkPrompt appends one event and requires both a Go subscriber and an
// SQL poller to get it within 2 s while whatever the caller holds open
// stays open.
func checkPrompt(t *testing.T, ts *pges.TenantStore, admin *pgxpool.Pool, what string) {
	t.Helper()
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Name: "go", Handler: got.handle, PollInterval: noPoll})
	sql := newSQLPoller(t, admin, ts.TenantID(), "sql")
	time.Sleep(50 * time.Millisecond)
	pos := appendDCB(t, ts, ev("E", 1))[0]
	waitFor(t, 2*time.Second, "delivery while "+what, func() bool { return len(got.positions()) == 1 })
	var polled []int64
	waitFor(t, 2*time.Second, "an SQL poll while "+what, func() bool { polled = append(polled, sql.next()...); return len(polled) > 0 })
	if p := got.positions(); p[0] != pos || !slices.Equal(polled, []int64{pos}) {
		t.Fatalf("Go got %v, SQL got %v, want [%d]", p, polled, pos)
	}
}

// (a) A transaction with an id, open in another database of the server.
func TestHorizonIgnoresOtherDatabases(t *testing.T) {
	ts, admin := newTenant(t)
	xid := testdb.HoldXid(t)
	if x := clusterXmin(t, admin); x > xid {
		t.Fatalf("setup: the stranger's transaction %d does not hold the cluster-wide xmin %d", xid, x)
	}
	checkPrompt(t, ts, admin, "another database holds a transaction open")
}

// (b) A transaction of this database that wrote another table, left open.
func TestHorizonIgnoresTransactionsThatWroteNoEvent(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	table := "unrelated_" + ts.TenantID()
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (n int)", table)); err != nil {
		t.Fatal(err)
	}
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (1)", table)); err != nil {
		t.Fatal(err)
	}
	checkPrompt(t, ts, admin, "a transaction that wrote another table is open")
}

// (c) A long transaction of another tenant that has appended (it holds
// that tenant's writer lock) and stays open.
func TestHorizonIgnoresOtherTenantsWriters(t *testing.T) {
	ts, admin := newTenant(t)
	other := testdb.NewTenant(t, admin)
	beginAppend(t, admin, other, "Elsewhere")
	checkPrompt(t, ts, admin, "another tenant's append is in flight")
}

// (d) The tenant's own writer in flight still holds delivery back, with a
// stranger's transaction open too, and its event is delivered, first, when
// it commits.
func TestHorizonWaitsForTheTenantsOwnWriters(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	testdb.HoldXid(t)
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Name: "go", Handler: got.handle, PollInterval: noPoll})
	sql := newSQLPoller(t, admin, ts.TenantID(), "sql")
	txA, posA := beginAppend(t, admin, ts.TenantID(), "A")
	posB := appendDCB(t, ts, ev("B", 1))[0]
	time.Sleep(300 * time.Millisecond)
	if p, q := got.positions(), sql.next(); len(p) != 0 || len(q) != 0 {
		t.Fatalf("delivered %v (Go) and %v (SQL) while A (position %d) was in flight", p, q, posA)
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want := []int64{posA, posB}
	waitFor(t, 2*time.Second, "A and B", func() bool { return len(got.positions()) == 2 })
	if p, q := got.positions(), sql.next(); !slices.Equal(p, want) || !slices.Equal(q, want) {
		t.Fatalf("Go got %v, SQL got %v, want %v", p, q, want)
	}
}

// A transaction that had an id before it appends, with no later event of
// the tenant committed: it is not a writer while empty polls run, so the
// horizon passes it; the checkpoint must not (it moves to es.log_horizon's
// safe bound), or its event would be skipped.
func TestCheckpointDoesNotPassATransactionThatMayStillAppend(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	table := "early_" + ts.TenantID()
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (n int)", table)); err != nil {
		t.Fatal(err)
	}
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var x uint64
	if err := tx.QueryRow(ctx, fmt.Sprintf("INSERT INTO %s VALUES (1) RETURNING pg_current_xact_id()::text::bigint", table)).Scan(&x); err != nil {
		t.Fatal(err)
	}
	// Later ids complete, so the horizon (at most the snapshot's xmax)
	// moves past x.
	other := testdb.NewTenant(t, admin)
	for range 3 {
		if _, err := admin.Exec(ctx, `SELECT es.append_events(set_config('es.tenant_id', $1, true), '[{"type":"Later","payload":{}}]')`, other); err != nil {
			t.Fatal(err)
		}
	}
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Name: "go", Handler: got.handle, PollInterval: 20 * time.Millisecond})
	sql := newSQLPoller(t, admin, ts.TenantID(), "sql")
	var horizon uint64
	if err := sql.conn.QueryRow(ctx, "SELECT horizon::text::bigint FROM es.log_horizon($1)", ts.TenantID()).Scan(&horizon); err != nil {
		t.Fatal(err)
	}
	if horizon <= x {
		t.Fatalf("setup: the horizon %d did not pass the open transaction %d", horizon, x)
	}
	for range 3 {
		if p := sql.next(); len(p) != 0 {
			t.Fatalf("SQL poll of an empty tenant returned %v", p)
		}
	}
	time.Sleep(200 * time.Millisecond) // empty Go reads (the fallback poll is 20 ms)
	var pos []int64
	if err := tx.QueryRow(ctx, `SELECT es.append_events(set_config('es.tenant_id', $1, true), '[{"type":"Late","payload":{}}]')`,
		ts.TenantID()).Scan(&pos); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the late transaction's event (Go)", func() bool { return len(got.positions()) == 1 })
	if p, q := got.positions(), sql.next(); p[0] != pos[0] || !slices.Equal(q, pos) {
		t.Fatalf("Go got %v, SQL got %v, want %v", p, q, pos)
	}
}

// A subscription that starts at the end, or an ephemeral one, starts at the
// safe bound: not held at a stranger's transaction in another database (it
// would deliver everything committed since it began), and never past a
// transaction of this database that may still append.
func TestStartAtEndIgnoresOtherDatabases(t *testing.T) {
	ts, admin := newTenant(t)
	testdb.HoldXid(t)
	old := appendDCB(t, ts, ev("Old", 1))[0]
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Handler: got.handle, PollInterval: noPoll, Start: pges.StartAtEnd()})
	sql := newSQLPoller(t, admin, ts.TenantID(), "sql") // subscribes from the beginning
	if _, err := sql.conn.Exec(context.Background(), "SELECT es.subscribe($1, 'sql-end', '{}', 'end')", ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	pos := appendDCB(t, ts, ev("New", 1))[0]
	waitFor(t, 2*time.Second, "the new event", func() bool { return len(got.positions()) == 1 })
	end := &sqlPoller{t: t, conn: sql.conn, tenant: ts.TenantID(), name: "sql-end"}
	if p, q := got.positions(), end.next(); !slices.Equal(p, []int64{pos}) || !slices.Equal(q, []int64{pos}) {
		t.Fatalf("started at the end: Go got %v, SQL got %v, want [%d] (not %d)", p, q, pos, old)
	}
}

// Subscriptions counts each subscription's lag by its filter, and names
// the transaction that holds the tenant's delivery back while one does.
func TestStatusCountsLagByFilterAndNamesTheHolder(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	sql := newSQLPoller(t, admin, ts.TenantID(), "all")
	if _, err := sql.conn.Exec(ctx, `SELECT es.subscribe($1, 'wanted', '{"types":["Wanted"]}')`, ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		appendDCB(t, ts, ev("Wanted", i), ev("Other", i))
	}
	appendDCB(t, ts, ev("Other", 9), ev("Other", 10))
	status, err := ts.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != 2 || status[0].Name != "all" || status[0].LagEvents != 8 || status[1].LagEvents != 3 ||
		status[0].LagCapped || status[1].LagCapped || status[1].LagSeconds <= 0 || status[0].HeldBy != nil {
		t.Fatalf("status: %+v", status)
	}
	tx, _ := beginAppend(t, admin, ts.TenantID(), "InFlight")
	var pid int
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid(), pg_current_xact_id()::text::bigint").Scan(&pid, &xid); err != nil {
		t.Fatal(err)
	}
	if status, err = ts.Subscriptions(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		if h := s.HeldBy; h == nil || h.PID != pid || h.Xid != xid || h.Database == "" || h.State == "" {
			t.Fatalf("%s: held by %+v, want pid %d xid %d", s.Name, h, pid, xid)
		}
	}
}

// Dead letters can be retried (delivered to the running consumer's handler
// once more, the dead letter going when it succeeds, staying with the new
// error when it fails again) and discarded (never delivered).
func TestDeadLettersRetryAndDiscard(t *testing.T) {
	ts, _ := newTenant(t)
	ctx := context.Background()
	var broken atomic.Bool
	broken.Store(true)
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Name: "dl", PollInterval: noPoll, LeaseTTL: time.Minute, MaxAttempts: 1, OnFailure: pges.ParkOnFailure,
		Handler: func(ctx context.Context, tx pgx.Tx, ev pges.RecordedEvent) error {
			if ev.Type == "Poison" && broken.Load() {
				return fmt.Errorf("poisoned %d", ev.Position)
			}
			return got.handle(ctx, tx, ev)
		}})
	p := appendDCB(t, ts, ev("Fine", 1), ev("Poison", 2), ev("Poison", 3), ev("Fine", 4))
	dead := func() []pges.DeadLetter {
		d, err := ts.DeadLetters(ctx, "dl")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	waitFor(t, 5*time.Second, "two parked events", func() bool { return len(dead()) == 2 && len(got.distinct()) == 2 })

	// Handler effects outside its transaction are at-least-once: distinct().
	// Still broken: the retry fails and the dead letter stays, with one more attempt.
	if n, err := ts.RetryDeadLetters(ctx, "dl", p[1]); err != nil || n != 1 {
		t.Fatalf("retry: %d, %v", n, err)
	}
	waitFor(t, 2*time.Second, "the failed retry", func() bool { d := dead(); return len(d) == 2 && d[0].Attempts == 2 })
	broken.Store(false)
	if n, err := ts.RetryDeadLetters(ctx, "dl", p[1]); err != nil || n != 1 {
		t.Fatalf("retry: %d, %v", n, err)
	}
	waitFor(t, 2*time.Second, "the retried event", func() bool { return slices.Contains(got.distinct(), p[1]) && len(dead()) == 1 })
	if d := dead(); len(d) != 1 || d[0].Position != p[2] {
		t.Fatalf("dead letters after the retry: %+v", d)
	}
	if n, err := ts.DiscardDeadLetters(ctx, "dl"); err != nil || n != 1 {
		t.Fatalf("discard: %d, %v", n, err)
	}
	if n, err := ts.RetryDeadLetters(ctx, "dl"); err != nil || n != 0 {
		t.Fatalf("retry after the discard: %d, %v", n, err)
	}
	time.Sleep(200 * time.Millisecond)
	if d, ps := dead(), got.distinct(); len(d) != 0 || slices.Contains(ps, p[2]) || !slices.Equal(ps, []int64{p[0], p[3], p[1]}) {
		t.Fatalf("after the discard: dead letters %+v, delivered %v", d, ps)
	}
}

// The lag count reads at most 10,000 events after the checkpoint: beyond
// that, LagCapped says so and the count is a lower bound.
func TestStatusLagIsCapped(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	sql := newSQLPoller(t, admin, ts.TenantID(), "all")
	for range 3 {
		if _, err := sql.conn.Exec(ctx, `SELECT es.append_events($1, (SELECT jsonb_agg(jsonb_build_object('type', 'Bulk', 'payload', '{}'::jsonb))
			FROM generate_series(1, 3500)))`, ts.TenantID()); err != nil {
			t.Fatal(err)
		}
	}
	status, err := ts.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != 1 || !status[0].LagCapped || status[0].LagEvents != 10000 || status[0].Head == 0 {
		t.Fatalf("status of 10,500 undelivered events: %+v", status)
	}
}
