package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/probe"
)

const testToken = "s3cret-token"

// fakeHost serves one server, "echo", whose sessions make an event every
// tick, numbered in Arg0, stamped with the fake clock.
type fakeHost struct {
	offset int64 // the fake clock's offset from CLOCK_MONOTONIC
	every  time.Duration
	runErr error // what a session's Run fails with at once, if set

	mu       sync.Mutex
	opened   int
	closed   int
	sessions []*fakeSession
	notes    []string
}

func (h *fakeHost) Info() Info {
	return Info{Host: hostinfo.Host{Kernel: "6.18-test", NCPU: 2}, Servers: []ServerInfo{{Name: "echo", Addr: "127.0.0.1:9", Port: 9, PIDs: []int{1}}}}
}

func (h *fakeHost) Now() int64 { return monotonicNow() + h.offset }

func (h *fakeHost) Note(s string) {
	h.mu.Lock()
	h.notes = append(h.notes, s)
	h.mu.Unlock()
}

func (h *fakeHost) Open(_ context.Context, req EventsRequest) (Session, error) {
	if req.Server != "echo" && req.Server != "" {
		return nil, fmt.Errorf("no server %q here: the agent serves echo", req.Server)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.opened++
	s := &fakeSession{h: h}
	h.sessions = append(h.sessions, s)
	return s, nil
}

func (h *fakeHost) counts() (opened, closed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opened, h.closed
}

type fakeSession struct {
	h       *fakeHost
	wm      atomic.Int64
	sent    atomic.Uint64
	tracing []bool // its SetTracing calls, under h.mu
}

func (s *fakeSession) Started() Started {
	return Started{Server: s.h.Info().Servers[0], Summary: "fake probe"}
}

func (s *fakeSession) Run(ctx context.Context, deliver func(*probe.Event)) error {
	if s.h.runErr != nil {
		return s.h.runErr
	}
	every := s.h.every
	if every == 0 {
		every = 200 * time.Microsecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var e probe.Event
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for range 4 {
			now := s.h.Now()
			e = probe.Event{TS: uint64(now), Arg0: s.sent.Load(), Kind: probe.KindSockSend, Lport: 9, Rport: 40000, TID: 7, TGID: 1}
			deliver(&e)
			s.sent.Add(1)
			s.wm.Store(now)
		}
	}
}

func (s *fakeSession) Watermark() int64 { return s.wm.Load() }

func (s *fakeSession) Mark(name string) MarkReply {
	return MarkReply{Name: name, AgentNs: s.h.Now(), Cost: proccost.Sample{CPUNs: 42, Threads: 1, Procs: 1}}
}

func (s *fakeSession) SetTracing(on bool) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.tracing = append(s.tracing, on)
	return nil
}

func (s *fakeSession) switches() []bool {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return slices.Clone(s.tracing)
}

func (s *fakeSession) Close() (Final, error) {
	s.h.mu.Lock()
	s.h.closed++
	s.h.mu.Unlock()
	return Final{Lost: 3, Probe: &report.ProbeParts{Mode: "fake", Records: s.sent.Load()}}, nil
}

// startAgent serves h on a loopback port until the test ends.
func startAgent(t *testing.T, h Host, cred Credentials, protocol int) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := &server{host: h, protocol: protocol}
	if cred.Token != "" {
		s.token = hashToken(cred.Token)
	}
	go func() { done <- s.serve(ctx, lis, cred) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the agent did not stop within 10s")
		}
	})
	return lis.Addr().String()
}

func dialT(t *testing.T, addr string, cred Credentials) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, cred)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// drain reads the stream to its final account, checking the events'
// order and watermarks; it returns the events and the final account.
func drain(t *testing.T, es *EventStream) (events []probe.Event, marks []MarkReply, fin *Final) {
	t.Helper()
	var wm int64
	for {
		m, err := es.Recv()
		if err == io.EOF {
			return events, marks, fin
		}
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		switch {
		case m.Batch != nil:
			if m.Batch.Watermark < wm {
				t.Fatalf("watermark went back from %d to %d", wm, m.Batch.Watermark)
			}
			wm = m.Batch.Watermark
			events = append(events, m.Batch.Events...)
		case m.Mark != nil:
			marks = append(marks, *m.Mark)
		case m.Trace != nil:
			// Told apart from marks by their name.
			marks = append(marks, MarkReply{Name: fmt.Sprintf("trace %v", m.Trace.On), AgentNs: m.Trace.AgentNs, Err: m.Trace.Err})
		case m.Final != nil:
			fin = m.Final
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			h := &fakeHost{offset: 5_000_000_000}
			addr := startAgent(t, h, Credentials{Token: testToken}, ProtocolVersion)
			c := dialT(t, addr, Credentials{Token: testToken})
			info := c.Info()
			if info.Protocol != ProtocolVersion || info.Host.Kernel != "6.18-test" || len(info.Servers) != 1 || info.Servers[0].Name != "echo" {
				t.Fatalf("info = %+v", info)
			}
			ctx := context.Background()
			t1, t2, t3, err := c.Ping(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if t1 > t3 || t2 < t1+h.offset || t2 > t3+h.offset {
				t.Fatalf("ping: t1 %d, t2 %d, t3 %d: t2 is not between t1 and t3 plus the offset %d", t1, t2, t3, h.offset)
			}
			es, err := c.Events(ctx, EventsRequest{Server: "echo", Compress: compress})
			if err != nil {
				t.Fatal(err)
			}
			if es.Started().Summary != "fake probe" {
				t.Fatalf("started = %+v", es.Started())
			}
			time.Sleep(100 * time.Millisecond)
			if err := es.Mark("first"); err != nil {
				t.Fatal(err)
			}
			if err := es.SetTracing(false); err != nil {
				t.Fatal(err)
			}
			if err := es.SetTracing(true); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if err := es.Stop(); err != nil {
				t.Fatal(err)
			}
			events, marks, fin := drain(t, es)
			if fin == nil {
				t.Fatal("no final account")
			}
			if len(marks) != 3 || marks[0].Name != "first" || marks[0].Cost.CPUNs != 42 ||
				marks[1].Name != "trace false" || marks[2].Name != "trace true" || marks[1].Err != "" || marks[2].AgentNs < marks[1].AgentNs {
				t.Fatalf("marks and trace switches = %+v", marks)
			}
			if sw := h.sessions[0].switches(); fmt.Sprint(sw) != "[false true]" {
				t.Fatalf("the session's probe was switched %v, want [false true]", sw)
			}
			if len(events) == 0 || uint64(len(events)) != fin.Events || fin.Probe == nil || fin.Probe.Records != fin.Events || fin.Lost != 3 {
				t.Fatalf("%d events received; final account %+v", len(events), fin)
			}
			for i, e := range events {
				if e.Arg0 != uint64(i) || e.Kind != probe.KindSockSend || e.Lport != 9 {
					t.Fatalf("event %d = %+v: lost, reordered or garbled", i, e)
				}
			}
			if fin.Bytes == 0 || fin.Batches == 0 {
				t.Fatalf("final account: %d bytes in %d batches", fin.Bytes, fin.Batches)
			}
			t.Logf("%d events, %d batches, %d bytes on the wire: %.1f bytes/event", fin.Events, fin.Batches, fin.Bytes, float64(fin.Bytes)/float64(fin.Events))
			waitClosed(t, h, 1)
		})
	}
}

// waitClosed waits until the host's sessions are all closed.
func waitClosed(t *testing.T, h *fakeHost, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		opened, closed := h.counts()
		if opened == want && closed == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions opened, %d closed; want %d of each", opened, closed, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAuth(t *testing.T) {
	h := &fakeHost{}
	addr := startAgent(t, h, Credentials{Token: testToken}, ProtocolVersion)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, addr, Credentials{Token: "wrong"})
	if !errors.Is(err, ErrAuth) || err.Error() != "agent "+addr+": bad token (give the agent's --token)" {
		t.Errorf("bad token: %v", err)
	}
	if _, err := Dial(ctx, addr, Credentials{}); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("dial without a token: %v", err)
	}
	// A client that sends none: every method is refused before its
	// handler runs.
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, m := range []string{methodHello, methodPing} {
		err := conn.Invoke(ctx, m, &HelloRequest{Protocol: ProtocolVersion}, &Info{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s without a token: %v", m, err)
		}
	}
	st, err := conn.NewStream(ctx, &serviceDesc.Streams[0], methodEvents)
	if err == nil {
		_ = st.SendMsg(&clientMsg{Start: &EventsRequest{}})
		err = st.RecvMsg(&inMsg{})
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("Events without a token: %v", err)
	}
	if opened, _ := h.counts(); opened != 0 {
		t.Errorf("%d sessions opened without a token", opened)
	}
	if err := Serve(ctx, nil, Credentials{}, h); err == nil {
		t.Error("Serve without a token: no error")
	}
}

func TestVersionMismatch(t *testing.T) {
	h := &fakeHost{}
	for _, tc := range []struct{ agent, client int }{{ProtocolVersion + 1, ProtocolVersion}, {ProtocolVersion, ProtocolVersion + 1}} {
		addr := startAgent(t, h, Credentials{Token: testToken}, tc.agent)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := dial(ctx, addr, Credentials{Token: testToken}, tc.client)
		want := fmt.Sprintf("agent %s: protocol version %d, this volleyscope speaks %d (volleyscope ", addr, tc.agent, tc.client)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("agent %d, client %d: %v; want it to begin %q", tc.agent, tc.client, err, want)
		}
		// Every method checks it, not Hello alone.
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(callCreds{token: testToken, protocol: tc.client}), grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{})))
		if err != nil {
			t.Fatal(err)
		}
		var r pingReply
		if err := conn.Invoke(ctx, methodPing, &struct{}{}, &r); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Ping of another version: %v", err)
		}
		st, err := conn.NewStream(ctx, &serviceDesc.Streams[0], methodEvents)
		if err == nil {
			_ = st.SendMsg(&clientMsg{Start: &EventsRequest{}})
			err = st.RecvMsg(&inMsg{})
		}
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Events of another version: %v", err)
		}
		conn.Close()
		cancel()
	}
	if opened, _ := h.counts(); opened != 0 {
		t.Errorf("%d sessions opened", opened)
	}

	// An agent that does not check (another version's) is checked by the
	// controller.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	desc := serviceDesc
	desc.Methods = []grpc.MethodDesc{{MethodName: "Hello", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var req HelloRequest
		if err := dec(&req); err != nil {
			return nil, err
		}
		return &Info{Protocol: ProtocolVersion + 7, Version: "v9.9.9"}, nil
	}}}
	gs := grpc.NewServer(grpc.ForceServerCodec(codec{}))
	gs.RegisterService(&desc, &server{})
	go gs.Serve(lis)
	defer gs.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Dial(ctx, lis.Addr().String(), Credentials{Token: testToken})
	want := fmt.Sprintf("agent %s: protocol version %d, this volleyscope speaks %d (volleyscope v9.9.9 on the agent vs ", lis.Addr(), ProtocolVersion+7, ProtocolVersion)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("an agent that does not check: %v; want it to begin %q", err, want)
	}
}

func TestBusyAndUnknownServer(t *testing.T) {
	h := &fakeHost{}
	addr := startAgent(t, h, Credentials{Token: testToken}, ProtocolVersion)
	c := dialT(t, addr, Credentials{Token: testToken})
	ctx := context.Background()
	if _, err := c.Events(ctx, EventsRequest{Server: "nginx"}); err == nil || !strings.Contains(err.Error(), `no server "nginx"`) {
		t.Errorf("unknown server: %v", err)
	}
	es, err := c.Events(ctx, EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	other := dialT(t, addr, Credentials{Token: testToken})
	if _, err := other.Events(ctx, EventsRequest{}); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("a second session: %v", err)
	}
	es.Stop()
	drain(t, es)
	es, err = other.Events(ctx, EventsRequest{})
	if err != nil {
		t.Fatalf("a session after the first stopped: %v", err)
	}
	es.Stop()
	drain(t, es)
	waitClosed(t, h, 2)
}

// TestGarbage writes bytes that are not gRPC to the agent's port; it
// goes on serving.
func TestGarbage(t *testing.T) {
	h := &fakeHost{}
	addr := startAgent(t, h, Credentials{Token: testToken}, ProtocolVersion)
	for _, junk := range []string{"\x00\x01\x02garbage\xff\xfe", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00\xff\xff\xff\xff"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(junk))
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.Copy(io.Discard, conn)
		conn.Close()
	}
	c := dialT(t, addr, Credentials{Token: testToken})
	if _, _, _, err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping after garbage: %v", err)
	}
	// A message over the bound is not read, even from a controller with
	// the token.
	err := c.conn.Invoke(context.Background(), methodHello, &HelloRequest{Version: strings.Repeat("x", maxClientMsg)}, &Info{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("an oversized Hello: %v", err)
	}
	if _, _, _, err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping after an oversized message: %v", err)
	}
}

// TestCorruptBatch: a batch that does not decode ends the stream with an
// error saying so.
func TestCorruptBatch(t *testing.T) {
	h := &fakeHost{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{host: h, protocol: ProtocolVersion, token: hashToken(testToken)}
	desc := serviceDesc
	desc.Streams = []grpc.StreamDesc{{StreamName: "Events", ServerStreams: true, ClientStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
		var m clientMsg
		ss.RecvMsg(&m)
		ss.SendMsg(&outMsg{kindStarted, Started{}})
		b := make([]byte, batchHeader+probe.EventSize+7)
		b[0] = kindBatch
		putUint32(b[9:], 2) // two events announced, one and a bit sent
		return ss.SendMsg(outBatch(b))
	}}}
	gs := grpc.NewServer(grpc.ForceServerCodec(codec{}), grpc.ChainUnaryInterceptor(s.unaryAuth))
	gs.RegisterService(&desc, s)
	go gs.Serve(lis)
	defer gs.Stop()
	c := dialT(t, lis.Addr().String(), Credentials{Token: testToken})
	es, err := c.Events(context.Background(), EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = es.Recv()
	if err == nil || !strings.Contains(err.Error(), "corrupt event batch: 2 events announced") {
		t.Fatalf("corrupt batch: %v", err)
	}
}

// TestStopWhileBehind: a reader far ahead of the network waits for room;
// a stop then still sends every event it delivered, and a controller
// that goes instead leaves nothing waiting.
func TestStopWhileBehind(t *testing.T) {
	in, err := breakdown.ReadRecording(benchStream)
	if err != nil {
		t.Fatal(err)
	}
	h := &replayHost{events: serverSide(in), repeat: 100}
	addr := startAgent(t, h, Credentials{Token: testToken}, ProtocolVersion)
	c := dialT(t, addr, Credentials{Token: testToken})
	es, err := c.Events(context.Background(), EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := es.Stop(); err != nil {
		t.Fatal(err)
	}
	events, _, fin := drain(t, es)
	if want := len(h.events) * h.repeat; len(events) != want || fin == nil || fin.Events != uint64(want) {
		t.Fatalf("%d events received, want %d; final account %+v", len(events), want, fin)
	}
	// Gone instead of stopping: the session ends all the same.
	ctx, cancel := context.WithCancel(context.Background())
	es, err = c.Events(ctx, EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	es, err = dialT(t, addr, Credentials{Token: testToken}).Events(context.Background(), EventsRequest{})
	for try := 0; err != nil && strings.Contains(err.Error(), "busy") && try < 100; try++ {
		time.Sleep(50 * time.Millisecond)
		es, err = c.Events(context.Background(), EventsRequest{})
	}
	if err != nil {
		t.Fatalf("a session after one whose controller went: %v", err)
	}
	es.Close()
}

// TestProbeFails: the agent's probe reader stopping on an error ends the
// stream with it, and the session is closed.
func TestProbeFails(t *testing.T) {
	h := &fakeHost{runErr: errors.New("read rings: bad things")}
	addr := startAgent(t, h, Credentials{Token: testToken}, ProtocolVersion)
	c := dialT(t, addr, Credentials{Token: testToken})
	es, err := c.Events(context.Background(), EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := es.Recv()
		if err == nil {
			continue
		}
		if want := "agent " + addr + ": probe on the agent: read rings: bad things"; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v; want it to begin %q", err, want)
		}
		break
	}
	waitClosed(t, h, 1)
}

// TestServeStops: Serve returns when its context ends, with a running
// session cut and its probe already closed; the controller is told.
func TestServeStops(t *testing.T) {
	h := &fakeHost{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lis, Credentials{Token: testToken}, h) }()
	c := dialT(t, lis.Addr().String(), Credentials{Token: testToken})
	es, err := c.Events(context.Background(), EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still runs 10s after its context ended")
	}
	if opened, closed := h.counts(); opened != 1 || closed != 1 {
		t.Fatalf("Serve returned with %d sessions opened, %d closed", opened, closed)
	}
	err, _ = recvUntilError(es, time.Now())
	if !strings.Contains(err.Error(), "connection lost mid-run") {
		t.Errorf("the controller is told: %v", err)
	}
}
