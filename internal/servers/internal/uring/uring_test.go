package uring

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// newRing sets up a ring or skips the test when this kernel (or a sysctl,
// or seccomp) refuses io_uring: that is a missing feature, not a failure.
func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries, 0)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("io_uring unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func waitCQE(t *testing.T, r *Ring) CQE {
	t.Helper()
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatal(err)
	}
	c := r.PeekCQE()
	if c == nil {
		t.Fatal("SubmitAndWait(1) returned without a completion")
	}
	v := *c
	r.CQESeen()
	return v
}

func TestNopRoundTrip(t *testing.T) {
	r := newRing(t, 4)
	// More round trips than entries: the head/tail arithmetic must wrap.
	for i := uint64(1); i <= 20; i++ {
		s := r.GetSQE()
		if s == nil {
			t.Fatalf("round %d: no free SQE", i)
		}
		s.PrepNop(i)
		c := waitCQE(t, r)
		if c.UserData != i || c.Res != 0 {
			t.Fatalf("round %d: got user_data %d res %d", i, c.UserData, c.Res)
		}
		if r.PeekCQE() != nil {
			t.Fatalf("round %d: extra completion", i)
		}
	}
}

func TestSQFull(t *testing.T) {
	r := newRing(t, 4)
	n := 0
	for r.GetSQE() != nil {
		n++
		if n > 64 {
			t.Fatal("GetSQE never reports a full queue")
		}
	}
	if n != 4 {
		t.Fatalf("got %d SQEs from a 4-entry ring", n)
	}
	if got, err := r.Submit(); err != nil || got != 4 {
		t.Fatalf("Submit = %d, %v; want 4", got, err)
	}
	if r.GetSQE() == nil {
		t.Fatal("no free SQE after the kernel consumed them")
	}
}

func TestSendRecv(t *testing.T) {
	r := newRing(t, 8)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	// The receive is submitted first and must wait for the data.
	buf := make([]byte, 16)
	r.GetSQE().PrepRecv(fds[1], buf, 0, 1)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	if r.PeekCQE() != nil {
		t.Fatal("receive completed before anything was sent")
	}
	msg := []byte("volley")
	r.GetSQE().PrepSend(fds[0], msg, 0, 2)
	got := map[uint64]int32{}
	for len(got) < 2 {
		c := waitCQE(t, r)
		got[c.UserData] = c.Res
	}
	if got[2] != int32(len(msg)) || got[1] != int32(len(msg)) {
		t.Fatalf("results %v, want both %d", got, len(msg))
	}
	if string(buf[:len(msg)]) != "volley" {
		t.Fatalf("received %q", buf[:len(msg)])
	}
}

func TestProbe(t *testing.T) {
	r := newRing(t, 4)
	p, err := r.Probe()
	if errors.Is(err, ErrProbeUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !p.Supports(OpNop) {
		t.Fatal("probe says NOP is unsupported")
	}
	if p.Supports(255) {
		t.Fatal("probe says opcode 255 is supported")
	}
}

func TestBufRingMultishotRecv(t *testing.T) {
	r := newRing(t, 8)
	b, err := r.NewBufRing(7, 4, 64)
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("provided-buffer rings unsupported: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	s := r.GetSQE()
	s.PrepRecv(fds[1], nil, 0, 9)
	s.Ioprio = RecvMultishot
	s.Flags = SQEBufferSelect
	s.BufIndex = b.Group()
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	// Ten messages through four buffers: recycling must work.
	for i := 0; i < 10; i++ {
		want := []byte{'a' + byte(i), 'b' + byte(i)}
		if _, err := unix.Write(fds[0], want); err != nil {
			t.Fatal(err)
		}
		c := waitCQE(t, r)
		if c.Res == -int32(unix.EINVAL) {
			t.Skip("multishot recv unsupported (needs Linux 6.0+)")
		}
		if c.UserData != 9 || c.Res != 2 || c.Flags&CQEFBuffer == 0 || c.Flags&CQEFMore == 0 {
			t.Fatalf("message %d: cqe %+v", i, c)
		}
		id := uint16(c.Flags >> CQEBufferShift)
		if got := b.Buf(id)[:2]; string(got) != string(want) {
			t.Fatalf("message %d: buffer %d holds %q, want %q", i, id, got, want)
		}
		b.Recycle(id)
	}
}
