package loadgen

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// client is one connection driven by one locked OS thread with blocking
// system calls on a raw fd: nothing of Go's netpoller sits between it and
// the kernel, so the kernel events of this thread are the round trip's.
type client struct {
	id    int
	cpu   int // CPU to pin to, -1 for none
	fd    int
	tid   int
	lport int // local port, to find this connection in kernel events
	x     *exchange
	recs  recBuf
	err   error
}

// dial connects the calling thread's client to addr with TCP_NODELAY and
// receive/send timeouts, so a silent server turns into an error, not a hang.
func (c *client) dial(addr *net.TCPAddr, timeout time.Duration) error {
	sa, family, err := sockaddr(addr)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	c.fd = fd
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	for _, o := range []struct {
		level, opt int
	}{{unix.SOL_SOCKET, unix.SO_RCVTIMEO}, {unix.SOL_SOCKET, unix.SO_SNDTIMEO}} {
		if err := unix.SetsockoptTimeval(fd, o.level, o.opt, &tv); err != nil {
			return fmt.Errorf("set socket timeout: %w", err)
		}
	}
	// Connect is bounded by SO_SNDTIMEO.
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	if la, err := unix.Getsockname(fd); err == nil {
		switch a := la.(type) {
		case *unix.SockaddrInet4:
			c.lport = a.Port
		case *unix.SockaddrInet6:
			c.lport = a.Port
		}
	}
	return nil
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

// pin locks the goroutine to its thread and the thread to c.cpu. The
// goroutine never unlocks, so the thread exits with it instead of going
// back to Go's pool with a changed affinity.
func (c *client) pin() error {
	runtime.LockOSThread()
	c.tid = unix.Gettid()
	if c.cpu < 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(c.cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin client %d to CPU %d: %w", c.id, c.cpu, err)
	}
	return nil
}

// loop runs round trips until stop is set, limit round trips are done (if
// limit > 0), a reply is wrong or the buffer is full. It allocates nothing per round trip.
func (c *client) loop(stop *atomic.Bool, limit int64) {
	x := c.x
	for seq := int64(0); !stop.Load() && (limit <= 0 || seq < limit); seq++ {
		x.prepare()
		t0 := nanotime()
		if err := writeFull(c.fd, x.req); err != nil {
			c.err = &ReplyError{Conn: c.id, Request: seq, Reason: "send failed", Want: x.want, Err: err}
			return
		}
		got, err := readFull(c.fd, x.got)
		t1 := nanotime()
		if err != nil {
			c.err = &ReplyError{Conn: c.id, Request: seq, Reason: readReason(err, got), Want: x.want, Got: x.got[:got], Err: errOrNil(err)}
			return
		}
		if !x.check() {
			c.err = &ReplyError{Conn: c.id, Request: seq, Reason: "wrong reply", Want: x.want, Got: x.got}
			return
		}
		if !c.recs.add(Record{T0: t0, T1: t1}) {
			c.err = fmt.Errorf("connection %d: record buffer full after %d round trips", c.id, seq)
			return
		}
	}
}

// errEOF marks a connection the peer closed before the reply was complete.
var errEOF = errors.New("connection closed by peer")

func readReason(err error, got int) string {
	switch {
	case err == errEOF:
		return "short reply (connection closed)"
	case errors.Is(err, unix.EAGAIN):
		return "timeout (no complete reply in time)"
	case errors.Is(err, unix.ECONNRESET):
		return "connection reset"
	}
	return "receive failed"
}

func errOrNil(err error) error {
	if err == errEOF || errors.Is(err, unix.EAGAIN) {
		return nil
	}
	return err
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

// readFull reads len(b) bytes; it returns how many arrived and errEOF if the
// peer closed first.
func readFull(fd int, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		n, err := unix.Read(fd, b[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return got, err
		}
		if n == 0 {
			return got, errEOF
		}
		got += n
	}
	return got, nil
}
