package pges_test

// The dcb.events examples, each a command run by pges.Decide: read the
// decision model with a query, fold it, decide, append with the query as
// the condition after the read's head, and on a conflict read and decide
// again. The course subscriptions are also written out by hand, to show
// what Decide does.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/eventstore-go/pges"
)

// The examples' events. Each knows its tags (pges.Tagger).
type (
	courseDefined struct {
		Course   string `json:"course"`
		Capacity int    `json:"capacity"`
	}
	courseCapacityChanged struct {
		Course   string `json:"course"`
		Capacity int    `json:"capacity"`
	}
	studentSubscribedToCourse struct {
		Student string `json:"student"`
		Course  string `json:"course"`
	}
	accountRegistered struct {
		Account  string `json:"account"`
		Username string `json:"username"`
	}
	accountClosed struct {
		Account  string `json:"account"`
		Username string `json:"username"`
	}
	usernameChanged struct {
		Account string `json:"account"`
		Old     string `json:"old"`
		New     string `json:"new"`
	}
	invoiceCreated struct {
		Number int `json:"number"`
	}
	signUpInitiated struct {
		Email string `json:"email"`
		OTP   string `json:"otp"`
	}
	signUpConfirmed struct {
		OTP string `json:"otp"`
	}
	orderPlaced struct {
		Token string `json:"token"`
	}
	productDefined struct {
		Product string `json:"product"`
		Price   int    `json:"price"`
	}
	productPriceChanged struct {
		Product string `json:"product"`
		Price   int    `json:"price"`
	}
	productOrdered struct {
		Product string `json:"product"`
		Price   int    `json:"price"`
	}
)

func (e courseDefined) EventTags() []string         { return []string{"course:" + e.Course} }
func (e courseCapacityChanged) EventTags() []string { return []string{"course:" + e.Course} }
func (e studentSubscribedToCourse) EventTags() []string {
	return []string{"student:" + e.Student, "course:" + e.Course}
}
func (e accountRegistered) EventTags() []string {
	return []string{"account:" + e.Account, "username:" + e.Username}
}
func (e accountClosed) EventTags() []string {
	return []string{"account:" + e.Account, "username:" + e.Username}
}
func (e usernameChanged) EventTags() []string {
	return []string{"account:" + e.Account, "username:" + e.Old, "username:" + e.New}
}
func (e invoiceCreated) EventTags() []string  { return []string{fmt.Sprintf("invoice:%d", e.Number)} }
func (e signUpInitiated) EventTags() []string { return []string{"otp:" + e.OTP, "email:" + e.Email} }
func (e signUpConfirmed) EventTags() []string { return []string{"otp:" + e.OTP} }
func (e orderPlaced) EventTags() []string     { return []string{"idempotency:" + e.Token} }
func (e productDefined) EventTags() []string  { return []string{"product:" + e.Product} }
func (e productPriceChanged) EventTags() []string {
	return []string{"product:" + e.Product}
}
func (e productOrdered) EventTags() []string { return []string{"product:" + e.Product} }

// examples is the codec of every example's events.
var examples = func() *pges.Codec[any] {
	c := pges.NewCodec[any](nil)
	for _, err := range []error{
		pges.Register[courseDefined](c, "CourseDefined", 1),
		pges.Register[courseCapacityChanged](c, "CourseCapacityChanged", 1),
		pges.Register[studentSubscribedToCourse](c, "StudentSubscribedToCourse", 1),
		pges.Register[accountRegistered](c, "AccountRegistered", 1),
		pges.Register[accountClosed](c, "AccountClosed", 1),
		pges.Register[usernameChanged](c, "UsernameChanged", 1),
		pges.Register[invoiceCreated](c, "InvoiceCreated", 1),
		pges.Register[signUpInitiated](c, "SignUpInitiated", 1),
		pges.Register[signUpConfirmed](c, "SignUpConfirmed", 1),
		pges.Register[orderPlaced](c, "OrderPlaced", 1),
		pges.Register[productDefined](c, "ProductDefined", 1),
		pges.Register[productPriceChanged](c, "ProductPriceChanged", 1),
		pges.Register[productOrdered](c, "ProductOrdered", 1),
	} {
		if err != nil {
			panic(err)
		}
	}
	return c
}()

var errRejected = errors.New("rejected by the decision model")

// decide runs one command of an example and returns its error.
func decide[S any](ts *pges.TenantStore, d pges.Decision[S, any]) error {
	_, err := pges.Decide(context.Background(), ts, examples, d)
	return err
}

// mustEmit appends events unconditionally (the examples' setup).
func mustEmit(t *testing.T, ts *pges.TenantStore, events ...any) {
	t.Helper()
	data, err := examples.EncodeAll(events...)
	if err != nil {
		t.Fatal(err)
	}
	mustDCB(t, ts, nil, data...)
}

// just returns a Decide result of one event, or errRejected.
func just(ok bool, e any) ([]any, error) {
	if !ok {
		return nil, errRejected
	}
	return []any{e}, nil
}

// Course subscriptions: course capacity and a student's course limit.
type subscription struct {
	exists, already               bool
	capacity, subscribers, course int
}

const studentLimit = 3

func subscribeToCourse(student, course string) pges.Decision[subscription, any] {
	return pges.Decision[subscription, any]{
		Query: pges.Query{
			{Types: []string{"CourseDefined", "CourseCapacityChanged"}, Tags: []string{"course:" + course}},
			{Types: []string{"StudentSubscribedToCourse"}, Tags: []string{"course:" + course}},
			{Types: []string{"StudentSubscribedToCourse"}, Tags: []string{"student:" + student}},
		},
		Init: func() subscription { return subscription{} },
		Fold: func(s subscription, e pges.Event[any]) subscription {
			switch d := e.Data.(type) {
			case courseDefined:
				s.exists, s.capacity = true, d.Capacity
			case courseCapacityChanged:
				s.capacity = d.Capacity
			case studentSubscribedToCourse:
				if d.Course == course {
					s.subscribers++
					s.already = s.already || d.Student == student
				}
				if d.Student == student {
					s.course++ // the student's courses
				}
			}
			return s
		},
		Decide: func(s subscription) ([]any, error) {
			return just(s.exists && !s.already && s.subscribers < s.capacity && s.course < studentLimit,
				studentSubscribedToCourse{Student: student, Course: course})
		},
	}
}

func TestExampleCourseSubscriptions(t *testing.T) {
	ts, _ := newTenant(t)
	mustEmit(t, ts, courseDefined{Course: "c1", Capacity: 2})
	// Five students race for two seats: Decide retries the losers, who
	// then find the course full.
	var wg sync.WaitGroup
	results := make([]error, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = decide(ts, subscribeToCourse(fmt.Sprintf("s%d", i), "c1"))
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
	// A capacity change frees a seat.
	mustEmit(t, ts, courseCapacityChanged{Course: "c1", Capacity: 3})
	if err := decide(ts, subscribeToCourse("late", "c1")); err != nil {
		t.Fatal(err)
	}
	// A student's course limit.
	for i := 2; i <= 5; i++ {
		mustEmit(t, ts, courseDefined{Course: fmt.Sprintf("c%d", i), Capacity: 10})
	}
	var got []error
	for i := 2; i <= 5; i++ {
		got = append(got, decide(ts, subscribeToCourse("busy", fmt.Sprintf("c%d", i))))
	}
	if got[0] != nil || got[1] != nil || got[2] != nil || !errors.Is(got[3], errRejected) {
		t.Fatalf("course limit of 3: %v", got)
	}
}

// The same command written by hand: this is what Decide does (without its
// backoff and its locked last attempt).
func TestExampleCourseSubscriptionsByHand(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	mustEmit(t, ts, courseDefined{Course: "c1", Capacity: 2})
	subscribe := func(student, course string) error {
		d := subscribeToCourse(student, course)
		for {
			// Read the decision model, remembering the head.
			res, err := ts.Read(ctx, d.Query, pges.QueryOptions{})
			if err != nil {
				return err
			}
			state := d.Init()
			for e, err := range examples.Events(res.Events) {
				if err != nil {
					return err
				}
				state = d.Fold(state, e)
			}
			// Decide.
			decided, err := d.Decide(state)
			if err != nil {
				return err
			}
			events, err := examples.EncodeAll(decided...)
			if err != nil {
				return err
			}
			// Append only if nothing matching the query came after the head.
			_, err = ts.Append(ctx, events, &pges.AppendCondition{FailIfEventsMatch: d.Query, After: res.Head})
			if !errors.Is(err, pges.ErrAppendConditionViolated) {
				return err
			}
			// Someone decided first: read and decide again.
		}
	}
	var wg sync.WaitGroup
	results := make([]error, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = subscribe(fmt.Sprintf("s%d", i), "c1")
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
}

// Unique username, including releasing and re-claiming a name and a
// change of name, which releases one name and claims another in one
// decision over both.
func TestExampleUniqueUsername(t *testing.T) {
	ts, _ := newTenant(t)
	// claims folds who holds each name: "" is free.
	claims := func(names ...string) pges.Decision[map[string]string, any] {
		tags := make([]string, len(names))
		q := pges.Query{}
		for i, n := range names {
			tags[i] = "username:" + n
			q = append(q, pges.QueryItem{Types: []string{"AccountRegistered", "AccountClosed", "UsernameChanged"}, Tags: []string{tags[i]}})
		}
		return pges.Decision[map[string]string, any]{
			Query: q,
			Init:  func() map[string]string { return map[string]string{} },
			Fold: func(held map[string]string, e pges.Event[any]) map[string]string {
				switch d := e.Data.(type) {
				case accountRegistered:
					held[d.Username] = d.Account
				case accountClosed:
					delete(held, d.Username)
				case usernameChanged:
					delete(held, d.Old)
					held[d.New] = d.Account
				}
				return held
			},
		}
	}
	register := func(account, name string) error {
		d := claims(name)
		d.Decide = func(held map[string]string) ([]any, error) {
			return just(held[name] == "", accountRegistered{Account: account, Username: name})
		}
		return decide(ts, d)
	}
	closeAccount := func(account, name string) error {
		d := claims(name)
		d.Decide = func(held map[string]string) ([]any, error) {
			return just(held[name] == account, accountClosed{Account: account, Username: name})
		}
		return decide(ts, d)
	}
	rename := func(account, from, to string) error {
		d := claims(from, to)
		d.Decide = func(held map[string]string) ([]any, error) {
			return just(held[from] == account && held[to] == "", usernameChanged{Account: account, Old: from, New: to})
		}
		return decide(ts, d)
	}
	for _, step := range []struct {
		what string
		err  error
		want error
	}{
		{"a1 registers alice", register("a1", "alice"), nil},
		{"a2 registers alice", register("a2", "alice"), errRejected},
		{"a2 closes a1's alice", closeAccount("a2", "alice"), errRejected},
		{"a1 closes alice", closeAccount("a1", "alice"), nil},
		{"a2 re-claims alice", register("a2", "alice"), nil},
		{"a2 renames alice to alicia", rename("a2", "alice", "alicia"), nil},
		{"a3 registers alicia", register("a3", "alicia"), errRejected},
		{"a3 registers the released alice", register("a3", "alice"), nil},
		{"a3 renames alice to alicia", rename("a3", "alice", "alicia"), errRejected},
	} {
		if !errors.Is(step.err, step.want) || step.want == nil && step.err != nil {
			t.Fatalf("%s: %v, want %v", step.what, step.err, step.want)
		}
	}
}

// Gap-free invoice numbers under concurrent creation.
func TestExampleInvoiceNumbers(t *testing.T) {
	ts, _ := newTenant(t)
	create := pges.Decision[int, any]{
		Query:  pges.Query{{Types: []string{"InvoiceCreated"}}},
		Init:   func() int { return 0 },
		Fold:   func(last int, e pges.Event[any]) int { return e.Data.(invoiceCreated).Number },
		Decide: func(last int) ([]any, error) { return []any{invoiceCreated{Number: last + 1}}, nil },
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	numbers := map[int]bool{}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				res, err := pges.Decide(context.Background(), ts, examples, create)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if n := res.State + 1; numbers[n] {
					t.Errorf("invoice number %d issued twice", n)
				} else {
					numbers[n] = true
				}
				mu.Unlock()
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
	ts, _ := newTenant(t)
	mustEmit(t, ts, signUpInitiated{Email: "a@example.com", OTP: "111111"})
	type token struct{ issued, used bool }
	confirm := func(otp string) error {
		return decide(ts, pges.Decision[token, any]{
			Query: pges.Tags("otp:" + otp),
			Init:  func() token { return token{} },
			Fold: func(s token, e pges.Event[any]) token {
				switch e.Data.(type) {
				case signUpInitiated:
					s.issued = true
				case signUpConfirmed:
					s.used = true
				}
				return s
			},
			Decide: func(s token) ([]any, error) { return just(s.issued && !s.used, signUpConfirmed{OTP: otp}) },
		})
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

// Preventing record duplication with an idempotency token: a form
// submitted six times at once places one order; the other five find it
// placed.
func TestExamplePreventDuplicates(t *testing.T) {
	ts, pool := newTenant(t)
	place := func(token string) error {
		return decide(ts, pges.Decision[bool, any]{
			Query:  pges.Tags("idempotency:" + token),
			Init:   func() bool { return false },
			Fold:   func(bool, pges.Event[any]) bool { return true },
			Decide: func(placed bool) ([]any, error) { return just(!placed, orderPlaced{Token: token}) },
		})
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
			} else if !errors.Is(err, errRejected) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if placed != 1 || countEvents(t, pool, ts.TenantID()) != 1 {
		t.Fatalf("a form submitted 6 times placed %d orders", placed)
	}
}

// Dynamic product price: an order is accepted only at the current price.
// A price change between the read and the append invalidates the
// decision: without retries the conflict is returned; with them the order
// is decided again, at the new price, and refused.
func TestExampleDynamicProductPrice(t *testing.T) {
	ts, _ := newTenant(t)
	mustEmit(t, ts, productDefined{Product: "p1", Price: 100})
	order := func(displayed int, retry pges.Retry, between func()) error {
		return decide(ts, pges.Decision[int, any]{
			Query: pges.Query{{Types: []string{"ProductDefined", "ProductPriceChanged"}, Tags: []string{"product:p1"}}},
			Init:  func() int { return 0 },
			Fold: func(price int, e pges.Event[any]) int {
				switch d := e.Data.(type) {
				case productDefined:
					return d.Price
				case productPriceChanged:
					return d.Price
				}
				return price
			},
			Decide: func(price int) ([]any, error) {
				if between != nil {
					between()
					between = nil
				}
				return just(displayed == price, productOrdered{Product: "p1", Price: displayed})
			},
			Retry: retry,
		})
	}
	once := pges.Retry{Attempts: 1, Optimistic: true}
	if err := order(100, once, nil); err != nil {
		t.Fatal(err)
	}
	if err := order(90, once, nil); !errors.Is(err, errRejected) {
		t.Fatalf("order at a wrong price: %v", err)
	}
	change := func(price int) func() {
		return func() { mustEmit(t, ts, productPriceChanged{Product: "p1", Price: price}) }
	}
	if err := order(100, once, change(120)); !errors.Is(err, pges.ErrAppendConditionViolated) {
		t.Fatalf("order while the price changed, no retry: %v", err)
	}
	if err := order(120, pges.Retry{}, change(130)); !errors.Is(err, errRejected) {
		t.Fatalf("order while the price changed, decided again: %v", err)
	}
	if err := order(130, pges.Retry{}, nil); err != nil {
		t.Fatal(err)
	}
}

// An event-sourced aggregate whose identity is a tag: its query is its
// consistency boundary. A handler that decided on a stale state loses
// (without retries) or decides again on the fresh one.
func TestExampleEventSourcedAggregate(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	type course struct{ capacity, version int }
	mustEmit(t, ts, courseDefined{Course: "x", Capacity: 10})
	changeCapacity := func(to int, retry pges.Retry, between func()) (pges.DecisionResult[course], error) {
		return pges.Decide(ctx, ts, examples, pges.Decision[course, any]{
			Query: pges.Tags("course:x"),
			Init:  func() course { return course{} },
			Fold: func(c course, e pges.Event[any]) course {
				switch d := e.Data.(type) {
				case courseDefined:
					c.capacity = d.Capacity
				case courseCapacityChanged:
					c.capacity = d.Capacity
				}
				c.version++
				return c
			},
			Decide: func(c course) ([]any, error) {
				if between != nil {
					between()
					between = nil
				}
				return just(c.capacity != to, courseCapacityChanged{Course: "x", Capacity: to})
			},
			Retry: retry,
		})
	}
	concurrent := func() { mustEmit(t, ts, courseCapacityChanged{Course: "x", Capacity: 20}) }
	if _, err := changeCapacity(5, pges.Retry{Attempts: 1, Optimistic: true}, concurrent); !errors.Is(err, pges.ErrAppendConditionViolated) {
		t.Fatalf("stale aggregate: %v", err)
	}
	res, err := changeCapacity(5, pges.Retry{}, concurrent)
	if err != nil || res.Attempts != 2 || res.State.capacity != 20 || res.State.version != 3 {
		t.Fatalf("decided again: %+v, %v", res, err)
	}
}
