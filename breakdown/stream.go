package breakdown

import (
	"cmp"
	"math"
	"slices"
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

	evs     []probe.Event          // the retained window, sorted by time
	buf     []probe.Event          // the events of one join, reused
	last    map[uint32]probe.Event // each thread's latest switch before notedTo
	notedTo int64
	waiting []waiting
	mark    int64 // the last watermark
	late    int64
	acc     *Accumulator
	sys     *SyscallTable
	// Replies the server sent, per sendBucket of time: TCP send starts,
	// and sends that returned data (used where no send start is hooked).
	starts, sends map[int64]int64
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
	s := &Stream{starts: map[int64]int64{}, sends: map[int64]int64{}, keep: keep.Nanoseconds(), port: port, conns: map[int]loadgen.ConnInfo{}, out: out, last: map[uint32]probe.Event{}, acc: NewAccumulator()}
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

// Trip adds one measured round trip of connection conn.
func (s *Stream) Trip(conn int, seq int64, r loadgen.Record) {
	s.mu.Lock()
	s.inTrips = append(s.inTrips, waiting{conn, seq, r})
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

func (s *Stream) advance(watermark int64, all bool) {
	// Only the hand-over holds the lock: the probe's reader, at a higher
	// priority, must never wait for this lower-priority work.
	s.mu.Lock()
	in, trips := s.inEvs, s.inTrips
	s.inEvs, s.inTrips = s.spare[:0], nil
	clients := s.clients
	s.mu.Unlock()
	for i := range in {
		if int64(in[i].TS) < s.mark {
			s.late++
		}
		s.countSend(&in[i])
		if s.sys != nil {
			s.sys.Add(&in[i], clients)
		}
	}
	slices.SortFunc(in, byTS)
	s.evs = mergeSorted(s.evs, in)
	s.mu.Lock()
	s.spare = in // copied into evs: the reader may fill it again
	s.mu.Unlock()
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
		s.join(ready, watermark, all)
	}
	s.trim(watermark, all)
}

// join splits the ready round trips. The index covers the retained
// events from shortly before the earliest of them up to the watermark,
// plus the last switch of every thread before that.
func (s *Stream) join(ready []waiting, watermark int64, all bool) {
	from := ready[0].r.T0
	for _, w := range ready {
		from = min(from, w.r.T0)
	}
	start := from - lookback
	s.noteUpTo(start)
	lo := s.search(start)
	hi := len(s.evs)
	if !all {
		hi = s.search(watermark)
	}
	first := int64(math.MaxInt64)
	if lo < len(s.evs) {
		first = int64(s.evs[lo].TS)
	}
	carried := s.buf[:0]
	for _, e := range s.last {
		if int64(e.TS) < first {
			carried = append(carried, e)
		}
	}
	slices.SortFunc(carried, byTS)
	s.buf = carried
	ix := buildIndex(carried, s.evs[lo:hi])
	var rt RoundTrip
	for _, w := range ready {
		s.mu.Lock()
		c := s.conns[w.conn]
		s.mu.Unlock()
		j := newJoiner(ix, c, s.port)
		rt = RoundTrip{Conn: w.conn, Seq: int(w.seq), T0: w.r.T0, T1: w.r.T1}
		j.split(&rt)
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
	if e.Lport != s.port {
		return
	}
	switch {
	case e.Kind == probe.KindSendStart:
		s.starts[int64(e.TS)/sendBucket]++
	case e.Kind == probe.KindSockSend && e.Ret > 0:
		s.sends[int64(e.TS)/sendBucket]++
	}
}

// ServerSends is how many replies the server sent from from to to
// (CLOCK_MONOTONIC ns, to the millisecond), counted from the kernel's send events on
// its port: the server-side throughput, beside the client's count.
func (s *Stream) ServerSends(from, to int64) int64 {
	count := func(m map[int64]int64) (n int64) {
		for b, c := range m {
			if b >= from/sendBucket && b < to/sendBucket {
				n += c
			}
		}
		return n
	}
	if n := count(s.starts); n > 0 {
		return n
	}
	return count(s.sends)
}

// search is the index of the first retained event at or after t.
func (s *Stream) search(t int64) int {
	i, _ := slices.BinarySearchFunc(s.evs, t, func(e probe.Event, t int64) int { return cmp.Compare(int64(e.TS), t) })
	return i
}

// noteUpTo records in last each thread's latest switch among the retained
// events before t, from where the previous call stopped.
func (s *Stream) noteUpTo(t int64) {
	if t <= s.notedTo {
		return
	}
	for _, e := range s.evs[s.search(s.notedTo):s.search(t)] {
		if e.Kind != probe.KindSwitch {
			continue
		}
		if prev := uint32(e.Arg0); prev != 0 {
			s.last[prev] = e
		}
		if next := uint32(e.Arg1); next != 0 {
			s.last[next] = e
		}
	}
	s.notedTo = t
}

// trim drops the events no waiting or future round trip can need,
// keeping each thread's last switch.
func (s *Stream) trim(watermark int64, all bool) {
	if all {
		s.evs, s.last, s.notedTo = nil, map[uint32]probe.Event{}, 0
		return
	}
	bound := watermark - s.keep
	for _, w := range s.waiting {
		bound = min(bound, w.r.T0)
	}
	s.mu.Lock()
	if s.floor > 0 {
		bound = min(bound, s.floor)
	}
	s.mu.Unlock()
	bound -= lookback
	s.noteUpTo(bound)
	// Reslice rather than copy: the next append that outgrows the array
	// moves only the live events.
	s.evs = s.evs[s.search(bound):]
}

// newJoiner follows connection c to the server on port.
func newJoiner(ix *index, c loadgen.ConnInfo, port uint16) joiner {
	cport := uint16(c.LocalPort)
	return joiner{ix: ix, ctid: uint32(c.TID), csk: portPair{cport, port}, ssk: portPair{port, cport}}
}

// mergeSorted merges b into a (both sorted by time).
func mergeSorted(a, b []probe.Event) []probe.Event {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 || a[len(a)-1].TS <= b[0].TS {
		return append(a, b...)
	}
	out := make([]probe.Event, 0, len(a)+len(b))
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
