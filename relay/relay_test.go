package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/eventstore-go/pges/relay"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { testdb.Main(m, "relay") }

var big = flag.Bool("relay.big", false, "relay 100,000 events instead of 20,000 in the load tests")

func loadSize() int {
	if *big {
		return 100_000
	}
	return 20_000
}

// natsURL is the shared broker (PGES_NATS_URL, default the local one).
func natsURL() string {
	if u := os.Getenv("PGES_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

func newTenant(t testing.TB) *pges.TenantStore {
	t.Helper()
	store, err := pges.New(testdb.RuntimePool(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return store.Tenant(testdb.NewTenant(t, testdb.Pool(t)))
}

func connect(t testing.TB, url string) (*nats.Conn, *relay.JetStream) {
	t.Helper()
	nc, err := relay.ConnectNATS(url, nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := relay.NewJetStream(nc, relay.JetStreamOptions{AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return nc, b
}

// newJSStream creates a JetStream stream of the test's own, deleted after
// it, and returns it with the relay's subject template for it.
func newJSStream(t testing.TB, js jetstream.JetStream) (jetstream.Stream, string) {
	t.Helper()
	id := uuid.NewString()[:8]
	prefix := "pgestest" + id
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := relay.EnsureStream(ctx, js, "PGES_TEST_"+id, []string{prefix + ".>"}, 2*time.Minute)
	if err != nil {
		t.Fatalf("create the JetStream stream (is nats-server -js running at %s?): %v", natsURL(), err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), "PGES_TEST_"+id) })
	return s, prefix + ".{tenant}.{type}"
}

// load appends n events to streams "s-0".."s-<streams-1>", interleaved, in
// appends of 25, and returns the number of events per stream.
func load(t testing.TB, ts *pges.TenantStore, n, streams int) map[string]int {
	t.Helper()
	want := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	const chunk = 25
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * chunk; i < n; i += 4 * chunk {
				k := min(chunk, n-i)
				stream := fmt.Sprintf("s-%d", (i/chunk)%streams)
				evs := make([]pges.EventData, k)
				for j := range evs {
					evs[j] = pges.EventData{Type: "Loaded", Payload: json.RawMessage(`{"n":` + strconv.Itoa(i+j) + `,"pad":"` +
						"0123456789012345678901234567890123456789012345678901234567890123456789" + `"}`)}
				}
				if _, err := ts.AppendToStream(context.Background(), stream, pges.Any, evs...); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				want[stream] += k
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	return want
}

// start runs a relay in the background until the test ends or stop.
func start(t testing.TB, r *relay.Relay) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func storedMsgs(s jetstream.Stream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func lag(t testing.TB, ts *pges.TenantStore, name string) int64 {
	list, err := ts.Subscriptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.Name == relay.SubscriptionName(name) {
			return s.LagEvents
		}
	}
	return -1
}

// verify reads the JetStream stream as a consumer does (an ordered
// consumer) and checks: each event exactly once, every stream complete and
// in version order, positions rising within each stream.
func verify(t testing.TB, s jetstream.Stream, tenant string, want map[string]int) {
	t.Helper()
	total := 0
	for _, n := range want {
		total += n
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	version := map[string]int64{}
	position := map[string]int64{}
	got := 0
	for got < total {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			got++
			h := m.Headers()
			id := h.Get(jetstream.MsgIDHeader)
			if seen[id] {
				t.Fatalf("event %s arrived twice", id)
			}
			seen[id] = true
			if h.Get("Pges-Tenant") != tenant {
				t.Fatalf("message of tenant %q in tenant %q's relay", h.Get("Pges-Tenant"), tenant)
			}
			stream := h.Get("Pges-Stream")
			v, _ := strconv.ParseInt(h.Get("Pges-Stream-Version"), 10, 64)
			p, _ := strconv.ParseInt(h.Get("Pges-Position"), 10, 64)
			if v != version[stream]+1 {
				t.Fatalf("stream %s: version %d after %d", stream, v, version[stream])
			}
			if p <= position[stream] {
				t.Fatalf("stream %s: position %d after %d", stream, p, position[stream])
			}
			version[stream], position[stream] = v, p
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if got != total {
		t.Fatalf("the broker holds %d messages, want %d", got, total)
	}
	for stream, n := range want {
		if version[stream] != int64(n) {
			t.Fatalf("stream %s: the broker holds up to version %d, want %d", stream, version[stream], n)
		}
	}
	if left := storedMsgs(s); left != uint64(total) {
		t.Fatalf("the JetStream stream holds %d messages, want %d", left, total)
	}
}

// Every event of a load arrives once, each stream in version order.
func TestRelayLoadExactlyOnceInStreamOrder(t *testing.T) {
	ts := newTenant(t)
	_, b := connect(t, natsURL())
	s, subject := newJSStream(t, b.JS())
	n := loadSize()
	want := load(t, ts, n, 200)
	r, err := relay.New(ts, b, relay.Config{Name: "load", Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	stop := start(t, r)
	waitFor(t, 5*time.Minute, "the relay to catch up", func() bool { return lag(t, ts, "load") == 0 })
	t.Logf("%d events relayed in %s", n, time.Since(started).Round(time.Millisecond))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	verify(t, s, ts.TenantID(), want)
	if st := r.Stats(); st.Acked != n || st.Duplicates != 0 || st.Reordered != 0 {
		t.Fatalf("stats %+v, want %d acked, no duplicates", st, n)
	}
}

// A relay killed mid-run (SIGKILL of its process) is replaced by a standby:
// the batch it had sent without committing is sent again, the broker drops
// the re-sends, and nothing is missing.
func TestRelayKilledMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	ts := newTenant(t)
	_, b := connect(t, natsURL())
	s, subject := newJSStream(t, b.JS())
	n := loadSize()
	want := load(t, ts, n, 200)
	child := exec.Command(os.Args[0], "-test.run=^TestRelayChild$", "-test.v")
	child.Env = append(os.Environ(), "PGES_RELAY_CHILD_TENANT="+ts.TenantID(), "PGES_RELAY_CHILD_SUBJECT="+subject,
		testdb.ChildDatabaseEnv+"="+testdb.URL(t))
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	lines := bufio.NewScanner(out)
	for lines.Scan() && lines.Text() != "ACKED" {
	}
	if storedMsgs(s) == 0 {
		t.Fatal("the child ended before its batches were acknowledged")
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killedAt := storedMsgs(s)
	t.Logf("killed after %s", time.Since(began).Round(time.Millisecond))
	killed := time.Now()
	r, err := relay.New(ts, b, relay.Config{Name: "kill", Subject: subject, LeaseTTL: time.Second, Owner: "standby"})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	waitFor(t, 5*time.Minute, "the standby to catch up", func() bool { return lag(t, ts, "kill") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	t.Logf("caught up %s after the kill", time.Since(killed).Round(time.Millisecond))
	t.Logf("killed with %d of %d on the broker; the standby's acks: %+v", killedAt, n, st)
	if st.Duplicates != childBatch {
		t.Errorf("the standby re-sent %d messages the broker held, want the killed batch of %d", st.Duplicates, childBatch)
	}
	verify(t, s, ts.TenantID(), want)
}

// TestRelayChild is the relay process TestRelayKilledMidRun kills.
func TestRelayChild(t *testing.T) {
	tenant := os.Getenv("PGES_RELAY_CHILD_TENANT")
	if tenant == "" {
		t.Skip("run by TestRelayKilledMidRun")
	}
	store, err := pges.New(testdb.RuntimePool(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, b := connect(t, natsURL())
	r, err := relay.New(store.Tenant(tenant), &dieAfterAcks{Broker: b, batches: 14}, relay.Config{Name: "kill",
		Subject: os.Getenv("PGES_RELAY_CHILD_SUBJECT"), LeaseTTL: time.Second, Owner: "child", BatchSize: childBatch})
	if err != nil {
		t.Fatal(err)
	}
	t.Fatal("the relay stopped:", r.Run(context.Background()))
}

const childBatch = 500

// dieAfterAcks makes the child's relay stop, to be killed, in the worst
// place: after the broker acknowledged a batch, before its checkpoint.
type dieAfterAcks struct {
	relay.Broker
	batches int
}

func (d *dieAfterAcks) Confirm(ctx context.Context, timeout time.Duration) (relay.Stats, error) {
	st, err := d.Broker.Confirm(ctx, timeout)
	if d.batches--; d.batches == 0 && err == nil {
		fmt.Println("ACKED")
		select {} // killed here
	}
	return st, err
}

// natsServer is a nats-server process of the test's own, on its own port
// and store directory, that the test stops and starts again.
type natsServer struct {
	t    testing.TB
	args []string
	cmd  *exec.Cmd
	url  string
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("nats-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &natsServer{t: t, args: []string{bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir()},
		url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.args[0], s.args[1:]...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	waitFor(s.t, 10*time.Second, "nats-server to listen", func() bool {
		c, err := net.Dial("tcp", s.url[len("nats://"):])
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop shuts the server down (SIGTERM: it stores what it acknowledged).
func (s *natsServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// The broker stops mid-run and comes back: the relay retries with backoff,
// its lag shows while the broker is down (events appended meanwhile too),
// and afterwards every event is on the broker once, in stream order.
func TestRelayBrokerRestart(t *testing.T) {
	ts := newTenant(t)
	srv := startNATS(t)
	_, b := connect(t, srv.url)
	s, subject := newJSStream(t, b.JS())
	n := loadSize()
	want := load(t, ts, n, 200)
	r, err := relay.New(ts, b, relay.Config{Name: "restart", Subject: subject, LeaseTTL: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	waitFor(t, time.Minute, "a third on the broker", func() bool { return storedMsgs(s) >= uint64(n/3) })
	srv.stop()
	more := load(t, ts, 1000, 10)
	for k, v := range more {
		want[k] += v
	}
	time.Sleep(2 * time.Second) // the relay retries against the stopped broker
	if l := lag(t, ts, "restart"); l <= 0 {
		t.Fatalf("lag while the broker is down: %d, want > 0", l)
	}
	srv.start()
	waitFor(t, 5*time.Minute, "the relay to catch up", func() bool { return lag(t, ts, "restart") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("the relay's acks: %+v", r.Stats())
	// A fresh connection: the stream object's client saw the restart too.
	_, b2 := connect(t, srv.url)
	s2, err := b2.JS().Stream(context.Background(), s.CachedInfo().Config.Name)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, s2, ts.TenantID(), want)
}

// Subjects and headers carry user data escaped: a type with dots and
// spaces stays one token, and header values decode to what was appended.
func TestRelaySubjectsAndHeaders(t *testing.T) {
	ts := newTenant(t)
	_, b := connect(t, natsURL())
	s, subject := newJSStream(t, b.JS())
	typ, stream := "order placed.v2", "cart 7\r\nX-Forged: 1"
	_, err := ts.AppendToStream(context.Background(), stream, pges.NoStream, pges.EventData{Type: typ, Payload: json.RawMessage(`{"a":1}`),
		SchemaVersion: 3, Metadata: pges.Metadata{CorrelationID: "corr 100%", CausationID: "cause"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(ts, b, relay.Config{Name: "headers", Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	waitFor(t, time.Minute, "the event on the broker", func() bool { return storedMsgs(s) == 1 })
	_ = stop()
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	wantSubject := fmt.Sprintf("%s.%s.order%%20placed%%2Ev2", subject[:len(subject)-len(".{tenant}.{type}")], ts.TenantID())
	if m.Subject != wantSubject {
		t.Fatalf("subject %q, want %q", m.Subject, wantSubject)
	}
	dec := func(k string) string {
		v, err := url.PathUnescape(m.Header.Get(k))
		if err != nil {
			t.Fatalf("header %s: %v", k, err)
		}
		return v
	}
	if dec("Pges-Type") != typ || dec("Pges-Stream") != stream || dec("Pges-Correlation-Id") != "corr 100%" ||
		dec("Pges-Causation-Id") != "cause" || m.Header.Get("Pges-Schema-Version") != "3" || m.Header.Get("Pges-Stream-Version") != "1" ||
		m.Header.Get("X-Forged") != "" || string(m.Data) != `{"a": 1}` {
		t.Fatalf("message: %q %v", m.Data, m.Header)
	}
}

// Bad configuration is a typed error and starts nothing: no subscription
// row is written.
func TestRelayBadConfig(t *testing.T) {
	ts := newTenant(t)
	nc, b := connect(t, natsURL())
	for _, cfg := range []relay.Config{{}, {Name: "has space"}, {Name: "-x"}, {Name: "x", Subject: "a..b"}, {Name: "x", Subject: "a.*.{type}"}, {Name: "x", Subject: "a.{tenant}x"},
		{Name: "x", BatchSize: -1}, {Name: "x", LeaseTTL: time.Second, AckTimeout: 2 * time.Second}} {
		if _, err := relay.New(ts, b, cfg); !errors.Is(err, relay.ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", cfg, err)
		}
	}
	buffered, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer buffered.Close()
	if _, err := relay.NewJetStream(buffered, relay.JetStreamOptions{}); !errors.Is(err, relay.ErrInvalidConfig) {
		t.Errorf("a connection buffering while reconnecting: %v, want ErrInvalidConfig", err)
	}
	if list, err := ts.Subscriptions(context.Background()); err != nil || len(list) != 0 {
		t.Fatalf("subscriptions after refused configurations: %v (%v)", list, err)
	}
}

// While the broker refuses messages (the stream is full: it holds 10 and
// discards new ones), the checkpoint stays before the batch and the lag
// shows; once the limit is lifted, every event arrives once, in order.
func TestRelayHoldsCheckpointUntilAcked(t *testing.T) {
	ts := newTenant(t)
	_, b := connect(t, natsURL())
	prefix := "pgestest" + uuid.NewString()[:8]
	want := load(t, ts, 100, 3)
	ctx := context.Background()
	name := "PGES_TEST_" + prefix
	cfg := jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}, Duplicates: time.Minute, Storage: jetstream.FileStorage,
		MaxMsgs: 10, Discard: jetstream.DiscardNew}
	s, err := b.JS().CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.JS().DeleteStream(context.Background(), name) })
	fb := &failures{Broker: b}
	r, err := relay.New(ts, fb, relay.Config{Name: "held", Subject: prefix + ".{tenant}.{type}", LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	waitFor(t, time.Minute, "three refused batches", func() bool { return fb.count() >= 3 })
	if l := lag(t, ts, "held"); l != 100 {
		t.Fatalf("lag while the stream refuses messages: %d, want 100", l)
	}
	cfg.MaxMsgs = -1
	if _, err := b.JS().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the relay to catch up", func() bool { return lag(t, ts, "held") == 0 })
	verify(t, s, ts.TenantID(), want)
}

// While no JetStream stream captures the subject, the relay sends nothing
// and the checkpoint stays; once a stream exists, every event arrives once.
func TestRelayWaitsForAStream(t *testing.T) {
	ts := newTenant(t)
	_, b := connect(t, natsURL())
	prefix := "pgestest" + uuid.NewString()[:8]
	want := load(t, ts, 100, 3)
	fb := &failures{Broker: b}
	r, err := relay.New(ts, fb, relay.Config{Name: "nostream", Subject: prefix + ".{tenant}.{type}", LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	waitFor(t, time.Minute, "three refused batches", func() bool { return fb.count() >= 3 })
	if l := lag(t, ts, "nostream"); l != 100 {
		t.Fatalf("lag while no stream takes the messages: %d, want 100", l)
	}
	ctx := context.Background()
	s, err := relay.EnsureStream(ctx, b.JS(), "PGES_TEST_"+prefix, []string{prefix + ".>"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.JS().DeleteStream(context.Background(), "PGES_TEST_"+prefix) })
	waitFor(t, time.Minute, "the relay to catch up", func() bool { return lag(t, ts, "nostream") == 0 })
	verify(t, s, ts.TenantID(), want)
}

// failures counts a broker's failed batches, so that a test knows the relay
// tried (a stalled delivery would leave the lag alone too).
type failures struct {
	relay.Broker
	mu     sync.Mutex
	n      int
	broken bool // a publish of this batch failed
}

func (f *failures) Publish(m *relay.Message) error {
	err := f.Broker.Publish(m)
	if err != nil {
		f.broken = true
	}
	return err
}

func (f *failures) Confirm(ctx context.Context, timeout time.Duration) (relay.Stats, error) {
	st, err := f.Broker.Confirm(ctx, timeout)
	if err != nil || f.broken {
		f.broken = false
		f.mu.Lock()
		f.n++
		f.mu.Unlock()
	}
	return st, err
}

func (f *failures) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// A stream of events whose types go to different subjects, one of which no
// JetStream stream captures yet: the batch stops before that event instead
// of storing the later ones of its stream first. Once the subject is
// captured, the stream is complete and in version order.
func TestRelayUncapturedSubjectKeepsStreamOrder(t *testing.T) {
	ts := newTenant(t)
	_, b := connect(t, natsURL())
	prefix := "pgestest" + uuid.NewString()[:8]
	ctx := context.Background()
	_, err := ts.AppendToStream(ctx, "s-0", pges.NoStream, pges.EventData{Type: "A", Payload: json.RawMessage(`{}`)},
		pges.EventData{Type: "B", Payload: json.RawMessage(`{}`)}, pges.EventData{Type: "A", Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	name := "PGES_TEST_" + prefix
	s, err := relay.EnsureStream(ctx, b.JS(), name, []string{prefix + ".*.A"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.JS().DeleteStream(context.Background(), name) })
	fb := &failures{Broker: b}
	r, err := relay.New(ts, fb, relay.Config{Name: "uncaptured", Subject: prefix + ".{tenant}.{type}", LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	waitFor(t, time.Minute, "three failed batches", func() bool { return fb.count() >= 3 })
	if _, err := b.JS().UpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".*.A", prefix + ".*.B"},
		Duplicates: time.Minute, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the relay to catch up", func() bool { return lag(t, ts, "uncaptured") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	verify(t, s, ts.TenantID(), map[string]int{"s-0": 3})
	if st := r.Stats(); st.Reordered != 0 {
		t.Fatalf("stats %+v: reordered", st)
	}
}
