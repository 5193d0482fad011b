package stats

import "math"

// A sequential comparison looks at its pairs as they come and stops at
// the first conclusive look. Looking again and again would let chance
// decide, so look j (1-based) uses the level 1 − α/(j(j+1)), α = 1 − conf:
// those sum to α over any number of looks, so by the union bound every
// look's interval together holds with probability at least conf.

// FirstLook is the fewest pairs a sequential comparison looks at.
const FirstLook = 3

// LookAt says whether a sequential comparison looks after n pairs, and
// which look that is: at FirstLook pairs, then each time the pairs have
// grown by about 40% (3, 5, 7, 10, 14, 20, 28, 40, …), so that the levels
// stay usable however long it runs.
func LookAt(n int) (j int, ok bool) {
	for m, k := FirstLook, 1; m <= n; m, k = int(math.Ceil(float64(m)*1.4)), k+1 {
		if m == n {
			return k, true
		}
	}
	return 0, false
}

// LookConfidence is the level of look j (1-based) of a sequential
// comparison at overall level conf; j 0 is a single, final look: conf.
func LookConfidence(conf float64, j int) float64 {
	if j <= 0 {
		return conf
	}
	return 1 - (1-conf)/float64(j*(j+1))
}

// Conclusion is what a ratio's interval says against an equivalence margin.
type Conclusion string

const (
	// Different: the interval excludes 1.
	Different Conclusion = "different"
	// Equivalent: the interval lies within [1/(1+m), 1+m]; at level conf
	// this is the two one-sided tests at (1−conf)/2 each.
	Equivalent Conclusion = "equivalent"
	// Inconclusive: neither.
	Inconclusive Conclusion = "inconclusive"
)

// Classify judges r against the equivalence margin m (e.g. 0.05 for
// ±5%). A difference smaller than the margin that the interval still
// shows is Different: it is real, if small.
func Classify(r Ratio, m float64) Conclusion {
	switch {
	case math.IsNaN(r.Low) || math.IsNaN(r.High):
		return Inconclusive
	case r.Low > 1 || r.High < 1:
		return Different
	case m > 0 && r.Low >= 1/(1+m) && r.High <= 1+m:
		return Equivalent
	}
	return Inconclusive
}
