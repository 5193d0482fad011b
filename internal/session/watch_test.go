package session

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/serverproc"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

// tripRow is one row of a requests.csv: a round trip's t0 and t1.
type tripRow struct{ t0, t1 int64 }

// readTrips reads the t0 and t1 of every round trip of a requests.csv,
// sorted by t0.
func readTrips(t *testing.T, path string) []tripRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if len(rows) == 0 || len(rows[0]) < 4 || rows[0][2] != "t0_ns" || rows[0][3] != "t1_ns" {
		t.Fatalf("%s: unexpected header %v", path, rows)
	}
	var out []tripRow
	for _, r := range rows[1:] {
		t0, err1 := strconv.ParseInt(r[2], 10, 64)
		t1, err2 := strconv.ParseInt(r[3], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, tripRow{t0, t1})
	}
	slices.SortFunc(out, func(a, b tripRow) int { return int(a.t0 - b.t0) })
	return out
}

// startBuiltin starts a built-in server of ours in a process of its own
// on a free port of 127.0.0.1, waits until it accepts, and stops it when
// t ends. It is started as volleyscope starts servers (serverproc): a
// test binary killed by its timeout takes the server with it.
func startBuiltin(t *testing.T, name string) int {
	t.Helper()
	return startBuiltinProc(t, name).Port
}

// startBuiltinProc is startBuiltin, giving the server's process.
func startBuiltinProc(t *testing.T, name string) *serverproc.Proc {
	t.Helper()
	srv, err := serverproc.Start(context.Background(), serverproc.Options{Argv: []string{selfBin, "serve", name, "-p", "{port}"}})
	if err != nil {
		t.Fatalf("server %s: %v", name, err)
	}
	t.Cleanup(func() { srv.Stop() })
	return srv
}

// benchClient is our bench client, started against a server of ours on
// port as a client the watch follows.
type benchClient struct {
	cmd  *exec.Cmd
	out  strings.Builder
	done chan error // the client's exit, once; put back by whoever reads it
}

// startBench starts `volleyscope bench` against 127.0.0.1:port with args
// and returns once it is connected. Another volleyscope run may hold the
// CPUs (a second probed run beside the tests): the client queues behind
// it (--wait), and the test is skipped, naming the holder, if it is not
// let in within clientWait. It is killed when t ends.
func startBench(t *testing.T, port int, args ...string) *benchClient {
	t.Helper()
	b := &benchClient{done: make(chan error, 1)}
	b.cmd = exec.Command(selfBin, append([]string{"bench", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--wait"}, args...)...)
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	t.Cleanup(func() { b.cmd.Process.Kill(); err := <-b.done; b.done <- err })
	for deadline := time.Now().Add(clientWait); !established(port); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-b.done:
			b.done <- err
			t.Fatalf("bench ended before it connected: %v\n%s", err, b.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Skipf("bench waited %v for CPUs another run holds: %s", clientWait, b.out.String())
		}
	}
	return b
}

// clientWait bounds startBench's wait for the CPUs.
const clientWait = 3 * time.Minute

// established says whether a TCP connection to or from port port is
// established in our namespace (from /proc/net/tcp, IPv4: the tests'
// servers listen on 127.0.0.1, or on a veth of a namespace of theirs).
func established(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && (strings.HasSuffix(f[1], want) || strings.HasSuffix(f[2], want)) && f[3] == "01" {
			return true
		}
	}
	return false
}

// TestWatchKnownClient: watch --client-pid on our own bench client against
// the threads server, set beside the client's own t0 and t1 (its
// requests.csv): per round trip the watched latency is within 2 µs of the
// client's for ≥ 99% of the round trips the watch saw, and the watch saw
// ≥ 99% of the client's round trips within its span. The watch ends when
// the client exits.
func TestWatchKnownClient(t *testing.T) {
	requireRoot(t)
	// The layout a user would choose (run's own): the server and the
	// watch on one CPU, the client on another (bench's default client
	// CPU is the last). Where the watch's threads and the server's shared
	// the client's CPU, they preempted it in the stretches between its
	// clock reads and its syscalls, which no hook sees: up to 2.6% of
	// round trips came out over the bound, on no fault of the watch's
	// timing.
	var serverCPUs []string
	var watchCPUs []int
	if runtime.NumCPU() >= 2 {
		serverCPUs, watchCPUs = []string{"--cpus", "0"}, []int{0}
	}
	srv, err := serverproc.Start(context.Background(), serverproc.Options{Argv: append([]string{selfBin, "serve", "threads", "-p", "{port}"}, serverCPUs...)})
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	t.Cleanup(func() { srv.Stop() })
	// The round trip runs from the client's send syscall to the
	// return of its receive: --syscalls times exactly that, and is held
	// to 2 µs of the client's own latency. Without the syscall hooks the
	// watch times from the TCP send start to the receive's return inside
	// the kernel, so the syscall's entry and exit path lies in the stretch
	// between the client's clock reads and what the watch sees, besides
	// the client's own code: on this VM that stretch took 1.2 µs at the
	// median, twice the syscall mode's 0.66 µs, and beside another make
	// test 1.6-2.7% of round trips came out more than 2 µs beyond its
	// 1st percentile (97.31-98.44%, two attempts). That mode is held to
	// 5 µs, and says why.
	//
	// The machine's noise also comes in bursts of seconds: a watch that
	// times wrong does so in every attempt, so where one falls short a
	// second attempt on a fresh client tells the two apart, and the
	// first's figure is logged.
	for _, syscalls := range []bool{true, false} {
		for attempt := 1; ; attempt++ {
			short := watchKnownClientOnce(t, srv.Port, watchCPUs, syscalls)
			if short == "" || t.Failed() {
				break
			}
			if attempt == 2 {
				t.Errorf("syscalls %v: %s", syscalls, short)
				break
			}
			t.Logf("syscalls %v, attempt %d: %s; again, on a fresh client", syscalls, attempt, short)
		}
	}
}

// watchKnownClientOnce is one attempt of TestWatchKnownClient: a bench
// client on port, watched with the watch on watchCPUs, with the syscall
// hooks or without. It fails t on anything but the agreement's share,
// which it returns (checkAgainstOwn).
func watchKnownClientOnce(t *testing.T, port int, watchCPUs []int, syscalls bool) (short string) {
	dir := t.TempDir()
	b := startBench(t, port, "--clients", "1", "--duration", "3s", "--warmup", "200ms", "--ci", "0", "--p99-ci", "0", "--out", filepath.Join(dir, "bench"), "-q")
	bench, benchDone, benchOut := b.cmd, b.done, &b.out

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := bpfFDs(os.Getpid())
	load := startOtherLoad()
	res, err := Watch(ctx, WatchConfig{ServerPort: port, ClientPIDs: []int{bench.Process.Pid}, Out: filepath.Join(dir, "watch"), CPUs: watchCPUs, Syscalls: syscalls}, Callbacks{})
	if res == nil || (err != nil && !errors.Is(err, ErrLostEvents)) {
		t.Fatalf("watch: %v", err)
	}
	if err != nil {
		t.Logf("watch: %v (other load on the machine: the round trips that lost events are not split)", err)
	}
	if after := bpfFDs(os.Getpid()); after != before {
		t.Errorf("%d BPF objects held after the watch, %d before: something stayed attached", after, before)
	}
	select {
	case err := <-benchDone:
		benchDone <- err
		if err != nil {
			t.Fatalf("bench: %v\n%s", err, benchOut.String())
		}
	case <-ctx.Done():
		t.Fatal("bench did not end")
	}
	load.stop() // the bench waited for: its CPU is this process's children's
	bc := res.BreakdownCheck
	if bc == nil || bc.Joined == 0 {
		t.Fatalf("nothing joined: %+v", bc)
	}
	wantJoined(t, res)
	if bc.SumWithinTolerance < 0.99 {
		t.Errorf("sum within tolerance %.4f, want ≥ 0.99", bc.SumWithinTolerance)
	}

	wider := ""
	if !syscalls {
		wider = "without the syscall hooks, the syscall's kernel entry and exit lie between the client's clock reads and the TCP events the watch times"
	}
	return checkAgainstOwn(t, filepath.Join(dir, "bench", "requests.csv"), filepath.Join(dir, "watch", "requests.csv"), res, load, wider)
}

// checkAgainstOwn sets a watch's round trips (its requests.csv) beside
// the watched bench client's own (its requests.csv): per round trip the
// watched latency is within 2 µs of the client's, beyond the difference
// every round trip has (below), for ≥ 99% of the round trips the watch
// saw, and the watch saw ≥ 99% of the client's round trips within its
// span. It fails t on the second; on the first it returns what fell
// short (short; "": nothing), for the caller to judge.
//
// Other tracers' BPF programs on our hooks (another probed run beside
// the tests; the watch names them in its warnings) run inside the
// stretch between the client's clock reads and the socket events the
// watch sees: then a watched latency is held to 5 µs of the client's
// instead of 2, and the neighbours are named. So it is where other
// processes used a quarter of the machine's CPU or more over the watch
// (load, otherLoadWiden; nil: not measured): the client's clock reads
// and its syscalls' entries stretch with the cache and interrupt
// traffic of the work beside it (the closing note of the round that
// added this has the failure), and that work is named. So it is where
// the caller names another probe of its own on this kernel (shared, not
// "").
func checkAgainstOwn(t *testing.T, ownCSV, watchedCSV string, res *report.Results, load *otherLoad, shared string) (short string) {
	t.Helper()
	var wider []string // why the bound is 5 µs, not 2
	if shared != "" {
		wider = append(wider, shared)
	}
	wider = append(wider, res2warnings(res)...)
	if wide, why := load.widen(); wide {
		wider = append(wider, why)
	} else {
		t.Log(why)
	}
	within := int64(2000)
	for _, why := range wider {
		within = 5000
		t.Logf("held to 5 µs, not 2: %s", why)
	}
	own := readTrips(t, ownCSV)
	watched := readTrips(t, watchedCSV)
	if len(watched) < 1000 {
		t.Fatalf("watched %d round trips, want ≥ 1000", len(watched))
	}
	// Each watched round trip lies inside one of the client's: its send
	// start after the client's t0, its last receive before its t1.
	var matched int
	var diffs []int64
	for _, w := range watched {
		i := sort.Search(len(own), func(i int) bool { return own[i].t0 > w.t0 }) - 1
		if i < 0 || w.t1 > own[i].t1 {
			continue
		}
		matched++
		diffs = append(diffs, (own[i].t1-own[i].t0)-(w.t1-w.t0))
	}
	if matched == 0 {
		t.Fatal("no watched round trip lies inside one of the client's own")
	}
	slices.Sort(diffs)
	q := func(p float64) int64 { return diffs[int(p*float64(len(diffs)-1))] }
	// Every round trip's client spends about the same time between its
	// clock reads and the socket events the watch sees (its syscalls'
	// entry and exit, our programs on them); that floor moves with the
	// machine's speed (this VM's slower states double it), so the bound is
	// on the difference beyond it, its 1st percentile: an absolute one
	// would judge the VM, not the watch.
	floor := max(q(0.01), 0)
	var close int
	for _, d := range diffs {
		if d >= -within && d <= floor+within {
			close++
		}
	}
	lo, hi := watched[0].t0, watched[len(watched)-1].t1
	var inSpan int
	for _, o := range own {
		if o.t0 >= lo && o.t1 <= hi {
			inSpan++
		}
	}
	t.Logf("watched %d round trips, %d inside one of the client's own (of %d in the watch's span); own − watched latency: p1 %d ns, p50 %d ns, p99 %d ns; within %d ns beyond p1: %.4f",
		len(watched), matched, inSpan, q(0.01), q(0.5), q(0.99), within, float64(close)/float64(matched))
	if missed, named, ok := shortOfShare(res, matched, inSpan); missed > 0 {
		if !ok {
			t.Errorf("matched %d watched round trips to the client's own, of %d in the span: want ≥ 99%%, or the rest within the %d records the watch says it lost or took late", matched, inSpan, named)
		} else {
			t.Logf("matched %d of %d: the %d short of 99%% are within the %d records the watch says it lost or took late", matched, inSpan, int(missed+0.5), named)
		}
	}
	if float64(close) < 0.99*float64(matched) {
		return fmt.Sprintf("%d of %d watched latencies within %d ns of the client's own beyond the difference's p1 (%d ns), want ≥ 99%%", close, matched, within, floor)
	}
	return ""
}

// shortOfShare is how far got of n falls short of MinJoinedShare of n,
// the records res says it lost or took late (Results.MissedRecords), and
// whether those cover the shortfall: the rule the watch tests hold a
// count to. Other load can hold the reader up (a CPU taken by another
// task, a disk flushing beside the tests); the watch names what that
// cost, and a test accepts that much short, no more.
func shortOfShare(res *report.Results, got, n int) (short float64, named int64, ok bool) {
	short = MinJoinedShare*float64(n) - float64(got)
	named = res.MissedRecords()
	return short, named, short <= float64(named)
}

// wantJoined: MinJoinedShare of the round trips a watch or run split joined, or
// the rest within what it says it lost (shortOfShare); the unjoined reasons
// and the results' warnings are logged either way.
func wantJoined(t *testing.T, res *report.Results) {
	t.Helper()
	bc := res.BreakdownCheck
	total := bc.Joined + bc.Unjoined
	_, named, ok := shortOfShare(res, bc.Joined, total)
	if !ok || bc.Joined == 0 {
		t.Errorf("joined %d of %d: want ≥ 99%%, or the rest within the %d records the probe says it lost or took late; unjoined %v; warnings %q; errors %q",
			bc.Joined, total, named, bc.UnjoinedReasons, res.Warnings, res.Errors)
		return
	}
	t.Logf("joined %d of %d (%d records lost or late); unjoined %v", bc.Joined, total, named, bc.UnjoinedReasons)
}

// res2warnings is res's warnings that name other tracers' BPF programs
// on the probe's hooks (probe.NeighbourWarnings).
func res2warnings(res *report.Results) []string {
	var out []string
	for _, w := range res.Warnings {
		if strings.HasPrefix(w, "other BPF programs run on") {
			out = append(out, w)
		}
	}
	return out
}

// TestWatchBadInput: what watch refuses before it attaches anything, each
// a *FlagError naming the flag.
func TestWatchBadInput(t *testing.T) {
	if os.Geteuid() != 0 {
		// Without privilege every case is refused for it, on the first flag.
		var fe *FlagError
		if _, err := Watch(context.Background(), WatchConfig{ServerPort: 1, ClientPIDs: []int{os.Getpid()}}, Callbacks{}); !errors.As(err, &fe) || !errors.Is(err, probe.ErrPermission) {
			t.Fatalf("unprivileged: %v, want a *FlagError wrapping probe.ErrPermission", err)
		}
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	free := unusedPort(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	// A process in a network namespace of its own.
	other := exec.Command("unshare", "--net", "sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	for ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", other.Process.Pid)); ; ns, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/net", other.Process.Pid)) {
		if self, _ := os.Readlink("/proc/self/ns/net"); ns != self {
			break // unshare has moved before exec'ing sleep
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		wc   WatchConfig
		flag string
	}{
		{"no server and no client", WatchConfig{}, "--server-port"},
		{"port out of range", WatchConfig{ServerPort: 70000, ClientPIDs: []int{os.Getpid()}}, "--server-port"},
		{"no listener", WatchConfig{ServerPort: free, ClientPIDs: []int{os.Getpid()}}, "--server-port"},
		{"client gone", WatchConfig{ServerPort: port, ClientPIDs: []int{gone.Process.Pid}}, "--client-pid"},
		{"server gone", WatchConfig{ServerPID: gone.Process.Pid, ClientPIDs: []int{os.Getpid()}}, "--server-pid"},
		{"server is client", WatchConfig{ServerPID: os.Getpid(), ClientPIDs: []int{os.Getpid()}}, "--client-pid"},
		{"client in another network namespace", WatchConfig{ServerPort: port, ClientPIDs: []int{other.Process.Pid}}, "--client-pid"},
		{"server in another network namespace", WatchConfig{ServerPID: other.Process.Pid, ClientPIDs: []int{os.Getpid()}}, "--server-pid"},
		{"negative duration", WatchConfig{ServerPort: port, ClientPIDs: []int{os.Getpid()}, Duration: -time.Second}, "--duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Watch(context.Background(), tc.wc, Callbacks{})
			var fe *FlagError
			if res != nil || !errors.As(err, &fe) || fe.Flag != tc.flag {
				t.Fatalf("got %v (%T), want a *FlagError on %s", err, err, tc.flag)
			}
			t.Log(err)
		})
	}
}

// TestWatchTrips: round trips from a connection's events, in time order,
// and a pipelined connection named and not split.
func TestWatchTrips(t *testing.T) {
	const port, cport = 9000, 40000
	ev := func(ts int64, k probe.Kind) probe.Event {
		return probe.Event{TS: uint64(ts), Kind: k, Lport: cport, Rport: port, TID: 7, Ret: 4}
	}
	for _, tc := range []struct {
		name      string
		evs       []probe.Event
		want      []loadgen.Record
		pipelined int
	}{
		{"ping-pong", []probe.Event{
			ev(100, probe.KindSendStart), ev(110, probe.KindSockSend), ev(200, probe.KindSockRecv),
			ev(300, probe.KindSendStart), ev(310, probe.KindSockSend), ev(350, probe.KindSockRecv), ev(400, probe.KindSockRecv),
			ev(500, probe.KindSendStart),
		}, []loadgen.Record{{T0: 100, T1: 200}, {T0: 300, T1: 400}}, 0},
		{"reply before we looked", []probe.Event{
			ev(50, probe.KindSockRecv), ev(100, probe.KindSendStart), ev(200, probe.KindSockRecv), ev(300, probe.KindSendStart),
		}, []loadgen.Record{{T0: 100, T1: 200}}, 0},
		{"one send in segments", []probe.Event{
			ev(100, probe.KindSendStart), ev(105, probe.KindSendStart), ev(110, probe.KindSockSend), ev(200, probe.KindSockRecv),
			ev(300, probe.KindSendStart),
		}, []loadgen.Record{{T0: 100, T1: 200}}, 0},
		{"pipelined", []probe.Event{
			ev(100, probe.KindSendStart), ev(110, probe.KindSockSend), ev(120, probe.KindSendStart), ev(130, probe.KindSockSend),
			ev(200, probe.KindSockRecv), ev(300, probe.KindSendStart), ev(310, probe.KindSockSend), ev(400, probe.KindSockRecv),
			ev(500, probe.KindSendStart),
		}, nil, 1},
		{"closed", []probe.Event{
			ev(100, probe.KindSendStart), ev(200, probe.KindSockRecv),
			{TS: 300, Kind: probe.KindSockState, Lport: cport, Rport: port, Arg0: 1, Arg1: tcpFinWait1},
		}, []loadgen.Record{{T0: 100, T1: 200}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWatchTrips(port)
			// Delivered out of order, as per-CPU rings drain.
			for i := len(tc.evs) - 1; i >= 0; i-- {
				w.event(&tc.evs[i])
			}
			w.event(&probe.Event{TS: 150, Kind: probe.KindSockRecv, Lport: port, Rport: cport}) // the server's side: not a client's
			fresh, trips := w.advance(1000, false)
			if len(fresh) != 1 || fresh[0].LocalPort != cport || fresh[0].TID != 7 {
				t.Errorf("connections %+v, want one from port %d", fresh, cport)
			}
			var got []loadgen.Record
			for _, tr := range trips {
				got = append(got, tr.r)
			}
			if !slices.Equal(got, tc.want) || w.pipelined != tc.pipelined {
				t.Errorf("round trips %v, pipelined %d; want %v, %d", got, w.pipelined, tc.want, tc.pipelined)
			}
		})
	}
}

// TestWatchTripsEnd: the last step takes nothing after the watch's end.
// A round trip that completes after it counts as in flight: the watch's
// own work after its end may have delayed it.
func TestWatchTripsEnd(t *testing.T) {
	const port, cport = 9000, 40000
	w := newWatchTrips(port)
	for _, e := range []struct {
		ts int64
		k  probe.Kind
	}{{100, probe.KindSendStart}, {200, probe.KindSockRecv}, {300, probe.KindSendStart}, {1200, probe.KindSockRecv}, {1300, probe.KindSendStart}} {
		w.event(&probe.Event{TS: uint64(e.ts), Kind: e.k, Lport: cport, Rport: port, TID: 7, Ret: 4})
	}
	_, trips := w.advance(1000, true)
	var got []loadgen.Record
	for _, tr := range trips {
		got = append(got, tr.r)
	}
	if want := []loadgen.Record{{T0: 100, T1: 200}}; !slices.Equal(got, want) || w.inFlightEnd != 1 {
		t.Errorf("round trips %v, %d in flight at the end; want %v, 1", got, w.inFlightEnd, want)
	}
}

// TestWarmTrips: the round trips that the probe's cost is divided by
// are those that completed while the kernel's statistics ran, however
// late they are handed over (a watch derives each a probe lag after it
// ends).
func TestWarmTrips(t *testing.T) {
	s := &probeSource{warmTrips: new(atomic.Int64)}
	s.tripDone(100) // while the statistics run
	s.statsEnd.Store(1000)
	s.tripDone(999)  // handed over after their end, completed before it
	s.tripDone(1000) // completed after
	if n := s.warmTrips.Load(); n != 2 {
		t.Errorf("%d round trips counted toward the warm-up's cost, want 2", n)
	}
}

// TestWatchPipelined: a client that sends two requests before it reads
// the two replies (this test's process, against the threads server) is
// reported as pipelined and none of its round trips is split.
func TestWatchPipelined(t *testing.T) {
	requireRoot(t)
	port := startBuiltin(t, "threads")
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pingPong(t, conn, 2)
	res, err := Watch(context.Background(), WatchConfig{ServerPort: port, ClientPIDs: []int{os.Getpid()}, Duration: 1500 * time.Millisecond}, Callbacks{})
	if cerr := client.stop(); cerr != nil {
		t.Fatalf("client: %v", cerr)
	}
	if res == nil {
		t.Fatalf("watch: %v", err)
	}
	var named bool
	for _, w := range res.Warnings {
		if strings.Contains(w, "pipelined") {
			named = true
			t.Log(w)
		}
	}
	if !named {
		t.Errorf("no warning names the pipelined connection: %v", res.Warnings)
	}
	if bc := res.BreakdownCheck; bc != nil && bc.Joined > 0 {
		t.Errorf("%d round trips of a pipelined connection split", bc.Joined)
	}
}

// TestWatchServerSide: watch with no client followed, beside our bench
// client against the threads server: each of the server's round trips
// (data ready of the request to the start of the reply's send) lies
// inside one of the client's own, ≥ 97% of the client's round trips in
// the watch's span have one, and ≥ 99% of them are split and sum to
// their length.
func TestWatchServerSide(t *testing.T) {
	requireRoot(t)
	port := startBuiltin(t, "threads")
	dir := t.TempDir()
	b := startBench(t, port, "--clients", "1", "--duration", "4s", "--warmup", "200ms", "--ci", "0", "--p99-ci", "0", "--out", filepath.Join(dir, "bench"), "-q")
	benchDone, benchOut := b.done, &b.out
	res, err := Watch(context.Background(), WatchConfig{ServerPort: port, Duration: 2 * time.Second, Out: filepath.Join(dir, "watch")}, Callbacks{})
	if res == nil || (err != nil && !errors.Is(err, ErrLostEvents)) {
		t.Fatalf("watch: %v", err)
	}
	if err := <-benchDone; err != nil {
		t.Fatalf("bench: %v\n%s", err, benchOut.String())
	}
	benchDone <- nil
	bc := res.BreakdownCheck
	if bc == nil || bc.Joined == 0 {
		t.Fatalf("nothing joined: %+v", bc)
	}
	split := float64(bc.Joined) / float64(bc.Joined+bc.Unjoined)
	own := readTrips(t, filepath.Join(dir, "bench", "requests.csv"))
	watched := readTrips(t, filepath.Join(dir, "watch", "requests.csv"))
	var inside int
	for _, w := range watched {
		i := sort.Search(len(own), func(i int) bool { return own[i].t0 > w.t0 }) - 1
		if i >= 0 && w.t1 <= own[i].t1 {
			inside++
		}
	}
	lo, hi := watched[0].t0, watched[len(watched)-1].t1
	var inSpan int
	for _, o := range own {
		if o.t0 >= lo && o.t1 <= hi {
			inSpan++
		}
	}
	t.Logf("server side: %d round trips, %d inside one of the client's (%d of the client's in the span); split %.4f, sum check %.4f; server response p50 %.2f µs; %d events lost",
		len(watched), inside, inSpan, split, bc.SumWithinTolerance, res.Latency.P50/1e3, res.LostEvents)
	if split < 0.99 || bc.SumWithinTolerance < 0.99 {
		t.Errorf("split %.4f, sum check %.4f: want ≥ 0.99 each; unjoined %v", split, bc.SumWithinTolerance, bc.UnjoinedReasons)
	}
	// Every server round trip lies inside a client's. Coverage needs every
	// event: a lost receive merges two requests into one.
	if float64(inside) < 0.99*float64(len(watched)) {
		t.Errorf("%d of %d server round trips inside the client's", inside, len(watched))
	}
	if res.LostEvents == 0 && float64(inside) < 0.97*float64(inSpan) {
		t.Errorf("%d server round trips for %d of the client's in the span, with no event lost", inside, inSpan)
	}
}

// TestWatchTripsServerSide: the server's round trips from its socket's
// events alone, and a second request that arrives after the server read
// the first and before it replied named as pipelining.
func TestWatchTripsServerSide(t *testing.T) {
	const port, cport = 9000, 40000
	ev := func(ts int64, k probe.Kind) probe.Event {
		return probe.Event{TS: uint64(ts), Kind: k, Lport: port, Rport: cport, TID: 3, Ret: 4}
	}
	for _, tc := range []struct {
		name      string
		evs       []probe.Event
		want      []loadgen.Record
		pipelined int
	}{
		{"one at a time", []probe.Event{
			ev(100, probe.KindDataReady), ev(120, probe.KindSockRecv), ev(150, probe.KindSendStart), ev(160, probe.KindSockSend),
			ev(300, probe.KindDataReady), ev(320, probe.KindSockRecv), ev(350, probe.KindSendStart), ev(355, probe.KindSendStart), ev(360, probe.KindSockSend),
			ev(500, probe.KindDataReady),
		}, []loadgen.Record{{T0: 100, T1: 150}, {T0: 300, T1: 350}}, 0},
		{"request in segments", []probe.Event{
			ev(100, probe.KindDataReady), ev(110, probe.KindDataReady), ev(120, probe.KindSockRecv), ev(150, probe.KindSendStart),
			ev(300, probe.KindDataReady),
		}, []loadgen.Record{{T0: 100, T1: 150}}, 0},
		{"reply in two sends", []probe.Event{
			ev(100, probe.KindDataReady), ev(120, probe.KindSockRecv), ev(150, probe.KindSendStart), ev(160, probe.KindSockSend),
			ev(170, probe.KindSendStart), ev(180, probe.KindSockSend), ev(300, probe.KindDataReady),
		}, []loadgen.Record{{T0: 100, T1: 170}}, 0},
		{"pipelined", []probe.Event{
			ev(100, probe.KindDataReady), ev(120, probe.KindSockRecv), ev(130, probe.KindDataReady), ev(150, probe.KindSendStart),
			ev(300, probe.KindDataReady),
		}, nil, 1},
		// A client that sends one request and closes (redis-cli), as the
		// probe recorded it: the listener's data ready (no client port),
		// the request, the reply, the client's FIN (a data ready), and the
		// server's close, whose last state seen is LAST_ACK.
		{"passive close", []probe.Event{
			{TS: 90, Kind: probe.KindDataReady, Lport: port},
			ev(100, probe.KindDataReady), ev(120, probe.KindSockRecv), ev(150, probe.KindSendStart), ev(160, probe.KindSockSend),
			{TS: 400, Kind: probe.KindSockState, Lport: port, Rport: cport, Arg0: 1, Arg1: 8},
			ev(401, probe.KindDataReady),
			{TS: 410, Kind: probe.KindSockState, Lport: port, Rport: cport, Arg0: 8, Arg1: tcpLastAck},
		}, []loadgen.Record{{T0: 100, T1: 150}}, 0},
		// The client port used again by a new socket, the old one's close
		// not seen: the old connection's last request (its FIN) must not
		// take the new one's reply.
		{"port reused", []probe.Event{
			{TS: 100, Kind: probe.KindDataReady, Lport: port, Rport: cport, SK: 1}, {TS: 120, Kind: probe.KindSockRecv, Lport: port, Rport: cport, SK: 1, Ret: 4},
			{TS: 150, Kind: probe.KindSendStart, Lport: port, Rport: cport, SK: 1}, {TS: 400, Kind: probe.KindDataReady, Lport: port, Rport: cport, SK: 1},
			{TS: 500, Kind: probe.KindDataReady, Lport: port, Rport: cport, SK: 2}, {TS: 520, Kind: probe.KindSockRecv, Lport: port, Rport: cport, SK: 2, Ret: 4},
			{TS: 550, Kind: probe.KindSendStart, Lport: port, Rport: cport, SK: 2}, {TS: 700, Kind: probe.KindDataReady, Lport: port, Rport: cport, SK: 2},
		}, []loadgen.Record{{T0: 100, T1: 150}, {T0: 500, T1: 550}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWatchTrips(port)
			w.serverSide = true
			defer func() {
				if tc.name == "passive close" && (len(w.conns) != 0 || w.connsSeen != 1) {
					t.Errorf("%d connections still followed of %d seen; want the closed one gone, and the listener not taken for one", len(w.conns), w.connsSeen)
				}
			}()
			for i := len(tc.evs) - 1; i >= 0; i-- {
				w.event(&tc.evs[i])
			}
			w.event(&probe.Event{TS: 140, Kind: probe.KindSockRecv, Lport: cport, Rport: port}) // a client's socket: not the server's
			fresh, trips := w.advance(1000, false)
			conns := 1
			if tc.name == "port reused" {
				conns = 2
			}
			if len(fresh) != conns || fresh[0].LocalPort != cport || fresh[0].TID != 0 {
				t.Errorf("connections %+v, want %d from client port %d with no client thread", fresh, conns, cport)
			}
			var got []loadgen.Record
			for _, tr := range trips {
				got = append(got, tr.r)
			}
			if !slices.Equal(got, tc.want) || w.pipelined != tc.pipelined {
				t.Errorf("round trips %v, pipelined %d; want %v, %d", got, w.pipelined, tc.want, tc.pipelined)
			}
		})
	}
}

// TestWatchInterrupted: a watch cancelled (Ctrl-C) keeps what it
// measured, and nothing of the probe stays held.
func TestWatchInterrupted(t *testing.T) {
	requireRoot(t)
	port := startBuiltin(t, "threads")
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pingPong(t, conn, 1)
	before := bpfFDs(os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(2500*time.Millisecond, cancel)
	res, err := Watch(ctx, WatchConfig{ServerPort: port, ClientPIDs: []int{os.Getpid()}}, Callbacks{})
	if cerr := client.stop(); cerr != nil {
		t.Fatalf("client: %v", cerr)
	}
	if res == nil || (err != nil && !errors.Is(err, ErrLostEvents)) {
		t.Fatalf("watch: %v", err)
	}
	if bc := res.BreakdownCheck; bc == nil || bc.Joined == 0 {
		t.Errorf("nothing kept from the interrupted watch: %+v", bc)
	}
	if after := bpfFDs(os.Getpid()); after != before {
		t.Errorf("%d BPF objects held after the watch, %d before", after, before)
	}
	if odd := nicedThreads(); len(odd) > 0 {
		t.Errorf("threads left with a changed priority after the watch: %v", odd)
	}
	var ended bool
	for _, w := range res.Warnings {
		ended = ended || strings.Contains(w, "ended because interrupted")
	}
	if !ended {
		t.Errorf("the summary does not say the watch was interrupted: %v", res.Warnings)
	}
}

// TestWatchSortRuns: ring batches (ascending runs) sort as one stable
// sort would, equal stamps in arrival order (Arg0 tells them apart).
func TestWatchSortRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		var evs []probe.Event
		for r := range rng.IntN(8) {
			ts := rng.Uint64N(20)
			for range rng.IntN(10) {
				ts += rng.Uint64N(3)
				evs = append(evs, probe.Event{TS: ts, Arg0: uint64(len(evs)), Arg1: uint64(r)})
			}
		}
		want := slices.Clone(evs)
		slices.SortStableFunc(want, func(a, b probe.Event) int { return cmp.Compare(a.TS, b.TS) })
		if got, _ := breakdown.SortRuns(slices.Clone(evs), nil); !slices.Equal(got, want) {
			t.Fatalf("SortRuns(%v) = %v, want %v", evs, got, want)
		}
	}
}

// pingClient is a ping-pong client in this process (pingPong).
type pingClient struct {
	n    atomic.Int64 // exchanges completed
	stop func() error
}

// pingPong runs a ping-pong client over conn in this process, on a
// thread of its own (one client thread, as a watch follows it), for a
// minute at most, and returns once it has completed an exchange: a
// watch started before the client runs would see nothing to watch. Each
// exchange is inFlight requests, each in a send of its own, then their
// replies (2 and up: a pipelining client). Its stop ends it and gives
// its error.
func pingPong(t *testing.T, conn net.Conn, inFlight int) *pingClient {
	t.Helper()
	p := &pingClient{}
	quit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		req, reps := make([]byte, 4), make([]byte, 4*inFlight)
		for n, deadline := uint32(1), time.Now().Add(time.Minute); time.Now().Before(deadline); {
			select {
			case <-quit:
				done <- nil
				return
			default:
			}
			for range inFlight {
				binary.BigEndian.PutUint32(req, n)
				n++
				if _, err := conn.Write(req); err != nil {
					done <- err
					return
				}
			}
			if _, err := io.ReadFull(conn, reps); err != nil {
				done <- err
				return
			}
			p.n.Add(1)
		}
		done <- nil
	}()
	p.stop = sync.OnceValue(func() error { close(quit); return <-done })
	for start := time.Now(); p.n.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the ping-pong client completed no exchange in 30 s (%v)", p.stop())
		}
	}
	return p
}
