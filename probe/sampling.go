package probe

import (
	"errors"
	"fmt"
)

// SetTracing switches the programs' tracing on or off while they stay
// attached (bpf/probe.c, trace_epoch): off, every program that writes
// records returns at its first test, and the kernel's per-CPU and
// per-thread state from before the switch is dropped at its first use
// after it. Only the fork, exit and socket-state hooks go on, so that the
// set of threads followed and the connections stay right. A probe is on
// from Open; a probe that is never switched costs one load per program
// run for this.
//
// The records of an off stretch are not written, and a round trip that
// straddles a switch has lost some of its events: the caller keeps only
// what lies wholly inside an "on" stretch, after a margin at its start.
func (p *Probe) SetTracing(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("set tracing: the probe is closed")
	}
	if p.epoch == nil {
		return errors.New("set tracing: the probe has no trace_epoch variable; rebuild its object with make generate")
	}
	if (p.epochN&1 == 0) == on {
		return nil
	}
	if err := p.epoch.Set(p.epochN + 1); err != nil {
		return fmt.Errorf("set tracing: write trace_epoch: %w (the kernel needs mmapable global data, Linux 5.5)", err)
	}
	p.epochN++
	return nil
}
