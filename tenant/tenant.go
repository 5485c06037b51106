// Package tenant manages the store's tenants: the registry and the per-tenant
// partitions of every tenant table. Its operations run DDL and so need the
// role that owns the schema (the admin path).
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

// Create registers a tenant and creates its partitions. Creating an existing
// tenant returns it unchanged.
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
