package uring

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Syscall numbers: io_uring got the same numbers on all architectures
// (the unified syscall table of 5.1).
const (
	sysSetup    = 425
	sysEnter    = 426
	sysRegister = 427
)

// Opcodes (enum io_uring_op in include/uapi/linux/io_uring.h) used or probed
// here, with the release that added them.
const (
	OpNop     = 0  // 5.1
	OpPollAdd = 6  // 5.1
	OpAccept  = 13 // 5.5
	OpClose   = 19 // 5.6
	OpRead    = 22 // 5.6
	OpSend    = 26 // 5.6
	OpRecv    = 27 // 5.6
	OpSocket  = 45 // 5.19, a marker for that release
	OpSendZC  = 47 // 6.0, a marker for that release
)

// SQE flags (IOSQE_*).
const (
	SQEBufferSelect = 1 << 5 // IOSQE_BUFFER_SELECT, 5.7: pick a provided buffer
)

// ioprio bits of accept and recv SQEs.
const (
	AcceptMultishot = 1 << 0 // IORING_ACCEPT_MULTISHOT, 5.19
	RecvMultishot   = 1 << 1 // IORING_RECV_MULTISHOT, 6.0
)

// CQE flags.
const (
	CQEFBuffer      = 1 << 0 // IORING_CQE_F_BUFFER: upper 16 bits are the buffer ID
	CQEFMore        = 1 << 1 // IORING_CQE_F_MORE: the request stays armed
	CQEBufferShift  = 16     // IORING_CQE_BUFFER_SHIFT
	enterGetEvents  = 1 << 0 // IORING_ENTER_GETEVENTS
	featSingleMmap  = 1 << 0 // IORING_FEAT_SINGLE_MMAP, 5.4
	offSQRing       = 0
	offCQRing       = 0x8000000
	offSQEs         = 0x10000000
	registerProbe   = 8  // IORING_REGISTER_PROBE, 5.6
	registerPbufRng = 22 // IORING_REGISTER_PBUF_RING, 5.19
	opSupported     = 1 << 0
)

// Feature bits reported by io_uring_setup (IORING_FEAT_*).
const (
	FeatSingleMmap = featSingleMmap
	FeatNodrop     = 1 << 1 // 5.5: completions are never dropped on CQ overflow
	FeatFastPoll   = 1 << 5 // 5.7: internal poll instead of io-wq for sockets
)

// SQE is struct io_uring_sqe (64 bytes).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32 // rw_flags, msg_flags, accept_flags, poll32_events, ...
	UserData    uint64
	BufIndex    uint16 // buf_index or buf_group
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

// CQE is struct io_uring_cqe (16 bytes, no IORING_SETUP_CQE32).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	resv2                                                           uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	resv2                                                           uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// Ring is one io_uring instance with its mapped queues.
type Ring struct {
	fd int

	sqHead, sqTail *uint32
	sqMask         uint32
	sqEntries      uint32
	sqArray        []uint32
	sqes           []SQE
	sqLocal        uint32 // tail of SQEs handed out but not yet published

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []CQE

	sqMem, cqMem, sqeMem []byte
	single               bool // cqMem is sqMem
}

// New sets up a ring with at least entries submission slots (a power of two
// up to 32768; the kernel rounds up) and the given IORING_SETUP_* flags.
func New(entries uint32, flags uint32) (*Ring, error) {
	var p params
	p.flags = flags
	fd, _, errno := unix.Syscall(sysSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd)}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mmap(p *params) error {
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(CQE{})))
	single := p.features&featSingleMmap != 0
	if single && cqSize > sqSize {
		sqSize = cqSize
	}
	var err error
	r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring SQ ring: %w", err)
	}
	if single {
		// Since 5.4 the SQ and CQ rings share one mapping.
		r.cqMem, r.single = r.sqMem, true
	} else {
		r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("mmap io_uring CQ ring: %w", err)
		}
	}
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(SQE{}))
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring SQEs: %w", err)
	}
	sq, cq := unsafe.Pointer(&r.sqMem[0]), unsafe.Pointer(&r.cqMem[0])
	r.sqHead = (*uint32)(unsafe.Add(sq, p.sqOff.head))
	r.sqTail = (*uint32)(unsafe.Add(sq, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(sq, p.sqOff.ringMask))
	r.sqEntries = *(*uint32)(unsafe.Add(sq, p.sqOff.ringEntries))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(sq, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(cq, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(cq, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(cq, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*CQE)(unsafe.Add(cq, p.cqOff.cqes)), p.cqEntries)
	r.sqLocal = atomic.LoadUint32(r.sqTail)
	// The SQ array indirection is an identity map here: slot i holds SQE i.
	for i := range r.sqArray {
		r.sqArray[i] = uint32(i)
	}
	return nil
}

// Close unmaps the queues and closes the ring; the kernel cancels whatever
// is still in flight.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
	}
	if r.cqMem != nil && !r.single {
		_ = unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		_ = unix.Munmap(r.sqMem)
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
	if r.fd >= 0 {
		err := unix.Close(r.fd)
		r.fd = -1
		return err
	}
	return nil
}

// GetSQE hands out the next free submission entry, zeroed, or nil if all
// entries are waiting for the kernel (call Submit and retry).
func (r *Ring) GetSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqLocal-head >= r.sqEntries {
		return nil
	}
	sqe := &r.sqes[r.sqLocal&r.sqMask]
	*sqe = SQE{}
	r.sqLocal++
	return sqe
}

// Submit publishes the prepared SQEs and tells the kernel about them
// without waiting for completions.
func (r *Ring) Submit() (int, error) { return r.enter(0, 0) }

// SubmitAndWait publishes the prepared SQEs and waits until at least
// waitNr completions are in the CQ ring. An EINTR (a signal, e.g. the Go
// runtime's) is retried.
func (r *Ring) SubmitAndWait(waitNr uint32) (int, error) {
	return r.enter(waitNr, enterGetEvents)
}

func (r *Ring) enter(waitNr uint32, flags uintptr) (int, error) {
	// Release: the SQE contents must be visible before the new tail.
	atomic.StoreUint32(r.sqTail, r.sqLocal)
	for {
		toSubmit := r.sqLocal - atomic.LoadUint32(r.sqHead)
		if toSubmit == 0 && flags == 0 {
			return 0, nil
		}
		n, _, errno := unix.Syscall6(sysEnter, uintptr(r.fd), uintptr(toSubmit), uintptr(waitNr), flags, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return int(n), fmt.Errorf("io_uring_enter: %w", errno)
		}
		return int(n), nil
	}
}

// PeekCQE returns the oldest unreaped completion, or nil if there is none.
// The entry stays valid until CQESeen.
func (r *Ring) PeekCQE() *CQE {
	head := *r.cqHead // only this goroutine writes it
	if head == atomic.LoadUint32(r.cqTail) {
		return nil
	}
	return &r.cqes[head&r.cqMask]
}

// CQESeen gives the oldest completion's slot back to the kernel.
func (r *Ring) CQESeen() {
	atomic.StoreUint32(r.cqHead, *r.cqHead+1)
}

// Register calls io_uring_register(2).
func (r *Ring) Register(opcode uint32, arg unsafe.Pointer, nrArgs uint32) error {
	_, _, errno := unix.Syscall6(sysRegister, uintptr(r.fd), uintptr(opcode), uintptr(arg), uintptr(nrArgs), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Probe is the kernel's answer to IORING_REGISTER_PROBE.
type Probe struct {
	lastOp uint8
	ops    [256]uint16 // flags per opcode
}

type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16
	resv2 uint32
}

type probeBuf struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
	ops    [256]probeOp
}

// ErrProbeUnsupported means the kernel predates IORING_REGISTER_PROBE
// (Linux 5.6).
var ErrProbeUnsupported = errors.New("io_uring opcode probe unsupported (needs Linux 5.6+)")

// Probe asks the kernel which opcodes it supports.
func (r *Ring) Probe() (*Probe, error) {
	var b probeBuf
	err := r.Register(registerProbe, unsafe.Pointer(&b), uint32(len(b.ops)))
	runtime.KeepAlive(&b)
	if errors.Is(err, unix.EINVAL) {
		return nil, ErrProbeUnsupported
	}
	if err != nil {
		return nil, fmt.Errorf("io_uring register probe: %w", err)
	}
	p := &Probe{lastOp: b.lastOp}
	for i := 0; i < int(b.opsLen) && i < len(b.ops); i++ {
		p.ops[b.ops[i].op] = b.ops[i].flags
	}
	return p, nil
}

// Supports reports whether the kernel knows opcode op.
func (p *Probe) Supports(op uint8) bool {
	return op <= p.lastOp && p.ops[op]&opSupported != 0
}

// Prep helpers. The buffers they point the kernel at must stay alive and
// unmoved until the completion arrives: Go's heap does not move objects, and
// the callers keep a reference.

// PrepNop prepares a no-op.
func (s *SQE) PrepNop(userData uint64) {
	s.Opcode, s.UserData = OpNop, userData
}

// PrepAccept prepares accept4(fd, NULL, NULL, flags).
func (s *SQE) PrepAccept(fd int, flags uint32, userData uint64) {
	s.Opcode, s.Fd, s.OpFlags, s.UserData = OpAccept, int32(fd), flags, userData
}

// PrepRecv prepares recv(fd, buf, len(buf), flags).
func (s *SQE) PrepRecv(fd int, buf []byte, flags uint32, userData uint64) {
	s.Opcode, s.Fd, s.OpFlags, s.UserData = OpRecv, int32(fd), flags, userData
	if len(buf) > 0 {
		s.Addr, s.Len = uint64(uintptr(unsafe.Pointer(&buf[0]))), uint32(len(buf))
	}
}

// PrepSend prepares send(fd, buf, len(buf), flags).
func (s *SQE) PrepSend(fd int, buf []byte, flags uint32, userData uint64) {
	s.Opcode, s.Fd, s.OpFlags, s.UserData = OpSend, int32(fd), flags, userData
	if len(buf) > 0 {
		s.Addr, s.Len = uint64(uintptr(unsafe.Pointer(&buf[0]))), uint32(len(buf))
	}
}

// PrepPollAdd prepares a one-shot poll for events (POLLIN, ...) on fd.
func (s *SQE) PrepPollAdd(fd int, events uint32, userData uint64) {
	// poll32_events since 5.9; the low 16 bits are the old poll_events on
	// little-endian machines, so this works on both.
	s.Opcode, s.Fd, s.OpFlags, s.UserData = OpPollAdd, int32(fd), events, userData
}

// Errno turns a negative CQE result into an error (nil for res >= 0).
func Errno(res int32) error {
	if res >= 0 {
		return nil
	}
	return syscall.Errno(-res)
}
