package stats

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// Interval is a point estimate with a two-sided confidence interval.
type Interval struct {
	Mean float64 `json:"mean"` // the estimate (a mean, or a quantile for Quantile and BatchQuantile)
	Low  float64 `json:"low"`
	High float64 `json:"high"`
	// Batches is the number of batches the interval came from. 0 means
	// there is no interval: not enough round trips (samples) for one.
	// Low and High are then 0 and RelHalfWidth is +Inf.
	Batches   int `json:"batches"`
	BatchSize int `json:"batch_size"` // samples per batch
}

// RelHalfWidth is the interval's half-width relative to the estimate; +Inf
// when there is no interval yet.
func (iv Interval) RelHalfWidth() float64 {
	if iv.Batches == 0 || iv.Mean == 0 {
		return math.Inf(1)
	}
	return (iv.High - iv.Low) / 2 / math.Abs(iv.Mean)
}

// Reach projects the interval's relative half-width to a run grow times
// as long, optimistically: the half-width shrinks as 1/√grow, the rate of
// independent batches (a series whose correlation outlasts its batches
// shrinks slower), from a batch spread at the low end of what the batches
// allow (the one-sided 95% bound of a standard deviation with Batches−1
// degrees of freedom). +Inf when there is no interval. A target that even
// this projection misses by far cannot be met by then.
func (iv Interval) Reach(grow float64) float64 {
	h := iv.RelHalfWidth()
	if math.IsInf(h, 0) || iv.Batches < 2 || !(grow > 0) {
		return math.Inf(1)
	}
	df := float64(iv.Batches - 1)
	low := math.Sqrt(df / distuv.ChiSquared{K: df}.Quantile(0.95))
	return h * low / math.Sqrt(grow)
}

// reachMargin is how far Reach must miss a target for OutOfReach.
const reachMargin = 2

// OutOfReach says whether the interval's relative half-width cannot come
// down to target in a run grow times as long: even Reach's optimistic
// projection misses it by more than a factor of 2. False when there is
// no interval to project from.
func (iv Interval) OutOfReach(grow, target float64) bool {
	r := iv.Reach(grow)
	return !math.IsInf(r, 1) && r > reachMargin*target
}

// Needs is how many times longer the run that gave the interval would
// have to be for its relative half-width to come down to target, if the
// half-width shrinks as 1/√length at the spread seen: (h/target)², at
// least 1. +Inf when there is no interval.
func (iv Interval) Needs(target float64) float64 {
	h := iv.RelHalfWidth()
	if math.IsInf(h, 0) || !(target > 0) {
		return math.Inf(1)
	}
	return max(1, (h/target)*(h/target))
}

// Batch-means parameters. With a fixed number of batches the batch size
// grows with n, which is what makes batch means valid for an
// autocorrelated series: once a batch spans many correlation times, the
// batch means are nearly independent. The lag-1 check below catches series
// whose correlation outlasts the batches.
const (
	targetBatches = 30
	minBatches    = 10
	maxLag1       = 0.2 // batches are lengthened while their lag-1 exceeds this
)

// tQuantile is the two-sided Student-t critical value for conf with df
// degrees of freedom.
func tQuantile(conf float64, df int) float64 {
	return distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(df)}.Quantile(1 - (1-conf)/2)
}

// BatchMeans estimates the mean of xs (a time-ordered series) with a
// Student-t confidence interval at level conf over batch means. Batches
// are contiguous; their number starts at 30 and is halved (batches
// doubled) while the lag-1 autocorrelation of the batch means exceeds 0.2,
// down to 10 batches. With fewer than 10 batches of 10 samples there is no
// interval (Batches = 0). When no x is negative, Low is not either.
func BatchMeans(xs []float64, conf float64) Interval {
	iv := Interval{Mean: mean(xs)}
	k := batchCount(len(xs))
	if k == 0 {
		return iv
	}
	var means []float64
	for {
		means = batchStat(xs, k, mean)
		if k/2 < minBatches || len(xs)/(k/2) < minBatchSize || lag1(means) <= maxLag1 {
			break
		}
		k /= 2
	}
	return clampLow(tInterval(iv.Mean, means, len(xs)/k, conf), xs)
}

// BatchQuantile estimates the q-quantile of xs with an interval from the
// spread of per-batch quantiles (Student-t across batches). Each batch
// needs about 40/min(q, 1−q) samples for its own quantile to mean
// something (4000 for p99; quantileTail says why), so batches are made at
// least that large and there is no interval (Batches = 0) below ten such
// batches. The estimate itself is the mean of the batch quantiles, which
// for short batches is biased a little low for upper quantiles; the
// whole-run quantile is reported separately. When no x is negative, Low is
// not either. Batcher.Quantile is the streaming, whole-run-centred form.
func BatchQuantile(xs []float64, q, conf float64) Interval {
	need := max(minBatchSize, int(math.Ceil(quantileTail/min(q, 1-q))))
	k := min(targetBatches, len(xs)/need)
	if k < minBatches {
		return Interval{Mean: quantile(slices.Clone(xs), q)}
	}
	qs := batchStat(xs, k, func(b []float64) float64 { return quantile(slices.Clone(b), q) })
	return clampLow(tInterval(mean(qs), qs, len(xs)/k, conf), xs)
}

// clampLow raises iv.Low to 0 when xs has no negative value: neither the
// mean nor a quantile of such data can be negative.
func clampLow(iv Interval, xs []float64) Interval {
	if iv.Low < 0 && slices.Min(xs) >= 0 {
		iv.Low = 0
	}
	return iv
}

func batchCount(n int) int {
	k := targetBatches
	if n/k < minBatchSize {
		k = n / minBatchSize
	}
	if k < minBatches {
		return 0
	}
	return k
}

// batchStat applies f to k contiguous batches of equal size (the remainder
// at the end is left out: it would be a batch of another size).
func batchStat(xs []float64, k int, f func([]float64) float64) []float64 {
	size := len(xs) / k
	out := make([]float64, k)
	for i := range out {
		out[i] = f(xs[i*size : (i+1)*size])
	}
	return out
}

func tInterval(center float64, stats []float64, size int, conf float64) Interval {
	k := len(stats)
	m := mean(stats)
	var ss float64
	for _, v := range stats {
		ss += (v - m) * (v - m)
	}
	se := math.Sqrt(ss / float64(k-1) / float64(k))
	h := tQuantile(conf, k-1) * se
	return Interval{Mean: center, Low: center - h, High: center + h, Batches: k, BatchSize: size}
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range xs {
		s += v
	}
	return s / float64(len(xs))
}

// lag1 is the lag-1 autocorrelation of xs.
func lag1(xs []float64) float64 {
	m := mean(xs)
	var num, den float64
	for i, v := range xs {
		den += (v - m) * (v - m)
		if i > 0 {
			num += (v - m) * (xs[i-1] - m)
		}
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// quantile of xs (sorted in place), by the nearest-rank method.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// MSER5 returns how many leading samples of xs to discard as warm-up, by
// the MSER-5 rule (White 1997; Franklin & White): average the series in
// batches of 5, and choose the truncation point d (over the first half)
// that minimizes the squared standard error of the mean of what is left,
// Σ(z−z̄_d)² / (n−d)². A transient at the start inflates that sum, so the
// minimum falls where it ends; a stationary series gives d ≈ 0.
func MSER5(xs []float64) int {
	const b = 5
	n := len(xs) / b
	if n < 4 {
		return 0
	}
	z := batchStat(xs[:n*b], n, mean)
	// Suffix sums make each candidate O(1).
	sum := make([]float64, n+1)
	sq := make([]float64, n+1)
	for i := n - 1; i >= 0; i-- {
		sum[i] = sum[i+1] + z[i]
		sq[i] = sq[i+1] + z[i]*z[i]
	}
	best, bestD := math.Inf(1), 0
	for d := 0; d <= n/2; d++ {
		m := float64(n - d)
		v := (sq[d] - sum[d]*sum[d]/m) / (m * m)
		if v < best {
			best, bestD = v, d
		}
	}
	return bestD * b
}
