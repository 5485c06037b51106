package pges_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// newTxTenant is newTenant with the runtime pool too (transactions begin
// there, as an application's do) and a table of the caller's own.
func newTxTenant(t *testing.T) (ts *pges.TenantStore, runtime, admin *pgxpool.Pool, table string) {
	t.Helper()
	admin, runtime = testdb.Pool(t), testdb.RuntimePool(t)
	store, err := pges.New(runtime, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts = store.Tenant(testdb.NewTenant(t, admin))
	table = "own_" + ts.TenantID()
	if _, err := admin.Exec(context.Background(), fmt.Sprintf("CREATE TABLE %s (note text NOT NULL); GRANT ALL ON %s TO es_runtime", table, table)); err != nil {
		t.Fatal(err)
	}
	return ts, runtime, admin, table
}

func countRows(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Every write through a TenantTx commits or rolls back with the caller's
// own row (the outbox case).
func TestTxWritesCommitOrRollBackWithTheCaller(t *testing.T) {
	ctx := context.Background()
	ts, runtime, admin, table := newTxTenant(t)
	mustAppend(t, ts, "gone", pges.NoStream, ev("Made", 1))
	writeAll := func(tx pgx.Tx) {
		t.Helper()
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ('order placed')"); err != nil {
			t.Fatal(err)
		}
		x := ts.Tx(tx)
		if _, err := x.AppendToStream(ctx, "order-1", pges.NoStream, ev("Placed", 1), ev("Paid", 2)); err != nil {
			t.Fatal(err)
		}
		if _, err := x.Append(ctx, []pges.EventData{{Type: "Noted", Payload: []byte(`{}`), Tags: []string{"order:1"}}},
			&pges.AppendCondition{FailIfEventsMatch: pges.Tags("order:1")}); err != nil {
			t.Fatal(err)
		}
		if err := x.SaveSnapshot(ctx, "order-1", 2, 1, []byte(`{"paid":true}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := x.DeleteStream(ctx, "gone", pges.Exactly(1)); err != nil {
			t.Fatal(err)
		}
		// The transaction sees its own writes.
		if v, _, err := x.StreamVersion(ctx, "order-1"); err != nil || v != 2 {
			t.Fatalf("version in the transaction: %d, %v", v, err)
		}
	}
	state := func() string {
		var snaps int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM es.snapshots WHERE tenant_id = $1", ts.TenantID()).Scan(&snaps); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("rows %d, events %d, snapshots %d", countRows(t, admin, table), countEvents(t, admin, ts.TenantID()), snaps)
	}

	tx, err := runtime.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(tx)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != "rows 0, events 1, snapshots 0" {
		t.Fatalf("after rollback: %s", got)
	}
	if _, _, err := ts.StreamVersion(ctx, "order-1"); err != nil {
		t.Fatal(err)
	}

	if err := pgx.BeginFunc(ctx, runtime, func(tx pgx.Tx) error { writeAll(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != "rows 1, events 5, snapshots 1" {
		t.Fatalf("after commit: %s", got)
	}
	if _, err := ts.ReadStream(ctx, "gone", pges.ReadOptions{}); !errors.Is(err, pges.ErrStreamDeleted) {
		t.Fatalf("deleted in the committed transaction: %v", err)
	}
}

// A write that fails inside the caller's transaction returns the same
// typed error as on the pool, writes nothing, and leaves the transaction
// usable (the savepoint): the caller's later writes commit.
func TestTxFailedWritesLeaveTheTransactionUsable(t *testing.T) {
	ctx := context.Background()
	ts, runtime, admin, table := newTxTenant(t)
	mustAppend(t, ts, "s", pges.NoStream, ev("A", 1))
	tx, err := runtime.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	x := ts.Tx(tx)
	bad := []struct {
		name string
		call func() error
		want error
	}{
		{"wrong version", func() error { _, err := x.AppendToStream(ctx, "s", pges.NoStream, ev("B", 1)); return err }, pges.ErrWrongExpectedVersion},
		{"reserved type", func() error { _, err := x.AppendToStream(ctx, "s", pges.Any, ev("$nope", 1)); return err }, pges.ErrInvalidEvent},
		{"violated condition", func() error {
			_, err := x.Append(ctx, []pges.EventData{ev("B", 1)}, &pges.AppendCondition{FailIfEventsMatch: pges.QueryAll()})
			return err
		}, pges.ErrAppendConditionViolated},
		{"empty tag", func() error {
			_, err := x.Append(ctx, []pges.EventData{{Type: "B", Payload: []byte(`1`), Tags: []string{""}}}, nil)
			return err
		}, pges.ErrInvalidEvent},
		{"delete missing", func() error { _, err := x.DeleteStream(ctx, "missing", pges.Any); return err }, pges.ErrStreamNotFound},
		{"snapshot beyond the stream", func() error { return x.SaveSnapshot(ctx, "s", 9, 1, []byte(`{}`)) }, pges.ErrInvalidEvent},
		{"empty stream id", func() error { _, err := x.AppendToStream(ctx, "", pges.Any, ev("B", 1)); return err }, pges.ErrInvalidEvent},
	}
	for _, b := range bad {
		if err := b.call(); !errors.Is(err, b.want) {
			t.Fatalf("%s: %v, want %v", b.name, err, b.want)
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ('after the failures')"); err != nil {
		t.Fatalf("the transaction is not usable after failed writes: %v", err)
	}
	if _, err := x.AppendToStream(ctx, "s", pges.Exactly(1), ev("B", 1)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n, rows := countEvents(t, admin, ts.TenantID()), countRows(t, admin, table); n != 2 || rows != 1 {
		t.Fatalf("%d events and %d rows, want 2 and 1: a failed write wrote something", n, rows)
	}
}

// A read that PostgreSQL refuses inside the caller's transaction (a
// missing or deleted stream, a head read under REPEATABLE READ) returns
// its typed error and leaves the transaction usable too.
func TestTxFailedReadsLeaveTheTransactionUsable(t *testing.T) {
	ctx := context.Background()
	ts, runtime, admin, table := newTxTenant(t)
	mustAppend(t, ts, "gone", pges.NoStream, ev("A", 1))
	if _, err := ts.DeleteStream(ctx, "gone", pges.Any); err != nil {
		t.Fatal(err)
	}
	for _, iso := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.RepeatableRead} {
		tx, err := runtime.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		x := ts.Tx(tx)
		if _, err := x.ReadStream(ctx, "missing", pges.ReadOptions{}); !errors.Is(err, pges.ErrStreamNotFound) {
			t.Fatalf("%s: missing stream: %v", iso, err)
		}
		if _, err := x.ReadStream(ctx, "gone", pges.ReadOptions{}); !errors.Is(err, pges.ErrStreamDeleted) {
			t.Fatalf("%s: deleted stream: %v", iso, err)
		}
		for e, err := range x.IterateStream(ctx, "missing", 0) {
			if !errors.Is(err, pges.ErrStreamNotFound) {
				t.Fatalf("%s: iterate a missing stream: %+v %v", iso, e, err)
			}
		}
		_, err = x.Read(ctx, pges.QueryAll(), pges.QueryOptions{})
		if iso == pgx.RepeatableRead && !errors.Is(err, pges.ErrInvalidEvent) || iso == pgx.ReadCommitted && err != nil {
			t.Fatalf("%s: read: %v", iso, err)
		}
		// Unconditional appends work at any isolation level: under
		// REPEATABLE READ the first append comes before the transaction's
		// other writes (migrations/00012, ES012 case b).
		if _, err := x.AppendToStream(ctx, "s-"+string(iso[:4]), pges.NoStream, ev("B", 1)); err != nil {
			t.Fatalf("%s: the transaction is not usable after failed reads: %v", iso, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1)", string(iso)); err != nil {
			t.Fatalf("%s: %v", iso, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, rows := countEvents(t, admin, ts.TenantID()), countRows(t, admin, table); n != 4 || rows != 2 {
		t.Fatalf("%d events and %d rows, want 4 and 2", n, rows)
	}
}

// A stream append with Any that loses the next version to a concurrent
// exact-version append retries from its savepoint inside the caller's
// transaction, which stays usable and commits.
func TestTxLostVersionRaceRetriesInASavepoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts, runtime, admin, table := newTxTenant(t)
	mustAppend(t, ts, "s", pges.NoStream, ev("A", 1))

	// The competitor has written version 2 and not committed.
	rival, err := runtime.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rival.Rollback(ctx)
	if _, err := ts.Tx(rival).AppendToStream(ctx, "s", pges.Exactly(1), ev("Rival", 1)); err != nil {
		t.Fatal(err)
	}
	tx, err := runtime.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ('mine')"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var res pges.AppendResult
	go func() {
		var err error
		res, err = ts.Tx(tx).AppendToStream(ctx, "s", pges.Any, ev("Mine", 1))
		done <- err
	}()
	// Wait until our append waits for the rival: on the stream's queue lock
	// (migrations/00012: appends to one stream queue, and then see the
	// winner's version), or on the unique index before that. Then let the
	// rival commit.
	waitFor(t, 10*time.Second, "the append to wait for the rival", func() bool {
		var n int
		_ = admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'advisory')").Scan(&n)
		return n > 0
	})
	if err := rival.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("append with Any after a lost race: %v", err)
	}
	if res.StreamVersion != 3 {
		t.Fatalf("version %d, want 3", res.StreamVersion)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	events, err := ts.ReadStream(ctx, "s", pges.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(types(events)); got != "[A@1 Rival@2 Mine@3]" || countRows(t, admin, table) != 1 {
		t.Fatalf("stream %s, own rows %d", got, countRows(t, admin, table))
	}
}

// Two transactions that each append to two streams, in opposite orders,
// do not wait for each other forever: PostgreSQL fails one of them with
// ErrDeadlock (typed) within its deadlock_timeout, the other commits once
// the loser rolls back, and nothing of the loser is written.
func TestTxOppositeOrderAppendsDoNotHang(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts, runtime, admin, _ := newTxTenant(t)
	begin := func() pgx.Tx {
		tx, err := runtime.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		return tx
	}
	tx1, tx2 := begin(), begin()
	if _, err := ts.Tx(tx1).AppendToStream(ctx, "a", pges.Any, ev("One", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Tx(tx2).AppendToStream(ctx, "b", pges.Any, ev("Two", 1)); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	second := func(tx pgx.Tx, stream, typ string) {
		_, err := ts.Tx(tx).AppendToStream(ctx, stream, pges.Any, ev(typ, 2))
		if err != nil {
			_ = tx.Rollback(ctx) // the loser gives up its locks
		} else {
			err = tx.Commit(ctx)
		}
		errs <- err
	}
	start := time.Now()
	go second(tx1, "b", "One")
	go second(tx2, "a", "Two")
	var deadlocks, ok int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, pges.ErrDeadlock):
			deadlocks++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if deadlocks != 1 || ok != 1 {
		t.Fatalf("%d deadlocks and %d commits, want one each", deadlocks, ok)
	}
	t.Logf("resolved in %s", time.Since(start))
	if n := countEvents(t, admin, ts.TenantID()); n != 2 {
		t.Fatalf("%d events, want the winner's 2", n)
	}
}

// Calls through a TenantTx touch the handle's tenant only, and scope the
// rest of the transaction to it (row-level security shows the transaction
// that tenant's rows).
func TestTxTenantIsolation(t *testing.T) {
	ctx := context.Background()
	a, runtime, admin, _ := newTxTenant(t)
	store, err := pges.New(runtime, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := store.Tenant(testdb.NewTenant(t, admin))
	mustAppend(t, b, "secret", pges.NoStream, ev("B", 1))
	tx, err := runtime.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := a.Tx(tx).AppendToStream(ctx, "mine", pges.NoStream, ev("A", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Tx(tx).ReadStream(ctx, "secret", pges.ReadOptions{}); !errors.Is(err, pges.ErrStreamNotFound) {
		t.Fatalf("tenant a reads b's stream: %v", err)
	}
	tx.Rollback(ctx)
	tx, err = runtime.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	events, _, err := a.Tx(tx).ReadAll(ctx, pges.QueryAll(), pges.QueryOptions{})
	if err != nil || len(events) != 0 {
		t.Fatalf("tenant a sees %d events (%v)", len(events), err)
	}
	var visible int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM es.events").Scan(&visible); err != nil || visible != 0 {
		t.Fatalf("the transaction scoped to a sees %d rows (%v)", visible, err)
	}
}

// followUp is a process manager: for each Ordered event it appends a
// Shipped event caused by it, in the subscription's transaction.
func followUp(ts *pges.TenantStore, after func(pges.RecordedEvent)) pges.Handler {
	return func(ctx context.Context, tx pgx.Tx, e pges.RecordedEvent) error {
		_, err := ts.Tx(tx).Append(ctx, []pges.EventData{{Type: "Shipped", Payload: []byte(`{}`),
			Metadata: pges.Metadata{}.CausedBy(e), Tags: []string{fmt.Sprintf("cause:%d", e.Position)}}}, nil)
		if err == nil && after != nil {
			after(e)
		}
		return err
	}
}

// A subscription handler that appends follow-ups through its transaction
// is exactly-once across a crash between handling and commit: a child
// process handles events, appends the follow-ups of part of a batch and is
// killed before the batch commits; the restarted consumer appends each
// follow-up once.
func TestTxSubscriptionFollowUpsExactlyOnceAcrossACrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	ctx := context.Background()
	ts, _, admin, _ := newTxTenant(t)
	const orders = 20
	for i := range orders {
		appendDCB(t, ts, pges.EventData{Type: "Ordered", Payload: []byte(fmt.Sprint(i)), Tags: []string{fmt.Sprintf("order:%d", i)}})
	}
	shipped := func() (total, distinct int) {
		if err := admin.QueryRow(ctx, "SELECT count(*), count(DISTINCT metadata->>'causation_id') FROM es.events WHERE tenant_id = $1 AND event_type = 'Shipped'",
			ts.TenantID()).Scan(&total, &distinct); err != nil {
			t.Fatal(err)
		}
		return total, distinct
	}
	child := exec.Command(os.Args[0], "-test.run=^TestTxSubscriptionFollowUpChild$", "-test.v")
	child.Env = append(os.Environ(), "PGES_CHILD_URL="+testdb.URL(t), "PGES_CHILD_TENANT="+ts.TenantID(), testdb.ChildDatabaseEnv+"="+testdb.URL(t))
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	lines := bufio.NewScanner(out)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "HANDLED") {
	}
	// Two batches of 5 committed; the third has appended 3 follow-ups
	// that nobody else can see yet.
	if total, _ := shipped(); total != 10 {
		t.Fatalf("%d follow-ups visible before the crash, want 10", total)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	stop := run(t, ts, pges.SubscriptionConfig{Name: "pm", BatchSize: 5, LeaseTTL: time.Second, PollInterval: noPoll,
		Filter: pges.SubscriptionFilter{Types: []string{"Ordered"}}, Handler: followUp(ts, nil)})
	last := lastOrdered(t, admin, ts.TenantID())
	waitFor(t, 20*time.Second, "every follow-up", func() bool {
		status, err := ts.Subscriptions(ctx)
		return err == nil && len(status) == 1 && status[0].LastPosition >= last
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if total, distinct := shipped(); total != orders || distinct != orders {
		t.Fatalf("%d follow-ups for %d distinct events, want %d exactly once", total, distinct, orders)
	}
}

func lastOrdered(t *testing.T, admin *pgxpool.Pool, tenant string) int64 {
	t.Helper()
	var p int64
	if err := admin.QueryRow(context.Background(), "SELECT max(position) FROM es.events WHERE tenant_id = $1 AND event_type = 'Ordered'", tenant).Scan(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTxSubscriptionFollowUpChild is the consumer process of
// TestTxSubscriptionFollowUpsExactlyOnceAcrossACrash; it runs only when
// started by it, and hangs inside its third batch until killed.
func TestTxSubscriptionFollowUpChild(t *testing.T) {
	url := os.Getenv("PGES_CHILD_URL")
	if url == "" {
		t.Skip("run by TestTxSubscriptionFollowUpsExactlyOnceAcrossACrash")
	}
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE es_runtime")
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := pges.New(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := store.Tenant(os.Getenv("PGES_CHILD_TENANT"))
	handled := 0
	err = ts.Subscribe(ctx, pges.SubscriptionConfig{Name: "pm", BatchSize: 5, LeaseTTL: time.Second, PollInterval: noPoll,
		Filter: pges.SubscriptionFilter{Types: []string{"Ordered"}},
		Handler: followUp(ts, func(e pges.RecordedEvent) {
			if handled++; handled == 13 {
				fmt.Println("HANDLED", e.Position)
				select {} // the crash comes before the batch commits
			}
		})})
	t.Fatal("the child consumer stopped:", err)
}

// BenchmarkAppendInCallersTx: the cost of the savepoint around a write in
// the caller's transaction. Each iteration runs, in turn, a transaction
// that appends one DCB event through TenantTx (SAVEPOINT, append, RELEASE
// in one pipelined round trip) and one that runs the same statement bare,
// as a hand-written SQL call would; the metric is their ratio.
//
//	go test -run '^$' -bench AppendInCallersTx -benchtime 2000x .
func BenchmarkAppendInCallersTx(b *testing.B) {
	ctx := context.Background()
	runtime := testdb.RuntimePool(b)
	store, err := pges.New(runtime, nil)
	if err != nil {
		b.Fatal(err)
	}
	ts := store.Tenant(testdb.NewTenant(b, testdb.Pool(b)))
	const bare = `WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', $1::text, true) AS tenant_id)
SELECT es.append_events(t.tenant_id, $2::jsonb, NULL, 0)::bigint[] FROM t`
	var withSP, without time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		err := pgx.BeginFunc(ctx, runtime, func(tx pgx.Tx) error {
			_, err := ts.Tx(tx).Append(ctx, []pges.EventData{{Type: "Tick", Payload: []byte(`{"n":1}`), Tags: []string{"t:1"}}}, nil)
			return err
		})
		withSP += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		err = pgx.BeginFunc(ctx, runtime, func(tx pgx.Tx) error {
			var p []int64
			return tx.QueryRow(ctx, bare, ts.TenantID(), fmt.Sprintf(`[{"id":"%s","type":"Tick","payload":{"n":1},"tags":["t:1"]}]`, uuid.Must(uuid.NewV7()))).Scan(&p)
		})
		without += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/withSP.Seconds(), "tx/s-savepoint")
	b.ReportMetric(float64(b.N)/without.Seconds(), "tx/s-bare")
	b.ReportMetric(without.Seconds()/withSP.Seconds(), "x-bare")
}
