package probe

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// hookLink is one attached program, and how to attach it again: tracing
// off detaches the hooks it leaves idle (SetTracing).
type hookLink struct {
	l     link.Link // nil while detached
	fam   family
	a     attachment
	prog  *ebpf.Program
	stays bool // attached through an off stretch (staysAttached)
}

// staysAttached says whether event's hook stays attached while tracing is
// off: the ones that keep the set of threads followed and the
// connections right (fork, exit, socket state), and that fire seldom.
func staysAttached(event string) bool {
	return event == "sched_process_fork" || event == "sched_process_exit" || event == "inet_sock_set_state"
}

// detachAll closes the links of hs that are attached and not staying
// (all: every one), in the background and all at once: each close waits
// for a kernel grace period (RCU) before it returns, so that one after
// another they held a watch's loop for seconds (README, "Watch"), while
// closes in parallel share their grace periods. The channel yields the
// closes' errors once all are done; the records stopped before
// (trace_epoch).
func detachAll(hs []*hookLink, all bool) <-chan error {
	var ls []link.Link
	for _, h := range hs {
		if h.l != nil && (all || !h.stays) {
			ls = append(ls, h.l)
			h.l = nil
		}
	}
	done := make(chan error, 1)
	go func() {
		errs := make([]error, len(ls))
		var wg sync.WaitGroup
		for i, l := range ls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = l.Close()
			}()
		}
		wg.Wait()
		done <- errors.Join(errs...)
	}()
	return done
}

// detached waits for a detachAll in flight (*d, nil if none) and clears it.
func detached(d *<-chan error) error {
	if *d == nil {
		return nil
	}
	err := <-*d
	*d = nil
	return err
}

// reattach attaches again every link of hs that is detached.
func reattach(hs []*hookLink) error {
	for _, h := range hs {
		if h.l != nil {
			continue
		}
		l, err := attach(h.fam, h.a, h.prog)
		if err != nil {
			return fmt.Errorf("attach %s again: %w", h.a.prog, err)
		}
		h.l = l
	}
	return nil
}

// SetTracing switches the programs' tracing on or off. Off, every hook
// but the fork, exit and socket-state ones (staysAttached), which keep
// the set of threads followed and the connections right, is detached,
// so that an off stretch costs the traffic nothing: an attached program
// that returns at once still costs its dispatch on every firing
// (README, "What the probe costs"). The programs stay loaded, and their
// maps with them. The switch goes through trace_epoch too (bpf/probe.c):
// off, records stop at once, before the hooks are detached in the
// background (detachAll), and on, the hooks are attached again while it
// is still odd, so that nothing runs half on; the kernel's per-CPU and
// per-thread state from before the switch is dropped at its first use
// after it. A probe is on from Open; a probe that is never switched costs
// one load per program run for this.
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
	if on {
		if err := detached(&p.detaching); err != nil {
			return fmt.Errorf("set tracing: detach: %w", err)
		}
		if err := reattach(p.links); err != nil {
			return fmt.Errorf("set tracing: %w", err)
		}
	}
	if err := p.epoch.Set(p.epochN + 1); err != nil {
		return fmt.Errorf("set tracing: write trace_epoch: %w (the kernel needs mmapable global data, Linux 5.5)", err)
	}
	p.epochN++
	if !on {
		p.detaching = detachAll(p.links, false)
	}
	return nil
}
