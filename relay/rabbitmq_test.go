package relay_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/eventstore-go/pges/relay"
	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

func amqpURL() string {
	if u := os.Getenv("PGES_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// rabbitQueue declares a topic exchange and a queue bound to all of it, of
// the test's own, deleted after it.
func rabbitQueue(t *testing.T) (exchange, queue string, ch *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL())
	if err != nil {
		t.Fatalf("connect to RabbitMQ at %s: %v", amqpURL(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err = conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()[:8]
	exchange, queue = "pges-test-"+id, "pges-test-"+id
	if err := ch.ExchangeDeclare(exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(queue, false, false, false)
		_ = ch.ExchangeDelete(exchange, false, false)
	})
	return exchange, queue, ch
}

// The relay to RabbitMQ: its connection is closed mid-run; it dials again
// and re-sends the batch in doubt. After de-duplication by message id every
// event is there once, and each stream's first copies are in version order.
func TestRelayRabbitMQConnectionLoss(t *testing.T) {
	ts := newTenant(t)
	exchange, queue, ch := rabbitQueue(t)
	n := loadSize()
	want := load(t, ts, n, 200)
	b, err := relay.NewRabbitMQ(amqpURL(), exchange)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	first := b.Conn()
	r, err := relay.New(ts, b, relay.Config{Name: "rabbit", LeaseTTL: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	seen := map[string]bool{}
	version := map[string]int64{}
	dups, closed := 0, false
	deadline := time.After(5 * time.Minute)
	for len(seen) < n {
		select {
		case d := <-deliveries:
			if seen[d.MessageId] {
				dups++
				continue
			}
			seen[d.MessageId] = true
			stream, _ := d.Headers["Pges-Stream"].(string)
			v, _ := strconv.ParseInt(d.Headers["Pges-Stream-Version"].(string), 10, 64)
			if v != version[stream]+1 {
				t.Fatalf("stream %s: version %d after %d", stream, v, version[stream])
			}
			version[stream] = v
			if !closed && len(seen) >= n/3 {
				closed = true
				_ = first.Close() // the relay's connection drops mid-run
			}
		case <-deadline:
			t.Fatalf("%d of %d events arrived", len(seen), n)
		}
	}
	waitFor(t, time.Minute, "the relay's checkpoint", func() bool { return lag(t, ts, "rabbit") == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for stream, k := range want {
		if version[stream] != int64(k) {
			t.Fatalf("stream %s: up to version %d, want %d", stream, version[stream], k)
		}
	}
	t.Logf("%d events, %d re-sent copies dropped by message id; acks %+v", n, dups, r.Stats())
}

// A message no queue takes comes back (mandatory): the checkpoint stays,
// and once a queue is bound every event arrives.
func TestRelayRabbitMQUnroutableHoldsCheckpoint(t *testing.T) {
	ts := newTenant(t)
	exchange, queue, ch := rabbitQueue(t)
	if err := ch.QueueUnbind(queue, "#", exchange, nil); err != nil {
		t.Fatal(err)
	}
	load(t, ts, 50, 2)
	b, err := relay.NewRabbitMQ(amqpURL(), exchange)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fb := &failures{Broker: b}
	r, err := relay.New(ts, fb, relay.Config{Name: "unroutable", LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	waitFor(t, time.Minute, "three returned batches", func() bool { return fb.count() >= 3 })
	if l := lag(t, ts, "unroutable"); l != 50 {
		t.Fatalf("lag while no queue takes the messages: %d, want 50", l)
	}
	if err := ch.QueueBind(queue, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the relay to catch up", func() bool { return lag(t, ts, "unroutable") == 0 })
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil || q.Messages < 50 {
		t.Fatalf("queue holds %d messages, want 50 or more (%v)", q.Messages, err)
	}
}
