package render

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/report"
)

func TestSweepKnee(t *testing.T) {
	pt := func(c int, thr, p50 float64) report.SweepPoint {
		return report.SweepPoint{Clients: c, ThroughputRPS: thr, P50: p50, P50Low: p50 * 0.9, P50High: p50 * 1.1, P99: 3 * p50, P99Low: 2 * p50, P99High: 4 * p50}
	}
	for _, tc := range []struct {
		name   string
		points []report.SweepPoint
		knee   int
	}{
		{"plateau", []report.SweepPoint{pt(1, 10e3, 50e3), pt(2, 19e3, 52e3), pt(4, 30e3, 60e3), pt(8, 31e3, 120e3), pt(16, 31e3, 250e3)}, 2},
		{"throughput falls", []report.SweepPoint{pt(1, 10e3, 50e3), pt(4, 35e3, 55e3), pt(16, 20e3, 400e3)}, 1},
		{"still growing", []report.SweepPoint{pt(1, 10e3, 50e3), pt(2, 20e3, 50e3), pt(4, 40e3, 52e3)}, -1},
		{"latency flat", []report.SweepPoint{pt(1, 10e3, 50e3), pt(2, 10.5e3, 51e3)}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := report.NewSweep(tc.points)
			if s.Knee != tc.knee {
				t.Fatalf("knee %d (%s), want %d", s.Knee, s.KneeWhy, tc.knee)
			}
			var txt bytes.Buffer
			if err := WriteSweepText(&txt, s); err != nil {
				t.Fatal(err)
			}
			if want := "knee: not reached"; (tc.knee < 0) != strings.Contains(txt.String(), want) {
				t.Errorf("text:\n%s", txt.String())
			}
			var svg bytes.Buffer
			if err := WriteSweepSVG(&svg, s); err != nil {
				t.Fatal(err)
			}
			d := xml.NewDecoder(&svg)
			lines := 0
			for {
				tok, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("sweep.svg is not well-formed: %v", err)
				}
				if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
					lines++
				}
			}
			if lines != 3 { // client throughput, p50, p99 (no server-side figures here)
				t.Errorf("%d lines drawn, want 3", lines)
			}
		})
	}
}

// TestSweepServers: two servers taking turns at each level get a knee
// each, a server column, and lines of their own in the SVG.
func TestSweepServers(t *testing.T) {
	pt := func(server string, c int, thr, p50 float64) report.SweepPoint {
		return report.SweepPoint{Server: server, Clients: c, ThroughputRPS: thr, P50: p50, P99: 3 * p50, CPUPerRequestNs: 10e3}
	}
	s := report.NewSweep([]report.SweepPoint{
		pt("epoll", 1, 10e3, 50e3), pt("uring", 1, 11e3, 48e3),
		pt("epoll", 4, 30e3, 60e3), pt("uring", 4, 40e3, 55e3),
		pt("epoll", 16, 31e3, 200e3), pt("uring", 16, 60e3, 60e3),
	})
	if len(s.Knees) != 2 || s.Knees[0].Server != "epoll" || s.Knees[0].Point != 2 || s.Knees[1].Point != -1 {
		t.Fatalf("knees %+v, want epoll at point 2 and none for uring", s.Knees)
	}
	if s.Knee != 2 {
		t.Errorf("Knee %d, want the first server's (2)", s.Knee)
	}
	var txt bytes.Buffer
	if err := WriteSweepText(&txt, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server", "CPU/request", "knee of epoll: 4 clients", "knee of uring: not reached"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, txt.String())
		}
	}
	var svg bytes.Buffer
	if err := WriteSweepSVG(&svg, s); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg.Bytes(), new(struct{})); err != nil {
		t.Fatalf("sweep.svg is not well-formed: %v", err)
	}
	if n := strings.Count(svg.String(), "<polyline"); n != 6 { // per server: throughput, p50, p99
		t.Errorf("%d lines drawn, want 6", n)
	}
}
