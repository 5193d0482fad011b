package loadgen

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/stats"
)

// hostTrips makes one host's closed-loop round trips on conns
// connections over span from start (host clock), with latencies drawn
// by lat at each round trip's controller time (host time + offset).
func hostTrips(rng *rand.Rand, start int64, span time.Duration, conns int, offset int64, lat func(rng *rand.Rand, ctl int64) int64) []Record {
	var out []Record
	for c := 0; c < conns; c++ {
		t := start + rng.Int64N(50_000)
		for t < start+span.Nanoseconds() {
			l := lat(rng, t+offset)
			out = append(out, Record{T0: t, T1: t + l})
			t += l + 2_000
		}
	}
	slices.SortFunc(out, func(a, b Record) int { return int(a.T1 - b.T1) })
	return out
}

// slotsOf runs a host's round trips through a Slotter cut at origin
// (host clock), delivering them in completion order as a run loop
// would.
func slotsOf(recs []Record, origin int64) []Slot {
	var out []Slot
	s := NewSlotter(origin, SlotSpan, func(sl Slot) { out = append(out, sl) })
	for i, r := range recs {
		s.Add(Delivery{Seq: int64(i), Record: r})
	}
	s.Close()
	return out
}

func TestMergeCountsAndPercentiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const origin = int64(1_000_000_000_000)
	// Host 1's clock reads 7.3 s behind the controller's.
	offsets := []int64{0, 7_300_000_123}
	// The latency steps up at controller time origin + 3 s: slots of
	// the two hosts pooled in the wrong stretch would mix the regimes.
	step := origin + 3*time.Second.Nanoseconds()
	lat := func(rng *rand.Rand, ctl int64) int64 {
		base := int64(40_000)
		if ctl >= step {
			base = 90_000
		}
		return base + int64(rng.ExpFloat64()*10_000)
	}
	span := 6 * time.Second
	var streams [][]Slot
	var raw [][]Record
	hosts := []HostLoad{{Host: "a"}, {Host: "b"}}
	for i, off := range offsets {
		hosts[i].OffsetNs = off
		recs := hostTrips(rng, origin-off, span, 4+4*i, off, lat)
		raw = append(raw, recs)
	}

	// The warm-up ends at the step: the window then holds only the slow
	// regime, and each host's measured round trips are exactly those it
	// completed after the step on the controller's clock.
	opts := Options{Warmup: 3 * time.Second, NoMSER: true, CI: -1, P99CI: -1, Duration: time.Hour}
	for i := range raw {
		g := NewMerger(opts, origin, offsets)
		streams = append(streams, slotsOf(raw[i], g.HostOrigin(i)))
	}
	res := Merge(opts, origin, streams, hosts, StopRequests)

	var total, after int64
	pooled := stats.NewHistogram()
	for i, recs := range raw {
		var own, ownAfter int64
		for _, r := range recs {
			own++
			if r.T1+offsets[i] >= step {
				ownAfter++
				_ = pooled.RecordValue(r.Latency())
			}
		}
		total += own
		after += ownAfter
		if got := res.Hosts[i].Measured; got != ownAfter {
			t.Errorf("host %d: measured %d, want its %d round trips after the step (clock offset not applied?)", i, got, ownAfter)
		}
	}
	if got := res.Measured + res.Outside; got != total {
		t.Errorf("merged count %d (measured %d + outside %d), want the hosts' sum %d", got, res.Measured, res.Outside, total)
	}
	if res.Measured != after {
		t.Errorf("measured %d, want %d", res.Measured, after)
	}
	if res.Hist.TotalCount() != pooled.TotalCount() {
		t.Fatalf("merged histogram holds %d, pooled raw %d", res.Hist.TotalCount(), pooled.TotalCount())
	}
	for _, q := range []float64{1, 50, 90, 99, 99.9, 100} {
		if got, want := res.Hist.ValueAtQuantile(q), pooled.ValueAtQuantile(q); got != want {
			t.Errorf("p%g: merged %d, pooled raw records %d", q, got, want)
		}
	}
	if res.Latency.P50 < 90_000 {
		t.Errorf("merged p50 %.0f ns is below the slow regime: slots pooled across the step", res.Latency.P50)
	}
	// The intervals come from the pooled batches.
	if res.P50.Batches == 0 || res.P50.Low > res.Latency.P50 || res.P50.High < res.Latency.P50 {
		t.Errorf("p50 interval %+v does not hold the p50 %.0f", res.P50, res.Latency.P50)
	}
	wantRPS := float64(after) / res.Window.Span().Seconds()
	if sum := res.Hosts[0].ThroughputRPS + res.Hosts[1].ThroughputRPS; sum < 0.999*wantRPS || sum > 1.001*wantRPS || res.ThroughputRPS < 0.999*wantRPS || res.ThroughputRPS > 1.001*wantRPS {
		t.Errorf("throughput %.0f, hosts' sum %.0f, want %.0f", res.ThroughputRPS, sum, wantRPS)
	}
}

// A straggler: a round trip that reaches the Slotter after its stretch
// was handed on counts in the current slot, and every slot between is
// handed on, empty or not.
func TestSlotterLateAndEmpty(t *testing.T) {
	var got []Slot
	s := NewSlotter(0, SlotSpan, func(sl Slot) { got = append(got, sl) })
	ms := time.Millisecond.Nanoseconds()
	s.Add(Delivery{Record: Record{T0: 10 * ms, T1: 11 * ms}})
	s.Add(Delivery{Record: Record{T0: 340 * ms, T1: 350 * ms}})
	s.Add(Delivery{Record: Record{T0: 50 * ms, T1: 60 * ms}}) // late
	s.Close()
	if len(got) != 4 {
		t.Fatalf("%d slots, want 4 (0–100, two empty, 300–400 ms): %+v", len(got), got)
	}
	counts := []int64{got[0].Count, got[1].Count, got[2].Count, got[3].Count}
	if !slices.Equal(counts, []int64{1, 0, 0, 2}) {
		t.Errorf("counts %v, want [1 0 0 2]", counts)
	}
}

func TestSlotHistEncoding(t *testing.T) {
	s := Slot{Count: 3, Hist: stats.NewHistogram()}
	for _, v := range []int64{5, 5000, 5_000_000} {
		_ = s.Hist.RecordValue(v)
	}
	b, err := s.EncodeHist()
	if err != nil {
		t.Fatal(err)
	}
	var d Slot
	d.Count = 3
	if err := d.DecodeHist(b); err != nil {
		t.Fatal(err)
	}
	if !d.Hist.Equals(s.Hist) {
		t.Error("decoded histogram differs")
	}
	for _, tc := range []struct {
		name  string
		count int64
		b     []byte
	}{
		{"count disagrees", 4, b},
		{"garbage", 3, []byte("not a histogram")},
		{"truncated", 3, b[:len(b)/2]},
		{"missing", 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Slot{Count: tc.count}
			if err := d.DecodeHist(tc.b); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestInterleaveKeepsValues(t *testing.T) {
	h := stats.NewHistogram()
	for v := int64(1); v <= 1000; v++ {
		_ = h.RecordValue(v * 1000)
	}
	got := interleave(nil, h, 1)
	if len(got) != 1000 {
		t.Fatalf("%d values, want 1000", len(got))
	}
	// Every tenth of the sequence spans most of the range.
	for i := 0; i < 10; i++ {
		part := slices.Clone(got[i*100 : (i+1)*100])
		if slices.Max(part) < 800_000 || slices.Min(part) > 200_000 {
			t.Errorf("tenth %d spans %d..%d: not interleaved", i, slices.Min(part), slices.Max(part))
		}
	}
	slices.Sort(got)
	want := interleave(nil, h, 2)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Error("values changed")
	}
}
