package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/session"
)

const agentSynopsis = `volleyscope agent --listen ADDR --token T (--server SPEC | --pid PID | --port PORT | --watch-port PORT | --watch-pid PID | --load-to ADDRS)... [flags]

Runs on the server's machine, as root: starts the servers named on its
own command line (or follows running ones by --pid or --port), and for a
controlling 'volleyscope run --agent HOST:PORT' on another host runs the
probe on a server's processes and streams its events there. It never
runs anything it is sent: a controller can only name one of these
servers. One run at a time; the servers it started stop with it
(SIGINT, SIGTERM).

With --watch-port PORT (or --watch-pid PID) it watches a running server
for a controlling 'volleyscope watch --agent HOST:PORT --client-pid PID':
the probe follows that server's processes as 'watch --server-port' would
on this host, and a run's load is never sent to it. It watches a server
only when its own command line names it.

With --load-to it is also a load agent: a controller's 'volleyscope
bench|sweep --load-agent HOST:PORT' runs client connections here, to the
addresses --load-to allows only, and merges their round trips with the
other agents'. A load-only agent (no server) needs no root.

Every call must carry the token given with --token or --token-file (the
same on both sides). With --cert, --key and --ca the connection is
mutual TLS: the agent requires a client certificate signed by --ca.
Without them the traffic, the token with it, goes in clear: use that
only on a network you trust.

examples:
  volleyscope agent --listen 10.0.0.2:7470 --token-file /etc/volleyscope/token --server epoll-lt --server-cpus 0
  volleyscope agent --listen 10.0.0.2:7470 --token-file tok --port 6379
  volleyscope agent --listen 10.0.0.2:7470 --token-file tok --watch-port 6379
  volleyscope agent --listen 10.0.0.3:7470 --token-file tok --load-to 10.0.0.2:9000
  volleyscope agent --listen 10.0.0.2:7470 --token-file tok --server iouring \
      --cert agent.pem --key agent.key --ca ca.pem`

func cmdAgent(ctx context.Context, args []string) error {
	fs := newFlagSet("agent", agentSynopsis)
	listen := fs.String("listen", "", "HOST:PORT to listen on (required; built-in servers listen on HOST too)")
	var cf credFlags
	cf.register(fs)
	loadTo := fs.StringArray("load-to", nil, "run load for a controller's --load-agent, only to these addresses: a CIDR prefix or an IP, each optionally with :PORT (repeatable, or comma-separated)")
	srvs := fs.StringArray("server", nil, "a server to start (repeatable): "+session.SpecSyntax)
	pids := fs.IntSlice("pid", nil, "follow the running server of this process (repeatable)")
	ports := fs.IntSlice("port", nil, "follow the running server listening on this port (repeatable)")
	watchPort := fs.Int("watch-port", 0, "watch the running server listening on this port, for a controller's 'watch --agent' (only a watch follows it)")
	watchPID := fs.Int("watch-pid", 0, "watch the running server of this process (its only listening port, or --watch-port's), for a controller's 'watch --agent'")
	serverCPUs := fs.String("server-cpus", "", "pin the servers it starts to these CPUs, e.g. 0 or 0-1")
	verbose := fs.BoolP("verbose", "v", false, "tell every probe hook")
	testClock := fs.String("test-clock", "", "tests only: OFFSET,DRIFT added to the agent's clock, e.g. 5s,20us/s")
	_ = fs.MarkHidden("test-clock")
	if help, err := parseArgs(fs, args, 0, "no arguments"); help || err != nil {
		return err
	}

	// Everything is checked before anything starts.
	host, port, err := net.SplitHostPort(*listen)
	switch {
	case !fs.Changed("listen"):
		return usagef("agent: --listen HOST:PORT is required: the agent binds only where it is told, e.g. --listen 10.0.0.2:7470")
	case err != nil || host == "":
		return usagef("agent: --listen %q: want HOST:PORT, e.g. 10.0.0.2:7470", *listen)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return usagef("agent: --listen %q: port %q is not in 1-65535", *listen, port)
	}
	cred, err := cf.creds(true)
	if err != nil {
		return err
	}
	var policy *agent.LoadPolicy
	if fs.Changed("load-to") {
		if policy, err = agent.ParseLoadPolicy(*loadTo); err != nil {
			return usagef("agent: %v", err)
		}
	}
	watches := fs.Changed("watch-port") || fs.Changed("watch-pid")
	if len(*srvs)+len(*pids)+len(*ports) == 0 && !watches && policy == nil {
		return usagef("agent: no server: give --server SPEC to start one, --pid PID or --port PORT to follow a running one, --watch-port PORT or --watch-pid PID to watch one, or --load-to to run load only")
	}
	if fs.Changed("watch-port") && (*watchPort < 1 || *watchPort > 65535) {
		return usagef("agent: --watch-port %d: want a port in 1-65535", *watchPort)
	}
	if fs.Changed("watch-pid") && *watchPID < 1 {
		return usagef("agent: --watch-pid %d: want a process id", *watchPID)
	}
	for _, s := range *srvs {
		if _, err := session.ParseSpec(s); err != nil {
			return usagef("agent: --server: %v", err)
		}
	}
	for _, p := range *pids {
		if p < 1 {
			return usagef("agent: --pid %d: want a process id", p)
		}
	}
	for _, p := range *ports {
		if p < 1 || p > 65535 {
			return usagef("agent: --port %d: want a port in 1-65535", p)
		}
	}
	cpus, err := parseCPUs(*serverCPUs)
	if err != nil {
		return usagef("agent: --server-cpus: %v", err)
	}
	cfg := session.AgentConfig{Servers: *srvs, PIDs: *pids, Ports: *ports, WatchPID: *watchPID, WatchPort: *watchPort, ServerCPUs: cpus, Host: host, Verbose: *verbose}
	if *testClock != "" {
		if cfg.Clock, err = session.ParseClockTransform(*testClock); err != nil {
			return usagef("agent: --test-clock: %v", err)
		}
	}

	note := func(s string) { fmt.Fprintln(os.Stderr, "agent: "+s) }
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("agent: listen on %s: %w", *listen, err)
	}
	defer lis.Close()
	if cred.TLS == nil {
		note("warning: no TLS (--cert, --key, --ca): the traffic and the token travel in clear")
	}
	var h agent.Host
	if len(cfg.Servers)+len(cfg.PIDs)+len(cfg.Ports) > 0 || watches {
		sh, err := session.StartAgent(ctx, cfg, note)
		if err != nil {
			return err
		}
		defer sh.Stop()
		h = sh
	} else {
		h = agent.LoadOnly(note)
	}
	var names []string
	for _, s := range h.Info().Servers {
		names = append(names, fmt.Sprintf("%s at %s (pids %v)", s.Name, s.Addr, s.PIDs))
	}
	if len(names) == 0 {
		names = append(names, "none")
	}
	note(fmt.Sprintf("listening on %s (protocol %d); servers: %s", lis.Addr(), agent.ProtocolVersion, strings.Join(names, "; ")))
	if policy != nil {
		note("runs load to " + policy.String())
		h = agent.WithLoad(h, policy)
	}
	if !cfg.Clock.IsZero() {
		note(fmt.Sprintf("test clock: offset %v, drift %g s/s", cfg.Clock.Offset, cfg.Clock.Drift))
	}
	if err := agent.Serve(ctx, lis, cred, h); err != nil {
		return err
	}
	note("stopping")
	return nil
}
