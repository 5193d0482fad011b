package report

import (
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
)

// TestObserverCost: the observer's share of the client CPUs, its cost per
// round trip, and the warning that names it only when it holds the CPUs
// of a saturated client.
func TestObserverCost(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cpu       time.Duration // reader and join together, over a 10 s run on one client CPU
		saturated bool
		share     float64
		warn      bool
	}{
		{"saturated, observer heavy", 2 * time.Second, true, 0.2, true},
		{"saturated, observer light", 200 * time.Millisecond, true, 0.02, false},
		{"not saturated, observer heavy", 2 * time.Second, false, 0.2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load := &loadgen.Summary{Options: loadgen.Options{ClientCPUs: []int{1}}, Measured: 900_000, Outside: 100_000}
			load.Latency.Count, load.Latency.Mean = 900_000, 10_000
			load.ClientLoad = loadgen.ClientLoad{Known: true, OnCPU: 0.5, CPUsBusy: 0.5}
			if tc.saturated {
				load.ClientLoad.CPUsBusy = 1
			}
			r := Build(Parts{Load: load, Probe: &ProbeParts{ReaderCPU: tc.cpu / 4, JoinCPU: tc.cpu * 3 / 4, Wall: 10 * time.Second, WarmupRuns: 10, WarmupBPFNs: 1000, WarmupTrips: 1}})
			p := r.Probe
			if d := p.ObserverCPUShare - tc.share; d > 1e-9 || d < -1e-9 {
				t.Errorf("observer share %g, want %g", p.ObserverCPUShare, tc.share)
			}
			// the threads' CPU over a million round trips, plus the programs' 1000 ns
			if want := float64(tc.cpu.Nanoseconds())/1e6 + 1000; p.ObserverNsPerRTT != want {
				t.Errorf("observer %g ns a round trip, want %g", p.ObserverNsPerRTT, want)
			}
			warned := false
			for _, w := range r.Warnings {
				warned = warned || strings.HasPrefix(w, "the observer held the client CPUs")
			}
			if warned != tc.warn {
				t.Errorf("observer warning %v, want %v: %q", warned, tc.warn, r.Warnings)
			}
		})
	}
}
