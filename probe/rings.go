package probe

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// rings reads the per-CPU record rings of probe.c (ring_slots_map and
// ring_cursors), both mapped into this process.
type rings struct {
	ncpu    int
	slots   uint64 // per CPU, a power of two
	data    []byte // ncpu*slots records of EventSize bytes
	cursors []byte // ncpu cursors of cursorSize bytes
}

// Layout of struct cursor in probe.c.
const (
	cursorSize = 128
	offHead    = 0
	offLost    = 8
	offTail    = 64
	offSeq     = 52 // struct event's seq: the commit marker
)

// ringSlots picks the slots per CPU: 2^18 (14 MiB of records per CPU;
// at the 92,000 round trips/s a 2-vCPU VM reached with 64 clients, ~10
// records each over 2 CPUs, about half a second of records against a 20
// ms poll), fewer on machines with many CPUs so that all rings stay within
// 256 MiB.
func ringSlots(ncpu int) uint32 {
	slots := uint32(1 << 18)
	for slots > 4096 && uint64(slots)*EventSize*uint64(ncpu) > 256<<20 {
		slots /= 2
	}
	return slots
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

// drain hands every committed record to fn, CPU by CPU, and frees their
// slots. A reserved but not yet committed record (its program is still
// writing it) ends that CPU's batch; the next drain takes it.
func (r *rings) drain(ev *Event, fn func(*Event)) (int, error) {
	n := 0
	for cpu := 0; cpu < r.ncpu; cpu++ {
		c := cpu * cursorSize
		head := atomic.LoadUint64(r.word(r.cursors, c+offHead))
		tailp := r.word(r.cursors, c+offTail)
		tail := atomic.LoadUint64(tailp)
		for ; tail < head; tail++ {
			off := (cpu*int(r.slots) + int(tail&(r.slots-1))) * EventSize
			rec := r.data[off : off+EventSize]
			seq := atomic.LoadUint32((*uint32)(unsafe.Pointer(&rec[offSeq])))
			if seq != uint32(tail)+1 {
				break
			}
			if err := Decode(rec, ev); err != nil {
				return n, err
			}
			fn(ev)
			n++
		}
		atomic.StoreUint64(tailp, tail)
	}
	return n, nil
}

// lost sums the records the programs dropped because a ring was full.
func (r *rings) lost() uint64 {
	var n uint64
	for cpu := 0; cpu < r.ncpu; cpu++ {
		n += atomic.LoadUint64(r.word(r.cursors, cpu*cursorSize+offLost))
	}
	return n
}

func (r *rings) close() error {
	return errors.Join(unix.Munmap(r.data), unix.Munmap(r.cursors))
}
