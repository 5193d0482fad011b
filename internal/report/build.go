package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
)

// Parts are the typed outputs of one run's stages, from which Build makes
// its results.json. Only Meta and Load are required.
type Parts struct {
	// Meta describes the machine (HostMeta) and what was asked (server,
	// server CPUs, spin); Build fills clients, protocol, client CPUs and
	// the start time from Load.
	Meta Meta
	Load *loadgen.Summary
	// Join is the breakdown of the measured round trips; nil without the probe.
	Join *breakdown.Accumulator
	// Syscalls is the per-syscall table (--syscalls).
	Syscalls []breakdown.SyscallStat
	// Uring is the io_uring operations per opcode (io_uring servers).
	Uring []breakdown.UringStat
	Probe *ProbeParts
	// ServerSends is how many send calls the server made in the measured
	// window, from the probe's send events; 0 without the probe.
	ServerSends int64
	// ServerCost is what the server's process tree spent per request over
	// the window, from /proc; nil when its process is not known.
	ServerCost *proccost.Cost
	// TwoHosts is a run across two hosts' clock estimate and one-way
	// times (session fills it); nil on one host.
	TwoHosts *TwoHosts
	// TraceSampling is a time-sampled watch's windows; nil otherwise.
	TraceSampling *TraceSampling
	// PayloadCapture is a watch's payload capture; nil otherwise.
	PayloadCapture *PayloadCapture
	Errors         []string // what went wrong, in order
	Warnings       []string // checks made elsewhere (e.g. other tracers on our hooks)
}

// ProgramRuns is one BPF program's runs and run time (ns), machine-wide.
type ProgramRuns struct {
	Program  string
	Runs, Ns uint64
}

// ProbeParts is what the probe says of itself after a run.
type ProbeParts struct {
	Mode     string            // hook families used
	Hooks    map[string]string // event → hook, "none", or "off (why)"
	Missing  map[string]string // event → why it has no hook, and what that costs
	Ring     string            // where records went, and why
	Syscalls bool              // the syscall hooks were on
	Records  uint64            // records received from the tracked threads
	ByKind   map[string]uint64 // the same by kind (a folded record as its own kind)
	Lost     uint64            // records dropped because a ring was full
	Late     int64             // records that arrived after their round trips were joined
	// Program runs and their BPF time, machine-wide, counted during the
	// warm-up only (the kernel's statistics slow every run); WarmupTrips
	// round trips completed meanwhile.
	WarmupRuns, WarmupBPFNs uint64
	WarmupTrips             int64
	// WarmupPrograms is WarmupRuns and WarmupBPFNs program by program.
	WarmupPrograms []ProgramRuns
	// The observer's threads on this host: the CPU time of the ring
	// reader and of the join (its flush after the load left out), over
	// Wall, the time from the source's start to its stop. Zero for a
	// recording.
	ReaderCPU, JoinCPU time.Duration
	Wall               time.Duration
	// OthersPeak is the largest share of one client CPU that processes
	// other than the run's used over a stretch of OthersWindow or more
	// (a run's join measures it); 0: not measured.
	OthersPeak   float64
	OthersWindow time.Duration
	// The connection sample: the probe followed the socket events of the
	// connections whose client port is in one in SampleOneIn (1: all);
	// with a sample, SampledConns of Conns.
	SampleOneIn         uint32
	SampledConns, Conns int
}

// BreakdownTolerance is how far a joined round trip's components may sum
// from t1 − t0 and still count as consistent.
const BreakdownTolerance = "2% or 1 µs"

// Client saturation thresholds: over these, the client, not the server,
// may set what was measured.
const (
	saturatedOnCPU    = 0.8  // client threads' share of their CPUs
	saturatedRunDelay = 0.10 // client threads' run-queue wait per round trip, as a share of the mean latency
	saturatedCPUs     = 0.90 // the client CPUs' busy share, whatever kept them busy
	mserWarnShare     = 0.05 // MSER-5 cut over this share of the measured round trips
	// observerWarnShare: the observer's threads holding more than this
	// share of the client CPUs while the client is saturated are named
	// as the cause: the load, not the observer, should hold those CPUs.
	observerWarnShare = 0.05
)

// othersWarnShare: other processes than the run's (its server left
// out) using this share of one of the client CPUs, or more, over a
// stretch (ProbeParts.OthersWindow) are warned of: the clients wait for
// them.
const othersWarnShare = 0.1

// Build makes the results of one run from its parts: the one place where
// results.json is assembled.
func Build(p Parts) *Results {
	r := &Results{Schema: ResultsSchema, Meta: p.Meta, Errors: append([]string{}, p.Errors...), Warnings: append([]string{}, p.Warnings...)}
	if r.Meta.Hooks == nil {
		r.Meta.Hooks = map[string]string{}
	}
	r.TraceSampling = p.TraceSampling
	r.PayloadCapture = p.PayloadCapture
	if res := p.Load; res != nil {
		buildLoad(r, res)
	}
	if p.Probe != nil {
		buildProbe(r, p)
	} else {
		r.Meta.ProbeMode = "none (bench: no kernel breakdown)"
	}
	if j := p.Join; j != nil {
		for _, c := range j.Components() {
			r.Breakdown = append(r.Breakdown, Component{
				Component: c.Component.String(), Side: c.Component.Side(), MeanNs: c.MeanNs, P50Ns: c.P50Ns, P99Ns: c.P99Ns, Share: c.Share,
			})
		}
		r.BreakdownByBand = buildBands(j)
		r.Slowest = buildSlowest(j)
		if conns, threads, slow := j.Concentration(5); slow > 0 {
			sw := &SlowWhere{Slow: slow}
			for _, c := range conns {
				sw.ByConn = append(sw.ByConn, SlowCount{ID: c.Key, Slow: c.Slow, Total: c.Total})
			}
			for _, t := range threads {
				sw.ByServerThread = append(sw.ByServerThread, SlowCount{ID: t.Key, Slow: t.Slow, Total: t.Total})
			}
			r.SlowWhere = sw
		}
		bc := &BreakdownCheck{Joined: j.Joined, Unjoined: j.Unjoined, UnjoinedReasons: j.Reasons, Tolerance: BreakdownTolerance}
		if j.Joined > 0 {
			bc.SumWithinTolerance = float64(j.Consistent) / float64(j.Joined)
		}
		r.BreakdownCheck = bc
	}
	if t := p.TwoHosts; t != nil {
		r.TwoHosts = t
		ws := t.oneWayWarnings()
		held := len(ws) == 0
		r.Run.Validity.OneWayHeld = &held
		r.Run.Validity.Warnings = append(r.Run.Validity.Warnings, ws...)
		r.Warnings = append(r.Warnings, ws...)
	}
	for _, s := range p.Syscalls {
		r.Syscalls = append(r.Syscalls, Syscall{Side: s.Side, Name: s.Name, Count: s.Count, P50Ns: s.P50Ns, P99Ns: s.P99Ns, MaxNs: s.MaxNs, Log2: s.Log2})
	}
	if p.Load != nil {
		if span := p.Load.Window.Span(); p.ServerSends > 0 && span > 0 {
			r.ServerThroughputRPS = float64(p.ServerSends) / span.Seconds()
		}
		r.Warnings = append(r.Warnings, saturation(r, p.Load)...)
	}
	r.ServerCost = p.ServerCost
	for _, u := range p.Uring {
		r.Uring = append(r.Uring, UringOp{Opcode: u.Opcode, Name: u.Name, Count: u.Count, P50Ns: u.P50Ns, P99Ns: u.P99Ns, MaxNs: u.MaxNs, Extra: u.Extra})
	}
	return r
}

// OvershootWarn is how long past its duration cap a run may take to
// finish its round trips in flight before it says so.
const OvershootWarn = time.Second

func buildLoad(r *Results, res *loadgen.Summary) {
	o := res.Options
	r.Meta.Clients = o.Clients
	r.Meta.RateRPS = o.Rate
	r.Meta.Proto = string(o.Proto)
	if o.SendsSize() {
		r.Meta.Size = o.Size
	}
	r.Meta.Workload = o.Workload()
	r.Meta.ClientCPUs = o.ClientCPUs
	r.Meta.StartedAt = res.Started.UTC()
	l := res.Latency
	r.Latency = Latency{
		Count: l.Count, Mean: l.Mean, P50: l.P50, P90: l.P90, P99: l.P99, P999: l.P999, P9999: l.P9999, Max: l.Max,
		CILevel: o.Confidence,
	}
	if !res.WarmupIncluded {
		r.Latency.CILow, r.Latency.CIHigh = bounds(res.Mean)
		r.Latency.P50CILow, r.Latency.P50CIHigh = bounds(res.P50)
		r.Latency.P99CILow, r.Latency.P99CIHigh = bounds(res.P99)
	}
	r.ThroughputRPS = res.ThroughputRPS
	w := res.Window
	r.Run = RunInfo{
		StopReason: res.StopReason, Limiting: res.Limiting, TimeToTargetNs: res.TargetAfter.Nanoseconds(), TargetNeedsNs: res.TargetNeeds.Nanoseconds(),
		P50CITarget: o.CI, P50CIAchieved: finite(res.P50.RelHalfWidth()),
		P99CITarget: o.P99CI, P99CIAchieved: finite(res.P99.RelHalfWidth()),
		MeanCIAchieved: finite(res.Mean.RelHalfWidth()),
		Batches:        res.Mean.Batches, BatchSize: res.Mean.BatchSize,
		FirstT0Ns: w.FirstT0, WindowStartNs: w.Start, WindowEndNs: w.End,
		WarmupNs: o.Warmup.Nanoseconds(), Outside: res.Outside, MSERDiscarded: res.MSERDiscarded, MSEROff: o.NoMSER,
		WarmupIncluded: res.WarmupIncluded, MeasuredNs: w.Span().Nanoseconds(), OvershootNs: res.Overshoot.Nanoseconds(),
		Validity: RunValidity{Validity: res.Validity}, ClientLoad: res.ClientLoad, Setup: res.Setup,
	}
	for _, h := range res.Hosts {
		sat, _ := saturated(h.ClientLoad, res.Latency.Mean)
		r.Run.LoadHosts = append(r.Run.LoadHosts, LoadHost{HostLoad: h, Saturated: sat})
	}
	if res.Overshoot > OvershootWarn {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the run ended %.1f s after its duration cap: its threads waited that long for a CPU (finishing the round trips in flight); use fewer connections per client CPU or --client-model epoll",
			res.Overshoot.Seconds()))
	}
	// An overloaded open loop first: it explains the unsteady batches
	// the validity warnings then find.
	if o := res.Overload(); o != "" {
		r.Warnings = append(r.Warnings, o)
	}
	r.Warnings = append(r.Warnings, res.Validity.Warnings...)
	if n := res.Measured; n > 0 && float64(res.MSERDiscarded) > mserWarnShare*float64(n) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("MSER-5 cut %d round trips after the warm-up (%.0f%% of those measured): the server was still settling; lengthen --warmup, or turn the cut off with --no-mser",
			res.MSERDiscarded, 100*float64(res.MSERDiscarded)/float64(n)))
	}
}

// bounds are an interval's ends, or zeros when there is none.
func bounds(iv stats.Interval) (lo, hi float64) {
	if iv.Batches == 0 {
		return 0, 0
	}
	return max(0, finite(iv.Low)), finite(iv.High)
}

func buildProbe(r *Results, p Parts) {
	pp := p.Probe
	r.Meta.ProbeMode = pp.Mode
	for _, ev := range SortedKeys(pp.Hooks) {
		r.Meta.Hooks[ev] = pp.Hooks[ev]
	}
	info := &ProbeInfo{Missing: pp.Missing, Ring: pp.Ring, Syscalls: pp.Syscalls, Events: pp.Records}
	if pp.SampleOneIn > 1 {
		info.Sample = &ConnSample{OneIn: pp.SampleOneIn, Followed: pp.SampledConns, Connections: pp.Conns}
	}
	if pp.WarmupRuns > 0 {
		info.BPFNsPerEvent = float64(pp.WarmupBPFNs) / float64(pp.WarmupRuns)
	}
	if pp.WarmupTrips > 0 {
		info.ProgramRunsPerRTT = float64(pp.WarmupRuns) / float64(pp.WarmupTrips)
		info.OverheadNsPerRT = info.ProgramRunsPerRTT * info.BPFNsPerEvent
		for _, pr := range pp.WarmupPrograms {
			if pr.Runs > 0 {
				info.Programs = append(info.Programs, ProgramCost{Program: pr.Program,
					RunsPerRTT: float64(pr.Runs) / float64(pp.WarmupTrips), NsPerRTT: float64(pr.Ns) / float64(pp.WarmupTrips)})
			}
		}
	}
	if p.Load != nil {
		if total := p.Load.Measured + p.Load.Outside; total > 0 {
			info.EventsPerRTT = float64(pp.Records) / float64(total)
			for k, n := range pp.ByKind {
				if info.EventsPerRTTByKind == nil {
					info.EventsPerRTTByKind = map[string]float64{}
				}
				info.EventsPerRTTByKind[k] = float64(n) / float64(total)
			}
		}
	}
	observerCost(info, pp, p.Load, r.Meta.NCPU)
	info.OthersCPUShare = pp.OthersPeak
	if pp.OthersPeak >= othersWarnShare {
		r.Warnings = append(r.Warnings, fmt.Sprintf("other programs used the client CPUs: up to %.0f%% of one over %s; the clients' round trips waited for them; keep other work off the client CPUs (--client-cpus)", 100*pp.OthersPeak, Dur(float64(pp.OthersWindow))))
	}
	r.Probe = info
	r.LostEvents = pp.Lost
	if pp.Lost > 0 {
		r.Errors = append(r.Errors, fmt.Sprintf("probe lost %d events (a ring was full): round trips missing them are counted as unjoined", pp.Lost))
	}
	r.LateEvents = pp.Late
	if pp.Late > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d probe records arrived after their round trips were joined (the reader fell behind): those round trips may be unjoined", pp.Late))
	}
}

// observerCost fills the observer's CPU: the reader's and the join's, as
// a share of the client CPUs over the run (where the process is confined)
// and, with the programs' estimate, per round trip.
func observerCost(info *ProbeInfo, pp *ProbeParts, res *loadgen.Summary, ncpu int) {
	info.ReaderCPUNs, info.JoinCPUNs = pp.ReaderCPU.Nanoseconds(), pp.JoinCPU.Nanoseconds()
	cpu := float64(info.ReaderCPUNs + info.JoinCPUNs)
	if cpu == 0 || res == nil {
		return
	}
	n := len(res.Options.ClientCPUs)
	if n == 0 {
		n = max(ncpu, 1) // not pinned: the whole machine
	}
	if pp.Wall > 0 {
		info.ObserverCPUShare = cpu / (float64(n) * float64(pp.Wall.Nanoseconds()))
	}
	if trips := res.Measured + res.Outside; trips > 0 {
		info.ObserverNsPerRTT = cpu/float64(trips) + info.OverheadNsPerRT
	}
}

// saturated says whether a client load is over a saturation threshold,
// and its run-queue wait's share of the mean latency.
func saturated(cl loadgen.ClientLoad, meanNs float64) (bool, float64) {
	if !cl.Known || meanNs <= 0 {
		return false, 0
	}
	delayShare := cl.RunDelayPerTripNs / meanNs
	return cl.OnCPU >= saturatedOnCPU || delayShare >= saturatedRunDelay || cl.CPUsBusy >= saturatedCPUs, delayShare
}

// saturation warns when the client, not the server, may have set what
// was measured: the local client, or each load host on its own.
func saturation(r *Results, res *loadgen.Summary) []string {
	if res.Latency.Count == 0 {
		return nil
	}
	var out []string
	for _, h := range res.Hosts {
		cl := h.ClientLoad
		if sat, delayShare := saturated(cl, res.Latency.Mean); sat {
			out = append(out, fmt.Sprintf("the client may limit this measurement: on load host %s, its CPUs were %.0f%% busy, its threads kept %.0f%% of them busy and waited %s for a CPU per round trip (%.0f%% of the mean latency); give that host fewer connections or more CPUs, or add load agents",
				h.Host, 100*cl.CPUsBusy, 100*cl.OnCPU, Dur(cl.RunDelayPerTripNs), 100*delayShare))
		}
	}
	cl := res.ClientLoad
	sat, delayShare := saturated(cl, res.Latency.Mean)
	if !sat {
		return out
	}
	s := fmt.Sprintf("the client may limit this measurement: its CPUs were %.0f%% busy, its threads kept %.0f%% of them busy and waited %s for a CPU per round trip (%.0f%% of the mean latency)",
		100*cl.CPUsBusy, 100*cl.OnCPU, Dur(cl.RunDelayPerTripNs), 100*delayShare)
	var share float64
	for _, c := range r.Breakdown {
		if c.Side == "client" && !breakdown.IsNetName(c.Component) {
			share += c.Share
		}
	}
	if share > 0 {
		s += fmt.Sprintf("; the client's side is %.0f%% of the round trip", 100*share)
	}
	s += "; give the clients more CPUs (--client-cpus), fewer threads (--client-model epoll), or keep other work off their CPUs"
	out = append(out, s)
	if p := r.Probe; p != nil && p.ObserverCPUShare > observerWarnShare {
		out = append(out, fmt.Sprintf("the observer held the client CPUs, not the load alone: volleyscope's ring reader and join used %.0f%% of them (%s a round trip with the probe's programs) while the client was saturated; its throughput and the client's side of the breakdown carry that cost: compare with 'volleyscope bench', or give the clients more CPUs (--client-cpus)",
			100*p.ObserverCPUShare, Dur(p.ObserverNsPerRTT)))
	}
	return out
}

// finite maps NaN and ±Inf (an interval not yet defined) to 0, which JSON
// can carry; the batch count says whether an interval exists.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

// buildBands is the breakdown per latency band; bands no round trip fell
// in are left out.
func buildBands(j *breakdown.Accumulator) []Band {
	var out []Band
	for _, b := range j.Bands() {
		if b.Count == 0 {
			continue
		}
		band := Band{Band: b.Name, LatencyLowNs: b.LowNs, LatencyHighNs: b.HighNs, Count: b.Count, MeanLatencyNs: b.MeanLatencyNs}
		for c := range breakdown.NumComponents {
			band.Components = append(band.Components, BandPart{Component: c.String(), MeanNs: b.MeanNs[c], Share: b.Share[c]})
		}
		out = append(out, band)
	}
	return out
}

// tripIrqs names the interrupts of a slow round trip, longest first
// within a side.
func tripIrqs(rt *breakdown.RoundTrip) []TripIrq {
	var out []TripIrq
	for _, q := range rt.Irqs[:rt.NIrqs] {
		name := q.What.Name()
		if q.What == 0 {
			name = "others"
		}
		out = append(out, TripIrq{Component: q.Component.String(), Side: q.Component.Side(), Interrupt: name, Ns: q.Ns})
	}
	slices.SortStableFunc(out, func(x, y TripIrq) int {
		if x.Side != y.Side {
			return cmp.Compare(x.Side, y.Side)
		}
		return cmp.Compare(y.Ns, x.Ns)
	})
	return out
}

// buildSlowest is the slowest round trips with their components and
// their waits for a CPU.
func buildSlowest(j *breakdown.Accumulator) []SlowTrip {
	var out []SlowTrip
	for _, rt := range j.Slowest() {
		st := SlowTrip{Conn: rt.Conn, Seq: rt.Seq, StartNs: rt.T0, LatencyNs: rt.T1 - rt.T0}
		for c := range breakdown.NumComponents {
			st.Components = append(st.Components, TripPart{Component: c.String(), Ns: rt.Ns[c]})
		}
		for _, w := range rt.Waits {
			tw := TripWait{Component: w.Component.String(), Side: w.Component.Side(), TID: w.TID, FromNs: w.FromNs - rt.T0, Ns: w.ToNs - w.FromNs, Named: w.Named}
			if w.Named {
				tw.CPU, tw.OtherNs = w.Held.CPU, w.Held.OtherNs
				held := w.Held.OtherNs
				for _, h := range w.Held.Holders {
					tw.Holders = append(tw.Holders, TripHolder{Comm: h.Comm, PID: h.TGID, TID: h.TID, Ns: h.Ns})
					held += h.Ns
				}
				// The probe's record covers the whole wait, from the
				// wake-up or preemption (or, for a holder named
				// without its wake-up, the holder's whole stretch on
				// the CPU) to the switch in; the join's stretch may be
				// clipped to the round trip. The holders share what
				// is left in proportion.
				if held > tw.Ns && held > 0 {
					f := float64(tw.Ns) / float64(held)
					for i := range tw.Holders {
						tw.Holders[i].Ns = int64(float64(tw.Holders[i].Ns) * f)
					}
					tw.OtherNs = int64(float64(tw.OtherNs) * f)
				}
			}
			st.Waits = append(st.Waits, tw)
		}
		st.MoreWaits = rt.MoreWaits
		st.Interrupts = tripIrqs(&rt.RoundTrip)
		out = append(out, st)
	}
	return out
}
