package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plot file names WritePlots writes.
const (
	PlotWrites  = "scale-writes.svg"
	PlotReads   = "scale-reads.svg"
	PlotCatchUp = "scale-catchup.svg"
	PlotBytes   = "scale-bytes.svg"
	PlotClients = "clients.svg"
)

// series is one line of a chart (color -1: black); style picks the dashes: 0 solid (p50,
// or the store), 1 dashed (p99), 2 dotted (a baseline).
type series struct {
	name   string
	xs, ys []float64
	color  int
	style  int
}

// WritePlots draws the report's curves as SVG files into dir (created if
// needed) and returns their paths: latencies of writes and of reads
// against the log size, catch-up rate, bytes per event, and throughput
// against client count.
func WritePlots(rep *ScaleReport, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	xs := rep.sizes()
	lat := func(name string, p func(*Result) float64, base bool) []float64 {
		ys := make([]float64, len(rep.Steps))
		for i := range rep.Steps {
			if r := rep.Steps[i].Result(name); r != nil {
				if base {
					r = r.Baseline
				}
				if r != nil {
					ys[i] = p(r)
				}
			}
		}
		return ys
	}
	p50 := func(r *Result) float64 { return ms(r.P50) }
	p99 := func(r *Result) float64 { return ms(r.P99) }
	rate := func(r *Result) float64 { return r.EventsPerSec }

	var writes, reads []series
	for i, n := range []struct{ scenario, label string }{
		{ScaleAppend, "stream append"}, {ScaleDCBDisjoint, "conditional append, disjoint"}, {ScaleDCBContend, "conditional append, contended (8 clients)"},
	} {
		writes = append(writes,
			series{n.label + " p50", xs, lat(n.scenario, p50, false), i, 0},
			series{n.label + " p99", xs, lat(n.scenario, p99, false), i, 1})
	}
	writes = append(writes, series{"plain INSERT p50 (baseline of the append)", xs, lat(ScaleAppend, p50, true), 3, 2})
	for i, n := range []struct{ scenario, label string }{
		{ScaleReadNew, "100-event stream, just written"}, {ScaleReadLoaded, "100-event stream, loaded"}, {ScaleTagQuery, "tag query, 100 events"},
	} {
		reads = append(reads,
			series{n.label + " p50", xs, lat(n.scenario, p50, false), i, 0},
			series{n.label + " p99", xs, lat(n.scenario, p99, false), i, 1})
	}
	reads = append(reads, series{"plain SELECT of the tag query's rows p50", xs, lat(ScaleTagQuery, p50, true), 2, 2})
	goal := make([]float64, len(xs))
	for i := range goal {
		goal[i] = 2
	}
	reads = append(reads, series{"goal: tag query under 2 ms at 10M", xs, goal, -1, 2})

	catchup := []series{
		{"subscription catch-up", xs, lat(ScaleCatchUp, rate, false), 0, 0},
		{"plain SELECT of the same rows", xs, lat(ScaleCatchUp, rate, true), 0, 2},
	}

	var bytes []series
	names := map[string][]float64{}
	var order []string
	total := make([]float64, len(rep.Steps))
	for i, s := range rep.Steps {
		for _, rel := range s.Relations {
			label := relationLabel(rel)
			if _, ok := names[label]; !ok {
				names[label] = make([]float64, len(rep.Steps))
				order = append(order, label)
			}
			per := float64(rel.Bytes) / float64(s.Size)
			names[label][i] = per
			total[i] += per
		}
	}
	bytes = append(bytes, series{"total", xs, total, -1, 0})
	for i, label := range order {
		bytes = append(bytes, series{label, xs, names[label], i + 1, 0})
	}

	var clients []series
	for i, name := range []string{ScaleAppend, ScaleDCBDisjoint} {
		var cx, cy, by []float64
		for _, r := range rep.Clients {
			if r.Scenario == name {
				cx = append(cx, float64(r.Clients))
				cy = append(cy, r.EventsPerSec)
				if r.Baseline != nil {
					by = append(by, r.Baseline.EventsPerSec)
				}
			}
		}
		label := map[string]string{ScaleAppend: "stream append", ScaleDCBDisjoint: "conditional append, disjoint"}[name]
		clients = append(clients, series{label, cx, cy, i, 0}, series{"plain INSERT beside the " + label, cx, by, i, 2})
	}

	var paths []string
	for _, c := range []struct {
		file, title, x, y string
		logX, logY        bool
		lines             []series
	}{
		{PlotWrites, "Appends against log size (1 client; contended: 8)", "events in the log", "latency (ms)", true, true, writes},
		{PlotReads, "Reads against log size (1 client)", "events in the log", "latency (ms)", true, true, reads},
		{PlotCatchUp, "Catch-up over the oldest 100,000 events (fewer at 10,000)", "events in the log", "events/s", true, false, catchup},
		{PlotBytes, "Bytes on disk per event", "events in the log", "bytes per event", true, false, bytes},
		{PlotClients, "Throughput against clients at " + shortNumber(float64(rep.ClientsSize)) + " events", "clients", "events/s", true, false, clients},
	} {
		path := filepath.Join(dir, c.file)
		drawn, err := lineChart(path, c.title, c.x, c.y, c.logX, c.logY, c.lines)
		if err != nil {
			return paths, fmt.Errorf("%s: %w", c.file, err)
		}
		if drawn {
			paths = append(paths, path)
		}
	}
	return paths, nil
}

func relationLabel(rel RelationSize) string {
	if rel.Kind == "table" {
		return "heap (with TOAST)"
	}
	// events_<tenant>_<columns>_idx|key|pkey (events_bench_scale_tags_idx):
	// keep what the index is on.
	name := rel.Name
	prefix := "events_" + ScaleTenant + "_"
	if len(name) > len(prefix) && name[:len(prefix)] == prefix {
		name = name[len(prefix):]
	}
	return "index " + name
}

// lineChart draws lines into an SVG file at path; with no positive point
// to draw it writes nothing and returns false.
func lineChart(path, title, xLabel, yLabel string, logX, logY bool, lines []series) (bool, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	if logX {
		p.X.Scale = plot.LogScale{}
		// A tick at every measured x (sizes, client counts), no others.
		var ticks []plot.Tick
		for _, s := range lines {
			for _, x := range s.xs {
				if x > 0 && !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Value == x }) {
					ticks = append(ticks, plot.Tick{Value: x, Label: shortNumber(x)})
				}
			}
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
	}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	} else {
		p.Y.Min = 0
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	drawn := false
	for _, s := range lines {
		var pts plotter.XYs
		for i := range s.xs {
			if i < len(s.ys) && s.ys[i] > 0 && s.xs[i] > 0 {
				pts = append(pts, plotter.XY{X: s.xs[i], Y: s.ys[i]})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return false, err
		}
		drawn = true
		l.Color, sc.Color = color.Color(color.Black), color.Color(color.Black)
		if s.color >= 0 {
			l.Color, sc.Color = plotutil.Color(s.color), plotutil.Color(s.color)
			sc.Shape = plotutil.Shape(s.color)
		}
		switch s.style {
		case 1:
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		case 2:
			l.Dashes = []vg.Length{vg.Points(1.5), vg.Points(2.5)}
		}
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
	}
	if !drawn {
		return false, nil
	}
	// A log axis needs a positive range, also around a single point.
	if logX {
		p.X.Min, p.X.Max = p.X.Min/1.25, p.X.Max*1.25
	}
	// Headroom at the top for the legend.
	if logY {
		p.Y.Min, p.Y.Max = p.Y.Min/1.25, p.Y.Max*8
	} else {
		p.Y.Max *= 1.5
	}
	return true, p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// shortNumber writes 10000 as 10k and 10000000 as 10M.
func shortNumber(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
