package pges_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// collector records what a handler received.
type collector struct {
	mu     sync.Mutex
	events []pges.RecordedEvent
}

func (c *collector) handle(_ context.Context, _ pgx.Tx, ev pges.RecordedEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, ev)
	return nil
}

func (c *collector) positions() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int64, len(c.events))
	for i, e := range c.events {
		out[i] = e.Position
	}
	return out
}

// distinct returns the positions received, each once, in first-seen
// order: a handler's effects outside the transaction are at-least-once.
func (c *collector) distinct() []int64 {
	var out []int64
	for _, p := range c.positions() {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run starts Subscribe in the background; stop cancels it and returns its
// error.
func run(t *testing.T, ts *pges.TenantStore, cfg pges.SubscriptionConfig) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.Subscribe(ctx, cfg) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// noPoll is a fallback poll interval no test waits for: deliveries these
// tests see come from notifications and the re-polls they cause.
const noPoll = 10 * time.Minute

func appendDCB(t *testing.T, ts *pges.TenantStore, events ...pges.EventData) []int64 {
	t.Helper()
	res, err := ts.Append(context.Background(), events, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Positions
}

// Three subscriptions with different filters each receive exactly their
// events, once, in order, across catch-up and live delivery.
func TestSubscriptionFanOut(t *testing.T) {
	ts, _ := newTenant(t)
	ctx := context.Background()
	var want [3][]int64
	add := func() {
		for i := range 5 {
			r := mustAppend(t, ts, fmt.Sprintf("order-%d", i), pges.Any, ev("OrderPlaced", i), ev("OrderShipped", i))
			want[0] = append(want[0], r.Positions...)
			want[2] = append(want[2], r.Positions[0])
			p := appendDCB(t, ts, tagged("Enrolled", "student:1", fmt.Sprintf("course:%d", i)), tagged("Enrolled", "student:2"))
			want[1] = append(want[1], p[0])
		}
		r := mustAppend(t, ts, "invoice-1", pges.Any, ev("OrderPlaced", 0))
		want[2] = append(want[2], r.Positions[0])
	}
	add() // caught up from the log
	filters := []pges.SubscriptionFilter{
		{StreamPrefix: "order-"},
		{Tags: []string{"student:1"}},
		{Types: []string{"OrderPlaced"}},
	}
	var got [3]*collector
	for i, f := range filters {
		got[i] = &collector{}
		run(t, ts, pges.SubscriptionConfig{Name: fmt.Sprintf("fan-%d", i), Filter: f, Handler: got[i].handle, PollInterval: noPoll, BatchSize: 3})
	}
	for i := range got {
		waitFor(t, 10*time.Second, "catch-up", func() bool { return len(got[i].positions()) == len(want[i]) })
	}
	add() // delivered live
	for i := range got {
		waitFor(t, 10*time.Second, "live delivery", func() bool { return len(got[i].positions()) >= len(want[i]) })
	}
	time.Sleep(200 * time.Millisecond) // room for a duplicate to show up
	for i := range got {
		if p := got[i].positions(); !slices.Equal(p, want[i]) {
			t.Errorf("subscription %d (%+v): got %v, want %v", i, filters[i], p, want[i])
		}
	}
	status, err := ts.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != 3 || status[0].Name != "fan-0" || status[0].LastPosition != slices.Max(want[0]) {
		t.Errorf("status: %+v", status)
	}
}

// beginAppend appends an event in a transaction it leaves open, as an
// application might, and returns the transaction and the event's position.
func beginAppend(t *testing.T, pool *pgxpool.Pool, tenant, typ string) (pgx.Tx, int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	var pos []int64
	err = tx.QueryRow(ctx, `SELECT es.append_events(set_config('es.tenant_id', $1, true), jsonb_build_array(jsonb_build_object('type', $2::text, 'payload', '{}'::jsonb)))`,
		tenant, typ).Scan(&pos)
	if err != nil {
		t.Fatal(err)
	}
	return tx, pos[0]
}

func storedCheckpointTx(t *testing.T, admin *pgxpool.Pool, tenant, name string) uint64 {
	t.Helper()
	var tx uint64
	if err := admin.QueryRow(context.Background(), "SELECT checkpoint_tx::text::bigint FROM es.subscriptions WHERE tenant_id = $1 AND name = $2",
		tenant, name).Scan(&tx); err != nil {
		t.Fatal(err)
	}
	return tx
}

// Hazard 2: transaction A holds a lower position open while B commits. The
// subscriber must deliver both, A's first, and never store a checkpoint past
// A's event before delivering it. A reader that followed positions would
// deliver B and skip A forever.
func TestSubscriptionLateCommitIsNotSkipped(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Name: "late", Handler: got.handle, PollInterval: noPoll, LeaseTTL: 300 * time.Millisecond})
	waitFor(t, 5*time.Second, "the subscription to start", func() bool {
		s, _ := ts.Subscriptions(ctx)
		return len(s) == 1 && s[0].Owner != ""
	})

	txA, posA := beginAppend(t, admin, ts.TenantID(), "A")
	var aTx uint64
	if err := txA.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&aTx); err != nil {
		t.Fatal(err)
	}
	posB := appendDCB(t, ts, ev("B", 1))[0]
	if posB <= posA {
		t.Fatalf("setup: B's position %d is not after A's %d", posB, posA)
	}
	time.Sleep(500 * time.Millisecond) // B committed; the checkpoint is renewed every 100 ms
	if p := got.positions(); len(p) != 0 {
		t.Fatalf("delivered %v while A (position %d) was in flight", p, posA)
	}
	if cp := storedCheckpointTx(t, admin, ts.TenantID(), "late"); cp > aTx {
		t.Fatalf("stored checkpoint tx %d is past A's transaction %d before A was delivered", cp, aTx)
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A and B", func() bool { return len(got.positions()) == 2 })
	if p := got.positions(); !slices.Equal(p, []int64{posA, posB}) {
		t.Fatalf("got %v, want [%d %d]", p, posA, posB)
	}
}

// Only one appending transaction per tenant notifies at a time. A writer
// that skipped NOTIFY because another held the notifier lock, and commits
// after it, is still delivered promptly (the fallback poll is 10 minutes
// here): the subscriber keeps polling until every writer in flight at the
// wake-up has ended.
func TestSubscriptionWriterThatDidNotNotify(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	got := &collector{}
	// Neither the fallback poll nor the lease renewal (every LeaseTTL/3)
	// comes within the test's waits.
	run(t, ts, pges.SubscriptionConfig{Name: "quiet", Handler: got.handle, PollInterval: noPoll, LeaseTTL: time.Minute})
	waitFor(t, 5*time.Second, "the subscription to start", func() bool { s, _ := ts.Subscriptions(ctx); return len(s) == 1 })
	time.Sleep(50 * time.Millisecond)

	tx1, pos1 := beginAppend(t, admin, ts.TenantID(), "W1") // holds the notifier lock
	tx2, pos2 := beginAppend(t, admin, ts.TenantID(), "W2") // finds it taken: no NOTIFY
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "W1", func() bool { return len(got.positions()) == 1 })
	time.Sleep(100 * time.Millisecond)
	if err := tx2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "W2, which never notified", func() bool { return len(got.positions()) == 2 })
	if p := got.positions(); !slices.Equal(p, []int64{pos1, pos2}) {
		t.Fatalf("got %v, want [%d %d]", p, pos1, pos2)
	}
}

// A long transaction that never appends no longer holds delivery back
// (migration 00013; before, the event waited for it to end): the event
// committed meanwhile is delivered promptly, with no notification lost.
// horizon_test.go covers the other strangers.
func TestSubscriptionUnrelatedLongTransaction(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Handler: got.handle, PollInterval: noPoll, Start: pges.StartAtEnd()})
	time.Sleep(100 * time.Millisecond)

	long, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Rollback(ctx)
	if _, err := long.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	pos := appendDCB(t, ts, ev("E", 1))[0]
	waitFor(t, 2*time.Second, "the event while the long transaction is open", func() bool { return len(got.positions()) == 1 })
	if p := got.positions(); p[0] != pos {
		t.Fatalf("got %v, want [%d]", p, pos)
	}
}

func listenerPIDs(t *testing.T, admin *pgxpool.Pool) []int {
	t.Helper()
	rows, err := admin.Query(context.Background(),
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'pges-listener' AND datname = current_database() ORDER BY pid")
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// The listening backend is terminated mid-stream: the store reconnects,
// and delivery resumes with nothing lost or repeated, without waiting for
// the fallback poll.
func TestSubscriptionSurvivesListenerTermination(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Name: "reconnect", Handler: got.handle, PollInterval: noPoll})
	var want []int64
	for i := range 20 {
		want = append(want, appendDCB(t, ts, ev("Before", i))...)
	}
	waitFor(t, 5*time.Second, "the first events", func() bool { return len(got.positions()) == 20 })
	before := listenerPIDs(t, admin)
	if len(before) != 1 {
		t.Fatalf("listener backends: %v", before)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", before[0]); err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // appended while the listener is down or reconnecting
		want = append(want, appendDCB(t, ts, ev("During", i))...)
	}
	waitFor(t, 5*time.Second, "a new listener", func() bool {
		p := listenerPIDs(t, admin)
		return len(p) == 1 && p[0] != before[0]
	})
	for i := range 20 {
		want = append(want, appendDCB(t, ts, ev("After", i))...)
	}
	waitFor(t, 5*time.Second, "every event", func() bool { return len(got.positions()) >= 60 })
	time.Sleep(100 * time.Millisecond)
	if p := got.positions(); !slices.Equal(p, want) {
		t.Fatalf("got %v, want %v", p, want)
	}
}

// A transactional projection: the handler counts events in a table through
// the store's transaction. A crash between the handler and the commit
// (here: the context is cancelled) rolls the batch back, the batch is
// delivered again, and the count is exact.
func TestSubscriptionTransactionalProjectionIsExactlyOnce(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	table := "projection_" + ts.TenantID()
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (n int NOT NULL); INSERT INTO %s VALUES (0); GRANT ALL ON %s TO es_runtime",
		table, table, table)); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		appendDCB(t, ts, ev("Counted", i))
	}
	var handled sync.Map
	crashAt := 37
	for attempt := 0; ; attempt++ {
		runCtx, cancel := context.WithCancel(ctx)
		var seen int
		err := ts.Subscribe(runCtx, pges.SubscriptionConfig{Name: "projection", BatchSize: 10, PollInterval: noPoll,
			Handler: func(ctx context.Context, tx pgx.Tx, ev pges.RecordedEvent) error {
				if _, err := tx.Exec(ctx, "UPDATE "+table+" SET n = n + 1"); err != nil {
					return err
				}
				handled.Store(ev.Position, true)
				seen++
				if attempt == 0 && seen == crashAt {
					cancel() // the process "dies" before the batch commits
				}
				var n int
				if err := tx.QueryRow(ctx, "SELECT n FROM "+table).Scan(&n); err == nil && n == 100 {
					go func() { time.Sleep(100 * time.Millisecond); cancel() }()
				}
				return nil
			}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if attempt > 0 {
			break
		}
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT n FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Fatalf("projection counted %d events, want 100", n)
	}
	status, _ := ts.Subscriptions(ctx)
	if len(status) != 1 || status[0].LagEvents != 0 {
		t.Fatalf("status after the rebuild: %+v", status)
	}
}

// A handler that keeps failing: with ParkOnFailure the event goes to the
// dead letters and delivery goes on; with StopOnFailure Subscribe ends with
// a HandlerError and the checkpoint stays before the event.
func TestSubscriptionFailurePolicies(t *testing.T) {
	ts, _ := newTenant(t)
	ctx := context.Background()
	appendDCB(t, ts, ev("Fine", 1), ev("Fine", 2))
	poison := appendDCB(t, ts, ev("Poison", 3))[0]
	appendDCB(t, ts, ev("Fine", 4))
	failing := func(c *collector) pges.Handler {
		return func(ctx context.Context, tx pgx.Tx, ev pges.RecordedEvent) error {
			if ev.Type == "Poison" {
				return errors.New("cannot handle poison")
			}
			return c.handle(ctx, tx, ev)
		}
	}

	parked := &collector{}
	run(t, ts, pges.SubscriptionConfig{Name: "parks", Handler: failing(parked), OnFailure: pges.ParkOnFailure,
		MaxAttempts: 3, RetryBackoff: time.Millisecond, PollInterval: noPoll})
	waitFor(t, 5*time.Second, "the events after the poison", func() bool { return len(parked.distinct()) == 3 })
	dead, err := ts.DeadLetters(ctx, "parks")
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Position != poison || dead[0].Attempts != 3 || !strings.Contains(dead[0].Error, "cannot handle poison") {
		t.Fatalf("dead letters: %+v", dead)
	}

	stopped := &collector{}
	err = ts.Subscribe(ctx, pges.SubscriptionConfig{Name: "stops", Handler: failing(stopped), MaxAttempts: 2,
		RetryBackoff: time.Millisecond, PollInterval: noPoll})
	var he *pges.HandlerError
	if !errors.As(err, &he) || he.Position != poison || he.Attempts != 2 || he.EventType != "Poison" {
		t.Fatalf("got %v, want a HandlerError at position %d after 2 attempts", err, poison)
	}
	status, _ := ts.Subscriptions(ctx)
	for _, s := range status {
		if s.Name == "stops" && s.LastPosition >= poison {
			t.Fatalf("checkpoint moved past the failed event: %+v", s)
		}
	}
	if len(stopped.distinct()) != 2 {
		t.Fatalf("delivered before the poison: %v", stopped.distinct())
	}
}

// A consumer group of 3 splits the log by stream: every stream goes to
// exactly one member, in order, and together they receive every event.
func TestSubscriptionConsumerGroup(t *testing.T) {
	ts, _ := newTenant(t)
	for i := range 12 {
		mustAppend(t, ts, fmt.Sprintf("cart-%d", i), pges.NoStream, numbered("Added", 5)...)
	}
	var members [3]*collector
	for i := range members {
		members[i] = &collector{}
		run(t, ts, pges.SubscriptionConfig{Name: "carts", Handler: members[i].handle, PollInterval: noPoll,
			Filter: pges.SubscriptionFilter{Group: &pges.ConsumerGroup{Members: 3, Member: i}}})
	}
	waitFor(t, 10*time.Second, "all 60 events", func() bool {
		n := 0
		for _, m := range members {
			n += len(m.positions())
		}
		return n == 60
	})
	owner := map[string]int{}
	for i, m := range members {
		m.mu.Lock()
		last := map[string]int64{}
		for _, e := range m.events {
			if o, ok := owner[e.StreamID]; ok && o != i {
				t.Errorf("stream %s went to members %d and %d", e.StreamID, o, i)
			}
			owner[e.StreamID] = i
			if e.StreamVersion != last[e.StreamID]+1 {
				t.Errorf("member %d: %s version %d after %d", i, e.StreamID, e.StreamVersion, last[e.StreamID])
			}
			last[e.StreamID] = e.StreamVersion
		}
		m.mu.Unlock()
	}
	if len(owner) != 12 {
		t.Fatalf("%d streams delivered, want 12", len(owner))
	}
}

// Reset moves the checkpoint back: the running consumer loses its lease,
// takes it again and delivers from the reset point.
func TestSubscriptionReset(t *testing.T) {
	ts, _ := newTenant(t)
	ctx := context.Background()
	var all []int64
	for i := range 10 {
		all = append(all, appendDCB(t, ts, ev("E", i))...)
	}
	got := &collector{}
	run(t, ts, pges.SubscriptionConfig{Name: "rebuild", Handler: got.handle, PollInterval: noPoll, LeaseTTL: 300 * time.Millisecond})
	waitFor(t, 5*time.Second, "the log", func() bool { return len(got.positions()) == 10 })
	if err := ts.ResetSubscription(ctx, "rebuild", pges.ResetPoint{Position: all[6]}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the events from the reset point", func() bool { return len(got.positions()) == 14 })
	if p := got.positions()[10:]; !slices.Equal(p, all[6:]) {
		t.Fatalf("after reset: got %v, want %v", p, all[6:])
	}
	if err := ts.ResetSubscription(ctx, "nope", pges.ResetPoint{}); !errors.Is(err, pges.ErrSubscriptionNotFound) {
		t.Fatalf("reset of an unknown subscription: %v", err)
	}
}

// Bad configurations fail with ErrInvalidEvent and store nothing.
func TestSubscriptionBadInput(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	h := (&collector{}).handle
	for name, cfg := range map[string]pges.SubscriptionConfig{
		"no handler":        {Name: "x"},
		"bad name":          {Name: "x'; DROP TABLE es.events; --", Handler: h},
		"long name":         {Name: strings.Repeat("n", 101), Handler: h},
		"bad group":         {Name: "x", Handler: h, Filter: pges.SubscriptionFilter{Group: &pges.ConsumerGroup{Members: 2, Member: 2}}},
		"empty type":        {Name: "x", Handler: h, Filter: pges.SubscriptionFilter{Types: []string{""}}},
		"park without name": {Handler: h, OnFailure: pges.ParkOnFailure},
		"negative batch":    {Name: "x", Handler: h, BatchSize: -1},
	} {
		err := ts.Subscribe(ctx, cfg)
		if !errors.Is(err, pges.ErrInvalidEvent) {
			t.Errorf("%s: got %v, want ErrInvalidEvent", name, err)
		}
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM es.subscriptions WHERE tenant_id = $1", ts.TenantID()).Scan(&n); err != nil || n != 0 {
		t.Fatalf("subscriptions stored after bad input: %d (%v)", n, err)
	}
}

// The subscription API is tenant-scoped like the rest: the runtime role
// sees only its tenant's subscriptions and cannot read another's log.
func TestSubscriptionIsolation(t *testing.T) {
	a, admin := newTenant(t)
	b := newTenantID(t, admin)
	ctx := context.Background()
	appendDCB(t, a, ev("A", 1))
	if _, err := admin.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false), es.subscribe($1, 'other', '{}')", b); err != nil {
		t.Fatal(err)
	}
	runtime := testdb.RuntimePool(t)
	conn, err := runtime.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false)", a.TenantID()); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET es.tenant_id")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM es.subscriptions").Scan(&n); err != nil || n != 0 {
		t.Errorf("runtime role sees %d subscriptions of other tenants (%v)", n, err)
	}
	for _, q := range []string{
		"SELECT count(*) FROM es.read_log($1, '0', 0, '{}')",
		"SELECT count(*) FROM es.subscription_next($1, 'other')",
		"SELECT es.reset_subscription($1, 'other')::int",
	} {
		err := conn.QueryRow(ctx, q, b).Scan(&n)
		if !errors.Is(pges.TranslateError(err), pges.ErrTenantNotSet) {
			t.Errorf("%s with another tenant: %v", q, err)
		}
	}
	if _, err := conn.Exec(ctx, "UPDATE es.subscriptions SET checkpoint_position = 99"); err == nil {
		t.Errorf("runtime role updated subscriptions directly")
	}
}

// The SQL API's poll: next batches in delivery order, ack, and a checkpoint
// that moves to the horizon when nothing matching is left.
func TestSubscriptionSQLPoll(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	conn, err := admin.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false), es.subscribe($1, 'sql', '{\"types\":[\"Wanted\"]}')", ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET es.tenant_id")
	var want []int64
	for i := range 5 {
		want = append(want, appendDCB(t, ts, ev("Wanted", i), ev("Other", i))[0])
	}
	next := func() (txs []uint64, pos []int64) {
		rows, err := conn.Query(ctx, "SELECT tx_id::text::bigint, position FROM es.subscription_next($1, 'sql', 3)", ts.TenantID())
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var tx uint64
			var p int64
			if err := rows.Scan(&tx, &p); err != nil {
				t.Fatal(err)
			}
			txs, pos = append(txs, tx), append(pos, p)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return txs, pos
	}
	var got []int64
	for range 3 {
		txs, pos := next()
		got = append(got, pos...)
		if len(pos) > 0 {
			if _, err := conn.Exec(ctx, "SELECT es.subscription_ack($1, 'sql', $2::bigint::text::xid8, $3)", ts.TenantID(), int64(txs[len(txs)-1]), pos[len(pos)-1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Nothing left: the empty poll moved the checkpoint to the horizon.
	var lag int64
	if err := conn.QueryRow(ctx, "SELECT lag_events FROM es.subscription_status($1)", ts.TenantID()).Scan(&lag); err != nil || lag != 0 {
		t.Fatalf("lag after the last poll: %d (%v)", lag, err)
	}
}

// Fail-over: a consumer in another process holds the lease; a standby here
// delivers nothing while it lives, and takes over within LeaseTTL +
// LeaseTTL/3 after the process is killed. The projection, written in the
// handler's transaction, holds every event exactly once across the switch.
func TestSubscriptionFailoverToStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	ts, admin := newTenant(t)
	ctx := context.Background()
	table := "deliveries_" + ts.TenantID()
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (position bigint NOT NULL, owner text NOT NULL); GRANT ALL ON %s TO es_runtime", table, table)); err != nil {
		t.Fatal(err)
	}
	const ttl = time.Second
	child := exec.Command(os.Args[0], "-test.run=^TestSubscriptionFailoverChild$", "-test.v")
	child.Env = append(os.Environ(), "PGES_CHILD_URL="+testdb.URL(t), "PGES_CHILD_TENANT="+ts.TenantID(), "PGES_CHILD_TABLE="+table,
		testdb.ChildDatabaseEnv+"="+testdb.URL(t))
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	lines := bufio.NewScanner(out)
	for lines.Scan() && lines.Text() != "ACTIVE" {
	}

	stopAppends := make(chan struct{})
	appendsDone := make(chan int)
	go func() {
		n := 0
		defer func() { appendsDone <- n }()
		for {
			select {
			case <-stopAppends:
				return
			case <-time.After(10 * time.Millisecond):
				if _, err := ts.Append(ctx, []pges.EventData{ev("Tick", n)}, nil); err == nil {
					n++
				}
			}
		}
	}()
	owners := func() map[string]int {
		rows, _ := admin.Query(ctx, "SELECT owner, count(*) FROM "+table+" GROUP BY owner")
		m := map[string]int{}
		for rows.Next() {
			var o string
			var c int
			_ = rows.Scan(&o, &c)
			m[o] = c
		}
		return m
	}
	waitFor(t, 10*time.Second, "the child to deliver", func() bool { return owners()["child"] > 0 })
	run(t, ts, pges.SubscriptionConfig{Name: "failover", Owner: "standby", LeaseTTL: ttl, PollInterval: noPoll,
		Handler: func(ctx context.Context, tx pgx.Tx, ev pges.RecordedEvent) error {
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, 'standby')", ev.Position)
			return err
		}})
	time.Sleep(2 * ttl)
	if n := owners()["standby"]; n != 0 {
		t.Fatalf("the standby delivered %d events while the active consumer lived", n)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The handover is the lease changing hands; the delivery that follows
	// also waits for the horizon, which any transaction in the cluster
	// (another package's test) can hold.
	waitFor(t, 10*time.Second, "the standby to take the lease", func() bool {
		var owner string
		_ = admin.QueryRow(ctx, "SELECT coalesce(owner, '') FROM es.subscriptions WHERE tenant_id = $1 AND name = 'failover'", ts.TenantID()).Scan(&owner)
		return owner == "standby"
	})
	handover := time.Since(killed)
	waitFor(t, 10*time.Second, "the standby to deliver", func() bool { return owners()["standby"] > 0 })
	t.Logf("handover after kill: %s (bound %s)", handover, ttl+ttl/3)
	if bound := ttl + ttl/3 + 500*time.Millisecond; handover > bound {
		t.Errorf("handover took %s, over the bound %s", handover, bound)
	}
	close(stopAppends)
	n := <-appendsDone
	waitFor(t, 10*time.Second, "every event", func() bool {
		var c int
		_ = admin.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&c)
		return c >= n+1
	})
	var total, distinct int
	if err := admin.QueryRow(ctx, "SELECT count(*), count(DISTINCT position) FROM "+table).Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if total != distinct || total != n+1 {
		t.Fatalf("projection holds %d rows for %d distinct events, want %d exactly once", total, distinct, n+1)
	}
}

// TestSubscriptionFailoverChild is the consumer process of
// TestSubscriptionFailoverToStandby; it runs only when started by it.
func TestSubscriptionFailoverChild(t *testing.T) {
	url := os.Getenv("PGES_CHILD_URL")
	if url == "" {
		t.Skip("run by TestSubscriptionFailoverToStandby")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	store, err := pges.New(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := store.Tenant(os.Getenv("PGES_CHILD_TENANT"))
	table := os.Getenv("PGES_CHILD_TABLE")
	if _, err := ts.Append(ctx, []pges.EventData{ev("First", 0)}, nil); err != nil {
		t.Fatal(err)
	}
	active := sync.OnceFunc(func() { fmt.Println("ACTIVE") })
	err = ts.Subscribe(ctx, pges.SubscriptionConfig{Name: "failover", Owner: "child", LeaseTTL: time.Second, PollInterval: noPoll,
		Handler: func(ctx context.Context, tx pgx.Tx, ev pges.RecordedEvent) error {
			active()
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, 'child')", ev.Position)
			return err
		}})
	t.Fatal("the child consumer stopped:", err, strconv.Quote(table))
}

// The trigger notifies channel es_events with the tenant id on commit,
// and not at all for a session or transaction with es.push = off.
func TestNotifyTriggerAndPushOff(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN es_events"); err != nil {
		t.Fatal(err)
	}
	next := func(d time.Duration) (string, bool) {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			return "", false
		}
		return n.Payload, true
	}
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL es.push = off"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT es.append_events(set_config('es.tenant_id', $1, true), '[{"type":"Quiet","payload":{}}]')`, ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if p, ok := next(300 * time.Millisecond); ok {
		t.Fatalf("notified %q for an append with es.push = off", p)
	}
	appendDCB(t, ts, ev("Loud", 1))
	if p, ok := next(5 * time.Second); !ok || p != ts.TenantID() {
		t.Fatalf("notification %q (%v), want the tenant id", p, ok)
	}
}

// A running subscription holds one pool connection for its reads, batches
// and renewals: as many subscriptions as the pool has connections still
// deliver (with two connections per subscription they starved each other).
func TestSubscriptionsFitTheirPool(t *testing.T) {
	admin := testdb.Pool(t)
	cfg, err := pgxpool.ParseConfig(testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2
	small, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(small.Close) // after the subscriptions stop: Close waits for their connections
	store, err := pges.New(small, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := store.Tenant(testdb.NewTenant(t, admin))
	for i := range 10 {
		appendDCB(t, ts, ev("E", i))
	}
	var got [2]*collector
	for i := range got {
		got[i] = &collector{}
		run(t, ts, pges.SubscriptionConfig{Name: fmt.Sprintf("small-%d", i), Handler: got[i].handle, PollInterval: noPoll, BatchSize: 3})
	}
	for i := range got {
		waitFor(t, 10*time.Second, "both subscriptions to deliver everything", func() bool { return len(got[i].distinct()) == 10 })
	}
}

// Starting (or resetting) at a position while a transaction holding an
// event at that position is still open must not skip that event.
func TestStartAtPositionWaitsForOpenTransactions(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	txA, posA := beginAppend(t, admin, ts.TenantID(), "A")
	appendDCB(t, ts, ev("B", 1)) // commits while A is open
	conn, err := admin.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false), es.subscribe($1, 'from-a', '{}', $2::bigint::text)", ts.TenantID(), posA); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET es.tenant_id")
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var types []string
	rows, err := conn.Query(ctx, "SELECT event_type FROM es.subscription_next($1, 'from-a', 10)", ts.TenantID())
	if err != nil {
		t.Fatal(err)
	}
	types, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !slices.Equal(types, []string{"A", "B"}) {
		t.Fatalf("delivered %v (%v), want [A B]", types, err)
	}
}

// A batch whose COMMIT answer was lost is not committed twice: storing the
// same checkpoint again as a batch fails with ErrLeaseLost (ES011).
func TestCommitCheckpointRefusesTheSameBatchTwice(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	appendDCB(t, ts, ev("E", 1))
	conn, err := admin.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	defer conn.Exec(ctx, "RESET es.tenant_id")
	if _, err := conn.Exec(ctx, `SELECT set_config('es.tenant_id', $1, false), es.subscribe($1, 'once', '{}'),
		es.acquire_subscription($1, 'once', 'me', '1 minute')`, ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	commit := `SELECT es.commit_checkpoint($1, 'once', 'me', '1 minute', e.tx_id, e.position, e.position) FROM es.events e WHERE e.tenant_id = $1`
	if _, err := conn.Exec(ctx, commit, ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, commit, ts.TenantID()); !errors.Is(pges.TranslateError(err), pges.ErrLeaseLost) {
		t.Fatalf("the same batch committed twice: %v", err)
	}
	// A renewal at the same checkpoint is fine.
	if _, err := conn.Exec(ctx, `SELECT es.commit_checkpoint($1, 'once', 'me', '1 minute', e.tx_id, e.position, 0) FROM es.events e WHERE e.tenant_id = $1`, ts.TenantID()); err != nil {
		t.Fatal(err)
	}
}

// Hazard 1: NOTIFY serializes the commits of notifying transactions, so only
// the holder of the tenant's notifier lock notifies. Two appends in flight
// together send one notification, not two.
func TestOnlyOneWriterInFlightNotifies(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN es_events"); err != nil {
		t.Fatal(err)
	}
	tx1, _ := beginAppend(t, admin, ts.TenantID(), "W1")
	tx2, _ := beginAppend(t, admin, ts.TenantID(), "W2")
	if err := tx2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			break
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d notifications for two appends in flight together, want 1", n)
	}
}

// A consumer group splits alike whether read by the Go API or by the SQL
// API's es.read_log: the two carry the same hash expression.
func TestConsumerGroupSplitsAlikeInGoAndSQL(t *testing.T) {
	ts, admin := newTenant(t)
	ctx := context.Background()
	for i := range 12 {
		e := ev("E", i)
		e.Tags = []string{fmt.Sprintf("student:%d", i%5), "other"}
		mustAppend(t, ts, fmt.Sprintf("s-%d", i%7), pges.Any, e)
	}
	conn, err := admin.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false)", ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET es.tenant_id")
	for _, key := range []string{"stream", "tag:student:"} {
		for member := range 3 {
			g := &pges.ConsumerGroup{Members: 3, Member: member, Key: key}
			filter, _ := json.Marshal(pges.SubscriptionFilter{Group: g})
			rows, err := conn.Query(ctx, "SELECT position FROM es.read_log($1, '0', 0, $2::jsonb, 100)", ts.TenantID(), string(filter))
			if err != nil {
				t.Fatal(err)
			}
			sqlSide, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			got := &collector{}
			stop := run(t, ts, pges.SubscriptionConfig{Handler: got.handle, PollInterval: noPoll, Filter: pges.SubscriptionFilter{Group: g}})
			waitFor(t, 5*time.Second, "the member's events", func() bool { return len(got.positions()) >= len(sqlSide) })
			time.Sleep(50 * time.Millisecond)
			_ = stop()
			if !slices.Equal(got.positions(), sqlSide) {
				t.Errorf("key %s member %d: Go delivered %v, es.read_log %v", key, member, got.positions(), sqlSide)
			}
		}
	}
}

// BeforeCommit runs before the checkpoint moves: while it fails, the batch
// rolls back (the handler's writes too) and is delivered again, beyond
// MaxAttempts; once it succeeds the checkpoint passes the batch.
func TestSubscriptionBeforeCommitHoldsTheCheckpoint(t *testing.T) {
	ts, _ := newTenant(t)
	ctx := context.Background()
	for i := range 5 {
		appendDCB(t, ts, ev("Held", i))
	}
	var (
		mu       sync.Mutex
		calls    int
		received []int64
		fail     = true
	)
	stop := run(t, ts, pges.SubscriptionConfig{Name: "held", PollInterval: noPoll, MaxAttempts: 1, RetryBackoff: time.Millisecond,
		MaxRetryBackoff: 5 * time.Millisecond,
		Handler: func(_ context.Context, _ pgx.Tx, ev pges.RecordedEvent) error {
			mu.Lock()
			defer mu.Unlock()
			received = append(received, ev.Position)
			return nil
		},
		BeforeCommit: func(context.Context, pgx.Tx) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if fail {
				return errors.New("not confirmed")
			}
			return nil
		}})
	waitFor(t, 10*time.Second, "three failed batches", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= 3 })
	status, err := ts.Subscriptions(ctx)
	if err != nil || len(status) != 1 || status[0].LastPosition != 0 || status[0].LagEvents != 5 {
		t.Fatalf("checkpoint moved while BeforeCommit failed: %+v (%v)", status, err)
	}
	mu.Lock()
	fail, received = false, nil
	mu.Unlock()
	waitFor(t, 10*time.Second, "the checkpoint to pass the batch", func() bool {
		status, _ := ts.Subscriptions(ctx)
		return len(status) == 1 && status[0].LagEvents == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("the subscription stopped: %v", err)
	}
	if len(received) != 5 {
		t.Fatalf("after the failures the batch was delivered as %v, want the 5 events once", received)
	}
}

// The reader reads without bitmap scans (a bitmap scan of the whole backlog
// per batch made catch-up quadratic on shared tenants), but the handler's
// statements in the batch's transaction get the session's setting back.
func TestSubscriptionHandlerKeepsBitmapScans(t *testing.T) {
	ts, _ := newTenant(t)
	mustAppend(t, ts, "s", pges.Any, ev("A", 1), ev("A", 2))
	var mu sync.Mutex
	var seen []string
	stop := run(t, ts, pges.SubscriptionConfig{Name: "bitmap", PollInterval: noPoll, BatchSize: 1,
		Handler: func(ctx context.Context, tx pgx.Tx, e pges.RecordedEvent) error {
			var v string
			if err := tx.QueryRow(ctx, "SHOW enable_bitmapscan").Scan(&v); err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, v)
			mu.Unlock()
			return nil
		}})
	waitFor(t, 10*time.Second, "delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if seen[0] != "on" || seen[1] != "on" {
		t.Fatalf("handlers saw enable_bitmapscan %v, want on", seen)
	}
}
