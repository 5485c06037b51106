package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func init() {
	all = append(all,
		scenario{name: "append-push-off", clients: []int{8, 16}, prepare: preparePush(pushOff)},
		scenario{name: "append-push-on", clients: []int{8, 16}, prepare: preparePush(pushListened)},
		scenario{name: "append-push-subscribed", clients: []int{8, 16}, prepare: preparePush(pushSubscribed)},
		scenario{name: "subscription-latency", clients: []int{8}, prepare: prepareLatency(1)},
		scenario{name: "subscription-latency-batch10", clients: []int{2}, prepare: prepareLatency(10)},
		scenario{name: "subscription-catchup-1m", clients: []int{1}, prepare: prepareCatchUp(1_000_000)},
	)
}

type pushMode int

const (
	// pushOff appends through connections with es.push = off: the
	// events_notify trigger skips NOTIFY for them (and for nobody else).
	pushOff pushMode = iota
	// pushListened notifies as usual; the LISTENing connection that every
	// mode runs receives the notifications.
	pushListened
	// pushSubscribed runs a live subscription (no-op handler) on the bench
	// tenant instead: notifications plus the reads they cause.
	pushSubscribed
)

// preparePush measures one-event stream appends with push notification off,
// on, or on with a subscriber; the baseline is the plain INSERT.
func preparePush(mode pushMode) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		store := r.store
		bg, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		r.onDone(func(*Result) { stop(); wg.Wait() })
		// One connection LISTENs and drains notifications in every mode, so
		// that off and on differ by the notifications alone.
		conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
		if err != nil {
			return nil, nil, err
		}
		if _, err := conn.Exec(ctx, "LISTEN es_events"); err != nil {
			conn.Close(ctx)
			return nil, nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close(context.Background())
			for bg.Err() == nil {
				_, _ = conn.WaitForNotification(bg)
			}
		}()
		switch mode {
		case pushOff:
			cfg := r.pool.Config()
			cfg.ConnConfig.RuntimeParams["es.push"] = "off"
			cfg.MaxConns = int32(clients + 2)
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				return nil, nil, err
			}
			r.onDone(func(*Result) { pool.Close() })
			s, err := pges.New(pool, nil)
			if err != nil {
				return nil, nil, err
			}
			store = s.Tenant(Tenant)
		case pushSubscribed:
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = r.store.Subscribe(bg, pges.SubscriptionConfig{Start: pges.StartAtEnd(),
					Handler: func(context.Context, pgx.Tx, pges.RecordedEvent) error { return nil }})
			}()
		}
		storeOp, _, err := prepareAppendTo(store, 1)(ctx, r, clients)
		return storeOp, insertOne(r), err
	}
}

// latencyRate is the append rate of the latency scenario, in events/s.
const latencyRate = 2000

// prepareLatency appends at latencyRate events/s in all (paced), batchSize
// events per call, and reports, in place of the calls' latencies, the time
// from the start of each Append call to its events' handler in a live
// durable subscription. The baseline inserts at the same pace; its
// latencies are the INSERT's.
func prepareLatency(batchSize int) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		return latencyPhase(ctx, r, batchSize)
	}
}

func latencyPhase(ctx context.Context, r *runner, batchSize int) (op, op, error) {
	r.rate = latencyRate / float64(batchSize)
	name := "bench-latency-" + r.phase()
	type sent struct {
		SentNS int64  `json:"sent_ns"`
		Note   string `json:"note"`
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration         // from the Append call's start
		received  = map[int64]time.Time{} // position -> handler start
		returned  = map[int64]time.Time{} // position -> Append's return
		delivered atomic.Int64
	)
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = r.store.Subscribe(bg, pges.SubscriptionConfig{Name: name, Start: pges.StartAtEnd(), Filter: pges.SubscriptionFilter{Types: []string{"Timed"}},
			Handler: func(_ context.Context, _ pgx.Tx, ev pges.RecordedEvent) error {
				now := time.Now()
				var s sent
				if json.Unmarshal(ev.Payload, &s) == nil && s.SentNS > 0 {
					mu.Lock()
					latencies = append(latencies, now.Sub(time.Unix(0, s.SentNS)))
					received[ev.Position] = now
					mu.Unlock()
					delivered.Add(1)
				}
				return nil
			}})
	}()
	time.Sleep(200 * time.Millisecond) // the subscription is live
	storeOp := func(ctx context.Context, c int, call int64) (int, error) {
		body, _ := json.Marshal(sent{SentNS: time.Now().UnixNano(), Note: string(payload[:150])})
		batch := make([]pges.EventData, batchSize)
		for i := range batch {
			batch[i] = pges.EventData{Type: "Timed", Payload: body, Tags: []string{fmt.Sprintf("client:c%d", c)}}
		}
		res, err := r.store.Append(ctx, batch, nil)
		now := time.Now()
		mu.Lock()
		for _, p := range res.Positions {
			returned[p] = now
		}
		mu.Unlock()
		return batchSize, err
	}
	r.onDone(func(res *Result) {
		// Let the last events arrive, then report the handler latencies.
		deadline := time.Now().Add(5 * time.Second)
		for delivered.Load() < res.Events && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		stop()
		wg.Wait()
		_ = r.store.DeleteSubscription(context.Background(), name)
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(latencies)
		res.P50, res.P95, res.P99 = percentile(latencies, 0.50), percentile(latencies, 0.95), percentile(latencies, 0.99)
		// From the commit's acknowledgement; a handler that ran before
		// Append returned counts as 0.
		var fromCommit []time.Duration
		for p, at := range received {
			if ret, ok := returned[p]; ok {
				fromCommit = append(fromCommit, max(0, at.Sub(ret)))
			}
		}
		slices.Sort(fromCommit)
		res.Note = fmt.Sprintf("latency from the Append call's start to the handler; from Append's return (commit acknowledged): p50 %.2f ms, p99 %.2f ms",
			float64(percentile(fromCommit, 0.5))/1e6, float64(percentile(fromCommit, 0.99))/1e6)
		if got := int64(len(latencies)); got < res.Events {
			res.Scenario += fmt.Sprintf(" (%d of %d delivered)", got, res.Events)
		}
	})
	if batchSize == 1 {
		return storeOp, insertOne(r), nil
	}
	return storeOp, insertBatch(r, batchSize), nil
}

// prepareCatchUp fills a tenant of its own to size events (shared with
// dcb-check-1m) and measures one subscription catching up from the
// beginning over its whole log per call; the baseline reads the same rows
// with one plain SELECT in position order.
func prepareCatchUp(size int) func(ctx context.Context, r *runner, clients int) (op, op, error) {
	return func(ctx context.Context, r *runner, clients int) (op, op, error) {
		ts, err := r.sizedTenant(ctx, size)
		if err != nil {
			return nil, nil, err
		}
		var total int64
		if err := r.pool.QueryRow(ctx, "SELECT count(*) FROM es.events WHERE tenant_id = $1", ts.TenantID()).Scan(&total); err != nil {
			return nil, nil, err
		}
		baseOp := func(ctx context.Context, c int, call int64) (int, error) {
			return readRows(ctx, r.pool, "SELECT "+eventColumns+" FROM es.events WHERE tenant_id = $1 ORDER BY position", ts.TenantID())
		}
		return catchUp(ts, total), baseOp, nil
	}
}

// catchUp is one ephemeral subscription from the beginning of the log,
// ended once it has delivered n events (batches of 1,000).
func catchUp(ts *pges.TenantStore, n int64) op {
	return func(ctx context.Context, c int, call int64) (int, error) {
		subCtx, done := context.WithCancel(ctx)
		defer done()
		var got int64
		err := ts.Subscribe(subCtx, pges.SubscriptionConfig{BatchSize: 1000,
			Handler: func(context.Context, pgx.Tx, pges.RecordedEvent) error {
				if got++; got == n {
					done()
				}
				return nil
			}})
		if err == nil && got < n {
			err = ctx.Err()
		}
		// The rest of the batch that reached n is delivered too.
		return int(min(got, n)), err
	}
}
