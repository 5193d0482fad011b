package uring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BufRing is a provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19):
// a ring of buffer descriptors in shared memory from which the kernel picks
// a buffer when a receive with IOSQE_BUFFER_SELECT has data, reporting the
// buffer ID in the CQE flags. The application gives a buffer back by writing
// its descriptor at the ring's tail and advancing the tail.
//
// Both the descriptor ring and the buffers are anonymous mmaps outside Go's
// heap, so the kernel's writes never race the garbage collector.
type BufRing struct {
	ring    []byte // entries × 16-byte struct io_uring_buf
	bufs    []byte // entries × size
	size    int
	entries uint16
	mask    uint16
	tail    uint16 // local tail, published by Recycle
	group   uint16
}

type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	pad         uint16
	resv        [3]uint64
}

// NewBufRing registers a ring of entries (a power of two, ≤ 32768) buffers
// of size bytes each as buffer group group, all of them available.
func (r *Ring) NewBufRing(group uint16, entries uint16, size int) (*BufRing, error) {
	if entries == 0 || entries&(entries-1) != 0 || entries > 32768 {
		return nil, fmt.Errorf("register buffer ring: %d entries is not a power of two ≤ 32768", entries)
	}
	b := &BufRing{size: size, entries: entries, mask: entries - 1, group: group}
	var err error
	b.ring, err = unix.Mmap(-1, 0, int(entries)*16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap buffer ring: %w", err)
	}
	b.bufs, err = unix.Mmap(-1, 0, int(entries)*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.free()
		return nil, fmt.Errorf("mmap %d buffers of %d bytes: %w", entries, size, err)
	}
	reg := bufReg{
		ringAddr:    uint64(uintptr(unsafe.Pointer(&b.ring[0]))),
		ringEntries: uint32(entries),
		bgid:        group,
	}
	if err := r.Register(registerPbufRng, unsafe.Pointer(&reg), 1); err != nil {
		b.free()
		return nil, fmt.Errorf("register buffer ring: %w", err)
	}
	for i := uint16(0); i < entries; i++ {
		b.put(i)
	}
	b.publish()
	return b, nil
}

// Group is the buffer group ID to put in SQE.BufIndex.
func (b *BufRing) Group() uint16 { return b.group }

// Buf is buffer id's memory.
func (b *BufRing) Buf(id uint16) []byte {
	off := int(id) * b.size
	return b.bufs[off : off+b.size : off+b.size]
}

// Recycle gives buffer id back to the kernel.
func (b *BufRing) Recycle(id uint16) {
	b.put(id)
	b.publish()
}

func (b *BufRing) put(id uint16) {
	e := unsafe.Pointer(&b.ring[int(b.tail&b.mask)*16])
	*(*uint64)(e) = uint64(uintptr(unsafe.Pointer(&b.bufs[int(id)*b.size])))
	*(*uint32)(unsafe.Add(e, 8)) = uint32(b.size)
	*(*uint16)(unsafe.Add(e, 12)) = id
	b.tail++
}

// publish stores the tail with release semantics. The kernel reads the
// 16-bit tail at byte 14 of the ring (it overlays bufs[0].resv) with
// smp_load_acquire. sync/atomic has no 16-bit store, so this stores the
// aligned 32-bit word at byte 12, which also holds bufs[0].bid: that half is
// written only by this goroutine, so it is read back and stored unchanged.
func (b *BufRing) publish() {
	w := (*uint32)(unsafe.Pointer(&b.ring[12]))
	bid0 := atomic.LoadUint32(w) & 0xffff
	atomic.StoreUint32(w, uint32(b.tail)<<16|bid0)
}

// Free unmaps the buffers; call it only after the ring is closed.
func (b *BufRing) Free() { b.free() }

func (b *BufRing) free() {
	if b.bufs != nil {
		_ = unix.Munmap(b.bufs)
		b.bufs = nil
	}
	if b.ring != nil {
		_ = unix.Munmap(b.ring)
		b.ring = nil
	}
}
