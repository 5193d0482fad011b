package probe

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/loadgen"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root (loads eBPF programs)")
	}
	if testing.Short() {
		t.Skip("kernel test; skipped with -short")
	}
}

// testMode lets 'make vmtest' force a hook family on another kernel.
func testMode() Mode {
	if m := os.Getenv("VOLLEYSCOPE_PROBE_MODE"); m != "" {
		return Mode(m)
	}
	return ModeAuto
}

// pingPong runs n blocking round trips between two locked, pinned threads
// over 127.0.0.1, as raw fds with TCP_NODELAY. It returns the thread ids,
// the server port, the client's port and the client's timestamps.
type pp struct {
	ctid, stid   int
	sport, cport uint16
	t0, t1       []int64
}

func pin(cpu int) {
	if cpu < 0 {
		return
	}
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
}

func startPingPong(t *testing.T, clientCPU, serverCPU int) (*pp, func(n int), func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &pp{sport: uint16(ln.Addr().(*net.TCPAddr).Port)}
	lf, _ := ln.(*net.TCPListener).File()
	ln.Close()
	var ready sync.WaitGroup
	ready.Add(2)
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		runtime.LockOSThread()
		pin(serverCPU)
		r.stid = unix.Gettid()
		ready.Done()
		fd, _, err := unix.Accept(int(lf.Fd()))
		if err != nil {
			return
		}
		defer unix.Close(fd)
		var b [4]byte
		for {
			n, err := unix.Read(fd, b[:])
			if err != nil || n != 4 {
				return
			}
			binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+1)
			unix.Write(fd, b[:])
		}
	}()
	work := make(chan int)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		pin(clientCPU)
		r.ctid = unix.Gettid()
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(r.sport), Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Error(err)
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		sa, _ := unix.Getsockname(fd)
		r.cport = uint16(sa.(*unix.SockaddrInet4).Port)
		ready.Done()
		var b [4]byte
		for n := range work {
			for i := 0; i < n; i++ {
				binary.BigEndian.PutUint32(b[:], uint32(i+1))
				r.t0 = append(r.t0, loadgen.Now())
				unix.Write(fd, b[:])
				unix.Read(fd, b[:])
				r.t1 = append(r.t1, loadgen.Now())
			}
			done <- struct{}{}
		}
		unix.Close(fd)
		close(done)
	}()
	ready.Wait()
	run := func(n int) { work <- n; <-done }
	stop := func() { close(work); <-done; <-srvDone; lf.Close() }
	return r, run, stop
}

func TestKernelHooksAndEvents(t *testing.T) {
	requireRoot(t)
	for _, layout := range []struct {
		name     string
		ccpu, sc int
	}{{"cross_cpu", 1, 0}, {"same_cpu", 0, 0}} {
		t.Run(layout.name, func(t *testing.T) {
			if runtime.NumCPU() < 2 && layout.ccpu == 1 {
				t.Skip("needs 2 CPUs")
			}
			r, run, stop := startPingPong(t, layout.ccpu, layout.sc)
			defer stop()
			p, err := Open(Config{Mode: testMode(), Ports: []uint16{r.sport}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, h := range p.Hooks() {
				t.Logf("%-20s %s %v", h.Event, h.Hook, h.Err)
			}
			p.TrackTID(uint32(r.ctid))
			p.TrackTID(uint32(r.stid))
			var evs []Event
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- p.Run(ctx, func(e *Event) { evs = append(evs, *e) }) }()
			const n = 2000
			run(n)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if lost := p.Lost(); lost != 0 {
				t.Errorf("lost %d events", lost)
			}
			checkEvents(t, r, evs, n, layout.ccpu != layout.sc)
		})
	}
}

func checkEvents(t *testing.T, r *pp, evs []Event, n int, cross bool) {
	t.Helper()
	count := map[Kind]int{}
	for _, e := range evs {
		if e.Kind == KindSyscall && e.Arg1 > 1 {
			continue // the Go runtime's own calls (futex, …) on the test threads
		}
		count[e.Kind]++
		if e.TID != 0 && e.Kind == KindSyscall && e.TID != uint32(r.ctid) && e.TID != uint32(r.stid) {
			t.Fatalf("syscall event from untracked thread %d", e.TID)
		}
	}
	t.Logf("%d events for %d round trips: %v", len(evs), n, count)
	perRT := func(k Kind) float64 { return float64(count[k]) / float64(n) }
	// Each round trip: two data ready (one per socket) and 4 read/write
	// syscalls (one each per side), which carry their socket: the sends and
	// receives inside them are folded in, so no separate socket events.
	for _, c := range []struct {
		k        Kind
		min, max float64
	}{{KindSockSend, 0, 0}, {KindSockRecv, 0, 0.001}, {KindDataReady, 2, 2.02}, {KindSyscall, 3.99, 4.05}} {
		if v := perRT(c.k); v < c.min || v > c.max {
			t.Errorf("%v per round trip = %.3f, want [%v, %v]", c.k, v, c.min, c.max)
		}
	}
	if cross && (perRT(KindSwitch) < 3 || perRT(KindWaking) < 1.5) {
		t.Errorf("cross-CPU: %.2f switches and %.2f wakings per round trip, want ≥ 3 (each side sleeps and wakes) and most of 2", perRT(KindSwitch), perRT(KindWaking))
	}
	// Order within each round trip: client send syscall entry < data
	// ready on the server socket < server recv return < server send <
	// data ready on the client socket < client read exit ≤ t1.
	var clientSys, srvReady, cliReady, srvRecv []Event
	for _, e := range evs {
		switch {
		case e.Kind == KindSyscall && e.TID == uint32(r.ctid) && e.Arg1 <= 1:
			clientSys = append(clientSys, e)
		case e.Kind == KindSyscall && e.TID == uint32(r.stid) && e.Arg1 == 0 && e.Ret > 0 && e.Lport == r.sport,
			// the server's first read began before it was tracked, so
			// its receive is not inside a syscall record
			e.Kind == KindSockRecv && e.Lport == r.sport && e.Ret > 0:
			srvRecv = append(srvRecv, e)
		case e.Kind == KindDataReady && e.Lport == r.sport:
			srvReady = append(srvReady, e)
		case e.Kind == KindDataReady && e.Lport == r.cport:
			cliReady = append(cliReady, e)
		}
	}
	if len(clientSys) < 2*n || len(srvReady) < n || len(cliReady) < n || len(srvRecv) < n {
		t.Fatalf("too few events: %d client syscalls, %d/%d data ready, %d server receives", len(clientSys), len(srvReady), len(cliReady), len(srvRecv))
	}
	bad := 0
	for i := 0; i < n; i++ {
		w, rd := clientSys[2*i], clientSys[2*i+1]
		ok := w.Arg1 == 1 && rd.Arg1 == 0 && // write then read
			int64(w.Arg0) >= r.t0[i] && int64(rd.TS) <= r.t1[i] &&
			srvReady[i].TS > w.Arg0 && srvRecv[i].TS > srvReady[i].TS &&
			cliReady[i].TS > srvRecv[i].TS && cliReady[i].TS < rd.TS &&
			w.SK != 0 && w.Lport == r.cport && w.Rport == r.sport
		if !ok {
			bad++
			if bad < 3 {
				t.Logf("round trip %d out of order: write %+v read %+v srvReady %+v srvRecv %+v cliReady %+v", i, w, rd, srvReady[i], srvRecv[i], cliReady[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d round trips have events out of the expected order", bad, n)
	}
}

// TestNothingLeftAttached: after Close, none of the programs this probe
// loaded is in the kernel (by id: other tests may load probes meanwhile).
func TestNothingLeftAttached(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("bpftool not installed")
	}
	loaded := func() string {
		out, err := exec.Command("bpftool", "prog", "show").Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	p, err := Open(Config{Mode: testMode(), Ports: []uint16{1}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range p.progs {
		for _, prog := range c.Programs {
			info, err := prog.Info()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			ids = append(ids, fmt.Sprintf("%d: ", id))
		}
	}
	now := loaded()
	for _, id := range ids {
		if !strings.Contains(now, "\n"+id) && !strings.HasPrefix(now, id) {
			t.Fatalf("program %s not listed by bpftool while open", id)
		}
	}
	p.Close()
	p.Close()
	after := loaded()
	for _, id := range ids {
		if strings.Contains(after, "\n"+id) || strings.HasPrefix(after, id) {
			t.Errorf("program %s still loaded after Close", id)
		}
	}
}

func TestForcedModeFailsClearly(t *testing.T) {
	requireRoot(t)
	if testMode() != ModeAuto {
		t.Skip("mode forced by the environment")
	}
	for _, m := range []Mode{ModeFentry, ModeKprobe} {
		p, err := Open(Config{Mode: m, Ports: []uint16{1}})
		if err == nil {
			// This kernel allows the family: it must then be in use.
			if !strings.Contains(p.ModeUsed(), string(m)) {
				t.Errorf("mode %s opened but uses %s", m, p.ModeUsed())
			}
			p.Close()
			continue
		}
		if !strings.Contains(err.Error(), string(m)) || !strings.Contains(err.Error(), "sock") {
			t.Errorf("mode %s: error %q should name the mode and the socket event", m, err)
		}
		t.Logf("mode %s here: %v", m, err)
	}
}
