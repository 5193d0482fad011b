package probe

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/bpf"
)

// rings reads the per-CPU record rings of probe.c (ring_slots_map and
// ring_cursors), both mapped into this process.
type rings struct {
	ncpu    int
	slots   uint64 // per CPU, a power of two
	data    []byte // ncpu*slots records of EventSize bytes
	cursors []byte // ncpu cursors of cursorSize bytes
}

// Layout of struct cursor and of struct event's commit marker, from the
// types bpf2go generated from probe.c and volley.h.
const (
	cursorSize = int(unsafe.Sizeof(bpf.ProbeCursor{}))
	offHead    = int(unsafe.Offsetof(bpf.ProbeCursor{}.Head))
	offLost    = int(unsafe.Offsetof(bpf.ProbeCursor{}.Lost))
	offTail    = int(unsafe.Offsetof(bpf.ProbeCursor{}.Tail))
	offSeq     = int(unsafe.Offsetof(bpf.ProbeEvent{}.Seq))
)

// Ring sizing.
const (
	// defaultSlots per CPU: 2^18 records, 14 MiB: at the highest
	// loopback rates, many clients spread over few CPUs, a ring still
	// holds many poll intervals of records, so a reader held off its CPU
	// for a while loses none (README, "What the probe costs").
	defaultSlots = 1 << 18
	minSlots     = 4096
	// defaultRingBytes bounds all CPUs' rings together when only the CPU
	// count sizes them, maxRingBytes when an expected rate does.
	defaultRingBytes = 256 << 20
	maxRingBytes     = 1 << 30
	// holdSeconds of records at the expected rate fit in a ring.
	holdSeconds = 0.25
)

// recordsPerRoundTrip is about what one round trip writes at the default
// level on loopback (README, "What the probe costs", has the measured
// count), counted high: across CPUs a round trip writes two more
// switches; the syscall hooks add the entry and exit of every system call
// of both sides. The packet hooks' records are mostly folded with the
// send start's and the data-ready's (bpf/probe.c, "Folded records").
func recordsPerRoundTrip(syscalls bool) float64 {
	if syscalls {
		return 24
	}
	return 12
}

// ringSlots picks the slots per CPU: defaultSlots, fewer on machines with
// many CPUs so that all rings stay within defaultRingBytes; with an
// expected rate of round trips per second, enough for holdSeconds of
// their records even if half of them land on one CPU (all of them on a
// one-CPU machine), within maxRingBytes in all.
func ringSlots(ncpu int, rate, perRoundTrip float64) uint32 {
	slots := uint32(defaultSlots)
	for slots > minSlots && uint64(slots)*uint64(EventSize)*uint64(ncpu) > defaultRingBytes {
		slots /= 2
	}
	if rate <= 0 {
		return slots
	}
	share := 0.5
	if ncpu == 1 {
		share = 1
	}
	need := rate * perRoundTrip * holdSeconds * share
	for float64(slots) < need && uint64(slots)*2*uint64(EventSize)*uint64(ncpu) <= maxRingBytes {
		slots *= 2
	}
	return slots
}

// bpfRingBytes sizes the BPF ring buffer (RingBPF): 16 MiB, or with an
// expected rate, holdSeconds of its records (each with the buffer's
// 8-byte header) rounded up to a power of two, within maxRingBytes.
func bpfRingBytes(rate, perRoundTrip float64) uint32 {
	size := uint32(16 << 20)
	for float64(size) < rate*perRoundTrip*holdSeconds*float64(EventSize+8) && size < maxRingBytes {
		size *= 2
	}
	return size
}

func mapRings(data, cursors *ebpf.Map, ncpu int, slots uint32) (*rings, error) {
	r := &rings{ncpu: ncpu, slots: uint64(slots)}
	var err error
	if r.data, err = mmapMap(data, ncpu*int(slots)*EventSize); err != nil {
		return nil, fmt.Errorf("map record rings: %w", err)
	}
	if r.cursors, err = mmapMap(cursors, ncpu*cursorSize); err != nil {
		unix.Munmap(r.data)
		return nil, fmt.Errorf("map ring cursors: %w", err)
	}
	return r, nil
}

func mmapMap(m *ebpf.Map, size int) ([]byte, error) {
	page := unix.Getpagesize()
	size = (size + page - 1) / page * page
	return unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func (r *rings) word(b []byte, off int) *uint64 {
	return (*uint64)(unsafe.Pointer(&b[off]))
}

// drain hands every committed record to fn, CPU by CPU, in batches of at
// most cap(batch) records (one CPU's, in time order), and frees their
// slots once fn has them. A reserved but not yet committed record (its
// program is still writing it) ends that CPU's batch; the next drain
// takes it. It returns the records read and the most that one CPU's ring
// held when drained.
func (r *rings) drain(batch []Event, fn func([]Event), kinds *kindCounts) (n int, peak uint64, err error) {
	var byKind [kindSlots]uint64 // added to kinds once per drain
	defer kinds.add(&byKind)
	for cpu := 0; cpu < r.ncpu; cpu++ {
		c := cpu * cursorSize
		head := atomic.LoadUint64(r.word(r.cursors, c+offHead))
		tailp := r.word(r.cursors, c+offTail)
		tail := atomic.LoadUint64(tailp)
		peak = max(peak, head-tail)
		batch = batch[:0]
		for ; tail < head; tail++ {
			off := (cpu*int(r.slots) + int(tail&(r.slots-1))) * EventSize
			rec := r.data[off : off+EventSize]
			seq := atomic.LoadUint32((*uint32)(unsafe.Pointer(&rec[offSeq])))
			if seq != uint32(tail)+1 {
				break
			}
			batch = batch[:len(batch)+1]
			if err := Decode(rec, &batch[len(batch)-1]); err != nil {
				return n, peak, err
			}
			byKind[min(int(batch[len(batch)-1].Kind), kindSlots-1)]++
			batch = expandLast(batch)
			n++
			// A folded record takes two slots: keep one free.
			if len(batch) >= cap(batch)-1 {
				fn(batch)
				atomic.StoreUint64(tailp, tail+1)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			fn(batch)
		}
		atomic.StoreUint64(tailp, tail)
	}
	return n, peak, nil
}

// lost is, per CPU, the records the programs dropped because its ring
// was full.
func (r *rings) lost() []uint64 {
	n := make([]uint64, r.ncpu)
	for cpu := range n {
		n[cpu] = atomic.LoadUint64(r.word(r.cursors, cpu*cursorSize+offLost))
	}
	return n
}

func (r *rings) close() error {
	return errors.Join(unix.Munmap(r.data), unix.Munmap(r.cursors))
}
