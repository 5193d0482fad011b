package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// SweepPoint is one load level of a sweep and what its run measured.
type SweepPoint struct {
	Clients             int     `json:"clients"`
	Rate                float64 `json:"rate,omitempty"` // offered round trips/s (open loop); 0: closed loop
	ThroughputRPS       float64 `json:"throughput_rps"`
	ServerThroughputRPS float64 `json:"server_throughput_rps,omitempty"` // from the probe's send events
	P50                 float64 `json:"p50_ns"`
	P50Low              float64 `json:"p50_ci_low_ns"`
	P50High             float64 `json:"p50_ci_high_ns"`
	P99                 float64 `json:"p99_ns"`
	P99Low              float64 `json:"p99_ci_low_ns"`
	P99High             float64 `json:"p99_ci_high_ns"`
	StopReason          string  `json:"stop_reason"`
	ClientSaturated     bool    `json:"client_saturated"` // the run warned that the client may limit it
	Error               string  `json:"error,omitempty"`
}

// Sweep is throughput and latency against load, with the knee named.
type Sweep struct {
	Points []SweepPoint `json:"points"`
	// Knee is the index of the last point before throughput stops growing
	// while latency rises; -1 when the sweep never reached it.
	Knee    int    `json:"knee"`
	KneeWhy string `json:"knee_why"`
}

// Knee rule: from one point to the next, throughput that grows by less
// than kneeGrowth while the p50 rises by more than kneeRise means the
// server is saturated: more load only queues.
const (
	kneeGrowth = 0.10
	kneeRise   = 0.10
)

// SweepPointOf summarizes one run of a sweep.
func SweepPointOf(clients int, rate float64, r *Results) SweepPoint {
	p := SweepPoint{
		Clients: clients, Rate: rate, ThroughputRPS: r.ThroughputRPS, ServerThroughputRPS: r.ServerThroughputRPS,
		P50: r.Latency.P50, P50Low: r.Latency.P50CILow, P50High: r.Latency.P50CIHigh,
		P99: r.Latency.P99, P99Low: r.Latency.P99CILow, P99High: r.Latency.P99CIHigh,
		StopReason: r.Run.StopReason,
	}
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "the client may limit") {
			p.ClientSaturated = true
		}
	}
	if len(r.Errors) > 0 {
		p.Error = r.Errors[0]
	}
	return p
}

// NewSweep names the knee of points, in the order they were run.
func NewSweep(points []SweepPoint) *Sweep {
	s := &Sweep{Points: points, Knee: -1}
	for i := 1; i < len(points); i++ {
		a, b := points[i-1], points[i]
		if a.ThroughputRPS <= 0 || a.P50 <= 0 {
			continue
		}
		growth := b.ThroughputRPS/a.ThroughputRPS - 1
		rise := b.P50/a.P50 - 1
		if growth < kneeGrowth && rise > kneeRise {
			s.Knee = i - 1
			s.KneeWhy = fmt.Sprintf("from %s to %s throughput grew %+.0f%% while p50 rose %+.0f%%", a.label(), b.label(), 100*growth, 100*rise)
			break
		}
	}
	return s
}

func (p SweepPoint) label() string {
	if p.Rate > 0 {
		return fmt.Sprintf("%.0f/s", p.Rate)
	}
	return fmt.Sprintf("%d clients", p.Clients)
}

// WriteSweepText writes the sweep as a table, then the knee.
func WriteSweepText(w io.Writer, s *Sweep) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\trate\tthroughput/s\tserver sent/s\tp50\tp50 interval\tp99\tp99 interval\tstop\tnote\t")
	for i, p := range s.Points {
		rate, srv := "closed", "—"
		if p.Rate > 0 {
			rate = fmt.Sprintf("%.0f", p.Rate)
		}
		if p.ServerThroughputRPS > 0 {
			srv = fmt.Sprintf("%.0f", p.ServerThroughputRPS)
		}
		var notes []string
		if i == s.Knee {
			notes = append(notes, "knee")
		}
		if p.ClientSaturated {
			notes = append(notes, "client saturated")
		}
		if p.Error != "" {
			notes = append(notes, "error")
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Clients, rate, p.ThroughputRPS, srv,
			Dur(p.P50), cell(p.P50Low, p.P50High), Dur(p.P99), cell(p.P99Low, p.P99High), p.StopReason, strings.Join(notes, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.Knee >= 0 {
		_, err := fmt.Fprintf(w, "knee: %s (%s)\n", s.Points[s.Knee].label(), s.KneeWhy)
		return err
	}
	_, err := fmt.Fprintf(w, "knee: not reached (throughput still grew by %.0f%% or more, or p50 rose by %.0f%% or less, at every step)\n", 100*kneeGrowth, 100*kneeRise)
	return err
}

// cell is an interval for a table cell: interval's text, or "—".
func cell(lo, hi float64) string {
	if s := interval(lo, hi); s != "" {
		return strings.TrimSpace(s)
	}
	return "—"
}

// WriteSweepSVG draws the sweep: throughput (client and server side)
// above, p50 and p99 with their interval bars below, against the load
// levels in the order they were run (evenly spaced, labelled), the knee
// marked. It is a self-contained SVG document.
func WriteSweepSVG(w io.Writer, s *Sweep) error {
	const (
		width, height  = 720, 560
		left, right    = 80, 20
		panelH         = 200
		top1, top2     = 40, 310
		plotW          = width - left - right
		fontAttributes = `font-family="sans-serif" font-size="12"`
	)
	n := len(s.Points)
	b := &strings.Builder{}
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n", width, height, width, height, fontAttributes)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	x := func(i int) float64 {
		if n == 1 {
			return left + plotW/2
		}
		return left + float64(i)*plotW/float64(n-1)
	}
	var maxThr, maxLat float64
	for _, p := range s.Points {
		maxThr = max(maxThr, p.ThroughputRPS, p.ServerThroughputRPS)
		maxLat = max(maxLat, p.P99High, p.P99, p.P50High)
	}
	maxThr, maxLat = niceCeil(maxThr), niceCeil(maxLat)
	yThr := func(v float64) float64 { return top1 + panelH - v/maxThr*panelH }
	yLat := func(v float64) float64 { return top2 + panelH - v/maxLat*panelH }
	axes := func(top float64, title string, maxV float64, unit func(float64) string) {
		fmt.Fprintf(b, `<text x="%d" y="%.0f" font-weight="bold">%s</text>`+"\n", left, top-12, title)
		fmt.Fprintf(b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="black"/>`+"\n", left, top, left, top+panelH)
		fmt.Fprintf(b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="black"/>`+"\n", left, top+panelH, width-right, top+panelH)
		for k := 0; k <= 4; k++ {
			v := maxV * float64(k) / 4
			y := top + panelH - float64(k)*panelH/4
			fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, width-right, y)
			fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, unit(v))
		}
		for i, p := range s.Points {
			fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", x(i), top+panelH+16, xmlEscape(shortLabel(p)))
		}
	}
	line := func(ys []float64, color, name string, legendY float64) {
		var pts []string
		for i, y := range ys {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		for i, y := range ys {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(i), y, color)
		}
		fmt.Fprintf(b, `<text x="%d" y="%.0f" fill="%s" text-anchor="end">%s</text>`+"\n", width-right, legendY, color, name)
	}
	bars := func(lo, hi []float64, color string) {
		for i := range lo {
			if hi[i] <= 0 {
				continue
			}
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x(i), yLat(lo[i]), x(i), yLat(hi[i]), color)
			for _, v := range []float64{lo[i], hi[i]} {
				fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x(i)-4, yLat(v), x(i)+4, yLat(v), color)
			}
		}
	}
	axes(top1, "throughput (round trips/s)", maxThr, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	axes(top2, "latency (p50, p99; bars: intervals)", maxLat, Dur)
	var thr, srv, p50, p99, p50lo, p50hi, p99lo, p99hi []float64
	hasSrv := false
	for _, p := range s.Points {
		thr = append(thr, yThr(p.ThroughputRPS))
		srv = append(srv, yThr(p.ServerThroughputRPS))
		hasSrv = hasSrv || p.ServerThroughputRPS > 0
		p50, p99 = append(p50, yLat(p.P50)), append(p99, yLat(p.P99))
		p50lo, p50hi = append(p50lo, p.P50Low), append(p50hi, p.P50High)
		p99lo, p99hi = append(p99lo, p.P99Low), append(p99hi, p.P99High)
	}
	line(thr, "#1f77b4", "client-side", top1+4)
	if hasSrv {
		line(srv, "#2ca02c", "server-side (probe)", top1+20)
	}
	line(p50, "#1f77b4", "p50", top2+4)
	line(p99, "#d62728", "p99", top2+20)
	bars(p50lo, p50hi, "#1f77b4")
	bars(p99lo, p99hi, "#d62728")
	if s.Knee >= 0 {
		kx := x(s.Knee)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888" stroke-dasharray="4 4"/>`+"\n", kx, top1, kx, top2+panelH)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">knee</text>`+"\n", kx, top1-2)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func shortLabel(p SweepPoint) string {
	if p.Rate > 0 {
		return fmt.Sprintf("%.0f/s", p.Rate)
	}
	return fmt.Sprintf("%d", p.Clients)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
