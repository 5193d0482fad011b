package session

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/netns"
	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
)

// startLoadAgent runs 'volleyscope agent --load-to allow' in namespace p
// on p's address, until the test ends.
func startLoadAgent(t *testing.T, p *netns.Pair, token, allow string) string {
	t.Helper()
	addr := net.JoinHostPort(p.NSAddr, "7471")
	cmd := exec.Command("ip", "netns", "exec", p.NS, selfBin, "agent", "--listen", addr, "--token", token, "--load-to", allow)
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("agent in %s did not stop on SIGTERM", p.NS)
		}
		t.Logf("agent in %s:\n%s", p.NS, log.String())
	})
	for end := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(end) {
			t.Fatalf("agent at %s: %v\n%s", addr, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTwoLoadAgents: two namespaces, each running its own load agent,
// drive one server started here. The merged count equals the sum of the
// agents' own counts, the merged percentiles are those of the agents'
// own histograms pooled, each host's client load is reported, and
// nothing is left behind.
func TestTwoLoadAgents(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	// Pairs 1 and 2: pair 0 is --netns's, which another test may use.
	a, err := netns.CreateNth(1)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := netns.CreateNth(2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The server listens on a's host side; b reaches it through here.
	if err := b.RouteTo(a.HostAddr); err != nil {
		t.Fatal(err)
	}
	const token = "load-agents-test"
	agents := []string{startLoadAgent(t, a, token, a.HostAddr), startLoadAgent(t, b, token, a.HostAddr)}

	const perConn = 30000
	cfg := Config{Self: selfBin, Server: "epoll-lt", ServerHost: a.HostAddr, ServerCPUs: []int{0},
		LoadAgents: agents, AgentCred: agent.Credentials{Token: token},
		Load: loadgen.Options{Clients: 4, Requests: perConn, Warmup: -1, NoMSER: true, CI: -1, P99CI: -1, Duration: 20 * time.Second, Timeout: stallTimeout}}
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Run(ctx, cfg, Callbacks{})
	if err != nil {
		t.Fatal(err)
	}
	hosts := r.Run.LoadHosts
	if len(hosts) != 2 {
		t.Fatalf("load hosts %+v, want 2", hosts)
	}
	pooled := stats.NewHistogram()
	var own, measured int64
	for _, h := range hosts {
		if h.Clients != 2 || h.Error != "" || h.Hist == nil {
			t.Errorf("host %s: %d connections, error %q", h.Host, h.Clients, h.Error)
			continue
		}
		own += h.RoundTrips
		measured += h.Measured
		pooled.Merge(h.Hist)
		t.Logf("host %s: %d round trips, %.0f/s, client CPUs %.0f%% busy", h.Host, h.RoundTrips, h.ThroughputRPS, 100*h.ClientLoad.CPUsBusy)
	}
	l := r.Latency
	if l.Count != own || own != 4*perConn || measured != own {
		t.Errorf("merged %d round trips, the agents' own %d (hosts' measured %d), want %d", l.Count, own, measured, 4*perConn)
	}
	got := []float64{l.P50, l.P90, l.P99, l.P999}
	for i, q := range []float64{50, 90, 99, 99.9} {
		if want := float64(pooled.ValueAtQuantile(q)); got[i] != want {
			t.Errorf("p%g: merged %.0f ns, the agents' pooled %.0f ns", q, got[i], want)
		}
	}
	t.Logf("merged: %d round trips, %.0f/s, p50 %.1f µs, p99 %.1f µs", l.Count, r.ThroughputRPS, l.P50/1e3, l.P99/1e3)

	// A run the controller stops at its duration cap: the round trips
	// in and out of the merged window add up to the agents' own, the
	// hosts' shares to the measured, and each host's client load and the
	// server's cost are known.
	cfg.Load = loadgen.Options{Clients: 4, Warmup: 300 * time.Millisecond, NoMSER: true, CI: -1, P99CI: -1, Duration: time.Second, Timeout: stallTimeout}
	if r, err = Run(ctx, cfg, Callbacks{}); err != nil {
		t.Fatal(err)
	}
	own, measured = 0, 0
	for _, h := range r.Run.LoadHosts {
		own += h.RoundTrips
		measured += h.Measured
		if !h.ClientLoad.Known {
			t.Errorf("host %s: client load unknown: %s", h.Host, h.ClientLoad.Unknown)
		}
		if h.StopReason != agent.StopController {
			t.Errorf("host %s stopped for %q, want %q", h.Host, h.StopReason, agent.StopController)
		}
	}
	if got := r.Latency.Count + r.Run.Outside; got != own || measured != r.Latency.Count {
		t.Errorf("merged %d measured + %d outside, the agents' own %d; hosts' measured %d", r.Latency.Count, r.Run.Outside, own, measured)
	}
	if r.Run.StopReason != loadgen.StopDuration || r.Run.MeasuredNs != time.Second.Nanoseconds() {
		t.Errorf("stopped for %q after %d ns measured, want the 1s cap", r.Run.StopReason, r.Run.MeasuredNs)
	}
	if r.ServerCost == nil {
		t.Error("no server cost: the server started here is this run's")
	}
	t.Logf("capped: %d measured, %d outside, %.0f/s", r.Latency.Count, r.Run.Outside, r.ThroughputRPS)

	for _, p := range []*netns.Pair{a, b} {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}
	nsList, _ := exec.Command("ip", "netns", "list").Output()
	for _, p := range []*netns.Pair{a, b} {
		if strings.Contains(string(nsList), p.NS) {
			t.Errorf("namespace %s left behind", p.NS)
		}
		if _, err := os.Stat("/sys/class/net/" + p.HostIf); err == nil {
			t.Errorf("veth %s left behind", p.HostIf)
		}
	}
}
