package session

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
)

const agentTestToken = "agent-test-token"

// testAgent is a `volleyscope agent` process serving the threads server
// on 127.0.0.1, its clock shifted by offset (and a drift).
type testAgent struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	addr   string
	done   chan struct{}
}

const (
	testClockOffset = 5 * time.Second
	testClockSpec   = "5s,20us/s"
	testClockDrift  = 20e-6
)

func startTestAgent(t *testing.T) *testAgent {
	t.Helper()
	return startTestAgentWith(t, "--server", "threads", "--server-cpus", "0")
}

// startTestAgentWith starts an agent with these server flags.
func startTestAgentWith(t *testing.T, servers ...string) *testAgent {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	a := &testAgent{stderr: &syncBuffer{}, addr: addr, done: make(chan struct{})}
	args := append([]string{"agent", "--listen", addr, "--token", agentTestToken, "--test-clock", testClockSpec}, servers...)
	a.cmd = exec.Command(selfBin, args...)
	a.cmd.Stderr = a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("agent's stderr:\n%s", a.stderr.String())
		}
	})
	return a
}

// dial connects to the agent once it listens.
func (a *testAgent) dial(t *testing.T) *agent.Client {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := agent.Dial(ctx, a.addr, agent.Credentials{Token: agentTestToken})
		cancel()
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		select {
		case <-a.done:
			t.Fatalf("the agent exited: %s", a.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial the agent for 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bpfFDs counts the BPF programs and maps process pid holds.
func bpfFDs(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, fd := range fds {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if strings.HasPrefix(l, "anon_inode:bpf") {
			n++
		}
	}
	return n
}

// startNice is the main thread's priority as the tests start (after
// raisePriority).
var startNice string

// threadNice is a thread's nice value, as /proc/self/task/TID/stat gives it.
func threadNice(tid string) string {
	b, _ := os.ReadFile("/proc/self/task/" + tid + "/stat")
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 16 {
			return f[16] // the 19th field: nice
		}
	}
	return "?"
}

// nicedThreads lists this process's threads whose priority differs from
// the one the tests started with, after a wait of up to a second for
// threads that are ending: a stage that changes its thread's priority
// must let that thread end with it, not hand it back to Go's pool for a
// client to run on. The main thread is left out: Go parks it for good
// when a goroutine locked to it ends, rather than end the process's
// first thread, so it runs nothing again whatever its priority.
func nicedThreads() []string {
	var odd []string
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		odd = odd[:0]
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, e := range tasks {
			if n := threadNice(e.Name()); n != startNice && n != "?" && e.Name() != strconv.Itoa(os.Getpid()) {
				odd = append(odd, fmt.Sprintf("thread %s nice %s (%s at the start)", e.Name(), n, startNice))
			}
		}
		if len(odd) == 0 || time.Now().After(deadline) {
			return odd
		}
	}
}

func waitGone(t *testing.T, pids []int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, p := range pids {
		for running(p) {
			if time.Now().After(deadline) {
				syscall.Kill(p, syscall.SIGKILL)
				t.Fatalf("server process %d still runs %v after the agent went", p, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestAgentEndToEnd runs a real agent process (probe, threads server,
// the test clock) and drives its server from here: the events are the
// server side's, on the agent's shifted clock, and nothing stays
// attached after the session, nor running after the agent's SIGTERM.
func TestAgentEndToEnd(t *testing.T) {
	requireRoot(t)
	a := startTestAgent(t)
	c := a.dial(t)
	info := c.Info()
	if len(info.Servers) != 1 || info.Servers[0].Name != "threads" || info.Servers[0].Port == 0 || len(info.Servers[0].PIDs) == 0 ||
		!slices.Equal(info.Servers[0].CPUs, []int{0}) || info.Host.Kernel == "" || info.IOUring == "" {
		t.Fatalf("info: %+v", info)
	}
	srv := info.Servers[0]
	ctx := context.Background()
	t1, t2, t3, err := c.Ping(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// t2 is between t1 and t3 on the agent's clock, which is ahead by
	// the offset and what the drift added since CLOCK_MONOTONIC's zero.
	ahead := func(t int64) int64 { return testClockOffset.Nanoseconds() + int64(testClockDrift*float64(t)) }
	if t2 < t1+ahead(t1) || t2 > t3+ahead(t3)+1 {
		t.Errorf("ping: agent clock %v ahead, want %v", time.Duration(t2-(t1+t3)/2), time.Duration(ahead(t1)))
	}
	es, err := c.Events(ctx, agent.EventsRequest{Server: "threads"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe on the agent: %s", es.Started().Summary)
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	sum, err := loadgen.Run(lctx, loadgen.Options{Addr: srv.Addr, Clients: 2, Duration: time.Second, Warmup: -1, Requests: 3000, KeepGoing: true, Timeout: stallTimeout}, loadgen.Hooks{})
	cancel()
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := es.Mark("load-done"); err != nil {
		t.Fatal(err)
	}
	if err := es.Stop(); err != nil {
		t.Fatal(err)
	}
	end := monotonicNow()
	var events, clientSide, sendStarts int
	var marks []agent.MarkReply
	var fin *agent.Final
	var minTS, maxTS uint64
	for {
		m, err := es.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Mark != nil:
			marks = append(marks, *m.Mark)
		case m.Final != nil:
			fin = m.Final
		case m.Batch != nil:
			for i := range m.Batch.Events {
				e := &m.Batch.Events[i]
				events++
				if server, ok := e.OnSocketSide(srv.Port); ok && !server {
					clientSide++
				}
				if e.Kind == probe.KindSendStart {
					sendStarts++
				}
				if minTS == 0 || e.TS < minTS {
					minTS = e.TS
				}
				maxTS = max(maxTS, e.TS)
			}
		}
	}
	if fin == nil || fin.Events != uint64(events) || fin.Probe == nil || fin.Bytes == 0 {
		t.Fatalf("final account %+v for %d events received", fin, events)
	}
	if clientSide > 0 {
		t.Errorf("%d events of the clients' sockets were sent; the agent keeps the server side", clientSide)
	}
	if int64(sendStarts) < (sum.Measured+sum.Outside)/2 {
		t.Errorf("%d send starts for %d round trips", sendStarts, (sum.Measured + sum.Outside))
	}
	// The events are on the agent's clock: ahead of ours by the offset
	// and the drift since CLOCK_MONOTONIC's zero (over a second on a
	// machine up 14 hours), a second of slack at the end.
	lo, hi := t1+ahead(t1), end+ahead(end)+time.Second.Nanoseconds()
	if int64(minTS) < lo || int64(maxTS) > hi {
		t.Errorf("events from %d to %d; want them within %d to %d (our clock plus %v and the drift)", minTS, maxTS, lo, hi, testClockOffset)
	}
	if len(marks) != 1 || marks[0].Err != "" || marks[0].Cost.CPUNs == 0 {
		t.Errorf("marks: %+v", marks)
	}
	t.Logf("%d round trips; %d events, %d batches, %d bytes: %.1f bytes/event; agent CPU %v (%.0f ns/event), lost %d",
		(sum.Measured + sum.Outside), events, fin.Batches, fin.Bytes, float64(fin.Bytes)/float64(events), time.Duration(fin.AgentCPU), float64(fin.AgentCPU)/float64(events), fin.Lost)

	pid := a.cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for bpfFDs(pid) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the agent holds %d BPF programs and maps 5s after the session ended", bpfFDs(pid))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A controller that goes mid-session leaves nothing attached either.
	gctx, gone := context.WithCancel(ctx)
	es, err = c.Events(gctx, agent.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if bpfFDs(pid) == 0 {
		t.Error("no BPF program in the agent during its second session")
	}
	if _, err := es.Recv(); err != nil {
		t.Fatal(err)
	}
	gone()
	deadline = time.Now().Add(5 * time.Second)
	for bpfFDs(pid) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the agent holds %d BPF programs and maps 5s after its controller went", bpfFDs(pid))
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent still runs 10s after SIGTERM")
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("agent exit status %d after SIGTERM", code)
	}
	waitGone(t, srv.PIDs, 5*time.Second)
}

// TestAgentKilledMidRun: an agent that was sent garbage serves the next
// client; its SIGKILL mid-stream is an error on the controller's side
// within seconds, and its server goes with it.
func TestAgentKilledMidRun(t *testing.T) {
	requireRoot(t)
	a := startTestAgent(t)
	a.dial(t).Close()
	// Garbage on its port first: the agent serves the next client.
	if g, err := net.Dial("tcp", a.addr); err == nil {
		g.Write([]byte("\x16\x03\x01garbage, not HTTP/2\r\n\r\n"))
		g.Close()
	}
	c := a.dial(t)
	srv := c.Info().Servers[0]
	es, err := c.Events(context.Background(), agent.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Recv(); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Kill()
	start := time.Now()
	for {
		_, err := es.Recv()
		if err == nil {
			continue
		}
		if took := time.Since(start); took > 5*time.Second || !strings.Contains(err.Error(), "connection lost mid-run") {
			t.Errorf("after %v: %v", took, err)
		} else {
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
		}
		break
	}
	waitGone(t, srv.PIDs, 10*time.Second)
}

// TestAgentFollowsRunning: an agent given --pid or --port follows a
// server it did not start, and leaves it running when it stops.
func TestAgentFollowsRunning(t *testing.T) {
	requireRoot(t)
	srv := startBuiltinProc(t, "threads")
	port := srv.Port
	for _, by := range [][]string{{"--pid", fmt.Sprint(srv.PID())}, {"--port", fmt.Sprint(port)}} {
		t.Run(by[0], func(t *testing.T) {
			a := startTestAgentWith(t, by...)
			info := a.dial(t).Info()
			if len(info.Servers) != 1 || int(info.Servers[0].Port) != port || !slices.Contains(info.Servers[0].PIDs, srv.PID()) {
				t.Fatalf("info: %+v; want port %d, pid %d", info, port, srv.PID())
			}
			a.cmd.Process.Signal(syscall.SIGTERM)
			<-a.done
			if !running(srv.PID()) {
				t.Fatal("the agent stopped a server it did not start")
			}
		})
	}
}

func TestParseClockTransform(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset time.Duration
		drift  float64
		bad    bool
	}{
		{in: "5s,20us/s", offset: 5 * time.Second, drift: 20e-6},
		{in: "-3.5s, -1us/s", offset: -3500 * time.Millisecond, drift: -1e-6},
		{in: "1ms", offset: time.Millisecond},
		{in: "5s,20us", bad: true},
		{in: "5s,1s/s", bad: true},
		{in: "x", bad: true},
		{in: "", bad: true},
	} {
		c, err := ParseClockTransform(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && (c.Offset != tc.offset || math.Abs(c.Drift-tc.drift) > 1e-12)) {
			t.Errorf("%q: %+v, %v", tc.in, c, err)
		}
	}
	c := ClockTransform{Offset: time.Second, Drift: 20e-6}
	if got := c.shift(1e9); got != 1e9+20e3 {
		t.Errorf("shift at 1 s: %d", got)
	}
}
