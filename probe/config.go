package probe

import (
	"fmt"
	"time"
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
	// per record, which costs more per record than RingPerCPU's plain
	// stores. Kept for comparison and for kernels before 5.12.
	RingBPF RingKind = "bpf"
)

// Ring says where a probe's records go, and why.
type Ring struct {
	Kind RingKind
	// Why, for RingBPF chosen by Open: the per-CPU rings' refusal.
	// Empty when the kind was asked for or is the first choice.
	Why string
	// CPUs and SlotsPerCPU size the per-CPU rings (RingPerCPU): each CPU
	// holds SlotsPerCPU records of EventSize bytes.
	CPUs        int
	SlotsPerCPU uint32
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
	Ports []uint16 // TCP ports whose sockets are followed (the server's); one or two
	// WakeupRecords (RingBPF only): the kernel wakes the reader only after
	// this many records from one CPU; otherwise the reader polls every
	// Poll. Default 65536 (4 MiB of the 16 MiB buffer).
	WakeupRecords uint64
	// Poll is the reader's longest wait between drains; default 20ms. The
	// per-CPU rings' reader waits less while the rings fill fast: it aims
	// to drain each ring before it is an eighth full.
	Poll time.Duration
	// Stats turns on the kernel's BPF run-time statistics for the probe's
	// own cost (MachineRuns); they add two clock reads per program run.
	Stats bool
	// Wakeup also attaches sched_wakeup, which the breakdown does not need
	// (it measures from sched_waking to the switch in).
	Wakeup bool
	// Syscalls also attaches raw_syscalls enter/exit and sched_waking: the
	// per-syscall table, the split of server_queue from server_kernel_recv,
	// and which thread a request woke. Those hooks fire on every system
	// call and wake-up of the machine, tracked or not, and cost a share of
	// a short round trip even when they return at once (README, "What the
	// probe costs").
	Syscalls bool
	// SendReturns also attaches sock_send_length where send_start has a
	// hook (it is otherwise only send_start's fallback): the end of each
	// send, which tells a send written in several segments from a second
	// send (a watched client's second request before the reply).
	SendReturns bool
	// Skip names events not to attach (shown as "off"): for measuring
	// what each costs.
	Skip []string
	// Ring chooses where records go (RingPerCPU or RingBPF). The zero
	// value tries the per-CPU rings and falls back to the BPF ring buffer
	// when no program loads with them.
	Ring RingKind
	// RoundTripsPerSec is the load's expected rate of round trips, all
	// connections together. The rings are sized to hold a quarter of a
	// second of its records (about 10 per round trip, 20 with Syscalls)
	// even if half of them land on one CPU, within 1 GiB in all. 0 sizes
	// them by the CPU count alone (2^18 records per CPU, less on machines
	// with more than 18 CPUs: 256 MiB in all).
	RoundTripsPerSec float64
	// RingSlots overrides the records per CPU of the per-CPU rings (a
	// power of two ≥ 64); 0 sizes them by CPU count and RoundTripsPerSec.
	RingSlots uint32
	// HooksOnly makes every program return at its first test: what the
	// kernel charges for running the hooks at all (benchmarks only).
	HooksOnly bool
	// SampleOneIn follows the socket events of about one connection in
	// this many (a power of two; 0 or 1: every connection), chosen by
	// Sampled from the client's port. The scheduler events of tracked
	// threads are followed whatever the sample.
	SampleOneIn uint32
}

// sampleMult is the multiplier of the connection sample's hash (Knuth's
// multiplicative hash): ephemeral ports come in steps (Linux prefers even
// ones for connect), so their low bits alone would pick all or none.
const sampleMult = 0x9e3779b1

// Sampled says whether the connection from clientPort is in a sample of
// one in oneIn: the same test the programs make (conn_followed in
// bpf/probe.c).
func Sampled(clientPort uint16, oneIn uint32) bool {
	if oneIn <= 1 {
		return true
	}
	return (uint32(clientPort)*sampleMult)>>16&(oneIn-1) == 0
}

// withDefaults checks cfg once and fills its defaults.
func (cfg Config) withDefaults() (Config, error) {
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		return cfg, err
	}
	cfg.Mode = mode
	if len(cfg.Ports) == 0 || len(cfg.Ports) > 2 {
		return cfg, fmt.Errorf("want 1 or 2 ports to follow, got %d", len(cfg.Ports))
	}
	switch cfg.Ring {
	case RingPerCPU, RingBPF:
	default:
		return cfg, fmt.Errorf("ring %q: want %q or %q", cfg.Ring, RingPerCPU, RingBPF)
	}
	if cfg.RingSlots != 0 && (cfg.RingSlots < 64 || cfg.RingSlots&(cfg.RingSlots-1) != 0) {
		return cfg, fmt.Errorf("ring slots %d: want a power of two ≥ 64", cfg.RingSlots)
	}
	if n := cfg.SampleOneIn; n&(n-1) != 0 || n > 1<<16 {
		return cfg, fmt.Errorf("connection sample one in %d: want a power of two up to 65536", n)
	}
	if cfg.RoundTripsPerSec < 0 {
		return cfg, fmt.Errorf("expected round trips per second %g: want ≥ 0", cfg.RoundTripsPerSec)
	}
	if cfg.WakeupRecords == 0 {
		cfg.WakeupRecords = 65536
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	return cfg, nil
}
