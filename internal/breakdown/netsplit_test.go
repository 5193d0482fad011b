package breakdown

import (
	"testing"

	"github.com/volleyscope/volleyscope/probe"
)

// TestJoinSplitsNet: a direction's network gap splits at its segment's
// transmit and receive records when the receive's sequence number falls
// in the transmitted range; otherwise (no record, another segment, the
// wrong order) the gap stays whole. The sender's preemption is carved
// from its stack's part only, and the sum holds throughout.
func TestJoinSplitsNet(t *testing.T) {
	b := [11]int64{1000, 1300, 5000, 20000, 20000, 21000, 22000, 25000, 40000, 41000, 41500}
	xmit := func(l, r uint16, ts int64, seq uint32, n int32) probe.Event {
		return probe.Event{Kind: probe.KindNetXmit, TS: uint64(ts), Lport: l, Rport: r, Arg0: uint64(seq), Ret: n}
	}
	recv := func(l, r uint16, ts int64, seq uint32, n int32) probe.Event {
		return probe.Event{Kind: probe.KindNetRecv, TS: uint64(ts), Lport: l, Rport: r, Arg0: uint64(seq), Ret: n}
	}
	// The request's segment: sent by the client's socket, received on
	// the server's; the reply's the other way.
	req := []probe.Event{xmit(cport, sport, 2000, 100, 10), recv(sport, cport, 3000, 100, 10)}
	rep := []probe.Event{xmit(sport, cport, 22500, 7, 20), recv(cport, sport, 23000, 9, 18)}
	for _, tc := range []struct {
		name  string
		extra []probe.Event
		want  map[Component]int64 // the components that differ from the unsplit gaps
	}{
		{name: "no packet records", want: map[Component]int64{ClientNet: 3700, ServerNet: 3000}},
		{name: "both directions", extra: append(req, rep...), want: map[Component]int64{
			ClientNetTx: 700, ClientNetDev: 1000, ClientNetRx: 2000, ServerNetTx: 500, ServerNetDev: 500, ServerNetRx: 2000}},
		{name: "transmit only", extra: req[:1], want: map[Component]int64{ClientNet: 3700, ServerNet: 3000}},
		{name: "receive only", extra: req[1:], want: map[Component]int64{ClientNet: 3700, ServerNet: 3000}},
		{name: "another segment's receive", extra: []probe.Event{req[0], recv(sport, cport, 3000, 110, 10)},
			want: map[Component]int64{ClientNet: 3700, ServerNet: 3000}},
		{name: "transmit before the send", extra: []probe.Event{xmit(cport, sport, 1200, 100, 10), req[1]},
			want: map[Component]int64{ClientNet: 3700, ServerNet: 3000}},
		{name: "sequence numbers wrap", extra: []probe.Event{xmit(cport, sport, 2000, 0xfffffffa, 10), recv(sport, cport, 3000, 2, 10)},
			want: map[Component]int64{ClientNetTx: 700, ClientNetDev: 1000, ClientNetRx: 2000, ServerNet: 3000}},
		{name: "a retransmit: the last transmit of the segment", extra: append([]probe.Event{xmit(cport, sport, 1500, 100, 10)}, req...),
			want: map[Component]int64{ClientNetTx: 700, ClientNetDev: 1000, ClientNetRx: 2000, ServerNet: 3000}},
		{name: "the last segment received", extra: append(req, xmit(cport, sport, 3500, 110, 10), recv(sport, cport, 4000, 110, 10)),
			want: map[Component]int64{ClientNetTx: 2200, ClientNetDev: 500, ClientNetRx: 1000, ServerNet: 3000}},
		{name: "client preempted in its stack", extra: append(req, preempt(ctid, 1, 1500, 1800)...),
			want: map[Component]int64{ClientNetTx: 400, ClientNetDev: 1000, ClientNetRx: 2000, ClientPreempted: 300, ServerNet: 3000}},
		// After the hand-off the softirq carries the segment, not the
		// client's thread.
		{name: "client preempted in the device part", extra: append(req, preempt(ctid, 1, 2500, 2800)...),
			want: map[Component]int64{ClientNetTx: 700, ClientNetDev: 1000, ClientNetRx: 2000, ServerNet: 3000}},
		{name: "client preempted unsplit", extra: preempt(ctid, 1, 2500, 2800),
			want: map[Component]int64{ClientNet: 3400, ClientPreempted: 300, ServerNet: 3000}},
		{name: "server preempted across its hand-off", extra: append(rep, preempt(stid, 0, 22400, 22600)...),
			want: map[Component]int64{ClientNet: 3700, ServerNetTx: 400, ServerNetDev: 500, ServerNetRx: 2000, ServerPreempted: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := joinOne(t, b, append(crossCPU(b[0], b), tc.extra...))
			for c := range NumComponents {
				if !IsNet(c) && c != ClientPreempted && c != ServerPreempted {
					continue
				}
				if got := rt.Ns[c]; got != tc.want[c] {
					t.Errorf("%s = %d ns, want %d", c, got, tc.want[c])
				}
			}
		})
	}
}
