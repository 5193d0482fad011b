package breakdown

import (
	"cmp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// Stream joins a live run as it goes, so that memory stays flat in run
// length: kernel events and measured round trips arrive as they happen,
// and Advance joins every round trip whose events must all have arrived,
// hands it to the consumer, and lets go of events no waiting round trip
// can need. The split of each round trip is Join's: Stream only chooses
// the window of events it looks at.
//
// Event and Trip may be called from other goroutines than Advance; one
// goroutine calls Advance and Flush.
type Stream struct {
	keep  int64 // how long events are kept behind the watermark, ns
	floor int64 // events at or after this are kept (0: no floor)
	port  uint16
	conns map[int]loadgen.ConnInfo
	out   func(*RoundTrip, loadgen.Record)

	mu      sync.Mutex
	clients map[uint32]bool // the client threads; replaced, never changed, by AddConns
	inEvs   []probe.Event   // arrived since the last Advance, unsorted
	spare   []probe.Event   // the previous hand-over's buffer, for reuse
	inTrips []waiting
	// inFirst is the earliest T0 in inTrips (0: none): a trim must not
	// pass a round trip handed over after its join took the hand-over,
	// such as the pilot stretch's, handed over just before a Release.
	inFirst int64

	// Events at or after the watermark wait in pending (sorted by time),
	// since more may still arrive before them; those before it are in ix,
	// which lives across joins and is trimmed behind the round trips
	// still waiting, so each event is indexed once.
	// pending is a window of pendBuf: the events made final leave its
	// front, and the rest moves back to pendBuf's start only when the
	// room after it runs out, so that what waits is not copied again at
	// every Advance (it is the probe's lag, several Advances' worth).
	pending   []probe.Event
	pendBuf   []probe.Event
	tail      []probe.Event // scratch: pending's events later than the newest hand-over's first
	sortBuf   []probe.Event // scratch space of sortRuns
	ix        *index
	trimmedTo int64
	waiting   []waiting
	mark      int64 // the last watermark
	late      int64
	acc       *Accumulator
	sys       *SyscallTable
	uring     *UringTable
	win       tableWindow // the tables' measured window
	// Replies the server sent, per sendBucket of time: TCP send starts,
	// and sends that returned data (used where no send start is hooked).
	starts, sends map[int64]int64
	// The buckets [foldFrom, foldTo) inside the measured window that the
	// watermark has passed are summed into foldStarts and foldSends and
	// let go: the maps hold only the recent stretch, so that memory is
	// flat in run length (a watch runs for hours). foldTo 0: none yet.
	foldFrom, foldTo      int64
	foldStarts, foldSends int64
	// serverSide: round trips are the server's alone (SetServerSide).
	serverSide bool
	// clientSide: round trips are the client's, its server on another
	// host (SetClientSide).
	clientSide bool
	// gone are connections that ended (Forget), let go once no round trip
	// of theirs can still come.
	gone []goneConn
}

// goneConn is a connection that ended at a time (CLOCK_MONOTONIC ns).
type goneConn struct {
	id int
	at int64
}

type waiting struct {
	conn int
	seq  int64
	r    loadgen.Record
}

// lookback is how far before a round trip's t0 its split may look: a
// syscall or a switch just before it. The last switch of every thread is
// carried beyond it.
const lookback = 50_000_000 // 50 ms

// NewStream starts a streaming join of the connections conns to the
// server listening on port (more connections may be added with AddConns).
// out receives each joined or unjoined round trip with its record; it
// must not keep the pointer. With syscalls set, completed system
// calls are tallied for Syscalls.
//
// keep is how long events are kept behind the watermark for round trips
// not handed over yet: a round trip started that long before the
// watermark and completed after it may still come. The run loop hands
// round trips over once per check, and a round trip lasts at most the
// timeout, so keep should be at least the two together.
func NewStream(port uint16, conns []loadgen.ConnInfo, syscalls bool, keep time.Duration, out func(*RoundTrip, loadgen.Record)) *Stream {
	s := &Stream{starts: map[int64]int64{}, sends: map[int64]int64{}, keep: keep.Nanoseconds(), port: port, conns: map[int]loadgen.ConnInfo{}, out: out, ix: newIndex(), acc: NewAccumulator(), uring: NewUringTable()}
	for _, c := range conns {
		s.conns[c.ID] = c
	}
	if syscalls {
		s.sys = NewSyscallTable()
	}
	s.AddConns(conns)
	return s
}

// AddConns adds connections to follow, before their round trips arrive.
func (s *Stream) AddConns(conns []loadgen.ConnInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clients := make(map[uint32]bool, len(s.clients)+len(conns))
	for tid := range s.clients {
		clients[tid] = true
	}
	for _, c := range conns {
		s.conns[c.ID] = c
		clients[uint32(c.TID)] = true
	}
	s.clients = clients
}

// Forget says that connection id ended at time at: no round trip of
// it ends later. Its state (its ConnInfo, its count of slow round trips
// if it had none) is let go once the watermark is keep past at and none
// of its round trips waits, so that a join fed by connections that come
// and go (a watch of a server whose clients reconnect) holds only the
// recent ones.
func (s *Stream) Forget(id int, at int64) {
	s.mu.Lock()
	s.gone = append(s.gone, goneConn{id, at})
	s.mu.Unlock()
}

// letGo drops the state of the connections Forget named whose time has
// passed (advance's, after the join).
func (s *Stream) letGo(watermark int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.gone) == 0 {
		return
	}
	busy := map[int]bool{}
	for _, w := range s.waiting {
		busy[w.conn] = true
	}
	rest := s.gone[:0]
	for _, g := range s.gone {
		if g.at+s.keep >= watermark || busy[g.id] {
			rest = append(rest, g)
			continue
		}
		delete(s.conns, g.id)
		s.acc.conc.forget(g.id)
	}
	s.gone = rest
}

// SetServerSide makes every round trip one seen from the server's side
// alone, from the request's data ready to the start of the reply's send
// (splitServer), before any is added: a watch that follows no client.
func (s *Stream) SetServerSide() { s.serverSide = true }

// SetClientSide makes every round trip one seen from the client's side
// alone, its server on another host (splitClient), before any is added:
// a watch of a client whose server's port does not listen here.
func (s *Stream) SetClientSide() { s.clientSide = true }

// Hold keeps every event stamped at or after t until Release: the run
// loop holds round trips back while it decides where its window starts.
func (s *Stream) Hold(t int64) {
	s.mu.Lock()
	s.floor = t
	s.mu.Unlock()
}

// Release ends a Hold.
func (s *Stream) Release() { s.Hold(0) }

// Event adds one kernel event (copied).
func (s *Stream) Event(e *probe.Event) {
	s.mu.Lock()
	s.inEvs = append(s.inEvs, *e)
	s.mu.Unlock()
}

// Events adds kernel events (copied), under one lock: a reader that has
// them in batches (probe.RunBatches) hands each batch over at once.
func (s *Stream) Events(evs []probe.Event) {
	s.mu.Lock()
	s.inEvs = append(s.inEvs, evs...)
	s.mu.Unlock()
}

// Trip adds one measured round trip of connection conn.
func (s *Stream) Trip(conn int, seq int64, r loadgen.Record) {
	s.mu.Lock()
	s.inTrips = append(s.inTrips, waiting{conn, seq, r})
	if s.inFirst == 0 || r.T0 < s.inFirst {
		s.inFirst = r.T0
	}
	s.mu.Unlock()
}

// Advance joins every waiting round trip whose events all lie before
// watermark (CLOCK_MONOTONIC ns): the caller promises that every event
// stamped before it has been passed to Event.
func (s *Stream) Advance(watermark int64) { s.advance(watermark, false) }

// Flush joins every round trip still waiting; call it once every event
// has been read.
func (s *Stream) Flush() { s.advance(0, true) }

// Late is the number of events that arrived after the watermark had
// passed their time: round trips joined before they came may have missed
// them.
func (s *Stream) Late() int64 { return s.late }

// Summary is what the stream joined so far.
func (s *Stream) Summary() *Accumulator { return s.acc }

// Syscalls is the per-syscall table (nil unless NewStream was asked for it).
func (s *Stream) Syscalls() *SyscallTable { return s.sys }

// Uring is the io_uring operations seen so far, per opcode.
func (s *Stream) Uring() *UringTable { return s.uring }

func (s *Stream) advance(watermark int64, all bool) {
	// Only the hand-over holds the lock: the probe's reader, at a higher
	// priority, must never wait for this lower-priority work.
	s.mu.Lock()
	in, trips := s.inEvs, s.inTrips
	s.inEvs, s.inTrips, s.inFirst = s.spare[:0], nil, 0
	clients := s.clients
	s.mu.Unlock()
	for i := range in {
		if int64(in[i].TS) < s.mark {
			s.late++
		}
		s.countSend(&in[i])
	}
	s.tableSyscalls(in, clients)
	in, s.sortBuf = SortRuns(in, s.sortBuf)
	s.mergePending(in)
	s.mu.Lock()
	s.spare = in // copied into pending: the reader may fill it again
	s.mu.Unlock()
	// Index what the watermark made final.
	n := len(s.pending)
	if !all {
		n, _ = slices.BinarySearchFunc(s.pending, watermark, func(e probe.Event, t int64) int { return cmp.Compare(int64(e.TS), t) })
	}
	s.ix.add(s.pending[:n])
	s.tableUring(s.pending[:n], clients) // final and in time order
	s.pending = s.pending[n:]
	s.waiting = append(s.waiting, trips...)
	if !all {
		s.mark = max(s.mark, watermark)
	}

	var ready []waiting
	rest := s.waiting[:0]
	for _, w := range s.waiting {
		if all || 2*w.r.T1-w.r.T0 < watermark {
			ready = append(ready, w)
		} else {
			rest = append(rest, w)
		}
	}
	s.waiting = rest
	if len(ready) > 0 {
		s.join(ready)
	}
	s.trim(watermark, all)
	if !all {
		s.letGo(watermark)
	}
}

// mergePending merges in (sorted by time) into pending. Only pending's
// events later than in's first move: the hand-over's events mostly come
// after everything waiting.
func (s *Stream) mergePending(in []probe.Event) {
	if len(in) == 0 {
		return
	}
	if need := len(s.pending) + len(in); cap(s.pending) < need {
		// Twice what is needed, so that the rest is moved back about
		// once per need events; a buffer grown by a burst is let go.
		if cap(s.pendBuf) < 2*need || cap(s.pendBuf) > 8*need {
			s.pendBuf = make([]probe.Event, 0, 2*need)
		}
		// copy, not append: pending may lie in pendBuf, after its start.
		s.pending = s.pendBuf[:copy(s.pendBuf[:len(s.pending)], s.pending)]
	}
	lo := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].TS > in[0].TS })
	s.tail = append(s.tail[:0], s.pending[lo:]...)
	s.pending = MergeSorted(s.pending[:lo], s.tail, in)
}

// join splits the ready round trips on the index.
func (s *Stream) join(ready []waiting) {
	var rt RoundTrip
	for _, w := range ready {
		s.mu.Lock()
		c := s.conns[w.conn]
		s.mu.Unlock()
		j := newJoiner(s.ix, c, s.port)
		rt = RoundTrip{Conn: w.conn, Seq: int(w.seq), T0: w.r.T0, T1: w.r.T1}
		if s.serverSide {
			j.splitServer(&rt)
		} else if s.clientSide {
			j.splitClient(&rt)
		} else {
			j.split(&rt)
		}
		s.acc.Add(&rt)
		if s.out != nil {
			s.out(&rt, w.r)
		}
	}
}

// sendBucket is the resolution of the server's send counts.
const sendBucket = 1_000_000 // 1 ms

// countSend counts e if it is the server sending on one of its
// connections.
func (s *Stream) countSend(e *probe.Event) {
	if e.Lport != s.port || s.clientSide { // the client's side alone: no server here
		return
	}
	b := int64(e.TS) / sendBucket
	folded := s.foldTo > 0 && b >= s.foldFrom && b < s.foldTo // a late event
	switch {
	case e.Kind == probe.KindSendStart && folded:
		s.foldStarts++
	case e.Kind == probe.KindSendStart:
		s.starts[b]++
	case e.Kind == probe.KindSockSend && e.Ret > 0 && folded:
		s.foldSends++
	case e.Kind == probe.KindSockSend && e.Ret > 0:
		s.sends[b]++
	}
}

// foldBuckets sums into the folded totals the send buckets inside the
// measured window that end before watermark, and lets go of those
// before the window: ServerSends asks for the window only.
func (s *Stream) foldBuckets(watermark int64) {
	start := s.win.start.Load()
	if start <= 0 {
		return
	}
	from, to := start/sendBucket, watermark/sendBucket
	if end := s.win.end.Load(); end > 0 {
		to = min(to, end/sendBucket)
	}
	if to <= from {
		return
	}
	if s.foldTo == 0 {
		s.foldFrom, s.foldTo = from, from
	}
	if to <= s.foldTo {
		return
	}
	fold := func(m map[int64]int64) (sum int64) {
		for b, n := range m {
			if b < to {
				if b >= s.foldFrom {
					sum += n
				}
				delete(m, b)
			}
		}
		return sum
	}
	s.foldStarts += fold(s.starts)
	s.foldSends += fold(s.sends)
	s.foldTo = to
}

// ServerSends is how many send calls the server made from from to to
// (CLOCK_MONOTONIC ns, to the millisecond), counted from the kernel's send
// events on its port: one per reply for a server that writes each reply
// in one call, more for one that writes a reply in parts.
func (s *Stream) ServerSends(from, to int64) int64 {
	// The folded buckets count when the range holds them all.
	holds := s.foldTo > 0 && from/sendBucket <= s.foldFrom && to/sendBucket >= s.foldTo
	count := func(m map[int64]int64, folded int64) (n int64) {
		for b, c := range m {
			if b >= from/sendBucket && b < to/sendBucket {
				n += c
			}
		}
		if holds {
			n += folded
		}
		return n
	}
	if n := count(s.starts, s.foldStarts); n > 0 {
		return n
	}
	return count(s.sends, s.foldSends)
}

// trimStep is how far the trim bound moves before the index is trimmed
// again: each trim visits every key.
const trimStep = 20_000_000 // 20 ms

// trim lets go of the indexed events no waiting or future round trip can
// need (each thread's last switch is kept).
func (s *Stream) trim(watermark int64, all bool) {
	if all {
		s.ix, s.trimmedTo = newIndex(), 0
		return
	}
	s.foldBuckets(watermark)
	bound := watermark - s.keep
	for _, w := range s.waiting {
		bound = min(bound, w.r.T0)
	}
	s.mu.Lock()
	if s.floor > 0 {
		bound = min(bound, s.floor)
	}
	if s.inFirst > 0 {
		bound = min(bound, s.inFirst)
	}
	s.mu.Unlock()
	bound -= lookback
	if bound-s.trimmedTo >= trimStep {
		s.ix.trim(bound)
		s.trimmedTo = bound
	}
}

// Held is how many events the stream holds: indexed, and waiting for the
// watermark.
func (s *Stream) Held() int { return s.ix.held() + len(s.pending) }

// newJoiner follows connection c to the server on port.
func newJoiner(ix *index, c loadgen.ConnInfo, port uint16) joiner {
	cport := uint16(c.LocalPort)
	return joiner{ix: ix, ctid: uint32(c.TID), csk: portPair{cport, port}, ssk: portPair{port, cport}}
}

// SortRuns sorts evs by time, stably. The reader hands events over one ring
// drain at a time, each drain in time order, so evs is a few ascending
// runs: neighbouring runs are merged, in O(n log runs), into buf and back.
// It returns the sorted events and the other buffer, for reuse.
func SortRuns(evs, buf []probe.Event) (sorted, spare []probe.Event) {
	bounds := []int{0}
	for i := 1; i < len(evs); i++ {
		if evs[i].TS < evs[i-1].TS {
			bounds = append(bounds, i)
		}
	}
	if len(bounds) > 256 { // not runs: sort
		slices.SortStableFunc(evs, byTS)
		return evs, buf
	}
	bounds = append(bounds, len(evs))
	for len(bounds) > 2 {
		buf = buf[:0]
		next := []int{0}
		for k := 0; k+1 < len(bounds); k += 2 {
			lo, mid, hi := bounds[k], bounds[k+1], bounds[k+1]
			if k+2 < len(bounds) {
				hi = bounds[k+2]
			}
			buf = MergeSorted(buf, evs[lo:mid], evs[mid:hi])
			next = append(next, hi)
		}
		evs, buf, bounds = buf, evs, next
	}
	return evs, buf
}

// MergeSorted appends to out a and b (each sorted by time) merged, a's
// first among equal stamps.
func MergeSorted(out, a, b []probe.Event) []probe.Event {
	if len(a) == 0 || len(b) == 0 || a[len(a)-1].TS <= b[0].TS {
		return append(append(out, a...), b...)
	}
	// Most of two neighbouring stretches does not overlap: a's values up
	// to b's first, and b's from a's last on, are copied whole; only the
	// overlap is merged value by value.
	lo := sort.Search(len(a), func(i int) bool { return a[i].TS > b[0].TS })
	hi := sort.Search(len(b), func(i int) bool { return b[i].TS >= a[len(a)-1].TS })
	out = append(out, a[:lo]...)
	out = mergeEach(out, a[lo:], b[:hi])
	return append(out, b[hi:]...)
}

// mergeEach is mergeSorted value by value.
func mergeEach(out, a, b []probe.Event) []probe.Event {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if b[j].TS < a[i].TS {
			out = append(out, b[j])
			j++
		} else {
			out = append(out, a[i])
			i++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
