package render_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/outdir"
	"github.com/volleyscope/volleyscope/internal/render"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/stats"
)

// node is an element of the page as encoding/xml reads it: the page is
// well-formed XML as well as HTML, so the test can walk its tree.
type node struct {
	name     string
	attr     map[string]string
	kids     []*node
	text     string
	parent   *node
	position int
}

func parsePage(t *testing.T, page []byte) *node {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	root := &node{name: "#document"}
	cur := root
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report.html is not well-formed: %v", err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			n := &node{name: tk.Name.Local, attr: map[string]string{}, parent: cur}
			for _, a := range tk.Attr {
				n.attr[a.Name.Local] = a.Value
			}
			cur.kids = append(cur.kids, n)
			cur = n
		case xml.EndElement:
			cur = cur.parent
		case xml.CharData:
			cur.text += string(tk)
		}
	}
	return root
}

// find returns the elements below n with the name and, when given, the
// class or id.
func (n *node) find(name, class, id string) []*node {
	var out []*node
	var walk func(*node)
	walk = func(m *node) {
		for _, k := range m.kids {
			if k.name == name && (class == "" || strings.Contains(" "+k.attr["class"]+" ", " "+class+" ")) && (id == "" || k.attr["id"] == id) {
				out = append(out, k)
			}
			walk(k)
		}
	}
	walk(n)
	return out
}

// allText is the text of n and everything below it.
func (n *node) allText() string {
	s := n.text
	for _, k := range n.kids {
		s += k.allText()
	}
	return s
}

// testPage is a page from a recorded run's results (the golden
// results.json of TestBuildFromRecording: bands, slowest round trips,
// breakdown), its latency log fed from the recording's measured round
// trips, and syscall and io_uring rows added.
func testPage(t *testing.T) (*report.Results, *outdir.HdrLog, []byte) {
	t.Helper()
	r, err := report.ReadJSON(filepath.Join("../report/testdata/golden", "build_default_cross_cpu.json"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := breakdown.ReadRecording("../../testdata/streams/default_cross_cpu.rec.gz")
	if err != nil {
		t.Fatal(err)
	}
	r.Syscalls = []report.Syscall{
		{Side: "client", Name: "sendto", Count: 1200, P50Ns: 5100, P99Ns: 9800, MaxNs: 31000, Log2: []stats.Log2Bucket{{LowNs: 4096, HighNs: 8191, Count: 1100}, {LowNs: 8192, HighNs: 16383, Count: 90}, {LowNs: 16384, HighNs: 32767, Count: 10}}},
		{Side: "server", Name: "read", Count: 1201, P50Ns: 2100, P99Ns: 4800, MaxNs: 12000, Log2: []stats.Log2Bucket{{LowNs: 2048, HighNs: 4095, Count: 1150}, {LowNs: 4096, HighNs: 8191, Count: 51}}},
	}
	r.Uring = []report.UringOp{{Opcode: 22, Name: "RECV", Count: 1200, P50Ns: 30e3, P99Ns: 90e3, MaxNs: 200e3, Extra: 3}}
	r.Warnings = append(r.Warnings, "a <warning> & its escape")
	log := outdir.NewHdrLog(io.Discard)
	log.Begin(r.Meta.StartedAt, r.Run.FirstT0Ns)
	for _, c := range in.Conns {
		for _, rec := range c.Records {
			if rec.T0 >= in.MeasureStart {
				log.Add(rec)
			}
		}
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := render.WriteHTML(&b, r, log); err != nil {
		t.Fatal(err)
	}
	return r, log, b.Bytes()
}

// TestHTMLStructure holds report.html to its structure: self-contained
// (no script, nothing fetched), a print rule and a phone viewport, each
// chart with its marks, and a table row for each syscall, io_uring
// opcode and slow round trip of the results.
func TestHTMLStructure(t *testing.T) {
	r, log, page := testPage(t)
	doc := parsePage(t, page)
	for _, el := range []string{"script", "link", "img", "iframe", "object", "embed"} {
		if n := doc.find(el, "", ""); len(n) > 0 {
			t.Errorf("page has a <%s>: it must be self-contained", el)
		}
	}
	if m := regexp.MustCompile(`(src|href)=|url\(|@import`).Find(page); m != nil {
		t.Errorf("page refers to another resource: %s", m)
	}
	style := doc.find("style", "", "")
	if len(style) != 1 || !strings.Contains(style[0].text, "@media print") || !strings.Contains(style[0].text, "overflow-x:auto") {
		t.Errorf("want one <style> with a print rule and scrolling tables")
	}
	if len(doc.find("meta", "", "")) != 2 {
		t.Errorf("want the charset and viewport <meta>s")
	}
	for _, svg := range doc.find("svg", "chart", "") {
		if svg.attr["viewBox"] == "" || svg.attr["width"] != "" {
			t.Errorf("chart %s: viewBox %q, width %q: it must scale to the page", svg.attr["id"], svg.attr["viewBox"], svg.attr["width"])
		}
	}

	t.Run("band bars", func(t *testing.T) {
		svg := doc.find("svg", "chart", "band-bars")
		if len(svg) != 1 {
			t.Fatalf("%d band charts", len(svg))
		}
		groups := svg[0].find("g", "band", "")
		if len(groups) != len(r.BreakdownByBand) {
			t.Fatalf("%d band bars, %d bands", len(groups), len(r.BreakdownByBand))
		}
		// Each bar is its band's mean round trip split into shares: every
		// bar is as long as the others, and its longest segment is the
		// band's largest component.
		var widths []float64
		for i, g := range groups {
			bd := r.BreakdownByBand[i]
			if g.attr["data-band"] != bd.Band {
				t.Errorf("bar %d is band %q, want %q", i, g.attr["data-band"], bd.Band)
			}
			var w, longest float64
			var longestName string
			for _, seg := range g.find("rect", "seg", "") {
				v, _ := strconv.ParseFloat(seg.attr["width"], 64)
				w += v
				if v > longest {
					longest, longestName = v, strings.Fields(seg.allText())[0]
				}
			}
			widths = append(widths, w)
			var top report.BandPart
			for _, p := range bd.Components {
				if p.MeanNs > top.MeanNs {
					top = p
				}
			}
			if longestName != top.Component {
				t.Errorf("band %s: longest segment %q, largest component %q", bd.Band, longestName, top.Component)
			}
		}
		for i, w := range widths {
			if math.Abs(w-widths[0]) > 1 {
				t.Errorf("bar %d is %.1f long, bar 0 %.1f", i, w, widths[0])
			}
		}
	})
	t.Run("percentile plot", func(t *testing.T) {
		svg := doc.find("svg", "chart", "percentile-plot")
		if len(svg) != 1 {
			t.Fatalf("%d percentile plots", len(svg))
		}
		curve := svg[0].find("polyline", "pct-curve", "")
		if len(curve) != 1 || len(strings.Fields(curve[0].attr["points"])) < 40 {
			t.Errorf("no percentile curve of 40 points or more")
		}
		text := svg[0].allText()
		for _, l := range []string{"0%", "50%", "90%", "99%"} {
			if !strings.Contains(text, l) {
				t.Errorf("percentile axis has no %s label", l)
			}
		}
		marks := svg[0].find("circle", "pct-mark", "")
		if len(marks) < 2 { // p50 and p90 at least; the higher ones need 1/(1−p) round trips
			t.Errorf("%d percentile marks", len(marks))
		}
		// p50 sits at x = 1/(1−0.5) = 2 on the log axis: left of p90.
		x := func(i int) float64 { v, _ := strconv.ParseFloat(marks[i].attr["cx"], 64); return v }
		if len(marks) >= 2 && x(0) >= x(1) {
			t.Errorf("p50 at x %.1f, p90 at x %.1f", x(0), x(1))
		}
	})
	t.Run("timeline", func(t *testing.T) {
		svg := doc.find("svg", "chart", "latency-over-time")
		if len(svg) != 1 {
			t.Fatalf("%d timelines", len(svg))
		}
		if got, want := len(svg[0].find("rect", "count", "")), len(log.Intervals()); got != want || want == 0 {
			t.Errorf("%d count bars, %d intervals", got, want)
		}
		for _, s := range []string{"series-p50", "series-p99", "series-max"} {
			if len(svg[0].find("polyline", s, "")) != 1 {
				t.Errorf("no %s line", s)
			}
		}
	})
	t.Run("tables", func(t *testing.T) {
		for _, tc := range []struct {
			class string
			rows  int
		}{{"syscalls", len(r.Syscalls)}, {"io_uring", len(r.Uring)}, {"slowest", len(r.Slowest)}, {"breakdown", len(r.Breakdown)}} {
			tb := doc.find("table", tc.class, "")
			if len(tb) != 1 {
				t.Errorf("%d %s tables", len(tb), tc.class)
				continue
			}
			if got := len(tb[0].find("tr", "", "")) - 1; got != tc.rows || tc.rows == 0 {
				t.Errorf("%s table: %d rows, want %d", tc.class, got, tc.rows)
			}
			if tb[0].parent.attr["class"] != "scroll" {
				t.Errorf("%s table does not scroll sideways", tc.class)
			}
		}
		if n := len(doc.find("svg", "log2", "")); n != len(r.Syscalls) {
			t.Errorf("%d log2 histograms, %d syscalls", n, len(r.Syscalls))
		}
		if n := len(doc.find("svg", "trip-bar", "")); n != len(r.Slowest) {
			t.Errorf("%d slow round-trip bars, %d round trips", n, len(r.Slowest))
		}
		run := doc.find("table", "run", "")
		if len(run) != 1 || !strings.Contains(run[0].allText(), "program runs a round trip") {
			t.Errorf("run table missing, or without the probe's cost")
		}
	})
	if !strings.Contains(doc.allText(), "a <warning> & its escape") {
		t.Errorf("a warning is missing or its text mangled")
	}
}

// chromiumFlags start Chromium without a window, a GPU, a sandbox (root
// in CI) or background traffic, with a profile of its own.
func chromiumFlags(profile string) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--user-data-dir=" + profile}
}

// TestHTMLInChromium renders report.html in headless Chromium and checks
// that the charts are in the DOM it built: the page parses as a browser
// parses it, the SVG elements survive as SVG, and nothing outside the
// file is needed. CI installs Chromium (.ci/run); elsewhere the test
// skips when it is missing.
func TestHTMLInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium): the rendering test needs it")
	}
	_, _, page := testPage(t)
	dir := t.TempDir()
	path := filepath.Join(dir, outdir.HTMLFile)
	if err := os.WriteFile(path, page, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(chromiumFlags(filepath.Join(dir, "profile")), "--dump-dom", "file://"+path)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
	}
	for _, tc := range []struct {
		what string
		re   string
		min  int
	}{
		{"band bars", `<svg id="band-bars" class="chart"`, 1},
		{"band bar segments", `<rect class="seg"`, 8},
		{"percentile plot", `<svg id="percentile-plot" class="chart"`, 1},
		{"percentile curve", `<polyline class="pct-curve"`, 1},
		{"percentile marks", `<circle class="pct-mark"`, 2},
		{"timeline", `<svg id="latency-over-time" class="chart"`, 1},
		{"count bars", `<rect class="count"`, 1},
		{"syscall histograms", `<svg class="log2"`, 2},
		{"slow round-trip bars", `<svg class="trip-bar"`, 1},
		{"syscall table", `<table class="syscalls">`, 1},
	} {
		if n := len(regexp.MustCompile(regexp.QuoteMeta(tc.re)).FindAllIndex(dom, -1)); n < tc.min {
			t.Errorf("%s: %d in the rendered DOM, want %d or more", tc.what, n, tc.min)
		}
	}
	if t.Failed() {
		t.Logf("DOM (%d bytes): %.2000s", len(dom), dom)
	}
}
