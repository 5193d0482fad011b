package probe

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/testenv"
	"github.com/volleyscope/volleyscope/loadgen"
)

func requireRoot(t *testing.T) { testenv.RequireRoot(t) }

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
	kernelEvents(t, false, true)
}

// kernelEvents runs testEvents without and with the syscall hooks, as
// asked, on one CPU and across two.
func kernelEvents(t *testing.T, levels ...bool) {
	for _, syscalls := range levels {
		level := "default"
		if syscalls {
			level = "syscalls"
		}
		for _, layout := range []struct {
			name     string
			ccpu, sc int
		}{{"cross_cpu", 1, 0}, {"same_cpu", 0, 0}} {
			t.Run(level+"/"+layout.name, func(t *testing.T) {
				if runtime.NumCPU() < 2 && layout.ccpu == 1 {
					t.Skip("needs 2 CPUs")
				}
				testEvents(t, syscalls, layout.ccpu, layout.sc)
			})
		}
	}
}

// testEvents drives a tracked ping-pong next to an untracked one and
// checks the events of every round trip.
func testEvents(t *testing.T, syscalls bool, ccpu, scpu int) {
	r, run, stop := startPingPong(t, ccpu, scpu)
	defer stop()
	// A second, untracked ping-pong on its own port runs at the same
	// time: none of its threads or sockets may show up.
	u, urun, ustop := startPingPong(t, scpu, ccpu)
	defer ustop()
	p, err := Open(Config{Mode: testMode(), Ports: []uint16{r.sport}, Syscalls: syscalls})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var missing []string
	needed := map[string]bool{"send_start": true, "sock_recv_length": true, "sk_data_ready": true, "sched_switch": true}
	if syscalls {
		needed["sys_enter"], needed["sys_exit"], needed["sched_waking"] = true, true, true
	}
	hooks := map[string]bool{}
	for _, h := range p.Hooks() {
		t.Logf("%-20s %s %v", h.Event, h, h.Err)
		hooks[h.Event] = h.State == HookAttached
	}
	if syscalls && !hooks["send_start"] && hooks["sock_send_length"] {
		// With the syscall hooks the send's return is enough: it names
		// the socket of the write whose entry is the send's start.
		delete(needed, "send_start")
	}
	for ev := range needed {
		if !hooks[ev] {
			missing = append(missing, ev)
		}
	}
	if len(missing) > 0 && testMode() == ModeTracepoint {
		// An older kernel lacks some sock:*/tcp:* (6.1 all three, 6.12 tcp_sendmsg_locked)
		// tracepoints; in tracepoint mode the probe names them (logged
		// above) and this test has nothing to check them with.
		t.Skipf("kernel lacks tracepoints for %v in mode tracepoint (reported by the probe, as it must be)", missing)
	}
	if len(missing) > 0 {
		t.Fatalf("no hook for %v", missing)
	}
	if err := p.TrackTID(uint32(r.ctid)); err != nil {
		t.Fatal(err)
	}
	if err := p.TrackTID(uint32(r.stid)); err != nil {
		t.Fatal(err)
	}
	var evs []Event
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, func(e *Event) { evs = append(evs, *e) }) }()
	// A few round trips first, so the server's blocking read that began
	// before it was tracked has completed.
	run(20)
	base := len(r.t0)
	const n = 2000
	udone := make(chan struct{})
	go func() { urun(n); close(udone) }()
	run(n)
	<-udone
	// A few round trips past the checked ones: the server's last write
	// returns only after the client has its reply, and under emulation
	// it was still inside it when the reader stopped (its record
	// missing from round trip n-1). These are outside the checked window.
	run(3)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if lost := p.Lost(); lost != 0 {
		t.Errorf("lost %d events", lost)
	}
	checkUntracked(t, r, u, evs)
	checkEvents(t, r, evs, base, n, ccpu != scpu, syscalls)
	// The events checked above came, most of them, from folded records
	// (bpf/probe.c, "Folded records"): on loopback a segment's receive
	// and its data-ready are in one softirq, so each round trip folds
	// at least its two receives whenever their hooks are attached.
	if hooks["netif_receive_skb"] && hooks["sk_data_ready"] && hooks["softirq_entry"] && hooks["softirq_exit"] {
		folded := uint64(len(evs)) - p.Records()
		t.Logf("%d events from %d records", len(evs), p.Records())
		if folded < n {
			t.Errorf("%d events from %d records: %d folds in %d round trips, want at least one each", len(evs), p.Records(), folded, n)
		}
	}
}

// TestKernelFallbackFamilies runs the same checks with the preferred
// families taken away, so that the raw tracepoint and the classic
// tracepoint paths (what a kernel without tp_btf for an event gets) are
// proven end to end here too, not only on another kernel.
func TestKernelFallbackFamilies(t *testing.T) {
	requireRoot(t)
	if testMode() != ModeAuto {
		t.Skip("mode forced by the environment")
	}
	full := hookTable
	defer func() { hookTable = full }()
	for _, fb := range []struct {
		name string
		drop []family
	}{{"raw_tp", []family{famTPBTF}}, {"tracepoint", []family{famTPBTF, famRawTP}}} {
		t.Run(fb.name, func(t *testing.T) {
			hookTable = nil
			for _, h := range full {
				var cands []candidate
				for _, c := range h.cands {
					if !slices.Contains(fb.drop, c.fam) {
						cands = append(cands, c)
					}
				}
				h.cands = cands
				hookTable = append(hookTable, h)
			}
			defer func() { hookTable = full }()
			p, err := Open(Config{Ports: []uint16{1}})
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range p.Hooks() {
				if h.Event == "send_start" && fb.name == "tracepoint" && h.State == HookMissing {
					continue // no classic tracepoint carries the socket (below)
				}
				if h.State != HookOff && !strings.HasPrefix(h.Hook, fb.name+"/") && !strings.HasPrefix(h.Hook, "tracepoint/") {
					t.Errorf("%s: hook %q (%v), want %s", h.Event, h, h.Err, fb.name)
				}
			}
			p.Close()
			if fb.name == "tracepoint" {
				// The classic tcp_sendmsg_locked tracepoint carries no
				// socket: a kernel with nothing better has the send's
				// return, which needs the syscall hooks for its start.
				kernelEvents(t, true)
				return
			}
			kernelEvents(t, false, true)
		})
	}
}

// checkUntracked: nothing of the untracked pair u appears; a switch names a
// tracked thread on one side.
func checkUntracked(t *testing.T, r, u *pp, evs []Event) {
	t.Helper()
	tracked := func(tid uint64) bool { return tid == uint64(r.ctid) || tid == uint64(r.stid) }
	bad := 0
	for _, e := range evs {
		ok := true
		switch {
		case e.Lport == u.sport || e.Rport == u.sport || e.Lport == u.cport || e.Rport == u.cport:
			ok = false
		case e.Kind == KindSwitch:
			ok = tracked(e.Arg0) || tracked(e.Arg1)
		case e.Kind == KindWaking || e.Kind == KindWakeup:
			ok = tracked(e.Arg0)
		case e.Kind == KindDataReady, e.Kind == KindNetXmit, e.Kind == KindNetRecv:
			// Filtered by port; the task is whoever ran the stack
			// (softirq, a qdisc's).
			ok = e.Lport == r.sport || e.Rport == r.sport
		default:
			ok = tracked(uint64(e.TID))
		}
		if !ok {
			bad++
			if bad <= 3 {
				t.Errorf("event of an untracked thread or socket: %+v", e)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d events of untracked threads or sockets", bad)
	}
}

// rtEvents are the events of one round trip that the join relies on.
type rtEvents struct {
	// client write/read, server read/write: syscall records (4 bytes each)
	// with the syscall hooks, else send starts and receive returns.
	cw, cr, sr, sw []Event
	drS, drC       []Event // data ready on the server's / the client's socket
}

// start is when a send or receive began: the syscall's entry, or for a
// send start (no syscall hooks) the event itself.
func start(e Event) uint64 {
	if e.Kind == KindSyscall {
		return e.Arg0
	}
	return e.TS
}

// checkEvents asserts, for each of the n round trips from index base of the
// client's timestamps, that the events the join needs are there, exactly
// once, carry the right sockets and come in the order a loopback round
// trip imposes (the receiver's network stack runs in softirq inside the
// sender's send, on the sender's CPU, so data ready precedes the send's
// return):
//
//	t0 ≤ client write entry < data ready(server sk) < client write exit
//	data ready(server sk) < server read exit ≤ server write entry
//	< data ready(client sk) < server write exit, client read exit ≤ t1
//
// and, where a side slept in its read, that it was woken (sched_waking by
// the sender, inside the sender's write) and switched in before its read
// returned.
func checkEvents(t *testing.T, r *pp, evs []Event, base, n int, cross, syscalls bool) {
	t.Helper()
	t0, t1 := r.t0[base:base+n], r.t1[base:base+n]
	rts := make([]rtEvents, n)
	ctid, stid := uint32(r.ctid), uint32(r.stid)
	count := map[Kind]int{}
	interrupted := 0
	for _, e := range evs {
		// The round trip whose client window holds the event. A write
		// belongs to the round trip it began in: the server's write may
		// return after the client already has the answer (the server
		// preempted in it). A read belongs to the one it returned in.
		ts := e.TS
		if (e.Kind == KindSyscall && e.Arg1 == 1) || e.Kind == KindSendStart {
			ts = start(e)
		}
		i := sort.Search(n, func(i int) bool { return uint64(t1[i]) >= ts })
		if i == n || ts < uint64(t0[i]) {
			continue
		}
		rt := &rts[i]
		switch e.Kind {
		case KindSyscall:
			if e.Arg1 > 1 {
				continue // the Go runtime's own calls (futex, …) on the test threads
			}
			count[e.Kind]++
			if e.Ret != 4 {
				// A signal to the thread (the Go runtime's) interrupts
				// the blocking read with -ERESTARTSYS; it restarts.
				interrupted++
				continue
			}
			switch {
			case e.TID == ctid && e.Arg1 == 1:
				rt.cw = append(rt.cw, e)
			case e.TID == ctid:
				rt.cr = append(rt.cr, e)
			case e.TID == stid && e.Arg1 == 1:
				rt.sw = append(rt.sw, e)
			case e.TID == stid:
				rt.sr = append(rt.sr, e)
			}
		case KindSendStart, KindSockRecv:
			count[e.Kind]++
			send := e.Kind == KindSendStart
			if !send && e.Ret != 4 {
				continue // counted: the per-round-trip bounds catch extras
			}
			switch {
			case e.TID == ctid && send:
				rt.cw = append(rt.cw, e)
			case e.TID == ctid:
				rt.cr = append(rt.cr, e)
			case e.TID == stid && send:
				rt.sw = append(rt.sw, e)
			case e.TID == stid:
				rt.sr = append(rt.sr, e)
			}
		case KindDataReady:
			count[e.Kind]++
			if e.Lport == r.sport {
				rt.drS = append(rt.drS, e)
			} else if e.Lport == r.cport {
				rt.drC = append(rt.drC, e)
			}
		default:
			count[e.Kind]++
		}
	}
	t.Logf("%d events, %d in %d round trips: %v; %d interrupted syscalls", len(evs), sumCounts(count), n, count, interrupted)
	perRT := func(k Kind) float64 { return float64(count[k]) / float64(n) }
	// With the syscall hooks, sends and receives inside read/write are
	// folded into the syscall's record (which then carries the socket);
	// without them, one send start and one receive per side.
	want := []struct {
		k        Kind
		min, max float64
	}{{KindSockSend, 0, 0}, {KindSockRecv, 2, 2}, {KindSendStart, 2, 2}, {KindDataReady, 2, 2}, {KindSyscall, 0, 0}, {KindSwitch, 0, 6}, {KindWaking, 0, 0}}
	if syscalls {
		want[1].max, want[2].max = 0, 0
		want[1].min, want[2].min = 0, 0
		want[4].min, want[4].max = 4, 4.02
		// Up to one waking per side, and a few of a tracked thread by
		// something else (a signal, the runtime) on a busy machine.
		want[6].max = 2.02
	}
	// Under software emulation ('make vmtest' under TCG sets
	// VOLLEYSCOPE_EMULATED) the scheduler's rates are the emulator's:
	// ticks, softirqs and preemptions land elsewhere in a round trip
	// (seen on 6.1 under TCG with the syscall hooks: 6.15 switches and
	// 2.07 wakings per round trip). There the rate bounds are logged,
	// not asserted; each round trip's own checks (every event once, on
	// the right socket, in order) still are.
	rateErrorf := t.Errorf
	if os.Getenv("VOLLEYSCOPE_EMULATED") != "" {
		rateErrorf = t.Logf
	}
	for _, c := range want {
		if v := perRT(c.k); v < c.min || v > c.max {
			report := t.Errorf
			if c.k == KindSwitch || c.k == KindWaking {
				report = rateErrorf
			}
			report("%v per round trip = %.3f, want [%v, %v]", c.k, v, c.min, c.max)
		}
	}
	bad, cSlept, sSlept, readyInSend, wokenInSend, noSwitchIn, wokenElsewhere, noWaking := 0, 0, 0, 0, 0, 0, 0, 0
	var switches, wakings []Event
	for _, e := range evs {
		switch e.Kind {
		case KindSwitch:
			switches = append(switches, e)
		case KindWaking:
			wakings = append(wakings, e)
		}
	}
	byTS := func(a, b Event) int { return cmp.Compare(a.TS, b.TS) }
	slices.SortFunc(switches, byTS)
	slices.SortFunc(wakings, byTS)
	var cSK, sSK uint64
	for i := range rts {
		rt := &rts[i]
		fail := func(why string) {
			bad++
			if bad <= 3 {
				t.Errorf("round trip %d: %s: %+v", i, why, *rt)
			}
		}
		if len(rt.cw) != 1 || len(rt.cr) != 1 || len(rt.sr) != 1 || len(rt.sw) != 1 || len(rt.drS) != 1 || len(rt.drC) != 1 {
			fail(fmt.Sprintf("want one of each, got %d/%d client write/read, %d/%d server read/write, %d/%d data ready",
				len(rt.cw), len(rt.cr), len(rt.sr), len(rt.sw), len(rt.drS), len(rt.drC)))
			continue
		}
		cw, cr, sr, sw, drS, drC := rt.cw[0], rt.cr[0], rt.sr[0], rt.sw[0], rt.drS[0], rt.drC[0]
		if i == 0 {
			cSK, sSK = cw.SK, sr.SK
		}
		switch {
		case cw.SK == 0 || cw.SK != cSK || cr.SK != cSK || drC.SK != cSK:
			fail("client socket missing or inconsistent")
		case sr.SK == 0 || sr.SK != sSK || sw.SK != sSK || drS.SK != sSK || sSK == cSK:
			fail("server socket missing or inconsistent")
		case cw.Lport != r.cport || cw.Rport != r.sport || sw.Lport != r.sport || sw.Rport != r.cport:
			fail("ports")
		case start(cw) < uint64(t0[i]) || cr.TS > uint64(t1[i]):
			fail("client send/receive outside the client's timestamps")
		case !(start(cw) < drS.TS && drS.TS < sr.TS && sr.TS <= start(sw)):
			fail("server data ready not between the client's send start and the server's receive return")
		case !(start(sw) < drC.TS && drC.TS < cr.TS):
			fail("client data ready not between the server's send start and the client's receive return")
		}
		// On loopback the receiver's stack usually runs in the sender's
		// write (softirq on the sender's CPU); when the receiver holds its
		// socket lock (still in its own write) the segment waits in the
		// backlog and data ready fires at release_sock, in the receiver.
		for _, x := range []struct{ dr, snd Event }{{drS, cw}, {drC, sw}} {
			if x.dr.TID == x.snd.TID && x.dr.TS > start(x.snd) && (!syscalls || x.dr.TS < x.snd.TS) {
				readyInSend++
			}
		}
		// Did a side sleep in its read? Then it must have been switched in
		// before the read returned, after a sched_waking raised after the
		// sender began its write. The waking may precede the switch out:
		// try_to_wake_up fires sched_waking before it waits for the
		// sleeper to finish leaving its CPU.
		// from: a time the side was surely running before it read (its
		// read's entry, or its own previous send).
		checkWake := func(side string, tid uint32, from uint64, rd, sender Event) bool {
			// The last time the thread left the CPU before its read
			// returned. A sleep then (not a preemption: a thread woken
			// early by a signal may be preempted and run again later)
			// must end in a switch in after the data was ready.
			out := lastEvent(switches, from, rd.TS, func(s *Event) bool { return s.Arg0 == uint64(tid) })
			if out == nil || out.Ret == 0 {
				return false
			}
			in := firstEvent(switches, out.TS, rd.TS, func(s *Event) bool { return s.Arg1 == uint64(tid) })
			if in == nil {
				// Seen here in about 1 of 1,000 sleeps, with every
				// family (tp_btf, raw_tp, classic tracepoint), while
				// nothing is lost and no program run is skipped
				// (recursion misses 0): the thread runs again with no
				// sched_switch naming it. Counted and bounded below.
				noSwitchIn++
				return true
			}
			dr := drS
			if tid == ctid {
				dr = drC
			}
			if in.TS < dr.TS {
				// Woken early (the reader shares its socket's wait queue
				// with write-space wake-ups, e.g. on the ACK of its own
				// send) and still on CPU when the data came: it did not
				// sleep through the round trip, and the join sees it on
				// CPU at data ready, as it was. Seen here once in about a
				// dozen runs of this test.
				return false
			}
			if !syscalls {
				return true
			}
			w := firstEvent(wakings, start(sender), in.TS, func(s *Event) bool { return s.Arg0 == uint64(tid) })
			if w == nil {
				// Woken before the sender's write began (a write-space
				// wake-up on the ACK of its own send) and on CPU only
				// after the data came: slow on a loaded or emulated
				// machine; counted with the wake-ups from elsewhere.
				w = lastEvent(wakings, out.TS, in.TS, func(s *Event) bool { return s.Arg0 == uint64(tid) })
			}
			switch {
			case w == nil:
				// Seen once in 3,839 sleeps while a second 'make test'
				// ran beside (cause not found: nothing was lost).
				// Counted and bounded below.
				noWaking++
				if noWaking <= 3 {
					t.Logf("round trip %d: %s slept and was switched in without a sched_waking", i, side)
				}
			case w.TID != sender.TID || w.TS > sender.TS:
				// Loopback: the receiver's stack, and so its wake-up,
				// normally runs in the sender's write (softirq on the
				// sender's CPU, inside its send).
				// Seen on Debian 6.1 under qemu: now and then the softirq
				// is left to ksoftirqd, or the receiver's own
				// release_sock runs the backlog; counted and bounded.
				wokenElsewhere++
				if wokenElsewhere <= 3 {
					t.Logf("round trip %d: %s woken by thread %d at %d, not inside the sender's write [%d, %d]", i, side, w.TID, w.TS, sender.Arg0, sender.TS)
				}
			default:
				wokenInSend++
			}
			return true
		}
		cFrom, sFrom := start(cw), start(sr)
		if !syscalls {
			// The server's previous send; none for the first round trip.
			sFrom = 0
			if i > 0 && len(rts[i-1].sw) > 0 {
				sFrom = rts[i-1].sw[0].TS
			}
		} else {
			cFrom = cr.Arg0
		}
		if checkWake("client", ctid, cFrom, cr, sw) {
			cSlept++
		}
		if sFrom > 0 && checkWake("server", stid, sFrom, sr, cw) {
			sSlept++
		}
	}
	t.Logf("client slept in %d, server in %d of %d round trips; %d of %d data-ready in the sender's write; %d of %d wakings by the sender inside its write; %d switch-ins missing",
		cSlept, sSlept, n, readyInSend, 2*n, wokenInSend, cSlept+sSlept, noSwitchIn)
	if bad > 0 {
		t.Errorf("%d of %d round trips fail the checks", bad, n)
	}
	if wokenElsewhere*200 > cSlept+sSlept {
		rateErrorf("%d of %d sleeps were woken outside the sender's write; want under 0.5%%", wokenElsewhere, cSlept+sSlept)
	}
	if noWaking*200 > cSlept+sSlept {
		rateErrorf("%d of %d sleeps in a read end with no sched_waking for the thread; want under 0.5%%", noWaking, cSlept+sSlept)
	}
	if noSwitchIn*200 > cSlept+sSlept {
		rateErrorf("%d of %d sleeps in a read end with no switch in before the read returns; want under 0.5%%", noSwitchIn, cSlept+sSlept)
	}
	// Across CPUs most reads sleep on an idle machine (1,822 and 1,888 of
	// 2,000 once); beside other load a side is often late to its read and
	// finds the data there (1,732 and 943 once, beside make vmtest).
	// A tenth still checks hundreds of wake-ups.
	if cross && (cSlept < n/10 || sSlept < n/10) {
		t.Errorf("cross-CPU: the client slept in %d and the server in %d of %d reads; want a tenth or more each (else wake-ups go unchecked)", cSlept, sSlept, n)
	}
}

// firstEvent is the first of the time-sorted evs in (from, to) that ok
// accepts.
func firstEvent(evs []Event, from, to uint64, ok func(*Event) bool) *Event {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].TS > from })
	for ; i < len(evs) && evs[i].TS < to; i++ {
		if ok(&evs[i]) {
			return &evs[i]
		}
	}
	return nil
}

// lastEvent is the last of the time-sorted evs in (from, to) that ok
// accepts.
func lastEvent(evs []Event, from, to uint64, ok func(*Event) bool) *Event {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].TS >= to }) - 1
	for ; i >= 0 && evs[i].TS > from; i-- {
		if ok(&evs[i]) {
			return &evs[i]
		}
	}
	return nil
}

func sumCounts(m map[Kind]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

// TestNothingLeftAttached: after Close, none of our programs or maps is
// loaded. Checked by id, with bpftool, so that other probes loaded on the
// machine at the same time do not matter.
func TestNothingLeftAttached(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("bpftool not installed")
	}
	p, err := Open(Config{Mode: testMode(), Ports: []uint16{1}})
	if err != nil {
		t.Fatal(err)
	}
	var progs, maps []string
	for _, c := range p.progs {
		for _, prog := range c.Programs {
			info, err := prog.Info()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := info.ID()
			progs = append(progs, fmt.Sprint(id))
		}
	}
	for _, m := range p.mapsByName {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		maps = append(maps, fmt.Sprint(id))
	}
	attached := 0
	for _, h := range p.Hooks() {
		if h.State == HookAttached {
			attached++
		}
	}
	if attached < 8 || len(progs) < attached {
		t.Fatalf("%d programs loaded for %d events attached", len(progs), attached)
	}
	shown := func(kind, id string) bool {
		return exec.Command("bpftool", kind, "show", "id", id).Run() == nil
	}
	for _, id := range progs {
		if !shown("prog", id) {
			t.Fatalf("bpftool does not show our program %s while open", id)
		}
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, id := range progs {
		if shown("prog", id) {
			t.Errorf("program %s still loaded after Close", id)
		}
	}
	for _, id := range maps {
		// The kernel frees a map from a work queue after its last
		// reference is dropped: give it a moment.
		gone := false
		for try := 0; try < 50 && !gone; try++ {
			runtime.GC() // the library unmaps a map's memory (.bss) when it is collected
			if gone = !shown("map", id); !gone {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !gone {
			out, _ := exec.Command("bpftool", "map", "show", "id", id).CombinedOutput()
			t.Errorf("map still exists after Close: %s", out)
		}
	}
	t.Logf("%d programs and %d maps gone after Close", len(progs), len(maps))
}

// TestRingsFull: with small per-CPU rings and nobody reading, the
// programs drop records and count them instead of overwriting unread
// ones; what the reader then finds is intact and in order on each CPU.
func TestRingsFull(t *testing.T) {
	requireRoot(t)
	r, run, stop := startPingPong(t, 0, 0)
	defer stop()
	p, err := Open(Config{Mode: testMode(), Ports: []uint16{r.sport}, RingSlots: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.TrackTID(uint32(r.ctid))
	p.TrackTID(uint32(r.stid))
	run(500) // ~4,500 records for 256 slots per CPU
	lost := p.Lost()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	last := map[uint16]uint64{}
	got, bad := 0, 0
	if err := p.Run(ctx, func(e *Event) {
		got++
		if _, known := kindNames[e.Kind]; !known || e.TS < last[e.CPU] {
			bad++
		}
		last[e.CPU] = e.TS
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("500 round trips: %d records read, %d lost", got, lost)
	if lost == 0 || got == 0 || got > 2*256 {
		t.Errorf("read %d, lost %d: want some of each, at most two full rings read", got, lost)
	}
	if bad > 0 {
		t.Errorf("%d records garbled or out of order on their CPU", bad)
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
		msg := err.Error()
		for _, want := range []string{string(m), "send_start", "sock_recv_length", "sk_data_ready"} {
			if !strings.Contains(msg, want) {
				t.Errorf("mode %s: error %q should name %s", m, err, want)
			}
		}
		// A kernel may refuse fentry with EPERM (lockdown, a BPF LSM) or
		// have kprobes compiled out (no kprobe_events): the cause must
		// stay reachable, not be flattened into text.
		if m == ModeFentry && strings.Contains(msg, "operation not permitted") && !errors.Is(err, unix.EPERM) {
			t.Errorf("mode %s: EPERM in the text but not in the chain: %v", m, err)
		}
		if strings.Contains(msg, "MEMLOCK") {
			t.Errorf("mode %s: misleading MEMLOCK hint (Open removed the limit): %v", m, err)
		}
		t.Logf("mode %s here: %v", m, err)
	}
}

// TestRingFallback: when nothing loads with the per-CPU rings (a kernel
// before 5.12 refuses their atomics in every program), Open retries on the
// BPF ring buffer and says why. Simulated by a scheduler event whose only
// candidate cannot load.
func TestRingFallback(t *testing.T) {
	requireRoot(t)
	full := hookTable
	defer func() { hookTable = full }()
	hookTable = []eventHooks{{event: "sched_switch", cands: []candidate{
		{famTPBTF, []attachment{{prog: "no_such_program", target: "sched_switch"}}, "tp_btf/sched_switch"}}}}
	p, err := Open(Config{Ports: []uint16{1}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := p.Ring(); got.Kind != RingBPF || !strings.HasPrefix(got.String(), "BPF ring buffer (per-CPU rings refused: ") || p.rd == nil || p.rings != nil {
		t.Errorf("Ring %q, reader %v, rings %v: want the BPF ring buffer with the reason", got, p.rd != nil, p.rings != nil)
	}
	hookTable = full
	q, err := Open(Config{Ports: []uint16{1}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if got := q.Ring(); got.Kind != RingPerCPU || got.String() != "per-CPU rings" {
		t.Errorf("Ring %q on this kernel, want per-CPU rings", got)
	}
}

// TestReaderKeepsUp: with small rings (16384 records per CPU) and a poll
// period of 1 s, a second of ping-pong paced at 10,000 round trips (about
// 80,000 records, filling a ring in ~200 ms) loses less than half: the
// reader shortens its wait as the rings fill, where a fixed 1 s period
// would keep one ring-full and lose about 80%.
//
// The wait policy is judged only when the reader was on time: a reader
// kept from its CPU for a good part of a ring's fill time loses records
// whatever it planned (a 'make test' beside 'make vmtest' once lost 58%
// so). ReaderLate says how late it was; an attempt late by over a third
// of the fill time is logged and repeated, up to three, and when none was
// on time the test skips saying so.
func TestReaderKeepsUp(t *testing.T) {
	requireRoot(t)
	const attempts, slots = 3, 16384
	for i := 1; i <= attempts; i++ {
		read, lost, late, span := readerUnderLoad(t, slots)
		fill := time.Duration(float64(span) * slots / float64(read+lost))
		if late > fill/3 {
			t.Logf("attempt %d: the reader began a drain %v late, over a third of the %v a ring takes to fill: its losses (%d of %d) say nothing of its waits; again",
				i, late.Round(time.Millisecond), fill.Round(time.Millisecond), lost, read+lost)
			continue
		}
		if lost*2 > read+lost {
			t.Errorf("lost %d of %d records though at most %v late (a ring fills in %v): the reader did not keep up",
				lost, read+lost, late.Round(time.Millisecond), fill.Round(time.Millisecond))
		}
		return
	}
	t.Skipf("the reader was kept from its CPU for over a third of a ring's fill time in each of %d attempts: the machine is too busy to judge its waits", attempts)
}

// readerUnderLoad runs a second of one-CPU ping-pong, paced at 10,000
// round trips a second, under a probe with rings of slots records and a
// 1 s poll period. It gives the records read and lost, how late the
// reader was at worst, and how long the load ran.
func readerUnderLoad(t *testing.T, slots uint32) (read, lost uint64, late, span time.Duration) {
	t.Helper()
	r, run, stop := startPingPong(t, 0, 0)
	defer stop()
	p, err := Open(Config{Mode: testMode(), Ports: []uint16{r.sport}, RingSlots: slots, Poll: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.TrackTID(uint32(r.ctid))
	p.TrackTID(uint32(r.stid))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, func(*Event) {}) }()
	const rate = 10_000 // round trips a second
	start := time.Now()
	trips := 0
	for span = time.Since(start); span < time.Second; span = time.Since(start) {
		if trips < int(span.Seconds()*rate) {
			run(100)
			trips += 100
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	read, lost, late = p.Records(), p.Lost(), p.ReaderLate()
	t.Logf("%d round trips in %v: %d records read, %d lost, per CPU %v; the reader began a drain up to %v late",
		trips, span.Round(time.Millisecond), read, lost, p.LostPerCPU(), late)
	if read < uint64(trips) {
		t.Fatalf("%d records for %d round trips", read, trips)
	}
	return read, lost, late, span
}
