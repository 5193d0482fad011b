package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// A load spread over several hosts (load agents) is measured in slots:
// each host cuts its completed round trips into stretches of SlotSpan of
// the controller's time and reports each stretch as a Slot, a histogram
// with its count. The controller pools the slots of every host that
// cover the same stretch (Merger) and runs the same measurer a local run
// uses over the pooled stream, so the window, the intervals, the
// validity checks and the stopping rule are computed by one piece of
// code whichever host the round trips came from.
//
// SlotSpan is short against the batches the intervals use (a measured
// run of at least 5 s is cut into 32 to 64 batches, each ≥ 78 ms, and
// the p99's groups are longer), so that the pooled stream keeps the
// run's slower swings in time order; within a slot the order of the
// round trips is lost (see interleave). It is long against the error of
// a clock mapping from a few pings over a LAN (tens of µs), so a round
// trip lands in the right slot but for the few completed at its edges.
const SlotSpan = 100 * time.Millisecond

// Slot is one host's round trips completed in one stretch of time.
type Slot struct {
	// StartNs and EndNs bound the stretch on the reporting host's
	// CLOCK_MONOTONIC: round trips that completed (Record.T1) in
	// [StartNs, EndNs).
	StartNs int64 `json:"start_ns"`
	EndNs   int64 `json:"end_ns"`
	// Count is the number of round trips, SumNs the sum of their
	// latencies; Hist holds their latencies (ns, stats.NewHistogram's
	// layout), nil when Count is 0.
	Count int64                   `json:"count"`
	SumNs int64                   `json:"sum_ns"`
	Hist  *hdrhistogram.Histogram `json:"-"`
}

// EncodeHist is Hist in HdrHistogram's compressed V2 encoding, for the
// wire; nil for an empty slot.
func (s *Slot) EncodeHist() ([]byte, error) {
	if s.Hist == nil || s.Count == 0 {
		return nil, nil
	}
	b, err := s.Hist.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("encode slot histogram: %w", err)
	}
	return b, nil
}

// DecodeHist sets Hist from b (EncodeHist's form) and checks it against
// Count: a histogram from the network is refused when its total or its
// range disagrees with what the slot says.
func (s *Slot) DecodeHist(b []byte) error {
	if len(b) == 0 {
		if s.Count != 0 {
			return fmt.Errorf("decode slot histogram: empty for %d round trips", s.Count)
		}
		s.Hist = nil
		return nil
	}
	h, err := hdrhistogram.Decode(b)
	if err != nil {
		return fmt.Errorf("decode slot histogram: %w", err)
	}
	want := stats.NewHistogram()
	if h.LowestTrackableValue() != want.LowestTrackableValue() || h.HighestTrackableValue() != want.HighestTrackableValue() || h.SignificantFigures() != want.SignificantFigures() {
		return fmt.Errorf("decode slot histogram: layout %d..%d at %d digits, want stats.NewHistogram's", h.LowestTrackableValue(), h.HighestTrackableValue(), h.SignificantFigures())
	}
	if h.TotalCount() != s.Count {
		return fmt.Errorf("decode slot histogram: holds %d round trips, the slot says %d", h.TotalCount(), s.Count)
	}
	s.Hist = h
	return nil
}

// Slotter cuts one host's round trips into Slots: it takes every
// Delivery of a run (Hooks.Sink) and hands on each slot once its
// stretch has passed. Slots are cut at origin + k·span on the host's
// clock, where origin is the controller's slot origin mapped to this
// host, so that the controller's slots line up with them.
//
// Every slot from the first round trip's on is handed on, empty ones
// included: an empty slot tells the controller that this host has
// nothing more for that stretch, so it need not wait for it.
type Slotter struct {
	origin, span int64
	cur          Slot
	open         bool
	out          func(Slot)
}

// NewSlotter makes a Slotter whose slots are cut at origin + k·span
// (host clock, ns) and handed to out, in order.
func NewSlotter(origin int64, span time.Duration, out func(Slot)) *Slotter {
	return &Slotter{origin: origin, span: max(span.Nanoseconds(), 1), out: out}
}

// slotAt is the stretch holding t.
func (s *Slotter) slotAt(t int64) (start, end int64) {
	k := floorDiv(t-s.origin, s.span)
	start = s.origin + k*s.span
	return start, start + s.span
}

// Add takes one completed round trip. Round trips arrive in completion
// order within each of the run loop's checks; one that completed in a
// stretch already handed on (it reached the run loop a check late) is
// counted in the current slot: its count is kept, its time is off by
// at most a check.
func (s *Slotter) Add(d Delivery) {
	t1 := d.Record.T1
	if !s.open {
		s.cur = Slot{}
		s.cur.StartNs, s.cur.EndNs = s.slotAt(t1)
		s.open = true
	}
	if t1 >= s.cur.EndNs {
		s.Flush(t1)
	}
	if s.cur.Hist == nil {
		s.cur.Hist = stats.NewHistogram()
	}
	v := min(max(d.Record.Latency(), 0), histMax)
	_ = s.cur.Hist.RecordValue(v) // clamped into range: cannot fail
	s.cur.Count++
	s.cur.SumNs += v
}

// Flush hands on every slot that ends at or before now (host clock),
// empty ones included.
func (s *Slotter) Flush(now int64) {
	if !s.open {
		return
	}
	for s.cur.EndNs <= now {
		s.out(s.cur)
		s.cur = Slot{StartNs: s.cur.EndNs, EndNs: s.cur.EndNs + s.span}
	}
}

// Current is the slot in progress: with a span longer than the run,
// every round trip so far.
func (s *Slotter) Current() Slot { return s.cur }

// Close hands on the slot in progress, if it holds round trips.
func (s *Slotter) Close() {
	if s.open && s.cur.Count > 0 {
		s.out(s.cur)
	}
	s.open = false
}

// histMax is the highest latency stats.NewHistogram tracks.
var histMax = stats.NewHistogram().HighestTrackableValue()

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// HostLoad is what one load host reported at the end of its part of a
// run, and its share of the merged result.
type HostLoad struct {
	Host    string `json:"host"` // as the controller names it: HOST:PORT of its agent, or "local"
	Clients int    `json:"clients"`
	// Measured is how many of the merged window's round trips came from
	// this host, and ThroughputRPS its rate over the window.
	Measured      int64   `json:"measured"`
	ThroughputRPS float64 `json:"throughput_rps"`
	// RoundTrips is every round trip the host completed, as it counted
	// them, in the window or not; Hist holds their latencies (the host's
	// own account, which the merged result must add up to).
	RoundTrips int64                   `json:"round_trips"`
	Hist       *hdrhistogram.Histogram `json:"-"`
	StopReason string                  `json:"stop_reason"`
	Setup      SetupStats              `json:"setup"`
	// ClientLoad is this host's client threads' cost over its own run:
	// each host's saturation is its own, so the hosts' figures are kept
	// apart rather than averaged.
	ClientLoad ClientLoad `json:"client_load"`
	// OffsetNs maps the host's clock to the controller's: controller =
	// host + OffsetNs. Its error (half the ping's round trip) is far
	// below SlotSpan.
	OffsetNs int64  `json:"clock_offset_ns"`
	Error    string `json:"error,omitempty"`
}

// Merger pools the slots of several load hosts into one run's result,
// on the controller's clock. Add slots as they arrive, call Check
// periodically to apply the stopping rule to what has arrived from
// every host, and Finish at the end.
//
// Slot k of the merged run covers [origin + k·SlotSpan, +SlotSpan) of
// the controller's clock; a host's slot goes to the k that holds its
// midpoint once mapped by the host's offset, so a host whose clock reads
// seconds apart from the controller's still lands in the right slot. A
// slot that arrives after its stretch was fed (a straggler) is pooled
// into the next stretch not yet fed: counts are never lost.
//
// A Merger is not safe for concurrent use.
type Merger struct {
	opts     Options
	origin   int64
	span     int64
	deadline int64
	hosts    []mergeHost
	pool     map[int64]*pooled
	next     int64 // the first slot index not yet fed
	fedTo    int64 // controller time up to which slots were fed
	m        *measurer
	fed      []fedSlot // every slot fed, to credit its hosts once the window is final
	buf      []pending
	vals     []int64
}

type fedSlot struct {
	start, n int64
	hosts    []int64
}

type mergeHost struct {
	offset  int64
	through int64 // controller time up to which the host has reported
	done    bool
}

type pooled struct {
	hist  *hdrhistogram.Histogram
	n     int64
	hosts []int64 // round trips per host
}

// NewMerger starts a merge of hosts load hosts whose clocks map to the
// controller's by offsets (controller = host + offset). origin is the
// controller's CLOCK_MONOTONIC time the hosts were told to start at:
// the run's first request (Window.FirstT0), where the warm-up and the
// duration cap count from.
func NewMerger(opts Options, origin int64, offsets []int64) *Merger {
	opts.defaults()
	g := &Merger{opts: opts, origin: origin, span: SlotSpan.Nanoseconds(), pool: map[int64]*pooled{}, fedTo: origin}
	for _, off := range offsets {
		g.hosts = append(g.hosts, mergeHost{offset: off, through: origin})
	}
	g.m = newMeasurer(&g.opts, nil, nil, origin)
	g.deadline = g.m.win.WarmupEnd + opts.Duration.Nanoseconds()
	return g
}

// HostOrigin is the slot origin on the clock of host i: where its
// Slotter cuts.
func (g *Merger) HostOrigin(i int) int64 { return g.origin - g.hosts[i].offset }

// Add pools one slot of host i.
func (g *Merger) Add(i int, s Slot) {
	h := &g.hosts[i]
	start, end := s.StartNs+h.offset, s.EndNs+h.offset
	h.through = max(h.through, end)
	if s.Count == 0 {
		return
	}
	k := max(floorDiv((start+end)/2-g.origin, g.span), g.next)
	p := g.pool[k]
	if p == nil {
		p = &pooled{hist: stats.NewHistogram(), hosts: make([]int64, len(g.hosts))}
		g.pool[k] = p
	}
	if s.Hist != nil {
		p.hist.Merge(s.Hist)
	}
	p.n += s.Count
	p.hosts[i] += s.Count
}

// Done says host i has sent its last slot: the merge no longer waits
// for it.
func (g *Merger) Done(i int) { g.hosts[i].done = true }

// Check feeds every slot that all hosts have reported to the measurer,
// applies the stopping rule at the time fed up to, and returns the
// reason to stop, or "" to go on. A host that lags holds the merge
// back, never the other way round: a slot is judged only once it is
// complete.
func (g *Merger) Check() string {
	upTo := int64(math.MaxInt64)
	for _, h := range g.hosts {
		if !h.done {
			upTo = min(upTo, h.through)
		}
	}
	if upTo == math.MaxInt64 {
		upTo = g.fedTo // every host is done: Finish feeds the rest
	}
	fed := false
	for g.origin+(g.next+1)*g.span <= upTo {
		g.feed(g.next)
		g.next++
		fed = true
	}
	if !fed {
		return ""
	}
	now := g.fedTo
	reason := g.m.stop(now, g.deadline, g.m.check(now))
	if reason != "" {
		g.Stop(now)
	}
	return reason
}

// Stop closes the window at controller time at (unless the duration
// cap closed it already): round trips completed later, those in flight
// as the hosts stop, are outside it. Check calls it where the stopping
// rule said stop; the caller, when it stops the run for another reason.
func (g *Merger) Stop(at int64) {
	if g.m.win.End == 0 {
		g.m.win.End = max(at, g.origin)
	}
}

// Progress is the merged run's progress, as a local run reports it.
func (g *Merger) Progress() Progress {
	var start int64
	if g.m.decided {
		start = g.m.win.Start
	}
	return Progress{
		Elapsed: time.Duration(g.fedTo - g.origin), Warmup: !g.m.decided, WindowStart: start, Measured: int(g.m.measured),
		Mean: g.m.mean.Mean, P50: g.m.p50.Mean, P99: g.m.p99.Mean,
		RelCI: g.m.p50.RelHalfWidth(), P99RelCI: g.m.p99.RelHalfWidth(),
	}
}

// feed hands slot k's pooled round trips to the measurer, spread over
// the slot's stretch in random order (see interleave), each as a
// round trip that began at its place in the stretch: so the window,
// which classifies round trips by their start, takes or leaves whole
// slots, and MSER-5, the batches and the checks see the slots in time
// order.
func (g *Merger) feed(k int64) {
	start := g.origin + k*g.span
	if start >= g.deadline && g.m.win.End == 0 {
		// The cap closes the window before the first slot past it is
		// judged, as a local run's does.
		g.m.win.End = g.deadline
	}
	g.fedTo = start + g.span
	p := g.pool[k]
	delete(g.pool, k)
	if p == nil || p.n == 0 {
		g.m.take(nil, g.fedTo)
		return
	}
	vals := interleave(g.vals[:0], p.hist, uint64(k))
	g.vals = vals
	g.buf = g.buf[:0]
	n := int64(len(vals))
	for i, v := range vals {
		t0 := start + int64(i)*g.span/n
		g.buf = append(g.buf, pending{conn: -1, seq: int64(i), r: Record{T0: t0, T1: t0 + v}})
	}
	g.fed = append(g.fed, fedSlot{start: start, n: n, hosts: p.hosts})
	g.m.take(g.buf, g.fedTo)
}

// interleave appends the values held in h to dst in a random order
// (a Fisher–Yates shuffle seeded by seed, so a merge is repeatable).
// The slot's own order is unknown; at random, any stretch of the result
// is a sample of the whole slot, as the slot's round trips in time order
// would be on a steady server. Sorted order would make the batches
// within a slot differ far more than they did, and any fixed pattern
// (a stride through the sorted values) gives batch medians a pattern of
// their own, which the validity checks read as correlation.
//
// Each value is its bin's highest equivalent value, so the merged
// histogram holds exactly the bins the hosts' histograms held.
func interleave(dst []int64, h *hdrhistogram.Histogram, seed uint64) []int64 {
	out := dst
	for _, b := range h.Distribution() {
		for c := int64(0); c < b.Count; c++ {
			out = append(out, b.To)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Finish feeds every slot still pooled, closes the window and returns
// the merged result: the hosts' round trips as one run's, with each
// host's own part in Summary.Hosts. reason is why the run stopped
// (StopTarget when Check said so, StopInterrupted, StopError, ...).
// hosts[i] is host i's final report (name, clients, set-up, client
// load, its own stop reason and error, clock offset); Finish fills in
// each one's Measured and ThroughputRPS.
//
// The window closes where Check or Stop closed it, or at the duration
// cap, or else after the last slot; round trips the hosts completed
// later, finishing those in flight, are outside it, as in a local run.
func (g *Merger) Finish(reason string, hosts []HostLoad) *Summary {
	last := g.next - 1
	for k := range g.pool {
		last = max(last, k)
	}
	for ; g.next <= last; g.next++ {
		g.feed(g.next)
	}
	g.Stop(g.fedTo)
	g.m.finish(g.m.win.End)
	res := &Summary{Options: g.opts, StopReason: reason}
	g.m.check(g.m.win.End)
	res.fill(g.m)

	res.Hosts = make([]HostLoad, len(hosts))
	copy(res.Hosts, hosts)
	for _, s := range g.fed {
		in := int64(0)
		for i := int64(0); i < s.n; i++ {
			if g.m.win.Measured(s.start + i*g.span/s.n) {
				in++
			}
		}
		for h, c := range s.hosts {
			if h < len(res.Hosts) && in > 0 {
				// A slot the window cuts (MSER-5's start) credits each
				// host its share.
				res.Hosts[h].Measured += c * in / s.n
			}
		}
	}
	span := res.Window.Span().Seconds()
	var setup SetupStats
	for i := range res.Hosts {
		h := &res.Hosts[i]
		if span > 0 {
			h.ThroughputRPS = float64(h.Measured) / span
		}
		setup.Connections += h.Setup.Connections
		setup.Attempts += h.Setup.Attempts
		setup.Threads += h.Setup.Threads
		setup.Duration = max(setup.Duration, h.Setup.Duration)
		setup.Slowest = max(setup.Slowest, h.Setup.Slowest)
		setup.Failures = append(setup.Failures, h.Setup.Failures...)
		if setup.Model == "" {
			setup.Model = h.Setup.Model
		}
	}
	if setup.Duration > 0 {
		setup.PerSecond = float64(setup.Connections) / setup.Duration.Seconds()
	}
	res.Setup = setup
	// The client load is each host's own (Hosts): one figure for all
	// would average a saturated host with an idle one.
	res.ClientLoad = ClientLoad{Unknown: "load ran on several hosts: see each host's client load"}
	return res
}

// Merge is the merged result of complete slot streams: streams[i] is
// everything host i reported, on its own clock, mapped by
// hosts[i].OffsetNs; origin is the run's start on the controller's
// clock. The stopping rule is applied slot by slot as the live merge
// would; reason is the stop reason to report when it did not stop the
// run itself.
func Merge(opts Options, origin int64, streams [][]Slot, hosts []HostLoad, reason string) *Summary {
	offsets := make([]int64, len(hosts))
	for i, h := range hosts {
		offsets[i] = h.OffsetNs
	}
	g := NewMerger(opts, origin, offsets)
	for i, ss := range streams {
		for _, s := range ss {
			g.Add(i, s)
		}
		g.Done(i)
	}
	return g.Finish(reason, hosts)
}
