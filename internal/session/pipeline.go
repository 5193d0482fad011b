package session

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/serverproc"
	"github.com/volleyscope/volleyscope/internal/servers"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// pipeline is one run, a stage a field, in the order its data flows:
//
//	server ─▶ source ─▶ load ─▶ window ─▶ join ─▶ sinks
//
// The server serves the load; the source delivers the kernel's events
// on the server's and clients' threads; the load makes round trips and
// decides the measured window; the join splits each measured round trip
// with the events; the sinks fan every round trip out to the output
// files, and finish builds the summary. A nil stage is one this run does
// not have (no probe: no source and no join; a replay: no server).
type pipeline struct {
	cfg  Config    // configuration only, settled by plan
	cb   Callbacks // the caller's progress and notices
	meta report.Meta

	server *serverStage
	remote *remoteServer // the server on another host (--agent); nil on this one
	source EventSource
	join   *joinStage
	load   loadStage
	cost   *serverCost // the server's cost over the measured window; nil if its processes are unknown
	sinks  sinks

	undo  []func()                // teardown, run last first
	abort context.CancelCauseFunc // stops the load early: a stage that cannot go on (an agent lost)
	// moreParts, if set, adds what a run of another kind knows to the
	// summary's parts before it is built (the watch: its connections).
	moreParts func(*report.Parts)
	// othersCPUs: the join shares its CPUs with programs of others (a
	// watch), not with this process's clients (startJoin's floor).
	othersCPUs bool
}

// Callbacks are where a run reports as it goes. Both may be nil.
type Callbacks struct {
	Progress func(loadgen.Progress) // load progress, after every check of the stopping rule
	Note     func(string)           // one-line notices (server started, probe hooks chosen)
}

func (c Callbacks) note(s string) {
	if c.Note != nil {
		c.Note(s)
	}
}

// Run performs one measurement. Round trips stream from the load
// generator through the join (with the probe) into the output files as
// they complete; the summary is built once at the end. It returns what
// was measured, even alongside an error, whenever anything was.
func Run(ctx context.Context, cfg Config, cb Callbacks) (*report.Results, error) {
	p, err := plan(cfg, cb)
	if err != nil {
		return nil, err
	}
	defer p.teardown()
	ctx, p.abort = context.WithCancelCause(ctx)
	defer p.abort(nil)
	if err := p.serve(ctx); err != nil {
		return nil, err
	}
	if err := p.attach(ctx); err != nil {
		return nil, err
	}
	load, runErr := p.load.run(ctx, p.hooks())
	return p.finish(load, runErr)
}

// plan checks everything that can be checked before anything starts, and
// opens the output files.
func plan(cfg Config, cb Callbacks) (*pipeline, error) {
	if cfg.Server == "" {
		cfg.Server = DefaultServer
	}
	p := &pipeline{cb: cb}
	if cfg.Probe {
		if err := probe.Check(); err != nil {
			return nil, err
		}
	}
	if err := p.sinks.open(cfg); err != nil {
		return nil, err
	}
	p.undo = append(p.undo, p.sinks.abort)
	p.meta = report.MetaOf(hostinfo.Local())
	p.meta.IOUring = servers.IOUringFeatures()
	p.meta.ServerCPUs = cfg.ServerCPUs
	p.meta.ServerSpin = cfg.ServerSpin.Nanoseconds()
	p.cfg = cfg
	if cfg.Agent != "" { // the agent says what it serves: serveRemote
		return p, nil
	}
	var err error
	if p.server, err = planServer(&p.cfg); err != nil {
		p.teardown()
		return nil, err
	}
	return p, nil
}

// serve starts the server (or finds the running one), then confines
// everything of ours but the server to the client CPUs: the runtime, the
// probe's reader, progress and the join. The server was forked from a
// thread pinned to its own CPUs.
func (p *pipeline) serve(ctx context.Context) error {
	if err := p.claimCPUs(ctx); err != nil {
		return err
	}
	if p.cfg.Agent != "" {
		return p.serveRemote(ctx)
	}
	if err := p.server.start(ctx, p.cfg, &p.meta, p.cb.note); err != nil {
		return err
	}
	p.undo = append(p.undo, func() { p.server.stop() })
	p.cfg.Load.Addr = p.server.addr
	p.load = liveLoad{p.cfg.Load}
	if len(p.cfg.LoadAgents) > 0 {
		p.load = agentLoad{p.cfg.Load, p.cfg.LoadAgents, p.cfg.AgentCred}
	}
	undo, err := affinity.ConfineProcess(p.cfg.Load.ClientCPUs)
	if err != nil {
		return err
	}
	p.undo = append(p.undo, func() { _ = undo() })
	p.cost = newServerCost(p.server.pids, p.cfg.Load.Warmup)
	return nil
}

// attach opens the event source and starts the join over it.
func (p *pipeline) attach(ctx context.Context) error {
	if !p.cfg.Probe {
		return nil
	}
	if p.remote != nil {
		return p.attachRemote(ctx)
	}
	ps, err := openProbe(p.cfg, p.server.port)
	if err != nil {
		return err
	}
	if err := ps.FollowProcesses(p.server.pids); err != nil {
		ps.Close()
		return err
	}
	p.cb.note("probe: " + ps.Summary())
	for _, n := range ps.Notices() {
		p.cb.note(n)
	}
	return p.startJoin(ps)
}

// startJoin wires src into a streaming join whose round trips go to the
// sinks, and the --record file, if asked for, beside it.
func (p *pipeline) startJoin(src EventSource) error {
	if p.cfg.Record != "" {
		var err error
		if p.sinks.rec, err = createRecording(p.cfg.Record, p.server.port); err != nil {
			src.Close()
			return err
		}
	}
	p.source = src
	onTrip := p.sinks.joined
	if r := p.remote; r != nil {
		onTrip = func(rt *breakdown.RoundTrip, rec loadgen.Record) {
			r.oneWay.add(rt)
			p.sinks.joined(rt, rec)
		}
	}
	floor := joinIdle
	if p.othersCPUs {
		floor = joinLow
	}
	p.join = startJoin(src, p.server.port, p.cfg, onTrip, p.sinks.rec, floor)
	p.undo = append(p.undo, func() { p.join.stop() })
	return nil
}

// hooks are the load's hand-over to the other stages.
func (p *pipeline) hooks() loadgen.Hooks {
	h := loadgen.Hooks{Halting: func() {
		p.cost.last()
		if p.join != nil {
			p.join.windowEnded(monotonicNow())
		}
	}}
	if out := p.sinks.out; out != nil {
		h.Began = out.Log.Begin
	}
	// No round trip begun before the warm-up's end is measured, so the
	// join need hold no event from before it (lookback aside) while the
	// window's start is decided.
	began, warm := h.Began, p.cfg.Load.WarmupSpan()
	h.Began = func(wall time.Time, firstT0 int64) {
		if p.join != nil {
			p.join.holdFrom(firstT0 + warm.Nanoseconds())
		}
		if began != nil {
			began(wall, firstT0)
		}
	}
	h.Progress = func(g loadgen.Progress) {
		p.cost.progress(g)
		if !g.Warmup && p.join != nil { // the measured window is decided
			p.join.windowDecided(g.WindowStart)
		}
		if p.cb.Progress != nil {
			p.cb.Progress(g)
		}
	}
	if p.join != nil {
		h.ClientsReady = func(conns []loadgen.ConnInfo) error {
			if err := p.join.clientsReady(conns); err != nil {
				return err
			}
			return p.followLateWorkers() // their accepted connections exist now
		}
	}
	if p.join != nil || p.sinks.out != nil {
		h.Sink = func(d loadgen.Delivery) {
			p.sinks.delivered(d, p.join != nil && p.join.delivered(d))
		}
	}
	return h
}

// finish stops the stages, builds the summary, and writes it.
func (p *pipeline) finish(load *loadgen.Summary, runErr error) (*report.Results, error) {
	var sr SourceReport
	var srcErr error
	if p.join != nil {
		if load != nil {
			p.join.window(load.Window)
		}
		sr, srcErr = p.join.stop()
	}
	runErr, stopErr := p.server.end(runErr, p.meta.Server)
	if p.remote != nil {
		// The agent lost is the cause (its server may have gone with it):
		// say so first; what was measured before stands.
		if lost := p.remote.lost.Load(); lost != nil {
			if runErr != nil {
				runErr = fmt.Errorf("%w; the load: %w", lost, runErr)
			} else {
				runErr = lost
			}
		}
	}
	if load == nil {
		return nil, runErr
	}
	parts := report.Parts{Meta: p.meta, Load: load}
	var costWarning string
	if parts.ServerCost, costWarning = p.cost.per(load); costWarning != "" {
		parts.Warnings = append(parts.Warnings, costWarning)
	}
	for _, e := range []error{runErr, stopErr} {
		if e != nil {
			parts.Errors = append(parts.Errors, e.Error())
		}
	}
	var recErr error
	if p.join != nil {
		if srcErr != nil {
			parts.Errors = append(parts.Errors, "probe: "+srcErr.Error())
		}
		p.join.addParts(&parts, sr, load)
		if p.remote != nil {
			parts.TwoHosts = p.remote.parts(sr, load.Measured+load.Outside)
		}
		if rec := p.sinks.rec; rec != nil {
			if recErr = rec.close(load.Window); recErr != nil {
				parts.Errors = append(parts.Errors, recErr.Error())
			}
		}
	}
	if p.moreParts != nil {
		p.moreParts(&parts)
	}
	res := report.Build(parts)
	joinErr := checkJoined(res) // before commit: its warning goes into results.json
	if err := p.sinks.commit(res, parts.Join); err != nil {
		return res, errors.Join(runErr, err)
	}
	if runErr == nil && recErr != nil {
		runErr = recErr
	}
	if runErr == nil && p.join != nil {
		runErr = LostEvents(sr.Lost, sr.ReaderLate)
	}
	if runErr == nil {
		runErr = joinErr
	}
	return res, runErr
}

func (p *pipeline) teardown() {
	for i := len(p.undo) - 1; i >= 0; i-- {
		p.undo[i]()
	}
	p.undo = nil
}

// loadStage makes the round trips: a live load, or a recorded one.
type loadStage interface {
	run(ctx context.Context, hooks loadgen.Hooks) (*loadgen.Summary, error)
}

type liveLoad struct{ opts loadgen.Options }

func (l liveLoad) run(ctx context.Context, hooks loadgen.Hooks) (*loadgen.Summary, error) {
	return loadgen.Run(ctx, l.opts, hooks)
}

// recordedLoad hands over a recording's round trips as the live load
// handed them over, in the window the recording was measured in.
type recordedLoad struct {
	opts   loadgen.Options
	conns  []loadgen.Conn
	window loadgen.Window
}

func (l recordedLoad) run(_ context.Context, hooks loadgen.Hooks) (*loadgen.Summary, error) {
	return loadgen.Replay(l.opts, l.conns, l.window, hooks), nil
}

// Replay joins and summarizes a recording (a --record file) offline, as
// the run that made it did, and writes cfg.Out if set. Only cfg.Out and
// cfg.Load's statistics settings apply.
func Replay(ctx context.Context, path string, cfg Config, cb Callbacks) (*report.Results, error) {
	in, err := breakdown.ReadRecording(path)
	if err != nil {
		return nil, err
	}
	cfg.Probe, cfg.Record = true, ""
	p := &pipeline{cfg: cfg, cb: cb, meta: report.Meta{Server: "recording " + filepath.Base(path)}}
	if err := p.sinks.open(cfg); err != nil {
		return nil, err
	}
	p.undo = append(p.undo, p.sinks.abort)
	defer p.teardown()
	p.server = &serverStage{port: in.ServerPort, label: p.meta.Server}
	p.load = recordedLoad{opts: replayOptions(cfg.Load, in), conns: in.Conns, window: replayWindow(in)}
	if err := p.startJoin(&recordedSource{events: in.Events}); err != nil {
		return nil, err
	}
	return p.finish(p.load.run(ctx, p.hooks()))
}

func replayOptions(o loadgen.Options, in breakdown.Input) loadgen.Options {
	o.Clients = len(in.Conns)
	o.Warmup = -1 // the recorded window says where the warm-up ended
	return o
}

// replayWindow is the window a recording was measured in: from its
// measure start to the end of its round trips.
func replayWindow(in breakdown.Input) loadgen.Window {
	first := int64(0)
	for _, c := range in.Conns {
		for _, r := range c.Records {
			if first == 0 || r.T0 < first {
				first = r.T0
			}
		}
	}
	return loadgen.Window{FirstT0: first, WarmupEnd: in.MeasureStart, Start: in.MeasureStart}
}

// serverFromSpec settles what server cfg names: a built-in or a command
// to start, or a running server's address.
func planServer(cfg *Config) (*serverStage, error) {
	var spec Spec
	if cfg.Addr == "" {
		var err error
		if spec, err = ParseSpec(cfg.Server); err != nil {
			return nil, err
		}
		cfg.Addr = spec.Addr // addr=HOST:PORT: a running server
	}
	if err := pickProto(&cfg.Load, spec.Builtin); err != nil {
		return nil, err
	}
	if cfg.Addr != "" {
		return &serverStage{addr: cfg.Addr, label: cfg.Addr}, nil
	}
	sopts, err := serverOptions(cfg.Self, spec, cfg.Load.Proto, cfg.ServerSpin)
	if err != nil {
		return nil, err
	}
	sopts.CPUs = cfg.ServerCPUs
	if !sopts.FixedPort {
		sopts.Port = cfg.ServerPort
	}
	return &serverStage{spec: spec, opts: sopts, label: spec.label()}, nil
}

// errServerDied wraps a run's error with the server's death, when it died.
func serverDied(runErr error, label, how string) error {
	died := fmt.Errorf("server %s: %w: %s", label, serverproc.ErrExited, how)
	if runErr != nil {
		died = fmt.Errorf("%w (%w)", runErr, died)
	}
	return died
}

// waitExit is how long a run that failed waits for a dying server to be
// reaped, so that its exit status can be told.
const waitExit = 300 * time.Millisecond
