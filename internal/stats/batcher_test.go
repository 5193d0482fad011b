package stats

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// medianNs is the median of the synthetic latencies, 50 µs.
const medianNs = 50e3

// logAR1 feeds n latencies to add: exp of a Gaussian AR(1) with
// coefficient phi and stationary standard deviation sigma, started from its
// stationary distribution, scaled so that the median is medianNs. Every
// sample is lognormal(ln medianNs, sigma), heavy-tailed and, for phi > 0,
// autocorrelated. phi = 0 is iid.
func logAR1(r *rand.Rand, n int, phi, sigma float64, add func(int64)) {
	s := math.Sqrt(1 - phi*phi)
	y := r.NormFloat64()
	for range n {
		y = phi*y + s*r.NormFloat64()
		add(int64(medianNs * math.Exp(sigma*y)))
	}
}

// logNormalQuantile is the true q-quantile of logAR1's latencies.
func logNormalQuantile(q, sigma float64) float64 {
	return medianNs * math.Exp(sigma*distuv.UnitNormal.Quantile(q))
}

func covers(iv Interval, truth float64) bool { return iv.Low <= truth && truth <= iv.High }

// naiveQuantile is the order-statistic interval that holds for iid data
// only: ranks q·n ± z·√(n·q(1−q)), read off the histogram.
func naiveQuantile(b *Batcher, q, conf float64) Interval {
	n := float64(b.Count())
	z := distuv.UnitNormal.Quantile(1 - (1-conf)/2)
	d := z * math.Sqrt(n*q*(1-q))
	h := b.Hist()
	return Interval{
		Mean: float64(h.ValueAtQuantile(100 * q)),
		Low:  float64(h.ValueAtQuantile(100 * max(q-d/n, 0))),
		High: float64(h.ValueAtQuantile(100 * min(q+d/n, 1))),
	}
}

// TestBatcherCoverage checks that the 99% intervals of the p50, the p99 and
// the mean cover the true values in at least 97% of runs, on heavy-tailed
// iid latencies and on autocorrelated ones, and that on the latter the
// iid interval would not (so the test can tell).
func TestBatcherCoverage(t *testing.T) {
	const (
		reps  = 200
		sigma = 1.0 // p99 ≈ 10× the median
		conf  = 0.99
		want  = 0.97
	)
	truth := map[string]float64{
		"p50":  logNormalQuantile(0.5, sigma),
		"p99":  logNormalQuantile(0.99, sigma),
		"mean": medianNs * math.Exp(sigma*sigma/2),
	}
	names := []string{"p50", "p99", "mean"}
	for _, tc := range []struct {
		name     string
		n        int // round trips per run
		phi      float64
		naiveMax float64 // the iid p50 interval must cover less than this (0: no check)
	}{
		// 60,000 round trips give the p99 14 groups of 4096, near the
		// fewest it is ever computed from.
		{"iid lognormal", 60_000, 0, 0},
		{"exp AR(1) phi=0.9", 100_000, 0.9, 0.8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.phi*100)))
			hits := map[string]int{}
			var naiveHits, noInterval int
			var width [3]float64
			for range reps {
				b := NewBatcher()
				logAR1(r, tc.n, tc.phi, sigma, b.Add)
				ivs := []Interval{b.Quantile(0.5, conf), b.Quantile(0.99, conf), b.Mean(conf)}
				for i, iv := range ivs {
					if iv.Batches == 0 {
						noInterval++
					}
					if covers(iv, truth[names[i]]) {
						hits[names[i]]++
					}
					width[i] += iv.RelHalfWidth() / reps
				}
				if covers(naiveQuantile(b, 0.5, conf), truth["p50"]) {
					naiveHits++
				}
			}
			if noInterval > 0 {
				t.Fatalf("%d estimates of %d round trips had no interval", noInterval, tc.n)
			}
			for i, name := range names {
				c := float64(hits[name]) / reps
				t.Logf("%s: 99%% interval covers the truth in %.3f of %d runs of %d (mean half-width ±%.2f%%)",
					name, c, reps, tc.n, 100*width[i])
				if c < want {
					t.Errorf("%s: coverage %.3f, want ≥ %.2f", name, c, want)
				}
			}
			nc := float64(naiveHits) / reps
			t.Logf("p50: the iid order-statistic interval covers %.3f", nc)
			if tc.naiveMax > 0 && nc >= tc.naiveMax {
				t.Errorf("iid p50 interval covers %.3f: the series is not autocorrelated enough to test anything", nc)
			}
		})
	}
}

// TestBatcherMatchesHist checks that Quantile's centre is the whole
// stream's quantile exactly as Hist reports it, across merges and with
// values in every range (exact bins below 2048 ns, clamped ones above
// 100 s), and that Count and Hist see every sample.
func TestBatcherMatchesHist(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	b := NewBatcher()
	for _, n := range []int{1, 7, 64, 1000, 33_333, 200_000} {
		for int(b.Count()) < n {
			var v int64
			switch r.IntN(4) {
			case 0:
				v = r.Int64N(3000) // exact bins and the first shifted block
			case 1:
				v = int64(medianNs * math.Exp(2*r.NormFloat64()))
			case 2:
				v = r.Int64N(200e9) - 1e9 // negative and past 100 s: clamped
			default:
				v = 1 << r.IntN(37)
			}
			b.Add(v)
		}
		h := b.Hist()
		if h.TotalCount() != b.Count() || b.Count() != int64(n) {
			t.Fatalf("after %d adds: Count %d, Hist holds %d", n, b.Count(), h.TotalCount())
		}
		for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999} {
			if got, want := b.Quantile(q, 0.99).Mean, float64(h.ValueAtQuantile(100*q)); got != want {
				t.Errorf("n=%d q=%g: Quantile centre %.0f, Hist says %.0f", n, q, got, want)
			}
		}
		if got, want := b.Mean(0.99).Mean, h.Mean(); math.Abs(got-want) > 1e-3*want {
			t.Errorf("n=%d: Mean %.1f, Hist's mean %.1f", n, got, want)
		}
	}
}

// TestBatcherBatches checks the batch bookkeeping: between K and 2K full
// batches of one size, which together with the partial one hold every
// sample.
func TestBatcherBatches(t *testing.T) {
	b := NewBatcher()
	for i := int64(1); i <= 1_000_000; i++ {
		b.Add(i % 5000)
		if i&(i-1) != 0 && i%99_991 != 0 {
			continue // check at powers of two and now and then
		}
		var total int64
		for j := range b.bs[:b.m] {
			if b.bs[j].n != b.size {
				t.Fatalf("after %d: batch %d holds %d, want %d", i, j, b.bs[j].n, b.size)
			}
			total += b.bs[j].n
		}
		total += b.bs[b.m].n
		if total != i || b.bs[b.m].n >= b.size {
			t.Fatalf("after %d: batches hold %d, partial %d of %d", i, total, b.bs[b.m].n, b.size)
		}
		if i >= 2*lowBatches && (b.m < lowBatches || b.m >= 2*lowBatches) {
			t.Fatalf("after %d: %d full batches, want %d to %d", i, b.m, lowBatches, 2*lowBatches-1)
		}
	}
}

// TestBatcherNotEnough checks where intervals begin: the mean after 10
// groups of 10, p50 after 10 groups of 80 and p99 after 10 groups of
// 4000, as the doc comments say, and never before.
func TestBatcherNotEnough(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first int64 // the first count with an interval
		iv    func(b *Batcher) Interval
	}{
		{"mean", 160, func(b *Batcher) Interval { return b.Mean(0.99) }},
		{"p50", 1280, func(b *Batcher) Interval { return b.Quantile(0.5, 0.99) }},
		{"p99", 40_960, func(b *Batcher) Interval { return b.Quantile(0.99, 0.99) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(2, 3))
			b := NewBatcher()
			if need := map[string]int64{"mean": minBatchSize, "p50": 80, "p99": 4000}[tc.name]; firstCount(need) != tc.first {
				t.Errorf("firstCount(%d) = %d, want %d", need, firstCount(need), tc.first)
			}
			if iv := tc.iv(b); iv != (Interval{}) {
				t.Errorf("empty: %+v, want the zero Interval", iv)
			}
			for b.Count() < tc.first-1 {
				b.Add(int64(medianNs * math.Exp(r.NormFloat64())))
			}
			iv := tc.iv(b)
			if iv.Batches != 0 || iv.Low != 0 || iv.High != 0 || !math.IsInf(iv.RelHalfWidth(), 1) || iv.Mean <= 0 {
				t.Errorf("%d round trips: %+v, want an estimate without an interval", b.Count(), iv)
			}
			b.Add(medianNs)
			if iv := tc.iv(b); iv.Batches < minBatches || iv.Low <= 0 || iv.High <= iv.Mean {
				t.Errorf("%d round trips: %+v, want an interval from ≥ %d batches", b.Count(), iv, minBatches)
			}
		})
	}
	b := NewBatcher()
	for range 100_000 {
		b.Add(medianNs)
	}
	for _, q := range []float64{0, 1, -1, math.NaN()} {
		if iv := b.Quantile(q, 0.99); iv.Batches != 0 {
			t.Errorf("q=%g: interval %+v, want none", q, iv)
		}
	}
}

// TestBatcherClamp checks that no interval reaches below 0 ns when the
// spread is wider than the estimate: mostly instant replies with rare
// second-long stalls.
func TestBatcherClamp(t *testing.T) {
	// 60 batches of 4096 at 1 µs. One stall of 1 s makes one batch mean
	// 1000× the others; 2% of 1 ms in every third batch makes those
	// batches' p99 1 ms while the whole run's p99 stays at 1 µs. Either
	// way the spread of the batches exceeds the estimate.
	const size, batches = 4096, 60
	for _, tc := range []struct {
		name string
		val  func(batch, i int) int64
		iv   func(b *Batcher) Interval
	}{
		{"mean", func(batch, i int) int64 {
			if batch == 17 && i == 0 {
				return 1e9
			}
			return 1000
		}, func(b *Batcher) Interval { return b.Mean(0.99) }},
		{"p99", func(batch, i int) int64 {
			if batch%3 == 0 && i < size/50 {
				return 1e6
			}
			return 1000
		}, func(b *Batcher) Interval { return b.Quantile(0.99, 0.99) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatcher()
			for j := range batches {
				for i := range size {
					b.Add(tc.val(j, i))
				}
			}
			iv := tc.iv(b)
			if iv.Batches < minBatches || iv.Low != 0 || iv.High < 2*iv.Mean || iv.Mean <= 0 {
				t.Errorf("%+v: want an interval from Low = 0 (clamped) to above twice the estimate", iv)
			}
		})
	}
}

// TestBatcherLag1 checks that the estimators lengthen their batches when
// the correlation time outlasts them, and keep them when it does not.
func TestBatcherLag1(t *testing.T) {
	for _, tc := range []struct {
		name       string
		phi        float64
		minBatches int
		maxBatches int
	}{
		{"iid", 0, 32, 63},
		// Correlation time ≈ 2/(1−φ) = 20,000 samples, against batches of
		// 2048–4096: neighbouring batch statistics are correlated.
		{"phi=0.9999", 0.9999, minBatches, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatcher()
			logAR1(rand.New(rand.NewPCG(9, 10)), 150_000, tc.phi, 0.5, b.Add)
			for _, iv := range []Interval{b.Mean(0.99), b.Quantile(0.5, 0.99)} {
				if iv.Batches < tc.minBatches || iv.Batches > tc.maxBatches {
					t.Errorf("%d batches of %d, want %d to %d", iv.Batches, iv.BatchSize, tc.minBatches, tc.maxBatches)
				}
				t.Logf("%d batches of %d", iv.Batches, iv.BatchSize)
			}
		})
	}
}

// TestValidity checks that a trend draws the stationarity warning, that a
// stationary autocorrelated series does not (false alarms over 40 seeds),
// and that a series that wanders on the batches' time scale draws the
// correlation warning.
func TestValidity(t *testing.T) {
	const n = 100_000
	t.Run("trend", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			phi   float64
			slope float64 // relative change across the run
			dir   string
		}{
			{"iid upward", 0, 0.1, "upward"},
			{"AR(1) phi=0.9 downward", 0.9, -0.4, "downward"},
		} {
			b := NewBatcher()
			i := 0
			logAR1(rand.New(rand.NewPCG(4, 4)), n, tc.phi, 1, func(v int64) {
				b.Add(int64(float64(v) * (1 + tc.slope*float64(i)/n)))
				i++
			})
			v := b.Validity()
			t.Logf("%s: %+v", tc.name, v)
			if v.Stationary || len(v.Warnings) == 0 || !strings.Contains(v.Warnings[0], "trends "+tc.dir) {
				t.Errorf("%s trend of %.0f%%: %+v, want the stationarity warning", tc.name, 100*tc.slope, v)
			}
			if math.Abs(v.TrendPct-100*tc.slope) > 30*math.Abs(tc.slope) {
				t.Errorf("%s trend of %.0f%%: TrendPct %.1f", tc.name, 100*tc.slope, v.TrendPct)
			}
		}
	})
	t.Run("stationary", func(t *testing.T) {
		const seeds = 40
		var trendAlarms, lagAlarms int
		var minP float64 = 1
		for s := range seeds {
			b := NewBatcher()
			logAR1(rand.New(rand.NewPCG(100, uint64(s))), n, 0.9, 1, b.Add)
			v := b.Validity()
			if !v.Checked {
				t.Fatalf("seed %d: not checked: %s", s, v.Note)
			}
			if !v.Stationary {
				trendAlarms++
			}
			if !v.Independent {
				lagAlarms++
			}
			minP = min(minP, v.MannKendallP)
		}
		t.Logf("AR(1) phi=0.9, %d seeds: %d stationarity and %d correlation warnings (level %g each), smallest p %.3g",
			seeds, trendAlarms, lagAlarms, trendAlpha, minP)
		// At level 0.001 the chance of 2 or more false alarms in 40 is 0.08%.
		if trendAlarms > 1 || lagAlarms > 1 {
			t.Errorf("%d stationarity and %d correlation false alarms in %d stationary runs", trendAlarms, lagAlarms, seeds)
		}
	})
	t.Run("slowly wandering", func(t *testing.T) {
		b := NewBatcher()
		logAR1(rand.New(rand.NewPCG(6, 7)), n, 0.99995, 0.5, b.Add)
		v := b.Validity()
		t.Logf("%+v", v)
		if v.Independent || len(v.Warnings) == 0 || !strings.Contains(strings.Join(v.Warnings, "\n"), "correlated") {
			t.Errorf("correlation time 40,000 against batches of %d: %+v, want the correlation warning", v.BatchSize, v)
		}
	})
	t.Run("too few", func(t *testing.T) {
		b := NewBatcher()
		for range 1000 {
			b.Add(medianNs)
		}
		v := b.Validity()
		if v.Checked || !strings.Contains(v.Note, "1000 of the 1280") || v.Warnings == nil || len(v.Warnings) != 0 || v.Batches != 0 {
			t.Errorf("1000 round trips: %+v, want unchecked with a note", v)
		}
	})
	t.Run("json", func(t *testing.T) {
		b := NewBatcher()
		logAR1(rand.New(rand.NewPCG(1, 1)), 5000, 0, 1, b.Add)
		out, err := json.Marshal(b.Validity())
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{`"checked":true`, `"mann_kendall_p":`, `"stationary":`, `"lag1_mean":`, `"lag1_median":`, `"independent":`, `"warnings":[`, `"trend_pct":`} {
			if !strings.Contains(string(out), key) {
				t.Errorf("%s lacks %s", out, key)
			}
		}
	})
}

// TestBatcherMemoryFlat checks that memory does not grow with the stream.
// Latencies spread log-uniformly from 1 ns to 100 s (the worst case: every
// batch touches every block) fill the Batcher to its bound within the
// first million; 9M more add nothing, and the whole stays under 20 MiB.
func TestBatcherMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("10M samples; skipped with -short")
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	r := rand.New(rand.NewPCG(3, 3))
	lnMax := math.Log(maxNs)
	add := func(b *Batcher, n int) {
		for range n {
			b.Add(int64(math.Exp(lnMax * r.Float64())))
		}
	}
	h0 := heap()
	b := NewBatcher()
	add(b, 1_000_000)
	h1 := heap()
	add(b, 9_000_000)
	h2 := heap()
	blocks := len(b.free)
	for i := range b.bs {
		for _, blk := range b.bs[i].blk {
			if blk != nil {
				blocks++
			}
		}
	}
	runtime.KeepAlive(b)
	const MiB = 1 << 20
	t.Logf("heap: %.2f MiB after 1M adds, %.2f MiB after 10M (%+.3f MiB); %d blocks of 4 KiB",
		float64(h1-h0)/MiB, float64(h2-h0)/MiB, (float64(h2)-float64(h1))/MiB, blocks)
	if blocks > len(b.bs)*numBlocks {
		t.Errorf("%d blocks allocated, more than %d batches × %d", blocks, len(b.bs), numBlocks)
	}
	if h2 > h1 && h2-h1 > MiB/4 {
		t.Errorf("9M more adds grew the heap by %.2f MiB", float64(h2-h1)/MiB)
	}
	if h2-h0 > 20*MiB {
		t.Errorf("Batcher holds %.1f MiB after 10M adds, want < 20", float64(h2-h0)/MiB)
	}
}

// TestBatcherEstimatesAllocNothing: the run loop calls the estimators
// every 250 ms; they work in the Batcher's scratch space.
func TestBatcherEstimatesAllocNothing(t *testing.T) {
	b := NewBatcher()
	logAR1(rand.New(rand.NewPCG(1, 1)), 200_000, 0.5, 1, b.Add)
	if a := testing.AllocsPerRun(20, func() {
		b.Mean(0.99)
		b.Quantile(0.5, 0.99)
		b.Quantile(0.99, 0.99)
	}); a != 0 {
		t.Errorf("Mean and two Quantiles allocate %.0f times", a)
	}
}

// BenchmarkBatcherAdd is the cost of one Add in steady state.
func BenchmarkBatcherAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	xs := make([]int64, 1<<16)
	for i := range xs {
		xs[i] = int64(medianNs * math.Exp(r.NormFloat64()))
	}
	bat := NewBatcher()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bat.Add(xs[i&(len(xs)-1)])
	}
}

// BenchmarkBatcherEstimates is the run loop's check: Mean, p50 and p99 at
// 63 full batches (the most there are), with the lag-1 merge exercised.
func BenchmarkBatcherEstimates(b *testing.B) {
	bat := NewBatcher()
	logAR1(rand.New(rand.NewPCG(1, 1)), 63*4096+100, 0.99, 1, bat.Add)
	if bat.m != 63 {
		b.Fatalf("%d full batches, want 63", bat.m)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bat.Mean(0.99)
		bat.Quantile(0.5, 0.99)
		bat.Quantile(0.99, 0.99)
	}
}

// TestReachOptimistic checks that OutOfReach rarely gives up on a target
// the run would have met: from a quarter of a stationary run (iid, and
// AR(1) with φ = 0.9), it declares the half-width the full run got out of
// reach in at most 1% of runs; the bare projection (Reach) is above it in
// a minority. And Needs is (h/target)².
func TestReachOptimistic(t *testing.T) {
	const reps, n, sigma, conf = 200, 200_000, 0.3, 0.99
	for _, phi := range []float64{0, 0.9} {
		r := rand.New(rand.NewPCG(7, uint64(phi*100)))
		var over, gaveUp [2]int
		for range reps {
			b := NewBatcher()
			var part [2]Interval
			i := 0
			logAR1(r, n, phi, sigma, func(v int64) {
				b.Add(v)
				if i++; i == n/4 {
					part = [2]Interval{b.Quantile(0.5, conf), b.Quantile(0.99, conf)}
				}
			})
			full := [2]Interval{b.Quantile(0.5, conf), b.Quantile(0.99, conf)}
			for k := range part {
				if part[k].Batches == 0 || full[k].Batches == 0 {
					t.Fatalf("phi %v: no interval (%d, %d batches)", phi, part[k].Batches, full[k].Batches)
				}
				if part[k].Reach(4) > full[k].RelHalfWidth() {
					over[k]++
				}
				if part[k].OutOfReach(4, full[k].RelHalfWidth()) {
					gaveUp[k]++
				}
			}
		}
		for k, name := range []string{"p50", "p99"} {
			share, gave := float64(over[k])/reps, float64(gaveUp[k])/reps
			t.Logf("phi %v %s: from a quarter, the projection exceeded the full run's half-width in %.3f of %d runs and declared it out of reach in %.3f",
				phi, name, share, reps, gave)
			if share > 0.5 || gave > 0.01 {
				t.Errorf("phi %v %s: projection above the full run's half-width in %.3f of runs (want ≤ 0.5), out of reach in %.3f (want ≤ 0.01)", phi, name, share, gave)
			}
		}
	}
	iv := Interval{Mean: 100, Low: 90, High: 110, Batches: 20}
	if g := iv.Needs(0.01); math.Abs(g-100) > 1e-9 {
		t.Errorf("Needs(1%%) of ±10%% = %v, want 100", g)
	}
	if g := iv.Needs(0.5); g != 1 {
		t.Errorf("Needs of a target already met = %v, want 1", g)
	}
	if !math.IsInf((Interval{Mean: 1}).Reach(4), 1) || !math.IsInf((Interval{Mean: 1}).Needs(0.01), 1) {
		t.Error("no interval: Reach and Needs should be +Inf")
	}
}
