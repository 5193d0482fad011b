package render

import (
	"bytes"
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/report"
)

// parsedEvent is a trace event as a viewer reads it, times back in ns.
type parsedEvent struct {
	Name     string         `json:"name"`
	Ph       string         `json:"ph"`
	Ts       float64        `json:"ts"`
	Dur      float64        `json:"dur"`
	PID      int            `json:"pid"`
	TID      int            `json:"tid"`
	Args     map[string]any `json:"args"`
	from, to int64
}

func parseTrace(t *testing.T, b []byte) []parsedEvent {
	t.Helper()
	var doc struct {
		Events []parsedEvent  `json:"traceEvents"`
		Other  map[string]any `json:"otherData"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("trace.json does not parse: %v", err)
	}
	if _, ok := doc.Other["ts_zero_monotonic_ns"]; !ok {
		t.Errorf("otherData has no ts_zero_monotonic_ns: %v", doc.Other)
	}
	for i := range doc.Events {
		e := &doc.Events[i]
		e.from = int64(math.Round(e.Ts * 1000))
		e.to = e.from + int64(math.Round(e.Dur*1000))
	}
	return doc.Events
}

// depthNames is what each level of a track's nesting must hold.
var depthNames = []func(string) bool{
	func(n string) bool { return strings.HasPrefix(n, "round trip") },
	func(n string) bool {
		return slices.ContainsFunc(tracePhases, func(p tracePhase) bool { return p.name == n })
	},
	func(n string) bool { return slices.Contains(breakdown.Names(), n) },
	func(n string) bool { return n == "waiting for a CPU" },
}

// checkNesting checks that the spans of each track nest: sorted by start
// (longest first on a tie, file order after that), each span lies wholly
// inside the innermost open span it starts in, or after every open one
// ends; no two overlap in part. Each level holds what depthNames says.
// It returns the round-trip spans.
func checkNesting(t *testing.T, evs []parsedEvent) []parsedEvent {
	t.Helper()
	byTID := map[int][]parsedEvent{}
	var tids []int
	for _, e := range evs {
		if e.Ph != "X" {
			continue
		}
		if e.to < e.from {
			t.Fatalf("negative duration: %+v", e)
		}
		if _, ok := byTID[e.TID]; !ok {
			tids = append(tids, e.TID)
		}
		byTID[e.TID] = append(byTID[e.TID], e)
	}
	slices.Sort(tids)
	var trips []parsedEvent
	for _, tid := range tids {
		es := byTID[tid]
		slices.SortStableFunc(es, func(a, b parsedEvent) int {
			return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(b.to-b.from, a.to-a.from))
		})
		var open []parsedEvent
		for _, e := range es {
			for len(open) > 0 && open[len(open)-1].to <= e.from && !(open[len(open)-1].to == e.from && open[len(open)-1].from == e.from) {
				open = open[:len(open)-1]
			}
			if len(open) > 0 && e.to > open[len(open)-1].to {
				p := open[len(open)-1]
				t.Fatalf("track %d: %q [%d, %d] overlaps %q [%d, %d] in part", tid, e.Name, e.from, e.to, p.Name, p.from, p.to)
			}
			if d := len(open); d >= len(depthNames) || !depthNames[d](e.Name) {
				t.Fatalf("track %d: %q at depth %d", tid, e.Name, d)
			}
			if len(open) == 0 {
				trips = append(trips, e)
			}
			open = append(open, e)
		}
	}
	return trips
}

// TestTraceNests writes trace.json for a recorded run (a thread-per-
// connection server beside a CPU hog, so that sides wait for a CPU) and
// checks that it parses, that every connection has its track, that every
// span nests in its round trip, that every slowest round trip is there
// and that a wait whose holders are known names them.
func TestTraceNests(t *testing.T) {
	in, err := breakdown.ReadRecording("../../testdata/streams/default_hog_threads.rec.gz")
	if err != nil {
		t.Fatal(err)
	}
	acc := breakdown.NewAccumulator()
	tr := NewTrace()
	res := breakdown.Join(in)
	for i := range res.Trips {
		acc.Add(&res.Trips[i])
		tr.Add(&res.Trips[i])
	}
	tr.SetSlowest(acc.Slowest())
	r := report.Build(report.Parts{Meta: report.Meta{Server: "threads"}, Join: acc})
	// The recording has no holders (they come from the live probe): name
	// one for the first slowest round trip that waited.
	named := -1
	for i := range r.Slowest {
		if len(r.Slowest[i].Waits) > 0 {
			w := &r.Slowest[i].Waits[0]
			w.Named, w.CPU = true, 1
			w.Holders = []report.TripHolder{{Comm: "hogcomm", PID: 42, TID: 43, Ns: w.Ns}}
			named = i
			break
		}
	}
	if named < 0 {
		t.Fatal("no slowest round trip waited for a CPU in a recording made beside a CPU hog")
	}
	var b bytes.Buffer
	if err := WriteTrace(&b, r, tr); err != nil {
		t.Fatal(err)
	}
	evs := parseTrace(t, b.Bytes())
	trips := checkNesting(t, evs)
	if want := min(len(res.Trips), TraceFirst+TraceStrided/2); len(trips) < want {
		t.Errorf("%d round trips in the trace, want at least %d", len(trips), want)
	}
	tracks := map[int]bool{}
	for _, e := range evs {
		if e.Ph == "M" && e.Name == "thread_name" {
			tracks[e.TID] = true
		}
	}
	if len(tracks) != len(in.Conns) {
		t.Errorf("%d connection tracks, the run had %d connections", len(tracks), len(in.Conns))
	}
	for k, s := range r.Slowest {
		i := slices.IndexFunc(trips, func(e parsedEvent) bool { return e.Args["slowest_rank"] == float64(k+1) })
		if i < 0 {
			t.Errorf("slowest #%d (conn %d #%d) is not in the trace", k+1, s.Conn, s.Seq)
			continue
		}
		if e := trips[i]; e.TID != s.Conn+1 || e.to-e.from != s.LatencyNs || e.Args["seq"] != float64(s.Seq) {
			t.Errorf("slowest #%d: track %d, %d ns, seq %v; want conn %d, %d ns, seq %d", k+1, e.TID, e.to-e.from, e.Args["seq"], s.Conn, s.LatencyNs, s.Seq)
		}
	}
	s := r.Slowest[named]
	found := false
	for _, e := range evs {
		if h, ok := e.Args["holder_1"].(string); ok && strings.HasPrefix(h, "hogcomm pid 42 tid 43") {
			found = e.TID == s.Conn+1 && e.Name == "waiting for a CPU"
		}
	}
	if !found {
		t.Errorf("the named wait of slowest #%d has no span naming its holder", named+1)
	}
}

// TestTraceSample feeds a long run's worth of round trips: the sample
// stays bounded, covers the whole run and keeps the first ones.
func TestTraceSample(t *testing.T) {
	for _, n := range []int{10, TraceFirst + 1, 200_000} {
		tr := NewTrace()
		var rt breakdown.RoundTrip
		for i := range n {
			rt = breakdown.RoundTrip{Conn: i % 4, Seq: i / 4, T0: int64(i) * 1000, T1: int64(i)*1000 + 500}
			tr.Add(&rt)
		}
		if got, capN := tr.Sampled(), TraceFirst+TraceStrided; got > capN || got < min(n, capN/2) {
			t.Errorf("%d round trips: sample of %d, want %d to %d", n, got, min(n, capN/2), capN)
		}
		if len(tr.first) != min(n, TraceFirst) {
			t.Errorf("%d round trips: first %d kept, want %d", n, len(tr.first), min(n, TraceFirst))
		}
		if n > 2*(TraceFirst+TraceStrided) {
			if last := tr.index[len(tr.index)-1]; last < int64(n)*9/10 {
				t.Errorf("%d round trips: the sample ends at %d", n, last)
			}
			var b bytes.Buffer
			if err := WriteTrace(&b, &report.Results{}, tr); err != nil {
				t.Fatal(err)
			}
			if b.Len() > 4<<20 {
				t.Errorf("trace of %d round trips is %d bytes", n, b.Len())
			}
			checkNesting(t, parseTrace(t, b.Bytes()))
		}
	}
}

// TestTracePhases: the phases drawn from the component table cover the
// gaps b0 … b10 in order, each carried by one side, the two sides taking
// turns.
func TestTracePhases(t *testing.T) {
	next := 0
	for i, ph := range tracePhases {
		if ph.from != next || ph.to <= ph.from {
			t.Fatalf("phase %d %+v does not start at b%d", i, ph, next)
		}
		side := breakdown.Component(ph.from).Side()
		for k := ph.from; k < ph.to; k++ {
			if breakdown.Component(k).Side() != side {
				t.Errorf("phase %q holds %s of the other side", ph.name, breakdown.Component(k))
			}
		}
		if i > 0 && breakdown.Component(tracePhases[i-1].from).Side() == side {
			t.Errorf("phases %q and %q are on one side", tracePhases[i-1].name, ph.name)
		}
		next = ph.to
	}
	if next != breakdown.NumBounds-1 {
		t.Errorf("phases end at b%d, want b%d", next, breakdown.NumBounds-1)
	}
}
