package pges_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/eventstore-go/pges"
	"github.com/google/uuid"
)

func TestAppendAndReadStream(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)

	res := mustAppend(t, ts, "order-1", pges.NoStream, numbered("Placed", 3)...)
	if res.StreamVersion != 3 || len(res.Positions) != 3 {
		t.Fatalf("result %+v, want version 3 and 3 positions", res)
	}
	for i := 1; i < 3; i++ {
		if res.Positions[i] <= res.Positions[i-1] {
			t.Fatalf("positions not increasing: %v", res.Positions)
		}
	}
	if res := mustAppend(t, ts, "order-1", pges.Exactly(3), ev("Paid", nil)); res.StreamVersion != 4 {
		t.Fatalf("version %d, want 4", res.StreamVersion)
	}
	if res := mustAppend(t, ts, "order-1", pges.StreamExists, ev("Shipped", nil)); res.StreamVersion != 5 {
		t.Fatalf("version %d, want 5", res.StreamVersion)
	}
	if res := mustAppend(t, ts, "order-1", pges.Any, ev("Closed", nil)); res.StreamVersion != 6 {
		t.Fatalf("version %d, want 6", res.StreamVersion)
	}

	cases := []struct {
		opts pges.ReadOptions
		want string
	}{
		{pges.ReadOptions{}, "Placed@1 Placed@2 Placed@3 Paid@4 Shipped@5 Closed@6"},
		{pges.ReadOptions{From: 3, Limit: 2}, "Placed@3 Paid@4"},
		{pges.ReadOptions{Backwards: true, Limit: 2}, "Closed@6 Shipped@5"},
		{pges.ReadOptions{Backwards: true, From: 2}, "Placed@2 Placed@1"},
		{pges.ReadOptions{From: 7}, ""},
	}
	for _, c := range cases {
		got, err := ts.ReadStream(ctx, "order-1", c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.Join(types(got), " "); s != c.want {
			t.Errorf("read %+v = %q, want %q", c.opts, s, c.want)
		}
	}

	before := countEvents(t, pool, ts.TenantID())
	for _, c := range []struct {
		expected pges.ExpectedVersion
		actual   int64
	}{{pges.NoStream, 6}, {pges.Exactly(5), 6}, {pges.Exactly(7), 6}} {
		_, err := ts.AppendToStream(ctx, "order-1", c.expected, ev("Late", nil))
		var wev *pges.WrongExpectedVersionError
		if !errors.As(err, &wev) || !errors.Is(err, pges.ErrWrongExpectedVersion) {
			t.Fatalf("expected %v: err %v, want WrongExpectedVersionError", c.expected, err)
		}
		if wev.Expected != c.expected || wev.Actual != c.actual || wev.StreamID != "order-1" {
			t.Errorf("error %+v, want expected %v actual %d", wev, c.expected, c.actual)
		}
	}
	if _, err := ts.AppendToStream(ctx, "order-2", pges.StreamExists, ev("X", nil)); !errors.Is(err, pges.ErrWrongExpectedVersion) {
		t.Fatalf("StreamExists on a new stream: %v", err)
	}
	if n := countEvents(t, pool, ts.TenantID()); n != before {
		t.Fatalf("failed appends wrote %d events", n-before)
	}
	if _, err := ts.ReadStream(ctx, "order-2", pges.ReadOptions{}); !errors.Is(err, pges.ErrStreamNotFound) {
		t.Fatalf("read of a missing stream: %v", err)
	}
	if v, deleted, err := ts.StreamVersion(ctx, "order-1"); err != nil || v != 6 || deleted {
		t.Fatalf("StreamVersion = %d, %v, %v", v, deleted, err)
	}
}

// Hazard: two writers passing the same expected version must not both win.
func TestExpectedVersionRace(t *testing.T) {
	const writers, rounds = 8, 1000
	ctx := context.Background()
	ts, _ := newTenant(t)

	var unexpected []error
	var mu sync.Mutex
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		start := make(chan struct{})
		wins := 0
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := ts.AppendToStream(ctx, "race", pges.Exactly(int64(round)), ev("Won", map[string]int{"writer": w}))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, pges.ErrWrongExpectedVersion):
					unexpected = append(unexpected, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(unexpected) > 0 {
			t.Fatalf("round %d: unexpected errors: %v", round, unexpected)
		}
		if wins != 1 {
			t.Fatalf("round %d: %d appends succeeded, want exactly 1", round, wins)
		}
	}
	var version int64
	for e, err := range ts.IterateStream(ctx, "race", 0) {
		if err != nil {
			t.Fatal(err)
		}
		version++
		if e.StreamVersion != version {
			t.Fatalf("stream has version %d where %d belongs: gap or duplicate", e.StreamVersion, version)
		}
	}
	if version != rounds {
		t.Fatalf("stream has %d events, want %d", version, rounds)
	}
}

func TestIdempotentRetry(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	batch := numbered("Placed", 3)
	for i := range batch {
		batch[i].ID = uuid.New()
		batch[i].Tags = []string{"order:1"}
		batch[i].Metadata = pges.Metadata{CorrelationID: "c-1"}
	}
	first := mustAppend(t, ts, "order-1", pges.NoStream, batch...)
	for _, expected := range []pges.ExpectedVersion{pges.NoStream, pges.Any, pges.StreamExists, pges.Exactly(0)} {
		again, err := ts.AppendToStream(ctx, "order-1", expected, batch...)
		if err != nil {
			t.Fatalf("retry with expected %v: %v", expected, err)
		}
		if !reflect.DeepEqual(again, first) {
			t.Fatalf("retry returned %+v, want the first result %+v", again, first)
		}
	}
	if n := countEvents(t, pool, ts.TenantID()); n != 3 {
		t.Fatalf("%d events after retries, want 3", n)
	}

	changed := append([]pges.EventData(nil), batch...)
	changed[1].Payload = json.RawMessage(`{"n":99}`)
	partial := []pges.EventData{batch[0], ev("New", nil)}
	for name, b := range map[string][]pges.EventData{"changed payload": changed, "partial batch": partial} {
		if _, err := ts.AppendToStream(ctx, "order-1", pges.Any, b...); !errors.Is(err, pges.ErrEventIDConflict) {
			t.Fatalf("%s: err %v, want ErrEventIDConflict", name, err)
		}
	}
	if n := countEvents(t, pool, ts.TenantID()); n != 3 {
		t.Fatalf("%d events after conflicting retries, want 3", n)
	}
}

func TestIterateLargeStreamInConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 events")
	}
	const total, batchSize = 100_000, 1000
	ctx := context.Background()
	ts, _ := newTenant(t)
	note := strings.Repeat("x", 400)
	for b := 0; b < total/batchSize; b++ {
		batch := make([]pges.EventData, batchSize)
		for i := range batch {
			batch[i] = ev("Tick", map[string]any{"n": b*batchSize + i + 1, "note": note})
		}
		mustAppend(t, ts, "big", pges.Any, batch...)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, uint64(0)
	var n int64
	for e, err := range ts.IterateStream(ctx, "big", 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if e.StreamVersion != n {
			t.Fatalf("version %d at event %d", e.StreamVersion, n)
		}
		if n%5000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	if n != total {
		t.Fatalf("iterated %d events, want %d", n, total)
	}
	// The stream is ~50 MB as JSON; a page of 1,000 events is well under 5.
	growth := int64(peak) - int64(base)
	t.Logf("heap grew by at most %.1f MB while iterating %d events", float64(growth)/1e6, total)
	if growth > 25e6 {
		t.Fatalf("heap grew by %d bytes while iterating: memory grows with the stream", growth)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	mustAppend(t, ts, "s", pges.NoStream, ev("Ok", nil))

	big := json.RawMessage(`{"blob":"` + strings.Repeat("a", 1<<20) + `"}`)
	cases := []struct {
		name     string
		stream   string
		expected pges.ExpectedVersion
		events   []pges.EventData
		want     error
	}{
		{"empty type", "s", pges.Any, []pges.EventData{ev("", nil)}, pges.ErrInvalidEvent},
		{"reserved type", "s", pges.Any, []pges.EventData{ev("$tombstone", nil)}, pges.ErrInvalidEvent},
		{"type over 200 characters", "s", pges.Any, []pges.EventData{ev(strings.Repeat("T", 201), nil)}, pges.ErrInvalidEvent},
		{"invalid JSON payload", "s", pges.Any, []pges.EventData{{Type: "X", Payload: json.RawMessage(`{"a":`)}}, pges.ErrInvalidEvent},
		{"empty payload", "s", pges.Any, []pges.EventData{{Type: "X"}}, pges.ErrInvalidEvent},
		{"payload over 1 MiB", "s", pges.Any, []pges.EventData{{Type: "X", Payload: big}}, pges.ErrInvalidEvent},
		{"bad event later in the batch", "s", pges.Any, []pges.EventData{ev("Ok", nil), ev("", nil)}, pges.ErrInvalidEvent},
		{"empty tag", "s", pges.Any, []pges.EventData{{Type: "X", Payload: json.RawMessage(`{}`), Tags: []string{""}}}, pges.ErrInvalidEvent},
		{"empty batch", "s", pges.Any, nil, pges.ErrInvalidEvent},
		{"negative expected version", "s", pges.ExpectedVersion(-3), []pges.EventData{ev("X", nil)}, pges.ErrInvalidEvent},
		{"absurd expected version", "s", pges.ExpectedVersion(1 << 62), []pges.EventData{ev("X", nil)}, pges.ErrInvalidEvent},
		{"empty stream id", "", pges.Any, []pges.EventData{ev("X", nil)}, pges.ErrInvalidEvent},
		{"stream id over 200 characters", strings.Repeat("s", 201), pges.Any, []pges.EventData{ev("X", nil)}, pges.ErrInvalidEvent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := countEvents(t, pool, ts.TenantID())
			_, err := ts.AppendToStream(ctx, c.stream, c.expected, c.events...)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err.Error() == "" || strings.Contains(err.Error(), "SQLSTATE") {
				t.Errorf("error message %q is not a clear message", err)
			}
			if n := countEvents(t, pool, ts.TenantID()); n != before {
				t.Fatalf("%d events written", n-before)
			}
		})
	}
	var iee *pges.InvalidEventError
	_, err := ts.AppendToStream(ctx, "s", pges.Any, ev("Ok", nil), ev("", nil))
	if !errors.As(err, &iee) || iee.Index != 1 {
		t.Fatalf("error %v does not name event 1", err)
	}

	store, _ := pges.New(pool, nil)
	var total int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM es.events").Scan(&total)
	_, err = store.Tenant("no-such-tenant").AppendToStream(ctx, "s", pges.Any, ev("X", nil))
	if !errors.Is(err, pges.ErrTenantNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}
	var after int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM es.events").Scan(&after)
	if after != total {
		t.Fatalf("append to an unknown tenant wrote %d events", after-total)
	}
	if _, err := store.Tenant("no-such-tenant").ReadStream(ctx, "s", pges.ReadOptions{}); !errors.Is(err, pges.ErrTenantNotFound) {
		t.Fatalf("read of an unknown tenant: %v", err)
	}
}

func TestSuspendedTenantRefusesAppendsButReads(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	mustAppend(t, ts, "s", pges.NoStream, ev("A", nil))
	if _, err := pool.Exec(ctx, "UPDATE es.tenants SET status = 'suspended' WHERE tenant_id = $1", ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.AppendToStream(ctx, "s", pges.Any, ev("B", nil)); !errors.Is(err, pges.ErrTenantSuspended) {
		t.Fatalf("append to a suspended tenant: %v", err)
	}
	if got, err := ts.ReadStream(ctx, "s", pges.ReadOptions{}); err != nil || len(got) != 1 {
		t.Fatalf("read of a suspended tenant: %v, %d events", err, len(got))
	}
}

func TestDeleteStream(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	mustAppend(t, ts, "s", pges.NoStream, numbered("A", 2)...)
	if _, err := ts.DeleteStream(ctx, "s", pges.Exactly(1)); !errors.Is(err, pges.ErrWrongExpectedVersion) {
		t.Fatalf("delete with a stale version: %v", err)
	}
	v, err := ts.DeleteStream(ctx, "s", pges.Exactly(2))
	if err != nil || v != 3 {
		t.Fatalf("delete = %d, %v; want tombstone at version 3", v, err)
	}
	if v, err := ts.DeleteStream(ctx, "s", pges.Any); err != nil || v != 3 {
		t.Fatalf("second delete = %d, %v; want 3 and no error", v, err)
	}
	if _, err := ts.ReadStream(ctx, "s", pges.ReadOptions{}); !errors.Is(err, pges.ErrStreamDeleted) {
		t.Fatalf("read after delete: %v", err)
	}
	before := countEvents(t, pool, ts.TenantID())
	for _, expected := range []pges.ExpectedVersion{pges.Any, pges.Exactly(3), pges.NoStream} {
		if _, err := ts.AppendToStream(ctx, "s", expected, ev("B", nil)); !errors.Is(err, pges.ErrStreamDeleted) {
			t.Fatalf("append (expected %v) after delete: %v", expected, err)
		}
	}
	if n := countEvents(t, pool, ts.TenantID()); n != before {
		t.Fatalf("appends to a deleted stream wrote %d events", n-before)
	}
	if _, deleted, _ := ts.StreamVersion(ctx, "s"); !deleted {
		t.Fatal("StreamVersion does not report the deletion")
	}
	if _, err := ts.DeleteStream(ctx, "missing", pges.Any); !errors.Is(err, pges.ErrStreamNotFound) {
		t.Fatalf("delete of a missing stream: %v", err)
	}
}

func TestEventFieldsRoundTrip(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	in := pges.EventData{
		ID:      uuid.New(),
		Type:    "Registered",
		Payload: json.RawMessage(`{"name":"Zoë \"Z\" O'Hara","n":[1,2]}`),
		Metadata: pges.Metadata{CorrelationID: "corr", CausationID: "cause", User: "u-1", Service: "signup",
			Extra: map[string]any{"ip": "10.0.0.1", "trace": map[string]any{"span": "s1"}}},
		Tags: []string{`a"b`, `c\d`, "e,f", "{g}", "h:i j", "ü€😀"},
	}
	mustAppend(t, ts, "user-1", pges.NoStream, in)
	got, err := ts.ReadStream(ctx, "user-1", pges.ReadOptions{})
	if err != nil || len(got) != 1 {
		t.Fatalf("read: %v, %d events", err, len(got))
	}
	out := got[0]
	var a, b any
	_ = json.Unmarshal(in.Payload, &a)
	_ = json.Unmarshal(out.Payload, &b)
	if out.ID != in.ID || out.Type != in.Type || !reflect.DeepEqual(a, b) ||
		!reflect.DeepEqual(out.Metadata, in.Metadata) || !reflect.DeepEqual(out.Tags, in.Tags) ||
		out.StreamID != "user-1" || out.StreamVersion != 1 || out.RecordedAt.IsZero() {
		t.Fatalf("round trip changed the event:\n in  %+v\n out %+v", in, out)
	}
}

func ExampleTenantStore_AppendToStream() {
	fmt.Println(pges.Exactly(3), pges.NoStream, pges.Any)
	// Output: 3 no stream any
}

// Found in review: a reused id is not a version race, a duplicate id inside
// a batch is bad input, and oversized or NUL-bearing tags are refused with a
// clear error.
func TestEventIDAndTagEdgeCases(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	e := ev("A", nil)
	e.ID = uuid.New()
	mustAppend(t, ts, "one", pges.NoStream, e)
	before := countEvents(t, pool, ts.TenantID())
	for _, expected := range []pges.ExpectedVersion{pges.NoStream, pges.Exactly(0), pges.Any} {
		if _, err := ts.AppendToStream(ctx, "two", expected, e); !errors.Is(err, pges.ErrEventIDConflict) {
			t.Fatalf("an id of stream one appended to stream two (expected %v): %v", expected, err)
		}
	}
	twice := ev("B", nil)
	twice.ID = uuid.New()
	if _, err := ts.AppendToStream(ctx, "three", pges.NoStream, twice, twice); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Fatalf("an id twice in one batch: %v", err)
	}
	if _, err := ts.Append(ctx, []pges.EventData{twice, twice}, nil); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Fatalf("an id twice in one DCB batch: %v", err)
	}
	for name, tag := range map[string]string{
		"1000 CJK characters (3000 bytes)": strings.Repeat("漢", 1000),
		"a NUL character":                  "a\x00b",
	} {
		if _, err := ts.Append(ctx, []pges.EventData{{Type: "T", Payload: json.RawMessage(`{}`), Tags: []string{tag}}}, nil); !errors.Is(err, pges.ErrInvalidEvent) {
			t.Errorf("tag with %s: %v", name, err)
		}
	}
	if _, err := ts.AppendToStream(ctx, "s", pges.Any, pges.EventData{Type: "T", Payload: json.RawMessage(`{"a":"\u0000"}`)}); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Errorf("payload with \\u0000: %v", err)
	}
	if n := countEvents(t, pool, ts.TenantID()); n != before {
		t.Fatalf("%d events written", n-before)
	}
	// StreamExists under contention succeeds for every writer: the stream
	// exists whatever version a concurrent writer took.
	mustAppend(t, ts, "busy", pges.NoStream, ev("Start", nil))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := ts.AppendToStream(ctx, "busy", pges.StreamExists, ev("More", nil)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("StreamExists under contention: %v", err)
	}
}
