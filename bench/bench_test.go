package bench_test

import (
	"context"
	"strings"
	"testing"

	"github.com/eventstore-go/pges/bench"
	"github.com/eventstore-go/pges/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m, "bench") }

// Every scenario runs and reports a baseline (the 1M-event fills are left
// to `esadmin bench`).
func TestScenariosRun(t *testing.T) {
	pool := testdb.Pool(t)
	var names, long []string
	for _, n := range bench.Scenarios() {
		switch {
		case strings.HasSuffix(n, "-10000"):
			long = append(long, n) // 10,000 events per call: two calls will do
		case !strings.HasSuffix(n, "-1m"):
			names = append(names, n)
		}
	}
	results, err := bench.Run(context.Background(), pool, bench.Config{Count: 20, Scenarios: names, Clients: []int{2}})
	if err != nil {
		t.Fatal(err)
	}
	more, err := bench.Run(context.Background(), pool, bench.Config{Count: 2, Scenarios: long, Clients: []int{2}})
	if err != nil {
		t.Fatal(err)
	}
	results, names = append(results, more...), append(names, long...)
	for _, r := range results {
		if r.Calls == 0 || r.Events == 0 && r.Conflicts == 0 || r.Baseline == nil || r.Baseline.EventsPerSec <= 0 || r.P50 <= 0 {
			t.Errorf("%s: incomplete result %+v", r.Scenario, r)
		}
	}
	if _, err := bench.Run(context.Background(), pool, bench.Config{Count: 1, Scenarios: []string{"nope"}}); err == nil {
		t.Fatal("an unknown scenario must be an error")
	}
	if len(results) != len(names) {
		t.Fatalf("%d results for %d scenarios", len(results), len(names))
	}
}

// go test -bench . ./bench runs each scenario for b.N calls at one client
// and reports its ratio to the same-run plain INSERT baseline.
func BenchmarkScenarios(b *testing.B) {
	pool := testdb.Pool(b)
	for _, name := range bench.Scenarios() {
		if strings.HasSuffix(name, "-1m") || strings.HasSuffix(name, "-10000") {
			continue // minutes of setup; run them with esadmin bench
		}
		b.Run(name, func(b *testing.B) {
			res, err := bench.Run(context.Background(), pool, bench.Config{Count: b.N, Scenarios: []string{name}, Clients: []int{1}})
			if err != nil {
				b.Fatal(err)
			}
			r := res[0]
			b.ReportMetric(r.EventsPerSec, "events/s")
			b.ReportMetric(r.Ratio, "x-baseline")
			b.ReportMetric(float64(r.P99.Microseconds()), "p99-us")
		})
	}
}
