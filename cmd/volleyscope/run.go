package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/volleyscope/volleyscope/internal/outdir"
	"github.com/volleyscope/volleyscope/internal/render"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/session"
	"github.com/volleyscope/volleyscope/loadgen"
)

const runHelp = `volleyscope run [flags]

Benchmarks a server with ping-pong (or echo) clients until p50 and p99 are
known to ±--ci and ±--p99-ci (or for --duration), and splits every round
trip into client, kernel/network and server time with the eBPF probe
(needs root or CAP_BPF+CAP_PERFMON). --out and --record are checked before
anything is measured; their files are written whole or not at all.

examples:
  volleyscope run                                   default server, 1 client
  volleyscope run --clients 4 --out results/        also write results.json, requests.csv, latency.hlog,
                                                    report.html, trace.json
  volleyscope run --server epoll-lt --server-spin 200us
  volleyscope run --addr 127.0.0.1:9000 --proto echo --size 512
` + exitText

const benchHelp = `volleyscope bench [flags]

Like 'volleyscope run' without the eBPF probe: client-observed latency and
throughput only, no root needed. --out is checked before anything is
measured; its files are written whole or not at all.

examples:
  volleyscope bench --clients 4 --duration 5s --json
  volleyscope bench --server ./myserver --clients 8 --out results/
  volleyscope bench --ci 0 --p99-ci 0 --duration 30s   no stopping target: measure 30 s
  volleyscope bench --server epoll-lt --server-host 10.0.0.2 --clients 512 \
      --load-agent 10.0.0.3:7470 --load-agent 10.0.0.4:7470 --token-file tok
                                                    clients on two load agents, merged here
` + exitText

func cmdRun(ctx context.Context, args []string, withProbe bool) error {
	lf, cfg, help, err := parseRun(args, withProbe)
	if help || err != nil {
		return err
	}
	// session.Run checks --out and --record before it starts anything.
	started := time.Now()
	pr := newProgress(os.Stderr, lf.quiet)
	pr.aim(targetOf(cfg.Load.CI, loadgen.DefaultCI), targetOf(cfg.Load.P99CI, loadgen.DefaultP99CI), cfg.Load.Duration, cfg.Load.Warmup)
	out, runErr := session.Run(ctx, cfg, session.Callbacks{Progress: pr.update, Note: pr.note})
	pr.done()
	if out == nil {
		return runErr
	}
	return emit(out, lf, runErr, started)
}

// parseRun parses and validates the command line of run (withProbe) or
// bench. help is true when --help was asked and printed.
func parseRun(args []string, withProbe bool) (lf *loadFlags, cfg session.Config, help bool, err error) {
	name, text := "bench", benchHelp
	if withProbe {
		name, text = "run", runHelp
	}
	fs := newFlagSet(name, text)
	lf = &loadFlags{}
	lf.register(fs, true, loadgen.DefaultDuration)
	var pf probeFlags
	var af agentFlags
	if withProbe {
		pf.register(fs)
		af.register(fs)
	} else {
		af.cred.register(fs)
	}
	af.registerLoad(fs)
	if help, err := parseArgs(fs, args, 0, "no arguments, only flags"); help || err != nil {
		return nil, cfg, help, err
	}
	if cfg, err = lf.config(); err != nil {
		return nil, cfg, false, err
	}
	if err := af.apply(fs, &cfg, false); err != nil {
		return nil, cfg, false, err
	}
	if withProbe && len(cfg.LoadAgents) > 0 {
		return nil, cfg, false, usagef("run --load-agent: the breakdown follows the client threads on this host, and with load agents there are none: use 'volleyscope bench --load-agent' (latency, throughput and the server's cost)")
	}
	if err := preflight(cfg); err != nil {
		return nil, cfg, false, err
	}
	if withProbe {
		if err := pf.validate(); err != nil {
			return nil, cfg, false, err
		}
	}
	cfg.Probe = withProbe
	cfg.ProbeMode, cfg.Syscalls, cfg.Record = pf.mode, pf.syscalls, pf.record
	cfg.Out = lf.out
	return lf, cfg, false, nil
}

// emit prints what a run measured (session.Run has written --out), then
// the run's error on stderr, and returns the exit status (runStatus; 1 if
// the summary could not be printed).
func emit(out *report.Results, lf *loadFlags, runErr error, started time.Time) error {
	var err error
	if lf.json {
		err = report.WriteJSON(os.Stdout, out)
	} else {
		err = render.WriteText(os.Stdout, out)
		if lf.out != "" && writtenSince(filepath.Join(lf.out, outdir.ResultsFile), started) {
			files := []string{outdir.ResultsFile, outdir.RequestsFile, outdir.HdrLogFile, outdir.HTMLFile}
			if out.Probe != nil {
				files = append(files, outdir.TraceFile)
			}
			fmt.Fprintf(os.Stdout, "wrote %s/{%s}\n", lf.out, strings.Join(files, ","))
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", err)
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", runErr)
	}
	stop := out.Run.StopReason
	if runErr == nil && out.Latency.Count == 0 && stop != loadgen.StopInterrupted {
		fmt.Fprintf(os.Stderr, "volleyscope: no round trip was measured: lengthen --duration, shorten --warmup, or raise --requests\n")
		return exitError{statusError}
	}
	code := runStatus(stop, runErr)
	if err != nil && code != statusInterrupted {
		code = statusError
	}
	if code == statusOK {
		return nil
	}
	return exitError{code}
}

// writtenSince says whether path was written at or after t.
func writtenSince(path string, t time.Time) bool {
	st, err := os.Stat(path)
	return err == nil && !st.ModTime().Before(t.Add(-time.Second)) // file systems round times
}
