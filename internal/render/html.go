package render

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
)

// htmlStyle lays the page out for a wide screen, a phone (charts scale to
// the width through their viewBox, tables scroll sideways) and paper
// (nothing scrolls, sections do not split across pages).
const htmlStyle = `body{font-family:system-ui,sans-serif;max-width:960px;margin:0 auto;padding:0 12px;color:#222;line-height:1.4}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}th,td{padding:2px 8px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}tr:nth-child(even){background:#f4f4f4}
.scroll{overflow-x:auto;max-width:100%}svg.chart{width:100%;height:auto;max-width:760px;display:block}
svg.log2{width:120px;height:18px;vertical-align:middle}.warn{color:#a40}.err{color:#b00}
.muted{color:#666;font-size:.9em}ul{padding-left:1.2em}
table.run td,table.hooks td,table.hooks th,table.slowest td:nth-child(n+4),table.slowest th:nth-child(n+4){text-align:left}
table.run td:nth-child(2),table.hooks td:nth-child(2),table.slowest td:nth-child(5){white-space:normal}
table.slowest td:nth-child(5){min-width:18em}
@media (max-width:600px){body{padding:0 6px;font-size:14px}th,td{padding:2px 4px}}
@media print{body{max-width:none;font-size:10pt}.scroll{overflow:visible}section{break-inside:avoid}
h2{break-after:avoid}svg.chart{max-width:17cm}tr:nth-child(even){background:none}
td{white-space:normal}tr{break-inside:avoid}table.slowest td:nth-child(5){min-width:0}}
`

// WriteHTML writes the run's report page: self-contained (inline CSS and
// SVG, no script, nothing fetched), drawn from r (the results.json of the
// run) and log (the latency.hlog it wrote; nil when there is none, and
// the page then draws the percentiles from r alone and no timeline).
func WriteHTML(w io.Writer, r *report.Results, log LatencyLog) error {
	b := &strings.Builder{}
	m := r.Meta
	title := fmt.Sprintf("volleyscope: %s, %d client(s), %s", m.Server, m.Clients, m.Proto)
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\n")
	b.WriteString(`<meta name="viewport" content="width=device-width, initial-scale=1"/>` + "\n")
	fmt.Fprintf(b, "<title>%s</title>\n<style>%s</style></head><body>\n", xmlEscape(title), htmlStyle)
	fmt.Fprintf(b, "<h1>%s</h1>\n", xmlEscape(title))
	fmt.Fprintf(b, "<p class=\"muted\">kernel %s, %s, started %s</p>\n", xmlEscape(m.Kernel), xmlEscape(m.CPUModel), m.StartedAt.Format("2006-01-02 15:04:05 MST"))
	htmlProblems(b, r)
	htmlSummary(b, r)
	section(b, "breakdown", "Where the time goes, by latency band", func() {
		if len(r.BreakdownByBand) == 0 {
			b.WriteString("<p class=\"muted\">No breakdown: the probe did not run (bench), or nothing was joined.</p>\n")
			return
		}
		b.WriteString("<p class=\"muted\">Each bar is the mean round trip of the round trips in one band of the latency distribution, split into its components.</p>\n")
		bandBars(b, r.BreakdownByBand)
		htmlBreakdownTable(b, r)
	})
	section(b, "distribution", "Latency distribution", func() {
		var total *hdrhistogram.Histogram
		if log != nil {
			total = log.Total()
		}
		percentilePlot(b, r.Latency, total)
	})
	if log != nil && len(log.Intervals()) > 0 {
		section(b, "timeline", "Latency over time", func() {
			b.WriteString("<p class=\"muted\">Per second of completions, from latency.hlog: p50, p99 and max (log scale), and round trips completed.</p>\n")
			timeline(b, log.Intervals())
		})
	}
	if len(r.Syscalls) > 0 {
		section(b, "syscalls", "System calls", func() { htmlSyscalls(b, r.Syscalls) })
	}
	if len(r.Uring) > 0 {
		section(b, "io_uring", "io_uring operations", func() { htmlUring(b, r.Uring) })
	}
	if len(r.Slowest) > 0 {
		section(b, "slowest", "Slowest round trips", func() { htmlSlowest(b, r.Slowest) })
	}
	section(b, "run", "Run, checks and probe cost", func() { htmlRun(b, r) })
	b.WriteString("</body></html>\n")
	bw := bufio.NewWriter(w)
	bw.WriteString(b.String())
	if err := bw.Flush(); err != nil {
		return err
	}
	return nil
}

// section writes one titled section with body's content.
func section(b *strings.Builder, id, title string, body func()) {
	fmt.Fprintf(b, "<section id=\"%s\"><h2>%s</h2>\n", id, xmlEscape(title))
	body()
	b.WriteString("</section>\n")
}

// table writes a table that scrolls sideways on a narrow screen; cells
// are HTML already.
func table(b *strings.Builder, class string, head []string, rows [][]string) {
	fmt.Fprintf(b, "<div class=\"scroll\"><table class=\"%s\"><thead><tr>", class)
	for _, h := range head {
		fmt.Fprintf(b, "<th>%s</th>", h)
	}
	b.WriteString("</tr></thead><tbody>\n")
	for _, row := range rows {
		b.WriteString("<tr>")
		for _, c := range row {
			fmt.Fprintf(b, "<td>%s</td>", c)
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</tbody></table></div>\n")
}

func htmlProblems(b *strings.Builder, r *report.Results) {
	if len(r.Errors)+len(r.Warnings) == 0 {
		return
	}
	b.WriteString("<section id=\"problems\"><ul>\n")
	for _, e := range r.Errors {
		fmt.Fprintf(b, "<li class=\"err\">error: %s</li>\n", xmlEscape(e))
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(b, "<li class=\"warn\">warning: %s</li>\n", xmlEscape(w))
	}
	b.WriteString("</ul></section>\n")
}

func htmlSummary(b *strings.Builder, r *report.Results) {
	l := r.Latency
	section(b, "summary", "Latency", func() {
		ci := func(lo, hi float64) string { return xmlEscape(strings.TrimSpace(interval(lo, hi))) }
		rows := [][]string{
			{"round trips", fmt.Sprint(l.Count), ""},
			{"throughput", fmt.Sprintf("%.0f/s", r.ThroughputRPS), ""},
			{"mean", report.Dur(l.Mean), ci(l.CILow, l.CIHigh)},
			{"p50", report.Dur(l.P50), ci(l.P50CILow, l.P50CIHigh)},
			{"p90", report.Dur(l.P90), ""},
			{"p99", report.Dur(l.P99), ci(l.P99CILow, l.P99CIHigh)},
			{"p99.9", report.Dur(l.P999), ""},
			{"p99.99", report.Dur(l.P9999), ""},
			{"max", report.Dur(l.Max), ""},
		}
		if r.ServerThroughputRPS > 0 {
			rows = append(rows[:2], append([][]string{{"server send calls", fmt.Sprintf("%.0f/s", r.ServerThroughputRPS), ""}}, rows[2:]...)...)
		}
		level := ""
		if l.CILevel > 0 {
			level = fmt.Sprintf(" (%.0f%%)", 100*l.CILevel)
		}
		table(b, "summary", []string{"", "value", "interval" + level}, rows)
	})
}

func htmlBreakdownTable(b *strings.Builder, r *report.Results) {
	var rows [][]string
	for _, c := range r.Breakdown {
		rows = append(rows, []string{swatch(c.Component) + c.Component, c.Side, report.Dur(c.MeanNs), report.Dur(c.P50Ns), report.Dur(c.P99Ns), fmt.Sprintf("%.1f%%", 100*c.Share)})
	}
	table(b, "breakdown", []string{"component", "side", "mean", "p50", "p99", "share of mean"}, rows)
	if c := r.BreakdownCheck; c != nil {
		fmt.Fprintf(b, "<p class=\"muted\">%d round trips joined, %d not; %.1f%% of the joined sum to t1 − t0 within %s.</p>\n",
			c.Joined, c.Unjoined, 100*c.SumWithinTolerance, xmlEscape(c.Tolerance))
	}
}

// swatch is a small square of a component's colour, for a table cell.
func swatch(component string) string {
	return fmt.Sprintf(`<svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" fill="%s"/></svg> `, breakdown.ColorOf(component))
}

// bandBars draws one bar per latency band, each the band's mean round
// trip split into its components' shares (the bands' latencies differ by
// orders of magnitude, so each bar is full width and labelled with its
// mean): which component grows toward the tail.
func bandBars(b *strings.Builder, bands []report.Band) {
	const width, left, right, barH, gap, top = 720, 110, 90, 24, 12, 10
	var used []string // components above 0 somewhere, in breakdown order
	for _, bd := range bands {
		for _, p := range bd.Components {
			if p.MeanNs > 0 && !slices.Contains(used, p.Component) {
				used = append(used, p.Component)
			}
		}
	}
	plotW := float64(width - left - right)
	barsH := top + len(bands)*(barH+gap)
	perRow := 4
	legendH := 18 * ((len(used) + perRow - 1) / perRow)
	height := barsH + 24 + legendH
	fmt.Fprintf(b, `<svg id="band-bars" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12" role="img" aria-label="breakdown by latency band">`+"\n", width, height)
	for k := 0; k <= 4; k++ {
		x := left + plotW*float64(k)/4
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, x, top, x, barsH)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%d%%</text>`+"\n", x, barsH+14, 25*k)
	}
	for i, bd := range bands {
		y := top + i*(barH+gap)
		name := bandTitle[bd.Band]
		if name == "" {
			name = bd.Band
		}
		fmt.Fprintf(b, `<g class="band" data-band="%s"><text x="%d" y="%d" text-anchor="end">%s (%d)</text>`, xmlEscape(bd.Band), left-6, y+barH/2+4, xmlEscape(name), bd.Count)
		var sum float64
		for _, p := range bd.Components {
			sum += max(p.MeanNs, 0)
		}
		x := float64(left)
		for _, p := range bd.Components {
			if p.MeanNs <= 0 {
				continue
			}
			wd := p.MeanNs / sum * plotW
			fmt.Fprintf(b, `<rect class="seg" x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s %s (%.1f%%)</title></rect>`,
				x, y, wd, barH, breakdown.ColorOf(p.Component), p.Component, report.Dur(p.MeanNs), 100*p.Share)
			if wd >= 34 {
				fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="10">%.0f%%</text>`, x+wd/2, y+barH/2+4, 100*p.MeanNs/sum)
			}
			x += wd
		}
		fmt.Fprintf(b, `<text x="%d" y="%d">mean %s</text></g>`+"\n", left+int(plotW)+4, y+barH/2+4, report.Dur(bd.MeanLatencyNs))
	}
	legend(b, used, 10, barsH+28, (width-20)/perRow, perRow)
	b.WriteString("</svg>\n")
}

// legend writes colour keys for components, perRow to a row.
func legend(b *strings.Builder, names []string, x0, y0, colW, perRow int) {
	for i, n := range names {
		x, y := x0+colW*(i%perRow), y0+18*(i/perRow)
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", x, y-9, breakdown.ColorOf(n), x+14, y, xmlEscape(n))
	}
}

// logTicks are the powers of ten from the one at or below lo to the one
// at or above hi.
func logTicks(lo, hi float64) []float64 {
	lo, hi = max(lo, 1), max(hi, 1)
	var out []float64
	for v := math.Pow(10, math.Floor(math.Log10(lo))); ; v *= 10 {
		out = append(out, v)
		if v >= hi || len(out) > 20 {
			return out
		}
	}
}

// logScale is a log axis for latencies from lo to hi (ns) over the plot
// height h below top: its decade ticks, which span lo and hi, and the map
// from a latency to y.
func logScale(lo, hi, top, h float64) ([]float64, func(float64) float64) {
	ticks := logTicks(lo, hi)
	if len(ticks) == 1 {
		ticks = append(ticks, ticks[0]*10)
	}
	yLo, yHi := math.Log10(ticks[0]), math.Log10(ticks[len(ticks)-1])
	return ticks, func(v float64) float64 { return top + h - (math.Log10(max(v, 1))-yLo)/(yHi-yLo)*h }
}

// logYAxis draws a log axis's ticks as grid lines labelled on the left.
func logYAxis(b *strings.Builder, ticks []float64, py func(float64) float64, left, right int) {
	for _, t := range ticks {
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left, py(t), right, py(t), left-6, py(t)+4, report.Dur(t))
	}
}

// percentileLabel names the percentile at x = 1/(1−q): 0%, 90%, 99%, 99.9%, …
func percentileLabel(x float64) string {
	q := 100 * (1 - 1/x)
	s := fmt.Sprintf("%.6f", q)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}

// percentilePlot draws the latency at each percentile against
// 1/(1−percentile) on a log axis (HdrHistogram's percentile plot): the
// curve from the merged histogram of latency.hlog when there is one, and
// the results' percentiles as labelled points.
func percentilePlot(b *strings.Builder, l report.Latency, total *hdrhistogram.Histogram) {
	const width, height, left, right, top, bottom = 720, 340, 80, 30, 20, 50
	plotW, plotH := float64(width-left-right), float64(height-top-bottom)
	marks := []struct {
		q    float64
		name string
		v    float64
	}{{0.5, "p50", l.P50}, {0.9, "p90", l.P90}, {0.99, "p99", l.P99}, {0.999, "p99.9", l.P999}, {0.9999, "p99.99", l.P9999}}
	n := float64(l.Count)
	if total != nil && total.TotalCount() > 0 {
		n = float64(total.TotalCount())
	}
	maxX := max(10, n)
	ticks := logTicks(1, maxX)
	xHi := ticks[len(ticks)-1]
	ticks = append([]float64{1, 2}, ticks[1:]...) // 0%, 50%, 90%, 99%, …
	lo, hi := l.P50, l.Max
	if total != nil && total.TotalCount() > 0 {
		lo, hi = float64(total.Min()), max(hi, float64(total.Max()))
	}
	yTicks, py := logScale(lo, hi, top, plotH)
	px := func(x float64) float64 { return left + math.Log10(x)/math.Log10(xHi)*plotW }
	fmt.Fprintf(b, `<svg id="percentile-plot" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12" role="img" aria-label="latency by percentile">`+"\n", width, height)
	for _, t := range ticks {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
			px(t), top, px(t), top+plotH, px(t), top+plotH+16, percentileLabel(t))
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">percentile (axis: 1/(1 − percentile), log scale)</text>`+"\n", left+plotW/2, top+plotH+36)
	logYAxis(b, yTicks, py, left, width-right)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%.0f" stroke="black"/>`+"\n", left, top, left, top+plotH)
	if total != nil && total.TotalCount() > 0 {
		var pts []string
		for i := 0; ; i++ {
			x := math.Pow(10, float64(i)/40) // 40 points a decade
			if x > maxX {
				break
			}
			v := float64(total.ValueAtQuantile(100 * (1 - 1/x)))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x), py(v)))
		}
		fmt.Fprintf(b, `<polyline class="pct-curve" fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>`+"\n", strings.Join(pts, " "))
	}
	for _, mk := range marks {
		x := 1 / (1 - mk.q)
		if mk.v <= 0 || x > maxX {
			continue
		}
		fmt.Fprintf(b, `<circle class="pct-mark" cx="%.1f" cy="%.1f" r="3.5" fill="#d62728"><title>%s %s</title></circle><text x="%.1f" y="%.1f" fill="#d62728">%s %s</text>`+"\n",
			px(x), py(mk.v), mk.name, report.Dur(mk.v), px(x)+5, py(mk.v)-6, mk.name, report.Dur(mk.v))
	}
	b.WriteString("</svg>\n")
}

// timeline draws each second's p50, p99 and max on a log scale, and the
// round trips completed in it below.
func timeline(b *strings.Builder, iv []IntervalStat) {
	const width, height, left, right, top, latH, gapH, cntH = 720, 380, 80, 30, 20, 220, 50, 70
	plotW := float64(width - left - right)
	lo, hi := math.Inf(1), 0.0
	var maxCount int64
	for _, s := range iv {
		if s.Count > 0 {
			lo = min(lo, float64(s.P50Ns))
			hi = max(hi, float64(s.MaxNs))
		}
		maxCount = max(maxCount, s.Count)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	ticks, py := logScale(lo, hi, top, latH)
	t0, t1 := iv[0].Sec, iv[len(iv)-1].Sec+1
	px := func(sec float64) float64 { return left + (sec-float64(t0))/float64(t1-t0)*plotW }
	fmt.Fprintf(b, `<svg id="latency-over-time" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12" role="img" aria-label="latency over time">`+"\n", width, height)
	logYAxis(b, ticks, py, left, width-right)
	step := max(1, (t1-t0)/10)
	cTop := float64(top + latH + gapH)
	for s := t0; s <= t1; s += step {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d s</text>`+"\n", px(float64(s)), top+latH+16, s)
	}
	for _, line := range []struct {
		name, color string
		v           func(IntervalStat) int64
	}{
		{"p50", "#1f77b4", func(s IntervalStat) int64 { return s.P50Ns }},
		{"p99", "#d62728", func(s IntervalStat) int64 { return s.P99Ns }},
		{"max", "#999999", func(s IntervalStat) int64 { return s.MaxNs }},
	} {
		var pts []string
		for _, s := range iv {
			if s.Count > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(float64(s.Sec)+0.5), py(float64(line.v(s)))))
			}
		}
		fmt.Fprintf(b, `<polyline class="series-%s" fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", line.name, line.color, strings.Join(pts, " "))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="#1f77b4">p50</text><text x="%d" y="%d" fill="#d62728">p99</text><text x="%d" y="%d" fill="#999">max</text>`+"\n",
		left+8, top+12, left+48, top+12, left+88, top+12)
	fmt.Fprintf(b, `<text x="%d" y="%.0f" fill="#555">round trips per second (max %d)</text>`+"\n", left, cTop-6, maxCount)
	barW := plotW / float64(t1-t0)
	for _, s := range iv {
		h := 0.0
		if maxCount > 0 {
			h = float64(s.Count) / float64(maxCount) * cntH
		}
		fmt.Fprintf(b, `<rect class="count" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#9ecae1"><title>second %d: %d round trips</title></rect>`+"\n",
			px(float64(s.Sec))+0.5, cTop+cntH-h, max(barW-1, 0.5), h, s.Sec, s.Count)
	}
	b.WriteString("</svg>\n")
}

// log2Spark draws a syscall's power-of-two histogram as a row of bars.
func log2Spark(s report.Syscall) string {
	if len(s.Log2) == 0 {
		return ""
	}
	var maxC int64
	for _, k := range s.Log2 {
		maxC = max(maxC, k.Count)
	}
	sb := &strings.Builder{}
	w := 120.0 / float64(len(s.Log2))
	fmt.Fprintf(sb, `<svg class="log2" viewBox="0 0 120 18" preserveAspectRatio="none" role="img" aria-label="log2 histogram">`)
	for i, k := range s.Log2 {
		h := 0.0
		if maxC > 0 {
			h = float64(k.Count) / float64(maxC) * 18
		}
		fmt.Fprintf(sb, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="#1f77b4"><title>%s–%s: %d</title></rect>`, float64(i)*w, 18-h, max(w-0.5, 0.3), h, report.Dur(float64(k.LowNs)), report.Dur(float64(k.HighNs)), k.Count)
	}
	sb.WriteString("</svg>")
	return sb.String()
}

func htmlSyscalls(b *strings.Builder, sc []report.Syscall) {
	var rows [][]string
	for _, s := range sc {
		rows = append(rows, []string{xmlEscape(s.Side), xmlEscape(s.Name), fmt.Sprint(s.Count), report.Dur(s.P50Ns), report.Dur(s.P99Ns), report.Dur(s.MaxNs), log2Spark(s)})
	}
	b.WriteString("<p class=\"muted\">Each side's system calls over the run; the histogram has a bar per power of two of nanoseconds.</p>\n")
	table(b, "syscalls", []string{"side", "syscall", "count", "p50", "p99", "max", "log2 histogram"}, rows)
}

func htmlUring(b *strings.Builder, ops []report.UringOp) {
	var rows [][]string
	for _, u := range ops {
		rows = append(rows, []string{xmlEscape(u.Name), fmt.Sprint(u.Opcode), fmt.Sprint(u.Count), report.Dur(u.P50Ns), report.Dur(u.P99Ns), report.Dur(u.MaxNs), fmt.Sprint(u.Extra)})
	}
	b.WriteString("<p class=\"muted\">Submit to first completion, per opcode, from the io_uring tracepoints.</p>\n")
	table(b, "io_uring", []string{"operation", "opcode", "count", "p50", "p99", "max", "further completions"}, rows)
}

// htmlSlowest lists the slowest round trips, each with a bar of its
// components (one scale for all) and who held the CPU while it waited.
func htmlSlowest(b *strings.Builder, trips []report.SlowTrip) {
	var maxLat int64
	for _, t := range trips {
		maxLat = max(maxLat, t.LatencyNs)
	}
	scale := niceCeil(float64(maxLat))
	var rows [][]string
	for i, t := range trips {
		bar := &strings.Builder{}
		fmt.Fprintf(bar, `<svg class="trip-bar" viewBox="0 0 200 14" width="200" height="14" preserveAspectRatio="none" role="img" aria-label="components">`)
		x := 0.0
		var big []string
		for _, p := range t.Components {
			if p.Ns <= 0 {
				continue
			}
			wd := float64(p.Ns) / scale * 200
			fmt.Fprintf(bar, `<rect x="%.2f" width="%.2f" height="14" fill="%s"><title>%s %s</title></rect>`, x, wd, breakdown.ColorOf(p.Component), p.Component, report.Dur(float64(p.Ns)))
			x += wd
			if p.Ns*20 >= t.LatencyNs {
				big = append(big, fmt.Sprintf("%s%s %s", swatch(p.Component), p.Component, report.Dur(float64(p.Ns))))
			}
		}
		bar.WriteString("</svg>")
		hb := &strings.Builder{}
		for _, side := range []string{"server", "client"} {
			writeHolders(hb, t, side)
			writeInterrupts(hb, t, side)
		}
		var held []string
		for _, line := range strings.Split(strings.TrimSpace(hb.String()), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				held = append(held, xmlEscape(line))
			}
		}
		rows = append(rows, []string{fmt.Sprint(i + 1), report.Dur(float64(t.LatencyNs)), fmt.Sprintf("%d #%d", t.Conn, t.Seq),
			bar.String() + "<br/>" + strings.Join(big, "<br/>"), strings.Join(held, "<br/>")})
	}
	b.WriteString("<p class=\"muted\">Components over 5% of each round trip, and the tasks that held the CPU while a side waited for one.</p>\n")
	table(b, "slowest", []string{"#", "latency", "conn #seq", "components (the largest named)", "waited for a CPU, or interrupted"}, rows)
}

func htmlRun(b *strings.Builder, r *report.Results) {
	m, ru := r.Meta, r.Run
	stop, ok := stopText[ru.StopReason]
	if !ok {
		stop = "stopped: " + ru.StopReason
	}
	rows := [][]string{
		{"server", xmlEscape(m.Server)},
		{"clients", fmt.Sprintf("%d, %s", m.Clients, xmlEscape(m.Proto))},
		{"client CPUs / server CPUs", report.CPUList(m.ClientCPUs) + " / " + report.CPUList(m.ServerCPUs)},
		{"kernel", xmlEscape(m.Kernel)},
		{"CPU", fmt.Sprintf("%s (%d CPUs)", xmlEscape(m.CPUModel), m.NCPU)},
		{"probe mode", xmlEscape(m.ProbeMode)},
		{"stopped", xmlEscape(strings.TrimSuffix(stop+targets(ru)+"; "+limitText(ru), "; "))},
		{"measured", fmt.Sprintf("%.1f s after %.1f s warm-up; %d round trips outside the window (%d cut by MSER-5)",
			float64(ru.MeasuredNs)/1e9, float64(ru.WarmupNs)/1e9, ru.Outside, ru.MSERDiscarded)},
	}
	if m.Version != "" {
		rows = append(rows, []string{"volleyscope", xmlEscape(m.Version)})
	}
	if m.Network != "" {
		rows = append(rows, []string{"network", xmlEscape(m.Network)})
	}
	if m.Governor != "" {
		rows = append(rows, []string{"cpufreq governor", xmlEscape(m.Governor)})
	}
	v := ru.Validity
	if v.Checked {
		rows = append(rows,
			[]string{"stationary", fmt.Sprintf("%v (Mann–Kendall p %.3g, drift %.1f%%)", v.Stationary, v.MannKendallP, v.TrendPct)},
			[]string{"independent batches", fmt.Sprintf("%v (lag-1 %.2f of means, %.2f of medians; %d batches of %d)", v.Independent, v.Lag1Mean, v.Lag1Median, v.Batches, v.BatchSize)})
	} else if v.Note != "" {
		rows = append(rows, []string{"validity checks", xmlEscape(v.Note)})
	}
	if cl := ru.ClientLoad; cl.Known {
		rows = append(rows, []string{"client load", fmt.Sprintf("CPUs %.0f%% busy, threads on CPU %.0f%%, run-queue wait %s a round trip", 100*cl.CPUsBusy, 100*cl.OnCPU, report.Dur(cl.RunDelayPerTripNs))})
	}
	for _, h := range ru.LoadHosts {
		text := fmt.Sprintf("%d connection(s), %d round trips measured (%.0f/s)", h.Clients, h.Measured, h.ThroughputRPS)
		if cl := h.ClientLoad; cl.Known {
			text += fmt.Sprintf("; CPUs %.0f%% busy, threads on CPU %.0f%%, run-queue wait %s a round trip", 100*cl.CPUsBusy, 100*cl.OnCPU, report.Dur(cl.RunDelayPerTripNs))
		}
		if h.Saturated {
			text += "; client saturated"
		}
		rows = append(rows, []string{"load host " + xmlEscape(h.Host), xmlEscape(text)})
	}
	if c := r.ServerCost; c != nil {
		rows = append(rows, []string{"server CPU a request", report.Dur(c.CPUNs)})
	}
	if p := r.Probe; p != nil {
		rows = append(rows,
			[]string{"probe events", fmt.Sprintf("%d (%.1f a round trip), %d lost", p.Events, p.EventsPerRTT, r.LostEvents)},
			[]string{"probe cost", fmt.Sprintf("%.1f program runs a round trip × %.0f ns = %s a round trip (measured in the warm-up)", p.ProgramRunsPerRTT, p.BPFNsPerEvent, report.Dur(p.OverheadNsPerRT))})
		if p.Ring != "" {
			rows = append(rows, []string{"probe ring", xmlEscape(p.Ring)})
		}
		for _, k := range report.SortedKeys(p.Missing) {
			rows = append(rows, []string{"missing " + xmlEscape(k), xmlEscape(p.Missing[k])})
		}
	}
	table(b, "run", []string{"", ""}, rows)
	if len(m.Hooks) > 0 {
		var hooks [][]string
		for _, k := range report.SortedKeys(m.Hooks) {
			hooks = append(hooks, []string{xmlEscape(k), xmlEscape(m.Hooks[k])})
		}
		b.WriteString("<p class=\"muted\">Probe hooks:</p>\n")
		table(b, "hooks", []string{"event", "hook"}, hooks)
	}
	if len(v.Warnings) > 0 {
		b.WriteString("<ul>\n")
		for _, w := range v.Warnings {
			fmt.Fprintf(b, "<li class=\"warn\">%s</li>\n", xmlEscape(w))
		}
		b.WriteString("</ul>\n")
	}
}

// IntervalStat summarizes one interval of the log as it was written.
type IntervalStat struct {
	Sec   int64 // seconds since the first request
	Count int64
	P50Ns int64
	P99Ns int64
	MaxNs int64
}

// LatencyLog is the per-second record of a run's latencies that the page
// draws its timeline and percentile plot from (the output directory's
// latency.hlog).
type LatencyLog interface {
	Intervals() []IntervalStat      // each second's summary, in order
	Total() *hdrhistogram.Histogram // every round trip in the log
}
