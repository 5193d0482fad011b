package report

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// ErrNothingToCompare is returned by WriteComparison when a run has no
// mean latency or no interval for it to compare.
var ErrNothingToCompare = errors.New("nothing to compare")

// Differences lists, in a fixed order, what makes two runs not like for
// like: each run's own status (stopped early, errors, ended during warm-up,
// lost probe events), then every difference in how and where they were
// measured (probe on or off and its settings, stop reason, kernel, CPU,
// server, load, pinning, confidence level, volleyscope version). Each entry
// is one sentence without a trailing newline.
func Differences(a, b *Results) []string { return differences("A", a, "B", b) }

func differences(na string, a *Results, nb string, b *Results) []string {
	var out []string
	for _, s := range []struct {
		name string
		r    *Results
	}{{na, a}, {nb, b}} {
		switch s.r.Run.StopReason {
		case "interrupted", "error":
			out = append(out, fmt.Sprintf("%s stopped early (%s): its numbers cover what was measured before", s.name, s.r.Run.StopReason))
		}
		if n := len(s.r.Errors); n > 0 {
			out = append(out, fmt.Sprintf("%s ended with %d error(s), the first: %s", s.name, n, s.r.Errors[0]))
		}
		if s.r.Run.WarmupIncluded {
			out = append(out, fmt.Sprintf("%s ended during its warm-up: its warm-up round trips are what is summarized", s.name))
		}
		if s.r.LostEvents > 0 {
			out = append(out, fmt.Sprintf("%s's probe lost %d events: its breakdown is incomplete", s.name, s.r.LostEvents))
		}
	}
	diff := func(what string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			out = append(out, fmt.Sprintf("%s differs: %s %v, %s %v", what, na, x, nb, y))
		}
	}
	diff("probe", onOff(probed(a)), onOff(probed(b)))
	if probed(a) && probed(b) {
		diff("probe mode", a.Meta.ProbeMode, b.Meta.ProbeMode)
		diff("probe --syscalls", onOff(a.Probe != nil && a.Probe.Syscalls), onOff(b.Probe != nil && b.Probe.Syscalls))
		for _, ev := range sortedKeys(union(a.Meta.Hooks, b.Meta.Hooks)) {
			diff("hook for "+ev, orNone(a.Meta.Hooks[ev]), orNone(b.Meta.Hooks[ev]))
		}
	}
	diff("stop reason", a.Run.StopReason, b.Run.StopReason)
	diff("kernel", a.Meta.Kernel, b.Meta.Kernel)
	if a.Meta.Vulnerabilities != nil && b.Meta.Vulnerabilities != nil {
		for _, k := range sortedKeys(union(a.Meta.Vulnerabilities, b.Meta.Vulnerabilities)) {
			diff("CPU vulnerability "+k, orNone(a.Meta.Vulnerabilities[k]), orNone(b.Meta.Vulnerabilities[k]))
		}
	}
	diff("cpufreq governor", orNone(a.Meta.Governor), orNone(b.Meta.Governor))
	if a.Meta.IOUring != "" && b.Meta.IOUring != "" {
		diff("io_uring features", a.Meta.IOUring, b.Meta.IOUring)
	}
	diff("CPU model", a.Meta.CPUModel, b.Meta.CPUModel)
	diff("virtualization", orNone(a.Meta.Virtualization), orNone(b.Meta.Virtualization))
	diff("CPU count", a.Meta.NCPU, b.Meta.NCPU)
	diff("server", a.Meta.Server, b.Meta.Server)
	diff("server spin", Dur(float64(a.Meta.ServerSpin)), Dur(float64(b.Meta.ServerSpin)))
	diff("clients", a.Meta.Clients, b.Meta.Clients)
	diff("proto", a.Meta.Proto, b.Meta.Proto)
	diff("payload size (bytes)", a.Meta.Size, b.Meta.Size)
	diff("workload", orNone(a.Meta.Workload), orNone(b.Meta.Workload))
	diff("client CPUs", cpuList(a.Meta.ClientCPUs), cpuList(b.Meta.ClientCPUs))
	diff("server CPUs", cpuList(a.Meta.ServerCPUs), cpuList(b.Meta.ServerCPUs))
	diff("confidence level", a.Latency.CILevel, b.Latency.CILevel)
	diff("volleyscope version", orNone(a.Meta.Version), orNone(b.Meta.Version))
	return out
}

// probed says whether the eBPF probe was attached during the run.
func probed(r *Results) bool {
	return r.Probe != nil || len(r.Breakdown) > 0 || (r.Meta.ProbeMode != "" && !strings.HasPrefix(r.Meta.ProbeMode, "none"))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func union(a, b map[string]string) map[string]string {
	u := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		u[k] = v
	}
	for k, v := range b {
		u[k] = v
	}
	return u
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Named is a results.json and the name it was read from.
type Named struct {
	Name string
	R    *Results
}

// Comparison options: CompareMargin is the ±fraction within which two
// groups of runs are called equivalent.
const CompareMargin = 0.05

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
// runs it says why there is none. ErrNothingToCompare: a run measured
// nothing.
func WriteComparison(w io.Writer, groups [][]Named, conf float64) error {
	if len(groups) < 2 {
		return fmt.Errorf("compare: %d group(s) of runs: want two or more", len(groups))
	}
	for gi, g := range groups {
		if len(g) == 0 {
			return fmt.Errorf("compare: group %s has no runs", groupName(gi))
		}
		for _, n := range g {
			if n.R.Latency.Count <= 0 || !(n.R.Latency.Mean > 0) {
				return fmt.Errorf("compare: %s (%s) measured no round trips: %w", groupName(gi), n.Name, ErrNothingToCompare)
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
			if n.R.Meta.Virtualization == VirtEmulated {
				emulated = append(emulated, n.Name)
			}
		}
		fmt.Fprintf(w, "%s: %s  (%s, kernel %s, %d clients)\n", groupName(gi), strings.Join(names, " "), r.Meta.Server, r.Meta.Kernel, r.Meta.Clients)
	}
	if len(emulated) > 0 {
		fmt.Fprintf(w, "emulated: %s ran under software emulation (%s): timings are the emulator's, shown for what differs, not judged\n", strings.Join(emulated, ", "), VirtEmulated)
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
			for _, d := range differences(refName, ref.R, name, n.R) {
				fmt.Fprintf(w, "warning: %s\n", d)
			}
		}
	}
	type metric struct {
		name string
		get  func(*Results) float64
		dur  bool
	}
	metrics := []metric{
		{"mean", func(r *Results) float64 { return r.Latency.Mean }, true},
		{"p50", func(r *Results) float64 { return r.Latency.P50 }, true},
		{"p90", func(r *Results) float64 { return r.Latency.P90 }, true},
		{"p99", func(r *Results) float64 { return r.Latency.P99 }, true},
		{"p99.9", func(r *Results) float64 { return r.Latency.P999 }, true},
		{"max", func(r *Results) float64 { return r.Latency.Max }, true},
		{"throughput/s", func(r *Results) float64 { return r.ThroughputRPS }, false},
		{"server CPU/request", func(r *Results) float64 {
			if r.ServerCost == nil {
				return 0
			}
			return r.ServerCost.CPUNs
		}, true},
	}
	everyRun := func(has func(*Results) bool) bool {
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
		if everyRun(func(r *Results) bool { return component(r, key) != nil }) {
			metrics = append(metrics, metric{c.Component, func(r *Results) float64 { return component(r, key).MeanNs }, true})
		}
	}
	for _, sc := range groups[0][0].R.Syscalls {
		key := sc.Side + " " + sc.Name
		if everyRun(func(r *Results) bool { return syscall(r, key) != nil }) {
			metrics = append(metrics, metric{key + " p50", func(r *Results) float64 { return syscall(r, key).P50Ns }, true})
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
		fmt.Fprintf(tw, "interval (%s)\t", pct(conf))
	}
	fmt.Fprintln(tw)
	var judged []MetricVerdict
	for _, m := range metrics {
		vals := make([][]float64, len(groups))
		means := make([]float64, len(groups))
		skip := false
		for gi, g := range groups {
			for _, n := range g {
				vals[gi] = append(vals[gi], m.get(n.R))
			}
			means[gi] = geoMeanOf(vals[gi])
			skip = skip || means[gi] == 0
		}
		if skip && m.name == "server CPU/request" {
			continue
		}
		fmt.Fprintf(tw, "%s\t", m.name)
		for _, v := range means {
			if m.dur {
				fmt.Fprintf(tw, "%s\t", Dur(v))
			} else {
				fmt.Fprintf(tw, "%.0f\t", v)
			}
		}
		for gi := 1; gi < len(groups); gi++ {
			fmt.Fprintf(tw, "%.3f\t", safeDiv(means[gi], means[0]))
		}
		if verdicts {
			iv := ""
			if positive(vals[0]) && positive(vals[1]) {
				r := stats.WelchRatio(vals[1], vals[0], conf)
				iv = fmt.Sprintf("[%.3f, %.3f]", r.Low, r.High)
				if r.Significant {
					iv += " *"
				}
				if m.name == "p50" || m.name == "p99" || m.name == "mean" || m.name == "throughput/s" {
					name := strings.TrimSuffix(m.name, "/s")
					o := stats.Classify(r, CompareMargin)
					judged = append(judged, MetricVerdict{Metric: name, Ratio: r, Outcome: o, Text: metricText("A", "B", name, r, o, CompareMargin, conf)})
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

// geoMeanOf is the geometric mean of a group's runs, so that the table's
// ratio B/A is the verdict's (stats.WelchRatio: a ratio of geometric
// means). A value that is not positive (a run without a figure) makes it
// the arithmetic mean, which no verdict is drawn on.
func geoMeanOf(xs []float64) float64 {
	var s, logs float64
	for _, x := range xs {
		s += x
		logs += math.Log(x)
	}
	if !positive(xs) {
		return s / float64(len(xs))
	}
	return math.Exp(logs / float64(len(xs)))
}

// component finds a breakdown component by "side/name".
func component(r *Results, key string) *Component {
	for i, c := range r.Breakdown {
		if c.Side+"/"+c.Component == key {
			return &r.Breakdown[i]
		}
	}
	return nil
}

// syscall finds a per-syscall row by "side name".
func syscall(r *Results, key string) *Syscall {
	for i, s := range r.Syscalls {
		if s.Side+" "+s.Name == key {
			return &r.Syscalls[i]
		}
	}
	return nil
}
