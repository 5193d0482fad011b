package probe

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf"
)

// tidWords matches TID_WORDS in probe.c: one bit per thread id.
const tidWords = 65536

// setTracked sets or clears tid's bit. The read-modify-write races only
// with the kernel marking a newly forked thread whose id shares the word;
// TrackTGID scans twice to close that window for the server's threads.
func (p *Probe) setTracked(tid uint32, on bool) error {
	if tid/64 >= tidWords {
		return fmt.Errorf("probe: thread id %d above the %d the probe can follow", tid, tidWords*64)
	}
	m := p.objs.TrackedBits
	p.mu.Lock()
	defer p.mu.Unlock()
	var w uint64
	if err := m.Lookup(tid/64, &w); err != nil {
		return fmt.Errorf("probe: read tracked threads: %w", err)
	}
	if on {
		w |= 1 << (tid % 64)
	} else {
		w &^= 1 << (tid % 64)
	}
	if err := m.Update(tid/64, w, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("probe: track thread %d: %w", tid, err)
	}
	return nil
}

// TrackTID follows one thread (a client thread).
func (p *Probe) TrackTID(tid uint32) error { return p.setTracked(tid, true) }

// UntrackTID stops following a thread.
func (p *Probe) UntrackTID(tid uint32) error { return p.setTracked(tid, false) }

// TrackTGID follows a process (the server) and the processes it forks.
// Its existing threads are followed from their next system call.
func (p *Probe) TrackTGID(tgid uint32) error {
	if err := p.objs.TrackedTgids.Update(tgid, uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("probe: track process %d: %w", tgid, err)
	}
	// Threads that are asleep right now (blocked in accept or read) make no
	// syscall before the first request wakes them, so learn them now.
	for pass := 0; pass < 2; pass++ {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", tgid))
		for _, e := range ents {
			var tid uint32
			if _, err := fmt.Sscan(e.Name(), &tid); err == nil {
				if err := p.TrackTID(tid); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
