package session

import (
	"fmt"
	"math"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
)

// Time-sampled tracing (watch --trace-share): the probe records for a
// share of the time, in windows of TraceOn followed by as long off as the
// share leaves, and the watch hands over only the round trips that lie
// wholly inside an "on" window, after its first traceMargin.
const (
	// TraceOn is an "on" window's length: long beside traceMargin (1%
	// of it is lost) and beside WatchIdle (a connection is back in step
	// within its first request or the idle rule), and the length of the
	// watch's first stretch (watchCostSpan, which the first window
	// covers besides); short enough that a terminal summary
	// (every 5 s) spans a window at a share of 0.2 and up.
	TraceOn = time.Second
	// traceMargin is the start of each "on" window whose round trips are
	// not handed over: longer than a scheduler tick, so that a thread
	// that was waiting for a CPU when tracing came on (its wake-up not
	// seen) has run by then, and than the round trips of the rates at
	// which sampling pays. A round trip that began before the switch is
	// dropped whatever the margin: its send start was not seen.
	traceMargin = 10 * time.Millisecond
)

// DefaultTraceShare is --trace-share's default: everything traced.
const DefaultTraceShare = 1.0

// CheckTraceShare says whether share is a fraction of the time to trace
// (0 < share ≤ 1); the error names the flag.
func CheckTraceShare(share float64) error {
	if !(share > 0 && share <= 1) { // NaN fails both
		return flagErr("--trace-share", fmt.Errorf("%v is not a share of the time in (0, 1]: give e.g. 0.25 to trace a quarter of the time, or 1 (the default) for all of it", share))
	}
	return nil
}

// traceWindow is an "on" stretch of the probe, in CLOCK_MONOTONIC ns:
// on is read once every probe says its hooks are attached (this host's,
// and an agent's, which answers after it has switched), off after this
// host's were switched off (math.MaxInt64 while on; an agent's go off
// later), so that both hosts recorded all of it. A record made between
// the switch and on lies before the window: a round trip it belongs to
// began before on and is dropped (keep). The connections' state is reset
// at the first record past each edge (crossed): past on, and past off,
// so that the records made between this host's switch and on (while the
// agent's probe is switched) never meet the state an off stretch cut
// short: a request sent then, its reply not seen, followed by the first
// request after the switch looked like a pipelined connection, and the
// connection's round trips were left out for the rest of the watch.
type traceWindow struct{ on, off int64 }

// traceWindows are a watch's windows, oldest first, and what the watch
// dropped at their edges. The zero value (no windows) keeps everything:
// the unsampled watch.
type traceWindows struct {
	wins []traceWindow
	// edges is how many window edges (on, off, on, …, oldest first)
	// have reset the connections' state (watchTrips.atWindow).
	edges int
	// edge counts round trips not handed over: begun before a window's
	// start or in its margin, or not known complete before its end.
	edge int64
}

// open records a window starting at on.
func (tw *traceWindows) open(on int64) {
	tw.wins = append(tw.wins, traceWindow{on: on, off: math.MaxInt64})
}

// close ends the open window at off.
func (tw *traceWindows) close(off int64) {
	if n := len(tw.wins); n > 0 && tw.wins[n-1].off == math.MaxInt64 {
		tw.wins[n-1].off = off
	}
}

// keep says whether a round trip from t0 to its completion, known at
// done (the event that completed it, or the end of the idle wait), lies
// wholly inside a window after its margin; without windows (before a
// watch's start), always.
func (tw *traceWindows) keep(t0, done int64) bool {
	if tw.wins == nil {
		return true
	}
	for i := len(tw.wins) - 1; i >= 0; i-- {
		w := tw.wins[i]
		if t0 >= w.on {
			if t0 >= w.on+traceMargin.Nanoseconds() && done <= w.off {
				return true
			}
			break
		}
	}
	tw.edge++
	return false
}

// crossed says whether an event at ts is past an edge (a window's start,
// or the end of a closed one) not yet passed, and marks it passed.
func (tw *traceWindows) crossed(ts int64) bool {
	crossed := false
	for i := tw.edges / 2; i < len(tw.wins); i = tw.edges / 2 {
		edge := tw.wins[i].on
		if tw.edges%2 == 1 {
			edge = tw.wins[i].off // math.MaxInt64 while open: never passed
		}
		if ts < edge {
			break
		}
		tw.edges++
		crossed = true
	}
	return crossed
}

// prune forgets windows that ended before t (no round trip left to
// check lies in them) and whose edges were both passed.
func (tw *traceWindows) prune(t int64) {
	n := 0
	for n < len(tw.wins)-1 && tw.wins[n].off < t && 2*(n+1) <= tw.edges {
		n++
	}
	if n > 0 {
		tw.wins = append(tw.wins[:0], tw.wins[n:]...)
		tw.edges -= 2 * n
	}
}

// traceSampler switches the probe's tracing on and off for a share of
// the time, in the watch's loop, and tells the round trips' windows.
type traceSampler struct {
	share    float64
	off      time.Duration // each "off" stretch
	set      func(on bool) error
	trips    *watchTrips
	on       bool
	onFor    int64 // the current "on" stretch's length, ns
	since    int64 // when the current stretch began
	from     int64 // the measured window's start (the watch's warm-up end)
	tracedNs int64 // "on" time of closed windows after from
	windows  int
	clock    func() int64 // CLOCK_MONOTONIC ns: the probe's clock
}

// newTraceSampler starts sampling at start (tracing is on: the probe is
// opened on) for share of the time; nil for a share of 1.
// The first window starts at start and lasts until from, where the
// measured window begins (the watch's warm-up, whose probe cost is
// measured traced and which the breakdown leaves out), and TraceOn
// after it: a short watch still has a window measured. The traced share
// is of the time after from.
//
// Every watch's round trips lie in windows, a share of 1's in one from
// start on: the events before it are partial (a server's data ready is
// seen by socket before its threads are followed, and its send only
// after), so an exchange begun before it is dropped like one begun in
// an "off" stretch, not reported as a round trip tens of milliseconds
// long.
func newTraceSampler(share float64, start, from int64, set func(bool) error, trips *watchTrips) *traceSampler {
	trips.windows.open(start)
	if share >= 1 {
		return nil
	}
	return &traceSampler{share: share, set: set, trips: trips, on: true, since: start, from: from, windows: 1, clock: monotonicNow,
		onFor: from - start + TraceOn.Nanoseconds(),
		off:   time.Duration(float64(TraceOn) * (1 - share) / share)}
}

// tick switches tracing when the current stretch has lasted its length.
func (s *traceSampler) tick(now int64) error {
	if s == nil {
		return nil
	}
	if s.on && now-s.since >= s.onFor {
		if err := s.set(false); err != nil {
			return err
		}
		off := s.clock()
		s.trips.windows.close(off)
		s.tracedNs += s.after(s.since, off)
		s.on, s.since = false, off
	} else if !s.on && now-s.since >= s.off.Nanoseconds() {
		if err := s.set(true); err != nil {
			return err
		}
		on := s.clock()
		s.trips.windows.open(on)
		s.on, s.since, s.onFor = true, on, TraceOn.Nanoseconds()
		s.windows++
	}
	return nil
}

// after is the part of [a, b) after s.from, in ns.
func (s *traceSampler) after(a, b int64) int64 {
	return max(0, b-max(a, s.from))
}

// tracedShare is the share of the measured window, up to end, that was
// traced.
func (s *traceSampler) tracedShare(end int64) float64 {
	t := s.tracedNs
	if s.on {
		t += s.after(s.since, end)
	}
	if end <= s.from {
		return 0
	}
	return float64(t) / float64(end-s.from)
}

// results is results.json's account of the sampling of a watch that
// ended at end, having measured rps round trips/s.
func (s *traceSampler) results(end int64, rps float64) *report.TraceSampling {
	r := &report.TraceSampling{Share: s.share, OnSeconds: TraceOn.Seconds(), OffSeconds: s.off.Seconds(), MarginSeconds: traceMargin.Seconds(),
		Windows: s.windows, TracedShare: s.tracedShare(end), EdgeDropped: s.trips.windows.edge}
	if r.TracedShare > 0 {
		r.ScaledThroughputRPS = rps / r.TracedShare
	}
	return r
}

// describe is the summary's line on the sampling of r.
func describeSampling(r *report.TraceSampling) string {
	return fmt.Sprintf("watch: tracing sampled (--trace-share %g): the probe recorded in windows of %v every %v (%d windows, %.1f%% of the measured time); the round trips, their counts and rates are those wholly inside the windows, after each window's first %v (%d across an edge left out); the traffic's whole rate, scaled, about %.0f/s",
		r.Share, secs(r.OnSeconds), secs(r.OnSeconds+r.OffSeconds), r.Windows, 100*r.TracedShare, secs(r.MarginSeconds), r.EdgeDropped, r.ScaledThroughputRPS)
}

func secs(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}
