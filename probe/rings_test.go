package probe

import (
	"sync/atomic"
	"testing"
	"unsafe"
)

// fakeRings builds rings over plain memory, laid out as the kernel's
// mmapped arrays are, so drain can be tested without a kernel.
func fakeRings(ncpu int, slots uint64) *rings {
	return &rings{ncpu: ncpu, slots: slots,
		data: make([]byte, ncpu*int(slots)*EventSize), cursors: make([]byte, ncpu*cursorSize)}
}

// reserve bumps a CPU's head as submit in probe.c does.
func (r *rings) reserve(cpu int) uint64 {
	return atomic.AddUint64(r.word(r.cursors, cpu*cursorSize+offHead), 1) - 1
}

// commit writes the record for slot idx, then its seq.
func (r *rings) commit(cpu int, idx, ts uint64) {
	off := (cpu*int(r.slots) + int(idx&(r.slots-1))) * EventSize
	e := Event{TS: ts, Kind: KindSwitch, CPU: uint16(cpu)}
	Encode(r.data[off:off+EventSize], &e)
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.data[off+offSeq])), uint32(idx)+1)
}

func TestRingsDrain(t *testing.T) {
	r := fakeRings(2, 8)
	var got []uint64
	collect := func(e *Event) { got = append(got, e.TS) }
	var ev Event
	drain := func() int {
		t.Helper()
		n, err := r.drain(&ev, collect)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// In order, on two CPUs.
	for i := uint64(0); i < 3; i++ {
		r.commit(0, r.reserve(0), 100+i)
		r.commit(1, r.reserve(1), 200+i)
	}
	if n := drain(); n != 6 || len(got) != 6 {
		t.Fatalf("drained %d: %v", n, got)
	}
	// A reserved slot not yet committed (its program was interrupted by a
	// nested one, which committed the next slot) holds back its CPU only.
	a := r.reserve(0)
	r.commit(0, r.reserve(0), 301)
	r.commit(1, r.reserve(1), 400)
	got = nil
	if n := drain(); n != 1 || got[0] != 400 {
		t.Fatalf("with slot %d uncommitted: drained %v", a, got)
	}
	r.commit(0, a, 300)
	got = nil
	if n := drain(); n != 2 || got[0] != 300 || got[1] != 301 {
		t.Fatalf("after the commit: %v", got)
	}
	// Wrapping around: more records than slots over time, each drained
	// before its slot is reused; a stale seq from the previous lap is not
	// taken for a new record.
	got = nil
	for lap := uint64(0); lap < 5; lap++ {
		for i := uint64(0); i < 6; i++ {
			r.commit(1, r.reserve(1), 1000*lap+i)
		}
		stale := r.reserve(1) // reserved, its slot still holds an old lap's record
		if n := drain(); n != 6 {
			t.Fatalf("lap %d: drained %d, want 6 (slot %d holds a stale record)", lap, n, stale)
		}
		r.commit(1, stale, 1000*lap+6)
		if n := drain(); n != 1 {
			t.Fatalf("lap %d: the late commit not drained", lap)
		}
	}
	if len(got) != 35 {
		t.Fatalf("%d records over five laps, want 35", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("out of order at %d: %v", i, got)
		}
	}
	atomic.AddUint64(r.word(r.cursors, cursorSize+offLost), 3)
	if r.lost() != 3 {
		t.Errorf("lost %d, want 3", r.lost())
	}
}
