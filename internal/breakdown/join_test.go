package breakdown

import (
	"slices"
	"testing"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

const (
	ctid  = 100 // client thread
	stid  = 200 // server thread
	sport = 9000
	cport = 40000
)

// stream builds a synthetic event stream for one round trip from t0 = 1000
// with the boundaries b1..b9 given; it is the shape traced on a 6.18 VM
// with client and server on different CPUs (the sender's send runs the
// receiver's softirq and the wake-up IPI on loopback).
func crossCPU(t0 int64, b [11]int64) []probe.Event {
	u := func(v int64) uint64 { return uint64(v) }
	return []probe.Event{
		// client write: the server's data ready and the wake-up run inside it.
		{Kind: probe.KindDataReady, TS: u(b[2]), TID: ctid, CPU: 1, Lport: sport, Rport: cport},
		{Kind: probe.KindWaking, TS: u(b[2] + 100), TID: ctid, CPU: 1, Arg0: stid},
		{Kind: probe.KindSockSend, TS: u(b[2] + 500), TID: ctid, CPU: 1, Lport: cport, Rport: sport, Ret: 4},
		{Kind: probe.KindSyscall, TS: u(b[2] + 600), Arg0: u(b[1]), Arg1: 1, TID: ctid, CPU: 1, Ret: 4},
		{Kind: probe.KindSwitch, TS: u(b[2] + 900), Arg0: ctid, Arg1: 0, CPU: 1, Ret: 1},
		// server wakes, its read (entered long before) returns.
		{Kind: probe.KindSwitch, TS: u(b[3]), Arg0: 0, Arg1: stid, CPU: 0},
		{Kind: probe.KindSockRecv, TS: u(b[5] - 50), TID: stid, CPU: 0, Lport: sport, Rport: cport, Ret: 4},
		{Kind: probe.KindSyscall, TS: u(b[5]), Arg0: u(t0 - 5000), Arg1: 0, TID: stid, CPU: 0, Ret: 4},
		// server write: the client's data ready and wake-up inside it.
		{Kind: probe.KindDataReady, TS: u(b[7]), TID: stid, CPU: 0, Lport: cport, Rport: sport},
		{Kind: probe.KindWaking, TS: u(b[7] + 100), TID: stid, CPU: 0, Arg0: ctid},
		{Kind: probe.KindSockSend, TS: u(b[7] + 400), TID: stid, CPU: 0, Lport: sport, Rport: cport, Ret: 4},
		{Kind: probe.KindSyscall, TS: u(b[7] + 500), Arg0: u(b[6]), Arg1: 1, TID: stid, CPU: 0, Ret: 4},
		// client wakes, its read returns.
		{Kind: probe.KindSwitch, TS: u(b[8]), Arg0: 0, Arg1: ctid, CPU: 1},
		{Kind: probe.KindSockRecv, TS: u(b[9] - 50), TID: ctid, CPU: 1, Lport: cport, Rport: sport, Ret: 4},
		{Kind: probe.KindSyscall, TS: u(b[9]), Arg0: u(b[2] + 1000), Arg1: 0, TID: ctid, CPU: 1, Ret: 4},
	}
}

func TestJoinCrossCPU(t *testing.T) {
	b := [11]int64{1000, 1300, 5000, 20000, 20000, 21000, 22000, 25000, 40000, 41000, 41500}
	in := Input{
		Conns:      []loadgen.Conn{{ConnInfo: loadgen.ConnInfo{ID: 0, TID: ctid, LocalPort: cport}, Records: []loadgen.Record{{T0: b[0], T1: b[10]}}}},
		ServerPort: sport,
		Events:     crossCPU(b[0], b),
	}
	res := Join(in)
	if res.Joined != 1 || res.Consistent != 1 {
		t.Fatalf("joined %d consistent %d, reasons %v", res.Joined, res.Consistent, res.Reasons)
	}
	rt := res.Trips[0]
	if rt.Bounds != b {
		t.Errorf("bounds\n got %v\nwant %v", rt.Bounds, b)
	}
	var sum int64
	for _, v := range rt.Ns {
		sum += v
	}
	if sum != b[10]-b[0] {
		t.Errorf("components sum to %d, want %d", sum, b[10]-b[0])
	}
	if rt.Ns[ServerWakeup] != 15000 || rt.Ns[ClientWakeup] != 15000 {
		t.Errorf("wake-ups %d/%d, want 15000 each", rt.Ns[ServerWakeup], rt.Ns[ClientWakeup])
	}
}

func TestJoinMissingEventsAreCounted(t *testing.T) {
	b := [11]int64{1000, 1300, 5000, 20000, 20000, 21000, 22000, 25000, 40000, 41000, 41500}
	evs := crossCPU(b[0], b)
	for _, tc := range []struct {
		name   string
		drop   probe.Kind
		lport  uint16
		reason string
	}{
		{"no server data ready", probe.KindDataReady, sport, NoServerReady},
		{"no client data ready", probe.KindDataReady, cport, NoClientReady},
		{"no server recv", probe.KindSockRecv, sport, NoServerRecv},
		{"no server send", probe.KindSockSend, sport, NoServerSend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var kept []probe.Event
			for _, e := range evs {
				if e.Kind == tc.drop && e.Lport == tc.lport {
					continue
				}
				kept = append(kept, e)
			}
			res := Join(Input{
				Conns:      []loadgen.Conn{{ConnInfo: loadgen.ConnInfo{TID: ctid, LocalPort: cport}, Records: []loadgen.Record{{T0: b[0], T1: b[10]}}}},
				ServerPort: sport, Events: kept,
			})
			if res.Joined != 0 || res.Unjoined != 1 || res.Reasons[tc.reason] != 1 {
				t.Errorf("joined %d unjoined %d reasons %v, want one unjoined for %q", res.Joined, res.Unjoined, res.Reasons, tc.reason)
			}
		})
	}
}

// preempt is a switch out of tid while runnable at out (prev_state 0: it
// was preempted) and its switch back in at in; in ≤ 0 leaves it out.
func preempt(tid uint32, cpu uint16, out, in int64) []probe.Event {
	evs := []probe.Event{{Kind: probe.KindSwitch, TS: uint64(out), Arg0: uint64(tid), Arg1: 999, CPU: cpu, Ret: 0}}
	if in > 0 {
		evs = append(evs, probe.Event{Kind: probe.KindSwitch, TS: uint64(in), Arg0: 999, Arg1: uint64(tid), CPU: cpu})
	}
	return evs
}

// sleepAt is a switch out of tid going to sleep (prev_state 1).
func sleepAt(tid uint32, cpu uint16, ts int64) probe.Event {
	return probe.Event{Kind: probe.KindSwitch, TS: uint64(ts), Arg0: uint64(tid), CPU: cpu, Ret: 1}
}

func joinOne(t *testing.T, b [11]int64, evs []probe.Event) RoundTrip {
	t.Helper()
	res := Join(Input{
		Conns:      []loadgen.Conn{{ConnInfo: loadgen.ConnInfo{TID: ctid, LocalPort: cport}, Records: []loadgen.Record{{T0: b[0], T1: b[10]}}}},
		ServerPort: sport, Events: evs,
	})
	if res.Joined != 1 || res.Consistent != 1 {
		t.Fatalf("joined %d consistent %d, reasons %v", res.Joined, res.Consistent, res.Reasons)
	}
	rt := res.Trips[0]
	var sum int64
	for c, v := range rt.Ns {
		if v < 0 {
			t.Errorf("%s = %d ns, negative", Component(c), v)
		}
		sum += v
	}
	if sum != b[10]-b[0] {
		t.Errorf("components sum to %d ns, want exactly t1−t0 = %d", sum, b[10]-b[0])
	}
	return rt
}

// TestJoinPreemption: a preemption of the side on the critical path moves
// exactly its runnable-but-off-CPU time out of the component it
// interrupts into that side's *_preempted; one while the other side
// carries the request, or before the wake-up, moves nothing.
func TestJoinPreemption(t *testing.T) {
	b := [11]int64{1000, 1300, 5000, 20000, 20000, 21000, 22000, 25000, 40000, 41000, 41500}
	base := joinOne(t, b, crossCPU(b[0], b)).Ns
	for _, tc := range []struct {
		name  string
		extra []probe.Event
		moved map[Component]int64 // change of each component from base
	}{
		{"server in server_user", preempt(stid, 0, 21200, 21700),
			map[Component]int64{ServerUser: -500, ServerPreempted: 500}},
		{"server across its receive's return", preempt(stid, 0, 20800, 21300),
			map[Component]int64{ServerKernelRecv: -200, ServerUser: -300, ServerPreempted: 500}},
		{"server in its send before the reply is ready", preempt(stid, 0, 23000, 24000),
			map[Component]int64{ServerNet: -1000, ServerPreempted: 1000}},
		{"server after the reply is ready", preempt(stid, 0, 25200, 26000), nil},
		{"server before its data is ready", preempt(stid, 0, 3000, 4000), nil},
		{"server runnable from before its data is ready to its wake-up", preempt(stid, 0, 3000, 0), nil},
		{"client in client_user", preempt(ctid, 1, 1100, 1200),
			map[Component]int64{ClientUser: -100, ClientPreempted: 100}},
		{"client across its send", preempt(ctid, 1, 1200, 2300),
			map[Component]int64{ClientUser: -100, ClientNet: -1000, ClientPreempted: 1100}},
		{"client while the server carries the request", preempt(ctid, 1, 5200, 5600), nil},
		{"client after its wake-up", preempt(ctid, 1, 40200, 40700),
			map[Component]int64{ClientKernelRecv: -500, ClientPreempted: 500}},
		{"client across t1", preempt(ctid, 1, 41300, 42000),
			map[Component]int64{ClientUserRecv: -200, ClientPreempted: 200}},
		{"both sides", append(preempt(ctid, 1, 1100, 1200), preempt(stid, 0, 21200, 21700)...),
			map[Component]int64{ClientUser: -100, ClientPreempted: 100, ServerUser: -500, ServerPreempted: 500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := joinOne(t, b, append(crossCPU(b[0], b), tc.extra...))
			if rt.Bounds != b {
				t.Errorf("bounds moved:\n got %v\nwant %v", rt.Bounds, b)
			}
			for c := range NumComponents {
				if got, want := rt.Ns[c]-base[c], tc.moved[c]; got != want {
					t.Errorf("%s moved by %d ns, want %d", c, got, want)
				}
			}
		})
	}
}

// TestJoinPreemptionHandOff: when one server thread receives and another
// sends (a Go server's goroutine moving between threads), the receiving
// thread carries the request until it goes to sleep and the sending
// thread from then on; the receiver's preemptions after it handed over
// are not the request's.
func TestJoinPreemptionHandOff(t *testing.T) {
	const stid2 = 201
	b := [11]int64{1000, 1300, 5000, 20000, 20000, 21000, 22000, 25000, 40000, 41000, 41500}
	evs := crossCPU(b[0], b)
	for i := range evs {
		if int64(evs[i].TS) >= b[7] && evs[i].TID == stid {
			evs[i].TID = stid2
		}
	}
	evs = append(evs, sleepAt(stid, 0, 21400), probe.Event{Kind: probe.KindSwitch, TS: 21450, Arg1: stid2, CPU: 1})
	for _, tc := range []struct {
		name    string
		extra   []probe.Event
		carved  int64 // from server_user into server_preempted
		wantNet int64
	}{
		{"receiver preempted before it hands over", preempt(stid, 0, 21100, 21300), 200, 3000},
		{"sender preempted after the hand-over", preempt(stid2, 1, 21600, 21800), 200, 3000},
		{"receiver preempted after it handed over", append(
			[]probe.Event{{Kind: probe.KindSwitch, TS: 21500, Arg1: stid, CPU: 0}},
			preempt(stid, 0, 21600, 21900)...), 0, 3000},
		{"sender preempted in its send", preempt(stid2, 1, 23000, 23500), 0, 2500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := joinOne(t, b, append(slices.Clone(evs), tc.extra...))
			if got := rt.Ns[ServerUser]; got != 1000-tc.carved {
				t.Errorf("server_user %d ns, want %d", got, 1000-tc.carved)
			}
			if got := rt.Ns[ServerNet]; got != tc.wantNet {
				t.Errorf("server_net %d ns, want %d", got, tc.wantNet)
			}
			if got, want := rt.Ns[ServerPreempted], tc.carved+3000-tc.wantNet; got != want {
				t.Errorf("server_preempted %d ns, want %d", got, want)
			}
		})
	}
}

// TestSplitAllocatesNothing: split runs once per round trip.
func TestSplitAllocatesNothing(t *testing.T) {
	b := [11]int64{1000, 1300, 5000, 20000, 20000, 21000, 22000, 25000, 40000, 41000, 41500}
	evs := append(crossCPU(b[0], b), preempt(stid, 0, 21200, 21700)...)
	slices.SortStableFunc(evs, byTS)
	j := joiner{ix: buildIndex(evs), ctid: ctid, csk: portPair{cport, sport}, ssk: portPair{sport, cport}}
	rt := RoundTrip{T0: b[0], T1: b[10]}
	if n := testing.AllocsPerRun(100, func() { j.split(&rt) }); n != 0 {
		t.Errorf("split allocates %.0f times per round trip", n)
	}
	if !rt.Joined || rt.Ns[ServerPreempted] != 500 {
		t.Errorf("split: joined %v, server_preempted %d ns, want 500", rt.Joined, rt.Ns[ServerPreempted])
	}
}
