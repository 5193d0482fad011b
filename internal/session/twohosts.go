package session

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/report"
)

// remoteServer is a run's server on another host, behind an agent
// (run --agent): the agent started it or follows it, runs the probe on
// its processes and samples its cost; this host runs the load and the
// probe on the client threads.
type remoteServer struct {
	addr   string // the agent's address, as given
	client *agent.Client
	server agent.ServerInfo
	stream *agent.EventStream
	source *agentSource
	hosts  *twoHosts
	oneWay *oneWay
	lost   errBox // the agent lost mid-run: the error that stopped the load
}

// errBox holds an error set once from one goroutine and read from another.
type errBox struct{ v atomic.Pointer[error] }

func (b *errBox) Store(err error) { b.v.CompareAndSwap(nil, &err) }

func (b *errBox) Load() error {
	if p := b.v.Load(); p != nil {
		return *p
	}
	return nil
}

// serveRemote connects to the agent and settles which of its servers the
// load drives.
func (p *pipeline) serveRemote(ctx context.Context) error {
	c, err := agent.Dial(ctx, p.cfg.Agent, p.cfg.AgentCred)
	if err != nil {
		return err
	}
	p.undo = append(p.undo, func() { c.Close() })
	info := c.Info()
	// A server the agent only watches is not a run's to load.
	runnable := slices.DeleteFunc(slices.Clone(info.Servers), func(s agent.ServerInfo) bool { return s.Watched })
	si, err := pickAgentServer(p.cfg.Agent, runnable, p.cfg.AgentServer)
	if err != nil {
		return err
	}
	if err := pickProto(&p.cfg.Load, builtinName(si.Name)); err != nil {
		return err
	}
	p.remote = &remoteServer{addr: p.cfg.Agent, client: c, server: si}
	label := fmt.Sprintf("%s on %s", si.Name, p.cfg.Agent)
	p.server = &serverStage{addr: si.Addr, port: si.Port, label: label}
	p.meta.Server, p.meta.ServerCPUs = label, si.CPUs // pinned on the agent's host
	p.cb.note(fmt.Sprintf("agent %s: volleyscope %s on %s (kernel %s, %d CPUs); server %s at %s, %s",
		p.cfg.Agent, info.Version, info.Host.CPUModel, info.Host.Kernel, info.Host.NCPU, si.Name, si.Addr, pidText(si.PIDs)))
	p.cfg.Load.Addr = si.Addr
	p.load = liveLoad{p.cfg.Load}
	undo, err := affinity.ConfineProcess(p.cfg.Load.ClientCPUs)
	if err != nil {
		return err
	}
	p.undo = append(p.undo, func() { _ = undo() })
	return nil
}

// builtinName is name when it names a built-in server, else "".
func builtinName(name string) string {
	if sp, err := ParseSpec(name); err == nil && sp.Builtin != "" && !strings.ContainsAny(name, " /") {
		return sp.Builtin
	}
	return ""
}

// pickAgentServer is the agent's server named want, or its only one.
func pickAgentServer(addr string, have []agent.ServerInfo, want string) (agent.ServerInfo, error) {
	var names []string
	for _, s := range have {
		if want == "" && len(have) == 1 || s.Name == want {
			return s, nil
		}
		names = append(names, s.Name)
	}
	if len(have) == 0 {
		return agent.ServerInfo{}, fmt.Errorf("agent %s serves no server: start it with --server, --pid or --port", addr)
	}
	if want == "" {
		return agent.ServerInfo{}, fmt.Errorf("agent %s serves %s: name one with --agent-server", addr, strings.Join(names, ", "))
	}
	return agent.ServerInfo{}, fmt.Errorf("agent %s has no server %q (--agent-server): it serves %s", addr, want, strings.Join(names, ", "))
}

// attachRemote opens the probe on this host's client threads and the
// agent's on the server, and joins the two.
func (p *pipeline) attachRemote(ctx context.Context) error {
	r := p.remote
	ps, err := openProbe(p.cfg, p.server.port)
	if err != nil {
		return err
	}
	// The stream outlives an interrupted load: the agent's account is
	// asked for when the join stops, and the stream closed at teardown.
	r.stream, err = r.client.Events(context.WithoutCancel(ctx), agent.EventsRequest{Server: r.server.Name, Clients: p.cfg.Load.Clients, SampleOneIn: ps.sample, Syscalls: p.cfg.Syscalls, ProbeMode: p.cfg.ProbeMode})
	if err != nil {
		ps.Close()
		return err
	}
	p.undo = append(p.undo, r.stream.Close)
	st := r.stream.Started()
	p.cb.note("probe on the clients: " + ps.Summary())
	p.cb.note(fmt.Sprintf("probe on the server (agent %s): %s", r.addr, st.Summary))
	for _, n := range append(ps.Notices(), st.Notices...) {
		p.cb.note(n)
	}
	r.source = newAgentSource("agent "+r.addr, r.stream, r.client)
	r.hosts = newTwoHosts(ps, r.source, p.server.port)
	r.hosts.lost = func(err error) {
		r.lost.Store(fmt.Errorf("%w; the run stopped there (what was measured before is kept)", err))
		p.abort(err)
	}
	r.oneWay = newOneWay(r.hosts.halfWidth)
	p.cost = newRemoteCost(func() (proccost.Sample, error) { return r.source.costSample("cost") }, p.cfg.Load.Warmup)
	return p.startJoin(r.hosts)
}

// twoHostsParts is what the run across two hosts adds to the summary.
// trips is every round trip the load completed (the agent's events
// cover the warm-up too).
func (r *remoteServer) parts(sr SourceReport, trips int64) *report.TwoHosts {
	info := r.client.Info()
	h := info.Host
	t := &report.TwoHosts{Agent: r.addr, ServerHost: report.HostFacts{
		Kernel: h.Kernel, CPUModel: h.CPUModel, NCPU: h.NCPU, Vulnerabilities: h.Vulnerabilities,
		Virtualization: h.Virtualization, ClockSource: h.ClockSource, Version: info.Version,
	}}
	if rr := sr.Remote; rr != nil {
		t.Clock, t.ClockSeries = rr.Clock, rr.Series
		if a := rr.Account; a != nil {
			t.AgentCPUNs, t.AgentEvents, t.AgentBytes = a.AgentCPU, a.Events, a.Bytes
			if a.Events > 0 {
				t.AgentNsPerEvent = float64(a.AgentCPU) / float64(a.Events)
			}
			if trips > 0 {
				t.BytesPerRTT = float64(a.Bytes) / float64(trips)
			}
		}
	}
	r.oneWay.fill(t)
	return t
}
