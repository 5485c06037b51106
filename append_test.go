package pges_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Bad input is refused with the offending event's index and writes nothing:
// never silently changed (encoding/json would turn invalid UTF-8 into U+FFFD)
// and never a raw server error.
func TestTextThatCannotBeStoredAsIsIsRefused(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	mustAppend(t, ts, "s", pges.NoStream, ev("Ok", nil))
	bad := string([]byte{0xff, 0xfe})
	ok := func() pges.EventData { return ev("Ok", map[string]int{"a": 1}) }
	with := func(change func(*pges.EventData)) []pges.EventData {
		e := ok()
		change(&e)
		return []pges.EventData{ok(), e} // the bad one is event 1
	}
	cases := map[string][]pges.EventData{
		"invalid UTF-8 in the type":          with(func(e *pges.EventData) { e.Type = "T" + bad }),
		"NUL in the type":                    with(func(e *pges.EventData) { e.Type = "T\x00" }),
		"invalid UTF-8 in a tag":             with(func(e *pges.EventData) { e.Tags = []string{"ok", "t" + bad} }),
		"NUL in a tag":                       with(func(e *pges.EventData) { e.Tags = []string{"a\x00b"} }),
		"invalid UTF-8 in metadata":          with(func(e *pges.EventData) { e.Metadata.User = bad }),
		"NUL in metadata":                    with(func(e *pges.EventData) { e.Metadata.CorrelationID = "\x00" }),
		"invalid UTF-8 deep in Extra":        with(func(e *pges.EventData) { e.Metadata.Extra = map[string]any{"k": []any{"x", bad}} }),
		"invalid UTF-8 in an Extra key":      with(func(e *pges.EventData) { e.Metadata.Extra = map[string]any{bad: 1} }),
		"invalid UTF-8 in the payload":       with(func(e *pges.EventData) { e.Payload = json.RawMessage("{\"a\":\"" + bad + "\"}") }),
		"a NUL escape in the payload":        with(func(e *pges.EventData) { e.Payload = json.RawMessage(`{"a":"x\u0000y"}`) }),
		"a NUL escape in a payload key":      with(func(e *pges.EventData) { e.Payload = json.RawMessage(`{"\u0000":1}`) }),
		"the same id twice in one batch (1)": sameIDs(),
		"a cycle in Extra":                   with(func(e *pges.EventData) { m := map[string]any{}; m["self"] = m; e.Metadata.Extra = m }),
		"a NUL escape in a RawMessage in Extra": with(func(e *pges.EventData) {
			e.Metadata.Extra = map[string]any{"raw": json.RawMessage(`"a\u0000"`)}
		}),
	}
	for name, events := range cases {
		t.Run(name, func(t *testing.T) {
			before := countEvents(t, pool, ts.TenantID())
			for _, call := range []func() error{
				func() error { _, err := ts.AppendToStream(ctx, "s", pges.Any, events...); return err },
				func() error { _, err := ts.Append(ctx, events, nil); return err },
			} {
				err := call()
				var iee *pges.InvalidEventError
				if !errors.As(err, &iee) || iee.Index != 1 {
					t.Fatalf("err = %v, want an InvalidEventError naming event 1", err)
				}
			}
			if n := countEvents(t, pool, ts.TenantID()); n != before {
				t.Fatalf("%d events written", n-before)
			}
		})
	}
	// An escaped backslash before "u0000" is text, not a NUL.
	mustAppend(t, ts, "s", pges.Any, pges.EventData{Type: "Ok", Payload: json.RawMessage(`{"a":"\\u0000"}`)})

	for name, stream := range map[string]string{"invalid UTF-8": "s" + bad, "NUL": "s\x00"} {
		before := countEvents(t, pool, ts.TenantID())
		_, err := ts.AppendToStream(ctx, stream, pges.Any, ok())
		var iee *pges.InvalidEventError
		if !errors.As(err, &iee) || iee.Index != -1 {
			t.Fatalf("%s in a stream id: %v, want an InvalidEventError", name, err)
		}
		if _, err := ts.DeleteStream(ctx, stream, pges.Any); !errors.Is(err, pges.ErrInvalidEvent) {
			t.Fatalf("%s in a stream id, delete: %v", name, err)
		}
		if n := countEvents(t, pool, ts.TenantID()); n != before {
			t.Fatalf("%s in a stream id: %d events written", name, n-before)
		}
	}
}

func sameIDs() []pges.EventData {
	id := uuid.New()
	a, b := ev("Ok", nil), ev("Ok", nil)
	a.ID, b.ID = id, id
	return []pges.EventData{a, b}
}

// The SQL API names the event for what only it can see: duplicate ids in
// one batch (in any spelling of the UUID), bad schema versions and ids.
func TestSQLBatchChecksNameTheEvent(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	id := uuid.New()
	cases := map[string]string{
		// The second of two equal ids is the bad one.
		"duplicate id":            fmt.Sprintf(`[{"id":"%s","type":"A","payload":{}},{"id":"%s","type":"A","payload":{}},{"type":"A","payload":{}}]`, id, id),
		"duplicate id, respelled": fmt.Sprintf(`[{"id":"%s","type":"A","payload":{}},{"id":"%X","type":"A","payload":{}},{"type":"A","payload":{}}]`, id, id[:]),
		"id not a UUID":           `[{"type":"A","payload":{}},{"type":"A","payload":{},"id":"nope"},{"type":"A","payload":{}}]`,
		"schema version 0":        `[{"type":"A","payload":{}},{"type":"A","payload":{},"metadata":{"schema_version":0}},{"type":"A","payload":{}}]`,
		"schema version 1.5":      `[{"type":"A","payload":{}},{"type":"A","payload":{},"metadata":{"schema_version":1.5}},{"type":"A","payload":{}}]`,
		"tag of 1001 characters":  fmt.Sprintf(`[{"type":"A","payload":{}},{"type":"A","payload":{},"tags":["%01001d"]},{"type":"A","payload":{}}]`, 0),
	}
	for name, batch := range cases {
		for _, call := range []string{
			`SELECT es.append_to_stream(set_config('es.tenant_id', $1, true), 's', -1, $2::jsonb)`,
			`SELECT es.append_events(set_config('es.tenant_id', $1, true), $2::jsonb)`,
		} {
			_, err := pool.Exec(ctx, call, ts.TenantID(), batch)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "ES004" || pgErr.Detail != `{"index" : 1}` {
				t.Fatalf("%s: %v (detail %q), want ES004 naming event 1", name, err, detailOf(err))
			}
		}
		if n := countEvents(t, pool, ts.TenantID()); n != 0 {
			t.Fatalf("%s: %d events written", name, n)
		}
	}
}

func detailOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Detail
	}
	return ""
}

// docs/design.md, section 2, through the SQL API: T2 takes its transaction id first
// (it writes something else), T1 (a larger id) appends version 1 and
// commits, then T2 appends version 2. Subscribers deliver in (tx_id,
// position) order, so v2 would come before v1: the append is refused with
// ES012, and a new transaction appends it in order.
func TestStreamOrderHoldsForEveryWriter(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	tenant := ts.TenantID()
	t2, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Rollback(ctx)
	if _, err := t2.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // an id, as any write gives
		t.Fatal(err)
	}
	appendSQL := `SELECT stream_version FROM es.append_to_stream(set_config('es.tenant_id', $1, true), 's', $2, '[{"type":"E","payload":{}}]')`
	if _, err := pool.Exec(ctx, appendSQL, tenant, 0); err != nil { // T1: version 1
		t.Fatal(err)
	}
	_, err = t2.Exec(ctx, appendSQL, tenant, 1)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "ES012" || !errors.Is(pges.TranslateError(err), pges.ErrStreamOrder) {
		t.Fatalf("T2's append after a later transaction's: %v, want ES012", err)
	}
	_ = t2.Rollback(ctx)
	if _, err := pool.Exec(ctx, appendSQL, tenant, 1); err != nil { // a new transaction: in order
		t.Fatal(err)
	}
	assertDeliveryOrderIsVersionOrder(t, pool, tenant)

	// Case (b): a transaction that wrote before its first append to the
	// tenant is refused once another transaction appended since, whatever
	// the stream; one that appended first keeps appending.
	early, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback(ctx)
	_, _ = early.Exec(ctx, `SELECT pg_current_xact_id()`)
	mustAppend(t, ts, "other", pges.Any, ev("E", nil))
	_, err = early.Exec(ctx, `SELECT es.append_to_stream(set_config('es.tenant_id', $1, true), 'third', -1, '[{"type":"E","payload":{}}]')`, tenant)
	if !errors.Is(pges.TranslateError(err), pges.ErrStreamOrder) {
		t.Fatalf("early writer's first append after a later append: %v, want ES012", err)
	}
	_ = early.Rollback(ctx)

	// Under REPEATABLE READ the probe could not see what committed after
	// the snapshot: a first append after another write is refused outright.
	rr, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Rollback(ctx)
	_, _ = rr.Exec(ctx, `SELECT pg_current_xact_id()`)
	mustAppend(t, ts, "other", pges.Any, ev("E", nil))
	_, err = rr.Exec(ctx, `SELECT es.append_to_stream(set_config('es.tenant_id', $1, true), 'third', -1, '[{"type":"E","payload":{}}]')`, tenant)
	if !errors.Is(pges.TranslateError(err), pges.ErrStreamOrder) {
		t.Fatalf("REPEATABLE READ writer's first append after a later append: %v, want ES012", err)
	}
	_ = rr.Rollback(ctx)

	first, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx)
	if _, err := first.Exec(ctx, `SELECT es.append_events(set_config('es.tenant_id', $1, true), '[{"type":"E","payload":{}}]')`, tenant); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, ts, "other", pges.Any, ev("E", nil))
	if _, err := first.Exec(ctx, `SELECT es.append_events(set_config('es.tenant_id', $1, true), '[{"type":"E","payload":{}}]')`, tenant); err != nil {
		t.Fatalf("second append of a transaction whose first came before: %v", err)
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// assertDeliveryOrderIsVersionOrder checks every stream of the tenant: in
// the order subscriptions deliver, (tx_id, position), versions ascend.
func assertDeliveryOrderIsVersionOrder(t *testing.T, pool *pgxpool.Pool, tenant string) int {
	t.Helper()
	var bad, streams int
	err := pool.QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE v <> rn), count(DISTINCT stream_id)
		  FROM (SELECT stream_id, stream_version AS v,
		               row_number() OVER (PARTITION BY stream_id ORDER BY tx_id, position) AS rn
		          FROM es.events WHERE tenant_id = $1 AND stream_id IS NOT NULL) d`, tenant).Scan(&bad, &streams)
	if err != nil {
		t.Fatal(err)
	}
	if bad > 0 {
		t.Fatalf("%d events of %d streams would be delivered out of version order", bad, streams)
	}
	return streams
}

// Under load, writers that write more than once per transaction (another
// table first, then two appends to random streams) never leave a stream
// whose delivery order differs from its version order. Refused appends
// (ES012), lost races and deadlocks roll back and retry.
func TestStreamOrderUnderLoadWithMultiWriteTransactions(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	tenant := ts.TenantID()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS side_effects (n bigint)`); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter, nStreams = 8, 20, 6
	var mu sync.Mutex
	refused := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	deadline := time.Now().Add(2 * time.Minute)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for done := 0; done < perWriter && time.Now().Before(deadline); {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if r.IntN(2) == 0 { // half write elsewhere first: an early id
						if _, err := tx.Exec(ctx, `INSERT INTO side_effects VALUES (1)`); err != nil {
							return err
						}
					}
					for range 2 {
						_, err := tx.Exec(ctx, `SELECT es.append_to_stream(set_config('es.tenant_id', $1, true), $2, -1, '[{"type":"E","payload":{}}]')`,
							tenant, fmt.Sprintf("s%d", r.IntN(nStreams)))
						if err != nil {
							return err
						}
					}
					return nil
				})
				var pgErr *pgconn.PgError
				switch {
				case err == nil:
					done++
				case errors.As(err, &pgErr) && (pgErr.Code == "ES012" || pgErr.Code == "40P01"):
					mu.Lock()
					refused[pgErr.Code]++
					mu.Unlock()
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	streams := assertDeliveryOrderIsVersionOrder(t, pool, tenant)
	t.Logf("%d streams in order; transactions retried by SQLSTATE: %v", streams, refused)
	if refused["ES012"] == 0 {
		t.Fatal("no append was refused for its order: the load did not exercise the hazard")
	}
}

// A conditional append whose boundary is busy (another append of it in
// flight) fails at once when what has committed already violates its
// condition, instead of queueing behind the one in flight: a contended
// boundary's losers fail fast.
func TestBusyBoundaryFailsFastOnACommittedConflict(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	first, err := ts.Append(ctx, []pges.EventData{tagged("Subscribed", "course:busy")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT es.append_events(set_config('es.tenant_id', $1, true),
		'[{"type":"Subscribed","payload":{},"tags":["course:busy"]}]', '[{"tags":["course:busy"]}]', $2)`,
		ts.TenantID(), first.Positions[0]); err != nil {
		t.Fatal(err)
	}
	quick, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = ts.Append(quick, []pges.EventData{tagged("Subscribed", "course:busy")},
		&pges.AppendCondition{FailIfEventsMatch: pges.Tags("course:busy")})
	if !errors.Is(err, pges.ErrAppendConditionViolated) {
		t.Fatalf("append on a busy boundary with a committed conflict: %v, want a violation at once", err)
	}
	// Without a committed conflict it still waits for the one in flight.
	blocked := make(chan error, 1)
	go func() {
		_, err := ts.Append(ctx, []pges.EventData{tagged("Subscribed", "course:busy")},
			&pges.AppendCondition{FailIfEventsMatch: pges.Tags("course:busy"), After: first.Positions[0]})
		blocked <- err
	}()
	select {
	case err := <-blocked:
		t.Fatalf("append on a busy boundary without a committed conflict did not wait: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; !errors.Is(err, pges.ErrAppendConditionViolated) {
		t.Fatalf("after the holder committed: %v, want a violation", err)
	}
}

// In a caller's transaction ErrStreamOrder reaches the caller, typed: its
// id cannot change, so only the caller can retry (in a new transaction).
// (That the store does not also retry in vain first is not observable
// here: a retry would end with the same error.)
func TestStreamOrderInACallersTransactionIsReturned(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	mustAppend(t, ts, "s", pges.NoStream, ev("E", nil))
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // wrote something first
		t.Fatal(err)
	}
	mustAppend(t, ts, "s", pges.Any, ev("E", nil)) // a later transaction appends
	if _, err := ts.Tx(tx).AppendToStream(ctx, "s", pges.Any, ev("E", nil)); !errors.Is(err, pges.ErrStreamOrder) {
		t.Fatalf("append in the caller's transaction: %v, want ErrStreamOrder", err)
	}
}
