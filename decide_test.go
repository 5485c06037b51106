package pges_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// The course subscription domain of dcb.events, with typed events.
type SeatEvent interface{ seatEvent() }

type CourseCreated struct {
	Course   string `json:"course"`
	Capacity int    `json:"capacity"`
}

type StudentEnrolled struct {
	Student string `json:"student"`
	Course  string `json:"course"`
}

func (CourseCreated) seatEvent()   {}
func (StudentEnrolled) seatEvent() {}

func (e CourseCreated) EventTags() []string { return []string{"course:" + e.Course} }
func (e StudentEnrolled) EventTags() []string {
	return []string{"course:" + e.Course, "student:" + e.Student}
}

var (
	errCourseFull      = errors.New("course is full")
	errNoCourse        = errors.New("no such course")
	errAlreadyEnrolled = errors.New("student already subscribed")
)

func seatCodec() *pges.Codec[SeatEvent] {
	c := pges.NewCodec[SeatEvent](nil)
	if err := pges.Register[CourseCreated](c, "CourseCreated", 1); err != nil {
		panic(err)
	}
	if err := pges.Register[StudentEnrolled](c, "StudentEnrolled", 1); err != nil {
		panic(err)
	}
	return c
}

// seats is the decision model of a subscription.
type seats struct {
	defined             bool
	capacity, taken     int
	subscribedAlready   bool
	student, courseName string
}

// subscribeDecision subscribes student to course if the course exists,
// has a free seat and does not have the student yet.
func subscribeDecision(student, course string) pges.Decision[seats, SeatEvent] {
	return pges.Decision[seats, SeatEvent]{
		Query: pges.Query{
			{Types: []string{"CourseCreated"}, Tags: []string{"course:" + course}},
			{Types: []string{"StudentEnrolled"}, Tags: []string{"course:" + course}},
		},
		Init: func() seats { return seats{student: student, courseName: course} },
		Fold: func(s seats, e pges.Event[SeatEvent]) seats {
			switch d := e.Data.(type) {
			case CourseCreated:
				s.defined, s.capacity = true, d.Capacity
			case StudentEnrolled:
				s.taken++
				s.subscribedAlready = s.subscribedAlready || d.Student == s.student
			}
			return s
		},
		Decide: func(s seats) ([]SeatEvent, error) {
			switch {
			case !s.defined:
				return nil, errNoCourse
			case s.subscribedAlready:
				return nil, errAlreadyEnrolled
			case s.taken >= s.capacity:
				return nil, errCourseFull
			}
			return []SeatEvent{StudentEnrolled{Student: s.student, Course: s.courseName}}, nil
		},
	}
}

func defineCourse(t testing.TB, ts *pges.TenantStore, codec *pges.Codec[SeatEvent], course string, capacity int) {
	t.Helper()
	e, err := codec.Encode(CourseCreated{Course: course, Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Append(context.Background(), []pges.EventData{e}, nil); err != nil {
		t.Fatal(err)
	}
}

// raceResult is what a race of students for one course ended with.
type raceResult struct {
	ok, full, other int
	attempts        int64
	otherErr        error
}

// raceForCourse lets students (s0, s1, ...) subscribe to course through
// Decide from clients goroutines.
func raceForCourse(ctx context.Context, ts *pges.TenantStore, codec *pges.Codec[SeatEvent], course string, students, clients int, retry pges.Retry) raceResult {
	var (
		mu   sync.Mutex
		res  raceResult
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= students {
					return
				}
				d := subscribeDecision(fmt.Sprintf("%s-s%d", course, i), course)
				d.Retry = retry
				r, err := pges.Decide(ctx, ts, codec, d)
				mu.Lock()
				res.attempts += int64(r.Attempts)
				switch {
				case err == nil:
					res.ok++
				case errors.Is(err, errCourseFull):
					res.full++
				default:
					res.other++
					res.otherErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

// subscribed counts the course's subscriptions in the log and the distinct
// students among them.
func subscribed(t testing.TB, ts *pges.TenantStore, course string) (events, students int) {
	t.Helper()
	got, _, err := ts.ReadAll(context.Background(), pges.Query{{Types: []string{"StudentEnrolled"}, Tags: []string{"course:" + course}}}, pges.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range got {
		seen[string(e.Payload)] = true
	}
	return len(got), len(seen)
}

// 100 students race for 10 seats through Decide with its defaults: exactly
// 10 get one, every other call ends with the domain's refusal (never a
// raw conflict), and nobody is subscribed twice.
func TestDecideCourseRace(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	codec := seatCodec()
	for _, clients := range []int{8, 16} {
		course := fmt.Sprintf("c%d", clients)
		defineCourse(t, ts, codec, course, 10)
		r := raceForCourse(ctx, ts, codec, course, 100, clients, pges.Retry{})
		t.Logf("%d clients: %d subscribed, %d refused, %.2f attempts per call", clients, r.ok, r.full, float64(r.attempts)/100)
		if r.ok != 10 || r.full != 90 || r.other != 0 {
			t.Fatalf("%d clients: %d subscribed, %d full, %d other (last: %v)", clients, r.ok, r.full, r.other, r.otherErr)
		}
		if events, students := subscribed(t, ts, course); events != 10 || students != 10 {
			t.Fatalf("%d clients: %d subscriptions of %d students in the log", clients, events, students)
		}
	}
}

// Optimistic attempts that all lose return the last conflict wrapped in a
// RetriesExhaustedError, and write nothing.
func TestDecideGivesUpWithTheLastConflict(t *testing.T) {
	ctx := context.Background()
	ts, admin := newTenant(t)
	codec := seatCodec()
	defineCourse(t, ts, codec, "c", 10)
	d := subscribeDecision("late", "c")
	decide := d.Decide
	rival := 0
	d.Decide = func(s seats) ([]SeatEvent, error) {
		// Someone else takes a seat between every read and its append.
		rival++
		e, _ := codec.Encode(StudentEnrolled{Student: fmt.Sprintf("rival%d", rival), Course: "c"})
		if _, err := ts.Append(ctx, []pges.EventData{e}, nil); err != nil {
			t.Fatal(err)
		}
		return decide(s)
	}
	d.Retry = pges.Retry{Attempts: 2, Optimistic: true}
	res, err := pges.Decide(ctx, ts, codec, d)
	var gaveUp *pges.RetriesExhaustedError
	var cv *pges.ConditionViolatedError
	if !errors.As(err, &gaveUp) || gaveUp.Attempts != 2 || !errors.Is(err, pges.ErrAppendConditionViolated) || !errors.As(err, &cv) || res.Attempts != 2 {
		t.Fatalf("after 2 lost races: %v (%+v)", err, res)
	}
	if n := countEvents(t, admin, ts.TenantID()); n != 3 {
		t.Fatalf("%d events, want the course and the 2 rivals'", n)
	}
}

// The last attempt (by default) holds the query's locks from its read to
// its append: a rival who tries to take a seat meanwhile waits for it, and
// the decision does not lose.
func TestDecideLastAttemptHoldsTheLocks(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	codec := seatCodec()
	defineCourse(t, ts, codec, "c", 10)
	d := subscribeDecision("me", "c")
	decide := d.Decide
	calls := 0
	rivalDone := make(chan time.Time, 2)
	rival := func(name string) {
		e, _ := codec.Encode(StudentEnrolled{Student: name, Course: "c"})
		if _, err := ts.Append(ctx, []pges.EventData{e}, nil); err != nil {
			t.Error(err)
		}
		rivalDone <- time.Now()
	}
	var decided time.Time
	d.Decide = func(s seats) ([]SeatEvent, error) {
		calls++
		if calls == 1 {
			rival("first") // the first attempt loses
			<-rivalDone
		} else {
			go rival("second") // must wait for our commit
			time.Sleep(300 * time.Millisecond)
			decided = time.Now()
		}
		return decide(s)
	}
	d.Retry = pges.Retry{Attempts: 2}
	res, err := pges.Decide(ctx, ts, codec, d)
	if err != nil || res.Attempts != 2 || len(res.Positions) != 1 {
		t.Fatalf("locked last attempt: %+v, %v", res, err)
	}
	if at := <-rivalDone; at.Before(decided) {
		t.Fatal("a rival appended a matching event while the last attempt held the query's locks")
	}
	if events, _ := subscribed(t, ts, "c"); events != 3 {
		t.Fatalf("%d subscriptions, want 3", events)
	}
}

// Domain errors come back unchanged, bad decisions are typed errors, no
// events means no append, and nothing is written by a refused decision.
func TestDecideErrorsAndNoOps(t *testing.T) {
	ctx := context.Background()
	ts, admin := newTenant(t)
	codec := seatCodec()
	if _, err := pges.Decide(ctx, ts, codec, subscribeDecision("s", "nope")); err != errNoCourse {
		t.Fatalf("no course: %v", err)
	}
	bad := subscribeDecision("s", "c")
	bad.Fold = nil
	if _, err := pges.Decide(ctx, ts, codec, bad); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Fatalf("no fold: %v", err)
	}
	bad = subscribeDecision("s", "c")
	bad.Query = nil
	if _, err := pges.Decide(ctx, ts, codec, bad); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Fatalf("empty query: %v", err)
	}
	bad = subscribeDecision("s", "c")
	bad.Retry.Attempts = -1
	if _, err := pges.Decide(ctx, ts, codec, bad); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Fatalf("negative attempts: %v", err)
	}
	defineCourse(t, ts, codec, "c", 1)
	unknown := subscribeDecision("s", "c")
	unknown.Decide = func(seats) ([]SeatEvent, error) { return []SeatEvent{nil}, nil }
	if _, err := pges.Decide(ctx, ts, codec, unknown); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Fatalf("a nil event: %v", err)
	}
	noop := subscribeDecision("s", "c")
	noop.Decide = func(seats) ([]SeatEvent, error) { return nil, nil }
	if res, err := pges.Decide(ctx, ts, codec, noop); err != nil || res.Positions != nil || res.Head == 0 {
		t.Fatalf("nothing to do: %+v, %v", res, err)
	}
	if n := countEvents(t, admin, ts.TenantID()); n != 1 {
		t.Fatalf("%d events after refused decisions, want the course only", n)
	}
	if _, err := pges.Decide(ctx, ts, codec, subscribeDecision("s", "c")); err != nil {
		t.Fatal(err)
	}
	if _, err := pges.Decide(ctx, ts, codec, subscribeDecision("s", "c")); err != errAlreadyEnrolled {
		t.Fatalf("twice: %v", err)
	}
	if _, err := pges.Decide(ctx, ts, codec, subscribeDecision("t", "c")); err != errCourseFull {
		t.Fatalf("full: %v", err)
	}
}

// In the caller's transaction a decision's append commits or rolls back
// with the caller's own row.
func TestDecideInTheCallersTransaction(t *testing.T) {
	ctx := context.Background()
	ts, runtime, admin, table := newTxTenant(t)
	codec := seatCodec()
	defineCourse(t, ts, codec, "c", 1)
	run := func(commit bool) (pges.DecisionResult[seats], error) {
		tx, err := runtime.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		res, err := pges.Decide(ctx, ts.Tx(tx), codec, subscribeDecision("s", "c"))
		if err != nil {
			return res, err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ('welcome mail for s')"); err != nil {
			t.Fatal(err)
		}
		if commit {
			return res, tx.Commit(ctx)
		}
		return res, nil
	}
	if res, err := run(false); err != nil || res.Attempts != 1 {
		t.Fatalf("rolled back: %+v, %v", res, err)
	}
	if n, rows := countEvents(t, admin, ts.TenantID()), countRows(t, admin, table); n != 1 || rows != 0 {
		t.Fatalf("after rollback: %d events, %d rows", n, rows)
	}
	if _, err := run(true); err != nil {
		t.Fatal(err)
	}
	if _, err := run(true); err != errAlreadyEnrolled {
		t.Fatalf("second run: %v", err)
	}
	if n, rows := countEvents(t, admin, ts.TenantID()), countRows(t, admin, table); n != 2 || rows != 1 {
		t.Fatalf("after commit: %d events, %d rows", n, rows)
	}
}

// An account aggregate for DecideStream.
type AccountEvent interface{ accountEvent() }

type Deposited struct {
	Amount int `json:"amount"`
}

type Withdrawn struct {
	Amount int `json:"amount"`
}

func (Deposited) accountEvent() {}
func (Withdrawn) accountEvent() {}

type account struct {
	Balance int `json:"balance"`
}

var errInsufficientFunds = errors.New("insufficient funds")

func accountCodec() *pges.Codec[AccountEvent] {
	c := pges.NewCodec[AccountEvent](nil)
	_ = pges.Register[Deposited](c, "Deposited", 1)
	_ = pges.Register[Withdrawn](c, "Withdrawn", 1)
	return c
}

func accountAggregate(codec *pges.Codec[AccountEvent], applied *atomic.Int64) pges.Aggregate[account] {
	return pges.Aggregate[account]{
		Init: func() account { return account{} },
		Apply: pges.Apply(codec, func(a account, e pges.Event[AccountEvent]) (account, error) {
			if applied != nil {
				applied.Add(1)
			}
			switch d := e.Data.(type) {
			case Deposited:
				a.Balance += d.Amount
			case Withdrawn:
				a.Balance -= d.Amount
			}
			return a, nil
		}),
	}
}

func withdraw(codec *pges.Codec[AccountEvent], agg pges.Aggregate[account], stream string, amount int) pges.StreamDecision[account, AccountEvent] {
	return pges.StreamDecision[account, AccountEvent]{
		StreamID: stream, Aggregate: agg,
		Decide: func(a account, _ int64) ([]AccountEvent, error) {
			if a.Balance < amount {
				return nil, errInsufficientFunds
			}
			return []AccountEvent{Withdrawn{Amount: amount}}, nil
		},
	}
}

func deposit(agg pges.Aggregate[account], stream string, amount int) pges.StreamDecision[account, AccountEvent] {
	return pges.StreamDecision[account, AccountEvent]{
		StreamID: stream, Aggregate: agg,
		Decide: func(account, int64) ([]AccountEvent, error) {
			return []AccountEvent{Deposited{Amount: amount}}, nil
		},
	}
}

// DecideStream creates a stream, retries a lost version race, never
// overdraws under concurrent withdrawals, and snapshots every N events.
func TestDecideStream(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	codec := accountCodec()
	var applied atomic.Int64
	agg := accountAggregate(codec, &applied)

	d := deposit(agg, "acc-1", 100)
	d.SnapshotEvery = 4
	res, err := pges.DecideStream(ctx, ts, codec, d)
	if err != nil || res.Version != 0 || res.Appended.StreamVersion != 1 || res.Snapshot != 0 {
		t.Fatalf("first deposit: %+v, %v", res, err)
	}
	// A rival appends between the load and the append of the first attempt.
	raced := withdraw(codec, agg, "acc-1", 30)
	first := true
	inner := raced.Decide
	raced.Decide = func(a account, v int64) ([]AccountEvent, error) {
		if first {
			first = false
			e, _ := codec.Encode(Withdrawn{Amount: 60})
			mustAppend(t, ts, "acc-1", pges.Exactly(v), e)
		}
		return inner(a, v)
	}
	if res, err = pges.DecideStream(ctx, ts, codec, raced); err != nil || res.Attempts != 2 || res.State.Balance != 40 {
		t.Fatalf("after a lost race: %+v, %v", res, err)
	}
	// Eight withdrawals of 10 race for the remaining 10.
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := withdraw(codec, agg, "acc-1", 10)
			w.Retry = pges.Retry{Attempts: 20}
			switch _, err := pges.DecideStream(ctx, ts, codec, w); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, errInsufficientFunds):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || refused.Load() != 7 {
		t.Fatalf("%d withdrawals of the last 10, %d refused", ok.Load(), refused.Load())
	}
	// Version 4 now: the next append past a multiple of 4 snapshots.
	d = deposit(agg, "acc-1", 5)
	d.SnapshotEvery = 4
	if res, err = pges.DecideStream(ctx, ts, codec, d); err != nil || res.Snapshot != 0 {
		t.Fatalf("version 5: %+v, %v", res, err)
	}
	for range 3 {
		if res, err = pges.DecideStream(ctx, ts, codec, d); err != nil {
			t.Fatal(err)
		}
	}
	if res.Appended.StreamVersion != 8 || res.Snapshot != 8 || res.SnapshotErr != nil {
		t.Fatalf("version 8 should have snapshotted: %+v", res)
	}
	snap, ok2, err := ts.LoadSnapshot(ctx, "acc-1")
	if err != nil || !ok2 || snap.StreamVersion != 8 || string(snap.State) != `{"balance": 20}` {
		t.Fatalf("snapshot %+v %v %v", snap, ok2, err)
	}
	applied.Store(0)
	if res, err = pges.DecideStream(ctx, ts, codec, withdraw(codec, agg, "acc-1", 20)); err != nil || res.State.Balance != 20 || applied.Load() != 0 {
		t.Fatalf("from the snapshot: %+v (%d applied), %v", res, applied.Load(), err)
	}
	// Deleted: a typed error, nothing retried.
	if _, err := ts.DeleteStream(ctx, "acc-1", pges.Any); err != nil {
		t.Fatal(err)
	}
	if res, err = pges.DecideStream(ctx, ts, codec, deposit(agg, "acc-1", 1)); !errors.Is(err, pges.ErrStreamDeleted) || res.Attempts != 1 {
		t.Fatalf("deleted stream: %+v, %v", res, err)
	}
}

// DecideStream in the caller's transaction: a new stream, a deleted one
// (a typed error that leaves the transaction usable), a snapshot, and
// everything commits with the caller's row.
func TestDecideStreamInTheCallersTransaction(t *testing.T) {
	ctx := context.Background()
	ts, runtime, admin, table := newTxTenant(t)
	codec := accountCodec()
	agg := accountAggregate(codec, nil)
	mustAppend(t, ts, "closed", pges.NoStream, ev("Deposited", Deposited{1}))
	if _, err := ts.DeleteStream(ctx, "closed", pges.Any); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, runtime, func(tx pgx.Tx) error {
		x := ts.Tx(tx)
		if _, err := pges.DecideStream(ctx, x, codec, deposit(agg, "closed", 1)); !errors.Is(err, pges.ErrStreamDeleted) {
			t.Fatalf("deleted: %v", err)
		}
		d := deposit(agg, "acc-2", 50)
		d.SnapshotEvery = 2
		for range 2 {
			if _, err := pges.DecideStream(ctx, x, codec, d); err != nil {
				return err
			}
		}
		if res, err := pges.DecideStream(ctx, x, codec, withdraw(codec, agg, "acc-2", 500)); err != errInsufficientFunds || res.State.Balance != 100 {
			t.Fatalf("overdraw: %+v, %v", res, err)
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ('statement')")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := ts.StreamVersion(ctx, "acc-2"); err != nil || v != 2 || countRows(t, admin, table) != 1 {
		t.Fatalf("after commit: version %d, %v", v, err)
	}
	if snap, ok, _ := ts.LoadSnapshot(ctx, "acc-2"); !ok || snap.StreamVersion != 2 {
		t.Fatalf("snapshot in the transaction: %+v %v", snap, ok)
	}
}

// BenchmarkDecideCourseRace: 100 students race for a course of capacity 10
// through Decide, at 1 client (the baseline: no contention, no retries),
// 8 and 16 clients with the defaults, and 16 clients with optimistic
// attempts only (3) and with the hand-written loop (retry at once until
// done). Each iteration runs every configuration once, in turn, so
// their ratios come from the same run. Metrics: decisions/s per
// configuration, the ratio to 1 client, retries per decision (attempts
// beyond the first) and, for optimistic-only, the calls that ended with a
// conflict instead of a decision.
//
//	go test -run '^$' -bench DecideCourseRace -benchtime 5x .
func BenchmarkDecideCourseRace(b *testing.B) {
	ctx := context.Background()
	store, err := pges.New(testdb.RuntimePool(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	ts := store.Tenant(testdb.NewTenant(b, testdb.Pool(b)))
	codec := seatCodec()
	type config struct {
		name    string
		clients int
		retry   pges.Retry
	}
	configs := []config{{"c1", 1, pges.Retry{}}, {"c8", 8, pges.Retry{}}, {"c16", 16, pges.Retry{}}, {"c16-optimistic", 16, pges.Retry{Optimistic: true}},
		// The hand-written loop: retry at once until done.
		{"c16-naive", 16, pges.Retry{Attempts: 1 << 20, Backoff: time.Nanosecond, Optimistic: true}}}
	elapsed := make([]time.Duration, len(configs))
	attempts := make([]int64, len(configs))
	conflicts := make([]int, len(configs))
	const students, seats = 100, 10
	for i := 0; b.Loop(); i++ {
		for j, c := range configs {
			course := fmt.Sprintf("%s-%d", c.name, i)
			defineCourse(b, ts, codec, course, seats)
			start := time.Now()
			r := raceForCourse(ctx, ts, codec, course, students, c.clients, c.retry)
			elapsed[j] += time.Since(start)
			attempts[j] += r.attempts
			conflicts[j] += r.other
			if r.ok != seats || r.other > 0 && !c.retry.Optimistic || r.ok+r.full+r.other != students {
				b.Fatalf("%s: %d subscribed, %d full, %d other (%v)", c.name, r.ok, r.full, r.other, r.otherErr)
			}
		}
	}
	n := float64(b.N * students)
	base := n / elapsed[0].Seconds()
	for j, c := range configs {
		dps := n / elapsed[j].Seconds()
		b.ReportMetric(dps, "decisions/s-"+c.name)
		b.ReportMetric(float64(attempts[j])/n-1, "retries/decision-"+c.name)
		if j > 0 {
			b.ReportMetric(dps/base, "x-c1-"+c.name)
		}
		if c.name == "c16-optimistic" {
			b.ReportMetric(float64(conflicts[j])/float64(b.N), "conflicts/race-"+c.name)
		}
	}
}
