package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/golden"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/stats"
)

// readTestResults reads one of the results.json files that the tests of
// report and render share.
func readTestResults(t *testing.T, name string) *report.Results {
	t.Helper()
	r, err := report.ReadJSON(filepath.Join("../../testdata/results", name))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testVerdict is the rounds of an A/B comparison, not yet decided.
func testVerdict(t *testing.T) *report.Verdict {
	t.Helper()
	b, err := os.ReadFile("../../testdata/results/verdict-rounds.json")
	if err != nil {
		t.Fatal(err)
	}
	var v report.Verdict
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

func TestGoldenText(t *testing.T) {
	for _, tc := range []struct{ in, golden string }{
		{"results-probed.json", "text-probed.golden"},
		{"results-bench-interrupted.json", "text-bench-interrupted.golden"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r := readTestResults(t, tc.in)
			// The summary prints maps (hooks missing, unjoined reasons): it
			// must read the same every time.
			var first []byte
			for i := range 5 {
				var buf bytes.Buffer
				if err := WriteText(&buf, r); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = buf.Bytes()
				} else if !bytes.Equal(buf.Bytes(), first) {
					t.Fatalf("WriteText output changed between calls:\n%s\n---\n%s", first, buf.Bytes())
				}
			}
			golden.Check(t, tc.golden, first)
		})
	}
}

func TestGoldenVerdict(t *testing.T) {
	full := testVerdict(t)
	partial := testVerdict(t)
	partial.PairsWanted, partial.StopReason = 8, "error"
	// Equal servers, stopped by the sequential rule at its second look (5 pairs).
	same := testVerdict(t)
	same.P50B, same.MeanB, same.P99B, same.RPSB = same.P50A, same.MeanA, same.P99A, same.RPSA
	same.P50B = []float64{66.5e3, 66.8e3, 65.2e3, 65.9e3, 66.2e3}
	same.PairsWanted, same.StopReason, same.LookConfidence = 0, "conclusive", stats.LookConfidence(0.99, 2)
	for _, tc := range []struct {
		name string
		v    *report.Verdict
	}{{"verdict.golden", full}, {"verdict-partial.golden", partial}, {"verdict-equivalent.golden", same}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.v.Decide(); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteVerdict(&buf, tc.v); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tc.name, buf.Bytes())
		})
	}
}

func TestGoldenCompare(t *testing.T) {
	probed := readTestResults(t, "results-probed.json")
	bench := readTestResults(t, "results-bench-interrupted.json")
	for _, tc := range []struct {
		name string
		a, b *report.Results
	}{
		{"compare-same.golden", probed, probed},
		{"compare-unlike.golden", probed, bench},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteComparison(&buf, [][]report.Named{{{Name: "a/results.json", R: tc.a}}, {{Name: "b/results.json", R: tc.b}}}, 0); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tc.name, buf.Bytes())
		})
	}
}

func TestCompareRefusesEmptyRun(t *testing.T) {
	a := readTestResults(t, "results-probed.json")
	empty := *a
	empty.Latency = report.Latency{}
	var buf bytes.Buffer
	if err := WriteComparison(&buf, [][]report.Named{{{Name: "a", R: a}}, {{Name: "b", R: &empty}}}, 0); !errors.Is(err, report.ErrNothingToCompare) {
		t.Fatalf("WriteComparison with an empty run = %v, want ErrNothingToCompare", err)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %q before refusing", buf.String())
	}
}

// TestCompareGroups: runs of one setup that differ from run to run by
// far more than their own intervals (as back-to-back runs on a shared
// machine do) are not called different as groups;
// groups 30% apart with a small spread are; a group of runs gets a golden
// report.
func TestCompareGroups(t *testing.T) {
	base := readTestResults(t, "results-probed.json")
	run := func(scale float64) report.Named {
		r := *base
		r.Latency.Mean *= scale
		r.Latency.P50 *= scale
		r.Latency.P99 *= scale
		r.ThroughputRPS /= scale
		r.Breakdown = append([]report.Component(nil), base.Breakdown...)
		for i := range r.Breakdown {
			r.Breakdown[i].MeanNs *= scale
		}
		return report.Named{Name: fmt.Sprintf("run-%.2f.json", scale), R: &r}
	}
	for _, tc := range []struct {
		name    string
		a, b    []float64
		outcome stats.Conclusion
	}{
		{"same setup, noisy", []float64{1.00, 0.72, 1.10}, []float64{0.68, 1.05, 0.95}, stats.Inconclusive},
		{"30% apart", []float64{1.00, 1.02, 0.99}, []float64{1.30, 1.31, 1.29}, stats.Different},
		{"equivalent", []float64{1.00, 1.01, 0.99}, []float64{1.00, 0.995, 1.01}, stats.Equivalent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ga, gb []report.Named
			for _, x := range tc.a {
				ga = append(ga, run(x))
			}
			for _, x := range tc.b {
				gb = append(gb, run(x))
			}
			var buf bytes.Buffer
			if err := WriteComparison(&buf, [][]report.Named{ga, gb}, 0.99); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "p50:") {
					line = l
				}
			}
			want := map[stats.Conclusion]string{stats.Inconclusive: "no conclusion", stats.Different: "slower", stats.Equivalent: "equivalent"}[tc.outcome]
			if !strings.Contains(line, want) {
				t.Errorf("p50 verdict %q, want %q in it; report:\n%s", line, want, out)
			}
			if tc.name == "30% apart" {
				golden.Check(t, "compare-groups.golden", buf.Bytes())
			}
		})
	}
	var one bytes.Buffer
	if err := WriteComparison(&one, [][]report.Named{{run(1)}, {run(0.7)}}, 0.99); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(one.String(), "no verdict: significance cannot be judged from one run") || strings.Contains(one.String(), "faster") {
		t.Errorf("one run each must give no verdict:\n%s", one.String())
	}
}
