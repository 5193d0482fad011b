package session

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/internal/servers"
	"github.com/volleyscope/volleyscope/probe"
)

// AgentConfig is what a `volleyscope agent` serves: the servers on its
// own command line, and nothing a controller could name otherwise.
type AgentConfig struct {
	Servers    []string // server specs (SpecSyntax) the agent starts; built-ins listen on Host
	PIDs       []int    // running servers followed by a process
	Ports      []int    // running servers followed by their listening port
	ServerCPUs []int    // CPUs for the servers it starts; nil: not pinned
	Host       string   // the address the agent listens on: its built-in servers listen there too
	Self       string   // the volleyscope binary that runs built-in servers; default this executable
	// Clock is the test-only transform of the agent's clock (its events,
	// watermarks and pings): zero for the real clock.
	Clock ClockTransform
	// Verbose adds every probe hook to a session's notices.
	Verbose bool
	// WatchPID and WatchPort name a running server the agent watches
	// for a controller's 'watch --agent' (watchedListener resolves
	// them as watch's --server-pid and --server-port); 0: none.
	WatchPID, WatchPort int
}

// ClockTransform makes an agent's clock run off the true one, to test
// the controller's clock estimate: the agent's time is the true time plus
// Offset plus Drift × the true time (CLOCK_MONOTONIC), so that a test on
// the same machine knows the true offset at every moment.
type ClockTransform struct {
	Offset time.Duration
	Drift  float64 // seconds gained per second (20 µs/s: 20e-6)
	// From SlewAt (CLOCK_MONOTONIC ns) on, the clock gains Slew per
	// second instead of Drift, as when NTP slews it: its rate changes,
	// it never steps. 0: no change.
	SlewAt int64
	Slew   float64
}

// ParseClockTransform reads OFFSET,DRIFT[,SLEW@T], e.g. "5s,20us/s" (a
// drift of 20 µs gained per second; "-3us/s" loses) or
// "5s,20us/s,-40us/s@12345000000000" (from CLOCK_MONOTONIC 12345 s on, 40
// µs lost per second). DRIFT may be left out.
func ParseClockTransform(s string) (ClockTransform, error) {
	parts := strings.Split(s, ",")
	var c ClockTransform
	var err error
	if c.Offset, err = time.ParseDuration(strings.TrimSpace(parts[0])); err != nil {
		return c, fmt.Errorf("clock offset %q: want a duration such as 5s or -1.5s", parts[0])
	}
	rate := func(r string) (float64, error) {
		per, ok := strings.CutSuffix(strings.TrimSpace(r), "/s")
		d, err := time.ParseDuration(per)
		if !ok || err != nil || math.Abs(d.Seconds()) >= 0.01 {
			return 0, fmt.Errorf("clock drift %q: want a duration per second under 10ms/s, such as 20us/s", r)
		}
		return d.Seconds(), nil
	}
	if len(parts) > 1 && strings.TrimSpace(parts[1]) != "" {
		if c.Drift, err = rate(parts[1]); err != nil {
			return c, err
		}
	}
	if len(parts) > 2 {
		r, at, ok := strings.Cut(parts[2], "@")
		if c.SlewAt, err = strconv.ParseInt(strings.TrimSpace(at), 10, 64); !ok || err != nil || c.SlewAt <= 0 {
			return c, fmt.Errorf("clock slew %q: want RATE@T, T in CLOCK_MONOTONIC ns", parts[2])
		}
		if c.Slew, err = rate(r); err != nil {
			return c, err
		}
	}
	if len(parts) > 3 {
		return c, fmt.Errorf("clock transform %q: want OFFSET,DRIFT[,SLEW@T]", s)
	}
	return c, nil
}

// IsZero says whether c leaves the clock as it is.
func (c ClockTransform) IsZero() bool { return c.Offset == 0 && c.Drift == 0 && c.SlewAt == 0 }

// shift is what c adds to the true time t.
func (c ClockTransform) shift(t int64) int64 {
	if c.IsZero() {
		return 0
	}
	if c.SlewAt > 0 && t > c.SlewAt {
		return c.Offset.Nanoseconds() + int64(c.Drift*float64(c.SlewAt)+c.Slew*float64(t-c.SlewAt))
	}
	return c.Offset.Nanoseconds() + int64(c.Drift*float64(t))
}

// AgentHost is the agent's side of the session package: its servers,
// and a probe on one of them per Events session (agent.Host).
type AgentHost struct {
	cfg     AgentConfig
	note    func(string)
	host    hostinfo.Host
	servers []*agentServer
	undo    func() error // the agent's confinement
	ioUring string
}

// agentServer is a server the agent started or follows.
type agentServer struct {
	name  string
	cpus  []int // where it runs: the --server-cpus of one started, its user's pinning of one followed
	stage *serverStage
	mu    sync.Mutex // pids grow as late workers are found
	// watched: named by --watch-port or --watch-pid; only a watch's
	// Events session follows it.
	watched bool
}

// StartAgent starts (or finds) the agent's servers. Stop stops those it
// started. note receives one line per thing done, for the agent's log.
func StartAgent(ctx context.Context, cfg AgentConfig, note func(string)) (*AgentHost, error) {
	if len(cfg.Servers)+len(cfg.PIDs)+len(cfg.Ports) == 0 && !cfg.watches() {
		return nil, flagErr("--server", errors.New("the agent needs a server: --server SPEC to start one, --pid or --port to follow a running one, or --watch-port or --watch-pid to watch one"))
	}
	if err := probe.Check(); err != nil {
		return nil, err
	}
	if err := cleanLeftovers(); err != nil {
		note("warning: " + err.Error())
	}
	h := &AgentHost{cfg: cfg, note: note, host: hostinfo.Local(), ioUring: servers.IOUringFeatures()}
	ok := false
	defer func() {
		if !ok {
			h.Stop()
		}
	}()
	for _, spec := range cfg.Servers {
		if err := h.startServer(ctx, spec); err != nil {
			return nil, err
		}
	}
	for _, pid := range cfg.PIDs {
		ports, err := serverproc.ListeningPorts(pid)
		if err != nil {
			return nil, flagErr("--pid", err)
		}
		if len(ports) != 1 {
			return nil, flagErr("--pid", fmt.Errorf("pid %d listens on %d TCP ports %v: give the server's with --port instead", pid, len(ports), ports))
		}
		if err := h.follow(ctx, int(ports[0]), "--pid"); err != nil {
			return nil, err
		}
	}
	for _, port := range cfg.Ports {
		if err := h.follow(ctx, port, "--port"); err != nil {
			return nil, err
		}
	}
	if cfg.watches() {
		if err := h.watch(); err != nil {
			return nil, err
		}
	}
	// The agent itself (its probe's reader, the encoding and the
	// network) keeps off the servers' CPUs, as a run keeps its clients
	// and reader off them.
	if rest := otherCPUs(cfg.ServerCPUs); len(rest) > 0 {
		undo, err := affinity.ConfineProcess(rest)
		if err != nil {
			return nil, err
		}
		h.undo = undo
	}
	ok = true
	return h, nil
}

// otherCPUs are the CPUs not in cpus; nil when cpus is empty.
func otherCPUs(cpus []int) []int {
	if len(cpus) == 0 {
		return nil
	}
	var rest []int
	for c := range runtime.NumCPU() {
		if !slices.Contains(cpus, c) {
			rest = append(rest, c)
		}
	}
	return rest
}

// startServer starts one --server: as a run starts it, but a built-in
// listens on the agent's host, where the controller's clients reach it.
func (h *AgentHost) startServer(ctx context.Context, spec string) error {
	cfg := Config{Server: spec, Self: h.cfg.Self, ServerCPUs: h.cfg.ServerCPUs, Probe: true}
	st, err := planServer(&cfg)
	if err != nil {
		return flagErr("--server", err)
	}
	if st.addr == "" && st.spec.Builtin != "" && h.cfg.Host != "" {
		st.opts.Argv = append(st.opts.Argv, "--host", h.cfg.Host)
		st.opts.Host = h.cfg.Host
	}
	return h.add(ctx, st, cfg)
}

// follow follows the running server listening on port.
func (h *AgentHost) follow(ctx context.Context, port int, flag string) error {
	if port < 1 || port > 65535 {
		return flagErr(flag, fmt.Errorf("port %d is not in 1-65535", port))
	}
	host := h.cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	st := &serverStage{addr: addr, label: addr}
	if err := h.add(ctx, st, Config{Addr: addr, Probe: true}); err != nil {
		return flagErr(flag, err)
	}
	return nil
}

func (h *AgentHost) add(ctx context.Context, st *serverStage, cfg Config) error {
	meta := report.Meta{ServerCPUs: cfg.ServerCPUs}
	if err := st.start(ctx, cfg, &meta, h.note); err != nil {
		st.stop()
		return err
	}
	name := st.label
	if st.spec.Label != "" {
		name = st.spec.Label
	}
	for _, s := range h.servers {
		if s.name == name {
			name += "-" + strconv.Itoa(int(st.port))
		}
	}
	h.servers = append(h.servers, &agentServer{name: name, stage: st, cpus: meta.ServerCPUs})
	return nil
}

// Stop stops the servers the agent started; idempotent.
func (h *AgentHost) Stop() {
	for _, s := range h.servers {
		s.stage.stop()
	}
	if h.undo != nil {
		_ = h.undo()
		h.undo = nil
	}
}

// Info lists the host and the servers (agent.Host).
func (h *AgentHost) Info() agent.Info {
	info := agent.Info{Host: h.host, IOUring: h.ioUring}
	for _, s := range h.servers {
		info.Servers = append(info.Servers, s.info())
	}
	return info
}

func (s *agentServer) info() agent.ServerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return agent.ServerInfo{Name: s.name, Addr: s.stage.addr, Port: s.stage.port, PIDs: slices.Clone(s.stage.pids), CPUs: s.cpus, Watched: s.watched}
}

// Now is the agent's clock: CLOCK_MONOTONIC, through the test transform.
func (h *AgentHost) Now() int64 {
	t := monotonicNow()
	return t + h.cfg.Clock.shift(t)
}

// Note passes the agent package's notes to the agent's log.
func (h *AgentHost) Note(msg string) { h.note(msg) }

// Open attaches the probe to the server req names, only ever one of the
// agent's own (agent.Host).
func (h *AgentHost) Open(_ context.Context, req agent.EventsRequest) (agent.Session, error) {
	var srv *agentServer
	var names []string
	for _, s := range h.servers {
		names = append(names, s.name)
		if s.name == req.Server || (req.Server == "" && len(h.servers) == 1) {
			srv = s
		}
	}
	if srv == nil {
		return nil, fmt.Errorf("no server %q on this agent: it serves %s", req.Server, strings.Join(names, ", "))
	}
	// A watched server is one the agent's user runs (in production,
	// perhaps): only a watch follows it, and a watch only it.
	switch {
	case srv.watched && !req.Watch:
		return nil, fmt.Errorf("server %s is only watched (the agent's --watch-port or --watch-pid): a run's load is not sent to it; follow it with 'volleyscope watch --agent'", srv.name)
	case req.Watch && !srv.watched:
		return nil, fmt.Errorf("server %s is not watched: the agent watches a running server only if its own command line says so (--watch-port or --watch-pid)", srv.name)
	}
	if n := req.SampleOneIn; n&(n-1) != 0 || n > 1<<16 {
		return nil, fmt.Errorf("connection sample one in %d: want a power of two up to 65536", n)
	}
	if _, err := probe.ParseMode(req.ProbeMode); err != nil {
		return nil, err
	}
	if srv.stage.proc != nil {
		if dead, how := srv.stage.proc.Exited(); dead {
			return nil, fmt.Errorf("server %s has exited: %s; restart the agent", srv.name, how)
		}
	}
	// The rings are sized for the run's connections, or, not given, for
	// a load as large as the sample implies (connSample's rule, read
	// backwards).
	cfg := Config{ProbeMode: req.ProbeMode, Syscalls: req.Syscalls, Verbose: h.cfg.Verbose}
	cfg.Load.Clients = req.Clients
	if cfg.Load.Clients <= 0 {
		cfg.Load.Clients = int(max(req.SampleOneIn, 1)) * followAll
	}
	info := srv.info()
	if srv.watched && !slices.ContainsFunc(info.PIDs, processAlive) {
		return nil, fmt.Errorf("watched server %s has exited (%s); restart it, then the agent", srv.name, pidText(info.PIDs))
	}
	var ps *probeSource
	var err error
	if req.Watch {
		ps, err = openWatchProbe(cfg, info.Port, nil)
	} else {
		ps, err = openProbeSampled(cfg, info.Port, req.SampleOneIn)
	}
	if err != nil {
		return nil, err
	}
	if err := ps.FollowProcesses(info.PIDs); err != nil {
		ps.Close()
		return nil, err
	}
	ps.WarmupOver() // no warm-up to measure the probe's cost in: the kernel's statistics would slow every run
	return &agentSession{h: h, srv: srv, ps: ps, port: info.Port, started: agent.Started{Server: info, Summary: ps.Summary(), Notices: ps.Notices()}}, nil
}

// agentSession is one Events session's probe (agent.Session).
type agentSession struct {
	h       *AgentHost
	srv     *agentServer
	ps      *probeSource
	port    uint16
	started agent.Started
}

func (s *agentSession) Started() agent.Started { return s.started }

// Run delivers the server side's events, on the agent's clock. The probe
// sees every network namespace's sockets on the server's port: when the
// controller and the agent are two namespaces of one kernel, it sees the
// clients' sockets too, whose events are the controller's probe's to
// report.
func (s *agentSession) Run(ctx context.Context, deliver func(*probe.Event)) error {
	clock := s.h.cfg.Clock
	if s.srv.watched {
		// A watched server is not ours to keep running: when its last
		// process exits, the session ends with that as its error, which
		// the controller's watch reports, instead of streaming nothing.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go s.watchExit(ctx, cancel)
	}
	err := s.ps.Run(ctx, func(e *probe.Event) {
		if server, ok := e.OnSocketSide(s.port); ok && !server {
			return
		}
		if !clock.IsZero() {
			e.ShiftTimes(clock.shift(int64(e.TS)))
		}
		deliver(e)
	})
	if cause := context.Cause(ctx); errors.Is(cause, errWatchedExited) {
		return cause
	}
	return err
}

// errWatchedExited is why a watch session ends when its server is gone.
var errWatchedExited = errors.New("the watched server exited")

// watchExitEvery is how often a watch session looks for its server.
const watchExitEvery = 500 * time.Millisecond

// watchExit cancels ctx once none of the watched server's processes runs.
func (s *agentSession) watchExit(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(watchExitEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.srv.mu.Lock()
		pids := slices.Clone(s.srv.stage.pids)
		s.srv.mu.Unlock()
		if !slices.ContainsFunc(pids, processAlive) {
			cancel(fmt.Errorf("%w: server %s (%s) on the agent's host", errWatchedExited, s.srv.name, pidText(pids)))
			return
		}
	}
}

func (s *agentSession) Watermark() int64 {
	w := s.ps.Watermark()
	return w + s.h.cfg.Clock.shift(w)
}

// Mark samples the server's cost; first it follows the server's workers
// that showed since (a worker that holds only the connections it
// accepted shows once the clients are connected: a controller marks
// then).
func (s *agentSession) Mark(name string) agent.MarkReply {
	s.srv.mu.Lock()
	fresh := s.srv.stage.newHolders()
	var err error
	if len(fresh) > 0 {
		if err = s.ps.FollowProcesses(fresh); err == nil {
			s.srv.stage.pids = append(s.srv.stage.pids, fresh...)
			s.h.note("server processes followed once the clients connected: " + pidList(fresh))
		}
	}
	pids := slices.Clone(s.srv.stage.pids)
	s.srv.mu.Unlock()
	r := agent.MarkReply{Name: name}
	var sample proccost.Sample
	if err == nil {
		sample, err = proccost.TakeAll(pids)
	}
	r.AgentNs, r.Cost = s.h.Now(), sample
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// SetTracing switches the session's probe for a sampled watch.
func (s *agentSession) SetTracing(on bool) error { return s.ps.p.SetTracing(on) }

func (s *agentSession) Close() (agent.Final, error) {
	rep, err := s.ps.Close()
	return agent.Final{Lost: rep.Lost, ReaderCPU: rep.ReaderCPU.Nanoseconds(), ReaderLate: rep.ReaderLate.Nanoseconds(), Probe: rep.Probe, Warnings: rep.Warnings}, err
}
