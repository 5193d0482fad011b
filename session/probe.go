package session

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/volleyscope/volleyscope/breakdown"
	"github.com/volleyscope/volleyscope/loadgen"
	"github.com/volleyscope/volleyscope/probe"
	"github.com/volleyscope/volleyscope/report"
)

const eventChunk = 1 << 16

// probeRun is the probe's part of one measurement: it collects every event
// while the load runs, then joins them with the client's records.
type probeRun struct {
	p      *probe.Probe
	chunks [][]probe.Event // written by the reader goroutine until done
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
	// Read from the kernel before the probe is closed.
	lost        uint64
	runs, bpfNs uint64
	statsErr    error
}

// startProbe loads and attaches the probe, follows the server process and
// port, and starts reading events. The caller must call stop.
func startProbe(cfg Config, serverPID int, port uint16, note func(string)) (*probeRun, error) {
	if err := probe.Check(); err != nil {
		return nil, err
	}
	p, err := probe.Open(probe.Config{Mode: probe.Mode(cfg.ProbeMode), Ports: []uint16{port}, Stats: true, Syscalls: cfg.Syscalls})
	if err != nil {
		return nil, fmt.Errorf("open probe: %w", err)
	}
	if serverPID > 0 {
		if err := p.TrackTGID(uint32(serverPID)); err != nil {
			p.Close()
			return nil, fmt.Errorf("follow server pid %d: %w", serverPID, err)
		}
	}
	note("probe: " + hookLine(p))
	for _, h := range p.Hooks() {
		if h.State == probe.HookMissing {
			note(fmt.Sprintf("probe: no hook for %s (%v): costs %s", h.Event, h.Err, h.Costs))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr := &probeRun{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() {
		// Events go into fixed-size chunks: a growing slice would copy
		// hundreds of megabytes while the load runs.
		pr.done <- p.Run(ctx, func(e *probe.Event) {
			if len(pr.chunks) == 0 || len(pr.chunks[len(pr.chunks)-1]) == eventChunk {
				pr.chunks = append(pr.chunks, make([]probe.Event, 0, eventChunk))
			}
			c := &pr.chunks[len(pr.chunks)-1]
			*c = append(*c, *e)
		})
	}()
	return pr, nil
}

func hookLine(p *probe.Probe) string {
	s := "mode " + p.ModeUsed() + ", records on " + p.Ring().String() + ";"
	var off []string
	for _, h := range p.Hooks() {
		switch h.State {
		case probe.HookOff:
			off = append(off, h.Event)
		case probe.HookAttached:
			s += " " + h.Event + "=" + h.Hook
		}
	}
	if len(off) > 0 {
		s += "; off: " + strings.Join(off, ", ")
	}
	return s
}

// clientsReady starts following the client threads.
func (pr *probeRun) clientsReady(conns []loadgen.ConnInfo) error {
	for _, c := range conns {
		if err := pr.p.TrackTID(uint32(c.TID)); err != nil {
			return fmt.Errorf("follow client thread %d: %w", c.TID, err)
		}
	}
	return nil
}

// stop drains the ring buffer and detaches everything.
func (pr *probeRun) stop() error {
	pr.once.Do(func() {
		pr.cancel()
		pr.err = <-pr.done
		pr.lost = pr.p.Lost()
		pr.runs, pr.bpfNs, pr.statsErr = pr.p.Stats()
		if cerr := pr.p.Close(); pr.err == nil {
			pr.err = cerr
		}
	})
	return pr.err
}

// finish joins the events with the load result and fills the breakdown
// sections of res.
func (pr *probeRun) finish(cfg Config, res *report.Results, load *loadgen.Result, port uint16) *report.PerRequest {
	res.Meta.ProbeMode = pr.p.ModeUsed()
	info := &report.ProbeInfo{Missing: map[string]string{}, Ring: pr.p.Ring().String(), Syscalls: cfg.Syscalls}
	for _, h := range pr.p.Hooks() {
		res.Meta.Hooks[h.Event] = h.String()
		if h.State == probe.HookMissing {
			info.Missing[h.Event] = fmt.Sprintf("%v; costs %s", h.Err, h.Costs)
		}
	}
	res.LostEvents = pr.lost
	if res.LostEvents > 0 {
		res.Errors = append(res.Errors, fmt.Sprintf("probe lost %d events (ring buffer full): round trips missing them are counted as unjoined", res.LostEvents))
	}
	// stop has returned, so the reader is done with the chunks.
	n := 0
	for _, c := range pr.chunks {
		n += len(c)
	}
	evs := make([]probe.Event, 0, n)
	for _, c := range pr.chunks {
		evs = append(evs, c...)
	}
	pr.chunks = nil
	info.Events = uint64(len(evs))
	if pr.statsErr == nil && pr.runs > 0 {
		info.BPFNsPerEvent = float64(pr.bpfNs) / float64(pr.runs)
		info.ProgramRunsPerRTT = float64(pr.runs)
	}
	total := 0
	for _, c := range load.Conns {
		total += len(c.Records)
	}
	if total > 0 {
		info.EventsPerRTT = float64(len(evs)) / float64(total)
		// Statistics ran during the warm-up (see Run), so per round trip
		// of the warm-up.
		if w := load.WarmupDiscarded; w > 0 && !load.WarmupIncluded {
			info.ProgramRunsPerRTT /= float64(w)
		} else {
			info.ProgramRunsPerRTT /= float64(total)
		}
		info.OverheadNsPerRT = info.ProgramRunsPerRTT * info.BPFNsPerEvent
	}
	res.Probe = info

	if cfg.Record != "" {
		if err := breakdown.WriteRecording(cfg.Record, breakdown.Input{Conns: load.Conns, MeasureStart: load.MeasureStart, ServerPort: port, Events: evs}); err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	j := breakdown.Join(breakdown.Input{Conns: load.Conns, MeasureStart: load.MeasureStart, ServerPort: port, Events: evs})
	fillBreakdown(res, j)
	if cfg.Syscalls {
		clients := map[uint32]bool{}
		for _, c := range load.Conns {
			clients[uint32(c.TID)] = true
		}
		for _, s := range breakdown.Syscalls(evs, clients) {
			res.Syscalls = append(res.Syscalls, report.Syscall{Side: s.Side, Name: s.Name, Count: s.Count, P50Ns: s.P50Ns, P99Ns: s.P99Ns, MaxNs: s.MaxNs})
		}
	}
	return &report.PerRequest{Columns: breakdown.Names(), Row: j.Row()}
}

func fillBreakdown(res *report.Results, j *breakdown.Result) {
	for _, c := range j.Summarize() {
		res.Breakdown = append(res.Breakdown, report.Component{
			Component: c.Component.String(), Side: c.Component.Side(), MeanNs: c.MeanNs, P50Ns: c.P50Ns, P99Ns: c.P99Ns, Share: c.Share,
		})
	}
	bc := &report.BreakdownCheck{Joined: j.Joined, Unjoined: j.Unjoined, UnjoinedReasons: j.Reasons, Tolerance: "2% or 1 µs"}
	if j.Joined > 0 {
		bc.SumWithinTolerance = float64(j.Consistent) / float64(j.Joined)
	}
	res.BreakdownCheck = bc
}
