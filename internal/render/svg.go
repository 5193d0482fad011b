package render

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/volleyscope/volleyscope/internal/report"
)

// WriteSweepSVG draws the sweep: throughput (client and server side)
// above, p50 and p99 with their interval bars below, against the load
// levels in the order they were run (evenly spaced, labelled), each
// server's knee marked; with several servers, one colour each. It is a
// self-contained SVG document.
func WriteSweepSVG(w io.Writer, s *report.Sweep) error {
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
	x := func(p report.SweepPoint) float64 {
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
	line := func(pts []report.SweepPoint, y func(report.SweepPoint) float64, color, dash, name string, top float64) {
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
	bars := func(pts []report.SweepPoint, lo, hi func(report.SweepPoint) float64, color string) {
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
	axes(top2, "latency (p50, p99; bars: intervals)", maxLat, report.Dur)
	servers := s.Servers
	if len(servers) == 0 {
		servers = []string{""}
	}
	palette := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}
	const dotted, dashed = ` stroke-dasharray="2 3"`, ` stroke-dasharray="6 4"`
	for k, name := range servers {
		var pts []report.SweepPoint
		hasSrv := false
		for _, p := range s.Points {
			if p.Server == name {
				pts = append(pts, p)
				hasSrv = hasSrv || p.ServerThroughputRPS > 0
			}
		}
		thr := func(p report.SweepPoint) float64 { return yThr(p.ThroughputRPS) }
		srv := func(p report.SweepPoint) float64 { return yThr(p.ServerThroughputRPS) }
		p50 := func(p report.SweepPoint) float64 { return yLat(p.P50) }
		p99 := func(p report.SweepPoint) float64 { return yLat(p.P99) }
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
			bars(pts, func(p report.SweepPoint) float64 { return p.P50Low }, func(p report.SweepPoint) float64 { return p.P50High }, palette[0])
			bars(pts, func(p report.SweepPoint) float64 { return p.P99Low }, func(p report.SweepPoint) float64 { return p.P99High }, palette[1])
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
		bars(pts, func(p report.SweepPoint) float64 { return p.P50Low }, func(p report.SweepPoint) float64 { return p.P50High }, c)
		bars(pts, func(p report.SweepPoint) float64 { return p.P99Low }, func(p report.SweepPoint) float64 { return p.P99High }, c)
	}
	for i := range s.Points {
		if !s.IsKnee(i) {
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

func shortLabel(p report.SweepPoint) string {
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
