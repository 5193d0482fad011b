package probe

import (
	"os"
	"strconv"
	"strings"
)

// Interrupt names an interrupt: a hard IRQ by its number, or a softirq by
// its vector (KindIrq's Arg1, IRQ_HARD and IRQ_SOFT in bpf/volley.h).
type Interrupt uint64

const (
	irqHard = 1 << 32
	irqSoft = 2 << 32
)

// softirqNames are the kernel's softirq vectors in order
// (include/linux/interrupt.h), as /proc/softirqs names them.
var softirqNames = []string{"HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"}

// Soft reports whether i is a softirq, and its vector.
func (i Interrupt) Soft() (vec int, ok bool) { return int(uint32(i)), i&irqSoft != 0 }

// Hard reports whether i is a hard IRQ, and its number.
func (i Interrupt) Hard() (irq int, ok bool) { return int(uint32(i)), i&irqHard != 0 }

// String is "softirq NET_RX" or "irq 41", or "" for no interrupt.
func (i Interrupt) String() string {
	if v, ok := i.Soft(); ok {
		if v < len(softirqNames) {
			return "softirq " + softirqNames[v]
		}
		return "softirq " + strconv.Itoa(v)
	}
	if n, ok := i.Hard(); ok {
		return "irq " + strconv.Itoa(n)
	}
	return ""
}

// Name is String with, for a hard IRQ, the names of its handlers as
// /proc/irq/N lists them ("irq 41 virtio0-input.0"), read now: an IRQ
// freed since keeps its number alone.
func (i Interrupt) Name() string {
	n, ok := i.Hard()
	if !ok {
		return i.String()
	}
	ents, err := os.ReadDir("/proc/irq/" + strconv.Itoa(n))
	if err != nil {
		return i.String()
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return i.String()
	}
	return i.String() + " " + strings.Join(names, ",")
}
