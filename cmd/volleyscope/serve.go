package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

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
		return usagef("serve: %v", err)
	}
	switch {
	case !fs.Changed("port"):
		return usagef("serve: -p PORT is required, e.g. 'volleyscope serve %s -p 9000'", srv.Name)
	case *port < 1 || *port > 65535:
		return usagef("serve: -p %d: want a port in 1-65535", *port)
	case *spin < 0:
		return usagef("serve: --spin %v: want 0 (none) or a positive duration", *spin)
	case strings.TrimSpace(*host) == "":
		return usagef("serve: --host '': want an address to listen on, e.g. 127.0.0.1")
	}
	set, err := parseCPUs(*cpus)
	if err != nil {
		return usagef("serve: --cpus: %v", err)
	}
	if err := servers.Check(srv.Name); err != nil {
		return err
	}
	if len(set) > 0 {
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
