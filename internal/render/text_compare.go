package render

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/report"
)

// WriteComparison compares recorded runs, in groups: A's runs, B's runs,
// and so on (e.g. the same server on two kernels). First every
// difference that makes them not like for like (Differences, each group's
// first run against A's, and within each group), then the percentiles,
// throughput and breakdown components side by side, each group's mean
// over its runs, with ratios to A.
//
// A verdict needs the spread of whole runs: a run's own interval leaves
// out how much one run differs from the next (two back-to-back runs of
// one setup differed by a third, far outside their own intervals). So
// with two groups of at least two runs each, the ratio B/A of each
// metric gets a Welch interval across the runs and a verdict (a
// difference, an equivalence within CompareMargin, or none); with fewer
// runs it says why there is none. report.ErrNothingToCompare: a run measured
// nothing.
func WriteComparison(w io.Writer, groups [][]report.Named, conf float64) error {
	if len(groups) < 2 {
		return fmt.Errorf("compare: %d group(s) of runs: want two or more", len(groups))
	}
	for gi, g := range groups {
		if len(g) == 0 {
			return fmt.Errorf("compare: group %s has no runs", groupName(gi))
		}
		for _, n := range g {
			if n.R.Latency.Count <= 0 || !(n.R.Latency.Mean > 0) {
				return fmt.Errorf("compare: %s (%s) measured no round trips: %w", groupName(gi), n.Name, report.ErrNothingToCompare)
			}
		}
	}
	if conf == 0 {
		conf = groups[0][0].R.Latency.CILevel
	}
	if conf == 0 {
		conf = 0.99
	}
	var emulated []string // runs whose timings are an emulator's
	for gi, g := range groups {
		r := g[0].R
		names := make([]string, len(g))
		for i, n := range g {
			names[i] = n.Name
			if n.R.Meta.Virtualization == hostinfo.VirtEmulated {
				emulated = append(emulated, n.Name)
			}
		}
		fmt.Fprintf(w, "%s: %s  (%s, kernel %s, %d clients)\n", groupName(gi), strings.Join(names, " "), r.Meta.Server, r.Meta.Kernel, r.Meta.Clients)
	}
	if len(emulated) > 0 {
		fmt.Fprintf(w, "emulated: %s ran under software emulation (%s): timings are the emulator's, shown for what differs, not judged\n", strings.Join(emulated, ", "), hostinfo.VirtEmulated)
	}
	for gi, g := range groups {
		for i, n := range g {
			if gi == 0 && i == 0 {
				continue
			}
			ref, refName := groups[0][0], "A"
			name := groupName(gi)
			if i > 0 {
				ref, refName, name = g[0], groupName(gi)+"1", fmt.Sprintf("%s%d", groupName(gi), i+1)
			} else if len(groups[0]) > 1 {
				refName = "A1"
			}
			if i == 0 && len(g) > 1 {
				name += "1"
			}
			for _, d := range report.Differences(refName, ref.R, name, n.R) {
				fmt.Fprintf(w, "warning: %s\n", d)
			}
		}
	}
	type metric struct {
		name string
		get  func(*report.Results) float64
		dur  bool
	}
	metrics := []metric{
		{"mean", func(r *report.Results) float64 { return r.Latency.Mean }, true},
		{"p50", func(r *report.Results) float64 { return r.Latency.P50 }, true},
		{"p90", func(r *report.Results) float64 { return r.Latency.P90 }, true},
		{"p99", func(r *report.Results) float64 { return r.Latency.P99 }, true},
		{"p99.9", func(r *report.Results) float64 { return r.Latency.P999 }, true},
		{"max", func(r *report.Results) float64 { return r.Latency.Max }, true},
		{"throughput/s", func(r *report.Results) float64 { return r.ThroughputRPS }, false},
		{"server CPU/request", func(r *report.Results) float64 {
			if r.ServerCost == nil {
				return 0
			}
			return r.ServerCost.CPUNs
		}, true},
	}
	everyRun := func(has func(*report.Results) bool) bool {
		for _, g := range groups {
			for _, n := range g {
				if !has(n.R) {
					return false
				}
			}
		}
		return true
	}
	// Breakdown components and syscalls every run has, in the first run's order.
	for _, c := range groups[0][0].R.Breakdown {
		key := c.Side + "/" + c.Component
		if everyRun(func(r *report.Results) bool { return component(r, key) != nil }) {
			metrics = append(metrics, metric{c.Component, func(r *report.Results) float64 { return component(r, key).MeanNs }, true})
		}
	}
	for _, sc := range groups[0][0].R.Syscalls {
		key := sc.Side + " " + sc.Name
		if everyRun(func(r *report.Results) bool { return syscall(r, key) != nil }) {
			metrics = append(metrics, metric{key + " p50", func(r *report.Results) float64 { return syscall(r, key).P50Ns }, true})
		}
	}
	verdicts := len(groups) == 2 && len(groups[0]) >= 2 && len(groups[1]) >= 2 && len(emulated) == 0
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for gi, g := range groups {
		if len(g) > 1 {
			fmt.Fprintf(tw, "%s (geometric mean of %d)\t", groupName(gi), len(g))
		} else {
			fmt.Fprintf(tw, "%s\t", groupName(gi))
		}
	}
	for gi := 1; gi < len(groups); gi++ {
		fmt.Fprintf(tw, "%s/A\t", groupName(gi))
	}
	if verdicts {
		fmt.Fprintf(tw, "interval (%s)\t", report.Pct(conf))
	}
	fmt.Fprintln(tw)
	var judged []report.MetricVerdict
	for _, m := range metrics {
		vals := make([][]float64, len(groups))
		means := make([]float64, len(groups))
		skip := false
		for gi, g := range groups {
			for _, n := range g {
				vals[gi] = append(vals[gi], m.get(n.R))
			}
			means[gi] = report.GeoMean(vals[gi])
			skip = skip || means[gi] == 0
		}
		if skip && m.name == "server CPU/request" {
			continue
		}
		fmt.Fprintf(tw, "%s\t", m.name)
		for _, v := range means {
			if m.dur {
				fmt.Fprintf(tw, "%s\t", report.Dur(v))
			} else {
				fmt.Fprintf(tw, "%.0f\t", v)
			}
		}
		for gi := 1; gi < len(groups); gi++ {
			fmt.Fprintf(tw, "%.3f\t", report.SafeDiv(means[gi], means[0]))
		}
		if verdicts {
			iv := ""
			if r, ok := report.RunsRatio(vals[0], vals[1], conf); ok {
				iv = fmt.Sprintf("[%.3f, %.3f]", r.Low, r.High)
				if r.Significant {
					iv += " *"
				}
				if m.name == "p50" || m.name == "p99" || m.name == "mean" || m.name == "throughput/s" {
					judged = append(judged, report.Judge("A", "B", strings.TrimSuffix(m.name, "/s"), r, report.CompareMargin, conf))
				}
			}
			fmt.Fprintf(tw, "%s\t", iv)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !verdicts {
		why := "significance cannot be judged from one run of each side: a run's own interval leaves out how much whole runs differ (two back-to-back runs of one setup can differ by far more); repeat each side and give the runs as groups, 'compare A1 A2 A3 -- B1 B2 B3', for a verdict"
		switch {
		case len(emulated) > 0:
			why = "timings under software emulation are not judged; compare runs recorded on the machines themselves"
		case len(groups) > 2:
			why = "a verdict compares two groups of runs; with more, the table shows the differences only"
		case len(groups[0]) > 1 || len(groups[1]) > 1:
			why = "a verdict needs at least two runs on each side, for the spread of whole runs"
		}
		_, err := fmt.Fprintf(w, "no verdict: %s\n", why)
		return err
	}
	fmt.Fprintf(w, "(* the interval, across whole runs, excludes 1)\n")
	for _, m := range judged {
		fmt.Fprintf(w, "%-11s %s\n", m.Metric+":", m.Text)
	}
	return nil
}

// groupName is A, B, C, … for group i.
func groupName(i int) string { return string(rune('A' + i)) }

// component finds a breakdown component by "side/name".
func component(r *report.Results, key string) *report.Component {
	for i, c := range r.Breakdown {
		if c.Side+"/"+c.Component == key {
			return &r.Breakdown[i]
		}
	}
	return nil
}

// syscall finds a per-syscall row by "side name".
func syscall(r *report.Results, key string) *report.Syscall {
	for i, s := range r.Syscalls {
		if s.Side+" "+s.Name == key {
			return &r.Syscalls[i]
		}
	}
	return nil
}
