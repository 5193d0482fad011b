package breakdown

import (
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/probe"
)

// TestTablesCountTheWindow: the syscall and io_uring tables of a stream
// count what began inside the measured window, not the warm-up before it
// or what followed the stop, whether the events arrived before the
// window's start was decided or after.
func TestTablesCountTheWindow(t *testing.T) {
	const ms = int64(time.Millisecond)
	s := NewStream(9000, nil, true, time.Second, nil)
	sys := func(enter int64) *probe.Event {
		return &probe.Event{Kind: probe.KindSyscall, TID: 7, TS: uint64(enter + 10_000), Arg0: uint64(enter), Arg1: 0}
	}
	uring := func(ts int64, kind probe.Kind, user uint64) *probe.Event {
		return &probe.Event{Kind: kind, TGID: 7, TS: uint64(ts), Arg0: user, Arg1: 22}
	}
	// Warm-up (before 100 ms), handed over and advanced before the start
	// is decided: held, then left out.
	for _, e := range []*probe.Event{sys(10 * ms), sys(50 * ms), uring(20*ms, probe.KindUringSubmit, 1), uring(30*ms, probe.KindUringComplete, 1)} {
		s.Event(e)
	}
	// Inside the window, still before the decision.
	for _, e := range []*probe.Event{sys(120 * ms), uring(130*ms, probe.KindUringSubmit, 2), uring(140*ms, probe.KindUringComplete, 2)} {
		s.Event(e)
	}
	s.Advance(150 * ms)
	s.SetWindowStart(100 * ms)
	// Inside the window after the decision, and after its end (300 ms).
	for _, e := range []*probe.Event{sys(200 * ms), sys(250 * ms), uring(260*ms, probe.KindUringSubmit, 3), uring(270*ms, probe.KindUringComplete, 3),
		sys(310 * ms), uring(320*ms, probe.KindUringSubmit, 4), uring(330*ms, probe.KindUringComplete, 4)} {
		s.Event(e)
	}
	s.SetWindowEnd(400 * ms)
	s.SetWindowEnd(300 * ms) // the earlier end wins
	s.SetWindowEnd(350 * ms)
	s.Flush()
	var calls int64
	for _, st := range s.Syscalls().Stats() {
		calls += st.Count
	}
	if calls != 3 {
		t.Errorf("syscall table counted %d calls, want the 3 entered in [100 ms, 300 ms)", calls)
	}
	var ops int64
	for _, st := range s.Uring().Stats() {
		ops += st.Count + st.Extra
	}
	if ops != 2 {
		t.Errorf("io_uring table counted %d requests, want the 2 submitted in the window", ops)
	}
}
