package benchstat

import (
	"bytes"
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"
)

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ratios []float64 // num/den per round, den = 100
		target float64
		want   string
	}{
		{"tight below", []float64{1.00, 1.01, 0.99, 1.00, 1.01, 1.00}, 1.03, "pass"},
		{"tight above", []float64{1.10, 1.11, 1.09, 1.10, 1.12, 1.10}, 1.03, "fail"},
		{"straddles", []float64{0.90, 1.20, 0.95, 1.15, 1.00, 1.05}, 1.03, "unresolved"},
		{"too few rounds", []float64{1.00, 1.00, 1.00, 1.00, 1.00}, 1.03, "unresolved"},
		// One round in ten hit by a neighbour (3×) moves the median by a
		// rank; a mean would be dragged past the target.
		{"outliers", []float64{1.00, 1.01, 3.0, 0.99, 1.00, 1.01, 1.00, 0.99, 1.01, 1.00, 3.0, 1.00, 1.01, 0.99, 1.00, 1.00, 1.01, 0.99, 1.00, 1.01}, 1.03, "pass"},
		{"no target", []float64{1.00, 1.01}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Ratio{Name: "x", Target: tc.target}
			for _, v := range tc.ratios {
				r.Add(100*v, 100)
			}
			if got := r.Verdict(); got != tc.want {
				iv := r.Interval()
				t.Errorf("verdict %q, want %q (ratio %.3f [%.3f, %.3f])", got, tc.want, iv.Ratio, iv.Low, iv.High)
			}
		})
	}
}

func TestPrint(t *testing.T) {
	r := &Ratio{Name: "floor", Target: 1.03}
	for _, v := range []float64{1.00, 1.01, 0.99, 1.00, 1.00, 1.00} {
		r.Add(100*v, 100)
	}
	var b bytes.Buffer
	r.Print(&b)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{"BENCH floor 1.000", "BENCH floor_ci ", "BENCH floor_verdict pass", "  floor: median of 6 paired rounds, order-statistic interval (96.9%)"}
	if len(lines) != len(want) {
		t.Fatalf("printed %q", b.String())
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], want[i])
		}
	}
}

func TestBudget(t *testing.T) {
	narrow, wide := &Ratio{}, &Ratio{}
	// straddles is as narrow as narrow, but its interval holds its target.
	straddles := &Ratio{Target: 1.005}
	for i := 0; i < 6; i++ {
		narrow.Add(100+float64(i%2), 100)
		wide.Add(100+float64(40*(i%2)), 100)
		straddles.Add(100+float64(i%2), 100)
	}
	b := Budget{MinRounds: 5, MaxRounds: 10, Time: time.Hour}
	b.Start()
	for _, tc := range []struct {
		rounds int
		ratios []*Ratio
		want   bool
	}{
		{4, []*Ratio{narrow}, false}, // below MinRounds
		{6, []*Ratio{narrow}, true},
		{6, []*Ratio{narrow, wide}, false},
		{6, []*Ratio{narrow, straddles}, false}, // narrow but unresolved
		{10, []*Ratio{straddles}, true},         // MaxRounds
		{10, []*Ratio{wide}, true},              // MaxRounds
	} {
		if got, why := b.Done(tc.rounds, tc.ratios...); got != tc.want {
			t.Errorf("Done(%d, %d ratios) = %v (%s), want %v", tc.rounds, len(tc.ratios), got, why, tc.want)
		}
	}
	short := Budget{Time: time.Nanosecond}
	short.Start()
	time.Sleep(time.Millisecond)
	if done, why := short.Done(0); !done || !strings.Contains(why, "time") {
		t.Errorf("spent time budget: Done = %v, %q", done, why)
	}
}

// TestMedianIntervalCoverage: on skewed iid round ratios (lognormal, true
// median 1.05) the interval covers the median at least as often as it
// claims, at every round count the budgets use.
func TestMedianIntervalCoverage(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, n := range []int{6, 10, 25, 40, 80} {
		const reps = 4000
		hit := 0
		var claimed float64
		x := make([]float64, n)
		for r := 0; r < reps; r++ {
			for i := range x {
				x[i] = 1.05 * math.Exp(0.1*rng.NormFloat64())
			}
			iv := medianInterval(x, Confidence)
			claimed = iv.Coverage
			if iv.Low <= 1.05 && 1.05 <= iv.High {
				hit++
			}
		}
		got := float64(hit) / reps
		if claimed < Confidence || got < claimed-0.015 {
			t.Errorf("n=%d: covered %.3f of the time, claims %.3f (level %.2f)", n, got, claimed, Confidence)
		}
	}
}

func TestFloorVerdict(t *testing.T) {
	r := &Ratio{Name: "x", Target: 0.95, Floor: true}
	for i := 0; i < 8; i++ {
		r.Add(0.98+0.001*float64(i), 1)
	}
	if v := r.Verdict(); v != "pass" {
		t.Errorf("floor 0.95, ratios ≈0.98: %q, want pass", v)
	}
	r.Target = 1.01
	if v := r.Verdict(); v != "fail" {
		t.Errorf("floor 1.01, ratios ≈0.98: %q, want fail", v)
	}
	r.Target = 0.982
	if v := r.Verdict(); v != "unresolved" {
		t.Errorf("floor inside the interval: %q, want unresolved", v)
	}
}
