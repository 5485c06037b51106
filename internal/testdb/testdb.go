// Package testdb gives each test package its own freshly migrated database
// on a real PostgreSQL server: TEST_DATABASE_URL if set, else the local
// server the Makefile starts (postgres@127.0.0.1:5432, trust).
package testdb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is the server used when TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	mu      sync.Mutex
	dbURL   string
	dbName  string
	adminDB string
)

// ServerURL returns the URL of the server tests use.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// ChildDatabaseEnv names the variable through which a test hands its
// database to a child process running the same test binary.
const ChildDatabaseEnv = "PGES_TESTDB_URL"

// Main wraps testing.M.Run: it creates a database named after the package,
// migrates it, runs the tests and drops it. Use it from TestMain:
//
//	func TestMain(m *testing.M) { testdb.Main(m, "streams") }
func Main(m *testing.M, pkg string) {
	os.Exit(run(m, pkg))
}

func run(m *testing.M, pkg string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	server := ServerURL()
	// A test's child process (the failover test runs the test binary again,
	// and kills it) uses its parent's database: one of its own would be
	// left behind.
	if u := os.Getenv(ChildDatabaseEnv); u != "" {
		mu.Lock()
		dbURL, adminDB = u, server
		mu.Unlock()
		return m.Run()
	}
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testdb: cannot reach PostgreSQL at %s (set TEST_DATABASE_URL or run make test): %v\n", server, err)
		return 1
	}
	name := fmt.Sprintf("pges_test_%s_%d_%d", sanitize(pkg), os.Getpid(), rand.IntN(1e6))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		fmt.Fprintf(os.Stderr, "testdb: create database: %v\n", err)
		return 1
	}
	conn.Close(ctx)
	pkgURL, err := withDatabase(server, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	mu.Lock()
	dbURL, dbName, adminDB = pkgURL, name, server
	mu.Unlock()
	defer drop(server, name)

	pool, err := pgxpool.New(ctx, pkgURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	err = pges.Migrate(ctx, pool)
	pool.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	return m.Run()
}

func drop(server, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// URL returns the package database's URL.
func URL(t testing.TB) string {
	mu.Lock()
	defer mu.Unlock()
	if dbURL == "" {
		t.Fatal("testdb: call testdb.Main from TestMain")
	}
	return dbURL
}

// Pool returns a pool on the package database, closed when the test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// RuntimePool returns a pool on the package database whose connections act
// as the store's runtime role es_runtime (SET ROLE), so row-level security
// applies to them as it does to an application's. Closed when the test ends.
func RuntimePool(t testing.TB) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 20
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE es_runtime")
		return err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

var tenantSeq struct {
	sync.Mutex
	n int
}

// NewTenant creates a tenant unique to the calling test and returns its id.
func NewTenant(t testing.TB, pool *pgxpool.Pool) string {
	tenantSeq.Lock()
	tenantSeq.n++
	id := fmt.Sprintf("t%d_%s", tenantSeq.n, sanitize(strings.ToLower(t.Name())))
	tenantSeq.Unlock()
	if len(id) > 40 {
		id = id[:40]
	}
	if _, err := pool.Exec(context.Background(), "SELECT es.create_tenant($1, $2)", id, t.Name()); err != nil {
		t.Fatalf("create tenant %s: %v", id, err)
	}
	return id
}

var notIdent = regexp.MustCompile(`[^a-z0-9_]+`)

func sanitize(s string) string { return notIdent.ReplaceAllString(strings.ToLower(s), "_") }

// withDatabase points a connection string (URL or key=value) at database name.
func withDatabase(server, name string) (string, error) {
	if !strings.Contains(server, "://") {
		return server + " dbname=" + name, nil
	}
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", server, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// HoldXid opens, in a database of its own on the same server, a
// transaction with an assigned transaction id and keeps it open until the
// test ends: a stranger's transaction, as on a shared server. It returns
// the transaction's id.
func HoldXid(t testing.TB) uint64 {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("pges_test_stranger_%d_%d", os.Getpid(), rand.IntN(1e6))
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	server := ServerURL()
	t.Cleanup(func() { drop(server, name) })
	u, err := withDatabase(server, name)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	var xid uint64
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	return xid
}
