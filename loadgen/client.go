package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// client is one connection. In the threads model one locked OS thread
// drives it with blocking system calls on a raw fd; in the epoll model a
// worker thread drives it among others with non-blocking calls. Either way
// nothing of Go's netpoller sits between it and the kernel, so the kernel
// events of its thread are its round trips'.
type client struct {
	id    int
	cpu   int // CPU to pin to, -1 for none
	fd    int
	tid   int // thread driving the connection
	lport int // local port, to find this connection in kernel events
	x     *exchange
	recs  recBuf
	err   error
	errAt int64 // CLOCK_MONOTONIC ns when err was set, to name the first failure

	// A round trip in flight (non-blocking drivers).
	wr, rd   int   // request bytes written, reply bytes read
	t0       int64 // right before the first send system call
	ref      int64 // what latency counts from: t0, or the intended time in open loop
	intended int64 // open loop: when the schedule meant the request to go; 0 in closed loop
	seq      int64 // round trips started on this connection
	busy     bool  // a round trip is in flight
	wantOut  bool  // registered for EPOLLOUT: the request is not all written
	big      bool  // threads model: request too big to write before reading
	// inflight is, in the threads model, the ref of the round trip in
	// flight, 0 between round trips, or claimedLate once the watchdog
	// found it over the timeout and shut the socket down.
	inflight atomic.Int64
	pfd      [1]unix.PollFd

	// Open-loop schedule.
	gapNs float64 // mean gap between intended sends, ns
	rng   uint64
	hpos  int // index in the worker's heap of waiting connections
}

// bigRequest is the request size above which the threads model stops
// writing the whole request before reading: a request that does not fit
// in the socket buffers (16 KiB at first on Linux, tcp_wmem) blocks the
// writer while the server, its reply unread, blocks too.
const bigRequest = 8 << 10

// tcpSocket opens a non-blocking TCP socket for addr's family.
func tcpSocket(family int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		closeFd(fd)
		return -1, fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	return fd, nil
}

func localPort(fd int) int {
	if la, err := unix.Getsockname(fd); err == nil {
		switch a := la.(type) {
		case *unix.SockaddrInet4:
			return a.Port
		case *unix.SockaddrInet6:
			return a.Port
		}
	}
	return 0
}

func sockaddr(a *net.TCPAddr) (unix.Sockaddr, int, error) {
	if ip4 := a.IP.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: a.Port}
		copy(sa.Addr[:], ip4)
		return sa, unix.AF_INET, nil
	}
	if ip6 := a.IP.To16(); ip6 != nil {
		sa := &unix.SockaddrInet6{Port: a.Port}
		copy(sa.Addr[:], ip6)
		return sa, unix.AF_INET6, nil
	}
	return nil, 0, fmt.Errorf("address %s: not an IP address", a)
}

// pinThread locks the goroutine to its thread and the thread to cpu (-1:
// none), and returns the thread's id. The goroutine never unlocks, so the
// thread exits with it instead of going back to Go's pool with a changed
// affinity.
//
// It also sets the thread's timer slack to 1 ns. The kernel lets a
// normal thread's timed sleeps end up to its slack (50 µs by default)
// late, to batch wake-ups; an open-loop client sleeping until each
// intended send would send that late, and the wait would count in every
// request's latency.
func pinThread(cpu int) (int, error) {
	runtime.LockOSThread()
	tid := unix.Gettid()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		return tid, fmt.Errorf("client thread: set timer slack: %w", err)
	}
	if cpu < 0 {
		return tid, nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return tid, fmt.Errorf("pin client thread to CPU %d: %w", cpu, err)
	}
	return tid, nil
}

// blocking readies a connected non-blocking socket for the threads model:
// blocking calls, unless the request is big, which is then written and
// read together through poll. A blocked write is bounded by SO_SNDTIMEO; a
// blocked read has no socket timeout, which would arm and cancel a kernel
// timer in every read: the clientSet's watchdog bounds the round trip
// instead.
func (c *client) blocking(timeout time.Duration) error {
	c.big = c.x.maxReq > bigRequest
	if c.big {
		return nil
	}
	if err := unix.SetNonblock(c.fd, false); err != nil {
		return fmt.Errorf("connection %d: make socket blocking: %w", c.id, err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("connection %d: set socket timeout: %w", c.id, err)
	}
	return nil
}

// schedule sets up an open-loop schedule of ratePerConn round trips per
// second on this connection: Poisson, so that the connections' schedules
// together are a Poisson process at the total rate.
func (c *client) schedule(ratePerConn float64, seed uint64) {
	if ratePerConn > 0 {
		c.gapNs = 1e9 / ratePerConn
	}
	c.rng = seed | 1
}

// nextIntended advances the open-loop schedule from the previous intended
// time prev by an exponentially distributed gap.
func (c *client) nextIntended(prev int64) int64 {
	c.rng ^= c.rng << 13
	c.rng ^= c.rng >> 7
	c.rng ^= c.rng << 17
	u := (float64(c.rng>>11) + 0.5) / (1 << 53) // in (0, 1)
	return prev + int64(-math.Log(u)*c.gapNs)
}

// fail records the connection's first error.
func (c *client) fail(err error) {
	if c.err == nil {
		c.err, c.errAt = err, nanotime()
	}
}

// runThread is the threads model: round trips until stop is set, one
// ends past stopAt (when set), limit round trips are done (limit > 0), or
// one fails. In open loop it sleeps until each intended time, from start.
// It allocates nothing per round trip, and reads no clock beyond the
// round trip's own.
func (c *client) runThread(stop *atomic.Bool, stopAt *atomic.Int64, limit int64, timeout time.Duration, start int64) {
	to := timeout.Nanoseconds()
	next := start
	if c.gapNs > 0 {
		next = c.nextIntended(start)
	}
	lastYield := start
	for ; !stop.Load() && (limit <= 0 || c.seq < limit); c.seq++ {
		if c.gapNs > 0 {
			// Sleep in slices, so that a halt is seen while waiting.
			for now := nanotime(); now < next; now = nanotime() {
				if stop.Load() {
					return
				}
				sleepUntil(min(next, now+50*int64(time.Millisecond)))
			}
			c.intended = next
			next = c.nextIntended(next)
		}
		c.x.prepare()
		c.wr, c.rd = 0, 0
		t0 := nanotime()
		c.t0, c.ref = t0, t0
		if c.intended != 0 {
			c.ref = c.intended
		}
		var err error
		if c.big {
			err = c.pollRoundTrip(to)
		} else {
			err = c.blockingRoundTrip()
		}
		t1 := nanotime()
		if err == nil && t1-c.ref > to {
			err = errLate
		}
		if err != nil {
			c.fail(c.replyError(err, timeout))
			return
		}
		c.recs.add(Record{T0: t0, T1: t1, Intended: c.intended})
		if at := stopAt.Load(); at > 0 && t1 >= at {
			return // the duration cap: the run loop may not have had a CPU to say so
		}
		if t1-lastYield > yieldEvery {
			runtime.Gosched()
			lastYield = t1
		}
	}
}

// yieldEvery is how often a client thread reschedules its goroutine,
// between two round trips. The Go runtime's sysmon thread takes the P of
// a goroutine that has not been rescheduled for 10 ms, and then polls
// every 20 µs for a while: a client thread that never yields keeps
// bringing sysmon onto the client CPU, inside the round trips it times;
// one that yields more often than every 10 ms leaves it asleep.
// A yield costs a few context switches, outside the timed part of a
// round trip.
const yieldEvery = int64(5 * time.Millisecond)

// blockingRoundTrip writes the request and reads the reply with blocking
// calls. The watchdog bounds it: it shuts the socket down once the round
// trip is over the timeout, and the blocked call returns. The round trip
// ends, before t1, by taking it back from the watchdog: a round trip the
// watchdog claimed first was over the timeout before its reply was
// complete, so the claim never fails one that was in time.
func (c *client) blockingRoundTrip() error {
	c.inflight.Store(c.ref)
	err := c.sendBlocking()
	for done := false; err == nil && !done; {
		n, rerr := unix.Read(c.fd, c.x.space(c.rd))
		switch {
		case rerr == unix.EINTR:
		case rerr != nil:
			err = rerr
		case n == 0:
			err = errEOF
		default:
			c.rd += n
			done, err = c.x.done(c.rd)
		}
	}
	if c.inflight.Swap(0) == claimedLate {
		return errWatchdog
	}
	return err
}

// sendBlocking writes the whole request on the blocking socket: first
// with a send that cannot block (sendNow), then, for what the socket did
// not take, with blocking writes bounded by SO_SNDTIMEO.
func (c *client) sendBlocking() error {
	b := c.x.req
	n, err := sendNow(c.fd, b)
	switch {
	case err == nil:
		b = b[n:]
	case err != unix.EAGAIN && err != unix.EINTR:
		return sendError{err}
	}
	if len(b) == 0 {
		return nil
	}
	if err := writeFull(c.fd, b); err != nil {
		return sendError{err}
	}
	return nil
}

// sendNow is send(2) with MSG_DONTWAIT, which never blocks, made as a
// raw system call: without the Go runtime's system call bookkeeping
// (entersyscall, exitsyscall), which only a call that may block needs.
// MSG_NOSIGNAL keeps a socket the peer or the watchdog shut down from
// raising SIGPIPE. (In the epoll model, sendto and recvfrom made this way
// were not faster than write and read with the bookkeeping, so the epoll
// model keeps write and read.)
func sendNow(fd int, b []byte) (int, error) {
	n, _, errno := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// claimedLate marks a round trip the watchdog found over the timeout.
const claimedLate = -1

// watchdog bounds the blocking round trips of conns by timeout: it wakes
// at the earliest deadline of the round trips in flight (or a timeout
// from now, when none is), and shuts down the socket of each that is over
// the timeout, so that its blocked read or write returns. It returns when
// stop is closed. It sleeps in the Go runtime's timers, so it costs a
// wake-up per timeout at most while replies come in time.
func watchdog(conns []*client, timeout time.Duration, stop <-chan struct{}) {
	to := timeout.Nanoseconds()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		now := nanotime()
		next := now + to
		for _, c := range conns {
			ref := c.inflight.Load()
			if ref <= 0 {
				continue
			}
			if now-ref > to {
				if c.inflight.CompareAndSwap(ref, claimedLate) {
					_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
				}
				continue
			}
			next = min(next, ref+to+1)
		}
		t.Reset(time.Duration(next - now))
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// pollRoundTrip writes the request and reads the reply together on a
// non-blocking socket, waiting in poll when neither can progress, so a
// request larger than the socket buffers cannot deadlock against a server
// that echoes as it reads.
func (c *client) pollRoundTrip(to int64) error {
	c.pfd[0].Fd = int32(c.fd)
	for {
		if err := c.send(); err != nil {
			return err
		}
		done, err := c.recv()
		if err != nil || done {
			return err
		}
		left := c.ref + to - nanotime()
		if left <= 0 {
			return unix.EAGAIN
		}
		c.pfd[0].Events = unix.POLLIN
		if c.wr < len(c.x.req) {
			c.pfd[0].Events |= unix.POLLOUT
		}
		if _, err := unix.Poll(c.pfd[:], int((left+999_999)/1_000_000)); err != nil && err != unix.EINTR {
			return err
		}
	}
}

// send writes as much of the request as the socket takes now.
func (c *client) send() error {
	for c.wr < len(c.x.req) {
		n, err := unix.Write(c.fd, c.x.req[c.wr:])
		switch err {
		case nil:
			c.wr += n
		case unix.EINTR:
		case unix.EAGAIN:
			return nil
		default:
			return sendError{err}
		}
	}
	return nil
}

// recv reads what has arrived of the reply; done when it is complete.
// A wrong reply is a *badReply error (or errWrong), found as soon as
// the bytes show it.
func (c *client) recv() (done bool, err error) {
	for {
		n, err := unix.Read(c.fd, c.x.space(c.rd))
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false, nil
		case err != nil:
			return false, err
		case n == 0:
			return false, errEOF
		default:
			c.rd += n
			if done, err := c.x.done(c.rd); done || err != nil {
				return done, err
			}
		}
	}
}

// isBadReply tells a reply that cannot be right from a failure of the
// connection.
func isBadReply(err error) bool {
	var b *badReply
	return err == errWrong || errors.As(err, &b)
}

var (
	// errEOF marks a connection the peer closed before the reply was complete.
	errEOF = errors.New("connection closed by peer")
	// errLate marks a reply that completed after the round trip's timeout.
	errLate = errors.New("reply complete after the timeout")
	// errNoPrimingReply marks a connection that TCP connected but whose
	// priming request got no complete reply within the set-up budget.
	errNoPrimingReply = errors.New("connected, but no reply to the priming request")
	// errWatchdog marks a round trip the watchdog ended at the timeout.
	errWatchdog = errors.New("no complete reply within the timeout")
)

// sendError marks a failure of the send side.
type sendError struct{ err error }

func (e sendError) Error() string { return e.err.Error() }
func (e sendError) Unwrap() error { return e.err }

// replyError describes the round trip in flight that failed with err.
func (c *client) replyError(err error, timeout time.Duration) *ReplyError {
	e := &ReplyError{Conn: c.id, Request: c.seq, Want: c.x.want, Got: c.x.got[:c.rd], Text: textProto(c.x.proto)}
	if e.Text {
		e.Sent = bytes.Clone(c.x.req) // the buffer is reused for the next request
	}
	var se sendError
	var bad *badReply
	switch {
	case err == errWrong:
		e.Reason = "wrong reply"
	case errors.As(err, &bad):
		e.Reason, e.Err = "wrong reply", bad
	case errors.As(err, &se) && errors.Is(se.err, unix.EAGAIN):
		e.Reason = timeoutReason(timeout)
		e.Err = errors.New("request not accepted by the server in time")
	case errors.As(err, &se):
		e.Reason, e.Err = "send failed", se.err
	case err == errLate:
		e.Reason = timeoutReason(timeout)
		e.Late, e.Timeout = time.Duration(nanotime()-c.ref), timeout
	case err == errWatchdog:
		e.Reason = timeoutReason(timeout)
	case err == errEOF:
		e.Reason = "short reply (connection closed)"
	case errors.Is(err, unix.EAGAIN):
		e.Reason = timeoutReason(timeout)
	case errors.Is(err, unix.ECONNRESET):
		e.Reason = "connection reset"
	default:
		e.Reason, e.Err = "receive failed", err
	}
	return e
}

// timeoutReason is the Reason of a round trip over the timeout; it is the
// same string for every such failure, so failures can be counted by it.
func timeoutReason(timeout time.Duration) string {
	return "timeout (no complete reply within " + timeout.String() + ")"
}

func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
