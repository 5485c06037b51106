// Command quickstart is the README's Go example as a whole program: it
// migrates, creates a tenant, appends to a stream, rebuilds an aggregate from
// a snapshot, reads typed events through an upcaster and a past state, makes
// a DCB decision, and feeds a durable subscription. `make demo` runs it.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/pges_demo go run ./examples/quickstart
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

type order struct {
	Total int `json:"total"`
	Items int `json:"items"`
}

// Typed events. ItemAdded is at schema version 2: version 1 (as appended
// raw below) had the price in euros, version 2 has it in cents.
type (
	orderPlaced struct {
		Total int `json:"total"`
	}
	itemAdded struct {
		PriceCents int `json:"price_cents"`
	}
)

func main() {
	ctx := context.Background()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/pges_demo?sslmode=disable"
	}
	pool, err := pgxpool.New(ctx, url)
	check(err)
	defer pool.Close()
	check(pges.Migrate(ctx, pool))
	_, err = tenant.NewManager(pool).Create(ctx, "acme", "Acme Corp")
	check(err)

	store, err := pges.New(pool, nil) // nil: the documented defaults
	check(err)
	acme := store.Tenant("acme") // every call through acme touches only tenant acme

	// Aggregate streams: append with an expected version.
	stream := fmt.Sprintf("order-%d", time.Now().UnixNano())
	res, err := acme.AppendToStream(ctx, stream, pges.NoStream,
		pges.EventData{Type: "OrderPlaced", Payload: json.RawMessage(`{"total":42}`),
			Metadata: pges.Metadata{CorrelationID: "req-1", User: "alice"}},
		pges.EventData{Type: "ItemAdded", Payload: json.RawMessage(`{"price":8}`)})
	check(err)
	fmt.Printf("appended %s: version %d, positions %v\n", stream, res.StreamVersion, res.Positions)

	_, err = acme.AppendToStream(ctx, stream, pges.Exactly(1), pges.EventData{Type: "ItemAdded", Payload: json.RawMessage(`{"price":1}`)})
	var wrong *pges.WrongExpectedVersionError
	if errors.As(err, &wrong) {
		fmt.Printf("stale writer refused: expected %v, actual %d\n", wrong.Expected, wrong.Actual)
	}

	// Rebuild state from the latest snapshot plus the events after it.
	agg := pges.Aggregate[order]{
		Init:          func() order { return order{} },
		SchemaVersion: 1,
		Apply: func(o order, e pges.RecordedEvent) (order, error) {
			var p struct{ Total, Price, PriceCents int }
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				return o, err
			}
			o.Total += p.Total + p.Price + p.PriceCents/100
			if e.Type == "ItemAdded" {
				o.Items++
			}
			return o, nil
		},
	}
	state, version, err := pges.LoadAggregate(ctx, acme, stream, agg)
	check(err)
	check(pges.SaveAggregateSnapshot(ctx, acme, stream, agg, version, state))
	fmt.Printf("order at version %d: %+v (snapshot saved)\n", version, state)

	// Typed events: the same stream through a codec, old ItemAdded events
	// upcast on read (the stored ones are not rewritten).
	codec := pges.NewCodec[any](nil)
	check(pges.Register[orderPlaced](codec, "OrderPlaced", 1))
	check(pges.Register[itemAdded](codec, "ItemAdded", 2))
	check(codec.Upcast("ItemAdded", 1, pges.UpcastFunc(func(v1 struct{ Price int }) (itemAdded, error) {
		return itemAdded{PriceCents: v1.Price * 100}, nil
	})))
	raw, err := acme.ReadStream(ctx, stream, pges.ReadOptions{})
	check(err)
	typed, err := codec.DecodeAll(raw)
	check(err)
	for _, e := range typed {
		fmt.Printf("typed: %s (stored as schema version %d) = %+v\n", e.Type, e.SchemaVersion, e.Data)
	}
	added, err := codec.Encode(itemAdded{PriceCents: 250})
	check(err)
	added.Metadata = pges.Metadata{}.CausedBy(raw[0]) // same correlation id, caused by OrderPlaced
	_, err = acme.AppendToStream(ctx, stream, pges.Exactly(version), added)
	check(err)
	past, _, err := pges.LoadAggregateAsOf(ctx, acme, stream, agg, pges.AsOf{Version: 1})
	check(err)
	fmt.Printf("order as of version 1: %+v\n", past)

	// DCB: decide on a course's capacity, race-free.
	course := fmt.Sprintf("course:%d", time.Now().UnixNano())
	_, err = acme.Append(ctx, []pges.EventData{{Type: "CourseDefined", Payload: json.RawMessage(`{"capacity":1}`), Tags: []string{course}}}, nil)
	check(err)
	q := pges.Query{{Types: []string{"CourseDefined", "StudentSubscribed"}, Tags: []string{course}}}
	for _, student := range []string{"s1", "s2"} {
		r, err := acme.Read(ctx, q, pges.QueryOptions{})
		check(err)
		capacity, subscribed := 0, 0
		for e, err := range r.Events {
			check(err)
			if e.Type == "CourseDefined" {
				var p struct{ Capacity int }
				check(json.Unmarshal(e.Payload, &p))
				capacity = p.Capacity
			} else {
				subscribed++
			}
		}
		if subscribed >= capacity {
			fmt.Printf("%s: course full (%d/%d)\n", student, subscribed, capacity)
			continue
		}
		_, err = acme.Append(ctx, []pges.EventData{{Type: "StudentSubscribed", Payload: json.RawMessage(`{}`),
			Tags: []string{course, "student:" + student}}}, &pges.AppendCondition{FailIfEventsMatch: q, After: r.Head})
		if errors.Is(err, pges.ErrAppendConditionViolated) {
			fmt.Printf("%s: someone decided first, read again\n", student)
			continue
		}
		check(err)
		fmt.Printf("%s: subscribed\n", student)
	}

	// Subscriptions: a durable subscription catches up from its checkpoint,
	// then follows new events live. Here it stops shortly after it has seen
	// this run's order (its checkpoint is stored with each batch).
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	err = acme.Subscribe(subCtx, pges.SubscriptionConfig{Name: "orders-placed",
		Filter: pges.SubscriptionFilter{Types: []string{"OrderPlaced"}},
		Handler: func(ctx context.Context, tx pgx.Tx, e pges.RecordedEvent) error {
			fmt.Printf("subscription orders-placed: %s of %s at position %d\n", e.Type, e.StreamID, e.Position)
			if e.Position == res.Positions[0] {
				time.AfterFunc(300*time.Millisecond, stop)
			}
			return nil
		}})
	check(err)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
