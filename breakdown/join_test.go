package breakdown

import (
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
// with client and server on different CPUs (DESIGN §5).
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
