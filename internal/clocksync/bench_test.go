package clocksync

import (
	"testing"

	"github.com/volleyscope/volleyscope/probe"
)

// BenchmarkMatcherEvent is the controller's cost per net event of the
// two hosts (a Matcher feeding an Estimator): round trips on 64
// connections, one segment each way, every 10 µs, B's clock 3.7 s ahead
// and drifting 20 µs/s, events in time order. "watermarks": both hosts'
// watermarks given every 1024 events, 50 ms behind (as a run gives
// them); "reorder": none, so pairs wait ReorderNs and hold 100,000
// segments per direction meanwhile.
func BenchmarkMatcherEvent(b *testing.B) {
	for _, c := range []struct {
		name string
		wm   bool
		o    MatcherOptions
	}{
		{"watermarks", true, MatcherOptions{}},
		{"reorder", false, MatcherOptions{MaxPending: 1 << 18}},
	} {
		b.Run(c.name, func(b *testing.B) { benchMatcher(b, c.wm, c.o) })
	}
}

func benchMatcher(b *testing.B, watermarks bool, o MatcherOptions) {
	e := New(Options{})
	m := NewMatcher(e, o)
	const conns, gap = 64, 10_000
	theta := func(t int64) int64 { return 3_700_000_000 + t/50_000 }
	var ev probe.Event
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rt, step := int64(i/4), i%4
		t := 1_000_000_000 + rt*gap
		j := uint16(rt % conns)
		seq := uint32(rt / conns * 100)
		switch step {
		case 0:
			ev = probe.Event{TS: uint64(t), Kind: probe.KindNetXmit, Lport: 40000 + j, Rport: serverPort, Arg0: uint64(seq), Ret: 100}
			m.Local(&ev)
		case 1:
			r := t + 9_000 + rt%7*300
			ev = probe.Event{TS: uint64(r + theta(r)), Kind: probe.KindNetRecv, Lport: serverPort, Rport: 40000 + j, Arg0: uint64(seq), Ret: 100}
			m.Remote(&ev)
		case 2:
			s := t + 30_000
			ev = probe.Event{TS: uint64(s + theta(s)), Kind: probe.KindNetXmit, Lport: serverPort, Rport: 40000 + j, Arg0: uint64(seq), Ret: 100}
			m.Remote(&ev)
		case 3:
			ev = probe.Event{TS: uint64(t + 40_000 + rt%5*300), Kind: probe.KindNetRecv, Lport: 40000 + j, Rport: serverPort, Arg0: uint64(seq), Ret: 100}
			m.Local(&ev)
		}
		if watermarks && i%1024 == 1023 {
			w := t - 50_000_000
			m.Watermarks(w, w+theta(w))
		}
	}
	st := m.Stats()
	if b.N > 2_000_000 && (st.PairsAB < int64(b.N)/8 || st.PairsBA < int64(b.N)/8) {
		b.Fatalf("too few paired: %+v", st)
	}
	b.ReportMetric(float64(st.PairsAB+st.PairsBA)/float64(b.N), "pairs/event")
}

// BenchmarkToController is the cost of mapping one agent event's time
// onto the controller's, the times advancing as a run's do.
func BenchmarkToController(b *testing.B) {
	const s = int64(1e9)
	sm := sim{Clock: clock{Offset: 3_700_000_000, Drift: 20_000}, AB: path{4_000, 30_000}, BA: path{4_000, 30_000}, Rate: 1000, Start: 0, Dur: 10 * s, Seed: 1}
	e := sm.run(Options{}, nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		t := int64(i%1_000_000) * 5_000
		_, _ = e.ToController(t + 3_700_000_000)
	}
}
