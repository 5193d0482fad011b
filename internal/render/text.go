package render

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/loadgen"
)

var stopText = map[string]string{
	"target":      "every interval target reached",
	"ci":          "confidence target reached", // results.json before schema 1
	"duration":    "duration cap reached before the interval targets",
	"unreachable": "stopped early: the interval targets are out of reach by the duration cap",
	"requests":    "request count reached",
	"interrupted": "interrupted (results so far)",
	"error":       "stopped by an error (results so far)",
}

// WriteText writes the terminal summary of a run.
func WriteText(w io.Writer, r *report.Results) error {
	m := r.Meta
	b := &strings.Builder{}
	fmt.Fprintf(b, "volleyscope: %s server, %d client(s), %s", m.Server, m.Clients, m.Proto)
	if m.RateRPS > 0 {
		fmt.Fprintf(b, " at %s/s offered (open loop)", loadgen.Thousands(m.RateRPS))
	}
	if m.Proto == "echo" {
		fmt.Fprintf(b, " %d B", m.Size)
	}
	if m.Workload != "" {
		fmt.Fprintf(b, " (%s)", m.Workload)
	}
	if n := len(r.Run.LoadHosts); n > 0 {
		fmt.Fprintf(b, ", clients on %d load host(s)", n)
	} else {
		fmt.Fprintf(b, ", client CPUs %s", report.CPUList(m.ClientCPUs))
	}
	fmt.Fprintf(b, ", server CPUs %s, kernel %s", report.CPUList(m.ServerCPUs), m.Kernel)
	if m.Version != "" {
		fmt.Fprintf(b, ", volleyscope %s", m.Version)
	}
	b.WriteString("\n")
	ru := r.Run
	stop, ok := stopText[ru.StopReason]
	if !ok {
		stop = "stopped: " + ru.StopReason
	}
	if ru.StopReason == "duration" && ru.P50CITarget <= 0 && ru.P99CITarget <= 0 {
		stop = "ran for the duration (no interval target)"
	}
	fmt.Fprintf(b, "run:        %s%s; measured %.1f s after %.1f s warm-up (%d round trips outside the window, %d of them cut by MSER-5)\n",
		stop, targets(ru), float64(ru.MeasuredNs)/1e9, float64(ru.WarmupNs)/1e9, ru.Outside, ru.MSERDiscarded)
	if ru.WarmupIncluded {
		fmt.Fprintf(b, "            (ended during warm-up: the warm-up round trips are summarized)\n")
	}
	if l := limitText(ru); l != "" {
		fmt.Fprintf(b, "            %s\n", l)
	}
	l := r.Latency
	fmt.Fprintf(b, "round trips %d, throughput %.0f/s", l.Count, r.ThroughputRPS)
	if r.ServerThroughputRPS > 0 {
		fmt.Fprintf(b, " (the server made %.0f send calls/s)", r.ServerThroughputRPS)
	}
	b.WriteString("\n")
	if c := r.ServerCost; c != nil {
		fmt.Fprintf(b, "server cost: %s of CPU per request (%.0f%% in user space), %.2f context switches per request (%.2f blocking, %.2f preempted)",
			report.Dur(c.CPUNs), 100*c.UserShare, c.Switches, c.Voluntary, c.Involuntary)
		if c.Syscalls > 0 {
			fmt.Fprintf(b, ", %.2f syscalls per request", c.Syscalls)
		}
		fmt.Fprintf(b, ", %d thread(s) in %d process(es)\n", c.Threads, c.Procs)
	}
	if su := r.Run.Setup; su.Connections > 0 {
		fmt.Fprintf(b, "connections %d set up in %s (%.0f/s, slowest %s), driven by %d thread(s) (client model %s)",
			su.Connections, report.Dur(float64(su.Duration)), su.PerSecond, report.Dur(float64(su.Slowest)), su.Threads, su.Model)
		for i, f := range su.Failures {
			if i == 0 {
				b.WriteString("; failed:")
			}
			fmt.Fprintf(b, " %d × %s", f.Count, f.Reason)
		}
		b.WriteString("\n")
	}
	for _, h := range r.Run.LoadHosts {
		fmt.Fprintf(b, "load host %s: %d connection(s), %d round trips measured (%.0f/s)", h.Host, h.Clients, h.Measured, h.ThroughputRPS)
		if cl := h.ClientLoad; cl.Known {
			fmt.Fprintf(b, ", client CPUs %.0f%% busy, threads on CPU %.0f%%, run-queue wait %s a round trip", 100*cl.CPUsBusy, 100*cl.OnCPU, report.Dur(cl.RunDelayPerTripNs))
		} else if cl.Unknown != "" {
			fmt.Fprintf(b, ", client load unknown (%s)", cl.Unknown)
		}
		if h.Saturated {
			b.WriteString(": CLIENT SATURATED")
		}
		if h.Error != "" {
			fmt.Fprintf(b, "; error: %s", h.Error)
		}
		b.WriteString("\n")
	}
	if l.Count == 0 {
		fmt.Fprintf(b, "latency:    none measured\n")
	} else {
		fmt.Fprintf(b, "latency:    mean %s%s", report.Dur(l.Mean), interval(l.CILow, l.CIHigh))
		// The batch size too: the validity checks' batches are another
		// size, and the counts alone read as a contradiction.
		if ru.Batches > 0 && ru.BatchSize > 0 {
			fmt.Fprintf(b, " (±%.2f%% at %.0f%%, %d batches of %d)", 100*ru.MeanCIAchieved, 100*l.CILevel, ru.Batches, ru.BatchSize)
		} else if ru.Batches > 0 {
			fmt.Fprintf(b, " (±%.2f%% at %.0f%%, %d batches)", 100*ru.MeanCIAchieved, 100*l.CILevel, ru.Batches)
		}
		fmt.Fprintf(b, "\n            p50 %s%s  p90 %s  p99 %s%s  p99.9 %s  p99.99 %s  max %s\n",
			report.Dur(l.P50), interval(l.P50CILow, l.P50CIHigh), report.Dur(l.P90), report.Dur(l.P99), interval(l.P99CILow, l.P99CIHigh),
			report.Dur(l.P999), report.Dur(l.P9999), report.Dur(l.Max))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if len(r.Breakdown) > 0 {
		if err := WriteBreakdown(w, r); err != nil {
			return err
		}
	}
	if th := r.TwoHosts; th != nil {
		if err := WriteTwoHosts(w, th); err != nil {
			return err
		}
	}
	if len(r.BreakdownByBand) > 0 {
		if err := WriteBands(w, r.BreakdownByBand); err != nil {
			return err
		}
	}
	if len(r.Slowest) > 0 {
		if err := WriteSlowest(w, r.Slowest); err != nil {
			return err
		}
	}
	if sw := r.SlowWhere; sw != nil {
		if err := WriteSlowWhere(w, sw); err != nil {
			return err
		}
	}
	if p := r.Probe; p != nil {
		if p.ProgramRunsPerRTT > 0 {
			fmt.Fprintf(w, "probe cost: %.1f records per round trip; during the warm-up its programs ran %.1f times per round trip machine-wide (other processes' events included) at %.0f ns: %s of CPU per round trip; %d events lost\n",
				p.EventsPerRTT, p.ProgramRunsPerRTT, p.BPFNsPerEvent, report.Dur(p.OverheadNsPerRT), r.LostEvents)
		} else {
			// The programs' cost is measured over the warm-up's round
			// trips; a watch whose client was still silent then has none.
			fmt.Fprintf(w, "probe cost: %.1f records per round trip; its programs' CPU per round trip was not measured (no round trip in the warm-up); %d events lost\n",
				p.EventsPerRTT, r.LostEvents)
		}
		if sm := p.Sample; sm != nil {
			fmt.Fprintf(w, "probe followed %d of %d connections (one in %d, by client port), to keep the observer off the clients' CPU: the breakdown is of their round trips; latency and throughput are of all\n",
				sm.Followed, sm.Connections, sm.OneIn)
		}
		if p.ReaderCPUNs+p.JoinCPUNs > 0 {
			fmt.Fprintf(w, "observer cost: ring reader %s and join %s of CPU, %.1f%% of the client CPUs; with the programs, %s a round trip\n",
				report.Dur(float64(p.ReaderCPUNs)), report.Dur(float64(p.JoinCPUNs)), 100*p.ObserverCPUShare, report.Dur(p.ObserverNsPerRTT))
		}
		for _, ev := range report.SortedKeys(p.Missing) {
			fmt.Fprintf(w, "probe: no hook for %s: %s\n", ev, p.Missing[ev])
		}
	}
	if len(r.Uring) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "io_uring op\tcount\tsubmit→complete p50\tp99\tmax\tfurther completions\t\n")
		for _, u := range r.Uring {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t\n", u.Name, u.Count, report.Dur(u.P50Ns), report.Dur(u.P99Ns), report.Dur(u.MaxNs), u.Extra)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Syscalls) > 0 {
		if err := WriteSyscalls(w, r.Syscalls); err != nil {
			return err
		}
	}
	for _, e := range r.Warnings {
		if _, err := fmt.Fprintf(w, "warning: %s\n", e); err != nil {
			return err
		}
	}
	for _, e := range r.Errors {
		if _, err := fmt.Fprintf(w, "error: %s\n", e); err != nil {
			return err
		}
	}
	return nil
}

// WriteBreakdown writes the component table and one sentence on where the
// time goes.
func WriteBreakdown(w io.Writer, r *report.Results) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "component\tside\tmean\tp50\tp99\tshare\t\n")
	var top report.Component
	for _, c := range r.Breakdown {
		// beyond_host is measured only when the client's side alone is
		// watched; anywhere else its row would be a 0 that means "not
		// this kind of run".
		if c.Side == "remote" && c.MeanNs == 0 && c.P99Ns == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f%%\t\n", c.Component, c.Side, report.Dur(c.MeanNs), report.Dur(c.P50Ns), report.Dur(c.P99Ns), 100*c.Share)
		if c.Share > top.Share {
			top = c
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if bc := r.BreakdownCheck; bc != nil {
		tot := bc.Joined + bc.Unjoined
		frac := 0.0
		if tot > 0 {
			frac = float64(bc.Joined) / float64(tot)
		}
		fmt.Fprintf(w, "joined %d of %d round trips (%.1f%%); %.1f%% of them sum to the client's latency within %s\n",
			bc.Joined, tot, 100*frac, 100*bc.SumWithinTolerance, bc.Tolerance)
		// Most frequent reason first; ties in name order.
		reasons := report.SortedKeys(bc.UnjoinedReasons)
		sort.SliceStable(reasons, func(i, j int) bool { return bc.UnjoinedReasons[reasons[i]] > bc.UnjoinedReasons[reasons[j]] })
		for _, reason := range reasons {
			fmt.Fprintf(w, "  unjoined: %d × %s\n", bc.UnjoinedReasons[reason], reason)
		}
	}
	if top.Component != "" {
		fmt.Fprintf(w, "most of the time: %s (%s side), %.0f%% of the mean round trip\n", top.Component, top.Side, 100*top.Share)
	}
	if strings.HasPrefix(r.Meta.Hooks["sys_enter"], "off") {
		fmt.Fprintf(w, "note: without --syscalls no receive start is seen: server_queue is 0 and a server's wait for its turn (epoll, a Go hand-off) is in server_kernel_recv\n")
	}
	return nil
}

// histSyscalls is how many of each side's busiest syscalls get a
// histogram in the terminal.
const histSyscalls = 3

// WriteSyscalls writes the per-syscall latency table, then a log2
// histogram of each side's busiest syscalls.
func WriteSyscalls(w io.Writer, sc []report.Syscall) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "side\tsyscall\tcount\tp50\tp99\tmax\t\n")
	for _, s := range sc {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t\n", s.Side, s.Name, s.Count, report.Dur(s.P50Ns), report.Dur(s.P99Ns), report.Dur(s.MaxNs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	shown := map[string]int{}
	for _, s := range sc { // busiest first within each side
		if len(s.Log2) == 0 || shown[s.Side] >= histSyscalls {
			continue
		}
		shown[s.Side]++
		if err := writeLog2(w, fmt.Sprintf("%s %s, %d calls", s.Side, s.Name, s.Count), s.Log2); err != nil {
			return err
		}
	}
	return nil
}

// writeLog2 draws power-of-two buckets as a histogram of stars, each
// bucket's range, count and a bar scaled to the largest.
func writeLog2(w io.Writer, title string, bs []stats.Log2Bucket) error {
	const width = 40
	var top int64
	for _, b := range bs {
		top = max(top, b.Count)
	}
	fmt.Fprintf(w, "%s:\n", title)
	for _, b := range bs {
		n := 0
		if top > 0 {
			n = int((b.Count*width + top - 1) / top)
		}
		if _, err := fmt.Fprintf(w, "  %10s -> %-10s %10d |%-*s|\n", report.Dur(float64(b.LowNs)), report.Dur(float64(b.HighNs)), b.Count, width, strings.Repeat("*", n)); err != nil {
			return err
		}
	}
	return nil
}

// targets says, in parentheses, how close each interval target came.
func targets(ru report.RunInfo) string {
	var parts []string
	for _, t := range []struct {
		name             string
		target, achieved float64
	}{{"p50", ru.P50CITarget, ru.P50CIAchieved}, {"p99", ru.P99CITarget, ru.P99CIAchieved}} {
		if t.target > 0 && t.achieved > 0 {
			parts = append(parts, fmt.Sprintf("%s ±%.2f%% (target ±%s)", t.name, 100*t.achieved, report.Pct(t.target)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// limitText names the target that held the run up longest and, when
// the targets did not all hold, what they would need.
func limitText(ru report.RunInfo) string {
	switch ru.StopReason {
	case "target", "duration", "unreachable":
	default:
		return "" // the rule did not decide the run's end
	}
	if ru.Limiting == "" {
		return ""
	}
	if ru.TimeToTargetNs > 0 {
		return fmt.Sprintf("every target held after %.1f s measured; the %s's came last", float64(ru.TimeToTargetNs)/1e9, ru.Limiting)
	}
	s := fmt.Sprintf("limited by the %s's target", ru.Limiting)
	if ru.TargetNeedsNs > 0 {
		s += fmt.Sprintf(": at the spread seen here it needs about %s of measuring", roundDur(time.Duration(ru.TargetNeedsNs)))
	}
	switch ru.StopReason {
	case "unreachable":
		s += " (run to the cap anyway with --keep-going; a longer --duration, or a quieter machine, may reach it)"
	case "duration":
		s += " (lengthen --duration, or loosen --ci / --p99-ci)"
	}
	return s
}

// roundDur rounds d for a reader: seconds below ten minutes, minutes
// above.
func roundDur(d time.Duration) time.Duration {
	if d < 10*time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Minute)
}

// interval renders " [low, high]", or nothing when there is no interval.
func interval(low, high float64) string {
	if !(high > low) {
		return ""
	}
	return fmt.Sprintf(" [%s, %s]", report.Dur(low), report.Dur(high))
}

// bandTitle is how the terminal names a band.
var bandTitle = map[string]string{"le_p50": "≤p50", "p50_p90": "p50–p90", "p90_p99": "p90–p99", "gt_p99": ">p99"}

// WriteBands writes the breakdown per latency band: one column per band,
// one row per component with its mean and share of the band's mean
// latency; components that are 0 in every band are left out.
func WriteBands(w io.Writer, bands []report.Band) error {
	fmt.Fprintf(w, "by latency band (component mean, share of the band's mean):\n")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	row := func(name string, cell func(b report.Band) string) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, b := range bands {
			fmt.Fprintf(tw, "%s\t", cell(b))
		}
		fmt.Fprintf(tw, "\n")
	}
	row("band", func(b report.Band) string { return bandTitle[b.Band] })
	row("round trips", func(b report.Band) string { return fmt.Sprint(b.Count) })
	row("latency", func(b report.Band) string {
		return report.Dur(float64(b.LatencyLowNs)) + "–" + report.Dur(float64(b.LatencyHighNs))
	})
	row("mean", func(b report.Band) string { return report.Dur(b.MeanLatencyNs) })
	for i, c := range bands[0].Components {
		used := false
		for _, b := range bands {
			used = used || b.Components[i].MeanNs > 0
		}
		if !used {
			continue
		}
		row(c.Component, func(b report.Band) string {
			p := b.Components[i]
			return fmt.Sprintf("%s %3.0f%%", report.Dur(p.MeanNs), 100*p.Share)
		})
	}
	return tw.Flush()
}

// WriteSlowest writes the slowest round trips: latency, the components
// that make up at least 5% of it, largest first.
func WriteSlowest(w io.Writer, trips []report.SlowTrip) error {
	fmt.Fprintf(w, "slowest %d round trips (components over 5%% of each):\n", len(trips))
	for i, t := range trips {
		parts := slices.Clone(t.Components)
		slices.SortStableFunc(parts, func(a, b report.TripPart) int { return cmp.Compare(b.Ns, a.Ns) })
		b := &strings.Builder{}
		fmt.Fprintf(b, "%3d. %s  conn %d #%d:", i+1, report.Dur(float64(t.LatencyNs)), t.Conn, t.Seq)
		for _, p := range parts {
			if p.Ns*20 < t.LatencyNs {
				break
			}
			fmt.Fprintf(b, " %s %s", p.Component, report.Dur(float64(p.Ns)))
		}
		b.WriteString("\n")
		for _, side := range []string{"server", "client"} {
			writeHolders(b, t, side)
			writeInterrupts(b, t, side)
		}
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// writeInterrupts writes one line for a side of a slow round trip that
// interrupts took time from: how long in all, and which, longest first.
func writeInterrupts(b *strings.Builder, t report.SlowTrip, side string) {
	var total int64
	var parts []string
	for _, q := range t.Interrupts {
		if q.Side != side {
			continue
		}
		total += q.Ns
		if len(parts) < 3 {
			parts = append(parts, fmt.Sprintf("%s %s", q.Interrupt, report.Dur(float64(q.Ns))))
		}
	}
	if total == 0 {
		return
	}
	fmt.Fprintf(b, "       %s interrupted %s on its CPU: %s\n", side, report.Dur(float64(total)), strings.Join(parts, ", "))
}

// writeHolders writes one line for a side of a slow round trip that
// waited for a CPU: how long in all, and who held it, by process (comm and
// pid; the tid when the hook could not tell the pid), longest first.
func writeHolders(b *strings.Builder, t report.SlowTrip, side string) {
	var total, unnamed, untaken int64
	n := 0
	var hs []report.TripHolder // by comm and pid, summed over the waits
	for _, wt := range t.Waits {
		if wt.Side != side {
			continue
		}
		n++
		total += wt.Ns
		if !wt.Named {
			unnamed += wt.Ns
			continue
		}
		// What no task held: the CPU idle (its wake-up from a halt) or,
		// in a virtual machine, the hypervisor running something else.
		untaken += wt.Ns - wt.OtherNs
		for _, h := range wt.Holders {
			untaken -= h.Ns
			// By process: a process's threads together.
			id := h.PID
			if id == 0 {
				id = h.TID
			}
			i := slices.IndexFunc(hs, func(x report.TripHolder) bool { return x.Comm == h.Comm && x.PID == id })
			if i < 0 {
				hs = append(hs, report.TripHolder{Comm: h.Comm, PID: id})
				i = len(hs) - 1
			}
			hs[i].Ns += h.Ns
		}
		if wt.OtherNs > 0 {
			hs = append(hs, report.TripHolder{Comm: "others", Ns: wt.OtherNs})
		}
	}
	if n == 0 {
		return
	}
	fmt.Fprintf(b, "       %s waited %s for a CPU in %d wait%s", side, report.Dur(float64(total)), n, map[bool]string{true: "s"}[n > 1])
	slices.SortStableFunc(hs, func(x, y report.TripHolder) int { return cmp.Compare(y.Ns, x.Ns) })
	for i, h := range hs {
		if i == 0 {
			b.WriteString(":")
		} else {
			b.WriteString(",")
		}
		if i == 3 {
			fmt.Fprintf(b, " %d more", len(hs)-3)
			break
		}
		if h.Comm == "others" && h.PID == 0 {
			fmt.Fprintf(b, " others %s", report.Dur(float64(h.Ns)))
			continue
		}
		fmt.Fprintf(b, " %s[%d] %s", h.Comm, h.PID, report.Dur(float64(h.Ns)))
	}
	if unnamed > 0 {
		fmt.Fprintf(b, "; %s unnamed (an idle CPU, or not kept)", report.Dur(float64(unnamed)))
	}
	if untaken > max(total/20, 1000) {
		fmt.Fprintf(b, "; %s with no holder seen (the CPU waking from idle, a hypervisor running another guest, or holds not kept)", report.Dur(float64(untaken)))
	}
	b.WriteString("\n")
}

// WriteSlowWhere writes which connections and server threads the round
// trips over the running p99 came from.
func WriteSlowWhere(w io.Writer, sw *report.SlowWhere) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "%d round trips over the running p99 came from (each: how many of its own round trips were over it)\n", sw.Slow)
	for _, part := range []struct {
		name string
		cs   []report.SlowCount
	}{{"connections", sw.ByConn}, {"server threads", sw.ByServerThread}} {
		fmt.Fprintf(b, "  %s:", part.name)
		for i, c := range part.cs {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(b, " %d (%d of its %d)", c.ID, c.Slow, c.Total)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
