package breakdown

import (
	"cmp"
	"slices"
	"sort"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// RoundTrip is one client round trip with its boundaries and components.
type RoundTrip struct {
	Conn, Seq int
	T0, T1    int64
	// Bounds are b0 … b10 of the package comment, CLOCK_MONOTONIC ns.
	Bounds [NumBounds]int64
	// Ns are the components, never negative. Ns[k] for k < ClientPreempted
	// is Bounds[k+1] − Bounds[k] less the time the side on the critical
	// path was preempted or interrupted within it; the *Preempted and
	// *Irq components sum what was taken out, so Ns sums to what the gaps
	// sum to.
	Ns [NumComponents]int64
	// Joined is false when the kernel events could not be matched; Reason
	// then says which step failed.
	Joined bool
	Reason string
	// Consistent is true when the boundaries were in order within the
	// tolerance, so the components sum to t1 − t0.
	Consistent bool
	// Waits are the first NWaits stretches in which a side was runnable
	// but waited for a CPU (its wake-ups and preemptions, see Wait);
	// MoreWaits counts those beyond MaxWaits.
	Waits     [MaxWaits]Wait
	NWaits    int
	MoreWaits int
	// ServerTID is the server thread that received the request.
	ServerTID uint32
	// Irqs are the interrupts that took ClientIrq and ServerIrq's time,
	// the first NIrqs of them (see IrqTime).
	Irqs  [MaxIrqs]IrqTime
	NIrqs int
	// Xmit and Recv are, per direction (0 the request, 1 the reply), when
	// its data segment on the critical path was handed to a device and
	// when receive processing of it started: where client_net and
	// server_net split (splitNet). 0 where the packet hooks did not see
	// it; the direction's *_net gap then stays whole.
	Xmit, Recv [2]int64
	// Beyond is beyond_host's stretch in a split of the client's side
	// alone (splitClient), [from, to); zero in every other split.
	Beyond [2]int64
}

// Input is what the join needs.
type Input struct {
	Conns        []loadgen.Conn // the client's records, per connection
	MeasureStart int64          // round trips starting earlier are warm-up and skipped
	ServerPort   uint16         // the server's listening port
	Events       []probe.Event  // kernel events; sorted here by time
}

// Unjoined reasons.
const (
	NoClientSend  = "no client send syscall in [t0, t1]"
	NoServerReady = "no data ready on the server's socket"
	NoServerRecv  = "no server receive on the connection"
	NoServerSend  = "no server send on the connection"
	NoClientReady = "no data ready on the client's socket"
	NoClientRecv  = "no client receive syscall before t1"
)

// RoundTrips are the round trips of a whole run, joined or not, with the
// join's counts.
type RoundTrips struct {
	Trips    []RoundTrip
	Joined   int
	Unjoined int
	Reasons  map[string]int
	// Consistent counts joined round trips whose components sum to t1−t0
	// within the tolerance (2% or 1 µs, whichever is larger).
	Consistent int
}

type portPair struct{ l, r uint16 }

// swEv is one sched_switch of a thread: in, or out; preempt marks a
// switch out with prev_state 0 (TASK_RUNNING): the thread stays runnable
// and waits for a CPU.
// unc is, for a preemption, how long before ts the scheduler stopped
// crediting the thread's CPU time (probe.KindSwitch's SK): the
// preemption starts at ts − unc.
type swEv struct {
	ts      int64
	unc     int64
	in      bool
	preempt bool
}

// irqEv is a KindIrq record: interrupts of a thread on its CPU within
// [from, to], ns of them in all, the longest being what.
type irqEv struct {
	from, to, ns int64
	what         probe.Interrupt
}

type index struct {
	sys    map[uint32]*series[probe.Event] // completed syscalls per thread, by entry time
	sw     map[uint32]*series[swEv]        // switches in and out per thread
	ready  map[portPair]*series[probe.Event]
	recv   map[portPair]*series[probe.Event] // sock_recv_length with data
	send   map[portPair]*series[probe.Event] // sock_send_length with data
	start  map[portPair]*series[probe.Event] // TCP send starts outside a traced syscall
	wakes  map[uint16]*series[probe.Event]   // sched_waking per waker CPU
	readyC map[uint16]*series[int64]         // data-ready times per CPU
	irq    map[uint32]*series[irqEv]         // interrupts per thread, by end
	xmit   map[portPair]*series[probe.Event] // data segments handed to a device, by the sender's socket
	nrecv  map[portPair]*series[probe.Event] // their receive processing, by the receiver's socket
}

func newIndex() *index {
	return &index{
		sys: map[uint32]*series[probe.Event]{}, sw: map[uint32]*series[swEv]{},
		ready: map[portPair]*series[probe.Event]{}, recv: map[portPair]*series[probe.Event]{}, send: map[portPair]*series[probe.Event]{},
		start: map[portPair]*series[probe.Event]{},
		wakes: map[uint16]*series[probe.Event]{}, readyC: map[uint16]*series[int64]{},
		irq:  map[uint32]*series[irqEv]{},
		xmit: map[portPair]*series[probe.Event]{}, nrecv: map[portPair]*series[probe.Event]{},
	}
}

func buildIndex(evs ...[]probe.Event) *index {
	ix := newIndex()
	for _, part := range evs {
		ix.add(part)
	}
	return ix
}

// add indexes evs (sorted by time). An event older than what was indexed
// before (one that came late) goes to its place in time.
func (ix *index) add(evs []probe.Event) {
	for _, e := range evs {
		ts := int64(e.TS)
		switch e.Kind {
		case probe.KindSyscall:
			pushTo(ix.sys, e.TID, e, entry(e), entry)
			// A send or receive inside a plain syscall is folded into the
			// syscall's record by the probe: index it as one.
			if e.SK != 0 && e.Ret > 0 {
				k := portPair{e.Lport, e.Rport}
				switch {
				case isRecv(e.Arg1):
					pushTo(ix.recv, k, e, ts, evTS)
				case isSend(e.Arg1):
					pushTo(ix.send, k, e, ts, evTS)
				}
			}
		case probe.KindSwitch:
			if prev := uint32(e.Arg0); prev != 0 {
				sw := swEv{ts: ts, preempt: e.Ret == 0}
				if sw.preempt {
					sw.unc = min(int64(e.SK), 1<<40) // a record from before the field: 0
				}
				pushTo(ix.sw, prev, sw, ts, swTS)
			}
			if next := uint32(e.Arg1); next != 0 {
				pushTo(ix.sw, next, swEv{ts: ts, in: true}, ts, swTS)
			}
		case probe.KindDataReady:
			k := portPair{e.Lport, e.Rport}
			pushTo(ix.ready, k, e, ts, evTS)
			pushTo(ix.readyC, e.CPU, ts, ts, self)
		case probe.KindSockRecv:
			if e.Ret > 0 {
				k := portPair{e.Lport, e.Rport}
				pushTo(ix.recv, k, e, ts, evTS)
			}
		case probe.KindSockSend:
			if e.Ret > 0 {
				k := portPair{e.Lport, e.Rport}
				pushTo(ix.send, k, e, ts, evTS)
			}
		case probe.KindSendStart:
			k := portPair{e.Lport, e.Rport}
			pushTo(ix.start, k, e, ts, evTS)
		case probe.KindWaking:
			pushTo(ix.wakes, e.CPU, e, ts, evTS)
		case probe.KindNetXmit:
			k := portPair{e.Lport, e.Rport}
			pushTo(ix.xmit, k, e, ts, evTS)
		case probe.KindNetRecv:
			k := portPair{e.Lport, e.Rport}
			pushTo(ix.nrecv, k, e, ts, evTS)
		case probe.KindIrq:
			if from := int64(e.Arg0); from <= ts && e.SK > 0 {
				pushTo(ix.irq, e.TID, irqEv{from: from, to: ts, ns: min(int64(e.SK), ts-from), what: probe.Interrupt(e.Arg1)}, ts, irqTo)
			}
		}
	}
}

// series is one key's values in an index, in time order: buf[off:].
// Trims move off instead of reslicing, so the room before it is reused
// once the buffer is full: at steady state, pushes and trims allocate
// nothing and each value is copied at most about once.
type series[T any] struct {
	buf  []T
	off  int
	last int64 // the time of buf's last value
	hint int   // where the last search ended, an index into buf (search)
}

// search is sort.Search over live() for a search at a time that moves
// forward from one call to the next, as the round trips a stream joins
// do: it gallops from where the last search ended (hint), and searches
// the values before it only when the answer lies there. Any f that
// sort.Search takes gets sort.Search's answer, whatever the hint: the
// hint (kept as an index into buf, so that trims leave it in place, and
// moved by insertions at most) only decides where the search begins.
func (s *series[T]) search(f func(int) bool) int {
	if s == nil {
		return 0
	}
	n := len(s.buf) - s.off
	h := min(max(s.hint-s.off, 0), n)
	var i int
	if h > 0 && f(h-1) {
		i = sort.Search(h, f)
	} else {
		i = h + gallop(n-h, func(k int) bool { return f(h + k) })
	}
	s.hint = s.off + i
	return i
}

// live is the values kept; nil for a nil series (a key never seen).
func (s *series[T]) live() []T {
	if s == nil {
		return nil
	}
	return s.buf[s.off:]
}

// push adds v, stamped t = at(v), kept in order of at: appended, unless
// it is older than the last (then inserted after its equals).
func (s *series[T]) push(v T, t int64, at func(T) int64) {
	live := s.buf[s.off:]
	if n := len(live); n > 0 && s.last > t {
		i := sort.Search(n, func(i int) bool { return at(live[i]) > t })
		s.buf = slices.Insert(s.buf, s.off+i, v)
		return
	}
	if len(s.buf) == cap(s.buf) {
		n := len(live)
		switch {
		case s.off >= n && 2*cap(s.buf) <= 5*max(n, 16):
			// At least half the buffer was trimmed: move what is kept
			// to the front.
			copy(s.buf, live)
			s.buf = s.buf[:n]
		default:
			// Less than half trimmed: a larger buffer. Or one grown
			// by a burst (the pilot stretch, when nothing is trimmed,
			// sizes every buffer) and holding under 40% of it since:
			// a smaller one, or the burst's size would be held for
			// the rest of the run. A buffer grown to 2n keeps to
			// between 40% and 50% full and is moved back in place.
			s.buf = append(make([]T, 0, max(2*n, 16)), live...)
		}
		s.off = 0
	}
	s.buf = append(s.buf, v)
	s.last = t
}

// pushTo pushes v to m's series for k.
func pushTo[K comparable, T any](m map[K]*series[T], k K, v T, t int64, at func(T) int64) {
	s := m[k]
	if s == nil {
		s = &series[T]{}
		m[k] = s
	}
	s.push(v, t, at)
}

func evTS(e probe.Event) int64 { return int64(e.TS) }

func swTS(v swEv) int64 { return v.ts }

func irqTo(v irqEv) int64 { return v.to }

func self(v int64) int64 { return v }

// entry is a completed syscall's entry time, a signed clock value.
func entry(e probe.Event) int64 { return int64(e.Arg0) }

// trim lets go of the events before bound, keeping each thread's last
// switch before it: whether a thread is on a CPU at bound depends on it.
// A key left with nothing is removed.
func (ix *index) trim(bound int64) {
	trimAll(ix.sys, bound, evTS)
	trimAll(ix.ready, bound, evTS)
	trimAll(ix.recv, bound, evTS)
	trimAll(ix.send, bound, evTS)
	trimAll(ix.start, bound, evTS)
	trimAll(ix.xmit, bound, evTS)
	trimAll(ix.nrecv, bound, evTS)
	trimAll(ix.wakes, bound, evTS)
	trimAll(ix.readyC, bound, self)
	trimAll(ix.irq, bound, irqTo)
	for tid, s := range ix.sw {
		l := s.live()
		if i := sort.Search(len(l), func(i int) bool { return l[i].ts >= bound }); i > 1 {
			s.off += i - 1
		}
		// A thread with no switch for long is let go: the switch records
		// name every thread that ran beside a followed one (whose own
		// later switches, beside no followed thread, are never seen), and
		// a machine starts and ends threads for as long as a watch runs.
		// A followed thread that ran or slept that long without a switch
		// reads as one with no switch history, which no wait is charged
		// from; its next switch starts a new one.
		if l := s.live(); len(l) == 1 && l[0].ts < bound-forgetSwitchedOut {
			delete(ix.sw, tid)
		}
	}
}

// forgetSwitchedOut is how long a thread's last switch is kept behind
// the trim bound; a thread waiting that long for a CPU loses the start of
// its wait.
const forgetSwitchedOut = 10_000_000_000 // 10 s

// trimAll drops every value of m stamped before bound (each slice is in
// time order, by at).
func trimAll[K comparable, T any](m map[K]*series[T], bound int64, at func(T) int64) {
	for k, s := range m {
		l := s.live()
		i := sort.Search(len(l), func(i int) bool { return at(l[i]) >= bound })
		switch {
		case i == len(l):
			delete(m, k)
		case i > 0:
			s.off += i
		}
	}
}

// held counts the indexed events and switches.
func (ix *index) held() int {
	n := 0
	for _, s := range ix.sys {
		n += len(s.live())
	}
	for _, s := range ix.sw {
		n += len(s.live())
	}
	for _, m := range []map[portPair]*series[probe.Event]{ix.ready, ix.recv, ix.send, ix.start, ix.xmit, ix.nrecv} {
		for _, s := range m {
			n += len(s.live())
		}
	}
	for _, s := range ix.wakes {
		n += len(s.live())
	}
	for _, s := range ix.irq {
		n += len(s.live())
	}
	return n
}

// firstAt returns the first event of s (sorted by TS) with TS ≥ t.
func firstAt(s []probe.Event, t int64) (probe.Event, bool) {
	i := gallop(len(s), func(i int) bool { return int64(s[i].TS) >= t })
	if i == len(s) {
		return probe.Event{}, false
	}
	return s[i], true
}

// enclosing finds tid's syscall that was in progress at t.
func (ix *index) enclosing(tid uint32, t int64) (probe.Event, bool) {
	s := ix.sys[tid].live()
	i := sort.Search(len(s), func(i int) bool { return int64(s[i].Arg0) > t }) - 1
	if i < 0 || int64(s[i].TS) < t {
		return probe.Event{}, false
	}
	return s[i], true
}

// offCPUAt reports whether the thread of switches s was switched out at t, and when it next
// switched in.
func offCPUAt(s []swEv, t int64) (bool, int64) {
	i := gallop(len(s), func(i int) bool { return s[i].ts > t })
	if i == 0 || s[i-1].in {
		return false, 0
	}
	for ; i < len(s); i++ {
		if s[i].in {
			return true, s[i].ts
		}
	}
	return true, 0
}

// switchInAfter is the first switch in of s at or after t.
func switchInAfter(s []swEv, t int64) (int64, bool) {
	for i := gallop(len(s), func(i int) bool { return s[i].ts >= t }); i < len(s); i++ {
		if s[i].in {
			return s[i].ts, true
		}
	}
	return 0, false
}

// preemptedIn is how long the thread of switches s was preempted within [a, b): from each
// switch out while runnable (less the time before it that the scheduler
// no longer credited to the thread, swEv.unc) to its next switch in,
// clipped to [a, b). A preemption whose switch in is missing lasts to b.
func preemptedIn(s []swEv, a, b int64) int64 {
	if b <= a {
		return 0
	}
	i := max(gallop(len(s), func(i int) bool { return s[i].ts > a })-1, 0)
	var total int64
	from := int64(-1) // start of the preemption in progress, -1 if none
	for ; i < len(s) && s[i].ts-s[i].unc < b; i++ {
		switch e := s[i]; {
		case e.in:
			if from >= 0 {
				total += max(min(e.ts, b)-max(from, a), 0)
				from = -1
			}
		case e.preempt:
			if from < 0 {
				from = e.ts - e.unc
			}
		default:
			from = -1
		}
	}
	if from >= 0 {
		total += max(b-max(from, a), 0)
	}
	return total
}

// irqIn calls f with each interrupt record of s that overlaps [a, b)
// and the part of its time that falls there: all of it when the record
// lies within, else its time in proportion to the overlap (a record
// spans the interrupts between two of the thread's records, which the
// boundaries mostly are).
func irqIn(s []irqEv, a, b int64, f func(r irqEv, ns int64)) {
	if b <= a {
		return
	}
	for i := gallop(len(s), func(i int) bool { return s[i].to >= a }); i < len(s) && s[i].from < b; i++ {
		r := s[i]
		lo, hi := max(r.from, a), min(r.to, b)
		switch {
		case r.from >= a && r.to < b:
			f(r, r.ns)
		case hi > lo:
			f(r, r.ns*(hi-lo)/(r.to-r.from))
		}
	}
}

// blockedIn is the first switch out of s in [a, b) while not runnable (it
// went to sleep), if any.
func blockedIn(s []swEv, a, b int64) (int64, bool) {
	for i := gallop(len(s), func(i int) bool { return s[i].ts >= a }); i < len(s) && s[i].ts < b; i++ {
		if !s[i].in && !s[i].preempt {
			return s[i].ts, true
		}
	}
	return 0, false
}

// wokenBy finds the thread a data-ready event woke: the first sched_waking
// on the same CPU after it and before that CPU's next data-ready (the wake
// runs inside sk_data_ready → sock_def_readable, on the CPU that ran it).
func (ix *index) wokenBy(dr probe.Event, exclude uint32) (uint32, int64, bool) {
	t := int64(dr.TS)
	limit := t + 200_000
	rc := ix.readyC[dr.CPU].live()
	if j := sort.Search(len(rc), func(j int) bool { return rc[j] > t }); j < len(rc) && rc[j] < limit {
		limit = rc[j]
	}
	ws := ix.wakes[dr.CPU].live()
	for i := sort.Search(len(ws), func(i int) bool { return int64(ws[i].TS) >= t }); i < len(ws) && int64(ws[i].TS) < limit; i++ {
		if w := uint32(ws[i].Arg0); w != exclude {
			return w, int64(ws[i].TS), true
		}
	}
	return 0, 0, false
}

// Join splits every measured round trip of in.Conns.
func Join(in Input) *RoundTrips {
	evs := in.Events
	if !slices.IsSortedFunc(evs, byTS) {
		evs = slices.Clone(evs)
		slices.SortStableFunc(evs, byTS)
	}
	ix := buildIndex(evs)
	res := &RoundTrips{Reasons: map[string]int{}}
	for _, c := range in.Conns {
		cport := uint16(c.LocalPort)
		j := joiner{ix: ix, ctid: uint32(c.TID),
			csk: portPair{cport, in.ServerPort}, ssk: portPair{in.ServerPort, cport}}
		for seq, r := range c.Records {
			if r.T0 < in.MeasureStart {
				continue
			}
			rt := RoundTrip{Conn: c.ID, Seq: seq, T0: r.T0, T1: r.T1}
			j.split(&rt)
			if rt.Joined {
				res.Joined++
				if rt.Consistent {
					res.Consistent++
				}
			} else {
				res.Unjoined++
				res.Reasons[rt.Reason]++
			}
			res.Trips = append(res.Trips, rt)
		}
	}
	return res
}

func byTS(a, b probe.Event) int { return cmp.Compare(a.TS, b.TS) }

type joiner struct {
	ix       *index
	ctid     uint32
	csk, ssk portPair
	// The round trip being split starts at t0; its threads' switches and
	// interrupts from just before it, looked up once (see sw).
	t0      int64
	thr     [4]thread
	nthr    int
	scratch thread // a fifth thread's, not kept
	// The connection's events from t0 on, per list, looked up once
	// (bit l of have: conn[l] is set; see evs).
	conn [numConnLists][]probe.Event
	have uint16
}

// connList names one of a connection's event lists in the index.
type connList int

const (
	readyC connList = iota // data ready on the client's socket
	readyS                 // … on the server's
	recvC
	recvS
	sendS
	startC
	startS
	xmitC
	xmitS
	nrecvC
	nrecvS
	numConnLists
)

// list is l's events in the index, all of them.
func (j *joiner) list(l connList) []probe.Event { return j.series(l).live() }

// series is l's series in the index (nil: none).
func (j *joiner) series(l connList) *series[probe.Event] {
	ix := j.ix
	switch l {
	case readyC:
		return ix.ready[j.csk]
	case readyS:
		return ix.ready[j.ssk]
	case recvC:
		return ix.recv[j.csk]
	case recvS:
		return ix.recv[j.ssk]
	case sendS:
		return ix.send[j.ssk]
	case startC:
		return ix.start[j.csk]
	case startS:
		return ix.start[j.ssk]
	case xmitC:
		return ix.xmit[j.csk]
	case xmitS:
		return ix.xmit[j.ssk]
	case nrecvC:
		return ix.nrecv[j.csk]
	}
	return ix.nrecv[j.ssk]
}

// evs is l's events for searches that need nothing stamped before t:
// from the first at or after t0 when t is within the round trip (a
// search for the first event at or after t, or the last at or before some
// time that must be at or after t, finds the same one there), all of
// them otherwise.
func (j *joiner) evs(l connList, t int64) []probe.Event {
	if t < j.t0 {
		return j.list(l)
	}
	if j.have&(1<<l) == 0 {
		sr := j.series(l)
		s := sr.live()
		j.conn[l] = s[sr.search(func(i int) bool { return int64(s[i].TS) >= j.t0 }):]
		j.have |= 1 << l
	}
	return j.conn[l]
}

// thread is one thread's switches from the last before t0 on, and its
// interrupt records from the first ending at or after t0.
type thread struct {
	tid uint32
	sw  []swEv
	irq []irqEv
}

// at is tid's thread, looked up in the index on first use in a round trip.
func (j *joiner) at(tid uint32) *thread {
	for i := range j.nthr {
		if j.thr[i].tid == tid {
			return &j.thr[i]
		}
	}
	sws, irqs := j.ix.sw[tid], j.ix.irq[tid]
	sw, irq := sws.live(), irqs.live()
	// The last switch before t0 (not at it: a search for ts ≥ t, t ≥ t0,
	// must find the first of equal stamps) and the first interrupt record
	// ending at or after t0.
	sw = sw[max(sws.search(func(i int) bool { return sw[i].ts >= j.t0 })-1, 0):]
	irq = irq[irqs.search(func(i int) bool { return irq[i].to >= j.t0 }):]
	t := thread{tid: tid, sw: sw, irq: irq}
	if j.nthr == len(j.thr) {
		j.scratch = t
		return &j.scratch
	}
	j.thr[j.nthr] = t
	j.nthr++
	return &j.thr[j.nthr-1]
}

// sw is tid's switches for searches from t on: from the last switch
// before the round trip's start when t is within the round trip, which
// every search from a time at or after the start finds the same answer
// in as in all of them; all of them otherwise.
func (j *joiner) sw(tid uint32, t int64) []swEv {
	if t < j.t0 {
		return j.ix.sw[tid].live()
	}
	return j.at(tid).sw
}

// irq is tid's interrupt records for searches from t on, likewise.
func (j *joiner) irq(tid uint32, t int64) []irqEv {
	if t < j.t0 {
		return j.ix.irq[tid].live()
	}
	return j.at(tid).irq
}

// gallop is sort.Search for a search whose answer is most often near the
// start: it brackets the answer by doubling steps, then searches the
// bracket.
func gallop(n int, f func(int) bool) int {
	lo, step := 0, 1
	for lo+step <= n && !f(lo+step-1) {
		lo += step
		step *= 2
	}
	hi := min(lo+step, n)
	return lo + sort.Search(hi-lo, func(i int) bool { return f(lo + i) })
}

// split follows one round trip's critical path; see the package comment
// for each boundary.
func (j *joiner) split(rt *RoundTrip) {
	ix := j.ix
	b := &rt.Bounds
	b[0], b[10] = rt.T0, rt.T1
	rt.NWaits, rt.MoreWaits, rt.NIrqs = 0, 0, 0
	fail := func(reason string) { rt.Joined, rt.Reason = false, reason }
	j.t0, j.nthr, j.have = rt.T0, 0, 0

	// b1: the client's first syscall entered at or after t0 is its send;
	// without syscall events, the first send start on its socket.
	cs := ix.sys[j.ctid].live()
	i := sort.Search(len(cs), func(i int) bool { return int64(cs[i].Arg0) >= rt.T0 })
	if i < len(cs) && int64(cs[i].Arg0) <= rt.T1 {
		b[1] = int64(cs[i].Arg0)
	} else if st, ok := firstAt(j.evs(startC, rt.T0), rt.T0); ok && int64(st.TS) <= rt.T1 {
		b[1] = int64(st.TS)
	} else {
		fail(NoClientSend)
		return
	}

	// b2 and the server's receive. A request may reach the server in
	// several segments and be read in several reads, and a server may
	// answer part of it before reading the rest (an echo server that
	// forwards 8 KiB at a time). The receive on the critical path is the
	// one that completed the request: the last receive with data on the
	// server's socket that returned before the server began its reply,
	// and b2 is the last data-ready there before that receive returned
	// (for a one-segment request read at once, the only ones).
	sdr1, ok := firstAt(j.evs(readyS, b[1]), b[1])
	if !ok || int64(sdr1.TS) > rt.T1 {
		fail(NoServerReady)
		return
	}
	srv, ok := firstAt(j.evs(recvS, int64(sdr1.TS)), int64(sdr1.TS))
	if !ok || int64(srv.TS) > rt.T1 {
		fail(NoServerRecv)
		return
	}
	if f := j.replyStart(b[1], rt.T1); f > int64(srv.TS) {
		srv, _ = lastIn(j.evs(recvS, int64(srv.TS)), int64(srv.TS), f)
	}
	sdr, _ := lastIn(j.evs(readyS, int64(sdr1.TS)), int64(sdr1.TS), int64(srv.TS)) // sdr1 at least
	stid := j.serverRecv(rt, sdr, srv)

	// b7, b9: the reply may come in several pieces, each queued to the
	// client's socket (a data-ready) and read by one or more client reads.
	// The round trip ends with the read that completed the reply, b9, and
	// the piece on the critical path is the last one queued before it: b7
	// is the last data-ready on the client's socket in [first data-ready
	// after b5, b9]. The server's time writing the earlier pieces is then
	// the server's (server_user), not the client's receive.
	cdr1, ok := firstAt(j.evs(readyC, b[5]), b[5])
	if !ok || int64(cdr1.TS) > rt.T1 {
		fail(NoClientReady)
		return
	}
	// b9: the client's last syscall before t1 is the read that completed
	// the reply; without syscall events, its last receive on the socket.
	k := sort.Search(len(cs), func(k int) bool { return int64(cs[k].TS) > rt.T1 }) - 1
	if k >= 0 && int64(cs[k].TS) >= int64(cdr1.TS) {
		b[9] = int64(cs[k].TS)
	} else {
		// Only a receive at or after cdr1 will do: it is searched for
		// among those from then on.
		rs := j.evs(recvC, int64(cdr1.TS))
		k = gallop(len(rs), func(k int) bool { return int64(rs[k].TS) > rt.T1 }) - 1
		if k < 0 || int64(rs[k].TS) < int64(cdr1.TS) {
			fail(NoClientRecv)
			return
		}
		b[9] = int64(rs[k].TS)
	}
	cdr, _ := lastIn(j.evs(readyC, int64(cdr1.TS)), int64(cdr1.TS), b[9]) // cdr1 at least
	b[7] = int64(cdr.TS)

	// b6: the entry of the server's send that queued that last piece. On
	// loopback the data-ready above runs inside that send, so the sender's
	// syscall in progress at b7 is it (its sock_send_length may even come
	// after t1 if the server was preempted before the send returned).
	// Elsewhere (veth softirq, io_uring workers) fall back to the TCP send
	// starts, then to the sock_send_length, on the server's socket.
	var sendTID uint32
	if sys, ok := ix.enclosing(cdr.TID, b[7]); ok && sys.Lport == j.ssk.l && sys.Rport == j.ssk.r {
		b[6], sendTID = int64(sys.Arg0), cdr.TID
	} else if st, ok := j.sendStartBefore(min(b[5], int64(srv.TS)), b[7]); ok {
		// The start of the last send on the server's socket before the
		// part was queued (io_uring may submit the send in the same
		// io_uring_enter that reaps the receive, so it is looked for from
		// the receive's own event).
		b[6], sendTID = int64(st.TS), st.TID
		if b[6] < b[5] {
			b[6] = b[5]
		}
	} else {
		ssd, ok := j.lastPartSend(b[5], b[7], int64(srv.TS), rt.T0, rt.T1)
		if !ok {
			fail(NoServerSend)
			return
		}
		b[6], sendTID = int64(ssd.TS), ssd.TID
		if sendSys, ok := ix.enclosing(ssd.TID, int64(ssd.TS)); ok {
			b[6] = int64(sendSys.Arg0)
		}
		if b[6] > b[7] {
			b[6] = b[7]
		}
	}

	// b8: the client on CPU. A switch in after b9 is not it: the thread
	// returned from its read at b9, so the record of its switch in is
	// missing (seen under load), and no wake-up is known.
	b[8] = b[7]
	if off, in := offCPUAt(j.sw(j.ctid, b[7]), b[7]); off && in > 0 && in <= b[9] {
		b[8] = in
		rt.addWait(Wait{Component: ClientWakeup, TID: j.ctid, FromNs: b[7], ToNs: in, InNs: in})
	}

	j.finish(rt, stid, sendTID)
}

// finish computes the components from the bounds: gaps, the network
// splits and the carving of preemption and interrupts, and the sum check.
func (j *joiner) finish(rt *RoundTrip, stid, sendTID uint32) {
	sum, tol := rt.gaps()
	j.splitNet(rt, ClientNet, xmitC, nrecvS)
	j.splitNet(rt, ServerNet, xmitS, nrecvC)
	j.carvePreempted(rt, stid, sendTID)
	if diff := sum - (rt.T1 - rt.T0); diff > tol || -diff > tol {
		rt.Consistent = false
	}
}

// gaps marks rt joined and sets its first ten components to the gaps
// between its bounds, a negative one 0 (and rt inconsistent when beyond
// the tolerance, which it returns with the gaps' sum).
func (rt *RoundTrip) gaps() (sum, tol int64) {
	b := &rt.Bounds
	rt.Joined = true
	rt.Consistent = true
	tol = max((rt.T1-rt.T0)/50, 1000)
	rt.Ns = [NumComponents]int64{}
	for c := range NumBounds - 1 {
		d := b[c+1] - b[c]
		if d < 0 {
			if -d > tol {
				rt.Consistent = false
			}
			d = 0
		}
		rt.Ns[c] = d
		sum += d
	}
	return sum, tol
}

// serverRecv sets b2 … b5 from sdr, the data ready of the request's last
// piece on the server's socket, and srv, the receive that completed it:
// b3 the server on CPU (woken by whoever woke it, or back from being
// off its CPU), b4 and b5 the receive syscall around srv. It returns the
// server thread.
func (j *joiner) serverRecv(rt *RoundTrip, sdr, srv probe.Event) uint32 {
	ix, b := j.ix, &rt.Bounds
	b[2] = int64(sdr.TS)
	stid := srv.TID
	rt.ServerTID = stid
	recvSys, inSys := ix.enclosing(stid, int64(srv.TS))
	b[3] = b[2]
	if w, wt, ok := ix.wokenBy(sdr, j.ctid); ok {
		if in, ok := switchInAfter(j.sw(w, wt), wt); ok && in <= int64(srv.TS) {
			b[3] = in
			rt.addWait(Wait{Component: ServerWakeup, TID: w, FromNs: b[2], ToNs: in, InNs: in})
		}
	} else if off, in := offCPUAt(j.sw(stid, b[2]), b[2]); off && in > 0 && in <= int64(srv.TS) {
		b[3] = in
		rt.addWait(Wait{Component: ServerWakeup, TID: stid, FromNs: b[2], ToNs: in, InNs: in})
	}
	b[4], b[5] = b[3], int64(srv.TS)
	if inSys {
		b[4] = max(b[3], int64(recvSys.Arg0))
		b[5] = int64(recvSys.TS)
	}
	return stid
}

// splitNet splits the network gap g (client_net, server_net) at its data
// segment's hand-off to a device and the start of its receive
// processing: into the sender's stack, the device and the receiver's
// stack (its three parts in Table). The segment is the last whose receive processing
// started in the gap, on snd's peer rcv: the data ready that ends the gap
// runs in that processing, after it. Its transmit is the one on snd that
// carried its sequence number, the last before the receive within the
// gap (a retransmit's, if any). Without both records in order the gap
// stays whole.
//
// On loopback and veth the whole gap runs on the sender's CPU, mostly
// inside its send: the transmit queues the segment to the CPU's backlog
// and raises the receive softirq, which runs when the sender's stack
// re-enables bottom halves on its way out. The device part is that
// hand-off: the rest of the sender's transmit path after the driver took
// the segment, up to the softirq's start. On a NIC it is the driver,
// the wire and the interrupt on the receiving host.
func (j *joiner) splitNet(rt *RoundTrip, g Component, snd, rcv connList) {
	_, d, _, _ := netSplit(g)
	rt.Xmit[d], rt.Recv[d] = 0, 0
	a, z := rt.Bounds[g], rt.Bounds[g+1]
	if z <= a {
		return
	}
	r, ok := lastIn(j.evs(rcv, a), a, z)
	if !ok {
		return
	}
	y := int64(r.TS)
	xs := j.evs(snd, a)
	for i := gallop(len(xs), func(i int) bool { return int64(xs[i].TS) > y }) - 1; i >= 0 && int64(xs[i].TS) >= a; i-- {
		// The segment's sequence number within the transmitted range,
		// modulo 2³².
		if uint32(r.Arg0)-uint32(xs[i].Arg0) < uint32(max(xs[i].Ret, 0)) {
			x := int64(xs[i].TS)
			rt.Xmit[d], rt.Recv[d] = x, y
			tx := ClientNetTx
			if g == ServerNet {
				tx = ServerNetTx
			}
			rt.Ns[tx], rt.Ns[tx+1], rt.Ns[tx+2] = x-a, y-x, z-y
			rt.Ns[g] = 0
			return
		}
	}
}

// Span is the stretch in which component c's time lies, before
// carving: its gap, or its part of a split network gap; empty for a
// network gap that was split and for the parts of one that was not;
// beyond_host's, Beyond.
func (rt *RoundTrip) Span(c Component) (int64, int64) {
	b := &rt.Bounds
	if c == BeyondHost {
		return rt.Beyond[0], rt.Beyond[1]
	}
	g, d, part, ok := netSplit(c)
	if !ok {
		return b[c], b[c+1]
	}
	x, y := rt.Xmit[d], rt.Recv[d]
	switch {
	case part < 0 && x == 0:
		return b[g], b[g+1]
	case part < 0 || x == 0:
		return b[g], b[g]
	case part == 0:
		return b[g], x
	case part == 1 && rt.Beyond[1] != 0: // beyond_host holds it
		return x, x
	case part == 1:
		return x, y
	}
	return y, b[g+1]
}

// lastIn returns the last event of s (sorted by TS) with a ≤ TS ≤ b.
func lastIn(s []probe.Event, a, b int64) (probe.Event, bool) {
	i := gallop(len(s), func(i int) bool { return int64(s[i].TS) > b }) - 1
	if i < 0 || int64(s[i].TS) < a {
		return probe.Event{}, false
	}
	return s[i], true
}

// replyStart is when the server began its reply on the connection: the
// first TCP send start, send syscall entry or (where neither is seen)
// send return on the server's socket at or after from; to if none comes
// before it. A send that began before from belongs to the round trip
// before.
func (j *joiner) replyStart(from, to int64) int64 {
	f := to
	if st, ok := firstAt(j.evs(startS, from), from); ok {
		f = min(f, int64(st.TS))
	}
	s := j.evs(sendS, from)
	for i := gallop(len(s), func(i int) bool { return int64(s[i].TS) >= from }); i < len(s) && int64(s[i].TS) < f; i++ {
		at := int64(s[i].TS)
		if s[i].Kind == probe.KindSyscall {
			at = entry(s[i])
		}
		if at >= from {
			f = min(f, at)
			break
		}
	}
	return f
}

// sendStartBefore finds the start of the last send on the server's
// socket that began in [from, to]: the last TCP send start there, taken
// back to the first start after the previous send's return (the hook
// fires once per segment a send fills, and a large send fills several).
// Where no send returns are seen the sends cannot be told apart, and the
// last start is taken.
func (j *joiner) sendStartBefore(from, to int64) (probe.Event, bool) {
	starts, sends := j.evs(startS, from), j.evs(sendS, from) // every search is from from on
	st, ok := lastIn(starts, from, to)
	if !ok {
		return st, false
	}
	if _, ok := firstAt(sends, int64(st.TS)); !ok {
		return st, true
	}
	lo := from
	if prev, ok := lastIn(sends, from, int64(st.TS)-1); ok {
		lo = int64(prev.TS)
	}
	if first, ok := firstAt(starts, lo); ok && first.TS <= st.TS {
		return first, true
	}
	return st, true
}

// lastPartSend finds, where no send start is seen, the send whose
// sock_send_length marks the reply's last piece, queued at b7: on loopback
// the part is queued inside that send, which returns after b7 (before
// t1, or a round trip past it when the server was preempted before
// returning); elsewhere the last send that returned in [b5, b7]. io_uring
// may submit the send and reap the receive in one io_uring_enter: the
// send is then found after the receive's own event, recvTS.
func (j *joiner) lastPartSend(b5, b7, recvTS, t0, t1 int64) (probe.Event, bool) {
	s := j.evs(sendS, min(b5, b7, recvTS))
	limit := t1 + (t1 - t0)
	if e, ok := firstAt(s, b7); ok && int64(e.TS) <= t1 {
		return e, true
	}
	if e, ok := lastIn(s, b5, b7); ok {
		return e, true
	}
	if e, ok := firstAt(s, b5); ok && int64(e.TS) <= limit {
		return e, true
	}
	if e, ok := firstAt(s, recvTS); ok && int64(e.TS) <= limit {
		return e, true
	}
	return probe.Event{}, false
}

// carvePreempted moves the time the thread carrying the request was
// preempted (switched out while runnable, until its next switch in) out of
// the gap it interrupts and into ClientPreempted or ServerPreempted, and
// the time interrupts took from it on its CPU into ClientIrq or
// ServerIrq. The client thread carries it in [b0, b2) and [b8, b10); the
// server's receiving thread in [b3, b5) and on into server_user until it
// goes to sleep, the sending thread from then to b7. The wake-ups
// [b2, b3) and [b7, b8) are left whole: a woken thread's wait for its
// first switch in is the wake-up, whatever the scheduler's reason, and it
// is not on a CPU for an interrupt to take. Only positive gaps are
// carved, and never by more than their length, so the sum is unchanged.
//
// A split network gap's device and receiver-stack parts lose no
// preemption, only interrupts: from the hand-off to the device on, the
// segment is carried by the receive softirq, not by the sender's thread.
// Run inline (loopback, veth) it runs with preemption off in the
// sender's context, so a preemption seen there is the scheduler's
// uncredited stretch (a wake-up during the softirq) before a switch that
// came after it; deferred to ksoftirqd, the sender's preemption is off
// the segment's path, and the wait for ksoftirqd is the hand-off.
func (j *joiner) carvePreempted(rt *RoundTrip, recvTID, sendTID uint32) {
	b := &rt.Bounds
	carve := func(c Component, tid uint32, from, to int64) {
		lo, hi := rt.Span(c)
		from, to = max(from, lo), min(to, hi)
		if tid == 0 || to <= from {
			return
		}
		var p int64
		if _, _, part, _ := netSplit(c); part < 1 {
			p = preemptedIn(j.sw(tid, from), from, to)
		}
		if p > 0 {
			j.recordPreempted(rt, c, tid, from, to)
		}
		pc, ic := ClientPreempted, ClientIrq
		if c.Side() == "server" {
			pc, ic = ServerPreempted, ServerIrq
		}
		rt.Ns[c] -= p
		rt.Ns[pc] += p
		// An interrupt within the uncredited stretch before a preemption
		// (swEv.unc) may be counted as both; bounded by what is left of
		// the gap, so the sum holds.
		irqIn(j.irq(tid, from), from, to, func(r irqEv, ns int64) {
			ns = min(ns, rt.Ns[c])
			rt.Ns[c] -= ns
			rt.Ns[ic] += ns
			rt.addIrq(ic, r.what, ns)
		})
	}
	if !j.quiet(j.ctid, b[0], b[10]) {
		for _, c := range []Component{ClientUser, ClientNet, ClientNetTx, ClientNetDev, ClientNetRx, ClientKernelRecv, ClientUserRecv} {
			carve(c, j.ctid, b[0], b[10])
		}
	}
	if sendTID == 0 {
		sendTID = recvTID
	}
	handoff := b[6]
	if sendTID != recvTID {
		if t, ok := blockedIn(j.sw(recvTID, b[5]), b[5], b[6]); ok {
			handoff = t
		}
	}
	if !j.quiet(recvTID, b[3], handoff) {
		carve(ServerQueue, recvTID, b[3], b[4])
		carve(ServerKernelRecv, recvTID, b[4], b[5])
		carve(ServerUser, recvTID, b[5], handoff)
	}
	if !j.quiet(sendTID, handoff, b[7]) {
		carve(ServerUser, sendTID, handoff, b[6])
		for _, c := range []Component{ServerNet, ServerNetTx, ServerNetDev, ServerNetRx} {
			carve(c, sendTID, b[6], b[7])
		}
	}
}

// quiet says whether thread tid was neither preempted nor interrupted in
// [from, to): then no component carried by it there has anything to
// carve (the carves of a stretch take only what lies within it), and
// one look does for all of them. Most round trips are quiet.
func (j *joiner) quiet(tid uint32, from, to int64) bool {
	if tid == 0 || to <= from {
		return true
	}
	// Every switch a preemptedIn of a stretch within could look at (it
	// starts at the last switch at or before its start): none a
	// preemption, none of them starts one.
	sw := j.sw(tid, from)
	for i := max(gallop(len(sw), func(i int) bool { return sw[i].ts > from })-1, 0); i < len(sw) && sw[i].ts-sw[i].unc < to; i++ {
		if sw[i].preempt {
			return false
		}
	}
	s := j.irq(tid, from)
	i := gallop(len(s), func(i int) bool { return s[i].to >= from })
	return i == len(s) || s[i].from >= to
}

// x86-64 numbers of the receive and send calls whose socket events the
// probe folds into the syscall record.
func isRecv(nr uint64) bool {
	return nr == 0 || nr == 17 || nr == 19 || nr == 45 || nr == 47 || nr == 299
}
func isSend(nr uint64) bool {
	return nr == 1 || nr == 18 || nr == 20 || nr == 44 || nr == 46 || nr == 307
}
