package agent

import (
	stdgzip "compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/volleyscope/volleyscope/internal/version"
	"github.com/volleyscope/volleyscope/probe"
)

// ServiceName is the gRPC service's full name; a change of its methods'
// meaning raises ProtocolVersion, not the name.
const ServiceName = "volleyscope.agent.Agent"

// Host is what the agent serves: the session package implements it over
// the machine's servers and probe, tests over fakes.
type Host interface {
	// Info is the host and its servers (Protocol and Version are set by
	// this package).
	Info() Info
	// Now is the agent's clock: CLOCK_MONOTONIC ns, as its events are
	// stamped.
	Now() int64
	// Open attaches the probe to the server req names. It must refuse a
	// server that is not one of Info's.
	Open(ctx context.Context, req EventsRequest) (Session, error)
	// Note is told what the agent does and refuses, for its log.
	Note(msg string)
}

// Session is an Events session's probe on the agent's host.
type Session interface {
	Started() Started
	// Run delivers events until ctx ends, then what is left, and returns
	// (as session.EventSource's Run). deliver is called from one
	// goroutine; the event is reused after it returns.
	Run(ctx context.Context, deliver func(*probe.Event)) error
	// Watermark is a time (the agent's clock) before which every event
	// has been delivered.
	Watermark() int64
	// Mark samples the server processes' cost counters.
	Mark(name string) MarkReply
	// SetTracing attaches the probe's hooks (on) or detaches them (a
	// sampled watch's off stretches); it returns once they are.
	SetTracing(on bool) error
	// Close detaches the probe; Run has returned or was never called. It
	// is called exactly once.
	Close() (Final, error)
}

// Timing of the Events stream.
const (
	// flushEvery is how often the agent sends what it has, an empty batch
	// if nothing: the batch carries the watermark forward, and its
	// arrival tells the controller the agent is alive.
	flushEvery = 50 * time.Millisecond
	// silentFor is how long the controller waits for any message before
	// it calls the agent lost: many flushes.
	silentFor = 3 * time.Second
	// batchEvents is how many events make a full batch (a message well
	// under gRPC's 4 MiB default limit), sent at once rather than at the
	// next flush.
	batchEvents = 1024
	// pendingBatches bounds the full batches waiting for the network: a
	// probe reader that gets this far ahead of the connection waits, and
	// the kernel's rings count what it then drops.
	pendingBatches = 64
	// keepaliveEvery and keepaliveWait: the agent pings an idle
	// controller's connection and drops it when a ping goes unanswered,
	// so that a controller gone without closing (its host died) frees the
	// probe within a few seconds.
	keepaliveEvery = time.Second
	keepaliveWait  = 2 * time.Second
)

// stopGrace is how long a stopping agent lets calls in flight finish.
const stopGrace = 500 * time.Millisecond

// maxClientMsg bounds a message from the controller.
const maxClientMsg = 64 << 10

// Serve serves the agent's service on lis until ctx ends, then stops
// every session (their probes are closed) and returns. cred.Token is
// required.
func Serve(ctx context.Context, lis net.Listener, cred Credentials, host Host) error {
	if cred.Token == "" {
		return errors.New("serve agent: no token: give one with --token or --token-file")
	}
	s := &server{host: host, token: hashToken(cred.Token), protocol: ProtocolVersion}
	return s.serve(ctx, lis, cred)
}

// fastGzip sets gRPC's gzip compressor, which only an agent's batches
// use, to its fastest level: the agent's CPU is taken from the host
// whose server is measured, and the fastest level keeps most of the
// saving for a fraction of the default level's CPU (README, Agent).
var fastGzip = sync.OnceValue(func() error { return gzip.SetLevel(stdgzip.BestSpeed) })

type server struct {
	host     Host
	token    [sha256.Size]byte
	protocol int        // ProtocolVersion; tests set another
	sessions oneAtATime // Events sessions
}

// oneAtATime lets one session of a kind hold the agent at a time.
type oneAtATime struct {
	mu   sync.Mutex
	held *sessionHold // nil: none
}

// sessionHold is a session's hold on the agent.
type sessionHold struct {
	// ending: its controller stopped it (and may start its next run
	// once it has the final account, before this side's handler has
	// returned and let go), or is gone.
	ending atomic.Bool
	done   chan struct{} // closed once it let go
}

// handover bounds how long a new session waits for an ending one to let
// go, rather than being refused as busy.
const handover = 10 * time.Second

// hold takes the agent for a session: at once if none holds it, after
// the one that does lets go if it is ending, nil if another runs.
func (o *oneAtATime) hold(ctx context.Context) *sessionHold {
	timeout := time.NewTimer(handover)
	defer timeout.Stop()
	for {
		o.mu.Lock()
		cur := o.held
		if cur == nil {
			h := &sessionHold{done: make(chan struct{})}
			o.held = h
			o.mu.Unlock()
			return h
		}
		o.mu.Unlock()
		if !cur.ending.Load() {
			return nil
		}
		select {
		case <-cur.done:
		case <-timeout.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// letGo ends h's hold.
func (o *oneAtATime) letGo(h *sessionHold) {
	o.mu.Lock()
	o.held = nil
	o.mu.Unlock()
	close(h.done)
}

func (s *server) serve(ctx context.Context, lis net.Listener, cred Credentials) error {
	if err := fastGzip(); err != nil {
		return fmt.Errorf("serve agent: %w", err)
	}
	tc := insecure.NewCredentials()
	if cred.TLS != nil {
		tc = credentials.NewTLS(cred.TLS)
	}
	gs := grpc.NewServer(
		grpc.Creds(tc),
		grpc.ForceServerCodec(codec{}),
		grpc.ChainUnaryInterceptor(s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamAuth),
		grpc.StatsHandler(wireBytes{}),
		// The controller's messages are small JSON: a larger one is not
		// read.
		grpc.MaxRecvMsgSize(maxClientMsg),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveEvery, Timeout: keepaliveWait}),
		// Let the controller's keepalive pings through: it pings a
		// connection without a stream too.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		// Stop returns once every session has closed its probe.
		grpc.WaitForHandlers(true),
	)
	gs.RegisterService(&serviceDesc, s)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve agent on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	// Calls in flight may finish; a run's session, which would not end by
	// itself, is cut, and its probe closed, before Serve returns.
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		gs.Stop()
	}
	<-done
	return nil
}

func hashToken(t string) [sha256.Size]byte { return sha256.Sum256([]byte(t)) }

// auth checks a call's token, in constant time (both hashed, so that not
// even its length shows), then its protocol version.
func (s *server) auth(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get(tokenKey)
	if len(got) == 0 {
		s.host.Note("refused a call without a token from " + peerOf(ctx))
		return status.Error(codes.Unauthenticated, "no token")
	}
	h := hashToken(got[0])
	if subtle.ConstantTimeCompare(h[:], s.token[:]) != 1 {
		s.host.Note("refused a call with a bad token from " + peerOf(ctx))
		return status.Error(codes.Unauthenticated, "bad token")
	}
	proto, theirs := first(md, protocolKey), first(md, versionKey)
	if proto != strconv.Itoa(s.protocol) {
		s.host.Note(fmt.Sprintf("refused %s: protocol version %q (volleyscope %s), this agent speaks %d", peerOf(ctx), proto, theirs, s.protocol))
		// Phrased as the controller reads it, after "agent ADDR: ".
		return status.Error(codes.FailedPrecondition, versionMismatch(s.protocol, proto, version.String(), theirs))
	}
	return nil
}

// first is the first value of key in md, or "".
func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *server) unaryAuth(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *server) streamAuth(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.auth(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// serviceDesc declares the service by hand (see the package comment).
// A Load method would be one more entry in Streams.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Hello", Handler: unary(methodHello, (*server).hello)},
		{MethodName: "Ping", Handler: unary(methodPing, (*server).ping)},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Events", Handler: eventsHandler, ServerStreams: true, ClientStreams: true},
		{StreamName: "Load", Handler: loadHandler, ServerStreams: true, ClientStreams: true},
	},
}

// Full method names, for the client.
const (
	methodHello  = "/" + ServiceName + "/Hello"
	methodPing   = "/" + ServiceName + "/Ping"
	methodEvents = "/" + ServiceName + "/Events"
)

// unary runs a unary method's handler behind the interceptors, which
// see no request: the request is decoded only once the call passed them
// (the token), so that nothing from an unknown peer is even parsed.
func unary[Req any](method string, h func(s *server, ctx context.Context, req *Req) (any, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		handle := func(ctx context.Context, _ any) (any, error) {
			var req Req
			if err := dec(&req); err != nil {
				return nil, err
			}
			return h(srv.(*server), ctx, &req)
		}
		if ic == nil {
			return handle(ctx, nil)
		}
		return ic(ctx, nil, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, handle)
	}
}

// hello answers a controller whose version the interceptor checked.
func (s *server) hello(_ context.Context, _ *HelloRequest) (any, error) {
	info := s.host.Info()
	info.Protocol, info.Version = s.protocol, version.String()
	return &info, nil
}

func (s *server) ping(context.Context, *struct{}) (any, error) {
	return &pingReply{AgentNs: s.host.Now()}, nil
}

// versionMismatch is the error of a version mismatch as the controller
// says it; ourProto is what the controller sent ("" for nothing).
func versionMismatch(agentProto int, ourProto, agentVersion, ourVersion string) string {
	if ourProto == "" {
		ourProto = "none"
	}
	return fmt.Sprintf("protocol version %d, this volleyscope speaks %s (volleyscope %s on the agent vs %s here); run the same volleyscope on both hosts", agentProto, ourProto, agentVersion, ourVersion)
}

func eventsHandler(srv any, ss grpc.ServerStream) error {
	return srv.(*server).events(ss)
}

// events serves one Events session: the probe attached for the stream's
// life, closed however it ends.
func (s *server) events(ss grpc.ServerStream) error {
	ctx := ss.Context()
	var first clientMsg
	if err := ss.RecvMsg(&first); err != nil {
		return err
	}
	if first.Start == nil {
		return status.Error(codes.InvalidArgument, "the first message of Events must be the start request")
	}
	held := s.sessions.hold(ctx)
	if held == nil {
		s.host.Note("refused an events session from " + peerOf(ctx) + ": one is running")
		return status.Error(codes.ResourceExhausted, "busy: another controller's run is using this agent (one run at a time)")
	}
	defer s.sessions.letGo(held)
	sess, err := s.host.Open(ctx, *first.Start)
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	es := &eventsSession{host: s.host, ss: ss, sess: sess, b: newBatcher(), cpu0: processCPU(), peer: peerOf(ctx), held: held}
	defer es.close()
	s.host.Note(fmt.Sprintf("events session for %s: server %s", es.peer, sess.Started().Server.Name))
	if first.Start.Compress {
		if err := grpc.SetSendCompressor(ctx, gzip.Name); err != nil {
			return status.Error(codes.InvalidArgument, "compress the events: "+err.Error())
		}
	}
	if err := ss.SendMsg(&outMsg{kindStarted, sess.Started()}); err != nil {
		return err
	}
	return es.serve()
}

// eventsSession is a running Events session on the agent. The stream is
// sent on from serve's goroutine alone; the probe's reader delivers
// into the batcher from its own.
type eventsSession struct {
	host Host
	ss   grpc.ServerStream
	sess Session
	b    *batcher
	cpu0 int64 // the process's CPU time once the probe was attached
	peer string
	held *sessionHold

	cancelRun context.CancelFunc
	runDone   chan error
	running   bool
	runErr    error
	closed    bool
	wm        int64 // the last watermark sent
}

// ctlMsg is a message of the controller's, or the end of its side.
type ctlMsg struct {
	mark  string
	trace string
	end   bool  // stop, or the stream broke (err)
	err   error // the controller is gone
}

func (es *eventsSession) serve() error {
	ctx := es.ss.Context()
	// The controller's messages, in its order: marks, then stop, or an
	// error when the stream breaks (the controller is gone).
	ctl := make(chan ctlMsg, 16)
	go func() {
		for {
			var m clientMsg
			if err := es.ss.RecvMsg(&m); err != nil {
				select {
				case ctl <- ctlMsg{err: err, end: true}:
				case <-ctx.Done():
				}
				return
			}
			c := ctlMsg{mark: m.Mark, trace: m.Trace, end: m.Stop}
			select {
			case ctl <- c:
			case <-ctx.Done():
				return
			}
			if c.end {
				return
			}
		}
	}()

	runCtx, cancel := context.WithCancel(ctx)
	es.cancelRun, es.runDone, es.running = cancel, make(chan error, 1), true
	go func() {
		err := es.sess.Run(runCtx, es.b.deliver)
		es.b.close()
		es.runDone <- err
	}()

	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-es.b.full:
		case c := <-ctl:
			if c.end {
				es.held.ending.Store(true)
				return es.stop(c.err)
			}
			if c.mark != "" {
				if err := es.flush(); err != nil {
					return err
				}
				if err := es.ss.SendMsg(&outMsg{kindMark, es.sess.Mark(c.mark)}); err != nil {
					return err
				}
			}
			if c.trace != "" {
				if err := es.ss.SendMsg(&outMsg{kindTrace, es.trace(c.trace)}); err != nil {
					return err
				}
			}
			continue
		case err := <-es.runDone:
			es.running = false
			if err == nil {
				err = errors.New("the probe's reader stopped")
			}
			fin, _ := es.closeSess()
			es.host.Note("events session ended: " + err.Error())
			return status.Error(codes.Internal, fmt.Sprintf("probe on the agent: %v (lost %d events)", err, fin.Lost))
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := es.flush(); err != nil {
			return err
		}
	}
}

// trace makes a trace switch the controller asked for, and its reply.
func (es *eventsSession) trace(what string) TraceReply {
	r := TraceReply{On: what == traceOn}
	var err error
	if what != traceOn && what != traceOff {
		err = fmt.Errorf("trace switch %q: want %q or %q", what, traceOn, traceOff)
	} else {
		err = es.sess.SetTracing(r.On)
	}
	r.AgentNs = es.host.Now()
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// flush sends every event delivered so far, with the watermark.
func (es *eventsSession) flush() error {
	// The watermark is read before the events are taken: every event
	// delivered before it is among them or sent already.
	es.wm = max(es.wm, es.sess.Watermark())
	for _, out := range es.b.take(es.wm) {
		if err := es.ss.SendMsg(out); err != nil {
			return err
		}
	}
	return nil
}

// endRun stops the probe's reader and waits for it. A reader that was
// ahead of the network may be waiting for room in the batcher: with send
// the batches go out meanwhile (the controller's stop: it gets every
// event), without they are dropped (the controller is gone).
func (es *eventsSession) endRun(send bool) {
	if !es.running {
		return
	}
	es.cancelRun()
	if !send {
		es.b.drop()
	}
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case es.runErr = <-es.runDone:
			es.running = false
			return
		case <-es.b.full:
		case <-tick.C:
		}
		if send && es.flush() != nil {
			send = false
			es.b.drop()
		}
	}
}

func (es *eventsSession) closeSess() (Final, error) {
	es.closed = true
	return es.sess.Close()
}

// close leaves nothing attached, however the session ended.
func (es *eventsSession) close() {
	es.endRun(false)
	if !es.closed {
		es.closeSess()
	}
}

// stop ends the session at the controller's stop (err nil: send what is
// left and the final account) or when it is gone (err).
func (es *eventsSession) stop(err error) error {
	ctx := es.ss.Context()
	es.endRun(err == nil)
	if err != nil {
		es.host.Note(fmt.Sprintf("events session for %s ended: the controller is gone (%v); probe detached", es.peer, err))
		return err
	}
	if err := es.flush(); err != nil {
		return err
	}
	fin, cerr := es.closeSess()
	if es.runErr != nil {
		fin.Err = es.runErr.Error()
	} else if cerr != nil {
		fin.Err = cerr.Error()
	}
	fin.AgentCPU = processCPU() - es.cpu0
	fin.Events, fin.Batches = es.b.events, es.b.batches
	// What the final account itself costs is left out.
	if n := wireBytesOf(ctx); n != nil {
		fin.Bytes = uint64(n.Load())
	}
	es.host.Note(fmt.Sprintf("events session for %s stopped: %d events, %d bytes sent", es.peer, fin.Events, fin.Bytes))
	return es.ss.SendMsg(&outMsg{kindFinal, fin})
}

// batcher lays the probe's events out in batches, on the wire already,
// between the reader's goroutine and the stream's.
type batcher struct {
	mu      sync.Mutex
	space   *sync.Cond    // a full batch was taken, or the batcher closed
	cur     []byte        // the batch being filled: header, then events
	n       int           // events in cur
	ready   [][]byte      // full batches
	closed  bool          // the reader is done: nothing waits for room
	dropped bool          // nobody sends: deliver keeps nothing
	full    chan struct{} // a batch filled
	events  uint64
	batches uint64
}

func newBatcher() *batcher {
	b := &batcher{full: make(chan struct{}, 1)}
	b.space = sync.NewCond(&b.mu)
	return b
}

func (b *batcher) deliver(e *probe.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return
	}
	if b.cur == nil {
		b.cur = make([]byte, batchHeader, batchHeader+batchEvents*probe.EventSize)
	}
	at := len(b.cur)
	b.cur = b.cur[:at+probe.EventSize]
	probe.Encode(b.cur[at:], e)
	b.n++
	if b.n < batchEvents {
		return
	}
	b.ready = append(b.ready, b.cur)
	b.cur, b.n = nil, 0
	select {
	case b.full <- struct{}{}:
	default:
	}
	for len(b.ready) >= pendingBatches && !b.closed && !b.dropped {
		b.space.Wait()
	}
}

// take returns every batch filled or begun, ready to send; an empty one
// when there are none, to carry the watermark.
func (b *batcher) take(wm int64) []outBatch {
	b.mu.Lock()
	ready := b.ready
	if b.cur != nil || len(ready) == 0 {
		if b.cur == nil {
			b.cur = make([]byte, batchHeader)
		}
		ready = append(ready, b.cur)
	}
	b.ready, b.cur, b.n = nil, nil, 0
	b.space.Broadcast()
	b.mu.Unlock()
	out := make([]outBatch, len(ready))
	for i, r := range ready {
		r[0] = kindBatch
		putUint64(r[1:], uint64(wm))
		n := (len(r) - batchHeader) / probe.EventSize
		putUint32(r[9:], uint32(n))
		b.events += uint64(n)
		b.batches++
		out[i] = r
	}
	return out
}

// drop discards what is held and what comes.
func (b *batcher) drop() {
	b.mu.Lock()
	b.dropped, b.ready, b.cur, b.n = true, nil, nil, 0
	b.space.Broadcast()
	b.mu.Unlock()
}

func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.space.Broadcast()
	b.mu.Unlock()
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

func putUint32(b []byte, v uint32) {
	for i := range 4 {
		b[i] = byte(v >> (8 * i))
	}
}

// processCPU is the agent process's CPU time so far, in ns.
func processCPU() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// wireBytes counts the bytes each Events stream sends, as they go on the
// wire (compressed, with gRPC's message headers), from gRPC's stats.
type wireBytes struct{}

type wireKey struct{}

func (wireBytes) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if info.FullMethodName == methodEvents {
		return context.WithValue(ctx, wireKey{}, new(atomic.Int64))
	}
	return ctx
}

func (wireBytes) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.OutPayload); ok {
		if n := wireBytesOf(ctx); n != nil {
			n.Add(int64(p.WireLength))
		}
	}
}

func (wireBytes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (wireBytes) HandleConn(context.Context, stats.ConnStats)                       {}

func wireBytesOf(ctx context.Context) *atomic.Int64 {
	n, _ := ctx.Value(wireKey{}).(*atomic.Int64)
	return n
}
