package relay_test

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/eventstore-go/pges/relay"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	benchEvents   = flag.Int("relay.bench-events", 50_000, "backlog size of BenchmarkRelay")
	benchRounds   = flag.Int("relay.bench-rounds", 3, "alternating rounds of BenchmarkRelay")
	benchBatch    = flag.Int("relay.bench-batch", 1000, "the relay's batch size in BenchmarkRelay")
	benchNoBitmap = flag.Bool("relay.bench-no-bitmap", false, "BenchmarkRelay's relay and subscription read with enable_bitmapscan = off")
)

// counting records a relay's messages and when the last one was acked.
type counting struct {
	relay.Broker
	want  int64
	acked atomic.Int64
	done  chan time.Time
	mu    sync.Mutex
	msgs  []*relay.Message // kept when record is set
	keep  bool

	first, lastPub, lastConfirm time.Time
	dbTime, pubTime, ackTime    time.Duration
}

func (c *counting) Publish(m *relay.Message) error {
	now := time.Now()
	if c.first.IsZero() {
		c.first = now
		if !c.lastConfirm.IsZero() {
			c.dbTime += now.Sub(c.lastConfirm)
		}
	}
	c.lastPub = now
	if c.keep {
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.mu.Unlock()
	}
	return c.Broker.Publish(m)
}

func (c *counting) Confirm(ctx context.Context, timeout time.Duration) (relay.Stats, error) {
	t0 := time.Now()
	c.pubTime += t0.Sub(c.first)
	st, err := c.Broker.Confirm(ctx, timeout)
	c.lastConfirm = time.Now()
	c.ackTime += c.lastConfirm.Sub(t0)
	c.first = time.Time{}
	if err == nil && c.acked.Add(int64(st.Acked)) == c.want {
		c.done <- time.Now()
	}
	return st, err
}

// BenchmarkRelay measures a relay draining a caught-up backlog to JetStream
// against a plain loop publishing the same messages asynchronously through
// the same client, in alternating rounds, each into a fresh stream (so
// de-duplication drops nothing). Run it once:
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 1x ./relay
func BenchmarkRelay(b *testing.B) {
	ts := newTenant(b)
	nc, jsb := connect(b, natsURL())
	jsb, err := relay.NewJetStream(nc, relay.JetStreamOptions{MaxPending: max(4096, 2**benchBatch)})
	if err != nil {
		b.Fatal(err)
	}
	n := *benchEvents
	load(b, ts, n, 200)
	if *benchNoBitmap {
		ts = noBitmapTenant(b, ts.TenantID())
	}
	var msgs []*relay.Message
	var relayRates, plainRates, subRates []float64
	for round := range *benchRounds {
		// The subscription the relay is built on, alone: a handler that
		// does nothing, the same batch size.
		subRates = append(subRates, drain(b, ts, fmt.Sprintf("bench-sub-%d", round), n))

		// The relay, from the start of the log.
		s, subject := newJSStream(b, jsb.JS())
		c := &counting{Broker: jsb, want: int64(n), done: make(chan time.Time, 1), keep: msgs == nil}
		r, err := relay.New(ts, c, relay.Config{Name: fmt.Sprintf("bench-%d", round), Subject: subject, BatchSize: *benchBatch})
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		stop := start(b, r)
		var end time.Time
		select {
		case end = <-c.done:
		case <-time.After(5 * time.Minute):
			b.Fatal("the relay did not finish")
		}
		_ = stop()
		b.Logf("relay phases: between batches (commit, read) %s, publishing %s, waiting for acks %s", c.dbTime, c.pubTime, c.ackTime)
		relayRates = append(relayRates, float64(n)/end.Sub(began).Seconds())
		if msgs == nil {
			msgs = c.msgs
		}
		_ = jsb.JS().DeleteStream(context.Background(), s.CachedInfo().Config.Name)

		// The plain loop: the same messages (subjects rewritten to the
		// round's stream), the same client, no database.
		s, subject = newJSStream(b, jsb.JS())
		plainRates = append(plainRates, plainLoop(b, nc, msgs, subject))
		_ = jsb.JS().DeleteStream(context.Background(), s.CachedInfo().Config.Name)
		b.Logf("round %d: relay %.0f events/s, plain loop %.0f msgs/s, ratio %.2f; bare subscription %.0f events/s, relay/subscription %.2f",
			round+1, relayRates[round], plainRates[round], relayRates[round]/plainRates[round], subRates[round], relayRates[round]/subRates[round])
	}
	ratios := make([]float64, len(relayRates))
	for i := range ratios {
		ratios[i] = relayRates[i] / plainRates[i]
	}
	b.ReportMetric(median(relayRates), "relay-events/s")
	b.ReportMetric(median(plainRates), "plain-msgs/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(subRates), "subscription-events/s")
	b.Logf("relay events/s %v; plain %v; subscription %v; ratios %v", rounded(relayRates), rounded(plainRates), rounded(subRates), ratios)
}

// drain returns how fast a new durable subscription with a handler that
// does nothing delivers the tenant's n events.
func drain(b *testing.B, ts *pges.TenantStore, name string, n int) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := 0
	var end time.Time
	began := time.Now()
	err := ts.Subscribe(ctx, pges.SubscriptionConfig{Name: name, BatchSize: *benchBatch,
		Handler: func(context.Context, pgx.Tx, pges.RecordedEvent) error {
			if got++; got == n {
				end = time.Now()
				cancel()
			}
			return nil
		}})
	if err != nil || got < n {
		b.Fatalf("the subscription delivered %d of %d: %v", got, n, err)
	}
	return float64(n) / end.Sub(began).Seconds()
}

// noBitmapTenant is the tenant through a runtime pool whose sessions have
// bitmap scans off, to see the relay when the log read plans an index
// scan.
func noBitmapTenant(b *testing.B, id string) *pges.TenantStore {
	cfg, err := pgxpool.ParseConfig(testdb.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE es_runtime; SET enable_bitmapscan = off")
		return err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	store, err := pges.New(pool, nil)
	if err != nil {
		b.Fatal(err)
	}
	return store.Tenant(id)
}

func plainLoop(b *testing.B, nc *nats.Conn, msgs []*relay.Message, subject string) float64 {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	prefix := subject[:len(subject)-len(".{tenant}.{type}")]
	subjects := make([]string, len(msgs))
	for i, m := range msgs {
		subjects[i] = prefix + m.Subject[len("pgestest")+8:]
	}
	began := time.Now()
	for i, m := range msgs {
		msg := &nats.Msg{Subject: subjects[i], Data: m.Body, Header: make(nats.Header, len(m.Headers)+1)}
		for _, h := range m.Headers {
			msg.Header[h.Key] = []string{h.Value}
		}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("the plain loop was not acknowledged")
	}
	return float64(len(msgs)) / time.Since(began).Seconds()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}
