package agent

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
)

// pingPongServer answers loadgen's ping-pong protocol (a 4-byte
// integer, answered with its successor) on a loopback port until the
// test ends.
func pingPongServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var b [4]byte
				for {
					if _, err := io.ReadFull(c, b[:]); err != nil {
						return
					}
					binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+1)
					if _, err := c.Write(b[:]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}

func loadAgent(t *testing.T, allow string) *Client {
	t.Helper()
	p, err := ParseLoadPolicy([]string{allow})
	if err != nil {
		t.Fatal(err)
	}
	cred := Credentials{Token: testToken}
	addr := startAgent(t, WithLoad(&fakeHost{}, p), cred, ProtocolVersion)
	c := dialT(t, addr, cred)
	return c
}

// Two load agents drive one server to a fixed count of round trips per
// connection: the merged count is the sum of each agent's own, and the
// merged percentiles are those of the agents' own histograms pooled.
func TestLoadTwoAgentsMerge(t *testing.T) {
	srv := pingPongServer(t)
	agents := []*Client{loadAgent(t, "127.0.0.1"), loadAgent(t, "127.0.0.0/8")}
	opts := loadgen.Options{Addr: srv, Clients: 3, Requests: 2000, Warmup: -1, NoMSER: true, CI: -1, P99CI: -1, Duration: 20 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var began, halted bool
	sum, err := RunLoad(ctx, agents, opts, loadgen.Hooks{Began: func(time.Time, int64) { began = true }, Halting: func() { halted = true }})
	if err != nil {
		t.Fatal(err)
	}
	if !began || !halted {
		t.Errorf("hooks: began %v, halting %v", began, halted)
	}
	if sum.StopReason != loadgen.StopRequests {
		t.Errorf("stop reason %q, want %q", sum.StopReason, loadgen.StopRequests)
	}
	if len(sum.Hosts) != 2 || sum.Hosts[0].Clients != 2 || sum.Hosts[1].Clients != 1 {
		t.Fatalf("hosts %+v: want 2 and 1 connections", sum.Hosts)
	}
	pooled := stats.NewHistogram()
	var own int64
	for _, h := range sum.Hosts {
		own += h.RoundTrips
		pooled.Merge(h.Hist)
		if !h.ClientLoad.Known && h.ClientLoad.Unknown == "" {
			t.Errorf("host %s: no client load and no reason", h.Host)
		}
	}
	if got := sum.Measured + sum.Outside; got != own || own != 3*2000 {
		t.Errorf("merged %d round trips (%d measured), the agents' own %d, want 6000", got, sum.Measured, own)
	}
	if sum.Hist.TotalCount() != pooled.TotalCount() {
		t.Fatalf("merged histogram holds %d, pooled %d", sum.Hist.TotalCount(), pooled.TotalCount())
	}
	for _, q := range []float64{50, 90, 99, 99.9} {
		if got, want := sum.Hist.ValueAtQuantile(q), pooled.ValueAtQuantile(q); got != want {
			t.Errorf("p%g: merged %d, pooled %d", q, got, want)
		}
	}
	if sum.Hosts[0].Measured+sum.Hosts[1].Measured != sum.Measured {
		t.Errorf("hosts' measured %d + %d, merged %d", sum.Hosts[0].Measured, sum.Hosts[1].Measured, sum.Measured)
	}
}

// The merged stopping rule stops the agents: a run with a duration cap
// ends there, each agent stopped by the controller.
func TestLoadStopsAgents(t *testing.T) {
	srv := pingPongServer(t)
	agents := []*Client{loadAgent(t, "127.0.0.1"), loadAgent(t, "127.0.0.1")}
	opts := loadgen.Options{Addr: srv, Clients: 2, Warmup: 200 * time.Millisecond, NoMSER: true, CI: -1, P99CI: -1, Duration: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	sum, err := RunLoad(ctx, agents, opts, loadgen.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.StopReason != loadgen.StopDuration {
		t.Errorf("stop reason %q, want %q", sum.StopReason, loadgen.StopDuration)
	}
	for _, h := range sum.Hosts {
		if h.StopReason != StopController {
			t.Errorf("host %s stopped for %q, want %q", h.Host, h.StopReason, StopController)
		}
	}
	if span := sum.Window.Span(); span != time.Second {
		t.Errorf("measured %v, want the 1s cap", span)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("took %v: the agents were not stopped", el)
	}
	if m := sum.Hosts[0].Measured + sum.Hosts[1].Measured; m != sum.Measured {
		t.Errorf("hosts' measured add up to %d, merged %d", m, sum.Measured)
	}
	if sum.Measured == 0 || sum.ThroughputRPS <= 0 {
		t.Errorf("measured %d at %.0f/s", sum.Measured, sum.ThroughputRPS)
	}
	// The next load at once (vs, sweep): the agents are not busy with
	// this one, which they may still be letting go of.
	opts.Duration, opts.Warmup = 300*time.Millisecond, 100*time.Millisecond
	if _, err := RunLoad(ctx, agents, opts, loadgen.Hooks{}); err != nil {
		t.Errorf("a load right after the last: %v", err)
	}
}

// An agent refuses an address outside its --load-to, and an agent
// without --load-to refuses every load.
func TestLoadRefused(t *testing.T) {
	srv := pingPongServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := loadgen.Options{Addr: srv, Clients: 1, Duration: time.Second}
	_, err := RunLoad(ctx, []*Client{loadAgent(t, "10.0.0.0/8")}, opts, loadgen.Hooks{})
	if err == nil || !strings.Contains(err.Error(), "outside this agent's --load-to") {
		t.Errorf("outside --load-to: %v", err)
	}
	cred := Credentials{Token: testToken}
	plain := dialT(t, startAgent(t, &fakeHost{}, cred, ProtocolVersion), cred)
	_, err = RunLoad(ctx, []*Client{plain}, opts, loadgen.Hooks{})
	if err == nil || !strings.Contains(err.Error(), "runs no load") {
		t.Errorf("no --load-to: %v", err)
	}
	opts.Addr = "localhost:" + strings.Split(srv, ":")[1]
	_, err = RunLoad(ctx, []*Client{loadAgent(t, "127.0.0.1")}, opts, loadgen.Hooks{})
	if err == nil || !strings.Contains(err.Error(), "literal IP:port") {
		t.Errorf("a name: %v", err)
	}
	// One connection on two agents: the second sits the run out.
	sum, err := RunLoad(ctx, []*Client{loadAgent(t, "127.0.0.1"), loadAgent(t, "127.0.0.1")}, loadgen.Options{Addr: srv, Clients: 1, Requests: 100, Warmup: -1, NoMSER: true}, loadgen.Hooks{})
	if err != nil || len(sum.Hosts) != 1 || sum.Hosts[0].Clients != 1 || sum.Measured != 100 {
		t.Errorf("one connection on two agents: %v, %+v", err, sum)
	}
}

func TestParseLoadPolicy(t *testing.T) {
	for _, tc := range []struct {
		spec, addr string
		ok         bool
	}{
		{"10.0.0.0/8", "10.1.2.3:80", true},
		{"10.0.0.0/8", "11.1.2.3:80", false},
		{"10.0.0.5", "10.0.0.5:7000", true},
		{"10.0.0.5:7000", "10.0.0.5:7001", false},
		{"10.0.0.5:7000", "10.0.0.5:7000", true},
		{"10.0.0.0/24:7000", "10.0.0.9:7000", true},
		{"10.0.0.0/24:7000", "10.0.0.9:7001", false},
		{"[fd00::/8]:7000", "[fd00::1]:7000", true},
		{"::1", "[::1]:9", true},
		{"10.0.0.1,10.0.0.2", "10.0.0.2:1", true},
		{"127.0.0.1", "localhost:80", false},
	} {
		p, err := ParseLoadPolicy([]string{tc.spec})
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		if err := p.Allow(tc.addr); (err == nil) != tc.ok {
			t.Errorf("%s allows %s: %v, want %v", tc.spec, tc.addr, err, tc.ok)
		}
	}
	for _, bad := range []string{"", "nonsense", "10.0.0.0/33", "10.0.0.1:0", "[fd00::/8"} {
		if _, err := ParseLoadPolicy([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// An agent lost mid-run (its process gone: here its server stopped
// hard) stops the run with an error naming it, and what was merged
// before is kept.
func TestLoadAgentLost(t *testing.T) {
	srv := pingPongServer(t)
	p, err := ParseLoadPolicy([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cred := Credentials{Token: testToken}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{host: WithLoad(&fakeHost{}, p), protocol: ProtocolVersion, token: hashToken(testToken)}
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- s.serve(sctx, lis, cred) }()
	defer func() { stop(); <-served }()
	lost := dialT(t, lis.Addr().String(), cred)
	other := loadAgent(t, "127.0.0.1")
	// The agent stops serving: its streams are cut within seconds.
	time.AfterFunc(1500*time.Millisecond, stop)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := loadgen.Options{Addr: srv, Clients: 2, Warmup: 200 * time.Millisecond, NoMSER: true, CI: -1, P99CI: -1, Duration: 20 * time.Second}
	start := time.Now()
	sum, err := RunLoad(ctx, []*Client{lost, other}, opts, loadgen.Hooks{})
	if err == nil || !strings.Contains(err.Error(), lis.Addr().String()) {
		t.Fatalf("error %v: want one naming the lost agent %s", err, lis.Addr())
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Errorf("took %v to notice", el)
	}
	if sum == nil || sum.StopReason != loadgen.StopError || sum.Measured == 0 || sum.Hosts[0].Error == "" {
		t.Fatalf("summary %+v: want what was merged before, stopped by the error", sum)
	}
	t.Logf("%v; kept %d round trips", err, sum.Measured)
}
