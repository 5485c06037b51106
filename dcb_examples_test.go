package pges_test

// The dcb.events examples, each over the Go API: read a decision model with
// a query, decide, append with the query as the condition after the head.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/eventstore-go/pges"
)

// project reads q and folds every event into the caller's decision model;
// it returns the condition that protects a decision based on it.
func project(t *testing.T, ts *pges.TenantStore, q pges.Query, fold func(e pges.RecordedEvent)) *pges.AppendCondition {
	t.Helper()
	res, err := ts.Read(context.Background(), q, pges.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for e, err := range res.Events {
		if err != nil {
			t.Fatal(err)
		}
		fold(e)
	}
	return &pges.AppendCondition{FailIfEventsMatch: q, After: res.Head}
}

func data(typ string, payload any, tags ...string) pges.EventData {
	b, _ := json.Marshal(payload)
	return pges.EventData{Type: typ, Payload: b, Tags: tags}
}

func field(e pges.RecordedEvent, name string) any {
	var m map[string]any
	_ = json.Unmarshal(e.Payload, &m)
	return m[name]
}

var errRejected = errors.New("rejected by the decision model")

// Course subscriptions: course capacity and a student's course limit, with
// concurrent subscribers.
func TestExampleCourseSubscriptions(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	const studentLimit = 3
	defineCourse := func(id string, capacity int) {
		mustDCB(t, ts, &pges.AppendCondition{FailIfEventsMatch: pges.Query{{Types: []string{"CourseDefined"}, Tags: []string{"course:" + id}}}},
			data("CourseDefined", map[string]any{"course": id, "capacity": capacity}, "course:"+id))
	}
	subscribe := func(student, course string) error {
		q := pges.Query{
			{Types: []string{"CourseDefined", "CourseCapacityChanged"}, Tags: []string{"course:" + course}},
			{Types: []string{"StudentSubscribedToCourse"}, Tags: []string{"course:" + course}},
			{Types: []string{"StudentSubscribedToCourse"}, Tags: []string{"student:" + student}},
		}
		exists, capacity, subscribers, studentCourses, already := false, 0, 0, 0, false
		cond := project(t, ts, q, func(e pges.RecordedEvent) {
			switch e.Type {
			case "CourseDefined", "CourseCapacityChanged":
				exists, capacity = true, int(field(e, "capacity").(float64))
			case "StudentSubscribedToCourse":
				if field(e, "course") == course {
					subscribers++
					already = already || field(e, "student") == student
				}
				if field(e, "student") == student {
					studentCourses++
				}
			}
		})
		switch {
		case !exists, already, subscribers >= capacity, studentCourses >= studentLimit:
			return errRejected
		}
		_, err := ts.Append(ctx, []pges.EventData{data("StudentSubscribedToCourse",
			map[string]any{"student": student, "course": course}, "student:"+student, "course:"+course)}, cond)
		return err
	}

	defineCourse("c1", 2)
	// Five students race for two seats, each retrying on a conflict.
	var wg sync.WaitGroup
	results := make([]error, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := subscribe(fmt.Sprintf("s%d", i), "c1")
				if !errors.Is(err, pges.ErrAppendConditionViolated) {
					results[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range results {
		if err == nil {
			ok++
		} else if !errors.Is(err, errRejected) {
			t.Fatal(err)
		}
	}
	if ok != 2 {
		t.Fatalf("%d students got a seat in a course of capacity 2", ok)
	}
	// A student's course limit.
	for i := 2; i <= 5; i++ {
		defineCourse(fmt.Sprintf("c%d", i), 10)
	}
	var got []error
	for i := 2; i <= 5; i++ {
		got = append(got, subscribe("busy", fmt.Sprintf("c%d", i)))
	}
	if got[0] != nil || got[1] != nil || got[2] != nil || !errors.Is(got[3], errRejected) {
		t.Fatalf("course limit of 3: %v", got)
	}
}

// Unique username, including releasing and re-claiming a name.
func TestExampleUniqueUsername(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	q := func(name string) pges.Query {
		return pges.Query{{Types: []string{"AccountRegistered", "AccountClosed", "UsernameChanged"}, Tags: []string{"username:" + name}}}
	}
	claimed := func(name string) (bool, *pges.AppendCondition) {
		taken := false
		cond := project(t, ts, q(name), func(e pges.RecordedEvent) {
			switch {
			case e.Type == "AccountRegistered":
				taken = true
			case e.Type == "AccountClosed":
				taken = false
			case e.Type == "UsernameChanged":
				taken = field(e, "new") == name
			}
		})
		return taken, cond
	}
	register := func(account, name string) error {
		if taken, cond := claimed(name); taken {
			return errRejected
		} else {
			_, err := ts.Append(ctx, []pges.EventData{data("AccountRegistered", map[string]string{"account": account, "username": name}, "account:"+account, "username:"+name)}, cond)
			return err
		}
	}
	if err := register("a1", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := register("a2", "alice"); !errors.Is(err, errRejected) {
		t.Fatalf("second alice: %v", err)
	}
	// Closing the account releases the name.
	_, cond := claimed("alice")
	mustDCB(t, ts, cond, data("AccountClosed", map[string]string{"account": "a1"}, "account:a1", "username:alice"))
	if err := register("a2", "alice"); err != nil {
		t.Fatalf("re-claiming a released name: %v", err)
	}
	// A change of name releases the old one and claims the new one.
	_, condOld := claimed("alice")
	taken, condNew := claimed("alicia")
	if taken {
		t.Fatal("alicia should be free")
	}
	// Two reads, one decision: the combined condition starts after the
	// lower head, so nothing either read could have missed slips through.
	mustDCB(t, ts, &pges.AppendCondition{FailIfEventsMatch: append(condOld.FailIfEventsMatch, condNew.FailIfEventsMatch...), After: min(condOld.After, condNew.After)},
		data("UsernameChanged", map[string]string{"account": "a2", "old": "alice", "new": "alicia"}, "account:a2", "username:alice", "username:alicia"))
	if err := register("a3", "alicia"); !errors.Is(err, errRejected) {
		t.Fatalf("alicia after the change: %v", err)
	}
	if err := register("a3", "alice"); err != nil {
		t.Fatalf("alice after the change: %v", err)
	}
}

// Gap-free invoice numbers under concurrent creation.
func TestExampleInvoiceNumbers(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	q := pges.Query{{Types: []string{"InvoiceCreated"}}}
	create := func() (int, error) {
		res, err := ts.Read(ctx, q, pges.QueryOptions{Backwards: true, Limit: 1})
		if err != nil {
			return 0, err
		}
		next := 1
		for e, err := range res.Events {
			if err != nil {
				return 0, err
			}
			next = int(field(e, "number").(float64)) + 1
		}
		_, err = ts.Append(ctx, []pges.EventData{data("InvoiceCreated", map[string]int{"number": next}, fmt.Sprintf("invoice:%d", next))},
			&pges.AppendCondition{FailIfEventsMatch: q, After: res.Head})
		return next, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	numbers := map[int]bool{}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for made := 0; made < 10; {
				n, err := create()
				if errors.Is(err, pges.ErrAppendConditionViolated) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if numbers[n] {
					t.Errorf("invoice number %d issued twice", n)
				}
				numbers[n] = true
				mu.Unlock()
				made++
			}
		}()
	}
	wg.Wait()
	for n := 1; n <= 40; n++ {
		if !numbers[n] {
			t.Fatalf("invoice numbers have a gap at %d (%d issued)", n, len(numbers))
		}
	}
}

// Opt-in token: a sign-up is confirmed once, with a token that was issued.
func TestExampleOptInToken(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	mustDCB(t, ts, nil, data("SignUpInitiated", map[string]string{"email": "a@example.com", "otp": "111111"}, "otp:111111", "email:a@example.com"))
	confirm := func(otp string) error {
		issued, used := false, false
		cond := project(t, ts, pges.Tags("otp:"+otp), func(e pges.RecordedEvent) {
			issued = issued || e.Type == "SignUpInitiated"
			used = used || e.Type == "SignUpConfirmed"
		})
		if !issued || used {
			return errRejected
		}
		_, err := ts.Append(ctx, []pges.EventData{data("SignUpConfirmed", map[string]string{"otp": otp}, "otp:"+otp)}, cond)
		return err
	}
	if err := confirm("999999"); !errors.Is(err, errRejected) {
		t.Fatalf("unknown token: %v", err)
	}
	if err := confirm("111111"); err != nil {
		t.Fatal(err)
	}
	if err := confirm("111111"); !errors.Is(err, errRejected) {
		t.Fatalf("token used twice: %v", err)
	}
}

// Preventing record duplication with an idempotency token.
func TestExamplePreventDuplicates(t *testing.T) {
	ctx := context.Background()
	ts, pool := newTenant(t)
	place := func(token string) error {
		_, err := ts.Append(ctx, []pges.EventData{data("OrderPlaced", map[string]string{"token": token}, "idempotency:"+token)},
			&pges.AppendCondition{FailIfEventsMatch: pges.Tags("idempotency:" + token)})
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	placed := 0
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := place("form-42"); err == nil {
				mu.Lock()
				placed++
				mu.Unlock()
			} else if !errors.Is(err, pges.ErrAppendConditionViolated) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if placed != 1 || countEvents(t, pool, ts.TenantID()) != 1 {
		t.Fatalf("a form submitted 6 times placed %d orders", placed)
	}
}

// Dynamic product price: an order is accepted only at the current price,
// and a concurrent price change invalidates the decision.
func TestExampleDynamicProductPrice(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	q := pges.Query{{Types: []string{"ProductDefined", "ProductPriceChanged"}, Tags: []string{"product:p1"}}}
	mustDCB(t, ts, nil, data("ProductDefined", map[string]int{"price": 100}, "product:p1"))
	order := func(displayed int, between func()) error {
		price := 0
		cond := project(t, ts, q, func(e pges.RecordedEvent) { price = int(field(e, "price").(float64)) })
		if displayed != price {
			return errRejected
		}
		if between != nil {
			between()
		}
		_, err := ts.Append(ctx, []pges.EventData{data("ProductOrdered", map[string]int{"price": displayed}, "product:p1")}, cond)
		return err
	}
	if err := order(100, nil); err != nil {
		t.Fatal(err)
	}
	if err := order(90, nil); !errors.Is(err, errRejected) {
		t.Fatalf("order at a wrong price: %v", err)
	}
	err := order(100, func() { mustDCB(t, ts, nil, data("ProductPriceChanged", map[string]int{"price": 120}, "product:p1")) })
	if !errors.Is(err, pges.ErrAppendConditionViolated) {
		t.Fatalf("order while the price changed: %v", err)
	}
	if err := order(120, nil); err != nil {
		t.Fatal(err)
	}
}

// An event-sourced aggregate whose identity is a tag: load, decide, append
// with the aggregate's query as the optimistic lock.
func TestExampleEventSourcedAggregate(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	type course struct {
		capacity, version int
		cond              *pges.AppendCondition
	}
	load := func(id string) course {
		var c course
		c.cond = project(t, ts, pges.Tags("course:"+id), func(e pges.RecordedEvent) {
			c.capacity = int(field(e, "capacity").(float64))
			c.version++
		})
		return c
	}
	mustDCB(t, ts, nil, data("CourseDefined", map[string]int{"capacity": 10}, "course:x"))
	a, b := load("x"), load("x") // two concurrent handlers of the same aggregate
	if _, err := ts.Append(ctx, []pges.EventData{data("CourseCapacityChanged", map[string]int{"capacity": 20}, "course:x")}, a.cond); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Append(ctx, []pges.EventData{data("CourseCapacityChanged", map[string]int{"capacity": 5}, "course:x")}, b.cond); !errors.Is(err, pges.ErrAppendConditionViolated) {
		t.Fatalf("stale aggregate: %v", err)
	}
	if c := load("x"); c.capacity != 20 || c.version != 2 {
		t.Fatalf("aggregate state %+v", c)
	}
}
