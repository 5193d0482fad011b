package loadgen

import (
	"fmt"
	"os"
)

// clientLoad measures what the client threads themselves cost over the
// measured window, from /proc/self/task/TID/schedstat: the time they ran,
// and the time they were runnable but waiting for a CPU. A client that
// waits for its own CPU, or keeps its CPUs busy, limits the measurement
// instead of the server.
type clientLoad struct {
	tids        []int
	run0, wait0 int64
	startNs     int64
	started     bool
}

// ClientLoad is what the client threads cost over the measured window.
type ClientLoad struct {
	// OnCPU is the client threads' CPU time over the window's span times
	// the number of client CPUs (0–1): near 1, the client is saturated.
	OnCPU float64 `json:"on_cpu_fraction"`
	// RunDelayPerTripNs is the time client threads spent runnable but
	// waiting for a CPU, per measured round trip: time the server's
	// latency did not cause.
	RunDelayPerTripNs float64 `json:"run_delay_per_trip_ns"`
	Known             bool    `json:"known"`
}

func newClientLoad(conns []*client) *clientLoad {
	l := &clientLoad{}
	seen := map[int]bool{}
	for _, c := range conns {
		if c.tid > 0 && !seen[c.tid] {
			seen[c.tid] = true
			l.tids = append(l.tids, c.tid)
		}
	}
	return l
}

func (l *clientLoad) start(now int64) {
	var ok bool
	l.run0, l.wait0, ok = l.read()
	l.startNs, l.started = now, ok
}

// stop closes the window at now; ncpu is the number of CPUs the clients
// may use and trips the measured round trips.
func (l *clientLoad) stop(now int64, ncpu int, trips int64) ClientLoad {
	run, wait, ok := l.read()
	if !l.started || !ok || now <= l.startNs || ncpu <= 0 {
		return ClientLoad{}
	}
	out := ClientLoad{Known: true, OnCPU: float64(run-l.run0) / float64(now-l.startNs) / float64(ncpu)}
	if trips > 0 {
		out.RunDelayPerTripNs = float64(wait-l.wait0) / float64(trips)
	}
	return out
}

func (l *clientLoad) read() (run, wait int64, ok bool) {
	for _, tid := range l.tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
		if err != nil {
			continue // a client that already ended
		}
		var r, w, n int64
		if _, err := fmt.Sscan(string(b), &r, &w, &n); err == nil {
			run += r
			wait += w
			ok = true
		}
	}
	return run, wait, ok
}
