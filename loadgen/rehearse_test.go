package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// closedLoop makes one connection's back-to-back round trips over span:
// each latency is level(t)·lognormal(σ 0.1) around a 200 µs median, t
// the send time since the start, and the next request leaves 1 µs after
// the reply.
func closedLoop(r *rand.Rand, span time.Duration, level func(t time.Duration) float64) []Conn {
	var recs []Record
	t0 := int64(1e12)
	for t := int64(0); t < span.Nanoseconds(); {
		lat := int64(200e3 * level(time.Duration(t)) * math.Exp(0.1*r.NormFloat64()))
		recs = append(recs, Record{T0: t0 + t, T1: t0 + t + lat})
		t += lat + 1000
	}
	return []Conn{{ConnInfo: ConnInfo{ID: 0}, Records: recs}}
}

// TestRehearse applies the stopping rule, check by check, to synthetic
// latencies: a steady server meets the default targets, not before 5 s
// measured; one whose level swings ±15% from second to second (as a
// shared machine's can) is stopped as out of reach once a sixth
// of the cap (10 s) is measured, with an estimate of the time the targets
// need far beyond the cap; KeepGoing, or a cap under 10 s, runs it to the
// cap; a recording that ends first says so.
func TestRehearse(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	steady := closedLoop(r, 70*time.Second, func(time.Duration) float64 { return 1 })
	levels := make([]float64, 80)
	for i := range levels {
		levels[i] = 1 + 0.15*r.NormFloat64()
	}
	swinging := closedLoop(r, 70*time.Second, func(t time.Duration) float64 { return levels[int(t/time.Second)] })

	res := Rehearse(Options{}, steady)
	if res.StopReason != StopTarget || res.TargetAfter <= 0 || res.TargetAfter > 20*time.Second || res.TargetNeeds != 0 {
		t.Errorf("steady: stopped %q after %v (needs %v), want the targets met within 20 s", res.StopReason, res.TargetAfter, res.TargetNeeds)
	}
	if res.Limiting == "" {
		t.Error("steady: no limiting target named")
	}
	t.Logf("steady: %s after %v measured, limited by %s; p50 ±%.2f%%, p99 ±%.2f%%",
		res.StopReason, res.TargetAfter, res.Limiting, 100*res.P50.RelHalfWidth(), 100*res.P99.RelHalfWidth())

	// A fast steady server has its intervals within target in about 2 s;
	// the rule waits for minTargetSpan.
	fast := closedLoop(r, 15*time.Second, func(time.Duration) float64 { return 0.25 })
	if res = Rehearse(Options{}, fast); res.StopReason != StopTarget || res.TargetAfter < minTargetSpan || res.TargetAfter > minTargetSpan+time.Second {
		t.Errorf("fast steady: stopped %q after %v, want the targets met at %v", res.StopReason, res.TargetAfter, minTargetSpan)
	}

	res = Rehearse(Options{}, swinging)
	span := res.Window.Span()
	if res.StopReason != StopUnreachable || span < DefaultDuration/reachAfter || span > DefaultDuration/2 {
		t.Errorf("swinging: stopped %q after %v measured, want %q between %v and %v", res.StopReason, span, StopUnreachable, DefaultDuration/reachAfter, DefaultDuration/2)
	}
	if res.Limiting != TargetP50 || res.TargetNeeds < 2*DefaultDuration {
		t.Errorf("swinging: limited by %q, needs %v; want p50 and more than twice the cap", res.Limiting, res.TargetNeeds)
	}
	t.Logf("swinging: %s after %v measured, limited by %s, needs about %v; p50 ±%.2f%%",
		res.StopReason, span, res.Limiting, res.TargetNeeds.Round(time.Second), 100*res.P50.RelHalfWidth())

	res = Rehearse(Options{KeepGoing: true}, swinging)
	if res.StopReason != StopDuration || res.Window.Span() < DefaultDuration-pilotSpan {
		t.Errorf("swinging, KeepGoing: stopped %q after %v, want %q at %v", res.StopReason, res.Window.Span(), StopDuration, DefaultDuration)
	}

	res = Rehearse(Options{Duration: 8 * time.Second}, swinging)
	if res.StopReason != StopDuration {
		t.Errorf("swinging, 8 s cap: stopped %q after %v, want %q: a cap under 10 s is run to", res.StopReason, res.Window.Span(), StopDuration)
	}

	short := []Conn{{Records: steady[0].Records[:20_000]}}
	if res = Rehearse(Options{}, short); res.StopReason != StopRequests || res.Measured == 0 {
		t.Errorf("4 s recording: stopped %q with %d measured, want %q", res.StopReason, res.Measured, StopRequests)
	}
}
