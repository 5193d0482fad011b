package report

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/stats"
)

// Verdict is the outcome of interleaved A/B rounds ('volleyscope vs').
// Ratios are B over A: below 1 means B is faster.
type Verdict struct {
	A           string  `json:"a"`        // A's label in tables and sentences
	B           string  `json:"b"`        // B's label
	ServerA     string  `json:"server_a"` // what A ran: a built-in server's name or an executable's path
	ServerB     string  `json:"server_b"`
	Clients     int     `json:"clients"`
	Proto       string  `json:"proto"`
	Pairs       int     `json:"pairs"`        // complete pairs the verdict is drawn from
	PairsWanted int     `json:"pairs_wanted"` // pairs asked for; more than Pairs when the rounds stopped early
	Confidence  float64 `json:"confidence"`
	// LookConfidence is the level of the intervals below: Confidence for
	// a fixed number of pairs; the sequential rule's level at its last
	// look (stats.LookConfidence) otherwise.
	LookConfidence float64 `json:"look_confidence"`
	Margin         float64 `json:"equivalence_margin"` // ±fraction within which B and A are called equivalent
	// StopReason says why the pairs ended: "conclusive" (the p50 verdict
	// is a difference or an equivalence), "budget" or "max_pairs" (spent
	// before it was), "pairs" (a fixed number asked for), "error".
	StopReason string    `json:"stop_reason"`
	Conclusive bool      `json:"conclusive"` // the p50 verdict is a difference or an equivalence
	Elapsed    float64   `json:"elapsed_s"`  // wall time of all the rounds
	MeanA      []float64 `json:"mean_ns_a"`  // per round
	MeanB      []float64 `json:"mean_ns_b"`
	P50A       []float64 `json:"p50_ns_a"`
	P50B       []float64 `json:"p50_ns_b"`
	P99A       []float64 `json:"p99_ns_a"`
	P99B       []float64 `json:"p99_ns_b"`
	RPSA       []float64 `json:"throughput_rps_a"`
	RPSB       []float64 `json:"throughput_rps_b"`
	// CostA and CostB are each round's server cost per request (from
	// /proc); CPU and Switches compare them B/A when every pair has both.
	CostA      []proccost.Cost `json:"server_cost_a,omitempty"`
	CostB      []proccost.Cost `json:"server_cost_b,omitempty"`
	CPU        *stats.Ratio    `json:"cpu_per_request_ratio,omitempty"`
	Switches   *stats.Ratio    `json:"switches_per_request_ratio,omitempty"`
	Mean       stats.Ratio     `json:"mean_ratio"`
	P50        stats.Ratio     `json:"p50_ratio"`
	P99        stats.Ratio     `json:"p99_ratio"`
	Throughput stats.Ratio     `json:"throughput_ratio"`
	// Metrics is the verdict on each of p50 (which decides when to stop),
	// p99, mean and throughput, in that order.
	Metrics   []MetricVerdict `json:"metrics"`
	Breakdown []ComponentVs   `json:"breakdown,omitempty"`
	Summary   string          `json:"verdict"` // the p50 verdict as a sentence
	// ClientSaturatedA and B say, per round, whether its run warned
	// that the client may have limited it (ClientLimited); Caveat, beside
	// the verdict, counts those rounds.
	ClientSaturatedA []bool `json:"client_saturated_a,omitempty"`
	ClientSaturatedB []bool `json:"client_saturated_b,omitempty"`
	Caveat           string `json:"caveat,omitempty"`
	Meta             Meta   `json:"meta"`
}

// SaturationCaveat counts the rounds of the first n pairs whose client
// may have limited them, and says so when there are any.
func (v *Verdict) SaturationCaveat(n int) string {
	k := 0
	for _, s := range [][]bool{v.ClientSaturatedA, v.ClientSaturatedB} {
		for _, sat := range s[:min(n, len(s))] {
			if sat {
				k++
			}
		}
	}
	if k == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d rounds were client-saturated (the client may limit the measurement): the verdict may reflect the client, not the servers; give the clients more CPUs (--client-cpus) or fewer threads (--client-model epoll)", k, 2*n)
}

// MetricVerdict is the verdict on one metric: the ratio B/A with its
// interval at LookConfidence, and what that interval says against the
// margin.
type MetricVerdict struct {
	Metric     string           `json:"metric"` // p50, p99, mean, throughput
	Ratio      stats.Ratio      `json:"ratio"`
	Conclusion stats.Conclusion `json:"outcome"`
	Text       string           `json:"text"`
}

// ErrNoVerdict is returned by Verdict.Decide when the rounds cannot carry a
// verdict: fewer than two complete pairs, or a round without a positive
// mean, p99 or throughput.
var ErrNoVerdict = errors.New("no verdict")

// ComponentVs is one breakdown component's mean in A and B (averaged over
// the rounds).
type ComponentVs struct {
	Component string  `json:"component"`
	Side      string  `json:"side"`
	MeanNsA   float64 `json:"mean_ns_a"`
	MeanNsB   float64 `json:"mean_ns_b"`
	// Per pair, the component's mean in A's and B's round (0 where a
	// round has none), and Decide's paired difference B − A.
	PairNsA []float64   `json:"pair_ns_a,omitempty"`
	PairNsB []float64   `json:"pair_ns_b,omitempty"`
	DiffNs  *stats.Diff `json:"diff_ns,omitempty"`
}

// Decide fills Mean, P99, Throughput and Summary from the per-round values
// of the first Pairs pairs. It refuses (ErrNoVerdict) rather than decide
// from fewer than two pairs or from a round that measured nothing.
func (v *Verdict) Decide() error {
	n := v.Pairs
	if n < 2 {
		return fmt.Errorf("%w: %d complete pair(s), at least 2 are needed", ErrNoVerdict, n)
	}
	for _, c := range []struct {
		label, what string
		xs          []float64
	}{
		{v.A, "mean", v.MeanA}, {v.B, "mean", v.MeanB}, {v.A, "p99", v.P99A}, {v.B, "p99", v.P99B},
		{v.A, "throughput", v.RPSA}, {v.B, "throughput", v.RPSB},
	} {
		if len(c.xs) < n {
			return fmt.Errorf("%w: %s has %d %s values for %d pairs", ErrNoVerdict, c.label, len(c.xs), c.what, n)
		}
		for i, x := range c.xs[:n] {
			if !(x > 0) || math.IsInf(x, 0) {
				return fmt.Errorf("%w: pair %d: %s's %s is %v: that round measured nothing", ErrNoVerdict, i+1, c.label, c.what, x)
			}
		}
	}
	if len(v.P50A) < n || len(v.P50B) < n {
		return fmt.Errorf("%w: %d and %d p50 values for %d pairs", ErrNoVerdict, len(v.P50A), len(v.P50B), n)
	}
	level := v.LookConfidence
	if level == 0 {
		level = v.Confidence
		v.LookConfidence = level
	}
	v.Mean = stats.PairedRatio(v.MeanB[:n], v.MeanA[:n], level)
	v.P50 = stats.PairedRatio(v.P50B[:n], v.P50A[:n], level)
	v.P99 = stats.PairedRatio(v.P99B[:n], v.P99A[:n], level)
	v.Throughput = stats.PairedRatio(v.RPSB[:n], v.RPSA[:n], level)
	v.Metrics = v.Metrics[:0]
	for _, m := range []struct {
		name string
		r    stats.Ratio
	}{{"p50", v.P50}, {"p99", v.P99}, {"mean", v.Mean}, {"throughput", v.Throughput}} {
		v.Metrics = append(v.Metrics, Judge(v.A, v.B, m.name, m.r, v.Margin, level))
	}
	v.Conclusive = v.Metrics[0].Conclusion != stats.Inconclusive
	for i := range v.Breakdown {
		c := &v.Breakdown[i]
		c.DiffNs = nil
		if len(c.PairNsA) >= n && len(c.PairNsB) >= n {
			d := stats.PairedDiff(c.PairNsB[:n], c.PairNsA[:n], level)
			c.DiffNs = &d
		}
	}
	v.CPU, v.Switches = nil, nil
	if len(v.CostA) >= n && len(v.CostB) >= n {
		var ca, cb, sa, sb []float64
		for i := range n {
			ca, cb = append(ca, v.CostA[i].CPUNs), append(cb, v.CostB[i].CPUNs)
			sa, sb = append(sa, v.CostA[i].Switches), append(sb, v.CostB[i].Switches)
		}
		if positive(ca) && positive(cb) {
			r := stats.PairedRatio(cb, ca, level)
			v.CPU = &r
		}
		if positive(sa) && positive(sb) {
			r := stats.PairedRatio(sb, sa, level)
			v.Switches = &r
		}
	}
	v.Summary = v.Metrics[0].Text
	return nil
}

func positive(xs []float64) bool {
	for _, x := range xs {
		if !(x > 0) {
			return false
		}
	}
	return len(xs) > 0
}

// Judge is the verdict on one metric's ratio b/a at level: a
// difference, an equivalence within ±margin, or neither.
func Judge(a, b, metric string, r stats.Ratio, margin, level float64) MetricVerdict {
	o := stats.Classify(r, margin)
	return MetricVerdict{Metric: metric, Ratio: r, Conclusion: o, Text: metricText(a, b, metric, r, o, margin, level)}
}

// metricText says what one metric's ratio B/A shows, e.g. "B is 12.0%
// faster than A on p50: B/A 0.880 [0.850, 0.911]". Lower is better for
// latencies, higher for throughput.
func metricText(a, b, metric string, r stats.Ratio, o stats.Conclusion, margin, level float64) string {
	iv := fmt.Sprintf("%s/%s %.3f [%.3f, %.3f] at %s confidence", b, a, r.Ratio, r.Low, r.High, Pct(level))
	switch o {
	case stats.Equivalent:
		return fmt.Sprintf("%s and %s are equivalent on %s within ±%s%%: %s", b, a, metric, strconvFloat(100*margin), iv)
	case stats.Different:
		d := 100 * math.Abs(r.Ratio-1)
		switch {
		case metric == "throughput" && r.Ratio > 1:
			return fmt.Sprintf("%s serves %.1f%% more requests/s than %s: %s", b, d, a, iv)
		case metric == "throughput":
			return fmt.Sprintf("%s serves %.1f%% fewer requests/s than %s: %s", b, d, a, iv)
		case r.Ratio > 1:
			return fmt.Sprintf("%s is %.1f%% slower than %s on %s: %s", b, d, a, metric, iv)
		}
		return fmt.Sprintf("%s is %.1f%% faster than %s on %s: %s", b, d, a, metric, iv)
	}
	return fmt.Sprintf("no conclusion on %s: %s holds both 1 and more than ±%s%%", metric, iv, strconvFloat(100*margin))
}

// Pct writes a level such as 0.999 as "99.9%".
func Pct(level float64) string {
	return strconvFloat(100*level) + "%"
}

func strconvFloat(x float64) string {
	s := fmt.Sprintf("%.2f", x)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
