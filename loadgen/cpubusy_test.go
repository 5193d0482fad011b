package loadgen

import (
	"math"
	"testing"
)

// TestClientLoadShares: the wait per round trip counts a thread's wait
// once per connection it drives (not divided over the round trips in
// flight), and the CPUs' busy share is never below the threads' own.
func TestClientLoadShares(t *testing.T) {
	// Two epoll threads: tid 10 drives 3 connections, tid 11 one.
	conns := []*client{{tid: 10}, {tid: 10}, {tid: 11}, {tid: 10}, {tid: -1}}
	l := newClientLoad(conns, []int{1})
	if len(l.tids) != 2 || l.conns[0] != 3 || l.conns[1] != 1 {
		t.Fatalf("tids %v conns %v, want [10 11] [3 1]", l.tids, l.conns)
	}

	l = &clientLoad{started: true, startNs: 0, run0: 0, wait0: 0, busy0: 0, all0: 0}
	// Over 1 s on 1 CPU: the threads ran 0.43 s; /proc/stat's ticks
	// read 39 busy of 100. 1000 round trips; the weighted wait is 5 ms.
	got := l.stop(loadSample{run: 430e6, wait: 5e6, busy: 39, all: 100, ok: true}, 1e9, 1, 1000)
	if math.Abs(got.OnCPU-0.43) > 1e-9 {
		t.Errorf("OnCPU %v, want 0.43", got.OnCPU)
	}
	if got.CPUsBusy < got.OnCPU {
		t.Errorf("CPUsBusy %v below the threads' own share %v", got.CPUsBusy, got.OnCPU)
	}
	if got.RunDelayPerTripNs != 5e3 {
		t.Errorf("RunDelayPerTripNs %v, want 5000", got.RunDelayPerTripNs)
	}
	got = l.stop(loadSample{run: 100e6, wait: 0, busy: 60, all: 100, ok: true}, 1e9, 1, 1000)
	if got.CPUsBusy != 0.6 {
		t.Errorf("CPUsBusy %v, want /proc/stat's 0.6 when above the threads' share", got.CPUsBusy)
	}
}
