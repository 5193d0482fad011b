package session

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/probe"
)

// TestTruthInterruptLoad: UDP packets steered to the server's CPU make
// softirq load there, and while the server spins that time is server_irq:
// it grows clearly, and it is taken from server_user, not added to it.
//
// The load: a sender pinned to the client's CPU sends bursts of UDP
// datagrams to a socket nobody reads, on the loopback device of a network
// namespace of its own whose receive packet steering (rps_cpus) sends
// every packet to CPU 0. The sending CPU queues each burst to CPU 0's
// backlog and interrupts it (an IPI); CPU 0 runs the NET_RX softirq on
// the way out of that interrupt, in the context of whatever it was
// running: the spinning server, most of the time. (Loopback traffic
// without steering is processed in the sender's own send, which would be
// a task competing for the CPU, not an interrupt.)
//
// What the spin measures decides what server_user must read: the spin is
// the thread's CPU time, and a kernel without CONFIG_IRQ_TIME_ACCOUNTING
// charges the interrupts that hit the thread to it. There the spin ends
// sooner by the interrupts inside it, so server_user + server_irq stays
// at the spin; with it, server_user does.
func TestTruthInterruptLoad(t *testing.T) {
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	if _, err := os.Stat("/sys/class/net/lo/queues/rx-0/rps_cpus"); err != nil {
		t.Skipf("no receive packet steering (CONFIG_RPS): %v", err)
	}
	cfg := Config{Server: "threads", ServerSpin: 200 * time.Microsecond}
	var sent, netRX uint64
	tr := interleave(t, cfg, cfg, func(t *testing.T, _ *Config, _ *Callbacks) func() {
		rx0 := netRXOn(t, 0)
		stop := startIRQFlood(t, 1, 0)
		return func() {
			sent += stop()
			netRX += netRXOn(t, 0) - rx0
		}
	})
	irq, user := tr.index(t, "server_irq"), tr.index(t, "server_user")
	bLo, bHi := tr.spread(tr.base, irq, mean)
	iLo, iHi := tr.spread(tr.inj, irq, mean)
	t.Logf("flood: %d datagrams steered to CPU 0 in %d rounds (%d NET_RX softirqs there); server_irq mean %.1f–%.1f µs without it, %.1f–%.1f µs with it",
		sent, truthPairs, netRX, bLo/1e3, bHi/1e3, iLo/1e3, iHi/1e3)
	if sent < 1000 {
		t.Fatalf("the flood sent only %d datagrams", sent)
	}
	// The flood keeps CPU 0's softirq busy a few percent of the time, so a
	// spin of 200 µs meets a few µs of it on average; how much varies
	// with where the bursts fall, so the rounds with the load are not
	// held to each other: each must stand 1 µs clear of every round
	// without it.
	if iLo < bHi+1e3 {
		t.Errorf("server_irq mean %.2f µs in a round with the interrupt load, want 1 µs over the %.2f µs of the highest round without it", iLo/1e3, bHi/1e3)
	}
	work := func(r []report.Component) float64 {
		if probe.IRQTimeAccounting() {
			return r[user].MeanNs
		}
		return r[user].MeanNs + r[irq].MeanNs
	}
	var b, i []float64
	for k := range tr.base {
		b, i = append(b, work(tr.base[k])), append(i, work(tr.inj[k]))
	}
	bMed, bMAD := medianMAD(b)
	iMed, iMAD := medianMAD(i)
	what := "server_user + server_irq"
	if probe.IRQTimeAccounting() {
		what = "server_user"
	}
	t.Logf("%s mean: %.1f µs without the load, %.1f µs with it (medians of the rounds)", what, bMed/1e3, iMed/1e3)
	if d := iMed - bMed; d > 20e3+3*max(bMAD, iMAD) || -d > 20e3+3*max(bMAD, iMAD) {
		t.Errorf("%s mean moved by %.1f µs under the interrupt load, want within 10%% of the 200 µs spin + 3 × %.1f µs spread: the interrupts were not carved from the component they hit",
			what, d/1e3, max(bMAD, iMAD)/1e3)
	}
}

// startIRQFlood sends bursts of UDP datagrams from a thread pinned to CPU
// from, in a network namespace of its own whose loopback steers them to
// CPU to (see TestTruthInterruptLoad), until stop is called, for at most
// a minute and 20 million datagrams. stop returns how many were sent.
// Nothing outlives it: the namespace goes with the thread and its sockets.
func startIRQFlood(t *testing.T, from, to int) (stop func() uint64) {
	t.Helper()
	mnt := t.TempDir()
	var sent atomic.Uint64
	quit := make(chan struct{})
	ready := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread enters a namespace of its own, and
		// Go ends a thread whose goroutine exits locked to it.
		runtime.LockOSThread()
		rx, tx, err := floodNamespace(mnt, to)
		if err == nil {
			defer unix.Close(rx)
			defer unix.Close(tx)
			var set unix.CPUSet
			set.Set(from)
			err = unix.SchedSetaffinity(0, &set)
		}
		if err != nil {
			ready <- err
			return
		}
		ready <- nil
		// 9 (discard) on 127.0.0.1: a port no followed socket has in
		// this namespace; nobody reads it, so the datagrams are
		// dropped once its receive buffer is full, after the receive
		// softirq did its work.
		to := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}
		msg := make([]byte, 64)
		deadline := time.Now().Add(time.Minute)
		for n := uint64(0); n < 20_000_000 && time.Now().Before(deadline); {
			select {
			case <-quit:
				return
			default:
			}
			// A burst, then a pause: a few percent of CPU 0 in softirq,
			// within one NET_RX run's budget (300 packets), so that it
			// runs on the interrupt's way out and not in ksoftirqd.
			for range 128 {
				if unix.Sendto(tx, msg, unix.MSG_DONTWAIT, to) == nil {
					n++
				}
			}
			sent.Store(n)
			time.Sleep(time.Millisecond)
		}
	}()
	if err := <-ready; err != nil {
		<-done
		t.Fatalf("interrupt load: %v", err)
	}
	var once atomic.Bool
	stop = func() uint64 {
		if once.CompareAndSwap(false, true) {
			close(quit)
			<-done
		}
		return sent.Load()
	}
	t.Cleanup(func() { stop() })
	return stop
}

// floodNamespace moves the calling (locked) thread into a new network
// namespace, brings its loopback up, steers its receive processing to
// CPU cpu, and returns two UDP sockets there: a receiver bound to port 9
// and a sender. Closing both and ending the thread frees the namespace.
func floodNamespace(mnt string, cpu int) (rx, tx int, err error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return -1, -1, fmt.Errorf("unshare network namespace: %w", err)
	}
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("socket: %w", err)
	}
	ifr, err := unix.NewIfreq("lo")
	if err == nil {
		err = unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr)
	}
	if err == nil {
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		err = unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr)
	}
	if err != nil {
		unix.Close(s)
		return -1, -1, fmt.Errorf("bring lo up: %w", err)
	}
	// sysfs shows the network devices of the namespace of the thread
	// that mounts it: a mount of our own, removed at once.
	if err := unix.Mount("sysfs", mnt, "sysfs", 0, ""); err != nil {
		unix.Close(s)
		return -1, -1, fmt.Errorf("mount sysfs: %w", err)
	}
	err = os.WriteFile(filepath.Join(mnt, "class/net/lo/queues/rx-0/rps_cpus"), []byte(fmt.Sprintf("%x", 1<<cpu)), 0)
	if uerr := unix.Unmount(mnt, unix.MNT_DETACH); err == nil && uerr != nil {
		err = fmt.Errorf("unmount %s: %w", mnt, uerr)
	}
	if err != nil {
		unix.Close(s)
		return -1, -1, fmt.Errorf("steer lo to CPU %d: %w", cpu, err)
	}
	if err := unix.Bind(s, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(s)
		return -1, -1, fmt.Errorf("bind 127.0.0.1:9: %w", err)
	}
	if tx, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0); err != nil {
		unix.Close(s)
		return -1, -1, fmt.Errorf("socket: %w", err)
	}
	return s, tx, nil
}

// netRXOn is the count of NET_RX softirqs CPU cpu has run, from
// /proc/softirqs.
func netRXOn(t *testing.T, cpu int) uint64 {
	b, err := os.ReadFile("/proc/softirqs")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > cpu+1 && f[0] == "NET_RX:" {
			var n uint64
			if _, err := fmt.Sscan(f[cpu+1], &n); err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal(errors.New("no NET_RX line in /proc/softirqs"))
	return 0
}
