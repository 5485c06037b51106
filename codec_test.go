package pges_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// The course events of these tests: CourseDefined went through three
// schema versions.
//
//	v1 {"course": "c1", "title": "Go", "seats": "10"}      seats as a string
//	v2 {"course": "c1", "title": "Go", "capacity": 10}     a number, renamed
//	v3 {"course_id": "c1", "name": "Go", "capacity": 10}   the current type
type courseEvent interface{ courseID() string }

type CourseDefined struct {
	CourseID string `json:"course_id"`
	Name     string `json:"name"`
	Capacity int    `json:"capacity"`
}

type StudentSubscribed struct {
	CourseID  string `json:"course_id"`
	StudentID string `json:"student_id"`
}

func (e CourseDefined) courseID() string     { return e.CourseID }
func (e StudentSubscribed) courseID() string { return e.CourseID }
func (e CourseDefined) EventTags() []string  { return []string{"course:" + e.CourseID} }
func (e StudentSubscribed) EventTags() []string {
	return []string{"course:" + e.CourseID, "student:" + e.StudentID}
}

// The old shapes, kept for their upcasters.
type courseDefinedV1 struct{ Course, Title, Seats string }
type courseDefinedV2 struct {
	Course, Title string
	Capacity      int
}

func courseCodec(t *testing.T) *pges.Codec[courseEvent] {
	t.Helper()
	c := pges.NewCodec[courseEvent](nil)
	for _, err := range []error{
		pges.Register[CourseDefined](c, "CourseDefined", 3),
		pges.Register[StudentSubscribed](c, "StudentSubscribed", 1),
		c.Upcast("CourseDefined", 1, pges.UpcastFunc(func(v1 courseDefinedV1) (courseDefinedV2, error) {
			n, err := strconv.Atoi(v1.Seats)
			return courseDefinedV2{Course: v1.Course, Title: v1.Title, Capacity: n}, err
		})),
		c.Upcast("CourseDefined", 2, pges.UpcastFunc(func(v2 courseDefinedV2) (CourseDefined, error) {
			return CourseDefined{CourseID: v2.Course, Name: v2.Title, Capacity: v2.Capacity}, nil
		})),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// storedCourses appends c1 in schema v1, c2 in v2 (both as an old
// deployment wrote them) and c3 with the codec, each as a stream with a
// subscription, and returns the raw events as stored.
func storedCourses(t *testing.T, ts *pges.TenantStore, c *pges.Codec[courseEvent]) []pges.RecordedEvent {
	t.Helper()
	old := func(v int, payload string, course string) pges.EventData {
		return pges.EventData{Type: "CourseDefined", Payload: json.RawMessage(payload), SchemaVersion: v, Tags: []string{"course:" + course}}
	}
	mustAppend(t, ts, "course-c1", pges.NoStream, old(1, `{"course":"c1","title":"Go","seats":"10"}`, "c1"))
	mustAppend(t, ts, "course-c2", pges.NoStream, old(2, `{"course":"c2","title":"SQL","capacity":20}`, "c2"))
	events, err := c.EncodeAll(CourseDefined{CourseID: "c3", Name: "Rust", Capacity: 30}, StudentSubscribed{CourseID: "c3", StudentID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, ts, "course-c3", pges.NoStream, events...)
	for i := 1; i <= 2; i++ {
		e, _ := c.Encode(StudentSubscribed{CourseID: fmt.Sprintf("c%d", i), StudentID: "s1"})
		mustAppend(t, ts, fmt.Sprintf("course-c%d", i), pges.Exactly(1), e)
	}
	all, _, err := ts.ReadAll(context.Background(), pges.QueryAll(), pges.QueryOptions{})
	if err != nil || len(all) != 6 {
		t.Fatalf("stored: %d events, %v", len(all), err)
	}
	return all
}

var wantCourses = map[string]CourseDefined{
	"c1": {CourseID: "c1", Name: "Go", Capacity: 10},
	"c2": {CourseID: "c2", Name: "SQL", Capacity: 20},
	"c3": {CourseID: "c3", Name: "Rust", Capacity: 30},
}

// courseCatalog is a read model: each course and its subscribers.
type courseCatalog struct {
	mu       sync.Mutex
	courses  map[string]CourseDefined
	students map[string][]string
}

func newCatalog() *courseCatalog {
	return &courseCatalog{courses: map[string]CourseDefined{}, students: map[string][]string{}}
}

func (m *courseCatalog) apply(e pges.Event[courseEvent]) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch d := e.Data.(type) {
	case CourseDefined:
		m.courses[d.CourseID] = d
	case StudentSubscribed:
		m.students[d.CourseID] = append(m.students[d.CourseID], d.StudentID)
	}
}

func (m *courseCatalog) check(t *testing.T, what string) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if fmt.Sprint(m.courses) != fmt.Sprint(wantCourses) || len(m.students) != 3 {
		t.Fatalf("%s: courses %v students %v, want %v", what, m.courses, m.students, wantCourses)
	}
}

func (m *courseCatalog) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.courses)
	for _, s := range m.students {
		n += len(s)
	}
	return n
}

// A three-version upcaster chain applies on stream reads, DCB reads, a
// subscription and its replay, and leaves the stored events as they were.
func TestUpcasterChainOnEveryReadPath(t *testing.T) {
	ctx := context.Background()
	ts, admin := newTenant(t)
	c := courseCodec(t)
	stored := storedCourses(t, ts, c)

	// The SQL side tells the versions apart without Go.
	var versions []int32
	rows, _ := admin.Query(ctx, `SELECT es.event_schema_version(metadata) FROM es.events
		WHERE tenant_id = $1 AND event_type = 'CourseDefined' ORDER BY position`, ts.TenantID())
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || !slices.Equal(versions, []int32{1, 2, 3}) {
		t.Fatalf("es.event_schema_version: %v, %v", versions, err)
	}

	// Stream reads.
	streams := newCatalog()
	for i := 1; i <= 3; i++ {
		raw, err := ts.ReadStream(ctx, fmt.Sprintf("course-c%d", i), pges.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		typed, err := c.DecodeAll(raw)
		if err != nil {
			t.Fatal(err)
		}
		for j, e := range typed {
			if !bytes.Equal(e.Payload, raw[j].Payload) {
				t.Fatalf("stream c%d: Event.Payload %s is not the stored %s", i, e.Payload, raw[j].Payload)
			}
			streams.apply(e)
		}
		if typed[0].SchemaVersion != i || typed[0].TenantID != ts.TenantID() {
			t.Fatalf("stream c%d: stored schema version %d, tenant %q", i, typed[0].SchemaVersion, typed[0].TenantID)
		}
	}
	streams.check(t, "stream reads")

	// DCB reads, page by page (pages of 2 events).
	paged, err := pges.New(testdb.RuntimePool(t), &pges.Config{ReadPageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	res, err := paged.Tenant(ts.TenantID()).Read(ctx, pges.Query{{Types: []string{"CourseDefined", "StudentSubscribed"}}}, pges.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dcb := newCatalog()
	for e, err := range c.Events(res.Events) {
		if err != nil {
			t.Fatal(err)
		}
		if e.TenantID != ts.TenantID() {
			t.Fatalf("DCB read: tenant %q", e.TenantID)
		}
		dcb.apply(e)
	}
	dcb.check(t, "DCB read")

	// A durable subscription, then its replay from the start.
	live := newCatalog()
	handler := c.Handler(func(_ context.Context, _ pgx.Tx, e pges.Event[courseEvent]) error {
		if e.TenantID != ts.TenantID() {
			return fmt.Errorf("subscription: tenant %q", e.TenantID)
		}
		live.apply(e)
		return nil
	})
	stop := run(t, ts, pges.SubscriptionConfig{Name: "catalog", Handler: handler, PollInterval: noPoll})
	waitFor(t, 5*time.Second, "the subscription", func() bool { return live.size() == 6 })
	live.check(t, "subscription")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := ts.ResetSubscription(ctx, "catalog", pges.ResetPoint{}); err != nil {
		t.Fatal(err)
	}
	live = newCatalog()
	run(t, ts, pges.SubscriptionConfig{Name: "catalog", Handler: handler, PollInterval: noPoll})
	waitFor(t, 5*time.Second, "the replay", func() bool { return live.size() == 6 })
	live.check(t, "replay")

	// Nothing was rewritten: the same bytes, versions and metadata.
	after, _, err := ts.ReadAll(ctx, pges.QueryAll(), pges.QueryOptions{})
	if err != nil || len(after) != len(stored) {
		t.Fatalf("after: %d events, %v", len(after), err)
	}
	for i := range stored {
		if !bytes.Equal(after[i].Payload, stored[i].Payload) || after[i].SchemaVersion != stored[i].SchemaVersion ||
			fmt.Sprint(after[i].Metadata) != fmt.Sprint(stored[i].Metadata) {
			t.Fatalf("event %d changed: %s v%d, was %s v%d", i, after[i].Payload, after[i].SchemaVersion, stored[i].Payload, stored[i].SchemaVersion)
		}
	}
	if string(stored[0].Payload) != `{"seats": "10", "title": "Go", "course": "c1"}` {
		t.Fatalf("the v1 event as stored: %s", stored[0].Payload)
	}
}

// An unknown type, a corrupt payload and a payload that no longer fits the
// type give a DecodeError naming the tenant, position and type; a load
// that meets one returns no partial state, and a subscription applies its
// failure policy at once instead of retrying.
func TestDecodeErrors(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	c := courseCodec(t)
	good, _ := c.Encode(CourseDefined{CourseID: "c1", Name: "Go", Capacity: 10})
	cases := []struct {
		name string
		ev   pges.EventData
		kind error
	}{
		{"unknown type", pges.EventData{Type: "CourseRenamed", Payload: json.RawMessage(`{"course_id":"c1"}`)}, pges.ErrUnknownEventType},
		{"corrupt payload", pges.EventData{Type: "CourseDefined", SchemaVersion: 3, Payload: json.RawMessage(`"Go, 10 seats"`)}, pges.ErrEventSchemaMismatch},
		{"null payload", pges.EventData{Type: "CourseDefined", SchemaVersion: 3, Payload: json.RawMessage(`null`)}, pges.ErrEventSchemaMismatch},
		{"upcaster returns null", pges.EventData{Type: "CourseDefined", SchemaVersion: 2, Payload: json.RawMessage(`null`)}, pges.ErrEventSchemaMismatch},
		{"field of another type", pges.EventData{Type: "CourseDefined", SchemaVersion: 3, Payload: json.RawMessage(`{"course_id":"c1","capacity":"ten"}`)}, pges.ErrEventSchemaMismatch},
		{"field the type lost", pges.EventData{Type: "CourseDefined", SchemaVersion: 3, Payload: json.RawMessage(`{"course_id":"c1","teacher":"ann"}`)}, pges.ErrEventSchemaMismatch},
		{"upcaster fails", pges.EventData{Type: "CourseDefined", SchemaVersion: 1, Payload: json.RawMessage(`{"course":"c1","seats":"many"}`)}, pges.ErrEventSchemaMismatch},
		{"newer schema version", pges.EventData{Type: "CourseDefined", SchemaVersion: 4, Payload: json.RawMessage(`{"course_id":"c1"}`)}, pges.ErrUnknownSchemaVersion},
	}
	type state struct{ Courses, Students int }
	agg := pges.Aggregate[state]{
		Init: func() state { return state{} },
		Apply: pges.Apply(c, func(s state, e pges.Event[courseEvent]) (state, error) {
			switch e.Data.(type) {
			case CourseDefined:
				s.Courses++
			case StudentSubscribed:
				s.Students++
			}
			return s, nil
		}),
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream, tag := "bad-"+tc.name, "case:"+tc.name
			sub, _ := c.Encode(StudentSubscribed{CourseID: "c1", StudentID: "s1"})
			batch := []pges.EventData{good, sub, tc.ev}
			for i := range batch {
				batch[i].Tags = append(slices.Clip(batch[i].Tags), tag)
			}
			res := mustAppend(t, ts, stream, pges.NoStream, batch...)
			pos := res.Positions[2]
			raw, err := ts.ReadStream(ctx, stream, pges.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.DecodeAll(raw)
			var de *pges.DecodeError
			if !errors.Is(err, tc.kind) || !errors.As(err, &de) || de.Position != pos || de.TenantID != ts.TenantID() || de.Type != tc.ev.Type {
				t.Fatalf("DecodeAll: %v, want %v at position %d", err, tc.kind, pos)
			}
			st, version, err := pges.LoadAggregate(ctx, ts, stream, agg)
			if !errors.Is(err, tc.kind) || st != (state{}) || version != 0 {
				t.Fatalf("LoadAggregate: %+v v%d, %v; want no state and %v", st, version, err, tc.kind)
			}
			st, head, err := pges.Project(ctx, ts, pges.Tags(tag), agg.Init, agg.Apply, pges.AsOf{})
			if !errors.Is(err, tc.kind) || st != (state{}) || head != 0 {
				t.Fatalf("Project: %+v head %d, %v; want no state and %v", st, head, err, tc.kind)
			}
		})
	}

	// A subscription stops at the first undecodable event after one
	// attempt, although MaxAttempts allows five.
	seen := map[int64]bool{} // a handler's effects outside its transaction are at-least-once
	err := ts.Subscribe(ctx, pges.SubscriptionConfig{Name: "strict", PollInterval: noPoll, MaxAttempts: 5, RetryBackoff: time.Millisecond,
		Handler: c.Handler(func(_ context.Context, _ pgx.Tx, e pges.Event[courseEvent]) error {
			seen[e.Position] = true
			return nil
		})})
	var he *pges.HandlerError
	var de *pges.DecodeError
	if !errors.As(err, &he) || he.Attempts != 1 || !errors.As(err, &de) || !errors.Is(err, pges.ErrUnknownEventType) {
		t.Fatalf("subscription: %v, want a HandlerError after 1 attempt wrapping a DecodeError", err)
	}
	if len(seen) != 2 {
		t.Fatalf("delivered before the bad event: %v", seen)
	}
}

// Registration refuses what cannot work; Encode refuses unregistered
// values and a bad schema version never reaches the log.
func TestCodecRegistration(t *testing.T) {
	ctx := context.Background()
	ts, admin := newTenant(t)
	c := courseCodec(t)
	for name, err := range map[string]error{
		"empty name":             pges.Register[StudentSubscribed](pges.NewCodec[courseEvent](nil), "", 1),
		"type twice":             pges.Register[CourseDefined](c, "CourseCreated", 1),
		"reserved name":          pges.Register[courseDefinedV1](pges.NewCodec[any](nil), "$system", 1),
		"name taken":             pges.Register[courseDefinedV2](c, "CourseDefined", 1),
		"version 0":              pges.Register[courseDefinedV2](pges.NewCodec[any](nil), "X", 0),
		"not the sum type":       pges.Register[courseDefinedV1](c, "CourseDefinedV1", 1),
		"upcast past current":    c.Upcast("CourseDefined", 3, func(p json.RawMessage) (json.RawMessage, error) { return p, nil }),
		"upcast twice":           c.Upcast("CourseDefined", 2, func(p json.RawMessage) (json.RawMessage, error) { return p, nil }),
		"upcast from version 0":  c.Upcast("CourseDefined", 0, func(p json.RawMessage) (json.RawMessage, error) { return p, nil }),
		"register below upcasts": pges.Register[courseDefinedV2](upcastOnly(), "Old", 2),
		"interface type":         pges.Register[courseEvent](pges.NewCodec[courseEvent](nil), "Any", 1),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := pges.NewCodec[any](nil).Encode(CourseDefined{}); !errors.Is(err, pges.ErrUnknownEventType) {
		t.Fatalf("encode of an unregistered type: %v", err)
	}
	ptrs := pges.NewCodec[any](nil)
	if err := pges.Register[*CourseDefined](ptrs, "CourseDefined", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := ptrs.Encode((*CourseDefined)(nil)); !errors.Is(err, pges.ErrInvalidEvent) {
		t.Fatalf("encode of a nil pointer: %v", err)
	}
	if e, err := ptrs.Decode(pges.RecordedEvent{Type: "CourseDefined", SchemaVersion: 1, Payload: json.RawMessage(`{"name":"Go"}`)}); err != nil || e.Data.(*CourseDefined).Name != "Go" {
		t.Fatalf("pointer type: %+v, %v", e, err)
	}
	// An upcaster's output is checked as strictly as a stored payload.
	trailing := pges.NewCodec[any](nil)
	_ = pges.Register[CourseDefined](trailing, "CourseDefined", 2)
	_ = trailing.Upcast("CourseDefined", 1, func(json.RawMessage) (json.RawMessage, error) { return json.RawMessage(`{"name":"Go"}]`), nil })
	if _, err := trailing.Decode(pges.RecordedEvent{Type: "CourseDefined", SchemaVersion: 1, Payload: json.RawMessage(`{}`)}); !errors.Is(err, pges.ErrEventSchemaMismatch) {
		t.Fatalf("upcaster output with data after it: %v", err)
	}
	for _, v := range []int{-1, 1_000_000_000} {
		_, err := ts.AppendToStream(ctx, "s", pges.Any, pges.EventData{Type: "E", Payload: json.RawMessage(`{}`), SchemaVersion: v})
		if !errors.Is(err, pges.ErrInvalidEvent) {
			t.Fatalf("schema version %d: %v", v, err)
		}
	}
	// SQL clients meet the table constraint.
	mustAppend(t, ts, "s", pges.NoStream, pges.EventData{Type: "E", Payload: json.RawMessage(`{}`), SchemaVersion: 2})
	for _, md := range []string{`{"schema_version": "2"}`, `{"schema_version": 0}`, `{"schema_version": 1.5}`, `{"schema_version": -3}`,
		`{"schema_version": null}`, `{"schema_version": 1000000000}`, `{"schema_version": [2]}`} {
		err := pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('es.tenant_id', $1, true)`, ts.TenantID()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `SELECT es.append_events($1, jsonb_build_array(jsonb_build_object('type', 'E', 'payload', '{}'::jsonb, 'metadata', $2::jsonb)), NULL, NULL)`, ts.TenantID(), md)
			return err
		})
		var ie *pges.InvalidEventError
		if !errors.As(pges.TranslateError(err), &ie) || ie.Index != 0 || !strings.Contains(ie.Reason, "schema_version") {
			t.Fatalf("metadata %s: %v", md, err)
		}
	}
	if got, _ := ts.ReadStream(ctx, "s", pges.ReadOptions{}); len(got) != 1 || got[0].SchemaVersion != 2 {
		t.Fatalf("stream s: %+v", got)
	}
	if n := countEvents(t, admin, ts.TenantID()); n != 1 {
		t.Fatalf("%d events stored, want the 1 good one", n)
	}
}

func upcastOnly() *pges.Codec[any] {
	c := pges.NewCodec[any](nil)
	_ = c.Upcast("Old", 2, func(p json.RawMessage) (json.RawMessage, error) { return p, nil })
	return c
}

// CausedBy chains correlation and causation ids through handlers.
func TestCausedBy(t *testing.T) {
	ctx := context.Background()
	ts, _ := newTenant(t)
	first := mustAppend(t, ts, "order-1", pges.NoStream, ev("OrderPlaced", map[string]int{"n": 1}))
	placed, _ := ts.ReadStream(ctx, "order-1", pges.ReadOptions{})
	md := pges.Metadata{User: "billing"}.CausedBy(placed[0])
	mustAppend(t, ts, "invoice-1", pges.NoStream, pges.EventData{Type: "InvoiceIssued", Payload: json.RawMessage(`{}`), Metadata: md})
	invoice, _ := ts.ReadStream(ctx, "invoice-1", pges.ReadOptions{})
	md = pges.Metadata{}.CausedBy(invoice[0])
	mustAppend(t, ts, "mail-1", pges.NoStream, pges.EventData{Type: "MailSent", Payload: json.RawMessage(`{}`), Metadata: md})
	mail, _ := ts.ReadStream(ctx, "mail-1", pges.ReadOptions{})

	root := placed[0].ID.String()
	if first.Positions[0] != placed[0].Position ||
		!reflect.DeepEqual(invoice[0].Metadata, pges.Metadata{CorrelationID: root, CausationID: root, User: "billing"}) ||
		!reflect.DeepEqual(mail[0].Metadata, pges.Metadata{CorrelationID: root, CausationID: invoice[0].ID.String()}) {
		t.Fatalf("chain: %+v then %+v", invoice[0].Metadata, mail[0].Metadata)
	}
}

// An event whose metadata.schema_version is not a version (a SQL client
// could store one before migration 00008) still reads, with version 0 on
// every read path and NULL in SQL; a codec refuses to decode it.
func TestUnreadableSchemaVersionStillReads(t *testing.T) {
	ctx := context.Background()
	ts, admin := newTenant(t)
	c := courseCodec(t)
	for i, md := range []string{`{"schema_version": "2"}`, `{"schema_version": 0}`, `{"schema_version": 2.5}`, `{"schema_version": null, "user": "u"}`, `{"schema_version": 2.0}`} {
		if _, err := admin.Exec(ctx, `INSERT INTO es.events (tenant_id, position, event_id, event_type, stream_id, stream_version, payload, metadata)
			VALUES ($1, nextval('es.event_position'), gen_random_uuid(), 'CourseDefined', 'old', $2, '{"course_id":"c1"}', $3::jsonb)`, ts.TenantID(), i+1, md); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := ts.ReadStream(ctx, "old", pges.ReadOptions{})
	if err != nil || len(raw) != 5 {
		t.Fatalf("read: %d events, %v", len(raw), err)
	}
	var got []int
	for _, e := range raw {
		got = append(got, e.SchemaVersion)
	}
	if !slices.Equal(got, []int{0, 0, 0, 0, 2}) || raw[3].Metadata.User != "u" {
		t.Fatalf("schema versions %v, metadata %+v", got, raw[3].Metadata)
	}
	all, _, err := ts.ReadAll(ctx, pges.QueryAll(), pges.QueryOptions{})
	if err != nil || len(all) != 5 || all[0].SchemaVersion != 0 {
		t.Fatalf("DCB read: %+v, %v", all, err)
	}
	rows, _ := admin.Query(ctx, `SELECT coalesce(es.event_schema_version(metadata), -1) FROM es.events WHERE tenant_id = $1 ORDER BY position`, ts.TenantID())
	sqlSide, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || !slices.Equal(sqlSide, []int32{-1, -1, -1, -1, 2}) {
		t.Fatalf("es.event_schema_version: %v, %v", sqlSide, err)
	}
	if _, err := c.Decode(raw[0]); !errors.Is(err, pges.ErrUnknownSchemaVersion) {
		t.Fatalf("decode of version 0: %v", err)
	}
}
