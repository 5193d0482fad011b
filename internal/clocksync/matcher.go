package clocksync

import (
	"math"

	"github.com/volleyscope/volleyscope/probe"
)

// Defaults of MatcherOptions.
const (
	DefaultReorderNs  = 1_000_000_000 // 1 s
	DefaultWaitNs     = 2_000_000_000 // 2 s
	DefaultKeepNs     = 3_000_000_000 // 3 s
	DefaultMaxPending = 1 << 16
	// maxFlows bounds the per-connection lists of recent transmits;
	// past it they are forgotten at once (only segments split or
	// merged on the way need them).
	maxFlows = 1 << 12
	// recentXmits is how many of a connection's latest transmits are
	// searched for a receive that starts inside one (TSO, partial
	// retransmits).
	recentXmits = 16
	// passMargin is how far past a receive's time, mapped onto the
	// sender's clock, the sender's events must be complete before the
	// receive is given up as unmatched: the mapping there is good to
	// far better than this.
	passMargin = 10_000_000
)

// MatcherOptions tune a Matcher. The zero value is the defaults.
type MatcherOptions struct {
	// ReorderNs is how far out of time order one host's events may
	// arrive (each host's reader drains per-CPU rings in turn): an
	// event is settled once one stamped this much later was seen, or a
	// watermark passed it. Default 1 s.
	ReorderNs int64
	// WaitNs is how long, on its own host's clock, a receive waits for
	// the transmit it belongs to while the other host's clock cannot be
	// mapped yet; then it is dropped as unmatched. Default 2 s.
	WaitNs int64
	// KeepNs is how long, past settling, a transmit is kept for
	// receives to match: at least how far the other host's events may
	// lag this host's in arriving. Default 3 s.
	KeepNs int64
	// MaxPending is the most receives held per host, waiting to be
	// paired; past it the oldest is paired at once if it can be, or
	// dropped. Twice as many transmits are held, so that a receive let
	// go early still finds its transmit. Default 65536: enough for the
	// events of ReorderNs (or of the time between Watermarks calls) at
	// the rate the probes sustain.
	MaxPending int
}

func (o MatcherOptions) withDefaults() MatcherOptions {
	if o.ReorderNs <= 0 {
		o.ReorderNs = DefaultReorderNs
	}
	if o.WaitNs <= 0 {
		o.WaitNs = DefaultWaitNs
	}
	if o.KeepNs <= 0 {
		o.KeepNs = DefaultKeepNs
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	o.MaxPending = max(o.MaxPending, 16)
	return o
}

// Sink takes the one-way samples a Matcher pairs: an Estimator. If it
// also has At (an Estimator does), the Matcher uses it to give up on a
// receive without a transmit as soon as the other host's events have
// passed it, instead of after MatcherOptions.WaitNs.
type Sink interface {
	AddAB(sendA, recvB int64)
	AddBA(sendB, recvA int64)
}

type mapper interface {
	At(tA int64) (theta, halfWidth int64, ok bool)
}

// Hosts, as indices: A is the controller (Local), B the agent (Remote).
const (
	hostA = 0
	hostB = 1
)

// Matcher pairs the TCP data segments that both hosts' probes saw, by
// connection and sequence number, and hands each pair to a Sink as a
// one-way sample: a segment handed to a device on one host (KindNetXmit)
// and its receive processing starting on the other (KindNetRecv).
//
// A receive is paired with the earliest transmit seen of the bytes it
// starts with, once both hosts' events are complete past those times.
// Any receive of the bytes follows their first transmission, whichever
// copy arrived, so the pair is a true bound (u ≥ θ, v ≥ −θ), loose by a
// retransmission timeout at worst when the first copy was lost on the
// way, which the envelope then ignores. Pairing with a later copy
// instead could undercut θ by that timeout, and dropping every
// retransmitted segment would keep the bound only as long as no
// transmit record of the first copy was lost.
//
// Memory is bounded by MatcherOptions: unmatched entries go after
// KeepNs or WaitNs, or when MaxPending is reached. A Matcher is not safe
// for concurrent use.
type Matcher struct {
	sink   Sink
	mapper mapper // sink's At, nil if it has none
	o      MatcherOptions
	h      [2]host
	flush  bool

	// A coarse θ for giving up on receives, refreshed as A's events
	// advance.
	theta            int64
	thetaAt          int64
	thetaOK, triedAt bool

	stats MatchStats
}

// host is one host's pending segments.
type host struct {
	maxTS int64 // latest event time seen
	wm    int64 // latest watermark given
	seen  bool

	xmits map[uint64]xmit      // by xkey: the earliest transmit of a segment start
	xq    ring[xref]           // transmits in arrival order, for expiry
	flows map[uint32]*flowLast // by sender's ports: its latest transmits
	rq    ring[recv]           // receives in arrival order, waiting to be paired

	// The receive at rq's head waits until this host's settled time
	// reaches waitSelf or the other host's reaches waitPeer.
	waitSelf, waitPeer int64
	blocked            bool
}

type xmit struct {
	ts   int64
	len  uint32
	refs uint32 // xq entries for this key
}

type xref struct {
	key uint64
	ts  int64
}

type recv struct {
	ts           int64
	sport, dport uint16 // the sender's ports: its local, its remote
	seq          uint32
}

// flowLast is a connection's latest transmits, in a circle.
type flowLast struct {
	x   [recentXmits]span
	pos int
}

// span is a transmitted segment's bytes: seq … seq+len (modulo 2³²).
type span struct {
	seq, len uint32
	ts       int64
}

// xkey packs a segment's sender ports and starting sequence number.
func xkey(sport, dport uint16, seq uint32) uint64 {
	return uint64(sport)<<48 | uint64(dport)<<32 | uint64(seq)
}

// MatchStats counts what a Matcher saw and paired.
type MatchStats struct {
	XmitA   int64 `json:"xmit_a"`   // data segments transmitted by A (the controller's host)
	XmitB   int64 `json:"xmit_b"`   // and by B (the agent's)
	RecvA   int64 `json:"recv_a"`   // receives on A
	RecvB   int64 `json:"recv_b"`   // and on B
	PairsAB int64 `json:"pairs_ab"` // A→B segments paired: samples given
	PairsBA int64 `json:"pairs_ba"`
	// Unmatched are receives given up without a transmit (its record
	// lost, or a peer the other probe does not see).
	Unmatched int64 `json:"unmatched"`
	// Retransmits are transmits of a segment start seen before.
	Retransmits int64 `json:"retransmits"`
	// Overflow counts entries let go early at MaxPending.
	Overflow int64 `json:"overflow"`
}

// NewMatcher returns a Matcher that hands its samples to sink.
func NewMatcher(sink Sink, o MatcherOptions) *Matcher {
	m := &Matcher{sink: sink, o: o.withDefaults()}
	m.mapper, _ = sink.(mapper)
	for i := range m.h {
		m.h[i].xmits = make(map[uint64]xmit)
		m.h[i].flows = make(map[uint32]*flowLast)
		m.h[i].wm = math.MinInt64
	}
	return m
}

// Local takes an event of host A, the controller's, on its clock. Every
// event may be given (each one's time tells how far A's events have
// come); only KindNetXmit and KindNetRecv with payload are kept.
func (m *Matcher) Local(e *probe.Event) { m.event(hostA, e) }

// Remote takes an event of host B, the agent's, on the agent's own
// clock: before any mapping onto the controller's.
func (m *Matcher) Remote(e *probe.Event) { m.event(hostB, e) }

// Watermarks says that every event of A stamped before local, and of B
// before remote (its own clock), has been given: pairs up to there need
// not wait ReorderNs.
func (m *Matcher) Watermarks(local, remote int64) {
	m.h[hostA].wm = max(m.h[hostA].wm, local)
	m.h[hostB].wm = max(m.h[hostB].wm, remote)
	m.drain()
}

// Flush pairs what can be paired now that no more events will come, and
// lets go of the rest.
func (m *Matcher) Flush() {
	m.flush = true
	m.drain()
	m.flush = false
	for i := range m.h {
		h := &m.h[i]
		m.stats.Unmatched += int64(h.rq.len())
		h.rq.reset()
		h.xq.reset()
		clear(h.xmits)
		clear(h.flows)
		h.blocked = false
	}
}

// Settled is how far each host's events are in and settled: host A's
// on its clock, host B's on its own. A segment sent and received before
// them has been paired (or given up) already; the estimate at a time
// short of them will not change for want of its segments.
func (m *Matcher) Settled() (a, b int64) { return m.settled(hostA), m.settled(hostB) }

// Stats counts what the Matcher saw and paired so far.
func (m *Matcher) Stats() MatchStats { return m.stats }

func (m *Matcher) event(i int, e *probe.Event) {
	h := &m.h[i]
	ts := int64(e.TS)
	if !h.seen || ts > h.maxTS {
		h.maxTS, h.seen = ts, true
	}
	if e.Ret > 0 {
		switch e.Kind {
		case probe.KindNetXmit:
			m.addXmit(i, ts, e.Lport, e.Rport, uint32(e.Arg0), uint32(e.Ret))
		case probe.KindNetRecv:
			// Ports as the receiving socket sees them: the sender's
			// are the other way round.
			m.addRecv(i, recv{ts: ts, sport: e.Rport, dport: e.Lport, seq: uint32(e.Arg0)})
		}
	}
	m.drain()
}

func (m *Matcher) addXmit(i int, ts int64, sport, dport uint16, seq, n uint32) {
	h := &m.h[i]
	if i == hostA {
		m.stats.XmitA++
	} else {
		m.stats.XmitB++
	}
	k := xkey(sport, dport, seq)
	if x, ok := h.xmits[k]; ok {
		m.stats.Retransmits++
		x.ts, x.len, x.refs = min(x.ts, ts), max(x.len, n), x.refs+1
		h.xmits[k] = x
	} else {
		h.xmits[k] = xmit{ts: ts, len: n, refs: 1}
	}
	h.xq.push(xref{key: k, ts: ts})
	fk := uint32(sport)<<16 | uint32(dport)
	f := h.flows[fk]
	if f == nil {
		if len(h.flows) >= maxFlows {
			clear(h.flows)
		}
		f = new(flowLast)
		h.flows[fk] = f
	}
	f.x[f.pos] = span{seq: seq, len: n, ts: ts}
	f.pos = (f.pos + 1) % recentXmits
}

func (m *Matcher) addRecv(i int, r recv) {
	if i == hostA {
		m.stats.RecvA++
	} else {
		m.stats.RecvB++
	}
	m.h[i].rq.push(r)
}

// settled is the time up to which host i's events are all in.
func (m *Matcher) settled(i int) int64 {
	if m.flush {
		return math.MaxInt64
	}
	h := &m.h[i]
	s := h.wm
	if h.seen {
		s = max(s, satSub(h.maxTS, m.o.ReorderNs))
	}
	return s
}

// drain pairs the receives at the heads of the queues that can be
// paired, then lets go of transmits past keeping.
func (m *Matcher) drain() {
	m.drainRecvs(hostB)
	m.drainRecvs(hostA)
	m.expireXmits(hostA)
	m.expireXmits(hostB)
}

// drainRecvs pairs host i's waiting receives, oldest first, while the
// head can be decided: it waits for its own host's events to settle past
// it (an earlier copy may still come), then for the sender's to settle
// past its transmit (an earlier transmit may still come), or, with no
// transmit, past its own time on the sender's clock.
func (m *Matcher) drainRecvs(i int) {
	h := &m.h[i]
	s := 1 - i
	self, peer := m.settled(i), m.settled(s)
	if h.blocked && self < h.waitSelf && peer < h.waitPeer && h.rq.len() <= m.o.MaxPending {
		return
	}
	h.blocked = false
	for h.rq.len() > 0 {
		r := h.rq.front()
		forced := h.rq.len() > m.o.MaxPending
		if !forced && r.ts > self {
			h.waitSelf, h.waitPeer, h.blocked = r.ts, math.MaxInt64, true
			return
		}
		if ts, ok := m.lookup(s, r); ok {
			if !forced && ts > peer {
				h.waitSelf, h.waitPeer, h.blocked = math.MaxInt64, ts, true
				return
			}
			if i == hostB {
				m.sink.AddAB(ts, r.ts)
				m.stats.PairsAB++
			} else {
				m.sink.AddBA(ts, r.ts)
				m.stats.PairsBA++
			}
		} else if !forced && !m.flush {
			giveUp := satAdd(r.ts, m.o.WaitNs)
			pass, ok := m.onSender(i, r.ts)
			if self < giveUp && (!ok || peer < pass) {
				h.waitSelf, h.waitPeer, h.blocked = giveUp, math.MaxInt64, true
				if ok {
					h.waitPeer = pass
				}
				return
			}
			m.stats.Unmatched++
		} else {
			m.stats.Unmatched++
		}
		if forced {
			m.stats.Overflow++
		}
		h.rq.pop()
	}
}

// onSender is the time on the sender's clock by which a segment received
// at t on host i must have been sent, plus a margin; ok is false while
// the clocks cannot be mapped.
func (m *Matcher) onSender(i int, t int64) (int64, bool) {
	if m.mapper == nil {
		return 0, false
	}
	a := m.h[hostA].maxTS
	if !m.thetaOK || a-m.thetaAt > 100_000_000 || a < m.thetaAt {
		if th, _, ok := m.mapper.At(a); ok {
			m.theta, m.thetaAt, m.thetaOK = th, a, true
		}
	}
	if !m.thetaOK {
		return 0, false
	}
	if i == hostB {
		return satAdd(satSub(t, m.theta), passMargin), true
	}
	return satAdd(satAdd(t, m.theta), passMargin), true
}

// lookup finds the earliest transmit on host s of the bytes r starts
// with: a transmit of the same start, or one of the connection's latest
// whose range holds it (sequence numbers modulo 2³²).
func (m *Matcher) lookup(s int, r recv) (int64, bool) {
	h := &m.h[s]
	ts, ok := int64(0), false
	if x, found := h.xmits[xkey(r.sport, r.dport, r.seq)]; found {
		ts, ok = x.ts, true
	}
	if f := h.flows[uint32(r.sport)<<16|uint32(r.dport)]; f != nil {
		for j := range f.x {
			x := &f.x[j]
			if r.seq-x.seq < x.len && (!ok || x.ts < ts) {
				ts, ok = x.ts, true
			}
		}
	}
	return ts, ok
}

// expireXmits lets go of host i's transmits kept KeepNs past settling,
// or beyond twice MaxPending.
func (m *Matcher) expireXmits(i int) {
	h := &m.h[i]
	old := satSub(m.settled(i), m.o.KeepNs)
	for h.xq.len() > 0 {
		x := h.xq.front()
		forced := h.xq.len() > 2*m.o.MaxPending
		if !forced && x.ts >= old {
			return
		}
		if forced {
			m.stats.Overflow++
		}
		h.xq.pop()
		if v, ok := h.xmits[x.key]; ok {
			if v.refs <= 1 {
				delete(h.xmits, x.key)
			} else {
				v.refs--
				h.xmits[x.key] = v
			}
		}
	}
}

// ring is a FIFO queue that reuses its buffer, growing by doubling.
type ring[T any] struct {
	buf        []T
	head, size int
}

func (q *ring[T]) len() int { return q.size }

func (q *ring[T]) push(v T) {
	if q.size == len(q.buf) {
		nb := make([]T, max(2*len(q.buf), 64))
		for i := range q.size {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = v
	q.size++
}

func (q *ring[T]) front() T { return q.buf[q.head] }

func (q *ring[T]) pop() {
	q.head = (q.head + 1) % len(q.buf)
	q.size--
}

func (q *ring[T]) reset() { q.head, q.size = 0, 0 }
