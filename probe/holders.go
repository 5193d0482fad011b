package probe

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/bpf"
)

// Holder is a task that held a CPU while a tracked thread waited for it.
type Holder struct {
	TID  uint32
	TGID uint32 // 0 when the hook could not tell (classic tracepoint)
	Comm string
	Ns   int64 // how long it held the CPU during the wait
}

// CPUWait is one wait of a tracked thread for a CPU, from its wake-up or
// preemption to its switch in, and the tasks that held the CPU meanwhile,
// in the order they first ran.
type CPUWait struct {
	SinceNs int64 // CLOCK_MONOTONIC: the sched_wakeup or the preempting sched_switch
	CPU     int
	Holders []Holder
	OtherNs int64 // held by tasks beyond the first four, together
}

// heldWaits is how many finished waits the probe keeps, all CPUs
// together: the newest, so that the slowest round trips of the last
// moments can still name who held their CPU.
const heldWaits = 8192

// holdSlotsPerCPU splits heldWaits among the CPUs' rings (probe.c's
// hold_ring): a power of two each, at least 256.
func holdSlotsPerCPU(ncpu int) uint32 {
	n := uint32(256)
	for int(n)*ncpu < heldWaits {
		n *= 2
	}
	return n
}

// mapHolds maps probe.c's hold_ring, the finished waits, into this process.
func (p *Probe) mapHolds() error {
	n, size := int(p.objs.HoldRing.MaxEntries()), unsafe.Sizeof(bpf.ProbeHoldSlot{})
	// The mapped array's elements are value_size rounded up to 8 bytes.
	if vs := uintptr(p.objs.HoldRing.ValueSize()); (vs+7)/8*8 != size {
		return fmt.Errorf("map finished waits: slot of %d bytes, want %d (bpf objects out of date: make generate)", vs, size)
	}
	mem, err := mmapMap(p.objs.HoldRing, n*int(size))
	if err != nil {
		return fmt.Errorf("map finished waits: %w", err)
	}
	p.holdsMem = mem
	p.holds = unsafe.Slice((*bpf.ProbeHoldSlot)(unsafe.Pointer(&mem[0])), n)
	return nil
}

// heldWait reads slot i if it holds a whole record: the program clears
// the key's tid before it rewrites a slot and sets it last, so a key that
// reads the same before and after the copy had its record whole between.
func heldWait(s *bpf.ProbeHoldSlot) (bpf.ProbeHoldKey, bpf.ProbeHold, bool) {
	tid := atomic.LoadUint32(&s.Key.Tid)
	if tid == 0 {
		return bpf.ProbeHoldKey{}, bpf.ProbeHold{}, false
	}
	inTs := atomic.LoadUint64(&s.Key.InTs)
	rec := s.Rec
	if atomic.LoadUint32(&s.Key.Tid) != tid || atomic.LoadUint64(&s.Key.InTs) != inTs {
		return bpf.ProbeHoldKey{}, bpf.ProbeHold{}, false
	}
	return bpf.ProbeHoldKey{Tid: tid, InTs: inTs}, rec, true
}

// CPUHolders returns the wait of thread tid that ended with its switch in
// at switchIn (the TS of that KindSwitch event), if the probe kept it. It
// keeps the newest waits (heldWaits, split among the CPUs) in which a
// task other than the idle task held the CPU: a wait on an idle CPU, or
// one that two tracked threads shared, or an old one, is not found.
func (p *Probe) CPUHolders(tid uint32, switchIn int64) (CPUWait, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := bpf.ProbeHoldKey{Tid: tid, InTs: uint64(switchIn)}
	var v bpf.ProbeHold
	found := false
	if p.closed {
		v, found = p.holdsAtClose[want]
	} else {
		// A scan: the ring is looked up for a few slowest round trips, and
		// written by every wait.
		for i := range p.holds {
			s := &p.holds[i]
			if atomic.LoadUint64(&s.Key.InTs) != want.InTs {
				continue
			}
			if k, rec, ok := heldWait(s); ok && k == want {
				v, found = rec, true
				break
			}
		}
	}
	if !found {
		return CPUWait{}, false
	}
	w := CPUWait{SinceNs: int64(v.Since), CPU: int(v.Cpu), OtherNs: int64(v.OtherNs)}
	for i := range min(int(v.N), len(v.H)) {
		h := v.H[i]
		w.Holders = append(w.Holders, Holder{TID: h.Tid, TGID: h.Tgid, Comm: comm(h.Comm[:]), Ns: int64(h.Ns)})
	}
	return w, true
}

// comm is a task's comm from its NUL-terminated bytes.
func comm(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}

// keepHolds copies the kept waits into holdsAtClose and unmaps the ring;
// p.mu is held.
func (p *Probe) keepHolds() error {
	if p.holdsMem == nil {
		return nil
	}
	p.holdsAtClose = map[bpf.ProbeHoldKey]bpf.ProbeHold{}
	for i := range p.holds {
		if k, rec, ok := heldWait(&p.holds[i]); ok {
			p.holdsAtClose[k] = rec
		}
	}
	p.holds = nil
	mem := p.holdsMem
	p.holdsMem = nil
	return unix.Munmap(mem)
}
