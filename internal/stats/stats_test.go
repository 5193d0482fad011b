package stats

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// ar1 makes n samples of an AR(1) process with mean mu, coefficient phi
// and innovation sd sigma, started from its stationary distribution.
func ar1(r *rand.Rand, n int, mu, phi, sigma float64) []float64 {
	xs := make([]float64, n)
	x := r.NormFloat64() * sigma / math.Sqrt(1-phi*phi)
	for i := range xs {
		x = phi*x + sigma*r.NormFloat64()
		xs[i] = mu + x
	}
	return xs
}

// naive is the iid interval a careless tool would report.
func naive(xs []float64, conf float64) Interval {
	m := mean(xs)
	var ss float64
	for _, v := range xs {
		ss += (v - m) * (v - m)
	}
	h := tQuantile(conf, len(xs)-1) * math.Sqrt(ss/float64(len(xs)-1)/float64(len(xs)))
	return Interval{Mean: m, Low: m - h, High: m + h, Batches: len(xs)}
}

func coverage(reps int, gen func(r *rand.Rand) []float64, ci func([]float64) Interval, truth float64) float64 {
	r := rand.New(rand.NewPCG(1, 2))
	hit := 0
	for i := 0; i < reps; i++ {
		iv := ci(gen(r))
		if iv.Low <= truth && truth <= iv.High {
			hit++
		}
	}
	return float64(hit) / float64(reps)
}

func TestBatchMeansCoverage(t *testing.T) {
	const mu = 100.0
	for _, tc := range []struct {
		name     string
		gen      func(r *rand.Rand) []float64
		minCover float64
		naiveMax float64 // the iid interval must do worse than this (-1: no check)
	}{
		{"iid normal", func(r *rand.Rand) []float64 { return ar1(r, 6000, mu, 0, 10) }, 0.96, -1},
		{"AR(1) phi=0.9", func(r *rand.Rand) []float64 { return ar1(r, 30000, mu, 0.9, 10) }, 0.93, 0.75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := coverage(300, tc.gen, func(xs []float64) Interval { return BatchMeans(xs, 0.99) }, mu)
			if c < tc.minCover {
				t.Errorf("99%% batch-means interval covers the true mean in %.3f of runs, want ≥ %.2f", c, tc.minCover)
			}
			if tc.naiveMax > 0 {
				n := coverage(300, tc.gen, func(xs []float64) Interval { return naive(xs, 0.99) }, mu)
				if n > tc.naiveMax {
					t.Errorf("naive iid interval covers %.3f: the test series is not autocorrelated enough to tell", n)
				}
				t.Logf("coverage: batch means %.3f, naive iid %.3f", c, n)
			} else {
				t.Logf("coverage: batch means %.3f", c)
			}
		})
	}
}

func TestBatchMeansShrinks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	w1 := BatchMeans(ar1(r, 10000, 50, 0.5, 5), 0.99).RelHalfWidth()
	w4 := BatchMeans(ar1(r, 160000, 50, 0.5, 5), 0.99).RelHalfWidth()
	if ratio := w1 / w4; ratio < 2.5 || ratio > 6.5 {
		t.Errorf("16× the samples shrank the half-width %.2f×, want ≈ 4×", ratio)
	}
	if iv := BatchMeans([]float64{1, 2, 3}, 0.99); iv.Batches != 0 || !math.IsInf(iv.RelHalfWidth(), 1) {
		t.Errorf("3 samples gave an interval %+v", iv)
	}
}

// TestBatchMeansLag1 checks the doubling rule: when the correlation time
// outlasts 30 batches, the batch means are correlated and the batches must
// grow (fewer of them) so that the interval stays honest.
func TestBatchMeansLag1(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	if iv := BatchMeans(ar1(r, 30000, 0, 0, 1), 0.99); iv.Batches != 30 || iv.BatchSize != 1000 {
		t.Errorf("iid series: %d batches of %d, want 30 of 1000", iv.Batches, iv.BatchSize)
	}
	// φ = 0.9995: correlation time ≈ 2000 samples, batches of 1000 are not
	// enough, so the means of neighbouring batches are correlated.
	iv := BatchMeans(ar1(r, 30000, 0, 0.9995, 1), 0.99)
	if iv.Batches >= 30 || iv.Batches < minBatches {
		t.Errorf("slowly mixing series: %d batches of %d, want fewer than 30 (and ≥ %d)", iv.Batches, iv.BatchSize, minBatches)
	}
	t.Logf("slowly mixing series: %d batches of %d", iv.Batches, iv.BatchSize)
}

func TestMSER5(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	xs := ar1(r, 20000, 100, 0.3, 10)
	if d := MSER5(xs); d > 200 {
		t.Errorf("stationary series: MSER-5 truncates %d, want ≈ 0", d)
	}
	for i := 0; i < 1000; i++ {
		xs[i] = 1000 + 10*r.NormFloat64() // a warm-up at 10× the level
	}
	if d := MSER5(xs); d < 950 || d > 1050 {
		t.Errorf("1000-sample transient: MSER-5 truncates %d, want 1000 ± 50", d)
	}
}

func TestBatchQuantileCoversP99(t *testing.T) {
	const rate = 1.0 / 50
	truth := -math.Log(0.01) / rate // p99 of an exponential
	gen := func(r *rand.Rand) []float64 {
		xs := make([]float64, 80000)
		for i := range xs {
			xs[i] = r.ExpFloat64() / rate
		}
		return xs
	}
	c := coverage(100, gen, func(xs []float64) Interval { return BatchQuantile(xs, 0.99, 0.99) }, truth)
	t.Logf("p99 coverage %.2f", c)
	if c < 0.9 {
		t.Errorf("p99 interval covers the true p99 in %.2f of runs, want ≥ 0.9", c)
	}
	if iv := BatchQuantile(gen(rand.New(rand.NewPCG(1, 1)))[:5000], 0.99, 0.99); iv.Batches != 0 {
		t.Errorf("5000 samples gave a p99 interval from %d batches; too few per batch", iv.Batches)
	}
}

func TestPairedRatio(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var a, b, c []float64
	for i := 0; i < 10; i++ {
		drift := 1 + 0.2*r.Float64() // both members of a pair see it
		a = append(a, 110*drift*(1+0.01*r.NormFloat64()))
		b = append(b, 100*drift*(1+0.01*r.NormFloat64()))
		c = append(c, 100*drift*(1+0.01*r.NormFloat64()))
	}
	if got := PairedRatio(a, b, 0.99); !got.Significant || got.Low > 1.1 || got.High < 1.1 {
		t.Errorf("10%% difference: %+v, want significant and covering 1.1", got)
	}
	if got := PairedRatio(c, b, 0.99); got.Significant {
		t.Errorf("identical distributions: %+v, want not significant", got)
	}
}

func TestWriteLog2Hist(t *testing.T) {
	h := NewHistogram()
	for _, v := range []int64{0, 1, 2, 3, 4, 7, 8, 1000, 1500, 2047} {
		h.RecordValue(v)
	}
	for _, tc := range []struct {
		unit string
		rows []string // "lo -> hi : count" prefixes, in order
	}{
		{"ns", []string{"0 -> 0 : 1", "1 -> 1 : 1", "2 -> 3 : 2", "4 -> 7 : 2", "8 -> 15 : 1"}},
		{"us", []string{"0 -> 0 : 7", "1 -> 1 : 2", "2 -> 3 : 1"}}, // 2047 ns is 2 us
	} {
		t.Run(tc.unit, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteLog2Hist(&buf, h, tc.unit); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n")[1:] {
				f := strings.Fields(line)
				got = append(got, strings.Join(f[:5], " "))
			}
			if len(got) < len(tc.rows) {
				t.Fatalf("got rows %q, want prefixes %q", got, tc.rows)
			}
			for i, want := range tc.rows {
				if got[i] != want {
					t.Errorf("row %d: %q, want %q\n%s", i, got[i], want, buf.String())
				}
			}
		})
	}
	if err := WriteLog2Hist(io.Discard, h, "fortnights"); err == nil {
		t.Error("unknown unit accepted")
	}
}

func TestSummarizeAndLog2(t *testing.T) {
	h := NewHistogram()
	for v := int64(1); v <= 1000; v++ {
		h.RecordValue(v * 1000)
	}
	l := Summarize(h)
	if l.Count != 1000 || math.Abs(l.P50-500e3) > 1e3 || math.Abs(l.P99-990e3) > 2e3 || l.Max < 999e3 {
		t.Errorf("summary %+v", l)
	}
	var buf bytes.Buffer
	if err := WriteLog2Hist(&buf, h, "us"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "512 -> 1023") || !strings.Contains(buf.String(), "*") {
		t.Errorf("log2 histogram:\n%s", buf.String())
	}
}
