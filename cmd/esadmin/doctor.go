package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/urfave/cli/v2"
)

// doctorReport is what `esadmin doctor` finds.
type doctorReport struct {
	Server        string            `json:"server"`
	Settings      map[string]string `json:"settings"`
	SchemaVersion int64             `json:"schema_version"`
	LatestVersion int64             `json:"latest_version"`
	Tenants       []tenantSize      `json:"tenants"`
	// Behind: the 20 subscriptions (relays included) with the most events
	// after their checkpoint, of any tenant.
	Behind []subscriptionLag `json:"behind"`
	// HeldBack: transactions writing a tenant's events that have been open
	// for more than a second; each holds that tenant's subscriptions back
	// until it ends.
	HeldBack []heldBack `json:"held_back,omitempty"`
}

type subscriptionLag struct {
	Tenant     string  `json:"tenant"`
	Name       string  `json:"name"`
	LagEvents  int64   `json:"lag_events"`
	LagSeconds float64 `json:"lag_seconds"`
	Owner      string  `json:"owner,omitempty"`
}

type heldBack struct {
	Tenant     string  `json:"tenant"`
	PID        int     `json:"pid"`
	Database   string  `json:"database"`
	Xid        string  `json:"xid"`
	AgeSeconds float64 `json:"age_seconds"`
	State      string  `json:"state"`
}

type tenantSize struct {
	Tenant string `json:"tenant"`
	Status string `json:"status"`
	Bytes  int64  `json:"bytes"`
}

// doctorSettings are the server settings that matter to the store.
var doctorSettings = []string{"synchronous_commit", "fsync", "max_locks_per_transaction", "max_connections",
	"wal_level", "shared_buffers", "max_wal_size", "default_transaction_isolation"}

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:      "doctor",
		Usage:     "server version, the settings that matter to the store, schema version, the largest tenants (dedicated ones, and all shared ones as one)",
		UsageText: "esadmin doctor [--json]",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			pool, err := connect(c)
			if err != nil {
				return err
			}
			defer pool.Close()
			var r doctorReport
			r.Settings = map[string]string{}
			if err := pool.QueryRow(c.Context, "SELECT version()").Scan(&r.Server); err != nil {
				return err
			}
			rows, err := pool.Query(c.Context, "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY($1)", doctorSettings)
			if err != nil {
				return err
			}
			for rows.Next() {
				var k, v string
				if err := rows.Scan(&k, &v); err != nil {
					return err
				}
				r.Settings[k] = v
			}
			if err := rows.Err(); err != nil {
				return err
			}
			sqlDB := stdlib.OpenDBFromPool(pool)
			defer sqlDB.Close()
			p, err := pges.NewMigrationProvider(sqlDB)
			if err != nil {
				return err
			}
			// Asking goose for the version would create its table: doctor
			// only reads.
			var migrated bool
			if err := pool.QueryRow(c.Context, "SELECT to_regclass('goose_db_version') IS NOT NULL").Scan(&migrated); err != nil {
				return err
			}
			if migrated {
				if r.SchemaVersion, err = p.GetDBVersion(c.Context); err != nil {
					return fmt.Errorf("schema version: %w", err)
				}
			}
			sources := p.ListSources()
			r.LatestVersion = sources[len(sources)-1].Version
			if r.SchemaVersion > 0 {
				// The 50 largest dedicated tenants by their partitions'
				// size, and one row for all shared tenants (migration
				// 00011): the size of the shared partitions' leaves.
				sizes, err := pool.Query(c.Context, `
					SELECT * FROM (
					    SELECT t.tenant_id, t.status, sum(pg_total_relation_size(cl.oid))::bigint AS bytes
					      FROM es.tenants t
					      JOIN pg_class cl ON cl.relnamespace = 'es'::regnamespace
					           AND cl.relname IN ('events_' || t.tenant_id, 'snapshots_' || t.tenant_id)
					     GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 50) dedicated
					UNION ALL
					SELECT '(shared)', '', coalesce(sum(pg_total_relation_size(p.relid)), 0)::bigint
					  FROM unnest(ARRAY[to_regclass('es."events$shared"'), to_regclass('es."snapshots$shared"')]) r(rel),
					       pg_partition_tree(r.rel) p
					 WHERE p.isleaf
					HAVING count(*) > 0
					ORDER BY 3 DESC, 1`)
				if err != nil {
					return err
				}
				for sizes.Next() {
					var s tenantSize
					if err := sizes.Scan(&s.Tenant, &s.Status, &s.Bytes); err != nil {
						return err
					}
					r.Tenants = append(r.Tenants, s)
				}
				if err := sizes.Err(); err != nil {
					return err
				}
			}
			if r.SchemaVersion > 0 {
				// Events after each checkpoint, whatever the filter, counted
				// up to 10,000 (es.subscription_status caps its count too), so
				// the look does not grow with the lag.
				lags, err := pool.Query(c.Context, `
					SELECT s.tenant_id, s.name, l.n, coalesce(extract(epoch FROM now() - l.oldest), 0)::double precision,
					       CASE WHEN s.lease_expires_at > clock_timestamp() THEN s.owner ELSE '' END
					  FROM es.subscriptions s,
					       LATERAL (SELECT count(*) AS n, min(x.recorded_at) AS oldest
					                  FROM (SELECT e.recorded_at FROM es.events e
					                         WHERE e.tenant_id = s.tenant_id AND (e.tx_id, e.position) > (s.checkpoint_tx, s.checkpoint_position)
					                         ORDER BY e.tx_id, e.position LIMIT 10000) x) l
					 WHERE l.n > 0
					 ORDER BY l.n DESC, 1, 2 LIMIT 20`)
				if err != nil {
					return err
				}
				for lags.Next() {
					var l subscriptionLag
					if err := lags.Scan(&l.Tenant, &l.Name, &l.LagEvents, &l.LagSeconds, &l.Owner); err != nil {
						return err
					}
					r.Behind = append(r.Behind, l)
				}
				if err := lags.Err(); err != nil {
					return err
				}
			}
			if r.SchemaVersion >= 13 {
				if r.HeldBack, err = heldBackTenants(c.Context, pool); err != nil {
					return fmt.Errorf("writers holding subscriptions back: %w", err)
				}
			}
			if c.Bool("json") {
				return json.NewEncoder(c.App.Writer).Encode(r)
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "server\t%s\n", r.Server)
			for _, k := range doctorSettings {
				fmt.Fprintf(w, "%s\t%s\n", k, r.Settings[k])
			}
			state := "current"
			if r.SchemaVersion < r.LatestVersion {
				state = "behind: run esadmin migrate up"
			}
			fmt.Fprintf(w, "schema version\t%d of %d (%s)\n", r.SchemaVersion, r.LatestVersion, state)
			fmt.Fprintf(w, "tenants (50 largest dedicated, all shared)\t%d\n", len(r.Tenants))
			for _, t := range r.Tenants {
				if t.Status == "" { // (shared)
					fmt.Fprintf(w, "  %s\t%d bytes\n", t.Tenant, t.Bytes)
				} else {
					fmt.Fprintf(w, "  %s\t%s, %d bytes\n", t.Tenant, t.Status, t.Bytes)
				}
			}
			fmt.Fprintf(w, "subscriptions behind (at most 20)\t%d\n", len(r.Behind))
			for _, l := range r.Behind {
				owner := l.Owner
				if owner == "" {
					owner = "no consumer"
				}
				fmt.Fprintf(w, "  %s %s\t%d events, oldest %.1fs, %s\n", l.Tenant, l.Name, l.LagEvents, l.LagSeconds, owner)
			}
			fmt.Fprintf(w, "writers holding subscriptions back (open > 1s)\t%d\n", len(r.HeldBack))
			for _, h := range r.HeldBack {
				fmt.Fprintf(w, "  %s\tpid %d, database %s, xid %s, open %s, %s\n", h.Tenant, h.PID, h.Database, h.Xid,
					time.Duration(h.AgeSeconds*float64(time.Second)).Round(time.Millisecond), h.State)
			}
			return w.Flush()
		},
	}
}

// heldBackTenants finds the transactions that hold a tenant's writer lock
// (migration 00013: only these hold its delivery back) and have been open
// for more than a second, oldest first.
func heldBackTenants(ctx context.Context, pool *pgxpool.Pool) ([]heldBack, error) {
	rows, err := pool.Query(ctx, `
		SELECT t.tenant_id, a.pid, a.datname::text, coalesce(a.backend_xid::text, ''),
		       extract(epoch FROM clock_timestamp() - a.xact_start)::float8, coalesce(a.state, '')
		  FROM es.tenants t
		  CROSS JOIN LATERAL (SELECT es.lock_key(t.tenant_id, 'a', '') AS k) k
		  JOIN pg_locks l ON l.locktype = 'advisory' AND l.objsubid = 1
		       AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
		       AND l.classid = ((k.k >> 32) & 4294967295)::oid AND l.objid = (k.k & 4294967295)::oid
		  JOIN pg_stat_activity a ON a.pid = l.pid
		 WHERE a.backend_xid IS NOT NULL AND a.xact_start < clock_timestamp() - interval '1 second'
		 ORDER BY a.xact_start, t.tenant_id LIMIT 50`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (heldBack, error) {
		var h heldBack
		err := r.Scan(&h.Tenant, &h.PID, &h.Database, &h.Xid, &h.AgeSeconds, &h.State)
		return h, err
	})
}
