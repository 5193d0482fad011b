package render

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/stats"
)

// WriteVerdict writes the rounds and the verdict for a person.
func WriteVerdict(w io.Writer, v *report.Verdict) error {
	fmt.Fprintf(w, "%s vs %s: %d client(s), %s, %d interleaved pairs", v.A, v.B, v.Clients, v.Proto, v.Pairs)
	if v.PairsWanted > v.Pairs {
		fmt.Fprintf(w, " (partial: %d of %d)", v.Pairs, v.PairsWanted)
	}
	fmt.Fprintln(w)
	for _, s := range []struct{ label, server string }{{v.A, v.ServerA}, {v.B, v.ServerB}} {
		if s.server != "" && s.server != s.label {
			fmt.Fprintf(w, "  %s: %s\n", s.label, s.server)
		}
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "pair\tp50 %s\tp50 %s\tp99 %s\tp99 %s\tmean %s\tmean %s\t\n", v.A, v.B, v.A, v.B, v.A, v.B)
	for i := range min(len(v.P50A), len(v.P50B), len(v.MeanA), len(v.MeanB), len(v.P99A), len(v.P99B)) {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", i+1, report.Dur(v.P50A[i]), report.Dur(v.P50B[i]), report.Dur(v.P99A[i]), report.Dur(v.P99B[i]), report.Dur(v.MeanA[i]), report.Dur(v.MeanB[i]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if v.Summary == "" {
		_, err := fmt.Fprintf(w, "verdict: none (%d complete pairs)\n", v.Pairs)
		return err
	}
	for _, m := range v.Metrics {
		fmt.Fprintf(w, "%-11s %s\n", m.Metric+":", m.Text)
	}
	if v.Caveat != "" {
		fmt.Fprintf(w, "caveat:     %s\n", v.Caveat)
	}
	if n := v.Pairs; len(v.CostA) >= n && len(v.CostB) >= n && n > 0 {
		mean := func(cs []proccost.Cost, f func(proccost.Cost) float64) float64 {
			var s float64
			for _, c := range cs[:n] {
				s += f(c)
			}
			return s / float64(n)
		}
		cpu := func(c proccost.Cost) float64 { return c.CPUNs }
		sw := func(c proccost.Cost) float64 { return c.Switches }
		ratio := func(r *stats.Ratio) string {
			if r == nil {
				return "-"
			}
			return fmt.Sprintf("%.3f [%.3f, %.3f]", r.Ratio, r.Low, r.High)
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "server cost per request\t%s\t%s\t%s/%s\t\n", v.A, v.B, v.B, v.A)
		fmt.Fprintf(tw, "CPU time\t%s\t%s\t%s\t\n", report.Dur(mean(v.CostA, cpu)), report.Dur(mean(v.CostB, cpu)), ratio(v.CPU))
		fmt.Fprintf(tw, "context switches\t%.2f\t%.2f\t%s\t\n", mean(v.CostA, sw), mean(v.CostB, sw), ratio(v.Switches))
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(v.Breakdown) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "component\tside\t%s\t%s\tdifference\tinterval (* excludes 0)\t\n", v.A, v.B)
		for _, c := range v.Breakdown {
			iv := ""
			if d := c.DiffNs; d != nil && !math.IsNaN(d.Low) {
				iv = fmt.Sprintf("[%s, %s]", report.Dur(d.Low), report.Dur(d.High))
				if d.Significant {
					iv += " *"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", c.Component, c.Side, report.Dur(c.MeanNsA), report.Dur(c.MeanNsB), report.Dur(c.MeanNsB-c.MeanNsA), iv)
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
			big.Component, big.Side, report.Dur(big.MeanNsB), v.B, report.Dur(big.MeanNsA), v.A)
	}
	fmt.Fprintf(w, "verdict: %s\n", v.Summary)
	_, err := fmt.Fprintf(w, "stopped: %s\n", verdictStopText(v))
	return err
}

// verdictStopText says why the pairs ended, and what that means for the verdict.
func verdictStopText(v *report.Verdict) string {
	took := ""
	if v.Elapsed > 0 {
		took = fmt.Sprintf(" (%.0f s)", v.Elapsed)
	}
	switch v.StopReason {
	case "conclusive":
		return fmt.Sprintf("conclusive at %d pairs%s (sequential rule: look levels shrink so that all looks together hold at %s)", v.Pairs, took, report.Pct(v.Confidence))
	case "budget", "max_pairs":
		what := "the time budget (--budget)"
		if v.StopReason == "max_pairs" {
			what = "the most pairs (--max-pairs)"
		}
		return fmt.Sprintf("inconclusive: %s ran out at %d pairs%s; the servers differ by less than the pairs' spread can show: raise --budget, widen --margin, or quiet the machine", what, v.Pairs, took)
	case "pairs":
		return fmt.Sprintf("the %d pairs asked for (--pairs)%s", v.Pairs, took)
	case "error":
		return fmt.Sprintf("a round failed: the verdict is drawn from the %d complete pairs before it%s", v.Pairs, took)
	}
	return v.StopReason
}
