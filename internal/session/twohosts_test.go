package session

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/affinity"
	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/clocksync"
	"github.com/volleyscope/volleyscope/internal/netns"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/loadgen"
)

// agentPort is where the tests' agents listen, in their own namespace.
const agentPort = 7470

// startAgent makes a namespace joined to ours by veth (the server's
// host) and starts `volleyscope agent` in it serving the threads server,
// with extra flags; it returns the agent's address and its token. The
// test's cleanup stops the agent and removes the namespace.
func startAgent(t *testing.T, extra ...string) (addr, token string, cmd *exec.Cmd) {
	t.Helper()
	return launchAgent(t, agentNS(t), append([]string{"--server", "threads", "--server-cpus", "0"}, extra...)...)
}

// agentNS makes the server's host: a namespace joined to ours by veth,
// removed when the test ends.
func agentNS(t *testing.T) *netns.Pair {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	pair, err := netns.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	return pair
}

// launchAgent starts `volleyscope agent` in pair's namespace with flags
// (what it serves), as startAgent describes.
func launchAgent(t *testing.T, pair *netns.Pair, flags ...string) (addr, token string, cmd *exec.Cmd) {
	t.Helper()
	addr = net.JoinHostPort(pair.NSAddr, fmt.Sprint(agentPort))
	token = fmt.Sprintf("test-token-%d-%d", os.Getpid(), time.Now().UnixNano())
	// A child takes its CPUs from the thread that forks it: a thread of
	// ours left confined by an earlier run would narrow the agent.
	if pl, err := affinity.Placement(os.Getpid()); err == nil {
		for _, th := range pl {
			if len(th.CPUs) < runtime.NumCPU() {
				t.Logf("thread %d of the test process may run on CPUs %v only", th.TID, th.CPUs)
			}
		}
	}
	argv := pair.Exec(append([]string{selfBin, "agent", "--listen", addr, "--token", token}, flags...))
	cmd = exec.Command(argv[0], argv[1:]...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	logs := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		logs <- b.String()
		_ = cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
		if t.Failed() {
			t.Logf("agent's log:\n%s", <-logs)
		}
	})
	// Bounded: the agent answers Hello once its server is up.
	for deadline := time.Now().Add(20 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := agent.Dial(ctx, addr, agent.Credentials{Token: token})
		cancel()
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent at %s did not answer: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return addr, token, cmd
}

// twoHostRun runs the default load against the agent's server.
func twoHostRun(t *testing.T, addr, token string, d time.Duration) *report.Results {
	t.Helper()
	r, err := Run(context.Background(), Config{Self: selfBin, Agent: addr, AgentCred: agent.Credentials{Token: token}, Probe: true,
		Load: loadgen.Options{Clients: 2, ClientCPUs: []int{1}, Duration: d, Warmup: 300 * time.Millisecond, CI: -1, P99CI: -1, Timeout: stallTimeout}}, Callbacks{Note: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkTwoHosts holds what every two-host run must show: every round
// trip joined across the two event sources, the sum check, the clock
// estimate, and no one-way time negative beyond its uncertainty.
func checkTwoHosts(t *testing.T, r *report.Results) *report.TwoHosts {
	t.Helper()
	bc := r.BreakdownCheck
	if bc == nil {
		t.Fatal("no breakdown check in the results")
	}
	wantJoined(t, r)
	if bc.SumWithinTolerance < 0.99 {
		t.Errorf("sum check holds for %.1f%% of joined round trips, want ≥ 99%%", 100*bc.SumWithinTolerance)
	}
	th := r.TwoHosts
	if th == nil {
		t.Fatal("no two_hosts section in the results")
	}
	if held := r.Run.Validity.OneWayHeld; held == nil || !*held {
		t.Errorf("one-way times did not hold within the clock estimate: %+v %+v", th.Request, th.Reply)
	}
	for _, w := range []report.OneWay{th.Request, th.Reply} {
		if w.Checked == 0 {
			t.Errorf("no one-way time checked against the estimate: %+v", w)
		}
	}
	t.Logf("joined %d of %d; client→server mean %.1f µs (min %.1f, ± %.1f), server→client mean %.1f µs (min %.1f, ± %.1f); clock %+v; agent %.0f ns/event, %.0f bytes/round trip",
		bc.Joined, bc.Joined+bc.Unjoined, th.Request.MeanNs/1e3, float64(th.Request.MinNs)/1e3, float64(th.Request.UncertaintyNs)/1e3,
		th.Reply.MeanNs/1e3, float64(th.Reply.MinNs)/1e3, float64(th.Reply.UncertaintyNs)/1e3, th.Clock, th.AgentNsPerEvent, th.BytesPerRTT)
	return th
}

// TestTwoHostsNetNS: the server and its agent in one namespace, the
// clients in ours, joined by veth: every round trip joins across the
// two event sources, and the one kernel's shared clock is estimated as
// such (an offset of 0 within the interval).
func TestTwoHostsNetNS(t *testing.T) {
	addr, token, _ := startAgent(t)
	r := twoHostRun(t, addr, token, 2*time.Second)
	th := checkTwoHosts(t, r)
	if off, h := th.Clock.OffsetFirstNs, th.Clock.HalfWidthMaxNs; off < -h || off > h {
		t.Errorf("one kernel, one clock: offset %d ns, want 0 within ±%d", off, h)
	}
}

// TestTwoHostsClockInjected: the agent's clock is made to run off the
// true one by an offset of seconds and a drift of 20 µs/s (its hidden
// --test-clock). Since both "hosts" share one kernel's clock, the true
// offset is known at every moment: the estimate must hold it within its
// reported interval all through the run, so the one-way times it gives
// are those of the same run read on the shared clock, within that
// interval; and the recovered drift must be the injected one.
func TestTwoHostsClockInjected(t *testing.T) {
	const offset, drift = -3_500_000_000, 20e-6 // ns, s/s
	addr, token, _ := startAgent(t, "--test-clock", "-3.5s,20us/s")
	r := twoHostRun(t, addr, token, 3*time.Second)
	truth := func(tA int64) int64 { return offset + int64(drift*float64(tA)) }
	c := checkClock(t, r, truth)
	if d := c.DriftNsPerS - drift*1e9; d < -5000 || d > 5000 {
		t.Errorf("drift %.0f ns/s recovered, %.0f injected", c.DriftNsPerS, drift*1e9)
	}
}

// TestTwoHostsClockSlewed: mid-run, the agent's clock changes rate (20
// µs/s gained, then 10 µs/s lost: a change of 30 µs/s, the most Huygens
// saw between servers), as NTP slews a clock: it never steps. The
// estimate follows it within its interval all through the run.
func TestTwoHostsClockSlewed(t *testing.T) {
	const offset, drift, slew = 2_000_000_000, 20e-6, -10e-6
	at := monotonicNow() + (4 * time.Second).Nanoseconds() // the agent starts, the warm-up, then some 3 s into the window
	addr, token, _ := startAgent(t, "--test-clock", fmt.Sprintf("2s,20us/s,-10us/s@%d", at))
	r := twoHostRun(t, addr, token, 6*time.Second)
	truth := func(tA int64) int64 {
		if tA > at {
			return offset + int64(drift*float64(at)+slew*float64(tA-at))
		}
		return offset + int64(drift*float64(tA))
	}
	c := checkClock(t, r, truth)
	if c.DriftMinNsPerS > slew*1e9/2 || c.DriftMaxNsPerS < drift*1e9/2 {
		t.Errorf("local drift fits %.0f to %.0f ns/s: the rate change (%.0f, then %.0f) not seen", c.DriftMinNsPerS, c.DriftMaxNsPerS, drift*1e9, slew*1e9)
	}
}

// checkClock holds a two-host run's clock estimate to the truth at every
// point kept: within the estimate's own interval. The one-way times
// differ from those read on the shared clock by exactly the estimate's
// miss, so they hold within that interval too.
func checkClock(t *testing.T, r *report.Results, truth func(int64) int64) clocksync.Report {
	t.Helper()
	th := checkTwoHosts(t, r)
	if len(th.ClockSeries) < 3 {
		t.Fatalf("clock series of %d points over the run, want several", len(th.ClockSeries))
	}
	var worst, worstH int64
	for _, p := range th.ClockSeries {
		miss := p.OffsetNs - truth(p.TNs)
		if max(miss, -miss) > worst {
			worst, worstH = max(miss, -miss), p.HalfWidthNs
		}
		if miss < -p.HalfWidthNs || miss > p.HalfWidthNs {
			t.Errorf("at %d ns: offset %d, the truth %d: off by %d ns, outside ±%d", p.TNs, p.OffsetNs, truth(p.TNs), miss, p.HalfWidthNs)
		}
	}
	c := th.Clock
	first := th.ClockSeries[0]
	t.Logf("true offset %d ns at the first point, estimated %d ± %d; drift %.0f ns/s recovered (local fits %.0f to %.0f); worst miss %d ns (of ± %d there) over %d points; half-width median %d, max %d ns",
		truth(first.TNs), first.OffsetNs, first.HalfWidthNs, c.DriftNsPerS, c.DriftMinNsPerS, c.DriftMaxNsPerS, worst, worstH, len(th.ClockSeries), c.HalfWidthMedianNs, c.HalfWidthMaxNs)
	return c
}

// TestTwoHostsAgentDies: the agent is killed mid-run. The run stops with
// an error that names the agent, keeps what was measured before, and
// leaves nothing of its own attached.
func TestTwoHostsAgentDies(t *testing.T) {
	addr, token, cmd := startAgent(t)
	go func() {
		time.Sleep(2500 * time.Millisecond) // past the warm-up, into the window
		_ = cmd.Process.Kill()
	}()
	began := time.Now()
	r, err := Run(context.Background(), Config{Self: selfBin, Agent: addr, AgentCred: agent.Credentials{Token: token}, Probe: true,
		Load: loadgen.Options{Clients: 2, ClientCPUs: []int{1}, Duration: 20 * time.Second, Warmup: 300 * time.Millisecond, CI: -1, P99CI: -1, Timeout: stallTimeout}}, Callbacks{})
	took := time.Since(began)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("run with its agent killed: error %v, want one naming the agent %s", err, addr)
	}
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
	if took > 15*time.Second {
		t.Errorf("the run went on %v after its agent died", took)
	}
	if r == nil || r.Latency.Count == 0 {
		t.Fatalf("nothing kept of what was measured before the agent died: %+v", r)
	}
	if n := bpfFDs(os.Getpid()); n != 0 {
		t.Errorf("this process holds %d BPF programs and maps after the run", n)
	}
}
