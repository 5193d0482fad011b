package loadgen

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// worker is one locked thread of the epoll model. It drives its share of
// the connections with non-blocking sockets in one level-triggered epoll
// set: input always watched, output only while a request is not all
// written. Timestamps are taken as in the threads model: t0 right before
// the first send system call of a request, t1 right after the read that
// completed the reply.
type worker struct {
	s      *clientSet
	cpu    int // -1: not pinned
	tid    int
	epfd   int
	conns  []*client
	events []unix.EpollEvent
	heap   []*client // open loop: connections waiting for their intended time
	active int       // connections still running
}

// startEpoll starts one worker per client CPU (or per CPU of the machine
// when unpinned), never more than there are connections, and deals the
// connections out to them in turn.
func (s *clientSet) startEpoll(opts *Options) error {
	cpus := opts.ClientCPUs
	if len(cpus) == 0 {
		cpus = make([]int, runtime.NumCPU())
		for i := range cpus {
			cpus[i] = -1
		}
	}
	n := min(len(cpus), len(s.conns))
	s.growRuntime(n)
	s.setup.Threads = n
	s.workers = make([]*worker, n)
	for i := range s.workers {
		s.workers[i] = &worker{s: s, cpu: cpus[i], epfd: -1, events: make([]unix.EpollEvent, 256)}
		s.workers[i].heap = make([]*client, 0, len(s.conns)/n+1)
	}
	for i, c := range s.conns {
		w := s.workers[i%n]
		w.conns = append(w.conns, c)
	}
	return s.launch(n, func(i int) error { return s.workers[i].prepare() }, func(i int) { s.workers[i].run(opts) })
}

// prepare pins the worker's thread and watches its connections.
func (w *worker) prepare() error {
	tid, err := pinThread(w.cpu)
	if err != nil {
		return err
	}
	w.tid = tid
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("create epoll instance: %w", err)
	}
	for _, c := range w.conns {
		c.tid = tid
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.id)}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
			return fmt.Errorf("watch connection %d: %w", c.id, err)
		}
	}
	return nil
}

// run drives the worker's connections until each has stopped: halted
// after its round trip in flight, done with opts.Requests, or failed. It
// allocates nothing per round trip.
func (w *worker) run(opts *Options) {
	s := w.s
	to := opts.Timeout.Nanoseconds()
	// Round trips over the timeout are found by a scan this often; one
	// that completes late is caught at completion.
	scanEvery := min(max(to/20, int64(time.Millisecond)), int64(50*time.Millisecond))
	w.active = len(w.conns)
	start := s.startNs.Load()
	for _, c := range w.conns {
		if c.gapNs > 0 {
			c.intended = c.nextIntended(start)
			w.push(c)
		} else {
			w.start(c, opts)
		}
	}
	stopping := false
	nextScan := nanotime() + scanEvery
	lastYield := start
	for w.active > 0 {
		if !stopping && s.stop.Load() {
			stopping = true
			for len(w.heap) > 0 {
				w.finish(w.pop())
			}
			if w.active == 0 {
				break
			}
		}
		now := nanotime()
		if now-lastYield > yieldEvery {
			// Keeps sysmon asleep, as a client thread does (yieldEvery).
			runtime.Gosched()
			lastYield, now = now, nanotime()
		}
		for len(w.heap) > 0 && w.heap[0].intended <= now {
			w.start(w.pop(), opts)
		}
		wait := nextScan - now
		if len(w.heap) > 0 {
			wait = min(wait, w.heap[0].intended-now)
		}
		n, err := epollWait(w.epfd, w.events, max(wait, 0))
		if err != nil && err != unix.EINTR {
			for _, c := range w.conns {
				if c.busy || c.hpos >= 0 {
					c.fail(fmt.Errorf("connection %d: wait for replies: %w", c.id, err))
				}
			}
			return
		}
		for _, ev := range w.events[:max(n, 0)] {
			c := s.conns[ev.Fd]
			if !c.busy {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				if err := c.send(); err != nil {
					w.fault(c, err, opts)
					continue
				}
				if c.wr == len(c.x.req) && c.wantOut {
					c.wantOut = false
					if err := epollMod(w.epfd, c, false); err != nil {
						w.fault(c, err, opts)
						continue
					}
				}
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
				continue
			}
			done, err := c.recv()
			if err != nil {
				w.fault(c, err, opts)
				continue
			}
			if done {
				w.complete(c, nanotime(), stopping, opts)
			}
		}
		if now = nanotime(); now >= nextScan {
			for _, c := range w.conns {
				if c.busy && now-c.ref > to {
					w.fault(c, unix.EAGAIN, opts)
				}
			}
			nextScan = now + scanEvery
		}
	}
}

// start sends c's next request; in open loop c.intended is its intended
// time.
func (w *worker) start(c *client, opts *Options) {
	c.x.prepare()
	c.wr, c.rd = 0, 0
	c.busy = true
	t0 := nanotime()
	c.t0, c.ref = t0, t0
	if c.gapNs > 0 {
		c.ref = c.intended
	}
	if err := c.send(); err != nil {
		w.fault(c, err, opts)
		return
	}
	if c.wr < len(c.x.req) && !c.wantOut {
		c.wantOut = true
		if err := epollMod(w.epfd, c, true); err != nil {
			w.fault(c, err, opts)
		}
	}
}

// complete checks and records the reply that completed at t1, then starts
// the next round trip or schedules it.
func (w *worker) complete(c *client, t1 int64, stopping bool, opts *Options) {
	c.busy = false
	if t1-c.ref > opts.Timeout.Nanoseconds() {
		w.fault(c, errLate, opts)
		return
	}
	var intended int64
	if c.gapNs > 0 {
		intended = c.intended
	}
	c.recs.add(Record{T0: c.t0, T1: t1, Intended: intended})
	c.seq++
	if stopping || (opts.Requests > 0 && c.seq >= opts.Requests) {
		w.finish(c)
		return
	}
	if c.gapNs == 0 {
		w.start(c, opts)
		return
	}
	c.intended = c.nextIntended(c.intended)
	if c.intended <= t1 {
		w.start(c, opts) // behind schedule: send at once
		return
	}
	w.push(c)
}

// fault ends c with the error of its round trip in flight.
func (w *worker) fault(c *client, err error, opts *Options) {
	w.stopConn(c, c.replyError(err, opts.Timeout))
}

func (w *worker) stopConn(c *client, err error) {
	c.fail(err)
	w.finish(c)
}

// finish takes c out of the worker's set.
func (w *worker) finish(c *client) {
	c.busy = false
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	w.active--
}

// push and pop keep w.heap a binary min-heap on intended time; c.hpos is
// a connection's index in it, -1 when not waiting.
func (w *worker) push(c *client) {
	c.hpos = len(w.heap)
	w.heap = append(w.heap, c)
	i := c.hpos
	for i > 0 {
		p := (i - 1) / 2
		if w.heap[p].intended <= w.heap[i].intended {
			break
		}
		w.swap(i, p)
		i = p
	}
}

func (w *worker) pop() *client {
	h := w.heap
	c := h[0]
	last := len(h) - 1
	w.swap(0, last)
	w.heap = h[:last]
	c.hpos = -1
	i := 0
	for {
		l, m := 2*i+1, i
		if l < last && w.heap[l].intended < w.heap[m].intended {
			m = l
		}
		if r := l + 1; r < last && w.heap[r].intended < w.heap[m].intended {
			m = r
		}
		if m == i {
			return c
		}
		w.swap(i, m)
		i = m
	}
}

func (w *worker) swap(i, j int) {
	w.heap[i], w.heap[j] = w.heap[j], w.heap[i]
	w.heap[i].hpos, w.heap[j].hpos = i, j
}
