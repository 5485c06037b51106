package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5/pgxpool"
)

// LoadChunk is the most events the loader writes in one transaction.
const LoadChunk = 100_000

// LoadStats says what one Load did.
type LoadStats struct {
	// Before and After are the tenant's events before and after the load.
	Before, After int64
	// Elapsed is the time of the inserts alone (no VACUUM).
	Elapsed time.Duration
	// EventsPerSec is (After - Before) / Elapsed.
	EventsPerSec float64
}

// Load tops a tenant (which must exist) up to target events with
// synthetic ones, LoadChunk per transaction, through the SQL function
// es_bench_load (bench/migrations/00002_loader.sql: realistic types, 2-4
// Zipf-like tags, streams of 1-249 events, ~200-byte payloads, positions
// from es.event_position, the loading transaction's tx_id). It writes
// nothing when the tenant already holds target events or more. Setup must
// have run (it creates the function).
//
// es_bench_load writes to the tenant's own partition: Load first dedicates
// the tenant (tenant.Manager.Dedicate, a no-op for a dedicated one), as a
// tenant expected to grow large is, right after its creation.
func Load(ctx context.Context, pool *pgxpool.Pool, tenantID string, target int64, progress io.Writer) (LoadStats, error) {
	var st LoadStats
	if _, err := tenant.NewManager(pool).Dedicate(ctx, tenantID); err != nil {
		return st, fmt.Errorf("load %s: %w", tenantID, err)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM es.events WHERE tenant_id = $1", tenantID).Scan(&st.Before); err != nil {
		return st, err
	}
	have := st.Before
	start := time.Now()
	lastReport := start
	for have < target {
		n := min(int64(LoadChunk), target-have)
		var wrote int64
		// The chunk number seeds the chunk's random draws and names its
		// streams: the events before it, plus one, is unique per chunk.
		// synchronous_commit off: a load does not need each chunk's commit
		// flushed before the next (a crash would lose the last chunks only).
		err := func() error {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
				return err
			}
			// Every writer of a tenant's events holds its "any event" key
			// until it commits, before it takes a transaction id: that is how
			// subscriptions tell the tenant's writers in flight
			// (migrations/00012 and 00013).
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared(es.lock_key($1, 'a', ''))", tenantID); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, "SELECT es_bench_load($1, $2, $3)", tenantID, int32(n), have+1).Scan(&wrote); err != nil {
				return err
			}
			return tx.Commit(ctx)
		}()
		if err != nil {
			return st, fmt.Errorf("load %s: %w", tenantID, err)
		}
		if wrote == 0 {
			return st, fmt.Errorf("load %s: a chunk wrote no events", tenantID)
		}
		have += wrote
		if progress != nil && (time.Since(lastReport) > 5*time.Second || have >= target) {
			lastReport = time.Now()
			el := time.Since(start)
			fmt.Fprintf(progress, "  loading %s: %d of %d events (%.0f events/s)\n", tenantID, have, target, float64(have-st.Before)/el.Seconds())
		}
	}
	st.After, st.Elapsed = have, time.Since(start)
	if st.After > st.Before && st.Elapsed > 0 {
		st.EventsPerSec = float64(st.After-st.Before) / st.Elapsed.Seconds()
	}
	return st, nil
}
