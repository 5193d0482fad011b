package session

import (
	"context"
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// TestTraceWindows: a sampled watch reports the round trips wholly inside
// a window after its margin, drops and counts the ones across an edge or
// in the margin, and does not take a request left in flight at a
// window's end for a second one in flight at the next window's start,
// nor for one sent after this host's probe was switched on and before
// the window opened (the agent's switch comes between).
func TestTraceWindows(t *testing.T) {
	const port, cport = 9000, 40000
	ms := time.Millisecond.Nanoseconds()
	ev := func(at int64, k probe.Kind) probe.Event {
		return probe.Event{TS: uint64(at * ms), Kind: k, Lport: cport, Rport: port, TID: 7, Ret: 4}
	}
	w := newWatchTrips(port)
	w.windows.open(0)
	w.windows.close(1000 * ms)
	w.windows.open(4000 * ms)
	evs := []probe.Event{
		ev(5, probe.KindSendStart), ev(6, probe.KindSockRecv), // in the first window's margin
		ev(20, probe.KindSendStart), ev(21, probe.KindSockRecv),
		ev(30, probe.KindSendStart), ev(31, probe.KindSockRecv),
		ev(995, probe.KindSendStart), ev(996, probe.KindSockSend), // its reply came while off
		ev(3995, probe.KindSendStart), ev(3996, probe.KindSockSend), // this host's probe on, the window not yet open
		ev(4001, probe.KindSockRecv),                                // the reply to it
		ev(4005, probe.KindSendStart), ev(4006, probe.KindSockRecv), // in the second window's margin
		ev(4020, probe.KindSendStart), ev(4021, probe.KindSockRecv),
		ev(4030, probe.KindSendStart), ev(4031, probe.KindSockRecv),
		ev(4040, probe.KindSendStart), ev(4041, probe.KindSockRecv), // complete by the idle rule, inside the window
		ev(4950, probe.KindSendStart), ev(4951, probe.KindSockRecv), // the idle rule would end it after the window
	}
	for i := range evs {
		w.event(&evs[i])
	}
	w.windows.close(5000 * ms)
	_, trips := w.advance(6000*ms, false)
	var got []loadgen.Record
	for _, tr := range trips {
		got = append(got, tr.r)
	}
	want := []loadgen.Record{{T0: 20 * ms, T1: 21 * ms}, {T0: 30 * ms, T1: 31 * ms}, {T0: 4020 * ms, T1: 4021 * ms}, {T0: 4030 * ms, T1: 4031 * ms}, {T0: 4040 * ms, T1: 4041 * ms}}
	if !slices.Equal(got, want) {
		t.Errorf("round trips %v, want %v", got, want)
	}
	if w.pipelined != 0 {
		t.Errorf("%d connections pipelined, want none: a request left in flight when tracing went off is not a second one", w.pipelined)
	}
	// Dropped: the margins' two, the one in flight at the off switch,
	// the one in flight when the second window opened, and the one the
	// idle rule would end past the window.
	if w.windows.edge != 5 {
		t.Errorf("%d round trips dropped at an edge, want 5", w.windows.edge)
	}
}

// TestTraceWindowsKeep: without windows (an unsampled watch) everything
// is kept; with them, only what lies inside one after its margin.
func TestTraceWindowsKeep(t *testing.T) {
	var tw traceWindows
	if !tw.keep(1, 2) || tw.edge != 0 {
		t.Fatal("an unsampled watch dropped a round trip")
	}
	m := traceMargin.Nanoseconds()
	tw.open(1000)
	for _, tc := range []struct {
		t0, done int64
		keep     bool
	}{
		{500, 1500 + m, false},     // began before the window
		{1000, 1500 + m, false},    // in the margin
		{1000 + m, 2000 + m, true}, // inside, the window still open
		{1000 + m, math.MaxInt64, true},
	} {
		if got := tw.keep(tc.t0, tc.done); got != tc.keep {
			t.Errorf("keep(%d, %d) = %v, want %v", tc.t0, tc.done, got, tc.keep)
		}
	}
	tw.close(1000 + 2*m)
	if tw.keep(1000+m, 1000+3*m) {
		t.Error("kept a round trip known complete after its window closed")
	}
}

// TestWatchStart: an unsampled watch drops the server's exchange begun
// before its start (its data ready seen by socket before the server's
// threads were followed, its receive and reply after), which it took for
// one round trip from that data ready to the first send it saw.
func TestWatchStart(t *testing.T) {
	const port, cport, ms = 9000, 40000, int64(time.Millisecond)
	w := newWatchTrips(port)
	w.serverSide = true
	newTraceSampler(1, 100*ms, 100*ms, nil, w)
	for _, e := range []struct {
		ts int64
		k  probe.Kind
	}{
		{90 * ms, probe.KindDataReady}, {120 * ms, probe.KindSockRecv}, {125 * ms, probe.KindSendStart},
		{150 * ms, probe.KindDataReady}, {150*ms + ms/2, probe.KindSockRecv}, {151 * ms, probe.KindSendStart},
		{170 * ms, probe.KindDataReady},
	} {
		w.event(&probe.Event{TS: uint64(e.ts), Kind: e.k, Lport: port, Rport: cport, TID: 3, Ret: 4})
	}
	_, trips := w.advance(200*ms, false)
	var got []loadgen.Record
	for _, tr := range trips {
		got = append(got, tr.r)
	}
	if want := []loadgen.Record{{T0: 150 * ms, T1: 151 * ms}}; !slices.Equal(got, want) {
		t.Errorf("round trips %v, want %v", got, want)
	}
}

// TestTraceSampler: share 0.25 traces 1 s in 4, switching at the ticks,
// the first window 1 s longer for the warm-up, and tells the share of the
// measured time traced.
func TestTraceSampler(t *testing.T) {
	var sets []bool
	one := newWatchTrips(9000)
	if newTraceSampler(1, 500, 500, nil, one) != nil {
		t.Fatal("a share of 1 sampled")
	}
	if ws := one.windows.wins; len(ws) != 1 || ws[0].on != 500 || ws[0].off != math.MaxInt64 {
		t.Errorf("a share of 1: windows %+v, want one from the start on", ws)
	}
	w := newWatchTrips(9000)
	s := newTraceSampler(0.25, 0, time.Second.Nanoseconds(), func(on bool) error { sets = append(sets, on); return nil }, w)
	if s.off != 3*time.Second {
		t.Fatalf("off stretch %v, want 3s", s.off)
	}
	step := (100 * time.Millisecond).Nanoseconds()
	var now int64
	s.clock = func() int64 { return now }
	for ; now <= 9*time.Second.Nanoseconds(); now += step {
		if err := s.tick(now); err != nil {
			t.Fatal(err)
		}
	}
	if len(sets) < 3 || sets[0] || !sets[1] || sets[2] {
		t.Errorf("switches %v, want off, on, off, ...", sets)
	}
	if s.windows != 3 || len(w.windows.wins) != 3 {
		t.Errorf("%d windows (%d kept), want 3", s.windows, len(w.windows.wins))
	}
	// The switches fall on ticks, after the stretch's end: the share
	// traced is near a quarter, not exactly.
	if sh := s.tracedShare(now); sh < 0.2 || sh > 0.4 {
		t.Errorf("traced share %v, want about 0.25", sh)
	}
}

// TestWatchSampled: a watch with --trace-share 0.25 on our bench client
// against the threads server splits ≥ 99% of the round trips it hands
// over, with the sum check, and its probe writes about a quarter of the
// records per second that an unsampled watch of the same traffic writes
// (relative, from the same test, loosely: the switches fall on the
// watch's ticks).
func TestWatchSampled(t *testing.T) {
	requireRoot(t)
	port := startBuiltin(t, "threads")
	b := startBench(t, port, "--clients", "1", "--duration", "20s", "--warmup", "200ms", "--ci", "0", "--p99-ci", "0", "-q")
	watch := func(share float64, d time.Duration) (*report.Results, float64) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		res, err := Watch(ctx, WatchConfig{ServerPort: port, ClientPIDs: []int{b.cmd.Process.Pid}, Duration: d, TraceShare: share}, Callbacks{})
		if res == nil || (err != nil && !errors.Is(err, ErrLostEvents)) {
			t.Fatalf("watch --trace-share %g: %v", share, err)
		}
		if res.Probe == nil {
			t.Fatalf("watch --trace-share %g: no probe section", share)
		}
		return res, float64(res.Probe.Events) / time.Since(start).Seconds()
	}
	all, allRate := watch(1, 4*time.Second)
	if all.TraceSampling != nil {
		t.Errorf("an unsampled watch reports sampling: %+v", all.TraceSampling)
	}
	// The hooks' links, counted through the sampled watch: off, the
	// probe's and the capture's hooks are detached, all but three.
	links := countLinks("self")
	res, rate := watch(0.25, 8*time.Second)
	if lc := linkRange(links()); lc[1]-lc[0] < 10 {
		t.Errorf("the hooks' links ranged from %d to %d over the sampled watch: the off stretches did not detach its hooks", lc[0], lc[1])
	} else {
		t.Logf("the hooks' links ranged from %d (off) to %d (on)", lc[0], lc[1])
	}
	// The payload capture rests once the connection's first sends are
	// read, and a later window does not bring it back: attached for
	// about the first window, under the traced share.
	if pc := res.PayloadCapture; pc == nil || pc.AttachedShare >= 0.3 {
		t.Errorf("payload capture %+v: want it attached under 0.3 of the watch (resting from the first window on)", pc)
	} else {
		t.Logf("payload capture attached %.3f of the watch, %d rests", pc.AttachedShare, pc.Rests)
	}
	ts := res.TraceSampling
	if ts == nil || ts.Share != 0.25 || ts.Windows < 2 {
		t.Fatalf("sampling %+v, want share 0.25 over ≥ 2 windows", ts)
	}
	bc := res.BreakdownCheck
	if bc == nil || bc.Joined < 1000 {
		t.Fatalf("joined too few round trips: %+v", bc)
	}
	split := float64(bc.Joined) / float64(bc.Joined+bc.Unjoined)
	t.Logf("sampled: %d joined, split %.4f, sum within tolerance %.4f, %d dropped at edges, traced %.3f of the measured time; records/s %.0f sampled, %.0f unsampled (ratio %.3f)",
		bc.Joined, split, bc.SumWithinTolerance, ts.EdgeDropped, ts.TracedShare, rate, allRate, rate/allRate)
	if split < 0.99 || bc.SumWithinTolerance < 0.99 {
		t.Errorf("split %.4f (want ≥ 0.99), sum within tolerance %.4f (want ≥ 0.99); unjoined %v", split, bc.SumWithinTolerance, bc.UnjoinedReasons)
	}
	// The records follow the traced share of the watch (its first window
	// is a second longer) and the load, which other work on the machine
	// moves between the two watches: the sampled watch must write well
	// under the unsampled one's rate, and some.
	if r := rate / allRate; r < 0.05 || r > 0.75 {
		t.Errorf("the sampled watch's probe wrote %.3f of the unsampled one's records per second (traced %.3f of its time), want well under 1", r, ts.TracedShare)
	}
}

// countLinks samples process pid's hook links (hookLinksOf) every 10 ms
// until the function it returns is called, which gives the counts seen
// in turn, each run of one count once.
func countLinks(pid string) func() []int {
	quit := make(chan struct{})
	out := make(chan []int, 1)
	go func() {
		var seen []int
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-quit:
				out <- seen
				return
			case <-tk.C:
			}
			if n := hookLinksOf(pid); n > 0 && (len(seen) == 0 || seen[len(seen)-1] != n) {
				seen = append(seen, n)
			}
		}
	}()
	return sync.OnceValue(func() []int { close(quit); return <-out })
}

// linkRange is the least and the most of counts; zero for none.
func linkRange(counts []int) [2]int {
	if len(counts) == 0 {
		return [2]int{}
	}
	return [2]int{slices.Min(counts), slices.Max(counts)}
}

// hookLinks counts this process's BPF links and perf events: the probe's
// attached hooks (a tracepoint's link may hold a perf event besides).
func hookLinks() int { return hookLinksOf("self") }

// hookLinksOf is hookLinks for process pid ("self", or a number).
func hookLinksOf(pid string) int {
	fds, _ := os.ReadDir("/proc/" + pid + "/fd")
	n := 0
	for _, fd := range fds {
		l, _ := os.Readlink("/proc/" + pid + "/fd/" + fd.Name())
		if strings.HasPrefix(l, "anon_inode:bpf_link") || strings.HasPrefix(l, "anon_inode:[perf_event]") {
			n++
		}
	}
	return n
}
