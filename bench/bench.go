// Package bench measures the store against the machine's own limit: every
// scenario runs beside a baseline that writes or reads the same event rows
// with plain SQL through the same pool at the same concurrency, in the same
// run, and reports events/s, latency percentiles and the ratio between them.
// `esadmin bench` and `go test -bench` both run these scenarios.
package bench

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// Tenant is the only tenant the bench writes to.
const Tenant = "bench"

//go:embed migrations/*.sql
var migrations embed.FS

// Config configures a run. Zero fields take the documented defaults.
type Config struct {
	// Duration of each measured phase (scenario and baseline). Default 5s.
	Duration time.Duration
	// Count, if set, runs each phase for this many calls instead.
	Count int
	// Clients overrides each scenario's own client counts when set.
	Clients []int
	// Scenarios to run by name; empty runs all (see Scenarios).
	Scenarios []string
	// Progress receives a line every few seconds; nil is quiet.
	Progress io.Writer
	// Layout is the tenant layout TenantScale measures (see Layouts);
	// empty is LayoutShared.
	Layout string
	// LargeTenantEvents, if set, makes TenantScale finish with the drops
	// of a shared and of a dedicated tenant holding this many events.
	LargeTenantEvents int
	// Rounds repeats every scenario and client count this many times,
	// alternating which of the store and the baseline runs first, so that
	// drift on a shared machine favours neither. Default 1 (baseline
	// first). Summarize reports the spread.
	Rounds int
}

// Result is one measured phase.
type Result struct {
	Scenario string `json:"scenario"`
	Clients  int    `json:"clients"`
	Calls    int64  `json:"calls"`
	Events   int64  `json:"events"`
	// Conflicts counts calls refused by a DCB condition (contended runs);
	// ConflictP50 is their median latency: how fast a loser learns it lost.
	Conflicts   int64         `json:"conflicts,omitempty"`
	ConflictP50 time.Duration `json:"conflict_p50_ns,omitempty"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	P50         time.Duration `json:"p50_ns"`
	P95         time.Duration `json:"p95_ns"`
	P99         time.Duration `json:"p99_ns"`
	// Max is the slowest call.
	Max time.Duration `json:"max_ns,omitempty"`
	// EventsPerSec is Events / Elapsed.
	EventsPerSec float64 `json:"events_per_sec"`
	// Baseline is the plain-SQL phase run beside this one.
	Baseline *Result `json:"baseline,omitempty"`
	// Ratio is EventsPerSec / Baseline.EventsPerSec.
	Ratio float64 `json:"ratio,omitempty"`
	// Note says what a scenario measured beyond the columns.
	Note string `json:"note,omitempty"`
	// Round is the round of a run with Config.Rounds (1-based).
	Round int `json:"round,omitempty"`
}

// op is one timed call; it returns how many events it wrote or read.
type op func(ctx context.Context, client int, call int64) (int, error)

// scenario prepares a store phase and its baseline for a client count.
type scenario struct {
	name    string
	clients []int
	prepare func(ctx context.Context, r *runner, clients int) (store, baseline op, err error)
}

// Scenarios lists the scenario names in run order.
func Scenarios() []string {
	names := make([]string, len(all))
	for i, s := range all {
		names[i] = s.name
	}
	return names
}

type runner struct {
	pool   *pgxpool.Pool
	store  *pges.TenantStore
	cfg    Config
	runID  string
	phases int
	// rate, when set by a scenario's prepare, paces the store and baseline
	// phases to this many calls per second in all.
	rate float64
	// done holds what a prepare asked to run after its store phase: stop
	// background work, restore settings, adjust the result.
	done []func(*Result)
}

// onDone registers f to run after the current store phase, with its result.
func (r *runner) onDone(f func(*Result)) { r.done = append(r.done, f) }

// finish runs and clears the onDone functions, latest first.
func (r *runner) finish(res *Result) {
	for i := len(r.done) - 1; i >= 0; i-- {
		r.done[i](res)
	}
	r.done, r.rate = nil, 0
}

// phase returns an id unique to one prepared phase of this run, so phases
// never share tags or streams.
func (r *runner) phase() string {
	r.phases++
	return fmt.Sprintf("%s_%d", r.runID, r.phases)
}

// Setup migrates the baseline table and creates the bench tenant. The
// store's own migrations must already be applied.
func Setup(ctx context.Context, pool *pgxpool.Pool) error {
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub,
		goose.WithTableName("es_bench_goose_version"))
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("bench migrations: %w", err)
	}
	_, err = tenant.NewManager(pool).Create(ctx, Tenant, "benchmarks (esadmin bench)")
	return err
}

// Run sets up and runs the selected scenarios and returns one Result per
// scenario and client count, each with its baseline.
func Run(ctx context.Context, pool *pgxpool.Pool, cfg Config) ([]Result, error) {
	selected, err := selectScenarios(cfg.Scenarios)
	if err != nil {
		return nil, err
	}
	r, err := newRunner(ctx, pool, cfg)
	if err != nil {
		return nil, err
	}
	var results []Result
	for round := 1; round <= max(cfg.Rounds, 1); round++ {
		for _, s := range selected {
			clients := s.clients
			if len(cfg.Clients) > 0 {
				clients = cfg.Clients
			}
			for _, c := range clients {
				res, err := r.runScenario(ctx, s, c, round%2 == 0)
				if err != nil {
					return results, err
				}
				if cfg.Rounds > 1 {
					res.Round = round
				}
				results = append(results, res)
			}
		}
	}
	return results, nil
}

// runScenario measures one scenario at one client count beside its
// baseline; storeFirst swaps their order.
func (r *runner) runScenario(ctx context.Context, s scenario, c int, storeFirst bool) (Result, error) {
	// Earlier phases wrote to the bench tenant: give the planner the
	// statistics a long-lived log would have. Not while the tenant is
	// nearly empty: appends to a tenant analyzed while empty ran slower
	// (bench/RESULTS.md).
	if _, err := r.pool.Exec(ctx, `SELECT es.analyze_tenant($1)
		WHERE (SELECT count(*) FROM (SELECT 1 FROM es.events WHERE tenant_id = $1 LIMIT 10000) n) >= 10000`, Tenant); err != nil {
		return Result{}, err
	}
	storeOp, baseOp, err := s.prepare(ctx, r, c)
	if err != nil {
		r.finish(&Result{})
		return Result{}, fmt.Errorf("%s: %w", s.name, err)
	}
	var base, res Result
	measureBase := func() error {
		base, err = r.measure(ctx, s.name+" (baseline)", c, baseOp)
		if err != nil {
			return fmt.Errorf("%s baseline: %w", s.name, err)
		}
		return nil
	}
	if !storeFirst {
		if err := measureBase(); err != nil {
			r.finish(&Result{})
			return Result{}, err
		}
	}
	res, err = r.measure(ctx, s.name, c, storeOp)
	r.finish(&res)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", s.name, err)
	}
	if storeFirst {
		if err := measureBase(); err != nil {
			return Result{}, err
		}
	}
	res.Baseline = &base
	if base.EventsPerSec > 0 {
		res.Ratio = res.EventsPerSec / base.EventsPerSec
	}
	return res, nil
}

// Summary is the spread of one scenario and client count over rounds.
type Summary struct {
	Scenario string
	Clients  int
	Rounds   int
	// Ratio's median, min and max over the rounds; the same for the
	// store's events/s and p50/p99 latencies.
	RatioMedian, RatioMin, RatioMax float64
	EventsPerSecMedian              float64
	P50Median, P99Median            time.Duration
}

// Summarize groups results by scenario and client count, in first-seen
// order.
func Summarize(results []Result) []Summary {
	type key struct {
		s string
		c int
	}
	var order []key
	groups := map[key][]Result{}
	for _, r := range results {
		k := key{r.Scenario, r.Clients}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	med := func(xs []float64) float64 {
		slices.Sort(xs)
		if len(xs)%2 == 1 {
			return xs[len(xs)/2]
		}
		return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	out := make([]Summary, 0, len(order))
	for _, k := range order {
		g := groups[k]
		var ratios, eps, p50, p99 []float64
		for _, r := range g {
			ratios = append(ratios, r.Ratio)
			eps = append(eps, r.EventsPerSec)
			p50 = append(p50, float64(r.P50))
			p99 = append(p99, float64(r.P99))
		}
		s := Summary{Scenario: k.s, Clients: k.c, Rounds: len(g), RatioMedian: med(ratios), EventsPerSecMedian: med(eps),
			P50Median: time.Duration(med(p50)), P99Median: time.Duration(med(p99))}
		s.RatioMin, s.RatioMax = slices.Min(ratios), slices.Max(ratios)
		out = append(out, s)
	}
	return out
}

// newRunner sets up the bench schema and tenant and returns a runner on it.
func newRunner(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*runner, error) {
	if cfg.Duration <= 0 && cfg.Count <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if err := Setup(ctx, pool); err != nil {
		return nil, err
	}
	store, err := pges.New(pool, nil)
	if err != nil {
		return nil, err
	}
	return &runner{pool: pool, store: store.Tenant(Tenant), cfg: cfg, runID: fmt.Sprintf("r%d", time.Now().UnixNano())}, nil
}

func selectScenarios(names []string) ([]scenario, error) {
	if len(names) == 0 {
		return all, nil
	}
	var out []scenario
	for _, n := range names {
		i := slices.IndexFunc(all, func(s scenario) bool { return s.name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown scenario %q (known: %v)", n, Scenarios())
		}
		out = append(out, all[i])
	}
	return out, nil
}

// measure runs op on clients goroutines for the configured duration or
// count and collects per-call latencies.
func (r *runner) measure(ctx context.Context, name string, clients int, fn op) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		calls, events, conflicts atomic.Int64
		mu                       sync.Mutex
		latencies, lost          []time.Duration
		firstErr                 error
		wg                       sync.WaitGroup
	)
	deadline := time.Now().Add(r.cfg.Duration)
	done := make(chan struct{})
	if r.cfg.Progress != nil {
		go func() {
			t := time.NewTicker(2 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					fmt.Fprintf(r.cfg.Progress, "  %s, %d clients: %d calls, %d events so far\n", name, clients, calls.Load(), events.Load())
				}
			}
		}()
	}
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			var localLost []time.Duration
			for {
				i := calls.Add(1) - 1
				if r.cfg.Count > 0 && i >= int64(r.cfg.Count) || r.cfg.Count <= 0 && time.Now().After(deadline) || ctx.Err() != nil {
					calls.Add(-1)
					break
				}
				if r.rate > 0 {
					// Paced: call i starts at its slot, not before.
					if wait := time.Until(start.Add(time.Duration(float64(i) / r.rate * float64(time.Second)))); wait > 0 {
						time.Sleep(wait)
					}
				}
				t0 := time.Now()
				n, err := fn(ctx, c, i)
				local = append(local, time.Since(t0))
				if errors.Is(err, pges.ErrAppendConditionViolated) {
					conflicts.Add(1)
					localLost = append(localLost, local[len(local)-1])
					continue
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					break
				}
				events.Add(int64(n))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			lost = append(lost, localLost...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	if firstErr != nil {
		return Result{}, firstErr
	}
	slices.Sort(latencies)
	res := Result{Scenario: name, Clients: clients, Calls: calls.Load(), Events: events.Load(), Conflicts: conflicts.Load(), Elapsed: elapsed,
		P50: percentile(latencies, 0.50), P95: percentile(latencies, 0.95), P99: percentile(latencies, 0.99)}
	if len(latencies) > 0 {
		res.Max = latencies[len(latencies)-1]
	}
	slices.Sort(lost)
	res.ConflictP50 = percentile(lost, 0.50)
	if elapsed > 0 {
		res.EventsPerSec = float64(res.Events) / elapsed.Seconds()
	}
	return res, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}
