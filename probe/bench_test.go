package probe

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
)

// TestBenchOverhead measures what the probe costs the round trip it
// watches: the same pinned one-connection ping-pong, in one process, with
// the probe attached and detached in interleaved rounds, on one CPU and
// across CPUs. Run by 'make bench' (VOLLEYSCOPE_BENCH=1, root).
func TestBenchOverhead(t *testing.T) {
	if os.Getenv("VOLLEYSCOPE_BENCH") != "1" {
		t.Skip("benchmark: run with 'make bench'")
	}
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	const pairs, n = 10, 10000
	var events, rtts, runs, runNs uint64
	for _, layout := range []struct {
		name       string
		ccpu, scpu int
	}{{"same_cpu", 0, 0}, {"cross_cpu", 1, 0}} {
		r, run, stop := startPingPong(t, layout.ccpu, layout.scpu)
		p50 := func() float64 {
			lat := make([]float64, 0, n)
			for i := len(r.t0) - n; i < len(r.t0); i++ {
				lat = append(lat, float64(r.t1[i]-r.t0[i]))
			}
			slices.Sort(lat)
			return lat[len(lat)/2]
		}
		run(2000) // warm-up
		var ratios, offs, ons []float64
		// The last round only measures the BPF run time: the kernel's
		// statistics would slow the probed rounds themselves. Which half
		// of a pair runs first alternates, so a drift of the machine
		// does not favour either.
		for i := 0; i <= pairs; i++ {
			stats := i == pairs
			var off float64
			if i%2 == 0 {
				run(n)
				off = p50()
			}
			p, err := Open(Config{Ports: []uint16{r.sport}, Stats: stats})
			if err != nil {
				t.Fatal(err)
			}
			p.TrackTID(uint32(r.ctid))
			p.TrackTID(uint32(r.stid))
			ctx, cancel := context.WithCancel(context.Background())
			var got uint64
			done := make(chan error)
			go func() { done <- p.Run(ctx, func(*Event) { got++ }) }()
			run(n)
			cancel()
			<-done
			on := p50()
			if stats {
				if rn, ns, err := p.Stats(); err == nil {
					runs, runNs = runs+rn, runNs+ns
				}
			}
			if lost := p.Lost(); lost > 0 {
				t.Errorf("%s: %d events lost", layout.name, lost)
			}
			p.Close()
			if i%2 == 1 {
				run(n)
				off = p50()
			}
			if !stats {
				events, rtts = events+got, rtts+n
				ratios = append(ratios, on/off)
				offs, ons = append(offs, off), append(ons, on)
			}
		}
		stop()
		slices.Sort(ratios)
		slices.Sort(offs)
		slices.Sort(ons)
		fmt.Printf("  probe overhead %-9s p50 without %.1f µs, with %.1f µs (medians of %d rounds of %d); ratios %v\n",
			layout.name, offs[len(offs)/2]/1e3, ons[len(ons)/2]/1e3, pairs, n, round3(ratios))
		fmt.Printf("BENCH probe_overhead_p50_ratio_%s %.3f\n", layout.name, ratios[len(ratios)/2])
	}
	fmt.Printf("BENCH probe_events_per_rtt %.1f\n", float64(events)/float64(rtts))
	if runs > 0 {
		fmt.Printf("BENCH probe_bpf_ns_per_event %.0f\n", float64(runNs)/float64(runs))
	}
}

func round3(v []float64) []float64 {
	o := make([]float64, len(v))
	for i, x := range v {
		o[i] = float64(int(x*1000+0.5)) / 1000
	}
	return o
}
