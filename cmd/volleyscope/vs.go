package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/volleyscope/volleyscope/internal/outdir"
	"github.com/volleyscope/volleyscope/internal/render"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/session"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// minPairs is the fewest pairs vs accepts: fewer give intervals too wide
// to conclude anything on a noisy machine.
const minPairs = 5

const vsHelp = `volleyscope vs A B [flags]

Runs servers A and B in interleaved rounds (A B A B …), each round to the
--ci and --p99-ci targets (capped by --duration), with the same clients,
payload and pinning, so that the drift of a noisy machine cancels; then
gives a verdict on p50, p99, the mean and throughput: the ratio B/A with
a confidence interval across the pairs, read as "B is X% faster/slower",
"equivalent within ±margin", or no conclusion. By default pairs go on
until the p50 verdict is conclusive or --budget is spent, and it says
which; each look at the pairs (after 3, 5, 7, 10, 14, 20, 28, 40) uses a
stricter level, so that all looks together hold at --confidence. A and B are
server specs, each labelled by NAME= or by its name:
  epoll-lt                          a built-in server ('volleyscope servers')
  ./myserver                        a program that takes -p PORT
  './srv --threads 2 --port {port}' a command line, the port where {port} is
  port=6379:./uring_echo_server     a command that listens on port 6379 by
                                    itself: started and stopped around each
                                    round, so two may share the port
  addr=127.0.0.1:6379               a server already running: never
                                    restarted, so what one round leaves
                                    (caches, leaks, backlog) the next inherits
Commands run without a shell. A round that fails or measures nothing stops
the rounds: no verdict is drawn from it (a partial one from the complete
pairs before it, if there are two). With --out, each round's results.json
is written as soon as it ends (pairNN-a.json, pairNN-b.json) and the
verdict as verdict.json.

examples:
  volleyscope vs epoll-lt iouring --clients 8
  volleyscope vs goroutine ./myserver --pairs 10 --json
  volleyscope vs old=/opt/v1/server new=/opt/v2/server --out vs-results/
  volleyscope vs epoll=port=6379:./epoll_echo uring=port=6379:./uring_echo --proto echo
` + exitText

func cmdVs(ctx context.Context, args []string) error {
	fs := newFlagSet("vs", vsHelp)
	var lf loadFlags
	lf.register(fs, false, session.DefaultRoundDuration)
	fs.Lookup("duration").Usage = "cap on each round's measured time; a round usually stops earlier at the --ci and --p99-ci targets"
	fs.Lookup("out").Usage = "write each round's results.json and the verdict (verdict.json) into this directory (checked before measuring)"
	pairs := fs.Int("pairs", 0, fmt.Sprintf("a fixed number of interleaved A/B pairs (at least %d); 0: pairs until the p50 verdict is conclusive, within --budget", minPairs))
	budget := fs.Duration("budget", session.DefaultBudget, "sequential (--pairs 0): start no pair after this much time")
	maxPairs := fs.Int("max-pairs", session.DefaultMaxPairs, "sequential (--pairs 0): at most this many pairs")
	margin := fs.Float64("margin", session.DefaultMargin, "call A and B equivalent when the ratio's interval lies within ±this fraction")
	withProbe := fs.Bool("probe", probe.Check() == nil, "attach the eBPF probe and compare the breakdowns (the default is whether this process may)")
	var af agentFlags
	af.register(fs)
	if help, err := parseArgs(fs, args, 2, "two servers, A and B"); help || err != nil {
		return err
	}
	switch {
	case *pairs != 0 && *pairs < minPairs:
		return usagef("vs: --pairs %d: at least %d pairs are needed for an interval (0: until conclusive)", *pairs, minPairs)
	case *budget <= 0:
		return usagef("vs: --budget %v: want a positive duration, e.g. 5m", *budget)
	case *maxPairs < 3:
		return usagef("vs: --max-pairs %d: want at least 3", *maxPairs)
	case !(*margin > 0 && *margin < 1):
		return usagef("vs: --margin %g: want a fraction between 0 and 1, e.g. 0.05", *margin)
	}
	var who [2]session.Contender
	for i := range who {
		c, err := session.ParseContender(fs.Arg(i))
		if err != nil {
			return usagef("vs: %v", err)
		}
		who[i] = c
	}
	if who[0].Label == who[1].Label {
		return usagef("vs: both servers are labelled %q: name them, e.g. 'volleyscope vs a=%s b=%s'", who[0].Label, who[0].Server, who[1].Server)
	}
	lf.targets = []string{who[0].Server, who[1].Server}
	cfg, err := lf.config()
	if err != nil {
		return err
	}
	if err := af.apply(fs, &cfg, false); err != nil {
		return err
	}
	for i, c := range who {
		if err := preflight(cfg, c.Server); err != nil {
			// A and B are arguments, not --server: the spec's own error.
			var fe *session.FlagError
			if errors.As(err, &fe) && fe.Flag == "--server" {
				err = fe.Err
			}
			return usagef("vs: server %c: %v", 'A'+i, err)
		}
	}
	cfg.Probe = *withProbe
	var onRound func(session.Round) error
	if lf.out != "" {
		if err := outdir.PrepareDir(lf.out); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		onRound = func(r session.Round) error {
			if r.Results == nil {
				return nil
			}
			return outdir.WriteFileAtomic(filepath.Join(lf.out, roundFile(r)), func(w io.Writer) error {
				return report.WriteJSON(w, r.Results)
			})
		}
	}
	pr := newProgress(os.Stderr, lf.quiet)
	pr.aim(targetOf(cfg.Load.CI, loadgen.DefaultCI), targetOf(cfg.Load.P99CI, loadgen.DefaultP99CI), cfg.Load.Duration, cfg.Load.Warmup)
	plan := session.Plan{Pairs: *pairs, Budget: *budget, MaxPairs: *maxPairs, Margin: *margin}
	v, runErr := session.Versus(ctx, cfg, session.Callbacks{Progress: pr.update, Note: pr.note}, who[0], who[1], plan, onRound)
	pr.done()
	var werr error
	if v != nil {
		if lf.out != "" {
			werr = outdir.WriteFileAtomic(filepath.Join(lf.out, "verdict.json"), func(w io.Writer) error { return render.WriteJSON(w, v) })
		}
		if lf.json {
			werr = errors.Join(werr, render.WriteJSON(os.Stdout, v))
		} else {
			werr = errors.Join(werr, render.WriteVerdict(os.Stdout, v))
		}
	}
	if werr != nil {
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", werr)
	}
	if runErr != nil {
		if v == nil {
			fmt.Fprintf(os.Stderr, "volleyscope: no verdict: %v\n", runErr)
		} else {
			fmt.Fprintf(os.Stderr, "volleyscope: partial verdict (%d complete pairs): %v\n", v.Pairs, runErr)
		}
	}
	code := runStatus("", runErr)
	if runErr != nil && code == statusLostEvents {
		code = statusError // a verdict's rounds must all be whole
	}
	if werr != nil && code != statusInterrupted {
		code = statusError
	}
	if code == statusOK {
		return nil
	}
	return exitError{code}
}

// roundFile names a round's results.json in vs --out.
func roundFile(r session.Round) string {
	return fmt.Sprintf("pair%02d-%s.json", r.Pair, r.Side)
}
