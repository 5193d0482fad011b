package session

import (
	"context"
	"fmt"
	"strings"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/netns"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/serverproc"
)

// serverStage is the server side of a run: a server the run starts and
// owns, or one already running at an address. Its pids are the
// processes serving the port: the probe follows them, and the cost is
// theirs.
type serverStage struct {
	label string // what meta.server says
	spec  Spec
	opts  serverproc.Options // for a server the run starts

	addr string // where the load connects
	port uint16 // the server's listening port, as the probe sees it
	pids []int  // processes serving the port; nil when not found
	proc *serverproc.Proc
	pair *netns.Pair // --netns
}

// label is what meta.server says of a server the run starts.
func (sp Spec) label() string {
	if sp.Builtin != "" {
		return sp.Builtin
	}
	return strings.Join(sp.Argv, " ")
}

// start starts the server, or finds the running one's processes, and
// fills in what meta says of it.
func (s *serverStage) start(ctx context.Context, cfg Config, meta *report.Meta, note func(string)) error {
	meta.Server = s.label
	if s.addr != "" { // running already
		meta.ServerCPUs = nil
		// Every process holding its sockets: a server that forked its
		// workers before we looked (nginx's master and workers) is served
		// by all of them.
		pids, port, err := serverproc.FindAll(s.addr)
		if err != nil {
			if cfg.Probe {
				return err
			}
			return nil // the load alone needs no pid; the cost is then unknown
		}
		s.pids, s.port = pids, port
		meta.ServerCPUs = affinity.OfProcesses(pids) // where its user pinned it, if anywhere
		note(fmt.Sprintf("server at %s is %s", s.addr, pidText(pids)))
		return nil
	}
	if cfg.NetNS {
		if err := s.isolate(cfg.Netem, meta, note); err != nil {
			return err
		}
	}
	if h := cfg.ServerHost; h != "" && !cfg.NetNS && s.spec.Builtin != "" {
		// Where load agents on other hosts reach it.
		s.opts.Argv = append(s.opts.Argv, "--host", h)
		s.opts.Host = h
	}
	var err error
	if s.proc, err = serverproc.Start(ctx, s.opts); err != nil {
		return err
	}
	note(fmt.Sprintf("server %s started: pid %d, port %d, CPUs %v", s.spec.Label, s.proc.PID(), s.proc.Port, cfg.ServerCPUs))
	s.addr, s.port, s.pids = s.proc.Addr, uint16(s.proc.Port), []int{s.proc.PID()}
	if pids := s.newHolders(); len(pids) > 0 { // a server that forked its workers already
		s.pids = append(s.pids, pids...)
		note("server processes: " + pidList(s.pids))
	}
	return nil
}

// isolate puts the server in a network namespace of its own, joined to
// ours by a veth pair that stop removes.
func (s *serverStage) isolate(netem string, meta *report.Meta, note func(string)) error {
	pair, err := netns.Create()
	if err != nil {
		return err
	}
	s.pair = pair
	if netem != "" {
		if err := pair.Netem(netem); err != nil {
			return err
		}
	}
	if s.spec.Builtin != "" { // a built-in: listen on the veth
		s.opts.Argv = append(s.opts.Argv, "--host", pair.NSAddr)
	}
	s.opts.Argv, s.opts.Host = pair.Exec(s.opts.Argv), pair.NSAddr
	meta.Network = fmt.Sprintf("veth %s (%s) ↔ %s (%s) in namespace %s", pair.HostIf, pair.HostAddr, pair.NSIf, pair.NSAddr, pair.NS)
	if netem != "" {
		meta.Network += ", netem " + netem
	}
	note("network: " + meta.Network)
	return nil
}

// end tells whether a started server died during the run, and stops it.
// It returns the run's error, with the server's death added, and the
// error of the stop.
func (s *serverStage) end(runErr error, label string) (error, error) {
	if s.proc == nil {
		return runErr, nil
	}
	if runErr != nil {
		s.proc.WaitExit(waitExit)
	}
	if dead, how := s.proc.Exited(); dead {
		runErr = serverDied(runErr, label, how)
	}
	return runErr, s.proc.Stop()
}

// stop stops a started server and removes its namespace; idempotent.
func (s *serverStage) stop() {
	if s.proc != nil {
		s.proc.Stop()
	}
	if s.pair != nil {
		s.pair.Close()
		s.pair = nil
	}
}
