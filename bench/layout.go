package bench

import (
	"context"
	"embed"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The tenant layouts the tenant-scale bench can measure (issue #4). The
// files are experiments applied to a scratch database, not migrations.
//
//go:embed layouts/*.sql
var layoutFiles embed.FS

// Layouts lists the names TenantScale accepts as Config.Layout.
func Layouts() []string { return []string{LayoutPerTenant, LayoutHybrid, LayoutHybridGeneric} }

const (
	// LayoutPerTenant is the store's own layout: one LIST partition of
	// es.events and es.snapshots per tenant (es.create_tenant).
	LayoutPerTenant = "per-tenant"
	// LayoutHybrid applies bench/layouts/hybrid.sql: tenants share the hash
	// leaves of a DEFAULT partition unless given their own (dedicated).
	LayoutHybrid = "hybrid"
	// LayoutHybridGeneric is LayoutHybrid plus bench/layouts/generic-plans.sql:
	// the SQL API's stream functions use generic plans.
	LayoutHybridGeneric = "hybrid-generic"
)

// DefaultHashPartitions is the number of hash leaves of the hybrid layouts'
// shared partition when Config.HashPartitions is 0.
const DefaultHashPartitions = 16

// layoutFilesFor returns the SQL files a layout applies, in order.
func layoutFilesFor(layout string) ([]string, error) {
	switch layout {
	case "", LayoutPerTenant:
		return nil, nil
	case LayoutHybrid:
		return []string{"layouts/hybrid.sql"}, nil
	case LayoutHybridGeneric:
		return []string{"layouts/hybrid.sql", "layouts/generic-plans.sql"}, nil
	}
	return nil, fmt.Errorf("unknown layout %q (known: %v)", layout, Layouts())
}

// isHybrid reports whether the database has the hybrid layout's shared
// partition.
func isHybrid(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var hybrid bool
	err := pool.QueryRow(ctx, `SELECT to_regclass('es."events$shared"') IS NOT NULL`).Scan(&hybrid)
	return hybrid, err
}

// ApplyLayout makes the database's tenant layout the one named. The per-tenant
// layout is the migrated schema: it is refused on a database converted to
// a hybrid layout. A hybrid layout converts a freshly migrated database with
// no tenants at all (the SQL refuses otherwise, so no data is stranded) and
// is a no-op, apart from redefining its functions, on a database already
// converted with the same number of hash partitions. hashPartitions 0 means
// DefaultHashPartitions.
func ApplyLayout(ctx context.Context, pool *pgxpool.Pool, layout string, hashPartitions int) error {
	files, err := layoutFilesFor(layout)
	if err != nil {
		return err
	}
	if hashPartitions == 0 {
		hashPartitions = DefaultHashPartitions
	}
	if hashPartitions < 1 || hashPartitions > 1024 {
		return fmt.Errorf("hash partitions %d: use 1 to 1024", hashPartitions)
	}
	hybrid, err := isHybrid(ctx, pool)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		if hybrid {
			return fmt.Errorf("layout %s: this database has the hybrid layout (bench/layouts/hybrid.sql); use a database migrated without it", LayoutPerTenant)
		}
		return nil
	}
	var generic bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_proc WHERE oid = 'es.read_stream(text, text, bigint, int, boolean)'::regprocedure
		AND 'plan_cache_mode=force_generic_plan' = ANY (proconfig))`).Scan(&generic); err != nil {
		return err
	}
	if generic && layout == LayoutHybrid {
		return fmt.Errorf("layout %s: this database has the %s layout", LayoutHybrid, LayoutHybridGeneric)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('pges_bench.hash_partitions', $1, true)", strconv.Itoa(hashPartitions)); err != nil {
			return err
		}
		for _, f := range files {
			sql, err := layoutFiles.ReadFile(f)
			if err != nil {
				return err
			}
			// No arguments: the simple protocol runs the file's statements.
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return fmt.Errorf("layout %s: bench/%s: %w", layout, f, err)
			}
		}
		return nil
	})
}
