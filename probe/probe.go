package probe

import (
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/volleyscope/volleyscope/bpf"
)

// Probe is a loaded, attached probe. Open makes one (load.go); TrackTID
// and TrackTGID say whom to follow (track.go); Run reads the records
// (read.go); Lost, Records, MachineRuns and Close report and release
// (stats.go).
type Probe struct {
	cfg Config
	// objs are the maps every program shares, by their generated names;
	// rest holds the other maps of that collection (the constants' and
	// globals' arrays); mapsByName has them all, for loading programs.
	objs       bpf.ProbeMaps
	rest       *ebpf.Collection
	mapsByName map[string]*ebpf.Map
	progs      []*ebpf.Collection
	links      []*hookLink
	hooks      []Hook
	targets    []string // the kernel hooks attached (kernelHook), for Neighbours
	neighbours []Neighbour
	ring       Ring
	rd         *ringbuf.Reader // RingBPF
	rings      *rings          // RingPerCPU
	stats      io.Closer
	records    atomic.Uint64 // records Run handed to its callback
	kinds      kindCounts    // the same, by kind (a folded record as its own kind)
	drained    atomic.Int64  // CLOCK_MONOTONIC ns when the last complete read began (Drained)
	late       atomic.Int64  // the reader's longest wake-up past its planned time, ns (ReaderLate)
	mu         sync.Mutex
	closed     bool
	// lostAtClose keeps the rings' drop counts once they are unmapped.
	lostAtClose []uint64
	// holds is probe.c's hold_ring mapped into this process: ncpu rings
	// of holdSlots finished waits (holders.go).
	holds     []bpf.ProbeHoldSlot
	holdsMem  []byte
	holdSlots uint32
	// holdsAtClose keeps the finished waits' holders once the ring is
	// unmapped (CPUHolders).
	holdsAtClose map[bpf.ProbeHoldKey]bpf.ProbeHold
	// epoch is probe.c's trace_epoch, and epochN its value (SetTracing).
	epoch  *ebpf.Variable
	epochN uint32
	// detaching is the last SetTracing(false)'s detach while in flight.
	detaching <-chan error
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

// Hooks reports what Open decided for every event, in a fixed order.
func (p *Probe) Hooks() []Hook { return p.hooks }

// Ring says where the records go: the kind, why when Open fell back to
// the BPF ring buffer, and the per-CPU rings' size.
func (p *Probe) Ring() Ring { return p.ring }

// ModeUsed summarizes the families in use, e.g. "tp_btf" or
// "tp_btf+tracepoint".
func (p *Probe) ModeUsed() string {
	var fams []string
	for _, h := range p.hooks {
		if h.State != HookAttached {
			continue
		}
		if f, _, _ := strings.Cut(h.Hook, "/"); !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	if len(fams) == 0 {
		return "none"
	}
	return strings.Join(fams, "+")
}
