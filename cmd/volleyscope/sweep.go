package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/volleyscope/volleyscope/internal/outdir"
	"github.com/volleyscope/volleyscope/internal/render"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/session"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

const sweepHelp = `volleyscope sweep [flags]

Runs a server once per load level (several servers, given by repeated
--server, take turns at each level), each run to its --ci and --p99-ci
targets (capped by --duration), and prints throughput and p50/p99 with
their intervals against the load, the server's send calls per second
(from the probe's send events; one per reply unless the server writes a
reply in parts) beside the client's throughput,
and names the knee: the last level before throughput stops growing (by
less than 10%) while p50 rises (by more than 10%). Each level is flagged
when the client, not the server, may have limited it. Levels are
connection counts (--clients 1,2,4,…), or in open loop total rates
(--rate r1,r2,… with one --clients value). With --out, each run's files go
into a directory of their own there, and the sweep into sweep.json and
sweep.svg.

examples:
  volleyscope sweep --server epoll-lt --clients 1,4,16,64,256 --out sweep/
  volleyscope sweep --clients 8 --rate 5000,10000,20000,40000 --duration 10s
  volleyscope sweep --server epoll=epoll-lt --server uring=iouring-multishot --clients 1,256,512,1024 --proto echo --size 1024 --out cmp/
` + exitText

func cmdSweep(ctx context.Context, args []string) error {
	fs := newFlagSet("sweep", sweepHelp)
	lf := loadFlags{sweep: true}
	lf.register(fs, true, session.DefaultRoundDuration)
	fs.Lookup("duration").Usage = "cap on each level's measured time; a level usually stops earlier at the --ci and --p99-ci targets"
	fs.Lookup("out").Usage = "write each level's files into a directory of its own here, and the sweep as sweep.json and sweep.svg (checked before measuring)"
	withProbe := fs.Bool("probe", probe.Check() == nil, "attach the eBPF probe: breakdowns and the server-side throughput (the default is whether this process may)")
	var af agentFlags
	af.register(fs)
	af.registerLoad(fs)
	if help, err := parseArgs(fs, args, 0, ""); help || err != nil {
		return err
	}
	levels, sorted, err := sweepLevels(lf.clientList, lf.rateList)
	if err != nil {
		return usagef("sweep: %v", err)
	}
	cfg, err := lf.config()
	if err != nil {
		return err
	}
	if err := af.apply(fs, &cfg, true); err != nil {
		return err
	}
	cfg.Probe = *withProbe
	if len(cfg.LoadAgents) > 0 && !fs.Changed("probe") {
		cfg.Probe = false // the clients are on the agents' hosts: nothing here to follow
	}
	pr := newProgress(os.Stderr, lf.quiet)
	pr.aim(targetOf(cfg.Load.CI, loadgen.DefaultCI), targetOf(cfg.Load.P99CI, loadgen.DefaultP99CI), cfg.Load.Duration, cfg.Load.Warmup)
	var servers []session.Contender
	labels := map[string]session.Contender{}
	for _, arg := range lf.servers {
		c, err := session.ParseContender(arg)
		if err != nil {
			return usagef("sweep: --server: %v", err)
		}
		if prev, dup := labels[c.Label]; dup {
			return usagef("sweep: two --server are labelled %q: give each server once, and label two of the same kind apart, e.g. --server a=%s --server b=%s", c.Label, prev.Server, c.Server)
		}
		labels[c.Label] = c
		servers = append(servers, c)
	}
	if lf.addr != "" {
		servers = nil // --addr: the one running server
	}
	var specs []string
	for _, c := range servers {
		specs = append(specs, c.Server)
	}
	for _, l := range levels {
		// Each level's load, against the machine (session.Check).
		c := cfg
		c.Load.Clients, c.Load.Rate = l.Clients, l.Rate
		if err := preflight(c, specs...); err != nil {
			return err
		}
	}
	if lf.out != "" {
		if err := outdir.PrepareDir(lf.out); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		cfg.Out = lf.out
	}
	if sorted {
		names := make([]string, len(levels))
		for i, l := range levels {
			names[i] = l.Name(i)[3:]
		}
		pr.note("levels run in ascending order, which the knee assumes: " + strings.Join(names, ", "))
	}
	s, runErr := session.Sweep(ctx, cfg, session.Callbacks{Progress: pr.update}, servers, levels, func(i int, l session.Level, c session.Contender, out *report.Results, err error) {
		pr.clear()
		what := fmt.Sprintf("level %d of %d (%s)", i+1, len(levels), l.Name(i)[3:])
		if len(servers) > 1 {
			what += ", " + c.Label
		}
		switch {
		case out != nil && err == nil:
			pr.note(fmt.Sprintf("%s: %.0f round trips/s, p50 %s, %s", what, out.ThroughputRPS, report.Dur(out.Latency.P50), out.Run.StopReason))
		case err != nil:
			pr.note(fmt.Sprintf("%s: %v", what, err))
		}
	})
	pr.done()
	var werr error
	if lf.out != "" && s != nil {
		werr = outdir.WriteFileAtomic(filepath.Join(lf.out, "sweep.json"), func(w io.Writer) error { return render.WriteJSON(w, s) })
		if werr == nil {
			werr = outdir.WriteFileAtomic(filepath.Join(lf.out, "sweep.svg"), func(w io.Writer) error { return render.WriteSweepSVG(w, s) })
		}
	}
	if s != nil {
		if lf.json {
			err = render.WriteJSON(os.Stdout, s)
		} else {
			err = render.WriteSweepText(os.Stdout, s)
		}
		if err == nil && werr == nil && lf.out != "" && !lf.json {
			fmt.Printf("wrote %s/{sweep.json,sweep.svg} and one directory per level\n", lf.out)
		}
	}
	if werr != nil {
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", werr)
	}
	failed := 0
	if s == nil {
		failed = 1 // nothing was run: the error says why
	} else {
		for _, p := range s.Points {
			if p.Error != "" {
				failed++
			}
		}
	}
	if s == nil && runErr != nil {
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", runErr)
	}
	code := runStatus("", runErr)
	if code == statusOK && (failed > 0 || werr != nil || err != nil) {
		code = statusError
	}
	if code == statusOK {
		return nil
	}
	return exitError{code}
}

// sweepLevels reads --clients and --rate: several connection counts, or
// one connection count and several rates. The levels come back in
// ascending order, which the knee (the last level before throughput
// stops growing) assumes; sorted says that the order given was another.
func sweepLevels(clients, rates string) (levels []session.Level, sorted bool, err error) {
	cs, sortedC, err := parseList(clients, "--clients", func(s string) (float64, error) {
		n, err := strconv.Atoi(s)
		if err == nil && n < 1 {
			err = fmt.Errorf("want at least 1")
		}
		return float64(n), err
	})
	if err != nil {
		return nil, false, err
	}
	if strings.TrimSpace(rates) == "" {
		for _, c := range cs {
			levels = append(levels, session.Level{Clients: int(c)})
		}
		return levels, sortedC, nil
	}
	if len(cs) != 1 {
		return nil, false, fmt.Errorf("--rate sweeps the rate at one connection count: give --clients one value, not %d", len(cs))
	}
	rs, sortedR, err := parseList(rates, "--rate", func(s string) (float64, error) {
		r, err := strconv.ParseFloat(s, 64)
		if err == nil && !(r > 0 && r < 1e9) {
			err = fmt.Errorf("want a positive rate below 1e9")
		}
		return r, err
	})
	if err != nil {
		return nil, false, err
	}
	for _, r := range rs {
		levels = append(levels, session.Level{Clients: int(cs[0]), Rate: r})
	}
	return levels, sortedR, nil
}

// parseList reads a comma-separated list of levels for flag, each with
// parse. An empty item or one given twice is refused: a typo, not a
// level. The values come back ascending; sorted says they were not.
func parseList(s, flag string, parse func(string) (float64, error)) (out []float64, sorted bool, err error) {
	if strings.TrimSpace(s) == "" {
		return nil, false, fmt.Errorf("%s: want a comma-separated list, e.g. 1,4,16", flag)
	}
	seen := map[float64]string{}
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return nil, false, fmt.Errorf("%s %q: item %d is empty", flag, s, i+1)
		}
		v, err := parse(f)
		if err != nil {
			return nil, false, fmt.Errorf("%s %q: %v", flag, f, err)
		}
		if prev, dup := seen[v]; dup {
			return nil, false, fmt.Errorf("%s %q: %s and %s are the same level; give each once", flag, s, prev, f)
		}
		seen[v] = f
		out = append(out, v)
	}
	if !slices.IsSorted(out) {
		slices.Sort(out)
		sorted = true
	}
	return out, sorted, nil
}
