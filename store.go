// Package pges is an event store on PostgreSQL: one tenant-partitioned log
// serving aggregate streams (append with expected version, replay,
// snapshots) and Dynamic Consistency Boundaries (tag queries and conditional
// appends). The same operations are SQL functions in schema "es".
package pges

import (
	"context"
	"errors"

	"github.com/eventstore-go/pges/db"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures a Store. The zero value is valid; each field documents
// its default.
type Config struct {
	// ReadPageSize is how many events IterateStream fetches per round trip.
	// Default 1000.
	ReadPageSize int
	// AnyVersionRetries bounds how often an append with expected version Any
	// or StreamExists is retried after losing the next version to a
	// concurrent exact-version append (appends with Any or StreamExists
	// queue for their stream and do not race each other). Default 10.
	AnyVersionRetries int
}

func (c *Config) withDefaults() Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.ReadPageSize == 0 {
		out.ReadPageSize = 1000
	}
	if out.AnyVersionRetries == 0 {
		out.AnyVersionRetries = 10
	}
	return out
}

// Store is the event store. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	queries  *db.Queries
	config   Config
	listener *listener
}

// New returns a Store over pool. cfg may be nil for the defaults.
func New(pool *pgxpool.Pool, cfg *Config) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pges.New: pool is nil")
	}
	c := cfg.withDefaults()
	if c.ReadPageSize < 1 || c.AnyVersionRetries < 1 {
		return nil, errors.New("pges.New: ReadPageSize and AnyVersionRetries must be positive")
	}
	// The listening connection is the pool's configuration on a connection
	// of its own: it stays open while subscriptions run and would otherwise
	// hold a pool slot.
	connect := func(ctx context.Context) (*pgx.Conn, error) {
		cc := pool.Config().ConnConfig.Copy()
		cc.RuntimeParams["application_name"] = listenerAppName
		return pgx.ConnectConfig(ctx, cc)
	}
	return &Store{pool: pool, queries: db.New(), config: c, listener: newListener(connect)}, nil
}

// Pool returns the pool the store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Tenant returns a handle scoped to one tenant: every operation through it
// reads and writes that tenant's rows only.
func (s *Store) Tenant(tenantID string) *TenantStore {
	return &TenantStore{store: s, tenantID: tenantID}
}

// TenantStore is a Store scoped to one tenant.
type TenantStore struct {
	store    *Store
	tenantID string
	tx       pgx.Tx // set in a handle bound to a caller's transaction (Tx)
}

// TenantID returns the tenant the handle is scoped to.
func (t *TenantStore) TenantID() string { return t.tenantID }
