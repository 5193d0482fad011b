package probe

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/bpf"
)

// Open loads the probe and attaches every event to the first hook that
// works. Nothing is traced until TrackTID/TrackTGID name what to follow.
func Open(cfg Config) (*Probe, error) {
	if cfg.Ring != "" {
		return open(cfg)
	}
	cfg.Ring = RingPerCPU
	p, err := open(cfg)
	if err != nil || p.hook("sched_switch").State != HookMissing {
		return p, err
	}
	// Nothing loaded with the per-CPU rings: a kernel before 5.12 refuses
	// their atomic fetch-add in every program. Use the BPF ring buffer,
	// and say why (Ring).
	why := p.hook("sched_switch").Err
	p.Close()
	cfg.Ring = RingBPF
	if p, err = open(cfg); err == nil {
		p.ring.Why = fmt.Sprintf("per-CPU rings refused: %v", why)
	}
	return p, err
}

// open is Open with cfg.Ring decided. Its steps, in order: check the
// config; prepare the spec (settings, map sizes); create the shared maps
// and map the finished waits' ring; turn on run statistics; load and attach each event's hook; refuse a
// forced family that attached nothing; open the reader; list the other
// programs on our hooks.
func open(cfg Config) (*Probe, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	// The caller says "open probe"; these say which step failed.
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("probe settings: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lift the locked-memory limit: %w", err)
	}
	tracefsErr := ensureTracefs()
	p := &Probe{cfg: cfg, ring: Ring{Kind: cfg.Ring}}
	spec, err := p.prepareSpec()
	if err == nil {
		err = p.createMaps(spec)
	}
	if err == nil {
		err = p.mapHolds()
	}
	if err == nil {
		p.enableStats()
		p.attachAll(spec, tracefsErr)
		err = p.checkForced()
	}
	if err == nil {
		err = p.openReader()
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	p.neighbours = p.findNeighbours()
	return p, nil
}

// prepareSpec loads the embedded spec and sets what is fixed at load
// time: the constants and the sizes of the record rings.
func (p *Probe) prepareSpec() (*ebpf.CollectionSpec, error) {
	cfg := p.cfg
	spec, err := bpf.LoadProbe()
	if err != nil {
		return nil, fmt.Errorf("load spec: %w", err)
	}
	var s bpf.ProbeSpecs
	if err := spec.Assign(&s); err != nil {
		return nil, fmt.Errorf("load spec: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("load spec: %w", err)
	}
	s.CpuWaits.MaxEntries = uint32(ncpu) // one waiter slot per CPU
	s.CpuIrqs.MaxEntries = uint32(ncpu)  // one interrupt sum per CPU
	p.holdSlots = holdSlotsPerCPU(ncpu)
	s.HoldRing.MaxEntries = uint32(ncpu) * p.holdSlots
	if cfg.Ring == RingPerCPU {
		slots := cfg.RingSlots
		if slots == 0 {
			slots = ringSlots(ncpu, cfg.RoundTripsPerSec, recordsPerRoundTrip(cfg.Syscalls))
		}
		p.ring.CPUs, p.ring.SlotsPerCPU = ncpu, slots
		s.RingSlotsMap.MaxEntries = uint32(ncpu) * slots
		s.RingCursors.MaxEntries = uint32(ncpu)
		s.Events.MaxEntries = uint32(os.Getpagesize()) // the BPF ring buffer, unused
	} else {
		s.Events.MaxEntries = bpfRingBytes(cfg.RoundTripsPerSec, recordsPerRoundTrip(cfg.Syscalls))
	}
	port1 := uint16(0)
	if len(cfg.Ports) > 1 {
		port1 = cfg.Ports[1]
	}
	for _, v := range []struct {
		spec *ebpf.VariableSpec
		val  any
	}{
		{s.WakeupRecords, cfg.WakeupRecords},
		{s.RingSlots, p.ring.SlotsPerCPU}, // 0: the BPF ring buffer
		{s.HoldSlots, p.holdSlots},
		{s.Syscalls, cfg.Syscalls},
		{s.HooksOnly, cfg.HooksOnly},
		{s.FoldRecords, foldRecords(cfg)},
		{s.Port0, cfg.Ports[0]},
		{s.Port1, port1},
		{s.IrqTimeAccounting, IRQTimeAccounting()},
		{s.SampleMask, max(cfg.SampleOneIn, 1) - 1},
		{s.SampleMult, uint32(sampleMult)},
		{s.SelfTgid, uint32(os.Getpid())},
	} {
		if err := v.spec.Set(v.val); err != nil {
			return nil, fmt.Errorf("set %s: %w", v.spec.Name, err)
		}
	}
	return spec, nil
}

// foldHooks are the events whose hooks end a record held in the kernel
// for folding with the next (bpf/probe.c, "Folded records"): with one of
// them left out, a held record could wait indefinitely, so nothing is
// folded.
var foldHooks = []string{"sched_switch", "irq_handler_entry", "irq_handler_exit", "softirq_entry", "softirq_exit"}

// foldRecords says whether the programs may fold pairs of records into
// one (fold_records).
func foldRecords(cfg Config) bool {
	for _, ev := range foldHooks {
		if slices.Contains(cfg.Skip, ev) {
			return false
		}
	}
	return !cfg.HooksOnly
}

// IRQTimeAccounting says whether the kernel keeps interrupt time out of
// the tasks' CPU time (CONFIG_IRQ_TIME_ACCOUNTING): its BTF then has the
// per-CPU struct irqtime that holds it. Unknown (no kernel BTF) reads as
// no, which at worst counts an interrupt in a preemption's start as well.
func IRQTimeAccounting() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var st *btf.Struct
	return spec.TypeByName("irqtime", &st) == nil
}

// createMaps creates every map once; each program loaded later shares
// them (MapReplacements).
func (p *Probe) createMaps(spec *ebpf.CollectionSpec) error {
	ms := spec.Copy()
	ms.Programs = map[string]*ebpf.ProgramSpec{}
	coll, err := ebpf.NewCollection(ms)
	if err != nil {
		return fmt.Errorf("create maps: %w", err)
	}
	p.mapsByName = maps.Clone(coll.Maps)
	// The typed maps take theirs; the collection keeps the rest (the
	// constants' and globals' arrays) for Close.
	if err := coll.Assign(&p.objs); err != nil {
		coll.Close()
		return fmt.Errorf("create maps: %w", err)
	}
	p.rest = coll
	p.epoch = coll.Variables[bpf.ProbeVarTraceEpoch]
	return nil
}

// enableStats turns on the kernel's run statistics when asked (for the
// probe's own cost, MachineRuns); best effort.
func (p *Probe) enableStats() {
	if !p.cfg.Stats {
		return
	}
	if c, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME); err == nil {
		p.stats = c
	}
}

// attachAll decides every event's hook, in hookTable's order: off by
// choice, or the first candidate that loads and attaches, or missing with
// every candidate's error.
func (p *Probe) attachAll(spec *ebpf.CollectionSpec, tracefsErr error) {
	cache := btf.NewCache()
	chosen := map[string]bool{}
	for _, ev := range hookTable {
		h := Hook{Event: ev.event, Costs: ev.costs, State: HookOff}
		switch {
		case ev.event == "sched_wakeup" && !p.cfg.Wakeup, slices.Contains(p.cfg.Skip, ev.event):
		case ev.detail && !p.cfg.Syscalls:
			h.OffReason = "--syscalls"
		case ev.fallbackFor != "" && chosen[ev.fallbackFor] && !(ev.event == "sock_send_length" && p.cfg.SendReturns):
			h.OffReason = ev.fallbackFor + " has a hook"
		default:
			h = p.attachEvent(spec, ev, cache, tracefsErr)
		}
		chosen[ev.event] = h.State == HookAttached
		p.hooks = append(p.hooks, h)
	}
}

// attachEvent tries ev's candidates that the mode allows, in order.
func (p *Probe) attachEvent(spec *ebpf.CollectionSpec, ev eventHooks, cache *btf.Cache, tracefsErr error) Hook {
	h := Hook{Event: ev.event, Costs: ev.costs}
	var errs errList
	for _, c := range ev.cands {
		if !allowed(p.cfg.Mode, ev, c.fam) {
			continue
		}
		err := p.try(spec, c, cache, ev.event)
		if err == nil {
			h.State, h.Hook = HookAttached, c.name
			return h
		}
		if c.fam == famTracepoint && tracefsErr != nil {
			err = fmt.Errorf("%w (tracefs: %v)", err, tracefsErr)
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no %s hook exists for this event", p.cfg.Mode))
	}
	h.Err = errs
	return h
}

// checkForced: a forced family (fentry, kprobe) that attached none of the
// socket events is an error, not a run with a silent gap.
func (p *Probe) checkForced() error {
	if p.cfg.Mode != ModeFentry && p.cfg.Mode != ModeKprobe {
		return nil
	}
	var missing []string
	var errs errList
	for _, h := range p.hooks {
		if (h.Event == "sk_data_ready" || h.Event == "sock_recv_length" || h.Event == "send_start") && h.State == HookMissing {
			missing = append(missing, h.Event)
			errs = append(errs, fmt.Errorf("%s: %w", h.Event, h.Err))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("--probe-mode %s: no hook for %s: %w", p.cfg.Mode, strings.Join(missing, ", "), errs)
	}
	return nil
}

// openReader maps the per-CPU rings or opens the BPF ring buffer's reader.
func (p *Probe) openReader() error {
	var err error
	if p.cfg.Ring == RingPerCPU {
		if p.rings, err = mapRings(p.objs.RingSlotsMap, p.objs.RingCursors, p.ring.CPUs, p.ring.SlotsPerCPU); err != nil {
			return err
		}
		return nil
	}
	if p.rd, err = ringbuf.NewReader(p.objs.Events); err != nil {
		return fmt.Errorf("open BPF ring buffer reader: %w", err)
	}
	return nil
}

// try loads and attaches one candidate; on failure nothing of it remains.
func (p *Probe) try(spec *ebpf.CollectionSpec, c candidate, cache *btf.Cache, event string) error {
	var colls []*ebpf.Collection
	var links []link.Link
	fail := func(err error) error {
		for _, l := range links {
			l.Close()
		}
		for _, c := range colls {
			c.Close()
		}
		return err
	}
	for _, a := range c.att {
		ps, ok := spec.Programs[a.prog]
		if !ok {
			return fail(fmt.Errorf("no program %s", a.prog))
		}
		one := spec.Copy()
		one.Programs = map[string]*ebpf.ProgramSpec{a.prog: ps.Copy()}
		coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: p.mapsByName, Cache: cache})
		if err != nil {
			return fail(fmt.Errorf("load: %w", shortErr(err)))
		}
		colls = append(colls, coll)
		l, err := attach(c.fam, a, coll.Programs[a.prog])
		if err != nil {
			return fail(fmt.Errorf("attach: %w", err))
		}
		links = append(links, l)
	}
	p.progs = append(p.progs, colls...)
	for i, a := range c.att {
		p.links = append(p.links, &hookLink{l: links[i], fam: c.fam, a: a, prog: colls[i].Programs[a.prog], stays: staysAttached(event)})
	}
	for _, a := range c.att {
		if h := kernelHook(a.target); !slices.Contains(p.targets, h) {
			p.targets = append(p.targets, h)
		}
	}
	return nil
}

// attach links one loaded program to its hook.
func attach(fam family, a attachment, prog *ebpf.Program) (link.Link, error) {
	switch fam {
	case famTPBTF, famFentry:
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case famRawTP:
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.target, Program: prog})
	case famTracepoint:
		group, name, _ := strings.Cut(a.target, "/")
		return link.Tracepoint(group, name, prog, nil)
	case famKprobe:
		if a.ret {
			return link.Kretprobe(a.target, prog, nil)
		}
		return link.Kprobe(a.target, prog, nil)
	}
	return nil, fmt.Errorf("unknown hook family %s", fam)
}

// shortErr keeps the first line of a verifier error (the full log is
// long) and the error chain, so errors.Is(err, unix.EPERM) still holds.
// A refused program type is named as such: the library's hint about
// MEMLOCK does not apply, Open removed that limit.
func shortErr(err error) error {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i > 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(s, " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if errors.Is(err, unix.EPERM) {
		s += " (EPERM: the kernel refuses this program type here, e.g. lockdown or a BPF LSM)"
	}
	return &shortError{s, err}
}

// errList is several errors on one line, each still reachable by
// errors.Is (a hook's candidates, the events a forced mode misses).
type errList []error

func (l errList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (l errList) Unwrap() []error { return l }

// shortError is an error with a shorter message than the one it wraps.
type shortError struct {
	msg string
	err error
}

func (e *shortError) Error() string { return e.msg }
func (e *shortError) Unwrap() error { return e.err }
