package pges_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/eventstore-go/pges/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// docs/design.md, section 5, as met at 10,000 tenants (bench/RESULTS.md, issue
// #4): a generic plan of a statement on a partitioned table locks every
// partition, and PL/pgSQL builds one on a connection's 6th call. Here, with
// a few dozen tenants, ten calls of each stream function on a new
// connection must leave locks on one partition of es.events, not on all.
func TestStreamFunctionsNeverLockEveryPartition(t *testing.T) {
	ctx := context.Background()
	admin := testdb.Pool(t)
	var dedicated, shared string
	for i := range 30 {
		id := testdb.NewTenant(t, admin)
		if _, err := admin.Exec(ctx, "SELECT es.dedicate_tenant($1)", id); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			dedicated = id
		}
	}
	shared = testdb.NewTenant(t, admin)
	// A dedicated tenant's statements lock its partition (and that of
	// snapshots); a shared tenant's the shared partitions and their leaves
	// (es.first_match's generic plans lock all 16 of es.events).
	for tenant, most := range map[string]int{dedicated: 2, shared: 2 + 16 + 2} {
		testLocksFewPartitions(t, tenant, most)
	}
}

func testLocksFewPartitions(t *testing.T, tenant string, most int) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT set_config('es.tenant_id', $1, false)`, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT es.append_to_stream($1, 's', -1, '[{"type":"E","payload":{}}]')`, tenant); err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{
		// The append path runs on the default plan cache mode
		// (migrations/00012): its statements on es.events are INSERTs, whose
		// generic plans lock the parent alone; reads go through helpers
		// that force custom plans.
		`SELECT * FROM es.append_to_stream($1, 's', -1, '[{"type":"E","payload":{},"tags":["t"]}]')`,
		`SELECT es.append_events($1, '[{"type":"E","payload":{},"tags":["t"]}]')`,
		`SELECT es.append_events($1, '[{"type":"E","payload":{},"tags":["u"]}]', '[{"tags":["never"]}]', 0)`,
		`SELECT * FROM es.stream_head($1, 's')`,
		`SELECT * FROM es.read_stream($1, 's', 0, 10, false)`,
		`SELECT es.read_head($1, '[{"types":["E"]}]')`,
		`SELECT * FROM es.read_events($1, '[{"types":["E"]}]', 0, NULL, 10, false)`,
		`SELECT * FROM es.load_snapshot($1, 's')`,
	} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := tx.Exec(ctx, call, tenant); err != nil {
				t.Fatalf("%s: %v", call, err)
			}
		}
		var locked, others, partitions int
		// pg_inherits, not pg_partition_tree, which locks what it lists.
		// Locks on the shared partition's 16 leaves (a fixed number: the
		// generic plans of es.first_match lock them all) are counted apart;
		// a call may lock no dedicated partition but its tenant's own.
		if err := tx.QueryRow(ctx, `WITH RECURSIVE parts(relid) AS (
			SELECT inhrelid FROM pg_inherits WHERE inhparent IN ('es.events'::regclass, 'es.snapshots'::regclass)
			UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN parts p ON i.inhparent = p.relid),
			held AS (SELECT p.relid FROM pg_locks l JOIN parts p ON p.relid = l.relation WHERE l.pid = pg_backend_pid())
			SELECT (SELECT count(*) FROM held),
			       (SELECT count(*) FROM held h WHERE h.relid NOT IN (SELECT inhrelid FROM pg_inherits
			            WHERE inhparent IN ('es."events$shared"'::regclass, 'es."snapshots$shared"'::regclass))
			          AND h.relid NOT IN ('es."events$shared"'::regclass, 'es."snapshots$shared"'::regclass)
			          AND h.relid::regclass::text NOT IN (format('es.%I', 'events_' || $1), format('es.%I', 'snapshots_' || $1))),
			       (SELECT count(*) FROM parts)`, tenant).Scan(&locked, &others, &partitions); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback(ctx)
		if partitions < 60 || locked > most || others > 0 {
			t.Errorf("tenant %s: %s, 10 calls: locks on %d partitions of %d (%d neither shared nor its own), want at most %d and none",
				tenant, call, locked, partitions, others, most)
		}
	}
}

// Every function with statements on a partitioned table forces custom
// plans (migrations/00009_custom_plans.sql), new ones included. (Naming
// the table as a regclass, as es.is_dedicated does, is no statement on it.)
// The exceptions are the append path's (migrations/00012), whose only
// statements on es.events are INSERTs: a generic INSERT plan locks the
// parent alone, which TestStreamFunctionsNeverLockEveryPartition checks.
// es.first_match runs generic plans on es."events$shared" (16 fixed leaves;
// that test bounds their locks) and its statement on es.events through
// EXECUTE, which plans with the values every time.
func TestPartitionedTableFunctionsUseCustomPlans(t *testing.T) {
	rows, err := testdb.Pool(t).Query(context.Background(), `
		SELECT p.oid::regprocedure::text FROM pg_proc p
		 WHERE p.pronamespace = 'es'::regnamespace AND p.prosrc ~ 'es\.(events|snapshots)\M(?!''::regclass)'
		   AND NOT coalesce('plan_cache_mode=force_custom_plan' = ANY (p.proconfig), false)
		   AND p.oid::regprocedure::text NOT IN ('es.append_to_stream(text,text,bigint,jsonb)', 'es.write_events(text,text,bigint,jsonb)',
		                                         'es.first_match(text,jsonb,bigint)')`)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatal(fmt.Sprintf("functions on es.events/es.snapshots without plan_cache_mode = force_custom_plan: %v", missing))
	}
}
