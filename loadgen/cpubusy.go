package loadgen

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// clientLoad measures what the client threads themselves cost over the
// measured window, from /proc/self/task/TID/schedstat: the time they ran,
// and the time they were runnable but waiting for a CPU. A client that
// waits for its own CPU, or keeps its CPUs busy, limits the measurement
// instead of the server.
type clientLoad struct {
	tids []int
	// conns is how many connections each of tids drives: a thread's
	// wait for a CPU delays every round trip it has in flight (all of
	// its connections', in closed loop), so it counts that many times
	// toward the wait per round trip.
	conns       []int
	cpus        []int // the client CPUs; nil: every CPU
	run0, wait0 int64
	busy0, all0 uint64
	startNs     int64
	started     bool
}

// ClientLoad is what the client threads cost over the measured window.
type ClientLoad struct {
	// OnCPU is the client threads' CPU time over the window's span times
	// the number of client CPUs (0–1): near 1, the client is saturated.
	OnCPU float64 `json:"on_cpu_fraction"`
	// RunDelayPerTripNs is the time a measured round trip's client
	// thread spent runnable but waiting for a CPU, on average: time the
	// server's latency did not cause. A thread's wait counts once for
	// each connection it drives, whose round trips it held up alike.
	RunDelayPerTripNs float64 `json:"run_delay_per_trip_ns"`
	// CPUsBusy is the share of the client CPUs' time spent on anything
	// but idle (0–1), from /proc/stat: other work there, ours included,
	// competes with the client threads. It is at least OnCPU: /proc/stat
	// counts in ticks sampled at the timer interrupt, which over a short
	// window can read lower than the threads' own exact schedstat time.
	CPUsBusy float64 `json:"cpus_busy_fraction"`
	Known    bool    `json:"known"`
	Unknown  string  `json:"unknown,omitempty"` // why the figures are missing, when they are
}

func newClientLoad(conns []*client, cpus []int) *clientLoad {
	l := &clientLoad{cpus: cpus}
	at := map[int]int{} // tid → its index in tids
	for _, c := range conns {
		if c.tid <= 0 {
			continue
		}
		i, ok := at[c.tid]
		if !ok {
			i = len(l.tids)
			at[c.tid] = i
			l.tids = append(l.tids, c.tid)
			l.conns = append(l.conns, 0)
		}
		l.conns[i]++
	}
	return l
}

func (l *clientLoad) start(now int64) {
	var ok bool
	l.run0, l.wait0, ok = l.read()
	l.busy0, l.all0, _ = cpuTimes(l.cpus)
	l.startNs, l.started = now, ok
}

// loadSample is the client threads' and CPUs' counters at one moment.
type loadSample struct {
	run, wait int64
	busy, all uint64
	ok        bool
}

// sample reads the counters; take it when the window closes, before the
// client threads are told to stop (an ended thread's schedstat is gone).
func (l *clientLoad) sample() loadSample {
	var s loadSample
	s.run, s.wait, s.ok = l.read()
	s.busy, s.all, _ = cpuTimes(l.cpus)
	return s
}

// stop closes the window at now with the counters sampled then; ncpu is
// the number of CPUs the clients may use and trips the measured round
// trips.
func (l *clientLoad) stop(at loadSample, now int64, ncpu int, trips int64) ClientLoad {
	switch {
	case !l.started:
		return ClientLoad{Unknown: "no client thread's schedstat could be read at the start"}
	case !at.ok:
		return ClientLoad{Unknown: "no client thread's schedstat could be read at the end"}
	case now <= l.startNs || ncpu <= 0:
		return ClientLoad{Unknown: "the window closed as it opened"}
	}
	out := ClientLoad{Known: true, OnCPU: float64(at.run-l.run0) / float64(now-l.startNs) / float64(ncpu)}
	if trips > 0 {
		out.RunDelayPerTripNs = float64(at.wait-l.wait0) / float64(trips)
	}
	if at.all > l.all0 {
		out.CPUsBusy = float64(at.busy-l.busy0) / float64(at.all-l.all0)
	}
	out.CPUsBusy = max(out.CPUsBusy, min(out.OnCPU, 1))
	return out
}

// read sums the client threads' run time and their wait for a CPU, the
// latter weighted by the connections each thread drives (conns).
func (l *clientLoad) read() (run, wait int64, ok bool) {
	for i, tid := range l.tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
		if err != nil {
			continue // a client that already ended
		}
		var r, w, n int64
		if _, err := fmt.Sscan(string(b), &r, &w, &n); err == nil {
			run += r
			wait += w * int64(l.conns[i])
			ok = true
		}
	}
	return run, wait, ok
}

// cpuTimes sums the jiffies of the given CPUs (every CPU when nil) from
// /proc/stat: all of them, and those neither idle nor waiting for I/O.
func cpuTimes(cpus []int) (busy, all uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil || (cpus != nil && !slices.Contains(cpus, n)) {
			continue
		}
		for i, v := range f[1:] {
			x, _ := strconv.ParseUint(v, 10, 64)
			if i >= 8 { // guest time is counted in user already
				break
			}
			all += x
			if i != 3 && i != 4 { // idle, iowait
				busy += x
			}
		}
		ok = true
	}
	return busy, all, ok
}
