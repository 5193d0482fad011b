package bench

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/benchstat"
	"github.com/volleyscope/volleyscope/internal/report"
)

// TestBenchObserver measures what the observer (the probe's programs, its
// ring reader and the join, all on the client CPUs) costs a loaded run:
// 'run' against 'bench' on the same server and load, in interleaved
// rounds of fixed length, at 64 and 256 connections (and at 10,000 with
// VOLLEYSCOPE_BENCH_C10K=1, which takes minutes more). The ratio is run's
// throughput over bench's, a floor of 0.95; beside it, the share of the
// round trip run's breakdown puts in client_preempted (the client thread
// runnable but kept off its CPU: by the observer's threads among others),
// and the observer's cost as run reports it.
func TestBenchObserver(t *testing.T) {
	gate(t)
	requireRoot(t)
	exe := self(t)
	ctx := context.Background()
	type load struct {
		name   string
		conns  int
		dur    string
		budget benchstat.Budget
	}
	loads := []load{
		{"c64", 64, "5s", benchstat.Budget{MinRounds: 8, MaxRounds: 8, Time: 200 * time.Second}},
		{"c256", 256, "5s", benchstat.Budget{MinRounds: 8, MaxRounds: 8, Time: 200 * time.Second}},
	}
	if os.Getenv("VOLLEYSCOPE_BENCH_C10K") == "1" {
		loads = append(loads, load{"c10k", c10k, "10s", benchstat.Budget{MinRounds: 3, MaxRounds: 4, Time: 240 * time.Second}})
	}
	if v := os.Getenv("VOLLEYSCOPE_BENCH_OBSERVER"); v != "" { // one load alone, e.g. c256
		loads = slices.DeleteFunc(loads, func(l load) bool { return l.name != v })
	}
	for _, l := range loads {
		t.Run(l.name, func(t *testing.T) {
			noFile(t, l.conns)
			args := []string{"--server", "epoll-lt", "--proto", "echo", "--size", "1024", "--clients", strconv.Itoa(l.conns),
				"--ci", "0", "--p99-ci", "0", "--duration", l.dur, "--timeout", "10s"}
			ratio := &benchstat.Ratio{Name: "observer_throughput_ratio_" + l.name, Target: 0.95, Floor: true}
			var preempted, observer, perTrip []float64
			progs := map[string][]report.ProgramCost{} // each round's, by program
			kinds := map[string][]float64{}            // each round's records per round trip, by kind
			// A round where either side failed (a busy shared machine can
			// time a connection out) is left out and said; three such
			// rounds end the test.
			failed := 0
			one := func(sub string) *results {
				r, err := volley(ctx, exe, sub, nil, args...)
				if err != nil || r == nil || len(r.Errors) > 0 {
					var errs []string
					if r != nil {
						errs = r.Errors
					}
					fmt.Printf("  %s: %s failed, round left out: %v %q\n", l.name, sub, err, errs)
					if failed++; failed >= 3 {
						t.Fatalf("%s: %d rounds failed", l.name, failed)
					}
					return nil
				}
				return r
			}
			l.budget.Start()
			for round := 0; ; round++ {
				var run, bch *results
				interleave(round, func() float64 { run = one("run"); return 0 }, func() float64 { bch = one("bench"); return 0 })
				if run == nil || bch == nil {
					continue
				}
				ratio.Add(run.ThroughputRPS, bch.ThroughputRPS)
				var share float64
				for _, c := range run.Breakdown {
					if c.Component == "client_preempted" {
						share = c.Share
					}
				}
				preempted = append(preempted, share)
				if p := run.Probe; p != nil {
					observer = append(observer, p.ObserverCPUShare)
					perTrip = append(perTrip, p.ObserverNsPerRTT)
					for _, pc := range p.Programs {
						progs[pc.Program] = append(progs[pc.Program], pc)
					}
					for k, n := range p.EventsPerRTTByKind {
						kinds[k] = append(kinds[k], n)
					}
					sample := "every connection"
					if sm := p.Sample; sm != nil {
						sample = fmt.Sprintf("%d of %d connections", sm.Followed, sm.Connections)
					}
					fmt.Printf("  %s round %d: run %.0f/s, bench %.0f/s, client_preempted %.1f%% of the mean, probe %.0f ns a round trip (%.1f runs × %.0f ns, %.1f records), observer %.1f%% of the client CPUs (reader %.0f ms, join %.0f ms; %.0f ns a round trip), client threads on CPU %.0f%%, %s followed\n",
						l.name, round+1, run.ThroughputRPS, bch.ThroughputRPS, 100*share, p.OverheadNsPerRT, p.ProgramRunsPerRTT, p.BPFNsPerEvent, p.EventsPerRTT,
						100*p.ObserverCPUShare, float64(p.ReaderCPUNs)/1e6, float64(p.JoinCPUNs)/1e6, p.ObserverNsPerRTT, 100*run.Run.ClientLoad.OnCPU, sample)
				}
				if done, why := l.budget.Done(round+1, ratio); done {
					fmt.Printf("  %s: %d rounds, %.0fs, stopped: %s\n", l.name, round+1, l.budget.Elapsed().Seconds(), why)
					break
				}
			}
			fmt.Printf("  %s: throughput/s run %v, bench %v (per round)\n", l.name, ints(ratio.Num), ints(ratio.Den))
			ratio.Print(os.Stdout)
			fmt.Printf("  %s: target ≥ 0.95 (run serves at least 95%% of bench's throughput)\n", ratio.Name)
			fmt.Printf("BENCH observer_client_preempted_share_%s %.3f\n", l.name, median(preempted))
			if len(observer) > 0 {
				fmt.Printf("BENCH observer_cpu_share_%s %.3f\n", l.name, median(observer))
				fmt.Printf("BENCH observer_ns_per_rtt_%s %.0f\n", l.name, median(perTrip))
			}
			fmt.Printf("  %s: client_preempted share of the mean per round %v; observer CPU share per round %v (medians above, no interval)\n", l.name, round3(preempted), round3(observer))
			costTable(l.name, progs, kinds)
		})
	}
}

// costTable prints the probe's cost program by program (COST lines:
// load, program, runs and ns per round trip, medians over the rounds,
// machine-wide over each run's warm-up), the largest first, and the
// records by kind per round trip (RECORDS lines, medians over the
// rounds): with a connection sample, the followed connections' records
// over every connection's round trips, as events_per_rtt counts them.
func costTable(load string, progs map[string][]report.ProgramCost, kinds map[string][]float64) {
	type row struct {
		name     string
		runs, ns float64
		rounds   int
	}
	var rows []row
	for name, pcs := range progs {
		var runs, ns []float64
		for _, pc := range pcs {
			runs, ns = append(runs, pc.RunsPerRTT), append(ns, pc.NsPerRTT)
		}
		rows = append(rows, row{name, median(runs), median(ns), len(pcs)})
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(b.ns, a.ns) })
	for _, r := range rows {
		fmt.Printf("COST %s %-36s %6.2f runs %7.0f ns per round trip (median of %d rounds)\n", load, r.name, r.runs, r.ns, r.rounds)
	}
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		fmt.Printf("RECORDS %s %-16s %6.2f per round trip (median of %d rounds)\n", load, k, median(kinds[k]), len(kinds[k]))
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

func round3(v []float64) []float64 {
	o := make([]float64, len(v))
	for i, x := range v {
		o[i] = float64(int(x*1000+0.5)) / 1000
	}
	return o
}
