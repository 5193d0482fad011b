package render

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
)

// Trace sampling: the first TraceFirst round trips, then every k-th with
// k doubling whenever TraceStrided are held, so that the sample spreads
// over the whole run and trace.json stays under about 4 MB (a round trip
// with its phases and components is about 2 KB of JSON).
const (
	TraceFirst   = 500
	TraceStrided = 1500
)

// Trace keeps a bounded sample of the joined round trips as they arrive,
// with their boundaries, for trace.json. It holds at most TraceFirst +
// TraceStrided round trips in memory allocated once; Add allocates
// nothing. It is not safe for concurrent use: the probe's stream calls it
// from one goroutine.
type Trace struct {
	seen    int64
	stride  int64
	first   []breakdown.RoundTrip
	strided []breakdown.RoundTrip
	index   []int64 // the arrival index of each strided round trip
	slow    []breakdown.Slow
}

// NewTrace returns an empty sample.
func NewTrace() *Trace {
	return &Trace{
		stride:  1,
		first:   make([]breakdown.RoundTrip, 0, TraceFirst),
		strided: make([]breakdown.RoundTrip, 0, TraceStrided),
		index:   make([]int64, 0, TraceStrided),
	}
}

// Add offers one measured round trip (joined or not) to the sample.
func (t *Trace) Add(rt *breakdown.RoundTrip) {
	i := t.seen
	t.seen++
	if len(t.first) < cap(t.first) {
		t.first = append(t.first, *rt)
		return
	}
	if i%t.stride != 0 {
		return
	}
	if len(t.strided) == cap(t.strided) { // full: keep every other, double the stride
		t.stride *= 2
		k := 0
		for j, idx := range t.index {
			if idx%t.stride == 0 {
				t.strided[k], t.index[k] = t.strided[j], idx
				k++
			}
		}
		t.strided, t.index = t.strided[:k], t.index[:k]
		if i%t.stride != 0 {
			return
		}
	}
	t.strided = append(t.strided, *rt)
	t.index = append(t.index, i)
}

// SetSlowest gives the trace the slowest round trips with their
// boundaries (breakdown.Accumulator.Slowest); every one of them is in
// trace.json, with who held the CPU in their waits taken from the
// results' Slowest.
func (t *Trace) SetSlowest(s []breakdown.Slow) { t.slow = s }

// Sampled is how many round trips the sample holds, the slowest apart.
func (t *Trace) Sampled() int { return len(t.first) + len(t.strided) }

// traceEvent is one event of the trace-event format: "X" a complete
// span (ts and dur in µs), "M" metadata naming a process or thread.
type traceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	Ts   jsonMicros     `json:"ts"`
	Dur  *jsonMicros    `json:"dur,omitempty"`
	PID  int            `json:"pid"`
	TID  int            `json:"tid"`
	Args map[string]any `json:"args,omitempty"`
}

// jsonMicros is a time in ns written as µs with three decimals, exact.
type jsonMicros int64

func (m jsonMicros) MarshalJSON() ([]byte, error) {
	b := strconv.AppendInt(nil, int64(m)/1000, 10)
	if f := int64(m) % 1000; f != 0 {
		if f < 0 {
			f = -f
		}
		b = append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
	}
	return b, nil
}

// tracePhase is a stretch of a round trip that one side carries, from one
// boundary to another; the components between those boundaries nest
// inside it.
type tracePhase struct {
	name     string // "client: client_user … client_net"
	from, to int    // boundaries b0 … b10
}

// tracePhases are the runs of consecutive gap components on one side, in
// the component table's order.
var tracePhases = func() (ph []tracePhase) {
	side := ""
	for k := 0; k < breakdown.NumBounds-1; k++ {
		c := breakdown.Component(k)
		if c.Side() != side {
			side = c.Side()
			ph = append(ph, tracePhase{from: k})
		}
		last := &ph[len(ph)-1]
		last.to = k + 1
		last.name = side + ": " + breakdown.Component(last.from).String()
		if k > last.from {
			last.name += " … " + c.String()
		}
	}
	return ph
}()

// WriteTrace writes t as a Chrome/Perfetto trace: one process (the run),
// one thread per connection, each round trip a span with its client and
// server phases nested inside, its components inside those (a split
// network gap's parts inside it), and each wait for a CPU inside the
// component it was carved from, with the tasks that held the CPU (for the
// slowest round trips) in its args. Times are µs
// from the first round trip's start; otherData says where that is on
// CLOCK_MONOTONIC, and how many round trips the sample holds of how many.
func WriteTrace(w io.Writer, r *report.Results, t *Trace) error {
	trips := make([]breakdown.RoundTrip, 0, t.Sampled()+len(t.slow))
	trips = append(append(trips, t.first...), t.strided...)
	rank := map[[2]int]int{}
	for i := range t.slow {
		rank[[2]int{t.slow[i].Conn, t.slow[i].Seq}] = i + 1
		trips = append(trips, t.slow[i].RoundTrip)
	}
	slices.SortFunc(trips, func(a, b breakdown.RoundTrip) int {
		return cmp.Or(cmp.Compare(a.Conn, b.Conn), cmp.Compare(a.T0, b.T0), cmp.Compare(a.Seq, b.Seq))
	})
	trips = slices.CompactFunc(trips, func(a, b breakdown.RoundTrip) bool { return a.Conn == b.Conn && a.Seq == b.Seq })
	var origin int64
	for i, rt := range trips {
		if i == 0 || rt.T0 < origin {
			origin = rt.T0
		}
	}
	holders := map[[2]int]report.SlowTrip{}
	for _, s := range r.Slowest {
		holders[[2]int{s.Conn, s.Seq}] = s
	}

	bw := bufio.NewWriterSize(w, 1<<16)
	bw.WriteString(`{"displayTimeUnit":"ns","traceEvents":[` + "\n")
	enc := json.NewEncoder(bw)
	n := 0
	emit := func(e traceEvent) {
		if n > 0 {
			bw.WriteString(",")
		}
		n++
		_ = enc.Encode(e) // a write error shows at Flush
	}
	const pid = 1
	proc := "volleyscope run"
	if r.Meta.Server != "" {
		proc += ": " + r.Meta.Server
	}
	emit(traceEvent{Name: "process_name", Ph: "M", PID: pid, Args: map[string]any{"name": proc}})
	span := func(name, cat string, tid int, from, to int64, args map[string]any) {
		d := jsonMicros(to - from)
		emit(traceEvent{Name: name, Cat: cat, Ph: "X", Ts: jsonMicros(from - origin), Dur: &d, PID: pid, TID: tid, Args: args})
	}
	lastConn := -1
	for i := range trips {
		rt := &trips[i]
		tid := rt.Conn + 1 // tid 0 is the process's own track in some viewers
		if rt.Conn != lastConn {
			lastConn = rt.Conn
			emit(traceEvent{Name: "thread_name", Ph: "M", PID: pid, TID: tid, Args: map[string]any{"name": "conn " + strconv.Itoa(rt.Conn)}})
			emit(traceEvent{Name: "thread_sort_index", Ph: "M", PID: pid, TID: tid, Args: map[string]any{"sort_index": rt.Conn}})
		}
		key := [2]int{rt.Conn, rt.Seq}
		args := map[string]any{"seq": rt.Seq, "latency_ns": rt.T1 - rt.T0}
		name := "round trip"
		if k := rank[key]; k > 0 {
			name = "round trip (slowest #" + strconv.Itoa(k) + ")"
			args["slowest_rank"] = k
		}
		if !rt.Joined {
			args["unjoined"] = rt.Reason
			span(name, "round_trip", tid, rt.T0, rt.T1, args)
			continue
		}
		args["server_tid"] = rt.ServerTID
		span(name, "round_trip", tid, rt.T0, rt.T1, args)
		b := traceBounds(rt)
		for _, ph := range tracePhases {
			if b[ph.to] > b[ph.from] {
				span(ph.name, "phase", tid, b[ph.from], b[ph.to], nil)
			}
			for k := ph.from; k < ph.to; k++ {
				if b[k+1] > b[k] {
					c := breakdown.Component(k)
					span(c.String(), c.Side(), tid, b[k], b[k+1], map[string]any{"ns": rt.Ns[c]})
					// A split network gap holds its parts.
					for _, p := range breakdown.NetParts(c) {
						from, to := rt.Span(p)
						if from, to = max(from, b[k]), min(to, b[k+1]); to > from {
							span(p.String(), p.Side(), tid, from, to, map[string]any{"ns": rt.Ns[p]})
						}
					}
				}
			}
		}
		waits := rt.Waits[:rt.NWaits]
		slow, named := holders[key]
		for wi, wt := range waits {
			k := traceGap(b, wt.FromNs)
			from, to := max(wt.FromNs, b[k]), min(wt.ToNs, b[k+1])
			if to <= from {
				continue
			}
			wargs := map[string]any{"charged_to": wt.Component.String(), "tid": wt.TID}
			if named && wi < len(slow.Waits) {
				sw := slow.Waits[wi]
				if sw.Named {
					wargs["cpu"] = sw.CPU
					for hi, h := range sw.Holders {
						wargs["holder_"+strconv.Itoa(hi+1)] = fmt.Sprintf("%s pid %d tid %d: %s", h.Comm, h.PID, h.TID, report.Dur(float64(h.Ns)))
					}
					if sw.OtherNs > 0 {
						wargs["held_by_others"] = report.Dur(float64(sw.OtherNs))
					}
				}
			}
			span("waiting for a CPU", "sched", tid, from, to, wargs)
		}
	}
	// otherData: what a viewer shows as the trace's metadata, and where
	// its time 0 is on CLOCK_MONOTONIC (requests.csv's clock).
	other, _ := json.Marshal(map[string]any{
		"server": r.Meta.Server, "kernel": r.Meta.Kernel, "clients": r.Meta.Clients, "started_at": r.Meta.StartedAt,
		"ts_zero_monotonic_ns": origin, "round_trips_seen": t.seen, "round_trips_sampled": t.Sampled(), "slowest": len(t.slow),
	})
	bw.WriteString("],\n\"otherData\":")
	bw.Write(other)
	bw.WriteString("}\n")
	if err := bw.Flush(); err != nil {
		return err
	}
	return nil
}

// traceBounds are rt's boundaries made monotonic within [T0, T1]: a round
// trip marked inconsistent may have two a little out of order, and spans
// must nest.
func traceBounds(rt *breakdown.RoundTrip) [breakdown.NumBounds]int64 {
	b := rt.Bounds
	b[0], b[len(b)-1] = rt.T0, rt.T1
	for k := 1; k < len(b); k++ {
		b[k] = min(max(b[k], b[k-1]), rt.T1)
	}
	return b
}

// traceGap is the gap [b[k], b[k+1]) that holds t: waits are carved from
// one gap, and their spans nest in its component's.
func traceGap(b [breakdown.NumBounds]int64, t int64) int {
	for k := 0; k+2 < len(b); k++ {
		if t < b[k+1] {
			return k
		}
	}
	return len(b) - 2
}
