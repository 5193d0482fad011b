package loadgen

import (
	"sync/atomic"
)

// Record is one measured round trip on one connection. Times are
// CLOCK_MONOTONIC nanoseconds: T0 right before the send system call, T1
// right after the last byte of the reply arrived.
type Record struct {
	T0 int64 `json:"t0_ns"`
	T1 int64 `json:"t1_ns"`
	// Intended is when an open-loop schedule (--rate) meant this request
	// to be sent; 0 in closed loop. A server that stalls delays every
	// later send, and measuring from the intended time keeps that delay
	// in the latency instead of hiding it (coordinated omission).
	Intended int64 `json:"intended_ns,omitempty"`
}

// Latency is the client-observed round-trip time in nanoseconds: T1 − T0
// in closed loop, T1 − Intended in open loop.
func (r Record) Latency() int64 {
	if r.Intended != 0 && r.Intended < r.T0 {
		return r.T1 - r.Intended
	}
	return r.T1 - r.T0
}

// Chunk sizes of a recBuf: the first chunk is small so that ten thousand
// mostly idle connections cost little; later chunks double up to maxChunk,
// so a busy connection allocates once per thousands of round trips.
const (
	firstChunk = 64
	maxChunk   = 4096
)

type recChunk struct {
	recs []Record
	next atomic.Pointer[recChunk]
}

// recBuf is a single-producer, single-consumer stream of records: one
// client thread appends, the run loop drains. Chunks the reader has passed
// are dropped, so memory is flat in run length: it holds only what was
// published since the last drain. The writer links a new chunk before it
// publishes the first record in it, and publishes a record by storing the
// count; the reader loads the count first, which orders its reads after
// the writer's.
type recBuf struct {
	// writer side
	tail *recChunk
	i    int
	n    atomic.Int64 // records published
	// reader side
	head *recChunk
	j    int
	seen int64
}

// add appends r. It allocates only when a chunk is full.
func (b *recBuf) add(r Record) {
	if b.tail == nil {
		b.tail = &recChunk{recs: make([]Record, firstChunk)}
		b.head = b.tail // published by the n.Add below before any read
	}
	if b.i == len(b.tail.recs) {
		c := &recChunk{recs: make([]Record, min(2*len(b.tail.recs), maxChunk))}
		b.tail.next.Store(c)
		b.tail, b.i = c, 0
	}
	b.tail.recs[b.i] = r
	b.i++
	b.n.Add(1)
}

// drain calls fn for every record published since the last drain, with
// its index on the connection (0 for the first round trip), and lets go
// of the chunks it finished. Only one goroutine may drain a recBuf.
func (b *recBuf) drain(fn func(seq int64, r Record)) {
	n := b.n.Load()
	for b.seen < n {
		if b.j == len(b.head.recs) {
			b.head, b.j = b.head.next.Load(), 0
			continue
		}
		fn(b.seen, b.head.recs[b.j])
		b.j++
		b.seen++
	}
}

// published is the number of records added so far.
func (b *recBuf) published() int64 { return b.n.Load() }
