package bench_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventstore-go/pges/bench"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/eventstore-go/pges/tenant"
)

// The loader writes rows the store could have written: the asked number,
// stream versions 1..n per stream in position order, 2-4 tags, ~200-byte
// payloads, and it leaves the tags' index with fastupdate off.
func TestLoad(t *testing.T) {
	pool := testdb.Pool(t)
	ctx := context.Background()
	if err := bench.Setup(ctx, pool); err != nil {
		t.Fatal(err)
	}
	id := "bench_load_test"
	if _, err := tenant.NewManager(pool).Create(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	st, err := bench.Load(ctx, pool, id, 1500, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Load dedicated the tenant: es_bench_load writes to its partition.
	if ts, err := tenant.NewManager(pool).Stats(ctx, id); err != nil || !ts.Dedicated {
		t.Fatalf("stats after a load %+v, %v: want a dedicated tenant", ts, err)
	}
	if st.Before != 0 || st.After != 1500 || st.EventsPerSec <= 0 {
		t.Fatalf("load %+v, want 0 -> 1500 events", st)
	}
	if st, err = bench.Load(ctx, pool, id, 2000, nil); err != nil || st.Before != 1500 || st.After != 2000 {
		t.Fatalf("second step %+v, %v: want 1500 -> 2000", st, err)
	}
	if st, err = bench.Load(ctx, pool, id, 1000, nil); err != nil || st.After != 2000 {
		t.Fatalf("a smaller target %+v, %v: want nothing written", st, err)
	}
	var bad, minTags, maxTags, streams, streamless int
	var payload float64
	err = pool.QueryRow(ctx, `
		WITH v AS (SELECT stream_id, stream_version, row_number() OVER (PARTITION BY stream_id ORDER BY position) AS n
		             FROM es.events WHERE tenant_id = $1 AND stream_id IS NOT NULL)
		SELECT (SELECT count(*) FROM v WHERE stream_version <> n),
		       (SELECT min(cardinality(tags)) FROM es.events WHERE tenant_id = $1),
		       (SELECT max(cardinality(tags)) FROM es.events WHERE tenant_id = $1),
		       (SELECT count(DISTINCT stream_id) FROM es.events WHERE tenant_id = $1),
		       (SELECT count(*) FROM es.events WHERE tenant_id = $1 AND stream_id IS NULL),
		       (SELECT avg(octet_length(payload::text)) FROM es.events WHERE tenant_id = $1)`, id).
		Scan(&bad, &minTags, &maxTags, &streams, &streamless, &payload)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 || minTags != 2 || maxTags != 4 || streams < 10 || streamless < 200 || payload < 150 || payload > 260 {
		t.Errorf("%d events out of version order, tags %d-%d, %d streams, %d without a stream, payload %.0f bytes", bad, minTags, maxTags, streams, streamless, payload)
	}
	var opts []string
	if err := pool.QueryRow(ctx, "SELECT reloptions FROM pg_class WHERE relname = $1", "events_"+id+"_tags_idx").Scan(&opts); err != nil {
		t.Fatal(err)
	}
	if strings.Join(opts, ",") != "fastupdate=off" {
		t.Errorf("tags index options %v after a load, want fastupdate=off", opts)
	}
}

// A tiny scale study runs every scenario at two sizes, the client sweep,
// and draws its plots (the 10M path is only for esadmin bench --scale).
func TestScaleSmall(t *testing.T) {
	pool := testdb.Pool(t)
	rep, err := bench.Scale(context.Background(), pool, bench.ScaleConfig{
		Sizes: []int64{1000, 2000}, Count: 5, CatchUpCalls: 1, Window: 500, ContendedClients: 2,
		Clients: []int{1, 2}, Duration: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Steps) != 2 || rep.Steps[0].Size != 1000 || rep.Steps[1].Size < 2000 || rep.Steps[1].Load.Before != rep.Steps[0].SizeAfter {
		t.Fatalf("steps %+v", rep.Steps)
	}
	for _, s := range rep.Steps {
		if len(s.Results) != 7 || s.TableBytesPerEvent <= 0 || s.IndexBytesPerEvent <= 0 || len(s.Relations) != 7 {
			t.Errorf("step at %d: %d results, %d relations, %.0f + %.0f bytes per event", s.Size, len(s.Results), len(s.Relations), s.TableBytesPerEvent, s.IndexBytesPerEvent)
		}
		for _, r := range s.Results {
			if r.Calls == 0 || r.Events == 0 && r.Conflicts == 0 || r.Baseline == nil || r.Baseline.EventsPerSec <= 0 || r.P50 <= 0 {
				t.Errorf("%s at %d: incomplete result %+v", r.Scenario, s.Size, r)
			}
		}
		if cu := s.Result(bench.ScaleCatchUp); cu == nil || cu.Events != 500 {
			t.Errorf("catch-up at %d: %+v, want 500 events", s.Size, cu)
		}
	}
	if len(rep.Clients) != 4 {
		t.Errorf("%d client results, want 4", len(rep.Clients))
	}
	if _, err := bench.Scale(context.Background(), pool, bench.ScaleConfig{Sizes: []int64{1000}}); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("a second study on a bigger tenant: %v, want an error", err)
	}
	dir := t.TempDir()
	paths, err := bench.WritePlots(rep, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 5 {
		t.Errorf("%d plots", len(paths))
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "<svg") || filepath.Dir(p) != dir {
			t.Errorf("plot %s: %v, %d bytes", p, err, len(b))
		}
	}
}

func TestCheckSizes(t *testing.T) {
	for _, ok := range [][]int64{{1000}, {10_000, 100_000, 1_000_000, 10_000_000}} {
		if err := bench.CheckSizes(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][]int64{nil, {999}, {200_000_000}, {10_000, 10_000}, {100_000, 10_000}} {
		if err := bench.CheckSizes(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
