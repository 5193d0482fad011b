package breakdown

import (
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// TestSplitClient: a round trip of the client's side alone, its server
// on another host, through the stream a watch uses. With the packet
// records the rest is beyond_host from the request's last transmit to the
// receive of the reply's last segment; without them, from the send's
// return to the reply's data ready. The client's preemption is carved
// from its own parts only, and the parts sum to the round trip exactly.
func TestSplitClient(t *testing.T) {
	const t0, t1 = 10_000, 60_000
	ev := func(k probe.Kind, ts int64, l, r uint16) probe.Event {
		return probe.Event{Kind: k, TS: uint64(ts), TID: ctid, CPU: 1, Lport: l, Rport: r, Ret: 4}
	}
	base := []probe.Event{
		ev(probe.KindSendStart, t0, cport, sport),
		ev(probe.KindSockSend, 14_000, cport, sport),                              // the send returns after its segment left
		{Kind: probe.KindSwitch, TS: 15_000, Arg0: ctid, Arg1: 0, CPU: 1, Ret: 1}, // asleep for the reply
		{Kind: probe.KindDataReady, TS: 50_000, TID: 0, CPU: 0, Lport: cport, Rport: sport},
		{Kind: probe.KindSwitch, TS: 52_000, Arg0: 0, Arg1: ctid, CPU: 1},
		ev(probe.KindSockRecv, t1, cport, sport),
	}
	xmit := probe.Event{Kind: probe.KindNetXmit, TS: 12_000, TID: ctid, CPU: 1, Lport: cport, Rport: sport, Arg0: 100, Ret: 4}
	recv := probe.Event{Kind: probe.KindNetRecv, TS: 47_000, CPU: 0, Lport: cport, Rport: sport, Arg0: 7, Ret: 4}
	// Packets of the server's socket (another namespace of this kernel)
	// are not the client's.
	server := []probe.Event{
		{Kind: probe.KindNetRecv, TS: 13_000, Lport: sport, Rport: cport, Arg0: 100, Ret: 4},
		{Kind: probe.KindNetXmit, TS: 46_000, Lport: sport, Rport: cport, Arg0: 7, Ret: 4},
		{Kind: probe.KindDataReady, TS: 13_500, Lport: sport, Rport: cport},
	}
	for _, tc := range []struct {
		name   string
		extra  []probe.Event
		want   map[Component]int64
		beyond [2]int64
	}{
		{"packet hooks", []probe.Event{xmit, recv},
			map[Component]int64{ClientNetTx: 2_000, BeyondHost: 35_000, ServerNetRx: 3_000, ClientWakeup: 2_000, ClientKernelRecv: 8_000}, [2]int64{12_000, 47_000}},
		{"no packet hooks", nil,
			map[Component]int64{ClientNet: 4_000, BeyondHost: 36_000, ClientWakeup: 2_000, ClientKernelRecv: 8_000}, [2]int64{14_000, 50_000}},
		{"the reply's receive alone", []probe.Event{recv},
			map[Component]int64{ClientNet: 4_000, BeyondHost: 36_000, ClientWakeup: 2_000, ClientKernelRecv: 8_000}, [2]int64{14_000, 50_000}},
		{"client preempted in its stack", append([]probe.Event{xmit, recv}, preempt(ctid, 1, 11_000, 11_500)...),
			map[Component]int64{ClientNetTx: 1_500, ClientPreempted: 500, BeyondHost: 35_000, ServerNetRx: 3_000, ClientWakeup: 2_000, ClientKernelRecv: 8_000}, [2]int64{12_000, 47_000}},
		{"the server's packets", append([]probe.Event{xmit, recv}, server...),
			map[Component]int64{ClientNetTx: 2_000, BeyondHost: 35_000, ServerNetRx: 3_000, ClientWakeup: 2_000, ClientKernelRecv: 8_000}, [2]int64{12_000, 47_000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []RoundTrip
			s := NewStream(sport, []loadgen.ConnInfo{{ID: 0, TID: ctid, LocalPort: cport}}, false, time.Second, func(rt *RoundTrip, _ loadgen.Record) { got = append(got, *rt) })
			s.SetClientSide()
			for _, e := range append(append([]probe.Event{}, base...), tc.extra...) {
				s.Event(&e)
			}
			s.Trip(0, 0, loadgen.Record{T0: t0, T1: t1})
			s.Flush()
			if len(got) != 1 || !got[0].Joined || !got[0].Consistent {
				t.Fatalf("round trips %+v, want one joined and consistent", got)
			}
			rt := got[0]
			var sum int64
			for c, v := range rt.Ns {
				sum += v
				if v != tc.want[Component(c)] {
					t.Errorf("%s = %d ns, want %d", Component(c), v, tc.want[Component(c)])
				}
			}
			if sum != t1-t0 {
				t.Errorf("components sum to %d ns, want exactly %d", sum, t1-t0)
			}
			if rt.Beyond != tc.beyond {
				t.Errorf("beyond_host spans %v, want %v", rt.Beyond, tc.beyond)
			}
			if from, to := rt.Span(BeyondHost); to-from != rt.Ns[BeyondHost] {
				t.Errorf("beyond_host's span %d…%d holds %d ns, want %d", from, to, to-from, rt.Ns[BeyondHost])
			}
		})
	}
	t.Run("the send returned after the reply", func(t *testing.T) {
		var got []RoundTrip
		s := NewStream(sport, []loadgen.ConnInfo{{ID: 0, TID: ctid, LocalPort: cport}}, false, time.Second, func(rt *RoundTrip, _ loadgen.Record) { got = append(got, *rt) })
		s.SetClientSide()
		for _, e := range base {
			if e.Kind == probe.KindSockSend {
				e.TS = 51_000
			}
			s.Event(&e)
		}
		s.Trip(0, 0, loadgen.Record{T0: t0, T1: t1})
		s.Flush()
		if len(got) != 1 || !got[0].Joined || got[0].Ns[ClientNet] != 0 || got[0].Ns[BeyondHost] != 40_000 {
			t.Fatalf("round trips %+v, want one joined, beyond_host from the send's start", got)
		}
	})
}
