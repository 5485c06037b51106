// Package tenant manages the store's tenants: the registry and where each
// tenant's rows live. A tenant is created "shared": its rows go to the hash
// partitions that all shared tenants use, and creating it runs no DDL. A
// tenant that grows large is "dedicated": it gets partitions of its own
// (Dedicate). See migrations/00011_shared_tenants.sql. The operations need
// the role that owns the schema (the admin path).
package tenant

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/db"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// idFormat is the documented tenant id format; es.create_tenant enforces the
// same rule in SQL. Ids name partitions, so they stay short and plain.
var idFormat = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// ValidateID reports whether id is a valid tenant id: 1-40 characters of
// a-z, 0-9, "_" and "-", starting with a letter or digit.
func ValidateID(id string) error {
	if !idFormat.MatchString(id) {
		shown := id
		if r := []rune(shown); len(r) > 80 {
			shown = string(r[:80]) + "..."
		}
		return &pges.InvalidEventError{Index: -1, Reason: fmt.Sprintf("invalid tenant id %q: use 1-40 characters a-z, 0-9, \"_\" or \"-\", starting with a letter or digit", shown)}
	}
	return nil
}

// Tenant is a registered tenant.
type Tenant struct {
	ID        string
	Name      string
	Status    string
	CreatedAt time.Time
}

// Manager runs tenant lifecycle operations.
type Manager struct {
	pool    *pgxpool.Pool
	queries *db.Queries
}

// NewManager returns a Manager over pool, which must connect as the schema
// owner.
func NewManager(pool *pgxpool.Pool) *Manager {
	return &Manager{pool: pool, queries: db.New()}
}

// Create registers a shared tenant. Creating an existing
// tenant with the same name returns it unchanged; with another name it fails
// with pges.ErrTenantExists.
func (m *Manager) Create(ctx context.Context, id, name string) (Tenant, error) {
	if err := ValidateID(id); err != nil {
		return Tenant{}, err
	}
	row, err := m.queries.CreateTenant(ctx, m.pool, db.CreateTenantParams{TenantID: id, Name: name})
	if err != nil {
		return Tenant{}, pges.TranslateError(err)
	}
	return fromRow(row), nil
}

// Get returns one tenant or an error matching pges.ErrTenantNotFound.
func (m *Manager) Get(ctx context.Context, id string) (Tenant, error) {
	row, err := m.queries.GetTenant(ctx, m.pool, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("tenant %q: %w", id, pges.ErrTenantNotFound)
	}
	if err != nil {
		return Tenant{}, pges.TranslateError(err)
	}
	return fromRow(row), nil
}

// List returns all tenants ordered by id.
func (m *Manager) List(ctx context.Context) ([]Tenant, error) {
	rows, err := m.queries.ListTenants(ctx, m.pool)
	if err != nil {
		return nil, pges.TranslateError(err)
	}
	out := make([]Tenant, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r)
	}
	return out, nil
}

func fromRow(r db.EsTenant) Tenant {
	return Tenant{ID: r.TenantID, Name: r.Name, Status: r.Status, CreatedAt: r.CreatedAt.Time}
}

// Suspend makes a tenant's appends fail with pges.ErrTenantSuspended; its
// events stay readable.
func (m *Manager) Suspend(ctx context.Context, id string) (Tenant, error) {
	return m.setStatus(ctx, id, "suspended")
}

// Resume makes a suspended tenant writable again.
func (m *Manager) Resume(ctx context.Context, id string) (Tenant, error) {
	return m.setStatus(ctx, id, "active")
}

func (m *Manager) setStatus(ctx context.Context, id, status string) (Tenant, error) {
	row, err := m.queries.SetTenantStatus(ctx, m.pool, db.SetTenantStatusParams{TenantID: id, Status: status})
	if err != nil {
		return Tenant{}, pges.TranslateError(err)
	}
	return fromRow(row), nil
}

// Stats is what a tenant holds.
type Stats struct {
	Events    int64
	Streams   int64
	Snapshots int64
	// Bytes is, for a dedicated tenant, its partitions' size on disk,
	// indexes included; for a shared tenant, the size of its rows alone.
	Bytes       int64
	LastEventAt time.Time
	// Dedicated: the tenant has partitions of its own (Dedicate).
	Dedicated bool
}

// Stats counts a tenant's events, streams and snapshots and sizes them. It
// scans the tenant's events: seconds for millions.
func (m *Manager) Stats(ctx context.Context, id string) (Stats, error) {
	row, err := m.queries.TenantStats(ctx, m.pool, id)
	if err != nil {
		return Stats{}, pges.TranslateError(err)
	}
	return Stats{Events: row.Events, Streams: row.Streams, Snapshots: row.Snapshots, Bytes: row.Bytes,
		LastEventAt: row.LastEventAt.Time, Dedicated: row.Dedicated}, nil
}

// Dedicate gives a shared tenant partitions of its own, moving its events
// and snapshots there; moved is false when it had them already. For a
// tenant with no rows yet (right after Create) it runs
// es.dedicate_tenant_concurrently: PostgreSQL's check that the shared
// partitions hold none of the tenant's rows scans them without blocking
// other tenants, and the shared tenants wait only for two brief locks. For
// a tenant with rows, es.dedicate_tenant moves them and that scan runs
// under an ACCESS EXCLUSIVE lock: every shared tenant waits for a time that
// grows with all shared data. So dedicate a tenant expected to grow large
// when it is created. Dedicate must not run inside a transaction. A call
// that fails part way (a timeout, a cancelled context) can leave the
// tenant's writes failing with pges.ErrTenantDedicating: run Dedicate
// again, which finishes it, or Drop the tenant.
func (m *Manager) Dedicate(ctx context.Context, id string) (moved bool, err error) {
	if err := ValidateID(id); err != nil {
		return false, err
	}
	// An unknown tenant is not dedicated; the procedure then reports it.
	dedicated, err := m.queries.TenantIsDedicated(ctx, m.pool, id)
	if err != nil || dedicated {
		return false, pges.TranslateError(err)
	}
	err = retryLockConflicts(ctx, func() error { return m.queries.DedicateTenantConcurrently(ctx, m.pool, id) })
	if err != nil {
		return false, pges.TranslateError(err)
	}
	return true, nil
}

// retryLockConflicts runs op again, up to five times in all, 50 ms apart
// and doubling, when PostgreSQL aborted it to break a deadlock (40P01) or
// it gave up waiting for a lock (55P03). Both are expected of Drop and
// Dedicate when they race writes of the same tenant, and of the lock
// timeout of es.dedicate_tenant_concurrently (migration 00011). A failed
// drop changed nothing; a failed dedication is taken up again where it
// stopped.
func retryLockConflicts(ctx context.Context, op func() error) error {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := op()
		var pgErr *pgconn.PgError
		if err == nil || attempt == 5 || !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "55P03") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// Drop removes a tenant and all its data. A dedicated tenant's partitions
// are dropped, in a time that hardly depends on the amount of data; a
// shared tenant's rows are deleted, in a time that grows with them (which
// is why large tenants are dedicated). Drop waits for the tenant's writes
// in flight, and writes that come later fail with pges.ErrTenantNotFound.
// A drop that races writes of the same tenant can deadlock with them:
// PostgreSQL aborts one side, and Drop tries again.
// Dropping a tenant that does not exist is not an error; dropped reports
// whether it existed.
func (m *Manager) Drop(ctx context.Context, id string) (dropped bool, err error) {
	if err := ValidateID(id); err != nil {
		return false, err
	}
	err = retryLockConflicts(ctx, func() error {
		dropped, err = m.queries.DropTenant(ctx, m.pool, id)
		return err
	})
	return dropped, pges.TranslateError(err)
}
