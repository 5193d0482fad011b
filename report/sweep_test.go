package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestSweepKnee(t *testing.T) {
	pt := func(c int, thr, p50 float64) SweepPoint {
		return SweepPoint{Clients: c, ThroughputRPS: thr, P50: p50, P50Low: p50 * 0.9, P50High: p50 * 1.1, P99: 3 * p50, P99Low: 2 * p50, P99High: 4 * p50}
	}
	for _, tc := range []struct {
		name   string
		points []SweepPoint
		knee   int
	}{
		{"plateau", []SweepPoint{pt(1, 10e3, 50e3), pt(2, 19e3, 52e3), pt(4, 30e3, 60e3), pt(8, 31e3, 120e3), pt(16, 31e3, 250e3)}, 2},
		{"throughput falls", []SweepPoint{pt(1, 10e3, 50e3), pt(4, 35e3, 55e3), pt(16, 20e3, 400e3)}, 1},
		{"still growing", []SweepPoint{pt(1, 10e3, 50e3), pt(2, 20e3, 50e3), pt(4, 40e3, 52e3)}, -1},
		{"latency flat", []SweepPoint{pt(1, 10e3, 50e3), pt(2, 10.5e3, 51e3)}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSweep(tc.points)
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
