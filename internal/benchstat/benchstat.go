// Package benchstat decides when the interleaved rounds of a side-by-side
// benchmark have measured a ratio well enough, and prints it as BENCH
// lines with its interval and, when the ratio has a target, a verdict.
//
// A ratio is the geometric mean over rounds of num/den, where num and den
// were measured side by side in the same round (so drift of a shared
// machine hits both). Its interval is a Student-t interval on the log
// ratios of the rounds (stats.PairedRatio), at Confidence. Rounds go on
// until every tracked ratio's interval has a half-width of at most
// HalfWidth of the ratio, or the budget is spent.
package benchstat

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/volleyscope/volleyscope/stats"
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
	Num    []float64 // per round, the measured side (ours, with the probe, ...)
	Den    []float64 // per round, the reference side
}

// Add records one round.
func (r *Ratio) Add(num, den float64) {
	r.Num = append(r.Num, num)
	r.Den = append(r.Den, den)
}

// Interval is the geometric-mean ratio and its interval; NaN before two
// rounds.
func (r *Ratio) Interval() stats.Ratio { return stats.PairedRatio(r.Num, r.Den, Confidence) }

// RelHalfWidth is the interval's half-width over the ratio; +Inf before
// two rounds.
func (r *Ratio) RelHalfWidth() float64 {
	iv := r.Interval()
	if math.IsNaN(iv.Ratio) || iv.Ratio <= 0 {
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
	case math.IsNaN(iv.Ratio):
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
		target = fmt.Sprintf(", target ≤ %.2f", r.Target)
	}
	fmt.Fprintf(w, "  %s: geometric mean of %d paired rounds, %.0f%% t interval ±%.1f%%%s\n",
		r.Name, len(r.Num), 100*Confidence, 100*r.RelHalfWidth(), target)
}

// Budget says when to stop adding rounds. The zero value takes the
// defaults.
type Budget struct {
	MinRounds int           // never stop before this many; default 5
	MaxRounds int           // never go past this many; default 40
	Time      time.Duration // stop after this long from Start; default 2 minutes
	HalfWidth float64       // narrow enough: half-width ≤ this fraction of the ratio; default 0.02
	start     time.Time
}

// Start begins the budget's clock.
func (b *Budget) Start() {
	if b.MinRounds <= 0 {
		b.MinRounds = 5
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
// enough (after MinRounds), or MaxRounds or Time spent. why says which.
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
		if r.RelHalfWidth() > b.HalfWidth {
			return false, ""
		}
	}
	return true, fmt.Sprintf("every interval within ±%.0f%%", 100*b.HalfWidth)
}

// Elapsed is the time since Start.
func (b *Budget) Elapsed() time.Duration { return time.Since(b.start) }
