package servers

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/servers/internal/uring"
)

// Provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19): the kernel
// picks a buffer for each multishot receive and names it in the completion;
// the server copies the reply out and hands the buffer straight back.
const (
	bufGroup = 1
	bufCount = 256 // a power of two
	bufSize  = 16 << 10
)

// checkMultishot detects what iouring-multishot needs. Multishot accept
// and multishot recv are flags of existing opcodes, which the opcode probe
// cannot see, so each is detected by an opcode from the same release:
// IORING_OP_SOCKET came with multishot accept (5.19), IORING_OP_SEND_ZC with
// multishot recv (6.0). The provided-buffer ring is tried for real.
func checkMultishot() error {
	if err := checkOps(opReq{uring.OpAccept, "IORING_OP_ACCEPT", "5.5"}, opReq{uring.OpRecv, "IORING_OP_RECV", "5.6"},
		opReq{uring.OpSocket, "multishot accept", "5.19"},
		opReq{uring.OpSendZC, "multishot recv", "6.0"}); err != nil {
		return err
	}
	r, err := uring.New(8, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	br, err := r.NewBufRing(bufGroup, 2, 64)
	if err != nil {
		return fmt.Errorf("kernel lacks provided-buffer rings (needs Linux 5.19+): %w", err)
	}
	r.Close()
	br.Free()
	return nil
}

// serveMultishot: one thread, one ring, one multishot accept for all
// connections and one multishot receive per connection drawing from a
// provided-buffer ring: after setup, a request costs the server one
// completion and one send, no resubmitted receive.
func serveMultishot(ctx context.Context, ln *net.TCPListener, o Options) error {
	if err := checkMultishot(); err != nil {
		return fmt.Errorf("iouring-multishot: %w", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l, cleanup, err := newUringLoop(ctx, ln, o)
	if err != nil {
		return err
	}
	br, err := l.r.NewBufRing(bufGroup, bufCount, bufSize)
	if err != nil {
		cleanup()
		return fmt.Errorf("iouring-multishot: %w", err)
	}
	// The buffers go only after the ring and every socket are closed, so
	// no receive can still land in them.
	defer func() { cleanup(); br.Free() }()
	accept := func() error {
		s, err := l.sqe()
		if err != nil {
			return err
		}
		s.PrepAccept(l.lfd, unix.SOCK_CLOEXEC, ud(opAccept, 0))
		s.Ioprio = uring.AcceptMultishot
		return nil
	}
	recv := func(id int) error {
		s, err := l.sqe()
		if err != nil {
			return err
		}
		c := l.conns[id]
		s.PrepRecv(c.fd, nil, 0, ud(opRecv, id))
		s.Flags |= uring.SQEBufferSelect
		s.BufIndex = br.Group()
		s.Ioprio = uring.RecvMultishot
		c.armed = true
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
			op, id, res, flags := cqe.UserData>>32, int(uint32(cqe.UserData)), cqe.Res, cqe.Flags
			l.r.CQESeen()
			more := flags&uring.CQEFMore != 0
			switch op {
			case opCancel:
				return nil
			case opAccept:
				if res == -int32(unix.EINVAL) && !more {
					// Older kernels refuse the multishot flag.
					return fmt.Errorf("iouring-multishot: multishot accept refused (needs Linux 5.19+): %w", uring.Errno(res))
				}
				if res >= 0 && l.exiting {
					unix.Close(int(res))
				} else if res >= 0 {
					if err := recv(l.add(int(res), 0)); err != nil {
						return err
					}
				}
				if !more {
					if err := accept(); err != nil {
						return err
					}
				}
			case opRecv:
				c := l.conns[id]
				if res > 0 && flags&uring.CQEFBuffer != 0 {
					bid := uint16(flags >> uring.CQEBufferShift)
					if c != nil && !c.closing && !l.exiting {
						// reply copies what it needs, so the buffer goes
						// back at once.
						exit, err := l.reply(id, br.Buf(bid)[:res])
						if err != nil {
							br.Recycle(bid)
							return err
						}
						if exit {
							l.exiting, l.exitID = true, id
						}
					}
					br.Recycle(bid)
				}
				if c == nil || more {
					break
				}
				c.armed = false
				switch {
				case res == -int32(unix.EINVAL):
					return fmt.Errorf("iouring-multishot: multishot recv refused (needs Linux 6.0+): %w", uring.Errno(res))
				case c.closing || res == 0 || (res < 0 && res != -int32(unix.ENOBUFS)):
					l.closeConn(id) // closed or reset: normal
				default:
					// Out of buffers, or the kernel ended the multishot
					// (e.g. a full CQ ring): arm it again.
					if err := recv(id); err != nil {
						return err
					}
				}
			case opSend:
				if _, err := l.sent(id, res); err != nil {
					return err
				}
			}
			if l.exitDone() {
				return ErrExitRequested
			}
		}
	}
}
