package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/loadgen"
)

// The Load method runs client connections on the agent's host: the
// controller sends the load's options as data and a slot origin, the
// agent runs loadgen.Run against the address in the options and streams
// its round trips back in slots (loadgen.Slot), until the controller
// says stop. The stopping rule is the controller's: it judges the
// slots of every load agent merged (loadgen.Merger), and the agent runs
// until told, with its own targets off.
//
// What the agent may load is its own command line's: --load-to names
// the addresses (CIDR prefixes or IPs, each optionally with a port)
// that a Load request's address must fall in. An agent without it runs
// no load. The address must be a literal IP:port: a name would be
// resolved on the agent's host, which may see it otherwise than the
// user who allowed it.

// LoadPolicy is what a load agent may connect to (--load-to).
type LoadPolicy struct {
	rules []loadRule
}

type loadRule struct {
	prefix netip.Prefix
	port   uint16 // 0: any
}

// ParseLoadPolicy reads --load-to specs: "10.0.0.0/8", "10.0.0.5",
// "10.0.0.5:7000", "[fd00::/8]:7000", "::1".
func ParseLoadPolicy(specs []string) (*LoadPolicy, error) {
	p := &LoadPolicy{}
	for _, s := range specs {
		for _, f := range strings.Split(s, ",") {
			r, err := parseLoadRule(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("--load-to %q: %w; want a CIDR prefix or an IP, each optionally with :PORT", f, err)
			}
			p.rules = append(p.rules, r)
		}
	}
	if len(p.rules) == 0 {
		return nil, errors.New("--load-to: no address given")
	}
	return p, nil
}

func parseLoadRule(s string) (loadRule, error) {
	var r loadRule
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return r, errors.New("port 0")
		}
		r.prefix = netip.PrefixFrom(ap.Addr().Unmap(), ap.Addr().Unmap().BitLen())
		r.port = ap.Port()
		return r, nil
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["): // [fd00::/8]:7000
		h, p, ok := strings.Cut(s[1:], "]:")
		if !ok {
			return r, errors.New("a bracketed address needs ]:PORT")
		}
		host, port = h, p
	case strings.Contains(s, "/"): // 10.0.0.0/8:7000
		i := strings.Index(s, "/")
		if bits, p, ok := strings.Cut(s[i+1:], ":"); ok {
			host, port = s[:i+1]+bits, p
		}
	}
	if port != "" {
		ap, err := netip.ParseAddrPort("127.0.0.1:" + port)
		if err != nil || ap.Port() == 0 {
			return r, fmt.Errorf("port %q", port)
		}
		r.port = ap.Port()
	}
	if pf, err := netip.ParsePrefix(host); err == nil {
		r.prefix = pf.Masked()
		return r, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return r, err
	}
	a = a.Unmap()
	r.prefix = netip.PrefixFrom(a, a.BitLen())
	return r, nil
}

// Allow says whether the load may connect to addr, a literal IP:port.
func (p *LoadPolicy) Allow(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("load address %q is not a literal IP:port (this agent resolves no names)", addr)
	}
	a := ap.Addr().Unmap()
	for _, r := range p.rules {
		if r.prefix.Contains(a) && (r.port == 0 || r.port == ap.Port()) {
			return nil
		}
	}
	return fmt.Errorf("load address %s is outside this agent's --load-to", addr)
}

// String lists the rules as --load-to would take them.
func (p *LoadPolicy) String() string {
	var parts []string
	for _, r := range p.rules {
		s := r.prefix.String()
		if r.prefix.IsSingleIP() {
			s = r.prefix.Addr().String()
		}
		if r.port != 0 {
			if r.prefix.Addr().Is6() {
				s = "[" + s + "]"
			}
			s += fmt.Sprint(":", r.port)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// loadHost is a Host that may run load: WithLoad makes one.
type loadHost interface {
	Host
	loadPolicy() *LoadPolicy
	loads() *oneAtATime
}

type withLoad struct {
	Host
	policy *LoadPolicy
	load   oneAtATime
}

func (h *withLoad) loadPolicy() *LoadPolicy { return h.policy }
func (h *withLoad) loads() *oneAtATime      { return &h.load }

// WithLoad lets the agent serving host run load to the addresses p
// allows (Load requests); without it an agent refuses every Load.
func WithLoad(host Host, p *LoadPolicy) Host {
	return &withLoad{Host: host, policy: p}
}

// LoadRequest starts a Load session.
type LoadRequest struct {
	// Options are the load's, as the controller's loadgen.Run would take
	// them, with this agent's share of the connections in Clients. The
	// agent turns its own stopping rule off (the controller's merged
	// one decides) and leaves its client threads unpinned (the
	// controller's --client-cpus name its own host's CPUs).
	Options loadgen.Options `json:"options"`
	// OriginNs is where the agent cuts its slots, on its own clock: the
	// controller's slot origin mapped through the clock offset.
	OriginNs int64 `json:"origin_ns"`
}

// loadClientMsg is one message of the controller's side of Load: the
// request first, then stop.
type loadClientMsg struct {
	Start *LoadRequest `json:"start,omitempty"`
	Stop  bool         `json:"stop,omitempty"`
}

// LoadMsg is one message of the agent's side of Load. An empty one is
// a heartbeat (the connections are still being set up).
type LoadMsg struct {
	// Began is the agent's clock at its first request, once every
	// connection is up.
	Began *LoadBegan `json:"began,omitempty"`
	// Slots are the next slots, in order, empty ones included.
	Slots []WireSlot `json:"slots,omitempty"`
	// Final is the agent's account, its last message.
	Final *LoadFinal `json:"final,omitempty"`
}

// LoadBegan says the agent's load has begun.
type LoadBegan struct {
	FirstT0Ns int64 `json:"first_t0_ns"` // agent clock
	Conns     int   `json:"conns"`
}

// WireSlot is a loadgen.Slot on the wire: its histogram in
// HdrHistogram's compressed encoding.
type WireSlot struct {
	StartNs int64  `json:"start_ns"`
	EndNs   int64  `json:"end_ns"`
	Count   int64  `json:"count"`
	SumNs   int64  `json:"sum_ns"`
	Hist    string `json:"hist,omitempty"`
}

// Slot decodes w, refusing a histogram that disagrees with its count.
func (w WireSlot) Slot() (loadgen.Slot, error) {
	s := loadgen.Slot{StartNs: w.StartNs, EndNs: w.EndNs, Count: w.Count, SumNs: w.SumNs}
	if w.EndNs <= w.StartNs || w.Count < 0 {
		return s, fmt.Errorf("slot [%d, %d) of %d round trips: not a slot", w.StartNs, w.EndNs, w.Count)
	}
	return s, s.DecodeHist([]byte(w.Hist))
}

// LoadFinal is a load agent's account of its run.
type LoadFinal struct {
	StopReason string             `json:"stop_reason"`
	Err        string             `json:"error,omitempty"`
	Clients    int                `json:"clients"`
	RoundTrips int64              `json:"round_trips"` // every round trip it completed
	Hist       string             `json:"hist"`        // their latencies, in WireSlot.Hist's encoding
	Setup      loadgen.SetupStats `json:"setup"`
	ClientLoad loadgen.ClientLoad `json:"client_load"`
	AgentCPU   int64              `json:"agent_cpu_ns"` // the agent process's CPU time over the session, load included
}

// StopController is a load agent's stop reason when the controller
// stopped it, as it does at the end of every run it does not end by
// itself (Options.Requests).
const StopController = "controller"

// Timing of the Load stream.
const (
	// loadSlack is how long past the controller's duration cap (and
	// warm-up) an agent's load runs if never told to stop: the
	// controller stops it first; this bounds a load whose controller
	// went silent without the connection dropping.
	loadSlack = 30 * time.Second
	// loadSetupWait bounds the controller's wait for every agent's
	// connections to be up, past the set-up's own timeout.
	loadSetupWait = 30 * time.Second
)

const methodLoad = "/" + ServiceName + "/Load"

func loadHandler(srv any, ss grpc.ServerStream) error {
	return srv.(*server).load(ss)
}

// agentOptions are the options the agent runs: the controller's, with
// the agent's own stopping rule off and its cap pushed past the
// controller's.
func agentOptions(o loadgen.Options) loadgen.Options {
	o.CI, o.P99CI, o.KeepGoing, o.NoMSER = -1, -1, true, true
	o.ClientCPUs = nil
	if o.Duration <= 0 {
		o.Duration = loadgen.DefaultDuration
	}
	o.Duration += max(o.Warmup, 0) + loadSlack
	return o
}

// load serves one Load session.
func (s *server) load(ss grpc.ServerStream) error {
	ctx := ss.Context()
	lh, ok := s.host.(loadHost)
	if !ok {
		s.host.Note("refused a load request from " + peerOf(ctx) + ": this agent runs no load (no --load-to)")
		return status.Error(codes.FailedPrecondition, "this agent runs no load: start it with --load-to naming the servers it may load")
	}
	var first loadClientMsg
	if err := ss.RecvMsg(&first); err != nil {
		return err
	}
	if first.Start == nil {
		return status.Error(codes.InvalidArgument, "the first message of Load must be the load request")
	}
	req := *first.Start
	if err := lh.loadPolicy().Allow(req.Options.Addr); err != nil {
		s.host.Note(fmt.Sprintf("refused a load request from %s: %v", peerOf(ctx), err))
		return status.Error(codes.PermissionDenied, err.Error())
	}
	if err := req.Options.CheckProto(); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	// The controller checked its machine, not this one.
	if err := loadgen.CheckCapacity(req.Options); err != nil {
		return status.Error(codes.InvalidArgument, "this agent's host: "+err.Error())
	}
	held := lh.loads().hold(ctx)
	if held == nil {
		return status.Error(codes.ResourceExhausted, "busy: another controller's load is running on this agent (one at a time)")
	}
	defer lh.loads().letGo(held)
	s.host.Note(fmt.Sprintf("load for %s: %d connection(s) to %s", peerOf(ctx), req.Options.Clients, req.Options.Addr))
	cpu0 := processCPU()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stopped atomic.Bool // the controller said stop
	go func() {
		for {
			var m loadClientMsg
			err := ss.RecvMsg(&m)
			if err == nil && m.Stop {
				stopped.Store(true)
			}
			if err != nil || m.Stop {
				held.ending.Store(true)
				stop() // told to stop, or the controller is gone
				return
			}
		}
	}()

	// The run loop (Sink, Progress, Began) fills q; this goroutine
	// sends it every flushEvery, a batch of slots at a time, or an empty
	// message that tells the controller the agent is alive.
	var mu sync.Mutex
	var q LoadMsg
	push := func(f func(*LoadMsg)) {
		mu.Lock()
		f(&q)
		mu.Unlock()
	}
	var encErr error
	slotter := loadgen.NewSlotter(req.OriginNs, loadgen.SlotSpan, func(sl loadgen.Slot) {
		h, err := sl.EncodeHist()
		if err != nil {
			encErr = err
		}
		push(func(m *LoadMsg) {
			m.Slots = append(m.Slots, WireSlot{StartNs: sl.StartNs, EndNs: sl.EndNs, Count: sl.Count, SumNs: sl.SumNs, Hist: string(h)})
		})
	})
	opts := agentOptions(req.Options)
	var firstT0 int64
	// all is the agent's own account of every round trip, which the
	// controller's merge must add up to.
	all := loadgen.NewSlotter(0, time.Duration(math.MaxInt64), func(loadgen.Slot) {})
	hooks := loadgen.Hooks{
		Began: func(_ time.Time, t0 int64) {
			firstT0 = t0
			push(func(m *LoadMsg) { m.Began = &LoadBegan{FirstT0Ns: t0, Conns: opts.Clients} })
		},
		Sink: func(d loadgen.Delivery) {
			slotter.Add(d)
			all.Add(d)
		},
		// A round trip completes a little before the run loop drains
		// it: a slot is handed on a check period after its end.
		Progress: func(p loadgen.Progress) {
			slotter.Flush(firstT0 + p.Elapsed.Nanoseconds() - opts.CheckEvery.Nanoseconds())
		},
	}
	type result struct {
		sum *loadgen.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := loadgen.Run(runCtx, opts, hooks)
		slotter.Close()
		done <- result{sum, err}
	}()

	send := func() error {
		mu.Lock()
		m := q
		q = LoadMsg{}
		mu.Unlock()
		return ss.SendMsg(&m)
	}
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C: // what the run loop queued, or a heartbeat
		case r := <-done:
			if err := send(); err != nil {
				return err
			}
			fin := &LoadFinal{Clients: opts.Clients, AgentCPU: processCPU() - cpu0}
			if r.sum != nil {
				fin.StopReason = r.sum.StopReason
				if fin.StopReason == loadgen.StopInterrupted && stopped.Load() {
					fin.StopReason = StopController
				}
				fin.Setup, fin.ClientLoad = r.sum.Setup, r.sum.ClientLoad
			}
			acc := all.Current()
			fin.RoundTrips = acc.Count
			if h, err := acc.EncodeHist(); err == nil {
				fin.Hist = string(h)
			} else if encErr == nil {
				encErr = err
			}
			if r.err == nil && encErr != nil {
				r.err = encErr
			}
			if r.err != nil {
				fin.Err = r.err.Error()
			}
			s.host.Note(fmt.Sprintf("load for %s ended: %d round trips (%s)", peerOf(ctx), fin.RoundTrips, fin.StopReason))
			return ss.SendMsg(&LoadMsg{Final: fin})
		}
		if err := send(); err != nil {
			stop()
			<-done
			return err
		}
	}
}

// LoadOnly is the Host of an agent that serves no server, only load
// (`volleyscope agent --load-to` without --server): its Events sessions
// are refused. note receives the agent's log lines.
func LoadOnly(note func(string)) Host { return loadOnly{note: note, host: hostinfo.Local()} }

type loadOnly struct {
	note func(string)
	host hostinfo.Host
}

func (h loadOnly) Info() Info      { return Info{Host: h.host} }
func (loadOnly) Now() int64        { return monotonicNow() }
func (h loadOnly) Note(msg string) { h.note(msg) }
func (loadOnly) Open(context.Context, EventsRequest) (Session, error) {
	return nil, errors.New("this agent serves no server, only load (--load-to): start it with --server to probe one")
}
