package session

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
)

// TestProbeCostWarmupOnly: the probe's cost is its programs' run time
// over the warm-up, read as the warm-up ends. The kernel keeps counting
// while any process has its run statistics on (here the
// kernel.bpf_stats_enabled sysctl, as bpftop sets it), and a read at the
// end of the run then held the whole run's runs over the warm-up's round
// trips: the program runs per round trip must read the same with the
// statistics left on as without.
func TestProbeCostWarmupOnly(t *testing.T) {
	requireRoot(t)
	const sysctl = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(sysctl)
	if err != nil {
		t.Skipf("no %s: %v", sysctl, err)
	}
	runsPerTrip := func() float64 {
		t.Helper()
		r, err := Run(context.Background(), Config{Self: selfBin, Probe: true, ServerCPUs: []int{0},
			Load: loadgen.Options{Clients: 1, ClientCPUs: []int{1}, Duration: 2 * time.Second, Warmup: 300 * time.Millisecond, CI: -1, P99CI: -1, Timeout: stallTimeout}}, Callbacks{})
		if err != nil && !errors.Is(err, ErrLostEvents) {
			t.Fatal(err)
		}
		if r.Probe == nil || r.Probe.ProgramRunsPerRTT <= 0 {
			t.Fatalf("no program runs measured: %+v", r.Probe)
		}
		return r.Probe.ProgramRunsPerRTT
	}
	base := runsPerTrip()
	if err := os.WriteFile(sysctl, []byte("1"), 0o644); err != nil {
		t.Skipf("cannot turn the statistics on: %v", err)
	}
	defer os.WriteFile(sysctl, []byte(strings.TrimSpace(string(old))), 0o644)
	on := runsPerTrip()
	t.Logf("program runs per round trip: %.1f, %.1f with the statistics left on", base, on)
	if on > 1.5*base {
		t.Errorf("program runs per round trip %.1f with the statistics left on, %.1f without: the count ran past the warm-up", on, base)
	}
}
