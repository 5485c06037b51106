package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
   esadmin bench --tenants 1,100,1000,10000 --layout dedicated
   esadmin bench --scale 10000,100000,1000000,10000000 --plots bench/plots --markdown`,
		Description: "Writes only to its own tenants (\"" + bench.Tenant + "\", " + bench.Tenant + "_*) and the table es_bench_raw_events. Scenarios: " + strings.Join(bench.Scenarios(), ", ") +
			". --tenants measures creating, using, dedicating and dropping tenants at each count instead; the " + bench.Tenant + "_t_* tenants it creates stay for the next run, which must use the same --layout.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "length of each measured phase"},
			&cli.IntFlag{Name: "count", Usage: "calls per phase instead of --duration"},
			&cli.IntFlag{Name: "rounds", Value: 1, Usage: "repeat every scenario this many times, alternating whether the store or the baseline runs first, and end with the spread of the ratios"},
			&cli.StringFlag{Name: "clients", Usage: "comma-separated client counts (default: per scenario)"},
			&cli.StringFlag{Name: "scenarios", Usage: "comma-separated scenario names (default: all)"},
			&cli.StringFlag{Name: "tenants", Usage: "instead of the scenarios, measure at these tenant counts, e.g. 1,100,1000,10000 (creates bench_t_* tenants)"},
			&cli.StringFlag{Name: "layout", Value: bench.LayoutShared, Usage: "with --tenants, the bench tenants' layout: shared (as tenant create makes them) or dedicated (each dedicated right after its creation, partitions of its own)"},
			&cli.IntFlag{Name: "large-tenant-events", Value: 100000, Usage: "with --tenants, end with the drops of a shared and of a dedicated tenant holding this many events (0: skip)"},
			&cli.StringFlag{Name: "scale", Usage: "instead of the scenarios, the scale study: load tenant " + bench.ScaleTenant + " to these sizes in turn (ascending, 1000 to 100000000 events, e.g. 10000,100000,1000000,10000000) and measure at each; --count is then the calls per latency phase (default 2000), --duration each phase of the client sweep at the last size, --clients its client counts (default 1,2,4,8,16,32); progress goes to stderr"},
			&cli.IntFlag{Name: "window", Value: 100000, Usage: "with --scale: the catch-up window, the oldest N events"},
			&cli.StringFlag{Name: "plots", Usage: "with --scale: write SVG plots of the curves and the report (scale.json) into this directory"},
			&cli.BoolFlag{Name: "reset", Usage: "with --scale: drop tenant " + bench.ScaleTenant + " first (an earlier study's events)"},
			jsonFlag(),
			&cli.BoolFlag{Name: "markdown", Usage: "print the final table as Markdown (for bench/RESULTS.md)"},
		},
		Action: func(c *cli.Context) error {
			cfg := bench.Config{Duration: c.Duration("duration"), Count: c.Int("count"), Rounds: c.Int("rounds")}
			if cfg.Duration <= 0 && cfg.Count <= 0 {
				return usagef("--duration or --count must be positive")
			}
			if cfg.Rounds < 1 || cfg.Rounds > 100 {
				return usagef("--rounds %d: use 1 to 100", cfg.Rounds)
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
			tenantsOnly := []string{"layout", "large-tenant-events"}
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
			cfg.LargeTenantEvents = c.Int("large-tenant-events")
			if cfg.LargeTenantEvents < 0 || cfg.LargeTenantEvents > 10000000 {
				return usagef("--large-tenant-events %d: use a number from 0 to 10000000", cfg.LargeTenantEvents)
			}
			if c.IsSet("scale") {
				return runScale(c, cfg)
			}
			if c.IsSet("plots") || c.IsSet("window") || c.IsSet("reset") {
				return usagef("--plots, --window and --reset go with --scale")
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
				if err := writeMarkdown(c, results); err != nil {
					return err
				}
				return writeSpread(c, results)
			}
			if err := writeTable(c, results); err != nil {
				return err
			}
			return writeSpread(c, results)
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
	for i, r := range results {
		if r.Conflicts > 0 {
			note := fmt.Sprintf("%d calls lost to a condition, their p50 %.2f ms", r.Conflicts, float64(r.ConflictP50)/1e6)
			if r.Note != "" {
				note = r.Note + "; " + note
			}
			results[i].Note = note
		}
	}
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

// writeSpread prints, for runs of several rounds, each scenario's median
// ratio with its range, as Markdown.
func writeSpread(c *cli.Context, results []bench.Result) error {
	if c.Int("rounds") < 2 {
		return nil
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }
	w := c.App.Writer
	fmt.Fprintf(w, "\nOver %d alternating rounds (medians; ratio min-max):\n\n", c.Int("rounds"))
	fmt.Fprintln(w, "| scenario | clients | events/s | p50 ms | p99 ms | ratio | ratio range |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, s := range bench.Summarize(results) {
		if _, err := fmt.Fprintf(w, "| %s | %d | %.0f | %s | %s | %.2f | %.2f-%.2f |\n", s.Scenario, s.Clients,
			s.EventsPerSecMedian, ms(s.P50Median), ms(s.P99Median), s.RatioMedian, s.RatioMin, s.RatioMax); err != nil {
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

// runScale validates the scale study's flags, runs it (bench.Scale),
// writes the plots and prints the tables.
func runScale(c *cli.Context, base bench.Config) error {
	if c.IsSet("tenants") || c.IsSet("scenarios") {
		return usagef("--scale does not combine with --tenants or --scenarios")
	}
	var sizes []int64
	for _, part := range strings.Split(c.String("scale"), ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(part), 10, 64)
		if err != nil {
			return usagef("--scale %q: %q is not a number of events (e.g. --scale 10000,100000,1000000)", c.String("scale"), part)
		}
		sizes = append(sizes, n)
	}
	if err := bench.CheckSizes(sizes); err != nil {
		return usagef("--scale %q: %v", c.String("scale"), err)
	}
	if w := c.Int("window"); w < 1 {
		return usagef("--window %d: use 1 or more events", w)
	}
	cfg := bench.ScaleConfig{Sizes: sizes, Count: base.Count, Window: int64(c.Int("window")), Clients: base.Clients, Reset: c.Bool("reset")}
	if c.IsSet("duration") {
		cfg.Duration = base.Duration
	}
	if !c.Bool("json") {
		cfg.Progress = c.App.ErrWriter
		fmt.Fprintf(c.App.ErrWriter, "bench: the scale study writes only to tenant %q and es_bench_raw_events\n", bench.ScaleTenant)
	}
	pool, err := connect(c)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pges.Migrate(c.Context, pool); err != nil {
		return err
	}
	rep, runErr := bench.Scale(c.Context, pool, cfg)
	if rep == nil || len(rep.Steps) == 0 {
		return runErr
	}
	// A study stopped part way (Ctrl-C, an error) still reports the sizes
	// it finished, then fails.
	// The plots, and the report as JSON beside them (scale.json): a failure
	// here still prints the tables of a study that may have taken an hour.
	var plots []string
	var plotErr error
	if dir := c.String("plots"); dir != "" {
		if plots, plotErr = bench.WritePlots(rep, dir); plotErr == nil {
			b, _ := json.MarshalIndent(rep, "", "  ")
			plotErr = os.WriteFile(filepath.Join(dir, "scale.json"), append(b, '\n'), 0o644)
		}
	}
	if c.Bool("json") {
		err = json.NewEncoder(c.App.Writer).Encode(rep)
	} else {
		err = writeScale(c, rep, plots, c.Bool("markdown"))
	}
	return errors.Join(runErr, err, plotErr)
}

// writeScale prints the scale study's tables, as Markdown or aligned text.
func writeScale(c *cli.Context, rep *bench.ScaleReport, plots []string, markdown bool) error {
	w := c.App.Writer
	table := func(title string, header []string, rows [][]string) {
		fmt.Fprintf(w, "\n%s\n\n", title)
		if markdown {
			fmt.Fprintf(w, "| %s |\n|", strings.Join(header, " | "))
			for i := range header {
				if i == 0 {
					fmt.Fprint(w, "---|")
				} else {
					fmt.Fprint(w, "---:|")
				}
			}
			fmt.Fprintln(w)
			for _, r := range rows {
				fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
			}
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
		}
		tw.Flush()
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }
	pp := func(r *bench.Result) string {
		if r == nil {
			return "-"
		}
		return ms(r.P50) + " / " + ms(r.P99)
	}
	n := func(v int64) string { return groupDigits(v) }

	var rows [][]string
	for i := range rep.Steps {
		s := &rep.Steps[i]
		cu := s.Result(bench.ScaleCatchUp)
		catchup := "-"
		if cu != nil && cu.Baseline != nil {
			catchup = fmt.Sprintf("%s (%s)", groupDigits(int64(cu.EventsPerSec)), groupDigits(int64(cu.Baseline.EventsPerSec)))
		}
		rows = append(rows, []string{n(s.Size), pp(s.Result(bench.ScaleAppend)), pp(s.Result(bench.ScaleDCBDisjoint)), pp(s.Result(bench.ScaleDCBContend)),
			pp(s.Result(bench.ScaleReadNew)), pp(s.Result(bench.ScaleReadLoaded)), pp(s.Result(bench.ScaleTagQuery)), catchup,
			fmt.Sprintf("%.0f + %.0f", s.TableBytesPerEvent, s.IndexBytesPerEvent)})
	}
	table("Latency p50 / p99 in ms by events in the log (1 client; contended: several), catch-up events/s (plain SELECT), bytes per event (heap + indexes):",
		[]string{"events", "append", "cond. append disjoint", "cond. append contended", "read 100 (new stream)", "read 100 (loaded stream)", "tag query 100", "catch-up events/s", "bytes/event"}, rows)

	rows = nil
	for _, s := range rep.Steps {
		rows = append(rows, []string{n(s.Size), n(s.Load.After - s.Load.Before), fmt.Sprintf("%.1f", s.Load.Elapsed.Seconds()), groupDigits(int64(s.Load.EventsPerSec)),
			fmt.Sprintf("%.1f", s.VacuumSeconds), fmt.Sprintf("%.1f", s.CheckpointSeconds), n(s.SizeAfter), fmt.Sprintf("%s (%s events)", s.TagQuery, n(s.TagQueryCount))})
	}
	table("Loads:", []string{"events", "loaded", "load s", "load events/s", "vacuum s", "checkpoint s", "events after the step", "tag queried"}, rows)

	rows = nil
	var relNames []string
	for _, s := range rep.Steps {
		for _, r := range s.Relations {
			if !slices.Contains(relNames, r.Name) {
				relNames = append(relNames, r.Name)
			}
		}
	}
	for _, name := range relNames {
		row := []string{name}
		for _, s := range rep.Steps {
			cell := "-"
			for _, r := range s.Relations {
				if r.Name == name {
					cell = fmt.Sprintf("%.1f", float64(r.Bytes)/float64(s.Size))
				}
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	header := []string{"bytes per event"}
	for _, s := range rep.Steps {
		header = append(header, n(s.Size))
	}
	table("Sizes on disk per event:", header, rows)

	rows = nil
	for _, s := range rep.Steps {
		for _, r := range s.Results {
			b := r.Baseline
			if b == nil {
				b = &bench.Result{}
			}
			rows = append(rows, []string{n(s.Size), r.Scenario, strconv.Itoa(r.Clients), fmt.Sprintf("%.0f", r.EventsPerSec), ms(r.P50), ms(r.P95), ms(r.P99), ms(r.Max),
				strconv.FormatInt(r.Conflicts, 10), fmt.Sprintf("%.0f", b.EventsPerSec), ms(b.P50), ms(b.P99), fmt.Sprintf("%.2f", r.Ratio)})
		}
	}
	table("Every phase:", []string{"events", "scenario", "clients", "events/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "conflicts", "baseline events/s", "baseline p50 ms", "baseline p99 ms", "ratio"}, rows)

	fmt.Fprintln(w, "\nWhat the database's active backends waited for in each store phase (sampled every 20 ms):")
	fmt.Fprintln(w)
	for _, s := range rep.Steps {
		for _, r := range s.Results {
			if r.Note != "" {
				fmt.Fprintf(w, "- %s events, %s: %s\n", n(s.Size), r.Scenario, r.Note)
			}
		}
	}
	for _, r := range rep.Clients {
		if r.Note != "" {
			fmt.Fprintf(w, "- %s, %d clients: %s\n", r.Scenario, r.Clients, r.Note)
		}
	}

	rows = nil
	for _, r := range rep.Clients {
		b := r.Baseline
		if b == nil {
			b = &bench.Result{}
		}
		rows = append(rows, []string{r.Scenario, strconv.Itoa(r.Clients), fmt.Sprintf("%.0f", r.EventsPerSec), ms(r.P50), ms(r.P99),
			fmt.Sprintf("%.0f", b.EventsPerSec), ms(b.P50), ms(b.P99), fmt.Sprintf("%.2f", r.Ratio)})
	}
	table(fmt.Sprintf("Throughput against clients at %s events (plain INSERT beside each):", n(rep.ClientsSize)),
		[]string{"scenario", "clients", "events/s", "p50 ms", "p99 ms", "baseline events/s", "baseline p50 ms", "baseline p99 ms", "ratio"}, rows)

	if len(plots) > 0 {
		fmt.Fprintln(w, "\nPlots:")
		fmt.Fprintln(w)
		for _, p := range plots {
			if markdown {
				fmt.Fprintf(w, "![%s](%s)\n", filepath.Base(p), p)
			} else {
				fmt.Fprintln(w, p)
			}
		}
	}
	_, err := fmt.Fprintf(w, "\nThe study took %s.\n", rep.Elapsed.Round(time.Second))
	return err
}

// groupDigits writes n with thousands separators: 10,000,000.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + groupDigits(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
