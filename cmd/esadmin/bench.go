package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eventstore-go/pges"
	"github.com/eventstore-go/pges/bench"
	"github.com/urfave/cli/v2"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "run the bench/ scenarios beside a same-run plain INSERT baseline",
		UsageText: `esadmin bench --duration 5s
   esadmin bench --scenarios stream-append-1 --clients 1,8 --json
   esadmin bench --tenants 1,100,1000,10000 --layout hybrid   (a freshly migrated scratch database)`,
		Description: "Writes only to its own tenant \"" + bench.Tenant + "\" and the table es_bench_raw_events. Scenarios: " + strings.Join(bench.Scenarios(), ", "),
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "length of each measured phase"},
			&cli.IntFlag{Name: "count", Usage: "calls per phase instead of --duration"},
			&cli.StringFlag{Name: "clients", Usage: "comma-separated client counts (default: per scenario)"},
			&cli.StringFlag{Name: "scenarios", Usage: "comma-separated scenario names (default: all)"},
			&cli.StringFlag{Name: "tenants", Usage: "instead of the scenarios, measure at these tenant counts, e.g. 1,100,1000,10000 (creates bench_t_* tenants)"},
			&cli.StringFlag{Name: "layout", Value: bench.LayoutPerTenant, Usage: "with --tenants, the tenant layout: " + strings.Join(bench.Layouts(), ", ") + " (hybrid layouts convert the schema: only on a freshly migrated scratch database without tenants)"},
			&cli.IntFlag{Name: "hash-partitions", Value: bench.DefaultHashPartitions, Usage: "with a hybrid --layout, the hash partitions of the shared partition (1-1024)"},
			&cli.IntFlag{Name: "large-tenant-events", Value: 100000, Usage: "with --tenants, end with the drop of a tenant holding this many events (0: skip)"},
			jsonFlag,
			&cli.BoolFlag{Name: "markdown", Usage: "print the final table as Markdown (for bench/RESULTS.md)"},
		},
		Action: func(c *cli.Context) error {
			cfg := bench.Config{Duration: c.Duration("duration"), Count: c.Int("count")}
			if cfg.Duration <= 0 && cfg.Count <= 0 {
				return usagef("--duration or --count must be positive")
			}
			if s := c.String("scenarios"); s != "" {
				cfg.Scenarios = strings.Split(s, ",")
			}
			if s := c.String("clients"); s != "" {
				for _, part := range strings.Split(s, ",") {
					var n int
					if _, err := fmt.Sscan(part, &n); err != nil || n < 1 || n > 256 {
						return usagef("--clients %q: use numbers from 1 to 256", s)
					}
					cfg.Clients = append(cfg.Clients, n)
				}
			}
			tenantsOnly := []string{"layout", "hash-partitions", "large-tenant-events"}
			if c.String("tenants") == "" {
				for _, f := range tenantsOnly {
					if c.IsSet(f) {
						return usagef("--%s applies only with --tenants", f)
					}
				}
			}
			cfg.Layout = c.String("layout")
			if !slices.Contains(bench.Layouts(), cfg.Layout) {
				return usagef("--layout %q: use one of %s", cfg.Layout, strings.Join(bench.Layouts(), ", "))
			}
			cfg.HashPartitions = c.Int("hash-partitions")
			if cfg.HashPartitions < 1 || cfg.HashPartitions > 1024 {
				return usagef("--hash-partitions %d: use a number from 1 to 1024", cfg.HashPartitions)
			}
			if c.IsSet("hash-partitions") && !strings.HasPrefix(cfg.Layout, "hybrid") {
				return usagef("--hash-partitions applies only to a hybrid --layout")
			}
			cfg.LargeTenantEvents = c.Int("large-tenant-events")
			if cfg.LargeTenantEvents < 0 || cfg.LargeTenantEvents > 10000000 {
				return usagef("--large-tenant-events %d: use a number from 0 to 10000000", cfg.LargeTenantEvents)
			}
			if !c.Bool("json") {
				cfg.Progress = c.App.Writer
				fmt.Fprintf(c.App.Writer, "bench: writing only to tenant %q and es_bench_raw_events\n", bench.Tenant)
				if c.String("tenants") != "" {
					fmt.Fprintf(c.App.Writer, "bench: tenant layout %s\n", cfg.Layout)
				}
			}
			pool, err := connect(c)
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := pges.Migrate(c.Context, pool); err != nil {
				return err
			}
			var results []bench.Result
			if s := c.String("tenants"); s != "" {
				var counts []int
				for _, part := range strings.Split(s, ",") {
					var n int
					if _, err := fmt.Sscan(part, &n); err != nil || n < 1 || n > 100000 {
						return usagef("--tenants %q: use numbers from 1 to 100000", s)
					}
					counts = append(counts, n)
				}
				results, err = bench.TenantScale(c.Context, pool, cfg, counts)
			} else {
				results, err = bench.Run(c.Context, pool, cfg)
			}
			if err != nil {
				return err
			}
			switch {
			case c.Bool("json"):
				return json.NewEncoder(c.App.Writer).Encode(results)
			case c.Bool("markdown"):
				return writeMarkdown(c, results)
			}
			return writeTable(c, results)
		},
	}
}

func writeTable(c *cli.Context, results []bench.Result) error {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tclients\tevents/s\tp50 ms\tp95 ms\tp99 ms\tconflicts\tbaseline events/s\tbaseline p50 ms\tratio\t")
	for _, r := range results {
		b := r.Baseline
		if b == nil {
			b = &bench.Result{}
		}
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%s\t%s\t%s\t%d\t%.0f\t%s\t%.2f\t\n", r.Scenario, r.Clients, r.EventsPerSec, ms(r.P50), ms(r.P95), ms(r.P99), r.Conflicts, b.EventsPerSec, ms(b.P50), r.Ratio)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return writeNotes(c, results)
}

// writeNotes prints what scenarios measured beyond the table's columns.
func writeNotes(c *cli.Context, results []bench.Result) error {
	for _, r := range results {
		if r.Note != "" {
			if _, err := fmt.Fprintf(c.App.Writer, "\n%s, %d clients: %s", r.Scenario, r.Clients, r.Note); err != nil {
				return err
			}
		}
	}
	for _, r := range results {
		if r.Note != "" {
			_, err := fmt.Fprintln(c.App.Writer)
			return err
		}
	}
	return nil
}

func writeMarkdown(c *cli.Context, results []bench.Result) error {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }
	w := c.App.Writer
	fmt.Fprintln(w, "| scenario | clients | events/s | p50 ms | p95 ms | p99 ms | conflicts | baseline events/s | baseline p50 ms | baseline p99 ms | ratio |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		b := r.Baseline
		if b == nil { // one-off operations (tenant create, drop)
			b = &bench.Result{}
		}
		_, err := fmt.Fprintf(w, "| %s | %d | %.0f | %s | %s | %s | %d | %.0f | %s | %s | %.2f |\n", r.Scenario, r.Clients, r.EventsPerSec,
			ms(r.P50), ms(r.P95), ms(r.P99), r.Conflicts, b.EventsPerSec, ms(b.P50), ms(b.P99), r.Ratio)
		if err != nil {
			return err
		}
	}
	return writeNotes(c, results)
}
