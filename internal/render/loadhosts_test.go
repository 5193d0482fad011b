package render

import (
	"bytes"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// Each load host has a line in the terminal summary and a cell in the
// sweep table, saying which is saturated.
func TestLoadHostsShown(t *testing.T) {
	busy := loadgen.ClientLoad{Known: true, CPUsBusy: 0.97, OnCPU: 0.9}
	r := &report.Results{}
	r.Run.LoadHosts = []report.LoadHost{
		{HostLoad: loadgen.HostLoad{Host: "10.0.1.2:7470", Clients: 8, Measured: 1000, ClientLoad: busy}, Saturated: true},
		{HostLoad: loadgen.HostLoad{Host: "10.0.2.2:7470", Clients: 8, Measured: 900, ClientLoad: loadgen.ClientLoad{Known: true, CPUsBusy: 0.4}}},
	}
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"load host 10.0.1.2:7470: 8 connection(s)", "CLIENT SATURATED", "load host 10.0.2.2:7470"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "CLIENT SATURATED") != 1 {
		t.Errorf("want one host saturated:\n%s", out)
	}
	s := report.NewSweep([]report.SweepPoint{report.SweepPointOf(16, 0, r)})
	b.Reset()
	if err := WriteSweepText(&b, s); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "10.0.1.2:7470 8 97% saturated; 10.0.2.2:7470 8 40%") {
		t.Errorf("sweep table lacks the hosts' cell:\n%s", out)
	}
}
