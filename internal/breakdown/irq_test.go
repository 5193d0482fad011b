package breakdown

import (
	"testing"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// TestJoinCarvesIrqAndUncredited: interrupt records of the thread
// carrying the request leave the components they fall in for *_irq (in
// proportion where a record straddles a boundary), and a preemption starts
// the switch record's uncredited time before the switch; the sum holds.
func TestJoinCarvesIrqAndUncredited(t *testing.T) {
	b := [11]int64{1000, 1300, 5000, 20000, 20000, 21000, 22000, 25000, 40000, 41000, 41500}
	netRX := probe.Interrupt(2<<32 | 3)
	timer := probe.Interrupt(2<<32 | 1)
	irq := func(tid uint32, cpu uint16, from, to, ns int64, what probe.Interrupt) probe.Event {
		return probe.Event{Kind: probe.KindIrq, TS: uint64(to), Arg0: uint64(from), SK: uint64(ns), Arg1: uint64(what), TID: tid, CPU: cpu, Ret: 1}
	}
	for _, tc := range []struct {
		name                  string
		extra                 []probe.Event
		serverUser, serverIrq int64
		serverPre, clientIrq  int64
		names                 map[probe.Interrupt]int64
	}{
		{name: "none", serverUser: 1000},
		{name: "within server_user", extra: []probe.Event{irq(stid, 0, 21200, 21500, 300, netRX)},
			serverUser: 700, serverIrq: 300, names: map[probe.Interrupt]int64{netRX: 300}},
		// A record of 400 ns over [20800, 21200]: half before b5 (server_kernel_recv), half after.
		{name: "straddles b5", extra: []probe.Event{irq(stid, 0, 20800, 21200, 400, timer)},
			serverUser: 800, serverIrq: 400, names: map[probe.Interrupt]int64{timer: 400}},
		{name: "another thread's", extra: []probe.Event{irq(stid+1, 0, 21200, 21500, 300, netRX)}, serverUser: 1000},
		{name: "client side", extra: []probe.Event{irq(ctid, 1, 1100, 1200, 50, timer)}, serverUser: 1000, clientIrq: 50},
		// Preempted at 21600 with 200 ns uncredited before it, back at 21800.
		{name: "uncredited", extra: []probe.Event{
			{Kind: probe.KindSwitch, TS: 21600, SK: 200, Arg0: stid, Arg1: 999, CPU: 0},
			{Kind: probe.KindSwitch, TS: 21800, Arg0: 999, Arg1: stid, CPU: 0},
		}, serverUser: 600, serverPre: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := append(crossCPU(b[0], b), tc.extra...)
			res := Join(Input{
				Conns:      []loadgen.Conn{{ConnInfo: loadgen.ConnInfo{TID: ctid, LocalPort: cport}, Records: []loadgen.Record{{T0: b[0], T1: b[10]}}}},
				ServerPort: sport, Events: evs,
			})
			if res.Joined != 1 {
				t.Fatalf("joined %d, reasons %v", res.Joined, res.Reasons)
			}
			rt := res.Trips[0]
			var sum int64
			for _, v := range rt.Ns {
				sum += v
			}
			if sum != b[10]-b[0] {
				t.Errorf("components sum to %d, want %d", sum, b[10]-b[0])
			}
			got := [4]int64{rt.Ns[ServerUser], rt.Ns[ServerIrq], rt.Ns[ServerPreempted], rt.Ns[ClientIrq]}
			want := [4]int64{tc.serverUser, tc.serverIrq, tc.serverPre, tc.clientIrq}
			if got != want {
				t.Errorf("server_user, server_irq, server_preempted, client_irq = %v, want %v", got, want)
			}
			for what, ns := range tc.names {
				var named int64
				for _, q := range rt.Irqs[:rt.NIrqs] {
					if q.What == what && q.Component == ServerIrq {
						named += q.Ns
					}
				}
				if named != ns {
					t.Errorf("%s named for %d ns, want %d", what, named, ns)
				}
			}
		})
	}
}
