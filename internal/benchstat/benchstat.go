// Package benchstat decides when the interleaved rounds of a side-by-side
// benchmark have measured a ratio well enough, and prints it as BENCH
// lines with its interval and, when the ratio has a target, a verdict.
//
// A ratio is the median over rounds of num/den, where num and den were
// measured side by side in the same round (so drift of a shared machine
// hits both). Its interval is the distribution-free order-statistic
// interval of that median: the k-th smallest and k-th largest round
// ratios, with k the largest rank whose binomial(n, ½) tail leaves at
// least Confidence between them. It assumes only that rounds are
// independent, and one round that a noisy neighbour hit moves it by one
// rank, where a mean and a t interval would take the outlier's full
// weight (on a shared machine a single round can be several times
// slower than the rest). Rounds go on until every tracked ratio's interval has a
// half-width of at most HalfWidth of the ratio, or the budget is spent.
package benchstat

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// Confidence is the level of every BENCH interval.
const Confidence = 0.95

// Ratio accumulates the paired rounds of one BENCH ratio.
type Ratio struct {
	Name string // BENCH name, e.g. client_floor_p50_ratio_same_cpu
	// Target is the most the ratio may be: pass when the whole interval
	// is at or below it, fail when the whole interval is above it,
	// unresolved when it straddles it. Zero: no target, no verdict line.
	Target float64
	// Floor turns Target into the least the ratio may be: pass when the
	// whole interval is at or above it, fail when it is all below.
	Floor bool
	Num   []float64 // per round, the measured side (ours, with the probe, ...)
	Den   []float64 // per round, the reference side
}

// Add records one round.
func (r *Ratio) Add(num, den float64) {
	r.Num = append(r.Num, num)
	r.Den = append(r.Den, den)
}

// Interval is a ratio with its interval.
type Interval struct {
	Ratio, Low, High float64 // median of the round ratios and its interval; Low and High NaN with too few rounds
	Coverage         float64 // the interval's exact coverage, ≥ Confidence
}

// Interval is the median round ratio and its interval. Low and High are
// NaN below 6 rounds, the fewest whose [min, max] covers the median with
// at least 95%.
func (r *Ratio) Interval() Interval {
	x := make([]float64, 0, len(r.Num))
	for i := range r.Num {
		x = append(x, r.Num[i]/r.Den[i])
	}
	return medianInterval(x, Confidence)
}

// medianInterval is the median of x and its order-statistic interval at
// level conf.
func medianInterval(x []float64, conf float64) Interval {
	n := len(x)
	if n == 0 {
		return Interval{Ratio: math.NaN(), Low: math.NaN(), High: math.NaN()}
	}
	x = slices.Clone(x)
	slices.Sort(x)
	iv := Interval{Ratio: x[n/2], Low: math.NaN(), High: math.NaN()}
	if n%2 == 0 {
		iv.Ratio = (x[n/2-1] + x[n/2]) / 2
	}
	// [x(k), x(n+1-k)] (ranks from 1) misses the median with probability
	// 2·P(B ≤ k-1), B ~ binomial(n, ½). p is P(B = j), tail P(B ≤ k-1).
	alpha := (1 - conf) / 2
	p, tail, k := math.Pow(0.5, float64(n)), 0.0, 0
	for j := 0; j < n/2; j++ {
		if tail+p > alpha {
			break
		}
		tail += p
		k = j + 1
		p = p * float64(n-j) / float64(j+1)
	}
	if k == 0 {
		return iv
	}
	iv.Low, iv.High, iv.Coverage = x[k-1], x[n-k], 1-2*tail
	return iv
}

// RelHalfWidth is the interval's half-width over the ratio; +Inf with too
// few rounds.
func (r *Ratio) RelHalfWidth() float64 {
	iv := r.Interval()
	if math.IsNaN(iv.Low) || iv.Ratio <= 0 {
		return math.Inf(1)
	}
	return (iv.High - iv.Low) / 2 / iv.Ratio
}

// Verdict is "pass", "fail" or "unresolved" against Target, or "" when
// the ratio has no target.
func (r *Ratio) Verdict() string {
	if r.Target == 0 {
		return ""
	}
	iv := r.Interval()
	switch {
	case math.IsNaN(iv.Low):
		return "unresolved"
	case r.Floor && iv.Low >= r.Target:
		return "pass"
	case r.Floor && iv.High < r.Target:
		return "fail"
	case r.Floor:
		return "unresolved"
	case iv.High <= r.Target:
		return "pass"
	case iv.Low > r.Target:
		return "fail"
	}
	return "unresolved"
}

// Print writes "BENCH name ratio", "BENCH name_ci low high" and, with a
// target, "BENCH name_verdict pass|fail|unresolved", then a line saying
// how many rounds and how wide.
func (r *Ratio) Print(w io.Writer) {
	iv := r.Interval()
	fmt.Fprintf(w, "BENCH %s %.3f\n", r.Name, iv.Ratio)
	fmt.Fprintf(w, "BENCH %s_ci %.3f %.3f\n", r.Name, iv.Low, iv.High)
	if v := r.Verdict(); v != "" {
		fmt.Fprintf(w, "BENCH %s_verdict %s\n", r.Name, v)
	}
	target := ""
	if r.Target != 0 {
		op := "≤"
		if r.Floor {
			op = "≥"
		}
		target = fmt.Sprintf(", target %s %.2f", op, r.Target)
	}
	fmt.Fprintf(w, "  %s: median of %d paired rounds, order-statistic interval (%.1f%%) ±%.1f%%%s\n",
		r.Name, len(r.Num), 100*iv.Coverage, 100*r.RelHalfWidth(), target)
}

// Budget says when to stop adding rounds. The zero value takes the
// defaults.
type Budget struct {
	MinRounds int           // never stop before this many; default 6 (the fewest with an interval)
	MaxRounds int           // never go past this many; default 40
	Time      time.Duration // stop after this long from Start; default 2 minutes
	HalfWidth float64       // narrow enough: half-width ≤ this fraction of the ratio; default 0.02
	start     time.Time
}

// Start begins the budget's clock.
func (b *Budget) Start() {
	if b.MinRounds <= 0 {
		b.MinRounds = 6
	}
	if b.MaxRounds <= 0 {
		b.MaxRounds = 40
	}
	if b.Time <= 0 {
		b.Time = 2 * time.Minute
	}
	if b.HalfWidth <= 0 {
		b.HalfWidth = 0.02
	}
	b.start = time.Now()
}

// Done reports whether to stop after rounds rounds: every ratio narrow
// enough and, when it has a target, with its interval wholly on one side
// of it (after MinRounds), or MaxRounds or Time spent. why says which. A
// ratio near its target thus takes rounds until the budget is spent
// rather than stopping at a width that still straddles the target.
func (b *Budget) Done(rounds int, ratios ...*Ratio) (done bool, why string) {
	if rounds >= b.MaxRounds {
		return true, fmt.Sprintf("round budget (%d) spent", b.MaxRounds)
	}
	if el := time.Since(b.start); el >= b.Time {
		return true, fmt.Sprintf("time budget (%v) spent", b.Time)
	}
	if rounds < b.MinRounds {
		return false, ""
	}
	for _, r := range ratios {
		if r.RelHalfWidth() > b.HalfWidth || r.Verdict() == "unresolved" {
			return false, ""
		}
	}
	return true, fmt.Sprintf("every interval within ±%.0f%% and on one side of its target", 100*b.HalfWidth)
}

// Elapsed is the time since Start.
func (b *Budget) Elapsed() time.Duration { return time.Since(b.start) }
