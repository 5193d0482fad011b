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

// welch is the difference of the means of x and y, its standard error
// and Welch–Satterthwaite degrees of freedom (rounded down, which widens
// the interval), for independent groups of at least 2 each.
func welch(x, y []float64) (d, se float64, df int) {
	vx, vy := variance(x)/float64(len(x)), variance(y)/float64(len(y))
	se = math.Sqrt(vx + vy)
	den := vx*vx/float64(len(x)-1) + vy*vy/float64(len(y)-1)
	df = len(x) + len(y) - 2
	if den > 0 {
		df = max(1, int(math.Floor((vx+vy)*(vx+vy)/den)))
	}
	return mean(x) - mean(y), se, df
}

func variance(x []float64) float64 {
	m := mean(x)
	var ss float64
	for _, v := range x {
		ss += (v - m) * (v - m)
	}
	return ss / float64(len(x)-1)
}

// WelchRatio compares the runs of a with the runs of b, run on their own
// (not paired): the ratio of their geometric means with a Welch interval
// on the log values, so that how much whole runs differ from each other
// is in it. Needs 2+ positive values on each side; else NaN bounds.
func WelchRatio(a, b []float64, conf float64) Ratio {
	if len(a) < 2 || len(b) < 2 {
		return Ratio{Ratio: math.NaN(), Low: math.NaN(), High: math.NaN(), N: min(len(a), len(b))}
	}
	la, lb := make([]float64, len(a)), make([]float64, len(b))
	for i, v := range a {
		la[i] = math.Log(v)
	}
	for i, v := range b {
		lb[i] = math.Log(v)
	}
	d, se, df := welch(la, lb)
	h := tQuantile(conf, df) * se
	r := Ratio{Ratio: math.Exp(d), Low: math.Exp(d - h), High: math.Exp(d + h), N: min(len(a), len(b))}
	r.Significant = r.Low > 1 || r.High < 1
	return r
}
