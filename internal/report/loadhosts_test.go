package report

import (
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
)

// Each load host's saturation is judged on its own: one saturated host
// is named, the other is not, and the sweep point carries both.
func TestLoadHostsSaturation(t *testing.T) {
	busy := loadgen.ClientLoad{Known: true, CPUsBusy: 0.97, OnCPU: 0.9, RunDelayPerTripNs: 1000}
	idle := loadgen.ClientLoad{Known: true, CPUsBusy: 0.3, OnCPU: 0.2, RunDelayPerTripNs: 100}
	load := &loadgen.Summary{
		Latency: stats.Latency{Count: 1000, Mean: 50_000},
		Hosts:   []loadgen.HostLoad{{Host: "10.0.1.2:7070", Clients: 8, ClientLoad: busy}, {Host: "10.0.2.2:7070", Clients: 8, ClientLoad: idle}},
	}
	r := Build(Parts{Load: load})
	if len(r.Run.LoadHosts) != 2 || !r.Run.LoadHosts[0].Saturated || r.Run.LoadHosts[1].Saturated {
		t.Fatalf("load hosts %+v: want the first saturated, the second not", r.Run.LoadHosts)
	}
	var named []string
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "the client may limit") {
			named = append(named, w)
		}
	}
	if len(named) != 1 || !strings.Contains(named[0], "10.0.1.2:7070") {
		t.Errorf("saturation warnings %q: want one, naming 10.0.1.2:7070", named)
	}
	p := SweepPointOf(16, 0, r)
	if !p.ClientSaturated || len(p.LoadHosts) != 2 || !p.LoadHosts[0].Saturated || p.LoadHosts[1].Saturated {
		t.Errorf("sweep point %+v", p)
	}
}
