package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the compressor an EventsRequest may ask for
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/volleyscope/volleyscope/internal/version"
)

// Client is a controller's connection to one agent.
type Client struct {
	addr     string
	conn     *grpc.ClientConn // Hello and Events
	pingConn *grpc.ClientConn // Ping
	info     Info
}

// callTimeout bounds a unary call whose context has no deadline.
const callTimeout = 5 * time.Second

// startWait bounds the agent's answer to a start request: loading and
// attaching the probe, which a slow machine (a guest under software
// emulation) takes long over.
const startWait = time.Minute

// Dial connects to the agent at addr, says Hello and checks that both
// sides speak the same protocol version. The connection is kept alive:
// a dead agent or a dropped connection fails the calls and streams on
// it within seconds (see EventStream.Recv).
func Dial(ctx context.Context, addr string, cred Credentials) (*Client, error) {
	return dial(ctx, addr, cred, ProtocolVersion)
}

func dial(ctx context.Context, addr string, cred Credentials, protocol int) (*Client, error) {
	if cred.Token == "" {
		return nil, fmt.Errorf("agent %s: no token: give the agent's token with --token or --token-file", addr)
	}
	newConn := func() (*grpc.ClientConn, error) {
		tc := insecure.NewCredentials()
		if cred.TLS != nil {
			tc = credentials.NewTLS(cred.TLS)
		}
		conn, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(tc),
			grpc.WithPerRPCCredentials(callCreds{token: cred.Token, protocol: protocol}),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{})),
			// gRPC pings no more often than every 10 s from a client; the
			// Events stream's own heartbeat (flushEvery, silentFor) notices
			// a dead agent sooner.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: keepaliveWait, PermitWithoutStream: true}),
		)
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", addr, err)
		}
		return conn, nil
	}
	conn, err := newConn()
	if err != nil {
		return nil, err
	}
	c := &Client{addr: addr, conn: conn}
	if err := c.hello(ctx, protocol); err != nil {
		conn.Close()
		return nil, err
	}
	// Pings go on a connection of their own: on the events' connection a
	// ping waits behind the batches ahead of it in the TCP stream, which
	// widens the round trips the clock estimate is made from.
	if c.pingConn, err = newConn(); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) hello(ctx context.Context, protocol int) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	req := HelloRequest{Protocol: protocol, Version: version.String()}
	if err := c.conn.Invoke(ctx, methodHello, &req, &c.info); err != nil {
		return c.err(err, "")
	}
	// The agent checked our version; this checks an agent that did not.
	if c.info.Protocol != protocol {
		return fmt.Errorf("agent %s: %s", c.addr, versionMismatch(c.info.Protocol, strconv.Itoa(protocol), c.info.Version, version.String()))
	}
	return nil
}

// Info is what the agent said of itself in Hello.
func (c *Client) Info() Info { return c.info }

// Ping reads the agent's clock: t2 is the agent's CLOCK_MONOTONIC (its
// events' clock), t1 and t3 this host's just before the call and just
// after its answer.
func (c *Client) Ping(ctx context.Context) (t1, t2, t3 int64, err error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var r pingReply
	t1 = monotonicNow()
	err = c.pingConn.Invoke(ctx, methodPing, &struct{}{}, &r)
	t3 = monotonicNow()
	if err != nil {
		return 0, 0, 0, c.err(err, "")
	}
	return t1, r.AgentNs, t3, nil
}

// Close closes the connections; a stream still open on them ends.
func (c *Client) Close() error { return errors.Join(c.conn.Close(), c.pingConn.Close()) }

// Events starts an Events session: the agent attaches its probe to the
// server req names and answers with Started (EventStream.Started), or
// an error (the server is not the agent's, another run is using the
// agent, the probe cannot attach). The stream ends with ctx.
func (c *Client) Events(ctx context.Context, req EventsRequest) (*EventStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	desc := &grpc.StreamDesc{StreamName: "Events", ServerStreams: true, ClientStreams: true}
	st, err := c.conn.NewStream(sctx, desc, methodEvents)
	if err != nil {
		cancel()
		return nil, c.err(err, "")
	}
	es := &EventStream{c: c, st: st, ctx: ctx, cancel: cancel}
	if err := es.send(&clientMsg{Start: &req}); err != nil {
		cancel()
		return nil, err
	}
	if err := es.recv(startWait); err != nil {
		cancel()
		return nil, err
	}
	if es.in.kind != kindStarted {
		cancel()
		return nil, fmt.Errorf("agent %s: answered the start request with message %q, not its start", c.addr, es.in.kind)
	}
	es.started = es.in.started
	return es, nil
}

// EventStream is a running Events session. Recv is called from one
// goroutine; Mark, SetTracing and Stop from any.
type EventStream struct {
	c        *Client
	st       grpc.ClientStream
	ctx      context.Context // the caller's
	cancel   context.CancelFunc
	silent   atomic.Bool // the watchdog ended the stream
	closed   atomic.Bool // Close ended it
	stopping atomic.Bool // Stop was sent
	started  Started
	in       inMsg
	sendMu   sync.Mutex
	done     bool // the final account was received
}

// Started is the agent's answer to the start request.
func (s *EventStream) Started() Started { return s.started }

// Recv returns the agent's next message: a batch of events (its Events
// are reused by the next Recv), a mark's reply, or the final account,
// after which it returns io.EOF. A silent agent (dead, or the connection
// dropped) is an error within seconds.
func (s *EventStream) Recv() (Message, error) {
	if s.done {
		return Message{}, io.EOF
	}
	wait := silentFor
	if s.stopping.Load() { // the agent detaches its probe, silently
		wait = startWait
	}
	if err := s.recv(wait); err != nil {
		return Message{}, err
	}
	switch s.in.kind {
	case kindBatch:
		return Message{Batch: &s.in.batch}, nil
	case kindMark:
		m := s.in.mark
		return Message{Mark: &m}, nil
	case kindTrace:
		t := s.in.trace
		return Message{Trace: &t}, nil
	case kindFinal:
		s.done = true
		f := s.in.final
		s.cancel()
		return Message{Final: &f}, nil
	}
	return Message{}, fmt.Errorf("agent %s: sent message %q in mid-stream", s.c.addr, s.in.kind)
}

// recv reads one message into s.in, with a watchdog that ends the
// stream if the agent says nothing for wait.
func (s *EventStream) recv(wait time.Duration) error {
	t := time.AfterFunc(wait, func() {
		s.silent.Store(true)
		s.cancel()
	})
	err := s.st.RecvMsg(&s.in)
	t.Stop()
	switch {
	case err == nil:
		return nil
	case s.silent.Load():
		return fmt.Errorf("agent %s: connection lost mid-run: nothing from the agent for %v", s.c.addr, wait)
	case s.ctx.Err() != nil: // the caller's doing
		return fmt.Errorf("agent %s: events: %w", s.c.addr, s.ctx.Err())
	case s.closed.Load():
		return fmt.Errorf("agent %s: events: %w", s.c.addr, ErrClosed)
	case err == io.EOF:
		return fmt.Errorf("agent %s: connection lost mid-run: the stream ended before the agent's final account", s.c.addr)
	}
	return s.c.err(err, "mid-run")
}

// Mark asks the agent for a cost sample of its server, named name; the
// reply comes through Recv in the stream's order.
func (s *EventStream) Mark(name string) error {
	if name == "" {
		return errors.New("mark: empty name")
	}
	return s.send(&clientMsg{Mark: name})
}

// SetTracing asks the agent to attach its probe's hooks (on) or detach
// them, for a sampled watch; the reply, once the agent's probe has made
// the switch, comes through Recv in the stream's order.
func (s *EventStream) SetTracing(on bool) error {
	t := traceOff
	if on {
		t = traceOn
	}
	return s.send(&clientMsg{Trace: t})
}

// Stop asks the agent to detach its probe: Recv then returns the last
// batches and the final account.
func (s *EventStream) Stop() error {
	s.stopping.Store(true)
	if err := s.send(&clientMsg{Stop: true}); err != nil {
		return err
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.st.CloseSend()
}

// Close ends the stream at once, without a final account: the agent
// closes its probe when it sees the stream go.
func (s *EventStream) Close() {
	s.closed.Store(true)
	s.cancel()
}

// ErrClosed is what Recv returns after Close.
var ErrClosed = errors.New("stream closed")

func (s *EventStream) send(m *clientMsg) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.st.SendMsg(m); err != nil {
		if err == io.EOF { // the stream ended: its error is Recv's
			return fmt.Errorf("agent %s: the stream has ended", s.c.addr)
		}
		return s.c.err(err, "mid-run")
	}
	return nil
}

// err turns a call's error into a sentence naming the agent and what to
// do.
func (c *Client) err(err error, when string) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("agent %s: %w", c.addr, err)
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unauthenticated:
		return authError(fmt.Sprintf("agent %s: %s (give the agent's --token)", c.addr, msg))
	case codes.FailedPrecondition, codes.ResourceExhausted, codes.InvalidArgument, codes.Internal:
		return fmt.Errorf("agent %s: %s", c.addr, msg)
	case codes.Unavailable:
		if when != "" {
			return fmt.Errorf("agent %s: connection lost %s: %s", c.addr, when, msg)
		}
		if strings.Contains(msg, "handshake") || strings.Contains(msg, "tls") || strings.Contains(msg, "certificate") {
			return fmt.Errorf("agent %s: TLS handshake failed: %s (give both sides --cert and --key signed by the other's --ca)", c.addr, msg)
		}
		return fmt.Errorf("agent %s: cannot reach it: %s (is 'volleyscope agent --listen' running there, with the same TLS settings?)", c.addr, msg)
	case codes.Canceled, codes.DeadlineExceeded:
		if when != "" {
			return fmt.Errorf("agent %s: connection lost %s: %s", c.addr, when, msg)
		}
		return fmt.Errorf("agent %s: no answer: %s", c.addr, msg)
	}
	return fmt.Errorf("agent %s: %s: %s", c.addr, st.Code(), msg)
}

// ErrAuth is what the error of a call the agent refused for its token
// is (errors.Is).
var ErrAuth = errors.New("agent: not authorized")

type authError string

func (e authError) Error() string        { return string(e) }
func (e authError) Is(target error) bool { return target == ErrAuth }

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, callTimeout)
}

func monotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
