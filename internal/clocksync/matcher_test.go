package clocksync

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/volleyscope/volleyscope/probe"
)

const serverPort = 9000

// arrival is an event as a Matcher receives it: from host A (0) or B
// (1), at a controller time that is not its own.
type arrival struct {
	host int
	at   int64
	e    probe.Event
}

// traffic is request/response round trips on Conns connections, each
// way one data segment, from controller time Start for Dur at Rate
// round trips per second; each host's events arrive up to Jitter late
// (a reader draining per-CPU rings), B's a further Lag.
type traffic struct {
	Clock        clock
	AB, BA       path
	Conns        int
	Rate         float64
	Start, Dur   int64
	Jitter, Lag  int64
	Seed         uint64
	ReqLen, Resp uint32
}

// expected is one sample the traffic should give.
type expected struct{ send, recv int64 }

func (tr traffic) events() (evs []arrival, ab, ba []expected) {
	r := rand.New(rand.NewPCG(tr.Seed, 9))
	seqC := make([]uint32, tr.Conns)
	seqS := make([]uint32, tr.Conns)
	for i := range seqC {
		seqC[i], seqS[i] = r.Uint32(), r.Uint32()
	}
	reqLen, respLen := max(tr.ReqLen, 1), max(tr.Resp, 1)
	add := func(host int, ts int64, kind probe.Kind, l, rp uint16, seq, n uint32, realA int64) {
		at := realA + r.Int64N(tr.Jitter+1)
		if host == hostB {
			at += tr.Lag
		}
		evs = append(evs, arrival{host: host, at: at, e: probe.Event{TS: uint64(ts), Kind: kind, Lport: l, Rport: rp, Arg0: uint64(seq), Ret: int32(n), SK: 1}})
	}
	for t := tr.Start; t < tr.Start+tr.Dur; t += int64(r.ExpFloat64() * 1e9 / tr.Rate) {
		j := r.IntN(tr.Conns)
		cport := uint16(40000 + j)
		d1 := tr.AB.delay(r)
		recvReal := t + d1
		recvB := recvReal + tr.Clock.theta(recvReal)
		add(hostA, t, probe.KindNetXmit, cport, serverPort, seqC[j], reqLen, t)
		add(hostB, recvB, probe.KindNetRecv, serverPort, cport, seqC[j], reqLen, recvReal)
		ab = append(ab, expected{t, recvB})
		sendReal := recvReal + 20_000
		sendB := sendReal + tr.Clock.theta(sendReal)
		d2 := tr.BA.delay(r)
		add(hostB, sendB, probe.KindNetXmit, serverPort, cport, seqS[j], respLen, sendReal)
		add(hostA, sendReal+d2, probe.KindNetRecv, cport, serverPort, seqS[j], respLen, sendReal+d2)
		ba = append(ba, expected{sendB, sendReal + d2})
		seqC[j] += reqLen
		seqS[j] += respLen
	}
	slices.SortStableFunc(evs, func(a, b arrival) int { return cmpInt(a.at, b.at) })
	return evs, ab, ba
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// feed gives the events to m in arrival order.
func feed(m *Matcher, evs []arrival, after func(at int64)) {
	for i := range evs {
		if evs[i].host == hostA {
			m.Local(&evs[i].e)
		} else {
			m.Remote(&evs[i].e)
		}
		if after != nil {
			after(evs[i].at)
		}
	}
}

// recorder is a Sink that keeps the samples.
type recorder struct{ ab, ba []expected }

func (r *recorder) AddAB(s, v int64) { r.ab = append(r.ab, expected{s, v}) }
func (r *recorder) AddBA(s, v int64) { r.ba = append(r.ba, expected{s, v}) }

func sortExp(s []expected) {
	slices.SortFunc(s, func(a, b expected) int {
		if c := cmpInt(a.send, b.send); c != 0 {
			return c
		}
		return cmpInt(a.recv, b.recv)
	})
}

// TestMatcherPairs: every segment of every connection is paired with its
// own receive and no other, whatever the order the events arrive in.
func TestMatcherPairs(t *testing.T) {
	const s = int64(1e9)
	for _, c := range []struct {
		name        string
		jitter, lag int64
		sink        string
	}{
		{"in order", 0, 0, "recorder"},
		{"each host out of order by 300 ms, B 200 ms behind", 300_000_000, 200_000_000, "recorder"},
		{"out of order by 900 ms, B 1.5 s behind", 900_000_000, 1_500_000_000, "recorder"},
		{"A behind B", 300_000_000, -800_000_000, "recorder"},
		{"out of order, with an estimator's mapping", 300_000_000, 200_000_000, "estimator"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := traffic{Clock: clock{Offset: 7 * s, Drift: 20_000}, AB: path{5_000, 20_000}, BA: path{5_000, 20_000}, Conns: 8, Rate: 2000, Start: 3 * s, Dur: 5 * s, Jitter: c.jitter, Lag: c.lag, Seed: 1, ReqLen: 100, Resp: 1400}
			evs, wantAB, wantBA := tr.events()
			rec := &recorder{}
			var sink Sink = rec
			if c.sink == "estimator" {
				sink = &both{rec, New(Options{})}
			}
			m := NewMatcher(sink, MatcherOptions{})
			feed(m, evs, nil)
			m.Flush()
			st := m.Stats()
			sortExp(rec.ab)
			sortExp(rec.ba)
			sortExp(wantAB)
			sortExp(wantBA)
			if !slices.Equal(rec.ab, wantAB) || !slices.Equal(rec.ba, wantBA) {
				t.Errorf("pairs A→B %d (want %d), B→A %d (want %d); stats %+v", len(rec.ab), len(wantAB), len(rec.ba), len(wantBA), st)
			}
			if st.Unmatched != 0 || st.Retransmits != 0 || st.Overflow != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// both is an Estimator that also records its samples.
type both struct {
	*recorder
	*Estimator
}

func (b *both) AddAB(s, v int64) { b.recorder.AddAB(s, v); b.Estimator.AddAB(s, v) }
func (b *both) AddBA(s, v int64) { b.recorder.AddBA(s, v); b.Estimator.AddBA(s, v) }

// seg builds a net event.
func seg(kind probe.Kind, ts int64, l, r uint16, seq uint32, n int32) probe.Event {
	return probe.Event{TS: uint64(ts), Kind: kind, Lport: l, Rport: r, Arg0: uint64(seq), Ret: n}
}

// TestMatcherCases: sequence numbers that wrap, a receive inside a
// larger transmit, retransmits in either arrival order, and what is left
// unpaired.
func TestMatcherCases(t *testing.T) {
	const c, sp = 40000, serverPort
	type in struct {
		host int
		e    probe.Event
	}
	x := func(h int, ts int64, l, r uint16, seq uint32, n int32) in {
		return in{h, seg(probe.KindNetXmit, ts, l, r, seq, n)}
	}
	rv := func(h int, ts int64, l, r uint16, seq uint32, n int32) in {
		return in{h, seg(probe.KindNetRecv, ts, l, r, seq, n)}
	}
	for _, tc := range []struct {
		name      string
		evs       []in
		ab, ba    []expected
		unmatched int64
		retrans   int64
	}{
		{
			name: "exact",
			evs:  []in{x(hostA, 1000, c, sp, 5, 100), rv(hostB, 9000, sp, c, 5, 100), x(hostB, 9500, sp, c, 77, 10), rv(hostA, 1800, c, sp, 77, 10)},
			ab:   []expected{{1000, 9000}}, ba: []expected{{9500, 1800}},
		},
		{
			name: "receive before transmit in arrival",
			evs:  []in{rv(hostB, 9000, sp, c, 5, 100), x(hostA, 1000, c, sp, 5, 100)},
			ab:   []expected{{1000, 9000}},
		},
		{
			name: "sequence wraps: receive inside a transmit across 2³²",
			evs:  []in{x(hostA, 1000, c, sp, 0xffffff00, 0x200), rv(hostB, 9000, sp, c, 0x10, 1448)},
			ab:   []expected{{1000, 9000}},
		},
		{
			name: "receive of the second part of a TSO transmit",
			evs:  []in{x(hostA, 1000, c, sp, 1_000_000, 65_000), rv(hostB, 9000, sp, c, 1_000_000, 1448), rv(hostB, 9010, sp, c, 1_001_448, 1448)},
			ab:   []expected{{1000, 9000}, {1000, 9010}},
		},
		{
			name:    "retransmit: the earliest transmit counts",
			evs:     []in{x(hostA, 1000, c, sp, 5, 100), x(hostA, 201_000, c, sp, 5, 100), rv(hostB, 205_000, sp, c, 5, 100)},
			ab:      []expected{{1000, 205_000}},
			retrans: 1,
		},
		{
			name:    "retransmit arriving before the first copy",
			evs:     []in{x(hostA, 201_000, c, sp, 5, 100), rv(hostB, 9000, sp, c, 5, 100), x(hostA, 1000, c, sp, 5, 100)},
			ab:      []expected{{1000, 9000}},
			retrans: 1,
		},
		{
			name:    "partial retransmit from inside the first",
			evs:     []in{x(hostA, 1000, c, sp, 5, 1000), x(hostA, 300_000, c, sp, 505, 500), rv(hostB, 310_000, sp, c, 505, 500)},
			ab:      []expected{{1000, 310_000}},
			retrans: 0,
		},
		{
			name:      "other connection, other direction, no payload: no pair",
			evs:       []in{x(hostA, 1000, c, sp, 5, 100), rv(hostB, 9000, sp, c+1, 5, 100), rv(hostA, 9000, c, sp, 5, 100), x(hostB, 1000, sp, c, 9, 0), rv(hostA, 2000, c, sp, 9, 0)},
			unmatched: 2,
		},
		{
			name: "non-net events are ignored",
			evs:  []in{{hostA, probe.Event{TS: 5, Kind: probe.KindSyscall, Ret: 100, Lport: c, Rport: sp}}, {hostB, probe.Event{TS: 5, Kind: probe.KindDataReady, Ret: 100, Lport: sp, Rport: c}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			m := NewMatcher(rec, MatcherOptions{})
			for i := range tc.evs {
				if tc.evs[i].host == hostA {
					m.Local(&tc.evs[i].e)
				} else {
					m.Remote(&tc.evs[i].e)
				}
			}
			if len(rec.ab)+len(rec.ba) != 0 {
				t.Errorf("paired before the events settled: %v %v", rec.ab, rec.ba)
			}
			m.Flush()
			if !slices.Equal(rec.ab, tc.ab) || !slices.Equal(rec.ba, tc.ba) {
				t.Errorf("A→B %v, B→A %v; want %v, %v", rec.ab, rec.ba, tc.ab, tc.ba)
			}
			st := m.Stats()
			if st.Unmatched != tc.unmatched || st.Retransmits != tc.retrans {
				t.Errorf("stats %+v; want %d unmatched, %d retransmits", st, tc.unmatched, tc.retrans)
			}
		})
	}
}

// TestMatcherSettles: a pair is given once both hosts' events have come
// ReorderNs past it, or a watermark passed it, not before.
func TestMatcherSettles(t *testing.T) {
	rec := &recorder{}
	m := NewMatcher(rec, MatcherOptions{ReorderNs: 1000})
	a := seg(probe.KindNetXmit, 100, 40000, serverPort, 5, 10)
	b := seg(probe.KindNetRecv, 5100, serverPort, 40000, 5, 10)
	m.Local(&a)
	m.Remote(&b)
	later := seg(probe.KindSyscall, 6100, 0, 0, 0, 0)
	m.Remote(&later)
	if len(rec.ab) != 0 {
		t.Fatal("paired before A's events settled past the transmit")
	}
	later.TS = 1101
	m.Local(&later)
	if len(rec.ab) != 1 {
		t.Fatalf("not paired once both settled: %v", rec.ab)
	}
	c := seg(probe.KindNetXmit, 200, 40000, serverPort, 15, 10)
	d := seg(probe.KindNetRecv, 5200, serverPort, 40000, 15, 10)
	m.Local(&c)
	m.Remote(&d)
	m.Watermarks(300, 5300)
	if len(rec.ab) != 2 {
		t.Fatalf("not paired at the watermarks: %v", rec.ab)
	}
}

// TestMatcherBounded: receives that never pair are held no more than
// MaxPending per host, transmits no more than twice that, and the
// connections' lists no more than maxFlows.
func TestMatcherBounded(t *testing.T) {
	rec := &recorder{}
	const maxPending = 1000
	m := NewMatcher(rec, MatcherOptions{MaxPending: maxPending})
	for i := range 200_000 {
		x := seg(probe.KindNetXmit, int64(i), uint16(i), serverPort, uint32(i), 100)
		r := seg(probe.KindNetRecv, int64(i), serverPort, uint16(i), uint32(i)+1_000_000, 100)
		m.Local(&x)
		m.Remote(&r)
		x.Lport, x.Rport = serverPort, uint16(i)
		m.Remote(&x)
	}
	for i := range m.h {
		h := &m.h[i]
		if h.xq.len() > 2*maxPending || len(h.xmits) > 2*maxPending || h.rq.len() > maxPending || len(h.flows) > maxFlows {
			t.Errorf("host %d holds %d transmits (%d keys), %d receives, %d flows", i, h.xq.len(), len(h.xmits), h.rq.len(), len(h.flows))
		}
		if len(h.xq.buf) > 4*maxPending || len(h.rq.buf) > 2*maxPending {
			t.Errorf("host %d buffers %d, %d", i, len(h.xq.buf), len(h.rq.buf))
		}
	}
	if st := m.Stats(); st.Overflow == 0 || len(rec.ab)+len(rec.ba) != 0 {
		t.Errorf("stats %+v, pairs %d", st, len(rec.ab)+len(rec.ba))
	}
}

// TestMatcherEstimates: the run's own segments, paired as they arrive
// out of order, give θ within the interval at every point, asked as soon
// as Ready says so.
func TestMatcherEstimates(t *testing.T) {
	const s = int64(1e9)
	for _, c := range []struct {
		name  string
		clock clock
		ab    path
		ba    path
	}{
		{"offset and drift", clock{Offset: 3_700_000_000, Drift: 20_000}, path{5_000, 20_000}, path{5_000, 20_000}},
		{"asymmetric, slewed", clock{Offset: -2 * s, Drift: 30_000, Drift2: -10_000, Change: 10 * s}, path{25_000, 20_000}, path{5_000, 40_000}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := traffic{Clock: c.clock, AB: c.ab, BA: c.ba, Conns: 16, Rate: 1000, Start: 3 * s, Dur: 15 * s, Jitter: 300_000_000, Lag: 200_000_000, Seed: seedFor(t), ReqLen: 100, Resp: 1400}
			evs, _, _ := tr.events()
			e := New(Options{})
			m := NewMatcher(e, MatcherOptions{})
			k := &checker{t: t, c: c.clock, next: tr.Start, to: tr.Start + tr.Dur, step: 5_000_000}
			var held, n, heldMax int64
			feed(m, evs, func(at int64) {
				from := k.next
				k.after(e)
				for x := from; x < k.next; x += k.step {
					held += at - x
					heldMax = max(heldMax, at-x)
					n++
				}
			})
			m.Flush()
			miss, med, mx := k.finish(e)
			t.Logf("half-width median %d ns, max %d ns; a time is ready %.2f s after it (mean; max %.2f s); %+v; %+v", med, mx, float64(held)/float64(max(n, 1))/1e9, float64(heldMax)/1e9, m.Stats(), e.Report())
			if miss > 0 {
				t.Errorf("θ outside the interval by up to %d ns", miss)
			}
		})
	}
}

// TestMatcherOverflowPairs: past MaxPending a receive is paired at once,
// without waiting to settle; its transmit is still held (twice as many
// transmits are kept), so nothing but the last MaxPending is lost.
func TestMatcherOverflowPairs(t *testing.T) {
	const s = int64(1e9)
	tr := traffic{Clock: clock{Offset: 7 * s, Drift: 20_000}, AB: path{5_000, 20_000}, BA: path{5_000, 20_000}, Conns: 8, Rate: 20_000, Start: 3 * s, Dur: s / 2, Seed: 1, ReqLen: 100, Resp: 1400}
	evs, wantAB, wantBA := tr.events()
	rec := &recorder{}
	const maxPending = 64
	m := NewMatcher(rec, MatcherOptions{MaxPending: maxPending})
	feed(m, evs, nil)
	st := m.Stats()
	if lost := int64(len(wantAB)+len(wantBA)) - st.PairsAB - st.PairsBA; st.Overflow == 0 || lost > 2*maxPending+2 || st.Unmatched > 0 {
		t.Errorf("%d pairs lost of %d; stats %+v", lost, len(wantAB)+len(wantBA), st)
	}
}
