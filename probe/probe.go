package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/bpf"
)

// Mode forces a hook family.
type Mode string

// Modes.
const (
	ModeAuto       Mode = "auto"       // per event, the first hook that loads and attaches
	ModeTracepoint Mode = "tracepoint" // tp_btf, raw or classic tracepoints only
	ModeFentry     Mode = "fentry"     // socket events on fentry/fexit
	ModeKprobe     Mode = "kprobe"     // socket events on kprobe/kretprobe
)

// ParseMode checks a --probe-mode value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeTracepoint, ModeFentry, ModeKprobe:
		return Mode(s), nil
	}
	return "", fmt.Errorf("probe mode %q: want auto, tracepoint, fentry or kprobe", s)
}

// RingKind is where the programs put their records.
type RingKind string

// Ring kinds. The zero value ("") lets Open choose: per-CPU rings, or the
// BPF ring buffer when no program loads with them.
const (
	// RingPerCPU: lock-free per-CPU rings in a mapped array, read
	// without a system call. They need the atomic fetch-add in programs
	// (Linux 5.12).
	RingPerCPU RingKind = "percpu"
	// RingBPF: the kernel's BPF ring buffer (Linux 5.8), one helper call
	// per record: measured ~50 ns more per record than RingPerCPU on a
	// 2-vCPU VM. Kept for comparison and for kernels before 5.12.
	RingBPF RingKind = "bpf"
)

// Ring says where a probe's records go, and why.
type Ring struct {
	Kind RingKind
	// Why, for RingBPF chosen by Open: the per-CPU rings' refusal.
	// Empty when the kind was asked for or is the first choice.
	Why string
}

// String is "per-CPU rings", "BPF ring buffer", or "BPF ring buffer
// (per-CPU rings refused: …)" as the terminal and results.json show it.
func (r Ring) String() string {
	s := "BPF ring buffer"
	if r.Kind == RingPerCPU {
		s = "per-CPU rings"
	}
	if r.Why != "" {
		s += " (" + r.Why + ")"
	}
	return s
}

// Config configures a probe. The zero value is usable once Ports is set.
type Config struct {
	Mode  Mode     // hook family; "" = auto
	Ports []uint16 // TCP ports whose sockets are followed (the server's)
	// WakeupRecords: the kernel wakes the reader only after this many
	// records from one CPU; otherwise the reader polls every Poll.
	// Default 65536 (4 MiB of the 16 MiB ring).
	WakeupRecords uint64
	Poll          time.Duration // reader poll period; default 20ms
	// Stats turns on the kernel's BPF run-time statistics for the probe's
	// own cost (Stats method); they add two clock reads per program run.
	Stats bool
	// Wakeup also attaches sched_wakeup, which the breakdown does not need
	// (it measures from sched_waking to the switch in).
	Wakeup bool
	// Syscalls also attaches raw_syscalls enter/exit and sched_waking: the
	// per-syscall table, the split of server_queue from server_kernel_recv,
	// and which thread a request woke. Those hooks fire on every system
	// call and wake-up of the machine, tracked or not; measured on a 2-vCPU
	// VM they add ~7% to a one-CPU round trip even when they return at once.
	Syscalls bool
	// Skip names events not to attach (shown as "off"): for measuring
	// what each costs.
	Skip []string
	// Ring chooses where records go (RingPerCPU or RingBPF). The zero
	// value tries the per-CPU rings and falls back to the BPF ring buffer
	// when no program loads with them.
	Ring RingKind
	// RingSlots overrides the records per CPU of the per-CPU rings (a
	// power of two ≥ 64); 0 sizes them by the number of CPUs.
	RingSlots uint32
	// HooksOnly makes every program return at its first test: what the
	// kernel charges for running the hooks at all (benchmarks only).
	HooksOnly bool
}

// Probe is a loaded, attached probe.
type Probe struct {
	cfg    Config
	maps   *ebpf.Collection
	progs  []*ebpf.Collection
	links  []link.Link
	hooks  []Hook
	rd     *ringbuf.Reader // RingBPF
	rings  *rings          // RingPerCPU
	stats  io.Closer
	mu     sync.Mutex
	closed bool
	// lostAtClose keeps the rings' drop count once they are unmapped.
	lostAtClose uint64
	ringWhy     string // why the BPF ring buffer is used, when Open fell back
}

// Sentinel errors of Check.
var (
	ErrPermission = errors.New("the probe needs root or CAP_BPF+CAP_PERFMON; run 'volleyscope bench' to measure without it")
	ErrNoBTF      = errors.New("the kernel has no BTF (/sys/kernel/btf/vmlinux); the probe needs CONFIG_DEBUG_INFO_BTF; run 'volleyscope bench' to measure without it")
)

// Check says what, if anything, keeps the probe from running here.
func Check() error {
	if !privileged() {
		return ErrPermission
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return ErrNoBTF
	}
	return nil
}

// privileged: root, or the capabilities BPF (39) and PERFMON (38).
func privileged() bool {
	if os.Geteuid() == 0 {
		return true
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(unix.CAP_BPF) && has(unix.CAP_PERFMON)
}

// ensureTracefs mounts tracefs if it is missing: classic tracepoints need
// it (tp_btf and raw tracepoints do not).
func ensureTracefs() error {
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		return nil
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/events"); err == nil {
		return nil
	}
	return unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, "")
}

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
		p.ringWhy = fmt.Sprintf("per-CPU rings refused: %v", why)
	}
	return p, err
}

// hook is the Hook reported for event (zero if the event is unknown).
func (p *Probe) hook(event string) Hook {
	for _, h := range p.hooks {
		if h.Event == event {
			return h
		}
	}
	return Hook{}
}

// Ring says where the records go, and why when Open fell back to the BPF
// ring buffer.
func (p *Probe) Ring() Ring {
	if p.rings != nil {
		return Ring{Kind: RingPerCPU}
	}
	return Ring{Kind: RingBPF, Why: p.ringWhy}
}

func open(cfg Config) (p *Probe, err error) {
	if err := Check(); err != nil {
		return nil, err
	}
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		return nil, err
	}
	cfg.Mode = mode
	if cfg.WakeupRecords == 0 {
		cfg.WakeupRecords = 65536
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("open probe: %w", err)
	}
	tracefsErr := ensureTracefs()

	spec, err := bpf.LoadProbe()
	if err != nil {
		return nil, fmt.Errorf("open probe: load spec: %w", err)
	}
	if err := spec.Variables["wakeup_records"].Set(cfg.WakeupRecords); err != nil {
		return nil, fmt.Errorf("open probe: set wakeup_records: %w", err)
	}
	var ncpu int
	var slots uint32
	switch cfg.Ring {
	case RingPerCPU:
		if ncpu, err = ebpf.PossibleCPU(); err != nil {
			return nil, fmt.Errorf("open probe: %w", err)
		}
		slots = ringSlots(ncpu)
		if cfg.RingSlots != 0 {
			if cfg.RingSlots < 64 || cfg.RingSlots&(cfg.RingSlots-1) != 0 {
				return nil, fmt.Errorf("open probe: ring slots %d: want a power of two ≥ 64", cfg.RingSlots)
			}
			slots = cfg.RingSlots
		}
		spec.Maps["ring_slots_map"].MaxEntries = uint32(ncpu) * slots
		spec.Maps["ring_cursors"].MaxEntries = uint32(ncpu)
		spec.Maps["events"].MaxEntries = uint32(os.Getpagesize()) // unused
	case RingBPF:
	default:
		return nil, fmt.Errorf("open probe: ring %q: want percpu or bpf", cfg.Ring)
	}
	if err := spec.Variables["ring_slots"].Set(slots); err != nil {
		return nil, fmt.Errorf("open probe: set ring_slots: %w", err)
	}
	for name, v := range map[string]bool{"syscalls": cfg.Syscalls, "hooks_only": cfg.HooksOnly} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("open probe: set %s: %w", name, err)
		}
	}
	if len(cfg.Ports) == 0 || len(cfg.Ports) > 2 {
		return nil, fmt.Errorf("open probe: want 1 or 2 ports to follow, got %d", len(cfg.Ports))
	}
	for i, port := range cfg.Ports {
		if err := spec.Variables[fmt.Sprintf("port%d", i)].Set(port); err != nil {
			return nil, fmt.Errorf("open probe: set port: %w", err)
		}
	}
	pr := &Probe{cfg: cfg}
	defer func() {
		if err != nil {
			pr.Close()
		}
	}()
	p = pr

	// Maps first, shared by every program loaded below.
	ms := spec.Copy()
	ms.Programs = map[string]*ebpf.ProgramSpec{}
	if p.maps, err = ebpf.NewCollection(ms); err != nil {
		return nil, fmt.Errorf("open probe: create maps: %w", err)
	}
	// Statistics for the probe's own cost (BENCH probe_bpf_ns_per_event and
	// results.json probe.bpf_ns_per_event); best effort.
	if cfg.Stats {
		if c, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME); err == nil {
			p.stats = c
		}
	}
	cache := btf.NewCache()
	chosen := map[string]bool{}
	for _, ev := range hookTable {
		h := Hook{Event: ev.event, Costs: ev.costs, State: HookOff}
		switch {
		case ev.event == "sched_wakeup" && !cfg.Wakeup, slices.Contains(cfg.Skip, ev.event):
		case ev.detail && !cfg.Syscalls:
			h.OffReason = "--syscalls"
		case ev.fallbackFor != "" && chosen[ev.fallbackFor]:
			h.OffReason = ev.fallbackFor + " has a hook"
		default:
			h.State = HookMissing
		}
		if h.State == HookOff {
			p.hooks = append(p.hooks, h)
			continue
		}
		var errs errList
		for _, c := range ev.cands {
			if !allowed(cfg.Mode, ev, c.fam) {
				continue
			}
			err := p.try(spec, c, cache)
			if err == nil {
				h.State, h.Hook = HookAttached, c.name
				break
			}
			if c.fam == famTracepoint && tracefsErr != nil {
				err = fmt.Errorf("%w (tracefs: %v)", err, tracefsErr)
			}
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
		chosen[ev.event] = h.State == HookAttached
		if h.State == HookMissing {
			if len(errs) == 0 {
				errs = append(errs, fmt.Errorf("no %s hook exists for this event", cfg.Mode))
			}
			h.Err = errs
		}
		p.hooks = append(p.hooks, h)
	}
	if cfg.Mode == ModeFentry || cfg.Mode == ModeKprobe {
		// A forced family that attached nothing is an error, not a run
		// with a silent gap.
		var missing []string
		var errs errList
		for _, h := range p.hooks {
			if (h.Event == "sk_data_ready" || h.Event == "sock_recv_length" || h.Event == "send_start") && h.State == HookMissing {
				missing = append(missing, h.Event)
				errs = append(errs, fmt.Errorf("%s: %w", h.Event, h.Err))
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("open probe: --probe-mode %s: no hook for %s: %w", cfg.Mode, strings.Join(missing, ", "), errs)
		}
	}
	if cfg.Ring == RingPerCPU {
		if p.rings, err = mapRings(p.maps.Maps["ring_slots_map"], p.maps.Maps["ring_cursors"], ncpu, slots); err != nil {
			return nil, fmt.Errorf("open probe: %w", err)
		}
	} else if p.rd, err = ringbuf.NewReader(p.maps.Maps["events"]); err != nil {
		return nil, fmt.Errorf("open probe: ring buffer reader: %w", err)
	}
	return p, nil
}

// try loads and attaches one candidate; on failure nothing of it remains.
func (p *Probe) try(spec *ebpf.CollectionSpec, c candidate, cache *btf.Cache) error {
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
		coll, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: p.maps.Maps, Cache: cache})
		if err != nil {
			return fail(fmt.Errorf("load: %w", shortErr(err)))
		}
		colls = append(colls, coll)
		prog := coll.Programs[a.prog]
		var l link.Link
		switch c.fam {
		case famTPBTF, famFentry:
			l, err = link.AttachTracing(link.TracingOptions{Program: prog})
		case famRawTP:
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.target, Program: prog})
		case famTracepoint:
			group, name, _ := strings.Cut(a.target, "/")
			l, err = link.Tracepoint(group, name, prog, nil)
		case famKprobe:
			if a.ret {
				l, err = link.Kretprobe(a.target, prog, nil)
			} else {
				l, err = link.Kprobe(a.target, prog, nil)
			}
		}
		if err != nil {
			return fail(fmt.Errorf("attach: %w", err))
		}
		links = append(links, l)
	}
	p.progs = append(p.progs, colls...)
	p.links = append(p.links, links...)
	return nil
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

// Hooks reports the hook chosen for every event.
func (p *Probe) Hooks() []Hook { return p.hooks }

// ModeUsed summarizes the families in use, e.g. "tp_btf" or
// "tp_btf+tracepoint".
func (p *Probe) ModeUsed() string {
	seen := map[string]bool{}
	var fams []string
	for _, h := range p.hooks {
		if h.State != HookAttached {
			continue
		}
		f, _, _ := strings.Cut(h.Hook, "/")
		if !seen[f] {
			seen[f] = true
			fams = append(fams, f)
		}
	}
	if len(fams) == 0 {
		return "none"
	}
	return strings.Join(fams, "+")
}

func (p *Probe) setKey(m string, key any) error {
	var one uint8 = 1
	if err := p.maps.Maps[m].Update(key, one, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("probe: update %s: %w", m, err)
	}
	return nil
}

// tidWords matches TID_WORDS in probe.c: one bit per thread id.
const tidWords = 65536

// setTracked sets or clears tid's bit. The read-modify-write races only
// with the kernel marking a newly forked thread whose id shares the word;
// TrackTGID scans twice to close that window for the server's threads.
func (p *Probe) setTracked(tid uint32, on bool) error {
	if tid/64 >= tidWords {
		return fmt.Errorf("probe: thread id %d above the %d the probe can follow", tid, tidWords*64)
	}
	m := p.maps.Maps["tracked_bits"]
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
	if err := p.setKey("tracked_tgids", tgid); err != nil {
		return err
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

// Run reads events until ctx is done, then drains what is left in the ring
// and returns. fn gets a reused *Event and must not keep it.
func (p *Probe) Run(ctx context.Context, fn func(*Event)) error {
	if p.rings != nil {
		return p.runRings(ctx, fn)
	}
	var rec ringbuf.Record
	var ev Event
	draining := false
	for {
		if !draining && ctx.Err() != nil {
			draining = true
		}
		p.rd.SetDeadline(time.Now().Add(p.cfg.Poll))
		err := p.rd.ReadInto(&rec)
		switch {
		case err == nil:
			if err := Decode(rec.RawSample, &ev); err != nil {
				return err
			}
			fn(&ev)
		case errors.Is(err, os.ErrDeadlineExceeded):
			if draining {
				return nil
			}
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("probe: read ring buffer: %w", err)
		}
	}
}

// runRings is Run for the per-CPU rings: drain them every Poll; once ctx
// is done, until a drain finds nothing.
func (p *Probe) runRings(ctx context.Context, fn func(*Event)) error {
	var ev Event
	t := time.NewTicker(p.cfg.Poll)
	defer t.Stop()
	for {
		draining := ctx.Err() != nil
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil
		}
		n, err := p.rings.drain(&ev, fn)
		p.mu.Unlock()
		if err != nil {
			return err
		}
		if draining && n == 0 {
			return nil
		}
		if n > 0 && draining {
			continue
		}
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// Lost is the number of records dropped because the ring buffer was full.
func (p *Probe) Lost() uint64 {
	if p.rings != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			return p.lostAtClose
		}
		return p.rings.lost()
	}
	var per [][2]uint64
	if err := p.maps.Maps["lost"].Lookup(uint32(0), &per); err != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v[0]
	}
	return n
}

// Stats sums the kernel's run statistics of the probe's programs: how many
// times they ran and for how long in total (needs BPF_ENABLE_STATS, 5.8+).
func (p *Probe) Stats() (runs uint64, ns uint64, err error) {
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

// StopStats turns the kernel's run statistics off (they cost two clock
// reads per program run: measured here, 13% of a one-CPU round trip). The
// counts gathered so far stay readable through Stats.
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
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
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
	if p.maps != nil {
		p.maps.Close()
	}
	if p.stats != nil {
		errs = append(errs, p.stats.Close())
	}
	return errors.Join(errs...)
}
