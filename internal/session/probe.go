package session

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// Timing of the streaming join. The probe's reader drains the rings every
// few tens of milliseconds, so every event stamped more than joinLag ago
// has been read; round trips are joined every joinEvery (the join indexes
// each event once, so joining often costs nothing extra).
const (
	joinEvery = 100 * time.Millisecond
	joinLag   = 250 * time.Millisecond
	joinNice  = 5
	// joinNiceBehind is the join's priority while it is behind: a join
	// starts more than joinBehind after the one before it. At 10,000
	// connections the client keeps its CPU busy and the join at nice 5
	// fell seconds behind, its backlog growing to hundreds of MB; the
	// client then waits for it, which its saturation warning says anyway.
	joinNiceBehind = -5
	joinBehind     = 3 * joinEvery
	// readerNice is the probe reader's priority (root only; best effort).
	readerNice = -10
	// readerSlack covers a program that stamped its record just before a
	// read began and committed it just after.
	readerSlack = time.Millisecond
	keepSlack   = 250 * time.Millisecond
)

// probeRun is the probe's part of one measurement: it reads events while
// the load runs and joins them with the client's round trips as they
// complete, so nothing grows with the run's length.
type probeRun struct {
	p      *probe.Probe
	port   uint16
	stream *breakdown.Stream
	rec    *recording // nil without --record
	// neighbours warn of other BPF programs on our hooks, found at start.
	neighbours []string

	cancel    context.CancelFunc
	readDone  chan error
	joinStop  chan struct{}
	joinDone  chan struct{}
	once      sync.Once
	err       error
	statsOff  atomic.Bool
	warmTrips atomic.Int64 // round trips completed while the kernel's statistics ran

	// Read from the kernel before the probe is closed.
	lost        uint64
	readerLate  time.Duration
	runs, bpfNs uint64
	statsErr    error
}

// startProbe loads and attaches the probe, follows the server process and
// port, and starts reading and joining. onTrip receives every joined or
// unjoined round trip. The caller must call stop.
func startProbe(cfg Config, serverPID int, port uint16, note func(string), onTrip func(*breakdown.RoundTrip, loadgen.Record)) (*probeRun, error) {
	// Rings are sized for the rate the clients can drive: about 20,000
	// round trips/s per connection on loopback at most, and never more
	// than this machine has been seen to reach in all (~100,000 with 64
	// connections on 2 CPUs), with room to spare.
	rate := min(20_000*float64(max(cfg.Load.Clients, 1)), 400_000)
	p, err := probe.Open(probe.Config{Mode: probe.Mode(cfg.ProbeMode), Ports: []uint16{port}, Stats: true, Syscalls: cfg.Syscalls, RoundTripsPerSec: rate})
	if err != nil {
		return nil, fmt.Errorf("open probe: %w", err)
	}
	if serverPID > 0 {
		if err := p.TrackTGID(uint32(serverPID)); err != nil {
			p.Close()
			return nil, fmt.Errorf("follow server pid %d: %w", serverPID, err)
		}
	}
	note("probe: " + hookLine(p))
	neighbours := probe.NeighbourWarnings(p.Neighbours())
	for _, w := range neighbours {
		note("warning: " + w)
	}
	for _, h := range p.Hooks() {
		if h.State == probe.HookMissing {
			note(fmt.Sprintf("probe: no hook for %s (%v): costs %s", h.Event, h.Err, h.Costs))
		}
	}
	pr := &probeRun{p: p, port: port, neighbours: neighbours, readDone: make(chan error, 1), joinStop: make(chan struct{}), joinDone: make(chan struct{})}
	if cfg.Record != "" {
		if pr.rec, err = createRecording(cfg.Record, port); err != nil {
			p.Close()
			return nil, err
		}
	}
	// Events are kept for round trips the run loop has not handed over:
	// it does so once per check, and most round trips last far less than
	// that. A round trip in flight for longer than the margin may lose its
	// earliest events and then counts as unjoined, with its reason. Until
	// the window's start is decided (the pilot stretch), everything is kept.
	check := cfg.Load.CheckEvery
	if check <= 0 {
		check = loadgen.DefaultCheckEvery
	}
	pr.stream = breakdown.NewStream(port, nil, cfg.Syscalls, 2*check+joinLag+keepSlack, onTrip)
	pr.stream.Hold(1)
	pr.stream.Summary().NameHolders(p) // the slowest round trips get who held the CPU they waited for
	ctx, cancel := context.WithCancel(context.Background())
	pr.cancel = cancel
	go func() {
		// The reader drains the rings on a thread of its own at a higher
		// priority than the clients it shares a CPU with: starved for half
		// a second (another test run beside ours), it lost records with
		// --syscalls. It wakes briefly, every millisecond at the most. The
		// thread exits with the goroutine, its priority with it.
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), readerNice)
		pr.readDone <- p.Run(ctx, func(e *probe.Event) {
			pr.stream.Event(e)
			if pr.rec != nil {
				pr.rec.event(e)
			}
		})
	}()
	go pr.joinLoop()
	return pr, nil
}

// joinLoop advances the streaming join until stop, then flushes it. It
// runs on a thread of its own at a lower priority, so the work seldom
// delays a client thread that shares its CPU.
func (pr *probeRun) joinLoop() {
	defer close(pr.joinDone)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Best effort: only the join's priority. At SCHED_IDLE it starved
	// whenever the clients kept their CPU busy, and its backlog grew with
	// the run; at nice 5 it still yields to the client threads.
	nice := joinNice
	setNice := func(n int) {
		if n != nice && unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), n) == nil {
			nice = n
		}
	}
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), joinNice)
	t := time.NewTimer(joinEvery)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-pr.joinStop:
			pr.stream.Flush()
			// The thread's policy is changed: let it exit with the goroutine.
			return
		case <-t.C:
			// Join up to what the reader has surely handed over: a
			// reader held up (a busy CPU) holds the join back rather than
			// let round trips be judged without their events.
			mark := min(monotonicNow()-joinLag.Nanoseconds(), pr.p.Drained()-readerSlack.Nanoseconds())
			if now := time.Now(); now.Sub(last) > joinBehind {
				setNice(joinNiceBehind)
			} else {
				setNice(joinNice)
			}
			last = time.Now()
			pr.stream.Advance(mark)
			t.Reset(joinEvery)
		}
	}
}

func monotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func hookLine(p *probe.Probe) string {
	s := "mode " + p.ModeUsed() + ", records on " + p.Ring().String() + ";"
	var off []string
	for _, h := range p.Hooks() {
		switch h.State {
		case probe.HookOff:
			off = append(off, h.Event)
		case probe.HookAttached:
			s += " " + h.Event + "=" + h.Hook
		}
	}
	if len(off) > 0 {
		s += "; off: " + strings.Join(off, ", ")
	}
	return s
}

// clientsReady starts following the client threads.
func (pr *probeRun) clientsReady(conns []loadgen.ConnInfo) error {
	pr.stream.AddConns(conns)
	seen := map[int]bool{}
	for _, c := range conns {
		if seen[c.TID] {
			continue // an event-loop thread drives many connections
		}
		seen[c.TID] = true
		if err := pr.p.TrackTID(uint32(c.TID)); err != nil {
			return fmt.Errorf("follow client thread %d: %w", c.TID, err)
		}
	}
	if pr.rec != nil {
		pr.rec.conns(conns)
	}
	return nil
}

// delivered takes one completed round trip from the load generator.
func (pr *probeRun) delivered(d loadgen.Delivery) {
	if !pr.statsOff.Load() {
		pr.warmTrips.Add(1)
	}
	if d.Measured {
		pr.stream.Trip(d.Conn, d.Seq, d.Record)
	}
	if pr.rec != nil {
		pr.rec.trip(d)
	}
}

// stopStats ends the kernel's run statistics (they slow every program
// run); the counts so far stay readable.
func (pr *probeRun) stopStats() {
	if !pr.statsOff.Swap(true) {
		pr.p.StopStats()
		pr.stream.Release() // the window is decided: the pilot is handed over
	}
}

// stop drains the rings, detaches everything and finishes the join.
func (pr *probeRun) stop() error {
	pr.once.Do(func() {
		pr.stopStats()
		pr.cancel()
		pr.err = <-pr.readDone
		pr.lost, pr.readerLate = pr.p.Lost(), pr.p.ReaderLate()
		pr.runs, pr.bpfNs, pr.statsErr = pr.p.MachineRuns()
		if cerr := pr.p.Close(); pr.err == nil {
			pr.err = cerr
		}
		close(pr.joinStop)
		<-pr.joinDone
	})
	return pr.err
}

// parts describes the probe's run for the results; stop must have
// returned.
func (pr *probeRun) parts(cfg Config) *report.ProbeParts {
	pp := &report.ProbeParts{
		Mode: pr.p.ModeUsed(), Hooks: map[string]string{}, Missing: map[string]string{},
		Ring: pr.p.Ring().String(), Syscalls: cfg.Syscalls,
		Records: pr.p.Records(), Lost: pr.lost, Late: pr.stream.Late(),
	}
	for _, h := range pr.p.Hooks() {
		pp.Hooks[h.Event] = h.String()
		if h.State == probe.HookMissing {
			pp.Missing[h.Event] = fmt.Sprintf("%v; costs %s", h.Err, h.Costs)
		}
	}
	if pr.statsErr == nil {
		pp.WarmupRuns, pp.WarmupBPFNs, pp.WarmupTrips = pr.runs, pr.bpfNs, pr.warmTrips.Load()
	}
	return pp
}

// recording is a --record file written as the run goes. Events come from
// the probe's reader and round trips from the run loop, so a lock keeps
// them apart; round trips are batched per connection.
type recording struct {
	mu    sync.Mutex
	w     *breakdown.RecordingWriter
	info  map[int]loadgen.ConnInfo
	batch map[int][]loadgen.Record
}

// recordBatch is how many round trips of a connection are written at once.
const recordBatch = 4096

func createRecording(path string, port uint16) (*recording, error) {
	w, err := breakdown.CreateRecording(path, breakdown.RecordingHeader{ServerPort: port})
	if err != nil {
		return nil, err
	}
	return &recording{w: w, info: map[int]loadgen.ConnInfo{}, batch: map[int][]loadgen.Record{}}, nil
}

func (r *recording) event(e *probe.Event) {
	r.mu.Lock()
	r.w.WriteEvent(e)
	r.mu.Unlock()
}

func (r *recording) conns(cs []loadgen.ConnInfo) {
	r.mu.Lock()
	for _, c := range cs {
		r.info[c.ID] = c
	}
	r.mu.Unlock()
}

func (r *recording) trip(d loadgen.Delivery) {
	r.mu.Lock()
	b := append(r.batch[d.Conn], d.Record)
	if len(b) >= recordBatch {
		r.w.WriteConn(loadgen.Conn{ConnInfo: r.info[d.Conn], Records: b})
		b = b[:0]
	}
	r.batch[d.Conn] = b
	r.mu.Unlock()
}

// close writes what is batched and the trailer.
func (r *recording) close(w loadgen.Window) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int, 0, len(r.info))
	for id := range r.info {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r.w.WriteConn(loadgen.Conn{ConnInfo: r.info[id], Records: r.batch[id]})
	}
	return r.w.Close(breakdown.RecordingTrailer{MeasureStart: w.Start})
}
