package breakdown

import (
	"testing"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// multipart is one round trip from t0 = 1000 to t1 = 15500 whose request
// the client writes in two writes and whose reply the server writes in
// three pieces, spinning in between, each piece read by a client read of its
// own (the shape of a 16 KiB HTTP body, and of socat echoing 8 KiB at a
// time). The server reads the request's first piece, sleeps in a second
// read until the rest comes, and is woken for it:
//
//	client  write1 [1300, 2500]   data ready at the server 2000
//	client  write2 [3000, 4000]   data ready at the server 3500
//	server  read1  [ 500, 2600]   woken at 2100, on CPU at 2400
//	server  read2  [2700, 5500]   asleep at 2750, woken at 3600, on CPU at 5000
//	server  writeA [6000, 6500]   data ready at the client 6200
//	server  writeB [10000,10500]  data ready at the client 10200
//	server  writeC [14000,14500]  data ready at the client 14200
//	client  readA  [4100, 7100], readB [7200, 11100], readC [11200, 15100],
//	        asleep in each, on CPU at 7000, 11000 and 15000
//
// With syscalls the probe folds each socket event into its syscall; at the
// default level it sees TCP send starts (writeC fills two segments: two
// starts), sends and receives returning, data-readies and switches.
func multipart(syscalls bool) []probe.Event {
	sys := func(tid uint32, cpu uint16, nr uint64, from, to int64, l, r uint16, n int32) probe.Event {
		return probe.Event{Kind: probe.KindSyscall, TS: uint64(to), Arg0: uint64(from), Arg1: nr, TID: tid, CPU: cpu, SK: uint64(l)<<16 | uint64(r), Lport: l, Rport: r, Ret: n}
	}
	ev := func(k probe.Kind, ts int64, tid uint32, cpu uint16, l, r uint16, n int32) probe.Event {
		return probe.Event{Kind: k, TS: uint64(ts), TID: tid, CPU: cpu, Lport: l, Rport: r, Ret: n}
	}
	sw := func(ts int64, prev, next uint32, cpu uint16, state int32) probe.Event {
		return probe.Event{Kind: probe.KindSwitch, TS: uint64(ts), Arg0: uint64(prev), Arg1: uint64(next), CPU: cpu, Ret: state}
	}
	wake := func(ts int64, waker, woken uint32, cpu uint16) probe.Event {
		return probe.Event{Kind: probe.KindWaking, TS: uint64(ts), TID: waker, CPU: cpu, Arg0: uint64(woken)}
	}
	evs := []probe.Event{
		// The data-readies run in the sender's send, on its CPU.
		ev(probe.KindDataReady, 2000, ctid, 1, sport, cport, 0),
		ev(probe.KindDataReady, 3500, ctid, 1, sport, cport, 0),
		ev(probe.KindDataReady, 6200, stid, 0, cport, sport, 0),
		ev(probe.KindDataReady, 10200, stid, 0, cport, sport, 0),
		ev(probe.KindDataReady, 14200, stid, 0, cport, sport, 0),
		sw(2400, 0, stid, 0, 0), sw(2750, stid, 0, 0, 1), sw(5000, 0, stid, 0, 0),
		sw(4200, ctid, 0, 1, 1), sw(7000, 0, ctid, 1, 0),
		sw(7300, ctid, 0, 1, 1), sw(11000, 0, ctid, 1, 0),
		sw(11300, ctid, 0, 1, 1), sw(15000, 0, ctid, 1, 0),
	}
	if syscalls {
		return append(evs,
			sys(ctid, 1, 1, 1300, 2500, cport, sport, 8192),
			sys(ctid, 1, 1, 3000, 4000, cport, sport, 8192),
			sys(stid, 0, 0, 500, 2600, sport, cport, 8192),
			sys(stid, 0, 0, 2700, 5500, sport, cport, 8192),
			sys(stid, 0, 1, 6000, 6500, sport, cport, 8192),
			sys(stid, 0, 1, 10000, 10500, sport, cport, 8192),
			sys(stid, 0, 1, 14000, 14500, sport, cport, 8192),
			sys(ctid, 1, 0, 4100, 7100, cport, sport, 8192),
			sys(ctid, 1, 0, 7200, 11100, cport, sport, 8192),
			sys(ctid, 1, 0, 11200, 15100, cport, sport, 8192),
			wake(2100, ctid, stid, 1), wake(3600, ctid, stid, 1),
			wake(6250, stid, ctid, 0), wake(10250, stid, ctid, 0), wake(14250, stid, ctid, 0),
		)
	}
	return append(evs,
		ev(probe.KindSendStart, 1350, ctid, 1, cport, sport, 1),
		ev(probe.KindSockSend, 2450, ctid, 1, cport, sport, 8192),
		ev(probe.KindSendStart, 3050, ctid, 1, cport, sport, 1),
		ev(probe.KindSockSend, 3950, ctid, 1, cport, sport, 8192),
		ev(probe.KindSockRecv, 2550, stid, 0, sport, cport, 8192),
		ev(probe.KindSockRecv, 5450, stid, 0, sport, cport, 8192),
		ev(probe.KindSendStart, 6050, stid, 0, sport, cport, 1),
		ev(probe.KindSockSend, 6450, stid, 0, sport, cport, 8192),
		ev(probe.KindSendStart, 10050, stid, 0, sport, cport, 1),
		ev(probe.KindSockSend, 10450, stid, 0, sport, cport, 8192),
		ev(probe.KindSendStart, 14050, stid, 0, sport, cport, 1),
		ev(probe.KindSendStart, 14100, stid, 0, sport, cport, 1),
		ev(probe.KindSockSend, 14450, stid, 0, sport, cport, 8192),
		ev(probe.KindSockRecv, 7050, ctid, 1, cport, sport, 8192),
		ev(probe.KindSockRecv, 11050, ctid, 1, cport, sport, 8192),
		ev(probe.KindSockRecv, 15050, ctid, 1, cport, sport, 8192),
	)
}

// TestJoinMultipart: a request in several writes and a reply in several
// parts split along the critical path: the request is complete at the
// server with the data-ready its last read consumed, the server's time
// between that read and its last write (the earlier pieces and the spins
// between them) is server_user, the reply is complete at the client with
// the last piece's data-ready, and the components sum exactly to t1 − t0
// with client_kernel_recv only the last read's return.
func TestJoinMultipart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		syscalls bool
		bounds   [NumBounds]int64
	}{
		{"syscalls", true, [NumBounds]int64{1000, 1300, 3500, 5000, 5000, 5500, 14000, 14200, 15000, 15100, 15500}},
		// b1, b6: send starts; b4 = b3 and b5, b9: the receives' socket
		// events. The last write's second segment start is taken back to
		// its first.
		{"default", false, [NumBounds]int64{1000, 1350, 3500, 5000, 5000, 5450, 14050, 14200, 15000, 15050, 15500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.bounds
			rt := joinOne(t, b, multipart(tc.syscalls))
			if rt.Bounds != b {
				t.Errorf("bounds\n got %v\nwant %v", rt.Bounds, b)
			}
			want := [NumComponents]int64{}
			for c := range NumBounds - 1 {
				want[c] = b[c+1] - b[c]
			}
			if rt.Ns != want {
				t.Errorf("components\n got %v\nwant %v", rt.Ns, want)
			}
			// The two earlier pieces and the spins: server time, never the
			// client's receive.
			if rt.Ns[ServerUser] < 8000 || rt.Ns[ClientKernelRecv] > 100 {
				t.Errorf("server_user %d ns, client_kernel_recv %d ns: the earlier pieces of the reply are not the server's", rt.Ns[ServerUser], rt.Ns[ClientKernelRecv])
			}
		})
	}
}

// TestJoinMultipartStream: the streaming join splits the multi-part round
// trip as Join does, with the watermark passing it in steps.
func TestJoinMultipartStream(t *testing.T) {
	b := [NumBounds]int64{1000, 1300, 3500, 5000, 5000, 5500, 14000, 14200, 15000, 15100, 15500}
	var got []RoundTrip
	s := NewStream(sport, []loadgen.ConnInfo{{ID: 0, TID: ctid, LocalPort: cport}}, true, 0,
		func(rt *RoundTrip, _ loadgen.Record) { got = append(got, *rt) })
	evs := multipart(true)
	for i := range evs {
		s.Event(&evs[i])
	}
	s.Trip(0, 0, loadgen.Record{T0: b[0], T1: b[10]})
	for _, w := range []int64{5000, 20000, 40000} {
		s.Advance(w)
	}
	s.Flush()
	if len(got) != 1 || !got[0].Joined || !got[0].Consistent {
		t.Fatalf("stream handed over %+v, want one joined, consistent round trip", got)
	}
	if got[0].Bounds != b {
		t.Errorf("bounds\n got %v\nwant %v", got[0].Bounds, b)
	}
}

// TestJoinMissingSwitchIn: when the record of the client's switch in is
// missing (seen under load: the next one recorded comes after its read
// returned), the round trip stays consistent: no wake-up is known, and
// the wait is client_kernel_recv.
func TestJoinMissingSwitchIn(t *testing.T) {
	var evs []probe.Event
	for _, e := range multipart(true) {
		if e.Kind == probe.KindSwitch && e.Arg1 == ctid && e.TS == 15000 {
			continue
		}
		evs = append(evs, e)
	}
	evs = append(evs,
		probe.Event{Kind: probe.KindSwitch, TS: 15200, Arg0: ctid, Arg1: 999, CPU: 1, Ret: 0},
		probe.Event{Kind: probe.KindSwitch, TS: 15300, Arg0: 999, Arg1: ctid, CPU: 1})
	b := [NumBounds]int64{1000, 1300, 3500, 5000, 5000, 5500, 14000, 14200, 14200, 15100, 15500}
	rt := joinOne(t, b, evs)
	if rt.Bounds != b {
		t.Errorf("bounds\n got %v\nwant %v", rt.Bounds, b)
	}
	if rt.Ns[ClientWakeup] != 0 || rt.Ns[ClientKernelRecv] != 900 {
		t.Errorf("client_wakeup %d ns, client_kernel_recv %d ns; want 0 and 900", rt.Ns[ClientWakeup], rt.Ns[ClientKernelRecv])
	}
}
