package servers

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/servers/internal/uring"
)

// Provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19): the
// kernel picks a buffer for each multishot receive and says which in the
// completion; the server hands it back once done with it.
const (
	registerPbufRing   = 22
	unregisterPbufRing = 23
	bufGroup           = 1
	bufCount           = 256 // a power of two
	bufSize            = 16 << 10
)

type bufRing struct {
	mem  []byte // bufCount × struct io_uring_buf (16 bytes), page aligned
	data []byte // bufCount × bufSize
	tail uint16
}

var fence atomic.Uint32

func newBufRing(r *uring.Ring) (*bufRing, error) {
	mem, err := unix.Mmap(-1, 0, bufCount*16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("map buffer ring: %w", err)
	}
	br := &bufRing{mem: mem, data: make([]byte, bufCount*bufSize)}
	// struct io_uring_buf_reg: ring_addr, ring_entries, bgid, flags, resv[3].
	var reg [40]byte
	*(*uint64)(unsafe.Pointer(&reg[0])) = uint64(uintptr(unsafe.Pointer(&mem[0])))
	*(*uint32)(unsafe.Pointer(&reg[8])) = bufCount
	*(*uint16)(unsafe.Pointer(&reg[12])) = bufGroup
	err = r.Register(registerPbufRing, unsafe.Pointer(&reg[0]), 1)
	runtime.KeepAlive(&reg)
	if err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("register provided-buffer ring: %w (needs Linux 5.19+)", err)
	}
	for i := 0; i < bufCount; i++ {
		br.put(uint16(i))
	}
	br.publish()
	return br, nil
}

// put queues buffer bid for the kernel (visible after publish).
func (b *bufRing) put(bid uint16) {
	e := unsafe.Pointer(&b.mem[int(b.tail&(bufCount-1))*16])
	*(*uint64)(e) = uint64(uintptr(unsafe.Pointer(&b.data[int(bid)*bufSize])))
	*(*uint32)(unsafe.Add(e, 8)) = bufSize
	*(*uint16)(unsafe.Add(e, 12)) = bid
	b.tail++
}

// publish stores the new tail (the u16 at offset 14 of the ring) after
// the entries: a locked instruction orders the stores before it on x86.
func (b *bufRing) publish() {
	fence.Add(1)
	*(*uint16)(unsafe.Pointer(&b.mem[14])) = b.tail
}

func (b *bufRing) buf(bid uint16, n int) []byte { return b.data[int(bid)*bufSize : int(bid)*bufSize+n] }

func (b *bufRing) close(r *uring.Ring) {
	var reg [40]byte
	*(*uint16)(unsafe.Pointer(&reg[12])) = bufGroup
	r.Register(unregisterPbufRing, unsafe.Pointer(&reg[0]), 1)
	unix.Munmap(b.mem)
}

func checkMultishot() error {
	if err := checkOps(opReq{uring.OpAccept, "IORING_OP_ACCEPT", "5.5"}, opReq{uring.OpRecv, "IORING_OP_RECV", "5.6"},
		opReq{uring.OpSocket, "multishot accept (marked by IORING_OP_SOCKET)", "5.19"},
		opReq{uring.OpSendZC, "multishot recv (marked by IORING_OP_SEND_ZC)", "6.0"}); err != nil {
		return err
	}
	r, err := uring.New(8, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	br, err := newBufRing(r)
	if err != nil {
		return err
	}
	br.close(r)
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
	defer cleanup()
	br, err := newBufRing(l.r)
	if err != nil {
		return err
	}
	defer br.close(l.r)
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
		s.PrepRecv(l.conns[id].fd, nil, 0, ud(opRecv, id))
		s.Flags |= uring.SQEBufferSelect
		s.BufIndex = bufGroup
		s.Ioprio = uring.RecvMultishot
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
				if res >= 0 {
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
				if l.conns[id] == nil {
					continue
				}
				if res > 0 && flags&uring.CQEFBuffer != 0 {
					bid := uint16(flags >> uring.CQEBufferShift)
					exit, err := l.reply(id, br.buf(bid, int(res)))
					br.put(bid)
					br.publish()
					if exit {
						return ErrExitRequested
					}
					if err != nil {
						return err
					}
				}
				switch {
				case res == 0 || (res < 0 && res != -int32(unix.ENOBUFS)):
					l.drop(id) // closed or reset: normal
				case !more:
					// Out of buffers, or the kernel ended the multishot:
					// arm it again.
					if err := recv(id); err != nil {
						return err
					}
				}
			case opSend:
				if _, err := l.sent(id, res); err != nil {
					return err
				}
			}
		}
	}
}
