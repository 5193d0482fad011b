package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestLookAt(t *testing.T) {
	var looks []int
	for n := 1; n <= 40; n++ {
		if j, ok := LookAt(n); ok {
			if j != len(looks)+1 {
				t.Errorf("LookAt(%d) = look %d, want %d", n, j, len(looks)+1)
			}
			looks = append(looks, n)
		}
	}
	want := []int{3, 5, 7, 10, 14, 20, 28, 40}
	if len(looks) != len(want) {
		t.Fatalf("looks %v, want %v", looks, want)
	}
	for i := range want {
		if looks[i] != want[i] {
			t.Fatalf("looks %v, want %v", looks, want)
		}
	}
	var alpha float64
	for j := 1; j <= 1000; j++ {
		alpha += 1 - LookConfidence(0.99, j)
	}
	if alpha > 0.01 {
		t.Errorf("looks spend α %.5f, more than 0.01", alpha)
	}
}

// simulate runs the sequential rule on pairs whose log ratio is normal
// with the given true ratio and spread, up to maxPairs; it returns the
// outcome at the stop, the interval there, and the pairs used.
func simulate(rng *rand.Rand, ratio, spread, margin float64, maxPairs int) (Conclusion, Ratio, int) {
	var a, b []float64
	var last Ratio
	for n := 1; n <= maxPairs; n++ {
		x := 100 * math.Exp(rng.NormFloat64()*spread) // drift shared by the pair
		b = append(b, x*ratio*math.Exp(rng.NormFloat64()*spread))
		a = append(a, x*math.Exp(rng.NormFloat64()*spread))
		j, ok := LookAt(n)
		if !ok {
			continue
		}
		last = PairedRatio(b, a, LookConfidence(0.99, j))
		if o := Classify(last, margin); o != Inconclusive {
			return o, last, n
		}
	}
	return Inconclusive, last, maxPairs
}

// TestSequentialRule: with a known ratio the rule stops, says "different"
// in the right direction, and its final interval covers the truth; with
// equal servers it says "equivalent" and never "different" beyond its
// error rate.
func TestSequentialRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const trials = 400
	for _, tc := range []struct {
		name    string
		ratio   float64
		want    Conclusion
		minRate float64 // of trials ending in want
	}{
		{"b_10pct_slower", 1.10, Different, 0.97},
		{"b_10pct_faster", 0.90, Different, 0.97},
		{"equal", 1.00, Equivalent, 0.97},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, cover, wrongWay, pairs := 0, 0, 0, 0
			for range trials {
				o, r, n := simulate(rng, tc.ratio, 0.03, 0.05, 40)
				pairs += n
				if o == tc.want {
					got++
				}
				if r.Low <= tc.ratio && tc.ratio <= r.High {
					cover++
				}
				if o == Different && (tc.ratio == 1 || (r.Ratio > 1) != (tc.ratio > 1)) {
					wrongWay++ // for equal servers, any difference
				}
			}
			t.Logf("%d/%d %s, final interval covers %d/%d, %.1f pairs on average", got, trials, tc.want, cover, trials, float64(pairs)/trials)
			if float64(got)/trials < tc.minRate {
				t.Errorf("%d/%d trials ended %s, want ≥ %.0f%%", got, trials, tc.want, 100*tc.minRate)
			}
			if float64(cover)/trials < 0.97 {
				t.Errorf("the final interval covered the true ratio in %d/%d trials, want ≥ 97%%", cover, trials)
			}
			// The rule's error: at most 1% at level 0.99 (2% allowed for
			// the sampling of 400 trials).
			if float64(wrongWay)/trials > 0.02 {
				t.Errorf("%d/%d trials called a difference that is not there", wrongWay, trials)
			}
		})
	}
}
