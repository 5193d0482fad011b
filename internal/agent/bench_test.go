package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/probe"
)

// benchStream is the recorded stream the agent bench sends: a probed
// run of four connections to the epoll server, whose round trips and
// events are known.
const benchStream = "../../testdata/streams/default_epoll_4conns.rec.gz"

// replayEnv makes the test binary an agent process that serves a
// recording's server-side events (replayHost), so that its CPU time is
// the agent's alone: TestMain runs serveReplay instead of the tests.
const replayEnv = "VOLLEYSCOPE_TEST_AGENT_REPLAY"

func TestMain(m *testing.M) {
	if path := os.Getenv(replayEnv); path != "" {
		if err := serveReplay(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// serverSide is what an agent would send of a recording of a local run:
// the events of the server's side, neither the clients' sockets nor
// their threads.
func serverSide(in breakdown.Input) []probe.Event {
	clients := map[uint32]bool{}
	for _, c := range in.Conns {
		clients[uint32(c.TID)] = true
	}
	var out []probe.Event
	for _, e := range in.Events {
		if server, ok := e.OnSocketSide(in.ServerPort); ok {
			if server {
				out = append(out, e)
			}
			continue
		}
		if !clients[e.TID] {
			out = append(out, e)
		}
	}
	return out
}

// replayHost serves one "server" whose sessions deliver a recording's
// events over and over, as fast as the stream takes them, for repeat
// passes.
type replayHost struct {
	events []probe.Event
	repeat int
}

func (h *replayHost) Info() Info {
	return Info{Servers: []ServerInfo{{Name: "replay", Addr: "127.0.0.1:1", Port: 1}}}
}
func (h *replayHost) Now() int64    { return monotonicNow() }
func (h *replayHost) Note(s string) { fmt.Fprintln(os.Stderr, "replay agent:", s) }
func (h *replayHost) Open(context.Context, EventsRequest) (Session, error) {
	return &replaySession{h: h}, nil
}

type replaySession struct {
	h    *replayHost
	last int64
}

func (s *replaySession) Started() Started { return Started{Summary: "replay"} }
func (s *replaySession) Run(ctx context.Context, deliver func(*probe.Event)) error {
	var e probe.Event
	for range s.h.repeat {
		for i := range s.h.events {
			e = s.h.events[i]
			deliver(&e)
		}
	}
	s.last = monotonicNow()
	<-ctx.Done()
	return nil
}
func (s *replaySession) Watermark() int64      { return monotonicNow() }
func (s *replaySession) Mark(string) MarkReply { return MarkReply{} }
func (s *replaySession) SetTracing(bool) error { return nil }
func (s *replaySession) Close() (Final, error) { return Final{}, nil }

// serveReplay is the replaying agent process: it prints its address,
// then serves until its stdin closes.
func serveReplay(path string) error {
	in, err := breakdown.ReadRecording(path)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	fmt.Println(lis.Addr())
	return Serve(ctx, lis, Credentials{Token: testToken}, &replayHost{events: serverSide(in), repeat: benchRepeat})
}

// benchRepeat is how many times the replaying agent sends the recording.
const benchRepeat = 200

// agentCost is one session of the replaying agent.
type agentCost struct {
	events, bytes uint64
	cpuNs         int64
}

// replayOnce starts a replaying agent process and receives one session
// from it, compressed or not.
func replayOnce(t *testing.T, compress bool) agentCost {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path, _ := filepath.Abs(benchStream)
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), replayEnv+"="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the replaying agent said no address: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Dial(ctx, strings.TrimSpace(addr), Credentials{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	es, err := c.Events(ctx, EventsRequest{Compress: compress})
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(0)
	var got uint64
	for {
		m, err := es.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.Final != nil {
			if m.Final.Events != got {
				t.Fatalf("final account: %d events sent, %d received", m.Final.Events, got)
			}
			return agentCost{events: m.Final.Events, bytes: m.Final.Bytes, cpuNs: m.Final.AgentCPU}
		}
		if m.Batch != nil {
			got += uint64(len(m.Batch.Events))
			if want == 0 && len(m.Batch.Events) == 0 && got > 0 {
				// The replay is over once an empty batch follows events.
				want = got
				if err := es.Stop(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestBenchAgent measures what the agent costs per event sent (its
// process's CPU: encoding, compression, gRPC over loopback) and the
// bytes per event and per round trip on the wire, with and without
// compression, over a recorded stream. BENCH lines; make bench.
func TestBenchAgent(t *testing.T) {
	if os.Getenv("VOLLEYSCOPE_BENCH") != "1" {
		t.Skip("benchmark: run with 'make bench' (VOLLEYSCOPE_BENCH=1)")
	}
	in, err := breakdown.ReadRecording(benchStream)
	if err != nil {
		t.Fatal(err)
	}
	rtts := 0
	for _, c := range in.Conns {
		rtts += len(c.Records)
	}
	perRTT := float64(len(serverSide(in))) / float64(rtts)
	const rounds = 5
	for _, compress := range []bool{false, true} {
		var ns, bpe []float64
		for range rounds {
			c := replayOnce(t, compress)
			ns = append(ns, float64(c.cpuNs)/float64(c.events))
			bpe = append(bpe, float64(c.bytes)/float64(c.events))
		}
		slices.Sort(ns)
		slices.Sort(bpe)
		suffix := ""
		if compress {
			suffix = "_gzip"
		}
		fmt.Printf("BENCH agent_ns_per_event%s %.0f\n", suffix, ns[rounds/2])
		fmt.Printf("BENCH agent_bytes_per_event%s %.1f\n", suffix, bpe[rounds/2])
		fmt.Printf("BENCH agent_bytes_per_rtt%s %.0f\n", suffix, bpe[rounds/2]*perRTT)
		fmt.Printf("  agent%s: medians of %d sessions of %d server-side events (%.2f per round trip, %s); ns per event %.0f-%.0f\n",
			suffix, rounds, len(serverSide(in))*benchRepeat, perRTT, filepath.Base(benchStream), ns[0], ns[rounds-1])
	}
}
