package report

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
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
func Differences(na string, a *Results, nb string, b *Results) []string {
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
		for _, ev := range SortedKeys(union(a.Meta.Hooks, b.Meta.Hooks)) {
			diff("hook for "+ev, orNone(a.Meta.Hooks[ev]), orNone(b.Meta.Hooks[ev]))
		}
	}
	diff("stop reason", a.Run.StopReason, b.Run.StopReason)
	diff("kernel", a.Meta.Kernel, b.Meta.Kernel)
	if a.Meta.Vulnerabilities != nil && b.Meta.Vulnerabilities != nil {
		for _, k := range SortedKeys(union(a.Meta.Vulnerabilities, b.Meta.Vulnerabilities)) {
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
	if la, lb := loadText(a.Meta), loadText(b.Meta); la != lb {
		out = append(out, fmt.Sprintf("different load: %s %s, %s %s", na, la, nb, lb))
	}
	diff("proto", a.Meta.Proto, b.Meta.Proto)
	diff("payload size (bytes)", a.Meta.Size, b.Meta.Size)
	diff("workload", orNone(a.Meta.Workload), orNone(b.Meta.Workload))
	diff("client CPUs", CPUList(a.Meta.ClientCPUs), CPUList(b.Meta.ClientCPUs))
	diff("server CPUs", CPUList(a.Meta.ServerCPUs), CPUList(b.Meta.ServerCPUs))
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

// SafeDiv is a / b, or 0 when b is 0.
func SafeDiv(a, b float64) float64 {
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

// RunsRatio is the ratio b/a of one metric across two groups of whole
// runs, with its Welch interval at level conf; false when a run of either
// group has no positive value, so that no ratio can be taken.
func RunsRatio(a, b []float64, conf float64) (stats.Ratio, bool) {
	if !positive(a) || !positive(b) {
		return stats.Ratio{}, false
	}
	return stats.WelchRatio(b, a, conf), true
}

// GeoMean is the geometric mean of a group's runs, so that a comparison
// table's ratio B/A is the verdict's (stats.WelchRatio: a ratio of
// geometric means). A value that is not positive (a run without a
// figure) makes it the arithmetic mean, which no verdict is drawn on.
func GeoMean(xs []float64) float64 {
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

// loadText is the load a run put on its server: its connections, and an
// open loop's offered rate.
func loadText(m Meta) string {
	s := fmt.Sprintf("%d connection(s), closed loop", m.Clients)
	if m.RateRPS > 0 {
		s = fmt.Sprintf("%d connection(s), open loop offering %s/s", m.Clients, loadgen.Thousands(m.RateRPS))
	}
	return s
}
