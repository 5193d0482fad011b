package probe

import (
	"sync/atomic"
	"testing"
	"time"
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
	collect := func(evs []Event) {
		for _, e := range evs {
			got = append(got, e.TS)
		}
	}
	// Batches of two (one slot kept for a folded record's second event):
	// a CPU's records come in more than one.
	batch := make([]Event, 0, 3)
	var kinds kindCounts
	drain := func() int {
		t.Helper()
		n, _, err := r.drain(batch, collect, &kinds)
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
	if k := kinds[KindSwitch].Load(); k != 6 {
		t.Errorf("%d switch records counted by kind, want 6", k)
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
	if l := r.lost(); len(l) != 2 || l[0] != 0 || l[1] != 3 {
		t.Errorf("lost %v, want [0 3]", l)
	}
	// The peak is the fullest CPU's backlog at the drain.
	for i := 0; i < 5; i++ {
		r.commit(0, r.reserve(0), uint64(5000+i))
	}
	r.commit(1, r.reserve(1), 6000)
	if _, peak, _ := r.drain(batch, collect, &kindCounts{}); peak != 5 {
		t.Errorf("peak %d, want 5", peak)
	}
}

func TestRingSlots(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ncpu  int
		rate  float64
		perRT float64
		want  uint32
	}{
		{"2 CPUs, no rate: the default", 2, 0, 10, 1 << 18},
		{"64 CPUs, no rate: within 256 MiB", 64, 0, 10, 1 << 16},
		{"2 CPUs, a rate the default holds", 2, 50_000, 10, 1 << 18},
		// 400k round trips/s × 20 records × 0.25 s × half = 1M records.
		{"2 CPUs, 400k/s with syscalls", 2, 400_000, 20, 1 << 20},
		{"1 CPU takes all the records", 1, 400_000, 20, 1 << 21},
		// 2^22 × 56 B × 4 CPUs = 896 MiB, the most within 1 GiB.
		{"capped at 1 GiB", 4, 1e9, 20, 1 << 22},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ringSlots(tc.ncpu, tc.rate, tc.perRT); got != tc.want {
				t.Errorf("ringSlots(%d, %g, %g) = %d, want %d", tc.ncpu, tc.rate, tc.perRT, got, tc.want)
			}
		})
	}
	if got := bpfRingBytes(0, 10); got != 16<<20 {
		t.Errorf("BPF ring buffer without a rate: %d bytes, want 16 MiB", got)
	}
	if got := bpfRingBytes(400_000, 20); got != 128<<20 {
		t.Errorf("BPF ring buffer at 400k/s: %d bytes, want 128 MiB", got)
	}
}

func TestNextWait(t *testing.T) {
	const poll = 20 * time.Millisecond
	const slots = 1 << 16
	for _, tc := range []struct {
		name string
		prev time.Duration
		peak uint64
		want time.Duration
	}{
		{"empty: doubles", 2 * time.Millisecond, 0, 4 * time.Millisecond},
		{"empty: up to the poll period", 16 * time.Millisecond, 0, poll},
		{"half full: at once", 10 * time.Millisecond, slots / 2, minPoll},
		{"a quarter full: half the time to reach an eighth", 8 * time.Millisecond, slots / 4, 4 * time.Millisecond},
		{"a sixteenth: twice as long, no more than double", 4 * time.Millisecond, slots / 16, 8 * time.Millisecond},
		{"a little: capped by doubling", 2 * time.Millisecond, 10, 4 * time.Millisecond},
		{"never below the floor", minPoll, slots / 3, minPoll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextWait(tc.prev, tc.peak, slots, poll); got != tc.want {
				t.Errorf("nextWait(%v, %d) = %v, want %v", tc.prev, tc.peak, got, tc.want)
			}
		})
	}
}

// TestRingsDrainFolded: a folded record comes out of drain as the two
// events it holds, in batches that never outgrow their buffer.
func TestRingsDrainFolded(t *testing.T) {
	r := fakeRings(1, 8)
	for i := uint64(0); i < 5; i++ {
		idx := r.reserve(0)
		off := int(idx&(r.slots-1)) * EventSize
		e := Event{TS: 1000 + 10*i, Arg0: 995 + 10*i, Kind: KindSendXmit, SK: 7}
		Encode(r.data[off:off+EventSize], &e)
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.data[off+offSeq])), uint32(idx)+1)
	}
	var kinds []Kind
	var counted kindCounts
	batch := make([]Event, 0, 3)
	n, _, err := r.drain(batch, func(evs []Event) {
		if len(evs) > cap(batch) {
			t.Fatalf("a batch of %d in a buffer of %d", len(evs), cap(batch))
		}
		for _, e := range evs {
			kinds = append(kinds, e.Kind)
		}
	}, &counted)
	if err != nil || n != 5 || len(kinds) != 10 {
		t.Fatalf("drained %d records as %d events (%v), err %v; want 5 as 10", n, len(kinds), kinds, err)
	}
	if c, s := counted[KindSendXmit].Load(), counted[KindSendStart].Load(); c != 5 || s != 0 {
		t.Errorf("counted %d send_xmit and %d send_start records, want 5 and 0 (a folded record counts as its own kind)", c, s)
	}
	for i := 0; i < 10; i += 2 {
		if kinds[i] != KindSendStart || kinds[i+1] != KindNetXmit {
			t.Fatalf("events %v: want each send start before its transmit", kinds)
		}
	}
}
