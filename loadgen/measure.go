package loadgen

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// Window is a run's measured window, decided once by the run loop and
// used by everything downstream (statistics, the join, requests.csv, the
// interval log): a round trip is measured exactly when Start ≤ T0 < End.
type Window struct {
	FirstT0 int64 // CLOCK_MONOTONIC ns of the first request of the run
	// WarmupEnd is FirstT0 + Options.Warmup: round trips started earlier
	// are warm-up by time.
	WarmupEnd int64
	// Start is where measuring begins: WarmupEnd, or later when MSER-5
	// found the pilot stretch after the warm-up still settling.
	Start int64
	// End is when the run loop stopped the clients; 0 while running.
	End int64
}

// Measured reports whether a round trip that started at t0 is measured.
func (w Window) Measured(t0 int64) bool {
	return t0 >= w.Start && (w.End == 0 || t0 < w.End)
}

// Span is the measured time, End − Start.
func (w Window) Span() time.Duration {
	if w.End <= w.Start {
		return 0
	}
	return time.Duration(w.End - w.Start)
}

// Targets of the stopping rule, as named in Summary.Limiting.
const (
	TargetP50 = "p50"
	TargetP99 = "p99"
)

// pilot is how long after the warm-up the run watches the latency before
// it fixes the window's start: MSER-5 looks for a transient only in this
// stretch, so its cut is at most about half of it. A longer transient is
// the stationarity check's to report.
const (
	pilotSpan    = time.Second
	pilotMinTrip = 100
)

// measurer is the run loop's state: it drains the clients' records, keeps
// the window, feeds the statistics and the sink, and applies the stopping
// rule. It holds no round trip beyond the pilot stretch, so its memory is
// flat in run length.
type measurer struct {
	opts  *Options
	sink  func(Delivery) // Hooks.Sink
	conns []*client
	win   Window

	decided bool      // the window's start is fixed
	pilot   []pending // round trips of the pilot, held until decided
	chunk   []pending // this check's records, sorted by completion
	sortBuf []pending // byCompletion's scratch

	bat       *stats.Batcher
	warm      *hdrhistogram.Histogram // outside the window, for a run that ends in warm-up
	warmCount int64
	measured  int64
	mserCut   int
	lastT1    int64 // latest completion among measured round trips
	firstT1   int64

	// stopping rule
	unmetAt    map[string]int64 // last check at which each target was unmet
	outOfReach string           // the target the rule found out of reach
	metAt      int64            // first check at which every target held
	p50, p99   stats.Interval
	mean       stats.Interval
}

type pending struct {
	conn int
	seq  int64
	r    Record
}

func newMeasurer(opts *Options, sink func(Delivery), conns []*client, firstT0 int64) *measurer {
	m := &measurer{
		opts: opts, sink: sink, conns: conns,
		bat: stats.NewBatcher(), warm: stats.NewHistogram(),
		unmetAt: map[string]int64{},
	}
	m.win.FirstT0 = firstT0
	m.win.WarmupEnd = firstT0 + opts.Warmup.Nanoseconds()
	m.win.Start = m.win.WarmupEnd
	m.decided = opts.NoMSER
	return m
}

// collect drains every connection's new records, in completion order.
func (m *measurer) collect(now int64) {
	m.chunk = m.chunk[:0]
	for _, c := range m.conns {
		id := c.id
		c.recs.drain(func(seq int64, r Record) {
			m.chunk = append(m.chunk, pending{id, seq, r})
		})
	}
	// Within one check the clients' records interleave in time; ordering
	// them by completion keeps batches over contiguous time.
	m.sortBuf = byCompletion(m.chunk, m.sortBuf)
	m.take(m.chunk, now)
}

// byCompletion sorts ps by completion time (T1), stably, and returns
// scratch, grown to len(ps), for the next call.
//
// It is a least-significant-digit radix sort of T1 less the smallest:
// a check's records span one check period (27 bits of ns at 100 ms),
// so three passes of 11 bits sort them. A comparison sort of the same
// records took most of the run loop's CPU at 256 connections, at a
// priority above the clients' on their CPU (README, "What the observer
// costs under load").
func byCompletion(ps, scratch []pending) []pending {
	if len(ps) < radixMin {
		slices.SortStableFunc(ps, func(a, b pending) int { return cmp.Compare(a.r.T1, b.r.T1) })
		return scratch
	}
	lo, hi := ps[0].r.T1, ps[0].r.T1
	for i := range ps {
		lo, hi = min(lo, ps[i].r.T1), max(hi, ps[i].r.T1)
	}
	if cap(scratch) < len(ps) {
		scratch = make([]pending, len(ps))
	}
	scratch = scratch[:len(ps)]
	src, dst := ps, scratch
	span := uint64(hi - lo)
	var count [1 << radixBits]int
	for shift := uint(0); shift == 0 || span>>shift != 0; shift += radixBits {
		clear(count[:])
		for i := range src {
			count[(uint64(src[i].r.T1-lo)>>shift)&radixMask]++
		}
		sum := 0
		for d, c := range count {
			count[d] = sum
			sum += c
		}
		for i := range src {
			d := (uint64(src[i].r.T1-lo) >> shift) & radixMask
			dst[count[d]] = src[i]
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &ps[0] {
		copy(ps, src)
	}
	return scratch
}

// byCompletion's radix: digits of radixBits; below radixMin records a
// comparison sort is quicker than the passes' counting.
const (
	radixBits = 11
	radixMask = 1<<radixBits - 1
	radixMin  = 256
)

// take hands on the round trips completed by now, in completion order,
// holding those of the pilot stretch until the window's start is decided.
func (m *measurer) take(ps []pending, now int64) {
	for _, p := range ps {
		if !m.decided && p.r.T0 >= m.win.WarmupEnd {
			m.pilot = append(m.pilot, p)
			continue
		}
		m.deliver(p)
	}
	if !m.decided && now >= m.win.WarmupEnd+pilotSpan.Nanoseconds() && len(m.pilot) >= pilotMinTrip {
		m.decide()
	}
}

// decide fixes the window's start: MSER-5 over the pilot stretch, whose
// cut is a transient the time warm-up did not cover.
//
// Round trips begun after the window closed at the duration cap are held
// with the pilot, to keep each connection's order, but are no part of
// the stretch MSER-5 judges: they would move its cut past the window.
func (m *measurer) decide() {
	xs := make([]float64, 0, len(m.pilot))
	judged := make([]pending, 0, len(m.pilot))
	for _, p := range m.pilot {
		if m.win.End == 0 || p.r.T0 < m.win.End {
			xs = append(xs, float64(p.r.Latency()))
			judged = append(judged, p)
		}
	}
	if d := stats.MSER5(xs); d > 0 {
		for _, p := range judged[:d] {
			m.win.Start = max(m.win.Start, p.r.T0+1)
		}
	}
	m.decided = true
	for _, p := range m.pilot {
		if p.r.T0 < m.win.Start {
			m.mserCut++
		}
		m.deliver(p)
	}
	m.pilot = nil
}

// finish closes the window at end and delivers what is still held.
func (m *measurer) finish(end int64) {
	m.win.End = end
	if !m.decided {
		if len(m.pilot) >= pilotMinTrip {
			m.decide()
		} else {
			m.decided = true
			for _, p := range m.pilot {
				m.deliver(p)
			}
			m.pilot = nil
		}
	}
}

// deliver classifies one round trip by the window and hands it on.
func (m *measurer) deliver(p pending) {
	in := m.decided && m.win.Measured(p.r.T0)
	if in {
		m.measured++
		m.bat.Add(p.r.Latency())
		if m.firstT1 == 0 {
			m.firstT1 = p.r.T1
		}
		m.lastT1 = max(m.lastT1, p.r.T1)
	} else {
		m.warmCount++
		_ = m.warm.RecordValue(p.r.Latency())
	}
	if m.sink != nil {
		m.sink(Delivery{Conn: p.conn, Seq: p.seq, Record: p.r, Measured: in})
	}
}

// target is one interval target of the stopping rule and the interval
// it judges.
type target struct {
	name   string
	target float64 // relative half-width; ≤ 0: none
	iv     stats.Interval
}

// targets are the rule's targets with the latest intervals.
func (m *measurer) targets() [2]target {
	return [2]target{{TargetP50, m.opts.CI, m.p50}, {TargetP99, m.opts.P99CI, m.p99}}
}

// check evaluates the stopping rule at now and reports whether every
// target holds.
func (m *measurer) check(now int64) bool {
	if !m.decided {
		return false
	}
	conf := m.opts.Confidence
	m.mean = m.bat.Mean(conf)
	m.p50 = m.bat.Quantile(0.5, conf)
	m.p99 = m.bat.Quantile(0.99, conf)
	met := true
	for _, t := range m.targets() {
		if t.target <= 0 {
			continue
		}
		if t.iv.RelHalfWidth() > t.target {
			m.unmetAt[t.name] = now
			met = false
		}
	}
	if m.opts.CI <= 0 && m.opts.P99CI <= 0 {
		return false // no target: run for the duration
	}
	if met && m.measured >= int64(m.opts.MinSamples) && now-m.win.Start >= min(minTargetSpan, m.opts.Duration).Nanoseconds() {
		if m.metAt == 0 {
			m.metAt = now
		}
		return true
	}
	return false
}

// limiting names the target that held the run up longest: the one met
// last; when the run stopped before all were met, the one found out of
// reach, else the one furthest from its target.
func (m *measurer) limiting() string {
	if m.metAt == 0 && m.outOfReach != "" {
		return m.outOfReach
	}
	best, at := "", int64(-1)
	for _, name := range []string{TargetP50, TargetP99} {
		if t, ok := m.unmetAt[name]; ok && t > at {
			best, at = name, t
		}
	}
	if m.metAt == 0 || best == "" {
		// Stopped before every target held, or every target held at the
		// first check: the one closest to its limit.
		worst := -1.0
		for _, t := range m.targets() {
			if t.target > 0 {
				if r := finiteOr(t.iv.RelHalfWidth(), math.MaxFloat64) / t.target; r > worst {
					best, worst = t.name, r
				}
			}
		}
	}
	return best
}

// minTargetSpan is the least measured time at which the targets count
// as met (or the duration cap, if shorter). A shorter stretch can look
// steady between a machine's slower swings, and meet the targets in a
// quiet moment that the rest of the run does not share (README, "How a
// run decides it is done").
const minTargetSpan = 5 * time.Second

// The rule first asks whether the targets are out of reach once
// 1/reachAfter of the duration cap is measured, and at least
// reachAtLeast (10 s of the default 60 s, either way): the projection
// then starts from a stretch long enough to show a machine's slower
// swings, and a short cap, which a user sets to have that much
// measured, is always run to.
const (
	reachAfter   = 6
	reachAtLeast = 10 * time.Second
)

// stop applies the stopping rule at now, after a check that found every
// target held (met) or not: the reason to stop, or "" to go on. A run
// stops at its targets, at the duration cap (deadline), or early when
// even an optimistic projection of an interval to the cap misses its
// target by far (stats.Interval.OutOfReach), unless Options.KeepGoing.
func (m *measurer) stop(now, deadline int64, met bool) string {
	switch {
	case met:
		return StopTarget
	case now >= deadline:
		return StopDuration
	case m.opts.KeepGoing || !m.decided:
		return ""
	}
	t, total := float64(now-m.win.Start), float64(deadline-m.win.Start)
	if t <= 0 || t < max(float64(m.opts.Duration)/reachAfter, float64(reachAtLeast)) {
		return ""
	}
	for _, tg := range m.targets() {
		if tg.target > 0 && tg.iv.OutOfReach(total/t, tg.target) {
			m.outOfReach = tg.name
			return StopUnreachable
		}
	}
	return ""
}

// needs is about how much measured time the limiting target would need
// at the spread seen (stats.Interval.Needs); 0 when it held or has no
// interval to tell.
func (m *measurer) needs(limiting string) time.Duration {
	for _, tg := range m.targets() {
		if tg.name == limiting && tg.target > 0 && tg.iv.RelHalfWidth() > tg.target {
			if g := tg.iv.Needs(tg.target); !math.IsInf(g, 1) {
				return time.Duration(g * float64(m.win.Span()))
			}
		}
	}
	return 0
}

func finiteOr(x, alt float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return alt
	}
	return x
}

// Summarize builds the result that Run would have given for recorded
// round trips (a --record file's connections) measured in window w: the
// same classification, statistics and checks, without a load. End 0 means
// the window is open at the end. The stop reason is StopReplay.
func Summarize(opts Options, conns []Conn, w Window) *Summary {
	return Replay(opts, conns, w, Hooks{})
}

// Replay is Summarize that also hands the recorded round trips to hooks
// as Run would have handed the live ones: ClientsReady with the
// connections, Began at the first request (wall time unknown: zero),
// every round trip to Sink in completion order, one Progress once the
// window is decided, and Halting at the end.
func Replay(opts Options, conns []Conn, w Window, hooks Hooks) *Summary {
	opts.defaults()
	all := completed(conns)
	res := &Summary{Options: opts, StopReason: StopReplay}
	for _, c := range conns {
		res.Conns = append(res.Conns, c.ConnInfo)
	}
	if hooks.ClientsReady != nil {
		if err := hooks.ClientsReady(res.Conns); err != nil {
			return res
		}
	}
	if hooks.Began != nil {
		hooks.Began(time.Time{}, w.FirstT0)
	}
	m := newMeasurer(&opts, hooks.Sink, nil, w.FirstT0)
	m.win, m.decided = w, true
	for _, p := range all {
		m.deliver(p)
	}
	if len(all) > 0 {
		m.check(all[len(all)-1].r.T1)
		if w.End == 0 {
			m.win.End = all[len(all)-1].r.T0 + 1
		}
	}
	res.fill(m)
	if hooks.Progress != nil {
		hooks.Progress(Progress{Elapsed: time.Duration(m.win.End - w.FirstT0), WindowStart: m.win.Start, Measured: int(res.Measured)})
	}
	if hooks.Halting != nil {
		hooks.Halting()
	}
	return res
}

// completed is every round trip of conns, in completion order.
func completed(conns []Conn) []pending {
	var all []pending
	for _, c := range conns {
		for i, r := range c.Records {
			all = append(all, pending{c.ID, int64(i), r})
		}
	}
	byCompletion(all, nil)
	return all
}

// Rehearse applies the stopping rule to recorded round trips as a live
// run with opts would have, check by check: the window opens at the
// warm-up's end (after MSER-5's look at the pilot stretch), the rule is
// checked every CheckEvery from the first request, and the result is
// what the run would have reported when it stopped: at its targets, out
// of reach, at the duration cap, or, when the recording ends first,
// StopRequests. It tells how a run would have gone on latencies from
// elsewhere, such as another client's.
func Rehearse(opts Options, conns []Conn) *Summary {
	opts.defaults()
	all := completed(conns)
	res := &Summary{Options: opts}
	for _, c := range conns {
		res.Conns = append(res.Conns, c.ConnInfo)
	}
	first := int64(math.MaxInt64)
	for _, p := range all {
		first = min(first, p.r.T0)
	}
	if len(all) == 0 {
		first = 0
	}
	m := newMeasurer(&opts, nil, nil, first)
	deadline := m.win.WarmupEnd + opts.Duration.Nanoseconds()
	i, end, reason := 0, first, ""
	for reason == "" {
		end += opts.CheckEvery.Nanoseconds()
		j := i
		for j < len(all) && all[j].r.T1 <= end {
			j++
		}
		m.take(all[i:j], end)
		i = j
		reason = m.stop(end, deadline, m.check(end))
		if reason == "" && i == len(all) {
			reason = StopRequests
		}
	}
	// As in a live run, the round trips in flight at the stop finish.
	m.take(slices.DeleteFunc(all[i:], func(p pending) bool { return p.r.T0 >= end }), end)
	m.finish(end)
	res.StopReason = reason
	m.check(end)
	res.fill(m)
	return res
}
