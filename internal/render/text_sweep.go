package render

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/volleyscope/volleyscope/internal/report"
)

// WriteSweepText writes the sweep as a table, then the knee.
func WriteSweepText(w io.Writer, s *report.Sweep) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	multi := len(s.Servers) > 1
	cost, hosts := false, false
	for _, p := range s.Points {
		cost = cost || p.CPUPerRequestNs > 0
		hosts = hosts || len(p.LoadHosts) > 0
	}
	if multi {
		fmt.Fprint(tw, "server\t")
	}
	fmt.Fprint(tw, "clients\trate\tthroughput/s\tserver sends/s\tp50\tp50 interval\tp99\tp99 interval\t")
	if cost {
		fmt.Fprint(tw, "CPU/request\t")
	}
	if hosts {
		fmt.Fprint(tw, "load hosts: clients, client CPUs busy\t")
	}
	fmt.Fprintln(tw, "stop\tnote\t")
	for i, p := range s.Points {
		rate, srv := "closed", "—"
		if p.Rate > 0 {
			rate = fmt.Sprintf("%.0f", p.Rate)
		}
		if p.ServerThroughputRPS > 0 {
			srv = fmt.Sprintf("%.0f", p.ServerThroughputRPS)
		}
		var notes []string
		if s.IsKnee(i) {
			notes = append(notes, "knee")
		}
		if p.ClientSaturated {
			notes = append(notes, "client saturated")
		}
		if p.Error != "" {
			notes = append(notes, "error")
		}
		if multi {
			fmt.Fprintf(tw, "%s\t", p.Server)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t", p.Clients, rate, p.ThroughputRPS, srv,
			report.Dur(p.P50), cell(p.P50Low, p.P50High), report.Dur(p.P99), cell(p.P99Low, p.P99High))
		if cost {
			c := "—"
			if p.CPUPerRequestNs > 0 {
				c = report.Dur(p.CPUPerRequestNs)
			}
			fmt.Fprintf(tw, "%s\t", c)
		}
		if hosts {
			fmt.Fprintf(tw, "%s\t", hostsCell(p.LoadHosts))
		}
		fmt.Fprintf(tw, "%s\t%s\t\n", p.StopReason, strings.Join(notes, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if multi {
		for _, k := range s.Knees {
			if k.Point >= 0 {
				fmt.Fprintf(w, "knee of %s: %s (%s)\n", k.Server, s.Points[k.Point].Label(), k.Why)
			} else {
				fmt.Fprintf(w, "knee of %s: not reached\n", k.Server)
			}
		}
		return nil
	}
	if s.Knee >= 0 {
		_, err := fmt.Fprintf(w, "knee: %s (%s)\n", s.Points[s.Knee].Label(), s.KneeWhy)
		return err
	}
	_, err := fmt.Fprintf(w, "knee: not reached (throughput still grew by %.0f%% or more, or p50 rose by %.0f%% or less, at every step)\n", 100*report.KneeGrowth, 100*report.KneeRise)
	return err
}

// cell is an interval for a table cell: interval's text, or "—".
func cell(lo, hi float64) string {
	if s := interval(lo, hi); s != "" {
		return strings.TrimSpace(s)
	}
	return "—"
}

// hostsCell names each load host's clients and client CPU load, and
// which are saturated.
func hostsCell(hs []report.SweepHost) string {
	if len(hs) == 0 {
		return "—"
	}
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = fmt.Sprintf("%s %d %.0f%%", h.Host, h.Clients, 100*h.CPUsBusy)
		if h.Saturated {
			parts[i] += " saturated"
		}
	}
	return strings.Join(parts, "; ")
}
