package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/volleyscope/volleyscope/internal/agent"
	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/clocksync"
	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/probe"
)

// The two-host event source: the probe on this host follows the client
// threads, an agent's probe on the server's host follows the server, and
// twoHosts merges the two into the one source the join reads. The
// agent's events come on its own clock; twoHosts maps them onto this
// host's before the join sees them, with a clock estimate made from the
// run's own data segments (each seen leaving one host and arriving at
// the other) and a light ping exchange. The join never learns there are
// two hosts.

// remoteFeed is an agent's event stream (*agent.EventStream), as
// agentSource needs it.
type remoteFeed interface {
	// Recv returns the agent's next message; io.EOF after the final one.
	Recv() (agent.Message, error)
	// Mark asks for a sample of the server's cost; its reply comes in
	// the stream.
	Mark(name string) error
	// SetTracing asks the agent to attach its probe's hooks or detach
	// them; its reply comes in the stream.
	SetTracing(on bool) error
	// Stop asks the agent to detach its probe and send its account.
	Stop() error
}

// pinger is the agent's clock, read over the control connection
// (*agent.Client): t1 and t3 are this host's CLOCK_MONOTONIC around the
// call, t2 the agent's.
type pinger interface {
	Ping(ctx context.Context) (t1, t2, t3 int64, err error)
}

const (
	// pingEvery paces the light clock exchange that keeps the estimate
	// alive when no data segment crosses (before the load, an idle run).
	pingEvery = 100 * time.Millisecond
	// markWait bounds the wait for a cost sample from the agent.
	markWait = 5 * time.Second
)

// twoHosts is the local probe on the clients and an agent on the server,
// as one EventSource.
type twoHosts struct {
	local  EventSource // the probe on this host (a recording in tests)
	remote *agentSource
	port   uint16

	mu    sync.Mutex // deliveries, the matcher and the estimator
	clock *clocksync.Estimator
	match *clocksync.Matcher
	// series is the estimate over the run, a point every every ns.
	series []report.ClockPoint
	every  int64
	// lost is told when the agent's stream failed mid-run (it died, the
	// connection dropped): the run cannot be split any more.
	lost func(error)
}

func newTwoHosts(local EventSource, remote *agentSource, port uint16) *twoHosts {
	est := clocksync.New(clocksync.Options{})
	t := &twoHosts{local: local, remote: remote, port: port, clock: est, match: clocksync.NewMatcher(est, clocksync.MatcherOptions{}), every: clockEvery.Nanoseconds()}
	remote.clock = t
	return t
}

func (t *twoHosts) probeSource() *probeSource { return probeOf(t.local) }

// FollowProcesses: the server's processes are the agent's, which follows
// them itself.
func (t *twoHosts) FollowProcesses([]int) error { return nil }

func (t *twoHosts) FollowThreads(tids []int) error { return t.local.FollowThreads(tids) }

// Run delivers both hosts' events, one at a time. This host's probe sees
// every socket of the server's port, and so would the agent's were the
// two hosts network namespaces of one kernel: each keeps its own side's.
func (t *twoHosts) Run(ctx context.Context, deliver func(*probe.Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() {
		errc <- t.local.Run(ctx, func(e *probe.Event) {
			if server, ok := e.OnSocketSide(t.port); ok && server {
				return
			}
			t.mu.Lock()
			if e.Kind == probe.KindNetXmit || e.Kind == probe.KindNetRecv {
				t.match.Local(e)
			}
			deliver(e)
			t.mu.Unlock()
		})
	}()
	go func() {
		err := t.remote.run(ctx, deliver) // under t.mu: see release
		if err != nil {
			cancel()
			if t.lost != nil {
				t.lost(err)
			}
		}
		errc <- err
	}()
	return errors.Join(<-errc, <-errc)
}

// halfWidth is the clock estimate's uncertainty at tA (this host's clock).
func (t *twoHosts) halfWidth(tA int64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, h, ok := t.clock.At(tA)
	return h, ok
}

func (t *twoHosts) Watermark() int64 {
	return min(t.local.Watermark(), t.remote.watermark())
}

func (t *twoHosts) WarmupOver()                     { t.local.WarmupOver() }
func (t *twoHosts) Holders() breakdown.HolderSource { return t.local.Holders() }

func (t *twoHosts) Summary() string {
	return "clients: " + t.local.Summary() + "; server: " + t.remote.name
}

func (t *twoHosts) Notices() []string { return t.local.Notices() }

// Close detaches both probes. The agent's account goes into the report
// beside this host's.
func (t *twoHosts) Close() (SourceReport, error) {
	rep, err := t.local.Close()
	acc, rerr := t.remote.close()
	if acc != nil {
		rep.Lost += acc.Lost
		for _, w := range acc.Warnings {
			rep.Warnings = append(rep.Warnings, t.remote.name+": "+w)
		}
		if acc.Err != "" {
			rerr = errors.Join(rerr, fmt.Errorf("%s: probe: %s", t.remote.name, acc.Err))
		}
	}
	t.mu.Lock()
	rep.Remote = &RemoteReport{Agent: t.remote.name, Account: acc, Clock: t.clock.Report(), Series: t.series}
	t.mu.Unlock()
	return rep, errors.Join(err, rerr)
}

// RemoteReport is a remote source's account: the agent's and the clock
// estimate's.
type RemoteReport struct {
	Agent   string
	Account *agent.Final
	Clock   clocksync.Report
	Series  []report.ClockPoint
}

// agentSource is the event stream of an agent's probe on the server's
// host. Its events are held until the clock estimate covers them, then
// mapped onto this host's clock and delivered.
type agentSource struct {
	name  string
	feed  remoteFeed
	ping  pinger
	clock *twoHosts // the estimate, and the lock deliveries take

	held     []probe.Event // on the agent's clock, in arrival order
	agentWM  int64         // the agent's watermark, its clock
	wm       atomic.Int64  // this host's clock: every event before it delivered
	marks    chan *agent.MarkReply
	traces   chan *agent.TraceReply
	final    chan *agent.Final
	stopOnce sync.Once
	done     chan struct{}
	err      error
}

func newAgentSource(name string, feed remoteFeed, ping pinger) *agentSource {
	return &agentSource{name: name, feed: feed, ping: ping, marks: make(chan *agent.MarkReply, 4), traces: make(chan *agent.TraceReply, 4), final: make(chan *agent.Final, 1), done: make(chan struct{})}
}

// run receives the agent's stream until it ends, and pings its clock.
func (a *agentSource) run(ctx context.Context, deliver func(*probe.Event)) error {
	defer close(a.done)
	pctx, stopPing := context.WithCancel(ctx)
	defer stopPing()
	go a.pingLoop(pctx)
	go func() {
		<-ctx.Done()
		a.stop()
	}()
	for {
		m, err := a.feed.Recv()
		if errors.Is(err, io.EOF) {
			a.release(deliver, true)
			return nil
		}
		if err != nil {
			a.release(deliver, true)
			a.err = err // the agent package's errors name the agent
			return a.err
		}
		switch {
		case m.Final != nil:
			a.final <- m.Final
		case m.Mark != nil:
			select {
			case a.marks <- m.Mark:
			default:
			}
		case m.Trace != nil:
			select {
			case a.traces <- m.Trace:
			default:
			}
		case m.Batch != nil:
			a.clock.mu.Lock()
			for i := range m.Batch.Events {
				e := &m.Batch.Events[i]
				if server, ok := e.OnSocketSide(a.clock.port); ok && !server {
					continue
				}
				if e.Kind == probe.KindNetXmit || e.Kind == probe.KindNetRecv {
					a.clock.match.Remote(e)
				}
				a.held = append(a.held, *e)
			}
			if m.Batch.Watermark > a.agentWM {
				a.agentWM = m.Batch.Watermark
			}
			// Both hosts' events are in up to their watermarks: the
			// matcher need not wait for late ones before then.
			a.clock.match.Watermarks(a.clock.local.Watermark(), a.agentWM)
			a.clock.mu.Unlock()
			a.release(deliver, false)
		}
	}
}

// release delivers the held events the estimate covers (all of them at
// the end), mapped onto this host's clock.
func (a *agentSource) release(deliver func(*probe.Event), all bool) {
	c := a.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	// An event is mapped once the estimate around it is settled: samples
	// of both directions reach past it (Ready), and every segment sent
	// or received around it has been matched. Pings alone reach past it
	// sooner, and would map it by their loose bounds (the end of a load,
	// a reader held off its CPU).
	setA, setB := c.match.Settled()
	lead := int64(clocksync.DefaultSpanNs)
	n := 0
	for i := range a.held {
		e := &a.held[i]
		tA, ok := c.clock.ToController(int64(e.TS))
		if !all && (!ok || int64(e.TS) > a.agentWM || !c.clock.Ready(tA) || tA+lead > setA || int64(e.TS)+lead > setB) {
			break
		}
		if ok {
			e.ShiftTimes(tA - int64(e.TS))
			deliver(e)
		}
		n++
	}
	a.held = append(a.held[:0], a.held[n:]...)
	if all {
		c.match.Flush()
	}
	// Every event the agent stamped before its watermark and not held
	// has been delivered: the watermark is the oldest of the held events
	// and the agent's watermark, mapped.
	wm := a.agentWM
	for i := range a.held { // held in arrival order, not time order
		wm = min(wm, int64(a.held[i].TS))
	}
	if tA, ok := c.clock.ToController(wm); ok {
		a.wm.Store(tA - readerSlack.Nanoseconds())
		c.sampleClock(tA)
	}
}

// clockEvery spaces the points of the estimate kept for results.json;
// clockPoints bounds them (every other one is dropped when full).
const (
	clockEvery  = 500 * time.Millisecond
	clockPoints = 512
)

// sampleClock keeps the estimate at tA, once per clockEvery: the run's
// offset over time, as the events were mapped.
func (t *twoHosts) sampleClock(tA int64) {
	if n := len(t.series); n > 0 && tA < t.series[n-1].TNs+t.every {
		return
	}
	theta, h, ok := t.clock.At(tA)
	if !ok {
		return
	}
	if len(t.series) == clockPoints {
		for i := range clockPoints / 2 {
			t.series[i] = t.series[2*i]
		}
		t.series, t.every = t.series[:clockPoints/2], 2*t.every
	}
	t.series = append(t.series, report.ClockPoint{TNs: tA, OffsetNs: theta, HalfWidthNs: h})
}

func (a *agentSource) watermark() int64 { return a.wm.Load() }

func (a *agentSource) pingLoop(ctx context.Context) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		if t1, t2, t3, err := a.ping.Ping(ctx); err == nil {
			a.clock.mu.Lock()
			a.clock.clock.AddExchange(t1, t2, t3)
			a.clock.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// costSample asks the agent for a sample of the server's cost.
func (a *agentSource) costSample(name string) (proccost.Sample, error) {
	if err := a.feed.Mark(name); err != nil {
		return proccost.Sample{}, err
	}
	select {
	case m := <-a.marks:
		if m.Err != "" {
			return proccost.Sample{}, fmt.Errorf("%s: no cost sample for mark %s: %s", a.name, name, m.Err)
		}
		return m.Cost, nil
	case <-a.done:
		return proccost.Sample{}, fmt.Errorf("%s: stream ended before mark %s", a.name, name)
	case <-time.After(markWait):
		return proccost.Sample{}, fmt.Errorf("%s: no reply to mark %s in %v", a.name, name, markWait)
	}
}

// setTracing switches the agent's probe for a sampled watch. Off is
// asked and not waited for: the agent's hooks stay on a little past
// this host's, which only records more. On returns once the agent says
// its hooks are attached, so that a window opened after it (read from
// this host's clock once it returns) holds only time the agent's probe
// recorded, whatever the two clocks' offset.
func (a *agentSource) setTracing(on bool) error {
	if err := a.feed.SetTracing(on); err != nil {
		return err
	}
	if !on {
		return nil
	}
	timeout := time.After(markWait)
	for {
		select {
		case r := <-a.traces:
			if r.Err != "" { // this switch's, or an earlier off's
				return fmt.Errorf("%s: switch its probe (on: %v): %s", a.name, r.On, r.Err)
			}
			if r.On {
				return nil
			}
			// An earlier switch's reply.
		case <-a.done:
			return fmt.Errorf("%s: stream ended before its probe was switched on", a.name)
		case <-timeout:
			return fmt.Errorf("%s: its probe did not say it was switched on within %v", a.name, markWait)
		}
	}
}

func (a *agentSource) stop() {
	a.stopOnce.Do(func() { _ = a.feed.Stop() })
}

// close stops the agent's probe and waits for its account.
func (a *agentSource) close() (*agent.Final, error) {
	a.stop()
	select {
	case acc := <-a.final:
		return acc, a.err
	case <-a.done:
		select {
		case acc := <-a.final:
			return acc, a.err
		default:
		}
		return nil, errors.Join(a.err, fmt.Errorf("%s: the stream ended without the agent's account", a.name))
	case <-time.After(markWait):
		return nil, fmt.Errorf("%s: no account from the agent in %v", a.name, markWait)
	}
}
