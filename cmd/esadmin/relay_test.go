package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// esadmin relay publishes to a JetStream stream it creates; its lag shows
// in subscription list; Ctrl-C stops it with 130. A bad template is a usage
// error that writes nothing.
func TestRelayCommand(t *testing.T) {
	const id = "cli-relay"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	wantOK(t, esadmin(t, strings.Repeat(`{"type":"Order.Placed","payload":{}}`+"\n", 3), "events", "append", "-t", id))
	wantError(t, esadmin(t, "", "relay", "-t", id, "--name", "bad", "--subject", "a.>.{type}"), exitUsage, "subject template")
	if r := esadmin(t, "", "subscription", "list", "-t", id, "--json"); r.stdout != "" {
		t.Fatalf("a refused relay left a subscription: %s", r.stdout)
	}

	prefix := "pgestest" + uuid.NewString()[:8]
	stream := "PGES_TEST_" + prefix
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	defer js.DeleteStream(context.Background(), stream)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"esadmin", "--database-url", testdb.URL(t), "relay", "-t", id, "--name", "cli",
			"--subject", prefix + ".{tenant}.{type}", "--js-stream", stream}, strings.NewReader(""), &syncBuffer{}, &stderr)
	}()
	// Watched through the store, not a second esadmin: urfave/cli's global
	// help flag makes two apps running at once a data race.
	store, err := pges.New(pool(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := store.Tenant(id).Subscriptions(ctx)
		if err == nil && len(list) == 1 && list[0].Name == "relay:cli" && list[0].LagEvents == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not catch up: %+v, %v; stderr %q", list, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != exitInterrupted || !strings.Contains(stderr.String(), "3 acknowledged messages") {
		t.Fatalf("relay on Ctrl-C: exit %d, stderr %q", code, stderr.String())
	}
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), prefix+".cli-relay.Order%2EPlaced")
	if err != nil || m.Sequence != 3 || m.Header.Get("Pges-Tenant") != id {
		t.Fatalf("last message: %+v (%v)", m, err)
	}
}
