package pges_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
)

// State as of a version, a position or a time equals a replay of exactly
// the events up to that point, for aggregates (with snapshots in the way)
// and for DCB decision models.
func TestTemporalReads(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	// Eight events of "acc", one per transaction, interleaved with events of
	// another stream so that positions have gaps.
	for i := 1; i <= 8; i++ {
		e := ev("Added", map[string]int{"n": i})
		e.Tags = []string{"account:acc"}
		mustAppend(t, ts, "acc", pges.Exactly(int64(i-1)), e)
		o := ev("Added", map[string]int{"n": 100})
		o.Tags = []string{"account:other"}
		mustAppend(t, ts, "other", pges.Any, o)
	}
	acc, err := ts.ReadStream(ctx, "acc", pges.ReadOptions{})
	if err != nil || len(acc) != 8 {
		t.Fatalf("acc: %d events, %v", len(acc), err)
	}
	others, _ := ts.ReadStream(ctx, "other", pges.ReadOptions{})
	var applied int
	agg := counterAggregate(&applied, 1)
	// Snapshots at versions 3 and 6: a temporal read must not start from
	// one past its bound.
	for _, v := range []int64{3, 6} {
		if err := pges.SaveAggregateSnapshot(ctx, ts, "acc", agg, v, counter{Sum: int(v * (v + 1) / 2)}); err != nil {
			t.Fatal(err)
		}
	}
	// replay folds exactly the events keep selects, the way the test sees them.
	replay := func(keep func(pges.RecordedEvent) bool) (sum int, version int64) {
		for _, e := range acc {
			if keep(e) {
				var p struct{ N int }
				_ = json.Unmarshal(e.Payload, &p)
				sum, version = sum+p.N, e.StreamVersion
			}
		}
		return sum, version
	}
	check := func(what string, at pges.AsOf, keep func(pges.RecordedEvent) bool) {
		t.Helper()
		wantSum, wantVersion := replay(keep)
		st, version, err := pges.LoadAggregateAsOf(ctx, ts, "acc", agg, at)
		if err != nil || st.Sum != wantSum || version != wantVersion {
			t.Fatalf("aggregate as of %s: sum %d v%d, %v; replay gives sum %d v%d", what, st.Sum, version, err, wantSum, wantVersion)
		}
		if at.Version != 0 {
			return
		}
		model, _, err := pges.Project(ctx, ts, pges.Tags("account:acc"), agg.Init, agg.Apply, at)
		if err != nil || model.Sum != wantSum {
			t.Fatalf("decision model as of %s: sum %d, %v; replay gives %d", what, model.Sum, err, wantSum)
		}
	}
	for n := int64(1); n <= 8; n++ {
		applied = 0
		check("version", pges.AsOf{Version: n}, func(e pges.RecordedEvent) bool { return e.StreamVersion <= n })
		if want := map[int64]int{3: 0, 4: 1, 5: 2, 6: 0, 7: 1, 8: 2}[n]; n >= 3 && applied != want {
			t.Fatalf("as of version %d: applied %d events, want %d after the snapshot", n, applied, want)
		}
	}
	for _, e := range append(acc, others...) {
		p := e.Position
		check("position", pges.AsOf{Position: p}, func(e pges.RecordedEvent) bool { return e.Position <= p })
		at := e.RecordedAt
		check("time", pges.AsOf{Time: at}, func(e pges.RecordedEvent) bool { return !e.RecordedAt.After(at) })
	}
	before := acc[0].RecordedAt.Add(-time.Microsecond)
	check("time before the first event", pges.AsOf{Time: before}, func(pges.RecordedEvent) bool { return false })

	// Without a bound: everything, and a head to append after.
	model, head, err := pges.Project(ctx, ts, pges.Tags("account:acc"), agg.Init, agg.Apply, pges.AsOf{})
	if err != nil || model.Sum != 36 || head != others[7].Position {
		t.Fatalf("now: sum %d head %d, %v", model.Sum, head, err)
	}

	for name, at := range map[string]pges.AsOf{
		"two bounds":        {Version: 2, Position: 3},
		"negative version":  {Version: -1},
		"negative position": {Position: -1},
	} {
		if _, _, err := pges.LoadAggregateAsOf(ctx, ts, "acc", agg, at); !errors.Is(err, pges.ErrInvalidEvent) {
			t.Errorf("aggregate, %s: %v", name, err)
		}
	}
	if _, _, err := pges.Project(ctx, ts, pges.Tags("account:acc"), agg.Init, agg.Apply, pges.AsOf{Version: 2}); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Errorf("decision model as of a version: %v", err)
	}
}

// An event's recorded time is its transaction's start, so a stream's times
// need not grow with its versions: a bound in time keeps an event that was
// numbered after one it leaves out.
func TestAsOfTimeIsNotAPrefixOfTheStream(t *testing.T) {
	ctx := context.Background()
	ts, admin := newTenant(t)
	// A begins first, B appends and commits, then A appends: A's event has
	// the later version and the earlier time.
	a, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback(ctx)
	var aStart time.Time
	if err := a.QueryRow(ctx, `SELECT set_config('es.tenant_id', $1, true), now()`, ts.TenantID()).Scan(new(string), &aStart); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	mustAppend(t, ts, "acc", pges.NoStream, ev("Added", map[string]int{"n": 1}))
	if _, err := a.Exec(ctx, `SELECT es.append_to_stream($1, 'acc', -1, '[{"type":"Added","payload":{"n":10}}]')`, ts.TenantID()); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	acc, _ := ts.ReadStream(ctx, "acc", pges.ReadOptions{})
	if len(acc) != 2 || !acc[1].RecordedAt.Before(acc[0].RecordedAt) {
		t.Fatalf("want version 2 recorded before version 1: %+v", acc)
	}
	var applied int
	agg := counterAggregate(&applied, 1)
	st, version, err := pges.LoadAggregateAsOf(ctx, ts, "acc", agg, pges.AsOf{Time: aStart})
	if err != nil || st.Sum != 10 || version != 2 {
		t.Fatalf("as of A's start: sum %d v%d, %v; want only A's event (n=10, version 2)", st.Sum, version, err)
	}
	model, _, err := pges.Project(ctx, ts, pges.QueryAll(), agg.Init, agg.Apply, pges.AsOf{Time: aStart})
	if err != nil || model.Sum != 10 {
		t.Fatalf("decision model as of A's start: sum %d, %v", model.Sum, err)
	}
}
