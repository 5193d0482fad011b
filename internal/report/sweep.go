package report

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// SweepPoint is one load level of a sweep and what its run measured.
type SweepPoint struct {
	Server              string  `json:"server,omitempty"` // the server's label, in a sweep of several
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
	ClientSaturated     bool    `json:"client_saturated"`                    // the run warned that the client may limit it
	CPUPerRequestNs     float64 `json:"server_cpu_per_request_ns,omitempty"` // the server's CPU time per request (/proc)
	Error               string  `json:"error,omitempty"`
}

// Sweep is throughput and latency against load, with the knee named.
type Sweep struct {
	Points []SweepPoint `json:"points"`
	// Knee is the index of the last point before throughput stops growing
	// while latency rises; -1 when the sweep never reached it. With
	// several servers it is the first server's; Knees has each one's.
	Knee    int         `json:"knee"`
	KneeWhy string      `json:"knee_why"`
	Servers []string    `json:"servers,omitempty"` // labels, in order, when the sweep ran several
	Knees   []SweepKnee `json:"knees,omitempty"`
}

// SweepKnee is one server's knee in a sweep of several.
type SweepKnee struct {
	Server string `json:"server"`
	Point  int    `json:"point"` // index into Points; -1: not reached
	Why    string `json:"why"`
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
	if r.ServerCost != nil {
		p.CPUPerRequestNs = r.ServerCost.CPUNs
	}
	p.ClientSaturated = ClientLimited(r)
	if len(r.Errors) > 0 {
		p.Error = r.Errors[0]
	}
	return p
}

// NewSweep names the knee of each server's points, taken in the order
// they were run.
func NewSweep(points []SweepPoint) *Sweep {
	s := &Sweep{Points: points, Knee: -1}
	for _, p := range points {
		if !slices.Contains(s.Servers, p.Server) {
			s.Servers = append(s.Servers, p.Server)
		}
	}
	for k, name := range s.Servers {
		var idx []int
		for i, p := range points {
			if p.Server == name {
				idx = append(idx, i)
			}
		}
		kn := SweepKnee{Server: name, Point: -1}
		for j := 1; j < len(idx); j++ {
			a, b := points[idx[j-1]], points[idx[j]]
			if a.ThroughputRPS <= 0 || a.P50 <= 0 {
				continue
			}
			growth := b.ThroughputRPS/a.ThroughputRPS - 1
			rise := b.P50/a.P50 - 1
			if growth < kneeGrowth && rise > kneeRise {
				kn.Point = idx[j-1]
				kn.Why = fmt.Sprintf("from %s to %s throughput grew %+.0f%% while p50 rose %+.0f%%", a.label(), b.label(), 100*growth, 100*rise)
				break
			}
		}
		if k == 0 {
			s.Knee, s.KneeWhy = kn.Point, kn.Why
		}
		s.Knees = append(s.Knees, kn)
	}
	if len(s.Servers) < 2 {
		s.Servers, s.Knees = nil, nil
	}
	return s
}

// isKnee says whether point i is a server's knee.
func (s *Sweep) isKnee(i int) bool {
	if len(s.Knees) == 0 {
		return i == s.Knee
	}
	for _, k := range s.Knees {
		if k.Point == i {
			return true
		}
	}
	return false
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
	multi := len(s.Servers) > 1
	cost := false
	for _, p := range s.Points {
		cost = cost || p.CPUPerRequestNs > 0
	}
	if multi {
		fmt.Fprint(tw, "server\t")
	}
	fmt.Fprint(tw, "clients\trate\tthroughput/s\tserver sends/s\tp50\tp50 interval\tp99\tp99 interval\t")
	if cost {
		fmt.Fprint(tw, "CPU/request\t")
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
		if s.isKnee(i) {
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
			Dur(p.P50), cell(p.P50Low, p.P50High), Dur(p.P99), cell(p.P99Low, p.P99High))
		if cost {
			c := "—"
			if p.CPUPerRequestNs > 0 {
				c = Dur(p.CPUPerRequestNs)
			}
			fmt.Fprintf(tw, "%s\t", c)
		}
		fmt.Fprintf(tw, "%s\t%s\t\n", p.StopReason, strings.Join(notes, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if multi {
		for _, k := range s.Knees {
			if k.Point >= 0 {
				fmt.Fprintf(w, "knee of %s: %s (%s)\n", k.Server, s.Points[k.Point].label(), k.Why)
			} else {
				fmt.Fprintf(w, "knee of %s: not reached\n", k.Server)
			}
		}
		return nil
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
// levels in the order they were run (evenly spaced, labelled), each
// server's knee marked; with several servers, one colour each. It is a
// self-contained SVG document.
func WriteSweepSVG(w io.Writer, s *Sweep) error {
	const (
		width, height  = 720, 560
		left, right    = 80, 20
		panelH         = 200
		top1, top2     = 40, 310
		plotW          = width - left - right
		fontAttributes = `font-family="sans-serif" font-size="12"`
	)
	var levels []string // x positions: the load levels in the order run
	for _, p := range s.Points {
		if !slices.Contains(levels, shortLabel(p)) {
			levels = append(levels, shortLabel(p))
		}
	}
	n := len(levels)
	b := &strings.Builder{}
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n", width, height, width, height, fontAttributes)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	x := func(p SweepPoint) float64 {
		i := slices.Index(levels, shortLabel(p))
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
		for i, l := range levels {
			xi := float64(left) + plotW/2
			if n > 1 {
				xi = left + float64(i)*plotW/float64(n-1)
			}
			fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", xi, top+panelH+16, xmlEscape(l))
		}
	}
	legend := 0
	line := func(pts []SweepPoint, y func(SweepPoint) float64, color, dash, name string, top float64) {
		var xy []string
		for _, p := range pts {
			xy = append(xy, fmt.Sprintf("%.1f,%.1f", x(p), y(p)))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", color, dash, strings.Join(xy, " "))
		for _, p := range pts {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p), y(p), color)
		}
		fmt.Fprintf(b, `<text x="%d" y="%.0f" fill="%s" text-anchor="end">%s</text>`+"\n", width-right, top+4+float64(16*legend), color, xmlEscape(name))
	}
	bars := func(pts []SweepPoint, lo, hi func(SweepPoint) float64, color string) {
		for _, p := range pts {
			if hi(p) <= 0 {
				continue
			}
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x(p), yLat(lo(p)), x(p), yLat(hi(p)), color)
			for _, v := range []float64{lo(p), hi(p)} {
				fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x(p)-4, yLat(v), x(p)+4, yLat(v), color)
			}
		}
	}
	axes(top1, "throughput (round trips/s)", maxThr, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	axes(top2, "latency (p50, p99; bars: intervals)", maxLat, Dur)
	servers := s.Servers
	if len(servers) == 0 {
		servers = []string{""}
	}
	palette := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}
	const dotted, dashed = ` stroke-dasharray="2 3"`, ` stroke-dasharray="6 4"`
	for k, name := range servers {
		var pts []SweepPoint
		hasSrv := false
		for _, p := range s.Points {
			if p.Server == name {
				pts = append(pts, p)
				hasSrv = hasSrv || p.ServerThroughputRPS > 0
			}
		}
		thr := func(p SweepPoint) float64 { return yThr(p.ThroughputRPS) }
		srv := func(p SweepPoint) float64 { return yThr(p.ServerThroughputRPS) }
		p50 := func(p SweepPoint) float64 { return yLat(p.P50) }
		p99 := func(p SweepPoint) float64 { return yLat(p.P99) }
		if len(servers) == 1 { // one server: a colour per line
			line(pts, thr, palette[0], "", "client-side", top1)
			legend++
			if hasSrv {
				line(pts, srv, palette[2], "", "server-side (probe)", top1)
			}
			legend = 0
			line(pts, p50, palette[0], "", "p50", top2)
			legend++
			line(pts, p99, palette[1], "", "p99", top2)
			bars(pts, func(p SweepPoint) float64 { return p.P50Low }, func(p SweepPoint) float64 { return p.P50High }, palette[0])
			bars(pts, func(p SweepPoint) float64 { return p.P99Low }, func(p SweepPoint) float64 { return p.P99High }, palette[1])
			break
		}
		c := palette[k%len(palette)]
		line(pts, thr, c, "", name, top1)
		if hasSrv {
			line(pts, srv, c, dotted, "", top1)
		}
		line(pts, p50, c, "", name+" p50", top2)
		legend++
		line(pts, p99, c, dashed, name+" p99", top2)
		legend++
		bars(pts, func(p SweepPoint) float64 { return p.P50Low }, func(p SweepPoint) float64 { return p.P50High }, c)
		bars(pts, func(p SweepPoint) float64 { return p.P99Low }, func(p SweepPoint) float64 { return p.P99High }, c)
	}
	for i := range s.Points {
		if !s.isKnee(i) {
			continue
		}
		kx := x(s.Points[i])
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888" stroke-dasharray="4 4"/>`+"\n", kx, top1, kx, top2+panelH)
		label := "knee"
		if s.Points[i].Server != "" && len(s.Servers) > 1 {
			label = "knee " + s.Points[i].Server
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", kx, top1-2, xmlEscape(label))
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

// ClientLimited says whether a run warned that the client, not the
// server, may have limited what it measured (saturation in build.go).
func ClientLimited(r *Results) bool {
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "the client may limit") {
			return true
		}
	}
	return false
}
