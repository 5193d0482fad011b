package breakdown

import (
	"sync/atomic"

	"github.com/volleyscope/volleyscope/probe"
)

// tableWindow keeps the syscall and io_uring tables to the measured
// window, as every other statistic is: a system call counts when it was
// entered inside the window, an io_uring request when it was submitted
// inside it. The window's start is decided during the run (after the
// warm-up and the pilot stretch), so until then the events of those kinds
// wait in early; its end is known once the clients are told to stop.
type tableWindow struct {
	start atomic.Int64 // 0: not decided yet
	end   atomic.Int64 // 0: not ended yet
	early []probe.Event
}

// SetWindowStart gives the measured window's start (CLOCK_MONOTONIC ns)
// once it is decided; the syscall and io_uring tables count from there.
// Later calls are ignored.
func (s *Stream) SetWindowStart(t int64) {
	if t > 0 {
		s.win.start.CompareAndSwap(0, t)
	}
}

// SetWindowEnd gives the measured window's end; events after it are left
// out of the syscall and io_uring tables. An earlier end wins.
func (s *Stream) SetWindowEnd(t int64) {
	for {
		old := s.win.end.Load()
		if t <= 0 || (old != 0 && old <= t) || s.win.end.CompareAndSwap(old, t) {
			return
		}
	}
}

// tabled says whether e is of a kind the syscall or io_uring tables take.
func tabled(e *probe.Event) bool {
	return e.Kind == probe.KindSyscall || e.Kind == probe.KindUringSubmit || e.Kind == probe.KindUringComplete
}

// inWindow says whether a tabled event counts: a syscall by its entry
// (Arg0), an io_uring submission by its time; a completion always (its
// submission was judged).
func (w *tableWindow) inWindow(e *probe.Event, start int64) bool {
	t := int64(e.TS)
	switch e.Kind {
	case probe.KindSyscall:
		t = int64(e.Arg0)
	case probe.KindUringComplete:
		return true
	}
	end := w.end.Load()
	return t >= start && (end == 0 || t < end)
}

// tableSyscalls feeds the handed-over events (any order) to the syscall
// table, holding them while the window's start is undecided.
func (s *Stream) tableSyscalls(in []probe.Event, clients map[uint32]bool) {
	if s.sys == nil {
		return
	}
	start := s.win.start.Load()
	for i := range in {
		e := &in[i]
		if e.Kind != probe.KindSyscall {
			continue
		}
		switch {
		case start == 0:
			s.win.early = append(s.win.early, *e)
		case s.win.inWindow(e, start):
			s.sys.Add(e, clients)
		}
	}
}

// tableUring feeds final events, in time order, to the io_uring table,
// holding them while the window's start is undecided. Held events go
// first once it is: they are older than any that follow.
func (s *Stream) tableUring(final []probe.Event, clients map[uint32]bool) {
	start := s.win.start.Load()
	if start != 0 && len(s.win.early) > 0 {
		early := s.win.early
		s.win.early = nil
		for i := range early {
			e := &early[i]
			if !s.win.inWindow(e, start) {
				continue
			}
			if e.Kind == probe.KindSyscall {
				if s.sys != nil {
					s.sys.Add(e, clients)
				}
			} else {
				s.uring.Add(e)
			}
		}
	}
	for i := range final {
		e := &final[i]
		if e.Kind != probe.KindUringSubmit && e.Kind != probe.KindUringComplete {
			continue
		}
		switch {
		case start == 0:
			s.win.early = append(s.win.early, *e)
		case s.win.inWindow(e, start):
			s.uring.Add(e)
		}
	}
}
