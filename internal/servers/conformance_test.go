package servers

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/loadgen"
)

func TestMain(m *testing.M) {
	MaybeRunChild() // the fork server re-executes this test binary
	os.Exit(m.Run())
}

// running is one server under test.
type running struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// ended waits up to 2 s for Serve to return after what (the 0 message, a
// cancel) and returns its error, left in done for the cleanup; it fails t
// when Serve is still running.
func (r *running) ended(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(2 * time.Second):
		t.Fatalf("server still running 2 s after %s", what)
		return nil
	}
}

func start(t *testing.T, s Server, o Options) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Serve(ctx, ln.(*net.TCPListener), o); ln.Close() }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(3 * time.Second):
			t.Errorf("%s did not stop within 3 s of cancel", s.Name)
		}
	})
	return r
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func ping(c net.Conn, v uint32) (uint32, error) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	if _, err := c.Write(b[:]); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

var conformance = []struct {
	name string
	opts Options
	run  func(t *testing.T, s Server, r *running)
}{
	{"pingpong with wrap-around", Options{}, func(t *testing.T, s Server, r *running) {
		c := dial(t, r.addr)
		defer c.Close()
		for _, v := range []uint32{1, 2, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF} {
			got, err := ping(c, v)
			if err != nil || got != v+1 {
				t.Fatalf("ping %#x: got %#x, %v; want %#x", v, got, err, v+1)
			}
		}
	}},
	{"pingpong in fragments", Options{}, func(t *testing.T, s Server, r *running) {
		c := dial(t, r.addr)
		defer c.Close()
		for i := uint32(1); i <= 20; i++ {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], i*1000)
			for _, x := range b {
				c.Write([]byte{x})
				time.Sleep(200 * time.Microsecond)
			}
			if _, err := io.ReadFull(c, b[:]); err != nil || binary.BigEndian.Uint32(b[:]) != i*1000+1 {
				t.Fatalf("fragmented ping %d: got %x, %v", i*1000, b, err)
			}
		}
	}},
	{"echo 1 B to 64 KiB in fragments", Options{Echo: true}, func(t *testing.T, s Server, r *running) {
		c := dial(t, r.addr)
		defer c.Close()
		for _, size := range []int{1, 3, 100, 4096, 65536} {
			msg := make([]byte, size)
			for i := range msg {
				msg[i] = byte(i*7 + size)
			}
			errc := make(chan error, 1)
			go func() {
				for off := 0; off < size; off += 1000 {
					if _, err := c.Write(msg[off:min(off+1000, size)]); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			got := make([]byte, size)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("echo %d B: %v", size, err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo %d B: bytes differ", size)
			}
		}
	}},
	{"echo under backpressure (8 MiB before reading)", Options{Echo: true}, func(t *testing.T, s Server, r *running) {
		// The client does not read until it has written far more than the
		// socket buffers hold, so the server meets short writes and EAGAIN
		// (or short io_uring sends) and must keep every byte in order.
		c := dial(t, r.addr)
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		const size = 8 << 20
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i ^ i>>8 ^ i>>16)
		}
		errc := make(chan error, 1)
		go func() {
			for off := 0; off < size; off += 64 << 10 {
				if _, err := c.Write(msg[off : off+64<<10]); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		time.Sleep(200 * time.Millisecond)
		got := make([]byte, size)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("echo %d B: %v", size, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatal("echoed bytes differ")
		}
	}},
	{"100 concurrent connections", Options{}, func(t *testing.T, s Server, r *running) {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", r.addr)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				for k := uint32(1); k <= 20; k++ {
					v := uint32(i)<<16 | k
					if got, err := ping(c, v); err != nil || got != v+1 {
						errs <- fmt.Errorf("conn %d ping %#x: got %#x, %v", i, v, got, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}},
	{"client closing mid-request", Options{}, func(t *testing.T, s Server, r *running) {
		c := dial(t, r.addr)
		c.Write([]byte{0, 0}) // half a message
		c.Close()
		time.Sleep(20 * time.Millisecond)
		c2 := dial(t, r.addr)
		defer c2.Close()
		if got, err := ping(c2, 41); err != nil || got != 42 {
			t.Fatalf("after a client left mid-request: got %d, %v", got, err)
		}
	}},
	{"spin is busy-work per request", Options{Spin: 2 * time.Millisecond}, func(t *testing.T, s Server, r *running) {
		c := dial(t, r.addr)
		defer c.Close()
		ping(c, 1)
		start := time.Now()
		for i := uint32(0); i < 5; i++ {
			ping(c, 10+i)
		}
		if per := time.Since(start) / 5; per < 2*time.Millisecond { // no upper bound: a loaded machine stretches it (accuracy: see the spin test)
			t.Errorf("round trip with 2 ms spin took %v", per)
		}
	}},
	{"pipelined messages answered in order, then 0", Options{}, func(t *testing.T, s Server, r *running) {
		c := dial(t, r.addr)
		defer c.Close()
		// Five messages and the 0 in one write: the server must answer
		// every message before the 0, in order, and only then exit.
		var b []byte
		for v := uint32(0xFFFFFFFB); v != 0; v++ {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		b = binary.BigEndian.AppendUint32(b, 0)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 20)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("pipelined replies: %v (got % x)", err, got)
		}
		for i := 0; i < 5; i++ {
			if v, want := binary.BigEndian.Uint32(got[4*i:]), uint32(0xFFFFFFFB+i+1); v != want {
				t.Errorf("reply %d: %#x, want %#x", i, v, want)
			}
		}
		if err := r.ended(t, "the 0 message"); !errors.Is(err, ErrExitRequested) {
			t.Errorf("Serve returned %v, want ErrExitRequested", err)
		}
	}},
	{"0 makes the server exit", Options{}, func(t *testing.T, s Server, r *running) {
		c := dial(t, r.addr)
		defer c.Close()
		ping(c, 5)
		c.Write([]byte{0, 0, 0, 0})
		if err := r.ended(t, "the 0 message"); !errors.Is(err, ErrExitRequested) {
			t.Errorf("Serve returned %v, want ErrExitRequested", err)
		}
	}},
	// ended's 2 s bound is the test: an idle connection that held the
	// server up would hold it forever. (A 1 s bound here failed once
	// while other test packages kept both CPUs busy.)
	{"cancel (SIGTERM) stops it while idle", Options{}, func(t *testing.T, s Server, r *running) {
		c := dial(t, r.addr) // an idle connection must not hold it up
		defer c.Close()
		ping(c, 7)
		time.Sleep(50 * time.Millisecond)
		t0 := time.Now()
		r.cancel()
		if err := r.ended(t, "cancel"); err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
		t.Logf("stopped %v after cancel", time.Since(t0))
	}},
}

func TestConformance(t *testing.T) {
	for _, s := range All() {
		if loadgen.SpokenBy(s.Name) != loadgen.PingPong {
			continue // not ping-pong: TestProtoServers
		}
		t.Run(s.Name, func(t *testing.T) {
			if err := Check(s.Name); err != nil {
				t.Skipf("kernel lacks it: %v", err)
			}
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, s, start(t, s, tc.opts))
				})
			}
		})
	}
}

func TestLookup(t *testing.T) {
	if _, err := Lookup("nope"); err == nil {
		t.Error("unknown server found")
	}
	if s, err := Lookup("epoll-et"); err != nil || s.Serve == nil {
		t.Errorf("epoll-et: %v", err)
	}
	if All()[0].Name != "goroutine" {
		t.Error("the default server must come first")
	}
}

// TestCheckErrors: a server this kernel cannot run is refused with its name
// and the kernel release it needs; unknown names list the known ones.
func TestCheckErrors(t *testing.T) {
	for _, s := range All() {
		t.Run(s.Name, func(t *testing.T) {
			err := Check(s.Name)
			if err == nil {
				return
			}
			if s.Requires == "" {
				t.Errorf("%s has no requirement but Check says %v", s.Name, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, s.Name+": ") || !strings.Contains(msg, "Linux") {
				t.Errorf("Check(%q) = %q, want it to name the server and a Linux release", s.Name, msg)
			}
		})
	}
	err := Check("nope")
	if err == nil || !strings.Contains(err.Error(), "goroutine") {
		t.Errorf("Check(unknown) = %v, want the known names listed", err)
	}
}

// TestSpinAccuracy: Options.Spin is the truth tests' injected delay, so a
// spin must do what was asked of the thread's CPU time, within 2% plus
// the two clock reads' system calls, and take no less wall time. The
// fastest of several tries is judged: on a busy machine preemption makes
// a try longer in wall time, and an interrupt charged to the thread longer
// in CPU time.
func TestSpinAccuracy(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, d := range []time.Duration{20 * time.Microsecond, 200 * time.Microsecond, 2 * time.Millisecond} {
		t.Run(d.String(), func(t *testing.T) {
			bestWall, bestCPU := time.Duration(1<<62), time.Duration(1<<62)
			for i := 0; i < 20; i++ {
				t0, c0 := time.Now(), threadCPUNs()
				spin(d)
				c := time.Duration(threadCPUNs() - c0)
				bestWall, bestCPU = min(bestWall, time.Since(t0)), min(bestCPU, c)
			}
			tol := d/50 + 5*time.Microsecond
			if bestCPU < d || bestCPU > d+tol {
				t.Errorf("spin(%v) used %v of CPU time, want %v to %v", d, bestCPU, d, d+tol)
			}
			// No upper bound on the wall time: beside other tests every try
			// of a 2 ms spin can be preempted, which lengthens it (the point
			// of a CPU-time spin).
			if bestWall < d {
				t.Errorf("spin(%v) took %v of wall time, want at least %v", d, bestWall, d)
			}
		})
	}
}

// TestSpinPreempted: a spin that shares its CPU with a busy thread still
// does all its CPU time, so it lasts longer in wall time.
func TestSpinPreempted(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatalf("get affinity: %v", err)
	}
	cpu := -1
	for i := 0; i < 1024 && cpu < 0; i++ {
		if set.IsSet(i) {
			cpu = i
		}
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatalf("pin to CPU %d: %v", cpu, err)
	}
	defer unix.SchedSetaffinity(0, &set)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a busy thread on the same CPU
		defer close(done)
		runtime.LockOSThread()
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			t.Errorf("pin the busy thread to CPU %d: %v", cpu, err)
			return
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	const d = 50 * time.Millisecond
	t0, c0 := time.Now(), threadCPUNs()
	spin(d)
	wall, c := time.Since(t0), time.Duration(threadCPUNs()-c0)
	close(stop)
	<-done
	if c < d {
		t.Errorf("spin(%v) beside a busy thread used %v of CPU time, want at least %v", d, c, d)
	}
	// Two runnable threads on one CPU share it: the spin takes longer than
	// its CPU time by what the other thread ran.
	if wall < c+c/5 {
		t.Errorf("spin(%v) beside a busy thread took %v for %v of CPU time: it should have waited for the CPU", d, wall, c)
	}
}
