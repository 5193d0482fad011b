package probe

import (
	"fmt"
	"testing"
)

// TestShiftTimes holds, for every kind, which fields ShiftTimes moves:
// TS always, Arg0 for the kinds whose Arg0 is a time, nothing else.
func TestShiftTimes(t *testing.T) {
	timeArg0 := map[Kind]bool{KindSyscall: true, KindIrq: true, KindNetRecvReady: true, KindSendXmit: true}
	for k := range kindNames {
		t.Run(k.String(), func(t *testing.T) {
			for _, d := range []int64{5_000_000_000, -3_000_000_000, 0} {
				in := Event{TS: 10_000_000_000, SK: 777, Arg0: 9_000_000_000, Arg1: 42, TID: 5, TGID: 6, Ret: 100, CPU: 1, Kind: k, Lport: 80, Rport: 40000}
				want := in
				want.TS = uint64(int64(in.TS) + d)
				if timeArg0[k] {
					want.Arg0 = uint64(int64(in.Arg0) + d)
				}
				got := in
				got.ShiftTimes(d)
				if got != want {
					t.Errorf("ShiftTimes(%d) = %+v, want %+v", d, got, want)
				}
				got.ShiftTimes(-d)
				if got != in {
					t.Errorf("ShiftTimes(%d) then back = %+v, want %+v", d, got, in)
				}
			}
		})
	}
	if len(kindNames) != 18 {
		t.Errorf("%d kinds: say in ShiftTimes (and here) which fields of a new kind are times", len(kindNames))
	}
}

// TestOnSocketSide: per kind, the side of a server socket (local port
// 9000) and of a client socket (remote port 9000), and the events that
// name no socket.
func TestOnSocketSide(t *testing.T) {
	const port = 9000
	sockets := map[Kind]bool{KindSyscall: true, KindSockSend: true, KindSockRecv: true, KindDataReady: true, KindSockState: true, KindSendStart: true, KindNetXmit: true, KindNetRecv: true, KindNetRecvReady: true, KindSendXmit: true}
	type want struct{ server, ok bool }
	for k := range kindNames {
		cases := []struct {
			l, r uint16
			want want
		}{
			{port, 41000, want{true, true}},  // the server's socket
			{41000, port, want{false, true}}, // a client's
			{port, 0, want{true, true}},      // the listener
			{41000, 42000, want{}},           // another service's
			{0, 0, want{}},                   // no socket (a syscall that touched none)
			{port, port, want{}},             // a client bound to the server's port number
		}
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%d-%d", k, c.l, c.r), func(t *testing.T) {
				e := Event{Kind: k, Lport: c.l, Rport: c.r, SK: 1}
				w := c.want
				if !sockets[k] {
					w = want{}
				}
				if s, ok := e.OnSocketSide(port); s != w.server || ok != w.ok {
					t.Errorf("OnSocketSide = %v, %v; want %v, %v", s, ok, w.server, w.ok)
				}
			})
		}
	}
	e := Event{Kind: KindNetRecv, Lport: 0, Rport: 0}
	if _, ok := e.OnSocketSide(0); ok {
		t.Error("server port 0: ok, want not")
	}
}

// TestOnSocketSideNetPair: a data segment from a client on port 41000
// to the server: its transmit names the client's socket, its receive
// (ports swapped from the packet's) the server's; and the reply's the
// other way round.
func TestOnSocketSideNetPair(t *testing.T) {
	const port = 9000
	for _, c := range []struct {
		name   string
		e      Event
		server bool
	}{
		{"request xmit", Event{Kind: KindNetXmit, Lport: 41000, Rport: port}, false},
		{"request recv", Event{Kind: KindNetRecv, Lport: port, Rport: 41000}, true},
		{"reply xmit", Event{Kind: KindNetXmit, Lport: port, Rport: 41000}, true},
		{"reply recv", Event{Kind: KindNetRecv, Lport: 41000, Rport: port}, false},
	} {
		if s, ok := c.e.OnSocketSide(port); !ok || s != c.server {
			t.Errorf("%s: OnSocketSide = %v, %v; want %v, true", c.name, s, ok, c.server)
		}
	}
}
