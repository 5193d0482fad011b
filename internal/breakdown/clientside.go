package breakdown

// ClientSideMeasures says whether a round trip seen from the client's
// side alone measures component c: the client's own, client_net_tx and
// server_net_rx, which run on this host, and beyond_host. The server's
// components and the network parts beyond this host are always 0.
func ClientSideMeasures(c Component) bool {
	switch c {
	case ClientNetDev, ClientNetRx, ServerNet, ServerNetTx, ServerNetDev:
		return false
	case ServerNetRx, BeyondHost:
		return true
	}
	return Table[c].Side == "client"
}

// splitClient splits a round trip seen from the client's side alone (a
// watch of a client whose server is on another host): T0 is the start of
// the client's send of the request (its syscall's entry with --syscalls,
// else its TCP send start) and T1 the return of the receive that
// completed the reply. Nothing of the server is seen, so the round trip
// has three parts: the client's until the request leaves this host, what
// happens beyond it (the network, the other host's stack and the server),
// and the client's from the reply's arrival on. The request leaves at L
// and the reply arrives at A:
//
//   - with the packet hooks, L is the request's last segment handed to
//     the device (net_dev_start_xmit, on the client's socket: the last
//     before A) and A the start of receive processing of the reply's
//     segment on the critical path (netif_receive_skb, the last before
//     the reply's data ready b7, as splitNet takes it); client_net_tx is
//     [b1, L], beyond_host [L, A] and server_net_rx [A, b7];
//   - without them (older kernels, hooks that fell back, a segment not
//     seen at both points), L is the return of the client's send in the
//     stack (sock_send_length, or the send syscall's return) and A the
//     reply's data ready: client_net is [b1, L] and beyond_host [L, b7].
//     A send that returned only after the reply's data ready (its thread
//     preempted on its way out, say) left before it: L is then b1.
//
// The bounds b2 … b6 are L, so the gaps still partition [T0, T1]: the
// server's gaps are 0, client_net's gap runs to L and server_net's from
// L to b7, the split parts taking their places as splitNet's do. The
// client's components from b7 on are split's. Xmit and Recv hold L and A
// where the packet hooks gave them (Xmit[1] = L: the reply's own
// transmit is beyond this host), and Beyond beyond_host's stretch.
func (j *joiner) splitClient(rt *RoundTrip) {
	b := &rt.Bounds
	b[0], b[10] = rt.T0, rt.T1
	rt.NWaits, rt.MoreWaits, rt.NIrqs = 0, 0, 0
	rt.Xmit, rt.Recv, rt.Beyond = [2]int64{}, [2]int64{}, [2]int64{}
	fail := func(reason string) { rt.Joined, rt.Reason = false, reason }
	j.t0, j.nthr, j.have = rt.T0, 0, 0

	// A watched round trip starts at the client's send and ends at the
	// return of its receive: b1 = T0 and b9 = T1, so client_user and
	// client_user_recv are 0.
	b[1], b[9] = rt.T0, rt.T1
	cdr, ok := lastIn(j.evs(readyC, b[1]), b[1], b[9])
	if !ok {
		fail(NoClientReady)
		return
	}
	b[7] = int64(cdr.TS)
	leave, arrive := int64(0), int64(0)
	if r, ok := lastIn(j.evs(nrecvC, b[1]), b[1], b[7]); ok {
		if x, ok := lastIn(j.evs(xmitC, b[1]), b[1], int64(r.TS)); ok {
			leave, arrive = int64(x.TS), int64(r.TS)
		}
	}
	device := leave != 0
	if !device {
		// The client's send in the stack: its sock_send_length, or its
		// syscall's record when the probe folded the send into it.
		leave, arrive = b[1], b[7]
		if s, ok := lastIn(j.ix.send[j.csk].live(), b[1], b[7]); ok {
			leave = int64(s.TS)
		}
	}
	for k := 2; k <= 6; k++ {
		b[k] = leave
	}
	// b8: the client on CPU, as split finds it.
	b[8] = b[7]
	if off, in := offCPUAt(j.sw(j.ctid, b[7]), b[7]); off && in > 0 && in <= b[9] {
		b[8] = in
		rt.addWait(Wait{Component: ClientWakeup, TID: j.ctid, FromNs: b[7], ToNs: in, InNs: in})
	}

	sum, tol := rt.gaps()
	rt.Beyond = [2]int64{leave, arrive}
	rt.Ns[BeyondHost] = arrive - leave
	if device {
		rt.Xmit, rt.Recv = [2]int64{leave, leave}, [2]int64{leave, arrive}
		rt.Ns[ClientNetTx], rt.Ns[ClientNet] = rt.Ns[ClientNet], 0
		rt.Ns[ServerNetRx] = b[7] - arrive
	}
	rt.Ns[ServerNet] = 0
	// The client's thread alone is carved: no server thread is known.
	j.carvePreempted(rt, 0, 0)
	if diff := sum - (rt.T1 - rt.T0); diff > tol || -diff > tol {
		rt.Consistent = false
	}
}
