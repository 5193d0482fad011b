package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/stats"
)

// Verdict is the outcome of interleaved A/B rounds ('volleyscope vs').
// Ratios are B over A: below 1 means B is faster.
type Verdict struct {
	A          string        `json:"a"`
	B          string        `json:"b"`
	Clients    int           `json:"clients"`
	Proto      string        `json:"proto"`
	Pairs      int           `json:"pairs"`
	Confidence float64       `json:"confidence"`
	MeanA      []float64     `json:"mean_ns_a"` // per round
	MeanB      []float64     `json:"mean_ns_b"`
	P50A       []float64     `json:"p50_ns_a"`
	P50B       []float64     `json:"p50_ns_b"`
	P99A       []float64     `json:"p99_ns_a"`
	P99B       []float64     `json:"p99_ns_b"`
	RPSA       []float64     `json:"throughput_rps_a"`
	RPSB       []float64     `json:"throughput_rps_b"`
	Mean       stats.Ratio   `json:"mean_ratio"`
	P99        stats.Ratio   `json:"p99_ratio"`
	Throughput stats.Ratio   `json:"throughput_ratio"`
	Breakdown  []ComponentVs `json:"breakdown,omitempty"`
	Summary    string        `json:"verdict"`
	Meta       Meta          `json:"meta"`
}

// ComponentVs is one breakdown component's mean in A and B (averaged over
// the rounds).
type ComponentVs struct {
	Component string  `json:"component"`
	Side      string  `json:"side"`
	MeanNsA   float64 `json:"mean_ns_a"`
	MeanNsB   float64 `json:"mean_ns_b"`
}

// Decide fills Mean, P99, Throughput and Summary from the per-round values.
func (v *Verdict) Decide() {
	v.Mean = stats.PairedRatio(v.MeanB, v.MeanA, v.Confidence)
	v.P99 = stats.PairedRatio(v.P99B, v.P99A, v.Confidence)
	v.Throughput = stats.PairedRatio(v.RPSB, v.RPSA, v.Confidence)
	v.Summary = sentence(v.A, v.B, "mean latency", v.Mean, v.Confidence)
}

func sentence(a, b, what string, r stats.Ratio, conf float64) string {
	basis := fmt.Sprintf("%d pairs", r.N)
	if r.N == 2 {
		basis = "two runs' own intervals"
	}
	if !r.Significant {
		return fmt.Sprintf("no significant difference in %s: %s/%s = %.3f [%.3f, %.3f] (%.0f%% CI, %s)",
			what, b, a, r.Ratio, r.Low, r.High, 100*conf, basis)
	}
	faster, slower, pct := b, a, 100*(1-r.Ratio)
	if r.Ratio > 1 {
		faster, slower, pct = a, b, 100*(1-1/r.Ratio)
	}
	return fmt.Sprintf("%s beats %s on %s by %.1f%%: %s/%s = %.3f [%.3f, %.3f] (%.0f%% CI, %s)",
		faster, slower, what, pct, b, a, r.Ratio, r.Low, r.High, 100*conf, basis)
}

// WriteVerdict writes the rounds and the verdict for a person.
func WriteVerdict(w io.Writer, v *Verdict) error {
	fmt.Fprintf(w, "%s vs %s: %d client(s), %s, %d interleaved pairs\n", v.A, v.B, v.Clients, v.Proto, v.Pairs)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "pair\tmean %s\tmean %s\tp99 %s\tp99 %s\t\n", v.A, v.B, v.A, v.B)
	for i := range v.MeanA {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t\n", i+1, Dur(v.MeanA[i]), Dur(v.MeanB[i]), Dur(v.P99A[i]), Dur(v.P99B[i]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "p99:        %s\n", sentence(v.A, v.B, "p99", v.P99, v.Confidence))
	fmt.Fprintf(w, "throughput: %s/%s = %.3f [%.3f, %.3f]\n", v.B, v.A, v.Throughput.Ratio, v.Throughput.Low, v.Throughput.High)
	if len(v.Breakdown) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "component\tside\t%s\t%s\tdifference\t\n", v.A, v.B)
		for _, c := range v.Breakdown {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", c.Component, c.Side, Dur(c.MeanNsA), Dur(c.MeanNsB), Dur(c.MeanNsB-c.MeanNsA))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		big := v.Breakdown[0]
		for _, c := range v.Breakdown {
			if math.Abs(c.MeanNsB-c.MeanNsA) > math.Abs(big.MeanNsB-big.MeanNsA) {
				big = c
			}
		}
		fmt.Fprintf(w, "largest difference: %s (%s side), %s in %s vs %s in %s\n",
			big.Component, big.Side, Dur(big.MeanNsB), v.B, Dur(big.MeanNsA), v.A)
	}
	_, err := fmt.Fprintf(w, "verdict: %s\n", v.Summary)
	return err
}

// WriteJSONAny writes any value as indented JSON.
func WriteJSONAny(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteComparison compares two recorded runs: the mean's ratio B/A with an
// interval from the two runs' own intervals, percentiles, and breakdown.
func WriteComparison(w io.Writer, nameA string, a *Results, nameB string, b *Results) error {
	conf := a.Latency.CILevel
	if conf == 0 {
		conf = 0.99
	}
	ia := stats.Interval{Mean: a.Latency.Mean, Low: a.Latency.CILow, High: a.Latency.CIHigh}
	ib := stats.Interval{Mean: b.Latency.Mean, Low: b.Latency.CILow, High: b.Latency.CIHigh}
	r := stats.CompareMeans(ib, ia, conf)
	fmt.Fprintf(w, "A: %s  (%s, kernel %s, %d clients)\nB: %s  (%s, kernel %s, %d clients)\n",
		nameA, a.Meta.Server, a.Meta.Kernel, a.Meta.Clients, nameB, b.Meta.Server, b.Meta.Kernel, b.Meta.Clients)
	if a.Meta.Clients != b.Meta.Clients || a.Meta.Proto != b.Meta.Proto {
		fmt.Fprintf(w, "warning: the runs differ in load (clients %d vs %d, proto %s vs %s)\n", a.Meta.Clients, b.Meta.Clients, a.Meta.Proto, b.Meta.Proto)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tA\tB\tB/A\t\n")
	row := func(name string, x, y float64) {
		ratio := 0.0
		if x > 0 {
			ratio = y / x
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t\n", name, Dur(x), Dur(y), ratio)
	}
	row("mean", a.Latency.Mean, b.Latency.Mean)
	row("p50", a.Latency.P50, b.Latency.P50)
	row("p90", a.Latency.P90, b.Latency.P90)
	row("p99", a.Latency.P99, b.Latency.P99)
	row("p99.9", a.Latency.P999, b.Latency.P999)
	row("max", a.Latency.Max, b.Latency.Max)
	fmt.Fprintf(tw, "throughput/s\t%.0f\t%.0f\t%.3f\t\n", a.ThroughputRPS, b.ThroughputRPS, safeDiv(b.ThroughputRPS, a.ThroughputRPS))
	comps := map[string]Component{}
	for _, c := range a.Breakdown {
		comps[c.Side+"/"+c.Component] = c
	}
	for _, c := range b.Breakdown {
		if ca, ok := comps[c.Side+"/"+c.Component]; ok {
			row(c.Component, ca.MeanNs, c.MeanNs)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "verdict: %s\n", sentence("A", "B", "mean latency", r, conf))
	return err
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
