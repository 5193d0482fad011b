package probe

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/volleyscope/volleyscope/bpf"
)

// Lost is the number of records the programs dropped because a ring was
// full, all CPUs together. The round trips that needed them do not join.
func (p *Probe) Lost() uint64 {
	var n uint64
	for _, v := range p.LostPerCPU() {
		n += v
	}
	return n
}

// LostPerCPU is Lost per CPU, indexed by CPU number (nil if the counts
// cannot be read).
func (p *Probe) LostPerCPU() []uint64 {
	if p.cfg.Ring == RingPerCPU {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed || p.rings == nil {
			return p.lostAtClose
		}
		return p.rings.lost()
	}
	var per [][2]uint64 // [0] records dropped, [1] records since the last wake-up
	if err := p.objs.Lost.Lookup(uint32(0), &per); err != nil {
		return nil
	}
	n := make([]uint64, len(per))
	for i, v := range per {
		n[i] = v[0]
	}
	return n
}

// Records is the number of records Run has handed to its callback: the
// records of the tracked threads and processes, and of the sockets on
// the followed ports. Per round trip, it is what the probe wrote for the
// load being measured (Lost records aside).
func (p *Probe) Records() uint64 { return p.records.Load() }

// kindSlots bounds the kinds counted apart; a kind beyond is counted in
// the last slot.
const kindSlots = 32

// kindCounts counts records by kind, for the cost table: which events a
// round trip costs.
type kindCounts [kindSlots]atomic.Uint64

func (k *kindCounts) one(kind Kind) { k[min(int(kind), kindSlots-1)].Add(1) }

func (k *kindCounts) add(n *[kindSlots]uint64) {
	for i, v := range n {
		if v > 0 {
			k[i].Add(v)
		}
	}
}

// RecordsByKind is Records by kind, those seen: a folded record
// (KindNetRecvReady, KindSendXmit) counts as one of its own kind, as the
// ring holds it.
func (p *Probe) RecordsByKind() map[Kind]uint64 {
	m := map[Kind]uint64{}
	for i := range p.kinds {
		if v := p.kinds[i].Load(); v > 0 {
			m[Kind(i)] = v
		}
	}
	return m
}

// MachineRuns sums the kernel's run statistics of the probe's programs:
// how many times they ran and their total run time, machine-wide: every
// firing of every hook the probe attached, on every CPU and for every
// task, tracked or not (most return at their first test). It needs
// Config.Stats and Linux 5.8, and counts only while statistics are on
// (StopStats turns them off).
func (p *Probe) MachineRuns() (runs uint64, ns uint64, err error) {
	for _, c := range p.progs {
		for _, prog := range c.Programs {
			s, err := prog.Stats()
			if err != nil {
				return 0, 0, fmt.Errorf("probe: program stats: %w", err)
			}
			runs += s.RunCount
			ns += uint64(s.Runtime.Nanoseconds())
		}
	}
	return runs, ns, nil
}

// ProgramRun is one program's share of MachineRuns.
type ProgramRun struct {
	Program string // the program's name in bpf/probe.c
	Runs    uint64 // times it ran, machine-wide
	Ns      uint64 // its total run time
}

// ProgramRuns is MachineRuns program by program, in load order, so that
// a cost can be traced to the hook that pays it. Same conditions.
func (p *Probe) ProgramRuns() ([]ProgramRun, error) {
	var out []ProgramRun
	for _, c := range p.progs {
		names := make([]string, 0, len(c.Programs))
		for name := range c.Programs {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			s, err := c.Programs[name].Stats()
			if err != nil {
				return nil, fmt.Errorf("probe: program stats: %w", err)
			}
			out = append(out, ProgramRun{Program: name, Runs: s.RunCount, Ns: uint64(s.Runtime.Nanoseconds())})
		}
	}
	return out, nil
}

// StopStats turns the kernel's run statistics off: they cost two clock
// reads per program run, on every run of the machine, a share of a short
// round trip that the probe should not add (README, "What the probe
// costs"). The counts gathered so far stay readable through MachineRuns.
func (p *Probe) StopStats() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stats != nil {
		p.stats.Close()
		p.stats = nil
	}
}

// Close detaches and unloads everything. It is safe to call twice.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	errs = append(errs, detached(&p.detaching), <-detachAll(p.links, true))
	if p.rd != nil {
		errs = append(errs, p.rd.Close())
	}
	if p.rings != nil {
		p.lostAtClose = p.rings.lost()
		errs = append(errs, p.rings.close())
	}
	for _, c := range p.progs {
		c.Close()
	}
	errs = append(errs, p.keepHolds()) // the last round trips are joined after Close
	errs = append(errs, p.objs.Close())
	if p.rest != nil {
		p.rest.Close()
	}
	if p.stats != nil {
		errs = append(errs, p.stats.Close())
	}
	return errors.Join(errs...)
}

// OthersTime is how long the CPUs cpus ran tasks of processes other than
// this one (the idle task left out) since the probe was loaded, and the
// part of that the followed threads ran (a run's server, say), as the
// scheduler hook counts it at each switch (bpf/probe.c, cpu_wait). Both
// stand still while tracing is off (a sampled watch's off stretches).
func (p *Probe) OthersTime(cpus []int) (others, followed time.Duration, err error) {
	var w bpf.ProbeCpuWait
	for _, c := range cpus {
		if err := p.objs.CpuWaits.Lookup(uint32(c), &w); err != nil {
			return 0, 0, fmt.Errorf("probe: CPU %d's scheduler counts: %w", c, err)
		}
		others += time.Duration(w.OthersNs)
		followed += time.Duration(w.OthersTrackedNs)
	}
	return others, followed, nil
}
