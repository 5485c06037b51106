package pges_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/eventstore-go/pges"
)

type counter struct {
	Sum int `json:"sum"`
}

// counterAggregate sums the "n" of each event and counts Apply calls.
func counterAggregate(applied *int, schema int) pges.Aggregate[counter] {
	return pges.Aggregate[counter]{
		Init:          func() counter { return counter{} },
		SchemaVersion: schema,
		Apply: func(c counter, e pges.RecordedEvent) (counter, error) {
			*applied++
			var p struct{ N int }
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				return c, err
			}
			c.Sum += p.N
			return c, nil
		},
	}
}

func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	mustAppend(t, ts, "acc", pges.NoStream, numbered("Added", 5)...) // n = 1..5, sum 15

	if _, ok, err := ts.LoadSnapshot(ctx, "acc"); ok || err != nil {
		t.Fatalf("no snapshot yet: ok=%v err=%v", ok, err)
	}
	for _, bad := range []struct {
		name    string
		stream  string
		version int64
		state   string
		want    error
	}{
		{"version past the stream", "acc", 6, `{}`, pges.ErrInvalidEvent},
		{"version 0", "acc", 0, `{}`, pges.ErrInvalidEvent},
		{"invalid JSON", "acc", 2, `{`, pges.ErrInvalidEvent},
		{"missing stream", "nope", 1, `{}`, pges.ErrStreamNotFound},
	} {
		if err := ts.SaveSnapshot(ctx, bad.stream, bad.version, 1, json.RawMessage(bad.state)); !errors.Is(err, bad.want) {
			t.Errorf("%s: %v, want %v", bad.name, err, bad.want)
		}
	}
	if _, ok, _ := ts.LoadSnapshot(ctx, "acc"); ok {
		t.Fatal("a refused snapshot was stored")
	}

	var applied int
	agg := counterAggregate(&applied, 2)
	state, version, err := pges.LoadAggregate(ctx, ts, "acc", agg)
	if err != nil || state.Sum != 15 || version != 5 || applied != 5 {
		t.Fatalf("without a snapshot: %+v v%d applied %d, %v", state, version, applied, err)
	}
	// A snapshot at version 3 (sum 1+2+3 = 6): only events 4 and 5 are applied.
	if err := pges.SaveAggregateSnapshot(ctx, ts, "acc", agg, 3, counter{Sum: 6}); err != nil {
		t.Fatal(err)
	}
	applied = 0
	state, version, err = pges.LoadAggregate(ctx, ts, "acc", agg)
	if err != nil || state.Sum != 15 || version != 5 || applied != 2 {
		t.Fatalf("from the snapshot: %+v v%d applied %d, %v", state, version, applied, err)
	}
	snap, ok, err := ts.LoadSnapshot(ctx, "acc")
	if err != nil || !ok || snap.StreamVersion != 3 || snap.SchemaVersion != 2 {
		t.Fatalf("latest snapshot %+v ok=%v err=%v", snap, ok, err)
	}

	// A snapshot of an older schema version without an upcaster is ignored,
	// the stream replayed, and the hook told why.
	applied = 0
	newer := counterAggregate(&applied, 3)
	var ignored []string
	newer.OnSnapshotIgnored = func(stream string, snap pges.Snapshot, reason error) {
		ignored = append(ignored, fmt.Sprintf("%s@%d schema %d: %v", stream, snap.StreamVersion, snap.SchemaVersion, reason))
	}
	state, _, err = pges.LoadAggregate(ctx, ts, "acc", newer)
	if err != nil || state.Sum != 15 || applied != 5 || len(ignored) != 1 || !strings.Contains(ignored[0], "no snapshot upcaster from schema version 2 to 3") {
		t.Fatalf("old snapshot without an upcaster: %+v applied %d ignored %q, %v", state, applied, ignored, err)
	}
	// With an upcaster for the step 2 -> 3, the snapshot is used. Schema 3
	// stores the sum doubled, so the upcast state is visibly the snapshot's.
	newer.SnapshotUpcasters = map[int]pges.Upcaster{2: pges.UpcastFunc(func(old counter) (counter, error) {
		return counter{Sum: old.Sum * 2}, nil
	})}
	applied, ignored = 0, nil
	state, _, err = pges.LoadAggregate(ctx, ts, "acc", newer)
	if err != nil || state.Sum != 12+4+5 || applied != 2 || ignored != nil {
		t.Fatalf("upcast snapshot: %+v applied %d ignored %q, %v", state, applied, ignored, err)
	}
	// A failing upcaster, a snapshot newer than the aggregate and a state
	// that no longer decodes into S are ignored too, never fatal.
	newer.SnapshotUpcasters[2] = func(json.RawMessage) (json.RawMessage, error) { return nil, errors.New("boom") }
	applied, ignored = 0, nil
	if state, _, err = pges.LoadAggregate(ctx, ts, "acc", newer); err != nil || state.Sum != 15 || applied != 5 || len(ignored) != 1 || !strings.Contains(ignored[0], "boom") {
		t.Fatalf("failed upcast: %+v applied %d ignored %q, %v", state, applied, ignored, err)
	}
	older := counterAggregate(&applied, 1)
	older.OnSnapshotIgnored = newer.OnSnapshotIgnored
	applied, ignored = 0, nil
	if state, _, err = pges.LoadAggregate(ctx, ts, "acc", older); err != nil || state.Sum != 15 || applied != 5 || len(ignored) != 1 || !strings.Contains(ignored[0], "newer") {
		t.Fatalf("newer snapshot: %+v applied %d ignored %q, %v", state, applied, ignored, err)
	}
	if err := ts.SaveSnapshot(ctx, "acc", 4, 2, json.RawMessage(`{"total": 10}`)); err != nil {
		t.Fatal(err)
	}
	agg.OnSnapshotIgnored = newer.OnSnapshotIgnored
	applied, ignored = 0, nil
	if state, _, err = pges.LoadAggregate(ctx, ts, "acc", agg); err != nil || state.Sum != 15 || applied != 5 || len(ignored) != 1 || !strings.Contains(ignored[0], `unknown field "total"`) {
		t.Fatalf("snapshot that no longer fits: %+v applied %d ignored %q, %v", state, applied, ignored, err)
	}
	// A null state would decode into a zero S without an error.
	if err := ts.SaveSnapshot(ctx, "acc", 4, 2, json.RawMessage(`null`)); err != nil {
		t.Fatal(err)
	}
	applied, ignored = 0, nil
	if state, _, err = pges.LoadAggregate(ctx, ts, "acc", agg); err != nil || state.Sum != 15 || applied != 5 || len(ignored) != 1 || !strings.Contains(ignored[0], "null") {
		t.Fatalf("null snapshot: %+v applied %d ignored %q, %v", state, applied, ignored, err)
	}
	if _, err := ts.DeleteSnapshots(ctx, "acc", 4); err != nil {
		t.Fatal(err)
	}

	// Snapshots saved before schema versions were checked have version 0:
	// they count as version 1, used as they are.
	if err := ts.SaveSnapshot(ctx, "acc", 4, 0, json.RawMessage(`{"sum": 10}`)); err != nil {
		t.Fatal(err)
	}
	applied, ignored = 0, nil
	v1 := counterAggregate(&applied, 0)
	v1.OnSnapshotIgnored = newer.OnSnapshotIgnored
	if state, version, err := pges.LoadAggregate(ctx, ts, "acc", v1); err != nil || state.Sum != 15 || version != 5 || applied != 1 || ignored != nil {
		t.Fatalf("schema 0 snapshot: %+v v%d applied %d ignored %q, %v", state, version, applied, ignored, err)
	}
	if _, err := ts.DeleteSnapshots(ctx, "acc", 4); err != nil {
		t.Fatal(err)
	}

	// Saving the same version again replaces it.
	if err := ts.SaveSnapshot(ctx, "acc", 3, 2, json.RawMessage(`{"sum":7}`)); err != nil {
		t.Fatal(err)
	}
	if snap, _, _ := ts.LoadSnapshot(ctx, "acc"); string(snap.State) != `{"sum": 7}` {
		t.Fatalf("replaced snapshot state %s", snap.State)
	}
	if _, _, err := pges.LoadAggregate(ctx, ts, "missing", agg); !errors.Is(err, pges.ErrStreamNotFound) {
		t.Fatalf("aggregate of a missing stream: %v", err)
	}
}

func TestSnapshotMaintenance(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	other, _ := newTenant(t)
	for _, s := range []*pges.TenantStore{ts, other} {
		for _, stream := range []string{"a", "b"} {
			mustAppend(t, s, stream, pges.NoStream, numbered("E", 4)...)
			for v := int64(1); v <= 4; v++ {
				if err := s.SaveSnapshot(ctx, stream, v, 1, json.RawMessage(`{"v":1}`)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	otherCount := func() int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM es.snapshots WHERE tenant_id = $1", other.TenantID()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	list, err := ts.ListSnapshots(ctx, "")
	if err != nil || len(list) != 8 || list[0].StreamID != "a" || list[0].StreamVersion != 1 || list[0].Bytes <= 0 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if list, _ := ts.ListSnapshots(ctx, "b"); len(list) != 4 {
		t.Fatalf("list of one stream: %d", len(list))
	}
	if n, err := ts.DeleteSnapshots(ctx, "a", 2); err != nil || n != 1 {
		t.Fatalf("delete one: %d, %v", n, err)
	}
	if n, err := ts.PruneSnapshots(ctx, 1); err != nil || n != 5 { // a keeps 4 (had 1,3,4), b keeps 4 (had 1-4)
		t.Fatalf("prune: %d, %v", n, err)
	}
	if list, _ := ts.ListSnapshots(ctx, ""); len(list) != 2 || list[0].StreamVersion != 4 || list[1].StreamVersion != 4 {
		t.Fatalf("after prune: %+v", list)
	}
	if n, err := ts.DeleteSnapshots(ctx, "b", 0); err != nil || n != 1 {
		t.Fatalf("delete all of b: %d, %v", n, err)
	}
	if _, err := ts.PruneSnapshots(ctx, 0); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Fatalf("prune keeping 0: %v", err)
	}
	// The other tenant's snapshots were never touched (hazard 11).
	if n := otherCount(); n != 8 {
		t.Fatalf("maintenance of one tenant changed the other's snapshots: %d left of 8", n)
	}
}
