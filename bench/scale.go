package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ScaleTenant is the tenant the scale study (issue #7) grows.
const ScaleTenant = Tenant + "_scale"

// Scale study scenario names (Result.Scenario).
const (
	ScaleAppend      = "stream-append-1"
	ScaleDCBDisjoint = "dcb-append-disjoint"
	ScaleDCBContend  = "dcb-append-contended"
	ScaleReadNew     = "read-stream-100"
	ScaleReadLoaded  = "read-stream-100-loaded"
	ScaleTagQuery    = "tag-query-100"
	ScaleCatchUp     = "subscription-catchup"
)

// ScaleConfig configures Scale. Zero fields take the documented defaults.
type ScaleConfig struct {
	// Sizes are the log sizes to measure at, ascending: the tenant is
	// loaded up to each in turn.
	Sizes []int64
	// Count is the number of calls of each latency phase (store and
	// baseline) at each size. Default 2000. Catch-up runs CatchUpCalls.
	Count int
	// CatchUpCalls is the number of catch-ups per phase. Default 3.
	CatchUpCalls int
	// Window is the catch-up window: the oldest min(Window, size) events.
	// Default 100,000.
	Window int64
	// ContendedClients is the client count of the contended DCB scenario.
	// Default 8.
	ContendedClients int
	// Clients are the client counts of the throughput sweep at the last
	// size. Default 1, 2, 4, 8, 16, 32.
	Clients []int
	// Duration of each throughput phase. Default 5s.
	Duration time.Duration
	// Reset drops ScaleTenant first: a study over again, from nothing.
	Reset bool
	// Progress receives a line every few seconds; nil is quiet.
	Progress io.Writer
}

// RelationSize is the size of one relation of the tenant's partition.
type RelationSize struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"` // "table" (with TOAST) or "index"
	Bytes int64  `json:"bytes"`
}

// ScaleStep is what was measured at one log size.
type ScaleStep struct {
	// Size is the events in the tenant when the measurements began;
	// SizeAfter when they ended (the scenarios append).
	Size      int64 `json:"size"`
	SizeAfter int64 `json:"size_after"`
	// Load is the load up to Size; VacuumSeconds the VACUUM (ANALYZE)
	// after it, CheckpointSeconds the CHECKPOINT after that.
	Load              LoadStats `json:"load"`
	VacuumSeconds     float64   `json:"vacuum_seconds"`
	CheckpointSeconds float64   `json:"checkpoint_seconds,omitempty"`
	// Results has one Result per scenario, each with its baseline.
	Results []Result `json:"results"`
	// Relations are the partition's sizes at Size (before the scenarios).
	Relations []RelationSize `json:"relations"`
	// TableBytesPerEvent and IndexBytesPerEvent are the relations' bytes
	// divided by Size.
	TableBytesPerEvent float64 `json:"table_bytes_per_event"`
	IndexBytesPerEvent float64 `json:"index_bytes_per_event"`
	// TagQuery is the tag the tag query read, and how many events carry it.
	TagQuery      string `json:"tag_query"`
	TagQueryCount int64  `json:"tag_query_count"`
}

// ScaleReport is the whole study.
type ScaleReport struct {
	Steps []ScaleStep `json:"steps"`
	// Clients is the throughput sweep at ClientsSize events: appends and
	// conditional appends at each client count, each with its baseline.
	Clients     []Result      `json:"clients"`
	ClientsSize int64         `json:"clients_size"`
	Elapsed     time.Duration `json:"elapsed_ns"`
}

// Result returns the step's result of a scenario, or nil.
func (s *ScaleStep) Result(scenario string) *Result {
	for i := range s.Results {
		if s.Results[i].Scenario == scenario {
			return &s.Results[i]
		}
	}
	return nil
}

// CheckSizes validates the sizes of a scale study: ascending, from 1,000
// to 100,000,000 events.
func CheckSizes(sizes []int64) error {
	if len(sizes) == 0 {
		return fmt.Errorf("no sizes")
	}
	for i, s := range sizes {
		if s < 1000 || s > 100_000_000 {
			return fmt.Errorf("size %d: use 1000 to 100000000 events", s)
		}
		if i > 0 && s <= sizes[i-1] {
			return fmt.Errorf("sizes must ascend: %d after %d", s, sizes[i-1])
		}
	}
	return nil
}

// Scale runs the scale study: it grows ScaleTenant to each size with Load,
// vacuums and analyzes it, then measures each scenario beside its
// plain-SQL baseline (a one-event stream append and conditional appends,
// disjoint and contended, against the plain INSERT; stream reads, a tag
// query and a catch-up against the plain SELECT of the same rows) and the
// partition's sizes; at the last size, appends and conditional appends at
// each client count. The tenant must hold no more events than the first
// size (a fresh database, or Reset).
func Scale(ctx context.Context, pool *pgxpool.Pool, cfg ScaleConfig) (*ScaleReport, error) {
	if err := CheckSizes(cfg.Sizes); err != nil {
		return nil, err
	}
	setDefault(&cfg.Count, 2000)
	setDefault(&cfg.CatchUpCalls, 3)
	setDefault(&cfg.Window, 100_000)
	setDefault(&cfg.ContendedClients, 8)
	setDefault(&cfg.Duration, 5*time.Second)
	if len(cfg.Clients) == 0 {
		cfg.Clients = []int{1, 2, 4, 8, 16, 32}
	}
	began := time.Now()
	if err := Setup(ctx, pool); err != nil {
		return nil, err
	}
	if cfg.Reset {
		if _, err := tenant.NewManager(pool).Drop(ctx, ScaleTenant); err != nil {
			return nil, err
		}
	}
	// Load dedicates it before its first load: the VACUUM and the sizes
	// below work on its partition es.events_<tenant>.
	if _, err := tenant.NewManager(pool).Create(ctx, ScaleTenant, "bench: the scale study (esadmin bench --scale)"); err != nil {
		return nil, err
	}
	var have int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM es.events WHERE tenant_id = $1", ScaleTenant).Scan(&have); err != nil {
		return nil, err
	}
	if have > cfg.Sizes[0] {
		return nil, fmt.Errorf("tenant %s already holds %d events, more than the first size %d: start over with --reset (ScaleConfig.Reset) or a fresh database",
			ScaleTenant, have, cfg.Sizes[0])
	}
	store, err := pges.New(pool, nil)
	if err != nil {
		return nil, err
	}
	runID := fmt.Sprintf("s%d", time.Now().UnixNano())
	r := &runner{pool: pool, store: store.Tenant(ScaleTenant), cfg: Config{Count: cfg.Count, Progress: cfg.Progress}, runID: runID}
	rep := &ScaleReport{}
	for _, size := range cfg.Sizes {
		step, err := scaleStep(ctx, r, cfg, size)
		if err != nil {
			return rep, err
		}
		rep.Steps = append(rep.Steps, step)
	}
	rep.ClientsSize = rep.Steps[len(rep.Steps)-1].SizeAfter
	rep.Clients, err = clientSweep(ctx, pool, cfg, runID)
	rep.Elapsed = time.Since(began)
	return rep, err
}

func setDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

func progressf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// scaleStep loads the tenant to size and measures everything at it.
func scaleStep(ctx context.Context, r *runner, cfg ScaleConfig, size int64) (ScaleStep, error) {
	var step ScaleStep
	var err error
	progressf(cfg.Progress, "scale: loading %s to %d events", ScaleTenant, size)
	if step.Load, err = Load(ctx, r.pool, ScaleTenant, size, cfg.Progress); err != nil {
		return step, err
	}
	// The steady state of a log that autovacuum keeps up with: the
	// visibility map set (index-only scans), hint bits written, statistics
	// fresh. Then (at 10,000 events and more: not in tests) a CHECKPOINT,
	// so that the load's writes do not land in the measurements and every
	// size starts from the same point of the checkpoint cycle.
	t0 := time.Now()
	if _, err := r.pool.Exec(ctx, "VACUUM (ANALYZE) "+pgx.Identifier{"es", "events_" + ScaleTenant}.Sanitize()); err != nil {
		return step, err
	}
	step.VacuumSeconds = time.Since(t0).Seconds()
	if step.Load.After > step.Load.Before && size >= 10_000 {
		t0 = time.Now()
		if _, err := r.pool.Exec(ctx, "CHECKPOINT"); err != nil {
			return step, fmt.Errorf("checkpoint after the load (needs superuser or pg_checkpoint): %w", err)
		}
		step.CheckpointSeconds = time.Since(t0).Seconds()
	}
	if err := r.pool.QueryRow(ctx, "SELECT count(*) FROM es.events WHERE tenant_id = $1", ScaleTenant).Scan(&step.Size); err != nil {
		return step, err
	}
	if step.Relations, err = relationSizes(ctx, r.pool, ScaleTenant); err != nil {
		return step, err
	}
	for _, rel := range step.Relations {
		per := float64(rel.Bytes) / float64(step.Size)
		if rel.Kind == "table" {
			step.TableBytesPerEvent += per
		} else {
			step.IndexBytesPerEvent += per
		}
	}
	progressf(cfg.Progress, "scale: %d events (loaded at %.0f events/s, vacuum %.1f s); measuring", step.Size, step.Load.EventsPerSec, step.VacuumSeconds)

	tagQuery, tagCount, err := pickTag(ctx, r.pool, ScaleTenant, step.Size, 100)
	if err != nil {
		return step, err
	}
	step.TagQuery, step.TagQueryCount = tagQuery, tagCount
	tagLimit := int(min(100, tagCount)) // fewer only in a log of less than ~20,000 events
	window := min(cfg.Window, step.Size)
	for _, s := range []struct {
		name    string
		clients int
		calls   int
		prepare func(ctx context.Context, r *runner, clients int) (op, op, error)
	}{
		{ScaleAppend, 1, cfg.Count, prepareAppend(1)},
		{ScaleDCBDisjoint, 1, cfg.Count, prepareDCBDisjoint},
		{ScaleDCBContend, cfg.ContendedClients, cfg.Count, prepareDCBContended},
		{ScaleReadNew, 1, cfg.Count, prepareReadSmall},
		{ScaleReadLoaded, 1, cfg.Count, prepareReadLoaded},
		{ScaleTagQuery, 1, cfg.Count, prepareTagQuery(tagQuery, tagLimit)},
		{ScaleCatchUp, 1, cfg.CatchUpCalls, prepareCatchUpWindow(window)},
	} {
		r.cfg.Count = s.calls
		res, err := measurePair(ctx, r, s.name, s.clients, s.prepare)
		r.cfg.Count = cfg.Count
		if err != nil {
			return step, fmt.Errorf("%s at %d events: %w", s.name, step.Size, err)
		}
		step.Results = append(step.Results, res)
		progressf(cfg.Progress, "  %s: p50 %.2f ms, p99 %.2f ms, %.0f events/s (baseline p50 %.2f ms, %.0f events/s)",
			s.name, ms(res.P50), ms(res.P99), res.EventsPerSec, ms(res.Baseline.P50), res.Baseline.EventsPerSec)
	}
	err = r.pool.QueryRow(ctx, "SELECT count(*) FROM es.events WHERE tenant_id = $1", ScaleTenant).Scan(&step.SizeAfter)
	return step, err
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// measurePair prepares a scenario and measures its baseline, then the
// store phase, as Run does. During the store phase it samples what the
// database's active backends wait for (Note).
func measurePair(ctx context.Context, r *runner, name string, clients int, prepare func(ctx context.Context, r *runner, clients int) (op, op, error)) (Result, error) {
	storeOp, baseOp, err := prepare(ctx, r, clients)
	if err != nil {
		r.finish(&Result{})
		return Result{}, err
	}
	base, err := r.measure(ctx, name+" (baseline)", clients, baseOp)
	if err != nil {
		r.finish(&Result{})
		return Result{}, fmt.Errorf("baseline: %w", err)
	}
	stop := sampleWaits(ctx, r.pool)
	res, err := r.measure(ctx, name, clients, storeOp)
	waits := stop()
	r.finish(&res)
	if err != nil {
		return Result{}, err
	}
	res.Note = strings.TrimPrefix(res.Note+"; "+waits, "; ")
	res.Baseline = &base
	if base.EventsPerSec > 0 {
		res.Ratio = res.EventsPerSec / base.EventsPerSec
	}
	return res, nil
}

// clientSweep measures one-event stream appends and conditional appends on
// disjoint boundaries at each client count, each through a pool of its own
// large enough for the clients, beside the plain INSERT.
func clientSweep(ctx context.Context, pool *pgxpool.Pool, cfg ScaleConfig, runID string) ([]Result, error) {
	var results []Result
	for _, c := range cfg.Clients {
		pc := pool.Config()
		pc.MaxConns = int32(c + 4)
		p, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return results, err
		}
		store, err := pges.New(p, nil)
		if err != nil {
			p.Close()
			return results, err
		}
		r := &runner{pool: p, store: store.Tenant(ScaleTenant), cfg: Config{Duration: cfg.Duration, Progress: cfg.Progress}, runID: fmt.Sprintf("%s_c%d", runID, c)}
		for _, s := range []struct {
			name    string
			prepare func(ctx context.Context, r *runner, clients int) (op, op, error)
		}{{ScaleAppend, prepareAppend(1)}, {ScaleDCBDisjoint, prepareDCBDisjoint}} {
			res, err := measurePair(ctx, r, s.name, c, s.prepare)
			if err != nil {
				p.Close()
				return results, fmt.Errorf("%s, %d clients: %w", s.name, c, err)
			}
			results = append(results, res)
			progressf(cfg.Progress, "  %s, %d clients: %.0f events/s, baseline %.0f (%.2fx)", s.name, c, res.EventsPerSec, res.Baseline.EventsPerSec, res.Ratio)
		}
		p.Close()
	}
	return results, nil
}

func relationSizes(ctx context.Context, pool *pgxpool.Pool, tenantID string) ([]RelationSize, error) {
	rows, err := pool.Query(ctx, "SELECT relation, kind, bytes FROM es_bench_sizes($1) ORDER BY kind DESC, relation", tenantID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (RelationSize, error) {
		var s RelationSize
		err := row.Scan(&s.Name, &s.Kind, &s.Bytes)
		return s, err
	})
}

// pickTag returns a loaded product tag carried by at least want events,
// and as few as it finds, with its count: the loader draws product:k for
// half of the events with P(k) ~ 1/k over 20,000 products, so about
// size / 2,000 is the k carried by ~100 events, spread over the whole log.
// In a log too small for any to reach want, product:1 (the most common).
func pickTag(ctx context.Context, pool *pgxpool.Pool, tenantID string, size int64, want int64) (string, int64, error) {
	for k := max(1, size/1000); ; k = max(1, min(k-1, k*4/5)) {
		tag := fmt.Sprintf("product:%d", k)
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM es.events WHERE tenant_id = $1 AND tags @> ARRAY[$2::text]", tenantID, tag).Scan(&n); err != nil {
			return "", 0, err
		}
		if n >= want || k == 1 {
			if n == 0 {
				return "", 0, fmt.Errorf("tenant %s has no loaded product tags", tenantID)
			}
			return tag, n, nil
		}
	}
}

// readRows is the baselines' plain SELECT: the rows scanned into the same
// Go types the store decodes into.
func readRows(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) (int, error) {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var e pges.RecordedEvent
	var stream *string
	var version *int64
	var meta []byte
	count := 0
	for rows.Next() {
		if err := rows.Scan(&e.Position, &e.ID, &e.Type, &stream, &version, &e.Payload, &meta, &e.Tags, &e.RecordedAt); err != nil {
			return count, err
		}
		count++
	}
	return count, rows.Err()
}

const eventColumns = "position, event_id, event_type, stream_id, stream_version, payload, metadata, tags, recorded_at"

// prepareReadLoaded reads the first 100 events of the oldest loaded stream
// that has 100 or more: its events are spread over a chunk's positions
// (100 heap pages), unlike read-stream-100's freshly written stream. In a
// log too small for such a stream, the longest stream, whole.
func prepareReadLoaded(ctx context.Context, r *runner, clients int) (op, op, error) {
	var stream string
	limit := int64(100)
	err := r.pool.QueryRow(ctx, "SELECT stream_id FROM es.events WHERE tenant_id = $1 AND stream_version = 100 LIMIT 1", r.store.TenantID()).Scan(&stream)
	if errors.Is(err, pgx.ErrNoRows) {
		err = r.pool.QueryRow(ctx, "SELECT stream_id, stream_version FROM es.events WHERE tenant_id = $1 AND stream_id IS NOT NULL ORDER BY stream_version DESC LIMIT 1",
			r.store.TenantID()).Scan(&stream, &limit)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("a loaded stream of 100 events: %w", err)
	}
	storeOp := func(ctx context.Context, c int, call int64) (int, error) {
		events, err := r.store.ReadStream(ctx, stream, pges.ReadOptions{Limit: int(limit)})
		if err == nil && int64(len(events)) != limit {
			err = fmt.Errorf("read %d events of %s, want %d", len(events), stream, limit)
		}
		return len(events), err
	}
	baseOp := func(ctx context.Context, c int, call int64) (int, error) {
		return readRows(ctx, r.pool, "SELECT "+eventColumns+" FROM es.events WHERE tenant_id = $1 AND stream_id = $2 ORDER BY stream_version LIMIT $3", r.store.TenantID(), stream, limit)
	}
	return storeOp, baseOp, nil
}

// prepareTagQuery reads the first limit events carrying tag with a DCB
// Read (the head, then the events); the baseline is the plain SELECT of
// the same rows.
func prepareTagQuery(tag string, limit int) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		storeOp := func(ctx context.Context, c int, call int64) (int, error) {
			res, err := r.store.Read(ctx, pges.Tags(tag), pges.QueryOptions{Limit: limit})
			if err != nil {
				return 0, err
			}
			n := 0
			for _, err := range res.Events {
				if err != nil {
					return n, err
				}
				n++
			}
			if n != limit {
				return n, fmt.Errorf("tag query %s read %d events, want %d", tag, n, limit)
			}
			return n, nil
		}
		baseOp := func(ctx context.Context, c int, call int64) (int, error) {
			return readRows(ctx, r.pool, "SELECT "+eventColumns+" FROM es.events WHERE tenant_id = $1 AND tags @> ARRAY[$2::text] ORDER BY position LIMIT $3",
				r.store.TenantID(), tag, limit)
		}
		return storeOp, baseOp, nil
	}
}

// prepareCatchUpWindow measures an ephemeral subscription delivering the
// oldest window events from the beginning of the log (batches of 1,000),
// so that the work per call is the same at every size; the baseline reads
// the same rows with one plain SELECT in position order.
func prepareCatchUpWindow(window int64) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		ts := r.store
		storeOp := catchUp(ts, window)
		baseOp := func(ctx context.Context, c int, call int64) (int, error) {
			return readRows(ctx, r.pool, "SELECT "+eventColumns+" FROM es.events WHERE tenant_id = $1 ORDER BY position LIMIT $2", ts.TenantID(), window)
		}
		return storeOp, baseOp, nil
	}
}

// sizes is the sizes of a report's steps.
func (rep *ScaleReport) sizes() []float64 {
	out := make([]float64, len(rep.Steps))
	for i, s := range rep.Steps {
		out[i] = float64(s.Size)
	}
	return slices.Clip(out)
}

// sampleWaits samples, every 20 ms until stop is called, the wait events
// of the other active backends of this database (pg_stat_activity; "CPU"
// when active and not waiting), and stop summarizes the most frequent as
// shares of all samples: "waits: CPU 55%, IO:WALSync 30%, ...".
func sampleWaits(ctx context.Context, pool *pgxpool.Pool) (stop func() string) {
	ctx, cancel := context.WithCancel(ctx)
	counts := map[string]int{}
	total := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return
		}
		defer conn.Release()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rows, err := conn.Query(ctx, `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
				WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
			if err != nil {
				return
			}
			for rows.Next() {
				var w string
				if rows.Scan(&w) == nil {
					counts[w]++
					total++
				}
			}
			rows.Close()
		}
	}()
	return func() string {
		cancel()
		<-done
		if total == 0 {
			return ""
		}
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return counts[b] - counts[a] })
		var parts []string
		for _, k := range keys[:min(5, len(keys))] {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*float64(counts[k])/float64(total)))
		}
		return fmt.Sprintf("waits of active backends (%d samples): %s", total, strings.Join(parts, ", "))
	}
}
