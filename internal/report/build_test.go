package report

import (
	"bytes"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/breakdown"
	"github.com/volleyscope/volleyscope/internal/golden"
	"github.com/volleyscope/volleyscope/loadgen"
)

// TestBuildFromRecording builds results.json from a recorded run with no
// session: the recording's round trips summarized by loadgen in the
// recorded window, joined by breakdown, and the parts put together by
// Build. The counts must agree across the sections, the shares must add
// up, and the whole document is held to a golden file.
func TestBuildFromRecording(t *testing.T) {
	for _, name := range []string{"default_cross_cpu", "default_epoll_4conns"} {
		t.Run(name, func(t *testing.T) {
			in, err := breakdown.ReadRecording("../../testdata/streams/" + name + ".rec.gz")
			if err != nil {
				t.Fatal(err)
			}
			first := int64(math.MaxInt64)
			for _, c := range in.Conns {
				for _, r := range c.Records {
					first = min(first, r.T0)
				}
			}
			w := loadgen.Window{FirstT0: first, WarmupEnd: in.MeasureStart, Start: in.MeasureStart}
			load := loadgen.Summarize(loadgen.Options{Clients: len(in.Conns), Warmup: -1}, in.Conns, w)
			acc := breakdown.NewAccumulator()
			for _, rt := range breakdown.Join(in).Trips {
				acc.Add(&rt)
			}
			sends := breakdown.NewStream(in.ServerPort, nil, false, time.Second, nil)
			for i := range in.Events {
				sends.Event(&in.Events[i])
			}
			sends.Flush()
			r := Build(Parts{
				Meta:        Meta{Kernel: "6.18.44", CPUModel: "recorded", NCPU: 2, Server: name, ServerCPUs: []int{0}, Hooks: map[string]string{}},
				Load:        load,
				Join:        acc,
				ServerSends: sends.ServerSends(load.Window.Start, load.Window.End),
				Probe: &ProbeParts{
					Mode: "tp_btf+tracepoint", Hooks: map[string]string{"sched_switch": "tp_btf/sched_switch"}, Ring: "per-CPU rings",
					Records: uint64(len(in.Events)), ByKind: map[string]uint64{"switch": uint64(len(in.Events))}, WarmupRuns: 1000, WarmupBPFNs: 150000, WarmupTrips: 100,
					WarmupPrograms: []ProgramRuns{{Program: "tpbtf_sched_switch", Runs: 600, Ns: 90000}, {Program: "tpbtf_irq_handler_entry"}, {Program: "tpbtf_sk_data_ready", Runs: 400, Ns: 60000}},
				},
			})
			bc := r.BreakdownCheck
			if r.Latency.Count != load.Measured || int64(bc.Joined+bc.Unjoined) != r.Latency.Count {
				t.Errorf("counts disagree: latency %d, measured %d, joined %d + unjoined %d", r.Latency.Count, load.Measured, bc.Joined, bc.Unjoined)
			}
			// Ping-pong: the server sends one reply a round trip, so its
			// throughput is the client's, give or take the replies in
			// flight at the window's edges (10 ms buckets).
			if d := math.Abs(r.ServerThroughputRPS/r.ThroughputRPS - 1); d > 0.2 {
				t.Errorf("server throughput %.0f/s, client %.0f/s", r.ServerThroughputRPS, r.ThroughputRPS)
			}
			var share float64
			for _, c := range r.Breakdown {
				share += c.Share
			}
			if bc.Joined == 0 || math.Abs(share-1) > 0.02 {
				t.Errorf("%d joined, shares add up to %.4f", bc.Joined, share)
			}
			if r.Probe == nil || r.Probe.OverheadNsPerRT != 10*150 || r.Meta.ProbeMode != "tp_btf+tracepoint" {
				t.Errorf("probe section %+v, mode %q", r.Probe, r.Meta.ProbeMode)
			} else if k := r.Probe.EventsPerRTTByKind["switch"]; k != r.Probe.EventsPerRTT || k == 0 {
				t.Errorf("switch records %.3f per round trip, want all %.3f", k, r.Probe.EventsPerRTT)
			} else if want := []ProgramCost{{"tpbtf_sched_switch", 6, 900}, {"tpbtf_sk_data_ready", 4, 600}}; !slices.Equal(r.Probe.Programs, want) {
				t.Errorf("programs %+v, want %+v (per round trip, those that ran)", r.Probe.Programs, want)
			}
			var b bytes.Buffer
			if err := WriteJSON(&b, r); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "build_"+name+".json", b.Bytes())
		})
	}
}
