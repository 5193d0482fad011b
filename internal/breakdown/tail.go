package breakdown

import (
	"cmp"
	"slices"

	"github.com/volleyscope/volleyscope/probe"
)

// DefaultSlowest is how many of the slowest round trips an Accumulator
// keeps unless told otherwise (KeepSlowest).
const DefaultSlowest = 10

// HolderSource names the tasks that held a CPU while a thread waited for
// it: *probe.Probe.
type HolderSource interface {
	CPUHolders(tid uint32, switchIn int64) (probe.CPUWait, bool)
}

// HeldWait is one wait of a slow round trip and, when the probe kept it,
// who held the CPU.
type HeldWait struct {
	Wait
	Held  probe.CPUWait
	Named bool // Held is the probe's record of this wait
}

// Slow is one of the slowest round trips with its waits for a CPU.
type Slow struct {
	RoundTrip
	Waits []HeldWait // RoundTrip.Waits[:NWaits], each with its holders
}

// tail keeps the slowest joined round trips seen so far: a min-heap on
// latency of at most keep, so a new round trip costs one comparison
// unless it is slower than the fastest kept. A round trip that enters is
// given its holders at once (a few map lookups), while the probe still
// keeps its waits; that happens about keep × ln(n/keep) times in a run of
// n round trips.
type tail struct {
	keep  int
	src   HolderSource
	trips []Slow // heap: trips[0] is the fastest kept
}

func latency(rt *RoundTrip) int64 { return rt.T1 - rt.T0 }

func (t *tail) slow(rt *RoundTrip, reuse []HeldWait) Slow {
	s := Slow{RoundTrip: *rt, Waits: reuse[:0]}
	for _, w := range rt.Waits[:rt.NWaits] {
		hw := HeldWait{Wait: w}
		if t.src != nil && w.InNs != 0 {
			hw.Held, hw.Named = t.src.CPUHolders(w.TID, w.InNs)
		}
		s.Waits = append(s.Waits, hw)
	}
	return s
}

func (t *tail) add(rt *RoundTrip) {
	if t.keep <= 0 {
		return
	}
	if t.trips == nil {
		t.trips = make([]Slow, 0, t.keep)
	}
	if len(t.trips) < t.keep {
		t.trips = append(t.trips, t.slow(rt, nil))
		for i := len(t.trips) - 1; i > 0; {
			p := (i - 1) / 2
			if latency(&t.trips[p].RoundTrip) <= latency(&t.trips[i].RoundTrip) {
				break
			}
			t.trips[p], t.trips[i] = t.trips[i], t.trips[p]
			i = p
		}
		return
	}
	if latency(rt) <= latency(&t.trips[0].RoundTrip) {
		return
	}
	t.trips[0] = t.slow(rt, nil)
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(t.trips) && latency(&t.trips[l].RoundTrip) < latency(&t.trips[m].RoundTrip) {
			m = l
		}
		if r < len(t.trips) && latency(&t.trips[r].RoundTrip) < latency(&t.trips[m].RoundTrip) {
			m = r
		}
		if m == i {
			return
		}
		t.trips[m], t.trips[i] = t.trips[i], t.trips[m]
		i = m
	}
}

// KeepSlowest sets how many of the slowest joined round trips a keeps (0:
// none); call it before the first Add.
func (a *Accumulator) KeepSlowest(n int) { a.tail.keep = n }

// NameHolders makes a ask src, for each round trip that becomes one of
// the slowest, who held the CPU in its waits; call it before the first
// Add. Without it the waits are kept unnamed.
func (a *Accumulator) NameHolders(src HolderSource) { a.tail.src = src }

// Slowest returns the slowest joined round trips, slowest first (ties: by
// connection, then sequence).
func (a *Accumulator) Slowest() []Slow {
	out := slices.Clone(a.tail.trips)
	slices.SortFunc(out, func(x, y Slow) int {
		if c := cmp.Compare(latency(&y.RoundTrip), latency(&x.RoundTrip)); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Conn, y.Conn); c != 0 {
			return c
		}
		return cmp.Compare(x.Seq, y.Seq)
	})
	return out
}

// MaxWaits is how many waits for a CPU a RoundTrip keeps.
const MaxWaits = 8

// Wait is a stretch of a round trip in which the thread carrying it was
// runnable but off CPU: woken and not yet on a CPU (charged to
// ServerWakeup or ClientWakeup), or preempted (ServerPreempted or
// ClientPreempted). The probe names the tasks that held the CPU meanwhile
// by TID and InNs (probe.CPUHolders).
type Wait struct {
	Component    Component
	TID          uint32
	FromNs, ToNs int64 // CLOCK_MONOTONIC, within the gap it was carved from
	InNs         int64 // the thread's switch in that ended the wait (≥ ToNs), 0 if none was seen
}

func (rt *RoundTrip) addWait(w Wait) {
	if rt.NWaits < MaxWaits {
		rt.Waits[rt.NWaits] = w
		rt.NWaits++
		return
	}
	rt.MoreWaits++
}

// recordPreempted adds to rt's waits each preemption of tid within
// [from, to), which was charged to c's side. Between two consecutive
// switches in of a thread there is at most one switch out, so the time
// preempted between them is that one preemption's.
func (j *joiner) recordPreempted(rt *RoundTrip, c Component, tid uint32, from, to int64) {
	pc := ClientPreempted
	if c.Side() == "server" {
		pc = ServerPreempted
	}
	t := from
	for range 4 * MaxWaits { // bounded: a round trip preempted more often keeps its first ones
		in, ok := switchInAfter(j.sw(tid, t), t)
		if !ok {
			if p := preemptedIn(j.sw(tid, t), t, to); p > 0 {
				rt.addWait(Wait{Component: pc, TID: tid, FromNs: to - p, ToNs: to})
			}
			return
		}
		end := min(in, to)
		if p := preemptedIn(j.sw(tid, t), t, end); p > 0 {
			rt.addWait(Wait{Component: pc, TID: tid, FromNs: end - p, ToNs: end, InNs: in})
		}
		if in >= to {
			return
		}
		t = in + 1
	}
}

// MaxIrqs is how many interrupt kinds a RoundTrip names, two of them
// kept for "others" (one per side).
const MaxIrqs = 6

// IrqTime is time that interrupts took from the thread carrying a round
// trip: Ns of Component (ClientIrq or ServerIrq) taken by What, the
// longest interrupt of each probe record (a record sums the interrupts
// between two of the thread's own records, and is named by its longest).
// What 0 is other kinds, beyond the first MaxIrqs−2.
type IrqTime struct {
	Component Component
	What      probe.Interrupt
	Ns        int64
}

// addIrq adds ns of c taken by what.
func (rt *RoundTrip) addIrq(c Component, what probe.Interrupt, ns int64) {
	if ns <= 0 {
		return
	}
	for try := 0; try < 2; try++ {
		for i := range rt.NIrqs {
			if q := &rt.Irqs[i]; q.Component == c && q.What == what {
				q.Ns += ns
				return
			}
		}
		if rt.NIrqs < MaxIrqs-2 || what == 0 {
			break
		}
		what = 0
	}
	rt.Irqs[rt.NIrqs] = IrqTime{Component: c, What: what, Ns: ns}
	rt.NIrqs++
}
