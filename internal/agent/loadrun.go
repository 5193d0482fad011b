package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/volleyscope/volleyscope/loadgen"
)

// LoadStream is a running Load session on one agent.
type LoadStream struct {
	c      *Client
	st     grpc.ClientStream
	cancel context.CancelFunc
	sendMu sync.Mutex
}

// Load starts a Load session: the agent checks the address against its
// --load-to and starts connecting. Messages then come through Recv.
func (c *Client) Load(ctx context.Context, req LoadRequest) (*LoadStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	desc := &grpc.StreamDesc{StreamName: "Load", ServerStreams: true, ClientStreams: true}
	st, err := c.conn.NewStream(sctx, desc, methodLoad)
	if err != nil {
		cancel()
		return nil, c.err(err, "")
	}
	ls := &LoadStream{c: c, st: st, cancel: cancel}
	if err := ls.send(&loadClientMsg{Start: &req}); err != nil {
		cancel()
		return nil, err
	}
	return ls, nil
}

// Recv returns the agent's next message; after the Final one, io.EOF.
// An agent silent for silentFor (dead, or the connection dropped) is an
// error.
func (s *LoadStream) Recv() (*LoadMsg, error) {
	var m LoadMsg
	silent := false
	var mu sync.Mutex
	t := time.AfterFunc(silentFor, func() {
		mu.Lock()
		silent = true
		mu.Unlock()
		s.cancel()
	})
	err := s.st.RecvMsg(&m)
	t.Stop()
	if err == nil {
		return &m, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if silent {
		return nil, fmt.Errorf("load agent %s: connection lost mid-run: nothing from the agent for %v", s.c.addr, silentFor)
	}
	if err == io.EOF {
		return nil, fmt.Errorf("load agent %s: connection lost mid-run: the stream ended before the agent's final account", s.c.addr)
	}
	return nil, s.c.err(err, "mid-run")
}

// Stop tells the agent to stop its load: its last slots and its final
// account follow through Recv.
func (s *LoadStream) Stop() error {
	if err := s.send(&loadClientMsg{Stop: true}); err != nil {
		return err
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.st.CloseSend()
}

// Close ends the stream at once; the agent stops its load when it sees
// the stream go.
func (s *LoadStream) Close() { s.cancel() }

func (s *LoadStream) send(m *loadClientMsg) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.st.SendMsg(m); err != nil {
		if err == io.EOF {
			// The agent ended the stream (it refused the request, or its
			// load is over): its reason is Recv's.
			return fmt.Errorf("load agent %s: the stream has ended", s.c.addr)
		}
		return s.c.err(err, "mid-run")
	}
	return nil
}

// Addr is the agent's address as dialled.
func (c *Client) Addr() string { return c.addr }

// ClockOffset estimates what to add to the agent's clock to read the
// controller's, from n pings: the one with the shortest round trip,
// taking the agent's reading as the midpoint of it. Its error is at most
// half that round trip (returned as err bound), which on a LAN is far
// below loadgen.SlotSpan: the load's slots need no finer mapping.
func (c *Client) ClockOffset(ctx context.Context, n int) (offset, bound int64, err error) {
	best := int64(math.MaxInt64)
	for range max(n, 1) {
		t1, t2, t3, err := c.Ping(ctx)
		if err != nil {
			return 0, 0, err
		}
		if rtt := t3 - t1; rtt < best {
			best, offset = rtt, t1+rtt/2-t2
		}
	}
	return offset, best / 2, nil
}

// clockPings is how many pings estimate each load agent's offset.
const clockPings = 8

// SplitClients shares n connections among k hosts as evenly as they
// go, the first hosts taking one more.
func SplitClients(n, k int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}

// RunLoad runs opts's load on the load agents, every connection on an
// agent (none on this host), split evenly (SplitClients; with fewer
// connections than agents, the first ones run one each), and merges
// their round trips into one result on this host's clock
// (loadgen.Merger): the stopping rule is applied to the merged slots,
// and the agents are stopped when it says so, at the duration cap, or
// when ctx ends. hooks get Began (the merged origin), Progress and
// Halting as from loadgen.Run; Sink and ClientsReady are not called:
// the round trips are on the agents' hosts, and only their slots come
// here. An agent that fails stops the run: the result holds what was
// merged before, and the error names the agent.
func RunLoad(ctx context.Context, agents []*Client, opts loadgen.Options, hooks loadgen.Hooks) (*loadgen.Summary, error) {
	if len(agents) == 0 {
		return nil, errors.New("run load on agents: no agent")
	}
	if opts.Clients <= 0 {
		opts.Clients = loadgen.DefaultClients
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = loadgen.DefaultCheckEvery
	}
	// The client CPUs are the agents' own (HostLoad.ClientLoad); this
	// host's --client-cpus pin nothing of the load.
	opts.ClientCPUs = nil
	split := SplitClients(opts.Clients, len(agents))
	// With fewer connections than agents, the last agents sit this run
	// out: an agent runs at least one connection or none at all.
	for len(split) > 0 && split[len(split)-1] == 0 {
		split, agents = split[:len(split)-1], agents[:len(agents)-1]
	}
	hosts := make([]loadgen.HostLoad, len(agents))
	offsets := make([]int64, len(agents))
	for i, a := range agents {
		off, _, err := a.ClockOffset(ctx, clockPings)
		if err != nil {
			return nil, err
		}
		offsets[i] = off
		hosts[i] = loadgen.HostLoad{Host: a.addr, Clients: split[i], OffsetNs: off}
	}

	// The slots' phase: every agent cuts at ref + k·SlotSpan on this
	// clock; the merged run's origin is the first such boundary after
	// every agent has begun.
	ref := monotonicNow()
	type msg struct {
		i   int
		m   *LoadMsg
		err error
	}
	in := make(chan msg, 64*len(agents))
	runCtx, cancel := context.WithCancel(ctx)
	streams := make([]*LoadStream, len(agents))
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred later, run first)
	defer cancel()
	for i, a := range agents {
		o := opts
		o.Clients = split[i]
		ls, err := a.Load(runCtx, LoadRequest{Options: o, OriginNs: ref - offsets[i]})
		if err != nil {
			for _, s := range streams[:i] {
				s.Close()
			}
			return nil, err
		}
		streams[i] = ls
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				m, err := ls.Recv()
				select {
				case in <- msg{i, m, err}:
				case <-runCtx.Done():
					return
				}
				if err != nil || m.Final != nil {
					return
				}
			}
		}(i)
	}
	finals := make([]*LoadFinal, len(agents))
	stopAll := func() {
		for i, s := range streams {
			if finals[i] == nil {
				_ = s.Stop() // an agent already gone says so through Recv
			}
		}
	}

	// Until every agent has begun, slots wait here.
	began := make([]int64, len(agents))
	var early []msg
	var g *loadgen.Merger
	var errs []error
	fail := func(i int, err error) {
		hosts[i].Error = err.Error()
		errs = append(errs, err)
	}
	setupBy := time.Now().Add(loadSetupWait + max(opts.ConnectTimeout, loadgen.DefaultConnectTimeout))
	for g == nil && len(errs) == 0 {
		select {
		case m := <-in:
			if m.err != nil {
				fail(m.i, m.err)
				finals[m.i] = &LoadFinal{} // its stream is over
				continue
			}
			if b := m.m.Began; b != nil {
				began[m.i] = b.FirstT0Ns + offsets[m.i]
			}
			if len(m.m.Slots) > 0 {
				early = append(early, m)
			}
			if f := m.m.Final; f != nil {
				// A short --requests run may be over before the others
				// have begun.
				finals[m.i] = f
				if began[m.i] == 0 || !finishedOwn(f) {
					fail(m.i, fmt.Errorf("load agent %s: ended before the run: %s", agents[m.i].addr, orElse(f.Err, f.StopReason)))
				}
			}
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		case <-time.After(time.Until(setupBy)):
			errs = append(errs, fmt.Errorf("run load on agents: not every agent's connections were up after %v", time.Until(setupBy)))
		}
		if len(errs) == 0 && !slicesContainsZero(began) {
			last := began[0]
			for _, b := range began {
				last = max(last, b)
			}
			span := loadgen.SlotSpan.Nanoseconds()
			origin := ref + (last-ref+span-1)/span*span
			g = loadgen.NewMerger(opts, origin, offsets)
			if hooks.Began != nil {
				hooks.Began(time.Now().Add(-time.Duration(monotonicNow()-origin)), origin)
			}
		}
	}
	reason := ""
	if g == nil {
		// Nothing began: stop whatever did, and say why.
		stopAll()
		cancel()
		return nil, errors.Join(errs...)
	}
	add := func(m msg) error {
		for _, w := range m.m.Slots {
			s, err := w.Slot()
			if err != nil {
				return fmt.Errorf("load agent %s: %w", agents[m.i].addr, err)
			}
			g.Add(m.i, s)
		}
		return nil
	}
	for _, m := range early {
		if err := add(m); err != nil {
			fail(m.i, err)
		}
	}
	for i, f := range finals {
		if f != nil {
			g.Done(i)
		}
	}
	if countNil(finals) == 0 {
		reason = loadgen.StopRequests
	}
	check := time.NewTicker(opts.CheckEvery)
	defer check.Stop()
	for reason == "" && len(errs) == 0 {
		select {
		case m := <-in:
			switch {
			case m.err != nil:
				// Its stream is over: nothing more will come from it.
				fail(m.i, m.err)
				finals[m.i] = &LoadFinal{}
				g.Done(m.i)
			case m.m.Final != nil:
				finals[m.i] = m.m.Final
				g.Done(m.i)
				if !finishedOwn(m.m.Final) {
					fail(m.i, fmt.Errorf("load agent %s: its load ended before the run: %s", agents[m.i].addr, orElse(m.m.Final.Err, m.m.Final.StopReason)))
				} else if countNil(finals) == 0 {
					// Every agent made its --requests.
					reason = loadgen.StopRequests
				}
			default:
				if err := add(m); err != nil {
					fail(m.i, err)
				}
			}
		case <-check.C:
			reason = g.Check()
			if hooks.Progress != nil {
				hooks.Progress(g.Progress())
			}
		case <-ctx.Done():
			reason = loadgen.StopInterrupted
		}
	}
	if len(errs) > 0 {
		reason = loadgen.StopError
	}
	if reason != loadgen.StopRequests {
		g.Stop(monotonicNow()) // a no-op when Check stopped the run
	}
	if hooks.Halting != nil {
		hooks.Halting()
	}
	stopAll()
	// The agents finish the round trips in flight (bounded by the
	// timeout), send their last slots and their accounts.
	waitBy := time.After(max(opts.Timeout, loadgen.DefaultTimeout) + silentFor)
	for pending := countNil(finals); pending > 0; {
		select {
		case m := <-in:
			switch {
			case m.err != nil:
				if finals[m.i] == nil {
					fail(m.i, m.err)
					finals[m.i] = &LoadFinal{Err: m.err.Error()}
					g.Done(m.i)
					pending--
				}
			case m.m.Final != nil:
				if finals[m.i] == nil {
					pending--
				}
				finals[m.i] = m.m.Final
				g.Done(m.i)
			default:
				if err := add(m); err != nil {
					fail(m.i, err)
				}
			}
		case <-waitBy:
			for i, f := range finals {
				if f == nil {
					fail(i, fmt.Errorf("load agent %s: no final account after it was told to stop", agents[i].addr))
				}
			}
			pending = 0
		}
	}
	cancel()
	for i, f := range finals {
		if f == nil {
			continue
		}
		hosts[i].StopReason, hosts[i].RoundTrips = f.StopReason, f.RoundTrips
		hosts[i].Setup, hosts[i].ClientLoad = f.Setup, f.ClientLoad
		own := loadgen.Slot{Count: f.RoundTrips}
		if err := own.DecodeHist([]byte(f.Hist)); err != nil {
			fail(i, fmt.Errorf("load agent %s: final account: %w", agents[i].addr, err))
		}
		hosts[i].Hist = own.Hist
		if f.Err != "" && hosts[i].Error == "" {
			hosts[i].Error = f.Err
			errs = append(errs, fmt.Errorf("load agent %s: %s", agents[i].addr, f.Err))
		}
	}
	if len(errs) > 0 && reason != loadgen.StopInterrupted {
		reason = loadgen.StopError
	}
	sum := g.Finish(reason, hosts)
	sum.Started = time.Now().Add(-time.Duration(monotonicNow() - sum.Window.FirstT0))
	return sum, errors.Join(errs...)
}

// finishedOwn says whether an agent's load ended by itself, each
// connection having made its Options.Requests.
func finishedOwn(f *LoadFinal) bool {
	return f.StopReason == loadgen.StopRequests && f.Err == ""
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func slicesContainsZero(xs []int64) bool {
	for _, x := range xs {
		if x == 0 {
			return true
		}
	}
	return false
}

func countNil(fs []*LoadFinal) int {
	n := 0
	for _, f := range fs {
		if f == nil {
			n++
		}
	}
	return n
}
