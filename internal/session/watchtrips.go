package session

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// WatchIdle is how long a connection stays silent after a reply before
// the reply counts as complete without a next request. A request/response
// client sends its next request at once; one that pauses longer than
// this ends its round trip at the last receive before the pause. A reply
// whose pieces come further apart than this is split in two (timing
// cannot tell); the stream keeps events long enough for either.
const WatchIdle = 100 * time.Millisecond

// TCP states (include/net/tcp_states.h) that end a connection for the
// watch: after them the socket sends no more data. The passive closer's
// last state change (LAST_ACK to CLOSE) is reported by the kernel after
// the socket lost its local port, so it matches no followed port and
// never reaches us: LAST_ACK, its own close, is its end.
const (
	tcpFinWait1 = 4
	tcpClose    = 7
	tcpLastAck  = 9
)

// watchTrips derives round trips from a watched client's socket traffic
// to the server's port, in place of our load generator's t0 and t1: on a
// connection with one request in flight, a round trip runs from the
// start of the client's send of a request (the TCP send start, where the
// load generator's t0 is just before the send system call) to the return
// of the receive that completes the reply (where its t1 is just after
// it). The reply is complete when the client sends again, closes the
// connection, or stays silent for WatchIdle. A second send returned
// before any of the reply arrived is a second request in flight: the
// connection is pipelined and none of its round trips is split, rather
// than split wrongly.
//
// Events come from the probe's reader (event, on its goroutine); advance
// works through them in time order up to a watermark, on the watch's.
type watchTrips struct {
	port uint16
	// serverSide: no client is followed, and round trips are the
	// server's, from its socket's events (advanceServer).
	serverSide bool
	// clients are the watched client processes: a connection is
	// followed from a request that one of them sent (nil: any process's).
	clients []uint32
	// parser, if set, is the payload capture's parse of each connection:
	// one it finds pipelined is not split, whatever timing says.
	parser  *watchParser
	parsing parseCounts
	// deferTimed holds back counting a connection as timed while the
	// parser had no read of it: the capture's hooks were off (resting)
	// when it began, and its reads may yet come. One never read is
	// counted when it ends, or when the watch does.
	deferTimed bool
	// windows are the probe's "on" windows when the watch samples
	// (--trace-share): only round trips wholly inside one are reported.
	windows traceWindows

	mu    sync.Mutex
	in    []probe.Event // from the reader, not yet taken
	spare []probe.Event // the previous hand-over's buffer, for reuse
	buf   []probe.Event // taken, waiting for the watermark; in time order
	// merged is buf's spare buffer, for merging; sortBuf breakdown.SortRuns'
	// scratch space.
	merged, sortBuf []probe.Event

	conns  map[uint16]*watchConn // by client port
	nextID int
	// ended are the connections that ended (closed, or their port taken
	// by another socket) since the last takeEnded, with the time.
	ended []endedConn
	// Counts for the summary.
	pipelined   int   // connections found pipelined
	pipeTrips   int64 // requests on them, not split
	orphans     int64 // replies on a connection whose request was not seen
	connsSeen   int
	idleClosed  int64
	inFlightEnd int64
}

// watchConn is one client connection's progress through its requests.
type watchConn struct {
	info      loadgen.ConnInfo
	recvd     bool  // server side: the server read some of the request
	lastSend  int64 // server side: the start of the reply's last send so far; 0: none
	t0        int64 // send start of the request in flight; 0: none
	sent      bool  // a send of this request returned
	lastRecv  int64 // the reply's last receive so far; 0: no reply yet
	pipelined bool
	sk        uint64 // the socket (its kernel address); 0: not yet seen
	counted   bool   // classified in parsing (at its first exchange)
	exchanged bool   // an exchange of it was reported
}

func newWatchTrips(port uint16) *watchTrips {
	return &watchTrips{port: port, conns: map[uint16]*watchConn{}}
}

// event keeps the events of client sockets to the server (their remote
// port is the server's); it runs on the probe's reader, so it only copies.
func (w *watchTrips) event(e *probe.Event) {
	if w.wanted(e) {
		w.mu.Lock()
		w.in = append(w.in, *e)
		w.mu.Unlock()
	}
}

// events is event for a batch, under one lock.
func (w *watchTrips) events(evs []probe.Event) {
	w.mu.Lock()
	for i := range evs {
		if w.wanted(&evs[i]) {
			w.in = append(w.in, evs[i])
		}
	}
	w.mu.Unlock()
}

// wanted says whether advance needs e: an event of the watched side's
// sockets that tells its traffic.
func (w *watchTrips) wanted(e *probe.Event) bool {
	if w.serverSide {
		if e.Lport != w.port {
			return false
		}
	} else if e.Rport != w.port || e.Lport == w.port {
		return false
	}
	switch e.Kind {
	case probe.KindDataReady:
		return w.serverSide
	case probe.KindSyscall:
		return e.SK != 0 && e.Ret > 0
	case probe.KindSendStart, probe.KindSockSend, probe.KindSockRecv, probe.KindSockState:
		return true
	}
	return false
}

// endedConn is a connection that ended, and when.
type endedConn struct {
	id int
	at int64
}

// takeEnded returns the connections that ended since the last call.
func (w *watchTrips) takeEnded() []endedConn {
	e := w.ended
	w.ended = nil
	return e
}

// tripOut is one derived round trip.
type tripOut struct {
	conn int
	r    loadgen.Record
}

// advance works through the events stamped before watermark, in time
// order, and returns the connections seen for the first time and the
// round trips completed. With final set, the watch ends at watermark: a
// request whose reply is not known complete by then is counted as in
// flight, not reported. Nothing after the end is taken, so that a round
// trip is never counted that the watch's own work after its end (the
// last steps, the outputs) may have delayed.
func (w *watchTrips) advance(watermark int64, final bool) (fresh []loadgen.ConnInfo, trips []tripOut) {
	w.mu.Lock()
	in := w.in
	w.in = w.spare[:0]
	w.mu.Unlock()
	// buf is in time order already (what the last advance left); the new
	// events are runs in time order, a ring batch each: sorting them and
	// merging the two keeps equal stamps in arrival order, as one stable
	// sort of the whole would.
	in, w.sortBuf = breakdown.SortRuns(in, w.sortBuf)
	w.merged = breakdown.MergeSorted(w.merged[:0], w.buf, in)
	w.buf, w.merged = w.merged, w.buf
	w.mu.Lock()
	w.spare = in
	w.mu.Unlock()
	n, _ := slices.BinarySearchFunc(w.buf, watermark, func(e probe.Event, t int64) int { return cmp.Compare(int64(e.TS), t) })
	w.parser.take()
	// emit reports c's exchange, known complete at done.
	emit := func(c *watchConn, done int64) {
		c.exchanged = true
		w.parsed(c)
		end := c.lastRecv
		if w.serverSide {
			end = c.lastSend
		}
		if end != 0 && !c.pipelined && w.windows.keep(c.t0, done) {
			trips = append(trips, tripOut{c.info.ID, loadgen.Record{T0: c.t0, T1: end}})
		}
		if c.pipelined && c.t0 != 0 {
			w.pipeTrips++
		}
		c.t0, c.sent, c.lastRecv, c.recvd, c.lastSend = 0, false, 0, false, 0
	}
	if w.serverSide {
		fresh = w.serverEvents(w.buf[:n], emit)
	} else {
		fresh = w.clientEvents(w.buf[:n], emit)
	}
	w.buf = append(w.buf[:0], w.buf[n:]...)
	// A reply followed by silence is complete.
	for port, c := range w.conns {
		last := c.lastRecv
		if w.serverSide {
			last = c.lastSend
		}
		if last != 0 && last < watermark-WatchIdle.Nanoseconds() {
			w.idleClosed++
			emit(c, last+WatchIdle.Nanoseconds())
		} else if final && c.t0 != 0 {
			w.inFlightEnd++
		}
		if final {
			w.countUncounted(port, c)
		}
	}
	w.parser.prune(func(port uint16) bool { return w.conns[port] != nil }, watermark-WatchIdle.Nanoseconds())
	w.windows.prune(watermark - windowKeep.Nanoseconds())
	slices.SortFunc(trips, func(a, b tripOut) int { return cmp.Compare(a.r.T1, b.r.T1) })
	return fresh, trips
}

// parsed applies the parser's word on connection c before an exchange
// of it is reported: c is counted as parsed or timed at its first, and a
// connection the parser found pipelined is not split.
func (w *watchTrips) parsed(c *watchConn) {
	port := uint16(c.info.LocalPort)
	cp := w.parseOf(port, c)
	if !c.counted && (cp != nil || !w.deferTimed) {
		c.counted = true
		w.parsing.classify(port, cp)
	}
	if cp != nil && cp.pipelined && !c.pipelined {
		c.pipelined = true
		w.pipelined++
		w.parsing.pipelined++
		w.parsing.mostInOne = max(w.parsing.mostInOne, cp.mostInOne)
	}
}

// countUncounted counts connection c, on client port port, as its
// parse stands if its classification was deferred (deferTimed) and it
// had an exchange.
func (w *watchTrips) countUncounted(port uint16, c *watchConn) {
	if c.counted || !c.exchanged {
		return
	}
	c.counted = true
	w.parsing.classify(port, w.parseOf(port, c))
}

// parseOf is the parser's state of connection c on client port port;
// nil if nothing of it was captured, or what was is another
// connection's on the same port.
func (w *watchTrips) parseOf(port uint16, c *watchConn) *connParse {
	cp := w.parser.conn(port)
	if cp != nil && c.sk != 0 && cp.sk != c.sk {
		return nil
	}
	return cp
}

// captureNeeded says whether the payload capture has reads to make: a
// connection with an exchange under way has not had its first
// watchPayloadSends sends read, and was not found pipelined or given up
// by the parser. known is false when no connection has an exchange
// under way (no traffic, or the start of a sampled watch's window, whose
// exchanges are not yet seen): that says nothing either way.
func (w *watchTrips) captureNeeded() (needed, known bool) {
	for port, c := range w.conns {
		if c.t0 == 0 && c.lastRecv == 0 && c.lastSend == 0 && !c.recvd {
			continue // idle: its last exchange reported
		}
		known = true
		if c.pipelined {
			continue
		}
		cp := w.parseOf(port, c)
		if cp == nil || (cp.sends < watchPayloadSends && !cp.pipelined && !cp.gaveUp) {
			return true, true
		}
	}
	return false, known
}

// traffic reads e as the watch reads a connection's traffic: closed for
// the end of the connection; else the time and kind of a send start, a
// send's return, a receive or a data ready. With the syscall hooks
// (--syscalls) a send or receive is folded into its syscall's record:
// the send starts at the syscall's entry and the receive returns at its
// exit, as the program's own clock reads them. ok is false for anything
// else.
func traffic(e *probe.Event) (at int64, what probe.Kind, closed, ok bool) {
	switch {
	case e.Kind == probe.KindSockState:
		return 0, 0, e.Arg1 == tcpClose || e.Arg1 == tcpFinWait1 || e.Arg1 == tcpLastAck, false
	case e.Kind != probe.KindSyscall:
		return int64(e.TS), e.Kind, false, true
	case breakdown.IsSendSyscall(e.Arg1):
		return int64(e.Arg0), probe.KindSendStart, false, true
	case breakdown.IsRecvSyscall(e.Arg1):
		return int64(e.TS), probe.KindSockRecv, false, true
	}
	return 0, 0, false, false
}

// conn is the connection followed under port that e belongs to, or nil.
// A connection ends (emit, and it is no longer followed) when e closes it,
// or when e is another socket's under the same port: a close that never
// reached us (lost, or not reported) must not join a new connection's
// requests to an old one's.
func (w *watchTrips) conn(port uint16, e *probe.Event, closed bool, emit func(*watchConn, int64)) *watchConn {
	c := w.conns[port]
	if c == nil {
		return nil
	}
	if (e.SK != 0 && c.sk != 0 && e.SK != c.sk) || closed {
		emit(c, int64(e.TS))
		w.countUncounted(port, c)
		delete(w.conns, port)
		w.ended = append(w.ended, endedConn{c.info.ID, int64(e.TS)})
		return nil
	}
	if e.SK != 0 {
		c.sk = e.SK
	}
	return c
}

// newConn starts following a connection, by its port on the watched
// side, driven by client thread tid (0: none followed).
func (w *watchTrips) newConn(port uint16, tid int, sk uint64) *watchConn {
	c := &watchConn{info: loadgen.ConnInfo{ID: w.nextID, TID: tid, LocalPort: int(port)}, sk: sk}
	w.nextID++
	w.connsSeen++
	w.conns[port] = c
	return c
}

// clientEvents is advance's work through the client's socket events: a
// request runs from the start of its send to the return of the receive
// that completed its reply.
func (w *watchTrips) clientEvents(evs []probe.Event, emit func(*watchConn, int64)) (fresh []loadgen.ConnInfo) {
	for i := range evs {
		e := &evs[i]
		if w.windows.crossed(int64(e.TS)) {
			w.atWindow()
		}
		at, what, closed, ok := traffic(e)
		c := w.conn(e.Lport, e, closed, emit)
		if !ok {
			continue
		}
		if c == nil {
			if what != probe.KindSendStart {
				continue // the connection's traffic began before we looked: wait for a request
			}
			if w.clients != nil && !slices.Contains(w.clients, e.TGID) {
				continue // another process's connection to the same port
			}
			c = w.newConn(e.Lport, int(e.TID), e.SK)
			fresh = append(fresh, c.info)
		}
		switch what {
		case probe.KindSendStart:
			switch {
			case c.lastRecv != 0: // the next request: the reply before it is complete
				emit(c, at)
				c.t0 = at
			case c.t0 == 0:
				c.t0 = at
			case c.sent && !c.pipelined: // a second request before any reply
				c.pipelined = true
				w.pipelined++
			}
			// Otherwise another segment of the same send.
			if e.Kind == probe.KindSyscall {
				c.sent = true // the syscall's record is its return too
			}
		case probe.KindSockSend:
			if c.t0 != 0 {
				c.sent = true
			}
		case probe.KindSockRecv:
			if c.t0 == 0 {
				w.orphans++ // a reply to a request sent before we looked
				continue
			}
			c.lastRecv = at
		}
	}
	return fresh
}

// serverEvents is advance's work through the server's socket events,
// when no client is followed: a request runs from the data ready of its
// first byte on the server's socket to the start of the send of the
// reply's last piece. The reply is complete when the next request's data
// arrives, the connection closes, or it stays silent for WatchIdle. Data
// that arrives after the server read some of a request and before it
// began its reply is a second request in flight (or the rest of a request
// read in parts, which timing cannot tell apart): the connection is
// reported as pipelined and not split.
func (w *watchTrips) serverEvents(evs []probe.Event, emit func(*watchConn, int64)) (fresh []loadgen.ConnInfo) {
	for i := range evs {
		e := &evs[i]
		if w.windows.crossed(int64(e.TS)) {
			w.atWindow()
		}
		at, what, closed, ok := traffic(e)
		c := w.conn(e.Rport, e, closed, emit)
		if !ok {
			continue
		}
		if c == nil {
			if what != probe.KindDataReady || e.Rport == 0 {
				continue // the connection's traffic began before we looked (wait for a request), or the listener's (a connection to accept)
			}
			c = w.newConn(e.Rport, 0, e.SK) // no client thread is followed: the join's client thread is none
			fresh = append(fresh, c.info)
		}
		switch what {
		case probe.KindDataReady:
			switch {
			case c.lastSend != 0: // the next request: the reply before it is complete
				emit(c, at)
				c.t0 = at
			case c.t0 == 0:
				c.t0 = at
			case c.recvd && !c.pipelined:
				c.pipelined = true
				w.pipelined++
			}
		case probe.KindSockRecv:
			if c.t0 != 0 {
				c.recvd = true
			}
		case probe.KindSendStart:
			// A send fills one segment per start: the send's own start is
			// the first after the previous send returned (sent marks one
			// in progress; a syscall's record is its return too).
			if c.t0 != 0 && c.recvd && !c.sent {
				c.lastSend = at
				c.sent = e.Kind != probe.KindSyscall
			}
		case probe.KindSockSend:
			c.sent = false
		}
	}
	return fresh
}

// windowKeep is how long a sampled watch remembers a window after its
// end: a round trip reported later than this after it began is dropped.
const windowKeep = time.Minute

// atWindow forgets the exchanges in progress at the start of a tracing
// window: their events during the "off" stretch before it were not
// recorded, so what follows would join a new request to an old one (or
// take it for a second request in flight). They are counted as dropped
// at a window's edge.
func (w *watchTrips) atWindow() {
	for _, c := range w.conns {
		if c.t0 != 0 && !c.pipelined {
			w.windows.edge++
		}
		c.t0, c.sent, c.lastRecv, c.recvd, c.lastSend = 0, false, 0, false, 0
	}
}
