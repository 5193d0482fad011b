package servers

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/servers/internal/uring"
)

// user_data of the io_uring servers: operation in the high 32 bits,
// connection index in the low.
const (
	opAccept uint64 = iota + 1
	opRecv
	opSend
	opCancel
)

func ud(op uint64, id int) uint64 { return op<<32 | uint64(uint32(id)) }

// uconn is one connection of an io_uring server.
type uconn struct {
	conn
	fd      int
	in      []byte // receive buffer (plain recv)
	out     []byte // reply being sent
	sent    int    // bytes of out the kernel took
	sending bool
	pending []byte // replies produced while a send was in flight
	armed   bool   // a receive is in flight
	closing bool   // closed or reset: dropped once nothing is in flight
}

func checkOps(ops ...struct {
	op   uint8
	name string
	ver  string
}) error {
	r, err := uring.New(8, 0)
	if err != nil {
		return fmt.Errorf("io_uring unavailable: %w (needs Linux 5.1+ with io_uring enabled)", err)
	}
	defer r.Close()
	p, err := r.Probe()
	if err != nil {
		return err
	}
	for _, o := range ops {
		if !p.Supports(o.op) {
			return fmt.Errorf("kernel lacks %s (needs Linux %s+)", o.name, o.ver)
		}
	}
	return nil
}

type opReq = struct {
	op   uint8
	name string
	ver  string
}

func checkIOUring() error {
	return checkOps(opReq{uring.OpAccept, "IORING_OP_ACCEPT", "5.5"}, opReq{uring.OpRecv, "IORING_OP_RECV", "5.6"},
		opReq{uring.OpSend, "IORING_OP_SEND", "5.6"}, opReq{uring.OpPollAdd, "IORING_OP_POLL_ADD", "5.1"})
}

// uringLoop is what the two io_uring servers share: the ring, the
// listener, cancellation through a polled eventfd, and sending with short
// writes resubmitted.
type uringLoop struct {
	r     *uring.Ring
	lfd   int
	conns []*uconn
	free  []int
	o     Options

	// A client sent 0: the loop stops once exitID's replies to the
	// messages before the 0 are sent.
	exiting bool
	exitID  int
}

// exitDone reports whether a requested exit can happen now.
func (l *uringLoop) exitDone() bool {
	if !l.exiting {
		return false
	}
	c := l.conns[l.exitID]
	return c == nil || !c.sending
}

// closeConn retires connection id. Closing the fd alone would not end a
// receive in flight (the request holds its own reference to the file), so
// shutdown(2) ends it, and the slot is freed only when no request of the
// connection is left: a completion never finds a new connection in the
// slot of the one it belonged to.
func (l *uringLoop) closeConn(id int) {
	c := l.conns[id]
	if c == nil {
		return
	}
	if !c.closing {
		c.closing = true
		unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
	if !c.armed && !c.sending {
		l.drop(id)
	}
}

// sqe returns a free submission entry, submitting what is queued if the
// ring is full.
func (l *uringLoop) sqe() (*uring.SQE, error) {
	for {
		if s := l.r.GetSQE(); s != nil {
			return s, nil
		}
		if _, err := l.r.Submit(); err != nil {
			return nil, err
		}
	}
}

func (l *uringLoop) add(fd int, bufSize int) int {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := &uconn{fd: fd, out: make([]byte, 0, 64<<10+4)}
	if bufSize > 0 {
		c.in = make([]byte, bufSize)
	}
	if n := len(l.free); n > 0 {
		id := l.free[n-1]
		l.free = l.free[:n-1]
		l.conns[id] = c
		return id
	}
	l.conns = append(l.conns, c)
	return len(l.conns) - 1
}

func (l *uringLoop) drop(id int) {
	if c := l.conns[id]; c != nil {
		unix.Close(c.fd)
		l.conns[id] = nil
		l.free = append(l.free, id)
	}
}

// reply queues the answer to the bytes just received; it reports whether
// the 0 message arrived.
func (l *uringLoop) reply(id int, data []byte) (exit bool, err error) {
	c := l.conns[id]
	if c.sending {
		c.pending, exit = c.feed(data, l.o, c.pending)
		return exit, nil
	}
	c.out, exit = c.feed(data, l.o, c.out[:0])
	c.sent = 0
	if len(c.out) == 0 {
		return exit, nil
	}
	// Replies to messages before a 0 are still sent.
	return exit, l.send(id)
}

func (l *uringLoop) send(id int) error {
	c := l.conns[id]
	s, err := l.sqe()
	if err != nil {
		return err
	}
	s.PrepSend(c.fd, c.out[c.sent:], unix.MSG_NOSIGNAL, ud(opSend, id))
	c.sending = true
	return nil
}

// sent handles a send completion; it reports whether the connection is
// idle again (ready for the next receive, for the plain server).
func (l *uringLoop) sent(id int, res int32) (idle bool, err error) {
	c := l.conns[id]
	if c == nil {
		return false, nil
	}
	c.sending = false
	if res < 0 || c.closing {
		l.closeConn(id) // EPIPE, ECONNRESET: the client left
		return false, nil
	}
	c.sent += int(res)
	if c.sent < len(c.out) {
		return false, l.send(id)
	}
	if len(c.pending) > 0 {
		c.out, c.pending = append(c.out[:0], c.pending...), c.pending[:0]
		c.sent = 0
		return false, l.send(id)
	}
	return true, nil
}

func newUringLoop(ctx context.Context, ln *net.TCPListener, o Options) (*uringLoop, func(), error) {
	lfd, err := listenerFd(ln)
	if err != nil {
		return nil, nil, err
	}
	r, err := uring.New(256, 0)
	if err != nil {
		unix.Close(lfd)
		return nil, nil, fmt.Errorf("io_uring setup: %w", err)
	}
	efd, stopCancel, err := cancelFd(ctx)
	if err != nil {
		r.Close()
		unix.Close(lfd)
		return nil, nil, err
	}
	l := &uringLoop{r: r, lfd: lfd, o: o}
	s, _ := l.sqe()
	s.PrepPollAdd(efd, unix.POLLIN, ud(opCancel, 0))
	cleanup := func() {
		for id, c := range l.conns {
			if c != nil {
				unix.Shutdown(c.fd, unix.SHUT_RDWR) // ends receives in flight
				l.drop(id)
			}
		}
		r.Close()
		stopCancel()
		unix.Close(lfd)
	}
	return l, cleanup, nil
}

// serveIOUring: one thread, one ring; every connection has one receive or
// one send in flight at a time.
func serveIOUring(ctx context.Context, ln *net.TCPListener, o Options) error {
	if err := checkIOUring(); err != nil {
		return fmt.Errorf("iouring: %w", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l, cleanup, err := newUringLoop(ctx, ln, o)
	if err != nil {
		return err
	}
	defer cleanup()
	recv := func(id int) error {
		s, err := l.sqe()
		if err != nil {
			return err
		}
		c := l.conns[id]
		s.PrepRecv(c.fd, c.in, 0, ud(opRecv, id))
		c.armed = true
		return nil
	}
	accept := func() error {
		s, err := l.sqe()
		if err != nil {
			return err
		}
		s.PrepAccept(l.lfd, unix.SOCK_CLOEXEC, ud(opAccept, 0))
		return nil
	}
	if err := accept(); err != nil {
		return err
	}
	for {
		if _, err := l.r.SubmitAndWait(1); err != nil {
			return err
		}
		for cqe := l.r.PeekCQE(); cqe != nil; cqe = l.r.PeekCQE() {
			op, id, res := cqe.UserData>>32, int(uint32(cqe.UserData)), cqe.Res
			l.r.CQESeen()
			switch op {
			case opCancel:
				return nil
			case opAccept:
				if res >= 0 && l.exiting {
					unix.Close(int(res))
				} else if res >= 0 {
					if err := recv(l.add(int(res), 64<<10)); err != nil {
						return err
					}
				}
				if err := accept(); err != nil {
					return err
				}
			case opRecv:
				c := l.conns[id]
				if c == nil {
					break
				}
				c.armed = false
				if res <= 0 || c.closing {
					l.closeConn(id) // closed or reset: normal
					break
				}
				if l.exiting {
					break
				}
				exit, err := l.reply(id, c.in[:res])
				if err != nil {
					return err
				}
				if exit {
					l.exiting, l.exitID = true, id
				} else if !c.sending {
					if err := recv(id); err != nil {
						return err
					}
				}
			case opSend:
				idle, err := l.sent(id, res)
				if err != nil {
					return err
				}
				if idle && !l.exiting {
					if err := recv(id); err != nil {
						return err
					}
				}
			}
			if l.exitDone() {
				return ErrExitRequested
			}
		}
	}
}
