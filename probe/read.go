package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Run reads events until ctx is done, then drains what is left and
// returns. fn gets a reused *Event and must not keep it.
func (p *Probe) Run(ctx context.Context, fn func(*Event)) error {
	if p.rings != nil {
		return p.runRings(ctx, func(evs []Event) {
			for i := range evs {
				fn(&evs[i])
			}
		})
	}
	return p.runBPF(ctx, fn)
}

// RunBatches is Run handing events over in batches, each of one CPU's
// ring in time order with the per-CPU rings: a consumer that takes them
// under a lock takes it once per batch instead of once per event. fn
// must not keep the slice, which is reused. With the BPF ring buffer a
// batch is one event.
func (p *Probe) RunBatches(ctx context.Context, fn func([]Event)) error {
	if p.rings != nil {
		return p.runRings(ctx, fn)
	}
	var one [1]Event
	return p.runBPF(ctx, func(e *Event) {
		one[0] = *e
		fn(one[:])
	})
}

// runBPF is Run for the BPF ring buffer.
func (p *Probe) runBPF(ctx context.Context, fn func(*Event)) error {
	var rec ringbuf.Record
	var ev Event
	draining := false
	for {
		if !draining && ctx.Err() != nil {
			draining = true
		}
		began := monotonicNs()
		p.rd.SetDeadline(time.Now().Add(p.cfg.Poll))
		err := p.rd.ReadInto(&rec)
		switch {
		case err == nil:
			if err := Decode(rec.RawSample, &ev); err != nil {
				return err
			}
			p.records.Add(1)
			p.kinds.one(ev.Kind)
			expand(&ev, fn)
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.drained.Store(began) // the buffer was empty from then on
			if draining {
				return nil
			}
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("probe: read BPF ring buffer: %w", err)
		}
	}
}

// Drained is the CLOCK_MONOTONIC time (ns) at which the last complete
// read of the rings began: every record stamped more than a program's run
// time before it has been handed to Run's callback. 0 before the first.
// A consumer that joins events by time waits for this to pass a moment
// before it treats that moment as complete.
func (p *Probe) Drained() int64 { return p.drained.Load() }

func monotonicNs() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// batchEvents bounds a batch of RunBatches: the batch buffer stays small
// whatever the rings hold.
const batchEvents = 1024

// minPoll is the shortest wait between two drains of the per-CPU rings.
const minPoll = time.Millisecond

// runRings is Run for the per-CPU rings. The programs never wake the
// reader, so it polls; the wait adapts to how full the rings were (see
// nextWait). Once ctx is done it drains until a drain finds nothing.
func (p *Probe) runRings(ctx context.Context, fn func([]Event)) error {
	batch := make([]Event, 0, batchEvents)
	wait := minPoll
	timer := time.NewTimer(wait)
	defer timer.Stop()
	due := int64(0) // when this drain was meant to begin
	for {
		draining := ctx.Err() != nil
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil
		}
		began := monotonicNs()
		if late := began - due; due > 0 && !draining && late > p.late.Load() {
			p.late.Store(late)
		}
		n, peak, err := p.rings.drain(batch, fn, &p.kinds)
		p.mu.Unlock()
		p.records.Add(uint64(n))
		if err != nil {
			return err
		}
		p.drained.Store(began)
		if draining {
			if n == 0 {
				return nil
			}
			continue
		}
		wait = nextWait(wait, peak, p.rings.slots, p.cfg.Poll)
		// The next drain is due a wait after this one began: a drain
		// held up midway makes the next one late too.
		due = began + wait.Nanoseconds()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
	}
}

// ReaderLate is the longest the per-CPU rings' reader began a drain after
// it meant to, so far: how long other work kept it from its CPU, or the
// Go runtime from firing its timer (a busy ping-pong in the same process
// on the same CPU delays it most). A ring fills in a time its size
// and the event rate set; a reader late by a good part of that loses
// records whatever its wait policy. 0 with the BPF ring buffer, which
// wakes its reader itself.
func (p *Probe) ReaderLate() time.Duration { return time.Duration(p.late.Load()) }

// nextWait is the wait before the next drain, given the last wait and the
// most records one CPU's ring held when drained (peak, of slots). It aims
// to drain each ring before it is an eighth full, at the rate the last
// wait showed: a ring half full or more means the reader fell behind, and
// it drains again after minPoll. The wait grows at most twofold per drain,
// up to poll, so that a quiet start does not leave a burst unread for a
// whole poll period.
func nextWait(prev time.Duration, peak, slots uint64, poll time.Duration) time.Duration {
	hi := min(poll, 2*prev)
	switch {
	case peak*2 >= slots:
		return minPoll
	case peak == 0:
		return max(hi, minPoll)
	}
	w := time.Duration(float64(prev) * float64(slots/8) / float64(peak))
	return max(min(w, hi), minPoll)
}
