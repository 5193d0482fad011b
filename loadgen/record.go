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

const (
	firstChunk = 1 << 10 // records in the first chunk; later chunks double
	maxChunk   = 1 << 20 // largest chunk (16 MiB of records)
	numChunks  = 64      // ≈ 55 M records per connection at most
)

// recBuf is an append-only record buffer written by one client thread and
// read concurrently by the run loop. Chunks are allocated as it grows (one
// allocation per chunk, never per round trip) and start small so that
// thousands of idle connections cost little. The writer publishes a record
// by storing the count; readers load the count first, which orders their
// reads after the writer's.
type recBuf struct {
	chunks [numChunks][]Record
	n      atomic.Int64 // records published
	ck, i  int          // writer's position: chunk index and offset
}

// add appends r and reports false when the buffer is full.
func (b *recBuf) add(r Record) bool {
	if b.chunks[b.ck] == nil {
		b.chunks[b.ck] = make([]Record, chunkLen(b.ck))
	}
	if b.i == len(b.chunks[b.ck]) {
		if b.ck+1 == numChunks {
			return false
		}
		b.ck++
		b.i = 0
		b.chunks[b.ck] = make([]Record, chunkLen(b.ck))
	}
	b.chunks[b.ck][b.i] = r
	b.i++
	b.n.Add(1)
	return true
}

func chunkLen(k int) int {
	if k >= 10 {
		return maxChunk
	}
	return firstChunk << k
}

// cursor reads a recBuf from where it last stopped.
type cursor struct {
	ck, i int
	seen  int64
}

// each calls fn for every record published since the last call.
func (c *cursor) each(b *recBuf, fn func(Record)) {
	n := b.n.Load()
	for c.seen < n {
		ch := b.chunks[c.ck]
		if c.i == len(ch) {
			c.ck++
			c.i = 0
			continue
		}
		fn(ch[c.i])
		c.i++
		c.seen++
	}
}

// all returns a copy of every published record.
func (b *recBuf) all() []Record {
	out := make([]Record, 0, b.n.Load())
	var c cursor
	c.each(b, func(r Record) { out = append(out, r) })
	return out
}
