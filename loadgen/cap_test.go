package loadgen

import (
	"context"
	"testing"
	"time"
)

// TestRunCapHoldsWithoutRunLoop: a run loop kept from running past the
// duration cap (here, a Progress that blocks it) does not let the
// threads-model clients run on: each stops by itself a check after the
// cap, and the window ends at the cap, so the measured time never exceeds
// --duration and the lateness shows in Overshoot.
func TestRunCapHoldsWithoutRunLoop(t *testing.T) {
	f := startFake(t, nil)
	o := quick(f.addr())
	o.ClientModel = ClientThreads
	o.Warmup = -1
	const block = 1500 * time.Millisecond // well past the 400 ms cap
	blocked := false
	var h Hooks
	h.Progress = func(Progress) {
		if !blocked {
			blocked = true
			time.Sleep(block)
		}
	}
	got := collectInto(&h)
	res, err := Run(context.Background(), o, h)
	if err != nil {
		t.Fatal(err)
	}
	if res.StopReason != StopDuration {
		t.Errorf("stop reason %q, want %q", res.StopReason, StopDuration)
	}
	deadline := res.Window.WarmupEnd + o.Duration.Nanoseconds()
	if res.Window.End != deadline || res.Window.Span() > o.Duration {
		t.Errorf("window ends %d ns after the cap and measures %v, want it to end at the cap and measure at most %v",
			res.Window.End-deadline, res.Window.Span(), o.Duration)
	}
	if res.Overshoot <= 0 {
		t.Errorf("overshoot %v, want the run loop's lateness", res.Overshoot)
	}
	// One window, one count: the round trips measured are those begun
	// inside it, none after the cap however late the loop saw it.
	var inside int64
	for _, recs := range got.recs {
		for _, r := range recs {
			if res.Window.Measured(r.T0) {
				inside++
			}
		}
	}
	if inside != res.Measured || got.measured != res.Measured {
		t.Errorf("measured %d (sink %d), but %d round trips began inside the window", res.Measured, got.measured, inside)
	}
	stopAt := deadline + o.CheckEvery.Nanoseconds()
	for id, recs := range got.recs {
		late := 0
		for _, r := range recs {
			if r.T0 >= stopAt {
				late++
			}
		}
		// At most the round trip begun just as the thread passed stopAt.
		if late > 1 {
			t.Errorf("connection %d began %d round trips after it should have stopped itself", id, late)
		}
	}
}
