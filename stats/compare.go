package stats

import "math"

// Ratio is a ratio with a confidence interval.
type Ratio struct {
	Ratio       float64 `json:"ratio"`
	Low         float64 `json:"low"`
	High        float64 `json:"high"`
	N           int     `json:"n"` // pairs (PairedRatio) or 2 (CompareMeans)
	Significant bool    `json:"significant"`
}

// PairedRatio compares a with b from interleaved pairs (a[i] and b[i] were
// measured side by side): the geometric mean of a[i]/b[i] with a Student-t
// interval on the log ratios, which cancels drift that hits both members
// of a pair. Significant when the interval excludes 1. Needs 2+ pairs of
// positive values (latencies, rates); a non-positive one makes it NaN.
func PairedRatio(a, b []float64, conf float64) Ratio {
	n := min(len(a), len(b))
	if n < 2 {
		return Ratio{Ratio: math.NaN(), Low: math.NaN(), High: math.NaN(), N: n}
	}
	d := make([]float64, n)
	for i := range d {
		d[i] = math.Log(a[i] / b[i])
	}
	m := mean(d)
	var ss float64
	for _, v := range d {
		ss += (v - m) * (v - m)
	}
	h := tQuantile(conf, n-1) * math.Sqrt(ss/float64(n-1)/float64(n))
	r := Ratio{Ratio: math.Exp(m), Low: math.Exp(m - h), High: math.Exp(m + h), N: n}
	r.Significant = r.Low > 1 || r.High < 1
	return r
}

// CompareMeans compares two independent runs' means, a over b, given each
// run's own interval at level conf. The interval of the ratio comes from
// the delta method on log means: se(log a/b)² ≈ (se_a/a)² + (se_b/b)²,
// with each se recovered from its interval's half-width and a normal
// quantile. It assumes the two intervals are symmetric and the runs
// independent; it is an approximation for runs recorded apart (e.g. on two
// kernels), where pairing is impossible.
func CompareMeans(a, b Interval, conf float64) Ratio {
	if a.Mean <= 0 || b.Mean <= 0 {
		return Ratio{Ratio: math.NaN(), Low: math.NaN(), High: math.NaN()}
	}
	z := normQuantile(1 - (1-conf)/2)
	rel := func(iv Interval) float64 {
		if iv.High <= iv.Low {
			return 0
		}
		return (iv.High - iv.Low) / 2 / z / iv.Mean
	}
	se := math.Hypot(rel(a), rel(b))
	l := math.Log(a.Mean / b.Mean)
	r := Ratio{Ratio: a.Mean / b.Mean, Low: math.Exp(l - z*se), High: math.Exp(l + z*se), N: 2}
	r.Significant = r.Low > 1 || r.High < 1
	return r
}

func normQuantile(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }

// Diff is a paired difference with its interval.
type Diff struct {
	Diff        float64 `json:"diff"`
	Low         float64 `json:"low"`
	High        float64 `json:"high"`
	N           int     `json:"n"`
	Significant bool    `json:"significant"` // the interval excludes 0
}

// PairedDiff is the mean of a[i] − b[i] over interleaved pairs with a
// Student-t interval at level conf; NaN bounds from fewer than 2 pairs.
func PairedDiff(a, b []float64, conf float64) Diff {
	n := min(len(a), len(b))
	if n < 2 {
		return Diff{Low: math.NaN(), High: math.NaN(), N: n}
	}
	d := make([]float64, n)
	for i := range d {
		d[i] = a[i] - b[i]
	}
	m := mean(d)
	var ss float64
	for _, v := range d {
		ss += (v - m) * (v - m)
	}
	h := tQuantile(conf, n-1) * math.Sqrt(ss/float64(n-1)/float64(n))
	return Diff{Diff: m, Low: m - h, High: m + h, N: n, Significant: m-h > 0 || m+h < 0}
}
