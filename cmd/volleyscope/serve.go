package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/servers"
)

const serveSynopsis = `volleyscope serve NAME -p PORT [--echo] [--spin D] [--cpus LIST]

Runs one reference server until a client sends the 0 message or SIGTERM.

examples:
  volleyscope serve epoll-lt -p 9000
  volleyscope serve iouring -p 9000 --echo --cpus 0`

func cmdServe(ctx context.Context, args []string) error {
	fs := newFlagSet("serve", serveSynopsis)
	port := fs.IntP("port", "p", 0, "TCP port to listen on (127.0.0.1 unless --host)")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	echo := fs.Bool("echo", false, "echo mode: return the bytes received")
	spin := fs.Duration("spin", 0, "spin this much of the thread's CPU time per request")
	cpus := fs.String("cpus", "", "pin the server to these CPUs, e.g. 0 or 0-1")
	if help, err := parseArgs(fs, args, 1, "one server name (see 'volleyscope servers')"); help || err != nil {
		return err
	}
	srv, err := servers.Lookup(fs.Arg(0))
	if err != nil {
		return err
	}
	if err := servers.Check(srv.Name); err != nil {
		return err
	}
	if *port <= 0 || *port > 65535 {
		return fmt.Errorf("serve: -p PORT is required (1-65535)")
	}
	if set, err := parseCPUs(*cpus); err != nil {
		return fmt.Errorf("--cpus: %w", err)
	} else if len(set) > 0 {
		// Pin the whole process before the server starts its threads,
		// which inherit the mask of the thread that creates them.
		if _, err := affinity.ConfineProcess(set); err != nil {
			return err
		}
	}
	addr := net.JoinHostPort(*host, strconv.Itoa(*port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	defer ln.Close()
	err = srv.Serve(ctx, ln.(*net.TCPListener), servers.Options{Echo: *echo, Spin: *spin})
	if errors.Is(err, servers.ErrExitRequested) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
