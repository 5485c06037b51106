package pges_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// exampleTB lets examples use the test database helpers; it panics where
// a test would fail.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (e *exampleTB) Helper()                   {}
func (e *exampleTB) Name() string              { return "example" }
func (e *exampleTB) Cleanup(f func())          { e.cleanups = append(e.cleanups, f) }
func (e *exampleTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (e *exampleTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// exampleTenant returns a fresh tenant's store on the runtime role's pool,
// and a function that closes it.
func exampleTenant() (*pges.TenantStore, *pgxpool.Pool, func()) {
	tb := &exampleTB{}
	runtime := testdb.RuntimePool(tb)
	store, err := pges.New(runtime, nil)
	if err != nil {
		panic(err)
	}
	ts := store.Tenant(testdb.NewTenant(tb, testdb.Pool(tb)))
	return ts, runtime, func() {
		for i := len(tb.cleanups) - 1; i >= 0; i-- {
			tb.cleanups[i]()
		}
	}
}

// A DCB command: subscribe a student to a course if a seat is free.
func ExampleDecide() {
	ctx := context.Background()
	acme, _, done := exampleTenant()
	defer done()
	codec := pges.NewCodec[SeatEvent](nil)
	_ = pges.Register[CourseCreated](codec, "CourseCreated", 1)
	_ = pges.Register[StudentEnrolled](codec, "StudentEnrolled", 1)
	created, _ := codec.Encode(CourseCreated{Course: "c1", Capacity: 1})
	_, _ = acme.Append(ctx, []pges.EventData{created}, nil)

	type seatsLeft struct{ capacity, taken int }
	enroll := func(student string) pges.Decision[seatsLeft, SeatEvent] {
		return pges.Decision[seatsLeft, SeatEvent]{
			// The decision model: the course and its enrolments. Decide
			// appends only if no such event came after its read.
			Query: pges.Query{{Types: []string{"CourseCreated", "StudentEnrolled"}, Tags: []string{"course:c1"}}},
			Init:  func() seatsLeft { return seatsLeft{} },
			Fold: func(s seatsLeft, e pges.Event[SeatEvent]) seatsLeft {
				switch d := e.Data.(type) {
				case CourseCreated:
					s.capacity = d.Capacity
				case StudentEnrolled:
					s.taken++
				}
				return s
			},
			Decide: func(s seatsLeft) ([]SeatEvent, error) {
				if s.taken >= s.capacity {
					return nil, errCourseFull
				}
				return []SeatEvent{StudentEnrolled{Student: student, Course: "c1"}}, nil
			},
		}
	}
	for _, student := range []string{"alice", "bob"} {
		res, err := pges.Decide(ctx, acme, codec, enroll(student))
		switch {
		case errors.Is(err, errCourseFull):
			fmt.Printf("%s: %v\n", student, err)
		case err != nil:
			fmt.Println(err) // a store error, or the last conflict after Retry.Attempts
		default:
			fmt.Printf("%s: enrolled (%d seat taken before, %d attempt)\n", student, res.State.taken, res.Attempts)
		}
	}
	// Output:
	// alice: enrolled (0 seat taken before, 1 attempt)
	// bob: course is full
}

// A command on an aggregate stream, with a snapshot every 2 events.
func ExampleDecideStream() {
	ctx := context.Background()
	acme, _, done := exampleTenant()
	defer done()
	codec := accountCodec()
	agg := pges.Aggregate[account]{
		Init: func() account { return account{} },
		Apply: pges.Apply(codec, func(a account, e pges.Event[AccountEvent]) (account, error) {
			switch d := e.Data.(type) {
			case Deposited:
				a.Balance += d.Amount
			case Withdrawn:
				a.Balance -= d.Amount
			}
			return a, nil
		}),
	}
	withdraw := func(amount int) pges.StreamDecision[account, AccountEvent] {
		return pges.StreamDecision[account, AccountEvent]{
			StreamID: "account-7", Aggregate: agg, SnapshotEvery: 2,
			Decide: func(a account, version int64) ([]AccountEvent, error) {
				if version == 0 { // a new account starts with a deposit
					return []AccountEvent{Deposited{Amount: 100}, Withdrawn{Amount: amount}}, nil
				}
				if a.Balance < amount {
					return nil, errInsufficientFunds
				}
				return []AccountEvent{Withdrawn{Amount: amount}}, nil
			},
		}
	}
	for _, amount := range []int{30, 50, 40} {
		res, err := pges.DecideStream(ctx, acme, codec, withdraw(amount))
		if err != nil {
			fmt.Printf("withdraw %d: %v\n", amount, err)
			continue
		}
		fmt.Printf("withdraw %d: balance was %d, stream at version %d, snapshot at %d\n",
			amount, res.State.Balance, res.Appended.StreamVersion, res.Snapshot)
	}
	// Output:
	// withdraw 30: balance was 0, stream at version 2, snapshot at 2
	// withdraw 50: balance was 70, stream at version 3, snapshot at 0
	// withdraw 40: insufficient funds
}

// Appending in the caller's transaction: the event and the caller's own
// row (an outbox, a read model) commit together, or not at all.
func ExampleTenantStore_Tx() {
	ctx := context.Background()
	acme, pool, done := exampleTenant()
	defer done()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE outbox (message text) ON COMMIT DROP"); err != nil {
			return err
		}
		// Append before writing rows of your own (ErrStreamOrder).
		res, err := acme.Tx(tx).AppendToStream(ctx, "order-1", pges.NoStream, ev("OrderPlaced", map[string]int{"total": 42}))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO outbox VALUES ('order 1 placed')"); err != nil {
			return err // the rollback drops the event too
		}
		fmt.Println("appended version", res.StreamVersion, "in the transaction")
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	v, _, _ := acme.StreamVersion(ctx, "order-1")
	fmt.Println("committed version", v)
	// Output:
	// appended version 1 in the transaction
	// committed version 1
}
