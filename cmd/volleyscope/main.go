// Command volleyscope benchmarks a TCP server with a Volley-style ping-pong
// load and, with the eBPF probe, splits every round trip into the parts of
// the client, the server and the kernel between them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"syscall"
	"time"

	"github.com/volleyscope/volleyscope/internal/servers"
	"github.com/volleyscope/volleyscope/internal/session"
	"github.com/volleyscope/volleyscope/internal/version"
	"github.com/volleyscope/volleyscope/loadgen"
)

const usage = `volleyscope: where does the time of a network round trip go?

usage:
  volleyscope run [flags]              benchmark + kernel breakdown (root)
  volleyscope bench [flags]            the same without the probe (no root needed)
  volleyscope serve NAME -p PORT       run one reference server on its own
  volleyscope servers                  list the reference servers
  volleyscope compare A.json B.json    two results.json side by side (a verdict needs repeated runs: A1 A2 -- B1 B2)
  volleyscope vs A B [flags]           interleaved A/B runs of two servers, one verdict
  volleyscope sweep [flags]            throughput and latency against load, the knee named
  volleyscope replay FILE              join and report a 'run --record' file offline
  volleyscope agent --listen ADDR ...  serve a server's probe to a run on another host (root)
  volleyscope watch [flags]            split the round trips of programs we did not start (root)
  volleyscope version                  the build: module version, VCS revision, +dirty
  volleyscope help COMMAND             a command's flags and examples

exit status:
  0    done
  1    error; what was measured is still printed and written to --out
  2    bad command line (flag, value, arguments), or a file compare cannot read
  3    the probe lost events: results written, the breakdown misses round trips
  130  interrupted (Ctrl-C, SIGTERM); the results so far are written
`

// Exit statuses, as the usage states them.
const (
	statusOK          = 0
	statusError       = 1
	statusUsage       = 2
	statusLostEvents  = 3
	statusInterrupted = 130
)

// memoryLimit is the Go runtime's soft memory limit while the live heap
// is small (GOMEMLIMIT overrides it; followLiveHeap raises it).
const memoryLimit = 96 << 20

// followLiveHeap keeps the soft memory limit at memoryLimit, or half
// again the live heap and liveHeadroom above it when that is more,
// until ctx ends. A fixed limit below the live heap makes the collector
// run back to back, on the client CPUs, and the streaming join of a
// busy run holds more than memoryLimit (README, "How a run decides it
// is done", on memory).
func followLiveHeap(ctx context.Context) {
	const (
		every        = 250 * time.Millisecond
		liveHeadroom = 16 << 20
	)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	limit := int64(memoryLimit)
	debug.SetMemoryLimit(limit)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not this runtime's metric: the fixed limit stays
		}
		live := int64(sample[0].Value.Uint64())
		want := max(memoryLimit, live+live/2+liveHeadroom)
		// Lowered only once the live heap has fallen well below: no
		// change at every sample.
		if want > limit || want < limit*3/4 {
			limit = want
			debug.SetMemoryLimit(limit)
		}
	}
}

// exitError carries an exit status for errors that have already been
// reported in full (the results were written; only the status remains).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// A forking reference server re-executes this binary for each
	// connection; such a child never returns from here.
	servers.MaybeRunChild()

	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(statusUsage)
	}
	// A soft memory limit that follows the live heap, unless the user
	// set one: without a limit the heap grows to twice what it holds
	// before the collector runs (GOGC's default), and the streaming join
	// allocates as it goes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if os.Getenv("GOMEMLIMIT") == "" {
		go followLiveHeap(ctx)
	}
	err := run(ctx, os.Args[1], os.Args[2:])
	stop()
	code := exitStatus(err)
	var ee exitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", err)
	}
	os.Exit(code)
}

// exitStatus maps what a command returned to the process's exit status.
func exitStatus(err error) int {
	var ee exitError
	var ue usageError
	var fe *session.FlagError
	switch {
	case err == nil:
		return statusOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.As(err, &fe):
		return statusUsage
	case errors.Is(err, context.Canceled):
		return statusInterrupted
	}
	return statusError
}

// runStatus is the exit status of a run that measured something: it
// stopped on Ctrl-C, or failed, or only lost probe events, or none of these.
func runStatus(stopReason string, runErr error) int {
	switch {
	case stopReason == loadgen.StopInterrupted || errors.Is(runErr, context.Canceled):
		return statusInterrupted
	case runErr == nil:
		return statusOK
	case onlyLostEvents(runErr):
		return statusLostEvents
	}
	return statusError
}

// onlyLostEvents says whether err is session.ErrLostEvents, alone or
// joined with errors that all are.
func onlyLostEvents(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyLostEvents(e) {
				return false
			}
		}
		return len(j.Unwrap()) > 0
	}
	return errors.Is(err, session.ErrLostEvents)
}

func run(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "run":
		return cmdRun(ctx, args, true)
	case "bench":
		return cmdRun(ctx, args, false)
	case "serve":
		return cmdServe(ctx, args)
	case "servers":
		return cmdServers(args)
	case "compare":
		return cmdCompare(args)
	case "vs":
		return cmdVs(ctx, args)
	case "sweep":
		return cmdSweep(ctx, args)
	case "replay":
		return cmdReplay(ctx, args)
	case "agent":
		return cmdAgent(ctx, args)
	case "watch":
		return cmdWatch(ctx, args)
	case "version", "--version":
		if len(args) > 0 {
			return usagef("version: want no arguments, got %q", args)
		}
		fmt.Printf("volleyscope %s\n", version.String())
		return nil
	case "help", "-h", "--help":
		switch len(args) {
		case 0:
			fmt.Print(usage)
			return nil
		case 1:
			if args[0] == "help" {
				fmt.Print(usage)
				return nil
			}
			return run(ctx, args[0], []string{"--help"})
		}
		return usagef("help: want one command name, got %q", args)
	}
	fmt.Fprint(os.Stderr, usage)
	return usagef("unknown command %q", cmd)
}
