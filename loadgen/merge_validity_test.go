package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"
)

// A steady stream merged from two hosts keeps what the same round trips
// show as one local stream: no MSER-5 cut, stationary, independent
// batches. (A fixed pattern within slots made the batch medians look
// correlated.)
func TestMergeKeepsValidity(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const origin = int64(1_000_000_000_000)
	lat := func(rng *rand.Rand, _ int64) int64 { return 8_000 + int64(rng.ExpFloat64()*3_000) }
	opts := Options{Warmup: 300 * time.Millisecond, CI: -1, P99CI: -1, Duration: time.Hour}
	var streams [][]Slot
	var conns []Conn
	for i := 0; i < 2; i++ {
		recs := hostTrips(rng, origin, 1300*time.Millisecond, 4, 0, lat)
		conns = append(conns, Conn{ConnInfo: ConnInfo{ID: i}, Records: recs})
		streams = append(streams, slotsOf(recs, origin))
	}
	res := Merge(opts, origin, streams, []HostLoad{{}, {}}, StopRequests)
	local := Summarize(opts, conns, Window{FirstT0: origin, WarmupEnd: origin + opts.Warmup.Nanoseconds(), Start: origin + opts.Warmup.Nanoseconds()})
	v := res.Validity
	t.Logf("merged: %d measured, MSER-5 cut %d, lag-1 %.2f/%.2f, p50 %v; local: %d, lag-1 %.2f/%.2f, p50 %v",
		res.Measured, res.MSERDiscarded, v.Lag1Mean, v.Lag1Median, res.P50, local.Measured, local.Validity.Lag1Mean, local.Validity.Lag1Median, local.P50)
	if res.MSERDiscarded != 0 || !v.Checked || !v.Stationary || !v.Independent {
		t.Errorf("merged validity %+v, MSER-5 cut %d: want a steady stream's", v, res.MSERDiscarded)
	}
	if res.P50.Batches == 0 || res.P50.Low > local.Latency.P50 || res.P50.High < local.Latency.P50 {
		t.Errorf("merged p50 interval %+v misses the local p50 %.0f", res.P50, local.Latency.P50)
	}
}
