package tenant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/eventstore-go/pges/tenant"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { testdb.Main(m, "tenant") }

var seq atomic.Int64

// newID returns a valid tenant id not used before in this test binary.
func newID(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

// invalidIDs are rejected by ValidateID, Manager.Create and es.create_tenant.
var invalidIDs = []string{
	"",
	"a'; drop table x; --",
	"x'); DROP TABLE es.tenants; --",
	`quote"d`,
	"it's",
	"Acme",
	"ACME",
	strings.Repeat("a", 41),
	strings.Repeat("a", 1000),
	"tenañt",
	"テナント",
	"-leading-dash",
	"_leading-underscore",
	"with space",
	"dot.ted",
	"slash/ed",
	"semi;colon",
	"trailing-newline\n",
	"\nleading-newline",
	"tab\tbed",
	"percent%",
	"back\\slash",
}

// label names a subtest after id, shortening long ids.
func label(id string) string {
	if len(id) > 50 {
		return fmt.Sprintf("%d_bytes", len(id))
	}
	return strconv.Quote(id)
}

// counts returns the number of registered tenants and of es.events partitions.
func counts(t *testing.T, pool *pgxpool.Pool) (tenants, partitions int) {
	t.Helper()
	ctx := context.Background()
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM es.tenants").Scan(&tenants); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'es.events'::regclass").Scan(&partitions); err != nil {
		t.Fatal(err)
	}
	return tenants, partitions
}

func TestValidateIDAcceptsValidIDs(t *testing.T) {
	for _, id := range []string{
		"a",
		"0",
		"acme",
		"acme-corp",
		"acme_corp_2",
		"9lives",
		"a-",
		"z_",
		strings.Repeat("a", 40),
		"a" + strings.Repeat("-", 39),
	} {
		if err := tenant.ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
}

func TestValidateIDRejectsInvalidIDs(t *testing.T) {
	for _, id := range invalidIDs {
		err := tenant.ValidateID(id)
		if !errors.Is(err, pges.ErrInvalidEvent) {
			t.Errorf("ValidateID(%q) = %v, want an error matching ErrInvalidEvent", id, err)
			continue
		}
		var ie *pges.InvalidEventError
		if !errors.As(err, &ie) || ie.Index != -1 {
			t.Errorf("ValidateID(%q) = %#v, want an *InvalidEventError with Index -1", id, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "invalid tenant id") || len(msg) > 300 {
			t.Errorf("ValidateID(%q) message %q, want a short message saying \"invalid tenant id\"", id, msg)
		}
	}
}

func TestCreateRejectsInvalidIDsAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	tenantsBefore, partitionsBefore := counts(t, pool)
	for _, id := range invalidIDs {
		t.Run(label(id), func(t *testing.T) {
			got, err := m.Create(ctx, id, "bad")
			if !errors.Is(err, pges.ErrInvalidEvent) {
				t.Errorf("Create(%q) = %+v, %v; want an error matching ErrInvalidEvent", id, got, err)
			}
			if got != (tenant.Tenant{}) {
				t.Errorf("Create(%q) returned %+v with its error, want the zero Tenant", id, got)
			}
			if tn, pn := counts(t, pool); tn != tenantsBefore || pn != partitionsBefore {
				t.Errorf("after Create(%q): %d tenants, %d partitions; want %d, %d", id, tn, pn, tenantsBefore, partitionsBefore)
			}
		})
	}
}

// The SQL function guards the same rule for callers that skip the Go API.
func TestSQLCreateTenantRejectsInvalidIDs(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	tenantsBefore, partitionsBefore := counts(t, pool)
	for _, id := range invalidIDs {
		t.Run(label(id), func(t *testing.T) {
			_, err := pool.Exec(ctx, "SELECT es.create_tenant($1, 'bad')", id)
			if err = pges.TranslateError(err); !errors.Is(err, pges.ErrInvalidEvent) {
				t.Errorf("es.create_tenant(%q): %v, want an error matching ErrInvalidEvent", id, err)
			}
			if tn, pn := counts(t, pool); tn != tenantsBefore || pn != partitionsBefore {
				t.Errorf("after es.create_tenant(%q): %d tenants, %d partitions; want %d, %d", id, tn, pn, tenantsBefore, partitionsBefore)
			}
		})
	}
}

func TestCreateAndGet(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	id := newID("acme")
	tenantsBefore, partitionsBefore := counts(t, pool)

	created, err := m.Create(ctx, id, "Acme Corp")
	if err != nil {
		t.Fatal(err)
	}
	if created.ID != id || created.Name != "Acme Corp" || created.Status != "active" || created.CreatedAt.IsZero() {
		t.Fatalf("Create = %+v, want %s named Acme Corp, active, with a creation time", created, id)
	}
	// A tenant is created shared: a registry row and no partition.
	if tn, pn := counts(t, pool); tn != tenantsBefore+1 || pn != partitionsBefore {
		t.Errorf("after Create: %d tenants, %d partitions; want %d, %d", tn, pn, tenantsBefore+1, partitionsBefore)
	}
	if st, err := m.Stats(ctx, id); err != nil || st.Dedicated {
		t.Errorf("stats after Create: %+v, %v; want a shared tenant", st, err)
	}
	// Dedicating gives it partitions of its own, once.
	if moved, err := m.Dedicate(ctx, id); err != nil || !moved {
		t.Fatalf("Dedicate = %v, %v; want true", moved, err)
	}
	if moved, err := m.Dedicate(ctx, id); err != nil || moved {
		t.Fatalf("second Dedicate = %v, %v; want false", moved, err)
	}
	if st, err := m.Stats(ctx, id); err != nil || !st.Dedicated {
		t.Errorf("stats after Dedicate: %+v, %v; want a dedicated tenant", st, err)
	}
	if _, err := m.Dedicate(ctx, newID("nobody")); !errors.Is(err, pges.ErrTenantNotFound) {
		t.Errorf("Dedicate of an unknown tenant: %v", err)
	}
	if _, err := m.Dedicate(ctx, "Bad'id"); err == nil {
		t.Error("Dedicate of an invalid id: no error")
	}
	// One partition more, the refused calls made none.
	if tn, pn := counts(t, pool); tn != tenantsBefore+1 || pn != partitionsBefore+1 {
		t.Errorf("after Dedicate: %d tenants, %d partitions; want %d, %d", tn, pn, tenantsBefore+1, partitionsBefore+1)
	}

	got, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != created.ID || got.Name != created.Name || got.Status != created.Status || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("Get = %+v, want %+v", got, created)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	id := newID("twice")

	first, err := m.Create(ctx, id, "First")
	if err != nil {
		t.Fatal(err)
	}
	tenantsBefore, partitionsBefore := counts(t, pool)
	second, err := m.Create(ctx, id, "First")
	if err != nil {
		t.Fatalf("creating an existing tenant with the same settings: %v, want nil", err)
	}
	if second.ID != id || second.Name != "First" || !second.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("second Create = %+v, want the existing tenant %+v unchanged", second, first)
	}
	// Other settings are a typed error, and change nothing.
	if _, err := m.Create(ctx, id, "Second"); !errors.Is(err, pges.ErrTenantExists) {
		t.Fatalf("creating an existing tenant with another name: %v, want ErrTenantExists", err)
	}
	if got, _ := m.Get(ctx, id); got.Name != "First" {
		t.Errorf("name changed to %q", got.Name)
	}
	if tn, pn := counts(t, pool); tn != tenantsBefore || pn != partitionsBefore {
		t.Errorf("after a second Create: %d tenants, %d partitions; want %d, %d", tn, pn, tenantsBefore, partitionsBefore)
	}
}

// The lifecycle of a shared tenant and of a dedicated one; the other tenant
// is shared, and so may share the first one's leaf.
func TestLifecycle(t *testing.T) {
	t.Run("shared", func(t *testing.T) { testLifecycle(t, false) })
	t.Run("dedicated", func(t *testing.T) { testLifecycle(t, true) })
}

func testLifecycle(t *testing.T, dedicated bool) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	id, other := newID("life"), newID("other")
	for _, tid := range []string{id, other} {
		if _, err := m.Create(ctx, tid, ""); err != nil {
			t.Fatal(err)
		}
	}
	if dedicated {
		if _, err := m.Dedicate(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	store, _ := pges.New(pool, nil)
	ts := store.Tenant(id)
	ev := pges.EventData{Type: "E", Payload: json.RawMessage(`{}`), Tags: []string{"k"}}
	if _, err := ts.AppendToStream(ctx, "s", pges.NoStream, ev, ev); err != nil {
		t.Fatal(err)
	}
	if err := ts.SaveSnapshot(ctx, "s", 2, 1, json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Tenant(other).Append(ctx, []pges.EventData{ev}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats(ctx, id)
	if err != nil || st.Events != 2 || st.Streams != 1 || st.Snapshots != 1 || st.Bytes <= 0 || st.LastEventAt.IsZero() || st.Dedicated != dedicated {
		t.Fatalf("stats %+v, %v", st, err)
	}

	if got, err := m.Suspend(ctx, id); err != nil || got.Status != "suspended" {
		t.Fatalf("suspend: %+v, %v", got, err)
	}
	if _, err := ts.AppendToStream(ctx, "s", pges.Any, ev); !errors.Is(err, pges.ErrTenantSuspended) {
		t.Fatalf("append to a suspended tenant: %v", err)
	}
	if _, err := ts.Append(ctx, []pges.EventData{ev}, nil); !errors.Is(err, pges.ErrTenantSuspended) {
		t.Fatalf("DCB append to a suspended tenant: %v", err)
	}
	if events, err := ts.ReadStream(ctx, "s", pges.ReadOptions{}); err != nil || len(events) != 2 {
		t.Fatalf("read of a suspended tenant: %d events, %v", len(events), err)
	}
	if _, err := m.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.AppendToStream(ctx, "s", pges.Exactly(2), ev); err != nil {
		t.Fatalf("append after resume: %v", err)
	}
	if _, err := m.Suspend(ctx, "no-such-tenant"); !errors.Is(err, pges.ErrTenantNotFound) {
		t.Fatalf("suspend of an unknown tenant: %v", err)
	}

	_, partitionsBefore := counts(t, pool)
	if dropped, err := m.Drop(ctx, id); err != nil || !dropped {
		t.Fatalf("drop: %v, %v", dropped, err)
	}
	wantPartitions := partitionsBefore
	if dedicated {
		wantPartitions--
	}
	if _, partitions := counts(t, pool); partitions != wantPartitions {
		t.Fatalf("drop left %d event partitions, want %d", partitions, wantPartitions)
	}
	var left int
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM es.events WHERE tenant_id = $1) + (SELECT count(*) FROM es.snapshots WHERE tenant_id = $1)", id).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d rows of the dropped tenant remain (%v)", left, err)
	}
	if _, err := m.Get(ctx, id); !errors.Is(err, pges.ErrTenantNotFound) {
		t.Fatalf("get after drop: %v", err)
	}
	if _, err := ts.ReadStream(ctx, "s", pges.ReadOptions{}); !errors.Is(err, pges.ErrTenantNotFound) {
		t.Fatalf("read after drop: %v", err)
	}
	if dropped, err := m.Drop(ctx, id); err != nil || dropped {
		t.Fatalf("second drop: %v, %v; want false, nil", dropped, err)
	}
	if n, err := m.Stats(ctx, other); err != nil || n.Events != 1 {
		t.Fatalf("the other tenant after the drop: %+v, %v", n, err)
	}
}

func TestGetUnknown(t *testing.T) {
	ctx := context.Background()
	m := tenant.NewManager(testdb.Pool(t))
	for _, id := range []string{"no-such-tenant", "a'; drop table x; --", ""} {
		got, err := m.Get(ctx, id)
		if !errors.Is(err, pges.ErrTenantNotFound) {
			t.Errorf("Get(%q) = %+v, %v; want an error matching ErrTenantNotFound", id, got, err)
		}
	}
	if _, err := m.Get(ctx, "no-such-tenant"); err == nil || !strings.Contains(err.Error(), "no-such-tenant") {
		t.Errorf("Get error %v does not name the tenant", err)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	ids := []string{newID("list-b"), newID("list-a")}
	for _, id := range ids {
		if _, err := m.Create(ctx, id, "name of "+id); err != nil {
			t.Fatal(err)
		}
	}
	all, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tenants, _ := counts(t, pool)
	if len(all) != tenants {
		t.Errorf("List returned %d tenants, es.tenants has %d", len(all), tenants)
	}
	if !slices.IsSortedFunc(all, func(a, b tenant.Tenant) int { return strings.Compare(a.ID, b.ID) }) {
		t.Errorf("List is not ordered by id: %+v", all)
	}
	for _, id := range ids {
		i := slices.IndexFunc(all, func(tn tenant.Tenant) bool { return tn.ID == id })
		if i < 0 {
			t.Errorf("List does not contain %s: %+v", id, all)
		} else if all[i].Name != "name of "+id || all[i].Status != "active" {
			t.Errorf("List entry %+v, want name %q, active", all[i], "name of "+id)
		}
	}
}

func TestAppendAfterCreate(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	id := newID("append")
	if _, err := tenant.NewManager(pool).Create(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	store, err := pges.New(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := store.Tenant(id).AppendToStream(ctx, "order-1", pges.NoStream,
		pges.EventData{Type: "OrderPlaced", Payload: json.RawMessage(`{"total":42}`)})
	if err != nil {
		t.Fatalf("append to a created tenant: %v", err)
	}
	if res.StreamVersion != 1 || len(res.Positions) != 1 {
		t.Errorf("append result %+v, want version 1 and one position", res)
	}
	events, err := store.Tenant(id).ReadStream(ctx, "order-1", pges.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Type != "OrderPlaced" || events[0].Position != res.Positions[0] {
		t.Errorf("read back %+v, want the one OrderPlaced event", events)
	}

	// A tenant that was never created cannot be written to.
	_, err = store.Tenant(newID("never-created")).AppendToStream(ctx, "order-1", pges.NoStream,
		pges.EventData{Type: "OrderPlaced", Payload: json.RawMessage(`{}`)})
	if !errors.Is(err, pges.ErrTenantNotFound) {
		t.Errorf("append to an unknown tenant: %v, want an error matching ErrTenantNotFound", err)
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	src := newID("src")
	if _, err := m.Create(ctx, src, "Source"); err != nil {
		t.Fatal(err)
	}
	store, _ := pges.New(pool, nil)
	ts := store.Tenant(src)
	payloads := []string{`{"z":1,"a":[1,2.50,{"k":null}],"s":"ünï\"cødé\\n😀"}`, `{"big":12345678901234567890,"f":1.0e-7}`, `[]`, `"just a string"`}
	for i, p := range payloads {
		if _, err := ts.AppendToStream(ctx, "s", pges.Any, pges.EventData{Type: "T", Payload: json.RawMessage(p),
			Metadata: pges.Metadata{CorrelationID: "c", Extra: map[string]any{"i": i}}, Tags: []string{`a"b`, "c,d"}, SchemaVersion: i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.Append(ctx, []pges.EventData{{Type: "D", Payload: json.RawMessage(`{}`), Tags: []string{"dcb"}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.DeleteStream(ctx, "s", pges.Any); err != nil {
		t.Fatal(err)
	}
	if err := ts.SaveSnapshot(ctx, "s", 2, 3, json.RawMessage(`{"state":[1,2]}`)); err != nil {
		t.Fatal(err)
	}

	var first bytes.Buffer
	res, err := m.Export(ctx, src, &first)
	if err != nil || res.Events != 6 || res.Snapshots != 1 {
		t.Fatalf("export: %+v, %v", res, err)
	}
	dst := newID("dst")
	imp, err := m.Import(ctx, bytes.NewReader(first.Bytes()), tenant.ImportOptions{Tenant: dst})
	if err != nil || imp.Events != 6 || imp.Snapshots != 1 || imp.Tenant != dst {
		t.Fatalf("import: %+v, %v", imp, err)
	}
	moved, _, err := store.Tenant(dst).ReadAll(ctx, pges.Query{{Types: []string{"T"}}}, pges.QueryOptions{})
	if err != nil || len(moved) != 4 || moved[0].SchemaVersion != 1 || moved[3].SchemaVersion != 4 {
		t.Fatalf("imported events and their schema versions: %+v, %v", moved, err)
	}
	var second bytes.Buffer
	if _, err := m.Export(ctx, dst, &second); err != nil {
		t.Fatal(err)
	}
	// Every line but the header (tenant id, export time) is identical once
	// the positions are set aside: same payloads, metadata, tags, ids and
	// times, in the same order; the positions are new but in the same order.
	position := regexp.MustCompile(`"position":(\d+),`)
	a, b := strings.Split(first.String(), "\n"), strings.Split(second.String(), "\n")
	if len(a) != len(b) {
		t.Fatalf("%d lines exported, %d after the round trip", len(a), len(b))
	}
	var lastA, lastB int64
	for i := 1; i < len(a); i++ {
		if position.ReplaceAllString(a[i], "") != position.ReplaceAllString(b[i], "") {
			t.Fatalf("line %d changed:\n%s\n%s", i+1, a[i], b[i])
		}
		if pa, pb := position.FindStringSubmatch(a[i]), position.FindStringSubmatch(b[i]); pa != nil {
			na, _ := strconv.ParseInt(pa[1], 10, 64)
			nb, _ := strconv.ParseInt(pb[1], 10, 64)
			if na <= lastA || nb <= lastB {
				t.Fatalf("line %d: positions out of order", i+1)
			}
			lastA, lastB = na, nb
		}
	}
	if lastB == 0 {
		t.Fatal("no positions in the export")
	}
	// The imported tenant works: the stream is deleted, DCB sees its event.
	dts := store.Tenant(dst)
	if _, err := dts.ReadStream(ctx, "s", pges.ReadOptions{}); !errors.Is(err, pges.ErrStreamDeleted) {
		t.Fatalf("imported deleted stream: %v", err)
	}
	if events, _, err := dts.ReadAll(ctx, pges.Tags("dcb"), pges.QueryOptions{}); err != nil || len(events) != 1 {
		t.Fatalf("imported DCB event: %d, %v", len(events), err)
	}
	// New appends get positions after the imported ones.
	if r, err := dts.Append(ctx, []pges.EventData{{Type: "New", Payload: json.RawMessage(`{}`)}}, nil); err != nil || r.Positions[0] <= lastB {
		t.Fatalf("append after import: %+v, %v", r, err)
	}

	// A non-empty tenant is refused unless merging; nothing changes.
	before, _ := m.Stats(ctx, dst)
	if _, err := m.Import(ctx, bytes.NewReader(first.Bytes()), tenant.ImportOptions{Tenant: dst}); !errors.Is(err, tenant.ErrTenantNotEmpty) {
		t.Fatalf("import into a non-empty tenant: %v", err)
	}
	if after, _ := m.Stats(ctx, dst); after.Events != before.Events {
		t.Fatalf("a refused import wrote %d events", after.Events-before.Events)
	}
	// Merging into a tenant with data: new positions, exported order kept,
	// and a second merge adds nothing.
	mix := newID("mix")
	if _, err := m.Create(ctx, mix, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Tenant(mix).Append(ctx, []pges.EventData{{Type: "Own", Payload: json.RawMessage(`{}`)}}, nil); err != nil {
		t.Fatal(err)
	}
	for round, want := range []int64{6, 0} {
		got, err := m.Import(ctx, bytes.NewReader(first.Bytes()), tenant.ImportOptions{Tenant: mix, Merge: true})
		if err != nil || got.Events != want || got.Skipped != 6-want {
			t.Fatalf("merge %d: %+v, %v", round, got, err)
		}
	}
	merged, _, err := store.Tenant(mix).ReadAll(ctx, pges.QueryAll(), pges.QueryOptions{})
	if err != nil || len(merged) != 7 || merged[0].Type != "Own" || merged[6].Type != "$tombstone" || string(merged[1].Payload) != `{"a": [1, 2.50, {"k": null}], "s": "ünï\"cødé\\n😀", "z": 1}` {
		t.Fatalf("merged log: %d events, %v; first payload %s", len(merged), err, merged[1].Payload)
	}

	// A truncated or tampered export writes nothing, not even the tenant.
	lines := strings.Split(strings.TrimSpace(first.String()), "\n")
	for name, body := range map[string]string{
		"truncated":     strings.Join(lines[:4], "\n"),
		"wrong count":   strings.Join(append(lines[:3], lines[len(lines)-2:]...), "\n"),
		"malformed":     strings.Join(append([]string{lines[0], `{"kind":"event",`}, lines[1:]...), "\n"),
		"unknown kind":  strings.Join(append([]string{lines[0], `{"kind":"surprise"}`}, lines[1:]...), "\n"),
		"not an export": "hello",
	} {
		fresh := newID("bad")
		if _, err := m.Import(ctx, strings.NewReader(body), tenant.ImportOptions{Tenant: fresh}); err == nil {
			t.Errorf("%s: import succeeded", name)
		}
		if _, err := m.Get(ctx, fresh); !errors.Is(err, pges.ErrTenantNotFound) {
			t.Errorf("%s: the failed import left tenant %s behind", name, fresh)
		}
	}
}

// Subscriptions travel with a tenant: each resumes after the last event the
// source had delivered every event up to, by event id (transaction ids and
// positions do not travel).
func TestExportImportCarriesSubscriptions(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	src := newID("subsrc")
	if _, err := m.Create(ctx, src, ""); err != nil {
		t.Fatal(err)
	}
	store, _ := pges.New(pool, nil)
	var ids []uuid.UUID
	for i := range 10 {
		e := pges.EventData{ID: uuid.Must(uuid.NewV7()), Type: "T", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
		if _, err := store.Tenant(src).Append(ctx, []pges.EventData{e}, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// "half" has delivered the first six events; "fresh" nothing.
	_, err = conn.Exec(ctx, `SELECT set_config('es.tenant_id', $1, false), es.subscribe($1, 'half', '{"types":["T"]}'), es.subscribe($1, 'fresh', '{}')`, src)
	if err == nil {
		_, err = conn.Exec(ctx, `SELECT es.subscription_ack($1, 'half', tx_id, position) FROM es.events
			WHERE tenant_id = $1 AND event_id = $2`, src, ids[5])
	}
	if err == nil { // "half" parked the third event
		_, err = conn.Exec(ctx, `SELECT es.park_event($1, 'half', position, 'boom', 3) FROM es.events
			WHERE tenant_id = $1 AND event_id = $2`, src, ids[2])
	}
	conn.Exec(ctx, "RESET es.tenant_id")
	conn.Release()
	if err != nil {
		t.Fatal(err)
	}

	var export bytes.Buffer
	if res, err := m.Export(ctx, src, &export); err != nil || res.Subscriptions != 2 {
		t.Fatalf("export: %+v, %v", res, err)
	}
	dst := newID("subdst")
	if imp, err := m.Import(ctx, bytes.NewReader(export.Bytes()), tenant.ImportOptions{Tenant: dst}); err != nil || imp.Subscriptions != 2 {
		t.Fatalf("import: %+v, %v", imp, err)
	}
	// Dead letters travel, by event id.
	if dead, err := store.Tenant(dst).DeadLetters(ctx, "half"); err != nil || len(dead) != 1 || dead[0].EventID != ids[2] ||
		dead[0].Error != "boom" || dead[0].Attempts != 3 {
		t.Fatalf("imported dead letters: %+v, %v", dead, err)
	}
	deliveredIDs := func(name string) []uuid.UUID {
		var got []uuid.UUID
		runCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_ = store.Tenant(dst).Subscribe(runCtx, pges.SubscriptionConfig{Name: name, PollInterval: time.Minute,
			Handler: func(_ context.Context, _ pgx.Tx, e pges.RecordedEvent) error {
				if got = append(got, e.ID); len(got) == 10 || name == "half" && len(got) == 4 {
					time.AfterFunc(200*time.Millisecond, cancel) // after the batch commits; more would show up meanwhile
				}
				return nil
			}})
		return got
	}
	if got := deliveredIDs("half"); !slices.Equal(got, ids[6:]) {
		t.Fatalf("half resumed with %v, want %v", got, ids[6:])
	}
	if got := deliveredIDs("fresh"); !slices.Equal(got, ids) {
		t.Fatalf("fresh delivered %v, want all 10", got)
	}

	// A subscription line missing from the export: refused, nothing written.
	lines := strings.Split(export.String(), "\n")
	var cut []string
	for _, l := range lines {
		if !strings.Contains(l, `"kind":"subscription"`) || strings.Contains(l, "fresh") {
			cut = append(cut, l)
		}
	}
	other := newID("subcut")
	if _, err := m.Import(ctx, strings.NewReader(strings.Join(cut, "\n")), tenant.ImportOptions{Tenant: other}); err == nil || !strings.Contains(err.Error(), "subscriptions") {
		t.Fatalf("import of a truncated export: %v", err)
	}
	if _, err := m.Get(ctx, other); !errors.Is(err, pges.ErrTenantNotFound) {
		t.Fatalf("a refused import left tenant %s behind: %v", other, err)
	}
}

// Dedicating a shared tenant moves its rows unchanged (positions,
// transaction ids, times, bytes), leaves its leaf-mates alone, and the
// store goes on from where the tenant was: expected versions and append
// conditions see the moved events.
func TestDedicateMovesRowsUnchanged(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	id, other := newID("move"), newID("stay")
	for _, tid := range []string{id, other} {
		if _, err := m.Create(ctx, tid, ""); err != nil {
			t.Fatal(err)
		}
	}
	store, _ := pges.New(pool, nil)
	ts := store.Tenant(id)
	tagged := pges.EventData{Type: "E", Payload: json.RawMessage(`{"a":[1,2.50,"x"]}`), Metadata: pges.Metadata{User: "u1"}, Tags: []string{"course:c1"}}
	if _, err := ts.AppendToStream(ctx, "s", pges.NoStream, tagged, tagged); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Append(ctx, []pges.EventData{tagged}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ts.SaveSnapshot(ctx, "s", 2, 1, json.RawMessage(`{"n":2}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Tenant(other).Append(ctx, []pges.EventData{tagged}, nil); err != nil {
		t.Fatal(err)
	}
	rows := func(tid string) string {
		var s string
		if err := pool.QueryRow(ctx, `SELECT
			coalesce((SELECT string_agg(e::text, E'\n' ORDER BY position) FROM es.events e WHERE tenant_id = $1), '') || '|' ||
			coalesce((SELECT string_agg(s::text, E'\n' ORDER BY stream_id, stream_version) FROM es.snapshots s WHERE tenant_id = $1), '')`, tid).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before, otherBefore := rows(id), rows(other)
	if moved, err := m.Dedicate(ctx, id); err != nil || !moved {
		t.Fatalf("Dedicate = %v, %v", moved, err)
	}
	if after := rows(id); after != before {
		t.Fatalf("rows changed by Dedicate:\n%s\nwant\n%s", after, before)
	}
	if after := rows(other); after != otherBefore {
		t.Fatal("the other tenant's rows changed")
	}
	var inShared, inOwn int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM es."events$shared" WHERE tenant_id = $1),
		(SELECT count(*) FROM es.events WHERE tenant_id = $1 AND tableoid = format('es.%I', 'events_' || $1)::regclass)`, id).Scan(&inShared, &inOwn); err != nil {
		t.Fatal(err)
	}
	if inShared != 0 || inOwn != 3 {
		t.Fatalf("after Dedicate: %d events in the shared partition, %d in the tenant's own; want 0 and 3", inShared, inOwn)
	}
	if _, err := ts.AppendToStream(ctx, "s", pges.NoStream, tagged); !errors.Is(err, pges.ErrWrongExpectedVersion) {
		t.Fatalf("append as a new stream after Dedicate: %v, want ErrWrongExpectedVersion", err)
	}
	if _, err := ts.Append(ctx, []pges.EventData{tagged}, &pges.AppendCondition{FailIfEventsMatch: pges.Tags("course:c1")}); !errors.Is(err, pges.ErrAppendConditionViolated) {
		t.Fatalf("conditional append after Dedicate: %v, want ErrAppendConditionViolated", err)
	}
	snap, ok, err := ts.LoadSnapshot(ctx, "s")
	if err != nil || !ok || snap.StreamVersion != 2 {
		t.Fatalf("snapshot after Dedicate: %+v, %v", snap, err)
	}
}

// A tenant without rows is dedicated without a scan of the shared
// partitions under an ACCESS EXCLUSIVE lock: the constraint validated
// beforehand (under a lock that lets reads and writes through) proves that
// they hold none of its rows, and PostgreSQL says so when it attaches the
// partitions. The constraints are gone afterwards.
func TestDedicateConcurrentlySkipsTheLockedScan(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	id := newID("fresh")
	if _, err := tenant.NewManager(pool).Create(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET client_min_messages = debug1"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CALL es.dedicate_tenant_concurrently($1)", id); err != nil {
		t.Fatal(err)
	}
	for _, parent := range []string{"events$shared", "snapshots$shared"} {
		want := fmt.Sprintf("updated partition constraint for default partition %q is implied by existing constraints", parent)
		if !slices.Contains(notices, want) {
			t.Errorf("no notice %q among %q", want, notices)
		}
	}
	var constraints int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE conname LIKE 'dedicated$%'`).Scan(&constraints); err != nil || constraints != 0 {
		t.Errorf("%d dedicated$ constraints left (%v)", constraints, err)
	}
	if st, err := tenant.NewManager(pool).Stats(ctx, id); err != nil || !st.Dedicated {
		t.Errorf("stats after dedicate_tenant_concurrently: %+v, %v", st, err)
	}
	// Inside a transaction block it cannot commit its steps.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	other := newID("fresh")
	if _, err := tx.Exec(ctx, "SELECT es.create_tenant($1)", other); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "CALL es.dedicate_tenant_concurrently($1)", other); err == nil || !strings.Contains(err.Error(), "transaction termination") {
		t.Errorf("CALL inside a transaction: %v, want invalid transaction termination", err)
	}
}

// An es.dedicate_tenant_concurrently interrupted after its first step
// leaves a constraint that keeps the tenant's rows out of the shared
// partitions. Drop removes it, and so does a create of the same id (which
// could otherwise never write).
func TestLeftoverDedicationConstraintsGoAway(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	m := tenant.NewManager(pool)
	store, _ := pges.New(pool, nil)
	leftover := func(id string) {
		t.Helper()
		for _, table := range []string{`es."events$shared"`, `es."snapshots$shared"`} {
			if _, err := pool.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s CHECK (tenant_id <> '%s') NOT VALID`,
				table, pgx.Identifier{"dedicated$" + id}.Sanitize(), id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	constraints := func(id string) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_constraint WHERE conname = $1", "dedicated$"+id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	id := newID("left")
	if _, err := m.Create(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	leftover(id)
	if _, err := store.Tenant(id).Append(ctx, []pges.EventData{{Type: "E", Payload: json.RawMessage(`{}`)}}, nil); !errors.Is(err, pges.ErrTenantDedicating) {
		t.Fatalf("an append behind the leftover constraint: %v, want ErrTenantDedicating", err)
	}
	if _, err := m.Drop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := constraints(id); n != 0 {
		t.Fatalf("%d constraints left after Drop", n)
	}

	leftover(id) // as if left by a drop of an older version
	if _, err := m.Create(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if n := constraints(id); n != 0 {
		t.Fatalf("%d constraints left after Create", n)
	}
	if _, err := store.Tenant(id).Append(ctx, []pges.EventData{{Type: "E", Payload: json.RawMessage(`{}`)}}, nil); err != nil {
		t.Fatalf("append after Create: %v", err)
	}
}
