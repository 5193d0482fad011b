package stats

import (
	"fmt"
	"math"
	"slices"
)

// Significance levels of the validity checks. They are strict because a
// run checks itself every time: at 0.001 a steady server sees a false
// warning in one run in a thousand per check, and a real drift that
// matters (several batch spreads across the run) still reaches p < 10⁻⁶.
const (
	trendAlpha = 0.001
	lag1Alpha  = 0.001
)

// Validity holds the checks, in the spirit of Lancet (Kogias et al., ATC
// 2019), that the batches behind the intervals are what the intervals
// assume: a stationary series (no trend) cut into nearly independent
// batches. The checks run over the Batcher's full batches, grouped (as for
// Quantile(0.5)) so that each holds at least 80 samples.
type Validity struct {
	// Checked is false when there were too few batches for the checks (as
	// for an interval: fewer than 10); Note then says so, every other
	// field is zero and Warnings is empty.
	Checked   bool `json:"checked"`
	Batches   int  `json:"batches"`    // batches checked
	BatchSize int  `json:"batch_size"` // round trips per batch

	// Mann–Kendall trend test over the batch medians, in time order: the
	// normal score Z of Kendall's S (tie-corrected variance, continuity
	// correction; positive when latency rises) and its two-sided p-value.
	// A rank test, so a few outlying batches cannot fake or hide a trend.
	MannKendallZ float64 `json:"mann_kendall_z"`
	MannKendallP float64 `json:"mann_kendall_p"`
	// TrendPct is the drift across the run: Sen's slope of the batch
	// medians (the median of all pairwise slopes) times the run's length
	// in batches, in percent of the median batch median.
	TrendPct float64 `json:"trend_pct"`
	// Stationary is true when MannKendallP ≥ 0.001.
	Stationary bool `json:"stationary"`

	// Lag-1 autocorrelation of the batch means and of the batch medians.
	Lag1Mean   float64 `json:"lag1_mean"`
	Lag1Median float64 `json:"lag1_median"`
	// Independent is true when both lag-1 values are below the one-sided
	// 0.001 critical value for independent batches, −1/k + 3.09/√k for k
	// batches (0.52 at 32 batches). The intervals already lengthen their
	// batches at a lag-1 above 0.2; a value past the critical one says the
	// correlation outlasts even those, and the intervals are too narrow.
	Independent bool `json:"independent"`

	// Warnings has one plain-English line per failed check.
	Warnings []string `json:"warnings"`
	// Note says why the checks did not run, when they did not.
	Note string `json:"note,omitempty"`
}

// Validity runs the checks on the batches so far. It costs O(k²) for k ≤ 63
// batches, well under a millisecond.
func (b *Batcher) Validity() Validity {
	g := b.groupFor(2 * quantileTail) // Quantile(0.5)'s group size
	k := b.m / g
	if k < minBatches {
		return Validity{
			Warnings: []string{},
			Note: fmt.Sprintf("not enough round trips for the validity checks: %d of the %d they need (10 batches of %d or more)",
				b.n, firstCount(2*quantileTail), 2*quantileTail),
		}
	}
	medians, means := b.stat[:k], b.aux[:k]
	for i := 0; i < k; i++ {
		medians[i] = float64(b.quantileOf(i*g, (i+1)*g, 0.5))
		var n, s int64
		for _, c := range b.bs[i*g : (i+1)*g] {
			n += c.n
			s += c.sum
		}
		means[i] = float64(s) / float64(n)
	}
	v := Validity{Checked: true, Batches: k, BatchSize: int(int64(g) * b.size), Warnings: []string{}}
	v.MannKendallZ, v.MannKendallP = mannKendall(medians)
	v.TrendPct = senDrift(medians)
	v.Stationary = v.MannKendallP >= trendAlpha
	v.Lag1Mean, v.Lag1Median = lag1(means), lag1(medians)
	crit := lag1Critical(k)
	v.Independent = v.Lag1Mean <= crit && v.Lag1Median <= crit
	if !v.Stationary {
		dir := "upward"
		if v.MannKendallZ < 0 {
			dir = "downward"
		}
		v.Warnings = append(v.Warnings, fmt.Sprintf(
			"latency trends %s across the run (batch medians drift %+.1f%%, Mann–Kendall p=%.2g): "+
				"the server did not reach a steady state; lengthen the warm-up (--warmup) or check for leaks",
			dir, v.TrendPct, v.MannKendallP))
	}
	if !v.Independent {
		v.Warnings = append(v.Warnings, fmt.Sprintf(
			"neighbouring batches are correlated (lag-1 %.2f of batch means, %.2f of batch medians, over %d batches of %d; want ≤ %.2f): "+
				"latency wanders on a time scale close to the batch length, so the intervals are too narrow; run longer",
			v.Lag1Mean, v.Lag1Median, k, v.BatchSize, crit))
	}
	return v
}

// mannKendall returns the Mann–Kendall Z score of a monotonic trend in xs
// (time-ordered) and its two-sided p-value, with the variance of S
// corrected for ties and a continuity correction of 1.
func mannKendall(xs []float64) (z, p float64) {
	n := len(xs)
	var s int
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			switch {
			case xs[j] > xs[i]:
				s++
			case xs[j] < xs[i]:
				s--
			}
		}
	}
	nf := float64(n)
	vs := nf * (nf - 1) * (2*nf + 5)
	// Ties: batch medians share a 0.1% histogram bin now and then.
	var sorted [2 * lowBatches]float64
	ys := append(sorted[:0], xs...)
	slices.Sort(ys)
	for i := 0; i < n; {
		j := i + 1
		for j < n && ys[j] == ys[i] {
			j++
		}
		t := float64(j - i)
		vs -= t * (t - 1) * (2*t + 5)
		i = j
	}
	vs /= 18
	if vs <= 0 {
		return 0, 1 // all equal: no evidence of a trend
	}
	switch {
	case s > 0:
		z = float64(s-1) / math.Sqrt(vs)
	case s < 0:
		z = float64(s+1) / math.Sqrt(vs)
	}
	return z, math.Erfc(math.Abs(z) / math.Sqrt2)
}

// senDrift is Sen's slope of xs (the median of the slopes between all
// pairs) times len(xs)−1, in percent of the median of xs: how far the
// series moved from its first to its last point along a robust line.
func senDrift(xs []float64) float64 {
	n := len(xs)
	slopes := make([]float64, 0, n*(n-1)/2)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			slopes = append(slopes, (xs[j]-xs[i])/float64(j-i))
		}
	}
	med := median(slices.Clone(xs))
	if med == 0 {
		return 0
	}
	return median(slopes) * float64(n-1) / med * 100
}

// median of xs, sorted in place; xs must not be empty.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// lag1Critical is the one-sided lag1Alpha critical value of the lag-1
// autocorrelation of k independent values: mean −1/k, standard deviation
// 1/√k (Bartlett), normal approximation.
func lag1Critical(k int) float64 {
	z := math.Sqrt2 * math.Erfinv(1-2*lag1Alpha)
	return -1/float64(k) + z/math.Sqrt(float64(k))
}
