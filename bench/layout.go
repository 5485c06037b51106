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
func Layouts() []string {
	return []string{LayoutPerTenant, LayoutPerTenantCustom, LayoutHybrid, LayoutHybridGeneric}
}

const (
	// LayoutPerTenant is the store's own layout: one LIST partition of
	// es.events and es.snapshots per tenant (es.create_tenant).
	LayoutPerTenant = "per-tenant"
	// LayoutPerTenantCustom is LayoutPerTenant plus
	// bench/layouts/custom-plans.sql: the SQL API's stream functions never
	// build generic plans (which at 10,000 tenants lock every partition).
	LayoutPerTenantCustom = "per-tenant-custom"
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
	case LayoutPerTenantCustom:
		return []string{"layouts/custom-plans.sql"}, nil
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
// layouts are the migrated schema (per-tenant-custom only sets the stream
// functions' plan_cache_mode): they are refused on a database converted to
// a hybrid layout, and a layout is refused where another one set the
// functions' plan_cache_mode. A hybrid layout converts a freshly migrated database with
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
	// The plan_cache_mode the stream functions were given, if any.
	var planMode string
	if err := pool.QueryRow(ctx, `SELECT coalesce((SELECT substring(c FROM 'plan_cache_mode=(.*)') FROM pg_proc p, unnest(p.proconfig) c
		WHERE p.oid = 'es.read_stream(text, text, bigint, int, boolean)'::regprocedure AND c LIKE 'plan_cache_mode=%'), '')`).Scan(&planMode); err != nil {
		return err
	}
	wantHybrid := layout == LayoutHybrid || layout == LayoutHybridGeneric
	// Migration 00009 gives the functions custom plans (as
	// per-tenant-custom did before it); only hybrid-generic changes that.
	wantMode := "force_custom_plan"
	if layout == LayoutHybridGeneric {
		wantMode = "force_generic_plan"
	}
	switch {
	case hybrid && !wantHybrid:
		return fmt.Errorf("layout %s: this database has the hybrid layout (bench/layouts/hybrid.sql); use a database migrated without it", layout)
	case planMode != "" && planMode != "force_custom_plan" && planMode != wantMode:
		return fmt.Errorf("layout %s: this database's stream functions were set to plan_cache_mode %s by another layout", layout, planMode)
	}
	if len(files) == 0 {
		return nil
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
