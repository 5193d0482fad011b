package probe

import "github.com/volleyscope/volleyscope/bpf"

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

// CPUHolders returns the wait of thread tid that ended with its switch in
// at switchIn (the TS of that KindSwitch event), if the probe kept it. It
// keeps the newest 8192 waits in which a task other than the idle task
// held the CPU: a wait on an idle CPU, or one that two tracked threads
// shared, or an old one, is not found.
func (p *Probe) CPUHolders(tid uint32, switchIn int64) (CPUWait, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var v bpf.ProbeHold
	k := bpf.ProbeHoldKey{Tid: tid, InTs: uint64(switchIn)}
	switch {
	case p.closed:
		var ok bool
		if v, ok = p.holdsAtClose[k]; !ok {
			return CPUWait{}, false
		}
	case p.objs.Holds == nil:
		return CPUWait{}, false
	default:
		if err := p.objs.Holds.Lookup(&k, &v); err != nil {
			return CPUWait{}, false // ebpf.ErrKeyNotExist: not kept
		}
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

// keepHolds copies the holds map into holdsAtClose; p.mu is held. At most
// the map's 8192 entries, read once.
func (p *Probe) keepHolds() {
	if p.objs.Holds == nil {
		return
	}
	p.holdsAtClose = map[bpf.ProbeHoldKey]bpf.ProbeHold{}
	var k bpf.ProbeHoldKey
	var v bpf.ProbeHold
	it := p.objs.Holds.Iterate()
	for n := 0; n < 1<<16 && it.Next(&k, &v); n++ {
		p.holdsAtClose[k] = v
	}
}
