package loadgen

import (
	"sync"
	"testing"
)

// TestRecBufStream: one writer, one concurrent reader; every record
// arrives once, in order, with its sequence number, across chunk
// boundaries, and the reader lets go of the chunks it passed.
func TestRecBufStream(t *testing.T) {
	var b recBuf
	const n = maxChunk*5 + 17
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			b.add(Record{T0: int64(i), T1: int64(i) + 1})
		}
	}()
	got := int64(0)
	check := func(seq int64, r Record) {
		if seq != got || r.T0 != got {
			t.Fatalf("record %d read as seq %d t0 %d", got, seq, r.T0)
		}
		got++
	}
	for b.published() < n {
		b.drain(check)
	}
	wg.Wait()
	b.drain(check)
	if got != n {
		t.Fatalf("read %d records, want %d", got, n)
	}
	if b.head != b.tail {
		t.Error("the reader still holds chunks it passed")
	}
}

func TestRecBufNoAllocPerRecord(t *testing.T) {
	var b recBuf
	for range maxChunk * 2 {
		b.add(Record{})
	}
	b.drain(func(int64, Record) {})
	allocs := testing.AllocsPerRun(1000, func() { b.add(Record{T0: 1, T1: 2}) })
	if allocs > 1.0/float64(firstChunk) {
		t.Errorf("%.4f allocations per record", allocs)
	}
}
