package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// WatchConfig configures a watch: programs that volleyscope did not
// start, followed as they run. The server is named by its process or its
// port (one of the two; both must agree when both are given).
type WatchConfig struct {
	ServerPID  int   // a process listening on the server's port; 0: found from ServerPort
	ServerPort int   // the server's listening port; 0: the one ServerPID listens on
	ClientPIDs []int // client processes on this host whose round trips are split
	// Duration ends the watch; 0 watches until ctx ends (Ctrl-C).
	Duration  time.Duration
	ProbeMode string // hook family, as Config.ProbeMode
	// Syscalls attaches the syscall hooks, as Config.Syscalls: a round
	// trip then runs from the send syscall's entry to the receive
	// syscall's return, as the client's own clock would read it, and
	// the per-syscall table is added.
	Syscalls bool
	Out      string // as Config.Out
	Verbose  bool   // as Config.Verbose
	// Listen, if set, serves Prometheus metrics on this address
	// (HOST:PORT) at /metrics, to scrapers that present ListenToken as
	// a bearer token (required), and the terminal gets a summary every
	// Refresh (default 5s).
	Listen      string
	ListenToken string
	Refresh     time.Duration
	// skip names probe events not to attach (probe.Config.Skip): tests of
	// the splits without them.
	skip []string
	// Agent, if set, puts the server on another host: the `volleyscope
	// agent` at this HOST:PORT watches it (its own --watch-port or
	// --watch-pid), dialled with AgentCred. ServerPID is then not taken,
	// ServerPort (optional) picks among the agent's watched servers,
	// and ClientPIDs are required.
	Agent     string
	AgentCred agent.Credentials
	// TraceShare is the share of the time the probe records (0 < share
	// ≤ 1; 0 reads as DefaultTraceShare, everything): below 1 it traces
	// in windows (watchsample.go), and only the round trips wholly
	// inside them are reported.
	TraceShare float64
	// CPUs, if set, are the CPUs the watch's own threads run on (the
	// probe's reader, the join, its loop, the metrics server): kept off
	// the watched programs' CPUs, the watch does not take their turns,
	// and a preempted client does not stretch the stretches of its own
	// that no hook sees (between its clock reads and its syscalls). Nil:
	// wherever the scheduler puts them.
	CPUs []int
}

// Timing of the watch loop: how often it derives round trips and hands
// them to the join, and how long it waits at the end for the probe's
// reader to deliver the last events.
const (
	watchEvery   = 100 * time.Millisecond
	watchDrainAt = 2 * time.Second
	// watchCostSpan is how long the probe measures its own cost at the
	// start (at most a quarter of --duration).
	watchCostSpan = time.Second
	// watchRefresh is how often a continuous watch prints its summary.
	watchRefresh = 5 * time.Second
)

// Watch follows the server and client processes of wc, derives each
// client's round trips from its socket traffic (watchTrips), and splits
// them with the same join, summary and outputs as Run. It ends at
// wc.Duration, when ctx ends, or when a watched process exits, and
// returns what was measured. Errors about wc are *FlagError.
func Watch(ctx context.Context, wc WatchConfig, cb Callbacks) (*report.Results, error) {
	share := wc.TraceShare
	if share == 0 {
		share = DefaultTraceShare
	}
	if err := CheckTraceShare(share); err != nil {
		return nil, err
	}
	t, err := resolveWatch(wc)
	if err != nil {
		return nil, err
	}
	// Before any thread of the watch starts: threads inherit the mask of
	// the thread that creates them.
	unconfine, err := affinity.ConfineProcess(wc.CPUs)
	if err != nil {
		return nil, flagErr("--cpus", err)
	}
	defer func() { _ = unconfine() }()
	cfg := Config{Probe: true, ProbeMode: wc.ProbeMode, Syscalls: wc.Syscalls, Out: wc.Out, Verbose: wc.Verbose}
	p := &pipeline{cb: cb, cfg: cfg}
	if err := p.sinks.open(cfg); err != nil {
		return nil, err
	}
	p.undo = append(p.undo, p.sinks.abort)
	defer p.teardown()
	p.meta = report.MetaOf(hostinfo.Local())
	if wc.Agent != "" {
		ctx, p.abort = context.WithCancelCause(ctx)
		defer p.abort(nil)
		if err := p.dialWatchAgent(ctx, wc, &t); err != nil {
			return nil, err
		}
	}
	p.meta.Server = t.label
	p.server = &serverStage{label: t.label, addr: fmt.Sprintf("127.0.0.1:%d", t.port), port: t.port, pids: t.serverPIDs}
	if p.remote != nil {
		p.server.addr = p.remote.server.Addr
	} else if t.remotes != nil {
		cb.note(fmt.Sprintf("the server at %s is not on this host (no peer socket here): the client's side alone is watched, the rest of each round trip being beyond_host", strings.Join(t.remotes, ", ")))
	} else {
		cb.note(fmt.Sprintf("server on port %d is %s", t.port, pidText(t.serverPIDs)))
	}

	if wc.Listen != "" && wc.ListenToken == "" {
		return nil, flagErr("--listen-token-file", errors.New("--listen needs a bearer token that scrapers present: put one in a file and give --listen-token-file"))
	}
	ps, err := openWatchProbe(cfg, t.port, wc.skip)
	if err != nil {
		return nil, err
	}
	side, measures := "client", func(c breakdown.Component) bool { return c != breakdown.BeyondHost }
	if len(wc.ClientPIDs) == 0 {
		side, measures = "server", breakdown.ServerSideMeasures
	} else if t.remotes != nil {
		measures = breakdown.ClientSideMeasures
	}
	m := newWatchMetrics(side, t.port, measures, wc.Listen != "", func() float64 { return float64(ps.p.Lost()) })
	m.setTraceShare(share)
	p.sinks.tap = m.trip
	if wc.Listen != "" {
		srv, err := serveMetrics(wc.Listen, wc.ListenToken, m)
		if err != nil {
			ps.Close()
			return nil, err
		}
		p.undo = append(p.undo, srv.close)
		cb.note(fmt.Sprintf("serving Prometheus metrics at http://%s/metrics to scrapers with the bearer token", srv.Addr()))
	}
	if err := ps.FollowProcesses(t.serverPIDs); err != nil {
		ps.Close()
		return nil, err
	}
	for _, pid := range wc.ClientPIDs {
		if err := ps.p.TrackTGID(uint32(pid)); err != nil {
			ps.Close()
			return nil, fmt.Errorf("follow client pid %d: %w", pid, err)
		}
	}
	trips := newWatchTrips(t.port)
	trips.serverSide = len(wc.ClientPIDs) == 0
	for _, pid := range wc.ClientPIDs {
		trips.clients = append(trips.clients, uint32(pid))
	}
	ps.tap = trips.events
	cb.note("probe: " + ps.Summary())
	for _, n := range ps.Notices() {
		cb.note(n)
	}
	local, pl, parseWhy := withPayload(ps, t.port, wc.ClientPIDs, t.serverPIDs, trips)
	if pl != nil {
		cb.note(pl.hooks)
	} else {
		cb.note("warning: " + parseWhy + ": request boundaries by timing alone")
	}
	p.cost = newServerCost(t.serverPIDs, -1)
	var beyond *beyondBounds // which bounds beyond_host took, for the summary
	if t.remotes != nil {
		beyond = &beyondBounds{}
		tap := p.sinks.tap
		p.sinks.tap = func(rt *breakdown.RoundTrip) {
			beyond.add(rt)
			if tap != nil {
				tap(rt)
			}
		}
	}
	src := local
	if p.remote != nil {
		if src, err = p.attachWatchAgent(ctx, local); err != nil {
			local.Close()
			return nil, err
		}
	}
	p.othersCPUs = true
	if err := p.startJoin(src); err != nil {
		return nil, err
	}
	if trips.serverSide {
		p.join.stream.SetServerSide()
	}
	if beyond != nil {
		p.join.stream.SetClientSide()
	}
	// The window's start is known from the start (the cost span after
	// now): no events need holding until the warm-up ends.
	p.join.release()
	// The round trips come from this host's client events alone: they
	// are handed over as this host's probe delivers them (its
	// watermark), before the agent's events for them arrive, as a run's
	// load hands its round trips over; the join waits for both.
	w := &watchLoad{src: local, payload: pl, parseWhy: parseWhy, trips: trips, duration: wc.Duration, pids: slices.Concat(t.serverPIDs, wc.ClientPIDs), note: cb.note, metrics: m, refresh: wc.Refresh, forget: p.join.stream.Forget,
		share: share, setTracing: ps.p.SetTracing}
	if pl != nil {
		// The capture's hooks go off with the probe's, and also rest
		// while they have nothing to read.
		w.rest = newCaptureRest(pl.cap.SetTracing, monotonicNow())
		w.setTracing = func(on bool) error {
			return errors.Join(w.rest.setTraced(on, monotonicNow()), ps.p.SetTracing(on))
		}
	}
	if p.remote != nil {
		// The agent's probe too: its hooks come on before a window
		// opens (the sampler reads the window's start after the switch).
		local := w.setTracing
		w.setTracing = func(on bool) error {
			return errors.Join(local(on), p.remote.source.setTracing(on))
		}
	}
	if w.refresh <= 0 {
		w.refresh = watchRefresh
	}
	switch {
	case trips.serverSide:
		w.what = "the server's side alone (no client followed): a round trip is its response time on the socket, from the data ready of a request's first byte to the start of the send of its reply's last piece; the client's components are not seen (0)"
	case wc.Syscalls:
		w.what = "round trips from the watched clients' socket traffic, from the send syscall's entry of a request to the return of the receive that completed its reply"
	default:
		w.what = "round trips from the watched clients' socket traffic, from the TCP send start of a request to the return of the receive that completed its reply"
	}
	if p.remote != nil {
		w.what += fmt.Sprintf("; the server's side from agent %s, on this host's clock", wc.Agent)
	}
	p.moreParts = w.parts
	if beyond != nil {
		w.what = fmt.Sprintf("the client's side alone, its server at %s on another host: %s; the server's and the network's time is beyond_host", strings.Join(t.remotes, ", "), w.what)
		p.moreParts = func(pp *report.Parts) { w.parts(pp); beyond.parts(pp) }
	}
	hooks := p.hooks()
	if beyond != nil || p.remote != nil { // no server here whose late workers to look for
		hooks.ClientsReady = p.join.clientsReady
	}
	load, runErr := w.run(ctx, hooks)
	return p.finish(load, runErr)
}

// openWatchProbe is openProbe for a watch: sized for followAll
// connections, following every connection, and with the send returns
// that tell a pipelining client (probe.Config.SendReturns).
func openWatchProbe(cfg Config, port uint16, skip []string) (*probeSource, error) {
	p, err := probe.Open(probe.Config{Mode: probe.Mode(cfg.ProbeMode), Ports: []uint16{port}, Stats: true, Syscalls: cfg.Syscalls,
		RoundTripsPerSec: 20_000 * followAll, SendReturns: true, Skip: skip})
	if err != nil {
		return nil, fmt.Errorf("open probe: %w", err)
	}
	return &probeSource{p: p, syscalls: cfg.Syscalls, verbose: cfg.Verbose, neighbours: probe.NeighbourWarnings(p.Neighbours()), warmTrips: new(atomic.Int64)}, nil
}

// watchedProto is what a watch's summary names as its protocol: the
// watched programs' own, which it does not parse.
const watchedProto loadgen.Proto = "watched traffic"

// watchLoad is the watch's load stage: the round trips come from the
// watched client's traffic instead of clients of ours.
type watchLoad struct {
	src      EventSource
	trips    *watchTrips
	duration time.Duration
	pids     []int // watched processes: the first to exit ends the watch
	note     func(string)
	conns    int
	ended    string         // why the watch ended
	what     string         // what a round trip is, for the summary
	metrics  *watchMetrics  // the terminal's summaries, and with --listen the Prometheus metrics
	payload  *payloadSource // nil without the payload capture (parseWhy says why)
	parseWhy string
	cpu      time.Duration // this process's CPU time over the watch
	wall     time.Duration
	refresh  time.Duration // how often the terminal gets a summary
	// forget lets the join go of a connection that ended at a time.
	forget func(id int, at int64)
	// share is the share of the time traced (--trace-share), setTracing
	// the probe's switch, and sampler the windows (nil: all traced).
	share      float64
	setTracing func(on bool) error
	sampler    *traceSampler
	// rest switches the payload capture's hooks off while they have
	// nothing to read (nil without the capture).
	rest *captureRest
	end  int64 // when the watch ended (CLOCK_MONOTONIC ns)
}

func (w *watchLoad) run(ctx context.Context, hooks loadgen.Hooks) (*loadgen.Summary, error) {
	// The probe measures its own cost (the kernel's run statistics, which
	// slow every program run) over a first stretch that the breakdown
	// leaves out, as a run's warm-up.
	warm := watchCostSpan
	if w.duration > 0 {
		warm = min(warm, w.duration/4)
	}
	opts := loadgen.Options{Warmup: max(warm, time.Nanosecond), NoMSER: true, CI: -1, P99CI: -1}
	start := monotonicNow()
	cpu0 := processCPU()
	feed := loadgen.NewFeed(opts, start, hooks)
	if w.rest != nil {
		w.rest.notBefore = start + opts.Warmup.Nanoseconds()
	}
	w.sampler = newTraceSampler(w.share, start, start+opts.Warmup.Nanoseconds(), w.setTracing, w.trips)
	// The loop's work (the round trips derived from every event of the
	// last tick, handed over) comes in bursts of milliseconds every
	// watchEvery: at nice 0 they held the watched programs' CPUs for that
	// long, a tenth of a second apart (the slowest watched round trips
	// named this thread). It runs on its own thread at the join's
	// levels, nice 5 while it keeps up (a watch's floor, joinLevel), and
	// gets its scheduling back for what follows the loop.
	runtime.LockOSThread()
	restore := keepScheduling()
	steps := newLevelSteps(time.Now(), joinLow)
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var err error
	lastSummary := time.Now()
	for w.ended == "" && err == nil {
		select {
		case <-ctx.Done():
			w.ended = "interrupted"
			if c := context.Cause(ctx); c != ctx.Err() { // a stage gave up: an agent lost
				w.ended = c.Error()
			}
		case <-t.C:
		}
		steps.tick(time.Now(), steps.since)
		now := monotonicNow()
		if w.duration > 0 && now-start >= w.duration.Nanoseconds() {
			w.ended = "its duration passed"
		}
		if pid, gone := w.exited(); gone {
			w.ended = fmt.Sprintf("watched process %d exited", pid)
		}
		if err = w.sampler.tick(now); err != nil {
			break
		}
		w.trips.deferTimed = w.rest.resting(now)
		if err = w.step(feed, w.src.Watermark(), false); err == nil {
			needed, known := w.trips.captureNeeded()
			err = w.rest.tick(now, needed, known)
		}
		feed.Check(now)
		if time.Since(lastSummary) >= w.refresh {
			w.note(w.metrics.summary(time.Since(lastSummary)))
			lastSummary = time.Now()
		}
	}
	restore()
	runtime.UnlockOSThread()
	end := monotonicNow()
	w.end = end
	feed.Halt() // the server's cost is sampled now, not after the wait below
	// Every event stamped before the end, delivered, before the last step.
	for limit := time.Now().Add(watchDrainAt); w.src.Watermark() < end && time.Now().Before(limit); {
		time.Sleep(watchEvery / 4)
	}
	if e := w.step(feed, end, true); err == nil {
		err = e
	}
	w.note("watch ended: " + w.ended)
	w.cpu, w.wall = processCPU()-cpu0, time.Duration(monotonicNow()-start)
	sum := feed.Finish(end, loadgen.StopWatched)
	// The header's "N client(s), PROTO": the connections seen, and no
	// protocol of ours.
	sum.Options.Clients, sum.Options.Proto = w.conns, watchedProto
	return sum, err
}

// step hands the round trips completed before watermark to the feed,
// their connections first.
func (w *watchLoad) step(feed *loadgen.Feed, watermark int64, final bool) error {
	fresh, trips := w.trips.advance(watermark, final)
	if len(fresh) > 0 {
		w.conns += len(fresh)
		if err := feed.AddConns(fresh); err != nil {
			return err
		}
	}
	for _, t := range trips {
		feed.Add(t.conn, t.r)
	}
	for _, e := range w.trips.takeEnded() {
		feed.Forget(e.id)
		if w.forget != nil {
			w.forget(e.id, e.at)
		}
	}
	return nil
}

// exited is the first watched process that is gone (or a zombie).
func (w *watchLoad) exited() (int, bool) {
	for _, pid := range w.pids {
		if !processAlive(pid) {
			return pid, true
		}
	}
	return 0, false
}

// parts says in the summary what the watch could not split.
func (w *watchLoad) parts(p *report.Parts) {
	tr := w.trips
	p.Warnings = append(p.Warnings, fmt.Sprintf("watch: %s; %d connections, ended because %s", w.what, tr.connsSeen, w.ended))
	if w.rest != nil {
		on, rests := w.rest.share(w.end)
		p.PayloadCapture = &report.PayloadCapture{ReadsPerConnection: watchPayloadSends, AttachedShare: on, Rests: rests}
	}
	if w.wall > 0 {
		cost := fmt.Sprintf("watch cost: volleyscope used %.2f%% of one CPU (%v of CPU over %v: ring reader, join, outputs)", 100*w.cpu.Seconds()/w.wall.Seconds(), w.cpu.Round(time.Millisecond), w.wall.Round(time.Millisecond))
		if pp := p.Probe; pp != nil && pp.WarmupTrips > 0 && pp.WarmupRuns > 0 {
			cost += fmt.Sprintf("; the probe's programs %v of CPU per round trip, machine-wide (measured over the first %d round trips)", time.Duration(pp.WarmupBPFNs/uint64(pp.WarmupTrips)), pp.WarmupTrips)
			cost += w.payload.payloadCost(pp.WarmupTrips)
		}
		if pc := p.PayloadCapture; pc != nil {
			cost += fmt.Sprintf("; the payload capture's hooks attached %.1f%% of the time (off while every connection with an exchange under way had had its first %d sends read: %d times)", 100*pc.AttachedShare, pc.ReadsPerConnection, pc.Rests)
		}
		if rps := p.Load.ThroughputRPS; rps > 0 {
			cost += fmt.Sprintf(", at %.0f round trips/s", rps)
		}
		p.Warnings = append(p.Warnings, cost)
	}
	if w.sampler != nil {
		rps := 0.0
		if p.Load != nil {
			rps = p.Load.ThroughputRPS
		}
		p.TraceSampling = w.sampler.results(w.end, rps)
		p.Warnings = append(p.Warnings, describeSampling(p.TraceSampling))
	}
	p.Warnings = append(p.Warnings, tr.parsing.text(w.parseWhy))
	if tr.pipelined > 0 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("watch: %d of %d connections were pipelined (a second request sent before the reply to the first, as timing saw it, or several requests in one send, as the parser read it): their %d exchanges (several requests each, as timing sees them) are not split", tr.pipelined, tr.connsSeen, tr.pipeTrips))
	}
	if tr.inFlightEnd > 0 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("watch: %d requests were in flight when the watch ended and are not counted", tr.inFlightEnd))
	}
}

// processAlive says whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// watchTarget is what a WatchConfig names, resolved.
type watchTarget struct {
	label      string
	port       uint16
	serverPIDs []int
	// remotes are the server's addresses, when it is on another host and
	// the client's side alone is watched (clientAlone); nil otherwise.
	remotes []string
}

// resolveWatch checks wc against the running system: the processes exist
// in our network namespace, the port has a listener, and the probe can be
// loaded. Every error is a *FlagError naming the flag to change.
func resolveWatch(wc WatchConfig) (watchTarget, error) {
	if wc.Agent != "" {
		return resolveAgentWatch(wc)
	}
	var t watchTarget
	if wc.ServerPID == 0 && wc.ServerPort == 0 && len(wc.ClientPIDs) == 0 {
		return t, flagErr("--server-port", errNoServer)
	}
	if wc.ServerPort < 0 || wc.ServerPort > 65535 {
		return t, flagErr("--server-port", fmt.Errorf("port %d is not in 1-65535", wc.ServerPort))
	}
	if wc.Duration < 0 {
		return t, flagErr("--duration", fmt.Errorf("%v is negative; give a duration, or none to watch until Ctrl-C", wc.Duration))
	}
	first := "--server-port"
	if wc.ServerPID != 0 {
		first = "--server-pid"
	} else if len(wc.ClientPIDs) > 0 {
		first = "--client-pid"
	}
	if err := probe.Check(); err != nil {
		return t, flagErr(first, fmt.Errorf("watching programs: %w", err))
	}
	if wc.ServerPID != 0 {
		if err := checkWatchPID("--server-pid", wc.ServerPID); err != nil {
			return t, err
		}
	}
	for _, pid := range wc.ClientPIDs {
		if err := checkWatchPID("--client-pid", pid); err != nil {
			return t, err
		}
		if pid == wc.ServerPID {
			return t, flagErr("--client-pid", fmt.Errorf("pid %d is the server (--server-pid): a process is watched as one side", pid))
		}
	}
	port := uint16(wc.ServerPort)
	if wc.ServerPID == 0 && len(wc.ClientPIDs) > 0 { // is the clients' server here?
		ct, alone, err := clientAlone(wc)
		if err != nil || alone {
			return ct, err
		}
		port = ct.port
	}
	port, pids, err := watchedListener(wc.ServerPID, int(port), "--server-pid", "--server-port")
	if err != nil {
		return t, err
	}
	t.port, t.serverPIDs = port, pids
	t.label = fmt.Sprintf("watched: port %d (%s)", port, processName(pids[0]))
	return t, nil
}

func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// processName is pid's command name (/proc/PID/comm), or "pid N".
func processName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return fmt.Sprintf("pid %d", pid)
	}
	return strings.TrimSpace(string(b))
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
