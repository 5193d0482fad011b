package main

import (
	"context"
	"fmt"
	"os"

	"github.com/volleyscope/volleyscope/probe"
	"github.com/volleyscope/volleyscope/report"
	"github.com/volleyscope/volleyscope/session"
)

const vsSynopsis = `volleyscope vs SERVER_A SERVER_B [flags]

Runs A and B in interleaved rounds (A B A B …), each round to the --ci
target, with the same clients, payload and pinning, so that the drift of a
noisy machine cancels; then gives one verdict: the ratio B/A of the mean
and of p99 with a confidence interval across the pairs, or "no significant
difference".

examples:
  volleyscope vs epoll-lt iouring --clients 8
  volleyscope vs goroutine ./myserver --pairs 10 --json`

func cmdVs(ctx context.Context, args []string) error {
	fs := newFlagSet("vs", vsSynopsis)
	var lf loadFlags
	lf.register(fs)
	pairs := fs.Int("pairs", 5, "interleaved A/B pairs (at least 5)")
	withProbe := fs.Bool("probe", probe.Check() == nil, "attach the eBPF probe and compare the breakdowns (default: when permitted)")
	if help, err := parseArgs(fs, args, 2, "two servers"); help || err != nil {
		return err
	}
	if *pairs < 5 {
		return fmt.Errorf("vs: --pairs %d: at least 5 pairs are needed for an interval", *pairs)
	}
	if lf.addr != "" {
		return fmt.Errorf("vs: --addr cannot be used; name two servers")
	}
	cfg, err := lf.config()
	if err != nil {
		return err
	}
	cfg.Probe = *withProbe
	if !fs.Changed("duration") {
		cfg.Load.Duration = 0 // session.Versus picks a per-round cap
	}
	pr := newProgress(lf.quiet)
	cfg.Progress = pr.update
	cfg.Note = pr.note
	v, err := session.Versus(ctx, cfg, fs.Arg(0), fs.Arg(1), *pairs)
	pr.done()
	if v == nil {
		return err
	}
	if lf.json {
		if werr := report.WriteJSONAny(os.Stdout, v); werr != nil {
			return werr
		}
	} else if werr := report.WriteVerdict(os.Stdout, v); werr != nil {
		return werr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", err)
		return exitError{1}
	}
	return nil
}
