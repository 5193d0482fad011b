package breakdown

// NoServerSendAt is why a server-side round trip was not split: no send
// on the server's socket at its end.
const NoServerSendAt = "no server send at the reply's start"

// ServerSideMeasures says whether a round trip seen from the server's
// side alone measures component c: the server's receive, wake-up, work
// and the waits in them, and the client's network time, which holds the
// wait for the rest of a request. The client's other components and the
// reply's way back lie outside its bounds and are always 0.
func ServerSideMeasures(c Component) bool {
	switch c {
	case ClientNet, ClientNetTx, ClientNetDev, ClientNetRx:
		return true
	case ServerNet, ServerNetTx, ServerNetDev, ServerNetRx:
		return false
	}
	return Table[c].Side == "server"
}

// splitServer splits a round trip seen from the server's side alone (a
// watch that follows the server but no client): T0 is the data ready of
// the request's first byte on the server's socket and T1 the start of
// the send of the reply's last piece, the server's response time as its
// socket sees it. The server's components are found as split finds
// them; the client's are not seen: b0 = b1 = T0 and b6 … b10 = T1, so
// they are 0, except client_net, which holds the wait for the rest of a
// request that came in several segments (from the first byte's data
// ready to the last's, b2).
func (j *joiner) splitServer(rt *RoundTrip) {
	ix := j.ix
	b := &rt.Bounds
	rt.NWaits, rt.MoreWaits, rt.NIrqs = 0, 0, 0
	fail := func(reason string) { rt.Joined, rt.Reason = false, reason }
	j.t0, j.nthr, j.have = rt.T0, 0, 0
	b[0], b[1] = rt.T0, rt.T0
	for k := 6; k < NumBounds; k++ {
		b[k] = rt.T1
	}

	// The receive that completed the request: the last with data on the
	// server's socket before the reply began.
	srv1, ok := firstAt(j.evs(recvS, rt.T0), rt.T0)
	if !ok || int64(srv1.TS) > rt.T1 {
		fail(NoServerRecv)
		return
	}
	srv, _ := lastIn(j.evs(recvS, int64(srv1.TS)), int64(srv1.TS), rt.T1)
	sdr, ok := lastIn(j.evs(readyS, rt.T0), rt.T0, int64(srv.TS))
	if !ok {
		fail(NoServerReady)
		return
	}
	stid := j.serverRecv(rt, sdr, srv)
	// The thread that sent the reply: the send start at T1, if seen.
	sendTID := stid
	if st, ok := firstAt(j.evs(startS, rt.T1), rt.T1); ok && int64(st.TS) == rt.T1 {
		sendTID = st.TID
	} else if sys, ok := ix.enclosing(stid, rt.T1); !ok || int64(sys.Arg0) != rt.T1 {
		fail(NoServerSendAt)
		return
	}
	j.finish(rt, stid, sendTID)
}
