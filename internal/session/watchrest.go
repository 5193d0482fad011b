package session

import (
	"errors"
	"time"
)

// captureRest takes the payload capture's hooks off while it has nothing
// to read: every connection with an exchange under way has had its first
// watchPayloadSends sends read (or was found pipelined, or gave the
// parser up), so the capture's programs would only run to its per-
// connection limit and return. Its hooks are on the data syscalls, and
// attached they cost every such syscall of the machine a program run and
// every syscall the kernel's slow path. They come back as soon as a
// connection with an exchange under way lacks its reads: one that began
// while they were off is read from the send at which they return, not
// its first (watchTrips defers its classification until then).
//
// It runs on the watch's goroutine; the sampler (--trace-share) switches
// the capture through setTraced, with the probe.
type captureRest struct {
	set     func(on bool) error // the capture's switch
	traced  bool                // the probe is tracing (the sampler's word)
	on      bool                // the capture's hooks are attached
	needed  bool                // at the last tick, a connection needed the capture
	idle    int64               // since when none has (CLOCK_MONOTONIC ns); 0: one does
	since   int64               // when the hooks last came on
	onNs    int64               // time attached before since
	offs    int                 // times the hooks went off for rest
	backAt  int64               // when the hooks last came back after a rest
	started int64
	// notBefore is the warm-up's end: the capture's cost is measured
	// over the warm-up, attached.
	notBefore int64
}

// captureRestAfter is how long the capture must have had nothing to read
// before its hooks go off: a connection pool that opens a connection
// every few hundred milliseconds keeps them on rather than switching
// them for each.
const captureRestAfter = time.Second

func newCaptureRest(set func(bool) error, now int64) *captureRest {
	return &captureRest{set: set, traced: true, on: true, needed: true, since: now, started: now}
}

// tick applies needed, the watch's word on whether a connection lacks its
// reads, at now; with known false (no exchange under way) nothing
// changes but the wait for a rest, which begins again. The hooks are
// attached at the start, so that the first connections' first sends
// are read, and stay as they are while no traffic says otherwise: a
// watch left without traffic rests as it was.
func (r *captureRest) tick(now int64, needed, known bool) error {
	if r == nil {
		return nil
	}
	if !known {
		r.idle = 0
		return nil
	}
	r.needed = needed
	if needed {
		r.idle = 0
		if r.traced && !r.on {
			r.backAt = now
			return r.switchTo(true, now)
		}
		return nil
	}
	if r.idle == 0 {
		r.idle = now
	}
	if r.on && now >= r.notBefore && now-r.idle >= captureRestAfter.Nanoseconds() {
		r.offs++
		return r.switchTo(false, now)
	}
	return nil
}

// setTraced follows the probe's sampling switch: off with it, and on
// with it if a connection needed the capture at the last tick that knew
// (a window's exchanges are seen only after it opens).
func (r *captureRest) setTraced(on bool, now int64) error {
	if r == nil {
		return nil
	}
	r.traced = on
	if on == r.on || (on && !r.needed) {
		return nil
	}
	return r.switchTo(on, now)
}

func (r *captureRest) switchTo(on bool, now int64) error {
	if err := r.set(on); err != nil {
		return errors.Join(errors.New("payload capture: switch its hooks"), err)
	}
	if on {
		r.since = now
	} else {
		r.onNs += now - r.since
	}
	r.on = on
	return nil
}

// resting says whether a connection seen at now may have sent while the
// capture's hooks were off: they are off, or came back after a rest less
// than captureRestAfter ago (its reads reach the parser a poll later).
func (r *captureRest) resting(now int64) bool {
	return r != nil && (!r.on || (r.backAt != 0 && now-r.backAt < captureRestAfter.Nanoseconds()))
}

// share is the share of the time from the start to end that the
// capture's hooks were attached, and how many times they went off for
// rest.
func (r *captureRest) share(end int64) (float64, int) {
	if r == nil || end <= r.started {
		return 1, 0
	}
	on := r.onNs
	if r.on {
		on += end - r.since
	}
	return float64(on) / float64(end-r.started), r.offs
}
