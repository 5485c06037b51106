package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/bench"
	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/eventstore-go/pges/tenant"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { testdb.Main(m, "esadmin") }

// result is what one esadmin invocation produced.
type result struct {
	code           int
	stdout, stderr string
}

// esadmin runs the CLI against the package's test database: args follow
// "esadmin --database-url URL".
func esadmin(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runRaw(t, stdin, append([]string{"--database-url", testdb.URL(t)}, args...)...)
}

// runRaw runs the CLI with exactly args after the program name.
func runRaw(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, append([]string{"esadmin"}, args...), strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// wantOK fails the test unless the command succeeded quietly on stderr.
func wantOK(t *testing.T, r result) {
	t.Helper()
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0; stderr: %s", r.code, r.stderr)
	}
	if r.stderr != "" {
		t.Fatalf("stderr %q, want nothing", r.stderr)
	}
}

// wantError fails the test unless the command exited with code, printed
// nothing on stdout and exactly one "esadmin: ..." line on stderr containing
// every one of wants.
func wantError(t *testing.T, r result, code int, wants ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d; stdout: %q; stderr: %q", r.code, code, r.stdout, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing on failure", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "esadmin: ") || !strings.HasSuffix(r.stderr, "\n") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr %q, want exactly one line starting with \"esadmin: \"", r.stderr)
	}
	for _, bad := range []string{"goroutine", "panic", "\r"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("stderr %q contains %q", r.stderr, bad)
		}
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q does not mention %q", r.stderr, w)
		}
	}
}

func pool(t *testing.T) *pgxpool.Pool { return testdb.Pool(t) }

func count(t *testing.T, p *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := p.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func countEvents(t *testing.T, p *pgxpool.Pool, tenantID string) int {
	t.Helper()
	return count(t, p, "SELECT count(*) FROM es.events WHERE tenant_id = $1", tenantID)
}

// jsonLines decodes every non-empty line of s into a T.
func jsonLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, v)
	}
	return out
}

func TestMigrateStatusVersionAndUp(t *testing.T) {
	files, err := fs.Glob(pges.Migrations(), "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v %v", files, err)
	}
	last := files[len(files)-1]
	latest, err := strconv.ParseInt(last[:strings.IndexByte(last, '_')], 10, 64)
	if err != nil {
		t.Fatal(err)
	}

	r := esadmin(t, "", "migrate", "status")
	wantOK(t, r)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != len(files)+1 || !strings.HasPrefix(lines[0], "VERSION") {
		t.Fatalf("status output:\n%s\nwant a header and %d rows", r.stdout, len(files))
	}
	for i, f := range files {
		row := strings.Fields(lines[i+1])
		v := strings.TrimLeft(f[:strings.IndexByte(f, '_')], "0") // the version its file name gives
		if len(row) < 3 || row[0] != v || row[1] != "applied" || !strings.HasSuffix(lines[i+1], f) {
			t.Errorf("status row %q, want version %s applied for %s", lines[i+1], v, f)
		}
	}

	r = esadmin(t, "", "migrate", "version")
	wantOK(t, r)
	if got := strings.TrimSpace(r.stdout); got != strconv.FormatInt(latest, 10) {
		t.Errorf("version %q, want %d", got, latest)
	}

	r = esadmin(t, "", "migrate", "up")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("migrate up on a current schema printed %q, want \"nothing to do\"", r.stdout)
	}
}

func TestTenantCreateListShow(t *testing.T) {
	p := pool(t)
	const id = "cli-acme"

	r := esadmin(t, "", "tenant", "create", "--name", "Acme Corp", id)
	wantOK(t, r)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "TENANT") {
		t.Fatalf("create output:\n%s\nwant a header and one row", r.stdout)
	}
	if f := strings.Fields(lines[1]); len(f) < 5 || f[0] != id || f[1] != "active" || !strings.HasSuffix(lines[1], "Acme Corp") {
		t.Errorf("create row %q, want %s active ... Acme Corp", lines[1], id)
	}

	// Creating it again with other settings fails; with the same, it
	// succeeds and returns the tenant unchanged.
	wantError(t, esadmin(t, "", "tenant", "create", "--name", "Other Name", id), exitFailure, "exists")
	r = esadmin(t, "", "tenant", "create", "--name", "Acme Corp", "--json", id)
	wantOK(t, r)
	got := jsonLines[tenant.Tenant](t, r.stdout)
	if len(got) != 1 || got[0].ID != id || got[0].Name != "Acme Corp" || got[0].Status != "active" || got[0].CreatedAt.IsZero() {
		t.Fatalf("second create --json = %+v, want the existing tenant %s named Acme Corp", got, id)
	}
	if n := count(t, p, "SELECT count(*) FROM es.tenants WHERE tenant_id = $1", id); n != 1 {
		t.Errorf("%d rows for %s, want 1", n, id)
	}

	r = esadmin(t, "", "tenant", "list", "--json")
	wantOK(t, r)
	found := false
	for _, tn := range jsonLines[tenant.Tenant](t, r.stdout) {
		if tn.ID == id {
			found = tn.Name == "Acme Corp"
		}
	}
	if !found {
		t.Errorf("tenant list --json:\n%s\ndoes not list %s named Acme Corp", r.stdout, id)
	}

	r = esadmin(t, "", "tenant", "show", "--json", id)
	wantOK(t, r)
	if shown := jsonLines[tenant.Tenant](t, r.stdout); len(shown) != 1 || shown[0].ID != id || !shown[0].CreatedAt.Equal(got[0].CreatedAt) {
		t.Errorf("tenant show --json = %+v, want %+v", shown, got[0])
	}
}

func TestTenantShowUnknown(t *testing.T) {
	r := esadmin(t, "", "tenant", "show", "no-such-tenant")
	wantError(t, r, exitFailure, "no-such-tenant", "not found")
}

func TestTenantCreateRejectsBadIDs(t *testing.T) {
	p := pool(t)
	for _, id := range []string{
		"Bad;DROP",
		"",
		strings.Repeat("a", 41),
		"x'; DROP TABLE es.tenants; --",
		"-leading-dash",
		"with space",
		"tenañt",
	} {
		t.Run(strconv.Quote(id), func(t *testing.T) {
			before := count(t, p, "SELECT count(*) FROM es.tenants")
			// "--" ends the flags, so "-leading-dash" reaches the id check.
			r := esadmin(t, "", "tenant", "create", "--name", "bad", "--", id)
			wantError(t, r, exitUsage, "invalid tenant id")
			if after := count(t, p, "SELECT count(*) FROM es.tenants"); after != before {
				t.Errorf("es.tenants has %d rows, had %d: a rejected id created something", after, before)
			}
		})
	}
}

func TestEventsAppendAndRead(t *testing.T) {
	p := pool(t)
	id := testdb.NewTenant(t, p)
	in := `{"type":"OrderPlaced","payload":{"total":42},"tags":["customer:7"],"metadata":{"correlation_id":"req-1"}}

{"type":"OrderPaid","payload":{"amount":42},"schema_version":2}
{"type":"OrderShipped"}
`
	r := esadmin(t, in, "events", "append", "-t", id, "--stream", "order-1", "--expected-version", "no-stream")
	wantOK(t, r)
	var res struct {
		StreamVersion int64   `json:"stream_version"`
		Positions     []int64 `json:"positions"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("append output %q: %v", r.stdout, err)
	}
	if res.StreamVersion != 3 || len(res.Positions) != 3 {
		t.Fatalf("append result %+v, want version 3 and 3 positions", res)
	}

	r = esadmin(t, "", "events", "read", "-t", id, "--stream", "order-1")
	wantOK(t, r)
	events := jsonLines[pges.RecordedEvent](t, r.stdout)
	wantTypes := []string{"OrderPlaced", "OrderPaid", "OrderShipped"}
	if len(events) != len(wantTypes) {
		t.Fatalf("read %d events, want %d:\n%s", len(events), len(wantTypes), r.stdout)
	}
	for i, e := range events {
		if e.StreamVersion != int64(i+1) || e.Type != wantTypes[i] || e.StreamID != "order-1" || e.Position != res.Positions[i] {
			t.Errorf("event %d = %s@%d in %q at %d, want %s@%d in order-1 at %d", i, e.Type, e.StreamVersion, e.StreamID, e.Position, wantTypes[i], i+1, res.Positions[i])
		}
	}
	if string(events[0].Payload) != `{"total": 42}` && string(events[0].Payload) != `{"total":42}` {
		t.Errorf("payload %s, want {\"total\":42}", events[0].Payload)
	}
	if len(events[0].Tags) != 1 || events[0].Tags[0] != "customer:7" || events[0].Metadata.CorrelationID != "req-1" {
		t.Errorf("tags %v metadata %+v, want [customer:7] and correlation id req-1", events[0].Tags, events[0].Metadata)
	}
	if string(events[2].Payload) != "{}" {
		t.Errorf("event without payload stored %s, want {}", events[2].Payload)
	}
	if events[0].SchemaVersion != 1 || events[1].SchemaVersion != 2 || !strings.Contains(r.stdout, `"schema_version":2`) {
		t.Errorf("schema versions %d, %d, want 1 and 2 (read prints them so that they append back)", events[0].SchemaVersion, events[1].SchemaVersion)
	}
	if n := countEvents(t, p, id); n != 3 {
		t.Errorf("%d rows in es.events, want 3", n)
	}

	// A stale expected version is a conflict: exit 3, nothing appended.
	r = esadmin(t, `{"type":"OrderClosed"}`+"\n", "events", "append", "-t", id, "--stream", "order-1", "--expected-version", "1")
	wantError(t, r, exitConflict, "wrong expected version", "order-1")
	if n := countEvents(t, p, id); n != 3 {
		t.Errorf("%d rows in es.events after a conflict, want 3", n)
	}

	// The right expected version appends.
	r = esadmin(t, `{"type":"OrderClosed"}`+"\n", "events", "append", "-t", id, "--stream", "order-1", "--expected-version", "3")
	wantOK(t, r)
	if !strings.Contains(r.stdout, `"stream_version":4`) {
		t.Errorf("append output %q, want stream_version 4", r.stdout)
	}
}

func TestEventsReadBackwardsLimit(t *testing.T) {
	p := pool(t)
	id := testdb.NewTenant(t, p)
	in := "{\"type\":\"A\"}\n{\"type\":\"B\"}\n{\"type\":\"C\"}\n"
	wantOK(t, esadmin(t, in, "events", "append", "-t", id, "--stream", "s-1", "--expected-version", "no-stream"))

	r := esadmin(t, "", "events", "read", "-t", id, "--stream", "s-1", "--backwards", "--limit", "1")
	wantOK(t, r)
	events := jsonLines[pges.RecordedEvent](t, r.stdout)
	if len(events) != 1 || events[0].Type != "C" || events[0].StreamVersion != 3 {
		t.Fatalf("read --backwards --limit 1:\n%s\nwant only C@3", r.stdout)
	}

	r = esadmin(t, "", "events", "read", "-t", id, "--stream", "s-1", "--from", "2", "--limit", "1")
	wantOK(t, r)
	if events := jsonLines[pges.RecordedEvent](t, r.stdout); len(events) != 1 || events[0].Type != "B" || events[0].StreamVersion != 2 {
		t.Fatalf("read --from 2 --limit 1:\n%s\nwant only B@2", r.stdout)
	}
}

func TestEventsAppendMalformedLine(t *testing.T) {
	p := pool(t)
	id := testdb.NewTenant(t, p)
	in := "{\"type\":\"Good\",\"payload\":{}}\n{\"type\":\n{\"type\":\"AlsoGood\"}\n"
	r := esadmin(t, in, "events", "append", "-t", id, "--stream", "s-1", "--expected-version", "no-stream")
	wantError(t, r, exitUsage, "line 2", "nothing was appended")
	if n := countEvents(t, p, id); n != 0 {
		t.Errorf("%d events appended from malformed input, want 0", n)
	}
}

func TestEventsAppendUnknownTenant(t *testing.T) {
	r := esadmin(t, `{"type":"X"}`+"\n", "events", "append", "-t", "no-such-tenant", "--stream", "s-1")
	wantError(t, r, exitFailure, "no-such-tenant")
}

func TestUsageErrors(t *testing.T) {
	id := testdb.NewTenant(t, pool(t))
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown global flag", []string{"--bogus", "tenant", "list"}, "bogus"},
		{"bad connect timeout", []string{"--connect-timeout", "soon", "tenant", "list"}, "connect-timeout"},
		{"create without id", []string{"tenant", "create"}, "one tenant id"},
		{"create with flag after id", []string{"tenant", "create", "acme", "--name", "Acme"}, "one tenant id"},
		{"bad expected version", []string{"events", "append", "-t", id, "--stream", "s", "--expected-version", "-5"}, "expected-version"},
		{"negative limit", []string{"events", "read", "-t", id, "--stream", "s", "--limit", "-1"}, "negative"},
		{"missing tenant", []string{"events", "read", "--stream", "s"}, "--tenant"},
		{"bench without duration or count", []string{"bench", "--duration", "0s"}, "--count"},
		{"bench bad clients", []string{"bench", "--count", "1", "--clients", "0"}, "--clients"},
		{"bench bad layout", []string{"bench", "--count", "1", "--tenants", "1", "--layout", "hybrid"}, "--layout \"hybrid\": use one of shared, dedicated"},
		{"bench layout without tenants", []string{"bench", "--count", "1", "--layout", "dedicated"}, "--layout applies only with --tenants"},
		{"bench large tenant without tenants", []string{"bench", "--count", "1", "--large-tenant-events", "10"}, "--large-tenant-events applies only with --tenants"},
		{"bench hash partitions are gone", []string{"bench", "--count", "1", "--tenants", "1", "--hash-partitions", "8"}, "hash-partitions"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("ESADMIN_TENANT", "")
			wantError(t, esadmin(t, "", c.args...), exitUsage, c.want)
		})
	}
}

// Flag errors of subcommands (a missing required flag, an unknown flag, a
// flag value that does not parse) and unknown commands are usage errors too:
// exit 2 with one line on stderr and nothing on stdout.
func TestSubcommandFlagErrorsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"events", "read", "-t", "x"},
		{"events", "read", "-t", "x", "--stream", "s", "--bogus"},
		{"events", "read", "-t", "x", "--stream", "s", "--limit", "many"},
		{"tenant", "create", "-leading-dash"},
		{"tenant", "frobnicate"},
		{"frobnicate"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			wantError(t, esadmin(t, "", args...), exitUsage)
		})
	}
}

func TestBadDatabaseURL(t *testing.T) {
	r := runRaw(t, "", "--database-url", "postgres://%zz", "tenant", "list")
	wantError(t, r, exitUsage, "--database-url")
}

func TestUnreachableServer(t *testing.T) {
	start := time.Now()
	r := runRaw(t, "", "--database-url", "postgres://postgres:s3cret@127.0.0.1:1/x?sslmode=disable", "--connect-timeout", "2s", "tenant", "list")
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("gave up after %v, want within a few seconds", elapsed)
	}
	wantError(t, r, exitFailure, "cannot reach PostgreSQL", "127.0.0.1:1")
	if strings.Contains(r.stderr, "s3cret") {
		t.Errorf("stderr %q shows the password", r.stderr)
	}
}

func TestBenchJSON(t *testing.T) {
	r := esadmin(t, "", "bench", "--count", "20", "--scenarios", "stream-append-1", "--clients", "1", "--json")
	wantOK(t, r)
	var results []bench.Result
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
		t.Fatalf("bench --json output %q: %v", r.stdout, err)
	}
	if len(results) != 1 {
		t.Fatalf("%d results, want 1: %+v", len(results), results)
	}
	res := results[0]
	if res.Scenario != "stream-append-1" || res.Clients != 1 || res.Calls != 20 || res.Events <= 0 {
		t.Errorf("result %+v, want stream-append-1, 1 client, 20 calls and some events", res)
	}
	if res.Baseline == nil || res.Baseline.Calls != 20 || res.Ratio <= 0 || res.EventsPerSec <= 0 {
		t.Errorf("result %+v (baseline %+v), want a 20-call baseline and a positive ratio", res, res.Baseline)
	}
}

// bench --tenants in the dedicated layout: every scenario under its
// name, the bench tenants dedicated, the large tenants dropped.
func TestBenchTenants(t *testing.T) {
	r := esadmin(t, "", "bench", "--count", "2", "--tenants", "1,2", "--layout", "dedicated", "--large-tenant-events", "300", "--json")
	wantOK(t, r)
	var results []bench.Result
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
		t.Fatalf("bench --tenants --json output %q: %v", r.stdout, err)
	}
	var names []string
	for _, res := range results {
		names = append(names, res.Scenario)
	}
	got := strings.Join(names, "\n")
	for _, want := range []string{"tenant-create (2 tenants, dedicated)", "stream-append-1 (2 tenants, dedicated)", "tenant-drop (1 tenants, dedicated)",
		"tenant-dedicate (2 tenants, dedicated)", "tenant-drop-300-events (2 tenants, shared)", "tenant-drop-300-events (2 tenants, dedicated)"} {
		if !strings.Contains(got, want) {
			t.Errorf("no result %q in\n%s", want, got)
		}
	}
	p := pool(t)
	if n := count(t, p, "SELECT count(*) FROM es.tenants WHERE tenant_id LIKE 'bench\\_t\\_%' AND es.is_dedicated(tenant_id)"); n != 2 {
		t.Errorf("%d dedicated bench_t_* tenants, want 2", n)
	}
	if n := count(t, p, "SELECT count(*) FROM es.events WHERE tenant_id LIKE 'bench\\_large%'"); n != 0 {
		t.Errorf("%d events of the large tenants left", n)
	}
}

func TestTenantLifecycleCommands(t *testing.T) {
	p := pool(t)
	const id = "cli-life"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	wantOK(t, esadmin(t, `{"type":"A","payload":{}}`+"\n", "events", "append", "-t", id, "--stream", "s"))

	r := esadmin(t, "", "tenant", "show", id)
	wantOK(t, r)
	shown := map[string]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			shown[f[0]] = f[1]
		}
	}
	if shown["events"] != "1" || shown["streams"] != "1" || shown["status"] != "active" || shown["snapshots"] != "0" || shown["partitions"] != "shared" {
		t.Errorf("tenant show:\n%s\nwant 1 event, 1 stream, 0 snapshots, active, shared", r.stdout)
	}

	// dedicate moves it to partitions of its own, once; an unknown or
	// invalid id changes nothing.
	r = esadmin(t, "", "tenant", "dedicate", id)
	if r.code != exitOK || !strings.Contains(r.stdout, "now has partitions of its own") {
		t.Fatalf("dedicate: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r = esadmin(t, "", "tenant", "dedicate", id); r.code != exitOK || !strings.Contains(r.stdout, "already") {
		t.Fatalf("second dedicate: exit %d, stdout %q", r.code, r.stdout)
	}
	if !strings.Contains(esadmin(t, "", "tenant", "show", id).stdout, "dedicated") || countEvents(t, p, id) != 1 {
		t.Fatal("tenant show after dedicate: not dedicated, or the event moved away")
	}
	wantError(t, esadmin(t, "", "tenant", "dedicate", "no-such-tenant"), exitFailure, "not found")
	wantError(t, esadmin(t, "", "tenant", "dedicate", "Bad'Id"), exitUsage, "invalid tenant id")
	const big = "cli-life-big"
	wantOK(t, esadmin(t, "", "tenant", "create", "--dedicated", big))
	if n := count(t, p, "SELECT count(*) FROM pg_inherits WHERE inhrelid = to_regclass(format('es.%I', 'events_' || $1))", big); n != 1 {
		t.Errorf("tenant create --dedicated: %d partitions of its own, want 1", n)
	}
	wantOK(t, esadmin(t, "", "tenant", "drop", "--yes", big))

	wantOK(t, esadmin(t, "", "tenant", "suspend", id))
	wantError(t, esadmin(t, `{"type":"B","payload":{}}`+"\n", "events", "append", "-t", id, "--stream", "s"), exitFailure, "suspended")
	wantOK(t, esadmin(t, "", "events", "read", "-t", id, "--stream", "s"))
	wantOK(t, esadmin(t, "", "tenant", "resume", id))
	wantOK(t, esadmin(t, `{"type":"B","payload":{}}`+"\n", "events", "append", "-t", id, "--stream", "s"))
	wantError(t, esadmin(t, "", "tenant", "suspend", "no-such-tenant"), exitFailure, "not found")

	// drop asks first; a wrong answer or no answer drops nothing.
	r = esadmin(t, "nope\n", "tenant", "drop", id)
	if r.code != exitUsage || countEvents(t, p, id) != 2 {
		t.Fatalf("unconfirmed drop: exit %d, %d events left; stderr %q", r.code, countEvents(t, p, id), r.stderr)
	}
	r = esadmin(t, id+"\n", "tenant", "drop", id)
	if r.code != exitOK || !strings.Contains(r.stdout, "dropped tenant "+id) {
		t.Fatalf("confirmed drop: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if n := count(t, p, "SELECT count(*) FROM es.tenants WHERE tenant_id = $1", id); n != 0 || countEvents(t, p, id) != 0 {
		t.Fatalf("after drop: %d tenant rows, %d events", n, countEvents(t, p, id))
	}
	r = esadmin(t, "", "tenant", "drop", "--yes", id)
	wantOK(t, r)
	if !strings.Contains(r.stdout, "did not exist") {
		t.Errorf("second drop printed %q", r.stdout)
	}
}

func TestTenantExportImport(t *testing.T) {
	p := pool(t)
	const src, dst = "cli-export", "cli-import"
	wantOK(t, esadmin(t, "", "tenant", "create", "--name", "Exported", src))
	wantOK(t, esadmin(t, `{"type":"A","payload":{"x":1},"tags":["t"]}`+"\n"+`{"type":"B","payload":{}}`+"\n", "events", "append", "-t", src, "--stream", "s"))

	file := t.TempDir() + "/export.jsonl"
	r := esadmin(t, "", "tenant", "export", "--file", file, src)
	if r.code != exitOK || !strings.Contains(r.stderr, "exported 2 events") {
		t.Fatalf("export: exit %d, stderr %q", r.code, r.stderr)
	}
	r = esadmin(t, "", "tenant", "import", "--file", file, "--tenant", dst)
	wantOK(t, r)
	if !strings.Contains(r.stdout, "imported 2 events and 0 snapshots into tenant "+dst) {
		t.Fatalf("import printed %q", r.stdout)
	}
	if n := countEvents(t, p, dst); n != 2 {
		t.Fatalf("%d events imported", n)
	}
	// Again: the tenant is not empty.
	wantError(t, esadmin(t, "", "tenant", "import", "--file", file, "--tenant", dst), exitFailure, "not empty")
	if n := countEvents(t, p, dst); n != 2 {
		t.Fatalf("a refused import changed the count to %d", n)
	}
	// Merging the same export adds nothing: the tenant has those events.
	r = esadmin(t, "", "tenant", "import", "--file", file, "--tenant", dst, "--merge")
	wantOK(t, r)
	if n := countEvents(t, p, dst); n != 2 || !strings.Contains(r.stdout, "skipped 2 events") {
		t.Fatalf("merge: %d events, want 2; printed %q", n, r.stdout)
	}
}

func TestEventsReadQuery(t *testing.T) {
	const id = "cli-query"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	in := `{"type":"Subscribed","payload":{},"tags":["course:c1","student:s1"]}` + "\n" +
		`{"type":"Subscribed","payload":{},"tags":["course:c1","student:s2"]}` + "\n" +
		`{"type":"Defined","payload":{},"tags":["course:c1"]}` + "\n"
	wantOK(t, esadmin(t, in, "events", "append", "-t", id, "--stream", "c1"))
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--tag", "course:c1"}, 3},
		{[]string{"--tag", "course:c1", "--tag", "student:s2"}, 1},
		{[]string{"--type", "Defined", "--type", "Nope"}, 1},
		{[]string{"--tag", "course:c1", "--limit", "2", "--backwards"}, 2},
		{[]string{"--tag", "nobody"}, 0},
	} {
		r := esadmin(t, "", append([]string{"events", "read", "-t", id}, c.args...)...)
		wantOK(t, r)
		if got := jsonLines[pges.RecordedEvent](t, r.stdout); len(got) != c.want {
			t.Errorf("read %v: %d events, want %d", c.args, len(got), c.want)
		}
	}
	wantError(t, esadmin(t, "", "events", "read", "-t", id), exitUsage, "--stream")
	wantError(t, esadmin(t, "", "events", "read", "-t", id, "--stream", "c1", "--tag", "x"), exitUsage, "exclude")
}

func TestSnapshotCommands(t *testing.T) {
	p := pool(t)
	const id = "cli-snap"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	wantOK(t, esadmin(t, `{"type":"A","payload":{}}`+"\n"+`{"type":"A","payload":{}}`+"\n", "events", "append", "-t", id, "--stream", "s"))
	for v := 1; v <= 2; v++ {
		if _, err := p.Exec(context.Background(), `WITH t AS MATERIALIZED (SELECT set_config('es.tenant_id', $1, true) AS id)
			SELECT es.save_snapshot(t.id, 's', $2, 1, '{}') FROM t`, id, v); err != nil {
			t.Fatal(err)
		}
	}
	r := esadmin(t, "", "snapshot", "list", "-t", id, "--json")
	wantOK(t, r)
	if got := jsonLines[pges.SnapshotInfo](t, r.stdout); len(got) != 2 || got[1].StreamVersion != 2 {
		t.Fatalf("snapshot list: %+v", got)
	}
	r = esadmin(t, "", "snapshot", "prune", "-t", id, "--keep", "1")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "deleted 1 snapshots") {
		t.Fatalf("prune printed %q", r.stdout)
	}
	r = esadmin(t, "", "snapshot", "delete", "-t", id, "--stream", "s")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "deleted 1 snapshots") || count(t, p, "SELECT count(*) FROM es.snapshots WHERE tenant_id = $1", id) != 0 {
		t.Fatalf("delete printed %q", r.stdout)
	}
	wantError(t, esadmin(t, "", "snapshot", "prune", "-t", id, "--keep", "0"), exitUsage, "--keep")
	wantError(t, esadmin(t, "", "snapshot", "delete", "-t", id), exitUsage, "--stream")
	wantError(t, esadmin(t, "", "snapshot", "list", "-t", "no-such-tenant"), exitFailure, "not found")
}

func TestDoctor(t *testing.T) {
	r := esadmin(t, "", "doctor", "--json")
	wantOK(t, r)
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Server, "PostgreSQL") || rep.SchemaVersion == 0 || rep.SchemaVersion != rep.LatestVersion ||
		rep.Settings["max_locks_per_transaction"] == "" || rep.Settings["synchronous_commit"] == "" {
		t.Fatalf("doctor report %+v", rep)
	}
	r = esadmin(t, "", "doctor")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "(current)") {
		t.Fatalf("doctor:\n%s", r.stdout)
	}

	// A dedicated tenant shows its partitions' size; shared tenants, one
	// row "(shared)" for all of them, never one each.
	ctx := context.Background()
	m := tenant.NewManager(pool(t))
	const ded, shared = "cli-doctor-dedicated", "cli-doctor-shared"
	for _, id := range []string{ded, shared} {
		if _, err := m.Create(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Dedicate(ctx, ded); err != nil {
		t.Fatal(err)
	}
	r = esadmin(t, "", "doctor", "--json")
	wantOK(t, r)
	rep = doctorReport{}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	rows := map[string]tenantSize{}
	for _, ts := range rep.Tenants {
		rows[ts.Tenant] = ts
	}
	if d, s := rows[ded], rows["(shared)"]; d.Status != "active" || d.Bytes <= 0 || s.Status != "" || s.Bytes <= 0 {
		t.Errorf("doctor tenants %+v: want %s active with its bytes and a (shared) row", rep.Tenants, ded)
	}
	if _, ok := rows[shared]; ok {
		t.Errorf("doctor lists the shared tenant %s: %+v", shared, rep.Tenants)
	}
	r = esadmin(t, "", "doctor")
	wantOK(t, r)
	if !regexp.MustCompile(`\(shared\)\s+\d+ bytes`).MatchString(r.stdout) {
		t.Errorf("doctor:\n%s\nwants a (shared) row", r.stdout)
	}

	// A subscription (a relay's too) behind its tenant's head shows with
	// its lag.
	if _, err := pool(t).Exec(ctx, "INSERT INTO es.subscriptions (tenant_id, name, filter) VALUES ($1, 'relay:late', '{}')", shared); err != nil {
		t.Fatal(err)
	}
	wantOK(t, esadmin(t, strings.Repeat(`{"type":"Late","payload":{}}`+"\n", 2), "events", "append", "-t", shared))
	r = esadmin(t, "", "doctor", "--json")
	wantOK(t, r)
	rep = doctorReport{}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range rep.Behind {
		found = found || l.Tenant == shared && l.Name == "relay:late" && l.LagEvents == 2
	}
	if !found {
		t.Errorf("doctor behind %+v: want %s relay:late 2 events", rep.Behind, shared)
	}
	if r = esadmin(t, "", "doctor"); !strings.Contains(r.stdout, shared+" relay:late") {
		t.Errorf("doctor:\n%s\nwants the late subscription", r.stdout)
	}
}

// A writer of a tenant's events left open for more than a second holds
// that tenant's subscriptions back: doctor and subscription list name it.
func TestDoctorNamesTheWriterHoldingSubscriptionsBack(t *testing.T) {
	const id = "cli-held-back"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	ctx := context.Background()
	p := pool(t)
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false), es.subscribe($1, 'proj', '{}')", id); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET es.tenant_id")
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var pid int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid() FROM es.append_events(set_config('es.tenant_id', $1, true), '[{"type":"T","payload":{}}]')`,
		id).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	r := esadmin(t, "", "doctor", "--json")
	wantOK(t, r)
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range rep.HeldBack {
		found = found || h.Tenant == id && h.PID == pid && h.Database != "" && h.AgeSeconds >= 1 && h.State != ""
	}
	if !found {
		t.Fatalf("doctor's held_back %+v does not name pid %d of tenant %s", rep.HeldBack, pid, id)
	}
	r = esadmin(t, "", "subscription", "list", "-t", id)
	wantOK(t, r)
	if !strings.Contains(r.stdout, fmt.Sprintf("pid %d, database ", pid)) {
		t.Fatalf("subscription list does not name pid %d:\n%s", pid, r.stdout)
	}
}

func TestReplay(t *testing.T) {
	const id = "cli-replay"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	var in strings.Builder
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&in, `{"type":"T","payload":{"i":%d},"tags":["k:%d"]}`+"\n", i, i%3)
	}
	wantOK(t, esadmin(t, in.String(), "events", "append", "-t", id, "--stream", "s"))
	all := jsonLines[pges.RecordedEvent](t, esadmin(t, "", "replay", "-t", id).stdout)
	if len(all) != 30 {
		t.Fatalf("replay of the tenant: %d events", len(all))
	}
	p10, p20 := all[9].Position, all[19].Position
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--stream", "s"}, 30},
		{[]string{"--tag", "k:1"}, 10},
		{[]string{"--after", fmt.Sprint(p10), "--until", fmt.Sprint(p20)}, 10},
		{[]string{"--stream", "s", "--after", fmt.Sprint(p20)}, 10},
		{[]string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, 0},
		{[]string{"--before", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, 30},
	} {
		r := esadmin(t, "", append([]string{"replay", "-t", id}, c.args...)...)
		wantOK(t, r)
		if got := jsonLines[pges.RecordedEvent](t, r.stdout); len(got) != c.want {
			t.Errorf("replay %v: %d events, want %d", c.args, len(got), c.want)
		}
	}
	wantError(t, esadmin(t, "", "replay", "-t", id, "--stream", "s", "--tag", "x"), exitUsage, "exclude")
	wantError(t, esadmin(t, "", "replay", "-t", id, "--since", "yesterday"), exitUsage)
}

// cancelAfter is a writer that cancels a context after its first write: a
// Ctrl-C in the middle of a command's output.
type cancelAfter struct {
	bytes.Buffer
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	defer w.cancel()
	return w.Buffer.Write(p)
}

func TestReplayInterrupted(t *testing.T) {
	const id = "cli-replay-int"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	var in strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&in, `{"type":"T","payload":{"i":%d}}`+"\n", i)
	}
	wantOK(t, esadmin(t, in.String(), "events", "append", "-t", id, "--stream", "s"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelAfter{cancel: cancel}
	var stderr bytes.Buffer
	code := run(ctx, []string{"esadmin", "--database-url", testdb.URL(t), "replay", "-t", id}, strings.NewReader(""), out, &stderr)
	if code != exitInterrupted || !strings.Contains(stderr.String(), "interrupted") || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("exit %d, stderr %q; want 130 and one line", code, stderr.String())
	}
	lines := jsonLines[pges.RecordedEvent](t, out.String()) // every line written is whole
	if len(lines) == 0 || len(lines) >= 3000 {
		t.Fatalf("%d events written before the interruption", len(lines))
	}
}

func TestEventsAppendDCB(t *testing.T) {
	p := pool(t)
	const id = "cli-dcb"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	claim := `{"type":"Registered","payload":{},"tags":["username:alice"]}` + "\n"
	r := esadmin(t, claim, "events", "append", "-t", id, "--fail-if-tag", "username:alice")
	wantOK(t, r)
	if !strings.Contains(r.stdout, `"positions":[`) || strings.Contains(r.stdout, "stream_version") {
		t.Fatalf("DCB append printed %q", r.stdout)
	}
	// The same claim again violates the condition: exit 3, nothing written.
	wantError(t, esadmin(t, claim, "events", "append", "-t", id, "--fail-if-tag", "username:alice"), exitConflict, "condition violated")
	wantError(t, esadmin(t, claim, "events", "append", "-t", id, "--fail-if-type", "Registered", "--fail-if-tag", "username:alice"), exitConflict, "condition violated")
	if n := countEvents(t, p, id); n != 1 {
		t.Fatalf("%d events after a violated condition, want 1", n)
	}
	// After the existing claim's position, the condition passes.
	var pos int64
	if err := p.QueryRow(context.Background(), "SELECT max(position) FROM es.events WHERE tenant_id = $1", id).Scan(&pos); err != nil {
		t.Fatal(err)
	}
	wantOK(t, esadmin(t, claim, "events", "append", "-t", id, "--fail-if-tag", "username:alice", "--after", fmt.Sprint(pos)))
	wantOK(t, esadmin(t, `{"type":"Other","payload":{}}`+"\n", "events", "append", "-t", id)) // no condition
	if n := countEvents(t, p, id); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
	for _, args := range [][]string{
		{"--stream", "s", "--fail-if-tag", "x"},
		{"--expected-version", "no-stream"},
		{"--after", "5"},
		{"--fail-if-tag", "x", "--after", "-1"},
	} {
		wantError(t, esadmin(t, claim, append([]string{"events", "append", "-t", id}, args...)...), exitUsage)
	}
	if n := countEvents(t, p, id); n != 3 {
		t.Fatalf("usage errors wrote %d events", n-3)
	}
}

// syncBuffer is a bytes.Buffer safe for a command writing in one goroutine
// while the test reads in another.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestEventsTail(t *testing.T) {
	const id = "cli-tail"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	wanted := `{"type":"Wanted","payload":{}}` + "\n"
	wantOK(t, esadmin(t, wanted, "events", "append", "-t", id))

	var out, stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- run(context.Background(), []string{"esadmin", "--database-url", testdb.URL(t), "events", "tail", "-t", id,
			"--type", "Wanted", "--from-beginning", "--limit", "3"}, strings.NewReader(""), &out, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Wanted") { // caught up; now live
		if time.Now().After(deadline) {
			t.Fatalf("tail printed nothing; stderr %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantOK(t, esadmin(t, `{"type":"Other","payload":{}}`+"\n"+wanted+wanted+wanted, "events", "append", "-t", id))
	select {
	case code := <-done:
		if code != exitOK || stderr.String() != "" {
			t.Fatalf("tail exit %d, stderr %q", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tail --limit 3 did not stop")
	}
	lines := jsonLines[pges.RecordedEvent](t, out.String())
	if len(lines) != 3 || lines[0].Type != "Wanted" || lines[2].Type != "Wanted" || lines[0].Position >= lines[1].Position {
		t.Fatalf("tail printed %+v", lines)
	}

	// Ctrl-C: a clean stop with exit code 130 after whole lines.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupted := &cancelAfter{cancel: cancel}
	var errOut bytes.Buffer
	code := run(ctx, []string{"esadmin", "--database-url", testdb.URL(t), "events", "tail", "-t", id, "--from-beginning"},
		strings.NewReader(""), interrupted, &errOut)
	if code != exitInterrupted || !strings.Contains(errOut.String(), "interrupted") || strings.Count(errOut.String(), "\n") != 1 {
		t.Fatalf("tail on Ctrl-C: exit %d, stderr %q", code, errOut.String())
	}
	if got := jsonLines[pges.RecordedEvent](t, interrupted.String()); len(got) == 0 {
		t.Fatal("nothing written before the interruption")
	}

	// --after excludes its position, as in events read.
	r := esadmin(t, "", "events", "tail", "-t", id, "--type", "Wanted", "--after", fmt.Sprint(lines[0].Position), "--limit", "1")
	wantOK(t, r)
	if next := jsonLines[pges.RecordedEvent](t, r.stdout); len(next) != 1 || next[0].Position != lines[1].Position {
		t.Fatalf("tail --after %d: %+v, want position %d", lines[0].Position, next, lines[1].Position)
	}
	wantError(t, esadmin(t, "", "events", "tail", "-t", id, "--stream", "a", "--stream-prefix", "b"), exitUsage, "exclude")
	wantError(t, esadmin(t, "", "events", "tail", "-t", id, "--after", "5", "--from-beginning"), exitUsage, "exclude")
	wantError(t, esadmin(t, "", "events", "tail", "-t", "no-such-tenant"), exitFailure, "not found")
}

func TestSubscriptionCommands(t *testing.T) {
	p := pool(t)
	ctx := context.Background()
	const id = "cli-subs"
	wantOK(t, esadmin(t, "", "tenant", "create", id))
	var in strings.Builder
	for i := range 20 {
		fmt.Fprintf(&in, `{"type":"T","payload":{"i":%d}}`+"\n", i)
	}
	wantOK(t, esadmin(t, in.String(), "events", "append", "-t", id))
	all := jsonLines[pges.RecordedEvent](t, esadmin(t, "", "replay", "-t", id).stdout)

	// A SQL consumer that has read everything.
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT set_config('es.tenant_id', $1, false), es.subscribe($1, 'proj', '{}')", id); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT es.subscription_ack($1, 'proj', max(tx_id), max(position)) FROM es.subscription_next($1, 'proj', 100)`, id); err != nil {
		t.Fatal(err)
	}
	lag := func() int64 {
		r := esadmin(t, "", "subscription", "list", "-t", id, "--json")
		wantOK(t, r)
		list := jsonLines[pges.SubscriptionStatus](t, r.stdout)
		if len(list) != 1 || list[0].Name != "proj" {
			t.Fatalf("subscription list: %q", r.stdout)
		}
		return list[0].LagEvents
	}
	if n := lag(); n != 0 {
		t.Fatalf("lag %d after reading everything", n)
	}
	r := esadmin(t, "", "subscription", "list", "-t", id)
	wantOK(t, r)
	if !strings.HasPrefix(r.stdout, "NAME") || !strings.Contains(r.stdout, "proj") {
		t.Fatalf("table: %q", r.stdout)
	}

	wantOK(t, esadmin(t, "", "subscription", "reset", "-t", id, "--position", fmt.Sprint(all[15].Position), "proj"))
	if n := lag(); n < 5 {
		t.Fatalf("lag %d after a reset to the 16th event, want at least 5", n)
	}
	wantOK(t, esadmin(t, "", "replay", "-t", id, "--rewind", "proj"))
	if n := lag(); n != 20 {
		t.Fatalf("lag %d after a rewind to the beginning, want 20", n)
	}
	wantOK(t, esadmin(t, "", "replay", "-t", id, "--rewind", "proj", "--after", fmt.Sprint(all[18].Position)))
	if n := lag(); n < 1 || n > 20 {
		t.Fatalf("lag %d after a rewind past the 19th event", n)
	}
	wantError(t, esadmin(t, "", "replay", "-t", id, "--rewind", "proj", "--stream", "s"), exitUsage, "--rewind")
	wantError(t, esadmin(t, "", "subscription", "reset", "-t", id, "nope"), exitFailure, "subscription not found")
	wantError(t, esadmin(t, "", "subscription", "reset", "-t", id), exitUsage, "one subscription name")
	wantError(t, esadmin(t, "", "subscription", "reset", "-t", id, "proj", "--position", "3"), exitUsage, "flags before the name")

	r = esadmin(t, "", "subscription", "dead-letters", "-t", id, "proj")
	wantOK(t, r)
	if r.stdout != "" {
		t.Fatalf("dead letters: %q", r.stdout)
	}
	// Two parked events: retry marks one, discard (confirmed) deletes both.
	if _, err := conn.Exec(ctx, `SELECT es.park_event($1, 'proj', position, 'boom', 5) FROM es.events WHERE tenant_id = $1 AND position IN ($2, $3)`,
		id, all[3].Position, all[4].Position); err != nil {
		t.Fatal(err)
	}
	r = esadmin(t, "", "subscription", "retry", "-t", id, "--position", fmt.Sprint(all[3].Position), "proj")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "marked 1 dead letters") ||
		count(t, p, "SELECT count(*) FROM es.dead_letters WHERE tenant_id = $1 AND retry_requested_at IS NOT NULL", id) != 1 {
		t.Fatalf("retry: %q", r.stdout)
	}
	if r := esadmin(t, "no\n", "subscription", "discard", "-t", id, "proj"); r.code != exitUsage ||
		count(t, p, "SELECT count(*) FROM es.dead_letters WHERE tenant_id = $1", id) != 2 {
		t.Fatalf("unconfirmed discard: %+v", r)
	}
	r = esadmin(t, "", "subscription", "discard", "-t", id, "--yes", "proj")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "discarded 2 dead letters") || count(t, p, "SELECT count(*) FROM es.dead_letters WHERE tenant_id = $1", id) != 0 {
		t.Fatalf("discard: %q", r.stdout)
	}
	if r := esadmin(t, "no\n", "subscription", "delete", "-t", id, "proj"); r.code != exitUsage || !strings.Contains(r.stderr, "Type proj to confirm: esadmin: not confirmed") {
		t.Fatalf("unconfirmed delete: %+v", r)
	}
	if n := count(t, p, "SELECT count(*) FROM es.subscriptions WHERE tenant_id = $1", id); n != 1 {
		t.Fatalf("an unconfirmed delete deleted")
	}
	wantOK(t, esadmin(t, "", "subscription", "delete", "-t", id, "--yes", "proj"))
	if n := count(t, p, "SELECT count(*) FROM es.subscriptions WHERE tenant_id = $1", id); n != 0 {
		t.Fatalf("subscription still there after delete")
	}
}

func TestMigrateDryRunChangesNothing(t *testing.T) {
	before := esadmin(t, "", "migrate", "version").stdout
	r := esadmin(t, "", "migrate", "up", "--dry-run")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "nothing to do") {
		t.Fatalf("dry-run up on a current schema: %q", r.stdout)
	}
	r = esadmin(t, "", "migrate", "down", "--dry-run")
	wantOK(t, r)
	if !strings.HasPrefix(r.stdout, "-- down "+strings.TrimSpace(before)) || !regexp.MustCompile(`(?m)^(DROP|ALTER|CREATE) `).MatchString(r.stdout) || strings.Contains(r.stdout, "+goose") {
		t.Fatalf("dry-run down printed %q", r.stdout)
	}
	if after := esadmin(t, "", "migrate", "version").stdout; after != before {
		t.Fatalf("version %q after dry runs, was %q", after, before)
	}

	// On a database goose has never touched, a dry run creates nothing
	// (goose's own status would create its version table).
	ctx := context.Background()
	admin := pool(t)
	fresh := fmt.Sprintf("pges_dryrun_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+fresh); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(ctx, "DROP DATABASE IF EXISTS "+fresh+" WITH (FORCE)")
	u, err := url.Parse(testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + fresh
	r = runRaw(t, "", "--database-url", u.String(), "migrate", "up", "--dry-run")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "-- up 1 ") || !strings.Contains(r.stdout, "CREATE SCHEMA es;") {
		t.Fatalf("dry run on a fresh database: %q", r.stdout)
	}
	r = runRaw(t, "", "--database-url", u.String(), "migrate", "down", "--dry-run")
	wantOK(t, r)
	freshPool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer freshPool.Close()
	if n := count(t, freshPool, "SELECT count(*) FROM pg_class WHERE relname = 'goose_db_version'"); n != 0 {
		t.Fatal("a dry run created goose's version table")
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		r := runRaw(t, "", "completion", shell)
		wantOK(t, r)
		if !strings.Contains(r.stdout, "complete -o default -F _esadmin_complete esadmin") {
			t.Errorf("%s completion: %q", shell, r.stdout)
		}
	}
	wantError(t, runRaw(t, "", "completion", "fish"), exitUsage, "bash or zsh")
	// urfave/cli reads the words being completed from os.Args.
	defer func(args []string) { os.Args = args }(os.Args)
	os.Args = []string{"esadmin", "subscription", "--generate-bash-completion"}
	r := runRaw(t, "", os.Args[1:]...)
	if r.code != exitOK || !strings.Contains(r.stdout, "reset") || !strings.Contains(r.stdout, "dead-letters") {
		t.Fatalf("completion candidates: %+v", r)
	}
}

// bench --scale validates its sizes and flags before connecting, and a
// tiny study (2,000 events) prints its report and writes its plots.
func TestBenchScale(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"not a number", []string{"bench", "--scale", "10000,lots"}, "not a number"},
		{"too small", []string{"bench", "--scale", "500"}, "1000 to 100000000"},
		{"too large", []string{"bench", "--scale", "1000000000"}, "1000 to 100000000"},
		{"descending", []string{"bench", "--scale", "100000,10000"}, "ascend"},
		{"repeated", []string{"bench", "--scale", "10000,10000"}, "ascend"},
		{"empty", []string{"bench", "--scale", ""}, "--scale"},
		{"with tenants", []string{"bench", "--scale", "10000", "--tenants", "1,10"}, "--tenants"},
		{"with scenarios", []string{"bench", "--scale", "10000", "--scenarios", "stream-append-1"}, "--scenarios"},
		{"bad window", []string{"bench", "--scale", "10000", "--window", "0"}, "--window"},
		{"plots without scale", []string{"bench", "--count", "1", "--plots", "x"}, "--scale"},
		{"reset without scale", []string{"bench", "--count", "1", "--reset"}, "--scale"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A server that does not exist: validation comes first.
			r := runRaw(t, "", append([]string{"--database-url", "postgres://postgres@127.0.0.1:1/x?sslmode=disable"}, c.args...)...)
			wantError(t, r, exitUsage, c.want)
		})
	}

	dir := t.TempDir()
	r := esadmin(t, "", "bench", "--scale", "1000,2000", "--count", "5", "--duration", "200ms", "--clients", "1", "--window", "200", "--plots", dir, "--json")
	wantOK(t, r)
	var rep bench.ScaleReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("bench --scale --json output %q: %v", r.stdout, err)
	}
	if len(rep.Steps) != 2 || rep.Steps[1].Size < 2000 || len(rep.Clients) != 2 {
		t.Errorf("report %+v, want two steps and two client results", rep)
	}
	for _, name := range []string{bench.PlotWrites, bench.PlotReads, bench.PlotCatchUp, bench.PlotBytes, bench.PlotClients} {
		if fi, err := os.Stat(dir + "/" + name); err != nil || fi.Size() == 0 {
			t.Errorf("plot %s: %v", name, err)
		}
	}
	// The Markdown report of the same (now larger) tenant is refused, not mixed.
	r = esadmin(t, "", "bench", "--scale", "1000", "--count", "5", "--markdown")
	if r.code != exitFailure || !strings.Contains(r.stderr, "already holds") {
		t.Errorf("second study: exit %d, stderr %q", r.code, r.stderr)
	}
	// --reset starts from nothing.
	r = esadmin(t, "", "bench", "--scale", "1000", "--count", "5", "--duration", "100ms", "--clients", "1", "--window", "100", "--reset", "--json")
	wantOK(t, r)
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Steps[0].Size != 1000 {
		t.Errorf("study after --reset: %v, %+v", err, rep.Steps)
	}
}
