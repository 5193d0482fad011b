package session

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// Timing of the streaming join: round trips are joined every joinEvery
// up to the source's watermark (the join indexes each event once, so
// joining often costs nothing extra).
const (
	joinEvery = 100 * time.Millisecond
	// joinBehind: a join that starts more than this after the one before
	// it is behind. Its backlog would grow with the run (it holds every
	// event since), so its priority goes up a step (joinLevel); the
	// clients then wait for it, which the client-saturation warning says.
	joinBehind = 3 * joinEvery
	// joinRetryIdle is how long the join stays above SCHED_IDLE, once it
	// fell behind there, before it tries again: clients that keep their
	// CPU busy (many connections) starve it there each time.
	joinRetryIdle = 2 * time.Second
	// keepSlack is added to how long events are kept for a round trip
	// not yet handed over.
	keepSlack = 250 * time.Millisecond
)

// joinLevel is the join thread's scheduling: SCHED_IDLE while it keeps
// up there, so that it runs only in the idle time of the CPUs it shares
// with the clients (a woken client preempts it at once, where a nice
// thread could keep the CPU for its slice, milliseconds, in front of a
// round trip); above it when it falls behind.
//
// SCHED_IDLE only beside threads of this process (a run's clients): Go
// stops the world (twice each GC cycle) once every thread running Go
// code has stopped, and a SCHED_IDLE thread may not run for seconds on a
// CPU that other work keeps busy. A run's clients stop for the world too,
// so they leave their CPU to the join for that; a watched program does
// not, and the whole watch, its ring reader too, waited for its join
// (the README has what was lost). A watch's threads therefore stay at
// joinLow or above (the floor of newLevelSteps).
type joinLevel int

const (
	joinIdle   joinLevel = iota // SCHED_IDLE
	joinLow                     // SCHED_OTHER, nice 5
	joinRaised                  // SCHED_OTHER, nice -5: behind at nice 5 too
)

// set gives the calling thread l's scheduling, and says whether it did.
func (l joinLevel) set() bool {
	a := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	switch l {
	case joinLow:
		a.Policy, a.Nice = unix.SCHED_NORMAL, 5
	case joinRaised:
		a.Policy, a.Nice = unix.SCHED_NORMAL, -5
	}
	return unix.SchedSetAttr(0, &a, 0) == nil
}

// levelSteps moves a loop's thread through the joinLevels: a loop that
// wakes every joinEvery, on a thread of its own (locked).
type levelSteps struct {
	level, floor joinLevel
	// since is when the level was last set, last the last wake-up.
	since, last time.Time
	// aboveIdleUntil keeps the thread off joinIdle until then (other
	// programs keep its CPUs busy: othersBusy).
	aboveIdleUntil time.Time
}

// newLevelSteps starts the calling thread at joinLow; it never goes
// below floor.
func newLevelSteps(now time.Time, floor joinLevel) *levelSteps {
	s := &levelSteps{level: joinLow, floor: floor, since: now, last: now}
	s.level.set()
	return s
}

// tick moves the level at a wake-up at now: up a step when it came
// late, down when calm (from when the loop last had a backlog to work
// through) is long enough ago.
func (s *levelSteps) tick(now, calm time.Time) {
	l := max(s.floor, s.level.next(now.Sub(s.last) > joinBehind, now, calm))
	if l == joinIdle && now.Before(s.aboveIdleUntil) {
		l = joinLow
	}
	if l != s.level && l.set() {
		s.level, s.since = l, now
	}
	s.last = now
}

// keepScheduling returns what gives the calling thread back the
// scheduling it has now (a locked thread that goes back to Go's pool).
func keepScheduling() (restore func()) {
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		a = &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	}
	return func() { _ = unix.SchedSetAttr(0, a, 0) }
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// next is the level after a join that started late (or not), at now,
// having been at l, and with no backlog to work through, since since.
func (l joinLevel) next(late bool, now, since time.Time) joinLevel {
	switch {
	case late:
		return min(l+1, joinRaised)
	case l == joinRaised:
		return joinLow
	case l == joinLow && now.Sub(since) >= joinRetryIdle:
		return joinIdle
	}
	return l
}

// joinStage joins an event source's events with the load's round trips
// as they complete, so that nothing grows with the run's length.
type joinStage struct {
	source EventSource
	stream *breakdown.Stream
	rec    *recording // nil without --record
	probe  *probeSource

	cancel   context.CancelFunc
	readDone chan error
	loopStop chan struct{}
	loopDone chan struct{}
	once     sync.Once
	report   SourceReport
	err      error
	// The observer's cost: the join thread's CPU time (set as it exits)
	// over the time from start to stop.
	joinCPU      time.Duration
	started, end time.Time
	// othersPeak is the largest share of one of the join's CPUs that
	// other processes used over an othersWindow (a run's join only).
	othersPeak float64
	// The connection sample (probeSource.sample > 1): the connections
	// the probe follows, by id, and how many there are in all.
	sampleMu sync.Mutex
	sampled  map[int]bool // nil: every connection
	conns    int
	// releasedAt is when the stream stopped holding every event (the
	// pilot stretch's end), Unix ns; 0 before.
	releasedAt atomic.Int64
}

// startJoin starts reading src and joining what it delivers; onTrip
// receives every measured round trip, joined or not. The caller must
// call stop.
//
// floor is the join thread's lowest level (joinLevel): joinIdle beside a
// run's clients, joinLow beside programs of others (a watch).
func startJoin(src EventSource, port uint16, cfg Config, onTrip func(*breakdown.RoundTrip, loadgen.Record), rec *recording, floor joinLevel) *joinStage {
	// Events are kept for round trips the run loop has not handed over:
	// it does so once per check, and most round trips last far less than
	// that. The keep counts back from the watermark, which already lags
	// the clock by probeLag: a round trip handed over up to two checks
	// after it ended, having lasted up to keepSlack + probeLag, still
	// finds its events. One in flight for longer may lose its earliest
	// events and then counts as unjoined, with its reason. Until the
	// window's start is decided (the pilot stretch), everything is kept.
	check := cfg.Load.CheckEvery
	if check <= 0 {
		check = loadgen.DefaultCheckEvery
	}
	j := &joinStage{source: src, rec: rec, readDone: make(chan error, 1), loopStop: make(chan struct{}), loopDone: make(chan struct{}), started: time.Now()}
	j.probe = probeOf(src)
	j.stream = breakdown.NewStream(port, nil, cfg.Syscalls, 2*check+keepSlack, onTrip)
	j.stream.Hold(1)
	if h := src.Holders(); h != nil {
		j.stream.Summary().NameHolders(h) // the slowest round trips get who held the CPU they waited for
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.cancel = cancel
	go func() {
		if b, ok := src.(batchSource); ok {
			j.readDone <- b.RunBatches(ctx, func(evs []probe.Event) {
				j.stream.Events(evs)
				if j.rec != nil {
					for i := range evs {
						j.rec.event(&evs[i])
					}
				}
			})
			return
		}
		j.readDone <- src.Run(ctx, func(e *probe.Event) {
			j.stream.Event(e)
			if j.rec != nil {
				j.rec.event(e)
			}
		})
	}()
	go j.loop(floor)
	return j
}

// batchSource is an EventSource that can deliver a batch of events at a
// time (probeSource.RunBatches): the stream then takes its lock once per
// batch, not once per event.
type batchSource interface {
	RunBatches(ctx context.Context, deliver func([]probe.Event)) error
}

// loop advances the join until stop, then flushes it. It runs on a
// thread of its own, scheduled by joinLevel, so the work seldom delays a
// client thread that shares its CPU.
func (j *joinStage) loop(floor joinLevel) {
	defer close(j.loopDone)
	// Never unlocked: the thread's scheduling is changed below, and a
	// thread given back to Go's pool with it would carry it to whatever
	// runs there next (a client's pinned thread, in a process that runs
	// again), so the thread exits with the goroutine.
	runtime.LockOSThread()
	// From joinLow, which a run's join holds until joinRetryIdle after
	// the pilot stretch's end: the stream holds every event until then,
	// and the joins just after it work through the backlog, which at
	// SCHED_IDLE would grow while the clients run (the README has the
	// peak heap of each).
	steps := newLevelSteps(time.Now(), floor)
	var others *othersBusy // a run's: othersBusy says why
	if floor == joinIdle && j.probe != nil {
		others = newOthersBusy(j.probe.p, time.Now())
	}
	t := time.NewTimer(joinEvery)
	defer t.Stop()
	for {
		select {
		case <-j.loopStop:
			// The flush comes after the load: not the clients' CPU. At
			// SCHED_IDLE it would wait for the CPU's idle time.
			if steps.level == joinIdle {
				joinLow.set()
			}
			j.joinCPU = time.Duration(threadCPU())
			if others != nil {
				j.othersPeak = others.peak
			}
			j.stream.Flush()
			return
		case <-t.C:
			now := time.Now()
			if others != nil {
				if share, ok := others.sample(now); ok && share >= joinOthersShare {
					steps.aboveIdleUntil = now.Add(joinRetryIdle)
				}
			}
			calm := now // held: never idle
			if r := j.releasedAt.Load(); r != 0 {
				calm = latest(steps.since, time.Unix(0, r))
			}
			steps.tick(now, calm)
			j.stream.Advance(j.source.Watermark())
			t.Reset(joinEvery)
		}
	}
}

// clientsReady starts following the client threads.
func (j *joinStage) clientsReady(conns []loadgen.ConnInfo) error {
	j.stream.AddConns(j.sample(conns))
	seen := map[int]bool{}
	var tids []int
	for _, c := range conns {
		// An event-loop thread drives many connections; a connection seen
		// from the server's side alone (a watch) has no client thread (0,
		// which would be the idle task).
		if c.TID > 0 && !seen[c.TID] {
			seen[c.TID] = true
			tids = append(tids, c.TID)
		}
	}
	if err := j.source.FollowThreads(tids); err != nil {
		return err
	}
	if j.rec != nil {
		j.rec.conns(conns)
	}
	return nil
}

// sample is the part of conns the probe follows, all of them unless it
// follows a sample.
func (j *joinStage) sample(conns []loadgen.ConnInfo) []loadgen.ConnInfo {
	if j.probe == nil || j.probe.sample <= 1 {
		return conns
	}
	var in []loadgen.ConnInfo
	j.sampleMu.Lock()
	defer j.sampleMu.Unlock()
	if j.sampled == nil {
		j.sampled = map[int]bool{}
	}
	j.conns += len(conns)
	for _, c := range conns {
		if probe.Sampled(uint16(c.LocalPort), j.probe.sample) {
			j.sampled[c.ID] = true
			in = append(in, c)
		}
	}
	return in
}

// delivered takes one completed round trip from the load, and says
// whether the join took it (measured, on a followed connection).
func (j *joinStage) delivered(d loadgen.Delivery) bool {
	if j.probe != nil {
		j.probe.tripDone(d.Record.T1)
	}
	if j.rec != nil {
		j.rec.trip(d)
	}
	if !d.Measured {
		return false
	}
	j.sampleMu.Lock()
	followed := j.sampled == nil || j.sampled[d.Conn]
	j.sampleMu.Unlock()
	if followed {
		j.stream.Trip(d.Conn, d.Seq, d.Record)
	}
	return followed
}

// windowDecided: the pilot stretch is handed over, and the source may
// stop measuring its own cost.
func (j *joinStage) windowDecided(start int64) {
	j.source.WarmupOver()
	j.stream.SetWindowStart(start) // the syscall and io_uring tables count from here
	j.release()
}

// holdFrom narrows the stream's hold, until release, to the events
// stamped at or after t (and those a round trip from t looks back to).
func (j *joinStage) holdFrom(t int64) {
	if j.releasedAt.Load() == 0 {
		j.stream.Hold(t)
	}
}

// release ends the stream's hold on every event. The run's progress
// calls it at every check once the window is decided; the first counts.
func (j *joinStage) release() {
	j.stream.Release()
	j.releasedAt.CompareAndSwap(0, time.Now().UnixNano())
}

// windowEnded: the clients are told to stop at t; the syscall and
// io_uring tables count nothing begun later.
func (j *joinStage) windowEnded(t int64) { j.stream.SetWindowEnd(t) }

// window gives the stream the run's final window: its end may lie before
// the moment the clients were halted (a run loop late past the duration
// cap ends the window at the cap), and a replay decides it only here.
func (j *joinStage) window(w loadgen.Window) {
	j.stream.SetWindowStart(w.Start)
	j.stream.SetWindowEnd(w.End)
}

// stop ends the source, detaches it and finishes the join; idempotent.
func (j *joinStage) stop() (SourceReport, error) {
	j.once.Do(func() {
		j.source.WarmupOver()
		j.cancel()
		j.end = time.Now()
		j.err = <-j.readDone
		var cerr error
		j.report, cerr = j.source.Close()
		if j.err == nil {
			j.err = cerr
		}
		close(j.loopStop)
		<-j.loopDone
	})
	return j.report, j.err
}

// addParts puts the join's findings into the summary's parts.
func (j *joinStage) addParts(parts *report.Parts, sr SourceReport, load *loadgen.Summary) {
	parts.Probe = sr.Probe
	if parts.Probe != nil {
		parts.Probe.Late = j.stream.Late()
		if j.probe != nil { // a replay's join is no observer of a load
			parts.Probe.ReaderCPU, parts.Probe.JoinCPU, parts.Probe.Wall = sr.ReaderCPU, j.joinCPU, j.end.Sub(j.started)
			parts.Probe.OthersPeak, parts.Probe.OthersWindow = j.othersPeak, othersWindow
		}
		j.sampleMu.Lock()
		if j.sampled != nil {
			parts.Probe.SampledConns, parts.Probe.Conns = len(j.sampled), j.conns
		}
		j.sampleMu.Unlock()
	}
	parts.Warnings = append(parts.Warnings, sr.Warnings...)
	parts.Join = j.stream.Summary()
	if j.sampled == nil { // a sample's sends are not the server's
		parts.ServerSends = j.stream.ServerSends(load.Window.Start, load.Window.End)
	}
	if t := j.stream.Syscalls(); t != nil {
		parts.Syscalls = t.Stats()
		if c := parts.ServerCost; c != nil && load.Measured > 0 {
			var n int64
			for _, s := range parts.Syscalls {
				if s.Side == "server" {
					n += s.Count
				}
			}
			c.Syscalls = float64(n) / float64(load.Measured) // the table counts the window only
		}
	}
	parts.Uring = j.stream.Uring().Stats()
}
