package session

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/probe"
)

// EventSource is where the join's kernel events come from: the probe on
// this host (probeSource), a recording (recordedSource), and, built on
// the same seam, an agent on another host or the processes a watch
// follows. The join knows nothing of a source but this.
//
// Times: every event a source delivers, and its Watermark, are on this
// process's CLOCK_MONOTONIC, the clock of the client's t0 and t1. A
// source on another host maps its own clock onto it before delivering.
type EventSource interface {
	// FollowProcesses starts following every thread of these processes,
	// and what they fork from now on.
	FollowProcesses(pids []int) error
	// FollowThreads starts following these threads alone.
	FollowThreads(tids []int) error
	// Run delivers events until ctx ends, then what is left, and returns.
	// deliver is called from one goroutine; the event is reused after it
	// returns.
	Run(ctx context.Context, deliver func(*probe.Event)) error
	// Watermark is a time before which every event has been delivered:
	// round trips that ended earlier can be joined.
	Watermark() int64
	// WarmupOver is called once the measured window is decided: a source
	// stops whatever measures its own cost and would slow the window.
	WarmupOver()
	// Holders names the tasks that held a CPU a followed thread waited
	// for; nil when the source cannot.
	Holders() breakdown.HolderSource
	// Summary is one line on what the source attached, for the terminal.
	Summary() string
	// Notices are what the user should know before the load starts
	// (other tracers on our hooks, hooks missing and what that costs).
	Notices() []string
	// Close detaches the source; Run must have returned. It returns the
	// source's account of itself.
	Close() (SourceReport, error)
}

// SourceReport is a source's account of a run, read at Close.
type SourceReport struct {
	Probe *report.ProbeParts // hooks, ring, records and cost; nil if not a probe
	Lost  uint64             // events dropped before delivery
	// ReaderCPU is the CPU time the source spent on this host delivering
	// events (the probe's ring reader); part of the observer's cost.
	ReaderCPU  time.Duration
	ReaderLate time.Duration // how late, at worst, a drain of the rings began
	Warnings   []string      // for results.json (e.g. other BPF programs on our hooks)
	// Remote is the account of an agent's probe on another host, and the
	// estimate of its clock; nil for a source on this host.
	Remote *RemoteReport
}

// probeOf is the probe on this host behind src, if any: the join counts
// its round trips and follows its connection sample.
func probeOf(src EventSource) *probeSource {
	switch s := src.(type) {
	case *probeSource:
		return s
	case interface{ probeSource() *probeSource }:
		return s.probeSource()
	}
	return nil
}

// Timing of the local probe's watermark. The reader drains the rings
// every few tens of milliseconds, so every event stamped more than
// probeLag ago has been read.
const (
	probeLag = 250 * time.Millisecond
	// readerNice is the probe reader's priority (root only; best effort).
	readerNice = -10
	// readerSlack covers a program that stamped its record just before a
	// read began and committed it just after.
	readerSlack = time.Millisecond
)

// probeSource is the eBPF probe on this host.
type probeSource struct {
	p          *probe.Probe
	syscalls   bool
	verbose    bool         // Notices adds every hook (Config.Verbose)
	readerCPU  atomic.Int64 // ns of CPU the reader thread used, set as Run returns
	neighbours []string
	sample     uint32 // socket events of one connection in sample (probe.Sampled); ≤ 1: all
	// statsEnd is when the kernel's run statistics stopped
	// (CLOCK_MONOTONIC ns; 0 while they run).
	statsEnd  atomic.Int64
	warmTrips *atomic.Int64 // round trips completed while the kernel's statistics ran (set by the pipeline)
	// tap, if set, sees every event (a batch at a time) before the join:
	// the watch derives its round trips from the client's socket events
	// (watchTrips).
	tap func([]probe.Event)

	// Read from the kernel as the warm-up ends (WarmupOver), not at
	// Close: the kernel keeps counting while any process has its run
	// statistics on (another probe, bpftop, the bpf_stats_enabled
	// sysctl), so a later read would hold more than the warm-up.
	warmOnce    sync.Once
	runs, bpfNs uint64
	progRuns    []probe.ProgramRun
	statsErr    error
}

// openProbe loads and attaches the probe for a server listening on
// port, sized for the load's rate.
func openProbe(cfg Config, port uint16) (*probeSource, error) {
	return openProbeSampled(cfg, port, connSample(cfg))
}

// openProbeSampled is openProbe with the connection sample given (an
// agent's, from its controller's request).
func openProbeSampled(cfg Config, port uint16, sample uint32) (*probeSource, error) {
	// Rings are sized for the rate the clients can drive: a loopback
	// round trip per connection cannot come faster than a few tens of
	// microseconds, and the whole machine's rate is bounded too.
	rate := min(20_000*float64(max(cfg.Load.Clients, 1)), 400_000)
	p, err := probe.Open(probe.Config{Mode: probe.Mode(cfg.ProbeMode), Ports: []uint16{port}, Stats: true, Syscalls: cfg.Syscalls, RoundTripsPerSec: rate, SampleOneIn: sample})
	if err != nil {
		return nil, fmt.Errorf("open probe: %w", err)
	}
	return &probeSource{p: p, syscalls: cfg.Syscalls, verbose: cfg.Verbose, neighbours: probe.NeighbourWarnings(p.Neighbours()), warmTrips: new(atomic.Int64), sample: sample}, nil
}

// followAll is how many connections the probe follows in full. Beyond
// it the observer (the programs' records, the reader and the join, on
// the client CPUs) would take the CPU the clients drive the load with:
// the probe follows a sample of about followAll connections, and every
// round trip's latency is still measured by the load.
const followAll = 16

// connSample is the probe's connection sample for cfg: one in a power of
// two, 1 (all) up to followAll connections and when the events are
// recorded (a replay joins what was recorded).
func connSample(cfg Config) uint32 {
	n := uint32(1)
	if cfg.Record != "" {
		return n
	}
	for cfg.Load.Clients > int(n)*followAll {
		n *= 2
	}
	return n
}

func (s *probeSource) FollowProcesses(pids []int) error {
	for _, pid := range pids {
		if err := s.p.TrackTGID(uint32(pid)); err != nil {
			return fmt.Errorf("follow server pid %d: %w", pid, err)
		}
	}
	return nil
}

func (s *probeSource) FollowThreads(tids []int) error {
	for _, tid := range tids {
		if err := s.p.TrackTID(uint32(tid)); err != nil {
			return fmt.Errorf("follow client thread %d: %w", tid, err)
		}
	}
	return nil
}

// Run drains the rings on a thread of its own at a better priority than
// the clients it shares a CPU with: a reader starved by a busy CPU loses
// records once a ring fills. The thread exits with the goroutine, and
// its priority with it.
func (s *probeSource) Run(ctx context.Context, deliver func(*probe.Event)) error {
	return s.RunBatches(ctx, func(evs []probe.Event) {
		for i := range evs {
			deliver(&evs[i])
		}
	})
}

// RunBatches is Run delivering a batch of events at a time
// (probe.RunBatches): a consumer takes each batch under one lock rather
// than one per event. deliver must not keep the slice.
func (s *probeSource) RunBatches(ctx context.Context, deliver func([]probe.Event)) error {
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), readerNice)
	defer func() { s.readerCPU.Store(threadCPU()) }()
	if tap := s.tap; tap != nil {
		join := deliver
		deliver = func(evs []probe.Event) { tap(evs); join(evs) }
	}
	return s.p.RunBatches(ctx, deliver)
}

// threadCPU is the CPU time of the calling thread so far, in ns.
func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// Watermark holds the join back while the reader is held up (a busy
// CPU), rather than let round trips be judged without their events.
func (s *probeSource) Watermark() int64 {
	return min(monotonicNow()-probeLag.Nanoseconds(), s.p.Drained()-readerSlack.Nanoseconds())
}

// WarmupOver ends the kernel's run statistics, which slow every program
// run: the probe measures its own cost during the warm-up only.
func (s *probeSource) WarmupOver() {
	s.warmOnce.Do(func() {
		s.statsEnd.Store(monotonicNow())
		s.runs, s.bpfNs, s.statsErr = s.p.MachineRuns()
		if s.statsErr == nil {
			s.progRuns, s.statsErr = s.p.ProgramRuns()
		}
		s.p.StopStats()
	})
}

// tripDone counts a round trip that completed at t1 toward the cost
// measured in the warm-up: by when it completed, not when it is handed
// over, since a watch derives its round trips a probe lag after they end
// and would otherwise leave out the warm-up's last ones while their
// programs' runs count.
func (s *probeSource) tripDone(t1 int64) {
	if end := s.statsEnd.Load(); end == 0 || t1 < end {
		s.warmTrips.Add(1)
	}
}

func (s *probeSource) Holders() breakdown.HolderSource { return s.p }

// Summary is the short hook line (hookLines); Notices adds the long one
// with Config.Verbose.
func (s *probeSource) Summary() string {
	short, _ := hookLines(s.p.ModeUsed(), s.p.Ring().String(), s.p.Hooks())
	if s.sample > 1 {
		short += fmt.Sprintf("; following about one connection in %d (more than %d connections)", s.sample, followAll)
	}
	return short
}

func (s *probeSource) Notices() []string {
	var ns []string
	if s.verbose {
		_, long := hookLines(s.p.ModeUsed(), s.p.Ring().String(), s.p.Hooks())
		ns = append(ns, "probe hooks: "+long)
	}
	for _, w := range s.neighbours {
		ns = append(ns, "warning: "+w)
	}
	for _, h := range s.p.Hooks() {
		if h.State == probe.HookMissing {
			ns = append(ns, fmt.Sprintf("probe: no hook for %s (%v): costs %s", h.Event, h.Err, h.Costs))
		}
	}
	return ns
}

func (s *probeSource) Close() (SourceReport, error) {
	s.WarmupOver()
	rep := SourceReport{Lost: s.p.Lost(), ReaderLate: s.p.ReaderLate(), Warnings: s.neighbours, ReaderCPU: time.Duration(s.readerCPU.Load())}
	pp := &report.ProbeParts{
		Mode: s.p.ModeUsed(), Hooks: map[string]string{}, Missing: map[string]string{},
		Ring: s.p.Ring().String(), Syscalls: s.syscalls, Records: s.p.Records(), Lost: rep.Lost, SampleOneIn: max(s.sample, 1),
	}
	for k, n := range s.p.RecordsByKind() {
		if pp.ByKind == nil {
			pp.ByKind = map[string]uint64{}
		}
		pp.ByKind[k.String()] = n
	}
	for _, h := range s.p.Hooks() {
		pp.Hooks[h.Event] = h.String()
		if h.State == probe.HookMissing {
			pp.Missing[h.Event] = fmt.Sprintf("%v; costs %s", h.Err, h.Costs)
		}
	}
	if s.statsErr == nil {
		pp.WarmupRuns, pp.WarmupBPFNs, pp.WarmupTrips = s.runs, s.bpfNs, s.warmTrips.Load()
		for _, r := range s.progRuns {
			pp.WarmupPrograms = append(pp.WarmupPrograms, report.ProgramRuns{Program: r.Program, Runs: r.Runs, Ns: r.Ns})
		}
	}
	rep.Probe = pp
	return rep, s.p.Close()
}

func monotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// recordedSource replays the events of a recording: every event at once,
// and a watermark that never moves, so that the join holds everything
// until the load's round trips are in and the pipeline flushes it.
type recordedSource struct {
	events []probe.Event
}

func (r *recordedSource) FollowProcesses([]int) error { return nil }
func (r *recordedSource) FollowThreads([]int) error   { return nil }

func (r *recordedSource) Run(ctx context.Context, deliver func(*probe.Event)) error {
	for i := range r.events {
		e := r.events[i]
		deliver(&e)
	}
	<-ctx.Done()
	return nil
}

func (r *recordedSource) Watermark() int64                { return 0 }
func (r *recordedSource) WarmupOver()                     {}
func (r *recordedSource) Holders() breakdown.HolderSource { return nil }
func (r *recordedSource) Summary() string                 { return fmt.Sprintf("%d recorded events", len(r.events)) }
func (r *recordedSource) Notices() []string               { return nil }

func (r *recordedSource) Close() (SourceReport, error) {
	return SourceReport{Probe: &report.ProbeParts{Mode: "recording", Hooks: map[string]string{}, Missing: map[string]string{}, Ring: "recording", Records: uint64(len(r.events))}}, nil
}
