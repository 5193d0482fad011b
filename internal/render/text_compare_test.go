package render

import (
	"bytes"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/report"
)

// TestCompareEmulated: runs recorded under emulation are labelled, a
// difference in virtualization is warned about, and no verdict is given
// even where two groups of runs would get one.
func TestCompareEmulated(t *testing.T) {
	base := readTestResults(t, "results-probed.json")
	run := func(name, virt string, scale float64) report.Named {
		r := *base
		r.Meta.Virtualization = virt
		r.Latency.Mean *= scale
		r.Latency.P50 *= scale
		r.Latency.P99 *= scale
		return report.Named{Name: name, R: &r}
	}
	for _, tc := range []struct {
		name    string
		a, b    []report.Named
		want    []string
		notWant []string
	}{
		{"both emulated, groups", []report.Named{run("a1", hostinfo.VirtEmulated, 1), run("a2", hostinfo.VirtEmulated, 1.01)}, []report.Named{run("b1", hostinfo.VirtEmulated, 1.3), run("b2", hostinfo.VirtEmulated, 1.31)},
			[]string{"emulated: a1, a2, b1, b2 ran under software emulation (qemu-tcg)", "no verdict: timings under software emulation are not judged"},
			[]string{"virtualization differs", "p50:        "}},
		{"one emulated", []report.Named{run("kvm.json", "kvm", 1)}, []report.Named{run("tcg.json", hostinfo.VirtEmulated, 30)},
			[]string{"warning: virtualization differs: A kvm, B qemu-tcg", "emulated: tcg.json ran under", "no verdict: timings under software emulation"},
			nil},
		{"none emulated", []report.Named{run("a1", "kvm", 1), run("a2", "kvm", 1.01)}, []report.Named{run("b1", "kvm", 1.3), run("b2", "kvm", 1.31)},
			[]string{"p50:        "},
			[]string{"emulated:", "virtualization differs", "no verdict"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteComparison(&buf, [][]report.Named{tc.a, tc.b}, 0.99); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, s := range tc.want {
				if !strings.Contains(out, s) {
					t.Errorf("report lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.notWant {
				if strings.Contains(out, s) {
					t.Errorf("report has %q:\n%s", s, out)
				}
			}
		})
	}
}
