package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ClientModel names how client connections are driven.
type ClientModel string

const (
	// ClientAuto picks ClientThreads below AutoEpollFrom connections and
	// ClientEpoll from there on. It is the zero value.
	ClientAuto ClientModel = ""
	// ClientThreads drives each connection from its own locked OS thread
	// with blocking system calls: the client side of a kernel breakdown is
	// then one thread's wake-ups, and the client adds least latency while
	// there are CPUs to spare for its threads.
	ClientThreads ClientModel = "threads"
	// ClientEpoll drives the connections from one locked thread per client
	// CPU, each waiting in epoll for its share of non-blocking sockets:
	// thousands of connections cost a few threads instead of thousands.
	ClientEpoll ClientModel = "epoll"
)

// AutoEpollFrom is the connection count from which ClientAuto uses the
// epoll model. With one connection a thread of its own is quickest; from
// a few on, the threads share the client CPU and pay a context switch per
// reply, which one epoll thread per CPU avoids (README, "Load flags",
// has the runs that set the crossover).
const AutoEpollFrom = 4

// ParseClientModel checks a client model name given on the command line;
// "auto" and "" are ClientAuto.
func ParseClientModel(s string) (ClientModel, error) {
	switch m := ClientModel(s); m {
	case ClientThreads, ClientEpoll, ClientAuto:
		return m, nil
	case "auto":
		return ClientAuto, nil
	}
	return "", fmt.Errorf("unknown client model %q: want threads, epoll or auto", s)
}

// Resolve returns the model used for n connections.
func (m ClientModel) Resolve(n int) ClientModel {
	if m != ClientAuto {
		return m
	}
	if n >= AutoEpollFrom {
		return ClientEpoll
	}
	return ClientThreads
}

const (
	// DefaultConnectTimeout bounds each connection's set-up when
	// Options.ConnectTimeout is zero.
	DefaultConnectTimeout = 10 * time.Second
	// maxConnecting caps the connections being set up at once when
	// Options.ConnectRate is zero, below a listen backlog of 128 so that an
	// unhurried server does not drop SYNs into a 1 s retransmission.
	maxConnecting = 100
)

// SetupStats describe how the connections were set up: the SXE figures,
// connection rate and the time to connect them all. A connection counts
// as set up once its handshake completed and one priming round trip came
// back right, which proves the server is serving it (a forking server
// first forks or re-executes itself).
type SetupStats struct {
	Connections int           `json:"connections"`        // connections set up
	Attempts    int           `json:"attempts"`           // connections tried
	Duration    time.Duration `json:"duration_ns"`        // from the first connect to the last connection set up
	PerSecond   float64       `json:"per_second"`         // Connections / Duration
	Slowest     time.Duration `json:"slowest_ns"`         // the longest single set-up
	Failures    []Failure     `json:"failures,omitempty"` // failed attempts by reason, most frequent first
	Model       ClientModel   `json:"model"`              // the client model that drove the run
	Threads     int           `json:"threads"`            // client threads driving the connections
}

// Failure counts the failures that share a reason: an errno
// ("ECONNREFUSED (connection refused)") or a protocol fault.
type Failure struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// SetupError is a run that failed before its first request: some
// connections could not be set up within the budget.
type SetupError struct {
	Addr  string
	Stats SetupStats
	First error // the first failure, naming its connection
}

func (e *SetupError) Error() string {
	var b strings.Builder
	failed := e.Stats.Attempts - e.Stats.Connections
	if failed == 0 || len(e.Stats.Failures) == 0 || errors.Is(e.First, context.Canceled) {
		// Interrupted: the connections in flight did not fail, they
		// were stopped.
		fmt.Fprintf(&b, "connect to %s: %v (%d connection(s) set up before it)", e.Addr, e.First, e.Stats.Connections)
		return b.String()
	}
	fmt.Fprintf(&b, "connect to %s: %d of %d connections failed: ", e.Addr, failed, e.Stats.Attempts)
	writeFailures(&b, e.Stats.Failures)
	fmt.Fprintf(&b, "; first: %v", e.First)
	return b.String()
}

func (e *SetupError) Unwrap() error { return e.First }

// ClientErrors is several connections failing in one run, summarised by
// reason. Each connection's own error is kept for detail.
type ClientErrors struct {
	Failures []Failure // by reason, most frequent first
	Errs     []error   // every failed connection's error, first failure first
}

func (e *ClientErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d connections failed: ", len(e.Errs))
	writeFailures(&b, e.Failures)
	fmt.Fprintf(&b, "; first: %v", e.Errs[0])
	return b.String()
}

func (e *ClientErrors) Unwrap() []error { return e.Errs }

func writeFailures(b *strings.Builder, fs []Failure) {
	for i, f := range fs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(f.Count))
		b.WriteByte(' ')
		b.WriteString(f.Reason)
	}
}

// failureCounts sorts counts by reason into most frequent first, then by
// reason, so that the output does not depend on map order.
func failureCounts(m map[string]int) []Failure {
	out := make([]Failure, 0, len(m))
	for r, n := range m {
		out = append(out, Failure{Reason: r, Count: n})
	}
	slices.SortFunc(out, func(a, b Failure) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return out
}

// clientSet is every connection of a run and the threads that drive them,
// from connect to close. Run sees it through a few calls: begin releases
// the first requests, halt asks every client to stop after its round trip
// in flight, done says when they have, close releases the sockets.
type clientSet struct {
	conns   []*client // index = connection id
	workers []*worker // epoll model
	model   ClientModel
	setup   SetupStats

	stop atomic.Bool
	// stopAt is a check past the duration cap, in CLOCK_MONOTONIC ns (0:
	// none): a client thread stops by itself after a round trip that ended
	// past it, so the cap holds when the run loop is kept from its CPU.
	stopAt  atomic.Int64
	startNs atomic.Int64 // CLOCK_MONOTONIC ns of begin
	start   chan struct{}
	fin     chan struct{} // closed when every client loop returned
	watched chan struct{} // threads model: closed when the watchdog returned
	wg      sync.WaitGroup
	begun   sync.Once
	closed  sync.Once
	procs   int // GOMAXPROCS to restore at close, 0: unchanged
	threads int // debug.SetMaxThreads to restore at close, 0: unchanged
}

// startClients connects opts.Clients connections to addr, paced and each
// within opts.ConnectTimeout, primes each with one round trip, and starts
// and pins the client threads. It returns when every connection is up and
// before any measured request is sent; on error everything it opened is
// closed again.
func startClients(ctx context.Context, opts *Options, addr *net.TCPAddr) (*clientSet, error) {
	s := &clientSet{
		conns: make([]*client, opts.Clients),
		model: opts.ClientModel.Resolve(opts.Clients),
		start: make(chan struct{}),
		fin:   make(chan struct{}),
	}
	if err := raiseNoFile(opts.Clients); err != nil {
		return nil, err
	}
	for i := range s.conns {
		c := &client{id: i, cpu: -1, fd: -1, hpos: -1, x: newExchange(opts, uint64(i+1)*0x9E3779B97F4A7C15)}
		if opts.Rate > 0 {
			c.schedule(opts.Rate/float64(opts.Clients), uint64(i+1)*0xBF58476D1CE4E5B9)
		}
		s.conns[i] = c
	}
	if err := s.connect(ctx, opts, addr); err != nil {
		s.closeFds()
		return nil, err
	}
	var err error
	if s.model == ClientEpoll {
		err = s.startEpoll(opts)
	} else {
		err = s.startThreads(opts)
	}
	if err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

// startThreads starts one locked thread per connection.
func (s *clientSet) startThreads(opts *Options) error {
	// Each client thread gives up its P while blocked in read; when the
	// reply arrives it must get a P back before it can take its timestamp.
	// With fewer Ps than busy threads it parks on a futex for that, a
	// stall inside the timed round trip, so keep a P free for every
	// client on top of the machine's CPUs.
	s.growRuntime(opts.Clients)
	s.setup.Threads = opts.Clients
	for i, c := range s.conns {
		if len(opts.ClientCPUs) > 0 {
			c.cpu = opts.ClientCPUs[i%len(opts.ClientCPUs)]
		}
	}
	err := s.launch(len(s.conns), func(i int) error {
		c := s.conns[i]
		tid, err := pinThread(c.cpu)
		c.tid = tid
		if err == nil {
			err = c.blocking(opts.Timeout)
		}
		return err
	}, func(i int) {
		s.conns[i].runThread(&s.stop, &s.stopAt, opts.Requests, opts.Timeout, s.startNs.Load())
	})
	if err != nil {
		return err
	}
	s.watched = make(chan struct{})
	go func() {
		defer close(s.watched)
		watchdog(s.conns, opts.Timeout, s.fin)
	}()
	return nil
}

// launch starts n client threads: each runs prepare(i) and, once begin
// releases the barrier and unless the set was halted first, run(i). It
// returns when every prepare has, with the first error; the set's done
// channel closes when every thread has returned.
func (s *clientSet) launch(n int, prepare func(i int) error, run func(i int)) error {
	ready := make(chan error, n)
	for i := range n {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := prepare(i)
			ready <- err
			if err != nil {
				return
			}
			<-s.start
			if s.stop.Load() {
				return
			}
			run(i)
		}()
	}
	go func() { s.wg.Wait(); close(s.fin) }()
	var first error
	for range n {
		if err := <-ready; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// growRuntime keeps a P for every one of n locked threads on top of the
// machine's CPUs, and lets Go start that many threads.
func (s *clientSet) growRuntime(n int) {
	if want := n + runtime.NumCPU(); runtime.GOMAXPROCS(0) < want {
		s.procs = runtime.GOMAXPROCS(want)
	}
	if n > 5000 {
		s.threads = debug.SetMaxThreads(n + 5000)
	}
}

// connect sets up every connection from the calling goroutine with
// non-blocking sockets in one epoll set: at most maxConnecting at once, or
// paced at opts.ConnectRate, each within the set-up budget, which covers
// the handshake and one priming round trip. After the first failure it
// starts no new connection and lets those in progress finish, so the
// failures are counted without waiting for every connection's budget.
func (s *clientSet) connect(ctx context.Context, opts *Options, addr *net.TCPAddr) error {
	sa, family, err := sockaddr(addr)
	if err != nil {
		return err
	}
	budget := opts.ConnectTimeout
	if budget <= 0 {
		budget = DefaultConnectTimeout
	}
	var gap int64 // ns between connection starts
	inFlightCap := maxConnecting
	if opts.ConnectRate > 0 {
		gap = int64(1e9 / opts.ConnectRate)
		inFlightCap = len(s.conns)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("create epoll instance: %w", err)
	}
	defer closeFd(epfd)

	type pending struct {
		c        *client
		deadline int64
		began    int64
		shook    bool // handshake done, priming round trip in flight
	}
	var (
		inFlight  = map[int]*pending{} // by connection id
		events    = make([]unix.EpollEvent, 128)
		failures  = map[string]int{}
		first     error
		next      int   // next connection to start
		nextAt    int64 // when it may start
		t0        = nanotime()
		lastReady = t0
		slowest   int64
	)
	nextAt = t0
	fail := func(p *pending, err error) {
		delete(inFlight, p.c.id)
		_ = unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, p.c.fd, nil)
		closeFd(p.c.fd)
		p.c.fd = -1
		key := errnoKey(err)
		if errors.Is(err, errNoPrimingReply) {
			key = errNoPrimingReply.Error() + " within " + budget.String()
		} else if errors.Is(err, unix.ETIMEDOUT) || errors.Is(err, unix.EAGAIN) {
			key = "timeout (not set up within " + budget.String() + ")"
		} else if err == errEOF {
			key = "connection closed by the server"
		}
		failures[key]++
		if first == nil {
			first = fmt.Errorf("connection %d: %w", p.c.id, err)
		}
	}
	// prime sends the priming request, or reads its reply; done when the
	// reply is complete and right.
	prime := func(p *pending, ev uint32) (bool, error) {
		c := p.c
		if ev&unix.EPOLLOUT != 0 || c.wr == 0 {
			if err := c.send(); err != nil {
				return false, err
			}
		}
		done, err := c.recv()
		if isBadReply(err) {
			return false, fmt.Errorf("priming request: %w", c.replyError(err, budget))
		}
		if err != nil || !done {
			if err == nil && c.wr < len(c.x.req) != c.wantOut {
				c.wantOut = !c.wantOut
				err = epollMod(epfd, c, c.wantOut)
			}
			return false, err
		}
		return true, nil
	}
	for (first == nil && next < len(s.conns)) || len(inFlight) > 0 {
		if ctx.Err() != nil && first == nil {
			first = fmt.Errorf("set-up interrupted: %w", ctx.Err())
			for _, p := range inFlight {
				fail(p, ctx.Err())
			}
			break
		}
		now := nanotime()
		for first == nil && next < len(s.conns) && len(inFlight) < inFlightCap && now >= nextAt {
			c := s.conns[next]
			next++
			nextAt += gap
			p := &pending{c: c, began: now, deadline: now + budget.Nanoseconds()}
			fd, err := tcpSocket(family)
			if err != nil {
				failures[errnoKey(err)]++
				first = fmt.Errorf("connection %d: %w", c.id, err)
				break
			}
			c.fd = fd
			inFlight[c.id] = p
			err = unix.Connect(fd, sa)
			if err != nil && err != unix.EINPROGRESS {
				fail(p, fmt.Errorf("connect %s: %w", addr, err))
				continue
			}
			c.wantOut = true
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT, Fd: int32(c.id)}
			if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
				fail(p, fmt.Errorf("watch connection: %w", err))
			}
		}
		// Wait for events, the next start, or the nearest deadline.
		wait := int64(50 * time.Millisecond)
		if first == nil && next < len(s.conns) && len(inFlight) < inFlightCap {
			wait = min(wait, max(nextAt-now, 0))
		}
		for _, p := range inFlight {
			wait = min(wait, max(p.deadline-now, 0))
		}
		n, err := epollWait(epfd, events, wait)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("wait for connections: %w", err)
		}
		for _, ev := range events[:max(n, 0)] {
			p := inFlight[int(ev.Fd)]
			if p == nil {
				continue
			}
			c := p.c
			if !p.shook {
				errno, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
				if err == nil && errno != 0 {
					err = unix.Errno(errno)
				}
				if err != nil {
					fail(p, fmt.Errorf("connect %s: %w", addr, err))
					continue
				}
				if ev.Events&unix.EPOLLOUT == 0 {
					continue
				}
				p.shook = true
				c.lport = localPort(c.fd)
				c.x.prepare()
				c.wr, c.rd = 0, 0
			}
			done, err := prime(p, ev.Events)
			if err != nil {
				fail(p, fmt.Errorf("priming round trip on %s: %w", addr, err))
				continue
			}
			if done {
				_ = unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
				delete(inFlight, c.id)
				c.wr, c.rd, c.wantOut = 0, 0, false
				lastReady = nanotime()
				slowest = max(slowest, lastReady-p.began)
				s.setup.Connections++
			}
		}
		now = nanotime()
		for _, p := range inFlight {
			switch {
			case now < p.deadline:
			case p.shook:
				// TCP connected; the server never answered.
				got := ""
				if p.c.rd > 0 {
					got = fmt.Sprintf(" (%d bytes of it arrived: %s)", p.c.rd, quotePrefix(p.c.x.got[:p.c.rd]))
				}
				fail(p, fmt.Errorf("%w within %v%s: is it the server for --proto %s, and does it answer each request?", errNoPrimingReply, budget, got, p.c.x.proto))
			default:
				fail(p, unix.ETIMEDOUT)
			}
		}
	}
	st := &s.setup
	st.Model = s.model
	st.Attempts = st.Connections + sumCounts(failures)
	st.Duration = time.Duration(lastReady - t0)
	st.Slowest = time.Duration(slowest)
	if st.Duration > 0 {
		st.PerSecond = float64(st.Connections) / st.Duration.Seconds()
	}
	if first != nil {
		st.Failures = failureCounts(failures)
		return &SetupError{Addr: addr.String(), Stats: *st, First: first}
	}
	return nil
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// epollMod sets c's epoll interest: input always, output while a request
// is not all written.
func epollMod(epfd int, c *client, out bool) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c.id)}
	if out {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		return fmt.Errorf("change epoll interest: %w", err)
	}
	return nil
}

// info identifies every connection for Options.ClientsReady.
func (s *clientSet) info() []ConnInfo {
	info := make([]ConnInfo, len(s.conns))
	for i, c := range s.conns {
		info[i] = ConnInfo{ID: i, TID: c.tid, LocalPort: c.lport}
	}
	return info
}

// stats describe the connection set-up and the model that drove the run.
func (s *clientSet) stats() SetupStats { return s.setup }

// begin releases the start barrier: every client sends its first request
// (closed loop) or starts its schedule (open loop) now.
func (s *clientSet) begin() {
	s.begun.Do(func() {
		s.startNs.Store(nanotime())
		close(s.start)
	})
}

// halt asks every client to stop after its round trip in flight; a silent
// server is bounded by the round-trip timeout.
func (s *clientSet) halt() { s.stop.Store(true) }

// done is closed when every client loop has returned.
func (s *clientSet) done() <-chan struct{} { return s.fin }

// abort stops clients that have not started, waits for them and closes
// everything: the way out when set-up or ClientsReady fails.
func (s *clientSet) abort() {
	s.halt()
	s.begin()
	if s.workers != nil || s.model != ClientEpoll {
		<-s.fin
	}
	s.close()
}

// close closes every socket. Call it after done.
func (s *clientSet) close() {
	s.closed.Do(func() {
		if s.watched != nil {
			<-s.watched // it may be shutting a socket down: not a reused descriptor
		}
		s.closeFds()
		for _, w := range s.workers {
			if w.epfd >= 0 {
				closeFd(w.epfd)
			}
		}
		if s.procs > 0 {
			runtime.GOMAXPROCS(s.procs)
		}
		if s.threads > 0 {
			debug.SetMaxThreads(s.threads)
		}
	})
}

func (s *clientSet) closeFds() {
	for _, c := range s.conns {
		if c.fd >= 0 {
			closeFd(c.fd)
			c.fd = -1
		}
	}
}

// err summarises the clients' errors: nil if none failed, the error itself
// if one did, else a ClientErrors counting them by reason.
func (s *clientSet) err() error {
	var failed []*client
	for _, c := range s.conns {
		if c.err != nil {
			failed = append(failed, c)
		}
	}
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return failed[0].err
	}
	slices.SortStableFunc(failed, func(a, b *client) int { return cmp.Compare(a.errAt, b.errAt) })
	counts := map[string]int{}
	e := &ClientErrors{Errs: make([]error, len(failed))}
	for i, c := range failed {
		e.Errs[i] = c.err
		var re *ReplyError
		if errors.As(c.err, &re) {
			counts[re.Reason]++
		} else {
			counts[c.err.Error()]++
		}
	}
	e.Failures = failureCounts(counts)
	return e
}
