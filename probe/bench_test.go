package probe

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestBenchOverhead measures what the probe costs the round trip it
// watches: the same pinned one-connection ping-pong, in one process, with
// the probe attached and detached in interleaved rounds, on one CPU and
// across CPUs. Next to the probe as run by default it measures two
// variants in the same rounds: the same hooks with programs that return at
// once (the floor: what the kernel charges for running hooks on these
// events at all, which no program can go below) and the probe with the
// syscall hooks (--syscalls), and the probe writing to the kernel's BPF
// ring buffer instead of its per-CPU rings. Run by 'make bench' (VOLLEYSCOPE_BENCH=1,
// root). VOLLEYSCOPE_BENCH_PAIRS sets the rounds, VOLLEYSCOPE_BENCH_SKIP
// names events to leave out (to measure what each costs).
func TestBenchOverhead(t *testing.T) {
	if os.Getenv("VOLLEYSCOPE_BENCH") != "1" {
		t.Skip("benchmark: run with 'make bench'")
	}
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	rounds, n := 25, 10000
	if v := os.Getenv("VOLLEYSCOPE_BENCH_PAIRS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	var skip []string
	if v := os.Getenv("VOLLEYSCOPE_BENCH_SKIP"); v != "" {
		skip = strings.Split(v, ",")
	}
	variants := []struct {
		name string
		cfg  *Config // nil: no probe
	}{
		{"off", nil},
		{"probe", &Config{Skip: skip}},
		{"floor", &Config{Skip: skip, HooksOnly: true}},
		{"syscalls", &Config{Skip: skip, Syscalls: true}},
		{"bpfring", &Config{Skip: skip, Ring: "bpf"}},
	}
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
		// measure runs n round trips under variant v and returns their
		// p50 and how many events the probe delivered.
		measure := func(c *Config) (float64, uint64) {
			if c == nil {
				run(n)
				return p50(), 0
			}
			cfg := *c
			cfg.Ports = []uint16{r.sport}
			p, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			p.TrackTID(uint32(r.ctid))
			p.TrackTID(uint32(r.stid))
			ctx, cancel := context.WithCancel(context.Background())
			var got uint64
			done := make(chan error)
			go func() { done <- p.Run(ctx, func(*Event) { got++ }) }()
			run(n)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if lost := p.Lost(); lost > 0 {
				t.Errorf("%s: %d events lost", layout.name, lost)
			}
			if cfg.Stats {
				if rn, ns, err := p.Stats(); err == nil {
					runs, runNs = runs+rn, runNs+ns
				}
			}
			return p50(), got
		}
		run(2000) // warm-up
		// Each round measures every variant once, in an order that
		// rotates, so a drift of the machine favours none; the ratios are
		// within a round.
		p50s := make([][]float64, len(variants))
		ratios := make([][]float64, len(variants))
		for i := 0; i < rounds; i++ {
			got := make([]float64, len(variants))
			for k := range variants {
				v := (i + k) % len(variants)
				var ev uint64
				got[v], ev = measure(variants[v].cfg)
				if variants[v].name == "probe" {
					events, rtts = events+ev, rtts+uint64(n)
				}
			}
			for v := range variants {
				p50s[v] = append(p50s[v], got[v])
				ratios[v] = append(ratios[v], got[v]/got[0])
			}
		}
		// The BPF run time, in a round of its own: the kernel's
		// statistics slow the rounds they are on.
		measure(&Config{Skip: skip, Stats: true})
		stop()
		med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
		fmt.Printf("  probe overhead %-9s p50 µs (medians of %d rounds of %d): off %.1f, probe %.1f, hooks only %.1f, with --syscalls %.1f, on the BPF ring buffer %.1f\n",
			layout.name, rounds, n, med(p50s[0])/1e3, med(p50s[1])/1e3, med(p50s[2])/1e3, med(p50s[3])/1e3, med(p50s[4])/1e3)
		sorted := slices.Clone(ratios[1])
		slices.Sort(sorted)
		fmt.Printf("  probe overhead %-9s ratios of the rounds: %v\n", layout.name, round3(sorted))
		fmt.Printf("BENCH probe_overhead_p50_ratio_%s %.3f\n", layout.name, med(ratios[1]))
		fmt.Printf("BENCH probe_floor_p50_ratio_%s %.3f\n", layout.name, med(ratios[2]))
		fmt.Printf("BENCH probe_syscalls_p50_ratio_%s %.3f\n", layout.name, med(ratios[3]))
		fmt.Printf("BENCH probe_bpfring_p50_ratio_%s %.3f\n", layout.name, med(ratios[4]))
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
