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
	"syscall"

	"github.com/volleyscope/volleyscope/servers"
)

const usage = `volleyscope: where does the time of a network round trip go?

usage:
  volleyscope run [flags]              benchmark + kernel breakdown (root)
  volleyscope bench [flags]            the same without the probe (no root needed)
  volleyscope serve NAME -p PORT       run one reference server on its own
  volleyscope servers                  list the reference servers
  volleyscope compare A.json B.json    compare two results.json, with significance
  volleyscope vs SERVER_A SERVER_B     interleaved A/B runs, one verdict

'volleyscope COMMAND --help' shows a command's flags.
`

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
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1], os.Args[2:])
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintf(os.Stderr, "volleyscope: %v\n", err)
		os.Exit(1)
	}
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
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
