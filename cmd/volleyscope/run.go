package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/report"
	"github.com/volleyscope/volleyscope/session"
)

const runSynopsis = `volleyscope run [flags]

Benchmarks a server with ping-pong (or echo) clients until the mean latency
is known to ±--ci, and splits every round trip into client, kernel/network
and server time with the eBPF probe (needs root or CAP_BPF+CAP_PERFMON).

examples:
  volleyscope run                                   default server, 1 client
  volleyscope run --clients 4 --out results/        also write results.json, requests.csv, latency.hlog
  volleyscope run --server epoll-lt --server-spin 200us
  volleyscope run --addr 127.0.0.1:9000 --proto echo --size 512`

const benchSynopsis = `volleyscope bench [flags]

Like 'volleyscope run' without the eBPF probe: client-observed latency and
throughput only, no root needed.

examples:
  volleyscope bench --clients 4 --duration 5s --json
  volleyscope bench --server ./myserver --clients 8 --out results/`

func cmdRun(ctx context.Context, args []string, withProbe bool) error {
	name, syn := "bench", benchSynopsis
	if withProbe {
		name, syn = "run", runSynopsis
	}
	fs := newFlagSet(name, syn)
	var lf loadFlags
	lf.register(fs)
	var pf probeFlags
	if withProbe {
		pf.register(fs)
	}
	if help, err := parseArgs(fs, args, 0, "no arguments, only flags"); help || err != nil {
		return err
	}
	cfg, err := lf.config()
	if err != nil {
		return err
	}
	cfg.Probe = withProbe
	cfg.ProbeMode, cfg.Syscalls, cfg.Record = pf.mode, pf.syscalls, pf.record
	pr := newProgress(lf.quiet)
	cfg.Progress = pr.update
	cfg.Note = pr.note
	out, runErr := session.Run(ctx, cfg)
	pr.done()
	if out == nil {
		return runErr
	}
	return emit(out, &lf, runErr)
}

// emit writes what a run measured: --out first (so nothing is lost if the
// terminal is gone), then the summary, then the run's error as the exit
// status.
func emit(out *session.Outcome, lf *loadFlags, runErr error) error {
	if lf.out != "" {
		if err := report.WriteDir(lf.out, out.Results, out.Load, out.Rows); err != nil {
			return errors.Join(runErr, err)
		}
	}
	var err error
	if lf.json {
		err = report.WriteJSON(os.Stdout, out.Results)
	} else {
		err = report.WriteText(os.Stdout, out.Results)
	}
	if lf.out != "" && !lf.json {
		fmt.Fprintf(os.Stdout, "wrote %s/{results.json,requests.csv,latency.hlog}\n", lf.out)
	}
	if err != nil {
		return err
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", runErr)
		if out.Load != nil && out.Load.StopReason == loadgen.StopInterrupted {
			return exitError{130}
		}
		return exitError{1}
	}
	if out.Load != nil && out.Load.StopReason == loadgen.StopInterrupted {
		return exitError{130}
	}
	return nil
}

// progress shows a one-line status on a terminal's stderr, and nothing
// when stderr is a file or pipe (logs stay clean).
type progress struct {
	tty   bool
	quiet bool
	last  time.Time
	shown bool
}

func newProgress(quiet bool) *progress {
	_, err := unix.IoctlGetTermios(2, unix.TCGETS)
	return &progress{tty: err == nil, quiet: quiet}
}

func (p *progress) update(g loadgen.Progress) {
	if p.quiet || !p.tty || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	phase := "measuring"
	if g.Warmup {
		phase = "warming up"
	}
	ci := "—"
	if g.RelCI > 0 && g.RelCI < 10 {
		ci = fmt.Sprintf("±%.2f%%", 100*g.RelCI)
	}
	fmt.Fprintf(os.Stderr, "\r\033[K%5.1fs %s: %d round trips, mean %s %s", g.Elapsed.Seconds(), phase, g.Measured, report.Dur(g.Mean), ci)
	p.shown = true
}

func (p *progress) note(s string) {
	if p.quiet {
		return
	}
	p.clear()
	fmt.Fprintf(os.Stderr, "%s\n", s)
}

func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(os.Stderr, "\r\033[K")
		p.shown = false
	}
}

func (p *progress) done() { p.clear() }
