package report

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/stats"

	"github.com/volleyscope/volleyscope/internal/breakdown"
)

// update rewrites the golden files from the current output:
// go test ./report/ -run Golden -update, then read the diff before
// committing it.
var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// golden compares got with testdata/golden/name, or rewrites that file
// with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run 'go test ./report/ -run Golden -update' to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (rerun with -update if the change is meant)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func readTestResults(t *testing.T, name string) *Results {
	t.Helper()
	r, err := ReadJSON(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return r
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
			golden(t, tc.golden, first)
		})
	}
}

func testVerdict() *Verdict {
	return &Verdict{
		A: "epoll-lt", B: "iouring", ServerA: "epoll-lt", ServerB: "/opt/srv/iouring",
		Clients: 1, Proto: "pingpong", Pairs: 5, PairsWanted: 5, Confidence: 0.99,
		Margin: 0.05, StopReason: "pairs", Elapsed: 61,
		MeanA: []float64{70e3, 72e3, 69e3, 71e3, 70.5e3},
		MeanB: []float64{60e3, 61e3, 59.5e3, 60.5e3, 60e3},
		P50A:  []float64{66e3, 67e3, 65e3, 66e3, 66e3},
		P50B:  []float64{57e3, 58e3, 56e3, 57e3, 57e3},
		P99A:  []float64{120e3, 150e3, 110e3, 130e3, 125e3},
		P99B:  []float64{118e3, 160e3, 100e3, 131e3, 122e3},
		RPSA:  []float64{14e3, 13.8e3, 14.4e3, 14e3, 14.1e3},
		RPSB:  []float64{16.5e3, 16.3e3, 16.7e3, 16.4e3, 16.6e3},
		CostA: []proccost.Cost{{CPUNs: 20e3, Switches: 1.4}, {CPUNs: 21e3, Switches: 1.5}, {CPUNs: 19e3, Switches: 1.3}, {CPUNs: 20e3, Switches: 1.4}, {CPUNs: 20.5e3, Switches: 1.45}},
		CostB: []proccost.Cost{{CPUNs: 12e3, Switches: 0.2}, {CPUNs: 13e3, Switches: 0.25}, {CPUNs: 12e3, Switches: 0.2}, {CPUNs: 12.5e3, Switches: 0.22}, {CPUNs: 12e3, Switches: 0.21}},
		Breakdown: []ComponentVs{
			{Component: "server_wakeup", Side: "server", MeanNsA: 24e3, MeanNsB: 23.5e3,
				PairNsA: []float64{23e3, 25e3, 24e3, 24.5e3, 23.5e3}, PairNsB: []float64{24e3, 23e3, 23.5e3, 23e3, 24e3}},
			{Component: "server_kernel_recv", Side: "server", MeanNsA: 15e3, MeanNsB: 5e3,
				PairNsA: []float64{15e3, 15.5e3, 14.5e3, 15e3, 15e3}, PairNsB: []float64{5e3, 5.2e3, 4.8e3, 5e3, 5e3}},
		},
	}
}

func TestGoldenVerdict(t *testing.T) {
	full := testVerdict()
	partial := testVerdict()
	partial.PairsWanted, partial.StopReason = 8, "error"
	// Equal servers, stopped by the sequential rule at its second look (5 pairs).
	same := testVerdict()
	same.P50B, same.MeanB, same.P99B, same.RPSB = same.P50A, same.MeanA, same.P99A, same.RPSA
	same.P50B = []float64{66.5e3, 66.8e3, 65.2e3, 65.9e3, 66.2e3}
	same.PairsWanted, same.StopReason, same.LookConfidence = 0, "conclusive", stats.LookConfidence(0.99, 2)
	for _, tc := range []struct {
		name string
		v    *Verdict
	}{{"verdict.golden", full}, {"verdict-partial.golden", partial}, {"verdict-equivalent.golden", same}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.v.Decide(); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteVerdict(&buf, tc.v); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, buf.Bytes())
		})
	}
}

// TestDecideRefuses: no verdict from fewer than two pairs or from a round
// that measured nothing (the NaN and [0.000, 0.000] verdicts of before).
func TestDecideRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(v *Verdict)
	}{
		{"one pair", func(v *Verdict) { v.Pairs = 1 }},
		{"no pairs", func(v *Verdict) { v.Pairs = 0 }},
		{"zero mean", func(v *Verdict) { v.MeanB[3] = 0 }},
		{"zero throughput", func(v *Verdict) { v.RPSA[0] = 0 }},
		{"short slice", func(v *Verdict) { v.P99B = v.P99B[:4] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testVerdict()
			tc.edit(v)
			if err := v.Decide(); !errors.Is(err, ErrNoVerdict) {
				t.Fatalf("Decide() = %v, want ErrNoVerdict", err)
			}
			if v.Summary != "" {
				t.Errorf("Summary = %q after a refusal", v.Summary)
			}
		})
	}
}

func TestGoldenCompare(t *testing.T) {
	probed := readTestResults(t, "results-probed.json")
	bench := readTestResults(t, "results-bench-interrupted.json")
	for _, tc := range []struct {
		name string
		a, b *Results
	}{
		{"compare-same.golden", probed, probed},
		{"compare-unlike.golden", probed, bench},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteComparison(&buf, [][]Named{{{"a/results.json", tc.a}}, {{"b/results.json", tc.b}}}, 0); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, buf.Bytes())
		})
	}
}

// TestDifferences: every difference in meta and run status is named.
func TestDifferences(t *testing.T) {
	a := readTestResults(t, "results-probed.json")
	if d := Differences(a, a); len(d) != 0 {
		t.Errorf("a run differs from itself: %q", d)
	}
	b := readTestResults(t, "results-bench-interrupted.json")
	d := Differences(a, b)
	for _, want := range []string{
		"B stopped early (interrupted): its numbers cover what was measured before",
		"B ended with 1 error(s), the first: interrupted",
		"probe differs: A on, B off",
		"stop reason differs: A target, B interrupted",
		"kernel differs: A 6.18.44, B 6.1.0-56-cloud-amd64",
		"CPU model differs: A AMD EPYC, B Intel Xeon",
		"CPU count differs: A 2, B 4",
		"server differs: A goroutine, B iouring",
		"clients differs: A 1, B 4",
		"proto differs: A pingpong, B echo",
		"payload size (bytes) differs: A 0, B 512",
		"client CPUs differs: A 1, B 1,2,3",
	} {
		found := false
		for _, s := range d {
			found = found || s == want
		}
		if !found {
			t.Errorf("Differences lacks %q; got:\n%q", want, d)
		}
	}
}

func TestCompareRefusesEmptyRun(t *testing.T) {
	a := readTestResults(t, "results-probed.json")
	empty := *a
	empty.Latency = Latency{}
	var buf bytes.Buffer
	if err := WriteComparison(&buf, [][]Named{{{"a", a}}, {{"b", &empty}}}, 0); !errors.Is(err, ErrNothingToCompare) {
		t.Fatalf("WriteComparison with an empty run = %v, want ErrNothingToCompare", err)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %q before refusing", buf.String())
	}
}

func TestReadJSONRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		notResults bool
	}{
		{"other object", `{"foo":1}`, true},
		{"array", `[1,2]`, true},
		{"not json", `latency 5`, true},
		{"no run section", `{"meta":{},"latency_ns":{}}`, true},
		{"newer schema", `{"schema":99,"meta":{},"latency_ns":{},"run":{}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "x.json")
			if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadJSON(path)
			if err == nil {
				t.Fatal("ReadJSON accepted it")
			}
			if errors.Is(err, ErrNotResults) != tc.notResults {
				t.Errorf("ReadJSON = %v; ErrNotResults expected: %v", err, tc.notResults)
			}
		})
	}
	// A file WriteJSON wrote reads back, with its schema.
	var buf bytes.Buffer
	if err := WriteJSON(&buf, &Results{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ok.json")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Schema != ResultsSchema {
		t.Errorf("schema %d, want %d", r.Schema, ResultsSchema)
	}
}

func TestGoldenRequestsCSVHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		columns []string
	}{{"requests-header-bench.golden", nil}, {"requests-header-probe.golden", breakdown.Names()}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := NewRequestsCSV(&buf, tc.columns)
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, buf.Bytes())
		})
	}
}

// TestCompareGroups: runs of one setup that differ from run to run by
// far more than their own intervals (the back-to-back runs that the old
// compare called a 31% difference) are not called different as groups;
// groups 30% apart with a small spread are; a group of runs gets a golden
// report.
func TestCompareGroups(t *testing.T) {
	base := readTestResults(t, "results-probed.json")
	run := func(scale float64) Named {
		r := *base
		r.Latency.Mean *= scale
		r.Latency.P50 *= scale
		r.Latency.P99 *= scale
		r.ThroughputRPS /= scale
		r.Breakdown = append([]Component(nil), base.Breakdown...)
		for i := range r.Breakdown {
			r.Breakdown[i].MeanNs *= scale
		}
		return Named{Name: fmt.Sprintf("run-%.2f.json", scale), R: &r}
	}
	for _, tc := range []struct {
		name    string
		a, b    []float64
		outcome stats.Outcome
	}{
		{"same setup, noisy", []float64{1.00, 0.72, 1.10}, []float64{0.68, 1.05, 0.95}, stats.Inconclusive},
		{"30% apart", []float64{1.00, 1.02, 0.99}, []float64{1.30, 1.31, 1.29}, stats.Different},
		{"equivalent", []float64{1.00, 1.01, 0.99}, []float64{1.00, 0.995, 1.01}, stats.Equivalent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ga, gb []Named
			for _, x := range tc.a {
				ga = append(ga, run(x))
			}
			for _, x := range tc.b {
				gb = append(gb, run(x))
			}
			var buf bytes.Buffer
			if err := WriteComparison(&buf, [][]Named{ga, gb}, 0.99); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "p50:") {
					line = l
				}
			}
			want := map[stats.Outcome]string{stats.Inconclusive: "no conclusion", stats.Different: "slower", stats.Equivalent: "equivalent"}[tc.outcome]
			if !strings.Contains(line, want) {
				t.Errorf("p50 verdict %q, want %q in it; report:\n%s", line, want, out)
			}
			if tc.name == "30% apart" {
				golden(t, "compare-groups.golden", buf.Bytes())
			}
		})
	}
	var one bytes.Buffer
	if err := WriteComparison(&one, [][]Named{{run(1)}, {run(0.7)}}, 0.99); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(one.String(), "no verdict: significance cannot be judged from one run") || strings.Contains(one.String(), "faster") {
		t.Errorf("one run each must give no verdict:\n%s", one.String())
	}
}
