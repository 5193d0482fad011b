package probe

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/benchstat"
)

// TestBenchOverhead measures what the probe costs the round trip it
// watches: the same pinned one-connection ping-pong, in one process, with
// the probe attached and detached in interleaved rounds, on one CPU and
// across CPUs. Next to the probe as run by default it measures two
// variants in the same rounds: the same hooks with programs that return at
// once (the floor: what the kernel charges for running hooks on these
// events at all, which no program can go below) and the probe with the
// syscall hooks (--syscalls), and the probe writing to the kernel's BPF
// ring buffer instead of its per-CPU rings. Each ratio to no probe is the
// median over rounds with its order-statistic interval (internal/benchstat);
// rounds go on until every interval is within ±2% or the budget is spent.
// The probe as run by default has a target: ≤ 1.05 on one CPU, ≤ 1.03
// across CPUs. Run by 'make bench' (VOLLEYSCOPE_BENCH=1, root).
// VOLLEYSCOPE_BENCH_PAIRS caps the rounds, VOLLEYSCOPE_BENCH_SKIP names
// events to leave out (to measure what each costs).
func TestBenchOverhead(t *testing.T) {
	if os.Getenv("VOLLEYSCOPE_BENCH") != "1" {
		t.Skip("benchmark: run with 'make bench'")
	}
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	maxRounds, n := 80, 10000
	if v := os.Getenv("VOLLEYSCOPE_BENCH_PAIRS"); v != "" {
		fmt.Sscan(v, &maxRounds)
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
	kinds := map[Kind]uint64{} // events by kind in the statistics rounds
	statRTTs := uint64(0)
	for _, layout := range []struct {
		name       string
		ccpu, scpu int
		target     float64
		overFloor  float64 // the most the probe may cost above its hooks' floor
	}{{"same_cpu", 0, 0, 1.05, 1.03}, {"cross_cpu", 1, 0, 1.03, 1.02}} {
		r, run, stop := startPingPong(t, layout.ccpu, layout.scpu)
		// quantiles are the p50 and p99 of the last n round trips.
		quantiles := func() (float64, float64) {
			lat := make([]float64, 0, n)
			for i := len(r.t0) - n; i < len(r.t0); i++ {
				lat = append(lat, float64(r.t1[i]-r.t0[i]))
			}
			slices.Sort(lat)
			return lat[len(lat)/2], lat[len(lat)*99/100]
		}
		// measure runs n round trips under variant v and returns their
		// p50 and p99 and how many events the probe delivered.
		measure := func(c *Config) (float64, float64, uint64) {
			if c == nil {
				run(n)
				p50, p99 := quantiles()
				return p50, p99, 0
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
			go func() {
				done <- p.Run(ctx, func(e *Event) {
					got++
					if cfg.Stats {
						kinds[e.Kind]++
					}
				})
			}()
			run(n)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if lost := p.Lost(); lost > 0 {
				t.Errorf("%s: %d events lost", layout.name, lost)
			}
			if cfg.Stats {
				if rn, ns, err := p.MachineRuns(); err == nil {
					runs, runNs = runs+rn, runNs+ns
				}
				if progs, err := p.ProgramRuns(); err == nil {
					for _, pr := range progs {
						if pr.Runs > 0 {
							fmt.Printf("  probe cost %-9s %-28s %6.2f runs and %6.0f ns a round trip (%.0f ns a run)\n", layout.name, pr.Program,
								float64(pr.Runs)/float64(n), float64(pr.Ns)/float64(n), float64(pr.Ns)/float64(pr.Runs))
						}
					}
				}
			}
			p50, p99 := quantiles()
			return p50, p99, got
		}
		run(2000) // warm-up
		// Each round measures every variant once, in an order that
		// rotates, so a drift of the machine favours none; the ratios are
		// within a round.
		p50s := make([][]float64, len(variants))
		ratios := make([]*benchstat.Ratio, len(variants)) // [0], off over off, unused
		for v := 1; v < len(variants); v++ {
			ratios[v] = &benchstat.Ratio{Name: "probe_" + variants[v].name + "_p50_ratio_" + layout.name}
		}
		ratios[1].Name, ratios[1].Target = "probe_overhead_p50_ratio_"+layout.name, layout.target
		// The tail the probe adds, and the probe against its own floor
		// (what its programs cost above what attaching the hooks costs).
		p99Ratio := &benchstat.Ratio{Name: "probe_overhead_p99_ratio_" + layout.name, Target: 1.06}
		floorP99 := &benchstat.Ratio{Name: "probe_floor_p99_ratio_" + layout.name}
		overFloor := &benchstat.Ratio{Name: "probe_over_floor_p50_ratio_" + layout.name, Target: layout.overFloor}
		budget := benchstat.Budget{MinRounds: 8, MaxRounds: maxRounds, Time: 150 * time.Second}
		budget.Start()
		for i := 0; ; i++ {
			got := make([]float64, len(variants))
			tail := make([]float64, len(variants))
			for k := range variants {
				v := (i + k) % len(variants)
				var ev uint64
				got[v], tail[v], ev = measure(variants[v].cfg)
				if variants[v].name == "probe" {
					events, rtts = events+ev, rtts+uint64(n)
				}
			}
			for v := range variants {
				p50s[v] = append(p50s[v], got[v])
				if v > 0 {
					ratios[v].Add(got[v], got[0])
				}
			}
			p99Ratio.Add(tail[1], tail[0])
			floorP99.Add(tail[2], tail[0])
			overFloor.Add(got[1], got[2])
			done, why := budget.Done(i+1, ratios[1:]...)
			if (i+1)%10 == 0 || done {
				fmt.Printf("  probe overhead %s: %d rounds, %.0fs, probe ±%.1f%%\n", layout.name, i+1, budget.Elapsed().Seconds(), 100*ratios[1].RelHalfWidth())
			}
			if done {
				fmt.Printf("  probe overhead %s: stopped: %s\n", layout.name, why)
				break
			}
		}
		rounds := len(p50s[0])
		// The BPF run time, in a round of its own: the kernel's
		// statistics slow the rounds they are on.
		measure(&Config{Skip: skip, Stats: true})
		statRTTs += uint64(n)
		stop()
		med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
		fmt.Printf("  probe overhead %-9s p50 µs (medians of %d rounds of %d): off %.1f, probe %.1f, hooks only %.1f, with --syscalls %.1f, on the BPF ring buffer %.1f\n",
			layout.name, rounds, n, med(p50s[0])/1e3, med(p50s[1])/1e3, med(p50s[2])/1e3, med(p50s[3])/1e3, med(p50s[4])/1e3)
		sorted := make([]float64, rounds)
		for i := range sorted {
			sorted[i] = ratios[1].Num[i] / ratios[1].Den[i]
		}
		slices.Sort(sorted)
		fmt.Printf("  probe overhead %-9s ratios of the rounds: %v\n", layout.name, round3(sorted))
		for _, r := range append(ratios[1:], p99Ratio, floorP99, overFloor) {
			r.Print(os.Stdout)
		}
	}
	fmt.Printf("BENCH probe_events_per_rtt %.1f\n", float64(events)/float64(rtts))
	if runs > 0 {
		fmt.Printf("BENCH probe_bpf_ns_per_event %.0f\n", float64(runNs)/float64(runs))
		fmt.Printf("BENCH probe_bpf_ns_per_rtt %.0f\n", float64(runNs)/float64(statRTTs))
	}
	ks := make([]Kind, 0, len(kinds))
	for k := range kinds {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	for _, k := range ks {
		fmt.Printf("  probe events per round trip: %-14s %.2f\n", k, float64(kinds[k])/float64(statRTTs))
	}
}

func round3(v []float64) []float64 {
	o := make([]float64, len(v))
	for i, x := range v {
		o[i] = float64(int(x*1000+0.5)) / 1000
	}
	return o
}

// TestBenchCost measures only the programs' run time (BPF_ENABLE_STATS),
// program by program, per round trip of the pinned one-connection
// ping-pong, on one CPU and across CPUs: a quicker and far less noisy
// figure than the latency ratios of TestBenchOverhead on a shared machine,
// for comparing two builds of the programs round against round. Each
// round prints one COST line per program that ran: layout, program, runs
// and ns per round trip; the median over the rounds follows. The counts
// are machine-wide (every firing, tracked or not), so the runs per round
// trip of the machine-wide hooks follow whatever else the machine does.
// VOLLEYSCOPE_BENCH_COST_ROUNDS sets the rounds (default 5);
// VOLLEYSCOPE_BENCH_COST_FLOOR=1 measures the programs that return at
// once instead (Config.HooksOnly: what no program body can go below);
// VOLLEYSCOPE_BENCH_COST_SLOTS sets the per-CPU ring's slots.
func TestBenchCost(t *testing.T) {
	if os.Getenv("VOLLEYSCOPE_BENCH") != "1" {
		t.Skip("benchmark: run with VOLLEYSCOPE_BENCH=1")
	}
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	rounds, n := 5, 10000
	if v := os.Getenv("VOLLEYSCOPE_BENCH_COST_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	floor := os.Getenv("VOLLEYSCOPE_BENCH_COST_FLOOR") == "1"
	var slots uint32 // 0: the default size
	if v := os.Getenv("VOLLEYSCOPE_BENCH_COST_SLOTS"); v != "" {
		fmt.Sscan(v, &slots)
	}
	for _, layout := range []struct {
		name       string
		ccpu, scpu int
	}{{"same_cpu", 0, 0}, {"cross_cpu", 1, 0}} {
		r, run, stop := startPingPong(t, layout.ccpu, layout.scpu)
		run(2000) // warm-up
		type cost struct{ runs, ns []float64 }
		per := map[string]*cost{}
		var total []float64
		for i := 0; i < rounds; i++ {
			p, err := Open(Config{Ports: []uint16{r.sport}, Stats: true, HooksOnly: floor, RingSlots: slots})
			if err != nil {
				t.Fatal(err)
			}
			p.TrackTID(uint32(r.ctid))
			p.TrackTID(uint32(r.stid))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			kinds := map[Kind]uint64{}
			preempted := uint64(0)
			go func() {
				done <- p.Run(ctx, func(e *Event) {
					kinds[e.Kind]++
					if e.Kind == KindSwitch && e.Ret == 0 {
						preempted++
					}
				})
			}()
			run(n)
			progs, perr := p.ProgramRuns()
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			p.Close()
			if perr != nil {
				t.Skip(perr)
			}
			sum := 0.0
			for _, pr := range progs {
				if pr.Runs == 0 {
					continue
				}
				c := per[pr.Program]
				if c == nil {
					c = &cost{}
					per[pr.Program] = c
				}
				c.runs = append(c.runs, float64(pr.Runs)/float64(n))
				c.ns = append(c.ns, float64(pr.Ns)/float64(n))
				sum += float64(pr.Ns) / float64(n)
				fmt.Printf("COST %s %s %.2f %.0f\n", layout.name, pr.Program, float64(pr.Runs)/float64(n), float64(pr.Ns)/float64(n))
			}
			total = append(total, sum)
			fmt.Printf("COST %s total - %.0f\n", layout.name, sum)
			for k, c := range kinds {
				fmt.Printf("RECORDS %s %s %.2f\n", layout.name, k, float64(c)/float64(n))
			}
			fmt.Printf("RECORDS %s switch_preempted %.2f\n", layout.name, float64(preempted)/float64(n))
			// Ring records, as against the events read back from them
			// (a folded record is two events).
			fmt.Printf("RECORDS %s ring_records %.2f\n", layout.name, float64(p.Records())/float64(n))
		}
		stop()
		med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
		names := slices.Sorted(maps.Keys(per))
		for _, name := range names {
			c := per[name]
			fmt.Printf("  probe cost %-9s %-28s median of %d rounds: %6.2f runs, %6.0f ns a round trip\n", layout.name, name, len(c.ns), med(c.runs), med(c.ns))
		}
		fmt.Printf("  probe cost %-9s all programs, median of %d rounds: %.0f ns a round trip (rounds: %v)\n", layout.name, rounds, med(total), round3(total))
	}
}
