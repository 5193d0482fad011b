package session

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/probe"
)

// othersBusy measures how much of the CPUs the calling thread may run on
// other processes than this one took: the probe's scheduler hook counts,
// at each switch, the time the task leaving ran, by CPU
// (Probe.OthersTime). A run's join keeps off SCHED_IDLE while they take
// some (joinStage.loop): at SCHED_IDLE the join runs only in its CPUs'
// idle time, and where another program keeps them busy it may not run
// for seconds, while Go, to collect garbage, stops the world only once
// every thread running Go code has stopped, the join's too. A run's own
// clients stop for the world and leave the join their CPU; another
// program does not, nor does the run's server where it shares them.
type othersBusy struct {
	p                *probe.Probe
	cpus             []int
	at               time.Time
	others, followed time.Duration // the counts at at
	// peak is the largest share of one CPU that others but the run's
	// server (the followed processes) used over a window, so far.
	peak float64
}

// othersWindow is the shortest stretch othersBusy measures over.
const othersWindow = 250 * time.Millisecond

// joinOthersShare: other processes taking this share of one of the
// join's CPUs, or more, over an othersWindow keep it off SCHED_IDLE for
// joinRetryIdle. Anything that runs on and on, at whatever share the
// clients leave it, holds up a world stop; the kernel's own threads take
// well under 1%.
const joinOthersShare = 0.05

// newOthersBusy starts measuring on the calling thread's CPUs; nil when
// they or the counts cannot be read (the join then keeps to its steps).
func newOthersBusy(p *probe.Probe, now time.Time) *othersBusy {
	var set unix.CPUSet
	if p == nil || unix.SchedGetaffinity(0, &set) != nil {
		return nil
	}
	o := &othersBusy{p: p, at: now}
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			o.cpus = append(o.cpus, c)
		}
	}
	var err error
	if o.others, o.followed, err = p.OthersTime(o.cpus); err != nil {
		return nil
	}
	return o
}

// sample returns the share of one CPU that other processes (the run's
// server included) used since the last window ended, once at least
// othersWindow has passed (ok).
func (o *othersBusy) sample(now time.Time) (share float64, ok bool) {
	span := now.Sub(o.at)
	if span < othersWindow {
		return 0, false
	}
	others, followed, err := o.p.OthersTime(o.cpus)
	if err != nil {
		return 0, false
	}
	d, df := others-o.others, followed-o.followed
	o.at, o.others, o.followed = now, others, followed
	o.peak = max(o.peak, float64(d-df)/float64(span))
	return float64(d) / float64(span), true
}
